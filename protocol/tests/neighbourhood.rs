//! The neighbourhood state machine under a fake clock: a small network of machines
//! on a line (RTT = distance + 1 ms) exchanging messages through a queue.

use std::collections::VecDeque;

use kith_protocol::neighbourhood::{Action, AdvertVerdict, Config, Message, Neighbourhood};

type Hood = Neighbourhood<u32, u64>;

struct Net {
    nodes: Vec<Option<Hood>>,
    pos: Vec<f64>,
    now: u64,
    queue: VecDeque<(u32, u32, Message<u32>)>,
    sent: Vec<u64>,
    adverts: Vec<u64>,
    rng: u64,
}

impl Net {
    fn new(n: usize, seed: u64) -> Self {
        let mut net = Self {
            nodes: Vec::new(),
            pos: Vec::new(),
            now: 0,
            queue: VecDeque::new(),
            sent: vec![0; n],
            adverts: vec![0; n],
            rng: seed,
        };
        for i in 0..n {
            let x = net.below(10_000) as f64 / 10.0;
            net.pos.push(x);
            net.nodes.push(Some(Hood::new(
                i as u32,
                Config::default(),
                i as u64 + 1,
                0,
            )));
        }
        // Each node knows three random others at the start (bootstrap peers).
        for i in 0..n {
            for _ in 0..3 {
                let q = net.below(n as u64) as u32;
                if let Some(h) = net.nodes[i].as_mut() {
                    h.discovered(0, q);
                }
            }
        }
        net
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.rng >> 33) % n.max(1)
    }

    fn rtt(&self, a: u32, b: u32) -> f64 {
        (self.pos[a as usize] - self.pos[b as usize]).abs() + 1.0
    }

    /// Moves every node's actions onto the wire, delivers everything, repeats until
    /// quiet.
    fn pump(&mut self) {
        loop {
            for i in 0..self.nodes.len() {
                while let Some(a) = self.nodes[i].as_mut().and_then(Hood::poll_action) {
                    match a {
                        Action::Probe(q) => {
                            let alive = self.nodes.get(q as usize).is_some_and(Option::is_some);
                            let rtt = self.rtt(i as u32, q);
                            let now = self.now;
                            if let Some(h) = self.nodes[i].as_mut() {
                                if alive {
                                    h.rtt(now, q, rtt);
                                } else {
                                    h.unreachable(now, q);
                                }
                            }
                        }
                        Action::Send(q, m) => {
                            self.sent[i] += 1;
                            self.queue.push_back((i as u32, q, m));
                        }
                        Action::Lookup => {
                            let q = self.below(self.nodes.len() as u64) as u32;
                            let now = self.now;
                            if let Some(h) = self.nodes[i].as_mut() {
                                h.discovered(now, q);
                            }
                        }
                    }
                }
            }
            if self.queue.is_empty() {
                return;
            }
            while let Some((from, to, m)) = self.queue.pop_front() {
                let now = self.now;
                let Some(h) = self.nodes.get_mut(to as usize).and_then(Option::as_mut) else {
                    continue; // a dead node: lost
                };
                if let Message::Advert { .. } = m {
                    self.adverts[from as usize] += 1;
                    let seq = self.adverts[from as usize];
                    h.advert(now, from, seq, seq);
                } else {
                    h.message(now, from, m);
                }
            }
        }
    }

    fn run(&mut self, until_ms: u64) {
        while self.now < until_ms {
            self.now += 100;
            for i in 0..self.nodes.len() {
                let now = self.now;
                if let Some(h) = self.nodes[i].as_mut()
                    && h.poll_timeout().is_some_and(|t| t <= now)
                {
                    h.handle_timeout(now);
                }
            }
            self.pump();
        }
    }

    fn nearest(&self, i: usize, k: usize) -> Vec<u32> {
        let mut v: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&q| q as usize != i && self.nodes[q as usize].is_some())
            .collect();
        v.sort_by(|&a, &b| self.rtt(i as u32, a).total_cmp(&self.rtt(i as u32, b)));
        v.truncate(k);
        v
    }
}

#[test]
fn neighbourhoods_converge_on_the_nearest_peers_and_stay_within_their_caps() {
    let mut net = Net::new(300, 7);
    net.run(480_000);
    let config = Config::default();
    let mut found = 0;
    for i in 0..net.nodes.len() {
        let h = net.nodes[i].as_ref().unwrap();
        assert!(h.neighbours().len() <= config.max_neighbours(), "node {i}");
        assert!(
            h.subscribers().count() <= config.max_subscribers,
            "node {i}"
        );
        assert!(h.candidates() <= config.max_candidates, "node {i}");
        let nearest = net.nearest(i, 8);
        found += nearest.iter().filter(|&&q| h.is_neighbour(q)).count();
        assert!(
            h.neighbours().len() >= config.near,
            "node {i} has {} neighbours",
            h.neighbours().len()
        );
    }
    let share = found as f64 / (8 * net.nodes.len()) as f64;
    assert!(
        share > 0.9,
        "only {share:.2} of the 8 nearest peers are neighbours"
    );
}

#[test]
fn what_a_peer_sends_does_not_grow_with_the_network() {
    let per_peer = |n: usize| {
        let mut net = Net::new(n, 11);
        net.run(120_000);
        let sent0: u64 = net.sent.iter().sum();
        net.run(300_000);
        let sent: u64 = net.sent.iter().sum::<u64>() - sent0;
        sent as f64 / n as f64 / 180.0
    };
    let small = per_peer(100);
    let large = per_peer(400);
    assert!(small > 0.5, "{small} messages/s: nothing is happening");
    assert!(
        large < small * 1.5 && large < 20.0,
        "per-peer messages/s: {small:.2} at 100 peers, {large:.2} at 400"
    );
}

#[test]
fn dead_neighbours_are_replaced() {
    let mut net = Net::new(200, 3);
    net.run(180_000);
    for i in (0..200).step_by(4) {
        net.nodes[i] = None;
    }
    let c = Config::default();
    net.run(180_000 + c.expire_ms.max(c.lease_ms) + 10_000);
    for i in 0..net.nodes.len() {
        let Some(h) = net.nodes[i].as_ref() else {
            continue;
        };
        for n in h.neighbours() {
            assert!(
                net.nodes[n.peer as usize].is_some(),
                "{i} keeps dead {}",
                n.peer
            );
        }
        assert!(h.neighbours().len() >= Config::default().near, "node {i}");
        let live_subscribers = h.subscribers().all(|s| net.nodes[s as usize].is_some());
        assert!(live_subscribers, "node {i} still sends to dead subscribers");
    }
}

fn drain(h: &mut Hood) -> Vec<Action<u32>> {
    std::iter::from_fn(|| h.poll_action()).collect()
}

/// A node with peer 1 as an accepted neighbour.
fn with_neighbour() -> Hood {
    let mut h = Hood::new(0, Config::default(), 1, 0);
    h.discovered(0, 1);
    assert_eq!(drain(&mut h), [Action::Probe(1)]);
    h.rtt(1, 1, 3.0);
    assert_eq!(drain(&mut h), [Action::Send(1, Message::Subscribe)]);
    h.message(2, 1, Message::Accepted);
    assert!(h.is_neighbour(1));
    h
}

#[test]
fn adverts_are_kept_from_neighbours_only_and_only_when_newer() {
    let mut h = with_neighbour();
    assert_eq!(h.advert(3, 2, 1, 7), AdvertVerdict::NotNeighbour);
    // A node's sequence numbers start at its boot time, so a restarted peer's first
    // advert is newer than anything it sent before.
    let before_restart = kith_protocol::capacity::first_seq(1_000) + 50;
    let after_restart = kith_protocol::capacity::first_seq(2_000);
    assert_eq!(h.advert(3, 1, before_restart, 7), AdvertVerdict::Accepted);
    assert_eq!(h.advert(4, 1, before_restart, 8), AdvertVerdict::Older);
    assert_eq!(h.advert(5, 1, after_restart, 9), AdvertVerdict::Accepted);
    let n = &h.neighbours()[0];
    assert_eq!(n.advert(), Some((&9, 5)));
}

#[test]
fn subscribers_are_capped_and_refused_beyond_it() {
    let config = Config::default();
    let mut h = Hood::new(0, config, 1, 0);
    for p in 1..=(config.max_subscribers as u32 + 10) {
        h.message(1, p, Message::Subscribe);
    }
    let actions = drain(&mut h);
    let refused = actions
        .iter()
        .filter(|a| matches!(a, Action::Send(_, Message::Refused)))
        .count();
    let accepted = actions
        .iter()
        .filter(|a| matches!(a, Action::Send(_, Message::Accepted)))
        .count();
    assert_eq!((accepted, refused), (config.max_subscribers, 10));
    assert_eq!(h.subscribers().count(), config.max_subscribers);
    assert_eq!(h.stats().refused, 10);
    // Leases lapse unless renewed.
    h.handle_timeout(config.lease_ms + 2);
    assert_eq!(h.subscribers().count(), 0);
}

#[test]
fn candidates_and_peer_lists_are_capped() {
    let config = Config::default();
    let mut h = Hood::new(0, config, 1, 0);
    for p in 1..10_000 {
        h.discovered(p, p as u32);
    }
    assert!(h.candidates() <= config.max_candidates);
    assert!(h.stats().evicted_candidates > 9_000);
    let mut h = Hood::new(0, config, 1, 0);
    h.message(
        1,
        5,
        Message::Peers((100..2_100).map(|p| (p, None)).collect()),
    );
    assert_eq!(h.candidates(), config.share);
    assert!(h.heap_bytes() < 64 * 1024, "{}", h.heap_bytes());
}

/// The adverts among `actions`, as their `full` flags.
fn adverts(actions: &[Action<u32>]) -> Vec<bool> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(9, Message::Advert { full }) => Some(*full),
            _ => None,
        })
        .collect()
}

#[test]
fn load_changes_are_coalesced_and_heartbeats_keep_going() {
    let config = Config::default();
    let mut h = Hood::new(0, config, 1, 0);
    h.message(0, 9, Message::Subscribe);
    // A new subscriber gets the whole advert at once.
    assert_eq!(adverts(&drain(&mut h)), [true]);
    // Heartbeats: one every interval, changed or not.
    let mut now = 0;
    let mut sent_at = Vec::new();
    while now < 10 * config.heartbeat_ms {
        now += 100;
        h.handle_timeout(now);
        if !adverts(&drain(&mut h)).is_empty() {
            sent_at.push(now);
        }
    }
    assert!((9..=11).contains(&sent_at.len()), "{sent_at:?}");
    assert!(
        sent_at
            .windows(2)
            .all(|w| w[1] - w[0] <= config.heartbeat_ms + 100)
    );
    // Ten changes within half a second: one send at once, one more when min_delta
    // has passed.
    let t0 = sent_at.last().copied().unwrap_or(0) + config.min_delta_ms;
    let mut sent = Vec::new();
    for i in 0..10 {
        h.changed(t0 + i * 50, false);
        sent.extend(adverts(&drain(&mut h)));
    }
    assert_eq!(sent, [false]);
    h.handle_timeout(t0 + config.min_delta_ms - 1);
    assert!(adverts(&drain(&mut h)).is_empty());
    h.handle_timeout(t0 + config.min_delta_ms);
    assert_eq!(adverts(&drain(&mut h)), [false]);
    // A change to more than the load goes out in full.
    h.changed(t0 + 2 * config.min_delta_ms, true);
    assert_eq!(adverts(&drain(&mut h)), [true]);
}

#[test]
fn a_silent_neighbour_is_dropped() {
    let mut h = with_neighbour();
    h.advert(3, 1, 1, 0);
    let expire = h.config().expire_ms;
    // Renewals keep the lease, but silence ends the link (checked on each tick).
    h.handle_timeout(3 + expire - 1);
    assert!(h.is_neighbour(1));
    h.handle_timeout(3 + expire - 1 + h.config().tick_ms);
    assert!(!h.is_neighbour(1));
    assert!(
        drain(&mut h).contains(&Action::Send(1, Message::Unsubscribe)),
        "a dropped neighbour is told"
    );
    assert_eq!(h.stats().expired, 1);
}

#[test]
fn a_refusing_candidate_is_not_asked_again_soon() {
    let mut h = Hood::new(0, Config::default(), 1, 0);
    h.discovered(0, 1);
    h.rtt(1, 1, 2.0);
    drain(&mut h);
    h.message(2, 1, Message::Refused);
    assert!(
        !drain(&mut h).contains(&Action::Send(1, Message::Subscribe)),
        "asked again at once"
    );
    let later = 2 + Config::default().refused_backoff_ms;
    h.handle_timeout(later);
    assert!(drain(&mut h).contains(&Action::Send(1, Message::Subscribe)));
}

/// A config with room for two neighbours by RTT and nothing else.
fn two_near() -> Config {
    Config {
        near: 2,
        compute: 0,
        rings: 1,
        per_ring: 0,
        random: 0,
        ..Config::default()
    }
}

/// A node with peers 1 and 2, at these RTTs, as accepted neighbours.
fn with_two(config: Config, rtts: [f64; 2]) -> Hood {
    let mut h = Hood::new(0, config, 1, 0);
    for (p, rtt) in [1, 2].into_iter().zip(rtts) {
        h.discovered(0, p);
        h.rtt(1, p, rtt);
    }
    let subscribed = drain(&mut h)
        .into_iter()
        .filter(|a| matches!(a, Action::Send(_, Message::Subscribe)))
        .count();
    assert_eq!(subscribed, 2);
    h.message(2, 1, Message::Accepted);
    h.message(2, 2, Message::Accepted);
    drain(&mut h);
    h
}

#[test]
fn rtts_within_measurement_noise_do_not_churn_links() {
    let mut h = with_two(two_near(), [0.7, 0.8]);
    // Nearer by more than 10% but not by a millisecond: no swap.
    h.discovered(3, 3);
    h.rtt(3, 3, 0.2);
    h.handle_timeout(10_000);
    let to_3 = drain(&mut h)
        .into_iter()
        .any(|a| matches!(a, Action::Send(3, Message::Subscribe)));
    assert!(!to_3, "a wobble of half a millisecond swapped a link");
    // Far neighbours: a candidate clearly nearer still wins.
    let mut h = with_two(two_near(), [40.0, 50.0]);
    h.discovered(3, 3);
    h.rtt(3, 3, 20.0);
    let to_3 = drain(&mut h)
        .into_iter()
        .any(|a| matches!(a, Action::Send(3, Message::Subscribe)));
    assert!(to_3, "a candidate at half the RTT was not taken");
}

#[test]
fn a_subscriber_is_preferred_among_equally_near_candidates() {
    let mut h = Hood::new(0, two_near(), 1, 0);
    // Peer 9 subscribes to us first; then three candidates as near as it.
    h.message(0, 9, Message::Subscribe);
    drain(&mut h);
    for (p, rtt) in [(1, 0.5), (2, 0.6), (9, 0.9)] {
        h.discovered(1, p);
        h.rtt(2, p, rtt);
    }
    let mut asked: Vec<u32> = drain(&mut h)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send(p, Message::Subscribe) => Some(p),
            _ => None,
        })
        .collect();
    asked.sort_unstable();
    // Subscriptions go out as measurements arrive; of the two kept, one is 9.
    h.message(3, 9, Message::Accepted);
    for p in &asked {
        h.message(3, *p, Message::Accepted);
    }
    h.handle_timeout(10_000);
    drain(&mut h);
    assert!(h.is_neighbour(9), "asked {asked:?}");
    assert_eq!(h.neighbours().len(), 2);
}

#[test]
fn warm_links_have_slots_of_their_own_and_go_when_unused() {
    let config = Config {
        warm: 2,
        warm_idle_ms: 10_000,
        ..two_near()
    };
    let mut h = with_two(config, [5.0, 6.0]);
    // A far peer with the function warm: probed, then subscribed, kept beside the
    // two chosen by RTT.
    h.link_warm(3, 50);
    assert_eq!(drain(&mut h), [Action::Probe(50)]);
    h.rtt(4, 50, 80.0);
    assert_eq!(drain(&mut h), [Action::Send(50, Message::Subscribe)]);
    h.message(5, 50, Message::Accepted);
    assert!(h.is_neighbour(50) && h.is_neighbour(1) && h.is_neighbour(2));
    // Two more: the least recently used warm link makes room.
    h.link_warm(6, 51);
    h.rtt(6, 51, 70.0);
    h.message(7, 51, Message::Accepted);
    h.used(8, 50);
    h.link_warm(9, 52);
    h.rtt(9, 52, 60.0);
    let actions = drain(&mut h);
    assert!(
        actions.contains(&Action::Send(51, Message::Unsubscribe)),
        "{actions:?}"
    );
    h.message(10, 52, Message::Accepted);
    assert!(h.is_neighbour(50) && h.is_neighbour(52) && !h.is_neighbour(51));
    assert_eq!(h.neighbours().len(), config.max_neighbours());
    // Not chosen for warm_idle_ms: dropped; the RTT links stay.
    h.used(11, 52);
    h.handle_timeout(11 + config.warm_idle_ms);
    assert!(!h.is_neighbour(50) && !h.is_neighbour(52));
    assert!(h.is_neighbour(1) && h.is_neighbour(2));
}

/// Answers a lone machine's probes with RTT = the peer's number in ms and accepts its
/// subscriptions; returns its neighbours once it is quiet.
fn settle(h: &mut Hood, now: u64) -> Vec<u32> {
    while let Some(a) = h.poll_action() {
        match a {
            Action::Probe(q) => h.rtt(now, q, f64::from(q)),
            Action::Send(q, Message::Subscribe) => h.message(now, q, Message::Accepted),
            _ => {}
        }
    }
    let mut peers: Vec<u32> = h.neighbours().iter().map(|n| n.peer).collect();
    peers.sort_unstable();
    peers
}

#[test]
fn compute_links_go_to_the_nearest_strong_peers_beyond_the_nearest() {
    use kith_protocol::neighbourhood::Capacity;
    let config = Config {
        near: 2,
        compute: 1,
        rings: 1,
        per_ring: 0,
        random: 0,
        warm: 0,
        ..Config::default()
    };
    let mut h: Hood = Neighbourhood::new(0, config, 1, 0);
    let router = Capacity {
        cpu_score: 300_000,
        memory_bytes: 32 << 20,
    };
    let pi = Capacity {
        cpu_score: 1_200_000,
        memory_bytes: 256 << 20,
    };
    let laptop = Capacity {
        cpu_score: 4_000_000,
        memory_bytes: 512 << 20,
    };
    // Peer 9 names six peers and what their adverts told it. By RTT alone the three
    // nearest (1, 2, 3) would be chosen; the compute slot goes to the peer with the
    // least RTT plus the reference call's run time: the laptop at 6 ms (6 + 10 ms)
    // beats the Pi at 3 ms (3 + 33 ms); the routers (too little memory for the
    // reference call) and the peer nobody described (7) never count.
    h.message(
        0,
        9,
        Message::Peers(vec![
            (1, Some(router)),
            (2, Some(router)),
            (3, Some(pi)),
            (5, Some(router)),
            (6, Some(laptop)),
            (7, None),
        ]),
    );
    assert_eq!(settle(&mut h, 0), vec![1, 2, 6]);
    // Without the hearsay only the nearest are chosen (the compute slot stays empty
    // until a capacity is known).
    let mut plain: Hood = Neighbourhood::new(0, config, 1, 0);
    plain.message(
        0,
        9,
        Message::Peers([1, 2, 3, 5, 6, 7].iter().map(|&p| (p, None)).collect()),
    );
    assert_eq!(settle(&mut plain, 0), vec![1, 2]);
}
