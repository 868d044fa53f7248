//! Small networks of real nodes for the integration tests, and the misbehaving test
//! peer (`kith-test-peer`).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::path::Path;
use std::time::Duration;

use crate::{NodeProcess, post};

/// Starts the misbehaving test peer (binary `bin`); returns it, its stdout, and its
/// peer id once ready.
pub fn test_peer(
    bin: &str,
    args: &[&str],
) -> (
    crate::KillOnDrop,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    test_peer_from(std::process::Command::new(bin), args)
}

/// [`test_peer`] from a prepared command (e.g. one that runs it in a network
/// namespace: `netns::HomeNat::command`).
pub fn test_peer_from(
    mut command: std::process::Command,
    args: &[&str],
) -> (
    crate::KillOnDrop,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    use std::io::BufRead;
    let mut child = command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let id = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("test peer did not start: {line:?}"))
        .to_owned();
    (crate::KillOnDrop(child), out, id)
}

/// Starts `n` nodes: the first alone, the rest bootstrapping from it; waits until every
/// node is connected to every other and has an advert from every other that offers
/// calls.
pub fn network(bin: &str, dir: &Path, n: usize, extra: &[&[&str]]) -> Vec<NodeProcess> {
    let no_extra: &[&str] = &[];
    let flags = |i: usize| -> Vec<String> {
        let mut v = vec!["--advert-interval-ms".to_owned(), "500".to_owned()];
        v.extend(
            extra
                .get(i)
                .copied()
                .unwrap_or(no_extra)
                .iter()
                .map(|s| (*s).to_owned()),
        );
        v
    };
    let first_flags = flags(0);
    let first_refs: Vec<&str> = first_flags.iter().map(String::as_str).collect();
    let first = NodeProcess::start(bin, &dir.join("node0"), &first_refs);
    let boot = first.p2p_addr();
    let mut nodes = vec![first];
    for i in 1..n {
        let mut f = flags(i);
        f.extend(["--bootstrap".to_owned(), boot.clone()]);
        let refs: Vec<&str> = f.iter().map(String::as_str).collect();
        nodes.push(NodeProcess::start(
            bin,
            &dir.join(format!("node{i}")),
            &refs,
        ));
    }
    // A gateway (`--max-concurrent-calls 0`) offers nothing, so it sends no adverts.
    let gateway = |i: usize| {
        extra
            .get(i)
            .is_some_and(|f| f.windows(2).any(|w| w == ["--max-concurrent-calls", "0"]))
    };
    let advertisers = (0..n).filter(|i| !gateway(*i)).count();
    for (i, node) in nodes.iter().enumerate() {
        let expected = advertisers - usize::from(!gateway(i));
        node.wait_for_peers(Duration::from_secs(30), |peers| {
            let connected = peers.iter().filter(|p| p["connected"] == true);
            connected.clone().count() >= n - 1
                && connected.filter(|p| !p["advert"].is_null()).count() >= expected
        });
    }
    nodes
}

/// Publishes `bytes` on `node`; returns the function id.
pub fn publish(node: &NodeProcess, bytes: Vec<u8>) -> String {
    let r = post(&format!("{}/v1/functions", node.url), bytes);
    assert!(r.status == 201 || r.status == 200, "{:?}", r.json());
    r.json()["id"].as_str().unwrap().to_owned()
}

/// The examples' namespace (`sdk/functions/example-namespace.key`, a public key pair:
/// never keep real data there).
pub const EXAMPLE_NAMESPACE: &str =
    "d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c";

/// Puts the examples' namespace key into `data_dir` (as the key `example`) before the
/// node starts, so that node owns the namespace the example functions use.
pub fn hold_example_key(data_dir: &Path) {
    let keys = data_dir.join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    let secret = include_str!("../../sdk/functions/example-namespace.key");
    std::fs::write(keys.join("example.key"), secret).expect("write the example key");
}

/// Changes `namespace`'s grants on `owner` (which holds its key): `grant` and
/// `revoke` are `{"writers": [...], "functions": [...], "aliases": [...]}` objects.
/// Returns the new record's sequence number.
pub fn change_grants(
    owner: &NodeProcess,
    namespace: &str,
    grant: serde_json::Value,
    revoke: serde_json::Value,
) -> u64 {
    let r = post(
        &format!("{}/v1/grants/{namespace}", owner.url),
        serde_json::json!({ "grant": grant, "revoke": revoke })
            .to_string()
            .into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["seq"].as_u64().expect("seq")
}

/// Grants `functions` on `owner` and waits until every node in `others` has the grant.
pub fn grant_functions(
    owner: &NodeProcess,
    namespace: &str,
    functions: &[&str],
    others: &[&NodeProcess],
) {
    let seq = change_grants(
        owner,
        namespace,
        serde_json::json!({ "functions": functions }),
        serde_json::json!({}),
    );
    wait_for_grants(others, namespace, seq);
}

/// Grants each of `writers` (nodes) write to `namespace` with its state key, on
/// `owner`, and waits until every writer has the grant.
pub fn grant_writers(owner: &NodeProcess, namespace: &str, writers: &[&NodeProcess]) {
    let keys: Vec<String> = writers
        .iter()
        .map(|n| {
            n.status()["state"]["state_key"]
                .as_str()
                .expect("state_key")
                .to_owned()
        })
        .collect();
    let seq = change_grants(
        owner,
        namespace,
        serde_json::json!({ "writers": keys }),
        serde_json::json!({}),
    );
    wait_for_grants(writers, namespace, seq);
}

/// Waits (60 s at most) until every node in `nodes` knows `namespace`'s grants at
/// sequence number `seq` or later.
pub fn wait_for_grants(nodes: &[&NodeProcess], namespace: &str, seq: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for n in nodes {
        loop {
            let v = crate::get(&format!("{}/v1/grants/{namespace}", n.url)).json();
            if v["seq"].as_u64().unwrap_or(0) >= seq {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not learn grant record {seq} of {namespace} within 60 s: {v}",
                n.url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits (at most `limit`) for `check`, polling every 50 ms.
///
/// # Panics
/// When `check` is still false at the limit, naming `what`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `node` knows of `peer`'s advert (`GET /v1/peers`), if anything.
pub fn advert_of(node: &NodeProcess, peer: &str) -> Option<serde_json::Value> {
    let peers = crate::get(&format!("{}/v1/peers", node.url)).json();
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer)
        .map(|p| p["advert"].clone())
        .filter(|a| !a.is_null())
}

/// Penalties `node` counts against `peer` (`GET /v1/peers`; 0 when unknown).
pub fn penalties(node: &NodeProcess, peer: &str) -> u64 {
    let peers = crate::get(&format!("{}/v1/peers", node.url)).json();
    peers
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["peer_id"] == peer)
        .and_then(|p| p["penalties"].as_u64())
        .unwrap_or(0)
}
