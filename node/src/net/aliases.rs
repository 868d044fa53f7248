//! `/kith/aliases/1`: alias registry sync requests from peers and the answers to ours.

use super::*;

impl Task {
    pub(super) fn aliases_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match self.traffic(Proto::AliasSync, event) {
            Some(Traffic::Request {
                peer,
                body,
                channel,
            }) => self.take_request(
                peer,
                &body,
                AnswerChannel::Aliases(channel),
                alias::SyncRequest::decode,
                |peer, request, respond| {
                    Inbound::Alias(AliasInbound::Sync {
                        peer,
                        request,
                        respond,
                    })
                },
                None,
                alias::SyncResponse::encode,
            ),
            Some(Traffic::Answer { peer, id, body }) => {
                self.alias_requests.remove(&id);
                match alias::SyncResponse::decode(&body) {
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
            Some(Traffic::Failed { peer, id, error }) => {
                self.alias_requests.remove(&id);
                tracing::debug!(%peer, %error, "alias sync request failed");
            }
            None => {}
        }
    }
}
