//! `/kith/invoke/1`: peers' calls (rate limit, decode, per-peer cap, to the node) and
//! the answers to ours.

use super::*;

impl Task {
    pub(super) fn invoke_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match self.traffic(Proto::Invoke, event) {
            Some(Traffic::Request {
                peer,
                body,
                channel,
            }) => self.invoke_request(peer, body, channel),
            Some(Traffic::Answer { id, body, .. }) => {
                if let Some((peer, reply)) = self.invoke_requests.remove(&id) {
                    let decoded = InvokeResponse::decode(&body)
                        .map_err(|error| InvokeFailure::Malformed { peer, error });
                    let _ = reply.send(decoded);
                    self.drop_relayed(peer);
                }
            }
            Some(Traffic::Failed { id, error, .. }) => {
                if let Some((peer, reply)) = self.invoke_requests.remove(&id) {
                    let _ = reply.send(Err(InvokeFailure::Transport {
                        peer,
                        reason: error,
                    }));
                }
            }
            None => {}
        }
    }

    pub(super) fn invoke_request(
        &mut self,
        peer: PeerId,
        body: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        match self.admit_invoke(peer, &body) {
            Ok(rx) => {
                *self.serving.entry(peer).or_default() += 1;
                self.answers.push(Box::pin(async move {
                    (
                        peer,
                        AnswerChannel::Invoke(channel),
                        rx.await.ok().map(|r| r.encode()),
                    )
                }));
            }
            Err(refusal) => self.answer(AnswerChannel::Invoke(channel), Some(refusal.encode())),
        }
    }

    /// Passes an invoke request on to the node, or says why not: over the peer's rate,
    /// malformed (the peer is penalised), too many of its requests in progress, or the
    /// node's inbound queue is full.
    pub(super) fn admit_invoke(
        &mut self,
        peer: PeerId,
        body: &[u8],
    ) -> Result<oneshot::Receiver<InvokeResponse>, InvokeResponse> {
        let refuse = |kind: ErrorKind, message: String| InvokeResponse::Err { kind, message };
        let now = now_ms();
        let rate = self.config.invoke_rate_per_peer;
        let allowed = self
            .invoke_buckets
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(rate, (rate * 4.0).max(4.0), now))
            .try_take(now);
        if !allowed {
            return Err(refuse(
                ErrorKind::RateLimited,
                format!(
                    "more than {rate} invoke requests per second from {peer} (invoke_rate_per_peer)"
                ),
            ));
        }
        let request = InvokeRequest::decode(body).map_err(|e| {
            self.penalise(peer);
            refuse(ErrorKind::BadRequest, e.to_string())
        })?;
        if self.serving_full(peer) {
            let limit = self.config.max_requests_per_peer;
            return Err(refuse(
                ErrorKind::Busy,
                format!(
                    "busy: {limit} requests from {peer} are in progress here (max_requests_per_peer)"
                ),
            ));
        }
        let (respond, rx) = oneshot::channel();
        self.inbound
            .try_send(Inbound::Invoke {
                peer,
                request,
                respond,
            })
            .map_err(|_| refuse(ErrorKind::Busy, "the node's inbound queue is full".into()))?;
        Ok(rx)
    }
}
