//! Call attempts: the order, the retry rules and giving up, driven with a fake clock;
//! and the expected-fuel average and advert sequence numbers they rely on.

#![allow(clippy::unwrap_used)]

use kith_protocol::ErrorKind;
use kith_protocol::attempt::{Attempts, Config, Step, Verdict};
use kith_protocol::capacity::first_seq;
use kith_protocol::placement::FuelAverage;
use proptest::prelude::*;

fn config(max: usize) -> Config {
    Config {
        max_attempts: max,
        forward_slack_ms: 5_000,
    }
}

fn tries(a: &mut Attempts<u32>, now: u64) -> Option<(u32, bool, u64)> {
    match a.next(now) {
        Step::Try {
            peer,
            local,
            deadline_ms,
        } => Some((peer, local, deadline_ms)),
        Step::GiveUp { .. } => None,
    }
}

#[test]
fn candidates_then_fallbacks_each_once_and_at_most_max() {
    let order = [(7, true), (3, false), (7, false), (9, false), (4, false)];
    let mut a = Attempts::from_order(order, &config(4), 1_000);
    let mut seen = Vec::new();
    while let Some((peer, local, deadline)) = tries(&mut a, 100) {
        assert_eq!(local, peer == 7);
        assert_eq!(deadline, if local { u64::MAX } else { 100 + 1_000 + 5_000 });
        seen.push(peer);
        assert_eq!(
            a.on_answer(peer, Err(ErrorKind::Busy)),
            Verdict::TryNext { penalise: false }
        );
    }
    assert_eq!(seen, [7, 3, 9, 4], "7 is listed twice and tried once");
    assert_eq!(
        a.next(200),
        Step::GiveUp {
            last: Some(ErrorKind::Busy)
        }
    );
}

#[test]
fn the_function_s_own_error_ends_the_call_and_misbehaviour_is_penalised() {
    let mut a = Attempts::from_order([(1, false), (2, false), (3, false)], &config(3), 10);
    let (p, _, _) = tries(&mut a, 0).unwrap();
    assert_eq!(
        a.on_answer(p, Err(ErrorKind::Unreachable)),
        Verdict::TryNext { penalise: true }
    );
    let (p, _, _) = tries(&mut a, 0).unwrap();
    assert_eq!(
        a.on_answer(p, Err(ErrorKind::OutOfFuel)),
        Verdict::Fail(ErrorKind::OutOfFuel)
    );
    assert_eq!(
        a.next(0),
        Step::GiveUp {
            last: Some(ErrorKind::OutOfFuel)
        },
        "no third attempt after the function's own error"
    );
}

#[test]
fn a_local_refusal_is_retried_like_a_remote_one_and_never_penalised() {
    let mut a = Attempts::from_order([(1, true), (2, false)], &config(3), 10);
    let (p, local, _) = tries(&mut a, 0).unwrap();
    assert!(local);
    assert_eq!(
        a.on_answer(p, Err(ErrorKind::ExceedsNodeCaps)),
        Verdict::TryNext { penalise: false }
    );
    let (p, _, _) = tries(&mut a, 0).unwrap();
    assert_eq!(p, 2);
    assert_eq!(a.on_answer(p, Ok(())), Verdict::Done);
    let mut a = Attempts::from_order([(1, true)], &config(3), 10);
    let (p, _, _) = tries(&mut a, 0).unwrap();
    assert_eq!(
        a.on_answer(p, Err(ErrorKind::RemoteError)),
        Verdict::TryNext { penalise: false },
        "the placing node never penalises itself"
    );
}

#[test]
fn timeouts_and_stale_answers() {
    let mut a = Attempts::from_order([(1, false), (2, false)], &config(3), 100);
    let (p, _, deadline) = tries(&mut a, 1_000).unwrap();
    assert_eq!(a.poll_timeout(), Some(deadline));
    assert_eq!(a.on_timeout(deadline - 1), Verdict::Stale);
    assert_eq!(a.on_timeout(deadline), Verdict::TryNext { penalise: true });
    assert_eq!(
        a.on_answer(p, Ok(())),
        Verdict::Stale,
        "a late answer is ignored"
    );
    let (q, _, _) = tries(&mut a, deadline).unwrap();
    assert_eq!(
        a.on_answer(p, Ok(())),
        Verdict::Stale,
        "not the one in flight"
    );
    assert_eq!(a.on_answer(q, Ok(())), Verdict::Done);
}

fn any_kind() -> impl Strategy<Value = Result<(), ErrorKind>> {
    prop_oneof![
        1 => Just(Ok(())),
        6 => proptest::sample::select(ErrorKind::ALL.to_vec()).prop_map(Err),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Next(u64),
    Answer(u32, Result<(), ErrorKind>),
    InFlightAnswer(Result<(), ErrorKind>),
    Timeout(u64),
}

fn any_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (0u64..100_000).prop_map(Input::Next),
        (0u32..12, any_kind()).prop_map(|(p, k)| Input::Answer(p, k)),
        any_kind().prop_map(Input::InFlightAnswer),
        (0u64..100_000).prop_map(Input::Timeout),
    ]
}

proptest! {
    /// Whatever happens, in any order: no panic, no peer tried twice, at most
    /// `max_attempts` tries, nothing after success or the function's own error.
    #[test]
    fn a_retried_call_never_goes_to_the_same_peer_twice(
        order in proptest::collection::vec((0u32..12, any::<bool>()), 0..20),
        max in 0usize..20,
        timeout in 0u64..u64::MAX,
        inputs in proptest::collection::vec(any_input(), 0..60),
    ) {
        let mut a = Attempts::from_order(order, &config(max), timeout);
        let mut tried = Vec::new();
        let mut in_flight = None;
        let mut ended = false;
        for input in inputs {
            match input {
                Input::Next(now) => match a.next(now) {
                    Step::Try { peer, .. } => {
                        prop_assert!(!ended, "a try after the call ended");
                        prop_assert!(!tried.contains(&peer), "peer {} twice", peer);
                        tried.push(peer);
                        in_flight = Some(peer);
                    }
                    Step::GiveUp { .. } => in_flight = None,
                },
                Input::Answer(p, k) => {
                    let v = a.on_answer(p, k);
                    if in_flight != Some(p) {
                        prop_assert_eq!(v, Verdict::Stale);
                    } else {
                        in_flight = None;
                        ended |= matches!(v, Verdict::Done | Verdict::Fail(_));
                    }
                }
                Input::InFlightAnswer(k) => {
                    if let Some(p) = in_flight.take() {
                        let v = a.on_answer(p, k);
                        prop_assert_ne!(v, Verdict::Stale);
                        ended |= matches!(v, Verdict::Done | Verdict::Fail(_));
                    }
                }
                Input::Timeout(now) => {
                    if let Verdict::TryNext { .. } = a.on_timeout(now) {
                        in_flight = None;
                    }
                }
            }
            prop_assert!(tried.len() <= max.clamp(1, 16));
            prop_assert_eq!(a.made(), tried.len());
        }
    }

    /// No reported fuel, however absurd, overflows the average or lifts it above the
    /// budget.
    #[test]
    fn the_fuel_average_stays_within_the_budget(
        budget in any::<u64>(),
        samples in proptest::collection::vec(any::<u64>(), 1..50),
    ) {
        let mut avg = FuelAverage::first(samples[0], budget);
        for s in &samples[1..] {
            avg.note(*s, budget);
            prop_assert!(avg.value() <= budget);
        }
    }
}

#[test]
fn the_fuel_average_of_a_liar_is_its_budget() {
    let mut avg = FuelAverage::first(u64::MAX, 10_000_000);
    for _ in 0..100 {
        avg.note(u64::MAX, 10_000_000);
    }
    assert_eq!(avg.value(), 10_000_000);
    let mut avg = FuelAverage::first(800, u64::MAX);
    avg.note(u64::MAX, u64::MAX);
    assert!(avg.value() > 800, "no overflow: {}", avg.value());
}

#[test]
fn a_restart_starts_above_every_earlier_sequence_number() {
    let boot = 1_800_000_000_000; // 2027, in ms
    // A node that ran a year, advertising every 100 ms.
    let last_before = first_seq(boot) + 365 * 24 * 36_000;
    // Restarted one second after it stopped.
    let restarted = first_seq(boot + 365 * 24 * 3_600_000 + 1_000);
    assert!(restarted > last_before);
    assert!(first_seq(boot) > 0);
}
