//! The hostile suite: every class of hostile module (`kith_tests::hostile`) against one
//! real node, in turn. After each one the node must be alive, a normal call must
//! succeed, the node's peak RSS (VmHWM) must have stayed under its configured budget
//! plus [`MARGIN`], and the error must be the right kind, naming its limit.
//!
//! The budget is what the flags below allow: two calls at once, each with at most
//! 64 MiB of linear memory, four tables of at most 2^20 elements (8 bytes each) and
//! a 1 MiB stack, over the node's own RSS once it has served a first call.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_tests::NodeProcess;
use kith_tests::hostile::{self, Expect};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

const SLOTS: u64 = 2;
const MEMORY: u64 = 64 << 20;
const TABLE_ELEMENTS: u64 = 1 << 20;
/// What the node may use beyond its calls' budget: compiling (the largest function
/// body the structural limits allow took 99 MiB to compile), the HTTP server, and
/// the allocator's slack.
const MARGIN: u64 = 160 << 20;

struct Suite {
    node: NodeProcess,
    hello: String,
    budget: u64,
}

impl Suite {
    fn start(dir: &std::path::Path) -> Self {
        let node = NodeProcess::start(
            BIN,
            &dir.join("n"),
            &[
                "--offline",
                "--max-concurrent-calls",
                &SLOTS.to_string(),
                "--max-memory-bytes",
                &MEMORY.to_string(),
                "--max-table-elements",
                &TABLE_ELEMENTS.to_string(),
                "--compile-timeout-ms",
                "1000",
            ],
        );
        let hello = node
            .client()
            .publish(kith_tests::guest("hello"))
            .unwrap()
            .id;
        let mut suite = Self {
            node,
            hello,
            budget: 0,
        };
        suite.normal_call_works("warm-up");
        let baseline = kith_tests::proc_status_bytes(suite.node.pid(), "VmRSS:");
        let per_call = MEMORY + 4 * TABLE_ELEMENTS * 8 + (1 << 20);
        suite.budget = baseline + SLOTS * per_call;
        suite
    }

    fn normal_call_works(&self, after: &str) {
        let out = self
            .node
            .client()
            .call(&self.hello, after.as_bytes().to_vec())
            .unwrap_or_else(|e| panic!("after {after}: a normal call failed: {e}"));
        assert_eq!(out.output, format!("hello, {after}!").into_bytes());
    }

    fn check_after(&self, name: &str) {
        let status = kith_tests::get(&format!("{}/v1/status", self.node.url));
        assert_eq!(
            status.status, 200,
            "after {name}: the node is not answering"
        );
        self.normal_call_works(name);
        let peak = kith_tests::proc_status_bytes(self.node.pid(), "VmHWM:");
        assert!(
            peak <= self.budget + MARGIN,
            "after {name}: peak RSS {} MiB, over the budget of {} MiB plus {} MiB",
            peak >> 20,
            self.budget >> 20,
            MARGIN >> 20
        );
    }
}

#[test]
fn every_hostile_class_is_stopped_at_its_limit_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::start(dir.path());
    let stored = || suite.node.status()["functions_stored"].as_u64().unwrap();

    for case in hostile::refused_at_publish() {
        let before = stored();
        let r = kith_tests::post(
            &format!("{}/v1/functions", suite.node.url),
            case.module.clone(),
        );
        let Expect::Refused(status, needle) = case.expect else {
            unreachable!()
        };
        assert_eq!(r.status, status, "{}: {}", case.name, r.text());
        assert!(
            r.message().contains(needle),
            "{}: {needle:?} not in {:?}",
            case.name,
            r.message()
        );
        assert_eq!(stored(), before, "{}: something was stored", case.name);
        suite.check_after(case.name);
    }

    for case in hostile::fail_at_call() {
        let id = suite.node.client().publish(case.module.clone()).unwrap().id;
        let Expect::Fails(kind, needle) = case.expect else {
            unreachable!()
        };
        let started = Instant::now();
        let r = kith_tests::post(
            &format!("{}/v1/call/{id}", suite.node.url),
            case.input.clone(),
        );
        assert!(r.status >= 400, "{}: the call succeeded", case.name);
        assert_eq!(r.kind(), kind, "{}: {}", case.name, r.text());
        assert!(
            r.message().contains(needle),
            "{}: {needle:?} not in {:?}",
            case.name,
            r.message()
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} took {:?}",
            case.name,
            started.elapsed()
        );
        suite.check_after(case.name);
    }
}

/// A module that takes longer to compile than the node allows is refused, and the
/// refusal is remembered: publishing it again does not compile it again. Meanwhile,
/// calls of functions already loaded go on, unhindered.
#[test]
fn a_slow_compile_is_refused_once_and_never_blocks_other_calls() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::start(dir.path());
    let slow = hostile::slow_to_compile(1);
    let url = format!("{}/v1/functions", suite.node.url);
    let publisher = {
        let (url, slow) = (url.clone(), slow.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            (kith_tests::post(&url, slow), started.elapsed())
        })
    };
    // While it compiles, a loaded function answers as fast as ever.
    let mut slowest = Duration::ZERO;
    while !publisher.is_finished() {
        let started = Instant::now();
        suite.normal_call_works("meanwhile");
        slowest = slowest.max(started.elapsed());
    }
    let (r, took) = publisher.join().unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.kind(), "compile_timeout");
    assert!(
        r.message().contains("1000 ms (compile_timeout_ms)"),
        "{}",
        r.message()
    );
    assert!(took < Duration::from_secs(5), "the deadline took {took:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "a call of a loaded function took {slowest:?} while another module compiled"
    );
    assert_eq!(suite.node.status()["functions_stored"], 1);
    // Publishing it again answers from the memory of the refusal: no compile starts
    // (a wall-clock bound here failed on a loaded machine while proving less than
    // the counter does).
    let attempts = suite.node.status()["runtime"]["compile_attempts"].clone();
    assert!(attempts.as_u64().is_some_and(|n| n >= 1), "{attempts}");
    let again = kith_tests::post(&url, slow);
    assert_eq!(again.kind(), "compile_timeout");
    assert!(
        again.message().contains("1000 ms (compile_timeout_ms)"),
        "{}",
        again.message()
    );
    assert_eq!(suite.node.status()["runtime"]["compile_attempts"], attempts);
    assert_eq!(suite.node.status()["runtime"]["refused"], 1);
    suite.check_after("the slow compile");
}
