//! Helpers for kith's integration tests: the guest modules, and real `kith` node
//! processes on 127.0.0.1.

pub mod browser;
pub mod cluster;
pub mod hostile;
pub mod load;
pub mod netns;
pub mod relay;
pub mod state_attack;
pub mod toolchains;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use kith_sdk::client::{Client, ClientError};

/// The bytes of a guest function built from `sdk/functions` for wasm32.
///
/// `name` is one of `hello`, `json_transform`, `cpu_heavy`, `hostile`,
/// `visit_counter`, `visit_report`.
///
/// # Panics
/// On an unknown name or when the file cannot be read.
pub fn guest(name: &str) -> Vec<u8> {
    let path = guest_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The path of a built guest function.
///
/// # Panics
/// On an unknown name.
pub fn guest_path(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "hello" => env!("KITH_GUEST_HELLO"),
        "json_transform" => env!("KITH_GUEST_JSON_TRANSFORM"),
        "cpu_heavy" => env!("KITH_GUEST_CPU_HEAVY"),
        "hostile" => env!("KITH_GUEST_HOSTILE"),
        "visit_counter" => env!("KITH_GUEST_VISIT_COUNTER"),
        "visit_report" => env!("KITH_GUEST_VISIT_REPORT"),
        other => panic!("no guest function named {other}"),
    })
}

/// A `kith up` process serving on an ephemeral port of 127.0.0.1.
pub struct NodeProcess {
    child: Option<Child>,
    /// The API base URL.
    pub url: String,
    /// The node id it printed.
    pub node_id: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
}

impl NodeProcess {
    /// Starts `kith up` from binary `bin` with `data_dir` and extra flags, and waits
    /// until it listens.
    ///
    /// # Panics
    /// If the node does not start within 30 s.
    pub fn start(bin: &str, data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(None, bin, data_dir, extra)
    }

    /// Starts `kith up` inside network namespace `netns`, its HTTP API on
    /// `http_ip:7070` (an address the test can reach, or 127.0.0.1 when it need not).
    /// The node listens where `extra` says (`--listen`).
    ///
    /// # Panics
    /// If the node does not start within 30 s.
    pub fn start_in_netns(
        netns: &str,
        http_ip: &str,
        bin: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> Self {
        Self::spawn(Some((netns, http_ip)), bin, data_dir, extra)
    }

    fn spawn(netns: Option<(&str, &str)>, bin: &str, data_dir: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let log = data_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("create log file");
        // Tests run in parallel: never the default port, never mDNS (which would join
        // unrelated tests' nodes), unless the test asks for its own network flags.
        let mut net: Vec<&str> = Vec::new();
        if !extra.iter().any(|a| *a == "--listen" || *a == "--offline") {
            net.extend(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        }
        if !extra.contains(&"--offline") {
            net.push("--no-mdns");
        }
        let mut command = match netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let http = netns.map_or("127.0.0.1:0".to_owned(), |(_, ip)| format!("{ip}:7070"));
        // A test may choose the API address itself.
        let http_args: Vec<&str> = if extra.contains(&"--http") {
            Vec::new()
        } else {
            vec!["--http", &http]
        };
        let mut child = command
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(&http_args)
            .args(&net)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("KITH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn kith up");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "kith up did not start; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        // "kith node <id> listening on http://127.0.0.1:PORT"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.len() == 6 && words[0] == "kith" && words[4] == "on",
            "unexpected first line from kith up: {line:?}"
        );
        let node = Self {
            child: Some(child),
            url: words[5].to_owned(),
            node_id: words[2].to_owned(),
            data_dir: data_dir.to_owned(),
            log,
        };
        if let Some(token) = node.token() {
            lock_tokens().push((node.url.clone(), token));
        }
        node
    }

    /// A client for this node, with the node's API token.
    ///
    /// # Panics
    /// Never in practice (no TLS to set up).
    pub fn client(&self) -> Client {
        Client::with_token(&self.url, self.token().as_deref()).expect("client")
    }

    /// The node's API token (from its data dir), once it has made one.
    pub fn token(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.join("api-token"))
            .ok()
            .map(|t| t.trim().to_owned())
    }

    /// The node's status JSON.
    ///
    /// # Panics
    /// If the node does not answer.
    pub fn status(&self) -> serde_json::Value {
        self.client().get_json("/v1/status").expect("status")
    }

    /// The node's first peer-network address with `/p2p/<id>`, for `--bootstrap`.
    /// Waits (at most 10 s) for the node to report one.
    ///
    /// # Panics
    /// If none appears.
    pub fn p2p_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status();
            if let Some(a) = status["listen_addrs"].as_array().and_then(|a| a.first()) {
                return format!("{}/p2p/{}", a.as_str().unwrap_or_default(), self.node_id);
            }
            assert!(
                Instant::now() < deadline,
                "node never reported a listen address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `limit`) until `check` holds for this node's peer list.
    ///
    /// # Panics
    /// If it never does.
    pub fn wait_for_peers(&self, limit: Duration, check: impl Fn(&[serde_json::Value]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let peers = self.client().get_json("/v1/peers").expect("peers");
            if check(peers.as_array().map(Vec::as_slice).unwrap_or_default()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "peers never matched; last: {peers}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to exit.
    ///
    /// # Panics
    /// If it does not exit in time.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(&child, libc::SIGTERM);
        wait_timeout(&mut child, Duration::from_secs(30)).expect("kith exits after SIGTERM")
    }

    /// Kills the process with SIGKILL (no chance to clean up).
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, sig: i32) {
    let pid = i32::try_from(child.id()).expect("pid fits in i32");
    // SAFETY: kill(2) with a pid we own and a valid signal number.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A size field of `/proc/PID/status` (e.g. `VmRSS:`, `VmHWM:`), in bytes.
///
/// # Panics
/// If the process or the field does not exist.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// Waits for `child` to exit, at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The API tokens of the nodes this test started, by API URL: [`post`], [`send`] and
/// [`get`] send a node's token with every request to it, as the CLI does on the
/// node's machine (a node on an address other than loopback asks for it).
static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn lock_tokens() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    TOKENS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `request` with the token of the node `url` belongs to, if this test started it.
fn with_token(
    request: reqwest::blocking::RequestBuilder,
    url: &str,
) -> reqwest::blocking::RequestBuilder {
    let token = lock_tokens()
        .iter()
        .find(|(base, _)| url.starts_with(base.as_str()))
        .map(|(_, t)| t.clone());
    match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    }
}

/// `METHOD url` with `body` and no API token, as a stranger would send it.
///
/// # Panics
/// On an unknown method or if the request cannot be sent.
pub fn anonymous(method: &str, url: &str, body: Vec<u8>) -> Raw {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let resp = reqwest::blocking::Client::new()
        .request(method.clone(), url)
        .body(body)
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    Raw::read(resp)
}

/// A raw HTTP response: status, headers and body.
#[derive(Debug)]
pub struct Raw {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Raw {
    fn read(resp: reqwest::blocking::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().expect("body").to_vec();
        Self {
            status,
            headers,
            body,
        }
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The error kind of a JSON error body.
    pub fn kind(&self) -> String {
        self.json()["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The error message of a JSON error body.
    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// `POST url` with `body`, returning the raw response.
///
/// # Panics
/// If the request cannot be sent.
pub fn post(url: &str, body: Vec<u8>) -> Raw {
    let resp = with_token(reqwest::blocking::Client::new().post(url), url)
        .body(body)
        .timeout(Duration::from_secs(120))
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    Raw::read(resp)
}

/// `METHOD url` with `body` (e.g. `PUT`, `DELETE`), returning the raw response.
///
/// # Panics
/// On an unknown method or if the request cannot be sent.
pub fn send(method: &str, url: &str, body: Vec<u8>) -> Raw {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let resp = with_token(
        reqwest::blocking::Client::new().request(method.clone(), url),
        url,
    )
    .body(body)
    .timeout(Duration::from_secs(120))
    .send()
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    Raw::read(resp)
}

/// `GET url`, returning the raw response.
///
/// # Panics
/// If the request cannot be sent.
pub fn get(url: &str) -> Raw {
    send("GET", url, Vec::new())
}

/// `module` with a custom section named `pad` that makes it `total` bytes long; `seed`
/// varies the padding, so each call gives a new function id.
///
/// # Panics
/// If `total` is not at least 16 bytes more than `module`.
pub fn padded(module: &[u8], total: usize, seed: u64) -> Vec<u8> {
    let payload_len = total - module.len() - 16;
    let mut payload = Vec::with_capacity(payload_len + 4);
    payload.push(3);
    payload.extend_from_slice(b"pad");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while payload.len() < payload_len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload.extend_from_slice(&x.to_le_bytes());
    }
    payload.truncate(payload_len);
    let mut out = module.to_vec();
    out.push(0);
    let mut n = payload.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// A child process killed (and reaped) when dropped, so a failing test never leaks it.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
