//! Reading and checking a scenario: TOML syntax, unknown keys, types, ranges and
//! cross-references, every problem named with its line.

use super::problems::Checker;
use super::*;

impl Scenario {
    /// Parses and validates scenario text. `file` names it in error messages.
    ///
    /// # Errors
    /// Every problem found, each with its line: TOML syntax, unknown keys, wrong
    /// types, values out of range, names that refer to nothing, duplicate names.
    pub fn parse(file: &str, text: &str) -> Result<Self, ScenarioError> {
        let mut c = Checker {
            file,
            text,
            problems: Vec::new(),
        };
        let scenario: Scenario = match toml::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                let line = e.span().map_or(1, |s| c.line_of(s.start));
                return Err(ScenarioError(vec![Problem {
                    file: file.to_string(),
                    line,
                    message: e.message().trim().to_string(),
                }]));
            }
        };
        scenario.validate(&mut c);
        if c.problems.is_empty() {
            Ok(scenario)
        } else {
            c.problems.sort_by_key(|p| p.line);
            Err(ScenarioError(c.problems))
        }
    }

    /// The index of the region called `name`.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.get_ref().name == name)
    }

    /// The index of the class called `name`.
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|r| r.get_ref().name == name)
    }

    /// The index of the alias called `name`.
    pub fn alias_index(&self, name: &str) -> Option<usize> {
        self.aliases.iter().position(|a| a.get_ref().name == name)
    }

    /// The index of the function called `name`.
    pub fn function_index(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|r| r.get_ref().name == name)
    }

    /// The strategies to run, in order.
    pub fn strategies(&self) -> Vec<Strategy> {
        self.strategies.run.iter().map(|s| *s.get_ref()).collect()
    }

    fn validate(&self, c: &mut Checker<'_>) {
        let top = 0..0;
        let s = &self.sim;
        c.num(&top, "sim.duration_s", s.duration_s, 1e-3, 1e8);
        if !(1..=20_000).contains(&s.known_peers) {
            c.at(
                top.clone(),
                format!(
                    "sim.known_peers = {} is out of range 1..=20000",
                    s.known_peers
                ),
            );
        }
        c.num(&top, "sim.start_hour_utc", s.start_hour_utc, 0.0, 24.0);
        c.num(
            &top,
            "sim.advert_interval_s",
            s.advert_interval_s,
            0.01,
            3600.0,
        );
        if !(1..=16).contains(&s.max_attempts) {
            c.at(
                top.clone(),
                format!(
                    "sim.max_attempts = {} is out of range 1..=16",
                    s.max_attempts
                ),
            );
        }
        c.num(
            &top,
            "sim.failure_detect_ms",
            s.failure_detect_ms,
            0.0,
            600_000.0,
        );
        if s.vivaldi_rounds > 10_000 {
            c.at(top.clone(), "sim.vivaldi_rounds is out of range 0..=10000");
        }
        if s.oracle_every == 0 {
            c.at(top.clone(), "sim.oracle_every must be at least 1");
        }
        c.num(&top, "sim.bucket_s", s.bucket_s, 1e-3, 1e8);
        c.num(&top, "sim.warmup_s", s.warmup_s, 0.0, 1e6);
        c.num(&top, "sim.control_loss", s.control_loss, 0.0, 0.5);
        if !(1..=64).contains(&s.bootstrap_peers) {
            c.at(
                top.clone(),
                format!(
                    "sim.bootstrap_peers = {} is out of range 1..=64",
                    s.bootstrap_peers
                ),
            );
        }
        c.num(&top, "sim.compile_base_ms", s.compile_base_ms, 0.0, 1e6);
        c.num(
            &top,
            "sim.compile_ms_per_kib",
            s.compile_ms_per_kib,
            0.0,
            1e6,
        );
        c.num(
            &top,
            "sim.reference_cpu_score",
            s.reference_cpu_score,
            1.0,
            1e12,
        );
        let n = &self.network;
        c.num(
            &top,
            "network.fibre_km_per_ms",
            n.fibre_km_per_ms,
            1.0,
            300.0,
        );
        c.num(&top, "network.path_inflation", n.path_inflation, 1.0, 10.0);
        c.num(&top, "network.jitter_ms", n.jitter_ms, 0.0, 10_000.0);
        c.num(&top, "network.joules_per_byte", n.joules_per_byte, 0.0, 1.0);

        let mut seen: Vec<&str> = Vec::new();
        for r in &self.regions {
            let (sp, v) = (r.span(), r.get_ref());
            if seen.contains(&v.name.as_str()) {
                c.at(
                    sp.clone(),
                    format!("region \"{}\" is defined twice", v.name),
                );
            }
            seen.push(&v.name);
            c.num(&sp, "region.lat", v.lat, -90.0, 90.0);
            c.num(&sp, "region.lon", v.lon, -180.0, 180.0);
            c.num(&sp, "region.radius_km", v.radius_km, 0.0, 5_000.0);
            c.num(&sp, "region.utc_offset_h", v.utc_offset_h, -14.0, 14.0);
        }
        if self.regions.len() > 65_535 || self.classes.len() > 65_535 {
            c.at(top.clone(), "more than 65535 regions or classes");
        }
        if self.regions.is_empty() {
            c.at(top.clone(), "no [[region]]: a scenario needs at least one");
        }
        let mut seen: Vec<&str> = Vec::new();
        for k in &self.classes {
            let (sp, v) = (k.span(), k.get_ref());
            if seen.contains(&v.name.as_str()) {
                c.at(sp.clone(), format!("class \"{}\" is defined twice", v.name));
            }
            seen.push(&v.name);
            let what = |f: &str| format!("class \"{}\": {f}", v.name);
            c.num(&sp, &what("cpu_score"), v.cpu_score, 1.0, 1e9);
            c.num(&sp, &what("cores"), f64::from(v.cores), 1.0, 4096.0);
            c.num(&sp, &what("slots"), f64::from(v.slots), 1.0, 65_535.0);
            c.num(&sp, &what("queue"), f64::from(v.queue), 0.0, 65_535.0);
            c.num(&sp, &what("memory_mb"), v.memory_mb, 0.0, 1e6);
            c.num(&sp, &what("store_mb"), v.store_mb, 0.0, 1e9);
            c.num(&sp, &what("access_ms"), v.access_ms, 0.0, 10_000.0);
            c.num(&sp, &what("up_mbps"), v.up_mbps, 1e-3, 1e6);
            c.num(&sp, &what("down_mbps"), v.down_mbps, 1e-3, 1e6);
            c.num(&sp, &what("idle_w"), v.idle_w, 0.0, 1e5);
            c.num(&sp, &what("busy_w"), v.busy_w, v.idle_w.max(0.0), 1e5);
            c.num(&sp, &what("usd_per_cpu_hour"), v.usd_per_cpu_hour, 0.0, 1e4);
            c.duration(&sp, &what("session"), v.session);
            c.duration(&sp, &what("downtime"), v.downtime);
            if v.session != Duration::Forever && v.downtime == Duration::Forever {
                c.at(
                    sp.clone(),
                    what("a session ends but downtime is forever; give downtime a distribution"),
                );
            }
            if let Some([a, b]) = v.offline_hours {
                c.num(&sp, &what("offline_hours[0]"), a, 0.0, 24.0);
                c.num(&sp, &what("offline_hours[1]"), b, 0.0, 24.0);
            }
        }
        if self.classes.is_empty() {
            c.at(
                top.clone(),
                "no [[class]]: a scenario needs at least one device class",
            );
        }
        let mut total: u64 = 0;
        for p in &self.populations {
            let (sp, v) = (p.span(), p.get_ref());
            if self.class_index(&v.class).is_none() {
                c.at(
                    sp.clone(),
                    format!("population: no class called \"{}\"", v.class),
                );
            }
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("population: no region called \"{}\"", v.region),
                );
            }
            total += u64::from(v.count);
        }
        if total == 0 {
            c.at(top.clone(), "the populations add up to no peers");
        } else if total > MAX_PEERS {
            c.at(
                top.clone(),
                format!("the populations add up to {total} peers; the limit is {MAX_PEERS}"),
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for f in &self.functions {
            let (sp, v) = (f.span(), f.get_ref());
            if seen.contains(&v.name.as_str()) {
                c.at(
                    sp.clone(),
                    format!("function \"{}\" is defined twice", v.name),
                );
            }
            seen.push(&v.name);
            let what = |k: &str| format!("function \"{}\": {k}", v.name);
            c.num(&sp, &what("module_kib"), v.module_kib, 0.0, 1e6);
            c.num(&sp, &what("fuel"), v.fuel, 0.0, 1e15);
            c.num(&sp, &what("memory_mb"), v.memory_mb, 0.0, 1e6);
            c.num(&sp, &what("input_bytes"), v.input_bytes, 0.0, 1e10);
            c.num(&sp, &what("output_bytes"), v.output_bytes, 0.0, 1e10);
            c.num(&sp, &what("weight"), v.weight, 0.0, 1e9);
        }
        if self.functions.is_empty() {
            c.at(
                top.clone(),
                "no [[function]]: a scenario needs at least one",
            );
        } else if self.functions.len() > MAX_FUNCTIONS {
            c.at(
                top.clone(),
                format!(
                    "{} functions; the limit is {MAX_FUNCTIONS}",
                    self.functions.len()
                ),
            );
        }
        for w in &self.workloads {
            let (sp, v) = (w.span(), w.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("workload: no region called \"{}\"", v.region),
                );
            }
            c.num(&sp, "workload.rate_per_s", v.rate_per_s, 0.0, 1e8);
            c.num(
                &sp,
                "workload.diurnal_amplitude",
                v.diurnal_amplitude,
                0.0,
                1.0,
            );
            c.num(&sp, "workload.peak_hour", v.peak_hour, 0.0, 24.0);
            for f in &v.functions {
                if self.function_index(f).is_none() && self.alias_index(f).is_none() {
                    c.at(
                        sp.clone(),
                        format!("workload: no function or alias called \"{f}\""),
                    );
                }
            }
            let names: Vec<&str> = if v.functions.is_empty() {
                self.functions
                    .iter()
                    .map(|f| f.get_ref().name.as_str())
                    .collect()
            } else {
                v.functions.iter().map(String::as_str).collect()
            };
            let weight: f64 = names
                .iter()
                .map(|n| {
                    self.function_index(n)
                        .map(|i| self.functions[i].get_ref().weight)
                        .or_else(|| {
                            self.alias_index(n)
                                .map(|i| self.aliases[i].get_ref().weight)
                        })
                        .unwrap_or(0.0)
                })
                .sum();
            if weight.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
                && !self.functions.is_empty()
            {
                c.at(sp.clone(), "workload: its functions' weights add up to 0");
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for a in &self.aliases {
            let (sp, v) = (a.span(), a.get_ref());
            if seen.contains(&v.name.as_str()) || self.function_index(&v.name).is_some() {
                c.at(
                    sp.clone(),
                    format!(
                        "alias \"{}\" is defined twice (or is also a function's name)",
                        v.name
                    ),
                );
            }
            seen.push(&v.name);
            let valid = v.name.split_once('@').is_some_and(|(n, ch)| {
                kith_protocol::alias::Alias::new(kith_protocol::alias::Namespace([0; 32]), n, ch)
                    .is_ok()
            });
            if !valid {
                c.at(sp.clone(), format!("alias \"{}\": name must be NAME@CHANNEL, each 1 to 64 characters of a-z, 0-9, '-', '_', '.'", v.name));
            }
            if v.targets.is_empty() || v.targets.len() > kith_protocol::alias::MAX_TARGETS {
                c.at(sp.clone(), format!("alias \"{}\": targets has {} entries; an alias points at 1 to 16 functions", v.name, v.targets.len()));
            }
            for t in &v.targets {
                if self.function_index(&t.function).is_none() {
                    c.at(
                        sp.clone(),
                        format!(
                            "alias \"{}\": no function called \"{}\"",
                            v.name, t.function
                        ),
                    );
                }
                if t.weight == 0 {
                    c.at(
                        sp.clone(),
                        format!(
                            "alias \"{}\": target \"{}\" has weight 0; weights are 1 or more",
                            v.name, t.function
                        ),
                    );
                }
            }
            c.num(&sp, "alias.weight", v.weight, 0.0, 1e9);
        }
        if self.workloads.is_empty() {
            c.at(
                top.clone(),
                "no [[workload]]: a scenario needs at least one",
            );
        }
        let f = &self.failures;
        c.num(
            &top,
            "failures.crash_rate_per_peer_hour",
            f.crash_rate_per_peer_hour,
            0.0,
            1e4,
        );
        c.num(
            &top,
            "failures.restart_after_s",
            f.restart_after_s,
            0.0,
            1e8,
        );
        for o in &f.outages {
            let (sp, v) = (o.span(), o.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("outage: no region called \"{}\"", v.region),
                );
            }
            c.num(&sp, "outage.at_s", v.at_s, 0.0, 1e9);
            c.num(&sp, "outage.duration_s", v.duration_s, 0.0, 1e9);
        }
        for l in &f.liars {
            let (sp, v) = (l.span(), l.get_ref());
            if let Some(class) = &v.class
                && self.class_index(class).is_none()
            {
                c.at(sp.clone(), format!("liar: no class called \"{class}\""));
            }
            c.num(&sp, "liar.fraction", v.fraction, 0.0, 1.0);
        }
        for p in &f.partitions {
            let (sp, v) = (p.span(), p.get_ref());
            c.num(&sp, "partition.at_s", v.at_s, 0.0, 1e9);
            c.num(&sp, "partition.heal_s", v.heal_s, v.at_s.max(0.0), 1e9);
            if v.groups.len() > 200 {
                c.at(
                    sp.clone(),
                    format!("partition: {} groups; the limit is 200", v.groups.len()),
                );
            }
            let mut seen: Vec<&str> = Vec::new();
            for r in v.groups.iter().flatten() {
                if self.region_index(r).is_none() {
                    c.at(sp.clone(), format!("partition: no region called \"{r}\""));
                }
                if seen.contains(&r.as_str()) {
                    c.at(
                        sp.clone(),
                        format!("partition: region \"{r}\" is in two groups"),
                    );
                }
                seen.push(r);
            }
        }
        let strategies = self.strategies();
        if strategies.is_empty() {
            c.at(top.clone(), "strategies.run is empty");
        }
        if let Some(b) = &self.baseline {
            let (sp, v) = (b.span(), b.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("baseline: no region called \"{}\"", v.region),
                );
            }
            if self.class_index(&v.class).is_none() {
                c.at(
                    sp.clone(),
                    format!("baseline: no class called \"{}\"", v.class),
                );
            }
            if !(1..=1_000_000).contains(&v.servers) {
                c.at(
                    sp.clone(),
                    format!(
                        "baseline.servers = {} is out of range 1..=1000000",
                        v.servers
                    ),
                );
            }
            c.num(&sp, "baseline.pue", v.pue, 1.0, 5.0);
        } else if strategies.contains(&Strategy::Cloud) {
            c.at(
                top.clone(),
                "strategy \"cloud\" needs a [baseline] section (region, class, servers)",
            );
        }
        if let Some(o) = &self.origin {
            let (sp, v) = (o.span(), o.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("origin: no region called \"{}\"", v.region),
                );
            }
            c.num(&sp, "origin.up_mbps", v.up_mbps, 1e-3, 1e7);
        }
    }
}
