//! The interpreter backend against cranelift (issue 17): every example (Rust, C, Go,
//! Zig, AssemblyScript) and every hostile module of the hostile suite, on two real nodes that differ only in
//! `--backend`, gives the same output or the same error kind.

#![allow(clippy::unwrap_used)]

use kith_tests::hostile::{self, Expect};
use kith_tests::{NodeProcess, Raw, guest, post, toolchains};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn node(dir: &std::path::Path, backend: &str) -> NodeProcess {
    NodeProcess::start(
        BIN,
        &dir.join(backend),
        &[
            "--offline",
            "--backend",
            backend,
            "--max-concurrent-calls",
            "2",
            "--max-memory-bytes",
            &(64u64 << 20).to_string(),
            "--max-table-elements",
            &(1u64 << 20).to_string(),
            // Go's 3 MiB module takes cranelift seconds to compile in a debug build.
            "--compile-timeout-ms",
            "60000",
        ],
    )
}

/// Two nodes that differ only in their backend: (cranelift, interpreter).
fn both(dir: &std::path::Path) -> (NodeProcess, NodeProcess) {
    (node(dir, "cranelift"), node(dir, "interpreter"))
}

/// Publishes `module` and calls it with `input`: the call's answer, or why the
/// publish was refused.
fn publish_and_call(node: &NodeProcess, module: &[u8], input: &[u8]) -> Result<Raw, String> {
    let published = post(&format!("{}/v1/functions", node.url), module.to_vec());
    if published.status >= 400 {
        return Err(format!("refused at publish: {}", published.kind()));
    }
    let id = published.json()["id"].as_str().unwrap().to_owned();
    Ok(post(&format!("{}/v1/call/{id}", node.url), input.to_vec()))
}

/// What a node answered: the output, or the error kind.
fn answer(node: &NodeProcess, module: &[u8], input: &[u8]) -> Result<Vec<u8>, String> {
    let r = publish_and_call(node, module, input)?;
    if r.status == 200 {
        Ok(r.body)
    } else {
        Err(r.kind())
    }
}

/// A call that runs until a limit stops at whichever it reaches first, fuel or wall
/// time, and a slower backend reaches time first: hostile.wasm's endless loop has
/// 2e9 fuel and 5 s, which cranelift burns in about a second and the interpreter does
/// not. With a twentieth of the fuel, both reach fuel first, as the case means to show.
fn unambiguous(case: &hostile::Case) -> Vec<u8> {
    if case.name != "an infinite loop (hostile.wasm)" {
        return case.module.clone();
    }
    let info = kith_protocol::module::inspect(&case.module, u64::MAX).unwrap();
    let manifest = kith_protocol::Manifest {
        fuel: info.manifest.fuel / 20,
        ..info.manifest
    };
    kith_protocol::module::with_manifest(&case.module, &manifest).unwrap()
}

#[test]
fn the_interpreter_answers_as_cranelift_does() {
    let dir = tempfile::tempdir().unwrap();
    let (jit, interp) = both(dir.path());
    assert_eq!(interp.status()["backend"], "interpreter");
    assert_eq!(jit.status()["backend"], "cranelift");
    let order =
        br#"{"items":[{"name":"tea","price":2.5,"qty":2},{"name":"cake","price":3,"qty":1}]}"#;
    let mut cases: Vec<(String, Vec<u8>, Vec<u8>)> = vec![
        ("hello".into(), guest("hello"), b"Ada".to_vec()),
        (
            "json_transform".into(),
            guest("json_transform"),
            order.to_vec(),
        ),
        (
            "cpu_heavy n=1000".into(),
            guest("cpu_heavy"),
            b"1000".to_vec(),
        ),
        ("hostile panic".into(), guest("hostile"), b"panic".to_vec()),
    ];
    let order_json = br#"{"items":[{"name":"tea","price":2.5,"qty":2}],"tax_percent":20}"#;
    if let Some(go) = toolchains::go() {
        cases.push(("Go invoice".into(), go.clone(), order_json.to_vec()));
        cases.push(("Go invoice, not an order".into(), go, b"[]".to_vec()));
    }
    for (name, built) in [
        ("C wordfreq", toolchains::c("wordfreq")),
        ("Zig csv2json", toolchains::zig()),
        ("AssemblyScript markdown", toolchains::assemblyscript()),
    ] {
        if let Some(module) = built {
            cases.push((name.into(), module.clone(), b"a,b\n1,2\n".to_vec()));
            cases.push((format!("{name}, empty input"), module, Vec::new()));
        }
    }
    for case in hostile::fail_at_call() {
        cases.push((case.name.into(), unambiguous(&case), case.input));
    }
    let mut differ = Vec::new();
    for (name, module, input) in &cases {
        let (a, b) = (answer(&jit, module, input), answer(&interp, module, input));
        eprintln!(
            "{name}: cranelift {:?}, interpreter {:?}",
            a.as_ref().map(|o| String::from_utf8_lossy(o)
                .chars()
                .take(40)
                .collect::<String>()),
            b.as_ref().map(|o| String::from_utf8_lossy(o)
                .chars()
                .take(40)
                .collect::<String>())
        );
        if a != b {
            differ.push(name.clone());
        }
    }
    assert!(differ.is_empty(), "the backends differ on {differ:?}");
    // And the hostile cases end as the suite expects.
    for case in hostile::fail_at_call() {
        if let Expect::Fails(kind, _) = case.expect {
            assert_eq!(
                answer(&interp, &unambiguous(&case), &case.input),
                Err(kind.to_owned()),
                "{}",
                case.name
            );
        }
    }
}

/// Fuel a call used on a node, from `kith-fuel-used`.
fn fuel_used(node: &NodeProcess, module: &[u8], input: &[u8]) -> u64 {
    let r = publish_and_call(node, module, input).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.headers["kith-fuel-used"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A budget buys the same work on both backends: bulk memory operations and
/// `memory.grow` are charged at kith's rates (`kith_protocol::limits::costs`) by the
/// interpreter too, so the two counts stay close even where bulk work dominates (before,
/// a Rust `hello`, which grows its memory once, reported 30x the fuel on cranelift).
#[test]
fn a_budget_buys_the_same_work_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let (jit, interp) = both(dir.path());
    let bulk = hostile::module(
        r#"{"memory_bytes": 1048576}"#,
        r#"(func (export "kith_call") (param i32 i32) (result i32)
             (drop (memory.grow (i32.const 4)))
             (memory.fill (i32.const 65536) (i32.const 7) (i32.const 262144))
             (memory.copy (i32.const 0) (i32.const 65536) (i32.const 131072))
             i32.const 0)"#,
    );
    // Grow: 4 x 196,608; fill: 65,536; copy: 32,768; and a few operators.
    let expected = 4 * kith_protocol::limits::costs::FUEL_PER_PAGE + 65_536 + 32_768;
    for (name, module, input, band) in [
        ("bulk", bulk, Vec::new(), 0.02),
        ("hello", guest("hello"), b"Ada".to_vec(), 0.25),
        (
            "cpu_heavy n=1000",
            guest("cpu_heavy"),
            b"1000".to_vec(),
            0.25,
        ),
    ] {
        let (a, b) = (
            fuel_used(&jit, &module, &input),
            fuel_used(&interp, &module, &input),
        );
        eprintln!("{name}: cranelift {a} fuel, interpreter {b} fuel");
        let ratio = b as f64 / a as f64;
        assert!(
            (1.0 - band..=1.0 + band).contains(&ratio),
            "{name}: the interpreter counted {b} fuel, cranelift {a} (ratio {ratio:.3}, allowed ±{band})"
        );
        if name == "bulk" {
            assert!(a.abs_diff(expected) < 100, "{name}: {a} against {expected}");
        }
    }
}
