//! The operator's view: the status page at `GET /` (checked in a real headless
//! Chromium) and Prometheus metrics at `GET /metrics`.

#![allow(clippy::unwrap_used)]

use kith_tests::{NodeProcess, get, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn publish(node: &NodeProcess, name: &str) -> String {
    node.client().publish(guest(name)).unwrap().id
}

/// `name{labels} value` → value.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_calls_errors_fuel_and_latency_in_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &["--offline"]);
    let hello = publish(&node, "hello");
    let hostile = publish(&node, "hostile");
    for i in 0..3 {
        assert_eq!(
            post(
                &format!("{}/v1/call/{hello}", node.url),
                format!("{i}").into_bytes()
            )
            .status,
            200
        );
    }
    let r = post(&format!("{}/v1/call/{hostile}", node.url), b"loop".to_vec());
    assert_eq!(r.kind(), "out_of_fuel");
    let r = get(&format!("{}/metrics", node.url));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text();
    assert_eq!(sample(&text, "kith_calls_total{result=\"ok\"}"), 3.0);
    assert_eq!(sample(&text, "kith_calls_total{result=\"failed\"}"), 1.0);
    assert_eq!(
        sample(&text, "kith_call_errors_total{kind=\"out_of_fuel\"}"),
        1.0
    );
    assert!(sample(&text, "kith_fuel_used_total") > 0.0);
    assert_eq!(sample(&text, "kith_call_duration_seconds_count"), 4.0);
    assert_eq!(
        sample(&text, "kith_call_duration_seconds_bucket{le=\"+Inf\"}"),
        4.0
    );
    assert!(sample(&text, "kith_call_duration_seconds_sum") > 0.0);
    assert_eq!(sample(&text, "kith_store_functions"), 2.0);
    assert!(sample(&text, "kith_store_bytes") > 0.0);
    assert_eq!(sample(&text, "kith_peers_connected"), 0.0);
    // Buckets are cumulative; every series has HELP and TYPE.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("kith_call_duration_seconds_bucket"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {family} "))
                && text.contains(&format!("# HELP {family} ")),
            "{name} lacks HELP/TYPE"
        );
    }
    // The status JSON carries the same story for the page.
    let status = node.status();
    assert_eq!(status["top_functions"][0]["function"], hello.as_str());
    assert_eq!(status["top_functions"][0]["calls"], 3);
    assert_eq!(status["recent_errors"][0]["kind"], "out_of_fuel");
    assert_eq!(status["recent_errors"][0]["function"], hostile.as_str());
}

#[test]
fn the_status_page_shows_the_node_and_a_call_just_made_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &["--offline"]);
    let r = get(&format!("{}/", node.url));
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r.text().contains("<script>"));
    let hello = publish(&node, "hello");
    assert_eq!(
        post(&format!("{}/v1/call/{hello}", node.url), b"page".to_vec()).status,
        200
    );

    let Some(browser) = kith_tests::browser::chromium() else {
        return;
    };
    let dom =
        kith_tests::browser::dump_dom(browser, dir.path(), &format!("{}/", node.url), 5000, &[]);
    // Filled in by the page's JavaScript from the live API, not present in the HTML.
    assert!(
        dom.contains(&format!(">{}<", node.node_id)),
        "node id not rendered:\n{dom}"
    );
    assert!(
        dom.contains(&format!(">{hello}<")),
        "the call's function not listed:\n{dom}"
    );
    assert!(
        dom.contains(r#"<span id="error"></span>"#),
        "the page reported an error:\n{dom}"
    );
    assert!(
        dom.contains(r#"<span id="updated">updated "#),
        "the page never refreshed:\n{dom}"
    );
}
