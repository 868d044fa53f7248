//! The `kith` command line against a real node: publish prints the hash, call writes
//! the output, errors go to stderr with a non-zero exit.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use kith_tests::{NodeProcess, guest_path};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn kith(api: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .arg("--api")
        .arg(api)
        .args(args)
        .env_remove("KITH_API")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn publish_call_status_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &[]);
    let hello = guest_path("hello");
    let out = kith(&node.url, &["publish", hello.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(
        id,
        blake3::hash(&std::fs::read(&hello).unwrap())
            .to_hex()
            .as_str()
    );

    let out = kith(&node.url, &["call", &id, "--input", "Grace"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello, Grace!");

    let out = kith(&node.url, &["call", &id], Some(b"from stdin"));
    assert_eq!(text(&out.stdout), "hello, from stdin!");

    let file = dir.path().join("input.txt");
    std::fs::write(&file, "from a file").unwrap();
    let out = kith(
        &node.url,
        &["call", &id, "--input-file", file.to_str().unwrap(), "-v"],
        None,
    );
    assert_eq!(text(&out.stdout), "hello, from a file!");
    assert!(text(&out.stderr).contains(&format!("executed by {}", node.node_id)));

    let out = kith(&node.url, &["status"], None);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&node.node_id));
    assert!(
        text(&out.stdout).contains("3 served"),
        "{}",
        text(&out.stdout)
    );

    let out = kith(&node.url, &["info", &id], None);
    assert!(
        text(&out.stdout).contains("\"fuel\": 10000000"),
        "{}",
        text(&out.stdout)
    );

    // The API can also come from the environment, and the flag may follow the subcommand.
    let out = Command::new(BIN)
        .args(["status", "--json"])
        .env("KITH_API", &node.url)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node_id"], node.node_id.as_str());
}

#[test]
fn cli_errors_go_to_stderr_with_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &[]);
    let hostile = guest_path("hostile");
    let id = text(&kith(&node.url, &["publish", hostile.to_str().unwrap()], None).stdout)
        .trim()
        .to_owned();

    let out = kith(&node.url, &["call", &id, "--input", "loop"], None);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("out of fuel"),
        "{}",
        text(&out.stderr)
    );

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let out = kith(&node.url, &["publish", junk.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not a WebAssembly module"));

    let out = kith(&node.url, &["publish", "/no/such/file.wasm"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot read /no/such/file.wasm"));

    // No node at this address.
    let out = kith("http://127.0.0.1:1", &["status"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is `kith up` running?"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn inspect_checks_a_file_locally() {
    let out = kith(
        "http://127.0.0.1:1",
        &["inspect", guest_path("hello").to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("\"fuel\":10000000"), "{s}");
}

#[test]
fn manifest_set_embeds_a_manifest_for_any_language() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &[]);
    let plain = wat::parse_str(
        r#"(module
            (import "kith" "output" (func $output (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "kith_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "kith_call") (param i32 i32) (result i32)
                (call $output (local.get 0) (local.get 1)) (i32.const 0)))"#,
    )
    .unwrap();
    let input = dir.path().join("echo.wasm");
    let output = dir.path().join("echo.manifest.wasm");
    std::fs::write(&input, plain).unwrap();
    let out = kith(
        &node.url,
        &[
            "manifest",
            "set",
            input.to_str().unwrap(),
            r#"{"fuel": 5000, "timeout_ms": 100}"#,
            "-o",
            output.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&kith(&node.url, &["publish", output.to_str().unwrap()], None).stdout)
        .trim()
        .to_owned();
    let info = text(&kith(&node.url, &["info", &id], None).stdout);
    assert!(info.contains("\"fuel\": 5000"), "{info}");
    let out = kith(&node.url, &["call", &id, "--input", "echo me"], None);
    assert_eq!(text(&out.stdout), "echo me");

    let never = dir.path().join("never.wasm");
    let bad = kith(
        &node.url,
        &[
            "manifest",
            "set",
            input.to_str().unwrap(),
            r#"{"fuel": 0}"#,
            "-o",
            never.to_str().unwrap(),
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("`fuel` = 0 is out of bounds"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!never.exists());
}

#[test]
fn keys_and_aliases_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &["--offline"]);
    let publish = |name: &str| {
        let out = kith(
            &node.url,
            &["publish", guest_path(name).to_str().unwrap()],
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    let (h1, h2) = (publish("hello"), publish("json_transform"));
    let out = kith(&node.url, &["key", "new", "me"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let ns = line.split_whitespace().next().unwrap().to_owned();
    assert_eq!(ns.len(), 64, "{line}");
    let out = kith(&node.url, &["key", "list"], None);
    assert_eq!(text(&out.stdout).trim(), format!("{ns}  me"));

    let ok = |args: &[&str]| {
        let out = kith(&node.url, args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let set = ok(&["alias", "set", "me/app@staging", &h1]);
    assert!(
        set.contains(&format!("{ns}/app@staging  seq 1  {h1}=1")),
        "{set}"
    );
    ok(&["alias", "promote", "me/app@staging", "me/app@prod"]);
    let out = kith(
        &node.url,
        &["call", "me/app@prod", "--input", "Ada", "-v"],
        None,
    );
    assert_eq!(text(&out.stdout), "hello, Ada!");
    assert!(text(&out.stderr).contains(&format!("alias {ns}/app@prod (record 1)")));
    let split = ok(&[
        "alias",
        "split",
        "me/app@prod",
        &format!("{h1}=90"),
        &format!("{h2}=10"),
    ]);
    assert!(split.contains("seq 2"), "{split}");
    ok(&["alias", "rollback", "me/app@prod"]);
    let show = ok(&["alias", "show", &format!("{ns}/app@prod")]);
    assert!(show.contains(&format!("seq 3  {h1}=1")), "{show}");
    let history = ok(&["alias", "history", "me/app@prod"]);
    assert_eq!(history.lines().count(), 3, "{history}");
    let list = ok(&["alias", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");

    // Mistakes get clear errors and a failing exit.
    let out = kith(&node.url, &["alias", "split", "me/app@prod", &h1], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("FUNCTION=WEIGHT"),
        "{}",
        text(&out.stderr)
    );
    let out = kith(&node.url, &["alias", "rollback", "me/app@staging"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no earlier record"),
        "{}",
        text(&out.stderr)
    );
    let out = kith(&node.url, &["call", "you/app@prod", "--input", "x"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown namespace"),
        "{}",
        text(&out.stderr)
    );
    let out = kith(&node.url, &["key", "new", "me"], None);
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_show_names_where_each_value_comes_from_and_profiles_apply() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kith.toml");
    std::fs::write(&file, "max_queued_calls = 5\ncpu_share = 0.3\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "config",
            "show",
            "--json",
            "--profile",
            "router",
            "--config",
        ])
        .arg(&file)
        .args(["--max-concurrent-calls", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |key: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .clone()
    };
    let check = |key: &str, value: &str, source: &str| {
        let r = row(key);
        assert_eq!(r["value"], value, "{key}: {r}");
        assert!(
            r["source"].as_str().unwrap().starts_with(source),
            "{key}: {r}"
        );
    };
    check("profile", "router", "flag");
    check("max_concurrent_calls", "3", "flag");
    check("max_queued_calls", "5", "file");
    check("cpu_share", "0.3", "file");
    check(
        "max_memory_bytes",
        &(32u64 << 20).to_string(),
        "profile router",
    );
    check("device_class", "router", "profile router");
    check("max_fuel", "10000000000", "default");

    // The node really runs with the profile's caps (file and flags over it).
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("n"),
        &["--offline", "--profile", "pi"],
    );
    let cap = node.status()["capacity"].clone();
    assert_eq!(cap["slots"], 2, "{cap}");
    assert_eq!(cap["cpu_share"], 0.5, "{cap}");
    assert_eq!(cap["memory_bytes_per_call"], 128u64 << 20, "{cap}");
    assert_eq!(cap["store_budget_bytes"], 512u64 << 20, "{cap}");

    let out = Command::new(BIN)
        .args(["config", "show", "--profile", "toaster"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pi, router, vm"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn service_unit_runs_this_binary_and_lets_calls_drain_on_sigterm() {
    let out = Command::new(BIN)
        .args([
            "service",
            "unit",
            "--config",
            "/etc/kith/node.toml",
            "--user",
            "kithd",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unit = text(&out.stdout);
    let exe = std::fs::canonicalize(BIN).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart={} up --config /etc/kith/node.toml --data-dir /var/lib/kith",
            exe.display()
        )),
        "{unit}"
    );
    for line in [
        "User=kithd",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=20",
        "StateDirectory=kith",
        "Restart=on-failure",
        "[Install]",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}:\n{unit}");
    }
}

#[test]
fn outside_its_offered_hours_a_node_refuses_calls_as_busy() {
    // Windows are built around the current local hour; if the hour turns while the
    // check runs, it runs again.
    for _ in 0..2 {
        let h = kith_node::config::local_hour();
        check_offer_hours(h);
        if kith_node::config::local_hour() == h {
            return;
        }
    }
    panic!("the local hour kept changing");
}

fn check_offer_hours(h: u8) {
    let dir = tempfile::tempdir().unwrap();
    let off = format!("{}-{h}", (h + 1) % 24); // every hour but this one
    let on = format!("{h}-{}", h + 1); // only this hour
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("off"),
        &["--offline", "--offer-hours", &off],
    );
    let id = node
        .client()
        .publish(kith_tests::guest("hello"))
        .unwrap()
        .id;
    let r = kith_tests::post(&format!("{}/v1/call/{id}", node.url), b"x".to_vec());
    if kith_node::config::local_hour() != h {
        return; // the hour turned: the caller runs the check again
    }
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.kind(), "busy");
    assert!(r.message().contains("offer_hours"), "{}", r.message());
    let cap = node.status()["capacity"].clone();
    assert_eq!(cap["offering_now"], false, "{cap}");
    assert_eq!(cap["offer_hours"], off.as_str());

    let node = NodeProcess::start(
        BIN,
        &dir.path().join("on"),
        &["--offline", "--offer-hours", &on],
    );
    let id = node
        .client()
        .publish(kith_tests::guest("hello"))
        .unwrap()
        .id;
    let r = kith_tests::post(&format!("{}/v1/call/{id}", node.url), b"x".to_vec());
    if kith_node::config::local_hour() != h {
        return;
    }
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(node.status()["capacity"]["offering_now"], true);

    let out = Command::new(BIN)
        .args(["config", "show", "--offer-hours", "25-3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("FROM-TO"),
        "{}",
        text(&out.stderr)
    );
}

/// `kith state`: put, get, increment, append, heads, export to a file, import on
/// another node, and clear errors for bad input.
#[test]
fn state_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &["--offline"]);
    let ok = |node: &NodeProcess, args: &[&str]| {
        let out = kith(&node.url, args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out.stdout
    };
    ok(&node, &["key", "new", "me"]);
    // Grants: who else may write me's documents.
    let writer = "ab".repeat(32);
    let granted = text(&ok(&node, &["grant", "me", "--writer", &writer]));
    assert!(
        granted.contains("seq 1") && granted.contains(&writer),
        "{granted}"
    );
    let shown = text(&ok(&node, &["grants", "me"]));
    assert!(shown.contains(&writer), "{shown}");
    ok(&node, &["revoke", "me", "--writer", &writer]);
    let shown = text(&ok(&node, &["grants", "me"]));
    assert!(
        shown.contains("seq 2") && !shown.contains(&writer),
        "{shown}"
    );
    ok(&node, &["state", "put", "me/cart", "/items", r#"["tea"]"#]);
    ok(
        &node,
        &["state", "append", "me/cart", "/items", r#""milk""#],
    );
    let value = text(&ok(
        &node,
        &["state", "increment", "me/cart", "/visits", "--by", "5"],
    ));
    assert_eq!(value.trim(), "5");
    let got: serde_json::Value =
        serde_json::from_slice(&ok(&node, &["state", "get", "me/cart"])).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"items": ["tea", "milk"], "visits": 5})
    );
    let item = text(&ok(&node, &["state", "get", "me/cart", "/items/1"]));
    assert_eq!(item.trim(), r#""milk""#);
    let heads = text(&ok(&node, &["state", "heads", "me/cart"]));
    assert_eq!(heads.lines().count(), 1);
    assert_eq!(heads.trim().len(), 64);

    let export = dir.path().join("cart.automerge");
    std::fs::write(&export, ok(&node, &["state", "export", "me/cart"])).unwrap();
    // Another node imports it once it holds the key that wrote it.
    let keys = dir.path().join("o").join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(dir.path().join("n/keys/me.key"), keys.join("me.key")).unwrap();
    let other = NodeProcess::start(BIN, &dir.path().join("o"), &["--offline"]);
    let ns = text(&ok(&node, &["key", "list"]));
    let ns = ns.split_whitespace().next().unwrap();
    let doc = format!("{ns}/cart");
    ok(&other, &["state", "import", &doc, export.to_str().unwrap()]);
    assert_eq!(text(&ok(&other, &["state", "heads", &doc])), heads);

    for (args, says) in [
        (
            vec!["state", "put", "me/cart", "/x", "not json"],
            "not a JSON value",
        ),
        (vec!["state", "get", "cart"], "NAMESPACE/NAME"),
        (
            vec!["state", "increment", "me/cart", "/items"],
            "not a counter",
        ),
        (vec!["state", "get", "me/nothing"], "not held"),
    ] {
        let out = kith(&node.url, &args, None);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
