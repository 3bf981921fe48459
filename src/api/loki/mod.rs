//! Loki's HTTP API, as far as it is built: `POST /loki/api/v1/push`, and the log
//! queries of `query_range`, with `labels`, `label/<name>/values` and `series`.
//! Answers and errors are Loki's: JSON in Loki's shapes, errors as plain text with
//! Loki's status codes and wording. Every request belongs to the tenant its
//! `X-Scope-OrgID` names (none: `fake`), and sees only that tenant's streams.

mod index;
mod tail;

pub use tail::MAX_CONCURRENT_TAILS;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::Storage;
use super::admin::form_params;
use super::bounded::{QueryGate, run_bounded};
use super::response::{ApiError, ErrorType};
use crate::log::record::{LogBatch, LogLine, LogStream};
use crate::logs::logql::ast::{Expr, MetricExpr, VectorOp};
use crate::logs::logql::parser::{parse, parse_duration};
use crate::logs::logql::pipeline::Pipeline;
use crate::logs::metric::{
    Context as MetricContext, Evaluated, MAX_POINTS, MetricError, StepSeries, Steps, evaluate,
};
use crate::logs::push::{self, PushLimits};
use crate::logs::query::{self, Direction, LogRange, ReadStats, StreamResult};
use crate::logs::tenant::{IngestionLimiter, tenant_of};
use crate::model::Matcher;

/// `max_entries_limit_per_query`.
pub const MAX_ENTRIES_LIMIT_PER_QUERY: usize = 5000;
/// `max_query_length`: 30 days and an hour.
pub const MAX_QUERY_LENGTH_NS: i64 = 721 * 3600 * NS;
/// The largest push body once decompressed.
const MAX_PUSH_BYTES: usize = 64 << 20;

const NS: i64 = 1_000_000_000;

/// The Loki area: push and queries of log lines.
#[derive(Clone)]
pub struct LokiApi {
    pub storage: Storage,
    pub gate: QueryGate,
    pub limiter: Arc<IngestionLimiter>,
    pub limits: Arc<PushLimits>,
    /// The largest push body as sent (compressed).
    pub max_body_bytes: usize,
    /// Bounds the live tails open at once.
    pub tails: Arc<tokio::sync::Semaphore>,
}

/// The Loki version whose API this one answers as, for clients that gate features
/// on it (Grafana's Loki datasource reads it from `status/buildinfo`). 2.9: ODIN
/// has its endpoints, not Loki 3's (`detected_fields`, `patterns`,
/// `index/volume_range`), which clients that see 3.x call (Logs Drilldown).
pub const LOKI_API_VERSION: &str = "2.9.10";

pub fn routes(state: LokiApi) -> Router {
    use axum::extract::DefaultBodyLimit;
    let limit = state.max_body_bytes;
    Router::new()
        .route(
            "/loki/api/v1/push",
            post(push_lines).layer(DefaultBodyLimit::max(limit)),
        )
        // Loki's legacy push path, which older clients (Docker's driver, old
        // Fluent Bit and Fluentd plugins) still use.
        .route(
            "/api/prom/push",
            post(legacy_push).layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/loki/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/loki/api/v1/query", get(instant_query).post(instant_query))
        .route("/loki/api/v1/labels", get(labels).post(labels))
        // Loki's older name for the same.
        .route("/loki/api/v1/label", get(labels).post(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values))
        .route("/loki/api/v1/series", get(series).post(series))
        .route("/loki/api/v1/tail", get(tail::tail))
        .route(
            "/loki/api/v1/index/stats",
            get(index::stats).post(index::stats),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(index::volume).post(index::volume),
        )
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/loki/api/v1/format_query",
            get(format_query).post(format_query),
        )
        .with_state(state)
}

/// `GET|POST /loki/api/v1/format_query`: the query written canonically on one line
/// (`logql::format`); a query that does not parse is a 400 with where and why.
async fn format_query(
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let expr =
        parse(param(&params, "query").unwrap_or("")).map_err(|e| bad_request(e.to_string()))?;
    Ok(json(serde_json::json!({
        "status": "success",
        "data": crate::logs::logql::format::format(&expr),
    })))
}

/// `GET /loki/api/v1/status/buildinfo`, as Loki's (not wrapped in `data`).
async fn buildinfo() -> Response {
    json(serde_json::json!({
        "version": LOKI_API_VERSION,
        "revision": format!("odin-{}", env!("CARGO_PKG_VERSION")),
        "branch": "odin",
        "buildUser": "odin",
        "buildDate": "",
        "goVersion": "none (ODIN is written in Rust)",
    }))
}

/// A storage error of a query: what the query asked wrong (too many lines) is the
/// client's (400), the rest the server's.
fn storage_error(e: crate::storage::StorageError) -> ApiError {
    match e.kind() {
        crate::storage::ErrorKind::BadData => ApiError::new(ErrorType::BadData, e.to_string()),
        // The bucket (or the cluster) cannot answer now: a client may retry.
        crate::storage::ErrorKind::Unavailable => {
            ApiError::new(ErrorType::Unavailable, e.to_string())
        }
        _ => ApiError::new(ErrorType::Internal, e.to_string()),
    }
}

/// An error as Loki answers it: a status and a plain-text message.
struct LokiError(StatusCode, String);

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        let LokiError(code, mut msg) = self;
        msg.push('\n');
        (
            code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            msg,
        )
            .into_response()
    }
}

fn text(code: StatusCode, msg: impl Into<String>) -> LokiError {
    LokiError(code, msg.into())
}

fn bad_request(msg: impl Into<String>) -> LokiError {
    text(StatusCode::BAD_REQUEST, msg)
}

/// An error of the shared query gate (timeout, overload, shutdown) in Loki's form.
fn gate_error(e: ApiError) -> LokiError {
    let code = match e.kind {
        ErrorType::BadData => StatusCode::BAD_REQUEST,
        ErrorType::Timeout | ErrorType::Canceled => StatusCode::GATEWAY_TIMEOUT,
        ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(code, e.message)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn tenant(headers: &HeaderMap) -> Result<String, LokiError> {
    // Read whatever bytes came, so that a header that is not visible ASCII is
    // refused for its character rather than taken as absent (tenant `fake`).
    let id = headers
        .get("x-scope-orgid")
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    tenant_of(id.as_deref()).map_err(bad_request)
}

/// `POST /loki/api/v1/push`: 204 once every line is durable; 400 naming what was
/// dropped (bad labels, too old, too long, …) after storing the rest, as Loki's
/// distributor; 429 over the tenant's rate or stream limit (nothing stored).
/// `POST /api/prom/push`: Loki's legacy path. Its protobuf is today's; its JSON is
/// an older shape (`labels` text, `entries` of `ts` and `line`) that ODIN does not
/// read, and refuses by name rather than storing an empty stream.
async fn legacy_push(
    state: State<LokiApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let json = header_str(&headers, "content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        return Err(bad_request(
            "the legacy JSON push format is not supported: push JSON to /loki/api/v1/push (protobuf is taken on either path)",
        ));
    }
    push_lines(state, headers, body).await
}

async fn push_lines(
    State(s): State<LokiApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let tenant = match tenant(&headers) {
        Ok(t) => t,
        Err(r) => return Err(r),
    };
    let storage = match s.storage.get() {
        Ok(b) => b.logs.clone(),
        Err(e) => return Err(text(StatusCode::SERVICE_UNAVAILABLE, e.message)),
    };
    let content_type = header_str(&headers, "content-type").map(str::to_string);
    let content_encoding = header_str(&headers, "content-encoding").map(str::to_string);
    let limits = s.limits.clone();
    let limiter = s.limiter.clone();
    let tenant_for_check = tenant.clone();
    // Decoding and checking are CPU work on the request's bytes: off the scheduler.
    let prepared = tokio::task::spawn_blocking(move || {
        prepare_push(
            &tenant_for_check,
            content_type.as_deref(),
            content_encoding.as_deref(),
            &body,
            &limits,
            &limiter,
            storage.as_ref(),
        )
    })
    .await;
    let (batch, errors) = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(refused)) => return Err(refused),
        Err(e) => {
            return Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("push task failed: {e}"),
            ));
        }
    };
    let mut errors = errors;
    if !batch.streams.is_empty() {
        let storage = match s.storage.get() {
            Ok(b) => b.logs.clone(),
            Err(e) => return Err(text(StatusCode::SERVICE_UNAVAILABLE, e.message)),
        };
        match storage.push(batch).await {
            Ok(summary) => {
                if summary.out_of_order > 0 {
                    errors.add(format!(
                        "{} entries too far behind their stream: older than its newest entry by more than {}",
                        summary.out_of_order,
                        humantime(crate::logs::store::OUT_OF_ORDER_WINDOW_NS)
                    ));
                }
                if summary.out_of_bounds > 0 {
                    errors.add(format!(
                        "{} entries have timestamps too old: their time window is already sealed",
                        summary.out_of_bounds
                    ));
                }
            }
            Err(e) => {
                let code = match e.kind() {
                    crate::storage::ErrorKind::BadData => StatusCode::BAD_REQUEST,
                    crate::storage::ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    crate::storage::ErrorKind::InsufficientStorage => {
                        StatusCode::INSUFFICIENT_STORAGE
                    }
                    crate::storage::ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                };
                if code.is_server_error() {
                    tracing::error!(tenant, error = %e, "log push not committed");
                }
                return Err(text(code, format!("storage: {e}")));
            }
        }
    }
    if errors.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Err(bad_request(errors.grouped()))
}

/// A push's lines as one log entry, and the messages of what was dropped; or the
/// answer refusing it whole.
fn prepare_push(
    tenant: &str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &PushLimits,
    limiter: &IngestionLimiter,
    storage: &dyn crate::logs::LogStorage,
) -> Result<(LogBatch, push::PushErrors), LokiError> {
    let (format, plain) = push::decompress(content_type, content_encoding, body, MAX_PUSH_BYTES)
        .map_err(|e| match e {
            push::PushError::Encoding(_) => text(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
            e => bad_request(e.to_string()),
        })?;
    let streams = push::decode(format, &plain).map_err(|e| bad_request(e.to_string()))?;
    let checked = push::check(
        streams,
        limits,
        crate::model::now_ms().saturating_mul(1_000_000),
    );
    if checked.lines > 0 {
        limiter
            .admit(
                tenant,
                checked.lines,
                checked.bytes,
                checked.charged,
                Instant::now(),
            )
            .map_err(|m| text(StatusCode::TOO_MANY_REQUESTS, m))?;
    }
    // Streams the tenant does not have yet count against its limit (checked here,
    // before the entry: two pushes at once may pass it by a few streams).
    let mut active = storage.active_streams(tenant);
    let mut batch = LogBatch {
        tenant: tenant.to_string(),
        positions: Vec::new(),
        streams: Vec::with_capacity(checked.streams.len()),
    };
    for stream in checked.streams {
        if !storage.is_active_stream(tenant, &stream.labels) {
            if limits.max_streams_per_tenant > 0 && active >= limits.max_streams_per_tenant {
                return Err(text(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}'",
                        stream.labels
                    ),
                ));
            }
            active += 1;
        }
        let lines = stream
            .entries
            .into_iter()
            .map(|e| LogLine {
                ts_ns: e.ts_ns,
                text: e.line.into_owned(),
                metadata: e
                    .metadata
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            })
            .collect();
        batch.streams.push(LogStream {
            labels: stream.labels,
            lines,
        });
    }
    Ok((batch, checked.errors))
}

/// A duration in Go's form (`1h0m0s`), for messages.
fn humantime(ns: i64) -> String {
    let s = ns / NS;
    format!("{}h{}m{}s", s / 3600, s / 60 % 60, s % 60)
}

/// A time parameter as Loki reads one: a float of seconds when it has a `.`, an
/// integer (seconds with at most 10 digits, else nanoseconds), or RFC 3339.
pub fn loki_time(value: &str) -> Result<i64, String> {
    if value.contains('.')
        && let Ok(f) = value.parse::<f64>()
    {
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round() / 1000.0;
        return Ok((secs as i64)
            .saturating_mul(NS)
            .saturating_add((frac * NS as f64) as i64));
    }
    match value.parse::<i64>() {
        Ok(n) if value.trim_start_matches('-').len() <= 10 => Ok(n.saturating_mul(NS)),
        Ok(n) => Ok(n),
        Err(_) => chrono::DateTime::parse_from_rfc3339(value)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| format!("cannot parse \"{value}\" to a valid timestamp")),
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `start`, `end` and `since` as Loki combines them: `end` defaults to now, `start`
/// to `end` minus `since` (or `default_since`).
fn bounds(params: &[(String, String)], default_since_ns: i64) -> Result<(i64, i64), String> {
    let now = crate::model::now_ms().saturating_mul(1_000_000);
    let end = param(params, "end")
        .map(loki_time)
        .transpose()?
        .unwrap_or(now);
    let since = match param(params, "since") {
        Some(d) => {
            let secs =
                parse_duration(d).ok_or_else(|| format!("cannot parse \"{d}\": not a duration"))?;
            (secs * NS as f64) as i64
        }
        None => default_since_ns,
    };
    let start = param(params, "start")
        .map(loki_time)
        .transpose()?
        .unwrap_or(end.saturating_sub(since));
    Ok((start, end))
}

/// `GET|POST /loki/api/v1/query_range`: a log query's `streams`, or a metric
/// query's `matrix` evaluated at every step.
async fn query_range(
    State(s): State<LokiApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let tenant = tenant(&headers)?;
    let params = form_params(q.as_deref(), &headers, &body);
    let (expr, range) = range_request(&params).map_err(bad_request)?;
    let storage = s.storage.get().map_err(unavailable)?.logs.clone();
    let started = Instant::now();
    let expr = match expr {
        Expr::Log(expr) => {
            let pipeline = Pipeline::new(&expr.pipeline).map_err(bad_request)?;
            let interval_ns = interval_param(&params)?;
            let answer = run_bounded(&s.gate, None, None, move |limits| {
                let selected = storage
                    .select(
                        &tenant,
                        &expr.selector,
                        range.start_ns,
                        range.end_ns,
                        &query::needles(&expr.pipeline),
                    )
                    .map_err(storage_error)?;
                query::run::<ApiError>(&pipeline, selected, &range, interval_ns, || {
                    limits.check("log query").map_err(ApiError::from)
                })
            })
            .await
            .map_err(gate_error)?;
            let (streams, stats) = answer;
            return Ok(streams_json(
                &streams,
                &stats,
                started.elapsed().as_secs_f64(),
            ));
        }
        Expr::Metric(m) => m,
    };
    let step_ns = step_param(&params, range.start_ns, range.end_ns)?;
    let steps = Steps {
        start_ns: range.start_ns,
        end_ns: range.end_ns,
        step_ns,
    };
    let sorting = sorting_of(&expr);
    let (value, processed) = evaluate_metric(&s, tenant, expr, steps, storage).await?;
    Ok(metric_json(
        &value,
        &steps,
        false,
        sorting,
        processed,
        started.elapsed().as_secs_f64(),
    ))
}

/// `GET|POST /loki/api/v1/query`: a metric query at one time (`time`, default now):
/// a `vector` (or a `scalar`). Log queries are refused, as Loki refuses them.
async fn instant_query(
    State(s): State<LokiApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let tenant = tenant(&headers)?;
    let params = form_params(q.as_deref(), &headers, &body);
    let text = param(&params, "query").unwrap_or("");
    let expr = match parse(text).map_err(|e| bad_request(e.to_string()))? {
        Expr::Log(_) => {
            return Err(bad_request(
                "log queries are not supported as an instant query type, please change your query to a range query type",
            ));
        }
        Expr::Metric(m) => m,
    };
    let now = crate::model::now_ms().saturating_mul(1_000_000);
    let t = param(&params, "time")
        .map(loki_time)
        .transpose()
        .map_err(bad_request)?
        .unwrap_or(now);
    let storage = s.storage.get().map_err(unavailable)?.logs.clone();
    let started = Instant::now();
    let steps = Steps::instant(t);
    let sorting = sorting_of(&expr);
    let (value, processed) = evaluate_metric(&s, tenant, expr, steps, storage).await?;
    Ok(metric_json(
        &value,
        &steps,
        true,
        sorting,
        processed,
        started.elapsed().as_secs_f64(),
    ))
}

/// How an instant vector's answer is ordered: by labels, or by value where the
/// query ends in `sort` (ascending) or `sort_desc`.
fn sorting_of(expr: &MetricExpr) -> Option<bool> {
    match expr {
        MetricExpr::Vector {
            op: VectorOp::Sort, ..
        } => Some(false),
        MetricExpr::Vector {
            op: VectorOp::SortDesc,
            ..
        } => Some(true),
        _ => None,
    }
}

fn unavailable(e: ApiError) -> LokiError {
    text(StatusCode::SERVICE_UNAVAILABLE, e.message)
}

/// Evaluates a metric query under the query gate: the value and the lines and
/// bytes it read.
async fn evaluate_metric(
    s: &LokiApi,
    tenant: String,
    expr: MetricExpr,
    steps: Steps,
    storage: Arc<dyn crate::logs::LogStorage>,
) -> Result<(Evaluated, (u64, u64)), LokiError> {
    let max_points = s.gate.engine.options().max_samples;
    let answer = run_bounded(&s.gate, None, None, move |limits| {
        let select = |m: &[Matcher], lo: i64, hi: i64, needles: &[String]| {
            storage
                .select(&tenant, m, lo, hi, needles)
                .map_err(|e| e.to_string())
        };
        let keep_going = || limits.check("metric query").map_err(|e| e.to_string());
        let ctx = MetricContext {
            select: &select,
            keep_going: &keep_going,
            max_points,
            processed: Default::default(),
        };
        match evaluate(&expr, &steps, &ctx) {
            Ok(v) => Ok(Ok((v, ctx.processed.get()))),
            Err(e) => Ok(Err(e)),
        }
    })
    .await
    .map_err(gate_error)?;
    answer.map_err(|e| match e {
        MetricError::BadQuery(m) => bad_request(m),
        MetricError::Failed(m) => text(StatusCode::UNPROCESSABLE_ENTITY, m),
    })
}

/// `step`: seconds (a float) or a duration; by default Loki's: the range over 250,
/// at least a second. At most [`MAX_POINTS`] steps.
fn step_param(params: &[(String, String)], start_ns: i64, end_ns: i64) -> Result<i64, LokiError> {
    let step_ns = match param(params, "step") {
        Some(v) => match v.parse::<f64>() {
            Ok(secs) => (secs * NS as f64) as i64,
            Err(_) => parse_duration(v)
                .map(|secs| (secs * NS as f64) as i64)
                .ok_or_else(|| bad_request(format!("cannot parse \"{v}\" to a valid duration")))?,
        },
        None => (end_ns.saturating_sub(start_ns) / NS / 250).max(1) * NS,
    };
    if step_ns <= 0 {
        return Err(bad_request(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if end_ns.saturating_sub(start_ns) / step_ns > MAX_POINTS {
        return Err(bad_request(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    Ok(step_ns)
}

/// `interval` of a log query: at most one line per interval, as Loki thins them.
fn interval_param(params: &[(String, String)]) -> Result<i64, LokiError> {
    match param(params, "interval") {
        None => Ok(0),
        Some(v) => {
            let secs = v
                .parse::<f64>()
                .ok()
                .or_else(|| parse_duration(v))
                .ok_or_else(|| bad_request(format!("cannot parse \"{v}\" to a valid duration")))?;
            if secs < 0.0 {
                return Err(bad_request("interval must be positive"));
            }
            Ok((secs * NS as f64) as i64)
        }
    }
}

/// A time in seconds as Prometheus's JSON writes one: `1700000000` or
/// `1700000000.5` (millisecond precision).
fn seconds_json(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    let (s, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:03}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

/// A sample value as Go's `FormatFloat(v, 'f', -1, 64)` writes it.
fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn metric_json(
    value: &Evaluated,
    steps: &Steps,
    instant: bool,
    sorting: Option<bool>,
    processed: (u64, u64),
    seconds: f64,
) -> Response {
    let per_second = |n: u64| {
        if seconds > 0.0 {
            (n as f64 / seconds) as u64
        } else {
            0
        }
    };
    let stats = serde_json::json!({"summary": {
        "bytesProcessedPerSecond": per_second(processed.1),
        "linesProcessedPerSecond": per_second(processed.0),
        "totalBytesProcessed": processed.1,
        "totalLinesProcessed": processed.0,
        "execTime": seconds,
    }});
    let (kind, result) = match value {
        Evaluated::Scalar(v) if instant => (
            "scalar",
            format!(
                "[{},{}]",
                seconds_json(steps.start_ns),
                serde_json::Value::from(value_text(*v))
            ),
        ),
        Evaluated::Scalar(v) => {
            let points: Vec<String> = (0..steps.len())
                .map(|i| {
                    format!(
                        "[{},{}]",
                        seconds_json(steps.at(i)),
                        serde_json::Value::from(value_text(*v))
                    )
                })
                .collect();
            (
                "matrix",
                format!("[{{\"metric\":{{}},\"values\":[{}]}}]", points.join(",")),
            )
        }
        Evaluated::Vector(series) if instant => {
            let mut present: Vec<(&StepSeries, f64)> = series
                .iter()
                .filter_map(|s| s.points.first().copied().flatten().map(|v| (s, v)))
                .collect();
            match sorting {
                Some(false) => present.sort_by(|a, b| a.1.total_cmp(&b.1)),
                Some(true) => present.sort_by(|a, b| b.1.total_cmp(&a.1)),
                None => {}
            }
            let items: Vec<String> = present
                .iter()
                .map(|(s, v)| {
                    format!(
                        "{{\"metric\":{},\"value\":[{},{}]}}",
                        labels_object(&s.labels),
                        seconds_json(steps.start_ns),
                        serde_json::Value::from(value_text(*v))
                    )
                })
                .collect();
            ("vector", format!("[{}]", items.join(",")))
        }
        Evaluated::Vector(series) => {
            let items: Vec<String> = series
                .iter()
                .map(|s| {
                    let points: Vec<String> = s
                        .points
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| {
                            p.map(|v| {
                                format!(
                                    "[{},{}]",
                                    seconds_json(steps.at(i)),
                                    serde_json::Value::from(value_text(v))
                                )
                            })
                        })
                        .collect();
                    format!(
                        "{{\"metric\":{},\"values\":[{}]}}",
                        labels_object(&s.labels),
                        points.join(",")
                    )
                })
                .collect();
            ("matrix", format!("[{}]", items.join(",")))
        }
    };
    let body = format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"{kind}\",\"result\":{result},\"stats\":{stats}}}}}"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `limit` (default 100) as Loki reads it.
fn limit_param(params: &[(String, String)]) -> Result<usize, LokiError> {
    match param(params, "limit") {
        Some(l) => l
            .parse::<u32>()
            .map(|n| n as usize)
            .map_err(|_| bad_request(format!("cannot parse \"{l}\" to a valid limit"))),
        None => Ok(100),
    }
}

/// The query, range, limit and direction of a `query_range` request, checked as
/// Loki checks them.
fn range_request(params: &[(String, String)]) -> Result<(Expr, LogRange), String> {
    let text = param(params, "query").unwrap_or("");
    let expr = parse(text).map_err(|e| e.to_string())?;
    let limit = limit_param(params).map_err(|e| e.1)?;
    if limit == 0 {
        return Err("limit must be a positive value".into());
    }
    if limit > MAX_ENTRIES_LIMIT_PER_QUERY {
        return Err(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {MAX_ENTRIES_LIMIT_PER_QUERY})"
        ));
    }
    let (start_ns, end_ns) = bounds(params, 3600 * NS)?;
    if end_ns < start_ns {
        return Err("end timestamp must not be before or equal to start time".into());
    }
    if end_ns.saturating_sub(start_ns) > MAX_QUERY_LENGTH_NS {
        return Err(format!(
            "the query time range exceeds the limit (query length: {}, limit: {})",
            humantime(end_ns.saturating_sub(start_ns)),
            humantime(MAX_QUERY_LENGTH_NS)
        ));
    }
    let direction = match param(params, "direction")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("backward") => Direction::Backward,
        Some("forward") => Direction::Forward,
        Some(d) => return Err(format!("invalid direction '{d}'")),
    };
    Ok((
        expr,
        LogRange {
            start_ns,
            end_ns,
            limit,
            direction,
        },
    ))
}

fn json(value: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

fn labels_object(pairs: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// Loki's answer to a log query, with the summary of its statistics.
fn streams_json(streams: &[StreamResult], stats: &ReadStats, seconds: f64) -> Response {
    let result: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| {
            let values: Vec<serde_json::Value> = s
                .entries
                .iter()
                .map(|(ts, line)| serde_json::json!([ts.to_string(), line]))
                .collect();
            serde_json::json!({"stream": labels_object(&s.labels), "values": values})
        })
        .collect();
    let per_second = |n: u64| {
        if seconds > 0.0 {
            (n as f64 / seconds) as u64
        } else {
            0
        }
    };
    let stats = serde_json::json!({
        "summary": {
            "bytesProcessedPerSecond": per_second(stats.bytes_processed),
            "linesProcessedPerSecond": per_second(stats.lines_processed),
            "totalBytesProcessed": stats.bytes_processed,
            "totalLinesProcessed": stats.lines_processed,
            "totalStructuredMetadataBytesProcessed": stats.structured_metadata_bytes,
            "totalEntriesReturned": stats.lines_returned,
            "totalPostFilterLines": stats.lines_returned,
            "execTime": seconds,
            "queueTime": 0,
            "subqueries": 0,
            "splits": 0,
            "shards": 0
        }
    });
    // Written in Loki's order (`resultType` before `result`), as metric answers
    // are: clients that parse in one pass need the type first.
    let body = format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"streams\",\"result\":{},\"stats\":{stats}}}}}",
        serde_json::Value::Array(result)
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The label sets of the tenant's streams in the request's range (6 h by default),
/// kept where `selectors` is empty or one of them matches.
async fn stream_sets(
    s: &LokiApi,
    headers: &HeaderMap,
    params: &[(String, String)],
    selectors: Vec<Vec<Matcher>>,
) -> Result<Vec<crate::model::Labels>, LokiError> {
    let tenant = tenant(headers)?;
    let (start, end) = bounds(params, 6 * 3600 * NS).map_err(bad_request)?;
    let storage = match s.storage.get() {
        Ok(b) => b.logs.clone(),
        Err(e) => return Err(text(StatusCode::SERVICE_UNAVAILABLE, e.message)),
    };
    run_bounded(&s.gate, None, None, move |_| {
        let all = storage
            .streams(&tenant, start, end.saturating_add(1))
            .map_err(|e| ApiError::new(ErrorType::Internal, e.to_string()))?;
        Ok(all
            .into_iter()
            .filter(|l| {
                selectors.is_empty()
                    || selectors
                        .iter()
                        .any(|ms| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            })
            .collect())
    })
    .await
    .map_err(gate_error)
}

/// A stream selector parameter (`{a="b"}`), parsed as LogQL parses one.
fn selector(text: &str) -> Result<Vec<Matcher>, LokiError> {
    match parse(text) {
        Ok(Expr::Log(l)) => Ok(l.selector),
        Ok(Expr::Metric(_)) => Err(bad_request(format!("{text} is not a stream selector"))),
        Err(e) => Err(bad_request(e.to_string())),
    }
}

/// `GET|POST /loki/api/v1/labels`: label names (`query`: only of matching streams).
async fn labels(
    State(s): State<LokiApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let selectors = match param(&params, "query").map(selector).transpose() {
        Ok(m) => m.into_iter().collect(),
        Err(r) => return Err(r),
    };
    match stream_sets(&s, &headers, &params, selectors).await {
        Ok(sets) => {
            let names: std::collections::BTreeSet<&str> = sets
                .iter()
                .flat_map(|l| l.iter().map(|l| &*l.name))
                .collect();
            Ok(json(
                serde_json::json!({"status": "success", "data": names}),
            ))
        }
        Err(r) => Err(r),
    }
}

/// `GET /loki/api/v1/label/<name>/values` (`query`: only of matching streams).
async fn label_values(
    State(s): State<LokiApi>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, LokiError> {
    let params = form_params(q.as_deref(), &headers, &[]);
    let selectors = match param(&params, "query").map(selector).transpose() {
        Ok(m) => m.into_iter().collect(),
        Err(r) => return Err(r),
    };
    match stream_sets(&s, &headers, &params, selectors).await {
        Ok(sets) => {
            let values: std::collections::BTreeSet<&str> =
                sets.iter().filter_map(|l| l.get(&name)).collect();
            Ok(json(
                serde_json::json!({"status": "success", "data": values}),
            ))
        }
        Err(r) => Err(r),
    }
}

/// `GET|POST /loki/api/v1/series`: the label sets of streams matching any
/// `match[]` (all streams without one).
async fn series(
    State(s): State<LokiApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let mut selectors = Vec::new();
    for (k, v) in &params {
        if k == "match[]" || k == "match" {
            match selector(v) {
                Ok(m) => selectors.push(m),
                Err(r) => return Err(r),
            }
        }
    }
    match stream_sets(&s, &headers, &params, selectors).await {
        Ok(sets) => {
            let data: Vec<serde_json::Value> = sets
                .iter()
                .map(|l| {
                    let pairs: Vec<(String, String)> = l
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect();
                    labels_object(&pairs)
                })
                .collect();
            Ok(json(serde_json::json!({"status": "success", "data": data})))
        }
        Err(r) => Err(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_header_that_is_not_ascii_is_refused_not_ignored() {
        let with = |value: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-scope-orgid",
                axum::http::HeaderValue::from_bytes(value).unwrap(),
            );
            tenant(&h).map_err(|e| e.into_response().status())
        };
        assert_eq!(with(b"team-a"), Ok("team-a".to_string()));
        assert_eq!(with("é".as_bytes()), Err(StatusCode::BAD_REQUEST));
        assert_eq!(with(b"\xff"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(tenant(&HeaderMap::new()).ok().as_deref(), Some("fake"));
    }

    #[test]
    fn times_are_read_as_loki_reads_them() {
        assert_eq!(loki_time("1700000000").unwrap(), 1_700_000_000 * NS);
        assert_eq!(
            loki_time("1700000000000000001").unwrap(),
            1_700_000_000_000_000_001
        );
        assert_eq!(
            loki_time("1700000000.5").unwrap(),
            1_700_000_000 * NS + NS / 2
        );
        assert_eq!(
            loki_time("2023-11-14T22:13:20.000000001Z").unwrap(),
            1_700_000_000_000_000_001
        );
        assert!(loki_time("yesterday").is_err());
    }

    #[test]
    fn a_range_request_is_checked_as_loki_checks_it() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ok = range_request(&p(&[
            ("query", "{a=\"b\"}"),
            ("start", "100"),
            ("end", "200"),
        ]))
        .unwrap();
        assert_eq!(
            (ok.1.start_ns, ok.1.end_ns, ok.1.limit),
            (100 * NS, 200 * NS, 100)
        );
        assert_eq!(ok.1.direction, Direction::Backward);
        let err = |pairs: &[(&str, &str)]| range_request(&p(pairs)).unwrap_err();
        assert_eq!(
            err(&[("query", "{a=\"b\"}"), ("limit", "0")]),
            "limit must be a positive value"
        );
        assert!(
            err(&[("query", "{a=\"b\"}"), ("limit", "5001")])
                .starts_with("max entries limit per query exceeded")
        );
        assert!(
            err(&[("query", "{a=\"b\"}"), ("start", "200"), ("end", "100")])
                .starts_with("end timestamp")
        );
        assert!(
            err(&[("query", "{a=\"b\"}"), ("start", "0"), ("end", "100000000")])
                .starts_with("the query time range exceeds the limit")
        );
        assert_eq!(
            err(&[("query", "{a=\"b\"}"), ("direction", "up")]),
            "invalid direction 'up'"
        );
        // Times at the ends of i64: a clear error, no overflow.
        let extremes = [
            ("query", "{a=\"b\"}"),
            ("start", "-9223372036854775808"),
            ("end", "9223372036854775807"),
        ];
        assert!(err(&extremes).starts_with("the query time range exceeds the limit"));
        assert!(err(&[("query", "{a=}")]).starts_with("parse error at line 1, col"));
    }
}
