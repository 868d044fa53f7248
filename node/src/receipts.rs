//! Receipts on the node: signing the ones it issues for the calls it runs, checking the
//! ones peers send with their answers, and the ledger of both (`protocol::receipt`,
//! `protocol::ledger`).

use kith_protocol::ErrorKind;
use kith_protocol::FunctionId;
use kith_protocol::ledger::{Account, Direction};
use kith_protocol::receipt::{self, CallId, Expected, Signed};
use libp2p::PeerId;

use crate::call::CallError;
use crate::clock::{lock, now_ms};
use crate::node::Node;

/// Who asked for a call and the id it gave the call: what the receipt names as entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asked {
    /// The entry node's ed25519 key.
    pub entry: [u8; 32],
    /// Its id for the call.
    pub call: CallId,
}

/// A new random call id.
pub(crate) fn new_call_id() -> CallId {
    let mut id = [0u8; 16];
    // Without the OS's randomness, a clock-and-counter id is still unique here.
    if getrandom::fill(&mut id).is_err() {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        id[..8].copy_from_slice(&now_ms().to_le_bytes());
        id[8..].copy_from_slice(&n.to_le_bytes());
    }
    CallId(id)
}

/// The ed25519 key inside a peer id, if it is an ed25519 peer id (every kith node's
/// is).
pub fn ed25519_of(peer: &PeerId) -> Option<[u8; 32]> {
    // Ed25519 peer ids inline their public key: an identity multihash (code 0,
    // length 36) of the key's protobuf encoding.
    let bytes = peer.to_bytes();
    let key = match bytes.as_slice() {
        [0, 36, key @ ..] if key.len() == 36 => key,
        _ => return None,
    };
    libp2p::identity::PublicKey::try_decode_protobuf(key)
        .ok()?
        .try_into_ed25519()
        .ok()
        .map(|k| k.to_bytes())
}

/// The ledger as the HTTP API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerView {
    /// Calls this node ran for peers (receipts issued).
    pub served: Account,
    /// Calls peers ran for this node (receipts received and checked).
    pub consumed: Account,
    /// Calls this node ran for its own callers.
    pub local: Account,
    /// Per peer served, most fuel first.
    pub served_by_peer: Vec<PeerAccount>,
    /// Per peer consumed, most fuel first.
    pub consumed_by_peer: Vec<PeerAccount>,
    /// The latest receipts, newest first.
    pub recent: Vec<RecentReceipt>,
    /// Accounts dropped to stay within the cap (`protocol::ledger::MAX_PEERS`).
    pub dropped_accounts: u64,
}

/// One peer's account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerAccount {
    /// The peer.
    pub peer: String,
    /// Its account.
    #[serde(flatten)]
    pub account: Account,
}

/// One kept receipt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentReceipt {
    /// When it was recorded (ms since the Unix epoch).
    pub at_ms: u64,
    /// `served` or `consumed`.
    pub direction: Direction,
    /// The other peer.
    pub peer: String,
    /// The receipt.
    pub receipt: Signed,
}

impl Node {
    /// This node's ed25519 key, as receipts name it.
    pub(crate) fn receipt_key(&self) -> [u8; 32] {
        self.state_key.verifying_key().to_bytes()
    }

    /// A call made here: this node is its entry.
    pub(crate) fn asked_here(&self) -> Asked {
        Asked {
            entry: self.receipt_key(),
            call: new_call_id(),
        }
    }

    /// Signs the receipt of a call this node ran.
    pub(crate) fn sign_receipt(
        &self,
        asked: &Asked,
        function: FunctionId,
        input: &[u8],
        output: &[u8],
        fuel_used: u64,
        wall: std::time::Duration,
    ) -> Signed {
        receipt::Receipt {
            function,
            input: receipt::digest(input),
            output: receipt::digest(output),
            fuel_used,
            wall_us: u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
            executor: self.receipt_key(),
            entry: asked.entry,
            call: asked.call,
        }
        .sign(&self.state_key)
    }

    /// Checks the receipt `peer` answered a call with; records it when it checks out.
    ///
    /// # Errors
    /// `bad_receipt` (the peer is penalised by the attempt rules) naming what is wrong.
    pub(crate) fn check_receipt(
        &self,
        peer: PeerId,
        signed: &Signed,
        expected: Expected<'_>,
    ) -> Result<(), CallError> {
        let refuse = |why: String| {
            self.receipts_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%peer, function = %expected.function, %why, "refused a receipt");
            CallError::Remote {
                kind: ErrorKind::BadReceipt,
                message: format!(
                    "bad_receipt: peer {peer} answered with a receipt that does not check out: {why}"
                ),
                peer,
            }
        };
        let Some(executor) = ed25519_of(&peer) else {
            return Err(refuse("its peer id holds no ed25519 key".into()));
        };
        // The signature was verified as the answer was decoded
        // (`InvokeResponse::decode`): only the fields are left.
        signed
            .check_fields(&Expected {
                executor,
                ..expected
            })
            .map_err(|e| refuse(e.to_string()))?;
        lock(&self.ledger).record(now_ms(), Direction::Consumed, peer, *signed);
        Ok(())
    }

    /// Records a receipt this node issued to `peer` (a call it ran for the peer).
    pub(crate) fn record_served(&self, peer: PeerId, signed: &Signed) {
        lock(&self.ledger).record(now_ms(), Direction::Served, peer, *signed);
    }

    /// Records a call this node ran for its own caller.
    pub(crate) fn record_local(&self, signed: &Signed) {
        lock(&self.ledger).record_local(now_ms(), signed);
    }

    /// The ledger, for the API and the status page (at most `recent` receipts and
    /// `peers` accounts per side).
    pub fn ledger(&self, peers: usize, recent: usize) -> LedgerView {
        let ledger = lock(&self.ledger);
        let (served, consumed, local) = ledger.totals();
        let by_peer = |side: Vec<(&PeerId, &Account)>| {
            let mut v: Vec<PeerAccount> = side
                .into_iter()
                .map(|(p, a)| PeerAccount {
                    peer: p.to_string(),
                    account: *a,
                })
                .collect();
            v.sort_by_key(|a| std::cmp::Reverse(a.account.fuel));
            v.truncate(peers);
            v
        };
        LedgerView {
            served,
            consumed,
            local,
            served_by_peer: by_peer(ledger.served().collect()),
            consumed_by_peer: by_peer(ledger.consumed().collect()),
            recent: ledger
                .recent()
                .rev()
                .take(recent)
                .map(|e| RecentReceipt {
                    at_ms: e.at_ms,
                    direction: e.direction,
                    peer: e.peer.to_string(),
                    receipt: e.receipt,
                })
                .collect(),
            dropped_accounts: ledger.dropped_accounts(),
        }
    }
}
