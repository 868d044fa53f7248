//! What a node learns from its peers' answers (protocol's `conduct`), the faults it
//! checks before believing (`attempt`), and claims placement does not believe.

#![allow(clippy::unwrap_used)]

mod common;

use kith_protocol::ErrorKind;
use kith_protocol::FunctionId;
use kith_protocol::attempt::{self, Attempts, Step, Verdict};
use kith_protocol::capacity::{Advert, MAX_CPU_SCORE};
use kith_protocol::conduct::{Conduct, Config, Outcome};
use kith_protocol::placement::{self, Call, PeerView};

#[test]
fn a_peer_is_charged_the_time_it_wasted_and_recovers_as_it_behaves() {
    let mut c: Conduct<u32> = Conduct::new(Config::default());
    // Unproven peers pay a little; an honest one soon pays nothing.
    assert_eq!(c.cost_ms(0, &1), Config::default().unproven_ms);
    for i in 0..20 {
        c.observe(i, 1, 10.0, 12.0, Outcome::Answered);
    }
    assert!(c.cost_ms(20, &1) < 0.1, "{}", c.cost_ms(20, &1));
    // A peer that sat on a call for 20 s is charged about half of it.
    c.observe(0, 2, 10.0, 20_000.0, Outcome::TimedOut);
    let charged = c.cost_ms(0, &2);
    assert!((9_000.0..=10_001.0).contains(&charged), "{charged}");
    // One that answers 5 s late pays for lateness, not for noise.
    c.observe(0, 3, 10.0, 5_010.0, Outcome::Answered);
    assert!(c.cost_ms(0, &3) > 2_000.0);
    c.observe(0, 4, 10.0, 30.0, Outcome::Answered);
    assert!(c.cost_ms(0, &4) < 1.0, "within tolerance and slack");
    // It behaves again: good answers dilute the waste.
    for i in 1..=50 {
        c.observe(i, 2, 10.0, 10.0, Outcome::Answered);
    }
    let after = c.cost_ms(50, &2);
    assert!(after < charged / 20.0, "{after}");
    // Left alone, it recovers with time, slowly.
    let mut d: Conduct<u32> = Conduct::new(Config::default());
    d.observe(0, 2, 10.0, 20_000.0, Outcome::TimedOut);
    let half = Config::default().half_life_ms;
    assert!(
        d.cost_ms(half, &2) > 5_000.0,
        "one half-life later, still demoted"
    );
    assert!(
        d.cost_ms(20 * half, &2) < 1.1,
        "back to about an unproven peer's charge"
    );
    // A refusal it honestly gave costs nothing; a refuted fault does.
    d.observe(0, 5, 10.0, 3.0, Outcome::Failed(ErrorKind::Busy));
    assert!(d.cost_ms(0, &5) < 1.0);
    d.observe(0, 6, 0.0, 0.0, Outcome::Refuted(ErrorKind::Trap));
    assert!(d.cost_ms(0, &6) >= 100.0);
    // A fault claimed for a known-good function is suspect, and charged, even
    // unrefuted (liars can agree).
    d.observe(0, 7, 10.0, 1.0, Outcome::Suspect(ErrorKind::Trap));
    assert!(d.cost_ms(0, &7) >= 100.0);
    let r = d.get(&6).unwrap();
    assert_eq!((r.sent, r.refuted), (1, 1));
}

#[test]
fn the_table_is_capped_and_forgets_the_stalest() {
    let mut c: Conduct<u32> = Conduct::new(Config {
        max_peers: 3,
        ..Config::default()
    });
    for p in 0..5u32 {
        c.observe(u64::from(p), p, 1.0, f64::NAN, Outcome::Answered);
    }
    assert_eq!(c.len(), 3);
    assert!(c.get(&0).is_none() && c.get(&1).is_none() && c.get(&4).is_some());
}

fn call() -> Call<'static> {
    Call {
        function: FunctionId::of(b"f"),
        memory_bytes: 1 << 20,
        expected_fuel: 100_000_000,
        module_bytes: 10_000,
        state_docs: &[],
        state_bytes: 0,
    }
}

fn try_next(a: &mut Attempts<u32>) -> u32 {
    match a.next(0) {
        Step::Try { peer, .. } => peer,
        Step::GiveUp { last } => panic!("gave up: {last:?}"),
    }
}

#[test]
fn a_claimed_fault_is_checked_on_this_node_first() {
    // Remote 1 and 2, then this node (0) last by cost.
    let order = [(1, false), (2, false), (0, true)];
    let mut a = Attempts::from_order(order, &attempt::Config::default(), 1000).confirm_faults(true);
    assert_eq!(try_next(&mut a), 1);
    assert_eq!(
        a.on_answer(1, Err(ErrorKind::Trap)),
        Verdict::TryNext { penalise: false }
    );
    assert_eq!(try_next(&mut a), 0, "this node settles it");
    assert_eq!(a.on_answer(0, Ok(())), Verdict::Done);
    assert_eq!(a.refuted(), [(1, ErrorKind::Trap)]);

    // Reproduced: the function's own fault, nobody refuted.
    let mut a = Attempts::from_order(order, &attempt::Config::default(), 1000).confirm_faults(true);
    try_next(&mut a);
    a.on_answer(1, Err(ErrorKind::Trap));
    try_next(&mut a);
    assert_eq!(
        a.on_answer(0, Err(ErrorKind::Trap)),
        Verdict::Fail(ErrorKind::Trap)
    );
    assert!(a.refuted().is_empty());

    // Not asked to check: the fault stands at once.
    let mut a = Attempts::from_order(order, &attempt::Config::default(), 1000);
    try_next(&mut a);
    assert_eq!(
        a.on_answer(1, Err(ErrorKind::Trap)),
        Verdict::Fail(ErrorKind::Trap)
    );

    // Two remote liars agreeing do not settle it; a third peer's output does.
    let remote = [(1, false), (2, false), (3, false)];
    let mut a =
        Attempts::from_order(remote, &attempt::Config::default(), 1000).confirm_faults(true);
    for p in [1, 2] {
        assert_eq!(try_next(&mut a), p);
        assert_eq!(
            a.on_answer(p, Err(ErrorKind::Trap)),
            Verdict::TryNext { penalise: false }
        );
    }
    assert_eq!(try_next(&mut a), 3);
    assert_eq!(a.on_answer(3, Ok(())), Verdict::Done);
    assert_eq!(a.refuted(), [(1, ErrorKind::Trap), (2, ErrorKind::Trap)]);
    // Every candidate claims it: the fault stands.
    let mut a = Attempts::from_order([(1, false), (2, false)], &attempt::Config::default(), 1000)
        .confirm_faults(true);
    try_next(&mut a);
    a.on_answer(1, Err(ErrorKind::Trap));
    try_next(&mut a);
    assert_eq!(
        a.on_answer(2, Err(ErrorKind::Trap)),
        Verdict::Fail(ErrorKind::Trap)
    );

    // Nobody left to check it: the caller gets the fault.
    let mut a =
        Attempts::from_order([(1, false)], &attempt::Config::default(), 1000).confirm_faults(true);
    try_next(&mut a);
    assert_eq!(
        a.on_answer(1, Err(ErrorKind::Trap)),
        Verdict::Fail(ErrorKind::Trap)
    );
}

#[test]
fn impossible_claims_are_not_believed() {
    let honest = common::advert();
    let mut liar = Advert {
        cpu_score: u32::MAX,
        ..common::advert()
    };
    // Every bit of the cache filter set: warm for everything, so for nothing.
    for i in 0..10_000u32 {
        liar.cached.insert(&FunctionId::of(&i.to_le_bytes()));
    }
    assert!(!liar.cached.plausible());
    let view = |advert| PeerView {
        peer: 1u32,
        advert,
        measured_rtt_ms: Some(1.0),
        local: false,
        known_warm: None,
        known_state: None,
        penalty: 0.0,
        conduct_ms: 0.0,
    };
    let cfg = placement::Config::default();
    let lie = placement::cost(&call(), &view(&liar), &honest, &cfg);
    let capped = 100_000_000.0 / f64::from(MAX_CPU_SCORE) + cfg.call_overhead_ms;
    assert!((lie.exec_ms - capped).abs() < 1e-9, "{lie:?}");
    assert!(lie.cold_ms > 0.0, "a full filter does not make it warm");
    // What it wasted is charged on top.
    let charged = placement::cost(
        &call(),
        &PeerView {
            conduct_ms: 500.0,
            ..view(&liar)
        },
        &honest,
        &cfg,
    );
    assert!((charged.total_ms - lie.total_ms - 500.0).abs() < 1e-9);
}

#[test]
fn one_subnet_brings_at_most_four_candidates() {
    use kith_protocol::subnet::{self, Subnet};
    let a = common::advert();
    // Peers 1..=6 share a /24, 7 is elsewhere, 0 is this node.
    let views: Vec<PeerView<'_, u32>> = (0..8u32)
        .map(|p| PeerView {
            peer: p,
            advert: &a,
            measured_rtt_ms: Some(f64::from(p)),
            local: p == 0,
            known_warm: Some(true),
            known_state: None,
            penalty: 0.0,
            conduct_ms: 0.0,
        })
        .collect();
    let ranked = placement::rank(&call(), views, &a, &placement::Config::default());
    let net = |p: &u32| match p {
        1..=6 => Some(Subnet::V4([203, 0, 113])),
        7 => Some(Subnet::V4([198, 51, 100])),
        _ => None,
    };
    let kept: Vec<u32> = subnet::cap_candidates(ranked, subnet::MAX_CANDIDATES_PER_SUBNET, net)
        .iter()
        .map(|c| c.peer)
        .collect();
    assert_eq!(kept, [0, 1, 2, 3, 4, 7]);
}
