//! The document file: checksummed frames (name, full saves, changes, the changes'
//! signatures), written append-only and read back with a torn tail cut. A write
//! appends the signatures of its changes before the changes (one `write`, one fsync),
//! so a change on disk always has its signature beside it.

use super::*;

/// Frame kinds.
pub(super) const NAME: u8 = 0;
pub(super) const FULL: u8 = 1;
pub(super) const CHANGES: u8 = 2;
pub(super) const SIGNATURES: u8 = 3;
/// Frame header: kind, length, checksum.
pub(super) const HEADER: usize = 1 + 4 + 8;

pub(super) fn checksum(payload: &[u8]) -> [u8; 8] {
    let h = blake3::hash(payload);
    let mut out = [0; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    out
}

pub(super) fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&checksum(payload));
    out.extend_from_slice(payload);
    out
}

/// The frames of a file, and the length of its good prefix (a torn or corrupt tail
/// is not returned).
pub(super) fn frames(bytes: &[u8]) -> (Vec<(u8, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let kind = bytes[at];
        let len = u32::from_le_bytes([bytes[at + 1], bytes[at + 2], bytes[at + 3], bytes[at + 4]])
            as usize;
        let Some(end) = (at + HEADER).checked_add(len).filter(|e| *e <= bytes.len()) else {
            break;
        };
        let payload = &bytes[at + HEADER..end];
        if bytes[at + 5..at + HEADER] != checksum(payload) || kind > SIGNATURES {
            break;
        }
        out.push((kind, payload));
        at = end;
    }
    (out, at)
}

/// A document file's contents, decoded.
pub struct Decoded {
    /// The document's name (the first frame).
    pub name: DocName,
    /// The document.
    pub doc: AutoCommit,
    /// Bytes of its last full save.
    pub full_bytes: u64,
    /// The writers' signatures, by change hash.
    pub signatures: HashMap<[u8; 32], [u8; 64]>,
    /// Length of the file's good prefix; anything after it is a torn or corrupt tail.
    pub good: usize,
}

/// Decodes a document file: its frames, then the document they hold.
///
/// # Errors
/// When there is no name frame, the name is not a document name, a second name
/// frame appears, or Automerge refuses a save or a change.
pub fn decode_file(bytes: &[u8]) -> Result<Decoded, String> {
    let (frames, good) = frames(bytes);
    let Some(((NAME, name), rest)) = frames.split_first().map(|(a, b)| (*a, b)) else {
        return Err("no name frame".into());
    };
    let name: DocName = std::str::from_utf8(name)
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e: kith_protocol::state::StateError| e.to_string())?;
    let payloads: Vec<&[u8]> = rest
        .iter()
        .filter(|(k, _)| *k != SIGNATURES)
        .map(|(_, p)| *p)
        .collect();
    check_changes("the saved document", None, &payloads).map_err(|e| e.to_string())?;
    let mut doc = AutoCommit::new();
    let mut full_bytes = 0;
    let mut signatures = HashMap::new();
    for (kind, payload) in rest {
        match *kind {
            SIGNATURES => {
                for c in payload.chunks_exact(96) {
                    let mut hash = [0u8; 32];
                    let mut sig = [0u8; 64];
                    hash.copy_from_slice(&c[..32]);
                    sig.copy_from_slice(&c[32..]);
                    signatures.insert(hash, sig);
                }
            }
            FULL => {
                doc = guarded("full save", || AutoCommit::load(payload))?;
                full_bytes = payload.len() as u64;
            }
            CHANGES => {
                guarded("changes", || doc.load_incremental(payload))?;
            }
            _ => return Err("a second name frame".into()),
        }
    }
    Ok(Decoded {
        name,
        doc,
        full_bytes,
        signatures,
        good,
    })
}

/// Frames `payload` as the file format does (for tests and fuzzing seeds): kind 0 is
/// the name, 1 a full save, 2 changes, 3 signatures.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    frame(kind, payload)
}

pub(super) fn file_name(doc: &DocName) -> String {
    format!(
        "{}.doc",
        &blake3::hash(doc.to_string().as_bytes()).to_hex()[..32]
    )
}

pub(super) fn heads_hex(heads: &[automerge::ChangeHash]) -> Vec<String> {
    heads.iter().map(ToString::to_string).collect()
}

/// The payload of a signatures frame.
pub(super) fn signatures_payload<'a>(
    sigs: impl IntoIterator<Item = (&'a [u8; 32], &'a [u8; 64])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (hash, sig) in sigs {
        out.extend_from_slice(hash);
        out.extend_from_slice(sig);
    }
    out
}
