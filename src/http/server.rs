//! The accept loop: serves the router over HTTP/1.1 with the two limits `axum::serve` lacks, so a
//! self-hosted service (no front end in between) survives slow and half-open clients.
//!
//! - **Header-read timeout** (`http.header_read_timeout_secs`): a connection that has not sent a
//!   request's complete headers within it is closed, whether it never sent any (half-open), sends
//!   them byte by byte, or sits idle between keep-alive requests. Bodies and answers are not under
//!   it (the routes' own time limits apply, `limits.rs`).
//! - **Connection cap** (`http.max_connections`): a connection accepted while that many are open is
//!   closed at once (the client reads end-of-file), so the process never runs out of file
//!   descriptors and every connection it keeps is served. Refusals are logged once per episode.
//!
//! Graceful shutdown is `axum::serve`'s: when `stop` is cancelled the listener is closed, every
//! connection is told to finish its request in flight and close (idle ones close at once), and
//! [`serve`] returns when all have closed. The caller bounds that wait with the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

/// The limits of the accept loop (from `[http]`).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Longest wait for a request's complete headers.
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits `http` configures.
    #[must_use]
    pub fn from_settings(http: &crate::settings::HttpSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            max_connections: http.max_connections,
        }
    }
}

/// Serves `router` on `listener` until `stop` is cancelled and every connection has closed.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, stop: CancellationToken) {
    // HTTP/1 only, as `axum::serve` builds it here; and declared, because the protocol detection of
    // an undeclared builder waits for a connection's first bytes with no timeout at all. No
    // upgrades (`serve_connection`): no route needs one, and they would skip that declaration.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut saturated = false;
    // Every connection task holds a receiver; `closed()` completes when the last one is dropped.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !std::mem::replace(&mut saturated, true) {
                tracing::warn!(
                    http.max_connections = limits.max_connections,
                    "connection limit reached: new connections are closed until some close"
                );
            }
            drop(stream);
            continue;
        };
        saturated = false;
        let (builder, service, stop, open) =
            (builder.clone(), TowerToHyperService::new(router.clone()), stop.clone(), open_rx.clone());
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                log_connection_error(peer, e.as_ref());
            }
            drop((slot, open));
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

/// An accept error: the connection's own (reset before it was accepted) is skipped; anything else
/// (out of file descriptors) is logged and retried after a pause, as `axum::serve` does.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection that ended in error: a header-read timeout, a malformed request, a reset. The
/// client's doing, so at DEBUG.
fn log_connection_error(peer: SocketAddr, e: &(dyn std::error::Error + 'static)) {
    tracing::debug!(client.address = %peer, error = %e, "connection closed");
}
