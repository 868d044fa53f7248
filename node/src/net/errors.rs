//! Why a fetch or an invoke request failed.

use kith_protocol::FunctionId;
use kith_protocol::wire::WireError;
use libp2p::PeerId;

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No peer had it (or every peer that claimed to sent bad bytes).
    #[error("no peer could provide function {id} (asked {asked} peers, {bad} sent bad bytes)")]
    NotFound {
        /// The function.
        id: FunctionId,
        /// Peers asked.
        asked: usize,
        /// Peers that sent bytes that did not match the id.
        bad: usize,
    },
    /// As many fetches as a node runs at once are in progress.
    #[error(
        "busy: {limit} module fetches are in progress (the most a node runs at once); function {id} was not fetched"
    )]
    TooManyFetches {
        /// The function.
        id: FunctionId,
        /// The limit.
        limit: usize,
    },
    /// As many calls as may wait for one fetch are waiting.
    #[error(
        "busy: {limit} calls already wait for function {id} to be fetched (the most per fetch)"
    )]
    TooManyWaiters {
        /// The function.
        id: FunctionId,
        /// The limit.
        limit: usize,
    },
    /// The network task is gone.
    #[error("the network is shut down")]
    Closed,
}

/// Why an invoke request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeFailure {
    /// The peer could not be reached, hung up or timed out.
    #[error("peer {peer} failed: {reason}")]
    Transport {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
    /// The peer answered with something we cannot decode.
    #[error("peer {peer} sent a malformed answer: {error}")]
    Malformed {
        /// The peer.
        peer: PeerId,
        /// The decode error.
        error: WireError,
    },
    /// The network task is gone.
    #[error("the network is shut down")]
    Closed,
}

impl InvokeFailure {
    /// The error kind of the failed attempt: `bad_receipt` for an answer whose
    /// receipt is forged, else `unreachable` (either way the peer is penalised).
    pub fn kind(&self) -> kith_protocol::ErrorKind {
        match self {
            Self::Malformed {
                error: WireError::Receipt(_),
                ..
            } => kith_protocol::ErrorKind::BadReceipt,
            _ => kith_protocol::ErrorKind::Unreachable,
        }
    }
}
