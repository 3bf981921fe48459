//! gRPC over a local Unix socket, called from the collector's blocking thread: how the
//! GPU collector talks to the kubelet ([`super::kubelet`]) and the container runtime
//! ([`super::cri`]).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Connects to the gRPC server on `socket`. A new connection per call: the other
/// side may have restarted since the last one.
pub(super) async fn channel(socket: PathBuf, timeout: Duration) -> Result<Channel, String> {
    // The URI is required by the API and not used: the connector dials the socket.
    Endpoint::from_static("http://localhost.invalid")
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// Runs `call` to its end, or for at most `limit`, on the calling thread. Call it from
/// a blocking thread (`spawn_blocking`), never from a runtime worker.
///
/// The call gets a small runtime of its own rather than the server's: a scrape in
/// flight when the server shuts down must not find its socket's I/O driver gone under
/// it (that panics inside Tokio), and the collector's calls must not depend on the
/// server's workers being free. Building one costs tens of microseconds per call
/// (the kubelet's list each scrape, and a runtime lookup per new container).
pub(super) fn block_on<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let bounded = async move {
        tokio::time::timeout(limit, call)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?
        .block_on(bounded)
}
