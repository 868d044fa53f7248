//! Placement pinned down by unit and property tests.

#![allow(clippy::unwrap_used)]

mod common;

use common::advert;
use kith_protocol::FunctionId;
use kith_protocol::capacity::Advert;
use kith_protocol::placement::{Call, Config, PeerView, capable, doc_key, fallbacks, rank};
use proptest::prelude::*;

fn call() -> Call<'static> {
    Call {
        function: FunctionId::of(b"f"),
        memory_bytes: 32 << 20,
        expected_fuel: 1_000_000,
        module_bytes: 100_000,
        state_docs: &[],
        state_bytes: 0,
    }
}

fn view(peer: u32, advert: &Advert, rtt: f64) -> PeerView<'_, u32> {
    PeerView {
        peer,
        advert,
        measured_rtt_ms: Some(rtt),
        local: false,
        known_warm: None,
        known_state: None,
        penalty: 0.0,
        conduct_ms: 0.0,
    }
}

/// A peer whose advert says it is full is no candidate, but a fallback (nearest
/// first), tried after every candidate: adverts are periodic and a slot may be free by
/// now. A peer short of memory is neither; the placing peer is never a fallback.
#[test]
fn saturated_peers_are_fallbacks_not_candidates() {
    let free = advert();
    let full = Advert {
        running: 4,
        queued: 16,
        ..advert()
    };
    let small = Advert {
        memory_bytes: 1 << 20,
        ..full.clone()
    };
    let mut me = view(0, &full, 0.0);
    me.local = true;
    let views = [
        me,
        view(1, &full, 30.0),
        view(2, &free, 50.0),
        view(3, &full, 5.0),
        view(4, &small, 1.0),
    ];
    let ranked: Vec<u32> = rank(&call(), views, &free, &Config::default())
        .iter()
        .map(|c| c.peer)
        .collect();
    assert_eq!(ranked, [2]);
    assert_eq!(fallbacks(&call(), views, &free), [3, 1]);
}

#[test]
fn all_else_equal_the_lower_rtt_wins() {
    let a = advert();
    let ranked = rank(
        &call(),
        [view(1, &a, 30.0), view(2, &a, 5.0), view(3, &a, 12.0)],
        &a,
        &Config::default(),
    );
    let order: Vec<u32> = ranked.iter().map(|c| c.peer).collect();
    assert_eq!(order, [2, 3, 1]);
}

#[test]
fn a_warm_cache_beats_a_slightly_closer_cold_peer() {
    let cold = advert();
    let mut warm = advert();
    warm.cached.insert(&call().function);
    let ranked = rank(
        &call(),
        [view(1, &cold, 4.0), view(2, &warm, 6.0)],
        &cold,
        &Config::default(),
    );
    assert_eq!(ranked[0].peer, 2);
    assert_eq!(ranked[0].cost.cold_ms, 0.0);
    assert!(ranked[1].cost.cold_ms > 0.0);
}

#[test]
fn a_much_closer_cold_peer_beats_a_far_warm_one() {
    let cold = advert();
    let mut warm = advert();
    warm.cached.insert(&call().function);
    let ranked = rank(
        &call(),
        [view(1, &cold, 1.0), view(2, &warm, 500.0)],
        &cold,
        &Config::default(),
    );
    assert_eq!(ranked[0].peer, 1);
}

#[test]
fn load_moves_calls_away() {
    let idle = advert();
    let busy = Advert {
        running: 4,
        queued: 12,
        ..advert()
    };
    // About 18 ms of work per call: a queue of 12 on 4 slots costs far more than the
    // 2 ms of extra RTT to the idle peer.
    let heavy = Call {
        expected_fuel: 100_000_000,
        ..call()
    };
    let ranked = rank(
        &heavy,
        [view(1, &busy, 1.0), view(2, &idle, 3.0)],
        &idle,
        &Config::default(),
    );
    assert_eq!(ranked[0].peer, 2, "{ranked:?}");
}

#[test]
fn incapable_peers_are_never_candidates() {
    let small = Advert {
        memory_bytes: 1 << 20,
        ..advert()
    };
    let full = Advert {
        running: 4,
        queued: 16,
        ..advert()
    };
    let ok = advert();
    let ranked = rank(
        &call(),
        [
            view(1, &small, 1.0),
            view(2, &full, 1.0),
            view(3, &ok, 50.0),
        ],
        &ok,
        &Config::default(),
    );
    assert_eq!(ranked.len(), 1);
    assert_eq!(ranked[0].peer, 3);
}

#[test]
fn unmeasured_peers_use_coordinates_and_local_has_no_rtt() {
    let mut far = advert();
    far.coord.pos = [40.0, 0.0, 0.0];
    let me = advert();
    let unmeasured = PeerView {
        measured_rtt_ms: None,
        ..view(1, &far, 0.0)
    };
    let local = PeerView {
        local: true,
        known_warm: Some(true),
        known_state: None,
        penalty: 0.0,
        conduct_ms: 0.0,
        ..view(0, &me, 99.0)
    };
    let ranked = rank(&call(), [unmeasured, local], &me, &Config::default());
    assert_eq!(ranked[0].peer, 0);
    assert_eq!(ranked[0].cost.rtt_ms, 0.0);
    let remote = ranked[1].cost;
    assert!(!remote.rtt_measured);
    assert!((remote.rtt_ms - 40.02).abs() < 0.01, "{remote:?}");
}

/// A peer that holds the call's state documents beats an equally warm, slightly
/// nearer one that would have to fetch them first; the fetch is counted as cold start.
#[test]
fn holding_the_state_documents_counts_as_warm() {
    let doc: kith_protocol::state::DocName = format!("{}/cart", "ab".repeat(32)).parse().unwrap();
    let docs = [doc_key(&doc)];
    let c = Call {
        state_docs: &docs,
        state_bytes: 200_000,
        ..call()
    };
    let mut holder = advert();
    holder.cached.insert(&c.function);
    holder.cached.insert(&docs[0]);
    let mut lacks = advert();
    lacks.cached.insert(&c.function);
    let ranked = rank(
        &c,
        [view(1, &lacks, 5.0), view(2, &holder, 20.0)],
        &advert(),
        &Config::default(),
    );
    assert_eq!(ranked[0].peer, 2, "{ranked:?}");
    assert_eq!(ranked[0].cost.cold_ms, 0.0);
    // 40 ms of sync plus 200 kB at 10 kB/ms.
    assert!((ranked[1].cost.cold_ms - 60.0).abs() < 1e-9, "{ranked:?}");
    // Known-for-certain beats the summary (the local peer knows what it holds).
    let local = PeerView {
        local: true,
        known_warm: Some(true),
        known_state: Some(false),
        penalty: 0.0,
        conduct_ms: 0.0,
        ..view(0, &holder, 0.0)
    };
    let ranked = rank(&c, [local], &advert(), &Config::default());
    assert!(ranked[0].cost.cold_ms > 59.0);
}

prop_compose! {
    fn arb_advert()(
        memory_mib in 0u64..512,
        max_concurrent in 1u16..8,
        max_queued in 0u16..8,
        running_frac in 0.0f64..=1.0,
        queued_frac in 0.0f64..=1.0,
        cpu_score in 1u32..2_000_000,
        warm in any::<bool>(),
        x in -200.0f32..200.0,
    ) -> Advert {
        let mut a = advert();
        a.memory_bytes = memory_mib << 20;
        a.max_concurrent = max_concurrent;
        a.max_queued = max_queued;
        a.running = (f64::from(max_concurrent) * running_frac) as u16;
        a.queued = (f64::from(max_queued) * queued_frac) as u16;
        a.cpu_score = cpu_score;
        a.coord.pos[0] = x;
        if warm {
            a.cached.insert(&call().function);
        }
        a
    }
}

proptest! {
    /// Every returned candidate is capable; every capable peer is returned; the list
    /// is sorted by expected completion time.
    #[test]
    fn ranking_is_exactly_the_capable_peers_in_cost_order(
        adverts in proptest::collection::vec(arb_advert(), 0..20),
        rtts in proptest::collection::vec(proptest::option::of(0.0f64..300.0), 20),
    ) {
        let c = call();
        let me = advert();
        let views: Vec<_> = adverts.iter().enumerate().map(|(i, a)| PeerView {
            peer: i as u32,
            advert: a,
            measured_rtt_ms: rtts[i],
            local: false,
            known_warm: None,
            known_state: None,
            penalty: 0.0,
            conduct_ms: 0.0,
        }).collect();
        let ranked = rank(&c, views.clone(), &me, &Config::default());
        for cand in &ranked {
            prop_assert!(capable(&c, &adverts[cand.peer as usize]).is_ok());
        }
        let capable_count = adverts.iter().filter(|a| capable(&c, a).is_ok()).count();
        prop_assert_eq!(ranked.len(), capable_count);
        for pair in ranked.windows(2) {
            prop_assert!(pair[0].cost.total_ms <= pair[1].cost.total_ms);
        }
    }

    /// With identical adverts, ranking order is RTT order.
    #[test]
    fn identical_peers_rank_by_rtt(rtts in proptest::collection::vec(0.0f64..300.0, 1..20)) {
        let a = advert();
        let views: Vec<_> = rtts.iter().enumerate().map(|(i, r)| view(i as u32, &a, *r)).collect();
        let ranked = rank(&call(), views, &a, &Config::default());
        for pair in ranked.windows(2) {
            prop_assert!(rtts[pair[0].peer as usize] <= rtts[pair[1].peer as usize]);
        }
    }
}
