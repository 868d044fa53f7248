//! Application state: the Automerge documents this node holds.
//!
//! Each document lives in memory as an [`AutoCommit`] and on disk as one append-only
//! file of checksummed frames (`state/<blake3 of the name>.doc`):
//!
//! ```text
//! frame := kind (1) | length (u32 LE) | blake3(payload)[..8] | payload
//! kind 0: the document's name (first frame)   kind 1: a full save   kind 2: changes
//! ```
//!
//! A write (local, imported or received from a peer) appends the new changes as one
//! frame and fsyncs before it is acknowledged, so an acknowledged change survives a
//! crash; a torn last frame (a crash mid-append) is cut at start. When the changes
//! outgrow the last full save the file is rewritten as one full save (atomically).
//! Bad input never touches the stored document: a failed edit is rolled back, a bad
//! import or sync message is refused before anything is applied or written.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, Value};
use kith_protocol::alias::Namespace;
use kith_protocol::state::{DocName, SyncResponse};
use serde::Serialize;

use crate::clock::lock;

mod file;
mod json;
mod ops;
mod sessions;
mod signed;
#[cfg(test)]
mod tests;
mod untrusted;

use file::*;
pub use file::{Decoded, decode_file, encode_frame};
use json::*;
pub use sessions::MAX_SYNC_SESSIONS;
pub use signed::{Authorities, Received, Writer};

pub use untrusted::{CHECK_CPU_SECS, CHECK_MEMORY, decode_sync_message, receive_sync_message};
use untrusted::{check_changes, guarded};

/// Limits on state.
#[derive(Debug, Clone)]
pub struct StateLimits {
    /// Disk budget for all documents together, in bytes.
    pub budget_bytes: u64,
    /// Largest document (its file), in bytes.
    pub max_doc_bytes: u64,
    /// Largest single write (a JSON value put, an import, a sync message), in bytes.
    pub max_change_bytes: u64,
    /// Namespaces whose documents this node hosts; empty: any.
    pub namespaces: Vec<Namespace>,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            budget_bytes: 256 << 20,
            max_doc_bytes: 16 << 20,
            max_change_bytes: 1 << 20,
            namespaces: Vec::new(),
        }
    }
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateOpError {
    /// A malformed name, path or value.
    #[error("{0}")]
    BadRequest(String),
    /// The document is not held here.
    #[error("document {0} is not held by this node (pin it with `kith state pin`)")]
    NoDocument(DocName),
    /// Nothing at the path.
    #[error("nothing at path \"{path}\" of document {doc}")]
    NoValue {
        /// The document.
        doc: DocName,
        /// The path.
        path: String,
    },
    /// The operator does not host this namespace.
    #[error("this node hosts only documents of the namespaces in state_namespaces; {0} is not one")]
    NotHosted(DocName),
    /// A size limit.
    #[error("{what} of {size} bytes exceeds {limit_name} = {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit's name.
        limit_name: &'static str,
        /// The limit.
        limit: u64,
    },
    /// Not an Automerge document, or a sync message Automerge refused.
    #[error("{0}")]
    BadDocument(String),
    /// The operation does not fit the document (e.g. incrementing a string).
    #[error("{0}")]
    Conflict(String),
    /// A sync message carrying a change that is unsigned, forged, or by a writer the
    /// namespace's owner never granted: nothing of it was applied.
    #[error("refused a sync message: {0}")]
    Unauthorised(#[from] kith_protocol::state::writes::Refusal),
    /// The writer may not write this document.
    #[error("{0}")]
    PermissionDenied(String),
    /// Disk trouble.
    #[error("state storage: {0}")]
    Io(#[from] io::Error),
}

impl StateOpError {
    /// The error kind (`docs/http-api.md`).
    pub fn kind(&self) -> kith_protocol::ErrorKind {
        use kith_protocol::ErrorKind as K;
        match self {
            Self::BadRequest(_) | Self::BadDocument(_) => K::BadRequest,
            Self::NoDocument(_) | Self::NoValue { .. } => K::NotFound,
            Self::NotHosted(_) | Self::Unauthorised(_) => K::Forbidden,
            Self::PermissionDenied(_) => K::PermissionDenied,
            Self::TooLarge { .. } => K::TooLarge,
            Self::Conflict(_) => K::Conflict,
            Self::Io(_) => K::Internal,
        }
    }
}

/// A document's summary.
#[derive(Debug, Clone, Serialize)]
pub struct DocInfo {
    /// Its name.
    pub doc: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Its heads (hex).
    pub heads: Vec<String>,
    /// Pinned by the operator.
    pub pinned: bool,
}

struct Entry {
    name: DocName,
    doc: AutoCommit,
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    bytes: u64,
    /// Bytes of the last full save in it.
    full_bytes: u64,
    /// Heads as last written to the file.
    persisted: Vec<automerge::ChangeHash>,
    /// Sync state per peer.
    peers: HashMap<String, sync::State>,
    pinned: bool,
    /// The writers' signatures of the document's changes, by change hash.
    signatures: HashMap<[u8; 32], [u8; 64]>,
    /// Signatures not yet written to the file.
    unsaved: Vec<([u8; 32], [u8; 64])>,
}

/// All documents held here.
pub struct StateStore {
    dir: PathBuf,
    limits: StateLimits,
    docs: Mutex<BTreeMap<DocName, Arc<Mutex<Entry>>>>,
    /// Bytes of all document files together.
    total: AtomicU64,
    /// Who may write what (the node's grant book); unset: only namespace keys.
    authorities: std::sync::OnceLock<Arc<dyn Authorities>>,
    /// Told apart from other places the same key writes from: the tail of this
    /// store's actor ids (new at every start).
    actor_suffix: [u8; 16],
    /// Changes received before their dependencies, by document and sender.
    orphans: Mutex<kith_protocol::state::writes::Orphans<String>>,
}

/// 16 bytes no other start of any node will pick.
fn actor_suffix(dir: &Path) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes(),
    );
    h.update(&std::process::id().to_le_bytes());
    h.update(dir.as_os_str().as_encoded_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

impl StateStore {
    /// Opens (creating) `data_dir/state` and loads every document in it. A file with
    /// a torn tail is cut back to its last good frame; one that cannot be read at all
    /// is moved aside (`.corrupt`) and reported, never deleted.
    ///
    /// # Errors
    /// When the directory cannot be created or read.
    pub fn open(data_dir: &Path, limits: StateLimits) -> Result<Self, StateOpError> {
        let dir = data_dir.join("state");
        fs::create_dir_all(&dir)?;
        let mut docs = BTreeMap::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "doc") {
                continue;
            }
            match Self::load(&path) {
                Ok(entry) => {
                    docs.insert(entry.name.clone(), Arc::new(Mutex::new(entry)));
                }
                Err(e) => {
                    let aside = path.with_extension("doc.corrupt");
                    tracing::error!(path = %path.display(), error = %e, aside = %aside.display(), "cannot load a state document; moved aside");
                    let _ = fs::rename(&path, &aside);
                }
            }
        }
        let total = docs.values().map(|e| lock(e).bytes).sum();
        tracing::info!(documents = docs.len(), bytes = total, "state opened");
        Ok(Self {
            actor_suffix: actor_suffix(&dir),
            dir,
            limits,
            docs: Mutex::new(docs),
            total: AtomicU64::new(total),
            authorities: std::sync::OnceLock::new(),
            orphans: Mutex::new(kith_protocol::state::writes::Orphans::default()),
        })
    }

    fn load(path: &Path) -> Result<Entry, String> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| e.to_string())?;
        let Decoded {
            name,
            mut doc,
            full_bytes,
            signatures,
            good,
        } = decode_file(&bytes)?;
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), kept = good, dropped = bytes.len() - good, "cut a torn tail off a state document (a crash during a write that was never acknowledged)");
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| e.to_string())?;
            f.set_len(good as u64).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| e.to_string())?;
        let persisted = doc.get_heads();
        Ok(Entry {
            name,
            doc,
            path: path.to_owned(),
            file,
            bytes: good as u64,
            full_bytes,
            persisted,
            peers: HashMap::new(),
            pinned: false,
            signatures,
            unsaved: Vec::new(),
        })
    }

    /// Whether this node may host `doc` (the operator's `state_namespaces`).
    pub fn allowed(&self, doc: &DocName) -> bool {
        self.hosts_namespace(&doc.namespace)
    }

    /// Whether the operator lets this node hold documents of `namespace`.
    pub fn hosts_namespace(&self, namespace: &Namespace) -> bool {
        self.limits.namespaces.is_empty() || self.limits.namespaces.contains(namespace)
    }

    /// The limits in force.
    pub fn limits(&self) -> &StateLimits {
        &self.limits
    }

    fn entry(&self, doc: &DocName) -> Option<Arc<Mutex<Entry>>> {
        lock(&self.docs).get(doc).cloned()
    }

    /// Bytes of all document files together.
    pub fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Sets `entry`'s size, keeping the total in step.
    fn set_bytes(&self, entry: &mut Entry, bytes: u64) {
        if bytes >= entry.bytes {
            self.total.fetch_add(bytes - entry.bytes, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(entry.bytes - bytes, Ordering::Relaxed);
        }
        entry.bytes = bytes;
    }

    /// The entry for `doc`, created (empty, on disk) if `create`.
    fn entry_or_create(
        &self,
        doc: &DocName,
        create: bool,
    ) -> Result<Arc<Mutex<Entry>>, StateOpError> {
        if let Some(e) = self.entry(doc) {
            return Ok(e);
        }
        if !create {
            return Err(StateOpError::NoDocument(doc.clone()));
        }
        if !self.allowed(doc) {
            return Err(StateOpError::NotHosted(doc.clone()));
        }
        let mut docs = lock(&self.docs);
        if let Some(e) = docs.get(doc) {
            return Ok(Arc::clone(e));
        }
        let path = self.dir.join(file_name(doc));
        let header = frame(NAME, doc.to_string().as_bytes());
        crate::fsutil::write_atomic(&path, &header, 0o600)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        let entry = Arc::new(Mutex::new(Entry {
            name: doc.clone(),
            doc: AutoCommit::new(),
            path,
            file,
            bytes: header.len() as u64,
            full_bytes: 0,
            persisted: Vec::new(),
            peers: HashMap::new(),
            pinned: false,
            signatures: HashMap::new(),
            unsaved: Vec::new(),
        }));
        self.total.fetch_add(header.len() as u64, Ordering::Relaxed);
        docs.insert(doc.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Writes what changed in `entry` since it was last persisted, as one frame, and
    /// fsyncs; rewrites the file as one full save when the changes outgrow it. Checks
    /// the document cap and the budget first; when over, the in-memory document is
    /// reloaded from the file, so nothing of the refused change remains.
    fn persist(&self, entry: &mut Entry) -> Result<(), StateOpError> {
        let heads = entry.doc.get_heads();
        if heads == entry.persisted {
            return Ok(());
        }
        let changes = entry.doc.save_after(&entry.persisted);
        let sig_bytes = if entry.unsaved.is_empty() {
            0
        } else {
            HEADER + entry.unsaved.len() * 96
        };
        let added = (HEADER + changes.len() + sig_bytes) as u64;
        let others = self
            .total
            .load(Ordering::Relaxed)
            .saturating_sub(entry.bytes);
        let over = if entry.bytes + added > self.limits.max_doc_bytes {
            Some((
                "the document",
                entry.bytes + added,
                "max_doc_bytes",
                self.limits.max_doc_bytes,
            ))
        } else if others + entry.bytes + added > self.limits.budget_bytes {
            Some((
                "all documents",
                others + entry.bytes + added,
                "state_budget_bytes",
                self.limits.budget_bytes,
            ))
        } else {
            None
        };
        if let Some((what, size, limit_name, limit)) = over {
            self.revert(entry)?;
            return Err(StateOpError::TooLarge {
                what,
                size,
                limit_name,
                limit,
            });
        }
        let mut out = Vec::with_capacity(2 * HEADER + changes.len() + entry.unsaved.len() * 96);
        if !entry.unsaved.is_empty() {
            let sigs = signatures_payload(entry.unsaved.iter().map(|(h, s)| (h, s)));
            out.extend_from_slice(&frame(SIGNATURES, &sigs));
        }
        out.extend_from_slice(&frame(CHANGES, &changes));
        entry.file.write_all(&out)?;
        entry.file.sync_data()?;
        self.set_bytes(entry, entry.bytes + added);
        entry.persisted = heads;
        entry.unsaved.clear();
        if entry.bytes > 64 * 1024 && entry.bytes > 2 * entry.full_bytes + 64 * 1024 {
            self.compact(entry)?;
        }
        Ok(())
    }

    /// Reloads `entry`'s document from its file (drops everything not persisted).
    fn revert(&self, entry: &mut Entry) -> Result<(), StateOpError> {
        let fresh = Self::load(&entry.path).map_err(|e| StateOpError::Io(io::Error::other(e)))?;
        entry.doc = fresh.doc;
        entry.persisted = fresh.persisted;
        entry.signatures = fresh.signatures;
        entry.unsaved.clear();
        entry.peers.clear();
        Ok(())
    }

    /// Rewrites the file as the name and one full save (write, fsync, rename).
    fn compact(&self, entry: &mut Entry) -> Result<(), StateOpError> {
        let full = entry.doc.save();
        let mut bytes = frame(NAME, entry.name.to_string().as_bytes());
        bytes.extend_from_slice(&frame(FULL, &full));
        bytes.extend_from_slice(&frame(
            SIGNATURES,
            &signatures_payload(entry.signatures.iter()),
        ));
        crate::fsutil::write_atomic(&entry.path, &bytes, 0o600)?;
        entry.file = OpenOptions::new().append(true).open(&entry.path)?;
        self.set_bytes(entry, bytes.len() as u64);
        entry.full_bytes = full.len() as u64;
        tracing::debug!(doc = %entry.name, bytes = entry.bytes, "compacted a state document");
        Ok(())
    }

    /// Marks `doc` pinned (held even if no function here uses it), creating it empty
    /// when missing; peers fill it in by sync.
    ///
    /// # Errors
    /// When the operator does not host its namespace.
    pub fn pin(&self, doc: &DocName) -> Result<Vec<String>, StateOpError> {
        let entry = self.entry_or_create(doc, true)?;
        let mut entry = lock(&entry);
        entry.pinned = true;
        Ok(heads_hex(&entry.doc.get_heads()))
    }

    /// Starts holding `doc` (empty, not pinned) when it is not held yet, so sync can
    /// fill it in: how a node fetches the documents of a function it is about to run.
    ///
    /// # Errors
    /// When the operator does not host its namespace, or disk trouble.
    pub fn hold(&self, doc: &DocName) -> Result<(), StateOpError> {
        self.entry_or_create(doc, true).map(drop)
    }

    /// Bytes of `doc`'s file, when it is held.
    pub fn doc_bytes(&self, doc: &DocName) -> Option<u64> {
        self.entry(doc).map(|e| lock(&e).bytes)
    }

    /// Documents held here.
    pub fn list(&self) -> Vec<DocInfo> {
        let docs: Vec<Arc<Mutex<Entry>>> = lock(&self.docs).values().cloned().collect();
        docs.iter()
            .map(|e| {
                let mut e = lock(e);
                DocInfo {
                    doc: e.name.to_string(),
                    bytes: e.bytes,
                    heads: heads_hex(&e.doc.get_heads()),
                    pinned: e.pinned,
                }
            })
            .collect()
    }

    /// Names of the documents held here.
    pub fn names(&self) -> Vec<DocName> {
        lock(&self.docs).keys().cloned().collect()
    }

    /// Whether `doc` is held here.
    pub fn holds(&self, doc: &DocName) -> bool {
        lock(&self.docs).contains_key(doc)
    }

    /// Raw heads, for announcements.
    pub fn raw_heads(&self, doc: &DocName) -> Option<Vec<[u8; 32]>> {
        let entry = self.entry(doc)?;
        let mut entry = lock(&entry);
        Some(entry.doc.get_heads().iter().map(|h| h.0).collect())
    }
}
