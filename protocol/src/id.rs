//! Content ids.

use std::fmt;
use std::str::FromStr;

/// The id of a function: the blake3 hash of its module bytes.
///
/// Its text form is 64 lowercase hex characters. One hash pins both the code and the
/// limits the code asks for, since the manifest travels inside the module.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId([u8; 32]);

impl FunctionId {
    /// Length of the text form, in characters.
    pub const HEX_LEN: usize = 64;

    /// The id of `bytes`: their blake3 hash.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps a raw 32-byte hash.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes of the hash.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Returns true if and only if `bytes` hash to this id.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        // blake3::Hash compares in constant time; not a secret here, but free.
        blake3::Hash::from_bytes(self.0) == blake3::hash(bytes)
    }

    /// The text form: 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FunctionId({})", self.to_hex())
    }
}

/// Why a text form is not a function id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The text is not 64 characters long.
    #[error("a function id is 64 lowercase hex characters, got {0} characters")]
    Length(usize),
    /// The text has a character other than `0-9a-f`.
    #[error("a function id is 64 lowercase hex characters, found {0:?}")]
    Character(char),
}

impl FromStr for FunctionId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(c) = s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(ParseIdError::Character(c));
        }
        if s.len() != Self::HEX_LEN {
            return Err(ParseIdError::Length(s.chars().count()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError::Length(s.len()))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for FunctionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for FunctionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let id = FunctionId::of(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(text.parse::<FunctionId>(), Ok(id));
        assert!(id.matches(b"hello"));
        assert!(!id.matches(b"hellO"));
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!("abc".parse::<FunctionId>(), Err(ParseIdError::Length(3)));
        let upper = "A".repeat(64);
        assert_eq!(
            upper.parse::<FunctionId>(),
            Err(ParseIdError::Character('A'))
        );
        let long = "a".repeat(65);
        assert_eq!(long.parse::<FunctionId>(), Err(ParseIdError::Length(65)));
        assert!("é".repeat(32).parse::<FunctionId>().is_err());
    }
}
