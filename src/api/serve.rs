//! The HTTP server: serves the router on each connection of the port's listener
//! ([`crate::security::listen`], as every port), with the bounds a server facing
//! any client needs, which `axum::serve` does not offer:
//!
//! * at most `--web.max-connections` connections at once (Prometheus's flag and
//!   default, 512): past it, new connections wait in the kernel's backlog, as
//!   Prometheus's limited listener makes them wait; a connection silent for
//!   `--web.read-header-timeout` after connecting is closed;
//! * a request's header must arrive within `--web.read-header-timeout`, which is
//!   also how long an idle keep-alive connection stays open (hyper's header timer
//!   runs while it waits for the next request): a client that sends half a header
//!   and stops holds nothing for long;
//! * a request's body must arrive within `--web.read-timeout` of its header
//!   (Prometheus's flag and default, 5m) — a deadline for the whole body, not per
//!   read, so dripping one byte at a time does not keep it alive;
//! * on shutdown the listener closes, requests in flight get
//!   [`ServeOptions::drain_timeout`] to finish, and connections still open after it
//!   are dropped, so SIGTERM ends within its grace period whatever is running.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use http_body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The HTTP listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// `--web.max-connections`: connections served at once.
    pub max_connections: usize,
    /// `--web.read-header-timeout`: time for a request's header to arrive, and for
    /// an idle connection to send its next request.
    pub read_header_timeout: Duration,
    /// `--web.read-timeout`: time for a request's whole body to arrive.
    pub read_timeout: Duration,
    /// How long shutdown waits for requests in flight before dropping connections.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 512,
            read_header_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(15),
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then drains (see the module
/// documentation). Fails only if the listener itself fails for good.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    tls: Option<Arc<crate::security::tls::ServerTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use futures_util::StreamExt;
    // The connection bounds and TLS are the listener's, as on every port.
    let listener = crate::security::listen::Listener::new(
        listener,
        tls,
        crate::security::listen::ListenOptions {
            max_connections: opts.max_connections,
            first_bytes_timeout: opts.read_header_timeout,
            // HTTP/1's idle keep-alive connections end at the header timeout.
            idle_timeout: None,
        },
    );
    let (slots, all_slots) = listener.slots();
    let mut incoming = std::pin::pin!(listener.incoming(shutdown.clone()));
    // Cancelled after the drain timeout: every connection task still running then
    // drops its connection.
    let hard_stop = CancellationToken::new();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.read_header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(opts.read_header_timeout))
        .keep_alive_timeout(opts.read_header_timeout);
    let read_timeout = opts.read_timeout;
    let router = router.layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let req = req.map(|body| Body::new(DeadlineBody::new(body, read_timeout)));
            next.run(req)
        },
    ));
    loop {
        let conn = tokio::select! {
            c = incoming.next() => match c {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let peer = conn.info().remote;
        // Where the request came from, for the audit log and failed-login limits:
        // set on each request as it arrives (the router itself is not re-layered
        // per connection).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<_>| {
                req.extensions_mut()
                    .insert(crate::security::auth::ClientAddr(peer));
                req
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let dropped = hard_stop.clone();
        tokio::spawn(async move {
            // The connection holds its listener slot until it is dropped here.
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(conn), service)
                .into_owned();
            // Errors here are the client's (reset, timeout, bad request): hyper has
            // answered what could be answered.
            tokio::select! {
                _ = watcher.watch(conn) => {}
                _ = dropped.cancelled() => {}
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(opts.drain_timeout) => {
            tracing::warn!(drain_timeout_ms = opts.drain_timeout.as_millis() as u64,
                "http connections still open after the drain timeout; closing them");
            hard_stop.cancel();
            // Each task drops its connection at its next poll: wait until every
            // slot is back (bounded, as a task may be inside a blocking call).
            let all = u32::try_from(all_slots).unwrap_or(u32::MAX);
            let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
        }
    }
    Ok(())
}

/// A request body that fails once its deadline passes, however the bytes trickle.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + limit)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body not received within the read timeout")]
struct BodyTimeout;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
