//! The peer book with a fake clock: advert sequence and freshness, RTT smoothing,
//! decaying penalties that placement sees, eviction and the cap.

#![allow(clippy::unwrap_used)]

mod common;

use kith_protocol::FunctionId;
use kith_protocol::capacity::{Advert, first_seq};
use kith_protocol::peerbook::{AdvertVerdict, Config, PeerBook};
use kith_protocol::placement::{self, Call, PeerView};
use proptest::prelude::*;

fn advert(seq: u64) -> Advert {
    Advert {
        seq,
        ..common::advert()
    }
}

fn book() -> PeerBook<u32> {
    PeerBook::new(Config {
        fresh_ms: 10_000,
        rtt_alpha: 0.5,
        penalty_half_life_ms: 1_000,
        forget_after_ms: 60_000,
        max_peers: 3,
    })
}

#[test]
fn newer_adverts_replace_older_and_a_restart_is_newer() {
    let mut b = book();
    b.on_connected(0, 1);
    let boot = 1_800_000_000_000;
    assert_eq!(
        b.on_advert(0, 1, advert(first_seq(boot) + 500)),
        AdvertVerdict::Accepted
    );
    assert_eq!(
        b.on_advert(1, 1, advert(first_seq(boot) + 499)),
        AdvertVerdict::Older
    );
    assert_eq!(
        b.on_advert(2, 1, advert(first_seq(boot + 5_000) + 1)),
        AdvertVerdict::Accepted,
        "the first advert after a restart 5 s later"
    );
}

#[test]
fn only_connected_peers_with_fresh_adverts_are_usable() {
    let mut b = book();
    b.on_connected(0, 1);
    b.on_connected(0, 2);
    b.on_advert(0, 1, advert(1));
    b.on_advert(5_000, 2, advert(1));
    let usable = |b: &PeerBook<u32>, now| b.usable(now).map(|(p, _, _)| p).collect::<Vec<_>>();
    assert_eq!(usable(&b, 10_000), [1, 2]);
    assert_eq!(usable(&b, 10_001), [2], "peer 1's advert is stale");
    b.on_disconnected(10_001, &2);
    assert!(usable(&b, 10_001).is_empty());
}

#[test]
fn rtt_is_smoothed_and_nonsense_is_ignored() {
    let mut b = book();
    b.on_rtt(0, 1, 10.0);
    b.on_rtt(0, 1, 20.0);
    assert_eq!(b.rtt_ms(&1), Some(15.0));
    b.on_rtt(0, 1, f64::NAN);
    b.on_rtt(0, 1, -3.0);
    assert_eq!(b.rtt_ms(&1), Some(15.0));
}

#[test]
fn penalties_halve_every_half_life() {
    let mut b = book();
    b.penalise(0, 1, 1.0);
    b.penalise(0, 1, 1.0);
    assert!((b.penalty(0, &1) - 2.0).abs() < 1e-9);
    assert!((b.penalty(1_000, &1) - 1.0).abs() < 1e-9);
    assert!((b.penalty(3_000, &1) - 0.25).abs() < 1e-9);
    assert_eq!(b.penalty(0, &2), 0.0);
    assert_eq!(b.get(&1).unwrap().penalties, 2);
}

#[test]
fn gone_peers_are_forgotten_and_the_cap_holds() {
    let mut b = book();
    for p in 1..=3u32 {
        b.on_connected(u64::from(p) * 10, p);
    }
    assert!(b.on_connected(40, 4).is_none(), "full of connected peers");
    assert_eq!(b.on_advert(40, 4, advert(1)), AdvertVerdict::Full);
    b.on_disconnected(50, &2);
    b.on_disconnected(60, &1);
    // A new peer takes the place of the disconnected peer heard from longest ago
    // (peer 2: heard at 50, before peer 1 at 60).
    assert!(b.on_connected(70, 4).is_some());
    assert!(b.get(&2).is_none() && b.get(&1).is_some());
    assert_eq!(b.len(), 3);
    assert_eq!(b.poll_timeout(), Some(60 + 60_000));
    assert!(b.evict(60_059).is_empty());
    assert_eq!(b.evict(60_060), [1]);
    assert_eq!(b.poll_timeout(), None);
}

fn call() -> Call<'static> {
    Call {
        function: FunctionId::of(b"f"),
        memory_bytes: 1 << 20,
        expected_fuel: 1_000_000,
        module_bytes: 10_000,
        state_docs: &[],
        state_bytes: 0,
    }
}

proptest! {
    /// Two peers equal in every way but one's penalty: the penalised one ranks below
    /// while its penalty lasts, and ties again (broken by id) once it has decayed.
    #[test]
    fn a_penalised_peer_ranks_below_an_equal_one_until_the_penalty_decays(
        rtt in 0.0f64..500.0,
        penalties in 1u32..20,
        penalised_id in 0u32..2,
    ) {
        let mut b = book();
        let a = advert(1);
        let other = 1 - penalised_id;
        for p in [penalised_id, other] {
            b.on_connected(0, p);
            b.on_advert(0, p, a.clone());
        }
        for _ in 0..penalties {
            b.penalise(0, penalised_id, 1.0);
        }
        let rank_at = |now: u64| {
            let views = [penalised_id, other].map(|p| PeerView {
                peer: p,
                advert: &a,
                measured_rtt_ms: Some(rtt),
                local: false,
                known_warm: None,
                known_state: None,
                penalty: b.penalty(now, &p),
                conduct_ms: 0.0,
            });
            placement::rank(&call(), views, &a, &placement::Config::default())
                .iter()
                .map(|c| c.peer)
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(rank_at(0), vec![other, penalised_id]);
        prop_assert_eq!(rank_at(5_000), vec![other, penalised_id], "still penalised after 5 half-lives");
        // After 200 half-lives the penalty is far below any cost's rounding: a tie.
        prop_assert_eq!(rank_at(200_000), vec![0, 1]);
    }
}
