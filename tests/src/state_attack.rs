//! `kith-test-peer state`: a real libp2p peer that syncs a document from a node over
//! `/kith/sync/1`, then sends it changes it has no right to make:
//!
//! ```text
//! ATTACK                 the change(s) sent
//! unsigned               by the peer's own key, without a signature
//! forged                 by the peer's own key, with a signature over other bytes
//! stranger               by the peer's own key, signed (a key never granted)
//! impersonate:PUB        claiming actor PUB (another writer's key), signed by the peer
//! revoked:SECRET         by key SECRET (granted once, since revoked), signed
//! orphans:SECRET:N       N changes by key SECRET (granted), each missing its parent
//! ```
//!
//! It prints one JSON line per answer: `{"answer": "refused", "kind": ..., "message": ...}`
//! or `{"answer": "message"}` / `{"answer": "done"}` / `{"answer": "not_hosted"}`, then
//! `sent` and stays connected until killed.

use std::time::Duration;

use automerge::sync::{self, ChunkList, MessageVersion, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT};
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use kith_node::net::Frames;
use kith_protocol::state::writes::{SignedSync, sign_change};
use kith_protocol::state::{self, DocName, SyncRequest, SyncResponse};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, noise, ping, tcp, yamux};

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    sync: request_response::Behaviour<Frames>,
}

fn secret(hex_text: &str) -> SigningKey {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut b).expect("a 64-hex secret key");
    SigningKey::from_bytes(&b)
}

/// The changes to send, with their signatures (`None`: unsigned).
fn craft(doc: &DocName, base: &AutoCommit, attack: &str) -> Vec<(Vec<u8>, Option<[u8; 64]>)> {
    let own = SigningKey::from_bytes(&rand_secret());
    let mut work = base.clone();
    let before = work.get_heads();
    let one = |actor: Vec<u8>, work: &mut AutoCommit, value: &str| {
        work.set_actor(ActorId::from(actor));
        work.put(ROOT, "attack", value).expect("put");
        work.commit();
    };
    let mut parts = attack.splitn(3, ':');
    let kind = parts.next().unwrap_or_default();
    let signer: SigningKey;
    let mut skip = 0;
    match kind {
        "unsigned" | "forged" | "stranger" => {
            signer = own.clone();
            one(own.verifying_key().to_bytes().to_vec(), &mut work, kind);
        }
        "impersonate" => {
            signer = own.clone();
            let victim = hex::decode(parts.next().expect("impersonate:PUB")).expect("hex PUB");
            one(victim, &mut work, kind);
        }
        "revoked" => {
            signer = secret(parts.next().expect("revoked:SECRET"));
            one(signer.verifying_key().to_bytes().to_vec(), &mut work, kind);
        }
        "orphans" => {
            signer = secret(parts.next().expect("orphans:SECRET:N"));
            let n: usize = parts.next().expect("N").parse().expect("N a number");
            for i in 0..=n {
                one(
                    signer.verifying_key().to_bytes().to_vec(),
                    &mut work,
                    &format!("orphan {i}"),
                );
            }
            // The first is withheld: every other change misses its parent.
            skip = 1;
        }
        other => panic!("unknown attack {other}"),
    }
    let changes = work.get_changes(&before);
    changes
        .into_iter()
        .skip(skip)
        .map(|c| {
            let hash = c.hash().0;
            let sig = match kind {
                "unsigned" => None,
                "forged" => Some(sign_change(&signer, doc, &[0xab; 32])),
                _ => Some(sign_change(&signer, doc, &hash)),
            };
            (c.raw_bytes().to_vec(), sig)
        })
        .collect()
}

fn rand_secret() -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes(),
    );
    *h.finalize().as_bytes()
}

fn say(answer: &SyncResponse) {
    let line = match answer {
        SyncResponse::Refused { kind, message } => {
            serde_json::json!({"answer": "refused", "kind": kind.code(), "message": message})
        }
        SyncResponse::Message(_) => serde_json::json!({"answer": "message"}),
        SyncResponse::Done => serde_json::json!({"answer": "done"}),
        SyncResponse::NotHosted => serde_json::json!({"answer": "not_hosted"}),
    };
    println!("{line}");
}

/// Runs the attack against `target` (`/p2p/` multiaddr) on document `doc`.
///
/// # Panics
/// On bad arguments or when the node cannot be reached (a test tool).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]
pub async fn run(target: Multiaddr, target_peer: PeerId, doc: &str, attack: &str) {
    let doc: DocName = doc.parse().expect("DOC is NAMESPACE/NAME");
    let frames = Frames {
        max_request: state::MAX_ENCODED as u64,
        max_response: state::MAX_ENCODED as u64,
    };
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| Behaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                "/kith-test-peer/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new()),
            sync: request_response::Behaviour::with_codec(
                frames,
                [(
                    StreamProtocol::new(state::SYNC_PROTOCOL),
                    ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
        })
        .unwrap()
        .build();
    swarm.dial(target).expect("dial");
    let mut mine = AutoCommit::new();
    let mut sync_state = sync::State::new();
    let mut rounds = 0;
    let mut sent = false;
    let send_ours = |swarm: &mut libp2p::Swarm<Behaviour>,
                     mine: &mut AutoCommit,
                     sync_state: &mut sync::State| {
        let heads = mine.get_heads();
        let message = mine
            .sync()
            .generate_sync_message(sync_state)
            .unwrap_or_else(|| sync::Message {
                heads,
                need: Vec::new(),
                have: Vec::new(),
                changes: ChunkList::from(Vec::<Vec<u8>>::new()),
                flags: None,
                version: MessageVersion::V1,
            });
        let request = SyncRequest {
            doc: doc.clone(),
            message: SignedSync {
                signatures: Vec::new(),
                message: message.encode(),
            }
            .encode(),
        };
        swarm
            .behaviour_mut()
            .sync
            .send_request(&target_peer, request.encode());
    };
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target_peer => {
                println!("ready {}", swarm.local_peer_id());
                send_ours(&mut swarm, &mut mine, &mut sync_state);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                // The node's own syncs with us: we hold nothing for it.
                let _ = swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, SyncResponse::NotHosted.encode());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => {
                let answer = SyncResponse::decode(&response).expect("a sync response");
                if sent {
                    say(&answer);
                    continue;
                }
                rounds += 1;
                let more = match &answer {
                    SyncResponse::Message(bytes) => {
                        let signed = SignedSync::decode(bytes).expect("signed sync");
                        let m = sync::Message::decode(&signed.message).expect("sync message");
                        let mut m = m;
                        m.flags = None;
                        mine.sync()
                            .receive_sync_message(&mut sync_state, m)
                            .expect("apply the node's changes");
                        rounds < 8
                    }
                    _ => false,
                };
                if more {
                    send_ours(&mut swarm, &mut mine, &mut sync_state);
                    continue;
                }
                // In step with the node: now the attack.
                let changes = craft(&doc, &mine, attack);
                let mut heads_doc = mine.clone();
                for (bytes, _) in &changes {
                    let _ = heads_doc.load_incremental(bytes);
                }
                let message = sync::Message {
                    heads: heads_doc.get_heads(),
                    need: Vec::new(),
                    have: Vec::new(),
                    changes: ChunkList::from(
                        changes.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(),
                    ),
                    flags: None,
                    version: MessageVersion::V1,
                };
                let signatures = changes
                    .iter()
                    .filter_map(|(b, sig)| {
                        let c = automerge::Change::from_bytes(b.clone()).ok()?;
                        sig.map(|s| (c.hash().0, s))
                    })
                    .collect();
                let request = SyncRequest {
                    doc: doc.clone(),
                    message: SignedSync {
                        signatures,
                        message: message.encode(),
                    }
                    .encode(),
                };
                swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&target_peer, request.encode());
                sent = true;
                println!("sent {}", changes.len());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure { error, .. },
            )) => {
                println!(
                    "{}",
                    serde_json::json!({"answer": "failed", "message": error.to_string()})
                );
            }
            _ => {}
        }
    }
}
