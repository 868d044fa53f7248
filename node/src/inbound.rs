//! Requests from peers: who answers each kind (fetch chunks from the store, invokes
//! through the call path, alias and state traffic to their handlers).

use std::sync::atomic::Ordering;

use kith_protocol::wire::{self, FetchRequest, FetchResponse, InvokeResponse};

use crate::net::Inbound;
use crate::node::Node;

impl Node {
    /// Answers one request from a peer.
    pub(crate) async fn handle_inbound(self: &std::sync::Arc<Self>, request: Inbound) {
        match request {
            Inbound::Alias(message) => self.handle_alias(message),
            Inbound::State(message) => self.handle_state(message),
            Inbound::Fetch {
                peer,
                request,
                respond,
            } => {
                let store = std::sync::Arc::clone(&self.store);
                let id = request.id;
                let answer = tokio::task::spawn_blocking(move || serve_chunk(&store, &request))
                    .await
                    .unwrap_or(FetchResponse::NotFound);
                if let FetchResponse::Found {
                    total,
                    offset,
                    bytes,
                } = &answer
                {
                    tracing::debug!(%peer, function = %id, offset, "serving module bytes");
                    // Count each module once: when its last chunk goes out.
                    if offset + bytes.len() as u64 == *total {
                        self.served_fetches.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = respond.send(answer);
            }
            Inbound::Invoke {
                peer,
                request,
                respond,
            } => {
                tracing::debug!(%peer, function = %request.id, "running a call for a peer");
                // The receipt names the peer that asked (its key is in its id) and
                // the call id it gave.
                let Some(entry) = crate::receipts::ed25519_of(&peer) else {
                    let _ = respond.send(InvokeResponse::Err {
                        kind: kith_protocol::ErrorKind::BadRequest,
                        message: format!(
                            "peer {peer} has no ed25519 key in its id, which a receipt must name"
                        ),
                    });
                    return;
                };
                let asked = crate::receipts::Asked {
                    entry,
                    call: request.call,
                };
                let answer = match self
                    .call_from(request.id, request.input, request.hops, Some(peer), &asked)
                    .await
                {
                    Ok(r) => {
                        self.remote_served.fetch_add(1, Ordering::Relaxed);
                        self.record_served(peer, &r.proof);
                        InvokeResponse::Ok {
                            receipt: Box::new(r.proof),
                            output: r.output,
                        }
                    }
                    Err(e) => InvokeResponse::Err {
                        kind: e.kind(),
                        message: e.to_string(),
                    },
                };
                let _ = respond.send(answer);
            }
        }
    }
}

/// One chunk of a stored module. The first chunk comes from a verified read of the
/// whole blob (so a corrupted blob is caught and dropped, never served); the rest are
/// read as ranges, so serving a module costs about two reads of it, not one per chunk.
fn serve_chunk(store: &crate::store::Store, request: &FetchRequest) -> FetchResponse {
    if request.offset == 0 {
        return store
            .get(&request.id)
            .map_or(FetchResponse::NotFound, |module| {
                FetchResponse::answer(request, &module)
            });
    }
    let len = request.max_len.min(wire::FETCH_CHUNK) as usize;
    match store.read_range(&request.id, request.offset, len) {
        Ok((total, bytes)) if request.offset < total => FetchResponse::Found {
            total,
            offset: request.offset,
            bytes,
        },
        _ => FetchResponse::NotFound,
    }
}
