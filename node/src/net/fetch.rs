//! `/kith/fetch/1` and the provider lookups behind it: the network task drives
//! protocol's fetch sessions (`kith_protocol::fetch`), one per module wanted — a second
//! caller wanting the same module joins the session in progress — and answers peers'
//! fetch requests through the node.

use std::collections::HashMap;

use kith_protocol::FunctionId;
use kith_protocol::fetch::{Answered, Known, Session, Step};
use kith_protocol::wire::{FetchRequest, FetchResponse};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::{PeerId, kad};
use tokio::sync::oneshot;

use super::answer::Traffic;
use super::{AnswerChannel, FetchError, Inbound, Proto, Task, provider_key};

/// Most fetch sessions at once; a fetch beyond them fails at once (the call is then
/// refused as `not_found` here and may run elsewhere).
pub(super) const MAX_FETCHES: usize = 64;
/// Most callers waiting on one session.
const MAX_WAITERS: usize = 256;

type Reply = oneshot::Sender<Result<Vec<u8>, FetchError>>;

/// One module being fetched, and who waits for it.
struct Fetch {
    session: Session<PeerId>,
    replies: Vec<Reply>,
}

/// The fetch sessions in progress.
#[derive(Default)]
pub(super) struct Fetches {
    sessions: HashMap<u64, Fetch>,
    by_id: HashMap<FunctionId, u64>,
    next: u64,
    queries: HashMap<kad::QueryId, u64>,
    requests: HashMap<OutboundRequestId, (u64, PeerId)>,
}

impl Fetches {
    /// Sessions in progress.
    pub(super) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True while a fetch request to `peer` is out.
    pub(super) fn asking(&self, peer: &PeerId) -> bool {
        self.requests.values().any(|(_, p)| p == peer)
    }
}

impl Task {
    /// Someone wants `id`'s bytes.
    pub(super) fn start_fetch(&mut self, id: FunctionId, prefer: Option<PeerId>, reply: Reply) {
        if let Some(n) = self.fetches.by_id.get(&id)
            && let Some(f) = self.fetches.sessions.get_mut(n)
        {
            if f.replies.len() < MAX_WAITERS {
                f.replies.push(reply);
            } else {
                let _ = reply.send(Err(FetchError::TooManyWaiters {
                    id,
                    limit: MAX_WAITERS,
                }));
            }
            return;
        }
        if self.fetches.sessions.len() >= MAX_FETCHES {
            let _ = reply.send(Err(FetchError::TooManyFetches {
                id,
                limit: MAX_FETCHES,
            }));
            return;
        }
        let n = self.fetches.next;
        self.fetches.next += 1;
        let query = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(provider_key(&id));
        self.fetches.queries.insert(query, n);
        self.fetches.by_id.insert(id, n);
        self.fetches.sessions.insert(
            n,
            Fetch {
                session: Session::new(id, self.config.max_module_bytes, prefer),
                replies: vec![reply],
            },
        );
        self.step_fetch(n);
    }

    /// Runs session `n` until it waits: sends its next request, or delivers.
    fn step_fetch(&mut self, n: u64) {
        // Only choosing a new provider needs what is known of connected peers; the
        // chunks from a provider follow each other without it.
        let choosing = self
            .fetches
            .sessions
            .get(&n)
            .is_some_and(|f| f.session.choosing());
        let connected = if choosing {
            self.known_for_fetch(n)
        } else {
            Vec::new()
        };
        let local = *self.swarm.local_peer_id();
        let Some(fetch) = self.fetches.sessions.get_mut(&n) else {
            return;
        };
        match fetch.session.next(local, &connected) {
            Step::Wait => {}
            Step::Ask { peer, request } => {
                let rid = self.send_request(Proto::Fetch, &peer, request.encode());
                self.fetches.requests.insert(rid, (n, peer));
            }
            Step::Done(module) => {
                let id = fetch.session.id();
                tracing::info!(function = %id, bytes = module.len(), "fetched and verified");
                self.finish_fetch(n, Ok(module));
            }
            Step::Failed { asked, bad } => {
                let id = fetch.session.id();
                self.finish_fetch(n, Err(FetchError::NotFound { id, asked, bad }));
            }
        }
    }

    fn finish_fetch(&mut self, n: u64, result: Result<Vec<u8>, FetchError>) {
        if let Some(f) = self.fetches.sessions.remove(&n) {
            self.fetches.by_id.remove(&f.session.id());
            self.fetches.queries.retain(|_, m| *m != n);
            let mut replies = f.replies;
            let last = replies.pop();
            for reply in replies {
                let _ = reply.send(result.clone());
            }
            if let Some(reply) = last {
                let _ = reply.send(result);
            }
        }
    }

    /// What the network knows of connected peers, for choosing providers.
    fn known_for_fetch(&self, n: u64) -> Vec<Known<PeerId>> {
        let Some(fetch) = self.fetches.sessions.get(&n) else {
            return Vec::new();
        };
        let id = fetch.session.id();
        let table = &self.table;
        table
            .connected()
            .into_iter()
            .map(|peer| Known {
                peer,
                claims: table
                    .book
                    .get(&peer)
                    .and_then(|i| i.advert())
                    .is_some_and(|(a, _)| a.cached.may_contain(&id)),
                penalty: table.penalty(&peer),
                rtt_ms: table.rtt_ms(&peer),
            })
            .collect()
    }

    /// The answer (or failure, `None`) to fetch request `rid`.
    fn fetch_answer(&mut self, rid: OutboundRequestId, body: Option<Vec<u8>>) {
        let Some((n, peer)) = self.fetches.requests.remove(&rid) else {
            return;
        };
        let Some(fetch) = self.fetches.sessions.get_mut(&n) else {
            return;
        };
        let (answer, malformed) = match body.map(|b| FetchResponse::decode(&b)) {
            Some(Ok(r)) => (Some(r), false),
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "malformed fetch answer");
                (None, true)
            }
            None => (None, false),
        };
        let id = fetch.session.id();
        match fetch.session.on_answer(peer, answer, malformed) {
            Answered::Stale => return,
            Answered::Ok => {}
            Answered::Penalise { peer, problem } => {
                tracing::warn!(function = %id, %peer, %problem, "bad fetch answer; penalising the peer");
                self.penalise(peer);
            }
        }
        self.step_fetch(n);
    }

    /// The DHT answered (part of) provider query `query`.
    pub(super) fn providers_found(
        &mut self,
        query: kad::QueryId,
        result: &kad::GetProvidersResult,
        last: bool,
    ) {
        let Some(&n) = self.fetches.queries.get(&query) else {
            return;
        };
        if let (Ok(kad::GetProvidersOk::FoundProviders { providers, .. }), Some(f)) =
            (result, self.fetches.sessions.get_mut(&n))
        {
            f.session.providers_found(providers.iter().copied());
        }
        let done =
            last || matches!(
                result,
                Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. })
            ) || result.is_err();
        if done {
            self.fetches.queries.remove(&query);
            if let Some(f) = self.fetches.sessions.get_mut(&n) {
                f.session.query_done();
            }
        }
        self.step_fetch(n);
    }

    /// A `/kith/fetch/1` event: a peer's request (answered by the node) or the answer
    /// to one of ours.
    pub(super) fn fetch_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match self.traffic(Proto::Fetch, event) {
            Some(Traffic::Request {
                peer,
                body,
                channel,
            }) => self.take_request(
                peer,
                &body,
                AnswerChannel::Fetch(channel),
                FetchRequest::decode,
                |peer, request, respond| Inbound::Fetch {
                    peer,
                    request,
                    respond,
                },
                None,
                FetchResponse::encode,
            ),
            Some(Traffic::Answer { id, body, .. }) => self.fetch_answer(id, Some(body)),
            Some(Traffic::Failed { id, error, .. }) => {
                tracing::debug!(%error, "fetch request failed");
                self.fetch_answer(id, None);
            }
            None => {}
        }
    }
}
