//! Writes the seed inputs of every corpus from real encodings (`cargo run -p kith-fuzz
//! --bin kith-fuzz-seeds`): adverts, alias records and sync messages, state files and
//! Automerge sync messages, manifests, modules, config and scenario files. The fuzzer
//! grows the corpora from there (`fuzz/README.md`).

use std::path::Path;

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use ed25519_dalek::Signer;
use kith_protocol::{FunctionId, alias, capacity, state, wire};

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed");
}

/// A real receipt for `id` (input "hello", output "out"), signed.
fn seed_receipt(id: FunctionId) -> kith_protocol::receipt::Signed {
    use kith_protocol::receipt;
    let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    receipt::Receipt {
        function: id,
        input: receipt::digest(b"hello"),
        output: receipt::digest(b"out"),
        fuel_used: 42,
        wall_us: 7,
        executor: key.verifying_key().to_bytes(),
        entry: [2; 32],
        call: receipt::CallId([9; 16]),
    }
    .sign(&key)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let id = FunctionId::of(b"seed");

    // wire
    for (i, bytes) in [
        wire::FetchRequest {
            id,
            offset: 0,
            max_len: 1 << 16,
        }
        .encode(),
        wire::FetchRequest {
            id,
            offset: 1 << 20,
            max_len: 7,
        }
        .encode(),
        wire::FetchResponse::Found {
            total: 5,
            offset: 0,
            bytes: b"\0asm\x01".to_vec(),
        }
        .encode(),
        wire::FetchResponse::NotFound.encode(),
        wire::InvokeRequest {
            id,
            input: b"hello".to_vec(),
            hops: 1,
            call: kith_protocol::receipt::CallId([9; 16]),
        }
        .encode(),
        wire::InvokeResponse::Ok {
            receipt: Box::new(seed_receipt(id)),
            output: b"out".to_vec(),
        }
        .encode(),
        seed_receipt(id).encode().to_vec(),
        wire::InvokeResponse::Err {
            kind: kith_protocol::ErrorKind::Busy,
            message: "busy: 2 calls running".into(),
        }
        .encode(),
    ]
    .iter()
    .enumerate()
    {
        write(&root, "wire", &i.to_string(), bytes);
    }

    // advert: a real signed advert, and variants
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut advert = capacity::Advert {
        peer: *key.verifying_key().as_bytes(),
        seq: 1,
        issued_ms: 1_800_000_000_000,
        device: capacity::DeviceClass::Pi,
        cores: 4,
        cpu_score: 500_000,
        memory_bytes: 256 << 20,
        max_concurrent: 2,
        max_queued: 32,
        running: 1,
        queued: 0,
        backends: capacity::backend::CRANELIFT,
        coord: kith_protocol::vivaldi::Coord::default(),
        cached: capacity::Cached::default(),
    };
    for (i, seq) in [1u64, 2, u64::MAX].iter().enumerate() {
        advert.seq = *seq;
        let bytes = advert.encode(|m| key.sign(m).to_bytes());
        write(&root, "advert", &i.to_string(), &bytes);
    }
    write(&root, "advert", "short", &[1, 2, 3]);
    write(&root, "advert", "zero", &[0; capacity::ENCODED_LEN]);

    // alias: signed records and sync messages
    let ns = alias::Namespace(*key.verifying_key().as_bytes());
    let a = alias::Alias::new(ns, "app", "prod").expect("alias");
    for (i, targets) in [
        vec![alias::Target {
            function: id,
            weight: 1,
        }],
        vec![
            alias::Target {
                function: id,
                weight: 90,
            },
            alias::Target {
                function: FunctionId::of(b"canary"),
                weight: 10,
            },
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let record = alias::Record {
            alias: a.clone(),
            seq: i as u64 + 1,
            issued_ms: 1_800_000_000_000,
            verify: 1,
            targets,
        };
        let signed = record
            .sign(|m| key.sign(m).to_bytes())
            .expect("a record signs");
        write(&root, "alias", &format!("record-{i}"), &signed.bytes);
    }
    let registry = alias::Registry::default();
    write(
        &root,
        "alias",
        "sync-request",
        &alias::SyncRequest {
            digest: registry.digest(),
        }
        .encode(),
    );
    write(&root, "alias", "empty", b"");
    write(&root, "alias", "junk", b"\x01\x02\x03junk");

    // state sync: real Automerge sync messages inside /kith/sync/1 requests
    let doc_name: state::DocName = format!("{ns}/cart").parse().expect("doc name");
    let mut doc = automerge::AutoCommit::new();
    doc.put(automerge::ROOT, "n", 1).expect("put");
    doc.put(automerge::ROOT, "s", "text").expect("put");
    let mut peer = automerge::sync::State::new();
    let mut other = automerge::AutoCommit::new();
    let mut other_peer = automerge::sync::State::new();
    for round in 0..3 {
        if let Some(m) = doc.sync().generate_sync_message(&mut peer) {
            let encoded = m.clone().encode();
            write(
                &root,
                "state_sync",
                &format!("request-{round}"),
                &state::SyncRequest {
                    doc: doc_name.clone(),
                    message: encoded.clone(),
                }
                .encode(),
            );
            write(&root, "state_sync", &format!("message-{round}"), &encoded);
            let _ = other.sync().receive_sync_message(&mut other_peer, m);
        }
        if let Some(m) = other.sync().generate_sync_message(&mut other_peer) {
            let _ = doc.sync().receive_sync_message(&mut peer, m);
        }
    }
    write(
        &root,
        "state_sync",
        "refused",
        &state::SyncResponse::Refused {
            kind: kith_protocol::ErrorKind::TooLarge,
            message: "over max_change_bytes".into(),
        }
        .encode(),
    );

    // state file: name, full save, changes
    let full = doc.save();
    doc.put(automerge::ROOT, "later", true).expect("put");
    let changes = doc.save_incremental();
    let mut file = kith_node::state::encode_frame(0, doc_name.to_string().as_bytes());
    file.extend_from_slice(&kith_node::state::encode_frame(1, &full));
    write(&root, "state_file", "saved", &file);
    file.extend_from_slice(&kith_node::state::encode_frame(2, &changes));
    write(&root, "state_file", "saved-and-changed", &file);
    let torn = file.len() - 3;
    write(&root, "state_file", "torn", &file[..torn]);
    write(&root, "state_file", "automerge-save", &full);
    write(&root, "state_file", "automerge-changes", &changes);

    // manifest
    for (i, text) in [
        "{}",
        r#"{"abi":1,"fuel":1000000,"timeout_ms":1000,"memory_bytes":2097152}"#,
        r#"{"abi":2,"state_read":["d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c/catalog"],"state_write":["d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c/cart-*"]}"#,
        r#"{"table_elements":1000,"max_input_bytes":0,"max_output_bytes":1073741824}"#,
        r#"{"colour":"blue"}"#,
    ]
    .iter()
    .enumerate()
    {
        write(&root, "manifest", &i.to_string(), text.as_bytes());
    }

    // module
    let modules = [
        r#"(module (memory (export "memory") 1)
             (func (export "kith_alloc") (param i32) (result i32) i32.const 0)
             (func (export "kith_call") (param i32 i32) (result i32) i32.const 0))"#,
        r#"(module (@custom "kith.manifest" "{\"fuel\":5}")
             (import "kith" "output" (func (param i32 i32)))
             (import "kith" "log" (func (param i32 i32 i32)))
             (memory (export "memory") 1)
             (table 4 funcref)
             (global (mut i32) (i32.const 0))
             (data (i32.const 16) "hello")
             (elem (i32.const 0) 2 3)
             (func (export "kith_alloc") (param i32) (result i32) i32.const 64)
             (func (export "kith_call") (param i32 i32) (result i32)
               (block (loop (br_if 1 (local.get 1)) (br 0)))
               (memory.fill (i32.const 0) (i32.const 0) (local.get 1))
               i32.const 0))"#,
        r#"(module (memory (export "memory") 1) (memory 1)
             (func (export "kith_alloc") (param i32) (result i32) i32.const 0)
             (func (export "kith_call") (param i32 i32) (result i32) i32.const 0))"#,
        r#"(module (func $s) (start $s) (memory (export "memory") 1)
             (func (export "kith_alloc") (param i32) (result i32) i32.const 0)
             (func (export "kith_call") (param i32 i32) (result i32)
               (drop (table.grow 0 (ref.null func) (i32.const 1))) i32.const 0)
             (table 1 funcref))"#,
    ];
    for (i, text) in modules.iter().enumerate() {
        let bytes = wat::parse_str(text).expect("seed module");
        write(&root, "module", &i.to_string(), &bytes);
    }
    write(&root, "module", "magic-only", b"\0asm\x01\0\0\0");

    // config
    for (i, text) in [
        "max_queued_calls = 5\ncpu_share = 0.3\n",
        "profile = \"pi\"\nbootstrap = [\"/ip4/127.0.0.1/tcp/7071/p2p/12D3KooWQinLeVcuPmbJyFRv7VXDhUTbdzxLxS74vB1Xyn5XCc2a\"]\n",
        "offline = true\nmax_concurrent_calls = 0\n",
        "http = \"0.0.0.0:7070\"\napi_host = [\"kith.local\"]\napi_token_always = true\n",
        "offer_hours = \"22-7\"\nstate_namespace = [\"nope\"]\n",
        "colour = 1\n",
    ]
    .iter()
    .enumerate()
    {
        write(&root, "config", &i.to_string(), text.as_bytes());
    }

    // scenario: the shipped ones
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/scenarios");
    for name in ["neighbourhood", "city", "continent"] {
        let text = std::fs::read(scenarios.join(format!("{name}.toml"))).expect("scenario");
        write(&root, "scenario", name, &text);
    }
    write(&root, "scenario", "empty", b"");
    write(&root, "scenario", "bad", b"[world]\nseed = \"x\"\n");
}
