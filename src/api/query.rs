//! Prometheus's query API: `/api/v1/query`, `/query_range`, `/format_query`,
//! `/series`, `/labels`, `/label/<name>/values`, `/metadata`, `/query_exemplars` and
//! `/federate` — GET and form POST alike, answers shaped exactly as Prometheus's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Storage;
use super::admin::{form_params, param, parse_selector, time_param};
use super::response::{ApiError, ErrorType, success};
use crate::model::{Labels, MAX_TIME_MS, MIN_TIME_MS, Matcher, parse_api_duration_ms};
use crate::promql::{CancelFlag, QueryError, Value};

use super::bounded::{QueryGate, RequestLimits, run_bounded};
use crate::storage::{Queryable, SelectHints, Warnings};

/// Points a range query may return per series, as Prometheus.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// The query area: PromQL, series, labels, federation; every path through the
/// query gate (see `bounded`).
#[derive(Clone)]
pub struct QueryApi {
    pub storage: Storage,
    pub gate: QueryGate,
    /// `global.external_labels`: added to what `/federate` answers.
    pub external_labels: std::sync::Arc<BTreeMap<String, String>>,
}

pub fn routes(state: QueryApi) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/federate", get(federate))
        .with_state(state)
}

type Params = Vec<(String, String)>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A duration parameter: float seconds or a Prometheus duration (`5m`), within
/// Prometheus's bounds (see [`parse_api_duration_ms`]).
fn duration_param(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = param(params, name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    parse_api_duration_ms(v)
        .map(Some)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter {name:?}: {e}")))
}

fn matchers_param(params: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    params
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| parse_selector(v))
        .collect()
}

pub(super) fn limit_param(params: &Params) -> Result<Option<usize>, ApiError> {
    match param(params, "limit") {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some(n as usize)),
            Ok(_) => Ok(None),
            Err(_) => Err(ApiError::bad_data(format!(
                "invalid parameter \"limit\": cannot parse {v:?} to a valid limit"
            ))),
        },
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadData(m) => ApiError::bad_data(m),
            QueryError::InvalidQuery(m) => {
                ApiError::bad_data(format!("invalid parameter \"query\": {m}"))
            }
            QueryError::Execution(m) => ApiError::new(ErrorType::Execution, m),
            e @ QueryError::Timeout(_) => ApiError::new(ErrorType::Timeout, e.to_string()),
            e @ QueryError::Canceled(_) => ApiError::new(ErrorType::Canceled, e.to_string()),
            QueryError::Storage(e) => e.into(),
        }
    }
}

/// Runs `query` through `f` as a query path (see [`run_bounded`]): the engine's
/// deadline is the request's, and the client going away cancels the evaluation.
///
/// Returns the value and the storage's warnings (a bucket that could not be read),
/// which go into the response's `warnings`.
async fn run_query<F>(
    s: &QueryApi,
    query: String,
    timeout: Option<i64>,
    f: F,
) -> Result<(Value, Vec<String>), ApiError>
where
    F: FnOnce(
            &str,
            &dyn Queryable,
            &crate::promql::Engine,
            &CancelFlag,
            &Warnings,
        ) -> Result<Value, QueryError>
        + Send
        + 'static,
{
    let queryable = s.storage.get()?.queryable.clone();
    let engine = s.gate.engine.clone();
    let text = query.clone();
    run_bounded(&s.gate, timeout, Some(&query), move |limits| {
        // The engine's own deadline is the request's, which began before the wait
        // for a permit.
        let mut o = engine.options().clone();
        o.timeout = limits.remaining();
        let engine = crate::promql::Engine::new(o);
        let warnings = Warnings::default();
        let value = f(
            &text,
            queryable.as_ref(),
            &engine,
            &limits.cancel,
            &warnings,
        )?;
        Ok((value, warnings.to_vec()))
    })
    .await
}

async fn query(
    State(s): State<QueryApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let text = param(&params, "query").unwrap_or("").to_string();
    let t = time_param(&params, "time", now_ms())?;
    let timeout = duration_param(&params, "timeout")?;
    let (value, warnings) = run_query(
        &s,
        text,
        timeout,
        move |text, qb, engine, cancel, warnings| {
            engine.instant_with_warnings(qb, text, t, cancel, warnings)
        },
    )
    .await?;
    Ok(json_response(&value, &warnings))
}

async fn query_range(
    State(s): State<QueryApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let text = param(&params, "query").unwrap_or("").to_string();
    let start = match param(&params, "start") {
        Some(v) if !v.is_empty() => time_param(&params, "start", 0)?,
        _ => {
            return Err(ApiError::bad_data(
                "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
            ));
        }
    };
    let end = match param(&params, "end") {
        Some(v) if !v.is_empty() => time_param(&params, "end", 0)?,
        _ => {
            return Err(ApiError::bad_data(
                "invalid parameter \"end\": cannot parse \"\" to a valid timestamp",
            ));
        }
    };
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = duration_param(&params, "step")?.ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"step\": cannot parse \"\" to a valid duration")
    })?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Times lie within Prometheus's bounds, whose span overflows an i64.
    if (i128::from(end) - i128::from(start)) / i128::from(step) > i128::from(MAX_POINTS_PER_SERIES)
    {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let timeout = duration_param(&params, "timeout")?;
    let (value, warnings) = run_query(
        &s,
        text,
        timeout,
        move |text, qb, engine, cancel, warnings| {
            engine.range_with_warnings(qb, text, start, end, step, cancel, warnings)
        },
    )
    .await?;
    Ok(json_response(&value, &warnings))
}

async fn format_query(
    State(s): State<QueryApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let text = param(&params, "query").unwrap_or("").to_string();
    // promql-parser's prettifier is not interruptible and grows faster than
    // cubically with depth: bounded before anything starts (a scan of the text).
    crate::promql::check_prettify_nesting(&text)?;
    let query = text.clone();
    let pretty = run_bounded(&s.gate, None, Some(&text), move |limits| {
        let expr = crate::promql::parse(&query)?;
        limits.check("query formatting")?;
        Ok(expr.prettify())
    })
    .await?;
    Ok(success(pretty))
}

/// Series, label names or label values of one metadata request, held as they are
/// collected: each counts against `--query.max-samples`, and the deadline and the
/// cancellation are checked between series.
struct Collected<'l, T> {
    items: BTreeSet<T>,
    limits: &'l RequestLimits,
}

impl<'l, T: Ord> Collected<'l, T> {
    fn new(limits: &'l RequestLimits) -> Self {
        Self {
            items: BTreeSet::new(),
            limits,
        }
    }

    fn insert(&mut self, item: T) -> Result<(), ApiError> {
        self.limits.check("series selection")?;
        self.items.insert(item);
        self.limits.hold(self.items.len())?;
        Ok(())
    }

    fn extend(&mut self, items: impl IntoIterator<Item = T>) -> Result<(), ApiError> {
        items.into_iter().try_for_each(|i| self.insert(i))
    }
}

/// The querier over `[start, end]` of a metadata request's work.
fn querier(
    queryable: &dyn Queryable,
    start: i64,
    end: i64,
) -> Result<Box<dyn crate::storage::Querier>, ApiError> {
    Ok(queryable.querier(start, end)?)
}

async fn series(
    State(s): State<QueryApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let sets = matchers_param(&params)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let start = time_param(&params, "start", MIN_TIME_MS)?;
    let end = time_param(&params, "end", MAX_TIME_MS)?;
    let limit = limit_param(&params)?;
    let queryable = s.storage.get()?.queryable.clone();
    let all = run_bounded(&s.gate, None, None, move |limits| {
        let q = querier(queryable.as_ref(), start, end)?;
        let hints = SelectHints {
            start_ms: start,
            end_ms: end,
            series_only: true,
            // Collected into a sorted set.
            sorted: false,
        };
        let mut all = Collected::new(limits);
        for m in &sets {
            for series in q.select(&hints, m)? {
                all.insert(series?.labels)?;
            }
        }
        Ok(all.items)
    })
    .await?;
    let mut out = String::from(r#"{"status":"success","data":["#);
    for (i, l) in all.iter().take(limit.unwrap_or(usize::MAX)).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_labels(&mut out, l);
    }
    out.push_str("]}");
    Ok(raw_json(out))
}

async fn labels(
    State(s): State<QueryApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let sets = matchers_param(&params)?;
    let start = time_param(&params, "start", MIN_TIME_MS)?;
    let end = time_param(&params, "end", MAX_TIME_MS)?;
    let limit = limit_param(&params)?;
    let queryable = s.storage.get()?.queryable.clone();
    let names = run_bounded(&s.gate, None, None, move |limits| {
        let q = querier(queryable.as_ref(), start, end)?;
        let mut all = Collected::new(limits);
        if sets.is_empty() {
            all.extend(q.label_names(&[])?)?;
        }
        for m in &sets {
            all.extend(q.label_names(m)?)?;
        }
        Ok(all.items.into_iter().collect())
    })
    .await?;
    Ok(success(truncate(names, limit)))
}

async fn label_values(
    State(s): State<QueryApi>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &HeaderMap::new(), &[]);
    if !crate::model::is_valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sets = matchers_param(&params)?;
    let start = time_param(&params, "start", MIN_TIME_MS)?;
    let end = time_param(&params, "end", MAX_TIME_MS)?;
    let limit = limit_param(&params)?;
    let queryable = s.storage.get()?.queryable.clone();
    let values = run_bounded(&s.gate, None, None, move |limits| {
        let q = querier(queryable.as_ref(), start, end)?;
        let mut all = Collected::new(limits);
        if sets.is_empty() {
            all.extend(q.label_values(&name, &[])?)?;
        }
        for m in &sets {
            all.extend(q.label_values(&name, m)?)?;
        }
        Ok(all.items.into_iter().collect())
    })
    .await?;
    Ok(success(truncate(values, limit)))
}

fn truncate(mut v: Vec<String>, limit: Option<usize>) -> Vec<String> {
    if let Some(n) = limit {
        v.truncate(n);
    }
    v
}

/// ODIN stores no exemplars: the query is checked, and the answer is an empty list.
async fn query_exemplars(
    State(s): State<QueryApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    // Prometheus's checks, in its order: the times, then the query (whose error
    // here has no `invalid parameter` prefix).
    let start = time_param(&params, "start", i64::MIN)?;
    let end = time_param(&params, "end", i64::MAX)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let text = param(&params, "query").unwrap_or("").to_string();
    let query = text.clone();
    run_bounded(&s.gate, None, Some(&text), move |_| {
        crate::promql::parse(&query).map_err(|e| match e {
            QueryError::InvalidQuery(m) => ApiError::bad_data(m),
            e => e.into(),
        })?;
        Ok(())
    })
    .await?;
    Ok(success(Vec::<()>::new()))
}

/// `/federate?match[]=…`: the newest sample of every matching series in the text
/// exposition format.
async fn federate(State(s): State<QueryApi>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &HeaderMap::new(), &[]);
    let sets = matchers_param(&params)?;
    let now = now_ms();
    let lookback = s.gate.engine.options().lookback_delta_ms;
    let start = now.saturating_sub(lookback);
    let queryable = s.storage.get()?.queryable.clone();
    let external = s.external_labels.clone();
    let body = run_bounded(&s.gate, None, None, move |limits| {
        let q = querier(queryable.as_ref(), start, now)?;
        let hints = SelectHints {
            start_ms: start,
            end_ms: now,
            series_only: false,
            // Collected into a sorted map.
            sorted: false,
        };
        let mut out: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
        for m in &sets {
            for series in q.select(&hints, m)? {
                limits.check("series selection")?;
                let series = series?;
                // What this request holds: a sample per series kept, and the
                // samples of the series at hand.
                limits.hold(out.len() + series.samples.len())?;
                if let Some(x) = series
                    .samples
                    .iter()
                    .rev()
                    .find(|x| x.t <= now && x.t >= start)
                    && !crate::model::is_stale_nan(x.v)
                {
                    out.insert(series.labels, (x.t, x.v));
                }
            }
        }
        limits.check("federation")?;
        Ok(federation_text(&out, &external))
    })
    .await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// The federation answer: samples grouped by metric name, each group under one
/// `# TYPE … untyped` line, written through the exposition writer (which escapes
/// label values and leaves out a series whose name it cannot write). As
/// Prometheus's: each series carries the external labels it lacks, after its own,
/// and `instance=""` when it has no instance and the external labels name none
/// (so that a federating server's `honor_labels` keeps it from adding its own).
fn federation_text(
    samples: &BTreeMap<Labels, (i64, f64)>,
    external: &BTreeMap<String, String>,
) -> String {
    let mut external: Vec<(&str, &str)> = external
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if !external.iter().any(|(n, _)| *n == "instance") {
        external.push(("instance", ""));
        external.sort_unstable();
    }
    use crate::exposition::write::{is_valid_metric_name, write_sample_line, write_type_line};
    let mut by_name: BTreeMap<&str, Vec<(&Labels, i64, f64)>> = BTreeMap::new();
    for (labels, &(t, v)) in samples {
        let name = labels.metric_name().unwrap_or("");
        by_name.entry(name).or_default().push((labels, t, v));
    }
    let mut body = String::new();
    let mut left_out = 0usize;
    for (name, series) in by_name {
        if !is_valid_metric_name(name) {
            left_out += series.len();
            continue;
        }
        let before = body.len();
        write_type_line(&mut body, name, "untyped");
        let mut written = 0;
        for (labels, t, v) in series {
            let rest = labels
                .iter()
                .filter(|l| &*l.name != crate::model::METRIC_NAME)
                .map(|l| (&*l.name, &*l.value))
                .chain(
                    external
                        .iter()
                        .filter(|(n, _)| labels.get(n).is_none())
                        .copied(),
                );
            if write_sample_line(&mut body, name, rest, v, Some(t)) {
                written += 1;
            } else {
                left_out += 1;
            }
        }
        if written == 0 {
            body.truncate(before);
        }
    }
    if left_out > 0 {
        tracing::warn!(
            series = left_out,
            "federate: left out series whose metric or label names cannot be written"
        );
    }
    body
}

fn raw_json(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The success envelope around a query result, written directly (Prometheus's
/// number and timestamp formats are not serde's, and a large matrix is written
/// fastest without an intermediate tree).
fn json_response(v: &Value, warnings: &[String]) -> Response {
    let points = match v {
        Value::Matrix(series) => series.iter().map(|s| s.points.len() + 8).sum(),
        Value::Vector(els) => els.len() * 8,
        _ => 1,
    };
    let mut out = String::with_capacity(128 + points * 24);
    out.push_str(r#"{"status":"success","data":{"resultType":""#);
    out.push_str(v.type_name());
    out.push_str(r#"","result":"#);
    match v {
        // Prometheus writes a scalar result with `'f'` always (its own JSON
        // marshaller), unlike vector and matrix points.
        Value::Scalar { t, v } => {
            out.push('[');
            write_timestamp(&mut out, *t);
            out.push_str(",\"");
            out.push_str(&crate::promql::value::format_plain(*v));
            out.push_str("\"]");
        }
        Value::String { t, v } => {
            out.push('[');
            write_timestamp(&mut out, *t);
            out.push(',');
            write_json_str(&mut out, v);
            out.push(']');
        }
        Value::Vector(els) => {
            out.push('[');
            for (i, e) in els.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(&mut out, &e.labels);
                out.push_str(r#","value":"#);
                write_point(&mut out, e.t, e.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            let mut stamps = StampCache::default();
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(&mut out, &s.labels);
                out.push_str(r#","values":["#);
                for (j, p) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    stamps.write(&mut out, p.t);
                    out.push_str(",\"");
                    write_float(&mut out, p.v);
                    out.push_str("\"]");
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    if !warnings.is_empty() {
        out.push_str(r#","warnings":["#);
        for (i, w) in warnings.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_str(&mut out, w);
        }
        out.push(']');
    }
    out.push('}');
    raw_json(out)
}

/// Timestamps already written in this response. The series of a range query share
/// their step times, so each is formatted once rather than once per series; raw
/// sample times (a range vector's) mostly differ, and the cache stops growing at a
/// bound.
#[derive(Default)]
struct StampCache {
    text: String,
    at: HashMap<i64, (u32, u8)>,
}

impl StampCache {
    const MAX_ENTRIES: usize = 16_384;

    fn write(&mut self, out: &mut String, t: i64) {
        if let Some(&(start, len)) = self.at.get(&t) {
            let start = start as usize;
            if let Some(s) = self.text.get(start..start + usize::from(len)) {
                out.push_str(s);
                return;
            }
        }
        let before = out.len();
        write_timestamp(out, t);
        if self.at.len() < Self::MAX_ENTRIES {
            if let (Some(s), Ok(start)) = (out.get(before..), u32::try_from(self.text.len())) {
                self.at.insert(t, (start, s.len() as u8));
                self.text.push_str(s);
            }
        }
    }
}

/// `[<seconds>,"<value>"]`.
fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    write_float(out, v);
    out.push_str("\"]");
}

/// A timestamp as Prometheus writes it: whole seconds, then the milliseconds as
/// three digits when there are any.
fn write_timestamp(out: &mut String, t: i64) {
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    write_u64(out, a / 1000);
    let ms = a % 1000;
    if ms != 0 {
        out.push('.');
        out.push(char::from(b'0' + (ms / 100) as u8));
        out.push(char::from(b'0' + (ms / 10 % 10) as u8));
        out.push(char::from(b'0' + (ms % 10) as u8));
    }
}

fn write_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &d in buf.get(i..).unwrap_or(&[]) {
        out.push(char::from(d));
    }
}

/// [`format_float`] without an allocation; whole numbers (most counters and gauges)
/// take a short path.
fn write_float(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 && !(v == 0.0 && v.is_sign_negative()) {
        if v < 0.0 {
            out.push('-');
        }
        write_u64(out, v.abs() as u64);
    } else {
        crate::promql::value::write_float(out, v);
    }
}

fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, &l.name);
        out.push(':');
        write_json_str(out, &l.value);
    }
    out.push('}');
}

fn write_json_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: a stored metric name with a newline injected a line of its own
    /// (`injected_metric{job="victim"} 12345`) into `/federate`. Such series are left
    /// out, as are invalid label names; label values are escaped.
    #[test]
    fn federation_never_writes_an_injected_line() {
        let mut samples = BTreeMap::new();
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
        samples.insert(
            l(&[
                ("__name__", "up\ninjected_metric{job=\"victim\"} 12345\nup"),
                ("job", "x"),
            ]),
            (1000, 1.0),
        );
        samples.insert(l(&[("__name__", "ok"), ("bad\nname", "v")]), (1000, 2.0));
        samples.insert(l(&[("__name__", "ok"), ("a b", "v")]), (1000, 2.0));
        samples.insert(l(&[("__name__", "")]), (1000, 2.0));
        samples.insert(l(&[("__name__", "ok"), ("v", "a\n\"b\"\\c")]), (2000, 1e6));
        samples.insert(l(&[("__name__", "only:bad\n")]), (1000, 3.0));
        let text = federation_text(&samples, &BTreeMap::new());
        assert_eq!(
            text,
            "# TYPE ok untyped\nok{v=\"a\\n\\\"b\\\"\\\\c\",instance=\"\"} 1e+06 2000\n"
        );
        assert!(!text.contains("injected_metric"), "{text}");
        assert!(!text.contains("only"), "{text}");
    }

    /// As Prometheus 2.42's `/federate`: the external labels a series lacks follow
    /// its own (sorted), and `instance=""` unless it or the external labels have one.
    #[test]
    fn federation_adds_the_external_labels_and_an_empty_instance() {
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
        let mut samples = BTreeMap::new();
        samples.insert(l(&[("__name__", "a"), ("x", "1")]), (1000, 1.0));
        samples.insert(
            l(&[("__name__", "a"), ("cluster", "own"), ("instance", "h:1")]),
            (1000, 2.0),
        );
        let external: BTreeMap<String, String> = [("cluster", "c1"), ("zone", "z")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(
            federation_text(&samples, &external),
            "# TYPE a untyped\n\
             a{cluster=\"own\",instance=\"h:1\",zone=\"z\"} 2 1000\n\
             a{x=\"1\",cluster=\"c1\",instance=\"\",zone=\"z\"} 1 1000\n"
        );
        let external: BTreeMap<String, String> = [("instance", "fed")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(
            federation_text(&samples, &external),
            "# TYPE a untyped\n\
             a{cluster=\"own\",instance=\"h:1\"} 2 1000\n\
             a{x=\"1\",instance=\"fed\"} 1 1000\n"
        );
    }

    #[test]
    fn timestamps_are_written_as_prometheus_does() {
        let mut s = String::new();
        write_point(&mut s, 1_435_781_451_781, 1.0);
        assert_eq!(s, r#"[1435781451.781,"1"]"#);
        s.clear();
        write_point(&mut s, 1_435_781_451_050, f64::NAN);
        assert_eq!(s, r#"[1435781451.050,"NaN"]"#);
        s.clear();
        write_point(&mut s, 4000, f64::INFINITY);
        assert_eq!(s, r#"[4,"+Inf"]"#);
        s.clear();
        write_point(&mut s, -1500, 2.0);
        assert_eq!(s, r#"[-1.500,"2"]"#);
        s.clear();
        write_point(&mut s, 0, -0.0);
        assert_eq!(s, r#"[0,"-0"]"#);
    }

    #[test]
    fn floats_are_written_as_go_formats_them() {
        for (v, want) in [
            (0.0, "0"),
            (-3.0, "-3"),
            (1e21, "1e+21"),
            (0.1, "0.1"),
            (-2.5e-7, "-2.5e-07"),
            (123456789012345.0, "123456789012345"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            let mut s = String::new();
            write_float(&mut s, v);
            assert_eq!(s, want, "{v}");
        }
        let mut s = String::new();
        write_json_str(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\n""#);
    }
}
