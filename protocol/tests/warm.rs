//! The warm-function index under a fake clock, and the neighbourhood's answers.

use kith_protocol::FunctionId;
use kith_protocol::neighbourhood::{Config as HoodConfig, Message, Neighbourhood};
use kith_protocol::warm::{Action, Config, WarmIndex};

fn drain(w: &mut WarmIndex<u32>) -> Vec<Action> {
    std::iter::from_fn(|| w.poll_action()).collect()
}

fn drain_a(w: &mut WarmIndex<u32, &str>) -> Vec<Action> {
    std::iter::from_fn(|| w.poll_action()).collect()
}

fn f(n: u8) -> FunctionId {
    FunctionId::of(&[n])
}

#[test]
fn questions_are_asked_once_cached_capped_and_time_out() {
    let c = Config::default();
    let mut w = WarmIndex::new(0u32, c);
    assert!(w.providers(0, &f(1)).is_none());
    assert_eq!(drain(&mut w), [Action::Ask(f(1))]);
    // Asked again while out: no second question.
    assert!(w.providers(1, &f(1)).is_none());
    assert!(drain(&mut w).is_empty());
    // Answers nobody asked for are ignored; ours are merged, without ourselves, capped.
    w.found(2, &f(9), [(5, ()), (6, ())]);
    assert!(w.providers(2, &f(9)).is_none());
    drain(&mut w);
    w.found(2, &f(1), [0, 3, 4].map(|p| (p, ())));
    w.found(2, &f(1), (0..100).map(|p| (p % 50, ())));
    let got: Vec<u32> = w
        .providers(3, &f(1))
        .map(|p| p.iter().map(|x| x.0).collect())
        .unwrap_or_default();
    assert_eq!(got.len(), c.max_found);
    assert_eq!(&got[..2], &[3, 4], "the first answer's peers first");
    assert!(!got.contains(&0), "itself is not a peer to call");
    assert!(drain(&mut w).is_empty(), "served from the cache");
    // The answer expires, and the question goes out again.
    let t = c.found_ttl_ms + 3;
    w.handle_timeout(t);
    assert!(w.providers(t, &f(1)).is_none());
    assert_eq!(drain(&mut w).len(), 1);
    // Unanswered: counts as empty, believed for a while.
    let t = t + c.lookup_timeout_ms;
    assert_eq!(w.poll_timeout(), Some(t));
    w.handle_timeout(t);
    assert_eq!(w.providers(t, &f(1)), Some(&[][..]));
    assert!(w.stats().empty >= 1);
    // At most max_lookups out.
    let mut w = WarmIndex::new(0u32, c);
    for n in 0..(c.max_lookups as u8 + 3) {
        let _ = w.providers(0, &f(n));
    }
    assert_eq!(drain(&mut w).len(), c.max_lookups);
    assert_eq!(w.stats().lookups_capped, 3);
    // Cached answers are capped, least recently used out.
    let mut w = WarmIndex::new(0u32, c);
    for n in 0..=(c.max_cached as u16) {
        let id = FunctionId::of(&n.to_le_bytes());
        let _ = w.providers(u64::from(n), &id);
        w.asked(u64::from(n), &id, 1);
        w.found(u64::from(n), &id, [(7, ())]);
        w.handle_timeout(u64::from(n));
    }
    assert!(w.heap_bytes() < 16 * 1024, "{}", w.heap_bytes());
    assert!(
        w.providers(1_000, &FunctionId::of(&0u16.to_le_bytes()))
            .is_none()
    );
}

#[test]
fn a_held_call_is_released_by_the_first_answer_naming_a_peer() {
    let c = Config::default();
    let mut w: WarmIndex<u32, &str> = WarmIndex::new(0, c);
    // Nothing asked: nothing to wait for.
    assert!(!w.hold(0, &f(1), 7));
    assert!(w.providers(0, &f(1)).is_none());
    assert_eq!(drain_a(&mut w), [Action::Ask(f(1))]);
    w.asked(0, &f(1), 3);
    assert!(w.hold(0, &f(1), 7));
    assert!(w.hold(1, &f(1), 8));
    assert_eq!(w.held(), 2);
    // An empty answer: still two to come, the calls wait (and so would new ones).
    w.found(5, &f(1), []);
    assert!(drain_a(&mut w).is_empty());
    assert!(w.providers(5, &f(1)).is_none(), "still asking");
    // An answer naming a peer, with the advert it carried: both released in order.
    w.found(9, &f(1), [(4, "advert of 4")]);
    assert_eq!(drain_a(&mut w), [Action::Release(7), Action::Release(8)]);
    assert_eq!(w.providers(9, &f(1)), Some(&[(4, "advert of 4")][..]));
    // The last answer adds to it.
    w.found(12, &f(1), [(4, "again"), (6, "advert of 6")]);
    assert_eq!(
        w.providers(12, &f(1)).map(<[_]>::len),
        Some(2),
        "merged, 4 once"
    );
    let s = w.stats();
    assert_eq!((s.held, s.released_found, s.released_empty), (2, 2, 0));
}

#[test]
fn a_held_call_waits_at_most_hold_ms_and_holds_are_capped() {
    let c = Config {
        max_held: 2,
        ..Config::default()
    };
    let mut w: WarmIndex<u32> = WarmIndex::new(0, c);
    let _ = w.providers(0, &f(1));
    drain(&mut w);
    w.asked(0, &f(1), 3);
    assert!(w.hold(0, &f(1), 1));
    assert!(w.hold(10, &f(1), 2));
    assert!(!w.hold(10, &f(1), 3), "beyond max_held: placed at once");
    assert_eq!(w.stats().held_capped, 1);
    assert_eq!(w.poll_timeout(), Some(c.hold_ms));
    w.handle_timeout(c.hold_ms);
    assert_eq!(drain(&mut w), [Action::Release(1)]);
    w.handle_timeout(c.hold_ms + 10);
    assert_eq!(drain(&mut w), [Action::Release(2)]);
    // Every answer empty: released empty-handed as soon as the last is in.
    let _ = w.providers(500, &f(2));
    drain(&mut w);
    w.asked(500, &f(2), 2);
    assert!(w.hold(500, &f(2), 9));
    w.found(501, &f(2), []);
    assert!(drain(&mut w).is_empty());
    w.found(502, &f(2), []);
    assert_eq!(drain(&mut w), [Action::Release(9)]);
    assert_eq!(w.providers(502, &f(2)), Some(&[][..]));
    // Nobody to ask: the question closes at once.
    let _ = w.providers(600, &f(3));
    drain(&mut w);
    assert!(w.hold(600, &f(3), 10));
    w.asked(600, &f(3), 0);
    assert_eq!(drain(&mut w), [Action::Release(10)]);
    assert_eq!(w.stats().released_empty, 4);
}

#[test]
fn a_neighbourhood_answers_with_its_warm_neighbours_nearest_first() {
    let mut h: Neighbourhood<u32, bool> = Neighbourhood::new(0, HoodConfig::default(), 1, 0);
    for (p, rtt) in [(1, 9.0), (2, 3.0), (3, 5.0), (4, 1.0)] {
        h.discovered(0, p);
        h.rtt(1, p, rtt);
        h.message(2, p, Message::Accepted);
    }
    // Adverts: 1, 2 and 4 have it warm (the advert here is that flag).
    for (p, warm) in [(1, true), (2, true), (3, false), (4, true)] {
        h.advert(3, p, 10, warm);
    }
    assert_eq!(h.warm_peers(9, 8, |_, w| *w), [4, 2, 1]);
    assert_eq!(
        h.warm_peers(4, 1, |_, w| *w),
        [2],
        "the asker is not its own answer"
    );
    assert_eq!(h.nearest_neighbours(2), [4, 2]);
}
