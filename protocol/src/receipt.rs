//! Receipts: what the peer that ran a call signs about it, so the node that placed
//! the call (and the client behind it) can check the answer instead of believing it.
//!
//! A receipt names the function, the blake3 hashes of the input and of the output,
//! the fuel used and the guest's wall time, the executing peer's ed25519 key, the
//! entry node's key (the node that asked) and the call id the entry chose. The
//! executing peer signs it with its identity key over [`SIGNING_CONTEXT`] and the
//! body. The entry [`Signed::check`]s every receipt against what it knows before it
//! answers: its own key and call id, the function and input it sent, the output it
//! received, the peer it sent the call to and the call's fuel budget. A receipt that
//! fails any check is refused ([`ReceiptError`]); the node penalises the peer and
//! retries elsewhere.
//!
//! What a receipt proves: that the key named as executor said "this input gave this
//! output with this much fuel", to this entry, for this call. It does not prove the
//! peer computed it honestly — a liar can sign a wrong output — which is what
//! redundant execution ([`crate::verify`]) is for: several signed answers from peers
//! on distinct networks, compared.
//!
//! The byte layout (fixed, [`ENCODED_LEN`] bytes, little-endian) is in
//! `docs/wire-format.md`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::FunctionId;

/// Format version of the receipt encoding.
pub const VERSION: u8 = 1;
/// Domain separation prefix of the signed bytes.
pub const SIGNING_CONTEXT: &[u8] = b"kith-receipt-v1";
/// Length of the signed body, in bytes.
pub const BODY_LEN: usize = 1 + 32 + 32 + 32 + 8 + 8 + 32 + 32 + 16;
/// Length of an encoded receipt (body and signature), in bytes.
pub const ENCODED_LEN: usize = BODY_LEN + 64;

/// The id an entry node gives one call (random, so receipts cannot be replayed
/// across calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub [u8; 16]);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What the executing peer says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The function that ran.
    pub function: FunctionId,
    /// blake3 of the input.
    pub input: [u8; 32],
    /// blake3 of the output.
    pub output: [u8; 32],
    /// Fuel used.
    pub fuel_used: u64,
    /// Wall time of the guest call, in microseconds.
    pub wall_us: u64,
    /// The executing peer's ed25519 key.
    pub executor: [u8; 32],
    /// The entry node's ed25519 key (the node that asked).
    pub entry: [u8; 32],
    /// The entry's id for the call.
    pub call: CallId,
}

/// A receipt with its executor's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// The receipt.
    pub receipt: Receipt,
    /// The executor's signature over [`SIGNING_CONTEXT`] and the body.
    pub signature: [u8; 64],
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not [`ENCODED_LEN`] bytes.
    #[error("a receipt is {ENCODED_LEN} bytes, this one is {0}")]
    Length(usize),
    /// An unknown format version.
    #[error("receipt format version {0} is not supported (this node reads {VERSION})")]
    Version(u8),
    /// The executor key is not a valid ed25519 key, or the signature does not verify.
    #[error("the receipt's signature does not verify against its executor's key")]
    BadSignature,
    /// A field differs from what the entry knows.
    #[error("the receipt's {field} is not this call's")]
    Mismatch {
        /// Which field: `executor`, `entry`, `call id`, `function`, `input hash`,
        /// `output hash`.
        field: &'static str,
    },
    /// More fuel than the call's budget, which no honest run can use.
    #[error("the receipt claims {claimed} fuel, over the call's budget of {budget}")]
    FuelOverBudget {
        /// Claimed.
        claimed: u64,
        /// The manifest's `fuel`.
        budget: u64,
    },
    /// More wall time than the call was allowed.
    #[error(
        "the receipt claims {claimed_ms} ms of wall time, over the call's timeout_ms of {timeout_ms}"
    )]
    WallOverTimeout {
        /// Claimed, in ms.
        claimed_ms: u64,
        /// The manifest's `timeout_ms`.
        timeout_ms: u64,
    },
}

/// What the entry knows about a call it placed, to check the receipt of its answer.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The entry's own key.
    pub entry: [u8; 32],
    /// The peer the call was sent to.
    pub executor: [u8; 32],
    /// The call id the entry sent.
    pub call: CallId,
    /// The function.
    pub function: FunctionId,
    /// The input sent.
    pub input: &'a [u8],
    /// The output received.
    pub output: &'a [u8],
    /// The manifest's fuel budget.
    pub fuel: u64,
    /// The manifest's wall-clock limit.
    pub timeout_ms: u64,
}

/// The hash of an input or output, as receipts carry it.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

impl Receipt {
    /// The body: version, function, input hash, output hash, fuel (u64), wall µs
    /// (u64), executor key, entry key, call id.
    pub fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&[VERSION]);
        put(self.function.as_bytes());
        put(&self.input);
        put(&self.output);
        put(&self.fuel_used.to_le_bytes());
        put(&self.wall_us.to_le_bytes());
        put(&self.executor);
        put(&self.entry);
        put(&self.call.0);
        b
    }

    /// The bytes the signature covers: [`SIGNING_CONTEXT`] then the body.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    /// Signs the receipt with `key`, which must be the executor's.
    pub fn sign(self, key: &SigningKey) -> Signed {
        Signed {
            signature: key.sign(&self.signing_bytes()).to_bytes(),
            receipt: self,
        }
    }
}

impl Signed {
    /// Encodes: the body, then the signature.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut b = [0u8; ENCODED_LEN];
        b[..BODY_LEN].copy_from_slice(&self.receipt.body());
        b[BODY_LEN..].copy_from_slice(&self.signature);
        b
    }

    /// The encoding as lowercase hex (the HTTP header `kith-receipt`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.encode())
    }

    /// Decodes the hex form.
    ///
    /// # Errors
    /// As [`Signed::decode`], or [`ReceiptError::Length`] for text that is not hex.
    pub fn from_hex(text: &str) -> Result<Self, ReceiptError> {
        let bytes = hex::decode(text.trim()).map_err(|_| ReceiptError::Length(text.len()))?;
        Self::decode(&bytes)
    }

    /// Decodes a receipt; the signature is verified too.
    ///
    /// # Errors
    /// A wrong length or version, or a signature that does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() != ENCODED_LEN {
            return Err(ReceiptError::Length(bytes.len()));
        }
        if bytes[0] != VERSION {
            return Err(ReceiptError::Version(bytes[0]));
        }
        let mut at = 1;
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let arr32 = |s: &[u8]| {
            let mut a = [0u8; 32];
            a.copy_from_slice(s);
            a
        };
        let u64_of = |s: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        };
        let function = FunctionId::from_bytes(arr32(take(32)));
        let input = arr32(take(32));
        let output = arr32(take(32));
        let fuel_used = u64_of(take(8));
        let wall_us = u64_of(take(8));
        let executor = arr32(take(32));
        let entry = arr32(take(32));
        let mut call = [0u8; 16];
        call.copy_from_slice(take(16));
        let mut signature = [0u8; 64];
        signature.copy_from_slice(take(64));
        let signed = Self {
            receipt: Receipt {
                function,
                input,
                output,
                fuel_used,
                wall_us,
                executor,
                entry,
                call: CallId(call),
            },
            signature,
        };
        signed.verify_signature()?;
        Ok(signed)
    }

    /// Checks the signature against the executor key the receipt names.
    ///
    /// # Errors
    /// [`ReceiptError::BadSignature`].
    pub fn verify_signature(&self) -> Result<(), ReceiptError> {
        let key = VerifyingKey::from_bytes(&self.receipt.executor)
            .map_err(|_| ReceiptError::BadSignature)?;
        key.verify_strict(
            &self.receipt.signing_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ReceiptError::BadSignature)
    }

    /// Checks the receipt of an answer against what the entry knows: every field,
    /// then the signature.
    ///
    /// # Errors
    /// The first check that fails.
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), ReceiptError> {
        self.check_fields(expected)?;
        self.verify_signature()
    }

    /// [`Signed::check`] without verifying the signature again: for a receipt that
    /// came from [`Signed::decode`], which verified it (an invoke answer's does).
    ///
    /// # Errors
    /// The first field that differs.
    pub fn check_fields(&self, expected: &Expected<'_>) -> Result<(), ReceiptError> {
        let r = &self.receipt;
        let mismatch = |field| Err(ReceiptError::Mismatch { field });
        if r.executor != expected.executor {
            return mismatch("executor");
        }
        if r.entry != expected.entry {
            return mismatch("entry");
        }
        if r.call != expected.call {
            return mismatch("call id");
        }
        if r.function != expected.function {
            return mismatch("function");
        }
        if r.input != digest(expected.input) {
            return mismatch("input hash");
        }
        if r.output != digest(expected.output) {
            return mismatch("output hash");
        }
        if r.fuel_used > expected.fuel {
            return Err(ReceiptError::FuelOverBudget {
                claimed: r.fuel_used,
                budget: expected.fuel,
            });
        }
        // The guest's wall time is within its timeout (the watchdog's 5 ms tick may
        // let it run a little over, and a loaded machine a little more).
        let claimed_ms = r.wall_us / 1000;
        if claimed_ms > expected.timeout_ms.saturating_mul(2).saturating_add(1000) {
            return Err(ReceiptError::WallOverTimeout {
                claimed_ms,
                timeout_ms: expected.timeout_ms,
            });
        }
        Ok(())
    }
}

impl serde::Serialize for Signed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = &self.receipt;
        let mut st = s.serialize_struct("Receipt", 9)?;
        st.serialize_field("function", &r.function.to_hex())?;
        st.serialize_field("input_hash", &hex::encode(r.input))?;
        st.serialize_field("output_hash", &hex::encode(r.output))?;
        st.serialize_field("fuel_used", &r.fuel_used)?;
        st.serialize_field("wall_us", &r.wall_us)?;
        st.serialize_field("executor", &hex::encode(r.executor))?;
        st.serialize_field("entry", &hex::encode(r.entry))?;
        st.serialize_field("call_id", &r.call.to_string())?;
        st.serialize_field("signature", &hex::encode(self.signature))?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn receipt(input: &[u8], output: &[u8]) -> Receipt {
        Receipt {
            function: FunctionId::of(b"f"),
            input: digest(input),
            output: digest(output),
            fuel_used: 1234,
            wall_us: 5678,
            executor: key(1).verifying_key().to_bytes(),
            entry: key(2).verifying_key().to_bytes(),
            call: CallId([7; 16]),
        }
    }

    fn expected<'a>(input: &'a [u8], output: &'a [u8]) -> Expected<'a> {
        Expected {
            entry: key(2).verifying_key().to_bytes(),
            executor: key(1).verifying_key().to_bytes(),
            call: CallId([7; 16]),
            function: FunctionId::of(b"f"),
            input,
            output,
            fuel: 10_000,
            timeout_ms: 1000,
        }
    }

    #[test]
    fn a_signed_receipt_round_trips_and_checks() {
        let signed = receipt(b"in", b"out").sign(&key(1));
        let bytes = signed.encode();
        assert_eq!(bytes.len(), ENCODED_LEN);
        assert_eq!(Signed::decode(&bytes), Ok(signed));
        assert_eq!(Signed::from_hex(&signed.to_hex()), Ok(signed));
        assert_eq!(signed.check(&expected(b"in", b"out")), Ok(()));
    }

    #[test]
    fn every_field_is_checked() {
        let signed = receipt(b"in", b"out").sign(&key(1));
        let e = expected(b"in", b"out");
        let field = |r: Result<(), ReceiptError>| match r {
            Err(ReceiptError::Mismatch { field }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(signed.check(&expected(b"in", b"other"))),
            "output hash"
        );
        assert_eq!(
            field(signed.check(&expected(b"other", b"out"))),
            "input hash"
        );
        let mut x = e;
        x.call = CallId([8; 16]);
        assert_eq!(field(signed.check(&x)), "call id");
        let mut x = e;
        x.entry = [9; 32];
        assert_eq!(field(signed.check(&x)), "entry");
        let mut x = e;
        x.executor = key(3).verifying_key().to_bytes();
        assert_eq!(field(signed.check(&x)), "executor");
        let mut x = e;
        x.function = FunctionId::of(b"g");
        assert_eq!(field(signed.check(&x)), "function");
        let mut x = e;
        x.fuel = 100;
        assert_eq!(
            signed.check(&x),
            Err(ReceiptError::FuelOverBudget {
                claimed: 1234,
                budget: 100
            })
        );
        let mut slow = receipt(b"in", b"out");
        slow.wall_us = 60_000_000;
        assert!(matches!(
            slow.sign(&key(1)).check(&e),
            Err(ReceiptError::WallOverTimeout { .. })
        ));
    }

    #[test]
    fn forgeries_are_refused() {
        // Signed by another key than the executor it names.
        let forged = receipt(b"in", b"out").sign(&key(3));
        assert_eq!(
            forged.check(&expected(b"in", b"out")),
            Err(ReceiptError::BadSignature)
        );
        assert_eq!(
            Signed::decode(&forged.encode()),
            Err(ReceiptError::BadSignature)
        );
        // A field changed after signing.
        let mut bytes = receipt(b"in", b"out").sign(&key(1)).encode();
        bytes[100] ^= 1;
        assert_eq!(Signed::decode(&bytes), Err(ReceiptError::BadSignature));
        assert_eq!(
            Signed::decode(&bytes[1..]),
            Err(ReceiptError::Length(ENCODED_LEN - 1))
        );
        bytes[0] = 9;
        assert_eq!(Signed::decode(&bytes), Err(ReceiptError::Version(9)));
        assert!(Signed::from_hex("not hex").is_err());
    }
}
