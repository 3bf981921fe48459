//! The Thanos StoreAPI over gRPC (tonic), so that Thanos Query fans out to ODIN as to a
//! Prometheus with its Thanos sidecar.
//!
//! Served on `--grpc-address`:
//! * `thanos.info.Info/Info` — what Thanos Query 0.37+ asks first: the external labels
//!   as the store's label set, and the time range it holds;
//! * `thanos.Store` — `Info`, `Series` (streamed, chunks still XOR-encoded as stored),
//!   `LabelNames`, `LabelValues`.
//!
//! Main types: [`StoreApi`] (both services), [`StoreBackends`] (the seams it reads),
//! [`serve`]. The messages come from `proto/thanos/` (see `build.rs`); [`series`] holds
//! the request handling that does not depend on tonic. This module reads only through
//! the `storage` traits and must not import `tsdb` or `api`.

pub mod error;
mod metrics;
pub mod proto;
pub mod series;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;

use crate::storage::{ChunkQueryable, Queryable};
pub use error::{Result, StoreApiError};
pub use metrics::StoreApiMetrics;
use proto::thanos::{info::info_server::InfoServer, store_server::StoreServer};
pub use service::{COMPONENT_TYPE, StoreApi};

/// The Thanos sidecar's gRPC port, ODIN's default `--grpc-address`.
pub const DEFAULT_GRPC_ADDRESS: &str = "0.0.0.0:10901";

/// The storage seams the StoreAPI reads.
#[derive(Clone)]
pub struct StoreBackends {
    /// Label names and values.
    pub queryable: Arc<dyn Queryable>,
    /// Series with their encoded chunks.
    pub chunks: Arc<dyn ChunkQueryable>,
}

/// Limits of the gRPC server.
#[derive(Debug, Clone)]
pub struct StoreApiOptions {
    /// Largest request accepted (decoded size). Requests are matchers and times, so
    /// this is small next to Thanos's own 2 GiB default.
    pub max_recv_message_bytes: usize,
    /// Largest response message. `Series` frames hold at most
    /// [`series::MAX_CHUNK_BYTES_IN_FRAME`] of chunks, so only a series with huge
    /// labels or a label answer of this size fails.
    pub max_send_message_bytes: usize,
    /// `Series` frames read ahead of the client per request.
    pub series_channel_depth: usize,
    /// `Series` calls served at once (Thanos's `--store.grpc.series-max-concurrency`,
    /// 20 by default); more wait for a turn until their deadline, then fail with
    /// `ResourceExhausted`. 0: no limit.
    pub series_max_concurrency: usize,
    /// Longest a `Series` call may run, waiting for its turn included, whatever
    /// deadline (`grpc-timeout`) the client sends or when it sends none. A client
    /// that stops reading is cut off here. Thanos Query's own `--query.timeout`
    /// default, 2 minutes.
    pub series_max_duration: std::time::Duration,
}

/// Thanos's default `--store.grpc.series-max-concurrency`.
pub const DEFAULT_SERIES_MAX_CONCURRENCY: usize = 20;
/// `--grpc.max-connections`: StoreAPI connections open at once (as
/// `--web.max-connections` for HTTP).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// `--grpc.max-connection-idle`: a StoreAPI connection that moves no byte for this
/// long is closed (grpc-go's `MaxConnectionIdle`; clients reconnect when they next
/// call).
pub const DEFAULT_MAX_CONNECTION_IDLE: std::time::Duration =
    std::time::Duration::from_secs(15 * 60);

impl Default for StoreApiOptions {
    fn default() -> Self {
        StoreApiOptions {
            max_recv_message_bytes: 16 << 20,
            max_send_message_bytes: 256 << 20,
            series_channel_depth: 16,
            series_max_concurrency: DEFAULT_SERIES_MAX_CONCURRENCY,
            series_max_duration: std::time::Duration::from_secs(120),
        }
    }
}

/// Who may call the StoreAPI, and over what: the HTTP port's web config applies
/// here too.
#[derive(Clone)]
pub struct GrpcSecurity {
    /// TLS (the web config's certificates, rotated with them); `None`: plaintext.
    pub tls: Option<Arc<crate::security::tls::ServerTls>>,
    /// Credentials: every call needs the `read` role, from a bearer token or basic
    /// auth in the metadata, or from a client certificate the TLS layer verified.
    pub auth: Arc<crate::security::auth::Authenticator>,
    /// The listener's bounds: connections at once, time for a first byte and a
    /// TLS handshake.
    pub listen: crate::security::listen::ListenOptions,
}

impl GrpcSecurity {
    /// Plaintext, no credentials.
    pub fn open() -> GrpcSecurity {
        GrpcSecurity {
            tls: None,
            auth: crate::security::auth::Authenticator::open(),
            listen: crate::security::listen::ListenOptions {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                first_bytes_timeout: std::time::Duration::from_secs(10),
                idle_timeout: Some(DEFAULT_MAX_CONNECTION_IDLE),
            },
        }
    }
}

/// Serves both services on `listener` until `shutdown` is cancelled, then lets
/// in-flight calls finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: StoreApi,
    security: GrpcSecurity,
    shutdown: CancellationToken,
) -> std::result::Result<(), tonic::transport::Error> {
    let o = api.options().clone();
    // Gzip-compressed requests are accepted; answers go out uncompressed, as XOR
    // chunks hardly compress and gzip would cost the CPU the chunks were kept
    // encoded to save.
    let store = StoreServer::new(api.clone())
        .max_decoding_message_size(o.max_recv_message_bytes)
        .max_encoding_message_size(o.max_send_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip);
    let info = InfoServer::new(api)
        .max_decoding_message_size(o.max_recv_message_bytes)
        .max_encoding_message_size(o.max_send_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip);
    let guard = read_guard(security.auth.clone());
    let router = tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            store,
            guard.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            info, guard,
        ));
    let incoming = crate::security::listen::Listener::new(listener, security.tls, security.listen)
        .incoming(shutdown.clone());
    router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

/// The interceptor every StoreAPI call passes: the `read` role (see
/// [`GrpcSecurity::auth`]). A bcrypt check runs the first time a basic-auth password
/// is seen (then it is remembered); tokens and certificates cost a hash.
fn read_guard(
    auth: Arc<crate::security::auth::Authenticator>,
) -> impl FnMut(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> + Clone
{
    use crate::security::{Role, auth::Denied};
    move |req: tonic::Request<()>| {
        if !auth.required() {
            return Ok(req);
        }
        let conn = req
            .extensions()
            .get::<crate::security::listen::ConnInfo>()
            .cloned();
        // A certificate the TLS layer verified against the client CA names a
        // client the operator issued it to.
        if conn
            .as_ref()
            .and_then(|c| c.peer_certs.as_ref())
            .is_some_and(|certs| !certs.is_empty())
        {
            return Ok(req);
        }
        let headers = req.metadata().clone().into_headers();
        let remote = conn.map(|c| c.remote);
        let check = || auth.check(&headers, Role::Read, remote, "StoreAPI call");
        // A password seen for the first time costs a bcrypt check (tens of ms):
        // the worker thread hands its other tasks on meanwhile (interceptors are
        // synchronous, so this is the way off the async scheduler here).
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let verdict = if multi_thread {
            tokio::task::block_in_place(check)
        } else {
            check()
        };
        match verdict {
            Ok(_) => Ok(req),
            Err(Denied::Unauthenticated) => Err(tonic::Status::unauthenticated(
                "credentials needed: a bearer token or basic auth with the read role",
            )),
            Err(Denied::Forbidden) => {
                Err(tonic::Status::permission_denied("the read role is needed"))
            }
            Err(Denied::TooManyFailures) => Err(tonic::Status::resource_exhausted(
                "too many failed attempts; try again later",
            )),
        }
    }
}

/// Parses `--grpc-address`; an empty value turns the gRPC server off.
pub fn parse_grpc_address(s: &str) -> std::result::Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("{s:?} is not a host:port address: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grpc_address_parses_and_empty_turns_it_off() {
        assert_eq!(
            parse_grpc_address(DEFAULT_GRPC_ADDRESS).unwrap(),
            Some("0.0.0.0:10901".parse().unwrap())
        );
        assert_eq!(parse_grpc_address("").unwrap(), None);
        assert!(parse_grpc_address("localhost").is_err());
    }
}
