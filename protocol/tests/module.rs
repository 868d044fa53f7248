//! Black-box checks of `module::inspect` on hand-written modules.

#![allow(clippy::unwrap_used)]

use kith_protocol::manifest::ManifestError;
use kith_protocol::module::{ModuleError, inspect};

const LIMIT: u64 = 1 << 20;

fn module(body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {body})")).expect("test wat parses")
}

const GOOD_EXPORTS: &str = r#"
    (memory (export "memory") 1)
    (func (export "kith_alloc") (param i32) (result i32) i32.const 0)
    (func (export "kith_call") (param i32 i32) (result i32) i32.const 0)
"#;

#[test]
fn minimal_module_gets_default_manifest() {
    let info = inspect(&module(GOOD_EXPORTS), LIMIT).unwrap();
    assert!(!info.has_manifest);
    assert_eq!(info.memory_min_pages, 1);
    assert_eq!(info.manifest, Default::default());
}

#[test]
fn host_imports_with_right_signatures_are_accepted() {
    let wat = format!(
        r#"(import "kith" "output" (func (param i32 i32)))
           (import "kith" "log" (func (param i32 i32 i32)))
           (import "kith" "now_ms" (func (result i64)))
           {GOOD_EXPORTS}"#
    );
    inspect(&module(&wat), LIMIT).unwrap();
}

#[test]
fn manifest_section_is_read() {
    let wat = format!(r#"(@custom "kith.manifest" "{{\"fuel\": 42}}") {GOOD_EXPORTS}"#);
    let info = inspect(&module(&wat), LIMIT).unwrap();
    assert!(info.has_manifest);
    assert_eq!(info.manifest.fuel, 42);
}

#[test]
fn refusals_name_the_problem() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"hello world, not wasm".to_vec(),
            "not a WebAssembly module",
        ),
        (module(GOOD_EXPORTS)[..20].to_vec(), "invalid WebAssembly"),
        (
            module(
                r#"(memory (export "memory") 1)
                      (func (export "kith_alloc") (param i32) (result i32) i32.const 0)"#,
            ),
            "missing export `kith_call`",
        ),
        (
            module(
                r#"(func (export "kith_alloc") (param i32) (result i32) i32.const 0)
                      (func (export "kith_call") (param i32 i32) (result i32) i32.const 0)"#,
            ),
            "missing export `memory`",
        ),
        (
            module(
                r#"(memory (export "memory") 1)
                      (func (export "kith_alloc") (param i32) (result i32) i32.const 0)
                      (func (export "kith_call") (param i32) (result i32) i32.const 0)"#,
            ),
            "`kith_call` has signature (i32) -> (i32), the kith ABI requires (i32, i32) -> (i32)",
        ),
        (
            module(&format!(r#"(import "env" "abort" (func)) {GOOD_EXPORTS}"#)),
            "import `env.abort` is not provided",
        ),
        (
            module(&format!(
                r#"(import "kith" "log" (func (param i32))) {GOOD_EXPORTS}"#
            )),
            "`kith.log` has signature",
        ),
        (
            module(&format!(
                r#"(@custom "kith.manifest" "{{\"abi\": 9}}") {GOOD_EXPORTS}"#
            )),
            "ABI version 9",
        ),
        (
            module(&format!(
                r#"(@custom "kith.manifest" "fuel=3") {GOOD_EXPORTS}"#
            )),
            "malformed manifest",
        ),
        (
            module(
                r#"(@custom "kith.manifest" "{\"memory_bytes\": 65536}")
                      (memory (export "memory") 2)
                      (func (export "kith_alloc") (param i32) (result i32) i32.const 0)
                      (func (export "kith_call") (param i32 i32) (result i32) i32.const 0)"#,
            ),
            "initial memory is 131072 bytes",
        ),
    ];
    for (bytes, want) in cases {
        let err = inspect(&bytes, LIMIT).expect_err(want).to_string();
        assert!(err.contains(want), "expected {want:?} in {err:?}");
    }
}

#[test]
fn size_limit_is_named() {
    let bytes = module(GOOD_EXPORTS);
    let err = inspect(&bytes, 10).unwrap_err();
    assert!(matches!(err, ModuleError::TooLarge { limit: 10, .. }));
    assert!(err.to_string().contains("max_module_bytes"));
}

#[test]
fn two_manifests_are_refused() {
    let wat = format!(
        r#"(@custom "kith.manifest" "{{}}") (@custom "kith.manifest" "{{}}") {GOOD_EXPORTS}"#
    );
    assert_eq!(
        inspect(&module(&wat), LIMIT),
        Err(ModuleError::Manifest(ManifestError::Duplicate(2)))
    );
}

#[test]
fn with_manifest_adds_or_replaces_the_section() {
    use kith_protocol::Manifest;
    use kith_protocol::module::with_manifest;
    let plain = module(GOOD_EXPORTS);
    let m = Manifest {
        fuel: 1234,
        ..Manifest::default()
    };
    let with = with_manifest(&plain, &m).unwrap();
    let info = inspect(&with, LIMIT).unwrap();
    assert!(info.has_manifest);
    assert_eq!(info.manifest.fuel, 1234);

    let m2 = Manifest {
        timeout_ms: 77,
        ..Manifest::default()
    };
    let replaced = with_manifest(&with, &m2).unwrap();
    let info = inspect(&replaced, LIMIT).unwrap();
    assert_eq!(info.manifest.fuel, Manifest::DEFAULT_FUEL);
    assert_eq!(info.manifest.timeout_ms, 77);
    // Everything but the manifest is kept byte for byte.
    let again = with_manifest(&replaced, &m).unwrap();
    assert_eq!(again, with);
    assert!(with_manifest(b"nope", &m).is_err());
}

mod hostile_bytes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the checker; they are refused or accepted.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = inspect(&bytes, LIMIT);
        }

        /// A valid module with one byte changed or cut short never panics the checker.
        #[test]
        fn mutated_modules_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let wat = format!(r#"(@custom "kith.manifest" "{{\"fuel\":5}}") {GOOD_EXPORTS}"#);
            let mut bytes = module(&wat);
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            let _ = inspect(&bytes, LIMIT);
            let _ = kith_protocol::module::with_manifest(&bytes, &Default::default());
        }

        /// Arbitrary manifest payloads never panic the parser.
        #[test]
        fn arbitrary_manifests_never_panic(text in ".{0,200}") {
            let _ = kith_protocol::Manifest::parse(text.as_bytes());
        }
    }
}

#[test]
fn determinism_is_known_and_verify_needs_it() {
    let clock = format!(r#"(import "kith" "now_ms" (func (result i64))) {GOOD_EXPORTS}"#);
    let info = inspect(&module(&clock), LIMIT).unwrap();
    assert_eq!(info.nondeterministic.as_deref(), Some("kith.now_ms"));
    assert_eq!(
        inspect(&module(GOOD_EXPORTS), LIMIT)
            .unwrap()
            .nondeterministic,
        None
    );
    let pure = format!(r#"(@custom "kith.manifest" "{{\"verify\": 3}}") {GOOD_EXPORTS}"#);
    assert_eq!(inspect(&module(&pure), LIMIT).unwrap().manifest.verify, 3);
    let impure = format!(
        r#"(@custom "kith.manifest" "{{\"verify\": 3}}")
           (import "kith" "now_ms" (func (result i64))) {GOOD_EXPORTS}"#
    );
    let e = inspect(&module(&impure), LIMIT).unwrap_err();
    assert!(
        matches!(e, ModuleError::NotDeterministic { verify: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("kith.now_ms"), "{e}");
    let over = format!(r#"(@custom "kith.manifest" "{{\"verify\": 8}}") {GOOD_EXPORTS}"#);
    let e = inspect(&module(&over), LIMIT).unwrap_err();
    assert!(
        e.to_string().contains("`verify` = 8 is out of bounds"),
        "{e}"
    );
}

#[test]
fn a_wasi_command_is_a_function_of_its_own_kind() {
    use kith_protocol::module::ModuleKind;
    let command = r#"
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (memory (export "memory") 1)
        (func (export "_start"))"#;
    let info = inspect(&module(command), LIMIT).unwrap();
    assert_eq!(info.kind, ModuleKind::Wasi);
    assert_eq!(info.nondeterministic, None);
    assert_eq!(
        inspect(&module(GOOD_EXPORTS), LIMIT).unwrap().kind,
        ModuleKind::Native
    );
    // State from a WASI command, the clock making it nondeterministic.
    let with_state = r#"
        (@custom "kith.manifest" "{\"abi\": 2}")
        (import "kith" "state_get" (func (param i32 i32 i32 i32) (result i64)))
        (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start"))"#;
    let info = inspect(&module(with_state), LIMIT).unwrap();
    assert_eq!(info.kind, ModuleKind::Wasi);
    assert_eq!(info.nondeterministic.as_deref(), Some("kith.state_get"));

    let refused = |wat: &str| inspect(&module(wat), LIMIT).unwrap_err().to_string();
    let wrong = refused(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))
           (memory (export "memory") 1) (func (export "_start"))"#,
    );
    assert!(
        wrong.contains("`wasi_snapshot_preview1.fd_write` has signature"),
        "{wrong}"
    );
    let unknown = refused(
        r#"(import "wasi_snapshot_preview1" "fd_teleport" (func))
           (memory (export "memory") 1) (func (export "_start"))"#,
    );
    assert!(unknown.contains("is not provided"), "{unknown}");
    let start = refused(r#"(memory (export "memory") 1) (func (export "_start") (param i32))"#);
    assert!(start.contains("`_start` has signature"), "{start}");
    let neither = refused(r#"(memory (export "memory") 1)"#);
    assert!(
        neither.contains("a WASI command exports `_start`"),
        "{neither}"
    );
}

#[test]
fn the_start_function_becomes_an_export() {
    let with_start = module(&format!(r#"(func $s) (start $s) {GOOD_EXPORTS}"#));
    let moved = kith_protocol::module::start_as_export(&with_start, "run_start").unwrap();
    let expected = module(&format!(
        r#"(func $s) (export "run_start" (func $s)) {GOOD_EXPORTS}"#
    ));
    assert_eq!(
        inspect(&moved, LIMIT).unwrap().size,
        expected.len() as u64,
        "same size as the module written that way"
    );
    let exports: Vec<String> = wasmparser::Parser::new(0)
        .parse_all(&moved)
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::ExportSection(r) => Some(
                r.into_iter()
                    .map(|e| e.unwrap().name.to_owned())
                    .collect::<Vec<_>>(),
            ),
            wasmparser::Payload::StartSection { .. } => panic!("the start section is gone"),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(exports.contains(&"run_start".to_owned()), "{exports:?}");
    let without = module(GOOD_EXPORTS);
    assert_eq!(
        kith_protocol::module::start_as_export(&without, "x").unwrap(),
        without
    );
    // A module with a start function and no exports at all gets an export section.
    let bare = wat::parse_str("(module (func $s) (start $s))").unwrap();
    let moved = kith_protocol::module::start_as_export(&bare, "run_start").unwrap();
    assert_eq!(
        moved,
        wat::parse_str(r#"(module (func $s) (export "run_start" (func $s)))"#).unwrap()
    );
}
