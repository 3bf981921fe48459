//! The HTTP surface (axum), in areas that each have their own state and routes:
//! lifecycle (health, readiness, quit, reload), `/metrics`, remote write and read
//! (`remote`), queries (`query`, every path through the query gate of `bounded`),
//! the TSDB admin API (`admin`), the cluster (`cluster`), status (`status`) and
//! targets (`targets`). [`router`] puts them together under the one role check
//! ([`crate::security::auth::ROUTE_ROLES`]). It sees storage only through the
//! `storage` traits; errors meet HTTP in [`response`].

mod admin;
mod bounded;
mod cluster;
mod loki;
mod metrics;
mod query;
mod remote;
pub mod response;
mod rules;
mod serve;
mod status;
mod targets;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
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
    /// Log lines: Loki's push and queries.
    pub logs: Arc<dyn crate::logs::LogStorage>,
    /// The scrape manager, for `/api/v1/targets` and metadata; `None` in tests that
    /// run the API without scraping.
    pub scrape: Option<Arc<crate::scrape::ScrapeManager>>,
    /// The rule groups, for `/api/v1/rules`; `None` where nothing evaluates rules.
    pub rules: Option<Arc<crate::rules::RuleManager>>,
}

/// Switches that Prometheus exposes as flags.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub enable_admin_api: bool,
    pub enable_lifecycle: bool,
    /// `--web.cors.origin`: the browsers' origins the API answers for.
    pub cors_origin: CorsOrigin,
    /// `--web.enable-remote-write-receiver` (on unless turned off).
    pub remote_write_receiver: bool,
    pub write_limits: WriteLimits,
    /// `global.external_labels`: added to what remote read returns.
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// Whether this node runs in a cluster (its handle arrives once storage opened).
    pub clustered: bool,
    /// Loki's per-tenant limits on pushes (`--logs.*` flags).
    pub log_limits: crate::logs::push::PushLimits,
}

/// The storage the API serves: empty until start-up opened it (WAL replay); every
/// area that reads or writes series holds one.
#[derive(Clone)]
pub struct Storage(Arc<OnceLock<Backends>>);

impl Storage {
    pub fn new(cell: Arc<OnceLock<Backends>>) -> Self {
        Self(cell)
    }

    /// The backends, or a 503 while start-up (WAL replay) is still running.
    fn get(&self) -> Result<&Backends, response::ApiError> {
        self.0.get().ok_or_else(|| {
            response::ApiError::unavailable("storage is not ready yet (replaying the WAL)")
        })
    }

    fn is_open(&self) -> bool {
        self.0.get().is_some()
    }
}

/// What the HTTP API is built from. Each area of the API (queries, remote
/// write and read, admin, cluster, status, targets, lifecycle, `/metrics`) takes
/// only its part of it as its own state ([`router`]).
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

/// Health, readiness and the lifecycle API (`--web.enable-lifecycle`).
#[derive(Clone)]
struct LifecycleApi {
    storage: Storage,
    tasks: Arc<crate::supervise::TaskHealth>,
    shutdown: CancellationToken,
    reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    enabled: bool,
}

/// The HTTP API: each area with its own state and routes, then, on every route,
/// the role it needs ([`crate::security::auth::ROUTE_ROLES`]), request metrics and
/// the web config's response headers.
pub fn router(a: ApiShared) -> Router {
    let storage = Storage::new(a.backends.clone());
    let gate = bounded::QueryGate {
        engine: a.engine.clone(),
        permits: a.query_permits.clone(),
        metrics: a.query_metrics.clone(),
        shutdown: a.shutdown.clone(),
    };
    let lifecycle = LifecycleApi {
        storage: storage.clone(),
        tasks: a.tasks.clone(),
        shutdown: a.shutdown.clone(),
        reload: a.reload.clone(),
        enabled: a.options.enable_lifecycle,
    };
    let response_headers = Arc::new(a.response_headers);
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        // Loki's readiness path, for clients and probes set up for Loki.
        .route("/ready", get(loki_ready).head(loki_ready))
        .route("/-/quit", post(quit).put(quit))
        .route("/-/reload", post(reload).put(reload))
        .with_state(lifecycle)
        .route(
            "/metrics",
            get(metrics::serve).with_state(a.registry.clone()),
        )
        .merge(remote::routes(remote::RemoteApi {
            storage: storage.clone(),
            gate: gate.clone(),
            receiver: a.options.remote_write_receiver,
            write_limits: a.options.write_limits,
            write_permits: a.write_permits.clone(),
            external_labels: Arc::new(a.options.external_labels.clone()),
        }))
        .merge(admin::routes(admin::AdminApi {
            storage: storage.clone(),
            enabled: a.options.enable_admin_api,
        }))
        .merge(cluster::routes(cluster::ClusterApi {
            cluster: a.cluster.clone(),
            clustered: a.options.clustered,
            admin_enabled: a.options.enable_admin_api,
        }))
        .merge(loki::routes(loki::LokiApi {
            storage: storage.clone(),
            gate: gate.clone(),
            limiter: Arc::new(crate::logs::tenant::IngestionLimiter::new(
                a.options.log_limits.ingestion_rate_mb,
                a.options.log_limits.ingestion_burst_size_mb,
            )),
            limits: Arc::new(a.options.log_limits.clone()),
            max_body_bytes: a.options.write_limits.max_body_bytes,
            tails: Arc::new(tokio::sync::Semaphore::new(loki::MAX_CONCURRENT_TAILS)),
        }))
        .merge(query::routes(query::QueryApi {
            storage: storage.clone(),
            gate,
            external_labels: Arc::new(a.options.external_labels.clone()),
        }))
        .merge(status::routes(status::StatusApi {
            storage: storage.clone(),
            status: a.status.clone(),
        }))
        .merge(rules::routes(rules::RulesApi {
            storage: storage.clone(),
        }))
        .merge(targets::routes(targets::TargetsApi { storage }))
        // After routing, on every route: the role it needs (see `security::auth`).
        .route_layer(axum::middleware::from_fn_with_state(
            a.auth.clone(),
            crate::security::auth::require_role,
        ))
        .fallback(not_found)
        // Before the role check (a route layer): preflights carry no credentials.
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(a.options.cors_origin),
            cors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            a.http_metrics.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            response_headers,
            add_response_headers,
        ))
}

/// `--web.cors.origin`, as Prometheus's: an anchored regex; `.*` lets any origin
/// read (`Access-Control-Allow-Origin: *`).
#[derive(Debug, Clone, Default)]
pub enum CorsOrigin {
    #[default]
    Any,
    Matching(regex::Regex),
}

impl CorsOrigin {
    pub fn new(pattern: &str) -> Result<CorsOrigin, regex::Error> {
        if pattern == ".*" {
            return Ok(CorsOrigin::Any);
        }
        regex::Regex::new(&format!("^(?:{pattern})$")).map(CorsOrigin::Matching)
    }
}

/// Prometheus's CORS on its HTTP API (`/api/v1/…`): a request naming an `Origin`
/// gets the allowed methods and headers, and the origin back where the regex takes
/// it; a preflight (`OPTIONS`) is answered here, before any role check, since
/// browsers send it without credentials (it reads nothing).
async fn cors(
    State(origins): State<Arc<CorsOrigin>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = if req.method() == axum::http::Method::OPTIONS {
        response::success(serde_json::Value::Null)
    } else {
        next.run(req).await
    };
    let Some(origin) = origin else {
        return response;
    };
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Accept, Authorization, Content-Type, Origin",
        ),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
        (header::ACCESS_CONTROL_EXPOSE_HEADERS, "Date"),
        (header::VARY, "Origin"),
    ] {
        h.insert(name, header::HeaderValue::from_static(value));
    }
    match origins.as_ref() {
        CorsOrigin::Any => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                header::HeaderValue::from_static("*"),
            );
        }
        CorsOrigin::Matching(re) => {
            if origin.to_str().is_ok_and(|o| re.is_match(o)) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
        }
    }
    response
}

/// Adds the web config's `http_server_config.headers` to every answer.
async fn add_response_headers(
    State(headers): State<Arc<Vec<(header::HeaderName, header::HeaderValue)>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(req).await;
    for (name, value) in headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn healthy() -> impl IntoResponse {
    (StatusCode::OK, "ODIN is Healthy.\n")
}

/// 200 once storage is open and while every supervised task runs; otherwise 503,
/// naming the tasks that are down and why.
async fn ready(State(s): State<LifecycleApi>) -> impl IntoResponse {
    readiness(&s, "ODIN is Ready.\n")
}

/// Loki's `/ready`: the same check, answering Loki's `ready` (probes written for
/// Loki match that word).
async fn loki_ready(State(s): State<LifecycleApi>) -> impl IntoResponse {
    readiness(&s, "ready\n")
}

fn readiness(s: &LifecycleApi, ready: &str) -> (StatusCode, String) {
    if !s.storage.is_open() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable\n".to_string(),
        );
    }
    let down = s.tasks.down();
    if down.is_empty() {
        return (StatusCode::OK, ready.to_string());
    }
    let mut body = String::from("Service Unavailable: tasks down\n");
    for (task, reason) in down {
        body.push_str(&format!("{task}: {reason}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn quit(State(s): State<LifecycleApi>) -> impl IntoResponse {
    if !s.enabled {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n");
    }
    s.shutdown.cancel();
    (StatusCode::OK, "Requesting termination... Goodbye!\n")
}

async fn reload(State(s): State<LifecycleApi>) -> impl IntoResponse {
    if !s.enabled {
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
