//! Who near here has a function warm, over `/kith/hood/1`: protocol's
//! [`WarmIndex`] decides when to ask, what to keep and how long a call waits; this
//! module sends its questions (`FindWarm` to the nearest neighbours), answers
//! others' (from the adverts this node holds of its neighbours, signed by them) and
//! hands the scheduler the peers named, with their verified adverts, for a call that
//! found no warm candidate (late binding: the call waits at most
//! [`warm::Config::hold_ms`] for them).

use super::*;

use kith_protocol::neighbourhood::wire::{Frame, WarmRecord};
use kith_protocol::warm::{self, Action, WarmIndex};

/// A peer a warm answer named, as placement uses it.
#[derive(Debug, Clone)]
pub struct WarmCandidate {
    /// Who.
    pub peer: PeerId,
    /// Its advert, signed by it (verified here), with the load the answerer last
    /// heard (a hint: load updates are not signed).
    pub advert: Advert,
    /// An upper bound of the RTT to it: ours to the answerer plus the answerer's to
    /// it.
    pub rtt_ms: Option<f64>,
}

/// What the driver keeps beside the index.
pub(super) struct WarmState {
    pub(super) index: WarmIndex<PeerId, WarmCandidate>,
    /// Held calls, by the index's token: the function, and where the peers go.
    waiting: HashMap<u64, (FunctionId, oneshot::Sender<Vec<WarmCandidate>>)>,
    next: u64,
    /// The whole signed advert of each neighbour that sent one (what answers carry).
    pub(super) signed: HashMap<PeerId, Vec<u8>>,
}

impl WarmState {
    pub(super) fn new(me: PeerId) -> Self {
        Self {
            index: WarmIndex::new(me, warm::Config::default()),
            waiting: HashMap::new(),
            next: 0,
            signed: HashMap::new(),
        }
    }
}

/// RTT in tenths of a millisecond, saturating (the wire's unit).
fn tenths(rtt_ms: f64) -> u16 {
    if rtt_ms.is_finite() && rtt_ms >= 0.0 {
        (rtt_ms * 10.0).round().min(f64::from(u16::MAX)) as u16
    } else {
        u16::MAX
    }
}

impl Task {
    /// The scheduler found no candidate with `id` warm: the peers near here that
    /// have it, now from the cache, or once the question is answered (at most
    /// `hold_ms`), or none.
    pub(super) fn find_warm(&mut self, id: FunctionId, reply: oneshot::Sender<Vec<WarmCandidate>>) {
        let now = now_ms();
        let w = &mut self.hood.warm;
        w.index.handle_timeout(now);
        if let Some(found) = w.index.providers(now, &id) {
            let _ = reply.send(found.iter().map(|(_, c)| c.clone()).collect());
        } else {
            let token = w.next;
            w.next += 1;
            if w.index.hold(now, &id, token) {
                w.waiting.insert(token, (id, reply));
            } else {
                let _ = reply.send(Vec::new());
            }
        }
        self.drive_warm();
    }

    /// When the index next has work, ms.
    pub(super) fn warm_due(&self) -> Option<u64> {
        self.hood.warm.index.poll_timeout()
    }

    /// Runs the index's timers and actions.
    pub(super) fn warm_tick(&mut self) {
        self.hood.warm.index.handle_timeout(now_ms());
        self.drive_warm();
    }

    /// Carries out what the index asks for.
    fn drive_warm(&mut self) {
        while let Some(action) = self.hood.warm.index.poll_action() {
            match action {
                Action::Ask(f) => {
                    let ask = self.hood.warm.index.config().ask;
                    let nearest = self.hood.machine.nearest_neighbours(ask);
                    let frame = Frame::FindWarm(*f.as_bytes()).encode();
                    for q in &nearest {
                        self.send_request(Proto::Neighbourhood, q, frame.clone());
                    }
                    tracing::debug!(function = %f, asked = nearest.len(), "warm: asking the nearest neighbours");
                    self.hood.warm.index.asked(now_ms(), &f, nearest.len());
                }
                Action::Release(token) => {
                    let Some((f, reply)) = self.hood.warm.waiting.remove(&token) else {
                        continue;
                    };
                    let found: Vec<WarmCandidate> = self
                        .hood
                        .warm
                        .index
                        .known(now_ms(), &f)
                        .map(|p| p.iter().map(|(_, c)| c.clone()).collect())
                        .unwrap_or_default();
                    tracing::debug!(function = %f, found = found.len(), "warm: a held call is released");
                    let _ = reply.send(found);
                }
            }
        }
    }

    /// `from` asks which of our neighbours have `f` warm: those whose advert (held in
    /// the peer book) says so, nearest first, each with the signed advert it sent us.
    pub(super) fn answer_warm(&mut self, from: PeerId, f: [u8; 32]) {
        let id = FunctionId::from_bytes(f);
        let max = self.hood.warm.index.config().max_answer;
        let book = &self.table.book;
        let peers = self.hood.machine.warm_peers(from, max, |p, ()| {
            book.get(p)
                .and_then(|e| e.advert())
                .is_some_and(|(a, _)| a.cached.may_contain(&id))
        });
        let mut answer = Vec::with_capacity(peers.len());
        for p in peers {
            let Some(signed) = self.hood.warm.signed.get(&p) else {
                continue;
            };
            let Some((advert, _)) = self.table.book.get(&p).and_then(|e| e.advert()) else {
                continue;
            };
            let rtt = self
                .hood
                .machine
                .neighbours()
                .iter()
                .find(|n| n.peer == p)
                .map_or(f64::INFINITY, |n| n.rtt_ms);
            answer.push(WarmRecord {
                // Its whole advert follows: no capacity in the record.
                peer: self.record(&p, None),
                advert: signed.clone(),
                running: advert.running,
                queued: advert.queued,
                rtt_tenths_ms: tenths(rtt),
            });
        }
        let frame = Frame::Warm(f, answer).encode();
        self.send_request(Proto::Neighbourhood, &from, frame);
    }

    /// `from` answers our question about `f`: each advert verified (signed by the
    /// peer it names, not stale), the peers remembered where they are and handed to
    /// the index, the first linked as warm neighbours. A forged advert penalises the
    /// answerer and is dropped.
    pub(super) fn warm_answered(&mut self, from: PeerId, f: [u8; 32], records: Vec<WarmRecord>) {
        let now = now_ms();
        let id = FunctionId::from_bytes(f);
        if !self.hood.warm.index.asking(&id) && self.hood.warm.index.known(now, &id).is_none() {
            tracing::debug!(peer = %from, "warm answer nobody asked for; ignored");
            return;
        }
        let via = self
            .hood
            .machine
            .neighbours()
            .iter()
            .find(|n| n.peer == from)
            .map(|n| n.rtt_ms)
            .filter(|r| r.is_finite());
        let all_local = self.swarm.listeners().all(is_loopback);
        let mut found = Vec::with_capacity(records.len());
        let mut forged = false;
        for r in records {
            let Ok(peer) = PeerId::from_bytes(&r.peer.id) else {
                forged = true;
                continue;
            };
            let mut advert = match Advert::decode(&r.advert, now) {
                Ok(a) => a,
                Err(kith_protocol::capacity::AdvertError::Stale { .. }) => continue,
                Err(_) => {
                    forged = true;
                    continue;
                }
            };
            let signer = libp2p::identity::ed25519::PublicKey::try_from_bytes(&advert.peer)
                .map(|k| PeerId::from_public_key(&libp2p::identity::PublicKey::from(k)));
            if signer.ok() != Some(peer) {
                forged = true;
                continue;
            }
            if peer == *self.swarm.local_peer_id() {
                continue;
            }
            advert.running = r.running.min(advert.max_concurrent);
            advert.queued = r.queued.min(advert.max_queued);
            let carried = (r.rtt_tenths_ms != u16::MAX).then(|| f64::from(r.rtt_tenths_ms) / 10.0);
            let addrs: Vec<Multiaddr> = r
                .peer
                .addrs
                .into_iter()
                .filter_map(|a| Multiaddr::try_from(a).ok())
                .filter(|a| all_local || !is_loopback(a))
                .collect();
            self.hood.remember(peer, addrs);
            found.push((
                peer,
                WarmCandidate {
                    peer,
                    advert,
                    rtt_ms: via.zip(carried).map(|(a, b)| a + b),
                },
            ));
        }
        tracing::debug!(peer = %from, function = %id, found = found.len(), "warm: an answer");
        if forged {
            tracing::debug!(peer = %from, "warm answer named a forged advert; penalising the peer");
            self.penalise(from);
        }
        let link: Vec<PeerId> = found.iter().map(|x| x.0).take(LINKS_PER_ANSWER).collect();
        self.hood.warm.index.found(now, &id, found);
        self.drive_warm();
        for p in link {
            self.hood.machine.link_warm(now, p);
        }
        self.drive_hood();
    }
}

/// Peers of an answer linked as warm neighbours (their own adverts then reach
/// placement for the calls after this one).
const LINKS_PER_ANSWER: usize = 2;
