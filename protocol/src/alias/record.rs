//! A record's bytes: encoding, signing, and decoding with the signature verified.

use super::*;

impl Record {
    /// The signed body (see `docs/wire-format.md`).
    ///
    /// # Errors
    /// If the targets are invalid (empty, over [`MAX_TARGETS`], zero weight, duplicate).
    pub fn body(&self) -> Result<Vec<u8>, AliasError> {
        check_targets(&self.targets)?;
        let a = &self.alias;
        if !(1..=crate::verify::MAX_VERIFY).contains(&self.verify) {
            return Err(AliasError::Malformed(format!(
                "verify = {} is out of bounds (1 ..= {})",
                self.verify,
                crate::verify::MAX_VERIFY
            )));
        }
        let mut b = Vec::with_capacity(MAX_RECORD);
        b.push(if self.verify > 1 {
            VERSION_VERIFY
        } else {
            VERSION
        });
        b.extend_from_slice(&a.namespace.0);
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.issued_ms.to_le_bytes());
        for s in [&a.name, &a.channel] {
            b.push(s.len() as u8);
            b.extend_from_slice(s.as_bytes());
        }
        b.push(self.targets.len() as u8);
        for t in &self.targets {
            b.extend_from_slice(t.function.as_bytes());
            b.extend_from_slice(&t.weight.to_le_bytes());
        }
        if self.verify > 1 {
            b.push(self.verify);
        }
        Ok(b)
    }

    /// Signs the record with `sign` (the namespace's key).
    ///
    /// # Errors
    /// If the targets are invalid.
    pub fn sign(self, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Result<Signed, AliasError> {
        let body = self.body()?;
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&body);
        let mut bytes = body;
        bytes.extend_from_slice(&sign(&message));
        let digest = *blake3::hash(&bytes).as_bytes();
        Ok(Signed {
            record: self,
            bytes,
            digest,
        })
    }
}

/// Reads a record or message field by field.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], AliasError> {
        if self.0.len() < n {
            return Err(AliasError::Malformed("truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, AliasError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u64(&mut self) -> Result<u64, AliasError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    pub(super) fn string(&mut self) -> Result<String, AliasError> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| AliasError::Malformed("name is not UTF-8".into()))
    }
}

impl Signed {
    /// Decodes a record and verifies its signature against its namespace key.
    ///
    /// # Errors
    /// [`AliasError`]: malformed, invalid names or targets, bad signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, AliasError> {
        if bytes.len() > MAX_RECORD {
            return Err(AliasError::Malformed(format!(
                "{} bytes; a record is at most {MAX_RECORD} bytes",
                bytes.len()
            )));
        }
        if bytes.len() < 64 {
            return Err(AliasError::Malformed("truncated".into()));
        }
        let (body, sig) = bytes.split_at(bytes.len() - 64);
        let mut r = Reader(body);
        let version = r.u8()?;
        if version != VERSION && version != VERSION_VERIFY {
            return Err(AliasError::Malformed(format!(
                "record version {version} (this node speaks {VERSION} and {VERSION_VERIFY})"
            )));
        }
        let mut ns = [0u8; 32];
        ns.copy_from_slice(r.take(32)?);
        let seq = r.u64()?;
        let issued_ms = r.u64()?;
        let name = r.string()?;
        let channel = r.string()?;
        let alias = Alias::new(Namespace(ns), &name, &channel)?;
        let n = usize::from(r.u8()?);
        let mut targets = Vec::with_capacity(n.min(MAX_TARGETS));
        for _ in 0..n {
            let mut id = [0u8; 32];
            id.copy_from_slice(r.take(32)?);
            let mut w = [0u8; 4];
            w.copy_from_slice(r.take(4)?);
            targets.push(Target {
                function: FunctionId::from_bytes(id),
                weight: u32::from_le_bytes(w),
            });
        }
        let verify = if version == VERSION_VERIFY {
            let v = r.u8()?;
            if !(2..=crate::verify::MAX_VERIFY).contains(&v) {
                return Err(AliasError::Malformed(format!(
                    "verify = {v} is out of bounds (2 ..= {})",
                    crate::verify::MAX_VERIFY
                )));
            }
            v
        } else {
            1
        };
        if !r.0.is_empty() {
            return Err(AliasError::Malformed("trailing bytes".into()));
        }
        check_targets(&targets)?;
        let key = VerifyingKey::from_bytes(&ns).map_err(|_| AliasError::BadSignature)?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig);
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(body);
        key.verify_strict(&message, &Signature::from_bytes(&signature))
            .map_err(|_| AliasError::BadSignature)?;
        Ok(Self {
            record: Record {
                alias,
                seq,
                issued_ms,
                targets,
                verify,
            },
            bytes: bytes.to_vec(),
            digest: *blake3::hash(bytes).as_bytes(),
        })
    }
}
