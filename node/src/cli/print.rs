//! How the command line prints what a node answers.

pub(super) fn print_ranking(ranking: &[serde_json::Value], ran: &str) {
    eprintln!(
        "{:<54} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "candidate", "rtt ms", "queue ms", "cold ms", "exec ms", "total ms"
    );
    for c in ranking {
        let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
        let peer = c["peer"].as_str().unwrap_or("?");
        let mut label = peer.to_owned();
        if c["local"].as_bool() == Some(true) {
            label.push_str(" (this node)");
        }
        if peer == ran {
            label.push_str(" *");
        }
        let rtt = if c["rtt_measured"].as_bool() == Some(true) {
            format!("{:.2}", f("rtt_ms"))
        } else {
            format!("~{:.2}", f("rtt_ms"))
        };
        eprintln!(
            "{label:<54} {rtt:>9} {:>9.2} {:>9.2} {:>9.3} {:>9.3}",
            f("queue_ms"),
            f("cold_ms"),
            f("exec_ms"),
            f("total_ms")
        );
    }
    eprintln!("(* ran the call; ~ = estimated from network coordinates)");
}

pub(super) fn print_peers(v: &serde_json::Value) {
    let Some(peers) = v.as_array() else { return };
    println!(
        "{:<54} {:>9} {:>8} {:>10} {:>10} {:>6}",
        "peer", "rtt ms", "device", "free/slots", "memory MiB", "state"
    );
    for p in peers {
        let a = &p["advert"];
        let rtt = p["rtt_ms"]
            .as_f64()
            .map_or("-".to_owned(), |r| format!("{r:.2}"));
        let slots = if a.is_null() {
            "-".to_owned()
        } else {
            format!("{}/{}", a["free_slots"], a["max_concurrent"])
        };
        let mem = a["memory_bytes"]
            .as_u64()
            .map_or("-".to_owned(), |m| (m >> 20).to_string());
        let state = if p["connected"].as_bool() == Some(true) {
            "up"
        } else {
            "known"
        };
        println!(
            "{:<54} {rtt:>9} {:>8} {slots:>10} {mem:>10} {state:>6}",
            p["peer_id"].as_str().unwrap_or("?"),
            a["device"].as_str().unwrap_or("-"),
        );
    }
}

pub(super) fn print_status(v: &serde_json::Value) {
    let s = |k: &str| v[k].to_string().trim_matches('"').to_owned();
    println!("node        {}", s("node_id"));
    println!("version     {}", s("version"));
    println!("uptime      {} s", s("uptime_secs"));
    println!("functions   {}", s("functions_stored"));
    println!(
        "calls       {} served, {} failed, {} refused, {} running",
        s("calls_served"),
        s("calls_failed"),
        s("calls_refused"),
        s("calls_running")
    );
    println!(
        "store       {} of {} bytes",
        v["store"]["bytes"], v["store"]["budget"]
    );
    println!(
        "compiled    {} (from artifact cache: {})",
        v["runtime"]["compiled"], v["runtime"]["artifact_cache_hits"]
    );
    println!("peers       {} connected", s("peers_connected"));
    let nat = &v["nat"];
    if nat.is_object() {
        println!(
            "reachable   {} (relayed connections made direct: {}, hole punches failed: {}; relaying for others: {})",
            nat["status"].as_str().unwrap_or("?"),
            nat["direct_upgrades"],
            nat["hole_punches_failed"],
            if nat["relay_server"] == true {
                "yes"
            } else {
                "no"
            }
        );
    }
    if let Some(addrs) = v["listen_addrs"].as_array() {
        for a in addrs {
            println!(
                "listening   {}/p2p/{}",
                a.as_str().unwrap_or("?"),
                s("node_id")
            );
        }
    }
}

/// Prints a call's receipt (and a verified call's vote) to stderr after checking it
/// against the call; false when it does not check out.
pub(super) fn receipt(out: &kith_sdk::client::CallOutput, input: &[u8]) -> bool {
    let checked = out.check_receipt(input);
    match &checked {
        Ok(r) => {
            let r = &r.receipt;
            eprintln!(
                "receipt ok: signed by the executing peer; input and output hashes match\n  call id     {}\n  input       blake3 {}\n  output      blake3 {}\n  executor    {}\n  entry       {}",
                r.call,
                hex::encode(r.input),
                hex::encode(r.output),
                hex::encode(r.executor),
                hex::encode(r.entry),
            );
        }
        Err(e) => eprintln!("receipt REFUSED: {e}"),
    }
    if let Some((agree, wanted)) = out.verified {
        eprintln!(
            "verified: {agree} of {wanted} peers of distinct networks gave this answer ({} receipts)",
            out.receipts.len()
        );
        for d in &out.dissent {
            eprintln!("  dissent    {d}");
        }
    }
    checked.is_ok()
}
