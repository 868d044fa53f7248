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

impl Task {
    pub(super) fn answer(&mut self, channel: AnswerChannel, body: Option<Vec<u8>>) {
        let Some(body) = body else { return };
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

    /// Hands a peer's request to the node and queues the node's answer for `channel`.
    /// When the node's inbound queue is full the request is dropped: the peer sees the
    /// stream close, as with any overloaded peer.
    pub(super) fn ask_node<T: Send + 'static>(
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
