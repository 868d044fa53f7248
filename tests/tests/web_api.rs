//! The HTTP API against web pages and strangers: a real headless Chromium loads a page
//! of another origin that tries to roll back an alias, publish, write state and
//! create a key through a node's API; a forged `Host` (DNS rebinding); and the API
//! token on an address other than loopback.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kith_tests::{NodeProcess, Raw, guest, padded, post, send};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

/// Every file under `dir`, by path, with the blake3 hash of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    out
}

/// Serves `html` to every request on a port of 127.0.0.1, in the background.
fn serve_page(html: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                html.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(html.as_bytes());
        }
    });
    port
}

fn refusals(node: &NodeProcess, reason: &str) -> u64 {
    let text = kith_tests::get(&format!("{}/metrics", node.url)).text();
    let series = format!("kith_api_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .parse()
        .unwrap()
}

/// A node with a key `me`, an alias `me/app@prod` moved twice (so it can be rolled
/// back), and a state document `me/doc`.
fn victim(dir: &Path) -> (NodeProcess, String) {
    let node = NodeProcess::start(BIN, &dir.join("victim"), &["--offline"]);
    let ok = |r: Raw| {
        assert!(r.status < 300, "{} {}", r.status, r.text());
        r
    };
    let ns = ok(post(
        &format!("{}/v1/keys", node.url),
        br#"{"name":"me"}"#.to_vec(),
    ))
    .json()["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let hello = node.client().publish(guest("hello")).unwrap().id;
    let json = node.client().publish(guest("json_transform")).unwrap().id;
    for target in [&hello, &json] {
        ok(send(
            "PUT",
            &format!("{}/v1/aliases/me/app@prod", node.url),
            format!(r#"{{"targets":[{{"function":"{target}","weight":1}}]}}"#).into_bytes(),
        ));
    }
    ok(send(
        "PUT",
        &format!("{}/v1/state/me/doc?path=/x", node.url),
        br#""mine""#.to_vec(),
    ));
    (node, ns)
}

#[test]
fn a_page_of_another_origin_cannot_act_through_the_api_in_a_real_browser() {
    let Some(browser) = kith_tests::browser::chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (node, ns) = victim(dir.path());
    let hello = guest("hello");
    // A valid module the node does not have: published, it would change the store.
    let fresh = padded(&hello, hello.len() + 64, 7);
    let wasm: Vec<String> = fresh.iter().map(u8::to_string).collect();
    let before = snapshot(&node.data_dir);
    let alias_before = node.client().get_json("/v1/aliases/me/app@prod").unwrap();

    let page = format!(
        r#"<!doctype html><html><body><iframe name="sink"></iframe><pre id="out">running</pre>
<script>
const node = "{url}";
const results = [];
async function attempt(name, path, init) {{
  try {{
    const r = await fetch(node + path, init);
    results.push(name + ":" + r.type + ":" + r.status);
  }} catch (e) {{
    results.push(name + ":refused-by-browser");
  }}
}}
(async () => {{
  const plain = {{"Content-Type": "text/plain"}};
  await attempt("rollback", "/v1/aliases/{ns}/app@prod/rollback", {{method: "POST", mode: "no-cors", headers: plain, body: ""}});
  await attempt("rollback-cors", "/v1/aliases/{ns}/app@prod/rollback", {{method: "POST", headers: plain, body: ""}});
  await attempt("publish", "/v1/functions", {{method: "POST", mode: "no-cors", headers: plain, body: new Uint8Array([{wasm}])}});
  await attempt("state", "/v1/state/{ns}/doc/increment?path=/n", {{method: "POST", mode: "no-cors", headers: plain}});
  await attempt("state-put", "/v1/state/{ns}/doc?path=/x", {{method: "PUT", headers: {{"Content-Type": "application/json"}}, body: '"pwned"'}});
  await attempt("key", "/v1/keys", {{method: "POST", mode: "no-cors", headers: plain, body: '{{"name":"evil"}}'}});
  const form = document.createElement("form");
  form.method = "POST";
  form.action = node + "/v1/keys";
  form.target = "sink";
  form.enctype = "text/plain";
  const field = document.createElement("input");
  field.name = '{{"name":"form","x":"';
  field.value = '"}}';
  form.appendChild(field);
  document.body.appendChild(form);
  form.submit();
  await new Promise((done) => setTimeout(done, 1000));
  document.getElementById("out").textContent = "finished " + results.join(" ");
}})();
</script></body></html>"#,
        url = node.url,
        wasm = wasm.join(","),
    );
    let port = serve_page(page);
    // The page comes from another site: evil.example, which this browser resolves to
    // 127.0.0.1 (as an attacker's DNS would).
    let dom = kith_tests::browser::dump_dom(
        browser,
        dir.path(),
        &format!("http://evil.example:{port}/"),
        8000,
        &["--host-resolver-rules=MAP evil.example 127.0.0.1".to_owned()],
    );
    assert!(
        dom.contains("finished rollback:"),
        "the page did not run:\n{dom}"
    );
    for name in ["rollback", "publish", "state", "key"] {
        assert!(
            dom.contains(&format!("{name}:")),
            "{name} not attempted:\n{dom}"
        );
    }
    // Nothing changed: not the alias, the store, the state, the keys, any file.
    assert_eq!(
        node.client().get_json("/v1/aliases/me/app@prod").unwrap(),
        alias_before
    );
    let keys = node.client().get_json("/v1/keys").unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    let x = node.client().get_json("/v1/state/me/doc?path=/x").unwrap();
    assert_eq!(x, "mine");
    assert_eq!(snapshot(&node.data_dir), before, "files changed");
    // The requests reached the node, and its guard refused them.
    let refused = refusals(&node, "cross_origin");
    assert!(refused >= 6, "only {refused} cross-origin refusals:\n{dom}");

    // The same page under the node's own port but another name (DNS rebinding) gets
    // nothing but a refusal, even for the status page.
    let node_port = node.url.rsplit(':').next().unwrap();
    let dom = kith_tests::browser::dump_dom(
        browser,
        dir.path(),
        &format!("http://evil.example:{node_port}/"),
        2000,
        &["--host-resolver-rules=MAP evil.example 127.0.0.1".to_owned()],
    );
    assert!(dom.contains("bad_host"), "{dom}");
    assert!(refusals(&node, "host") >= 1);
}

/// Sends `request` as raw bytes and returns the status line and the body.
fn raw_http(url: &str, request: &str) -> (String, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    let status = out.lines().next().unwrap_or_default().to_owned();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn a_forged_host_is_refused_and_same_origin_requests_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = victim(dir.path());
    let before = snapshot(&node.data_dir);
    let body = r#"{"name":"rebound"}"#;
    for host in ["evil.example", "evil.example:7070", "kith.attacker.test:80"] {
        let (status, text) = raw_http(
            &node.url,
            &format!(
                "POST /v1/keys HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(status.contains(" 421 "), "{host}: {status}");
        assert!(
            text.contains("bad_host") && text.contains("--api-host"),
            "{text}"
        );
        let (status, _) = raw_http(
            &node.url,
            &format!("GET /v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert!(status.contains(" 421 "), "{host}: {status}");
    }
    assert_eq!(snapshot(&node.data_dir), before);
    // localhost and the address itself are served.
    let port = node.url.rsplit(':').next().unwrap();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, _) = raw_http(
            &node.url,
            &format!("GET /v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert!(status.contains(" 200 "), "{host}: {status}");
    }
    // A page of this very origin (the status page) may act.
    let host = node.url.trim_start_matches("http://");
    let (status, text) = raw_http(
        &node.url,
        &format!(
            "POST /v1/keys HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nSec-Fetch-Site: same-origin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(status.contains(" 201 "), "{status} {text}");
    // A node told its name answers to it.
    let named = NodeProcess::start(
        BIN,
        &dir.path().join("named"),
        &["--offline", "--api-host", "kith.local"],
    );
    let (status, _) = raw_http(
        &named.url,
        "GET /v1/status HTTP/1.1\r\nHost: kith.local:7070\r\nConnection: close\r\n\r\n",
    );
    assert!(status.contains(" 200 "), "{status}");
}

#[test]
fn an_api_on_another_address_than_loopback_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("public");
    let node = NodeProcess::start(BIN, &data, &["--offline", "--http", "0.0.0.0:0"]);
    let token = node.token().expect("the node made a token");
    assert_eq!(token.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("api-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The status page, /metrics and /v1/status stay open.
    for path in ["/", "/metrics", "/v1/status", "/v1/peers"] {
        let r = kith_tests::anonymous("GET", &format!("{}{path}", node.url), Vec::new());
        assert_eq!(r.status, 200, "{path}");
    }
    // Anything else needs the token.
    let hello = guest("hello");
    let r = kith_tests::anonymous("POST", &format!("{}/v1/functions", node.url), hello.clone());
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.kind(), "unauthorized");
    assert!(r.message().contains("api-token"), "{}", r.message());
    let r = kith_tests::anonymous("GET", &format!("{}/v1/keys", node.url), Vec::new());
    assert_eq!(r.status, 401);
    let wrong = kith_sdk::client::Client::with_token(&node.url, Some(&"0".repeat(64))).unwrap();
    assert!(wrong.publish(hello.clone()).is_err());
    // With it, the SDK client works, and so does the CLI, which finds it by itself.
    node.client().publish(hello).unwrap();
    let file = dir.path().join("hello.wasm");
    std::fs::write(&file, guest("json_transform")).unwrap();
    let out = Command::new(BIN)
        .args(["--api", &node.url, "publish"])
        .arg(&file)
        .env("KITH_DATA_DIR", &data)
        .env_remove("KITH_API_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(refusals(&node, "token"), 3);
    drop(node);

    // A token file that holds no token stops the node from starting, naming the file.
    std::fs::write(data.join("api-token"), "not a token\n").unwrap();
    let out = Command::new(BIN)
        .args(["up", "--offline", "--http", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api-token") && err.contains("delete it"),
        "{err}"
    );
}

#[test]
fn the_token_can_be_required_on_loopback_and_for_reads() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("strict"),
        &["--offline", "--api-token-always", "--api-token-for-reads"],
    );
    for path in ["/v1/status", "/metrics", "/v1/keys"] {
        let r = kith_tests::anonymous("GET", &format!("{}{path}", node.url), Vec::new());
        assert_eq!(r.status, 401, "{path}");
    }
    assert_eq!(node.status()["functions_stored"], 0);
    node.client().publish(guest("hello")).unwrap();
}
