//! `/metrics` and the HTTP self-metrics (`odin_http_*`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::ApiState;

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

/// Counts and times every request by its route pattern (never the raw path, which
/// would let clients create unbounded label values).
pub async fn track(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    s.http_metrics
        .requests
        .get_or_create(&vec![
            ("handler".into(), handler.clone()),
            ("code".into(), code),
        ])
        .inc();
    s.http_metrics
        .duration
        .get_or_create(&vec![("handler".into(), handler)])
        .observe(start.elapsed().as_secs_f64());
    resp
}

pub async fn serve(State(s): State<ApiState>) -> Response {
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &s.registry) {
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
