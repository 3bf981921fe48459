//! Every port's listener (HTTP, the StoreAPI's gRPC, the cluster's gRPC), built in
//! one place so that each gets the same bounds and the same TLS:
//!
//! * at most `max_connections` connections at once: past it, new ones wait in the
//!   kernel's backlog (as Prometheus's limited listener makes them wait) rather than
//!   each costing a task, buffers and a file descriptor;
//! * a connection must send its first byte, and finish its TLS handshake, within
//!   `first_bytes_timeout`: one that connects and stays silent, or starts a
//!   handshake and stops, holds its slot that long at most (hyper's and tonic's own
//!   timers only start once a request does);
//! * with TLS, the configuration current when the connection arrives (a rotated
//!   certificate serves the connections after it; see [`super::tls::ServerTls`]).
//!
//! A connection comes with where it came from and, over mutual TLS, the client's
//! certificates ([`ConnInfo`]; tonic puts it in each request's extensions).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::tls::ServerTls;

/// A listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time for a new connection's first byte and its TLS handshake, each.
    pub first_bytes_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed (`None`:
    /// never): an HTTP/2 client that opened and then idles holds a slot no longer.
    pub idle_timeout: Option<Duration>,
}

/// Where a connection came from, and the certificates its client presented (only
/// over TLS with client certificates: verified against the client CA).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// An accepted connection: plain TCP or TLS over it. It holds one of its
/// listener's slots until dropped.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    /// Until [`OPENING_BYTES`] have been read, reads fail once this passes (see
    /// [`Conn::poll_read`]).
    opening: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
    idle: Option<Idle>,
    _slot: OwnedSemaphorePermit,
}

/// The idle timer: bytes moved are counted, and when the timer fires a count that
/// moved since the last firing re-arms it, so a busy connection pays a counter per
/// read or write rather than a timer reset (it is closed between one and two
/// periods after its last byte).
struct Idle {
    timer: Pin<Box<tokio::time::Sleep>>,
    after: Duration,
    moved: u64,
    moved_at_last_check: u64,
}

/// Bytes a client must send within the first-bytes deadline: the length of the
/// HTTP/2 connection preface. Both hyper's protocol detection (HTTP/1 or 2) and an
/// HTTP/2 server's wait for the preface read without a timer of their own, so a
/// client that sends `P` and stops would otherwise hold its slot for good. Any
/// HTTP/1 request but the smallest is longer.
const OPENING_BYTES: usize = 24;

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// Counts a write that moved bytes, passing its outcome on.
    fn count_written(
        &mut self,
        written: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(1..))) {
            self.moved();
        }
        written
    }

    /// Counts a read or write that moved bytes (see [`Idle`]).
    fn moved(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.moved = idle.moved.wrapping_add(1);
        }
    }
}

/// A port's listener: its socket, TLS if configured, and its connection slots.
pub struct Listener {
    socket: TcpListener,
    tls: Option<Arc<ServerTls>>,
    opts: ListenOptions,
    slots: Arc<Semaphore>,
}

impl Listener {
    pub fn new(socket: TcpListener, tls: Option<Arc<ServerTls>>, opts: ListenOptions) -> Self {
        let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
        Listener {
            socket,
            tls,
            opts,
            slots,
        }
    }

    /// The slots, for a server that waits until every connection is gone.
    pub fn slots(&self) -> (Arc<Semaphore>, usize) {
        (self.slots.clone(), self.opts.max_connections.max(1))
    }

    /// The connections, ready to serve (first byte in, handshake done), until `stop`
    /// closes the listener. Accepting goes on in a task of its own; each new
    /// connection's first bytes and handshake in one more, so that a slow one holds
    /// up nobody else.
    pub fn incoming(
        self,
        stop: CancellationToken,
    ) -> impl futures_util::Stream<Item = std::io::Result<Conn>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Conn>>(64);
        tokio::spawn(async move {
            loop {
                let slot = tokio::select! {
                    s = self.slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => return,
                    },
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                };
                let (stream, remote) = tokio::select! {
                    a = self.socket.accept() => match a {
                        Ok(accepted) => accepted,
                        Err(e) if is_per_connection_error(&e) => continue,
                        Err(e) => {
                            // Out of file descriptors and the like: wait rather than
                            // spin, as Go's net/http does.
                            tracing::warn!(error = %e, "accepting a connection failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                };
                let _ = stream.set_nodelay(true);
                let acceptor = self
                    .tls
                    .as_ref()
                    .map(|t| tokio_rustls::TlsAcceptor::from(t.current()));
                let (tx, stop, limit) = (tx.clone(), stop.clone(), self.opts.first_bytes_timeout);
                let idle = self.opts.idle_timeout;
                tokio::spawn(async move {
                    // The handshake gets the deadline, and so does the opening of
                    // the protocol once it is done (see `OPENING_BYTES`).
                    let opening_deadline = tokio::time::Instant::now() + 2 * limit;
                    let opened = open(stream, remote, acceptor, slot, opening_deadline, idle);
                    let ready = tokio::select! {
                        r = tokio::time::timeout(limit, opened) => r,
                        _ = stop.cancelled() => return,
                    };
                    match ready {
                        Ok(Some(conn)) => {
                            let _ = tx.send(Ok(conn)).await;
                        }
                        Ok(None) => {}
                        Err(_) => {
                            tracing::debug!(%remote, "connection silent or handshake unfinished; closed")
                        }
                    }
                });
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }
}

/// Waits for the first byte, then does the TLS handshake if any. `None`: the
/// client left or the handshake failed (logged at debug).
async fn open(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    slot: OwnedSemaphorePermit,
    opening_deadline: tokio::time::Instant,
    idle_timeout: Option<Duration>,
) -> Option<Conn> {
    let mut first = [0u8; 1];
    if !matches!(stream.peek(&mut first).await, Ok(1..)) {
        return None;
    }
    let (io, peer_certs) = match acceptor {
        None => (Io::Plain(stream), None),
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(tls) => {
                let certs = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
                (Io::Tls(Box::new(tls)), certs)
            }
            Err(e) => {
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return None;
            }
        },
    };
    Some(Conn {
        io,
        info: ConnInfo { remote, peer_certs },
        opening: Some((
            Box::pin(tokio::time::sleep_until(opening_deadline)),
            OPENING_BYTES,
        )),
        idle: idle_timeout.map(|after| Idle {
            timer: Box::pin(tokio::time::sleep(after)),
            after,
            moved: 0,
            moved_at_last_check: 0,
        }),
        _slot: slot,
    })
}

/// Errors that concern one connection only (it was reset before it was accepted).
fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some((deadline, _)) = &mut this.opening {
            if deadline.as_mut().poll(cx).is_ready() {
                this.opening = None;
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client did not open its protocol in time",
                )));
            }
        }
        if let Some(idle) = &mut this.idle {
            while idle.timer.as_mut().poll(cx).is_ready() {
                if idle.moved == idle.moved_at_last_check {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connection idle too long",
                    )));
                }
                idle.moved_at_last_check = idle.moved;
                let next = tokio::time::Instant::now() + idle.after;
                idle.timer.as_mut().reset(next);
            }
        }
        let before = buf.filled().len();
        let read = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if buf.filled().len() > before {
            this.moved();
        }
        if let Some((_, left)) = &mut this.opening {
            *left = left.saturating_sub(buf.filled().len() - before);
            if *left == 0 {
                this.opening = None;
            }
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.count_written(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.count_written(written)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}
