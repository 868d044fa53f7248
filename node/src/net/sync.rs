//! `/kith/sync/1`: Automerge document sync requests from peers (answered by the node)
//! and the answers to ours.

use super::*;

impl Task {
    pub(super) fn state_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match self.traffic(Proto::Sync, event) {
            Some(Traffic::Request {
                peer,
                body,
                channel,
            }) => self.take_request(
                peer,
                &body,
                AnswerChannel::State(channel),
                state::SyncRequest::decode,
                |peer, request, respond| {
                    Inbound::State(StateInbound::Sync {
                        peer,
                        request,
                        respond,
                    })
                },
                Some(|message| state::SyncResponse::Refused {
                    kind: ErrorKind::BadRequest,
                    message,
                }),
                state::SyncResponse::encode,
            ),
            Some(Traffic::Answer { id, body, .. }) => {
                if let Some((peer, reply)) = self.state_requests.remove(&id) {
                    let decoded = state::SyncResponse::decode(&body).map_err(|e| {
                        self.penalise(peer);
                        format!("malformed answer from {peer}: {e}")
                    });
                    let _ = reply.send(decoded);
                    self.drop_relayed(peer);
                }
            }
            Some(Traffic::Failed { id, error, .. }) => {
                if let Some((peer, reply)) = self.state_requests.remove(&id) {
                    let _ = reply.send(Err(format!("{peer}: {error}")));
                }
            }
            None => {}
        }
    }
}
