//! What a call ends with: its receipt (output, who ran it, fuel, placement) or its
//! error, each error with its protocol error kind.

use std::time::Duration;

use kith_protocol::placement::Cost;
use kith_protocol::{ErrorKind, FunctionId};
use libp2p_identity::PeerId;
use serde::Serialize;

use crate::runtime::{InvokeError, LoadSource};

/// Why a call failed before or while running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// All call slots and queue places are taken.
    #[error(
        "busy: {running} calls running and {queued} queued (max_concurrent_calls = {max_running}, max_queued_calls = {max_queued})"
    )]
    Busy {
        /// Running now.
        running: usize,
        /// Waiting now.
        queued: usize,
        /// Slot limit.
        max_running: usize,
        /// Queue limit.
        max_queued: usize,
    },
    /// The operator's CPU share is used up for now.
    #[error(
        "busy: this node's cpu_share = {share} ({fuel_per_sec:.0} fuel per second) is used up; retry shortly"
    )]
    CpuShare {
        /// The configured share.
        share: f64,
        /// The fuel budget per second it allows.
        fuel_per_sec: f64,
    },
    /// The call itself failed.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// Outside the operator's offered hours.
    #[error(
        "busy: this node offers capacity only during local hours {hours} (offer_hours); try another peer"
    )]
    OffHours {
        /// The configured hours.
        hours: crate::config::OfferHours,
    },
    /// The node runs only functions its trusted publishers' aliases point at.
    #[error(
        "untrusted: function {function} is not the current target of any alias of a publisher this node trusts (trusted_only)"
    )]
    Untrusted {
        /// The function.
        function: FunctionId,
    },
    /// The function uses documents of a namespace this node does not host.
    #[error(
        "state_not_hosted: function {function} uses documents of namespace {namespace}, which this node does not host (state_namespaces); try another peer"
    )]
    StateNotHosted {
        /// The function.
        function: FunctionId,
        /// The namespace.
        namespace: kith_protocol::alias::Namespace,
    },
    /// The function's manifest names documents of a namespace whose owner has not
    /// granted it.
    #[error(
        "permission_denied: function {function} uses documents of namespace {namespace}, whose owner has not granted it (the owner runs `kith grant {namespace} --function {function}`, or grants an alias of the namespace that points at it)"
    )]
    NotGranted {
        /// The function.
        function: FunctionId,
        /// The namespace.
        namespace: kith_protocol::alias::Namespace,
    },
    /// The module is not stored here and this node is fetching too much right now.
    #[error(transparent)]
    FetchBusy(crate::net::FetchError),
    /// The node is shutting down: it takes no new calls (another peer may).
    #[error("shutting_down: this node is shutting down and takes no new calls; try another peer")]
    ShuttingDown,
    /// A verified call found no answer a strict majority of the peers asked agrees
    /// on (or too few peers of distinct networks to ask).
    #[error(
        "no_quorum: verify = {wanted} needs {needed} agreeing answers from peers of distinct networks; {detail}"
    )]
    NoQuorum {
        /// Peers asked for (N).
        wanted: usize,
        /// Agreeing answers needed.
        needed: usize,
        /// What was found.
        detail: String,
    },
    /// `verify` was asked for a function that is not deterministic.
    #[error(
        "not_deterministic: verify = {verify} was asked for function {function}, which imports `{import}`: its result depends on the moment or on state, so honest peers would disagree (only deterministic functions can be verified)"
    )]
    NotDeterministic {
        /// The function.
        function: FunctionId,
        /// The import.
        import: String,
        /// The verify asked for.
        verify: u8,
    },
    /// A `verify` above the most allowed.
    #[error("bad_request: verify = {0} is out of bounds (1 ..= {max})", max = kith_protocol::verify::MAX_VERIFY)]
    VerifyOutOfBounds(u64),
    /// The call failed on the peer that ran it.
    #[error("{message}")]
    Remote {
        /// The error kind the peer reported.
        kind: ErrorKind,
        /// Its message.
        message: String,
        /// The peer.
        peer: PeerId,
    },
}

impl CallError {
    /// The error kind (`docs/http-api.md`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Busy { .. } | Self::CpuShare { .. } | Self::OffHours { .. } => ErrorKind::Busy,
            Self::Untrusted { .. } => ErrorKind::Untrusted,
            Self::StateNotHosted { .. } => ErrorKind::StateNotHosted,
            Self::NotGranted { .. } => ErrorKind::PermissionDenied,
            Self::ShuttingDown => ErrorKind::ShuttingDown,
            Self::FetchBusy(_) => ErrorKind::Busy,
            Self::Remote { kind, .. } => *kind,
            Self::NoQuorum { .. } => ErrorKind::NoQuorum,
            Self::NotDeterministic { .. } => ErrorKind::NotDeterministic,
            Self::VerifyOutOfBounds(_) => ErrorKind::BadRequest,
            Self::Invoke(e) => e.kind(),
        }
    }
}

/// A finished call.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The output bytes.
    pub output: Vec<u8>,
    /// The function that ran.
    pub function: FunctionId,
    /// The node that ran it.
    pub executed_by: PeerId,
    /// Fuel used.
    pub fuel_used: u64,
    /// Wall time of the guest call.
    pub wall: Duration,
    /// Whether this call compiled the module, loaded it from cache, or neither (warm).
    pub cold: Option<LoadSource>,
    /// The ranking placement produced (empty when the call was not placed).
    pub placement: Vec<Ranked>,
    /// The receipt the executor signed (checked by this node when a peer ran it).
    pub proof: kith_protocol::receipt::Signed,
    /// For a verified call (`verify` > 1): the vote.
    pub verification: Option<Verification>,
}

/// How a verified call's vote went.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Peers asked for (N).
    pub wanted: usize,
    /// Peers that agreed with the answer returned.
    pub agree: Vec<PeerId>,
    /// Every checked receipt of an answer with output, the majority's first.
    pub receipts: Vec<kith_protocol::receipt::Signed>,
    /// Peers that answered otherwise, each with what it answered (an output hash in
    /// hex, or an error kind).
    pub dissent: Vec<(PeerId, String)>,
}

/// One ranked candidate, for `kith call --explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    /// The peer id.
    pub peer: String,
    /// True for the entry node itself.
    pub local: bool,
    /// The cost terms, in milliseconds.
    #[serde(flatten)]
    pub cost: Cost,
}

impl Ranked {
    /// Placement's ranking, as `--explain` shows it.
    pub(crate) fn list(ranked: &[kith_protocol::placement::Candidate<PeerId>]) -> Vec<Self> {
        ranked
            .iter()
            .map(|c| Self {
                peer: c.peer.to_string(),
                local: c.local,
                cost: c.cost,
            })
            .collect()
    }
}
