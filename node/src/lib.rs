//! kith-node: the daemon and the `kith` command line. All of kith's I/O lives here;
//! the logic it drives lives in `kith-protocol`.
//!
//! - [`node`]: one node — store, runtime, call path.
//! - [`api`]: the HTTP gateway.
//! - [`runtime`]: wasmer with per-call limits.
//! - [`store`]: the content-addressed store on disk.
//! - [`cli`]: the `kith` command line.

pub mod api;
pub mod cli;
pub mod config;
mod executor;
mod fsutil;
pub mod identity;
pub mod node;
pub mod runtime;
pub mod store;

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
    let node = Arc::new(tokio::task::block_in_place(|| Node::open(config))?);
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {http}: {e}"))?;
    let http_addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(Arc::clone(&node), listener, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        node,
        http_addr,
        stop,
        task,
    })
}

/// Serves the HTTP API until `shutdown` resolves, then lets in-flight calls finish
/// (at most [`SHUTDOWN_GRACE`]).
///
/// # Errors
/// If the server fails.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = api::router(Arc::clone(&node));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    node.drain(SHUTDOWN_GRACE).await;
    Ok(())
}
