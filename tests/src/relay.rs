//! A TCP relay that delays every byte by a fixed time in each direction: real latency
//! on a loopback link, since this kernel has no `netem`. A node announces the relay's
//! address (`--external-address`) and peers dial it, so ping, fetch and invoke traffic
//! all cross the delay.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running relay; dropping it stops accepting and closes relayed connections.
pub struct DelayRelay {
    /// The address to dial.
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl DelayRelay {
    /// Relays 127.0.0.1:(a free port) to `target`, adding `one_way` to each direction
    /// (so a round trip gains twice that).
    ///
    /// # Panics
    /// If no port or thread is available.
    pub fn start(target: SocketAddr, one_way: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("relay runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("relay port");
        let addr = listener.local_addr().expect("relay address");
        runtime.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(pump(ri, wo, one_way));
                    tokio::spawn(pump(ro, wi, one_way));
                });
            }
        });
        Self {
            addr,
            _runtime: runtime,
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin + Send + 'static,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
