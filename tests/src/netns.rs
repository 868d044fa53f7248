//! Home NATs built from Linux network namespaces, for tests of reachability.
//!
//! ```text
//!   root ns (the test)  W.254 ─┐
//!   relay  ns           W.10  ─┼─ bridge in the "internet" ns
//!   caller ns           W.20  ─┤   (or, with a NAT of its own: router2 at W.2,
//!   router ns   wan     W.1   ─┘    caller at 10.78.0.2 behind it)
//!               lan     10.77.0.1 ─┐   iptables: MASQUERADE out of wan, no new
//!   home   ns           10.77.0.2 ─┘   connections from wan in (dropped silently)
//! ```
//!
//! A host behind a router reaches the internet only through the router's NAT, and
//! nothing on the internet can open a connection to it: exactly a home router. The one
//! exception is the test itself (W.254), which may reach the caller's HTTP API behind
//! its router, as an administrator would; the nodes never use that path. W is the first
//! of 198.51.100.0/24, 203.0.113.0/24 and 100.77.0.0/24 that the machine's own network
//! does not use. Everything is removed when [`HomeNat`] is dropped. Needs root, `ip`
//! (iproute2) and `iptables`.

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One topology at a time per test process: they share the root namespace's route to
/// the test internet.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The namespaces of one topology.
pub struct HomeNat {
    prefix: String,
    /// The namespace of the relay (W.10).
    pub relay: String,
    /// The namespace of the caller (W.20, or 10.78.0.2 behind its own router).
    pub caller: String,
    /// The namespace of the node behind the NAT (10.77.0.2).
    pub home: String,
    namespaces: Vec<String>,
    /// The "internet" /24, as its first three octets.
    wan: String,
    caller_behind_nat: bool,
    _turn: MutexGuard<'static, ()>,
}

/// The home node's private address.
pub const HOME_IP: &str = "10.77.0.2";
/// The caller's private address when it is behind a NAT too.
pub const CALLER_PRIVATE_IP: &str = "10.78.0.2";

/// Runs a command; `Err` with its output when it fails.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The first candidate /24 the root namespace has no route of its own for.
fn free_wan() -> Result<String, String> {
    for wan in ["198.51.100", "203.0.113", "100.77.0"] {
        let out = Command::new("ip")
            .args(["-4", "route", "show", "match", &format!("{wan}.10")])
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        let routes = String::from_utf8_lossy(&out.stdout);
        if routes.lines().all(|l| l.starts_with("default")) {
            return Ok(wan.to_owned());
        }
    }
    Err("every candidate /24 for the test internet is in use on this machine".into())
}

impl HomeNat {
    /// Whether this machine can build the topology; `Err` says what is missing.
    ///
    /// # Errors
    /// When not root, or `ip` or `iptables` is missing.
    pub fn available() -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        run(&["ip", "-V"])?;
        run(&["iptables", "--version"])?;
        free_wan().map(drop)
    }

    /// The relay's address.
    pub fn relay_ip(&self) -> String {
        format!("{}.10", self.wan)
    }

    /// The address the test reaches the caller's HTTP API at.
    pub fn caller_ip(&self) -> String {
        if self.caller_behind_nat {
            CALLER_PRIVATE_IP.to_owned()
        } else {
            format!("{}.20", self.wan)
        }
    }

    /// The home router's public address (what its NAT rewrites the home node's to).
    pub fn router_wan_ip(&self) -> String {
        format!("{}.1", self.wan)
    }

    /// Builds the topology; with `caller_behind_nat`, the caller sits behind a home
    /// router of its own.
    ///
    /// # Errors
    /// When a step fails (what failed, with `ip`'s or `iptables`' message).
    pub fn create(caller_behind_nat: bool) -> Result<Self, String> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let prefix = format!("k{}", std::process::id() % 100_000);
        let ns = |n: &str| format!("{prefix}{n}");
        let mut namespaces = vec![ns("W"), ns("R"), ns("C"), ns("G"), ns("H")];
        if caller_behind_nat {
            namespaces.push(ns("F"));
        }
        let nat = Self {
            relay: ns("R"),
            caller: ns("C"),
            home: ns("H"),
            namespaces,
            prefix,
            wan: free_wan()?,
            caller_behind_nat,
            _turn: turn,
        };
        nat.build().inspect_err(|_| nat.remove())?;
        Ok(nat)
    }

    fn ns(&self, tag: &str) -> String {
        format!("{}{tag}", self.prefix)
    }

    /// A veth pair `outer` (in `outer_ns`, or the root namespace) and `inner` (in
    /// `inner_ns`, addressed `addr`).
    fn link(
        outer: &str,
        outer_ns: Option<&str>,
        inner: &str,
        inner_ns: Option<&str>,
        addr: &str,
    ) -> Result<(), String> {
        run(&[
            "ip", "link", "add", outer, "type", "veth", "peer", "name", inner,
        ])?;
        if let Some(ns) = outer_ns {
            run(&["ip", "link", "set", outer, "netns", ns])?;
        }
        if let Some(ns) = inner_ns {
            run(&["ip", "link", "set", inner, "netns", ns])?;
        }
        let inner_cmd = |args: &[&str]| match inner_ns {
            Some(ns) => {
                let mut full = vec!["ip", "-n", ns];
                full.extend_from_slice(args);
                run(&full)
            }
            None => {
                let mut full = vec!["ip"];
                full.extend_from_slice(args);
                run(&full)
            }
        };
        inner_cmd(&["addr", "add", addr, "dev", inner])?;
        inner_cmd(&["link", "set", inner, "up"])
    }

    fn build(&self) -> Result<(), String> {
        let p = &self.prefix;
        for ns in &self.namespaces {
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        let w = self.ns("W");
        run(&["ip", "-n", &w, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &w, "link", "set", "br0", "up"])?;
        // One port on the bridge for each host on the internet, and the test's own.
        let caller_on_wan = if self.caller_behind_nat {
            ("F", Some(self.ns("F")), 2)
        } else {
            ("C", Some(self.caller.clone()), 20)
        };
        for (tag, ns, host) in [
            ("R", Some(self.relay.clone()), 10),
            caller_on_wan,
            ("G", Some(self.ns("G")), 1),
            ("T", None, 254),
        ] {
            let (outer, inner) = (format!("{p}{tag}a"), format!("{p}{tag}b"));
            let addr = format!("{}.{host}/24", self.wan);
            Self::link(&outer, Some(&w), &inner, ns.as_deref(), &addr)?;
            run(&["ip", "-n", &w, "link", "set", &outer, "master", "br0", "up"])?;
        }
        self.home_router("G", &self.home.clone(), "H", "10.77.0")?;
        if self.caller_behind_nat {
            self.home_router("F", &self.caller.clone(), "C", "10.78.0")?;
            // The test's own path to the caller's API (never used by the nodes).
            let admin = format!("{}.254", self.wan);
            let lan = format!("{p}Ca");
            self.in_ns(
                "F",
                &[
                    "iptables", "-I", "FORWARD", "-s", &admin, "-o", &lan, "-j", "ACCEPT",
                ],
            )?;
            run(&[
                "ip",
                "route",
                "add",
                "10.78.0.0/24",
                "via",
                &format!("{}.2", self.wan),
            ])?;
        }
        Ok(())
    }

    fn in_ns(&self, tag: &str, args: &[&str]) -> Result<(), String> {
        let ns = self.ns(tag);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Router namespace `router` (its wan side already on the bridge as `{router}b`)
    /// with a LAN `{lan}.0/24` holding `host` at `.2`: forwarding, MASQUERADE out of the
    /// wan side, and no new connections from the wan side in.
    fn home_router(&self, router: &str, host: &str, tag: &str, lan: &str) -> Result<(), String> {
        let p = &self.prefix;
        let (lan_if, host_if, wan_if) = (
            format!("{p}{tag}a"),
            format!("{p}{tag}b"),
            format!("{p}{router}b"),
        );
        let router_ns = self.ns(router);
        Self::link(
            &lan_if,
            Some(&router_ns),
            &host_if,
            Some(host),
            &format!("{lan}.2/24"),
        )?;
        run(&[
            "ip",
            "-n",
            &router_ns,
            "addr",
            "add",
            &format!("{lan}.1/24"),
            "dev",
            &lan_if,
        ])?;
        run(&["ip", "-n", &router_ns, "link", "set", &lan_if, "up"])?;
        run(&[
            "ip",
            "-n",
            host,
            "route",
            "add",
            "default",
            "via",
            &format!("{lan}.1"),
        ])?;
        self.in_ns(router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        self.in_ns(
            router,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                &wan_if,
                "-j",
                "MASQUERADE",
            ],
        )?;
        self.in_ns(
            router,
            &[
                "iptables",
                "-A",
                "FORWARD",
                "-i",
                &wan_if,
                "-o",
                &lan_if,
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ],
        )?;
        self.in_ns(
            router,
            &[
                "iptables", "-A", "FORWARD", "-i", &wan_if, "-o", &lan_if, "-j", "DROP",
            ],
        )?;
        // Like most home routers, unsolicited packets to the router itself are dropped
        // silently, not refused (a refusal would also reset a hole punch in progress).
        self.in_ns(
            router,
            &[
                "iptables",
                "-A",
                "INPUT",
                "-i",
                &wan_if,
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ],
        )?;
        self.in_ns(
            router,
            &["iptables", "-A", "INPUT", "-i", &wan_if, "-j", "DROP"],
        )
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Whether a TCP connection from namespace `ns` to `ip:port` succeeds within 2 s.
    pub fn tcp_connects(ns: &str, ip: &str, port: u16) -> bool {
        Self::command(ns, "timeout")
            .args(["2", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn remove(&self) {
        // Deleting a namespace deletes the veths in it, and with them their peers
        // (including the test's own in the root namespace, and the route through it).
        for ns in self.namespaces.iter().rev() {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let _ = run(&["ip", "link", "del", &format!("{}Tb", self.prefix)]);
    }
}

impl Drop for HomeNat {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `n` hosts on one bridged network (W.10, W.11, …), each in its own namespace, and
/// the test at W.254; [`Lan::partition`] cuts one host off from the others (iptables
/// in its namespace; the test can still reach it) and [`Lan::heal`] undoes it.
pub struct Lan {
    prefix: String,
    /// The hosts' namespaces.
    pub hosts: Vec<String>,
    wan: String,
    _turn: MutexGuard<'static, ()>,
}

impl Lan {
    /// Builds the network.
    ///
    /// # Errors
    /// When a step fails.
    pub fn create(n: usize) -> Result<Self, String> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let prefix = format!("l{}", std::process::id() % 100_000);
        let lan = Self {
            hosts: (0..n).map(|i| format!("{prefix}h{i}")).collect(),
            wan: free_wan()?,
            prefix,
            _turn: turn,
        };
        lan.build().inspect_err(|_| lan.remove())?;
        Ok(lan)
    }

    fn build(&self) -> Result<(), String> {
        let w = format!("{}W", self.prefix);
        run(&["ip", "netns", "add", &w])?;
        run(&["ip", "-n", &w, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &w, "link", "set", "br0", "up"])?;
        let mut ends: Vec<(String, Option<String>, String)> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, ns)| (format!("{}{i}", self.prefix), Some(ns.clone()), self.ip(i)))
            .collect();
        ends.push((
            format!("{}T", self.prefix),
            None,
            format!("{}.254", self.wan),
        ));
        for (tag, ns, ip) in ends {
            if let Some(ns) = &ns {
                run(&["ip", "netns", "add", ns])?;
                run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            }
            let (outer, inner) = (format!("{tag}a"), format!("{tag}b"));
            HomeNat::link(&outer, Some(&w), &inner, ns.as_deref(), &format!("{ip}/24"))?;
            run(&["ip", "-n", &w, "link", "set", &outer, "master", "br0", "up"])?;
        }
        Ok(())
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.wan, 10 + i)
    }

    /// Cuts host `i` off from every other host (both directions); the test's own
    /// address still reaches it.
    ///
    /// # Errors
    /// When iptables fails.
    pub fn partition(&self, i: usize) -> Result<(), String> {
        for j in 0..self.hosts.len() {
            if j == i {
                continue;
            }
            let other = self.ip(j);
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                run(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.hosts[i],
                    "iptables",
                    "-A",
                    chain,
                    dir,
                    &other,
                    "-j",
                    "DROP",
                ])?;
            }
        }
        Ok(())
    }

    /// Undoes [`Self::partition`].
    ///
    /// # Errors
    /// When iptables fails.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        for chain in ["INPUT", "OUTPUT"] {
            run(&[
                "ip",
                "netns",
                "exec",
                &self.hosts[i],
                "iptables",
                "-F",
                chain,
            ])?;
        }
        Ok(())
    }

    fn remove(&self) {
        for ns in &self.hosts {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let _ = run(&["ip", "netns", "del", &format!("{}W", self.prefix)]);
        let _ = run(&["ip", "link", "del", &format!("{}Tb", self.prefix)]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}
