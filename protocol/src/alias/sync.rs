//! `/kith/aliases/1`: comparing registries by digest and sending what differs.

use super::record::Reader;
use super::*;

/// A sync request: "here is the digest of what I have".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRequest {
    /// The asker's [`Registry::digest`].
    pub digest: [u8; 32],
}

impl SyncRequest {
    /// Encoded length.
    pub const LEN: usize = 1 + 32;

    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![VERSION];
        b.extend_from_slice(&self.digest);
        b
    }

    /// Decodes a request.
    ///
    /// # Errors
    /// Wrong length or version.
    pub fn decode(bytes: &[u8]) -> Result<Self, AliasError> {
        if bytes.len() != Self::LEN || bytes[0] != VERSION {
            return Err(AliasError::Malformed(format!(
                "sync request of {} bytes (expected {} starting with version {VERSION})",
                bytes.len(),
                Self::LEN
            )));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[1..]);
        Ok(Self { digest })
    }
}

/// A sync response: nothing to send, or the responder's records (each still to be
/// verified by the receiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The digests matched.
    Same,
    /// Up to [`MAX_SYNC_RECORDS`] encoded records.
    Records(Vec<Vec<u8>>),
}

impl SyncResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Same => vec![0],
            Self::Records(records) => {
                let records = &records[..records.len().min(MAX_SYNC_RECORDS)];
                let mut b = vec![1];
                b.extend_from_slice(&(records.len() as u32).to_le_bytes());
                for r in records {
                    b.extend_from_slice(&(r.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
                    b.extend_from_slice(r);
                }
                b
            }
        }
    }

    /// Decodes a response (the records are not verified here).
    ///
    /// # Errors
    /// Unknown tag, too many records, a record over [`MAX_RECORD`], truncation or
    /// trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, AliasError> {
        let mut r = Reader(bytes);
        match r.u8()? {
            0 if bytes.len() == 1 => Ok(Self::Same),
            1 => {
                let mut n = [0u8; 4];
                n.copy_from_slice(r.take(4)?);
                let n = u32::from_le_bytes(n) as usize;
                if n > MAX_SYNC_RECORDS {
                    return Err(AliasError::Malformed(format!(
                        "{n} records; a sync response carries at most {MAX_SYNC_RECORDS}"
                    )));
                }
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut len = [0u8; 2];
                    len.copy_from_slice(r.take(2)?);
                    let len = usize::from(u16::from_le_bytes(len));
                    // Grant records travel here too (`crate::grant`).
                    let max = MAX_RECORD.max(crate::grant::MAX_RECORD);
                    if len > max {
                        return Err(AliasError::Malformed(format!(
                            "a record of {len} bytes; at most {max}"
                        )));
                    }
                    records.push(r.take(len)?.to_vec());
                }
                if !r.0.is_empty() {
                    return Err(AliasError::Malformed("trailing bytes".into()));
                }
                Ok(Self::Records(records))
            }
            t => Err(AliasError::Malformed(format!("sync response tag {t}"))),
        }
    }
}
