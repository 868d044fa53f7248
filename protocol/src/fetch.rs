//! A fetch session: getting one module's bytes from peers by its id. A stepped state
//! machine; the node drives it over `/kith/fetch/1` and Kademlia. It decides which
//! provider to ask next, checks every chunk against the ones before, verifies the
//! whole against the id, and says which peers to penalise.
//!
//! The rules:
//! - **Order.** The peer that forwarded us the call first (it stores the module: a
//!   node stores a module before placing a call to it); then peers that claim the
//!   module (Kademlia providers, connected peers whose advert's cache filter contains
//!   it); then, once the provider query is over, every other connected peer. Within a
//!   group, a lower penalty first (penalties decay), then a lower RTT. Each peer is
//!   asked once per session; at most [`MAX_PROVIDERS`] providers are remembered.
//! - **Chunks.** One request is outstanding at a time. A chunk must continue the bytes
//!   received (same total, offset = bytes so far, non-empty) and the total must be
//!   within the caller's `max_bytes`; a peer that breaks this is penalised and the
//!   next peer starts from byte 0.
//! - **Verification.** The whole module must hash to the id; a peer whose bytes do not
//!   is penalised.
//! - **Giving up.** When no peer is left to ask and the provider query is over.

use crate::FunctionId;
use crate::wire::{FETCH_CHUNK, FetchRequest, FetchResponse};

/// Most providers (from the DHT) a session remembers.
pub const MAX_PROVIDERS: usize = 64;

/// A connected peer, as the driver knows it when choosing the next provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Known<P> {
    /// The peer.
    pub peer: P,
    /// Its advert's cache filter contains the module.
    pub claims: bool,
    /// Its decayed penalty.
    pub penalty: f64,
    /// Its smoothed RTT, if measured.
    pub rtt_ms: Option<f64>,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<P> {
    /// Send `request` to `peer`.
    Ask {
        /// The provider.
        peer: P,
        /// The request.
        request: FetchRequest,
    },
    /// Nothing to send now (a request is out, or the provider query may turn someone
    /// up).
    Wait,
    /// The module, verified against its id.
    Done(Vec<u8>),
    /// No peer could provide it.
    Failed {
        /// Peers asked.
        asked: usize,
        /// Peers that sent bad bytes.
        bad: usize,
    },
}

/// What an answer meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered<P> {
    /// Fine so far (a chunk, or "not found"): call [`Session::next`].
    Ok,
    /// `peer` broke the rules: penalise it, then call [`Session::next`].
    Penalise {
        /// The peer.
        peer: P,
        /// What it did.
        problem: String,
    },
    /// The answer was not for the request out (late, or from another peer).
    Stale,
}

/// One fetch.
#[derive(Debug, Clone)]
pub struct Session<P> {
    id: FunctionId,
    max_bytes: u64,
    prefer: Option<P>,
    providers: Vec<P>,
    querying: bool,
    in_flight: Option<P>,
    current: Option<P>,
    buffer: Vec<u8>,
    total: Option<u64>,
    asked: Vec<P>,
    bad: usize,
    done: Option<Vec<u8>>,
}

impl<P: Copy + Ord> Session<P> {
    /// A fetch of `id`, at most `max_bytes` long, asking `prefer` first.
    pub fn new(id: FunctionId, max_bytes: u64, prefer: Option<P>) -> Self {
        Self {
            id,
            max_bytes,
            prefer,
            providers: Vec::new(),
            querying: true,
            in_flight: None,
            current: None,
            buffer: Vec::new(),
            total: None,
            asked: Vec::new(),
            bad: 0,
            done: None,
        }
    }

    /// The module's id.
    pub fn id(&self) -> FunctionId {
        self.id
    }

    /// The DHT named providers.
    pub fn providers_found(&mut self, peers: impl IntoIterator<Item = P>) {
        for p in peers {
            if self.providers.len() >= MAX_PROVIDERS {
                break;
            }
            if !self.providers.contains(&p) {
                self.providers.push(p);
            }
        }
    }

    /// The provider query is over.
    pub fn query_done(&mut self) {
        self.querying = false;
    }

    /// The next step. `local` is this node (never asked); `connected` the connected
    /// peers.
    pub fn next(&mut self, local: P, connected: &[Known<P>]) -> Step<P> {
        if let Some(module) = self.done.take() {
            return Step::Done(module);
        }
        if self.in_flight.is_some() {
            return Step::Wait;
        }
        if let Some(peer) = self.current {
            // Go on with the same provider.
            return self.ask(peer, self.buffer.len() as u64);
        }
        let key =
            |group: u8, k: &Known<P>| (group, k.penalty, k.rtt_ms.unwrap_or(f64::MAX), k.peer);
        let mut order: Vec<(u8, f64, f64, P)> = Vec::new();
        if let Some(p) = self.prefer {
            order.push((0, f64::MIN, f64::MIN, p));
        }
        for p in &self.providers {
            // A provider the driver knows nothing about sorts last in its group.
            let k = connected.iter().find(|k| k.peer == *p);
            order.push(k.map_or((1, 0.0, f64::MAX, *p), |k| key(1, k)));
        }
        for k in connected {
            if k.claims {
                order.push(key(1, k));
            } else if !self.querying {
                order.push(key(2, k));
            }
        }
        order.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        let next = order
            .into_iter()
            .map(|(_, _, _, p)| p)
            .find(|p| *p != local && !self.asked.contains(p));
        match next {
            Some(peer) => {
                self.asked.push(peer);
                self.current = Some(peer);
                self.buffer.clear();
                self.total = None;
                self.ask(peer, 0)
            }
            None if self.querying => Step::Wait,
            None => Step::Failed {
                asked: self.asked.len(),
                bad: self.bad,
            },
        }
    }

    fn ask(&mut self, peer: P, offset: u64) -> Step<P> {
        self.in_flight = Some(peer);
        Step::Ask {
            peer,
            request: FetchRequest {
                id: self.id,
                offset,
                max_len: FETCH_CHUNK,
            },
        }
    }

    /// `peer`'s answer to the request out: the decoded response, or `None` when the
    /// request failed or the answer did not decode (`malformed` says which).
    pub fn on_answer(
        &mut self,
        peer: P,
        answer: Option<FetchResponse>,
        malformed: bool,
    ) -> Answered<P> {
        if self.in_flight != Some(peer) {
            return Answered::Stale;
        }
        self.in_flight = None;
        let penalise = |s: &mut Self, problem: String| {
            s.bad += 1;
            s.current = None;
            Answered::Penalise { peer, problem }
        };
        match answer {
            Some(FetchResponse::Found {
                total,
                offset,
                bytes,
            }) => {
                if total > self.max_bytes {
                    return penalise(
                        self,
                        format!(
                            "module of {total} bytes exceeds max_module_bytes = {}",
                            self.max_bytes
                        ),
                    );
                }
                if offset != self.buffer.len() as u64
                    || self.total.is_some_and(|t| t != total)
                    || (bytes.is_empty() && total > 0)
                    || self.buffer.len() as u64 + bytes.len() as u64 > total
                {
                    return penalise(
                        self,
                        format!(
                            "chunk at {offset} of {total} does not continue the {} bytes received",
                            self.buffer.len()
                        ),
                    );
                }
                self.total = Some(total);
                self.buffer.extend_from_slice(&bytes);
                if (self.buffer.len() as u64) < total {
                    return Answered::Ok;
                }
                let module = std::mem::take(&mut self.buffer);
                if self.id.matches(&module) {
                    self.done = Some(module);
                    Answered::Ok
                } else {
                    penalise(
                        self,
                        format!(
                            "the peer sent bytes that do not match the function id ({} bytes)",
                            module.len()
                        ),
                    )
                }
            }
            Some(FetchResponse::NotFound) => {
                self.current = None;
                Answered::Ok
            }
            None if malformed => penalise(self, "malformed fetch answer".into()),
            None => {
                self.current = None;
                Answered::Ok
            }
        }
    }

    /// True when the next step picks a new provider (so needs the connected peers);
    /// otherwise [`Self::next`] goes on with the current one or waits.
    pub fn choosing(&self) -> bool {
        self.done.is_none() && self.in_flight.is_none() && self.current.is_none()
    }
}
