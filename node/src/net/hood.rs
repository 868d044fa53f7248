//! The neighbourhood over libp2p: protocol's [`Neighbourhood`] decides which peers this
//! node hears adverts from and sends its own to; this module carries its actions out
//! (`/kith/hood/1` messages, RTT probes by dialling and pinging, DHT random walks) and
//! feeds it what happens (messages, pings, connections, lookups).
//!
//! Adverts travel one hop, to subscribers only, and are never forwarded: the whole
//! signed advert when more than the load changed (and every minute), else a 13-byte
//! load update. What one node spends is bounded by the neighbourhood's caps, whatever
//! the size of the network (`docs/architecture.md`, "The control plane at a million
//! peers").

use super::*;

use kith_protocol::capacity::AdvertError;
use kith_protocol::neighbourhood::wire::{self as hood_wire, Frame, PeerRecord};
use kith_protocol::neighbourhood::{self, Action, AdvertVerdict, Capacity, Message, Neighbourhood};

/// Addresses held for peers the neighbourhood may dial, at most (beyond it, entries of
/// peers it no longer knows go first, then the oldest).
pub const MAX_HOOD_ADDRS: usize = 256;
/// DHT random walks in flight, at most.
const MAX_WALKS: usize = 2;
/// A connection to a peer the neighbourhood has no use for (not a neighbour,
/// subscriber, nor being probed or asked), with no request in flight, is closed once
/// it has been open this long; bootstrap peers and relays are kept.
pub const TRIM_AFTER: Duration = Duration::from_secs(10);
/// The shortest advert heartbeat (`--advert-interval-ms` below it is raised to it).
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(500);
/// Neighbourhood messages one peer may send at once before its rate limit applies.
pub(super) const HOOD_BURST: f64 = 8.0;

/// What the driver keeps beside the state machine.
pub(super) struct Hood {
    pub(super) machine: Neighbourhood<PeerId, ()>,
    /// Where to dial peers heard of through peer exchange and walks, and the
    /// listen addresses connected peers told us (identify), to share.
    pub(super) addrs: HashMap<PeerId, (Vec<Multiaddr>, Instant)>,
    /// DHT random walks in flight.
    pub(super) walks: HashSet<kad::QueryId>,
    /// The latest offer from the node (the advert without identity and sequence).
    pub(super) offer: Option<Advert>,
    /// Who near here has a function warm (questions, answers, held calls).
    pub(super) warm: super::warm::WarmState,
}

impl Hood {
    pub(super) fn new(me: PeerId, heartbeat: Duration) -> Self {
        // Faster than twice a second would outrun what peers accept from one sender
        // (`advert_rate_per_peer`, 5/s) once deltas and control messages are added.
        let heartbeat = heartbeat.max(MIN_HEARTBEAT);
        let config = neighbourhood::Config {
            heartbeat_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
            ..neighbourhood::Config::default()
        };
        let seed = u64::from_le_bytes(
            blake3::hash(&me.to_bytes()).as_bytes()[..8]
                .try_into()
                .unwrap_or([1; 8]),
        );
        Self {
            machine: Neighbourhood::new(me, config, seed, now_ms()),
            addrs: HashMap::new(),
            walks: HashSet::new(),
            offer: None,
            warm: super::warm::WarmState::new(me),
        }
    }

    /// Remembers up to [`hood_wire::MAX_ADDRS`] addresses of `peer`.
    pub(super) fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if addrs.is_empty() {
            return;
        }
        if self.addrs.len() >= MAX_HOOD_ADDRS && !self.addrs.contains_key(&peer) {
            let machine = &self.machine;
            self.addrs.retain(|p, _| machine.involves(*p));
            if self.addrs.len() >= MAX_HOOD_ADDRS {
                let oldest = self
                    .addrs
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(p, _)| *p);
                if let Some(p) = oldest {
                    self.addrs.remove(&p);
                }
            }
        }
        let mut addrs = addrs;
        addrs.truncate(hood_wire::MAX_ADDRS);
        self.addrs.insert(peer, (addrs, Instant::now()));
    }
}

impl Task {
    /// Time until the neighbourhood next has work.
    pub(super) fn hood_wait(&self) -> Duration {
        let now = now_ms();
        let due = self.hood.machine.poll_timeout().unwrap_or(now + 1_000);
        let due = self.warm_due().map_or(due, |w| w.min(due));
        Duration::from_millis(due.saturating_sub(now).clamp(1, 1_000))
    }

    /// Runs the neighbourhood's and the warm index's timers, then their actions.
    pub(super) fn hood_tick(&mut self) {
        self.hood.machine.handle_timeout(now_ms());
        self.drive_hood();
        self.warm_tick();
    }

    /// The node's latest offer: the advert to send (its identity, sequence number and
    /// coordinate are filled in at each send). Tells the neighbourhood what changed.
    pub(super) fn offer(&mut self, advert: Advert) {
        let full = match &self.hood.offer {
            None => true,
            Some(old) => {
                let load_only = |a: &Advert| Advert {
                    running: 0,
                    queued: 0,
                    ..a.clone()
                };
                load_only(old) != load_only(&advert)
            }
        };
        let changed =
            self.hood.offer.as_ref().is_none_or(|old| {
                full || old.running != advert.running || old.queued != advert.queued
            });
        let mut local = advert.clone();
        local.seq = self.seq;
        local.coord = self.coord;
        self.table().local = Some(local);
        self.hood.offer = Some(advert);
        if changed {
            self.hood.machine.changed(now_ms(), full);
        }
        self.drive_hood();
    }

    /// Carries out what the neighbourhood asked for.
    pub(super) fn drive_hood(&mut self) {
        // One advert per kind per batch: every subscriber gets the same bytes.
        let mut full: Option<Vec<u8>> = None;
        let mut load: Option<Frame> = None;
        while let Some(action) = self.hood.machine.poll_action() {
            match action {
                Action::Probe(peer) => {
                    tracing::trace!(%peer, "neighbourhood: probing");
                    self.probe(peer);
                }
                Action::Lookup => self.walk(),
                Action::Send(peer, message) => {
                    let frame = match message {
                        Message::Subscribe => Frame::Subscribe,
                        Message::Accepted => Frame::Accepted,
                        Message::Refused => Frame::Refused,
                        Message::Unsubscribe => Frame::Unsubscribe,
                        Message::AskPeers => Frame::AskPeers,
                        Message::Peers(peers) => {
                            Frame::Peers(peers.iter().map(|(p, c)| self.record(p, *c)).collect())
                        }
                        // The warm questions are not the neighbourhood machine's to
                        // send: protocol's `warm` index asks them (`super::warm`).
                        Message::FindWarm(_) | Message::Warm(..) => continue,
                        Message::Advert { full: true } => {
                            if full.is_none() {
                                full = self.signed_advert();
                            }
                            match &full {
                                Some(bytes) => Frame::Full(bytes.clone()),
                                None => continue,
                            }
                        }
                        Message::Advert { full: false } => {
                            if load.is_none() {
                                load = self.load_update();
                            }
                            match &load {
                                Some(f) => f.clone(),
                                None => continue,
                            }
                        }
                    };
                    let proto = if frame.is_advert() {
                        Proto::Adverts
                    } else {
                        Proto::Neighbourhood
                    };
                    tracing::trace!(%peer, ?frame, "neighbourhood: sending");
                    self.send_request(proto, &peer, frame.encode());
                }
            }
        }
    }

    /// The whole advert, signed, with the next sequence number; `None` before the node
    /// has offered anything (a gateway never does).
    fn signed_advert(&mut self) -> Option<Vec<u8>> {
        let mut advert = self.hood.offer.clone()?;
        self.seq += 1;
        advert.peer = self.key.public().try_into_ed25519().ok()?.to_bytes();
        advert.seq = self.seq;
        advert.issued_ms = now_ms();
        advert.coord = self.coord;
        let key = self.key.clone();
        let bytes = advert.encode(|m| {
            let sig = key.sign(m).unwrap_or_default();
            sig.try_into().unwrap_or([0; 64])
        });
        self.table().local = Some(advert);
        Some(bytes)
    }

    /// The load alone, with the next sequence number.
    fn load_update(&mut self) -> Option<Frame> {
        let offer = self.hood.offer.as_ref()?;
        let (running, queued) = (offer.running, offer.queued);
        self.seq += 1;
        let seq = self.seq;
        Some(Frame::Load {
            seq,
            running,
            queued,
        })
    }

    /// `p` with the addresses this node knows it at, and `capacity`.
    pub(super) fn record(&self, p: &PeerId, capacity: Option<Capacity>) -> PeerRecord {
        let mut addrs: Vec<Vec<u8>> = Vec::new();
        if let Some((known, _)) = self.hood.addrs.get(p) {
            addrs.extend(known.iter().map(|a| without_peer(a).to_vec()));
        }
        if addrs.is_empty()
            && let Some(a) = self.table.book.get(p).and_then(|e| e.extra.as_ref())
        {
            addrs.push(without_peer(a).to_vec());
        }
        PeerRecord {
            id: p.to_bytes(),
            addrs,
            capacity,
        }
    }

    /// Measures the RTT to `peer`: at once if connected and pinged, else by dialling
    /// it (ping reports the RTT once connected).
    fn probe(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            if let Some(rtt) = self.table.rtt_ms(&peer) {
                self.hood.machine.rtt(now_ms(), peer, rtt);
            }
            return;
        }
        let addrs = self
            .hood
            .addrs
            .get(&peer)
            .map(|(a, _)| a.clone())
            .unwrap_or_default();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => {}
            // Not in the routing table either: ask the DHT where it is.
            Err(libp2p::swarm::DialError::NoAddresses) => {
                let now = Instant::now();
                if self.discovery.dialled.len() >= MAX_DIALLED_PEERS {
                    self.discovery
                        .dialled
                        .retain(|_, t| now.duration_since(*t) < REDIAL_AFTER);
                }
                if self.discovery.dialled.len() >= MAX_DIALLED_PEERS {
                    self.hood.machine.unreachable(now_ms(), peer);
                    return;
                }
                self.discovery.dialled.insert(peer, now);
                self.look_up(peer);
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot dial a candidate");
                self.hood.machine.unreachable(now_ms(), peer);
            }
        }
    }

    /// A DHT random walk: the peers found become candidates.
    fn walk(&mut self) {
        if self.hood.walks.len() >= MAX_WALKS {
            return;
        }
        let query = self
            .swarm
            .behaviour_mut()
            .kad
            .get_closest_peers(PeerId::random());
        self.hood.walks.insert(query);
    }

    /// A random walk ended: what it found.
    pub(super) fn walked(&mut self, peers: Vec<kad::PeerInfo>) {
        let all_local = self.swarm.listeners().all(is_loopback);
        let now = now_ms();
        for found in peers {
            let addrs: Vec<Multiaddr> = found
                .addrs
                .into_iter()
                .filter(|a| all_local || !is_loopback(a))
                .collect();
            self.hood.remember(found.peer_id, addrs);
            self.hood.machine.discovered(now, found.peer_id);
        }
    }

    /// A `/kith/hood/1` event.
    pub(super) fn hood_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        let Some(traffic) = Traffic::of(event) else {
            return;
        };
        match traffic {
            Traffic::Request {
                peer,
                body,
                channel,
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .hood
                    .send_response(channel, Vec::new());
                self.hood_message(peer, &body);
            }
            Traffic::Answer { .. } => {}
            Traffic::Failed { peer, error, .. } => {
                tracing::debug!(%peer, %error, "neighbourhood message not delivered");
                self.hood.machine.unreachable(now_ms(), peer);
            }
        }
    }

    /// One neighbourhood message from `peer`: rate-limited, parsed, handed to the
    /// machine (adverts verified and recorded in the peer book).
    fn hood_message(&mut self, peer: PeerId, body: &[u8]) {
        let now = now_ms();
        let rate = self.config.advert_rate_per_peer;
        let bucket = self
            .advert_buckets
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(rate, HOOD_BURST, now));
        if !bucket.try_take(now) {
            tracing::debug!(%peer, "neighbourhood rate limit: message dropped");
            return;
        }
        let proto = if Frame::carries_advert(body) {
            Proto::Adverts
        } else {
            Proto::Neighbourhood
        };
        self.bytes.received(proto, body.len());
        let frame = match Frame::decode(body) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed neighbourhood message; penalising the peer");
                self.penalise(peer);
                return;
            }
        };
        tracing::trace!(%peer, ?frame, "neighbourhood: received");
        let m = &mut self.hood.machine;
        match frame {
            Frame::Subscribe => m.message(now, peer, Message::Subscribe),
            Frame::Accepted => m.message(now, peer, Message::Accepted),
            Frame::Refused => m.message(now, peer, Message::Refused),
            Frame::Unsubscribe => m.message(now, peer, Message::Unsubscribe),
            Frame::AskPeers => m.message(now, peer, Message::AskPeers),
            Frame::Peers(records) => self.peers_heard(peer, records),
            Frame::Full(bytes) => self.full_advert(peer, &bytes),
            Frame::Load {
                seq,
                running,
                queued,
            } => self.load_advert(peer, seq, running, queued),
            Frame::FindWarm(f) => self.answer_warm(peer, f),
            Frame::Warm(f, records) => self.warm_answered(peer, f, records),
        }
    }

    fn peers_heard(&mut self, from: PeerId, records: Vec<PeerRecord>) {
        let all_local = self.swarm.listeners().all(is_loopback);
        let mut ids = Vec::with_capacity(records.len());
        for r in records {
            let Ok(id) = PeerId::from_bytes(&r.id) else {
                tracing::debug!(peer = %from, "peer exchange named a malformed peer id");
                continue;
            };
            let addrs: Vec<Multiaddr> = r
                .addrs
                .into_iter()
                .filter_map(|a| Multiaddr::try_from(a).ok())
                .filter(|a| all_local || !is_loopback(a))
                .collect();
            self.hood.remember(id, addrs);
            ids.push((id, r.capacity));
        }
        self.hood
            .machine
            .message(now_ms(), from, Message::Peers(ids));
    }

    /// A whole advert: decoded, verified (signature, signed by the sender's own key),
    /// kept if the sender is a neighbour and it is newer.
    fn full_advert(&mut self, peer: PeerId, bytes: &[u8]) {
        let now = now_ms();
        let advert = match Advert::decode(bytes, now) {
            Ok(a) => a,
            // A clock off: no sign of a lie.
            Err(e @ AdvertError::Stale { .. }) => {
                tracing::debug!(%peer, error = %e, "advert dropped");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "advert dropped; penalising the peer");
                self.penalise(peer);
                return;
            }
        };
        let key_peer = libp2p::identity::ed25519::PublicKey::try_from_bytes(&advert.peer)
            .map(|k| PeerId::from_public_key(&libp2p::identity::PublicKey::from(k)));
        if key_peer.ok() != Some(peer) {
            tracing::warn!(%peer, "advert signed by another key than its sender; dropped");
            self.penalise(peer);
            return;
        }
        match self.hood.machine.advert(now, peer, advert.seq, ()) {
            AdvertVerdict::Accepted => {
                // Kept signed, for the warm answers that name this peer.
                self.hood.warm.signed.insert(peer, bytes.to_vec());
                // Its own word on what it can run replaces any hearsay.
                self.hood.machine.capacity(peer, Capacity::from(&advert));
                self.table().advert(peer, advert);
            }
            verdict => tracing::trace!(%peer, ?verdict, "advert ignored"),
        }
    }

    /// A load update: applied to the advert held from `peer` (else ignored until its
    /// whole advert arrives).
    fn load_advert(&mut self, peer: PeerId, seq: u64, running: u16, queued: u16) {
        // Only on top of a whole advert received in this subscription: one held from
        // before (the peer restarted, or we unsubscribed) may be out of date in more
        // than its load.
        let whole = self
            .hood
            .machine
            .neighbours()
            .iter()
            .any(|n| n.peer == peer && n.advert().is_some());
        if !whole {
            return;
        }
        let Some((held, _)) = self.table.book.get(&peer).and_then(|e| e.advert()) else {
            return;
        };
        if held.seq >= seq {
            return;
        }
        let mut advert = held.clone();
        if self.hood.machine.advert(now_ms(), peer, seq, ()) == AdvertVerdict::Accepted {
            advert.seq = seq;
            advert.running = running;
            advert.queued = queued;
            self.table().advert(peer, advert);
        }
    }

    /// Closes connections the neighbourhood has no use for (see [`TRIM_AFTER`]), and
    /// forgets addresses of peers it no longer knows.
    pub(super) fn trim_connections(&mut self) {
        let now = Instant::now();
        let machine = &self.hood.machine;
        let keep_addr = |p: &PeerId, t: &Instant| {
            machine.involves(*p) || now.duration_since(*t) < Duration::from_secs(120)
        };
        self.hood.addrs.retain(|p, (_, t)| keep_addr(p, t));
        self.hood
            .warm
            .signed
            .retain(|p, _| machine.is_neighbour(*p));
        let bootstrap: HashSet<PeerId> = self
            .discovery
            .bootstrap_peers
            .iter()
            .chain(self.config.relays.iter())
            .filter_map(peer_of)
            .collect();
        let mut idle = Vec::new();
        for (peer, (_, since)) in &self.nat.direct {
            if now.duration_since(*since) < TRIM_AFTER
                || self.hood.machine.involves(*peer)
                || bootstrap.contains(peer)
                || self.nat.relay_candidates.contains_key(peer)
                || self.nat.auto_relays.values().any(|r| r == peer)
                || self.serving.get(peer).is_some_and(|n| *n > 0)
                || self.busy_with(peer)
            {
                continue;
            }
            idle.push(*peer);
        }
        for peer in idle {
            tracing::debug!(%peer, "closing a connection the neighbourhood does not need");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Whether a request of ours to `peer` is in flight.
    fn busy_with(&self, peer: &PeerId) -> bool {
        self.invoke_requests.values().any(|(p, _)| p == peer)
            || self.state_requests.values().any(|(p, _)| p == peer)
            || self.alias_requests.values().any(|p| p == peer)
            || self.fetches.asking(peer)
    }
}
