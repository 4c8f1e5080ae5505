//! The HTTP/1.1 accept loop, with the limits that keep a flood of idle or
//! half-open connections from taking the server down: a header-read
//! timeout, a keep-alive idle timeout and a cap on open connections kept
//! well below the process's file-descriptor limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// Connection limits (`HTTP_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection must deliver a request's complete headers within this
    /// time of opening (or of its previous response); otherwise it is
    /// closed.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after
    /// this long.
    pub keepalive_idle: Duration,
    /// Open connections at most; further clients wait in the listen
    /// backlog until one closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Descriptors kept free beside the connections: the database pool, the
/// providers' HTTP clients, log files, and room to accept new requests.
const RESERVED_DESCRIPTORS: u64 = 64;

impl ConnectionLimits {
    /// The cap actually applied: the configured one, lowered to at most
    /// half the process's open-file limit (less a reserve) when that is
    /// smaller, so connections alone can never exhaust descriptors.
    pub fn effective_max_connections(&self) -> usize {
        match open_file_limit() {
            Some(limit) => {
                let ceiling = (limit / 2).saturating_sub(RESERVED_DESCRIPTORS).max(1);
                self.max_connections
                    .min(usize::try_from(ceiling).unwrap_or(usize::MAX))
            }
            None => self.max_connections,
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Serve `router` on `listener` until `stop` resolves; then stop accepting,
/// let requests in flight finish, and return.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.effective_max_connections();
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            applied = max,
            "HTTP_MAX_CONNECTIONS lowered to stay well below the open-file limit (ulimit -n)"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    // Dropped when the loop ends: connections then finish gracefully.
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    let mut stop = std::pin::pin!(stop);
    let mut warned_full = false;
    loop {
        if slots.available_permits() == 0 && !warned_full {
            tracing::warn!(
                max_connections = max,
                "connection cap reached: new clients wait until a connection closes"
            );
        }
        warned_full = slots.available_permits() == 0;
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = slots.clone().acquire_owned() => permit.unwrap_or_else(|_| unreachable!("never closed")),
        };
        let (stream, _peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, router, limits, shutdown).await;
            drop(permit);
        });
    }
    drop(shutdown_rx);
    drop(listener);
    shutdown_tx.send_replace(());
    // Every connection holds a receiver: wait until they have all finished.
    shutdown_tx.closed().await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<()>,
) {
    // Requests in flight on this connection, and when the last one ended.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let idle = Arc::new(tokio::sync::Notify::new());
    let service = {
        let (in_flight, idle) = (in_flight.clone(), idle.clone());
        hyper::service::service_fn(move |request: axum::http::Request<Incoming>| {
            let router = router.clone();
            let (in_flight, idle) = (in_flight.clone(), idle.clone());
            in_flight.fetch_add(1, Ordering::SeqCst);
            async move {
                let response = router
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|e: Infallible| match e {});
                in_flight.fetch_sub(1, Ordering::SeqCst);
                idle.notify_one();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut shutting_down = false;
    loop {
        let idle_for = async {
            // Wait for the first request to end, then for a quiet spell.
            idle.notified().await;
            loop {
                if in_flight.load(Ordering::SeqCst) == 0 {
                    tokio::select! {
                        () = tokio::time::sleep(limits.keepalive_idle) => {
                            if in_flight.load(Ordering::SeqCst) == 0 { return; }
                        }
                        () = idle.notified() => {}
                    }
                } else {
                    idle.notified().await;
                }
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection closed");
                }
                return;
            }
            _ = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            () = idle_for, if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
