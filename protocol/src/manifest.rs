//! Manifests: what a function asks of the node that runs it.
//!
//! A manifest travels inside the module as a custom section named
//! [`crate::abi::MANIFEST_SECTION`], so the function id pins code and limits together.
//! Its payload is a UTF-8 JSON object (at most [`MAX_MANIFEST_BYTES`] bytes) with these
//! keys, all optional; a missing key takes the default below, an unknown key is an
//! error (a node must not silently ignore something a function asked for).
//!
//! | key                | type            | default       | bound                 |
//! |--------------------|-----------------|---------------|-----------------------|
//! | `abi`              | integer         | 1             | 1 or 2                |
//! | `memory_bytes`     | integer         | 33554432      | 64 KiB ..= 4 GiB      |
//! | `fuel`             | integer         | 1000000000    | 1 ..= 10^13           |
//! | `timeout_ms`       | integer         | 5000          | 1 ..= 600000          |
//! | `max_input_bytes`  | integer         | 1048576       | 0 ..= 1 GiB           |
//! | `max_output_bytes` | integer         | 1048576       | 0 ..= 1 GiB           |
//! | `table_elements`   | integer         | 65536         | 1 ..= 10^7            |
//! | `capabilities`     | array of string | `[]`          | none defined yet      |
//! | `state_read`       | array of string | `[]`          | ABI 2; at most 16     |
//! | `state_write`      | array of string | `[]`          | ABI 2; at most 16     |
//! | `verify`           | integer         | 1             | 1 ..= 7               |
//! | `args`             | array of string | `[]`          | WASI; at most 64      |
//! | `env`              | object of string| `{}`          | WASI; at most 64      |
//!
//! `verify` > 1 asks for every call to run on that many peers of distinct networks
//! and for the majority's answer (`crate::verify`); only deterministic functions may
//! ask for it (`crate::module` refuses one that imports the clock or state).

use serde::{Deserialize, Serialize};

use crate::abi::{ABI_VERSION, MIN_ABI_VERSION, STATE_ABI_VERSION};
use crate::state::{DocName, DocPattern};

/// Most entries in `state_read`, and in `state_write`.
pub const MAX_STATE_DOCS: usize = 16;

/// The most bytes a manifest section may hold.
pub const MAX_MANIFEST_BYTES: usize = 4096;

/// One WebAssembly page, in bytes.
pub const WASM_PAGE: u64 = 65_536;

const MAX_MEMORY: u64 = 4 * 1024 * 1024 * 1024;
const MAX_FUEL: u64 = 10_000_000_000_000;
const MAX_TIMEOUT_MS: u64 = 600_000;
const MAX_IO: u64 = 1024 * 1024 * 1024;
const MAX_TABLE_ELEMENTS: u64 = 10_000_000;

/// What a function asks of the node that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Manifest {
    /// The guest ABI version the module targets.
    pub abi: u32,
    /// Ceiling on the guest's linear memory, in bytes (rounded down to whole pages).
    pub memory_bytes: u64,
    /// Fuel budget per call: roughly one unit per executed WebAssembly instruction.
    pub fuel: u64,
    /// Wall-clock limit per call, in milliseconds.
    pub timeout_ms: u64,
    /// Largest input the function accepts, in bytes.
    pub max_input_bytes: u64,
    /// Largest output the function may produce, in bytes.
    pub max_output_bytes: u64,
    /// Ceiling on the elements of each of the guest's tables (its initial size, and
    /// what `table.grow` may reach).
    #[serde(skip_serializing_if = "is_default_table_elements")]
    pub table_elements: u64,
    /// Capabilities the function asks for. None are defined yet.
    pub capabilities: Vec<String>,
    /// Documents the function may read (ABI 2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_read: Vec<DocPattern>,
    /// Documents the function may read and write (ABI 2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_write: Vec<DocPattern>,
    /// Peers every call runs on, whose majority answer is returned (1: no
    /// verification).
    #[serde(skip_serializing_if = "is_one")]
    pub verify: u8,
    /// A WASI command's arguments after `argv[0]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// A WASI command's environment variables.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
}

impl Manifest {
    /// Default memory ceiling: 32 MiB.
    pub const DEFAULT_MEMORY_BYTES: u64 = 32 * 1024 * 1024;
    /// Default fuel budget: 10^9 units (on the order of a second of work).
    pub const DEFAULT_FUEL: u64 = 1_000_000_000;
    /// Default wall-clock limit: 5 s.
    pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
    /// Default input and output size limit: 1 MiB.
    pub const DEFAULT_IO_BYTES: u64 = 1024 * 1024;
    /// Default table ceiling: 65,536 elements (512 KiB per table).
    pub const DEFAULT_TABLE_ELEMENTS: u64 = 65_536;

    /// Parses and validates a manifest section's payload.
    ///
    /// # Errors
    /// Fails when the payload is larger than [`MAX_MANIFEST_BYTES`], is not a JSON object
    /// of the documented keys, names another ABI version, or a value is out of bounds.
    pub fn parse(payload: &[u8]) -> Result<Self, ManifestError> {
        if payload.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                size: payload.len(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(payload).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every value against its documented bound.
    ///
    /// # Errors
    /// Names the first key that is out of bounds.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !(MIN_ABI_VERSION..=ABI_VERSION).contains(&self.abi) {
            return Err(ManifestError::UnsupportedAbi {
                found: self.abi,
                supported: ABI_VERSION,
            });
        }
        for (key, list) in [
            ("state_read", &self.state_read),
            ("state_write", &self.state_write),
        ] {
            if list.is_empty() {
                continue;
            }
            if self.abi < STATE_ABI_VERSION {
                return Err(ManifestError::KeyNeedsAbi {
                    key,
                    needs: STATE_ABI_VERSION,
                    declared: self.abi,
                });
            }
            if list.len() > MAX_STATE_DOCS {
                return Err(ManifestError::TooManyDocs {
                    key,
                    count: list.len(),
                    limit: MAX_STATE_DOCS,
                });
            }
        }
        check("memory_bytes", self.memory_bytes, WASM_PAGE, MAX_MEMORY)?;
        check("fuel", self.fuel, 1, MAX_FUEL)?;
        check("timeout_ms", self.timeout_ms, 1, MAX_TIMEOUT_MS)?;
        check("max_input_bytes", self.max_input_bytes, 0, MAX_IO)?;
        check("max_output_bytes", self.max_output_bytes, 0, MAX_IO)?;
        check("table_elements", self.table_elements, 1, MAX_TABLE_ELEMENTS)?;
        check(
            "verify",
            u64::from(self.verify),
            1,
            u64::from(crate::verify::MAX_VERIFY),
        )?;
        let max = crate::wasi::MAX_ARGS as u64;
        check("args", self.args.len() as u64, 0, max)?;
        check("env", self.env.len() as u64, 0, max)?;
        let nul = |s: &String| s.contains('\0');
        if self.args.iter().any(nul)
            || self.env.values().any(nul)
            || self
                .env
                .keys()
                .any(|k| k.is_empty() || k.contains('=') || nul(k))
        {
            return Err(ManifestError::Malformed(
                "`args` and `env` may not hold NUL bytes, and an `env` name is not empty and has no `=`".into(),
            ));
        }
        if let Some(cap) = self.capabilities.first() {
            return Err(ManifestError::UnknownCapability(cap.clone()));
        }
        Ok(())
    }

    /// True when the function may read `doc` (`state_read` or `state_write` lists it).
    pub fn may_read(&self, doc: &DocName) -> bool {
        self.may_write(doc) || self.state_read.iter().any(|p| p.matches(doc))
    }

    /// True when the function may write `doc` (`state_write` lists it).
    pub fn may_write(&self, doc: &DocName) -> bool {
        self.state_write.iter().any(|p| p.matches(doc))
    }

    /// The documents the manifest names one by one (not by prefix), each once: the
    /// ones a node fetches before running the function.
    pub fn state_docs(&self) -> Vec<DocName> {
        let mut docs: Vec<DocName> = self
            .state_read
            .iter()
            .chain(&self.state_write)
            .filter_map(DocPattern::exact)
            .collect();
        docs.sort();
        docs.dedup();
        docs
    }

    /// The memory ceiling in whole WebAssembly pages.
    pub fn memory_pages(&self) -> u64 {
        self.memory_bytes / WASM_PAGE
    }

    /// The manifest as its canonical JSON payload.
    pub fn to_json(&self) -> String {
        // Serializing a struct of integers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            abi: MIN_ABI_VERSION,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            fuel: Self::DEFAULT_FUEL,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            max_input_bytes: Self::DEFAULT_IO_BYTES,
            max_output_bytes: Self::DEFAULT_IO_BYTES,
            table_elements: Self::DEFAULT_TABLE_ELEMENTS,
            capabilities: Vec::new(),
            state_read: Vec::new(),
            state_write: Vec::new(),
            verify: 1,
            args: Vec::new(),
            env: std::collections::BTreeMap::new(),
        }
    }
}

fn is_one(v: &u8) -> bool {
    *v == 1
}

fn is_default_table_elements(v: &u64) -> bool {
    *v == Manifest::DEFAULT_TABLE_ELEMENTS
}

fn check(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ManifestError> {
    if value < min || value > max {
        return Err(ManifestError::OutOfBounds {
            key,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The section is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest section is {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// Size of the section payload.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload is not a JSON object of the documented keys.
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// More than one manifest section.
    #[error("the module has {0} `kith.manifest` sections; at most one is allowed")]
    Duplicate(usize),
    /// The manifest names an ABI version this node does not speak.
    #[error(
        "manifest asks for ABI version {found}; this node speaks ABI versions 1 to {supported}"
    )]
    UnsupportedAbi {
        /// The version in the manifest.
        found: u32,
        /// The version this crate speaks.
        supported: u32,
    },
    /// A value is outside its documented bound.
    #[error("manifest `{key}` = {value} is out of bounds ({min} ..= {max})")]
    OutOfBounds {
        /// The key.
        key: &'static str,
        /// The value found.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A capability no ABI version defines.
    #[error("manifest asks for capability {0:?}, which this ABI does not define")]
    UnknownCapability(String),
    /// A key introduced by a later ABI version than the manifest declares.
    #[error(
        "manifest key `{key}` needs ABI version {needs}, but the manifest says \"abi\": {declared}; set \"abi\": {needs}"
    )]
    KeyNeedsAbi {
        /// The key.
        key: &'static str,
        /// The version that introduced it.
        needs: u32,
        /// The version the manifest declares.
        declared: u32,
    },
    /// Too many documents in `state_read` or `state_write`.
    #[error("manifest `{key}` lists {count} documents; at most {limit}")]
    TooManyDocs {
        /// The key.
        key: &'static str,
        /// How many it lists.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_all_defaults() {
        assert_eq!(Manifest::parse(b"{}"), Ok(Manifest::default()));
    }

    #[test]
    fn keys_override_defaults() {
        let m = Manifest::parse(br#"{"abi":1,"fuel":5,"memory_bytes":131072}"#).unwrap();
        assert_eq!(m.fuel, 5);
        assert_eq!(m.memory_pages(), 2);
        assert_eq!(m.timeout_ms, Manifest::DEFAULT_TIMEOUT_MS);
    }

    #[test]
    fn canonical_json_round_trips() {
        let m = Manifest {
            fuel: 77,
            ..Manifest::default()
        };
        assert_eq!(Manifest::parse(m.to_json().as_bytes()), Ok(m));
    }

    const NS: &str = "d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c";

    #[test]
    fn state_permissions() {
        let json = format!(
            r#"{{"abi":2,"state_read":["{NS}/catalog"],"state_write":["{NS}/cart-*","{NS}/visits"]}}"#
        );
        let m = Manifest::parse(json.as_bytes()).unwrap();
        let doc = |n: &str| -> DocName { format!("{NS}/{n}").parse().unwrap() };
        assert!(m.may_read(&doc("catalog")) && !m.may_write(&doc("catalog")));
        assert!(m.may_write(&doc("cart-alice")) && m.may_read(&doc("cart-alice")));
        assert!(m.may_write(&doc("visits")));
        assert!(!m.may_read(&doc("visits2")) && !m.may_read(&doc("other")));
        assert_eq!(m.state_docs(), vec![doc("catalog"), doc("visits")]);
        // The canonical JSON keeps them; an ABI 1 manifest's JSON is unchanged.
        assert_eq!(Manifest::parse(m.to_json().as_bytes()), Ok(m));
        assert!(!Manifest::default().to_json().contains("state"));

        let old = format!(r#"{{"state_read":["{NS}/catalog"]}}"#);
        let e = Manifest::parse(old.as_bytes()).unwrap_err();
        assert!(matches!(
            e,
            ManifestError::KeyNeedsAbi {
                key: "state_read",
                needs: 2,
                declared: 1
            }
        ));
        assert!(e.to_string().contains("\"abi\": 2"), "{e}");
        let petname = r#"{"abi":2,"state_read":["shop/catalog"]}"#;
        let e = Manifest::parse(petname.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        let many: Vec<String> = (0..17).map(|i| format!("\"{NS}/d{i}\"")).collect();
        let json = format!(r#"{{"abi":2,"state_write":[{}]}}"#, many.join(","));
        assert!(matches!(
            Manifest::parse(json.as_bytes()),
            Err(ManifestError::TooManyDocs { count: 17, .. })
        ));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert!(matches!(
            Manifest::parse(br#"{"abi":3}"#),
            Err(ManifestError::UnsupportedAbi { found: 3, .. })
        ));
        assert!(matches!(
            Manifest::parse(br#"{"fuel":0}"#),
            Err(ManifestError::OutOfBounds { key: "fuel", .. })
        ));
        assert!(matches!(
            Manifest::parse(br#"{"memory_bytes":1000}"#),
            Err(ManifestError::OutOfBounds {
                key: "memory_bytes",
                ..
            })
        ));
        assert!(matches!(
            Manifest::parse(br#"{"colour":"blue"}"#),
            Err(ManifestError::Malformed(_))
        ));
        assert!(matches!(
            Manifest::parse(br#"{"capabilities":["net"]}"#),
            Err(ManifestError::UnknownCapability(_))
        ));
        assert!(matches!(
            Manifest::parse(b"not json"),
            Err(ManifestError::Malformed(_))
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(&big),
            Err(ManifestError::TooLarge { .. })
        ));
    }
}
