//! The node's side of the alias protocols: records from peers (gossip and sync) are
//! verified and merged into the registry, syncs are answered, and the operator's alias
//! changes are signed, stored and announced.

use kith_protocol::alias::{Alias, Applied, Signed, Target};

use crate::aliases::{AliasOpError, Aliases};

/// Alias traffic and operations that touch the network.
impl crate::node::Node {
    /// The node's aliases and keys.
    pub fn aliases(&self) -> &Aliases {
        &self.aliases
    }

    /// Handles alias traffic from peers: verifies and stores records, answers syncs.
    pub(crate) fn handle_alias(&self, message: crate::net::AliasInbound) {
        use crate::net::AliasInbound;
        use kith_protocol::alias::{MAX_SYNC_RECORDS, SyncResponse};
        let penalise = |peer: &libp2p::PeerId| {
            if let Some(net) = self.net.get() {
                net.penalise(*peer);
            }
        };
        match message {
            AliasInbound::Record { peer, bytes } => match self.aliases.apply_record(&bytes) {
                Ok(applied) => {
                    tracing::debug!(%peer, ?applied, "alias or grant record from gossip");
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "alias record refused (or a grant record)");
                    if matches!(e, AliasOpError::Invalid(_) | AliasOpError::BadGrant(_)) {
                        penalise(&peer);
                    }
                }
            },
            AliasInbound::Sync {
                peer,
                request,
                respond,
            } => {
                let answer = if request.digest == self.aliases.digest() {
                    SyncResponse::Same
                } else {
                    tracing::debug!(%peer, "alias registries differ; sending ours");
                    SyncResponse::Records(self.aliases.records(MAX_SYNC_RECORDS))
                };
                let _ = respond.send(answer);
            }
            AliasInbound::Records { peer, records } => {
                let mut new = 0;
                let mut bad = 0;
                for bytes in &records {
                    match self.aliases.apply_record(bytes) {
                        Ok(Applied::Duplicate) => {}
                        Ok(_) => new += 1,
                        Err(AliasOpError::Invalid(_) | AliasOpError::BadGrant(_)) => bad += 1,
                        Err(e) => tracing::warn!(error = %e, "alias record not stored"),
                    }
                }
                if bad > 0 {
                    tracing::warn!(%peer, bad, "peer sent alias records that do not verify");
                    penalise(&peer);
                }
                tracing::debug!(%peer, received = records.len(), new, "alias sync done");
            }
            AliasInbound::Connected(peer) => {
                if let Some(net) = self.net.get() {
                    net.sync_aliases(peer, self.aliases.digest());
                }
            }
        }
    }

    async fn announce(&self, signed: &Signed) {
        if let Some(net) = self.net.get() {
            net.publish_alias(signed.bytes.clone()).await;
        }
    }

    /// `kith alias set` / `split`: signs, stores and announces a new record.
    ///
    /// # Errors
    /// See [`Aliases::set`].
    pub async fn alias_set(
        &self,
        alias: &Alias,
        targets: Vec<Target>,
        verify: Option<u8>,
    ) -> Result<Signed, AliasOpError> {
        let signed = self.aliases.set(alias, targets, verify)?;
        self.announce(&signed).await;
        Ok(signed)
    }

    /// `kith alias promote FROM TO`.
    ///
    /// # Errors
    /// See [`Aliases::promote`].
    pub async fn alias_promote(&self, from: &Alias, to: &Alias) -> Result<Signed, AliasOpError> {
        let signed = self.aliases.promote(from, to)?;
        self.announce(&signed).await;
        Ok(signed)
    }

    /// `kith alias rollback REF`.
    ///
    /// # Errors
    /// See [`Aliases::rollback`].
    pub async fn alias_rollback(&self, alias: &Alias) -> Result<Signed, AliasOpError> {
        let signed = self.aliases.rollback(alias)?;
        self.announce(&signed).await;
        Ok(signed)
    }

    /// Imports an encoded record (as gossip would deliver it) and announces it if new.
    ///
    /// # Errors
    /// A malformed or badly signed record; the registry is untouched.
    pub async fn alias_import(&self, bytes: &[u8]) -> Result<Applied, AliasOpError> {
        let (applied, signed) = self.aliases.apply_bytes(bytes)?;
        if applied != Applied::Duplicate {
            self.announce(&signed).await;
        }
        Ok(applied)
    }
}
