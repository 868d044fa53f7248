//! The manifest, encoded at compile time.
//!
//! [`Manifest::encode`] is a `const fn`, so [`crate::manifest!`] can place the JSON
//! payload in a custom section without a build script or proc macro.

/// The keys of a manifest; `None` leaves a key to the node's default.
///
/// See `docs/abi.md` for each key's meaning, default and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Ceiling on linear memory, in bytes.
    pub memory_bytes: Option<u64>,
    /// Fuel budget per call.
    pub fuel: Option<u64>,
    /// Wall-clock limit per call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Largest input, in bytes.
    pub max_input_bytes: Option<u64>,
    /// Largest output, in bytes.
    pub max_output_bytes: Option<u64>,
    /// Ceiling on the elements of each table.
    pub table_elements: Option<u64>,
    /// Documents the function may read: `NAMESPACE/NAME` or `NAMESPACE/PREFIX*`, the
    /// namespace as its 64-hex id (`kith key list` shows yours).
    pub state_read: Option<&'static [&'static str]>,
    /// Documents the function may read and write (same forms as `state_read`).
    pub state_write: Option<&'static [&'static str]>,
    /// Peers every call runs on, whose majority answer is returned (1 to 7; only for
    /// functions that use neither the clock nor state).
    pub verify: Option<u64>,
}

/// The newest ABI version this SDK targets. A manifest declares the oldest version
/// that has what it uses: 1 without state, 2 with `state_read` or `state_write`.
pub const ABI_VERSION: u64 = 2;

const MAX: usize = 4096;

struct Buf {
    bytes: [u8; MAX],
    len: usize,
}

impl Buf {
    const fn push_str(&mut self, s: &str) {
        let s = s.as_bytes();
        let mut i = 0;
        while i < s.len() {
            self.bytes[self.len] = s[i];
            self.len += 1;
            i += 1;
        }
    }

    const fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            self.bytes[self.len] = digits[n];
            self.len += 1;
        }
    }

    const fn list(&mut self, key: &str, value: Option<&[&str]>) {
        let Some(items) = value else {
            return;
        };
        self.push_str(",\"");
        self.push_str(key);
        self.push_str("\":[");
        let mut i = 0;
        while i < items.len() {
            if i > 0 {
                self.push_str(",");
            }
            self.push_str("\"");
            self.push_str(items[i]);
            self.push_str("\"");
            i += 1;
        }
        self.push_str("]");
    }

    const fn field(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.push_str(",\"");
            self.push_str(key);
            self.push_str("\":");
            self.push_u64(v);
        }
    }
}

impl Manifest {
    /// Every key left to the node's default.
    pub const DEFAULTS: Self = Self {
        memory_bytes: None,
        fuel: None,
        timeout_ms: None,
        max_input_bytes: None,
        max_output_bytes: None,
        table_elements: None,
        state_read: None,
        state_write: None,
        verify: None,
    };

    const fn write(&self) -> Buf {
        let mut b = Buf {
            bytes: [0; MAX],
            len: 0,
        };
        let uses_state = self.state_read.is_some() || self.state_write.is_some();
        b.push_str("{\"abi\":");
        b.push_u64(if uses_state { ABI_VERSION } else { 1 });
        b.field("memory_bytes", self.memory_bytes);
        b.field("fuel", self.fuel);
        b.field("timeout_ms", self.timeout_ms);
        b.field("max_input_bytes", self.max_input_bytes);
        b.field("max_output_bytes", self.max_output_bytes);
        b.field("table_elements", self.table_elements);
        b.list("state_read", self.state_read);
        b.list("state_write", self.state_write);
        b.field("verify", self.verify);
        b.push_str("}");
        b
    }

    /// Length of the JSON payload, in bytes.
    pub const fn encoded_len(&self) -> usize {
        self.write().len
    }

    /// The JSON payload. `N` must be [`Self::encoded_len`].
    ///
    /// # Panics
    /// At compile time when `N` is not the encoded length.
    pub const fn encode<const N: usize>(&self) -> [u8; N] {
        let b = self.write();
        assert!(b.len == N, "N must equal encoded_len()");
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = b.bytes[i];
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_json_with_only_the_set_keys() {
        const M: Manifest = Manifest {
            fuel: Some(1_000_000),
            timeout_ms: Some(0),
            ..Manifest::DEFAULTS
        };
        const LEN: usize = M.encoded_len();
        const BYTES: [u8; LEN] = M.encode::<LEN>();
        assert_eq!(
            std::str::from_utf8(&BYTES).unwrap(),
            r#"{"abi":1,"fuel":1000000,"timeout_ms":0}"#
        );
        assert_eq!(Manifest::DEFAULTS.encode::<9>(), *br#"{"abi":1}"#);
        let max = Manifest {
            fuel: Some(u64::MAX),
            ..Manifest::DEFAULTS
        };
        assert!(max.encode::<37>().ends_with(b"18446744073709551615}"));
        const S: Manifest = Manifest {
            state_read: Some(&["ns/a", "ns/b*"]),
            state_write: Some(&["ns/c"]),
            ..Manifest::DEFAULTS
        };
        const SLEN: usize = S.encoded_len();
        assert_eq!(
            std::str::from_utf8(&S.encode::<SLEN>()).unwrap(),
            r#"{"abi":2,"state_read":["ns/a","ns/b*"],"state_write":["ns/c"]}"#
        );
    }
}
