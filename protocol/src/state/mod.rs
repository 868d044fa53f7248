//! Application state: named Automerge documents that peers hold and sync.
//!
//! This module is sans-IO. It names documents, parses key paths, encodes the message
//! peers exchange about documents (a sync request/response on [`SYNC_PROTOCOL`],
//! carrying Automerge sync messages, which this crate does not look inside) and keeps
//! the book of who holds which document ([`Holders`]: a change goes to the document's
//! holders only). The node owns the documents themselves (`node/src/state/`,
//! `docs/state.md`).
//!
//! A document is named `NAMESPACE/NAME`: the namespace is a publisher's namespace id
//! (its ed25519 key, as for aliases), so once writes are signed a document's owner is
//! already in its name.

use std::fmt;
use std::str::FromStr;

mod bloom;
mod holders;
mod wire;
pub mod writes;

pub use bloom::{MAX_BLOOM_BITS_PER_ENTRY, MAX_BLOOM_PROBES, check_bloom};
pub use holders::{Config as HoldersConfig, Holders};
pub use wire::{MAX_ENCODED, SyncRequest, SyncResponse};

use crate::alias::Namespace;

/// The request-response protocol of document sync.
pub const SYNC_PROTOCOL: &str = "/kith/sync/1";
/// Longest document name (after the namespace), in bytes.
pub const MAX_NAME: usize = 64;
/// Largest Automerge sync message carried in one request or response, in bytes.
pub const MAX_SYNC_MESSAGE: usize = 8 << 20;
/// Deepest key path.
pub const MAX_PATH_DEPTH: usize = 32;
/// Longest key in a path, in bytes.
pub const MAX_KEY: usize = 256;
/// Encoding version of the sync messages (2: a refusal carries an error
/// kind). A peer speaking another version is refused with a message naming both.
const VERSION: u8 = 3;

/// Why a name, path or message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A bad document name.
    #[error("{0}")]
    Name(String),
    /// A bad key path.
    #[error("{0}")]
    Path(String),
    /// A malformed message.
    #[error("malformed state message: {0}")]
    Malformed(String),
    /// A message over its size limit.
    #[error("state message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// A document's full name: a publisher namespace and a name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocName {
    /// The publisher's namespace.
    pub namespace: Namespace,
    /// The name within it (1 to [`MAX_NAME`] bytes of `a-z 0-9 - _ .`).
    pub name: String,
}

impl DocName {
    /// A name, checked.
    ///
    /// # Errors
    /// When `name` is empty, too long or has other characters than `a-z 0-9 - _ .`.
    pub fn new(namespace: Namespace, name: &str) -> Result<Self, StateError> {
        check_name(name)?;
        Ok(Self {
            namespace,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Debug for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocName({self})")
    }
}

impl FromStr for DocName {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, StateError> {
        let doc: DocRef = s.parse()?;
        let namespace = doc.namespace.parse().map_err(|_| {
            StateError::Name(format!(
                "namespace \"{}\" is not 64 hex digits",
                doc.namespace
            ))
        })?;
        Ok(Self {
            namespace,
            name: doc.name,
        })
    }
}

/// A document as a user types it: `NAMESPACE/NAME`, where NAMESPACE is a namespace id
/// or the name of a key on the node (resolved there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    /// Namespace id or key name.
    pub namespace: String,
    /// Document name.
    pub name: String,
}

impl FromStr for DocRef {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, StateError> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| {
            StateError::Name(format!("\"{s}\" is not a document name (NAMESPACE/NAME)"))
        })?;
        let namespace_ok = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !namespace_ok {
            return Err(StateError::Name(format!(
                "namespace \"{namespace}\" must be a namespace id or a key name (a-z, 0-9, '-', '_', '.')"
            )));
        }
        check_name(name)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// A document permission in a manifest: `NAMESPACE/NAME` for one document, or
/// `NAMESPACE/PREFIX*` for every document of the namespace whose name starts with
/// PREFIX (`NAMESPACE/*`: all of them). The namespace is always a 64-hex namespace id:
/// a manifest travels with the module, and key names are local to a node.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocPattern {
    /// The namespace.
    pub namespace: Namespace,
    /// The name, or the prefix when `prefix` is set.
    pub name: String,
    /// True for `PREFIX*`.
    pub prefix: bool,
}

impl DocPattern {
    /// True when `doc` is covered.
    pub fn matches(&self, doc: &DocName) -> bool {
        doc.namespace == self.namespace
            && if self.prefix {
                doc.name.starts_with(&self.name)
            } else {
                doc.name == self.name
            }
    }

    /// The one document this pattern names, when it is not a prefix.
    pub fn exact(&self) -> Option<DocName> {
        (!self.prefix).then(|| DocName {
            namespace: self.namespace,
            name: self.name.clone(),
        })
    }
}

impl fmt::Display for DocPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}{}",
            self.namespace,
            self.name,
            if self.prefix { "*" } else { "" }
        )
    }
}

impl fmt::Debug for DocPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocPattern({self})")
    }
}

impl FromStr for DocPattern {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, StateError> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| {
            StateError::Name(format!(
                "\"{s}\" is not a document (NAMESPACE/NAME or NAMESPACE/PREFIX*)"
            ))
        })?;
        let namespace: Namespace = namespace.parse().map_err(|_| {
            StateError::Name(format!(
                "namespace \"{namespace}\" of \"{s}\" is not 64 hex digits (a manifest names documents by namespace id)"
            ))
        })?;
        let (name, prefix) = match name.strip_suffix('*') {
            Some("") => (String::new(), true),
            Some(p) => {
                check_name(p)?;
                (p.to_owned(), true)
            }
            None => {
                check_name(name)?;
                (name.to_owned(), false)
            }
        };
        Ok(Self {
            namespace,
            name,
            prefix,
        })
    }
}

impl serde::Serialize for DocPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DocPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn check_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(StateError::Name(format!(
            "document name \"{name}\" must be 1 to {MAX_NAME} characters of a-z, 0-9, '-', '_', '.'"
        )))
    }
}

/// Parses a key path: keys separated by `/` (a leading `/` is optional; the empty path
/// is the document's root). A key that is all digits indexes a list when the object
/// it is applied to is a list.
///
/// # Errors
/// On an empty key (`a//b`), a key over [`MAX_KEY`] bytes, or more than
/// [`MAX_PATH_DEPTH`] keys.
pub fn parse_path(path: &str) -> Result<Vec<String>, StateError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if keys.len() > MAX_PATH_DEPTH {
        return Err(StateError::Path(format!(
            "path \"{path}\" has {} keys; at most {MAX_PATH_DEPTH} (max_path_depth)",
            keys.len()
        )));
    }
    for key in &keys {
        if key.is_empty() {
            return Err(StateError::Path(format!(
                "path \"{path}\" has an empty key"
            )));
        }
        if key.len() > MAX_KEY {
            return Err(StateError::Path(format!(
                "a key of path \"{path}\" is {} bytes; at most {MAX_KEY}",
                key.len()
            )));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> DocName {
        DocName::new(Namespace([7; 32]), "cart").expect("valid")
    }

    #[test]
    fn names_parse_print_and_refuse_bad_input() {
        let text = format!("{}/cart", Namespace([7; 32]));
        let d: DocName = text.parse().expect("parses");
        assert_eq!(d, doc());
        assert_eq!(d.to_string(), text);
        assert!("cart".parse::<DocRef>().is_err());
        assert!("me/Cart".parse::<DocRef>().is_err());
        assert!("me/".parse::<DocRef>().is_err());
        assert!(
            "me/cart".parse::<DocName>().is_err(),
            "a petname is not an id"
        );
        let r: DocRef = "me/cart".parse().expect("a petname is fine in a reference");
        assert_eq!(r.namespace, "me");
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("").expect("root"), Vec::<String>::new());
        assert_eq!(parse_path("/").expect("root"), Vec::<String>::new());
        assert_eq!(parse_path("/a/0/b").expect("ok"), ["a", "0", "b"]);
        assert!(parse_path("a//b").is_err());
        assert!(parse_path(&"a/".repeat(40)).is_err());
        assert!(parse_path(&"k".repeat(300)).is_err());
    }
}
