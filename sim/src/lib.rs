//! kith-sim: a deterministic discrete-event simulator of kith networks that drives
//! `kith-protocol`'s own code.
//!
//! Nothing is simulated yet: the simulator starts once placement lives in
//! `kith-protocol` (see the simulator issue). This crate exists so the workspace has
//! its intended shape and the dependency direction (sim -> protocol, never node) is
//! fixed from the start.

pub use kith_protocol as protocol;
