//! What peers ask of the node: the requests the network task hands over, each with
//! the channel its answer goes back on.

use kith_protocol::alias;
use kith_protocol::state;
use kith_protocol::wire::{FetchRequest, FetchResponse, InvokeRequest, InvokeResponse};
use libp2p::PeerId;
use tokio::sync::oneshot;

/// A request from a peer that the node must answer.
pub enum Inbound {
    /// A peer wants a module's bytes.
    Fetch {
        /// Who asks.
        peer: PeerId,
        /// The request.
        request: FetchRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<FetchResponse>,
    },
    /// Alias-registry traffic.
    Alias(AliasInbound),
    /// Document-sync traffic.
    State(StateInbound),
    /// A peer wants a call run here.
    Invoke {
        /// Who asks.
        peer: PeerId,
        /// The request.
        request: InvokeRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<InvokeResponse>,
    },
}

/// Alias-registry traffic the node must handle.
pub enum AliasInbound {
    /// A record announced on the alias topic (not yet verified).
    Record {
        /// The peer that relayed it.
        peer: PeerId,
        /// The encoded record.
        bytes: Vec<u8>,
    },
    /// A peer asks for our records (it sent its registry digest).
    Sync {
        /// Who asks.
        peer: PeerId,
        /// Its request.
        request: alias::SyncRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<alias::SyncResponse>,
    },
    /// A peer answered our sync request.
    Records {
        /// The peer.
        peer: PeerId,
        /// Its records (not yet verified).
        records: Vec<Vec<u8>>,
    },
    /// A peer connected for the first time since it was last disconnected.
    Connected(PeerId),
}

/// Document-sync traffic the node must handle.
pub enum StateInbound {
    /// A peer sent its sync message for a document.
    Sync {
        /// Who asks.
        peer: PeerId,
        /// Its request.
        request: state::SyncRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<state::SyncResponse>,
    },
    /// A peer connected for the first time since it was last disconnected.
    Connected(PeerId),
}
