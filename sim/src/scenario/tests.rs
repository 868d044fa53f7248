//! Scenario parsing against good and bad files.

use super::*;

pub(crate) const MINIMAL: &str = r#"
[[region]]
name = "here"
lat = 51.5
lon = 0.0

[[class]]
name = "pi"
device = "pi"
cpu_score = 1000000
memory_mb = 256
access_ms = 5
up_mbps = 20
down_mbps = 100

[[population]]
class = "pi"
region = "here"
count = 10

[[function]]
name = "f"
module_kib = 100
fuel = 1000000
memory_mb = 16

[[workload]]
region = "here"
rate_per_s = 5

[baseline]
region = "here"
class = "pi"
servers = 2
"#;

#[test]
fn minimal_parses_with_defaults() {
    let s = Scenario::parse("m.toml", MINIMAL).expect("valid");
    assert_eq!(s.sim.known_peers, 24);
    assert_eq!(s.classes[0].get_ref().slots, 1);
    assert_eq!(s.strategies().len(), 4);
}

#[test]
fn errors_name_lines() {
    let bad = MINIMAL.replace("region = \"here\"\ncount", "region = \"nowhere\"\ncount");
    let e = Scenario::parse("m.toml", &bad).expect_err("unknown region");
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, 18, "{e}");
    assert!(
        e.to_string().contains("no region called \"nowhere\""),
        "{e}"
    );

    let bad = MINIMAL.replace("cpu_score = 1000000", "cpu_score = 1000000\nspeed = 3");
    let e = Scenario::parse("m.toml", &bad).expect_err("unknown key");
    assert_eq!(e.0[0].line, 11, "{e}");
    assert!(e.to_string().contains("speed"), "{e}");

    let bad = MINIMAL.replace("fuel = 1000000", "fuel = -5");
    let e = Scenario::parse("m.toml", &bad).expect_err("negative");
    assert!(e.to_string().contains("fuel = -5 is out of range"), "{e}");
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "[[[",
        "x = ",
        "[sim]\nduration_s = \"long\"",
        "\u{0}\u{ffff}",
        "[[region]]\nname=1",
    ] {
        assert!(Scenario::parse("g.toml", text).is_err(), "{text:?}");
    }
}
