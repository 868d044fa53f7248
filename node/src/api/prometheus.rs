//! `GET /metrics`: the node's gauges and counters, then the call metrics, in
//! Prometheus text format (`docs/http-api.md`).

use std::fmt::Write as _;

use crate::metrics::{ApiRefusal, header};
use crate::node::Node;

/// The whole `/metrics` document of a node: node gauges and counters, then the call
/// metrics.
pub(crate) fn render_node(node: &Node) -> String {
    let st = node.status();
    let mut out = String::new();
    header(
        &mut out,
        "kith_calls_total",
        "counter",
        "Calls handled by this node (as entry or for a peer), by result.",
    );
    for (result, n) in [
        ("ok", st.calls_served),
        ("failed", st.calls_failed),
        ("refused", st.calls_refused),
    ] {
        let _ = writeln!(out, "kith_calls_total{{result=\"{result}\"}} {n}");
    }
    header(
        &mut out,
        "kith_api_refused_total",
        "counter",
        "HTTP API requests refused before their route, by reason (docs/security.md).",
    );
    for reason in ApiRefusal::ALL {
        let _ = writeln!(
            out,
            "kith_api_refused_total{{reason=\"{}\"}} {}",
            reason.label(),
            node.metrics.api_refusals(reason)
        );
    }
    let nat = st.nat.clone().unwrap_or_default();
    let series: [(&str, &str, &str, f64); 26] = [
        (
            "kith_state_documents",
            "gauge",
            "State documents held.",
            st.state.documents as f64,
        ),
        (
            "kith_state_bytes",
            "gauge",
            "Bytes of state documents on disk.",
            st.state.bytes as f64,
        ),
        (
            "kith_state_sync_sent_bytes_total",
            "counter",
            "Bytes of Automerge sync messages sent to peers.",
            st.state.sync_sent_bytes as f64,
        ),
        (
            "kith_state_sync_received_bytes_total",
            "counter",
            "Bytes of Automerge sync messages received from peers.",
            st.state.sync_received_bytes as f64,
        ),
        (
            "kith_state_fetches_total",
            "counter",
            "State documents a function named that this node lacked, asked of peers before the call ran.",
            st.state.fetches as f64,
        ),
        (
            "kith_nat_private",
            "gauge",
            "1 when AutoNAT found this node unreachable from outside (behind a NAT).",
            f64::from(u8::from(nat.status == "private")),
        ),
        (
            "kith_relay_reservations",
            "gauge",
            "Relays holding a reservation for this node.",
            nat.relayed_addresses.len() as f64,
        ),
        (
            "kith_relayed_connections",
            "gauge",
            "Connections through a relay, open now.",
            nat.relayed_connections as f64,
        ),
        (
            "kith_direct_upgrades_total",
            "counter",
            "Relayed connections replaced by direct ones (dial-back or DCUtR hole punch).",
            nat.direct_upgrades as f64,
        ),
        (
            "kith_calls_running",
            "gauge",
            "Calls running now.",
            st.calls_running as f64,
        ),
        (
            "kith_calls_queued",
            "gauge",
            "Calls waiting for a slot.",
            st.calls_queued as f64,
        ),
        (
            "kith_call_slots",
            "gauge",
            "Calls this node runs at once (max_concurrent_calls).",
            st.capacity.slots as f64,
        ),
        (
            "kith_forwarded_total",
            "counter",
            "Calls this node placed on a peer.",
            st.forwarded as f64,
        ),
        (
            "kith_fuel_donated_total",
            "counter",
            "Fuel this node used running calls for peers (receipts issued).",
            st.receipts.served.fuel as f64,
        ),
        (
            "kith_fuel_consumed_total",
            "counter",
            "Fuel peers used running this node's calls (receipts received and checked).",
            st.receipts.consumed.fuel as f64,
        ),
        (
            "kith_receipts_refused_total",
            "counter",
            "Peers' receipts refused: forged, for another call or output, impossible fuel.",
            st.receipts.refused as f64,
        ),
        (
            "kith_outvoted_total",
            "counter",
            "Answers to verified calls that lost the vote (each penalised).",
            st.receipts.outvoted as f64,
        ),
        (
            "kith_remote_calls_served_total",
            "counter",
            "Calls peers placed on this node that it ran.",
            st.remote_calls_served as f64,
        ),
        (
            "kith_modules_fetched_total",
            "counter",
            "Modules fetched from peers.",
            st.fetched as f64,
        ),
        (
            "kith_modules_served_total",
            "counter",
            "Modules served to peers.",
            st.fetches_served as f64,
        ),
        (
            "kith_store_bytes",
            "gauge",
            "Bytes in the module store.",
            st.store.bytes as f64,
        ),
        (
            "kith_store_budget_bytes",
            "gauge",
            "The store's byte budget.",
            st.store.budget as f64,
        ),
        (
            "kith_store_functions",
            "gauge",
            "Functions stored.",
            st.store.functions as f64,
        ),
        (
            "kith_peers_connected",
            "gauge",
            "Connected peers.",
            st.peers_connected as f64,
        ),
        (
            "kith_alias_records",
            "gauge",
            "Alias records known.",
            st.alias_records as f64,
        ),
        (
            "kith_uptime_seconds",
            "gauge",
            "Seconds since the node started.",
            st.uptime_secs as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    if let Some(net) = node.net() {
        header(
            &mut out,
            "kith_net_tracked",
            "gauge",
            "Entries in the network task's per-peer maps, each capped or pruned (docs/security.md).",
        );
        let peers = net.peers();
        for (map, n) in peers.tracked.labelled() {
            let _ = writeln!(out, "kith_net_tracked{{map=\"{map}\"}} {n}");
        }
        header(
            &mut out,
            "kith_warm_total",
            "counter",
            "Who-has-it-warm questions asked of the nearest neighbours, and calls held for their answers (late binding), by event.",
        );
        let w = peers.warm;
        for (event, n) in [
            ("questions", w.lookups),
            ("empty", w.empty),
            ("cache_hits", w.cache_hits),
            ("questions_capped", w.lookups_capped),
            ("held", w.held),
            ("released_found", w.released_found),
            ("released_empty", w.released_empty),
            ("held_capped", w.held_capped),
        ] {
            let _ = writeln!(out, "kith_warm_total{{event=\"{event}\"}} {n}");
        }
        header(
            &mut out,
            "kith_net_bytes_total",
            "counter",
            "Payload bytes of kith's own protocols, by protocol and direction (updated every second).",
        );
        for (proto, sent, received) in peers.bytes.totals() {
            let p = proto.label();
            let _ = writeln!(
                out,
                "kith_net_bytes_total{{protocol=\"{p}\",direction=\"sent\"}} {sent}"
            );
            let _ = writeln!(
                out,
                "kith_net_bytes_total{{protocol=\"{p}\",direction=\"received\"}} {received}"
            );
        }
    }
    node.metrics.render(&mut out);
    out
}
