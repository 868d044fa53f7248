//! Alias records, the registry and split resolution.

#![allow(clippy::unwrap_used)]

use ed25519_dalek::{Signer, SigningKey};
use kith_protocol::FunctionId;
use kith_protocol::alias::{
    Alias, AliasError, AliasRef, Applied, Namespace, Record, Registry, Signed, SyncRequest,
    SyncResponse, Target, pick,
};
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn ns(k: &SigningKey) -> Namespace {
    Namespace(k.verifying_key().to_bytes())
}

fn f(name: &str) -> FunctionId {
    FunctionId::of(name.as_bytes())
}

fn record(k: &SigningKey, channel: &str, seq: u64, targets: &[(&str, u32)]) -> Signed {
    Record {
        alias: Alias::new(ns(k), "app", channel).unwrap(),
        seq,
        issued_ms: 1_000 + seq,
        verify: 1,
        targets: targets
            .iter()
            .map(|(n, w)| Target {
                function: f(n),
                weight: *w,
            })
            .collect(),
    }
    .sign(|m| k.sign(m).to_bytes())
    .unwrap()
}

#[test]
fn records_round_trip_and_forgeries_are_refused() {
    let k = key(1);
    let s = record(&k, "prod", 3, &[("v1", 90), ("v2", 10)]);
    let back = Signed::decode(&s.bytes).unwrap();
    assert_eq!(back, s);
    // Signed by another key than the namespace's.
    let forged = Record {
        alias: Alias::new(ns(&k), "app", "prod").unwrap(),
        seq: 4,
        issued_ms: 0,
        verify: 1,
        targets: vec![Target {
            function: f("evil"),
            weight: 1,
        }],
    }
    .sign(|m| key(2).sign(m).to_bytes())
    .unwrap();
    assert_eq!(Signed::decode(&forged.bytes), Err(AliasError::BadSignature));
    // Any flipped bit.
    for i in [1, 40, 60, s.bytes.len() - 1] {
        let mut t = s.bytes.clone();
        t[i] ^= 0x20;
        assert!(Signed::decode(&t).is_err(), "bit flip at {i} accepted");
    }
    // Truncated, oversized, trailing.
    assert!(Signed::decode(&s.bytes[..s.bytes.len() - 1]).is_err());
    assert!(Signed::decode(&[]).is_err());
    assert!(matches!(
        Signed::decode(&vec![1u8; 5000]),
        Err(AliasError::Malformed(_))
    ));
}

#[test]
fn invalid_targets_and_names_are_refused() {
    let k = key(1);
    let make = |targets: Vec<Target>| {
        Record {
            alias: Alias::new(ns(&k), "app", "prod").unwrap(),
            seq: 1,
            issued_ms: 0,
            verify: 1,
            targets,
        }
        .sign(|m| k.sign(m).to_bytes())
    };
    assert!(matches!(make(vec![]), Err(AliasError::Targets(_))));
    let t = Target {
        function: f("a"),
        weight: 0,
    };
    assert!(matches!(make(vec![t]), Err(AliasError::Targets(_))));
    let t = Target {
        function: f("a"),
        weight: 1,
    };
    assert!(matches!(make(vec![t, t]), Err(AliasError::Targets(_))));
    assert!(Alias::new(ns(&k), "App", "prod").is_err());
    assert!(Alias::new(ns(&k), "app", "").is_err());
    assert!(Alias::new(ns(&k), &"a".repeat(65), "prod").is_err());
    let r: AliasRef = "bars/app@prod".parse().unwrap();
    assert_eq!(r.namespace, "bars");
    assert!("bars/app".parse::<AliasRef>().is_err());
    assert!("app@prod".parse::<AliasRef>().is_err());
    let e = "bars/a pp@prod".parse::<AliasRef>().unwrap_err();
    assert!(e.to_string().contains("a-z"), "{e}");
}

#[test]
fn the_highest_sequence_wins_and_history_is_kept() {
    let k = key(1);
    let alias = Alias::new(ns(&k), "app", "prod").unwrap();
    let mut reg = Registry::default();
    let r1 = record(&k, "prod", 1, &[("v1", 1)]);
    let r2 = record(&k, "prod", 2, &[("v2", 1)]);
    assert_eq!(reg.apply(r2.clone()), Applied::Current);
    // An older record arriving late is history, not current.
    assert_eq!(reg.apply(r1.clone()), Applied::History);
    // A replay changes nothing.
    assert_eq!(reg.apply(r2.clone()), Applied::Duplicate);
    assert_eq!(reg.apply(r1.clone()), Applied::Duplicate);
    assert_eq!(reg.current(&alias).unwrap().record.seq, 2);
    assert_eq!(reg.history(&alias).len(), 2);
    assert_eq!(reg.previous(&alias).unwrap().record.seq, 1);
    assert_eq!(reg.resolve(&alias, b"k").unwrap().0, f("v2"));
    assert!(reg.vouches(&ns(&k), &f("v2")));
    assert!(!reg.vouches(&ns(&k), &f("v1")));
    assert!(!reg.vouches(&ns(&key(2)), &f("v2")));
}

#[test]
fn conflicting_records_with_one_sequence_resolve_identically_in_any_order() {
    let k = key(1);
    let alias = Alias::new(ns(&k), "app", "prod").unwrap();
    let a = record(&k, "prod", 5, &[("a", 1)]);
    let b = record(&k, "prod", 5, &[("b", 1)]);
    let c = record(&k, "prod", 4, &[("c", 1)]);
    let orders = [
        vec![&a, &b, &c],
        vec![&b, &a, &c],
        vec![&c, &b, &a],
        vec![&b, &c, &a],
    ];
    let mut seen = Vec::new();
    for order in orders {
        let mut reg = Registry::default();
        for s in order {
            reg.apply((*s).clone());
        }
        seen.push((reg.current(&alias).unwrap().digest, reg.digest()));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    let winner = if a.digest > b.digest { &a } else { &b };
    assert_eq!(seen[0].0, winner.digest);
}

#[test]
fn a_90_10_split_lands_within_one_point_and_keys_are_sticky() {
    let k = key(1);
    let alias = Alias::new(ns(&k), "app", "prod").unwrap();
    let targets = [
        Target {
            function: f("v1"),
            weight: 90,
        },
        Target {
            function: f("v2"),
            weight: 10,
        },
    ];
    let n = 10_000u32;
    let v2 = (0..n)
        .filter(|i| pick(&alias, &targets, &i.to_le_bytes()) == Some(f("v2")))
        .count();
    let share = v2 as f64 / f64::from(n);
    assert!((share - 0.10).abs() <= 0.01, "v2 got {share}");
    for user in ["alice", "bob", "carol"] {
        let first = pick(&alias, &targets, user.as_bytes());
        for _ in 0..20 {
            assert_eq!(pick(&alias, &targets, user.as_bytes()), first);
        }
    }
}

#[test]
fn sync_messages_round_trip_and_refuse_garbage() {
    let req = SyncRequest { digest: [7; 32] };
    assert_eq!(SyncRequest::decode(&req.encode()).unwrap(), req);
    assert!(SyncRequest::decode(&[1, 2, 3]).is_err());
    let k = key(1);
    let recs = vec![
        record(&k, "prod", 1, &[("a", 1)]).bytes,
        record(&k, "dev", 1, &[("b", 1)]).bytes,
    ];
    let resp = SyncResponse::Records(recs);
    assert_eq!(SyncResponse::decode(&resp.encode()).unwrap(), resp);
    assert_eq!(
        SyncResponse::decode(&SyncResponse::Same.encode()).unwrap(),
        SyncResponse::Same
    );
    let mut huge = vec![1u8];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(SyncResponse::decode(&huge).is_err());
    assert!(SyncResponse::decode(&[9]).is_err());
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = Signed::decode(&bytes);
        let _ = SyncResponse::decode(&bytes);
        let _ = SyncRequest::decode(&bytes);
    }

    #[test]
    fn registries_converge_whatever_the_order(order in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle()) {
        let k = key(3);
        let records: Vec<Signed> = (0..6u64)
            .map(|i| record(&k, if i % 2 == 0 { "prod" } else { "dev" }, i / 2, &[(&format!("v{i}"), 1)]))
            .collect();
        let mut a = Registry::default();
        let mut b = Registry::default();
        for r in &records {
            a.apply(r.clone());
        }
        for i in order {
            b.apply(records[i].clone());
        }
        prop_assert_eq!(a.digest(), b.digest());
        for r in a.currents() {
            prop_assert_eq!(b.current(&r.record.alias).map(|s| s.digest), Some(r.digest));
        }
    }
}

#[test]
fn a_record_may_ask_for_verification() {
    let k = key(1);
    let plain = record(&k, "prod", 1, &[("v1", 1)]);
    assert_eq!(plain.bytes[0], 1, "verify = 1 keeps the version 1 layout");
    let mut r = plain.record.clone();
    r.seq = 2;
    r.verify = 3;
    let signed = r.clone().sign(|m| k.sign(m).to_bytes()).unwrap();
    assert_eq!(signed.bytes[0], 2);
    assert_eq!(signed.bytes.len(), plain.bytes.len() + 1);
    assert_eq!(Signed::decode(&signed.bytes).unwrap().record.verify, 3);
    let mut over = r;
    over.verify = 8;
    assert!(over.sign(|m| k.sign(m).to_bytes()).is_err());
}
