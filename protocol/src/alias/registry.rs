//! The registry: every valid signed record a peer knows, merged by set union.

use std::collections::BTreeMap;

use super::*;

/// What [`Registry::apply`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// It is now the alias's current record.
    Current,
    /// It was new but older than (or lost the tie-break to) the current record: kept
    /// in the history only.
    History,
    /// Already known.
    Duplicate,
}

/// Every signed record a peer knows, by alias.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Per alias, its records in `(seq, digest)` order: the last one is current.
    entries: BTreeMap<Alias, Vec<Signed>>,
    records: usize,
}

impl Registry {
    /// Adds a verified record.
    pub fn apply(&mut self, signed: Signed) -> Applied {
        let history = self.entries.entry(signed.record.alias.clone()).or_default();
        let key = (signed.record.seq, signed.digest);
        match history.binary_search_by(|s| (s.record.seq, s.digest).cmp(&key)) {
            Ok(_) => Applied::Duplicate,
            Err(at) => {
                let current = at == history.len();
                history.insert(at, signed);
                self.records += 1;
                if current {
                    Applied::Current
                } else {
                    Applied::History
                }
            }
        }
    }

    /// The current record of `alias`.
    pub fn current(&self, alias: &Alias) -> Option<&Signed> {
        self.entries.get(alias).and_then(|h| h.last())
    }

    /// Every record of `alias`, oldest first.
    pub fn history(&self, alias: &Alias) -> &[Signed] {
        self.entries.get(alias).map_or(&[], Vec::as_slice)
    }

    /// The record before the current one (the highest sequence number below the
    /// current's), for a rollback.
    pub fn previous(&self, alias: &Alias) -> Option<&Signed> {
        let h = self.entries.get(alias)?;
        let current = h.last()?;
        h.iter().rev().find(|s| s.record.seq < current.record.seq)
    }

    /// Resolves `alias` for routing key `key`: the function and the record used.
    pub fn resolve(&self, alias: &Alias, key: &[u8]) -> Option<(FunctionId, &Signed)> {
        let current = self.current(alias)?;
        pick(alias, &current.record.targets, key).map(|f| (f, current))
    }

    /// Every alias's current record, in alias order.
    pub fn currents(&self) -> impl Iterator<Item = &Signed> {
        self.entries.values().filter_map(|h| h.last())
    }

    /// Every record, in alias then `(seq, digest)` order.
    pub fn records(&self) -> impl Iterator<Item = &Signed> {
        self.entries.values().flatten()
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.records
    }

    /// True if and only if there are no records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// A digest of the whole registry: equal digests mean equal record sets.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for s in self.records() {
            h.update(&s.digest);
        }
        *h.finalize().as_bytes()
    }

    /// True if `function` is a current target of some alias in `namespace`.
    pub fn vouches(&self, namespace: &Namespace, function: &FunctionId) -> bool {
        self.currents().any(|s| {
            s.record.alias.namespace == *namespace
                && s.record.targets.iter().any(|t| t.function == *function)
        })
    }
}
