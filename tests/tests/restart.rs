//! The data dir across restarts: functions and compiled code survive, the node id is
//! stable, corruption on disk is caught, and SIGTERM lets in-flight calls finish.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_tests::cluster::publish;
use kith_tests::{NodeProcess, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

#[test]
fn restart_keeps_functions_identity_and_compiled_code() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let node = NodeProcess::start(BIN, &data, &[]);
    let id = publish(&node, guest("hello"));
    let out = node.client().call(&id, b"one".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, one!");
    let status = node.status();
    assert_eq!(status["runtime"]["compiled"], 1);
    let node_id = node.node_id.clone();
    assert!(node.terminate().success(), "clean exit on SIGTERM");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the identity key is private");
    }

    let node = NodeProcess::start(BIN, &data, &[]);
    assert_eq!(
        node.node_id, node_id,
        "the node id is stable across restarts"
    );
    assert_eq!(node.status()["functions_stored"], 1);
    let out = node.client().call(&id, b"two".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, two!");
    let status = node.status();
    assert_eq!(
        status["runtime"]["compiled"], 0,
        "no recompilation after restart"
    );
    assert_eq!(status["runtime"]["artifact_cache_hits"], 1);
    assert!(
        node.log_text()
            .contains("loaded compiled artifact from cache")
    );
}

#[test]
fn a_corrupted_blob_is_dropped_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let node = NodeProcess::start(BIN, &data, &[]);
    let id = publish(&node, guest("hello"));
    assert!(node.terminate().success());

    let blob = data.join("store/blobs").join(&id);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let node = NodeProcess::start(BIN, &data, &[]);
    let r = post(&format!("{}/v1/call/{id}", node.url), b"x".to_vec());
    assert_eq!((r.status, r.kind().as_str()), (500, "corrupt"));
    assert!(
        r.message().contains("failed verification"),
        "{}",
        r.message()
    );
    assert!(!blob.exists(), "the corrupt blob is deleted");
    let status = node.status();
    assert_eq!(status["functions_stored"], 0);
    assert_eq!(status["store"]["corrupt_dropped"], 1);
    assert_eq!(
        status["runtime"]["compiled"], 0,
        "corrupt bytes are never compiled"
    );
    assert!(node.log_text().contains("failed verification"));

    // Publishing again restores it.
    publish(&node, guest("hello"));
    let out = node.client().call(&id, b"back".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, back!");
}

#[test]
fn a_corrupted_artifact_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let node = NodeProcess::start(BIN, &data, &[]);
    let id = publish(&node, guest("hello"));
    node.client().call(&id, b"x".to_vec()).unwrap();
    assert!(node.terminate().success());

    let artifacts: Vec<_> = std::fs::read_dir(data.join("store/artifacts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1);
    let mut bytes = std::fs::read(&artifacts[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&artifacts[0], bytes).unwrap();

    let node = NodeProcess::start(BIN, &data, &[]);
    let out = node.client().call(&id, b"y".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, y!");
    let status = node.status();
    assert_eq!(status["runtime"]["compiled"], 1);
    assert_eq!(status["runtime"]["artifact_cache_hits"], 0);
    assert!(node.log_text().contains("failed its checksum"));
}

#[test]
fn leftover_temporary_files_are_cleaned_and_a_corrupt_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let node = NodeProcess::start(BIN, &data, &[]);
    assert!(node.terminate().success());
    // What a crash mid-write leaves: a temp file, never a file under a valid name.
    let tmp = data.join("store/blobs/.abc.123.0.tmp");
    std::fs::write(&tmp, b"partial").unwrap();
    let node = NodeProcess::start(BIN, &data, &[]);
    assert!(!tmp.exists());
    assert_eq!(node.status()["functions_stored"], 0);
    assert!(node.terminate().success());

    std::fs::write(data.join("identity.key"), b"garbage").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["up", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity.key is corrupted"), "{err}");
    assert_eq!(
        std::fs::read(data.join("identity.key")).unwrap(),
        b"garbage",
        "never overwritten"
    );
}

#[test]
fn sigterm_lets_an_in_flight_call_finish() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &[]);
    let id = publish(&node, guest("cpu_heavy"));
    // Warm it up so the timed call is pure work.
    node.client().call(&id, b"10".to_vec()).unwrap();
    let url = format!("{}/v1/call/{id}", node.url);
    let call = std::thread::spawn(move || post(&url, b"300000".to_vec()));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while node.status()["calls_running"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let exit = node.terminate();
    let r = call.join().unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, b"25997");
    assert!(exit.success());
}

#[test]
fn bad_flag_values_are_refused_clearly() {
    // `kith up ARGS` must fail, and its error must contain `needle`.
    let refused = |args: &[&str], needle: &str| {
        let out = std::process::Command::new(BIN)
            .arg("up")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    };
    refused(
        &[
            "--max-concurrent-calls",
            "0",
            "--offline",
            "--http",
            "127.0.0.1:0",
        ],
        "--max-concurrent-calls 0 makes a gateway",
    );
    refused(
        &["--cpu-share", "1.5", "--http", "127.0.0.1:0"],
        "--cpu-share must be above 0 and at most 1",
    );
    refused(
        &["--advert-interval-ms", "5", "--http", "127.0.0.1:0"],
        "--advert-interval-ms must be at least 100",
    );
    refused(&["--http", "not-an-address"], "--http");
}
