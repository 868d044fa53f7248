//! What a node reports about itself: `GET /v1/status`, the status page, `/metrics`.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Node;
use crate::runtime::RuntimeStats;
use crate::store::StoreStats;

/// Status for `GET /v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// kith version.
    pub version: &'static str,
    /// This node's id (a libp2p peer id).
    pub node_id: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Functions stored.
    pub functions_stored: usize,
    /// Calls that returned output.
    pub calls_served: u64,
    /// Calls that failed (any error, including the function's own).
    pub calls_failed: u64,
    /// Calls refused as busy.
    pub calls_refused: u64,
    /// Modules fetched from peers (and verified) since start.
    pub fetched: u64,
    /// Modules served to peers since start.
    pub fetches_served: u64,
    /// Calls this node placed on another peer since start.
    pub forwarded: u64,
    /// Calls run here for other peers since start.
    pub remote_calls_served: u64,
    /// Addresses the peer network listens on.
    pub listen_addrs: Vec<String>,
    /// Peers connected now.
    pub peers_connected: usize,
    /// Measured CPU speed, fuel per millisecond.
    pub cpu_score: u32,
    /// Calls running now.
    pub calls_running: usize,
    /// Calls waiting for a slot now.
    pub calls_queued: usize,
    /// Store counters.
    pub store: StoreStats,
    /// Runtime counters.
    pub runtime: RuntimeStats,
    /// The engine tag of cached artifacts.
    pub engine_tag: String,
    /// What runs functions here: `cranelift` or `interpreter`.
    pub backend: String,
    /// What this node offers the network.
    pub capacity: Capacity,
    /// The most called functions here.
    pub top_functions: Vec<crate::metrics::TopFunction>,
    /// The last errors, newest first.
    pub recent_errors: Vec<crate::metrics::RecentError>,
    /// Alias records known.
    pub alias_records: usize,
    /// Application state held here.
    pub state: StateStatus,
    /// Reachability: AutoNAT's verdict, relayed addresses, hole punches (absent when
    /// offline).
    pub nat: Option<crate::net::Reachability>,
    /// Receipts: calls served to and consumed from peers, fuel donated, receipts
    /// refused, answers outvoted (`GET /v1/ledger` has every account).
    pub receipts: ReceiptStatus,
}

/// Receipts in the status.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptStatus {
    /// Calls this node ran for peers, and the fuel it donated.
    pub served: kith_protocol::ledger::Account,
    /// Calls peers ran for this node (receipts checked).
    pub consumed: kith_protocol::ledger::Account,
    /// Calls this node ran for its own callers.
    pub local: kith_protocol::ledger::Account,
    /// Peers' receipts refused (forged, for another call or output, impossible fuel).
    pub refused: u64,
    /// Answers to verified calls that lost the vote.
    pub outvoted: u64,
    /// The peers this node served most (by fuel).
    pub top_served: Vec<crate::receipts::PeerAccount>,
    /// The peers that served this node most (by fuel).
    pub top_consumed: Vec<crate::receipts::PeerAccount>,
}

/// Application state in the status.
#[derive(Debug, Clone, Serialize)]
pub struct StateStatus {
    /// Documents held.
    pub documents: usize,
    /// Their bytes on disk.
    pub bytes: u64,
    /// `state_budget_bytes`.
    pub budget_bytes: u64,
    /// Bytes of Automerge sync messages sent to peers.
    pub sync_sent_bytes: u64,
    /// Bytes of Automerge sync messages received from peers.
    pub sync_received_bytes: u64,
    /// Documents a function named that this node lacked, asked of peers before the
    /// call ran (whether or not a peer had them).
    pub fetches: u64,
    /// Milliseconds calls waited for those fetches, in total.
    pub fetch_ms: u64,
    /// The key this node signs its functions' state changes with: a namespace's owner
    /// grants it (`kith grant NS --writer KEY`) to let this node's operator write.
    pub state_key: String,
    /// Sync messages refused because a change was unsigned, forged, or by a writer
    /// never granted, or because the peer flooded orphan changes (each penalised).
    pub refused_syncs: u64,
    /// Changes held until their dependencies arrive (capped; docs/security.md).
    pub orphans: usize,
    /// Grant records known.
    pub grant_records: usize,
}

/// What a node offers: its caps.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// Calls run at once (`max_concurrent_calls`).
    pub slots: usize,
    /// Calls queued beyond those (`max_queued_calls`).
    pub queue: usize,
    /// Share of the machine's CPU calls may use (`cpu_share`).
    pub cpu_share: f64,
    /// Guest memory granted to one call at most, bytes (`max_memory_bytes`).
    pub memory_bytes_per_call: u64,
    /// Local hours when capacity is offered (`offer_hours`), or `always`.
    pub offer_hours: String,
    /// False outside those hours.
    pub offering_now: bool,
    /// Store budget, bytes.
    pub store_budget_bytes: u64,
}

impl Node {
    fn receipt_status(&self) -> ReceiptStatus {
        let ledger = self.ledger(5, 0);
        ReceiptStatus {
            served: ledger.served,
            consumed: ledger.consumed,
            local: ledger.local,
            refused: self.receipts_refused.load(Ordering::Relaxed),
            outvoted: self.outvoted.load(Ordering::Relaxed),
            top_served: ledger.served_by_peer,
            top_consumed: ledger.consumed_by_peer,
        }
    }

    /// Current status.
    pub fn status(&self) -> Status {
        let store = self.store.stats();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            node_id: self.peer_id.to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            functions_stored: store.functions,
            calls_served: self.served.load(Ordering::Relaxed),
            calls_failed: self.failed.load(Ordering::Relaxed),
            calls_refused: self.refused.load(Ordering::Relaxed),
            fetched: self.fetched.load(Ordering::Relaxed),
            fetches_served: self.served_fetches.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            remote_calls_served: self.remote_served.load(Ordering::Relaxed),
            receipts: self.receipt_status(),
            listen_addrs: self.listen_addrs(),
            peers_connected: self.peers_connected(),
            cpu_score: self.cpu_score,
            calls_running: self.executor.running(),
            calls_queued: self.executor.queued(),
            store,
            runtime: self.runtime.stats(),
            engine_tag: self.runtime.engine_tag().to_owned(),
            backend: self.runtime.backend().to_string(),
            capacity: Capacity {
                slots: self.config.max_concurrent_calls,
                queue: self.config.max_queued_calls,
                cpu_share: self.config.cpu_share,
                memory_bytes_per_call: self.config.caps.max_memory_bytes,
                offer_hours: self
                    .config
                    .offer_hours
                    .map_or("always".to_owned(), |h| h.to_string()),
                offering_now: self.offering(),
                store_budget_bytes: self.config.store_budget_bytes,
            },
            top_functions: self.metrics.top_functions(10),
            recent_errors: self.metrics.recent_errors(),
            alias_records: self.aliases.record_count(),
            nat: self.reachability(),
            state: StateStatus {
                documents: self.state.names().len(),
                bytes: self.state.total_bytes(),
                budget_bytes: self.state.limits().budget_bytes,
                sync_sent_bytes: self.sync_sent.load(Ordering::Relaxed),
                sync_received_bytes: self.sync_received.load(Ordering::Relaxed),
                fetches: self.state_fetches.load(Ordering::Relaxed),
                fetch_ms: self.state_fetch_ms.load(Ordering::Relaxed),
                state_key: self.state_key(),
                refused_syncs: self.state_refused.load(Ordering::Relaxed),
                orphans: self.state.orphan_count(),
                grant_records: self.aliases.grant_book().len(),
            },
        }
    }
}
