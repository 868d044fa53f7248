//! What peers send the neighbourhood: adverts, and the control messages of
//! subscribing and peer exchange.

use super::{Action, AdvertVerdict, Link, Message, Neighbour, Neighbourhood, Subscriber};

impl<P: Copy + Ord, A> Neighbourhood<P, A> {
    /// An advert from `from` with sequence number `seq`; from a peer asked to take us
    /// as a subscriber, it also counts as the acceptance.
    pub fn advert(&mut self, now_ms: u64, from: P, seq: u64, advert: A) -> AdvertVerdict {
        // A peer we asked may send its advert before its acceptance arrives (they
        // travel apart): the advert counts as the acceptance.
        if self.pending.iter().any(|p| p.0 == from) {
            self.on_accepted(now_ms, from);
        }
        let Some(n) = self.neighbours.iter_mut().find(|n| n.peer == from) else {
            self.stats.ignored_adverts += 1;
            return AdvertVerdict::NotNeighbour;
        };
        if n.advert.as_ref().is_some_and(|(_, held)| *held >= seq) {
            self.stats.ignored_adverts += 1;
            return AdvertVerdict::Older;
        }
        n.advert = Some((advert, seq));
        n.heard_ms = now_ms;
        AdvertVerdict::Accepted
    }

    /// A control message from `from`.
    pub fn message(&mut self, now_ms: u64, from: P, message: Message<P>) {
        if from == self.me {
            return;
        }
        match message {
            Message::Subscribe => self.on_subscribe(now_ms, from),
            Message::Unsubscribe => self.subscribers.retain(|s| s.peer != from),
            Message::Accepted => self.on_accepted(now_ms, from),
            Message::Refused => {
                self.pending.retain(|p| p.0 != from);
                self.reselect = true;
                if let Some(c) = self.candidates.iter_mut().find(|c| c.peer == from) {
                    c.not_before_ms = now_ms + self.config.refused_backoff_ms;
                }
                self.select(now_ms);
            }
            Message::AskPeers => {
                let peers = self
                    .nearest(self.config.share)
                    .into_iter()
                    .map(|p| {
                        let n = self.neighbours.iter().find(|n| n.peer == p);
                        (p, n.and_then(|n| n.capacity))
                    })
                    .collect();
                self.push(Action::Send(from, Message::Peers(peers)));
            }
            Message::Peers(peers) => {
                for (p, capacity) in peers.into_iter().take(self.config.share) {
                    self.add_candidate(now_ms, p, capacity);
                }
                self.select(now_ms);
            }
            // Adverts come with their payload through `advert`; the warm questions
            // are the driver's (`crate::warm`).
            Message::Advert { .. } | Message::FindWarm(_) | Message::Warm(..) => {}
        }
    }

    fn on_subscribe(&mut self, now_ms: u64, from: P) {
        let until_ms = now_ms + self.config.lease_ms;
        if let Some(s) = self.subscribers.iter_mut().find(|s| s.peer == from) {
            // A renewal, or a subscriber whose first answer was lost (it asks again):
            // answered either way, so it never waits on an answer that will not come.
            s.until_ms = until_ms;
            self.push(Action::Send(from, Message::Accepted));
            return;
        }
        if self.subscribers.len() >= self.config.max_subscribers {
            self.stats.refused += 1;
            self.push(Action::Send(from, Message::Refused));
            return;
        }
        self.subscribers.push(Subscriber {
            peer: from,
            until_ms,
        });
        self.push(Action::Send(from, Message::Accepted));
        self.push(Action::Send(from, Message::Advert { full: true }));
        // A subscriber is a peer worth subscribing back to (one link, both ways).
        self.add_candidate(now_ms, from, None);
        self.reselect = true;
    }

    fn on_accepted(&mut self, now_ms: u64, from: P) {
        let Some(i) = self.pending.iter().position(|p| p.0 == from) else {
            return; // not asked, or given up on: ignore
        };
        let (_, _, link) = self.pending.swap_remove(i);
        let known = self.candidates.iter().find(|c| c.peer == from);
        let rtt_ms = known.and_then(|c| c.rtt_ms).unwrap_or(f64::INFINITY);
        let capacity = known.and_then(|c| c.capacity);
        self.candidates.retain(|c| c.peer != from);
        self.improved |= link == Link::Rtt;
        self.reselect = true;
        self.neighbours.push(Neighbour {
            peer: from,
            rtt_ms,
            link,
            advert: None,
            capacity,
            used_ms: now_ms,
            heard_ms: now_ms,
            renewed_ms: now_ms,
        });
        self.select(now_ms);
    }
}
