//! Capacity adverts: what a peer offers the network, signed by the peer.
//!
//! A peer publishes an advert periodically (over gossipsub, by the node). Every other
//! peer decodes it with [`Advert::decode`], which refuses anything unsigned, badly
//! signed, stale, from the future, oversized or absurd. The byte layout is in
//! `docs/wire-format.md`; it is fixed-size, little-endian, and signed with the peer's
//! ed25519 key over a domain-separated prefix.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::FunctionId;
use crate::vivaldi::Coord;

/// Format version of the advert encoding.
pub const VERSION: u8 = 1;
/// Domain separation prefix of the signed bytes.
pub const SIGNING_CONTEXT: &[u8] = b"kith-advert-v1";
/// Bits in the cached-functions Bloom filter.
pub const BLOOM_BITS: usize = 2048;
const BLOOM_BYTES: usize = BLOOM_BITS / 8;
/// Hash functions of the Bloom filter.
pub const BLOOM_HASHES: usize = 4;
/// Length of the signed body, in bytes.
pub const BODY_LEN: usize = 1 + 32 + 8 + 8 + 1 + 2 + 4 + 8 + 2 + 2 + 2 + 2 + 1 + 20 + BLOOM_BYTES;
/// Length of an encoded advert (body + signature), in bytes.
pub const ENCODED_LEN: usize = BODY_LEN + 64;
/// How old an advert may be before it is dropped, in milliseconds.
pub const MAX_AGE_MS: u64 = 60_000;
/// How far in the future an advert's timestamp may be (clock skew), in milliseconds.
pub const MAX_SKEW_MS: u64 = 10_000;

/// A kind of device, for execution-time estimates and operators' reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// A microcontroller-class device.
    Thermostat,
    /// A home router.
    Router,
    /// A Raspberry Pi or similar board.
    Pi,
    /// A phone.
    Phone,
    /// A laptop or desktop.
    Laptop,
    /// A server or cloud VM.
    Server,
}

impl DeviceClass {
    fn to_byte(self) -> u8 {
        match self {
            Self::Thermostat => 0,
            Self::Router => 1,
            Self::Pi => 2,
            Self::Phone => 3,
            Self::Laptop => 4,
            Self::Server => 5,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Thermostat,
            1 => Self::Router,
            2 => Self::Pi,
            3 => Self::Phone,
            4 => Self::Laptop,
            5 => Self::Server,
            _ => return None,
        })
    }
}

/// Wasm backends a peer can compile with (a bit set).
pub mod backend {
    /// cranelift (optimising).
    pub const CRANELIFT: u8 = 1;
    /// singlepass (fast compile).
    pub const SINGLEPASS: u8 = 2;
    /// An interpreter (wasmi): no compiler, slower code; every device can run it.
    pub const INTERPRETER: u8 = 4;
}

/// Most share of a cache filter's bits an honest peer sets ([`Cached::plausible`]).
pub const MAX_BLOOM_FILL: f64 = 0.5;

/// The highest CPU score (fuel per ms, one core) placement believes: about 3.6x the
/// 5.5 M a current server core measures (docs/benchmarks.md (c)). A claim above it is
/// clamped to it; what the peer then really does is learned (`crate::conduct`).
pub const MAX_CPU_SCORE: u32 = 20_000_000;

/// A compact summary of the function ids a peer has cached: a Bloom filter.
#[derive(Clone, PartialEq, Eq)]
pub struct Cached([u8; BLOOM_BYTES]);

impl Default for Cached {
    fn default() -> Self {
        Self([0; BLOOM_BYTES])
    }
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: u32 = self.0.iter().map(|b| b.count_ones()).sum();
        write!(f, "Cached({set}/{BLOOM_BITS} bits set)")
    }
}

impl Cached {
    fn bits(id: &FunctionId) -> [usize; BLOOM_HASHES] {
        // A function id is a blake3 hash: its bytes are already uniform.
        let b = id.as_bytes();
        std::array::from_fn(|i| {
            usize::from(u16::from_le_bytes([b[2 * i], b[2 * i + 1]])) % BLOOM_BITS
        })
    }

    /// Adds a function id.
    pub fn insert(&mut self, id: &FunctionId) {
        for bit in Self::bits(id) {
            self.0[bit / 8] |= 1 << (bit % 8);
        }
    }

    /// Share of the filter's bits set, 0 to 1.
    pub fn fill(&self) -> f64 {
        let set: u32 = self.0.iter().map(|b| b.count_ones()).sum();
        f64::from(set) / BLOOM_BITS as f64
    }

    /// False for a filter too full to mean anything: more than [`MAX_BLOOM_FILL`] of
    /// its bits set (an honest peer reaches that only past ~350 cached functions and
    /// documents, where one in sixteen ids it lacks would test positive; a liar sets
    /// every bit to look warm for everything). Placement treats such a filter as
    /// empty.
    pub fn plausible(&self) -> bool {
        self.fill() <= MAX_BLOOM_FILL
    }

    /// True if the id may be cached (false positives possible, no false negatives).
    pub fn may_contain(&self, id: &FunctionId) -> bool {
        Self::bits(id)
            .iter()
            .all(|bit| self.0[bit / 8] & (1 << (bit % 8)) != 0)
    }
}

/// Bits of an advert sequence number below the boot time.
const SEQ_COUNTER_BITS: u32 = 20;

/// The sequence number before a node's first advert after it started at `boot_ms`
/// (wall clock, ms since the Unix epoch): the boot time in the high bits, a counter in
/// the low `SEQ_COUNTER_BITS` (20). Every advert adds one. A restarted node so starts
/// above every number it sent before — peers that remember its old adverts accept the
/// new ones at once — as long as its clock did not go back and it sent fewer than
/// 2^20 adverts per millisecond of uptime (it sends one every few seconds). A counter
/// that outgrows its bits carries into the time bits and stays increasing.
pub fn first_seq(boot_ms: u64) -> u64 {
    boot_ms.saturating_mul(1 << SEQ_COUNTER_BITS)
}

/// What a peer offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Advert {
    /// The peer's ed25519 public key.
    pub peer: [u8; 32],
    /// Sequence number; a peer's adverts increase strictly.
    pub seq: u64,
    /// Wall-clock time of issue, milliseconds since the Unix epoch.
    pub issued_ms: u64,
    /// Device class.
    pub device: DeviceClass,
    /// CPU cores.
    pub cores: u16,
    /// CPU speed: fuel units per millisecond on one core, measured at start.
    pub cpu_score: u32,
    /// Guest memory the peer gives one call, in bytes.
    pub memory_bytes: u64,
    /// Calls it runs at once.
    pub max_concurrent: u16,
    /// Calls it queues beyond those.
    pub max_queued: u16,
    /// Calls running now.
    pub running: u16,
    /// Calls queued now.
    pub queued: u16,
    /// Backends (see [`backend`]).
    pub backends: u8,
    /// Network coordinate.
    pub coord: Coord,
    /// Functions it has cached.
    pub cached: Cached,
}

/// Why an advert was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertError {
    /// Wrong length.
    #[error("advert is {0} bytes; an advert is exactly {ENCODED_LEN} bytes")]
    Length(usize),
    /// Unknown format version.
    #[error("advert format version {0} is not supported (this node speaks {VERSION})")]
    Version(u8),
    /// The signature does not verify against the advert's key.
    #[error("advert signature does not verify")]
    BadSignature,
    /// Older than [`MAX_AGE_MS`] or further in the future than [`MAX_SKEW_MS`].
    #[error("advert issued at {issued_ms} is stale or from the future (now {now_ms})")]
    Stale {
        /// Issue time.
        issued_ms: u64,
        /// Local time.
        now_ms: u64,
    },
    /// A value outside plausible bounds.
    #[error("advert field {0} is absurd")]
    Absurd(&'static str),
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
}

impl Advert {
    /// The signed body (see `docs/wire-format.md`).
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BODY_LEN);
        b.push(VERSION);
        b.extend_from_slice(&self.peer);
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.issued_ms.to_le_bytes());
        b.push(self.device.to_byte());
        b.extend_from_slice(&self.cores.to_le_bytes());
        b.extend_from_slice(&self.cpu_score.to_le_bytes());
        b.extend_from_slice(&self.memory_bytes.to_le_bytes());
        for v in [
            self.max_concurrent,
            self.max_queued,
            self.running,
            self.queued,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(self.backends);
        for v in self.coord.pos {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.coord.height.to_le_bytes());
        b.extend_from_slice(&self.coord.error.to_le_bytes());
        b.extend_from_slice(&self.cached.0);
        debug_assert_eq!(b.len(), BODY_LEN);
        b
    }

    /// The bytes the signature covers: [`SIGNING_CONTEXT`] then the body.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    /// Encodes the advert with a signature over [`Self::signing_bytes`], produced by
    /// `sign` (the node signs with its identity key).
    pub fn encode(&self, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&sign(&self.signing_bytes()));
        out
    }

    /// Decodes and validates an advert received at `now_ms`.
    ///
    /// # Errors
    /// See [`AdvertError`]: wrong size, unknown version, bad signature, stale, absurd.
    pub fn decode(bytes: &[u8], now_ms: u64) -> Result<Self, AdvertError> {
        if bytes.len() != ENCODED_LEN {
            return Err(AdvertError::Length(bytes.len()));
        }
        let mut r = Reader(bytes);
        let version = r.u8();
        if version != VERSION {
            return Err(AdvertError::Version(version));
        }
        let peer = r.take::<32>();
        let seq = r.u64();
        let issued_ms = r.u64();
        let device = DeviceClass::from_byte(r.u8()).ok_or(AdvertError::Absurd("device"))?;
        let cores = r.u16();
        let cpu_score = r.u32();
        let memory_bytes = r.u64();
        let (max_concurrent, max_queued, running, queued) = (r.u16(), r.u16(), r.u16(), r.u16());
        let backends = r.u8();
        let coord = Coord {
            pos: [r.f32(), r.f32(), r.f32()],
            height: r.f32(),
            error: r.f32(),
        };
        let cached = Cached(r.take::<BLOOM_BYTES>());
        let signature = Signature::from_bytes(&r.take::<64>());
        let advert = Self {
            peer,
            seq,
            issued_ms,
            device,
            cores,
            cpu_score,
            memory_bytes,
            max_concurrent,
            max_queued,
            running,
            queued,
            backends,
            coord,
            cached,
        };
        let key = VerifyingKey::from_bytes(&peer).map_err(|_| AdvertError::BadSignature)?;
        key.verify_strict(&advert.signing_bytes(), &signature)
            .map_err(|_| AdvertError::BadSignature)?;
        if issued_ms.saturating_add(MAX_AGE_MS) < now_ms
            || issued_ms > now_ms.saturating_add(MAX_SKEW_MS)
        {
            return Err(AdvertError::Stale { issued_ms, now_ms });
        }
        advert.check_sane()?;
        Ok(advert)
    }

    fn check_sane(&self) -> Result<(), AdvertError> {
        let absurd = |ok: bool, field| {
            if ok {
                Ok(())
            } else {
                Err(AdvertError::Absurd(field))
            }
        };
        absurd((1..=4096).contains(&self.cores), "cores")?;
        absurd((1..=100_000_000).contains(&self.cpu_score), "cpu_score")?;
        absurd(self.memory_bytes <= 1 << 40, "memory_bytes")?;
        absurd(self.max_concurrent >= 1, "max_concurrent")?;
        absurd(self.running <= self.max_concurrent, "running")?;
        absurd(self.queued <= self.max_queued, "queued")?;
        absurd(self.backends != 0, "backends")?;
        absurd(self.coord.is_sane(), "coord")
    }

    /// True if and only if the peer cannot take another call now.
    pub fn saturated(&self) -> bool {
        self.running >= self.max_concurrent && self.queued >= self.max_queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    pub(crate) fn sample(key: &SigningKey) -> Advert {
        let mut cached = Cached::default();
        cached.insert(&FunctionId::of(b"warm"));
        Advert {
            peer: key.verifying_key().to_bytes(),
            seq: 7,
            issued_ms: 1_000_000,
            device: DeviceClass::Pi,
            cores: 4,
            cpu_score: 200_000,
            memory_bytes: 256 << 20,
            max_concurrent: 2,
            max_queued: 16,
            running: 1,
            queued: 0,
            backends: backend::CRANELIFT,
            coord: Coord::default(),
            cached,
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(advert: &Advert, key: &SigningKey) -> Vec<u8> {
        advert.encode(|m| key.sign(m).to_bytes())
    }

    #[test]
    fn round_trips() {
        let k = key(1);
        let a = sample(&k);
        let bytes = signed(&a, &k);
        assert_eq!(bytes.len(), ENCODED_LEN);
        let back = Advert::decode(&bytes, 1_000_500).unwrap();
        assert_eq!(back, a);
        assert!(back.cached.may_contain(&FunctionId::of(b"warm")));
        assert!(!back.cached.may_contain(&FunctionId::of(b"cold")));
    }

    #[test]
    fn refuses_bad_adverts() {
        let k = key(1);
        let a = sample(&k);
        let good = signed(&a, &k);
        // Signed by another key.
        let forged = a.encode(|m| key(2).sign(m).to_bytes());
        assert_eq!(
            Advert::decode(&forged, 1_000_000),
            Err(AdvertError::BadSignature)
        );
        // Any flipped bit breaks the signature.
        let mut tampered = good.clone();
        tampered[60] ^= 1;
        assert_eq!(
            Advert::decode(&tampered, 1_000_000),
            Err(AdvertError::BadSignature)
        );
        // Unsigned (zero signature).
        let mut unsigned = good.clone();
        unsigned[BODY_LEN..].fill(0);
        assert_eq!(
            Advert::decode(&unsigned, 1_000_000),
            Err(AdvertError::BadSignature)
        );
        // Oversized and truncated.
        let mut big = good.clone();
        big.push(0);
        assert_eq!(
            Advert::decode(&big, 1_000_000),
            Err(AdvertError::Length(ENCODED_LEN + 1))
        );
        assert!(Advert::decode(&good[..10], 1_000_000).is_err());
        // Stale and from the future.
        assert!(matches!(
            Advert::decode(&good, 1_000_000 + MAX_AGE_MS + 1),
            Err(AdvertError::Stale { .. })
        ));
        assert!(matches!(
            Advert::decode(&good, 1_000_000 - MAX_SKEW_MS - 1),
            Err(AdvertError::Stale { .. })
        ));
        // Absurd but correctly signed.
        let absurd = Advert {
            running: 9,
            ..a.clone()
        };
        assert_eq!(
            Advert::decode(&signed(&absurd, &k), 1_000_000),
            Err(AdvertError::Absurd("running"))
        );
        let nan = Advert {
            coord: Coord {
                height: f32::NAN,
                ..Coord::default()
            },
            ..a
        };
        assert_eq!(
            Advert::decode(&signed(&nan, &k), 1_000_000),
            Err(AdvertError::Absurd("coord"))
        );
    }
}
