//! `/metrics` and the HTTP self-metrics (`odin_http_*`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type HandlerCode = Vec<(String, String)>;

#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<HandlerCode, Counter>,
    duration: Family<Vec<(String, String)>, Histogram>,
}

impl HttpMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0])
            }),
        };
        let r = registry.sub_registry_with_prefix("odin_http");
        r.register(
            "requests",
            "HTTP requests by handler and status code",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "HTTP request latency by handler",
            m.duration.clone(),
        );
        m
    }
}

/// The query engine's self-metrics (`odin_engine_*`, after Prometheus's
/// `prometheus_engine_*`).
#[derive(Clone)]
pub struct QueryMetrics {
    /// Queries being parsed and evaluated now. Counted on the thread that evaluates
    /// them, so a query whose client went away leaves it when its evaluation has in
    /// fact stopped, not when the request ended.
    queries: Gauge,
    queries_concurrent_max: Gauge,
}

impl QueryMetrics {
    pub fn new(registry: &mut Registry, max_concurrency: usize) -> Self {
        let m = Self {
            queries: Gauge::default(),
            queries_concurrent_max: Gauge::default(),
        };
        m.queries_concurrent_max
            .set(i64::try_from(max_concurrency).unwrap_or(i64::MAX));
        let r = registry.sub_registry_with_prefix("odin_engine");
        r.register("queries", "Queries being evaluated now", m.queries.clone());
        r.register(
            "queries_concurrent_max",
            "Queries evaluated at once at most (--query.max-concurrency)",
            m.queries_concurrent_max.clone(),
        );
        m
    }

    /// Counts a query as being evaluated until the returned guard is dropped.
    pub fn evaluating(&self) -> EvaluatingQuery {
        self.queries.inc();
        EvaluatingQuery(self.queries.clone())
    }
}

/// See [`QueryMetrics::evaluating`].
pub struct EvaluatingQuery(Gauge);

impl Drop for EvaluatingQuery {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts and times every request by its route pattern (never the raw path, which
/// would let clients create unbounded label values).
pub async fn track(State(s): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    s.requests
        .get_or_create(&vec![
            ("handler".into(), handler.clone()),
            ("code".into(), code),
        ])
        .inc();
    s.duration
        .get_or_create(&vec![("handler".into(), handler)])
        .observe(start.elapsed().as_secs_f64());
    resp
}

pub async fn serve(State(registry): State<Arc<Registry>>) -> Response {
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encode metrics: {e}"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
