//! The content-addressed store: module bytes by function id, and compiled artifacts
//! beside them.
//!
//! Layout under the store directory:
//!
//! ```text
//! blobs/<function id>                 module bytes, exactly as published
//! artifacts/<function id>.<tag>.bin   "KITHART1" ‖ blake3(payload) ‖ payload
//! ```
//!
//! Every write is atomic (temporary file, fsync, rename, fsync directory), so a crash
//! never leaves a partial file under a valid name. Module bytes are verified against
//! their id when read; a blob that fails is deleted, reported, and never run. Artifacts
//! carry their own checksum and are verified before they are loaded.
//!
//! A byte budget covers blobs and artifacts together. When a new blob does not fit, the
//! least recently used functions are evicted, blob and artifacts together. Recency is
//! kept in memory and seeded at start from file modification times.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use kith_protocol::FunctionId;

use crate::fsutil;

const ARTIFACT_MAGIC: &[u8; 8] = b"KITHART1";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No blob with this id.
    #[error("function {0} is not stored on this node")]
    NotFound(FunctionId),
    /// The stored bytes no longer hash to their id; they were deleted.
    #[error(
        "the stored bytes of function {0} failed verification and were deleted; publish it again"
    )]
    Corrupt(FunctionId),
    /// The blob alone is larger than the whole budget.
    #[error("{size} bytes do not fit in the store budget of {budget} bytes (store_budget_bytes)")]
    OverBudget {
        /// Bytes asked for.
        size: u64,
        /// The budget.
        budget: u64,
    },
    /// The disk said no.
    #[error("store I/O error at {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    blob: u64,
    artifacts: u64,
    tick: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<FunctionId, Entry>,
    total: u64,
    tick: u64,
    corrupt_dropped: u64,
    evicted: u64,
}

impl Index {
    fn add_blob(&mut self, id: FunctionId, size: u64) {
        self.tick += 1;
        self.total += size;
        let entry = Entry {
            blob: size,
            artifacts: 0,
            tick: self.tick,
        };
        self.entries.insert(id, entry);
    }
}

/// Counters for the status page.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StoreStats {
    /// Functions stored.
    pub functions: usize,
    /// Bytes used by blobs and artifacts.
    pub bytes: u64,
    /// The byte budget.
    pub budget: u64,
    /// Blobs deleted because they failed verification, since start.
    pub corrupt_dropped: u64,
    /// Functions evicted to stay within budget, since start.
    pub evicted: u64,
}

/// The content-addressed store.
#[derive(Debug)]
pub struct Store {
    blobs: PathBuf,
    artifacts: PathBuf,
    budget: u64,
    index: Mutex<Index>,
}

impl Store {
    /// Opens (creating if needed) the store under `dir` with a byte budget.
    ///
    /// # Errors
    /// Fails if the directories cannot be created or read.
    pub fn open(dir: &Path, budget: u64) -> Result<Self, StoreError> {
        let blobs = dir.join("blobs");
        let artifacts = dir.join("artifacts");
        for d in [&blobs, &artifacts] {
            fs::create_dir_all(d).map_err(io_err(d))?;
            let removed = fsutil::remove_leftovers(d).map_err(io_err(d))?;
            if removed > 0 {
                tracing::warn!(dir = %d.display(), removed, "removed partial files left by a crash");
            }
        }
        let mut found: Vec<(std::time::SystemTime, FunctionId, u64)> = Vec::new();
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let entry = entry.map_err(io_err(&blobs))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<FunctionId>().ok()) else {
                tracing::warn!(file = ?name, "ignoring a file that is not named by a function id");
                continue;
            };
            let meta = entry.metadata().map_err(io_err(&entry.path()))?;
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((mtime, id, meta.len()));
        }
        found.sort();
        let mut index = Index::default();
        for (_, id, size) in found {
            index.add_blob(id, size);
        }
        for entry in fs::read_dir(&artifacts).map_err(io_err(&artifacts))? {
            let entry = entry.map_err(io_err(&artifacts))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name
                .split('.')
                .next()
                .and_then(|s| s.parse::<FunctionId>().ok());
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match id.and_then(|id| index.entries.get_mut(&id)) {
                Some(e) => {
                    e.artifacts += size;
                    index.total += size;
                }
                None => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        tracing::info!(
            functions = index.entries.len(),
            bytes = index.total,
            budget,
            "store opened"
        );
        Ok(Self {
            blobs,
            artifacts,
            budget,
            index: Mutex::new(index),
        })
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn blob_path(&self, id: &FunctionId) -> PathBuf {
        self.blobs.join(id.to_hex())
    }

    fn artifact_path(&self, id: &FunctionId, tag: &str) -> PathBuf {
        self.artifacts.join(format!("{}.{tag}.bin", id.to_hex()))
    }

    /// Stores `bytes` under their blake3 id. Returns the id and whether it was new.
    ///
    /// # Errors
    /// Fails if the bytes alone exceed the budget, or on I/O errors; nothing partial is
    /// left behind.
    pub fn put(&self, bytes: &[u8]) -> Result<(FunctionId, bool), StoreError> {
        let id = FunctionId::of(bytes);
        let size = bytes.len() as u64;
        {
            let mut index = self.index();
            index.tick += 1;
            let tick = index.tick;
            if let Some(e) = index.entries.get_mut(&id) {
                e.tick = tick;
                return Ok((id, false));
            }
        }
        if size > self.budget {
            return Err(StoreError::OverBudget {
                size,
                budget: self.budget,
            });
        }
        self.make_room(size, None);
        let path = self.blob_path(&id);
        fsutil::write_atomic(&path, bytes, 0o644).map_err(io_err(&path))?;
        self.index().add_blob(id, size);
        Ok((id, true))
    }

    /// Evicts least recently used functions (never `keep`) until `size` more bytes fit.
    fn make_room(&self, size: u64, keep: Option<FunctionId>) {
        loop {
            let victim = {
                let index = self.index();
                if index.total + size <= self.budget {
                    return;
                }
                index
                    .entries
                    .iter()
                    .filter(|(id, _)| Some(**id) != keep)
                    .min_by_key(|(_, e)| e.tick)
                    .map(|(id, _)| *id)
            };
            let Some(victim) = victim else { return };
            tracing::info!(function = %victim, "evicting to stay within the store budget");
            self.remove(&victim);
            self.index().evicted += 1;
        }
    }

    /// Deletes a function's blob and artifacts.
    pub fn remove(&self, id: &FunctionId) {
        let _ = fs::remove_file(self.blob_path(id));
        self.remove_artifacts(id);
        let mut index = self.index();
        if let Some(e) = index.entries.remove(id) {
            index.total -= e.blob + e.artifacts;
        }
    }

    fn remove_artifacts(&self, id: &FunctionId) {
        let prefix = format!("{}.", id.to_hex());
        if let Ok(dir) = fs::read_dir(&self.artifacts) {
            for entry in dir.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// True if and only if a blob with this id is stored.
    pub fn contains(&self, id: &FunctionId) -> bool {
        self.index().entries.contains_key(id)
    }

    /// Size of the stored blob, if any.
    pub fn size(&self, id: &FunctionId) -> Option<u64> {
        self.index().entries.get(id).map(|e| e.blob)
    }

    /// Reads `len` bytes of a blob from `offset`, without verifying the whole; returns
    /// them with the blob's size. For serving a module in chunks: the first chunk is
    /// served from [`Self::get`] (which verifies), later ones from here, and the
    /// receiver verifies the whole against the id anyway.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent; I/O errors.
    pub fn read_range(
        &self,
        id: &FunctionId,
        offset: u64,
        len: usize,
    ) -> Result<(u64, Vec<u8>), StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let size = self.size(id).ok_or(StoreError::NotFound(*id))?;
        let path = self.blob_path(id);
        let mut file = fs::File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(*id),
            _ => io_err(&path)(e),
        })?;
        file.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
        let mut bytes = Vec::with_capacity(len);
        file.take(len as u64)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        Ok((size, bytes))
    }

    /// Reads a blob and verifies it against its id.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent; [`StoreError::Corrupt`] if the bytes no longer
    /// match (the blob and its artifacts are deleted).
    pub fn get(&self, id: &FunctionId) -> Result<Vec<u8>, StoreError> {
        if !self.contains(id) {
            return Err(StoreError::NotFound(*id));
        }
        let path = self.blob_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.remove(id);
                return Err(StoreError::NotFound(*id));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if !id.matches(&bytes) {
            tracing::error!(function = %id, path = %path.display(), "stored bytes failed verification; deleting them");
            self.remove(id);
            self.index().corrupt_dropped += 1;
            return Err(StoreError::Corrupt(*id));
        }
        let mut index = self.index();
        index.tick += 1;
        let tick = index.tick;
        if let Some(e) = index.entries.get_mut(id) {
            e.tick = tick;
        }
        Ok(bytes)
    }

    /// Stores a compiled artifact for `id` under an engine `tag`. Best effort: an
    /// artifact that does not fit is simply not cached.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn put_artifact(
        &self,
        id: &FunctionId,
        tag: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        if !self.contains(id) {
            return Ok(());
        }
        let mut file = Vec::with_capacity(payload.len() + 40);
        file.extend_from_slice(ARTIFACT_MAGIC);
        file.extend_from_slice(blake3::hash(payload).as_bytes());
        file.extend_from_slice(payload);
        let size = file.len() as u64;
        if size > self.budget / 2 {
            return Ok(());
        }
        self.make_room(size, Some(*id));
        let path = self.artifact_path(id, tag);
        fsutil::write_atomic(&path, &file, 0o644).map_err(io_err(&path))?;
        let mut index = self.index();
        match index.entries.get_mut(id) {
            Some(e) => {
                e.artifacts += size;
                index.total += size;
            }
            None => {
                drop(index);
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Reads a compiled artifact, verified against its checksum. A missing or corrupt
    /// artifact is `None` (a corrupt one is deleted).
    pub fn get_artifact(&self, id: &FunctionId, tag: &str) -> Option<Vec<u8>> {
        let path = self.artifact_path(id, tag);
        let mut file = fs::read(&path).ok()?;
        let valid = file.len() >= 40
            && &file[..8] == ARTIFACT_MAGIC
            && blake3::hash(&file[40..]).as_bytes()[..] == file[8..40];
        if !valid {
            tracing::warn!(function = %id, path = %path.display(), "compiled artifact failed its checksum; deleting it");
            let size = file.len() as u64;
            let _ = fs::remove_file(&path);
            let mut index = self.index();
            if let Some(e) = index.entries.get_mut(id) {
                e.artifacts = e.artifacts.saturating_sub(size);
                index.total = index.total.saturating_sub(size);
            }
            return None;
        }
        file.drain(..40);
        Some(file)
    }

    /// Ids of all stored functions.
    pub fn stored_ids(&self) -> Vec<FunctionId> {
        self.index().entries.keys().copied().collect()
    }

    /// Ids of stored functions that have a compiled artifact on disk.
    pub fn compiled_ids(&self) -> Vec<FunctionId> {
        self.index()
            .entries
            .iter()
            .filter(|(_, e)| e.artifacts > 0)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Current counters.
    pub fn stats(&self) -> StoreStats {
        let index = self.index();
        StoreStats {
            functions: index.entries.len(),
            bytes: index.total,
            budget: self.budget,
            corrupt_dropped: index.corrupt_dropped,
            evicted: index.evicted,
        }
    }
}
