//! Reading and editing documents: JSON values at paths, counters, lists, heads,
//! export and import — each write checked against the caps and persisted before it
//! is acknowledged.

use super::*;

impl StateStore {
    /// Runs `edit` on `doc` (created if missing) as one change by `writer`, signed,
    /// and persists it; a failed edit is rolled back. Returns the new heads.
    ///
    /// # Errors
    /// The edit's own error, a cap, or disk trouble.
    pub fn edit(
        &self,
        doc: &DocName,
        writer: &Writer,
        edit: impl FnOnce(&mut AutoCommit) -> Result<(), StateOpError>,
    ) -> Result<Vec<String>, StateOpError> {
        let entry = self.entry_or_create(doc, true)?;
        let mut entry = lock(&entry);
        self.edit_as(&mut entry, writer, edit)?;
        self.persist(&mut entry)?;
        Ok(heads_hex(&entry.persisted))
    }

    /// Reads `doc` with `read`.
    ///
    /// # Errors
    /// When the document is not held, or `read`'s own error.
    pub fn read<T>(
        &self,
        doc: &DocName,
        read: impl FnOnce(&AutoCommit) -> Result<T, StateOpError>,
    ) -> Result<T, StateOpError> {
        let entry = self
            .entry(doc)
            .ok_or_else(|| StateOpError::NoDocument(doc.clone()))?;
        let entry = lock(&entry);
        read(&entry.doc)
    }

    /// The value at `path` as JSON.
    ///
    /// # Errors
    /// When the document is not held or nothing is at the path.
    pub fn get(&self, doc: &DocName, path: &[String]) -> Result<serde_json::Value, StateOpError> {
        self.read(doc, |d| {
            value_at(d, path)?.ok_or_else(|| StateOpError::NoValue {
                doc: doc.clone(),
                path: path.join("/"),
            })
        })
    }

    /// Puts a JSON value at `path` (creating maps along the way).
    ///
    /// # Errors
    /// See [`Self::edit`]; a value over `max_change_bytes`.
    pub fn put(
        &self,
        doc: &DocName,
        writer: &Writer,
        path: &[String],
        value: &serde_json::Value,
    ) -> Result<Vec<String>, StateOpError> {
        self.check_value(value)?;
        let Some((last, parent)) = path.split_last() else {
            return Err(StateOpError::BadRequest(
                "cannot replace a document's root; put at a key (e.g. /cart)".into(),
            ));
        };
        self.edit(doc, writer, |d| {
            let obj = walk(d, parent, true)?;
            put_json(d, &obj, last, value)
        })
    }

    /// Deletes the value at `path`.
    ///
    /// # Errors
    /// When nothing is there.
    pub fn delete(
        &self,
        doc: &DocName,
        writer: &Writer,
        path: &[String],
    ) -> Result<Vec<String>, StateOpError> {
        let Some((last, parent)) = path.split_last() else {
            return Err(StateOpError::BadRequest(
                "cannot delete a document's root".into(),
            ));
        };
        self.entry_or_create(doc, false)?;
        let missing = || StateOpError::NoValue {
            doc: doc.clone(),
            path: path.join("/"),
        };
        self.edit(doc, writer, |d| {
            let obj = walk(d, parent, false)?;
            let prop = prop_for(d, &obj, last, false)?;
            if d.get(&obj, prop.clone()).ok().flatten().is_none() {
                return Err(missing());
            }
            d.delete(&obj, prop).map_err(conflict)
        })
    }

    /// Adds `by` to the counter at `path` (creating it at 0 when missing: create it
    /// before increments from several nodes start, or their creations conflict).
    /// Returns the heads and the counter's new value.
    ///
    /// # Errors
    /// When the value there is not a counter.
    pub fn increment(
        &self,
        doc: &DocName,
        writer: &Writer,
        path: &[String],
        by: i64,
    ) -> Result<(Vec<String>, i64), StateOpError> {
        let Some((last, parent)) = path.split_last() else {
            return Err(StateOpError::BadRequest(
                "increment needs a key path".into(),
            ));
        };
        let mut value = 0;
        let heads = self.edit(doc, writer, |d| {
            let obj = walk(d, parent, true)?;
            let prop = prop_for(d, &obj, last, false)?;
            match d.get(&obj, prop.clone()).map_err(conflict)? {
                None => d
                    .put(&obj, prop.clone(), ScalarValue::counter(0))
                    .map_err(conflict)?,
                Some((Value::Scalar(s), _)) if s.is_counter() => {}
                Some(_) => {
                    return Err(StateOpError::Conflict(format!(
                        "the value at \"{}\" is not a counter",
                        path.join("/")
                    )));
                }
            }
            d.increment(&obj, prop.clone(), by).map_err(conflict)?;
            value = d
                .get(&obj, prop)
                .ok()
                .flatten()
                .and_then(|(v, _)| v.as_i64())
                .unwrap_or(0);
            Ok(())
        })?;
        Ok((heads, value))
    }

    /// Appends a JSON value to the list at `path` (creating an empty list when
    /// missing; create it before appends from several nodes start).
    ///
    /// # Errors
    /// When the value there is not a list.
    pub fn append(
        &self,
        doc: &DocName,
        writer: &Writer,
        path: &[String],
        value: &serde_json::Value,
    ) -> Result<Vec<String>, StateOpError> {
        self.check_value(value)?;
        let Some((last, parent)) = path.split_last() else {
            return Err(StateOpError::BadRequest("append needs a key path".into()));
        };
        self.edit(doc, writer, |d| {
            let obj = walk(d, parent, true)?;
            let prop = prop_for(d, &obj, last, false)?;
            let list = match d.get(&obj, prop.clone()).map_err(conflict)? {
                None => d.put_object(&obj, prop, ObjType::List).map_err(conflict)?,
                Some((Value::Object(ObjType::List), id)) => id,
                Some(_) => {
                    return Err(StateOpError::Conflict(format!(
                        "the value at \"{}\" is not a list",
                        path.join("/")
                    )));
                }
            };
            let at = d.length(&list);
            insert_json(d, &list, at, value)
        })
    }

    pub(super) fn check_value(&self, value: &serde_json::Value) -> Result<(), StateOpError> {
        let size = serde_json::to_vec(value).map_or(0, |v| v.len()) as u64;
        if size > self.limits.max_change_bytes {
            return Err(StateOpError::TooLarge {
                what: "the value",
                size,
                limit_name: "max_change_bytes",
                limit: self.limits.max_change_bytes,
            });
        }
        Ok(())
    }

    /// The document's heads.
    ///
    /// # Errors
    /// When it is not held.
    pub fn heads(&self, doc: &DocName) -> Result<Vec<String>, StateOpError> {
        let entry = self
            .entry(doc)
            .ok_or_else(|| StateOpError::NoDocument(doc.clone()))?;
        let mut entry = lock(&entry);
        Ok(heads_hex(&entry.doc.get_heads()))
    }

    /// The document as a standard Automerge binary (a full save).
    ///
    /// # Errors
    /// When it is not held.
    pub fn export(&self, doc: &DocName) -> Result<Vec<u8>, StateOpError> {
        let entry = self
            .entry(doc)
            .ok_or_else(|| StateOpError::NoDocument(doc.clone()))?;
        let mut entry = lock(&entry);
        Ok(entry.doc.save())
    }

    /// Merges a standard Automerge binary into `doc` (created if missing). Every
    /// change it brings must be `writer`'s own (its key is the actor), which signs
    /// them: a node cannot vouch for changes other keys wrote (those arrive by sync,
    /// with their writers' signatures).
    ///
    /// # Errors
    /// When the bytes are not an Automerge document or hold another writer's changes
    /// (nothing is changed), or over a cap.
    pub fn import(
        &self,
        doc: &DocName,
        writer: &Writer,
        bytes: &[u8],
    ) -> Result<Vec<String>, StateOpError> {
        if bytes.len() as u64 > self.limits.max_doc_bytes {
            return Err(StateOpError::TooLarge {
                what: "the import",
                size: bytes.len() as u64,
                limit_name: "max_doc_bytes",
                limit: self.limits.max_doc_bytes,
            });
        }
        check_changes("not an Automerge document", None, &[bytes])?;
        let mut other = guarded("not an Automerge document", || AutoCommit::load(bytes))
            .map_err(StateOpError::BadDocument)?;
        let entry = self.entry_or_create(doc, true)?;
        let mut entry = lock(&entry);
        let own = writer.key.verifying_key().to_bytes();
        let foreign = other.get_changes(&[]).into_iter().find(|c| {
            kith_protocol::state::writes::writer_key(c.actor_id().to_bytes()) != Some(own)
                && !entry.signatures.contains_key(&c.hash().0)
        });
        if let Some(c) = foreign {
            return Err(StateOpError::PermissionDenied(format!(
                "permission_denied: the import holds change {} by {}, not by this node's writer key {} for the namespace; import only documents this key wrote (other writers' changes arrive by sync, with their signatures)",
                c.hash(),
                c.actor_id(),
                hex::encode(own)
            )));
        }
        if let Err(e) = guarded("cannot merge", || entry.doc.merge(&mut other)) {
            self.revert(&mut entry)?;
            return Err(StateOpError::BadDocument(e));
        }
        self.sign_own(&mut entry, &writer.key);
        self.persist(&mut entry)?;
        Ok(heads_hex(&entry.persisted))
    }
}
