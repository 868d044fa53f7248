//! Fetch sessions: provider order, chunks, verification, penalties and giving up.

#![allow(clippy::unwrap_used)]

use kith_protocol::FunctionId;
use kith_protocol::fetch::{Answered, Known, Session, Step};
use kith_protocol::wire::{FETCH_CHUNK, FetchRequest, FetchResponse};
use proptest::prelude::*;

const LOCAL: u32 = 0;

fn known(peer: u32, claims: bool, penalty: f64, rtt: f64) -> Known<u32> {
    Known {
        peer,
        claims,
        penalty,
        rtt_ms: Some(rtt),
    }
}

fn asked(step: Step<u32>) -> (u32, FetchRequest) {
    match step {
        Step::Ask { peer, request } => (peer, request),
        other => panic!("expected a request, got {other:?}"),
    }
}

/// Answers `request` from `module`, as an honest peer does.
fn honest(module: &[u8], request: &FetchRequest) -> FetchResponse {
    FetchResponse::answer(request, module)
}

#[test]
fn the_forwarder_first_then_claimants_by_penalty_and_rtt_then_everyone() {
    let module = b"module".to_vec();
    let id = FunctionId::of(&module);
    let mut s = Session::new(id, 1 << 20, Some(9));
    let connected = [
        known(1, true, 0.0, 50.0),
        known(2, true, 0.0, 5.0),
        known(3, true, 2.0, 1.0),
        known(4, false, 0.0, 1.0),
        known(LOCAL, true, 0.0, 0.0),
    ];
    let mut order = Vec::new();
    loop {
        match s.next(LOCAL, &connected) {
            Step::Ask { peer, .. } => {
                order.push(peer);
                assert_eq!(
                    s.on_answer(peer, Some(FetchResponse::NotFound), false),
                    Answered::Ok
                );
            }
            Step::Wait => {
                // The provider query ends: now unclaiming peers are asked too.
                s.query_done();
            }
            Step::Failed { asked, bad } => {
                assert_eq!((asked, bad), (5, 0));
                break;
            }
            Step::Done(_) => panic!("nobody had it"),
        }
    }
    assert_eq!(order, [9, 2, 1, 3, 4], "never this node itself");
}

#[test]
fn a_module_in_chunks_is_verified_and_a_liar_is_penalised() {
    let module: Vec<u8> = (0..FETCH_CHUNK as usize * 2 + 7).map(|i| i as u8).collect();
    let id = FunctionId::of(&module);
    let mut s = Session::new(id, 1 << 20, None);
    s.providers_found([5, 6]);
    s.query_done();
    let connected = [known(5, false, 0.0, 1.0), known(6, false, 0.0, 2.0)];
    // Peer 5 lies: right length, wrong bytes.
    let lie = vec![0u8; module.len()];
    let mut chunks = 0;
    let done = loop {
        match s.next(LOCAL, &connected) {
            Step::Ask { peer, request } => {
                let from = if peer == 5 { &lie } else { &module };
                match s.on_answer(peer, Some(honest(from, &request)), false) {
                    Answered::Penalise { peer, problem } => {
                        assert_eq!(peer, 5);
                        assert!(problem.contains("do not match"), "{problem}");
                    }
                    Answered::Ok => chunks += 1,
                    Answered::Stale => panic!("stale"),
                }
            }
            Step::Done(bytes) => break bytes,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(done, module);
    assert_eq!(
        chunks,
        2 + 3,
        "two good chunks from 5, then all three from 6"
    );
}

#[test]
fn a_chunk_that_does_not_continue_or_is_too_large_is_refused() {
    let module = vec![7u8; 1000];
    let id = FunctionId::of(&module);
    let mut s = Session::new(id, 500, None);
    s.providers_found([1, 2]);
    let connected = [known(1, false, 0.0, 1.0), known(2, false, 0.0, 2.0)];
    let (peer, request) = asked(s.next(LOCAL, &connected));
    assert_eq!(peer, 1);
    match s.on_answer(peer, Some(honest(&module, &request)), false) {
        Answered::Penalise { problem, .. } => {
            assert!(problem.contains("max_module_bytes"), "{problem}")
        }
        other => panic!("{other:?}"),
    }
    let (peer, _) = asked(s.next(LOCAL, &connected));
    assert_eq!(peer, 2);
    let skipped = FetchResponse::Found {
        total: 100,
        offset: 50,
        bytes: vec![1; 10],
    };
    assert!(matches!(
        s.on_answer(peer, Some(skipped), false),
        Answered::Penalise { .. }
    ));
    assert_eq!(
        s.on_answer(peer, None, false),
        Answered::Stale,
        "no request out"
    );
    assert_eq!(
        s.next(LOCAL, &connected),
        Step::Wait,
        "the query may still find someone"
    );
    s.query_done();
    assert_eq!(s.next(LOCAL, &connected), Step::Failed { asked: 2, bad: 2 });
}

proptest! {
    /// Whatever peers answer: no panic, no peer asked for byte 0 twice, never this
    /// node, and a result only from bytes that hash to the id.
    #[test]
    fn no_input_makes_a_session_misbehave(
        answers in proptest::collection::vec(
            (any::<bool>(), 0u64..3000, 0u64..3000, proptest::collection::vec(any::<u8>(), 0..64)),
            0..40,
        ),
        providers in proptest::collection::vec(0u32..8, 0..10),
    ) {
        let module = b"the real module".to_vec();
        let id = FunctionId::of(&module);
        let mut s = Session::new(id, 2048, providers.first().copied());
        s.providers_found(providers.iter().copied());
        s.query_done();
        let connected: Vec<Known<u32>> = (0..8).map(|p| known(p, p % 2 == 0, 0.0, f64::from(p))).collect();
        let mut first_asks = Vec::new();
        for (found, total, offset, bytes) in answers {
            match s.next(LOCAL, &connected) {
                Step::Ask { peer, request } => {
                    prop_assert_ne!(peer, LOCAL);
                    if request.offset == 0 {
                        prop_assert!(!first_asks.contains(&peer));
                        first_asks.push(peer);
                    }
                    let answer = found.then_some(FetchResponse::Found { total, offset, bytes });
                    let _ = s.on_answer(peer, answer, false);
                }
                Step::Done(bytes) => {
                    prop_assert!(id.matches(&bytes));
                    break;
                }
                Step::Failed { .. } => break,
                Step::Wait => prop_assert!(false, "nothing to wait for"),
            }
        }
    }
}
