//! Where a call runs: fetch the module if needed, rank the capable peers with
//! `protocol::placement`, and try them in order.
//!
//! The entry node runs the call itself or forwards it over `/kith/invoke/1`. A peer that
//! cannot be reached, times out, or refuses before running (busy, rate limited, lacks
//! the function, caps too small) is skipped for the next candidate; an error raised by
//! the function itself is returned, not retried. A forwarded call carries a hop count
//! and is never forwarded again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use kith_protocol::attempt::{Attempts, Step, Verdict};
use kith_protocol::capacity::{Advert, Cached};
use kith_protocol::placement::{self, Call, FuelAverage, PeerView};
use kith_protocol::subnet;
use kith_protocol::wire::MAX_HOPS;
use kith_protocol::{FunctionId, Manifest, module};
use libp2p::PeerId;

use crate::call::{CallError, Ranked, Receipt};
use crate::clock::now_ms;
use crate::forward::Forward;
use crate::net::{FetchError, Net, WarmCandidate};
use crate::node::Node;
use crate::receipts::Asked;
use crate::runtime::InvokeError;

/// Most functions whose manifest and expected fuel are remembered for placement.
pub const MAX_FUNCTIONS_REMEMBERED: usize = 4096;

/// Inserts into a per-function cache of at most [`MAX_FUNCTIONS_REMEMBERED`] entries;
/// when full, an arbitrary other entry goes (each is cheap to learn again: a manifest is
/// read from the store, an average restarts from the next call).
fn insert_capped<V>(map: &mut std::collections::HashMap<FunctionId, V>, id: FunctionId, value: V) {
    if map.len() >= MAX_FUNCTIONS_REMEMBERED
        && !map.contains_key(&id)
        && let Some(other) = map.keys().next().copied()
    {
        map.remove(&other);
    }
    map.insert(id, value);
}

/// What placement and verification need to know of a stored function.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// Its manifest.
    pub manifest: Manifest,
    /// Module size, bytes.
    pub size: u64,
    /// Its first import that is not deterministic, if any.
    pub nondeterministic: Option<String>,
}

/// Fuel assumed for a function never seen run.
const DEFAULT_EXPECTED_FUEL: u64 = 1_000_000;

impl Node {
    /// Runs a call wherever it is expected to finish soonest. `hops` is how many times
    /// the call was already forwarded (0 for a call made at this node).
    ///
    /// # Errors
    /// The function's own error, a limit, or busy when no candidate took the call.
    pub async fn call(
        self: &Arc<Self>,
        id: FunctionId,
        input: Vec<u8>,
        hops: u8,
    ) -> Result<Receipt, CallError> {
        let asked = self.asked_here();
        let result = self.call_from(id, input, hops, None, &asked).await;
        if let Ok(r) = &result
            && r.executed_by == self.peer_id
        {
            self.record_local(&r.proof);
        }
        result
    }

    /// [`Self::call`] for a call forwarded by `from`, which holds the module (a node
    /// stores a module before it places a call to it), so it is asked for the bytes
    /// first. The receipt names `asked`'s entry and call id.
    pub(crate) async fn call_from(
        self: &Arc<Self>,
        id: FunctionId,
        input: Vec<u8>,
        hops: u8,
        from: Option<PeerId>,
        asked: &Asked,
    ) -> Result<Receipt, CallError> {
        let started = std::time::Instant::now();
        let result = self.place_and_run(id, input, hops, from, asked).await;
        self.count(&id, &result, started.elapsed());
        result
    }

    async fn place_and_run(
        self: &Arc<Self>,
        id: FunctionId,
        input: Vec<u8>,
        hops: u8,
        from: Option<PeerId>,
        asked: &Asked,
    ) -> Result<Receipt, CallError> {
        if self.draining() {
            return Err(CallError::ShuttingDown);
        }
        self.ensure_stored(&id, from).await?;
        // A call that came from a peer runs here or nowhere: whatever hop count the
        // peer claims, it is never forwarded again.
        let net = match self.net.get() {
            Some(net) if from.is_none() && hops < MAX_HOPS => net,
            _ => return self.call_local(id, input, asked).await,
        };
        let Meta { manifest, size, .. } = self.meta(&id).await?;
        // Nobody here or among the neighbours has it warm: ask who near here has,
        // and wait (briefly) for the answer rather than start it cold.
        let warm = if self.warm_nearby(net, &id) {
            Vec::new()
        } else {
            net.find_warm(id).await
        };
        let (ranked, fallbacks) = self.rank(net, &id, &manifest, size, &warm);
        let explain = Ranked::list(&ranked);
        // A fault a peer claims for a function that has run well here before is
        // checked on the next candidate (protocol's attempt rules).
        let known_good = self
            .fuel_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&id);
        let mut attempts = Attempts::new(
            &ranked,
            &fallbacks,
            &self.config.attempts,
            manifest.timeout_ms,
        )
        .confirm_faults(known_good);
        let mut last: Option<CallError> = None;
        while let Step::Try {
            peer,
            local,
            deadline_ms,
        } = attempts.next(now_ms())
        {
            let started = std::time::Instant::now();
            let result = if local {
                self.call_local(id, input.clone(), asked).await
            } else {
                let patience = deadline_ms.saturating_sub(now_ms());
                let call = Forward {
                    id,
                    manifest: &manifest,
                    input: &input,
                    hops,
                    asked,
                };
                self.forward(net, peer, &call, patience).await
            };
            let answer = result.as_ref().map(|_| ()).map_err(CallError::kind);
            if !local {
                self.observe(
                    peer,
                    attempts.predicted_ms(peer),
                    started.elapsed(),
                    &answer,
                    known_good,
                );
            }
            let verdict = attempts.on_answer(peer, answer);
            for &(liar, kind) in attempts.refuted() {
                tracing::info!(peer = %liar, claimed = %kind, "a peer's fault was not reproduced by a later candidate; penalised");
                self.refuted(net, liar, kind);
            }
            match (verdict, result) {
                (Verdict::TryNext { penalise }, Err(e)) => {
                    tracing::debug!(%peer, error = %e, "candidate did not take the call; trying the next");
                    if penalise {
                        net.penalise(peer);
                    }
                    last = Some(e);
                }
                (_, Err(e)) => return Err(e),
                (_, Ok(mut receipt)) => {
                    // A peer cannot have used more fuel than the call's budget.
                    receipt.fuel_used = receipt.fuel_used.min(manifest.fuel);
                    self.note_fuel(&id, receipt.fuel_used, manifest.fuel);
                    receipt.placement = explain;
                    return Ok(receipt);
                }
            }
        }
        match last {
            Some(e) => Err(e),
            // Nobody was capable, not even this node: let the local path say why.
            None => self.call_local(id, input, asked).await,
        }
    }

    /// Makes sure the module is stored here, fetching it from peers if needed.
    pub(crate) async fn ensure_stored(
        &self,
        id: &FunctionId,
        from: Option<PeerId>,
    ) -> Result<(), CallError> {
        if self.store.contains(id) || self.runtime.cached(id).is_some() {
            return Ok(());
        }
        let Some(net) = self.net.get() else {
            return Err(InvokeError::NotFound(*id).into());
        };
        let bytes = net.fetch(*id, from).await.map_err(|e| {
            tracing::info!(function = %id, error = %e, "fetch failed");
            match e {
                // Too much fetching here now: busy (another peer may take the call).
                FetchError::TooManyFetches { .. } | FetchError::TooManyWaiters { .. } => {
                    CallError::FetchBusy(e)
                }
                _ => CallError::from(InvokeError::NotFound(*id)),
            }
        })?;
        // The network verified the bytes against the id; publishing validates the
        // module against the ABI and stores it atomically.
        let published = self
            .publish(bytes)
            .await
            .map_err(|e| InvokeError::Invalid(format!("fetched module refused: {e}")))?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        debug_assert_eq!(published.id, *id);
        net.provide(*id).await;
        Ok(())
    }

    /// Manifest, module size and determinism of a stored function.
    pub(crate) async fn meta(&self, id: &FunctionId) -> Result<Meta, CallError> {
        if let Some(m) = self
            .metas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            return Ok(m.clone());
        }
        let store = std::sync::Arc::clone(&self.store);
        let id2 = *id;
        let meta = tokio::task::spawn_blocking(move || -> Result<Meta, InvokeError> {
            let bytes = store.get(&id2)?;
            let info = module::inspect(&bytes, u64::MAX)
                .map_err(|e| InvokeError::Invalid(e.to_string()))?;
            Ok(Meta {
                manifest: info.manifest,
                size: info.size,
                nondeterministic: info.nondeterministic,
            })
        })
        .await
        .map_err(|e| InvokeError::Internal(e.to_string()))??;
        insert_capped(
            &mut self.metas.lock().unwrap_or_else(PoisonError::into_inner),
            *id,
            meta.clone(),
        );
        Ok(meta)
    }

    pub(crate) fn note_fuel(&self, id: &FunctionId, fuel: u64, budget: u64) {
        let mut seen = self
            .fuel_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match seen.get_mut(id) {
            Some(average) => average.note(fuel, budget),
            None => insert_capped(&mut seen, *id, FuelAverage::first(fuel, budget)),
        }
    }

    /// Whether this node (unless a gateway) or a neighbour whose advert it holds has
    /// `id` warm.
    pub(crate) fn warm_nearby(&self, net: &Net, id: &FunctionId) -> bool {
        (self.config.max_concurrent_calls > 0 && self.runtime.cached(id).is_some())
            || net
                .peers()
                .usable()
                .any(|(_, _, advert)| advert.cached.may_contain(id))
    }

    /// Candidates, best first, and fallbacks: this node, its neighbours, and the
    /// peers a warm answer named (`warm`, on the adverts the answer carried).
    pub(crate) fn rank(
        &self,
        net: &Net,
        id: &FunctionId,
        manifest: &Manifest,
        size: u64,
        warm: &[WarmCandidate],
    ) -> (Vec<placement::Candidate<PeerId>>, Vec<PeerId>) {
        let expected_fuel = self
            .fuel_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map_or(DEFAULT_EXPECTED_FUEL.min(manifest.fuel), |a| a.value());
        // The function's documents: a candidate lacking them fetches them first.
        let docs = manifest.state_docs();
        let doc_keys: Vec<FunctionId> = docs.iter().map(placement::doc_key).collect();
        let state_bytes = docs.iter().filter_map(|d| self.state.doc_bytes(d)).sum();
        let state_here = docs.iter().all(|d| self.state.holds(d));
        let call = Call {
            function: *id,
            memory_bytes: manifest.memory_bytes,
            expected_fuel,
            module_bytes: size,
            state_docs: &doc_keys,
            state_bytes,
        };
        let mut local = self.local_capacity();
        let table = net.peers();
        if let Some(a) = &table.local {
            local.coord = a.coord;
        }
        let warm_here = self.runtime.cached(id).is_some();
        let mut views = Vec::new();
        // A gateway (max_concurrent_calls = 0) is never a candidate itself.
        if self.config.max_concurrent_calls > 0 {
            views.push(PeerView {
                peer: self.peer_id,
                advert: &local,
                measured_rtt_ms: Some(0.0),
                local: true,
                known_warm: Some(warm_here),
                known_state: Some(state_here),
                penalty: 0.0,
                conduct_ms: 0.0,
            });
        }
        let conduct = self.conduct.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now_ms();
        for (peer, info, advert) in table.usable() {
            views.push(PeerView {
                peer,
                advert,
                measured_rtt_ms: info.rtt_ms,
                local: false,
                known_warm: None,
                known_state: None,
                penalty: table.penalty(&peer),
                conduct_ms: conduct.cost_ms(now, &peer),
            });
        }
        for w in warm {
            if views.iter().any(|v| v.peer == w.peer) {
                continue;
            }
            views.push(PeerView {
                peer: w.peer,
                advert: &w.advert,
                measured_rtt_ms: table.rtt_ms(&w.peer).or(w.rtt_ms),
                local: false,
                known_warm: None,
                known_state: None,
                penalty: table.penalty(&w.peer),
                conduct_ms: conduct.cost_ms(now, &w.peer),
            });
        }
        drop(conduct);
        let ranked = placement::rank(&call, views.iter().copied(), &local, &Default::default());
        // One subnet brings at most a few candidates (Sybil bound).
        let ranked = subnet::cap_candidates(ranked, subnet::MAX_CANDIDATES_PER_SUBNET, |p| {
            table
                .book
                .get(p)
                .and_then(|e| e.extra.as_ref())
                .and_then(crate::net::subnet_of)
        });
        // Fallbacks matter only when the capable candidates cannot fill the attempts.
        let fallbacks = if ranked.len() < self.config.attempts.max_attempts {
            placement::fallbacks(&call, views, &local)
        } else {
            Vec::new()
        };
        (ranked, fallbacks)
    }

    /// This node's advert, without identity, sequence, time and coordinate (the network
    /// task fills those in).
    pub(crate) fn local_advert(&self) -> Advert {
        let mut advert = self.local_capacity();
        for id in self
            .runtime
            .loaded_ids()
            .iter()
            .chain(self.store.compiled_ids().iter())
        {
            advert.cached.insert(id);
        }
        // Held documents go in the same summary, so placement can tell who has a
        // function's state.
        for doc in self.state.names() {
            advert.cached.insert(&placement::doc_key(&doc));
        }
        advert
    }

    /// What this node offers right now, without the cache filter (which placement does
    /// not need for the local candidate: it knows exactly what is warm here). Cheap:
    /// built on every call.
    fn local_capacity(&self) -> Advert {
        let (running, queued) = self.load_now();
        let clamp = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
        let max_concurrent = clamp(self.config.max_concurrent_calls);
        let max_queued = clamp(self.config.max_queued_calls);
        // A spent CPU share, hours when nothing is offered, or shutting down read as
        // "full".
        let (running, queued) = if self.cpu_share_spent() || !self.offering() || self.draining() {
            (max_concurrent, max_queued)
        } else {
            (
                clamp(running).min(max_concurrent),
                clamp(queued).min(max_queued),
            )
        };
        Advert {
            peer: [0; 32],
            seq: 0,
            issued_ms: 0,
            device: self.device,
            cores: clamp(std::thread::available_parallelism().map_or(1, usize::from)),
            cpu_score: self.cpu_score,
            memory_bytes: self.config.caps.max_memory_bytes,
            max_concurrent,
            max_queued,
            running,
            queued,
            backends: self.runtime.backend().advert_bit(),
            coord: Default::default(),
            cached: Cached::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_function_caches_are_capped() {
        let mut map = std::collections::HashMap::new();
        for i in 0..MAX_FUNCTIONS_REMEMBERED + 100 {
            let id = FunctionId::of(&i.to_le_bytes());
            insert_capped(&mut map, id, i);
            assert!(map.len() <= MAX_FUNCTIONS_REMEMBERED);
            assert_eq!(map.get(&id), Some(&i), "the new entry is kept");
        }
    }

    #[test]
    fn a_call_error_s_kind_decides_whether_it_is_retried() {
        assert!(CallError::ShuttingDown.kind().retry_elsewhere());
        let caps = InvokeError::Incapable(kith_protocol::LimitExceeded {
            limit: "timeout_ms",
            asked: 1000,
            cap: 500,
        });
        assert!(CallError::from(caps).kind().retry_elsewhere());
        let fuel = CallError::from(InvokeError::OutOfFuel { limit: 1 });
        assert!(!fuel.kind().retry_elsewhere());
    }
}
