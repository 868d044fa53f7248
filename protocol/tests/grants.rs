//! Grant records and the judging of incoming changes.

#![allow(clippy::unwrap_used)]

use ed25519_dalek::{Signer, SigningKey};
use kith_protocol::FunctionId;
use kith_protocol::alias::{Alias, Applied, Namespace};
use kith_protocol::grant::{Authority, GrantBook, GrantError, Grants, SignedGrants};
use kith_protocol::state::DocName;
use kith_protocol::state::writes::{
    ChangeFacts, Held, MAX_ORPHANS_PER_DOC, MAX_ORPHANS_PER_PEER, Orphan, Orphans, Refusal, judge,
    sign_change,
};

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn ns_of(k: &SigningKey) -> Namespace {
    Namespace(k.verifying_key().to_bytes())
}

fn grants(
    owner: &SigningKey,
    seq: u64,
    writers: &[&SigningKey],
    functions: &[FunctionId],
) -> SignedGrants {
    Grants {
        namespace: ns_of(owner),
        seq,
        issued_ms: seq * 1000,
        writers: writers
            .iter()
            .map(|k| k.verifying_key().to_bytes())
            .collect(),
        functions: functions.to_vec(),
        aliases: Vec::new(),
    }
    .sign(|m| owner.sign(m).to_bytes())
    .unwrap()
}

#[test]
fn records_round_trip_and_forgeries_are_refused() {
    let owner = key(1);
    let f = FunctionId::of(b"f");
    let signed = grants(&owner, 1, &[&key(2)], &[f]);
    let back = SignedGrants::decode(&signed.bytes).unwrap();
    assert_eq!(back, signed);
    // Any flipped byte breaks the signature (or the format).
    for at in [3, 40, signed.bytes.len() - 70, signed.bytes.len() - 1] {
        let mut bad = signed.bytes.clone();
        bad[at] ^= 1;
        assert!(SignedGrants::decode(&bad).is_err(), "byte {at}");
    }
    // Signed by someone else than the namespace.
    let forged = Grants {
        namespace: ns_of(&owner),
        seq: 2,
        issued_ms: 0,
        writers: vec![key(9).verifying_key().to_bytes()],
        functions: Vec::new(),
        aliases: Vec::new(),
    }
    .sign(|m| key(9).sign(m).to_bytes())
    .unwrap();
    assert_eq!(
        SignedGrants::decode(&forged.bytes),
        Err(GrantError::BadSignature)
    );
    // Aliases of another namespace cannot be granted.
    let other = Alias::new(ns_of(&key(5)), "app", "prod").unwrap();
    let foreign = Grants {
        namespace: ns_of(&owner),
        seq: 1,
        issued_ms: 0,
        writers: Vec::new(),
        functions: Vec::new(),
        aliases: vec![other],
    }
    .sign(|m| owner.sign(m).to_bytes());
    assert!(matches!(foreign, Err(GrantError::ForeignAlias(_))));
}

#[test]
fn the_current_record_decides_and_history_marks_the_revoked() {
    let owner = key(1);
    let ns = ns_of(&owner);
    let (w, x) = (key(2), key(3));
    let f = FunctionId::of(b"f");
    let mut book = GrantBook::default();
    let never = |_: &Alias, _: &FunctionId| Authority::Never;
    assert_eq!(book.writer(&ns, &ns.0), Authority::Owner);
    assert_eq!(
        book.writer(&ns, &w.verifying_key().to_bytes()),
        Authority::Never
    );
    assert_eq!(book.apply(grants(&owner, 1, &[&w], &[f])), Applied::Current);
    assert_eq!(
        book.apply(grants(&owner, 1, &[&w], &[f])),
        Applied::Duplicate
    );
    assert_eq!(
        book.writer(&ns, &w.verifying_key().to_bytes()),
        Authority::Granted
    );
    assert_eq!(book.function(&ns, &f, never), Authority::Granted);
    // Seq 2 revokes w and f, grants x; an old record arriving late changes nothing.
    let digest_before = book.digest();
    assert_eq!(book.apply(grants(&owner, 2, &[&x], &[])), Applied::Current);
    assert_ne!(book.digest(), digest_before);
    assert_eq!(
        book.writer(&ns, &w.verifying_key().to_bytes()),
        Authority::Revoked
    );
    assert_eq!(
        book.writer(&ns, &x.verifying_key().to_bytes()),
        Authority::Granted
    );
    assert_eq!(book.function(&ns, &f, never), Authority::Revoked);
    assert_eq!(
        book.function(&ns, &FunctionId::of(b"g"), never),
        Authority::Never
    );
    // A function reached through a granted alias.
    let g = FunctionId::of(b"g");
    let alias = Alias::new(ns, "app", "prod").unwrap();
    let with_alias = Grants {
        namespace: ns,
        seq: 3,
        issued_ms: 0,
        writers: Vec::new(),
        functions: Vec::new(),
        aliases: vec![alias.clone()],
    }
    .sign(|m| owner.sign(m).to_bytes())
    .unwrap();
    book.apply(with_alias);
    let points = |a: &Alias, h: &FunctionId| {
        if *a == alias && *h == g {
            Authority::Granted
        } else {
            Authority::Never
        }
    };
    assert_eq!(book.function(&ns, &g, points), Authority::Granted);
    assert_eq!(
        book.writer(&ns, &x.verifying_key().to_bytes()),
        Authority::Revoked
    );
}

fn doc(owner: &SigningKey) -> DocName {
    DocName::new(ns_of(owner), "notes").unwrap()
}

fn change(d: &DocName, by: &SigningKey, n: u8, deps: &[[u8; 32]]) -> ChangeFacts {
    let hash = [n; 32];
    ChangeFacts {
        hash,
        actor: by.verifying_key().to_bytes().to_vec(),
        deps: deps.to_vec(),
        function: None,
        signature: Some(sign_change(by, d, &hash)),
    }
}

#[test]
fn a_message_with_one_bad_change_is_refused_whole() {
    let owner = key(1);
    let d = doc(&owner);
    let stranger = key(7);
    let auth = |k: &[u8], _: Option<&FunctionId>| {
        if k == ns_of(&owner).0 {
            Authority::Owner
        } else {
            Authority::Never
        }
    };
    let none = |_: &[u8; 32]| false;
    let good = change(&d, &owner, 1, &[]);
    assert_eq!(
        judge(&d, std::slice::from_ref(&good), auth, none)
            .unwrap()
            .apply,
        vec![0]
    );
    let mut unsigned = change(&d, &owner, 2, &[[1; 32]]);
    unsigned.signature = None;
    assert_eq!(
        judge(&d, &[good.clone(), unsigned], auth, none),
        Err(Refusal::Unsigned([2; 32]))
    );
    // Claiming the owner's actor id with a stranger's signature.
    let mut impersonated = change(&d, &stranger, 3, &[[1; 32]]);
    impersonated.actor = ns_of(&owner).0.to_vec();
    assert!(matches!(
        judge(&d, &[good.clone(), impersonated], auth, none),
        Err(Refusal::Forged(..))
    ));
    // A signature for another document does not carry over.
    let elsewhere = DocName::new(ns_of(&owner), "other").unwrap();
    let mut replayed = change(&d, &owner, 4, &[]);
    replayed.signature = Some(sign_change(&owner, &elsewhere, &[4; 32]));
    assert!(matches!(
        judge(&d, &[replayed], auth, none),
        Err(Refusal::Forged(..))
    ));
    assert!(matches!(
        judge(&d, &[good, change(&d, &stranger, 5, &[])], auth, none),
        Err(Refusal::Unauthorised(..))
    ));
}

#[test]
fn revoked_writers_count_only_when_an_authorised_change_builds_on_them() {
    let owner = key(1);
    let d = doc(&owner);
    let old = key(2);
    let auth = |k: &[u8], _: Option<&FunctionId>| {
        if k == ns_of(&owner).0 {
            Authority::Owner
        } else if k == old.verifying_key().to_bytes() {
            Authority::Revoked
        } else {
            Authority::Never
        }
    };
    let none = |_: &[u8; 32]| false;
    // Alone, the revoked writer's change is dropped (not refused: no penalty).
    let v = judge(&d, &[change(&d, &old, 1, &[])], auth, none).unwrap();
    assert_eq!((v.apply.len(), v.revoked), (0, vec![0]));
    // Built on by the owner (history from before the revocation): it enters, first.
    let v = judge(
        &d,
        &[change(&d, &owner, 2, &[[1; 32]]), change(&d, &old, 1, &[])],
        auth,
        none,
    )
    .unwrap();
    assert_eq!(v.apply, vec![1, 0]);
    assert!(v.revoked.is_empty());
    // A change whose parent is missing is an orphan; with the parent present it applies.
    let child = change(&d, &owner, 3, &[[9; 32]]);
    let v = judge(&d, std::slice::from_ref(&child), auth, none).unwrap();
    assert_eq!(v.orphans, vec![0]);
    let v = judge(&d, &[child], auth, |h: &[u8; 32]| *h == [9; 32]).unwrap();
    assert_eq!(v.apply, vec![0]);
}

#[test]
fn orphans_are_bounded_per_document_and_per_peer() {
    let owner = key(1);
    let orphan = |from: &str, n: u32| Orphan {
        from: from.to_owned(),
        hash: {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&n.to_le_bytes());
            h[4..4 + from.len()].copy_from_slice(from.as_bytes());
            h
        },
        signature: [0; 64],
        bytes: vec![0; 100],
    };
    let mut held = Orphans::default();
    let d = doc(&owner);
    // A flood from one peer stays at the document's cap, its own oldest going first.
    for n in 0..500 {
        let r = held.hold(&d, orphan("flood", n));
        assert!(matches!(r, Held::Kept | Held::Evicted), "{r:?}");
        assert!(held.of(&d) <= MAX_ORPHANS_PER_DOC);
    }
    assert_eq!(held.of(&d), MAX_ORPHANS_PER_DOC);
    assert_eq!(held.hold(&d, orphan("flood", 499)), Held::Duplicate);
    // Another peer's orphan still gets in, at the flooder's expense.
    assert_eq!(held.hold(&d, orphan("honest", 0)), Held::Evicted);
    assert_eq!(held.from(&"honest".to_owned()), 1);
    // Across documents a peer is held to its own cap.
    let mut dropped = 0;
    for i in 0..10u32 {
        let other = DocName::new(ns_of(&owner), &format!("d{i}")).unwrap();
        for n in 0..MAX_ORPHANS_PER_DOC as u32 {
            if held.hold(&other, orphan("flood", 1000 + i * 100 + n)) == Held::PeerFull {
                dropped += 1;
            }
        }
    }
    assert!(dropped > 0);
    assert_eq!(held.from(&"flood".to_owned()), MAX_ORPHANS_PER_PEER);
    let taken = held.take(&d);
    assert_eq!(taken.len(), MAX_ORPHANS_PER_DOC);
    assert_eq!(held.of(&d), 0);
    assert!(held.bytes() <= MAX_ORPHANS_PER_PEER * 100);
}
