//! What the rest of the node asks of the network task, and how the task carries it
//! out.

use super::*;

/// What the rest of the node asks of the network task.
pub(super) enum Command {
    Fetch {
        id: FunctionId,
        /// A peer known to hold it, asked first.
        prefer: Option<PeerId>,
        reply: oneshot::Sender<Result<Vec<u8>, FetchError>>,
    },
    Provide(FunctionId),
    Invoke {
        peer: PeerId,
        request: InvokeRequest,
        reply: oneshot::Sender<Result<InvokeResponse, InvokeFailure>>,
    },
    Advertise(Box<Advert>),
    Penalise(PeerId),
    PublishAlias(Vec<u8>),
    StateSync {
        peer: PeerId,
        request: state::SyncRequest,
        reply: oneshot::Sender<Result<state::SyncResponse, String>>,
    },
    SyncAliases {
        peer: PeerId,
        digest: [u8; 32],
    },
    FindWarm {
        id: FunctionId,
        reply: oneshot::Sender<Vec<super::WarmCandidate>>,
    },
}

impl Task {
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Fetch { id, prefer, reply } => self.start_fetch(id, prefer, reply),
            Command::Provide(id) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(provider_key(&id))
                {
                    tracing::warn!(function = %id, error = ?e, "cannot announce as provider");
                }
            }
            Command::Invoke {
                peer,
                request,
                reply,
            } => {
                // A peer a warm answer named may not be connected yet: dial it where
                // the answer said it is (the request waits for the connection).
                if !self.swarm.is_connected(&peer)
                    && let Some((addrs, _)) = self.hood.addrs.get(&peer)
                {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addrs.clone())
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, error = %e, "cannot dial a warm candidate");
                    }
                }
                let id = self.send_request(Proto::Invoke, &peer, request.encode());
                self.invoke_requests.insert(id, (peer, reply));
            }
            Command::PublishAlias(bytes) => {
                if let Err(e) = self.publish(Proto::AliasRecords, self.alias_topic.clone(), bytes) {
                    tracing::debug!(error = ?e, "alias record not announced (no peers yet?); peers get it at their next sync");
                }
            }
            Command::StateSync {
                peer,
                request,
                reply,
            } => {
                let id = self.send_request(Proto::Sync, &peer, request.encode());
                self.state_requests.insert(id, (peer, reply));
            }
            Command::SyncAliases { peer, digest } => {
                let request = alias::SyncRequest { digest }.encode();
                let id = self.send_request(Proto::AliasSync, &peer, request);
                self.alias_requests.insert(id, peer);
            }
            Command::Advertise(advert) => self.offer(*advert),
            Command::Penalise(peer) => self.penalise(peer),
            Command::FindWarm { id, reply } => self.find_warm(id, reply),
        }
    }
}
