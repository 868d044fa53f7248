//! What the protocol tests share.

use kith_protocol::capacity::{Advert, Cached, DeviceClass, backend};
use kith_protocol::vivaldi::Coord;

/// An idle laptop's advert: 4 slots, 16 queue places, 256 MiB per call, nothing cached.
pub(crate) fn advert() -> Advert {
    Advert {
        peer: [0; 32],
        seq: 1,
        issued_ms: 0,
        device: DeviceClass::Laptop,
        cores: 4,
        cpu_score: 5_500_000,
        memory_bytes: 256 << 20,
        max_concurrent: 4,
        max_queued: 16,
        running: 0,
        queued: 0,
        backends: backend::CRANELIFT,
        coord: Coord::default(),
        cached: Cached::default(),
    }
}
