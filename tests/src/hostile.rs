//! Hostile modules, one per class of attack a publisher can send: what each does, and
//! what a node must answer. The hostile suite (`tests/tests/hostile.rs`) runs every
//! one against one real node; the hostile-load benchmark calls them in a loop.

use crate::guest;

/// What a node must answer to a hostile case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Publishing is refused with this HTTP status and an error naming this text.
    Refused(u16, &'static str),
    /// Publishing succeeds; the call fails with this error kind, and a message naming
    /// this text.
    Fails(&'static str, &'static str),
}

/// One hostile case.
#[derive(Debug, Clone)]
pub struct Case {
    /// A short name.
    pub name: &'static str,
    /// The module.
    pub module: Vec<u8>,
    /// The call's input.
    pub input: Vec<u8>,
    /// What the node must answer.
    pub expect: Expect,
}

/// A module with the kith exports around `body`, and `manifest` as its manifest.
///
/// # Panics
/// If the text is not valid WAT.
pub fn module(manifest: &str, body: &str) -> Vec<u8> {
    let manifest = manifest.replace('"', "\\\"");
    wat::parse_str(format!(
        r#"(module
             (@custom "kith.manifest" "{manifest}")
             (memory (export "memory") 1)
             (func (export "kith_alloc") (param i32) (result i32) i32.const 16)
             {body})"#
    ))
    .unwrap_or_else(|e| panic!("hostile WAT: {e}"))
}

const CALL_OK: &str = r#"(func (export "kith_call") (param i32 i32) (result i32) i32.const 0)"#;

fn case(name: &'static str, module: Vec<u8>, input: &[u8], expect: Expect) -> Case {
    Case {
        name,
        module,
        input: input.to_vec(),
        expect,
    }
}

/// A body of `n` copies of `unit`.
fn repeat(unit: &str, n: usize) -> String {
    unit.repeat(n)
}

/// Modules refused at publish, before anything is stored or compiled.
pub fn refused_at_publish() -> Vec<Case> {
    let r = |name, status, needle, module| case(name, module, b"", Expect::Refused(status, needle));
    vec![
        r(
            "two memories",
            422,
            "defines 2 memories",
            wat::parse_str(format!(
                r#"(module (memory (export "memory") 1) (memory 1)
                     (func (export "kith_alloc") (param i32) (result i32) i32.const 0) {CALL_OK})"#
            ))
            .unwrap_or_default(),
        ),
        r(
            "shared memory (threads)",
            422,
            "uses threads",
            wat::parse_str(format!(
                r#"(module (memory (export "memory") 1 1 shared)
                     (func (export "kith_alloc") (param i32) (result i32) i32.const 0) {CALL_OK})"#
            ))
            .unwrap_or_default(),
        ),
        r(
            "simd",
            422,
            "uses simd",
            module(
                "{}",
                r#"(func (export "kith_call") (param i32 i32) (result i32)
                     (drop (i32x4.splat (i32.const 1))) i32.const 0)"#,
            ),
        ),
        r(
            "a table declared over its manifest",
            422,
            "table_elements = 1000",
            module(
                r#"{"table_elements": 1000}"#,
                &format!("(table 5000000 funcref) {CALL_OK}"),
            ),
        ),
        r(
            "nesting 1001 deep",
            422,
            "(max_nesting_depth)",
            module(
                "{}",
                &format!(
                    r#"(func (export "kith_call") (param i32 i32) (result i32) {} i32.const 0)"#,
                    repeat("(block ", 1001) + &repeat(")", 1001)
                ),
            ),
        ),
        r(
            "20001 locals",
            422,
            "(max_locals)",
            module(
                "{}",
                &format!(
                    r#"(func (export "kith_call") (param i32 i32) (result i32) (local {}) i32.const 0)"#,
                    repeat("i64 ", 20_001)
                ),
            ),
        ),
        r(
            "a 300 KB function body",
            422,
            "(max_function_body_bytes)",
            module(
                "{}",
                &format!(
                    r#"(func (export "kith_call") (param i32 i32) (result i32) {} i32.const 0)"#,
                    repeat("(drop (i32.const 1000000))", 60_000)
                ),
            ),
        ),
        r(
            "types with 60000 parameters in all",
            422,
            "(max_type_values)",
            module(
                "{}",
                &((0..60)
                    .map(|i| {
                        format!(
                            "(type (func (param {}) (result {})))",
                            repeat("i64 ", 1000),
                            repeat("i32 ", i % 3)
                        )
                    })
                    .collect::<String>()
                    + CALL_OK),
            ),
        ),
        r(
            "100001 functions",
            422,
            "(max_functions)",
            module("{}", &(repeat("(func)", 100_000) + CALL_OK)),
        ),
        r(
            "10001 globals",
            422,
            "(max_globals)",
            module(
                "{}",
                &(repeat("(global i32 (i32.const 0))", 10_001) + CALL_OK),
            ),
        ),
        r(
            "100001 data segments",
            422,
            "(max_data_segments)",
            module("{}", &(repeat(r#"(data "")"#, 100_001) + CALL_OK)),
        ),
        r(
            "passive element segments of 200000 items",
            422,
            "(max_element_items)",
            module(
                "{}",
                &format!(
                    "(func $f) (elem func {}) (elem func {}) {CALL_OK}",
                    repeat("$f ", 100_000),
                    repeat("$f ", 100_000)
                ),
            ),
        ),
        r(
            "an export with the reserved prefix",
            422,
            "reserved prefix",
            module(
                "{}",
                &format!(r#"(func (export "wasmer_kith_start")) {CALL_OK}"#),
            ),
        ),
        r(
            "an imported table",
            422,
            "not provided by the kith ABI",
            wat::parse_str(format!(
                r#"(module (import "kith" "t" (table 1 funcref)) (memory (export "memory") 1)
                     (func (export "kith_alloc") (param i32) (result i32) i32.const 0) {CALL_OK})"#
            ))
            .unwrap_or_default(),
        ),
    ]
}

/// Modules that publish, and whose calls must each end at their own limit.
pub fn fail_at_call() -> Vec<Case> {
    let f = |name, module, input: &[u8], kind, needle| {
        case(name, module, input, Expect::Fails(kind, needle))
    };
    let hostile = guest("hostile");
    let spin = r#"(func $spin (loop $l (br $l))) (start $spin)"#;
    vec![
        f(
            "table.grow by 2^31 elements",
            module(
                r#"{"table_elements": 1048576}"#,
                r#"(table 10 funcref)
                   (func (export "kith_call") (param i32 i32) (result i32)
                     (if (i32.eq (table.grow (ref.null func) (i32.const 0x7fffffff)) (i32.const -1))
                       (then unreachable))
                     i32.const 0)"#,
            ),
            b"",
            "table_limit",
            "1048576 elements (table_elements)",
        ),
        f(
            "table.grow one element at a time",
            module(
                r#"{"table_elements": 1048576, "fuel": 10000000000}"#,
                r#"(table 1 funcref)
                   (func (export "kith_call") (param i32 i32) (result i32)
                     (loop $l
                       (br_if $l (i32.ne (table.grow (ref.null func) (i32.const 1)) (i32.const -1))))
                     unreachable)"#,
            ),
            b"",
            "table_limit",
            "(table_elements)",
        ),
        f(
            "a table over the node's cap",
            module(r#"{"table_elements": 5000000}"#, CALL_OK),
            b"",
            "exceeds_node_caps",
            "table_elements",
        ),
        f(
            "a start function that never returns",
            module(
                r#"{"timeout_ms": 1000, "fuel": 10000000000}"#,
                &format!("{spin} {CALL_OK}"),
            ),
            b"",
            "timeout",
            "1000 ms (timeout_ms)",
        ),
        f(
            "a start function that runs out of fuel",
            module(r#"{"fuel": 50000000}"#, &format!("{spin} {CALL_OK}")),
            b"",
            "out_of_fuel",
            "50000000 fuel",
        ),
        f(
            "a start function that grows memory without end",
            module(
                r#"{"memory_bytes": 16777216}"#,
                &format!(
                    r#"(func $grow (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable)
                       (start $grow) {CALL_OK}"#
                ),
            ),
            b"",
            "memory_limit",
            "16777216 bytes (memory_bytes)",
        ),
        f(
            "memory.fill of 64 KiB in a loop",
            module(
                r#"{"fuel": 200000000, "timeout_ms": 30000}"#,
                r#"(func (export "kith_call") (param i32 i32) (result i32)
                     (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 65536)) (br $l))
                     i32.const 0)"#,
            ),
            b"",
            "out_of_fuel",
            "200000000 fuel",
        ),
        f(
            "memory.copy of 4 MiB in a loop",
            module(
                r#"{"fuel": 200000000, "timeout_ms": 30000, "memory_bytes": 16777216}"#,
                r#"(func (export "kith_call") (param i32 i32) (result i32)
                     (drop (memory.grow (i32.const 200)))
                     (loop $l (memory.copy (i32.const 0) (i32.const 4194304) (i32.const 4194304)) (br $l))
                     i32.const 0)"#,
            ),
            b"",
            "out_of_fuel",
            "200000000 fuel",
        ),
        f(
            "table.fill of a large table in a loop",
            module(
                r#"{"fuel": 200000000, "timeout_ms": 30000}"#,
                r#"(table 60000 funcref)
                   (func (export "kith_call") (param i32 i32) (result i32)
                     (loop $l (table.fill (i32.const 0) (ref.null func) (i32.const 60000)) (br $l))
                     i32.const 0)"#,
            ),
            b"",
            "out_of_fuel",
            "200000000 fuel",
        ),
        f(
            "a data segment outside memory",
            module(
                "{}",
                &format!(r#"(data (i32.const 1000000) "x") {CALL_OK}"#),
            ),
            b"",
            "trap",
            "while initialising the instance",
        ),
        f(
            "recursion without end",
            module(
                "{}",
                r#"(func $down (param i64) (result i64) (i64.add (call $down (local.get 0)) (i64.const 1)))
                   (func (export "kith_call") (param i32 i32) (result i32)
                     (drop (call $down (i64.const 0))) i32.const 0)"#,
            ),
            b"",
            "stack_overflow",
            "stack",
        ),
        f(
            "an infinite loop (hostile.wasm)",
            hostile.clone(),
            b"loop",
            "out_of_fuel",
            "2000000000 fuel",
        ),
        f(
            "a memory bomb (hostile.wasm)",
            hostile.clone(),
            b"bomb",
            "memory_limit",
            "16777216 bytes (memory_bytes)",
        ),
        f(
            "deep recursion (hostile.wasm)",
            hostile.clone(),
            b"recurse",
            "trap",
            "out of bounds",
        ),
        f(
            "a huge output (hostile.wasm)",
            hostile.clone(),
            b"huge",
            "output_too_large",
            "(max_output_bytes)",
        ),
        f(
            "a trap (hostile.wasm)",
            hostile.clone(),
            b"trap",
            "trap",
            "unreachable",
        ),
        f(
            "a panic (hostile.wasm)",
            hostile.clone(),
            b"panic",
            "trap",
            "panicked on purpose",
        ),
        f(
            "a sleep on the host clock (hostile.wasm)",
            hostile,
            b"sleep",
            "timeout",
            "2000 ms (timeout_ms)",
        ),
    ]
}

/// A module that takes long to compile (many functions, each a long chain of
/// arithmetic) while staying inside every structural limit.
pub fn slow_to_compile(seed: u32) -> Vec<u8> {
    let body = repeat(
        "(local.set 0 (i64.add (i64.mul (local.get 0) (i64.const 3)) (i64.const 7)))",
        400,
    );
    let funcs: String = (0..1500)
        .map(|i| {
            format!("(func (param i64) (result i64) (i64.const {i}) (drop) {body} (local.get 0))")
        })
        .collect();
    module(
        "{}",
        &format!("(global i32 (i32.const {seed})) {funcs} {CALL_OK}"),
    )
}
