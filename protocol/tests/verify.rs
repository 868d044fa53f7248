//! Redundant execution's vote (`kith_protocol::verify`), stepped by hand.

#![allow(clippy::unwrap_used)]

use kith_protocol::ErrorKind;
use kith_protocol::attempt::Config;
use kith_protocol::subnet::Subnet;
use kith_protocol::verify::{Answer, Failure, Outcome, Vote, counts_as_vote, majority};

const GOOD: Answer = Answer::Output([1; 32]);
const BAD: Answer = Answer::Output([2; 32]);

fn net(n: u8) -> Option<Subnet> {
    Some(Subnet::V4([10, 0, n]))
}

#[test]
fn majority_is_strict() {
    assert_eq!([1, 2, 3, 4, 5, 7].map(majority), [1, 2, 2, 3, 3, 4]);
}

#[test]
fn three_peers_on_three_networks_outvote_a_liar() {
    let order = [
        (1u32, false, net(1)),
        (2, false, net(2)),
        (3, false, net(3)),
        (4, false, net(4)),
    ];
    let mut v = Vote::new(order, 3, &Config::default());
    assert_eq!(v.start(), vec![(1, false), (2, false), (3, false)]);
    assert_eq!(v.outcome(), Outcome::Pending);
    assert!(v.on_answer(2, BAD));
    assert!(v.on_answer(1, GOOD));
    assert_eq!(v.outcome(), Outcome::Pending, "one answer is still out");
    assert!(v.on_answer(3, GOOD));
    assert!(v.start().is_empty());
    assert_eq!(
        v.outcome(),
        Outcome::Decided {
            answer: GOOD,
            agree: vec![1, 3],
            dissent: vec![(2, BAD)],
        }
    );
    assert!(!v.on_answer(4, GOOD), "never started: ignored");
}

#[test]
fn one_network_is_one_vote() {
    // Peers 1-3 share a /24 (one host's many identities): only the best of them votes.
    let order = [
        (1u32, false, net(1)),
        (2, false, net(1)),
        (3, false, net(1)),
        (4, false, net(2)),
        (5, true, None),
    ];
    let mut v = Vote::new(order, 3, &Config::default());
    assert_eq!(v.start(), vec![(1, false), (4, false), (5, true)]);
    // Two liars of one /24 cannot outvote anyone: only one of them is asked.
    v.on_answer(1, BAD);
    v.on_answer(4, GOOD);
    v.on_answer(5, GOOD);
    assert!(matches!(v.outcome(), Outcome::Decided { answer, .. } if answer == GOOD));
}

#[test]
fn too_few_networks_is_no_quorum() {
    let order = [(1u32, false, net(1)), (2, false, net(1))];
    let mut v = Vote::new(order, 3, &Config::default());
    assert_eq!(v.start(), vec![(1, false)]);
    v.on_answer(1, GOOD);
    assert!(v.start().is_empty());
    assert_eq!(
        v.outcome(),
        Outcome::NoQuorum {
            votes: vec![(1, GOOD)],
            wanted: 3,
            networks: 1,
        }
    );
}

#[test]
fn loopback_peers_are_each_their_own_network() {
    let order = [(1u32, false, None), (2, false, None), (3, false, None)];
    let mut v = Vote::new(order, 3, &Config::default());
    assert_eq!(v.start().len(), 3);
}

#[test]
fn a_failed_candidate_is_replaced_and_its_network_freed() {
    let order = [
        (1u32, false, net(1)),
        (2, false, net(2)),
        (3, false, net(1)),
        (4, false, net(3)),
    ];
    let mut v = Vote::new(order, 2, &Config::default());
    assert_eq!(v.start(), vec![(1, false), (2, false)]);
    // Busy: replaced by the next candidate, whose network is free again.
    assert_eq!(
        v.on_failure(1, false, ErrorKind::Busy),
        Some(Failure::Replace)
    );
    assert_eq!(v.outcome(), Outcome::Pending);
    assert_eq!(v.start(), vec![(3, false)]);
    // Unreachable: penalised and replaced.
    assert_eq!(
        v.on_failure(2, false, ErrorKind::Unreachable),
        Some(Failure::Penalise)
    );
    assert_eq!(v.start(), vec![(4, false)]);
    v.on_answer(3, GOOD);
    v.on_answer(4, GOOD);
    assert!(matches!(v.outcome(), Outcome::Decided { agree, .. } if agree == vec![3, 4]));
}

#[test]
fn replacements_are_bounded() {
    let order: Vec<(u32, bool, Option<Subnet>)> = (0..20).map(|i| (i, false, None)).collect();
    let config = Config {
        max_attempts: 2,
        ..Config::default()
    };
    let mut v = Vote::new(order, 3, &config);
    let mut started = v.start();
    let mut total = started.len();
    while let Some((peer, local)) = started.pop() {
        v.on_failure(peer, local, ErrorKind::Busy);
        let more = v.start();
        total += more.len();
        started.extend(more);
    }
    assert_eq!(total, 3 + 2 - 1, "N + max_attempts - 1 candidates at most");
    assert!(matches!(v.outcome(), Outcome::NoQuorum { .. }));
}

#[test]
fn deterministic_faults_vote_and_machine_dependent_ones_abstain() {
    assert!(counts_as_vote(ErrorKind::Trap));
    assert!(counts_as_vote(ErrorKind::OutOfFuel));
    assert!(!counts_as_vote(ErrorKind::Timeout));
    assert!(!counts_as_vote(ErrorKind::StackOverflow));
    let order = [
        (1u32, false, None),
        (2, false, None),
        (3, false, None),
        (4, false, None),
    ];
    let mut v = Vote::new(order, 3, &Config::default());
    v.start();
    assert_eq!(v.on_failure(1, false, ErrorKind::Trap), None, "a vote");
    assert_eq!(v.on_failure(2, false, ErrorKind::Trap), None);
    assert_eq!(
        v.on_failure(3, false, ErrorKind::Timeout),
        Some(Failure::Replace),
        "abstains"
    );
    assert_eq!(v.start(), vec![(4, false)]);
    v.on_answer(4, GOOD);
    assert_eq!(
        v.outcome(),
        Outcome::Decided {
            answer: Answer::Fault(ErrorKind::Trap),
            agree: vec![1, 2],
            dissent: vec![(4, GOOD)],
        }
    );
}

#[test]
fn a_split_vote_has_no_quorum() {
    let order = [
        (1u32, false, None),
        (2, false, None),
        (3, false, None),
        (4, false, None),
    ];
    let mut v = Vote::new(order, 4, &Config::default());
    v.start();
    v.on_answer(1, GOOD);
    v.on_answer(2, BAD);
    v.on_answer(3, GOOD);
    v.on_answer(4, BAD);
    assert!(matches!(v.outcome(), Outcome::NoQuorum { votes, .. } if votes.len() == 4));
}
