//! kith-node: the daemon and the `kith` command line. All of kith's I/O lives here;
//! the logic it drives lives in `kith-protocol`.
//!
//! - [`node`]: one node — store, runtime, call path.
//! - [`api`]: the HTTP gateway.
//! - [`runtime`]: wasmer with per-call limits.
//! - [`store`]: the content-addressed store on disk.
//! - [`cli`]: the `kith` command line.

mod alias_sync;
pub mod aliases;
pub mod api;
mod call;
pub mod cli;
mod clock;
pub mod config;
mod executor;
mod forward;
mod fsutil;
pub mod grants;
pub mod identity;
mod inbound;
pub mod metrics;
pub mod net;
pub mod node;
pub mod peers;
pub mod receipts;
pub mod runtime;
pub mod scheduler;
pub mod state;
mod statesync;
pub mod store;
mod verify;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::NodeConfig;
pub use node::Node;

/// How long in-flight calls get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A node serving HTTP in the background (for tests, benchmarks and embedding).
pub struct Running {
    /// The node.
    pub node: Arc<Node>,
    /// Where its HTTP API listens.
    pub http_addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The API base URL, e.g. `http://127.0.0.1:7070`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Shuts the node down and waits for it.
    ///
    /// # Errors
    /// If serving failed.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Opens a node and starts serving its HTTP API on `config.http`.
///
/// # Errors
/// If the node cannot open or the address cannot be bound.
pub async fn start(config: NodeConfig) -> anyhow::Result<Running> {
    let http = config.http;
    let net_settings = config.net.clone();
    let node = Arc::new(tokio::task::block_in_place(|| Node::open(config))?);
    if let Some(settings) = net_settings {
        start_network(&node, settings)?;
    }
    let token = api::token::load_or_create(&node.config().data_dir)?;
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {http}: {e}"))?;
    let http_addr = listener.local_addr()?;
    let guard = api::guard::Guard::new(
        http_addr,
        &node.config().api,
        token,
        Arc::clone(&node.metrics),
    );
    if guard.token_required() {
        tracing::info!(
            http = %http_addr,
            token_file = %node.config().data_dir.join(api::token::TOKEN_FILE).display(),
            "the HTTP API needs the API token on every request but the status page and metrics"
        );
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(Arc::clone(&node), listener, guard, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        node,
        http_addr,
        stop,
        task,
    })
}

/// Starts the peer network for `node`: the swarm task, the task answering peers'
/// requests, and the advert ticker.
fn start_network(node: &Arc<Node>, settings: config::NetSettings) -> anyhow::Result<()> {
    let caps = &node.config().caps;
    let net_config = net::NetConfig {
        listen: settings.listen,
        bootstrap: settings.bootstrap,
        external: settings.external,
        mdns: settings.mdns,
        max_module_bytes: caps.max_module_bytes,
        max_input_bytes: caps.max_input_bytes,
        max_output_bytes: caps.max_output_bytes,
        request_timeout: Duration::from_millis(caps.max_timeout_ms) + Duration::from_secs(10),
        fetch_timeout: Duration::from_secs(10),
        invoke_rate_per_peer: settings.invoke_rate_per_peer,
        max_requests_per_peer: settings.max_requests_per_peer,
        max_connections: settings.max_connections,
        max_peers_per_subnet: settings.max_peers_per_subnet,
        advert_rate_per_peer: 5.0,
        advert_interval: Duration::from_millis(settings.advert_interval_ms.max(100)),
        relay_server: settings.relay_server,
        relays: settings.relays,
        autonat_delay: Duration::from_secs(5),
    };
    let (net, mut inbound) = net::Net::start(node.key.clone(), net_config)?;
    let _ = node.net.set(net.clone());
    // Announce what is already stored.
    let stored = node.store.stored_ids();
    let announcer = net.clone();
    tokio::spawn(async move {
        for id in stored {
            announcer.provide(id).await;
        }
    });
    let answering = Arc::clone(node);
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            let node = Arc::clone(&answering);
            tokio::spawn(async move { node.handle_inbound(request).await });
        }
    });
    // Anti-entropy: every 30 s, compare alias registries with one connected peer (in
    // turn), in case a gossiped record was missed.
    let syncing = Arc::downgrade(node);
    let sync_net = net.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ALIAS_SYNC_INTERVAL);
        let mut turn = 0usize;
        loop {
            tick.tick().await;
            let Some(node) = syncing.upgrade() else {
                return;
            };
            let peers = sync_net.peers().connected();
            if !peers.is_empty() {
                turn = turn.wrapping_add(1);
                let peer = peers[turn % peers.len()];
                sync_net.sync_aliases(peer, node.aliases().digest());
                // State documents too, each with one of its known holders in turn
                // (else with this turn's peer): a change whose passing-on was lost
                // arrives within this long.
                for doc in node.state().names() {
                    let holder = node.holder_in_turn(&doc, turn, &peers).unwrap_or(peer);
                    tokio::spawn(Arc::clone(&node).sync_doc(holder, doc));
                }
            }
        }
    });
    // A gateway offers nothing, so it has nothing to advertise.
    if node.config().max_concurrent_calls == 0 {
        return Ok(());
    }
    let advertising = Arc::downgrade(node);
    let interval = Duration::from_millis(settings.advert_interval_ms.max(100));
    let early = Arc::clone(&node.advert_now);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = early.notified() => {
                    // Stay well under peers' per-source advert rate limit.
                    tokio::time::sleep(EARLY_ADVERT_GAP).await;
                    tick.reset();
                }
            }
            let Some(node) = advertising.upgrade() else {
                return;
            };
            let advert = node.local_advert();
            net.advertise(advert).await;
        }
    });
    Ok(())
}

/// How often a node compares alias registries with one of its peers.
const ALIAS_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The least time between an early advert (after a function became warm) and the
/// previous one; peers accept at most 5 adverts per second from one source.
const EARLY_ADVERT_GAP: Duration = Duration::from_millis(250);

/// Serves the HTTP API until `shutdown` resolves, then lets in-flight calls finish
/// (at most [`SHUTDOWN_GRACE`]).
///
/// # Errors
/// If the server fails.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    guard: api::guard::Guard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = api::router(Arc::clone(&node), guard);
    let draining = Arc::clone(&node);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // From the signal on, new calls (from the API or from peers) are refused
            // as shutting_down and peers are told at once that no slot is free; the
            // API then finishes its open requests.
            draining.stop_taking_calls();
        })
        .await?;
    node.drain(SHUTDOWN_GRACE).await;
    Ok(())
}
