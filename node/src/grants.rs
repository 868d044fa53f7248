//! Grants on the node: the namespace owners' signed grant records (stored in the alias
//! log and synced with the alias records), the operator's `kith grant`/`kith revoke`,
//! and the questions the node asks them: may this function touch that namespace, may
//! this key write it, which of the node's keys writes a document.

use kith_protocol::FunctionId;
use kith_protocol::alias::{Alias, Applied, Namespace};
use kith_protocol::grant::{Authority, GrantBook, Grants, SignedGrants};
use serde::Serialize;

use crate::aliases::{AliasOpError, Aliases};
use crate::clock::now_ms;

/// A subject of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A key (publisher or node), hex.
    Writer([u8; 32]),
    /// A function by id.
    Function(FunctionId),
    /// An alias of the namespace.
    Alias(Alias),
}

/// A grant record, for people.
#[derive(Debug, Clone, Serialize)]
pub struct GrantsView {
    /// The namespace.
    pub namespace: String,
    /// Its sequence number (0: nothing granted yet).
    pub seq: u64,
    /// When the owner issued it.
    pub issued_ms: u64,
    /// Keys that may write.
    pub writers: Vec<String>,
    /// Functions that may read and write.
    pub functions: Vec<String>,
    /// Aliases whose functions may.
    pub aliases: Vec<String>,
    /// blake3 of the record (hex).
    pub digest: String,
}

impl GrantsView {
    fn of(namespace: &Namespace, signed: Option<&SignedGrants>) -> Self {
        let Some(s) = signed else {
            return Self {
                namespace: namespace.to_string(),
                seq: 0,
                issued_ms: 0,
                writers: Vec::new(),
                functions: Vec::new(),
                aliases: Vec::new(),
                digest: String::new(),
            };
        };
        let g = &s.grants;
        Self {
            namespace: namespace.to_string(),
            seq: g.seq,
            issued_ms: g.issued_ms,
            writers: g.writers.iter().map(hex::encode).collect(),
            functions: g.functions.iter().map(ToString::to_string).collect(),
            aliases: g.aliases.iter().map(ToString::to_string).collect(),
            digest: hex::encode(s.digest),
        }
    }
}

impl Aliases {
    /// The grant book.
    pub(crate) fn grant_book(&self) -> std::sync::RwLockReadGuard<'_, GrantBook> {
        self.grants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Verifies, stores and applies a grant record.
    ///
    /// # Errors
    /// A malformed or badly signed record (nothing changes), or I/O.
    pub fn apply_grant_bytes(&self, bytes: &[u8]) -> Result<(Applied, SignedGrants), AliasOpError> {
        let signed = SignedGrants::decode(bytes)?;
        let mut book = self
            .grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if book
            .history(&signed.grants.namespace)
            .iter()
            .any(|s| s.digest == signed.digest)
        {
            return Ok((Applied::Duplicate, signed));
        }
        self.log_record(&signed.bytes)?;
        let applied = book.apply(signed.clone());
        if applied == Applied::Current {
            tracing::info!(namespace = %signed.grants.namespace, seq = signed.grants.seq, "grant record applied");
        }
        Ok((applied, signed))
    }

    /// Applies an alias or a grant record, by its first byte.
    ///
    /// # Errors
    /// See [`Self::apply_bytes`] and [`Self::apply_grant_bytes`].
    pub fn apply_record(&self, bytes: &[u8]) -> Result<Applied, AliasOpError> {
        if bytes.first() == Some(&kith_protocol::grant::TAG) {
            self.apply_grant_bytes(bytes).map(|(a, _)| a)
        } else {
            self.apply_bytes(bytes).map(|(a, _)| a)
        }
    }

    /// The current grants of `namespace`.
    pub fn grants_view(&self, namespace: &Namespace) -> GrantsView {
        GrantsView::of(namespace, self.grant_book().current(namespace))
    }

    /// Signs and applies `namespace`'s next grant record: the current set with `add`
    /// added and `remove` taken out. Returns the record, to be announced.
    ///
    /// # Errors
    /// No key for the namespace, too many subjects, or I/O.
    pub fn change_grants(
        &self,
        namespace: &Namespace,
        add: &[Subject],
        remove: &[Subject],
    ) -> Result<SignedGrants, AliasOpError> {
        let key = self.signer(namespace)?;
        let mut grants = self.grant_book().current(namespace).map_or_else(
            || Grants {
                namespace: *namespace,
                seq: 0,
                issued_ms: 0,
                writers: Vec::new(),
                functions: Vec::new(),
                aliases: Vec::new(),
            },
            |s| s.grants.clone(),
        );
        for s in remove {
            match s {
                Subject::Writer(k) => grants.writers.retain(|w| w != k),
                Subject::Function(f) => grants.functions.retain(|g| g != f),
                Subject::Alias(a) => grants.aliases.retain(|b| b != a),
            }
        }
        for s in add {
            match s {
                Subject::Writer(k) if !grants.writers.contains(k) => grants.writers.push(*k),
                Subject::Function(f) if !grants.functions.contains(f) => {
                    grants.functions.push(*f);
                }
                Subject::Alias(a) if !grants.aliases.contains(a) => grants.aliases.push(a.clone()),
                _ => {}
            }
        }
        grants.seq += 1;
        grants.issued_ms = now_ms();
        let signed = grants.sign(|m| crate::aliases::sign64(&key, m))?;
        let (_, signed) = self.apply_grant_bytes(&signed.bytes)?;
        Ok(signed)
    }

    /// Whether an alias points at `function` now, did once, or never.
    fn alias_authority(&self, alias: &Alias, function: &FunctionId) -> Authority {
        let registry = self.registry();
        let targets = |s: &kith_protocol::alias::Signed| {
            s.record.targets.iter().any(|t| t.function == *function)
        };
        if registry.current(alias).is_some_and(targets) {
            Authority::Granted
        } else if registry.history(alias).iter().any(targets) {
            Authority::Revoked
        } else {
            Authority::Never
        }
    }

    /// What `namespace`'s owner says of a change by `actor`, made by `function` if
    /// named: the better of the two.
    pub fn write_authority(
        &self,
        namespace: &Namespace,
        actor: &[u8],
        function: Option<&FunctionId>,
    ) -> Authority {
        let book = self.grant_book();
        let by_key = book.writer(namespace, actor);
        let by_function = function.map_or(Authority::Never, |f| {
            book.function(namespace, f, |a, f| self.alias_authority(a, f))
        });
        by_key.max(by_function)
    }

    /// Whether `function` may use the documents of `namespace` (the owner granted it,
    /// by id or through one of its aliases).
    pub fn function_granted(&self, namespace: &Namespace, function: &FunctionId) -> bool {
        self.grant_book()
            .function(namespace, function, |a, f| self.alias_authority(a, f))
            == Authority::Granted
    }

    /// The key this node writes `namespace`'s documents with, for a write made by the
    /// operator (HTTP or CLI): the namespace's own key when held here, else a held
    /// publisher key the owner granted, else the node's key when granted.
    ///
    /// # Errors
    /// [`AliasOpError::NotGranted`] naming what to grant.
    pub fn operator_writer(
        &self,
        namespace: &Namespace,
        node_key: &ed25519_dalek::SigningKey,
    ) -> Result<ed25519_dalek::SigningKey, AliasOpError> {
        let held = self.secret_keys();
        if let Some(k) = held
            .iter()
            .find(|k| k.verifying_key().to_bytes() == namespace.0)
        {
            return Ok(k.clone());
        }
        let book = self.grant_book();
        if let Some(k) = held
            .iter()
            .chain(std::iter::once(node_key))
            .find(|k| book.writer(namespace, &k.verifying_key().to_bytes()) == Authority::Granted)
        {
            return Ok(k.clone());
        }
        Err(AliasOpError::NotGranted {
            namespace: *namespace,
            node_key: hex::encode(node_key.verifying_key().to_bytes()),
        })
    }
}

/// The grant book as the state store asks it.
pub(crate) struct GrantAuthorities(pub(crate) std::sync::Arc<Aliases>);

impl crate::state::Authorities for GrantAuthorities {
    fn authority(
        &self,
        namespace: &Namespace,
        actor: &[u8],
        function: Option<&FunctionId>,
    ) -> Authority {
        self.0.write_authority(namespace, actor, function)
    }
}

impl crate::node::Node {
    /// This node's state key (hex): grant it write to let the node's operator write a
    /// namespace's documents.
    pub fn state_key(&self) -> String {
        hex::encode(self.state_key.verifying_key().to_bytes())
    }

    /// The signer of an operator's write to `namespace` (HTTP or CLI).
    ///
    /// # Errors
    /// When no key here may write it.
    pub fn operator_writer(
        &self,
        namespace: &Namespace,
    ) -> Result<crate::state::Writer, AliasOpError> {
        Ok(crate::state::Writer {
            key: self.aliases.operator_writer(namespace, &self.state_key)?,
            function: None,
        })
    }

    /// `kith grant` / `kith revoke`: signs, stores and announces `namespace`'s next
    /// grant record.
    ///
    /// # Errors
    /// See [`Aliases::change_grants`].
    pub async fn change_grants(
        &self,
        namespace: &Namespace,
        add: &[Subject],
        remove: &[Subject],
    ) -> Result<GrantsView, AliasOpError> {
        let signed = self.aliases.change_grants(namespace, add, remove)?;
        if let Some(net) = self.net.get() {
            net.publish_alias(signed.bytes.clone()).await;
        }
        Ok(GrantsView::of(namespace, Some(&signed)))
    }
}
