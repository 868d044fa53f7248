//! A node behind a real NAT serves calls: network namespaces, a router doing iptables
//! MASQUERADE, a relay, and a caller outside (`kith_tests::netns`).
//!
//! Needs root, iproute2 and iptables; skipped (with a message) without them unless
//! `KITH_REQUIRE_NETNS` is set, as CI does.

use std::time::{Duration, Instant};

use kith_tests::netns::{self, HomeNat};
use kith_tests::{NodeProcess, guest};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn topology(caller_behind_nat: bool) -> Option<HomeNat> {
    if let Err(why) = HomeNat::available() {
        assert!(
            std::env::var_os("KITH_REQUIRE_NETNS").is_none(),
            "KITH_REQUIRE_NETNS is set but network namespaces are unavailable: {why}"
        );
        eprintln!("skipped: network namespaces unavailable ({why})");
        return None;
    }
    Some(HomeNat::create(caller_behind_nat).expect("build the home-NAT topology"))
}

/// The home node's status, read inside its namespace (nothing outside can reach it).
fn home_status(nat: &HomeNat) -> serde_json::Value {
    let out = HomeNat::command(&nat.home, BIN)
        .args(["--api", "http://127.0.0.1:7070", "status", "--json"])
        .output()
        .expect("run kith status in the home namespace");
    assert!(
        out.status.success(),
        "kith status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn wait_until(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The home node learns from AutoNAT that it is private, reserves a slot on the relay,
/// and is found and dialled by the caller through the relay; the home node dials the
/// (public) caller back, the relayed connection is closed, and the caller's calls run
/// on the home node.
#[test]
fn a_node_behind_a_nat_is_reached_through_a_relay_and_runs_calls() {
    let Some(nat) = topology(false) else { return };
    calls_reach_the_home_node(&nat);
}

/// Both ends behind NATs: neither can dial the other, so the relayed connection is
/// upgraded by DCUtR hole punching (simultaneous dials through both NATs).
#[test]
fn two_nodes_behind_nats_punch_a_hole_and_run_calls_directly() {
    let Some(nat) = topology(true) else { return };
    calls_reach_the_home_node(&nat);
}

fn calls_reach_the_home_node(nat: &HomeNat) {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = [
        "--listen",
        "/ip4/0.0.0.0/tcp/7071",
        "--listen",
        "/ip4/0.0.0.0/udp/7071/quic-v1",
    ];
    // The relay: public, relays for others, runs nothing itself.
    let mut flags = listen.to_vec();
    flags.extend(["--relay-server", "--max-concurrent-calls", "0"]);
    let relay = NodeProcess::start_in_netns(
        &nat.relay,
        &nat.relay_ip(),
        BIN,
        &dir.path().join("relay"),
        &flags,
    );
    let relay_addr = format!("/ip4/{}/tcp/7071/p2p/{}", nat.relay_ip(), relay.node_id);

    // The home node knows only the relay's address; nobody knows its own.
    let mut flags = listen.to_vec();
    flags.extend(["--bootstrap", &relay_addr, "--advert-interval-ms", "500"]);
    let home = NodeProcess::start_in_netns(
        &nat.home,
        "127.0.0.1",
        BIN,
        &dir.path().join("home"),
        &flags,
    );

    // The NAT is real: nothing outside can open a connection to the home node.
    assert!(
        !HomeNat::tcp_connects(&nat.caller, netns::HOME_IP, 7071),
        "the caller reaches the home node's private address directly"
    );
    assert!(
        !HomeNat::tcp_connects(&nat.caller, &nat.router_wan_ip(), 7071),
        "the router forwards inbound connections to the home node"
    );
    assert!(
        HomeNat::tcp_connects(&nat.caller, &nat.relay_ip(), 7071),
        "the caller cannot reach the relay"
    );

    let logs = || {
        format!(
            "--- home log:\n{}\n--- relay log:\n{}",
            home.log_text(),
            relay.log_text()
        )
    };
    // AutoNAT: the relay cannot dial the home node back, so it is private, and it
    // reserves a slot on the relay.
    wait_until(
        Duration::from_secs(60),
        "the home node finds it is behind a NAT and reserves a slot on the relay",
        || {
            let nat = &home_status(nat)["nat"];
            nat["status"] == "private"
                && nat["relayed_addresses"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x.as_str().is_some_and(|x| x.contains(&relay_addr)))
                })
        },
        logs,
    );

    // The caller: outside, also knows only the relay, and runs nothing itself.
    let caller = NodeProcess::start_in_netns(
        &nat.caller,
        &nat.caller_ip(),
        BIN,
        &dir.path().join("caller"),
        &[
            "--listen",
            "/ip4/0.0.0.0/tcp/7071",
            "--listen",
            "/ip4/0.0.0.0/udp/7071/quic-v1",
            "--bootstrap",
            &relay_addr,
            "--max-concurrent-calls",
            "0",
        ],
    );
    let logs = || {
        format!(
            "--- caller log:\n{}\n--- home log:\n{}\n--- relay log:\n{}",
            caller.log_text(),
            home.log_text(),
            relay.log_text()
        )
    };
    // It hears the home node's advert through the relay, looks up its (relayed)
    // address and connects; hole punching then replaces the relayed connection.
    let home_peer = |direct: bool| {
        let peers = caller.client().get_json("/v1/peers").expect("peers");
        peers.as_array().is_some_and(|peers| {
            peers.iter().any(|p| {
                p["peer_id"] == home.node_id.as_str()
                    && p["connected"] == true
                    && !p["advert"].is_null()
                    && (!direct
                        || p["address"]
                            .as_str()
                            .is_some_and(|a| !a.contains("p2p-circuit")))
            })
        })
    };
    wait_until(
        Duration::from_secs(60),
        "the caller connects to the home node",
        || home_peer(false),
        logs,
    );

    let hello = caller.client().publish(guest("hello")).expect("publish").id;
    for i in 0..5 {
        let out = caller
            .client()
            .call_explained(&hello, format!("through the NAT {i}").into_bytes())
            .unwrap_or_else(|e| panic!("call {i}: {e}\n{}", logs()));
        assert_eq!(
            out.executed_by, home.node_id,
            "call {i} runs on the node behind the NAT"
        );
        assert!(
            String::from_utf8_lossy(&out.output).contains(&format!("through the NAT {i}")),
            "call {i} output: {:?}",
            String::from_utf8_lossy(&out.output)
        );
    }

    // DCUtR: the connection becomes direct (through the NAT's mapping, not the relay).
    wait_until(
        Duration::from_secs(30),
        "the hole punch makes the caller's connection to the home node direct",
        || home_peer(true),
        logs,
    );
    let status = home_status(nat);
    let upgrades = |s: &serde_json::Value| s["nat"]["direct_upgrades"].as_u64().unwrap_or(0);
    assert!(
        upgrades(&status) + upgrades(&caller.status()) >= 1,
        "no relayed connection was upgraded; home status: {status}"
    );
    assert_eq!(status["remote_calls_served"], 5, "home status: {status}");
    let out = caller
        .client()
        .call_explained(&hello, b"direct".to_vec())
        .expect("call after the hole punch");
    assert_eq!(out.executed_by, home.node_id);
    // The relay relayed, but ran nothing.
    assert_eq!(relay.status()["remote_calls_served"], 0);
    assert!(
        relay.status()["nat"]["relay_server"] == true,
        "the relay reports itself a relay server"
    );
}
