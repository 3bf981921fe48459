//! The HTTP surface (axum): health and readiness, `/metrics`, the remote-write
//! receiver and the Prometheus admin API. It sees storage only through the `storage`
//! traits; errors meet HTTP in [`response`].

mod admin;
mod bounded;
mod cluster;
mod metrics;
mod query;
mod remote;
pub mod response;
mod serve;
mod status;
mod targets;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use metrics::{HttpMetrics, QueryMetrics};
pub use serve::{ServeOptions, serve};
pub use status::{PROMETHEUS_VERSION, StatusInfo};

/// Parses a series selector (`up{job="x"}`) into matchers, with the API's messages.
pub fn parse_selector_matchers(s: &str) -> Result<Vec<crate::model::Matcher>, String> {
    admin::parse_selector(s).map_err(|e| e.message)
}

use crate::promql::Engine;
use crate::remote::WriteLimits;
use crate::storage::{Appendable, Queryable, StorageAdmin};

/// The storage the API serves, available once the WAL is replayed.
pub struct Backends {
    pub appendable: Arc<dyn Appendable>,
    pub queryable: Arc<dyn Queryable>,
    pub admin: Arc<dyn StorageAdmin>,
    /// Chunk-level reads (remote read's streamed answers).
    pub chunks: Arc<dyn crate::storage::ChunkQueryable>,
    /// The scrape manager, for `/api/v1/targets` and metadata; `None` in tests that
    /// run the API without scraping.
    pub scrape: Option<Arc<crate::scrape::ScrapeManager>>,
}

/// Switches that Prometheus exposes as flags.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub enable_admin_api: bool,
    pub enable_lifecycle: bool,
    /// `--web.enable-remote-write-receiver` (on unless turned off).
    pub remote_write_receiver: bool,
    pub write_limits: WriteLimits,
    /// `global.external_labels`: added to what remote read returns.
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// Whether this node runs in a cluster (its handle arrives once storage opened).
    pub clustered: bool,
}

/// What the HTTP handlers share. Handlers receive it as [`ApiState`], which axum
/// clones for every request: one reference count, not every field.
#[derive(Clone)]
pub struct ApiState(Arc<ApiShared>);

impl ApiState {
    pub fn new(shared: ApiShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiShared;
    fn deref(&self) -> &ApiShared {
        &self.0
    }
}

pub struct ApiShared {
    pub backends: Arc<OnceLock<Backends>>,
    pub registry: Arc<Registry>,
    pub options: ApiOptions,
    pub http_metrics: HttpMetrics,
    /// Cancelled to shut the appliance down (`/-/quit`).
    pub shutdown: CancellationToken,
    /// Bounds the remote-write requests being decoded and appended at once.
    pub write_permits: Arc<tokio::sync::Semaphore>,
    pub engine: Arc<Engine>,
    /// Bounds the queries evaluated at once (`--query.max-concurrency`).
    pub query_permits: Arc<tokio::sync::Semaphore>,
    pub query_metrics: QueryMetrics,
    pub status: Arc<StatusInfo>,
    /// Asks the application to reload its configuration (`POST /-/reload`); the
    /// answer says whether the new configuration was applied.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    /// Long-lived tasks that are down (waiting to be restarted): `/-/ready` says so.
    pub tasks: Arc<crate::supervise::TaskHealth>,
    /// The cluster this node belongs to, once its log started; never set on a single
    /// node.
    pub cluster: Arc<OnceLock<Arc<dyn crate::replication::control::ClusterControl>>>,
    /// Who may call which route (see [`crate::security::auth`]).
    pub auth: Arc<crate::security::auth::Authenticator>,
    /// Headers the web config adds to every response.
    pub response_headers: Vec<(header::HeaderName, header::HeaderValue)>,
}

/// A reload request and where its outcome goes.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

impl ApiShared {
    /// The backends, or a 503 while start-up (WAL replay) is still running.
    fn backends(&self) -> Result<&Backends, response::ApiError> {
        self.backends.get().ok_or_else(|| {
            response::ApiError::unavailable("storage is not ready yet (replaying the WAL)")
        })
    }
}

pub fn router(state: ApiState) -> Router {
    let limit = state.options.write_limits.max_body_bytes;
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/quit", post(quit).put(quit))
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(metrics::serve))
        .route(
            "/api/v1/write",
            post(remote::write).layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/api/v1/read",
            post(remote::read).layer(DefaultBodyLimit::max(limit)),
        )
        .merge(admin::routes())
        .merge(cluster::routes())
        .merge(query::routes())
        .merge(status::routes())
        .merge(targets::routes())
        // After routing, on every route: the role it needs (see `security::auth`).
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            crate::security::auth::require_role,
        ))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            add_response_headers,
        ))
        .with_state(state)
}

/// Adds the web config's `http_server_config.headers` to every answer.
async fn add_response_headers(
    State(s): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(req).await;
    for (name, value) in &s.response_headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn healthy() -> impl IntoResponse {
    (StatusCode::OK, "ODIN is Healthy.\n")
}

/// 200 once storage is open and while every supervised task runs; otherwise 503,
/// naming the tasks that are down and why.
async fn ready(State(s): State<ApiState>) -> impl IntoResponse {
    if s.backends.get().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable\n".to_string(),
        );
    }
    let down = s.tasks.down();
    if down.is_empty() {
        return (StatusCode::OK, "ODIN is Ready.\n".to_string());
    }
    let mut body = String::from("Service Unavailable: tasks down\n");
    for (task, reason) in down {
        body.push_str(&format!("{task}: {reason}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn quit(State(s): State<ApiState>) -> impl IntoResponse {
    if !s.options.enable_lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n");
    }
    s.shutdown.cancel();
    (StatusCode::OK, "Requesting termination... Goodbye!\n")
}

async fn reload(State(s): State<ApiState>) -> impl IntoResponse {
    if !s.options.enable_lifecycle {
        return (
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled.\n".to_string(),
        );
    }
    let Some(tx) = &s.reload else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available\n".to_string(),
        );
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if tx.send(reply).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available (shutting down)\n".to_string(),
        );
    }
    match outcome.await {
        Ok(Ok(())) => (StatusCode::OK, String::new()),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "reload was interrupted\n".to_string(),
        ),
    }
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
}
