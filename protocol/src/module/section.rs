//! Writing the manifest section into a module (`kith manifest set`).

use wasmparser::{Parser, Payload};

use super::ModuleError;
use crate::abi;
use crate::manifest::Manifest;

/// The export section's id.
const EXPORT_SECTION: u8 = 7;

/// Returns `module` with `manifest` as its only `kith.manifest` section (existing ones
/// are removed; everything else is kept byte for byte, in order).
///
/// # Errors
/// Fails if `module` is not a parseable WebAssembly module.
pub fn with_manifest(module: &[u8], manifest: &Manifest) -> Result<Vec<u8>, ModuleError> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err(ModuleError::NotWasm("missing the `\\0asm` magic number"));
    }
    let mut out = module[..8].to_vec();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| ModuleError::Invalid(e.to_string()))?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        if let Payload::CustomSection(section) = &payload
            && section.name() == abi::MANIFEST_SECTION
        {
            continue;
        }
        // `range` covers the section's contents; re-emit id, size and contents.
        let (start, end) = (to_usize(range.start), to_usize(range.end));
        let contents = module
            .get(start..end)
            .ok_or_else(|| ModuleError::Invalid(format!("section {id} is truncated")))?;
        out.push(id);
        leb128(&mut out, range.end - range.start);
        out.extend_from_slice(contents);
    }
    let json = manifest.to_json();
    let name = abi::MANIFEST_SECTION.as_bytes();
    let mut body = Vec::new();
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name);
    body.extend_from_slice(json.as_bytes());
    out.push(0);
    leb128(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Returns `module` with its start function taken out of instantiation: the start
/// section dropped and the function exported as `export` instead, so a runtime can
/// call it itself, under the call's limits. Unchanged when there is no start section.
///
/// # Errors
/// Fails if `module` is not a parseable WebAssembly module.
pub fn start_as_export(module: &[u8], export: &str) -> Result<Vec<u8>, ModuleError> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err(ModuleError::NotWasm("missing the `\\0asm` magic number"));
    }
    let invalid = |e: wasmparser::BinaryReaderError| ModuleError::Invalid(e.to_string());
    let mut start = None;
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::StartSection { func, .. } = payload.map_err(invalid)? {
            start = Some(func);
        }
    }
    let Some(start) = start else {
        return Ok(module.to_vec());
    };
    // An export section: `count` entries, `entries` (already encoded), then ours.
    let exports = |out: &mut Vec<u8>, count: u32, entries: &[u8]| {
        let mut body = Vec::new();
        leb128(&mut body, u64::from(count) + 1);
        body.extend_from_slice(entries);
        leb128(&mut body, export.len() as u64);
        body.extend_from_slice(export.as_bytes());
        body.push(0); // a function
        leb128(&mut body, u64::from(start));
        out.push(EXPORT_SECTION);
        leb128(out, body.len() as u64);
        out.extend_from_slice(&body);
    };
    let mut out = module[..8].to_vec();
    let mut exported = false;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(invalid)?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        let contents = module
            .get(to_usize(range.start)..to_usize(range.end))
            .ok_or_else(|| ModuleError::Invalid(format!("section {id} is truncated")))?;
        match payload {
            // The export section comes right before the start section: a module with
            // none gets one in the start section's place.
            Payload::StartSection { .. } if !exported => exports(&mut out, 0, &[]),
            Payload::StartSection { .. } => {}
            Payload::ExportSection(reader) => {
                exported = true;
                exports(&mut out, reader.count(), &contents[leb128_len(contents)..]);
            }
            _ => {
                out.push(id);
                leb128(&mut out, range.end - range.start);
                out.extend_from_slice(contents);
            }
        }
    }
    Ok(out)
}

/// Bytes of the unsigned LEB128 number at the start of `bytes`.
fn leb128_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(bytes.len(), |i| i + 1)
}

fn to_usize(v: u64) -> usize {
    // Offsets come from parsing an in-memory slice, so they fit in usize.
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
