//! The shared request/answer path: a peer's request goes to the node over the inbound
//! channel (capped per peer), and the node's answer comes back to its channel.

use super::*;

/// A finished answer: to whom, on which channel, the body (none: the node dropped it).
pub(super) type Answer = (PeerId, AnswerChannel, Option<Vec<u8>>);

/// Where an answer goes.
pub(super) enum AnswerChannel {
    Fetch(ResponseChannel<Vec<u8>>),
    Invoke(ResponseChannel<Vec<u8>>),
    Aliases(ResponseChannel<Vec<u8>>),
    State(ResponseChannel<Vec<u8>>),
}

/// One event of a kith request/response protocol, flattened.
pub(super) enum Traffic {
    /// A peer's request.
    Request {
        /// Who asks.
        peer: PeerId,
        /// The request body.
        body: Vec<u8>,
        /// Where the answer goes.
        channel: ResponseChannel<Vec<u8>>,
    },
    /// A peer's answer to one of our requests.
    Answer {
        /// The peer.
        peer: PeerId,
        /// Our request.
        id: OutboundRequestId,
        /// The answer body.
        body: Vec<u8>,
    },
    /// One of our requests failed (unreachable, timed out, refused the stream).
    Failed {
        /// The peer.
        peer: PeerId,
        /// Our request.
        id: OutboundRequestId,
        /// What happened.
        error: String,
    },
}

impl Traffic {
    /// The traffic in `event`, if any (inbound failures and sent answers are not).
    pub(super) fn of(event: request_response::Event<Vec<u8>, Vec<u8>>) -> Option<Self> {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => Some(Self::Request {
                peer,
                body: request,
                channel,
            }),
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => Some(Self::Answer {
                peer,
                id: request_id,
                body: response,
            }),
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => Some(Self::Failed {
                peer,
                id: request_id,
                error: error.to_string(),
            }),
            _ => None,
        }
    }
}

impl Task {
    /// The traffic in `event` of `proto`, counted in the byte totals.
    pub(super) fn traffic(
        &mut self,
        proto: Proto,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) -> Option<Traffic> {
        let traffic = Traffic::of(event)?;
        if let Traffic::Request { body, .. } | Traffic::Answer { body, .. } = &traffic {
            self.bytes.received(proto, body.len());
        }
        Some(traffic)
    }

    /// Sends `body` as a request to `peer` on `proto`, counted in the byte totals.
    pub(super) fn send_request(
        &mut self,
        proto: Proto,
        peer: &PeerId,
        body: Vec<u8>,
    ) -> OutboundRequestId {
        self.bytes.sent(proto, body.len());
        let b = self.swarm.behaviour_mut();
        match proto {
            Proto::Fetch => b.fetch.send_request(peer, body),
            Proto::Invoke => b.invoke.send_request(peer, body),
            Proto::Sync => b.state.send_request(peer, body),
            Proto::Adverts | Proto::Neighbourhood => b.hood.send_request(peer, body),
            // Gossip protocols have no requests: only alias sync is left.
            Proto::AliasSync | Proto::AliasRecords => b.aliases.send_request(peer, body),
        }
    }

    /// Publishes `bytes` on gossip topic `topic` of `proto`, counted in the byte totals.
    pub(super) fn publish(
        &mut self,
        proto: Proto,
        topic: gossipsub::IdentTopic,
        bytes: Vec<u8>,
    ) -> Result<(), gossipsub::PublishError> {
        self.bytes.sent(proto, bytes.len());
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, bytes)
            .map(|_| ())
    }

    pub(super) fn answer(&mut self, channel: AnswerChannel, body: Option<Vec<u8>>) {
        let Some(body) = body else { return };
        let proto = match &channel {
            AnswerChannel::Fetch(_) => Proto::Fetch,
            AnswerChannel::Invoke(_) => Proto::Invoke,
            AnswerChannel::Aliases(_) => Proto::AliasSync,
            AnswerChannel::State(_) => Proto::Sync,
        };
        self.bytes.sent(proto, body.len());
        let result = match channel {
            AnswerChannel::Fetch(c) => self.swarm.behaviour_mut().fetch.send_response(c, body),
            AnswerChannel::Invoke(c) => self.swarm.behaviour_mut().invoke.send_response(c, body),
            AnswerChannel::Aliases(c) => self.swarm.behaviour_mut().aliases.send_response(c, body),
            AnswerChannel::State(c) => self.swarm.behaviour_mut().state.send_response(c, body),
        };
        if result.is_err() {
            tracing::debug!("a peer went away before its answer was ready");
        }
    }

    /// A peer's request on one of kith's protocols: decoded with `decode` — a malformed
    /// one penalises the peer and, where the protocol has a refusal, is answered with
    /// `refusal(why)` — then handed to the node as `make(peer, request, respond)`, its
    /// answer encoded with `encode` and sent back on `channel`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn take_request<Req, Resp: Send + 'static, E: std::fmt::Display>(
        &mut self,
        peer: PeerId,
        body: &[u8],
        channel: AnswerChannel,
        decode: fn(&[u8]) -> Result<Req, E>,
        make: fn(PeerId, Req, oneshot::Sender<Resp>) -> Inbound,
        refusal: Option<fn(String) -> Resp>,
        encode: fn(&Resp) -> Vec<u8>,
    ) {
        let request = match decode(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed request; penalising the peer");
                self.penalise(peer);
                if let Some(refuse) = refusal {
                    self.answer(channel, Some(encode(&refuse(e.to_string()))));
                }
                return;
            }
        };
        let (respond, rx) = oneshot::channel();
        self.ask_node(peer, make(peer, request, respond), rx, channel, encode);
    }

    /// Hands a peer's request to the node and queues the node's answer for `channel`.
    /// When the node's inbound queue is full the request is dropped: the peer sees the
    /// stream close, as with any overloaded peer.
    fn ask_node<T: Send + 'static>(
        &mut self,
        peer: PeerId,
        request: Inbound,
        answer: oneshot::Receiver<T>,
        channel: AnswerChannel,
        encode: fn(&T) -> Vec<u8>,
    ) {
        if self.serving_full(peer) || self.inbound.try_send(request).is_err() {
            return;
        }
        *self.serving.entry(peer).or_default() += 1;
        self.answers.push(Box::pin(async move {
            (peer, channel, answer.await.ok().map(|r| encode(&r)))
        }));
    }

    /// True when `peer` already has `max_requests_per_peer` requests being answered.
    pub(super) fn serving_full(&self, peer: PeerId) -> bool {
        self.serving.get(&peer).copied().unwrap_or(0) >= self.config.max_requests_per_peer
    }
}
