//! One remote attempt of a call: send it over `/kith/invoke/2`, wait at most its
//! patience, check the answer's receipt, and note what the peer did
//! (`protocol::conduct`).

use std::sync::PoisonError;

use kith_protocol::receipt::Expected;
use kith_protocol::wire::{InvokeRequest, InvokeResponse};
use kith_protocol::{ErrorKind, FunctionId, Manifest, conduct};
use libp2p::PeerId;

use crate::call::{CallError, Receipt};
use crate::clock::now_ms;
use crate::net::Net;
use crate::node::Node;
use crate::receipts::Asked;

/// A call to forward: what to run, and for whom.
pub(crate) struct Forward<'a> {
    /// The function.
    pub id: FunctionId,
    /// Its manifest (the receipt's fuel and time are checked against it).
    pub manifest: &'a Manifest,
    /// The input.
    pub input: &'a [u8],
    /// Hops so far.
    pub hops: u8,
    /// The entry and call id (this node's).
    pub asked: &'a Asked,
}

impl Node {
    /// Runs `call` on `peer`, waiting at most `patience_ms` for the answer.
    ///
    /// # Errors
    /// The peer's error; `unreachable` when it says nothing in time; `bad_receipt`
    /// when its receipt does not check out.
    pub(crate) async fn forward(
        &self,
        net: &Net,
        peer: PeerId,
        call: &Forward<'_>,
        patience_ms: u64,
    ) -> Result<Receipt, CallError> {
        self.forwarded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A peer that runs the call answers within its timeout (with the output or a
        // `timeout` error); one that says nothing for longer has hung or is gone.
        let patience = std::time::Duration::from_millis(patience_ms);
        let request = InvokeRequest {
            id: call.id,
            hops: call.hops + 1,
            call: call.asked.call,
            input: call.input.to_vec(),
        };
        let answer = match tokio::time::timeout(patience, net.invoke(peer, request)).await {
            Ok(answer) => answer,
            Err(_) => {
                return Err(CallError::Remote {
                    kind: ErrorKind::Unreachable,
                    message: format!(
                        "peer {peer} did not answer within {} ms (the function's timeout_ms plus {} ms)",
                        patience.as_millis(),
                        self.config.attempts.forward_slack_ms
                    ),
                    peer,
                });
            }
        };
        match answer {
            Ok(InvokeResponse::Ok { receipt, output }) => {
                self.check_receipt(
                    peer,
                    &receipt,
                    Expected {
                        entry: call.asked.entry,
                        executor: [0; 32],
                        call: call.asked.call,
                        function: call.id,
                        input: call.input,
                        output: &output,
                        fuel: call.manifest.fuel,
                        timeout_ms: call.manifest.timeout_ms,
                    },
                )?;
                Ok(Receipt {
                    output,
                    function: call.id,
                    executed_by: peer,
                    fuel_used: receipt.receipt.fuel_used,
                    wall: std::time::Duration::from_micros(receipt.receipt.wall_us),
                    cold: None,
                    placement: Vec::new(),
                    proof: *receipt,
                    verification: None,
                })
            }
            Ok(InvokeResponse::Err { kind, message }) => Err(CallError::Remote {
                kind,
                message,
                peer,
            }),
            Err(e) => {
                let kind = e.kind();
                if kind == ErrorKind::BadReceipt {
                    self.receipts_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%peer, function = %call.id, error = %e, "refused a receipt");
                }
                Err(CallError::Remote {
                    kind,
                    message: format!("{kind}: {e}"),
                    peer,
                })
            }
        }
    }

    /// Notes what `peer` did with an attempt placement predicted would take
    /// `predicted_ms` (for a function that ran well before when `known_good`).
    pub(crate) fn observe(
        &self,
        peer: PeerId,
        predicted_ms: f64,
        elapsed: std::time::Duration,
        answer: &Result<(), ErrorKind>,
        known_good: bool,
    ) {
        let outcome = match answer {
            Ok(()) => conduct::Outcome::Answered,
            Err(ErrorKind::Unreachable) => conduct::Outcome::TimedOut,
            Err(kind) if known_good && kind.is_guest_fault() => conduct::Outcome::Suspect(*kind),
            Err(kind) => conduct::Outcome::Failed(*kind),
        };
        self.note_conduct(peer, predicted_ms, elapsed.as_secs_f64() * 1e3, outcome);
    }

    /// Notes one outcome of `peer` in the conduct table.
    pub(crate) fn note_conduct(
        &self,
        peer: PeerId,
        predicted_ms: f64,
        elapsed_ms: f64,
        outcome: conduct::Outcome,
    ) {
        self.conduct
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(now_ms(), peer, predicted_ms, elapsed_ms, outcome);
    }

    /// `peer` answered with a fault (`kind`) the next candidate did not reproduce.
    pub(crate) fn refuted(&self, net: &Net, peer: PeerId, kind: ErrorKind) {
        net.penalise(peer);
        self.note_conduct(peer, 0.0, 0.0, conduct::Outcome::Refuted(kind));
    }
}
