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
