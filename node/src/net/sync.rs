//! `/kith/sync/1`: Automerge document sync requests from peers (answered by the node)
//! and the answers to ours.

use super::*;

impl Task {
    pub(super) fn state_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let request = match state::SyncRequest::decode(&request) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "malformed state sync request");
                            self.penalise(peer);
                            let refusal = state::SyncResponse::Refused(e.to_string()).encode();
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .state
                                .send_response(channel, refusal);
                            return;
                        }
                    };
                    let (respond, rx) = oneshot::channel();
                    let request = Inbound::State(StateInbound::Sync {
                        peer,
                        request,
                        respond,
                    });
                    self.ask_node(
                        peer,
                        request,
                        rx,
                        AnswerChannel::State(channel),
                        state::SyncResponse::encode,
                    );
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.state_requests.remove(&request_id) {
                        let decoded = state::SyncResponse::decode(&response).map_err(|e| {
                            self.penalise(peer);
                            format!("malformed answer from {peer}: {e}")
                        });
                        let _ = reply.send(decoded);
                        self.drop_relayed(peer);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, reply)) = self.state_requests.remove(&request_id) {
                    let _ = reply.send(Err(format!("{peer}: {error}")));
                }
            }
            _ => {}
        }
    }
}
