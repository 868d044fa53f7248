//! Verified calls (`verify = N`): the call runs on N candidates of distinct networks at
//! once, and the answer a strict majority agrees on is returned with every receipt.
//! The rules are protocol's (`kith_protocol::verify::Vote`); this drives them.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kith_protocol::receipt::digest;
use kith_protocol::verify::{Answer, Failure, MAX_VERIFY, Outcome, Vote, majority};
use kith_protocol::{FunctionId, conduct};
use libp2p::PeerId;

use crate::call::{CallError, Ranked, Receipt, Verification};
use crate::forward::Forward;
use crate::node::Node;
use crate::scheduler::Meta;

/// One finished attempt: the peer, whether it is this node, what placement predicted,
/// how long it took, and its result.
type Finished = (
    PeerId,
    bool,
    f64,
    std::time::Duration,
    Result<Receipt, CallError>,
);

impl Node {
    /// Runs a call on `verify` peers of distinct networks and returns the majority's
    /// answer (for `verify` ≤ 1, a plain [`Node::call`]).
    ///
    /// # Errors
    /// `bad_request` for `verify` over [`MAX_VERIFY`]; `not_deterministic` for a
    /// function whose result depends on the clock or state; `no_quorum` when no
    /// answer has a strict majority; the majority's own error when it agrees on one.
    pub async fn call_verified(
        self: &Arc<Self>,
        id: FunctionId,
        input: Vec<u8>,
        verify: u64,
    ) -> Result<Receipt, CallError> {
        let started = Instant::now();
        let verify = match u8::try_from(verify) {
            Ok(v) if v <= MAX_VERIFY => v,
            _ => return Err(CallError::VerifyOutOfBounds(verify)),
        };
        let meta = match self.meta_for_call(&id).await {
            Ok(m) => m,
            Err(e) => {
                let result = Err(e);
                self.count(&id, &result, started.elapsed());
                return result;
            }
        };
        let verify = verify.max(meta.manifest.verify);
        if verify <= 1 {
            return self.call(id, input, 0).await;
        }
        let result = self.run_verified(id, input, verify, &meta).await;
        self.count(&id, &result, started.elapsed());
        result
    }

    /// The function's meta, fetching the module first if it is not stored.
    async fn meta_for_call(&self, id: &FunctionId) -> Result<Meta, CallError> {
        self.ensure_stored(id, None).await?;
        self.meta(id).await
    }

    async fn run_verified(
        self: &Arc<Self>,
        id: FunctionId,
        input: Vec<u8>,
        verify: u8,
        meta: &Meta,
    ) -> Result<Receipt, CallError> {
        if self.draining() {
            return Err(CallError::ShuttingDown);
        }
        if let Some(import) = &meta.nondeterministic {
            return Err(CallError::NotDeterministic {
                function: id,
                import: import.clone(),
                verify,
            });
        }
        let Some(net) = self.net.get() else {
            return Err(CallError::NoQuorum {
                wanted: usize::from(verify),
                needed: majority(usize::from(verify)),
                detail: "this node runs without a network".into(),
            });
        };
        let warm = if self.warm_nearby(net, &id) {
            Vec::new()
        } else {
            net.find_warm(id).await
        };
        let (ranked, fallbacks) = self.rank(net, &id, &meta.manifest, meta.size, &warm);
        let table = net.peers();
        let subnet = |p: &PeerId| {
            table
                .book
                .get(p)
                .and_then(|e| e.extra.as_ref())
                .and_then(crate::net::subnet_of)
        };
        let order = ranked
            .iter()
            .map(|c| {
                (
                    c.peer,
                    c.local,
                    if c.local { None } else { subnet(&c.peer) },
                )
            })
            .chain(fallbacks.iter().map(|p| (*p, false, subnet(p))));
        let mut vote = Vote::new(order, verify, &self.config.attempts);
        let predicted = |peer: &PeerId| {
            ranked.iter().find(|c| c.peer == *peer).map_or(0.0, |c| {
                c.cost.total_ms - c.cost.penalty_ms - c.cost.conduct_ms
            })
        };
        let asked = self.asked_here();
        let input = Arc::new(input);
        let mut running = FuturesUnordered::new();
        // Answers with output, kept until the vote is decided.
        let mut outputs: Vec<Receipt> = Vec::new();
        let mut faults: Vec<(PeerId, CallError)> = Vec::new();
        loop {
            for (peer, local) in vote.start() {
                let node = Arc::clone(self);
                let input = Arc::clone(&input);
                let manifest = meta.manifest.clone();
                let predicted_ms = predicted(&peer);
                let timeout_ms = manifest.timeout_ms;
                running.push(async move {
                    let t = Instant::now();
                    let result = if local {
                        node.call_local(id, input.to_vec(), &asked).await
                    } else {
                        let call = Forward {
                            id,
                            manifest: &manifest,
                            input: &input,
                            hops: 0,
                            asked: &asked,
                        };
                        let patience = timeout_ms + node.config.attempts.forward_slack_ms;
                        node.forward(net, peer, &call, patience).await
                    };
                    (peer, local, predicted_ms, t.elapsed(), result) as Finished
                });
            }
            if !matches!(vote.outcome(), Outcome::Pending) {
                break;
            }
            let Some((peer, local, predicted_ms, elapsed, result)) = running.next().await else {
                break;
            };
            let answer = result.as_ref().map(|_| ()).map_err(CallError::kind);
            if !local {
                self.observe(peer, predicted_ms, elapsed, &answer, false);
            }
            match result {
                Ok(receipt) => {
                    vote.on_answer(peer, Answer::Output(digest(&receipt.output)));
                    outputs.push(receipt);
                }
                Err(e) => match vote.on_failure(peer, local, e.kind()) {
                    None => faults.push((peer, e)),
                    Some(Failure::Penalise) => {
                        tracing::debug!(%peer, error = %e, "a verifying candidate failed; replaced");
                        net.penalise(peer);
                    }
                    Some(Failure::Replace) => {
                        tracing::debug!(%peer, error = %e, "a verifying candidate did not run the call; replaced");
                    }
                },
            }
        }
        let explain = Ranked::list(&ranked);
        match vote.outcome() {
            Outcome::Decided {
                answer,
                agree,
                dissent,
            } => {
                let dissent: Vec<(PeerId, String)> = dissent
                    .into_iter()
                    .map(|(peer, a)| (peer, describe(&a)))
                    .collect();
                for (peer, said) in &dissent {
                    self.outvoted
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%peer, function = %id, answered = %said, "outvoted: a peer's answer to a verified call differs from the majority's; penalised");
                    if *peer != self.peer_id {
                        net.penalise(*peer);
                        self.note_conduct(*peer, 0.0, 0.0, conduct::Outcome::Outvoted);
                    }
                }
                match answer {
                    Answer::Output(hash) => {
                        // The majority's receipts first (this node's own if it
                        // voted), then the dissenters'.
                        outputs.sort_by_key(|r| {
                            (digest(&r.output) != hash, r.executed_by != self.peer_id)
                        });
                        let receipts = outputs.iter().map(|r| r.proof).collect();
                        let mut chosen = outputs.swap_remove(0);
                        chosen.fuel_used = chosen.fuel_used.min(meta.manifest.fuel);
                        self.note_fuel(&id, chosen.fuel_used, meta.manifest.fuel);
                        chosen.placement = explain;
                        chosen.verification = Some(Verification {
                            wanted: vote.wanted(),
                            agree,
                            receipts,
                            dissent,
                        });
                        Ok(chosen)
                    }
                    Answer::Fault(kind) => Err(faults
                        .into_iter()
                        .find(|(p, e)| e.kind() == kind && agree.contains(p))
                        .map_or(
                            CallError::NoQuorum {
                                wanted: vote.wanted(),
                                needed: majority(vote.wanted()),
                                detail: format!("the majority answered {kind}"),
                            },
                            |(_, e)| e,
                        )),
                }
            }
            Outcome::NoQuorum {
                votes,
                wanted,
                networks,
            } => {
                let said: Vec<String> = votes
                    .iter()
                    .map(|(p, a)| format!("{p}: {}", describe(a)))
                    .collect();
                tracing::warn!(function = %id, wanted, networks, answers = ?said, "no quorum for a verified call");
                Err(CallError::NoQuorum {
                    wanted,
                    needed: majority(wanted),
                    detail: if votes.len() < majority(wanted) {
                        format!(
                            "{} answered ({} candidates of distinct networks were capable){}",
                            votes.len(),
                            networks,
                            list(&said)
                        )
                    } else {
                        format!("the {} answers disagree{}", votes.len(), list(&said))
                    },
                })
            }
            Outcome::Pending => Err(CallError::NoQuorum {
                wanted: vote.wanted(),
                needed: majority(vote.wanted()),
                detail: "the vote did not finish".into(),
            }),
        }
    }
}

/// An answer as text: the output's hash, or the fault's kind.
fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Output(hash) => format!("output {}", hex::encode(hash)),
        Answer::Fault(kind) => kind.to_string(),
    }
}

fn list(said: &[String]) -> String {
    if said.is_empty() {
        String::new()
    } else {
        format!(": {}", said.join("; "))
    }
}
