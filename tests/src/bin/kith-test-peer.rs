//! A misbehaving libp2p peer for kith's failure tests: a real peer on real sockets that
//! speaks kith's protocols but lies or floods.
//!
//! ```text
//! kith-test-peer lie   TARGET ID        provide ID on Kademlia, advertise it as cached
//!                                       (with every slot taken, so calls never go
//!                                       here), and answer every fetch of it with bytes
//!                                       that do not match; runs until killed
//! kith-test-peer flood TARGET ID COUNT [INPUT [stay]]
//!                                       send COUNT invoke requests for ID at once (input
//!                                       INPUT, default "flood"), print {"ok": n,
//!                                       "rate_limited": n, "busy": n, "other": n}, exit
//!                                       (with `stay`: stay connected until killed)
//! kith-test-peer forge TARGET RECORD    RECORD is an alias record in hex: announce it on
//!                                       the alias topic once the node subscribes, and
//!                                       answer the node's alias sync with it; runs until
//!                                       killed
//! kith-test-peer invoke TARGET ID HOPS send one invoke request for ID claiming hop
//!                                       count HOPS; print the answer (`ok` or the error's
//!                                       code), exit
//! kith-test-peer liar  TARGET ID ANSWER advertise a huge, idle peer with ID warm every
//!                                       500 ms (to the node once it subscribes, over
//!                                       `/kith/hood/1`), and answer every invoke with ANSWER:
//!                                       `fuel` (output "lie", fuel_used u64::MAX),
//!                                       `kind` (an error with a made-up kind code),
//!                                       `drop` (never answers), `delay:MS` (output
//!                                       "lie" after MS ms), `trap` (a `trap` error
//!                                       at once), `wrong` (output "lie" with a
//!                                       receipt that checks out: signed by this
//!                                       peer, for this call, this input and "lie"),
//!                                       `forged` (output "lie", the receipt signed
//!                                       by another key) or `replay` (output "lie", a
//!                                       receipt signed by this peer for another call
//!                                       id); every answer with output carries a
//!                                       receipt signed by this peer unless said;
//!                                       runs until killed
//! kith-test-peer warm  TARGET ID OTHER  be the node's neighbour (an advert with every
//!                                       slot taken and ID not warm) and answer its
//!                                       `FindWarm` for ID naming OTHER: a kith node's
//!                                       multiaddr (its own signed advert, got by
//!                                       subscribing to it; ready once that advert has
//!                                       ID warm), or `forged` (a made-up peer whose
//!                                       advert this peer signed); prints `asked` for
//!                                       each question; runs until killed
//! kith-test-peer state TARGET DOC ATTACK
//!                                       sync DOC from the node, then send it changes it
//!                                       must refuse (see `kith_tests::state_attack`);
//!                                       runs until killed
//! ```
//!
//! TARGET is the node's multiaddr ending in `/p2p/<peer id>`. It prints `ready <peer id>`
//! once it is connected (and, for `lie`, once the node holds its provider record).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use kith_node::net::Frames;
use kith_protocol::FunctionId;
use kith_protocol::alias;
use kith_protocol::neighbourhood::wire::{self as hood_wire, Frame, PeerRecord, WarmRecord};
use kith_protocol::wire::{self, FetchRequest, FetchResponse, InvokeRequest, InvokeResponse};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, StreamProtocol, gossipsub, identify, kad, noise, ping, tcp, yamux};

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    fetch: request_response::Behaviour<Frames>,
    invoke: request_response::Behaviour<Frames>,
    aliases: request_response::Behaviour<Frames>,
    hood: request_response::Behaviour<Frames>,
    gossipsub: gossipsub::Behaviour,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, target, id) = (&args[1], &args[2], &args[3]);
    let target: Multiaddr = target.parse().expect("target multiaddr");
    let target_peer = target
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .expect("target ends in /p2p/<peer id>");
    if mode == "state" {
        kith_tests::state_attack::run(target, target_peer, id, &args[4]).await;
        return;
    }
    let forged: Vec<u8> = if mode == "forge" {
        hex::decode(id).expect("record hex")
    } else {
        Vec::new()
    };
    let id: FunctionId = if mode == "forge" {
        FunctionId::of(b"unused")
    } else {
        id.parse().expect("function id")
    };
    let frames = Frames {
        max_request: 64 << 20,
        max_response: 64 << 20,
    };
    let swarm_key = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(swarm_key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mut kad = kad::Behaviour::with_config(
                peer,
                kad::store::MemoryStore::new(peer),
                kad::Config::new(StreamProtocol::new("/kith/kad/1")),
            );
            // `warm`: the node must learn of OTHER from the warm answer alone, so this
            // peer answers no DHT queries (OTHER would learn of the node, and the node
            // of OTHER, through them).
            kad.set_mode(Some(if mode == "warm" {
                kad::Mode::Client
            } else {
                kad::Mode::Server
            }));
            let rr =
                request_response::Config::default().with_request_timeout(Duration::from_secs(60));
            Behaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    "/kith-test-peer/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(Duration::from_millis(500)),
                ),
                kad,
                fetch: request_response::Behaviour::with_codec(
                    frames,
                    [(
                        StreamProtocol::new(wire::FETCH_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    rr.clone(),
                ),
                invoke: request_response::Behaviour::with_codec(
                    frames,
                    [(
                        StreamProtocol::new(wire::INVOKE_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    rr.clone(),
                ),
                aliases: request_response::Behaviour::with_codec(
                    frames,
                    [(
                        StreamProtocol::new(alias::SYNC_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    rr.clone(),
                ),
                hood: request_response::Behaviour::with_codec(
                    frames,
                    [(
                        StreamProtocol::new(hood_wire::PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    rr,
                ),
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossipsub::ConfigBuilder::default()
                        .heartbeat_interval(Duration::from_millis(500))
                        .validation_mode(gossipsub::ValidationMode::Strict)
                        .build()
                        .unwrap(),
                )
                .unwrap(),
            }
        })
        .unwrap()
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    swarm
        .behaviour_mut()
        .kad
        .add_address(&target_peer, target.clone());
    swarm.dial(target.clone()).expect("dial");
    let alias_topic = gossipsub::IdentTopic::new(alias::TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&alias_topic)
        .unwrap();
    // Whether the node subscribed to our adverts; whether `ready` was printed.
    let mut subscribed = false;
    let mut ready_said = false;
    let liar_key = swarm_key.clone();
    let mut advert_seq = 0u64;
    let mut advert_tick = tokio::time::interval(Duration::from_millis(500));
    // Invoke answers held back (`liar ... delay:MS`), and requests never answered
    // (`liar ... drop`: the channels are kept so the streams stay open).
    let mut delayed: Vec<(
        tokio::time::Instant,
        request_response::ResponseChannel<Vec<u8>>,
        Vec<u8>,
    )> = Vec::new();
    let mut dropped: Vec<request_response::ResponseChannel<Vec<u8>>> = Vec::new();
    let mut delay_tick = tokio::time::interval(Duration::from_millis(20));

    // `warm`: the peer to name, where, and its latest signed advert and load.
    let other: Option<Multiaddr> =
        (mode == "warm" && args[4] != "forged").then(|| args[4].parse().expect("OTHER multiaddr"));
    let other_peer = other.as_ref().map(|a| {
        a.iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            })
            .expect("OTHER ends in /p2p/<peer id>")
    });
    if let Some(addr) = &other {
        swarm.dial(addr.clone()).expect("dial OTHER");
    }
    let mut other_advert: Option<(Vec<u8>, u16, u16)> = None;
    let mut other_ready = false;

    let flood_count: usize = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    let mut answered = 0usize;
    loop {
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            _ = advert_tick.tick() => {
                if (mode == "liar" || mode == "lie") && subscribed {
                    advert_seq += 1;
                    let advert = liar_advert(&liar_key, id, advert_seq, mode == "lie");
                    swarm
                        .behaviour_mut()
                        .hood
                        .send_request(&target_peer, Frame::Full(advert).encode());
                }
                continue;
            }
            _ = delay_tick.tick() => {
                let now = tokio::time::Instant::now();
                let (due, later): (Vec<_>, Vec<_>) = delayed.drain(..).partition(|(t, _, _)| *t <= now);
                delayed = later;
                for (_, channel, answer) in due {
                    let _ = swarm.behaviour_mut().invoke.send_response(channel, answer);
                }
                continue;
            }
        };
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if Some(peer_id) == other_peer => {
                swarm
                    .behaviour_mut()
                    .hood
                    .send_request(&peer_id, Frame::Subscribe.encode());
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target_peer => {
                if mode == "forge" {
                    // Wait for the node's subscription before announcing.
                } else if mode == "lie" {
                    swarm
                        .behaviour_mut()
                        .kad
                        .start_providing(kad::RecordKey::new(id.as_bytes()))
                        .unwrap();
                } else if mode == "liar" || mode == "warm" {
                    // Ready once the node subscribes to our adverts.
                } else if mode == "invoke" {
                    println!("ready {}", swarm.local_peer_id());
                    let request = InvokeRequest {
                        id,
                        hops: args[4].parse().expect("hops"),
                        call: kith_protocol::receipt::CallId([1; 16]),
                        input: b"x".to_vec(),
                    };
                    swarm
                        .behaviour_mut()
                        .invoke
                        .send_request(&peer_id, request.encode());
                } else {
                    println!("ready {}", swarm.local_peer_id());
                    for _ in 0..flood_count {
                        let request = InvokeRequest {
                            id,
                            hops: 1,
                            call: kith_protocol::receipt::CallId([2; 16]),
                            input: args
                                .get(5)
                                .map_or("flood", String::as_str)
                                .as_bytes()
                                .to_vec(),
                        };
                        swarm
                            .behaviour_mut()
                            .invoke
                            .send_request(&peer_id, request.encode());
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
            })) if mode == "forge" && peer_id == target_peer && topic == alias_topic.hash() => {
                swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(alias_topic.clone(), forged.clone())
                    .expect("publish the forged record");
                println!("ready {}", swarm.local_peer_id());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Hood(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let _ = swarm
                    .behaviour_mut()
                    .hood
                    .send_response(channel, Vec::new());
                let liar = mode == "liar" || mode == "lie";
                let frame = Frame::decode(&request);
                if Some(peer) == other_peer {
                    match frame {
                        Ok(Frame::Full(bytes)) => {
                            let now = kith_protocol::capacity::Advert::decode(&bytes, now_ms());
                            if let Ok(a) = now {
                                other_ready |= a.cached.may_contain(&id);
                                other_advert = Some((bytes, a.running, a.queued));
                            }
                        }
                        Ok(Frame::Load {
                            running, queued, ..
                        }) => {
                            if let Some(held) = other_advert.as_mut() {
                                (held.1, held.2) = (running, queued);
                            }
                        }
                        _ => {}
                    }
                    if other_ready && subscribed && !std::mem::replace(&mut ready_said, true) {
                        println!("ready {}", swarm.local_peer_id());
                    }
                    continue;
                }
                if (liar || mode == "warm") && peer == target_peer && frame == Ok(Frame::Subscribe)
                {
                    let first = !subscribed;
                    subscribed = true;
                    advert_seq += 1;
                    let advert = if mode == "warm" {
                        busy_cold_advert(&liar_key, advert_seq)
                    } else {
                        liar_advert(&liar_key, id, advert_seq, mode == "lie")
                    };
                    let hood = &mut swarm.behaviour_mut().hood;
                    hood.send_request(&peer, Frame::Accepted.encode());
                    hood.send_request(&peer, Frame::Full(advert).encode());
                    let ready =
                        mode == "liar" || (mode == "warm" && (other.is_none() || other_ready));
                    if first && ready && !std::mem::replace(&mut ready_said, true) {
                        println!("ready {}", swarm.local_peer_id());
                    }
                }
                if mode == "warm"
                    && peer == target_peer
                    && let Ok(Frame::FindWarm(f)) = frame
                    && f == *id.as_bytes()
                {
                    println!("asked");
                    let record = match (&other, other_peer, &other_advert) {
                        (Some(addr), Some(o), Some((bytes, running, queued))) => WarmRecord {
                            peer: PeerRecord {
                                id: o.to_bytes(),
                                addrs: vec![without_p2p(addr).to_vec()],
                                capacity: None,
                            },
                            advert: bytes.clone(),
                            running: *running,
                            queued: *queued,
                            rtt_tenths_ms: 10,
                        },
                        // Someone else, with an advert this peer signed.
                        _ => WarmRecord {
                            peer: PeerRecord {
                                id: libp2p::PeerId::random().to_bytes(),
                                addrs: vec![without_p2p(&target).to_vec()],
                                capacity: None,
                            },
                            advert: liar_advert(&liar_key, id, 1, false),
                            running: 0,
                            queued: 0,
                            rtt_tenths_ms: 1,
                        },
                    };
                    swarm
                        .behaviour_mut()
                        .hood
                        .send_request(&peer, Frame::Warm(f, vec![record]).encode());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Invoke(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        channel, request, ..
                    },
                ..
            })) if mode == "liar" => {
                let answer = args[4].as_str();
                let Ok(request) = InvokeRequest::decode(&request) else {
                    continue;
                };
                let lie = |how: Lie| lie_output(&liar_key, &request, &peer, how);
                let bytes = if answer == "fuel" {
                    lie(Lie::Fuel)
                } else if answer == "wrong" {
                    lie(Lie::Signed)
                } else if answer == "forged" {
                    lie(Lie::Forged)
                } else if answer == "replay" {
                    lie(Lie::Replay)
                } else if answer == "drop" {
                    dropped.push(channel);
                    continue;
                } else if let Some(ms) = answer.strip_prefix("delay:") {
                    let ms: u64 = ms.parse().expect("delay:MS");
                    let due = tokio::time::Instant::now() + Duration::from_millis(ms);
                    delayed.push((due, channel, lie(Lie::Signed)));
                    continue;
                } else if answer == "trap" {
                    InvokeResponse::Err {
                        kind: kith_protocol::ErrorKind::Trap,
                        message: "wasm trap: unreachable".to_owned(),
                    }
                    .encode()
                } else {
                    made_up_kind_answer()
                };
                let _ = swarm.behaviour_mut().invoke.send_response(channel, bytes);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Aliases(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                let answer = if mode == "forge" {
                    alias::SyncResponse::Records(vec![forged.clone()])
                } else {
                    alias::SyncResponse::Same
                };
                let _ = swarm
                    .behaviour_mut()
                    .aliases
                    .send_response(channel, answer.encode());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::StartProviding(result),
                ..
            })) => {
                result.expect("provider record stored");
                println!("ready {}", swarm.local_peer_id());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Fetch(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let lie = b"these bytes are not the module you asked for";
                let answer = match FetchRequest::decode(&request) {
                    Ok(r) if r.id == id => FetchResponse::answer(&r, lie),
                    _ => FetchResponse::NotFound,
                };
                let _ = swarm
                    .behaviour_mut()
                    .fetch
                    .send_response(channel, answer.encode());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Invoke(event)) => {
                let answer = match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    } => InvokeResponse::decode(&response).ok(),
                    request_response::Event::OutboundFailure { .. } => None,
                    _ => continue,
                };
                if mode == "invoke" {
                    match answer {
                        Some(InvokeResponse::Ok { .. }) => println!("ok"),
                        Some(InvokeResponse::Err { kind, .. }) => println!("{kind}"),
                        None => println!("no answer"),
                    }
                    return;
                }
                let kind = match answer {
                    Some(InvokeResponse::Ok { .. }) => "ok",
                    Some(InvokeResponse::Err {
                        kind: kith_protocol::ErrorKind::RateLimited,
                        ..
                    }) => "rate_limited",
                    Some(InvokeResponse::Err {
                        kind: kith_protocol::ErrorKind::Busy,
                        ..
                    }) => "busy",
                    _ => "other",
                };
                *counts.entry(kind).or_default() += 1;
                answered += 1;
                if answered == flood_count {
                    println!(
                        "{{\"ok\": {}, \"rate_limited\": {}, \"busy\": {}, \"other\": {}}}",
                        counts.get("ok").copied().unwrap_or(0),
                        counts.get("rate_limited").copied().unwrap_or(0),
                        counts.get("busy").copied().unwrap_or(0),
                        counts.get("other").copied().unwrap_or(0)
                    );
                    if args.get(6).map(String::as_str) != Some("stay") {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

/// How a made-up answer's receipt lies.
#[derive(Clone, Copy, PartialEq)]
enum Lie {
    /// Signed by this peer, for this call: only the output is a lie.
    Signed,
    /// And it claims more fuel than any call may use.
    Fuel,
    /// Signed by another key than the one it names.
    Forged,
    /// Signed by this peer, but for another call id.
    Replay,
}

/// A made-up answer to `request` from `entry`: output "lie", as if a tiny call had
/// run, with a receipt lying as `how` says.
fn lie_output(
    key: &libp2p::identity::Keypair,
    request: &InvokeRequest,
    entry: &libp2p::PeerId,
    how: Lie,
) -> Vec<u8> {
    use kith_protocol::receipt::{CallId, Receipt, digest};
    let secret = key.clone().try_into_ed25519().unwrap().secret();
    let signing = ed25519_dalek::SigningKey::from_bytes(secret.as_ref().try_into().unwrap());
    let entry_key = kith_node::receipts::ed25519_of(entry).expect("an ed25519 entry");
    let output = b"lie".to_vec();
    let receipt = Receipt {
        function: request.id,
        input: digest(&request.input),
        output: digest(&output),
        fuel_used: if how == Lie::Fuel { u64::MAX } else { 1 },
        wall_us: 1,
        executor: signing.verifying_key().to_bytes(),
        entry: entry_key,
        call: if how == Lie::Replay {
            CallId([0xee; 16])
        } else {
            request.call
        },
    };
    let receipt = if how == Lie::Forged {
        let mut forged = receipt.sign(&ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]));
        forged.receipt.executor = signing.verifying_key().to_bytes();
        forged
    } else {
        receipt.sign(&signing)
    };
    InvokeResponse::Ok {
        receipt: Box::new(receipt),
        output,
    }
    .encode()
}

/// An invoke error answer whose kind code no kith version knows, as raw bytes (the
/// encoder only writes known codes): version, status 1, code length, code, message.
fn made_up_kind_answer() -> Vec<u8> {
    let code = b"x-made-up-kind-chosen-by-a-peer";
    let mut b = vec![wire::VERSION, 1, code.len() as u8];
    b.extend_from_slice(code);
    b.extend_from_slice(b"a made-up kind");
    b
}

/// A signed advert of a peer far larger than any real device, with `id` warm: idle, or
/// with every slot and queue place taken when `full`.
fn liar_advert(key: &libp2p::identity::Keypair, id: FunctionId, seq: u64, full: bool) -> Vec<u8> {
    use kith_protocol::capacity::{Advert, Cached, DeviceClass, backend};
    let mut cached = Cached::default();
    cached.insert(&id);
    let advert = Advert {
        peer: key.public().try_into_ed25519().unwrap().to_bytes(),
        seq,
        issued_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        device: DeviceClass::Server,
        cores: 64,
        cpu_score: 100_000_000,
        memory_bytes: 1 << 40,
        max_concurrent: 1000,
        max_queued: 1000,
        running: if full { 1000 } else { 0 },
        queued: if full { 1000 } else { 0 },
        backends: backend::CRANELIFT,
        coord: Default::default(),
        cached,
    };
    advert.encode(|m| key.sign(m).unwrap().try_into().unwrap())
}

/// A signed advert of a modest peer with every slot and queue place taken and nothing
/// cached: a neighbour placement never chooses, and that has nothing warm.
fn busy_cold_advert(key: &libp2p::identity::Keypair, seq: u64) -> Vec<u8> {
    use kith_protocol::capacity::{Advert, Cached, DeviceClass, backend};
    let advert = Advert {
        peer: key.public().try_into_ed25519().unwrap().to_bytes(),
        seq,
        issued_ms: now_ms(),
        device: DeviceClass::Pi,
        cores: 1,
        cpu_score: 1_000_000,
        memory_bytes: 64 << 20,
        max_concurrent: 1,
        max_queued: 1,
        running: 1,
        queued: 1,
        backends: backend::CRANELIFT,
        coord: Default::default(),
        cached: Cached::default(),
    };
    advert.encode(|m| key.sign(m).unwrap().try_into().unwrap())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `addr` without its trailing `/p2p/<id>`, as raw bytes (what a peer record carries).
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}
