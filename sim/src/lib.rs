//! kith-sim: a deterministic discrete-event simulator of kith networks.
//!
//! It answers an operator's question — for this device mix, geography, workload and
//! failures, what latency, success rate, bandwidth, energy and cost would kith give,
//! and how does that compare with one cloud region? — by driving `kith-protocol`'s
//! own code (capacity adverts, `placement::rank`, Vivaldi coordinates) in a simulated
//! world. See `docs/simulator.md` for the scenario format and the models.
//!
//! Determinism: a run is a pure function of the scenario and the seed. Randomness
//! comes from per-purpose streams ([`rng`]); events are ordered by (time, sequence);
//! nothing iterates a hash map; no wall clock is read.

pub mod engine;
pub mod geo;
pub mod report;
pub mod rng;
pub mod scale;
pub mod scenario;
pub mod svg;
pub mod world;

pub use engine::{Engine, Run};
pub use scenario::{Scenario, Strategy};
pub use world::World;
