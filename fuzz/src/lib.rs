//! Fuzz targets: every decoder that takes bytes from a peer or a file, each a function
//! of arbitrary bytes that must never panic, hang or allocate without bound.
//!
//! The cargo-fuzz harness in `fuzz/harness` calls these under libFuzzer (see
//! `fuzz/README.md`); `tests/replay.rs` runs every input of the committed corpora
//! through them in the normal test run, so a crash found once stays fixed.
//!
//! Each target drives the node's own code path for its input. Where the node turns a
//! dependency's panic into an error (Automerge, see `kith_node::state`), the target
//! does too: [`quiet_caught_panics`] keeps such a caught panic from counting as a
//! crash, while a panic that escapes still does.

use automerge::transaction::Transactable;
use ed25519_dalek::Signer;
use kith_protocol::{alias, capacity, module, state, wire};

/// A fuzz target: a function of arbitrary bytes that must not panic.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("wire", wire_messages),
    ("advert", advert),
    ("alias", alias_records),
    ("state_sync", state_sync),
    ("state_file", state_file),
    ("manifest", manifest),
    ("module", module_inspection),
    ("config", config_file),
    ("scenario", scenario_file),
];

/// Replaces the fuzzer's abort-on-any-panic hook by the default one, so a panic the
/// node's code catches is not a crash; one that escapes still aborts (libFuzzer
/// catches it at the target's edge). The harness calls it once per target.
pub fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::panic::take_hook();
    });
}

/// The four request/response messages of `/kith/fetch/1` and `/kith/invoke/2`, and
/// a receipt on its own (as `kith-receipt` headers carry them).
pub fn wire_messages(data: &[u8]) {
    let _ = wire::FetchRequest::decode(data);
    let _ = wire::FetchResponse::decode(data);
    let _ = wire::InvokeRequest::decode(data);
    let _ = wire::InvokeResponse::decode(data);
    let _ = kith_protocol::receipt::Signed::decode(data);
}

/// The key the advert target signs with: so the checks behind the signature are
/// reached too, not only the parser in front of it.
fn advert_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// A capacity advert: as received (almost always refused at the signature), and its
/// first [`capacity::BODY_LEN`] bytes signed by a known key (so every field's check
/// runs).
pub fn advert(data: &[u8]) {
    // Adverts are judged at a fixed "now", as the simulator would.
    const NOW_MS: u64 = 1_800_000_000_000;
    let _ = capacity::Advert::decode(data, NOW_MS);
    if data.len() < capacity::BODY_LEN {
        return;
    }
    let key = advert_key();
    let mut body = data[..capacity::BODY_LEN].to_vec();
    body[1..33].copy_from_slice(key.verifying_key().as_bytes());
    let mut signed_bytes = capacity::SIGNING_CONTEXT.to_vec();
    signed_bytes.extend_from_slice(&body);
    body.extend_from_slice(&key.sign(&signed_bytes).to_bytes());
    let _ = capacity::Advert::decode(&body, NOW_MS);
}

/// Alias records (signed; applied to a registry when they verify) and the two
/// messages of alias sync.
pub fn alias_records(data: &[u8]) {
    if let Ok(signed) = alias::Signed::decode(data) {
        let mut registry = alias::Registry::default();
        let _ = registry.apply(signed);
    }
    let _ = alias::SyncRequest::decode(data);
    let _ = alias::SyncResponse::decode(data);
}

/// State sync: the `/kith/sync/1` request and response and the Automerge sync message inside, received into a document as the node does.
pub fn state_sync(data: &[u8]) {
    let _ = state::SyncResponse::decode(data);
    let message = match state::SyncRequest::decode(data) {
        Ok(request) => request.message,
        Err(_) => data.to_vec(),
    };
    // As the node does: decoded, its bloom filters checked, received, answered.
    let mut doc = automerge::AutoCommit::new();
    let _ = doc.put(automerge::ROOT, "seed", 1);
    let mut peer = automerge::sync::State::new();
    let _ = kith_node::state::receive_sync_message(&mut doc, &mut peer, &message);
}

/// A state document's file (checksummed frames around Automerge saves and changes),
/// and the same bytes framed as a full save and as changes (what `kith state import`
/// or a corrupted frame's payload give the loader).
pub fn state_file(data: &[u8]) {
    let _ = kith_node::state::decode_file(data);
    for kind in [1, 2] {
        let mut file = kith_node::state::encode_frame(0, DOC.as_bytes());
        file.extend_from_slice(&kith_node::state::encode_frame(kind, data));
        let _ = kith_node::state::decode_file(&file);
    }
}

/// A document name for framing fuzzed payloads.
const DOC: &str = "d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c/doc";

/// The `kith.manifest` section's JSON.
pub fn manifest(data: &[u8]) {
    let _ = kith_protocol::Manifest::parse(data);
}

/// Module inspection at publish (structure, features, ABI, manifest), and writing a
/// manifest section into the module.
pub fn module_inspection(data: &[u8]) {
    let _ = module::inspect(data, 1 << 24);
    let _ = module::with_manifest(data, &kith_protocol::Manifest::default());
}

/// A `kith up --config` file: TOML, then every value's check.
pub fn config_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kith_node::cli::settings::config_from_text(text);
    }
}

/// A simulator scenario file.
pub fn scenario_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kith_sim::Scenario::parse("fuzz.toml", text);
    }
}
