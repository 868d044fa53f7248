//! Publisher keys and the node's alias registry: persisted, synced with peers,
//! resolved on every call by alias.
//!
//! - Keys: `keys/NAME.key` in the data dir (the ed25519 secret, hex, mode 0600). A
//!   key's public half is its namespace; its file name is a local petname for it.
//! - Records: every valid signed record seen, appended to `aliases.log` (frames of a
//!   little-endian u16 length and the record) and fsynced before the change is
//!   acknowledged. At start each record is verified again; a torn or corrupted tail
//!   is cut off with a warning (peers resend what was lost at the next sync).
//! - Policy: `trust` lists namespaces the operator vouches for; with `trusted_only`
//!   the node runs only functions that are a current target of an alias in a trusted
//!   namespace.

mod keys;

use crate::clock::{lock, now_ms};
use keys::load_keys;
pub(crate) use keys::{sign64, signing_key};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use kith_protocol::FunctionId;
use kith_protocol::alias::{
    Alias, AliasError, AliasRef, Applied, Namespace, Record, Registry, Signed, Target,
};
use kith_protocol::grant::{GrantBook, GrantError, SignedGrants};
use libp2p_identity::ed25519;

use crate::fsutil;

/// File of the record log inside the data dir.
pub const LOG_FILE: &str = "aliases.log";
/// Directory of publisher keys inside the data dir.
pub const KEYS_DIR: &str = "keys";

/// Why an alias operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AliasOpError {
    /// A bad name, reference, target list or record.
    #[error(transparent)]
    Invalid(#[from] AliasError),
    /// A bad grant record.
    #[error(transparent)]
    BadGrant(#[from] GrantError),
    /// No record for the alias.
    #[error("no alias {0} is known to this node")]
    NotFound(String),
    /// The namespace part is neither an id nor a local key name.
    #[error(
        "unknown namespace \"{0}\": neither a 64-hex namespace id nor the name of a key on this node (see `kith key list`)"
    )]
    UnknownNamespace(String),
    /// The alias belongs to a namespace whose key is not on this node.
    #[error(
        "this node holds no key for namespace {0}: only the namespace's key can change its aliases"
    )]
    NotOwner(Namespace),
    /// No key on this node may write the namespace.
    #[error(
        "permission_denied: no key on this node may write namespace {namespace}: its owner must grant one (`kith grant {namespace} --writer {node_key}` on the owner's node grants this node's key)"
    )]
    NotGranted {
        /// The namespace.
        namespace: Namespace,
        /// This node's state key (hex).
        node_key: String,
    },
    /// A key of that name exists.
    #[error("a key named \"{0}\" already exists")]
    KeyExists(String),
    /// Rollback with no earlier record.
    #[error("alias {0} has no earlier record to roll back to")]
    NoPrevious(String),
    /// Disk trouble.
    #[error("alias storage: {0}")]
    Io(#[from] std::io::Error),
}

impl AliasOpError {
    /// The error kind, as in the HTTP API.
    pub fn kind(&self) -> kith_protocol::ErrorKind {
        use kith_protocol::ErrorKind as K;
        match self {
            Self::Invalid(AliasError::BadSignature) | Self::BadGrant(GrantError::BadSignature) => {
                K::BadRecord
            }
            Self::BadGrant(_) => K::BadRequest,
            Self::Invalid(_) | Self::UnknownNamespace(_) => K::BadRequest,
            Self::NotFound(_) => K::NotFound,
            Self::NotOwner(_) => K::Forbidden,
            Self::NotGranted { .. } => K::PermissionDenied,
            Self::KeyExists(_) | Self::NoPrevious(_) => K::Conflict,
            Self::Io(_) => K::Internal,
        }
    }
}

/// A publisher key held by this node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Its local name.
    pub name: String,
    /// Its namespace id.
    pub namespace: String,
}

/// A record, for the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordView {
    /// `namespace/name@channel`, with the namespace id.
    pub alias: String,
    /// Sequence number.
    pub seq: u64,
    /// Signing time, ms since the Unix epoch.
    pub issued_ms: u64,
    /// Targets and weights.
    pub targets: Vec<TargetView>,
    /// blake3 of the signed record, hex.
    pub digest: String,
    /// The signed record itself, hex (`POST /v1/aliases/records` imports it anywhere).
    pub signed: String,
    /// Peers each call through the alias runs on (1: no verification).
    pub verify: u8,
}

/// A target, for the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetView {
    /// Function id, hex.
    pub function: String,
    /// Weight.
    pub weight: u32,
}

impl From<&Signed> for RecordView {
    fn from(s: &Signed) -> Self {
        Self {
            alias: s.record.alias.to_string(),
            seq: s.record.seq,
            issued_ms: s.record.issued_ms,
            targets: s
                .record
                .targets
                .iter()
                .map(|t| TargetView {
                    function: t.function.to_hex(),
                    weight: t.weight,
                })
                .collect(),
            digest: hex::encode(s.digest),
            signed: hex::encode(&s.bytes),
            verify: s.record.verify,
        }
    }
}

/// A resolved alias.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The function to run.
    pub function: FunctionId,
    /// The alias, canonical.
    pub alias: Alias,
    /// The record's sequence number.
    pub seq: u64,
    /// Peers each call runs on (the record's `verify`; 1: no verification).
    pub verify: u8,
}

/// Keys, registry and policy.
pub struct Aliases {
    data_dir: PathBuf,
    registry: RwLock<Registry>,
    pub(crate) grants: RwLock<GrantBook>,
    log: Mutex<File>,
    keys: RwLock<Vec<(String, ed25519::Keypair)>>,
    trust: Vec<Namespace>,
    trusted_only: bool,
    route_seed: [u8; 32],
    route_counter: AtomicU64,
}

/// Reads the record log (alias and grant records), verifying every record; cuts off a
/// corrupted tail.
fn load_log(path: &Path) -> std::io::Result<(Registry, GrantBook, File)> {
    let mut registry = Registry::default();
    let mut grants = GrantBook::default();
    let mut bytes = Vec::new();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    file.read_to_end(&mut bytes)?;
    let mut at = 0;
    while at < bytes.len() {
        let good = bytes.get(at..at + 2).and_then(|len| {
            let n = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let body = bytes.get(at + 2..at + 2 + n)?;
            let record = if body.first() == Some(&kith_protocol::grant::TAG) {
                SignedGrants::decode(body).ok().map(Logged::Grants)?
            } else {
                Signed::decode(body).ok().map(Logged::Alias)?
            };
            Some((record, 2 + n))
        });
        match good {
            Some((Logged::Alias(signed), n)) => {
                registry.apply(signed);
                at += n;
            }
            Some((Logged::Grants(signed), n)) => {
                grants.apply(signed);
                at += n;
            }
            None => {
                tracing::warn!(path = %path.display(), offset = at, dropped = bytes.len() - at, "alias log has a torn or corrupted tail; cutting it off (peers resend lost records)");
                file.set_len(at as u64)?;
                file.sync_all()?;
                break;
            }
        }
    }
    Ok((registry, grants, file))
}

enum Logged {
    Alias(Signed),
    Grants(SignedGrants),
}

impl Aliases {
    /// Opens keys and records in `data_dir`.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn open(
        data_dir: &Path,
        trust: &[String],
        trusted_only: bool,
    ) -> Result<Self, AliasOpError> {
        let keys = load_keys(&data_dir.join(KEYS_DIR))?;
        let (registry, grants, log) = load_log(&data_dir.join(LOG_FILE))?;
        tracing::info!(
            records = registry.len(),
            grants = grants.len(),
            keys = keys.len(),
            "alias registry loaded"
        );
        let mut seed = blake3::Hasher::new();
        seed.update(&now_ms().to_le_bytes());
        seed.update(&std::process::id().to_le_bytes());
        seed.update(data_dir.as_os_str().as_encoded_bytes());
        let mut this = Self {
            data_dir: data_dir.to_owned(),
            registry: RwLock::new(registry),
            grants: RwLock::new(grants),
            log: Mutex::new(log),
            keys: RwLock::new(keys),
            trust: Vec::new(),
            trusted_only,
            route_seed: *seed.finalize().as_bytes(),
            route_counter: AtomicU64::new(0),
        };
        for t in trust {
            let ns = this.namespace_of(t)?;
            this.trust.push(ns);
        }
        Ok(this)
    }

    pub(crate) fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A namespace id or a local key name, as a namespace.
    ///
    /// # Errors
    /// [`AliasOpError::UnknownNamespace`].
    pub fn namespace_of(&self, text: &str) -> Result<Namespace, AliasOpError> {
        if let Ok(ns) = text.parse::<Namespace>() {
            return Ok(ns);
        }
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(n, _)| n == text)
            .map(|(_, k)| Namespace(k.public().to_bytes()))
            .ok_or_else(|| AliasOpError::UnknownNamespace(text.to_owned()))
    }

    /// Parses `NAMESPACE/NAME@CHANNEL` (namespace id or local key name).
    ///
    /// # Errors
    /// A malformed reference or an unknown petname.
    pub fn parse(&self, text: &str) -> Result<Alias, AliasOpError> {
        let r: AliasRef = text.parse()?;
        let ns = self.namespace_of(&r.namespace)?;
        Ok(Alias::new(ns, &r.name, &r.channel)?)
    }

    /// Verifies, stores and applies a record from a peer (or an operator's import).
    /// Returns what it did; records already known are not written again.
    ///
    /// # Errors
    /// A malformed or badly signed record (the registry is untouched), or I/O.
    pub fn apply_bytes(&self, bytes: &[u8]) -> Result<(Applied, Signed), AliasOpError> {
        let signed = Signed::decode(bytes)?;
        let applied = self.apply(signed.clone())?;
        Ok((applied, signed))
    }

    fn apply(&self, signed: Signed) -> Result<Applied, AliasOpError> {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if registry
            .history(&signed.record.alias)
            .iter()
            .any(|s| s.digest == signed.digest)
        {
            return Ok(Applied::Duplicate);
        }
        // Durable before it is acknowledged or passed on.
        self.log_record(&signed.bytes)?;
        let applied = registry.apply(signed);
        if applied == Applied::Current {
            tracing::info!("alias record applied");
        }
        Ok(applied)
    }

    /// Appends a record to the log and fsyncs.
    pub(crate) fn log_record(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(2 + bytes.len());
        frame.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        frame.extend_from_slice(bytes);
        let mut log = lock(&self.log);
        log.write_all(&frame)?;
        log.sync_data()
    }

    /// Signs and applies a new record pointing `alias` at `targets`: the next sequence
    /// number. `verify` sets the alias's verification (`None` keeps the current
    /// record's). Returns the signed record, to be announced.
    ///
    /// # Errors
    /// Invalid targets or verify, no key for the namespace, or I/O.
    pub fn set(
        &self,
        alias: &Alias,
        targets: Vec<Target>,
        verify: Option<u8>,
    ) -> Result<Signed, AliasOpError> {
        let key = self.signer(&alias.namespace)?;
        let (seq, current_verify) = self
            .registry()
            .current(alias)
            .map_or((1, 1), |s| (s.record.seq + 1, s.record.verify));
        let signed = Record {
            alias: alias.clone(),
            seq,
            issued_ms: now_ms(),
            targets,
            verify: verify.unwrap_or(current_verify),
        }
        .sign(|m| sign64(&key, m))?;
        self.apply(signed.clone())?;
        Ok(signed)
    }

    /// Points `to` at `from`'s current targets.
    ///
    /// # Errors
    /// `from` unknown, no key for `to`'s namespace, or I/O.
    pub fn promote(&self, from: &Alias, to: &Alias) -> Result<Signed, AliasOpError> {
        let targets = self
            .registry()
            .current(from)
            .map(|s| s.record.targets.clone())
            .ok_or_else(|| AliasOpError::NotFound(from.to_string()))?;
        self.set(to, targets, None)
    }

    /// Points `alias` back at its previous record's targets (a new record).
    ///
    /// # Errors
    /// Unknown alias, no earlier record, no key, or I/O.
    pub fn rollback(&self, alias: &Alias) -> Result<Signed, AliasOpError> {
        let targets = {
            let registry = self.registry();
            if registry.current(alias).is_none() {
                return Err(AliasOpError::NotFound(alias.to_string()));
            }
            registry
                .previous(alias)
                .map(|s| s.record.targets.clone())
                .ok_or_else(|| AliasOpError::NoPrevious(alias.to_string()))?
        };
        self.set(alias, targets, None)
    }

    /// The current record of `alias`.
    ///
    /// # Errors
    /// [`AliasOpError::NotFound`].
    pub fn show(&self, alias: &Alias) -> Result<RecordView, AliasOpError> {
        self.registry()
            .current(alias)
            .map(RecordView::from)
            .ok_or_else(|| AliasOpError::NotFound(alias.to_string()))
    }

    /// Every record of `alias`, oldest first.
    ///
    /// # Errors
    /// [`AliasOpError::NotFound`].
    pub fn history(&self, alias: &Alias) -> Result<Vec<RecordView>, AliasOpError> {
        let registry = self.registry();
        let h = registry.history(alias);
        if h.is_empty() {
            return Err(AliasOpError::NotFound(alias.to_string()));
        }
        Ok(h.iter().map(RecordView::from).collect())
    }

    /// Every alias's current record.
    pub fn list(&self) -> Vec<RecordView> {
        self.registry().currents().map(RecordView::from).collect()
    }

    /// Resolves an alias for a call. `key` is the caller's routing key; without one,
    /// the split is random.
    ///
    /// # Errors
    /// [`AliasOpError::NotFound`].
    pub fn resolve(&self, alias: &Alias, key: Option<&[u8]>) -> Result<Resolved, AliasOpError> {
        let random;
        let key = match key {
            Some(k) => k,
            None => {
                let n = self.route_counter.fetch_add(1, Ordering::Relaxed);
                let mut h = blake3::Hasher::new_keyed(&self.route_seed);
                h.update(&n.to_le_bytes());
                random = *h.finalize().as_bytes();
                &random[..16]
            }
        };
        let registry = self.registry();
        let (function, signed) = registry
            .resolve(alias, key)
            .ok_or_else(|| AliasOpError::NotFound(alias.to_string()))?;
        Ok(Resolved {
            function,
            alias: alias.clone(),
            seq: signed.record.seq,
            verify: signed.record.verify,
        })
    }

    /// How many records the registry holds.
    pub fn record_count(&self) -> usize {
        self.registry().len()
    }

    /// The digest of the registry and the grant book together, for sync.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&self.registry().digest());
        h.update(&self.grant_book().digest());
        *h.finalize().as_bytes()
    }

    /// Up to `max` records, newest first per alias first, for a sync response.
    pub fn records(&self, max: usize) -> Vec<Vec<u8>> {
        let registry = self.registry();
        let mut out: Vec<Vec<u8>> = registry.currents().map(|s| s.bytes.clone()).collect();
        for s in registry.records() {
            if out.len() >= max {
                break;
            }
            if registry.current(&s.record.alias).map(|c| c.digest) != Some(s.digest) {
                out.push(s.bytes.clone());
            }
        }
        // Grant records: every namespace's current one first, then history.
        let grants = self.grant_book();
        let current: Vec<&SignedGrants> = grants
            .records()
            .filter(|s| grants.current(&s.grants.namespace).map(|c| c.digest) == Some(s.digest))
            .collect();
        let mut tail: Vec<Vec<u8>> = current.iter().map(|s| s.bytes.clone()).collect();
        for s in grants.records() {
            if !current.iter().any(|c| c.digest == s.digest) {
                tail.push(s.bytes.clone());
            }
        }
        // Grants are few and decide writes: they go in before the alias history.
        let currents = registry.currents().count().min(max);
        let history = out.split_off(currents);
        out.extend(tail);
        out.extend(history);
        out.truncate(max);
        // And within the response's byte cap.
        let mut bytes = 5;
        let fit = out
            .iter()
            .take_while(|r| {
                bytes += 2 + r.len();
                bytes <= kith_protocol::alias::MAX_SYNC_RESPONSE
            })
            .count();
        out.truncate(fit);
        out
    }

    /// True if this node may run `function` under its trust policy.
    pub fn may_run(&self, function: &FunctionId) -> bool {
        if !self.trusted_only {
            return true;
        }
        let registry = self.registry();
        self.trust.iter().any(|ns| registry.vouches(ns, function))
    }

    /// The trusted namespaces (for messages and status).
    pub fn trusted(&self) -> &[Namespace] {
        &self.trust
    }

    /// True if the node runs only trusted functions.
    pub fn trusted_only(&self) -> bool {
        self.trusted_only
    }
}
