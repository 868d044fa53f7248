//! The warm-function index under a fake clock, and the neighbourhood's answers.

use kith_protocol::FunctionId;
use kith_protocol::neighbourhood::{Config as HoodConfig, Message, Neighbourhood};
use kith_protocol::warm::{Action, Config, WarmIndex};

fn drain(w: &mut WarmIndex<u32>) -> Vec<Action> {
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
    w.found(2, &f(9), [5, 6]);
    assert!(w.providers(2, &f(9)).is_none());
    drain(&mut w);
    w.found(2, &f(1), [0, 3, 4]);
    w.found(2, &f(1), (0..100).map(|p| p % 50));
    let got = w
        .providers(3, &f(1))
        .map(<[u32]>::to_vec)
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
        w.found(u64::from(n), &id, [7]);
        w.handle_timeout(u64::from(n));
    }
    assert!(w.heap_bytes() < 16 * 1024, "{}", w.heap_bytes());
    assert!(
        w.providers(1_000, &FunctionId::of(&0u16.to_le_bytes()))
            .is_none()
    );
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
    assert_eq!(h.warm_peers(9, 8, |w| *w), [4, 2, 1]);
    assert_eq!(
        h.warm_peers(4, 1, |w| *w),
        [2],
        "the asker is not its own answer"
    );
    assert_eq!(h.nearest_neighbours(2), [4, 2]);
}
