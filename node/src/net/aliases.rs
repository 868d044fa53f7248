//! `/kith/aliases/1`: alias registry sync requests from peers and the answers to ours.

use super::*;

impl Task {
    pub(super) fn aliases_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let Ok(request) = alias::SyncRequest::decode(&request) else {
                        self.penalise(peer);
                        return;
                    };
                    let (respond, rx) = oneshot::channel();
                    let request = Inbound::Alias(AliasInbound::Sync {
                        peer,
                        request,
                        respond,
                    });
                    self.ask_node(
                        peer,
                        request,
                        rx,
                        AnswerChannel::Aliases(channel),
                        alias::SyncResponse::encode,
                    );
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.alias_requests.remove(&request_id);
                    match alias::SyncResponse::decode(&response) {
                        Ok(alias::SyncResponse::Same) => {}
                        Ok(alias::SyncResponse::Records(records)) => {
                            let _ = self
                                .inbound
                                .try_send(Inbound::Alias(AliasInbound::Records { peer, records }));
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "malformed alias sync response");
                            self.penalise(peer);
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.alias_requests.remove(&request_id);
                tracing::debug!(%peer, error = %error, "alias sync request failed");
            }
            _ => {}
        }
    }
}
