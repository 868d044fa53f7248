//! The peer book: what a node knows about the peers it hears from — connected or not,
//! their latest advert and when it came, a smoothed RTT, and a penalty that decays. A
//! stepped state machine: every input carries the time (`now_ms`), nothing reads a
//! clock, and [`PeerBook::poll_timeout`] says when [`PeerBook::evict`] has work.
//!
//! The rules:
//! - An advert replaces the held one only if its sequence number is higher. A node's
//!   sequence numbers start at its boot time ([`crate::capacity::first_seq`]), so a
//!   restarted peer is believed at once.
//! - An advert is **fresh** for [`Config::fresh_ms`] after it arrived; only connected
//!   peers with a fresh advert are usable for placement.
//! - RTT samples are smoothed: `rtt = (1 − α) rtt + α sample`.
//! - A penalty (a peer that did not answer in time, sent bad bytes, lied) adds to a
//!   score that halves every [`Config::penalty_half_life_ms`], so a peer that behaves
//!   recovers; placement adds it to the peer's cost.
//! - The book holds at most [`Config::max_peers`] peers. A disconnected peer not heard
//!   from for [`Config::forget_after_ms`] is forgotten. When the book is full, a new
//!   peer takes the place of the disconnected peer heard from longest ago; if every
//!   peer is connected, the new one is not recorded (and so not used for placement).

use std::collections::BTreeMap;

use crate::capacity::Advert;
use crate::vivaldi::Coord;

/// The book's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// How long an advert is used for placement after it arrived, ms.
    pub fresh_ms: u64,
    /// Weight of a new RTT sample in the moving average.
    pub rtt_alpha: f64,
    /// Time for a penalty to halve, ms.
    pub penalty_half_life_ms: u64,
    /// A disconnected peer not heard from for this long is forgotten, ms.
    pub forget_after_ms: u64,
    /// Most peers held.
    pub max_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fresh_ms: 10_000,
            rtt_alpha: 0.3,
            penalty_half_life_ms: 60_000,
            forget_after_ms: 600_000,
            max_peers: 4096,
        }
    }
}

/// A score that halves every `half_life_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Penalty {
    score: f64,
    at_ms: u64,
}

impl Penalty {
    /// The score at `now_ms`.
    pub fn value(&self, now_ms: u64, half_life_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(self.at_ms) as f64;
        self.score * 0.5f64.powf(dt / half_life_ms.max(1) as f64)
    }

    /// Adds `weight` at `now_ms`.
    pub fn add(&mut self, now_ms: u64, weight: f64, half_life_ms: u64) {
        let weight = if weight.is_finite() {
            weight.max(0.0)
        } else {
            0.0
        };
        self.score = self.value(now_ms, half_life_ms) + weight;
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// One peer. `E` is what the driver keeps with it (the node: the address it is
/// connected at).
#[derive(Debug, Clone)]
pub struct Entry<E> {
    /// Connected now.
    pub connected: bool,
    /// Smoothed RTT, ms.
    pub rtt_ms: Option<f64>,
    /// Misbehaviours counted, ever (for display; placement uses the decayed penalty).
    pub penalties: u32,
    /// The driver's data.
    pub extra: E,
    advert: Option<(Advert, u64)>,
    penalty: Penalty,
    heard_ms: u64,
}

impl<E> Entry<E> {
    /// Its latest advert and when it arrived (ms).
    pub fn advert(&self) -> Option<(&Advert, u64)> {
        self.advert.as_ref().map(|(a, at)| (a, *at))
    }
}

/// What became of an advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvertVerdict {
    /// Newer than the one held: kept.
    Accepted,
    /// Not newer than the one held: ignored.
    Older,
    /// The book is full of connected peers: not recorded.
    Full,
}

/// The peer book.
#[derive(Debug, Clone)]
pub struct PeerBook<P, E = ()> {
    config: Config,
    peers: BTreeMap<P, Entry<E>>,
}

impl<P: Ord + Copy, E: Default> PeerBook<P, E> {
    /// An empty book.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
        }
    }

    /// The entry of `peer`, making room for it if needed; `None` when the book is full
    /// of connected peers.
    fn entry(&mut self, now_ms: u64, peer: P) -> Option<&mut Entry<E>> {
        if !self.peers.contains_key(&peer) {
            if self.peers.len() >= self.config.max_peers {
                let oldest = self
                    .peers
                    .iter()
                    .filter(|(_, e)| !e.connected)
                    .min_by_key(|(p, e)| (e.heard_ms, **p))
                    .map(|(p, _)| *p)?;
                self.peers.remove(&oldest);
            }
            self.peers.insert(
                peer,
                Entry {
                    connected: false,
                    rtt_ms: None,
                    penalties: 0,
                    extra: E::default(),
                    advert: None,
                    penalty: Penalty::default(),
                    heard_ms: now_ms,
                },
            );
        }
        let e = self.peers.get_mut(&peer)?;
        e.heard_ms = e.heard_ms.max(now_ms);
        Some(e)
    }

    /// `peer` connected; returns its entry (to set `extra`), or `None` when the book is
    /// full of connected peers.
    pub fn on_connected(&mut self, now_ms: u64, peer: P) -> Option<&mut Entry<E>> {
        let e = self.entry(now_ms, peer)?;
        e.connected = true;
        Some(e)
    }

    /// `peer`'s last connection closed.
    pub fn on_disconnected(&mut self, now_ms: u64, peer: &P) {
        if let Some(e) = self.peers.get_mut(peer) {
            e.connected = false;
            e.heard_ms = e.heard_ms.max(now_ms);
        }
    }

    /// An RTT sample; returns the peer's advertised coordinate, if known.
    pub fn on_rtt(&mut self, now_ms: u64, peer: P, rtt_ms: f64) -> Option<Coord> {
        if !(rtt_ms.is_finite() && rtt_ms >= 0.0) {
            return None;
        }
        let alpha = self.config.rtt_alpha;
        let e = self.entry(now_ms, peer)?;
        e.rtt_ms = Some(match e.rtt_ms {
            Some(old) => old * (1.0 - alpha) + rtt_ms * alpha,
            None => rtt_ms,
        });
        e.advert.as_ref().map(|(a, _)| a.coord)
    }

    /// A verified advert from `peer`.
    pub fn on_advert(&mut self, now_ms: u64, peer: P, advert: Advert) -> AdvertVerdict {
        let Some(e) = self.entry(now_ms, peer) else {
            return AdvertVerdict::Full;
        };
        if e.advert
            .as_ref()
            .is_some_and(|(old, _)| old.seq >= advert.seq)
        {
            return AdvertVerdict::Older;
        }
        e.advert = Some((advert, now_ms));
        AdvertVerdict::Accepted
    }

    /// Counts a misbehaviour of `peer`, of `weight` (1 for one failed call).
    pub fn penalise(&mut self, now_ms: u64, peer: P, weight: f64) {
        let half = self.config.penalty_half_life_ms;
        if let Some(e) = self.entry(now_ms, peer) {
            e.penalties = e.penalties.saturating_add(1);
            e.penalty.add(now_ms, weight, half);
        }
    }

    /// `peer`'s penalty now (0 for a peer never penalised or not held).
    pub fn penalty(&self, now_ms: u64, peer: &P) -> f64 {
        self.peers.get(peer).map_or(0.0, |e| {
            e.penalty.value(now_ms, self.config.penalty_half_life_ms)
        })
    }

    /// The entry of `peer`.
    pub fn get(&self, peer: &P) -> Option<&Entry<E>> {
        self.peers.get(peer)
    }

    /// The smoothed RTT to `peer`.
    pub fn rtt_ms(&self, peer: &P) -> Option<f64> {
        self.peers.get(peer).and_then(|e| e.rtt_ms)
    }

    /// Every peer held, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&P, &Entry<E>)> {
        self.peers.iter()
    }

    /// Peers held.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer is held.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Peers connected now, in key order.
    pub fn connected(&self) -> Vec<P> {
        self.peers
            .iter()
            .filter(|(_, e)| e.connected)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Connected peers with a fresh advert at `now_ms`, with their entry and advert, in
    /// key order: the candidates placement sees.
    pub fn usable(&self, now_ms: u64) -> impl Iterator<Item = (P, &Entry<E>, &Advert)> {
        let fresh = self.config.fresh_ms;
        self.peers.iter().filter_map(move |(peer, e)| {
            let (advert, at) = e.advert.as_ref()?;
            (e.connected && now_ms.saturating_sub(*at) <= fresh).then_some((*peer, e, advert))
        })
    }

    /// Forgets disconnected peers not heard from for `forget_after_ms`; returns them.
    pub fn evict(&mut self, now_ms: u64) -> Vec<P> {
        let forget = self.config.forget_after_ms;
        let gone: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, e)| !e.connected && now_ms.saturating_sub(e.heard_ms) >= forget)
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.peers.remove(p);
        }
        gone
    }

    /// When [`Self::evict`] next has a peer to forget, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.peers
            .values()
            .filter(|e| !e.connected)
            .map(|e| e.heard_ms.saturating_add(self.config.forget_after_ms))
            .min()
    }
}
