//! A grant record's bytes (`docs/wire-format.md`):
//!
//! ```text
//! 'G' | version (1) | namespace (32) | seq (u64 LE) | issued_ms (u64 LE)
//!     | n (u8) | n × writer key (32)
//!     | n (u8) | n × function id (32)
//!     | n (u8) | n × (len (u8) | name | len (u8) | channel)
//!     | ed25519 signature (64) over SIGNING_CONTEXT | everything before it
//! ```

use ed25519_dalek::{Signature, VerifyingKey};

use super::*;

/// Domain separation prefix of the signed bytes.
pub const SIGNING_CONTEXT: &[u8] = b"kith-grant-v1";

fn malformed(why: impl Into<String>) -> GrantError {
    GrantError::Malformed(why.into())
}

impl Grants {
    /// Checks the counts, duplicates, and that every alias is the namespace's own.
    ///
    /// # Errors
    /// [`GrantError`] naming what is wrong.
    pub fn check(&self) -> Result<(), GrantError> {
        for (what, n, max) in [
            ("writers", self.writers.len(), MAX_WRITERS),
            ("functions", self.functions.len(), MAX_FUNCTIONS),
            ("aliases", self.aliases.len(), MAX_ALIASES),
        ] {
            if n > max {
                return Err(malformed(format!(
                    "{n} {what}; a grant record names at most {max}"
                )));
            }
        }
        let mut w = self.writers.clone();
        w.sort_unstable();
        w.dedup();
        let mut f = self.functions.clone();
        f.sort_unstable_by_key(|f| *f.as_bytes());
        f.dedup();
        let mut a = self.aliases.clone();
        a.sort();
        a.dedup();
        if w.len() != self.writers.len()
            || f.len() != self.functions.len()
            || a.len() != self.aliases.len()
        {
            return Err(malformed("a subject is named twice"));
        }
        if let Some(foreign) = self.aliases.iter().find(|a| a.namespace != self.namespace) {
            return Err(GrantError::ForeignAlias(foreign.to_string()));
        }
        Ok(())
    }

    /// The signed body.
    ///
    /// # Errors
    /// See [`Self::check`].
    pub fn body(&self) -> Result<Vec<u8>, GrantError> {
        self.check()?;
        let mut b = Vec::with_capacity(MAX_RECORD);
        b.push(TAG);
        b.push(VERSION);
        b.extend_from_slice(&self.namespace.0);
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.issued_ms.to_le_bytes());
        b.push(self.writers.len() as u8);
        for w in &self.writers {
            b.extend_from_slice(w);
        }
        b.push(self.functions.len() as u8);
        for f in &self.functions {
            b.extend_from_slice(f.as_bytes());
        }
        b.push(self.aliases.len() as u8);
        for a in &self.aliases {
            for s in [&a.name, &a.channel] {
                b.push(s.len() as u8);
                b.extend_from_slice(s.as_bytes());
            }
        }
        Ok(b)
    }

    /// Signs the record with `sign` (the namespace's key).
    ///
    /// # Errors
    /// See [`Self::check`].
    pub fn sign(self, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Result<SignedGrants, GrantError> {
        let body = self.body()?;
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&body);
        let mut bytes = body;
        bytes.extend_from_slice(&sign(&message));
        let digest = *blake3::hash(&bytes).as_bytes();
        Ok(SignedGrants {
            grants: self,
            bytes,
            digest,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GrantError> {
        if self.0.len() < n {
            return Err(malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, GrantError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, GrantError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn array(&mut self) -> Result<[u8; 32], GrantError> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(b)
    }
    fn string(&mut self) -> Result<String, GrantError> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| malformed("name is not UTF-8"))
    }
}

impl SignedGrants {
    /// Decodes a record and verifies its signature against its namespace key.
    ///
    /// # Errors
    /// [`GrantError`]: malformed, bad subjects, bad signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, GrantError> {
        if bytes.len() > MAX_RECORD {
            return Err(malformed(format!(
                "{} bytes; a record is at most {MAX_RECORD} bytes",
                bytes.len()
            )));
        }
        if bytes.len() < 64 {
            return Err(malformed("truncated"));
        }
        let (body, sig) = bytes.split_at(bytes.len() - 64);
        let mut r = Reader(body);
        if r.u8()? != TAG {
            return Err(malformed("not a grant record"));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(malformed(format!(
                "record version {version} (this node speaks {VERSION})"
            )));
        }
        let namespace = Namespace(r.array()?);
        let seq = r.u64()?;
        let issued_ms = r.u64()?;
        let n = usize::from(r.u8()?);
        let writers = (0..n).map(|_| r.array()).collect::<Result<Vec<_>, _>>()?;
        let n = usize::from(r.u8()?);
        let functions = (0..n)
            .map(|_| r.array().map(FunctionId::from_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let n = usize::from(r.u8()?);
        let mut aliases = Vec::with_capacity(n.min(MAX_ALIASES));
        for _ in 0..n {
            let name = r.string()?;
            let channel = r.string()?;
            aliases.push(
                Alias::new(namespace, &name, &channel).map_err(|e| malformed(e.to_string()))?,
            );
        }
        if !r.0.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        let grants = Grants {
            namespace,
            seq,
            issued_ms,
            writers,
            functions,
            aliases,
        };
        grants.check()?;
        let key = VerifyingKey::from_bytes(&namespace.0).map_err(|_| GrantError::BadSignature)?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig);
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(body);
        key.verify_strict(&message, &Signature::from_bytes(&signature))
            .map_err(|_| GrantError::BadSignature)?;
        Ok(Self {
            grants,
            bytes: bytes.to_vec(),
            digest: *blake3::hash(bytes).as_bytes(),
        })
    }
}
