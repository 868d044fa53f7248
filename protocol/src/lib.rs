//! kith's sans-IO core.
//!
//! Everything in this crate is pure logic: no sockets, no files, no runtime, no wall
//! clock. Time and randomness, when they appear, are values passed in. The node
//! (`kith-node`) drives this code against real I/O; the simulator (`kith-sim`) drives
//! the very same code against a simulated world.
//!
//! What lives here so far:
//! - [`FunctionId`]: the blake3 content id of a function's module bytes.
//! - [`manifest`]: the limits a function asks for, carried inside the module.
//! - [`abi`]: the names and numbers of the guest ABI (see `docs/abi.md`).
//! - [`module`]: structural checks of a module against the ABI, before it is stored.
//! - [`limits`]: the operator's caps and the effective per-call limits.
//! - [`alias`]: signed alias records, the registry peers sync, split resolution.
//! - [`admission`]: whether a node takes a call now, and the order of its checks.
//! - [`attempt`]: a call's attempts: next candidate, retries, giving up.
//! - [`fetch`]: a fetch session: provider order, chunks, verification, penalties.
//! - [`error`]: the error kinds, with wire code, HTTP status and disposition.
//! - [`neighbourhood`]: which peers a node hears adverts from (bounded, by RTT rings).
//! - [`peerbook`]: what a node knows of its peers (adverts, RTT, decaying penalties).
//! - [`conduct`]: what a node saw its peers do with its calls, as cost for placement.
//! - [`warm`]: who near here has a function warm (asked of the neighbours).
//! - [`subnet`]: peers and candidates per IPv4 /24 or IPv6 /48 (Sybil bounds).
//! - [`receipt`]: what the peer that ran a call signs about it; how the entry checks it.
//! - [`verify`]: redundant execution on peers of distinct networks, and the vote.
//! - [`ledger`]: receipts issued and received, summed per peer (bounded).
//! - [`wasi`]: WASI preview 1 command modules: names, signatures, errno values.
//! - [`capacity`], [`placement`], [`vivaldi`]: adverts, placement, network coordinates.

pub mod abi;
pub mod admission;
pub mod alias;
pub mod attempt;
pub mod capacity;
pub mod conduct;
pub mod error;
pub mod fetch;
pub mod grant;
mod id;
pub mod ledger;
pub mod limits;
pub mod manifest;
pub mod module;
pub mod neighbourhood;
pub mod peerbook;
pub mod placement;
pub mod ratelimit;
pub mod receipt;
pub mod state;
pub mod subnet;
pub mod verify;
pub mod vivaldi;
pub mod warm;
pub mod wasi;
pub mod wire;

pub use error::{Disposition, ErrorKind};
pub use id::{FunctionId, ParseIdError};
pub use limits::{Caps, EffectiveLimits, LimitExceeded};
pub use manifest::{Manifest, ManifestError};
