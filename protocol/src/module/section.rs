//! Writing the manifest section into a module (`kith manifest set`).

use wasmparser::{Parser, Payload};

use super::ModuleError;
use crate::abi;
use crate::manifest::Manifest;

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
