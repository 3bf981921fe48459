//! `index/stats` and `index/volume`: how much a selector's streams hold, as
//! Grafana's Loki datasource asks before a query (the query size estimate) and for
//! its log volume views.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::{
    LokiApi, LokiError, NS, bad_request, bounds, json, labels_object, param, selector, tenant,
    unavailable,
};
use crate::api::admin::form_params;
use crate::api::bounded::run_bounded;
use crate::logs::store::Selected;

/// The selected streams of the request's selector and range (6 h by default).
async fn selected(
    s: &LokiApi,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(Vec<Selected>, i64), LokiError> {
    let tenant = tenant(headers)?;
    let matchers = selector(param(params, "query").unwrap_or(""))?;
    let (start, end) = bounds(params, 6 * 3600 * NS).map_err(bad_request)?;
    let storage = s.storage.get().map_err(unavailable)?.logs.clone();
    let found = run_bounded(&s.gate, None, None, move |_| {
        storage
            .select(&tenant, &matchers, start, end.saturating_add(1), &[])
            .map_err(super::storage_error)
    })
    .await
    .map_err(super::gate_error)?;
    // Lines outside the range may come with the chunks that hold it.
    let found = found
        .into_iter()
        .map(|s| Selected {
            labels: s.labels,
            chunks: s
                .chunks
                .into_iter()
                .map(|c| {
                    c.iter()
                        .filter(|l| l.ts_ns >= start && l.ts_ns <= end)
                        .cloned()
                        .collect::<Vec<_>>()
                        .into()
                })
                .collect(),
        })
        .filter(|s| s.chunks.iter().any(|c: &std::sync::Arc<[_]>| !c.is_empty()))
        .collect();
    Ok((found, end))
}

/// `GET|POST /loki/api/v1/index/stats`: `{"streams", "chunks", "entries", "bytes"}`
/// of the selector's streams in the range.
pub(super) async fn stats(
    State(s): State<LokiApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    let (found, _) = selected(&s, &headers, &params).await?;
    let chunks: usize = found
        .iter()
        .map(|s| s.chunks.iter().filter(|c| !c.is_empty()).count())
        .sum();
    let lines = found
        .iter()
        .flat_map(|s| s.chunks.iter().flat_map(|c| c.iter()));
    let (entries, bytes) = lines.fold((0u64, 0u64), |(n, b), l| (n + 1, b + l.text.len() as u64));
    Ok(json(serde_json::json!({
        "streams": found.len(),
        "chunks": chunks,
        "entries": entries,
        "bytes": bytes,
    })))
}

/// `GET|POST /loki/api/v1/index/volume`: bytes per series of the selector's
/// streams, aggregated by `targetLabels` (default: the labels the selector names),
/// largest first, at most `limit` (100); a `vector` at the range's end.
pub(super) async fn volume(
    State(s): State<LokiApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let params = form_params(q.as_deref(), &headers, &body);
    if let Some(a) = param(&params, "aggregateBy")
        && a != "series"
    {
        return Err(bad_request(format!(
            "aggregateBy={a} is not supported: volumes are aggregated by series"
        )));
    }
    let limit = super::limit_param(&params)?;
    let matchers = selector(param(&params, "query").unwrap_or(""))?;
    let targets: Vec<String> = match param(&params, "targetLabels") {
        Some(t) => t
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => matchers.iter().map(|m| m.name.clone()).collect(),
    };
    let (found, end) = selected(&s, &headers, &params).await?;
    let mut volumes: BTreeMap<Vec<(String, String)>, u64> = BTreeMap::new();
    for s in &found {
        let key: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|l| targets.iter().any(|t| *t == *l.name))
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        let bytes: u64 = s
            .chunks
            .iter()
            .flat_map(|c| c.iter())
            .map(|l| l.text.len() as u64)
            .sum();
        *volumes.entry(key).or_default() += bytes;
    }
    let mut ranked: Vec<_> = volumes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(limit.max(1));
    let t = end.div_euclid(1_000_000_000);
    let result: Vec<serde_json::Value> = ranked
        .iter()
        .map(|(labels, bytes)| {
            serde_json::json!({"metric": labels_object(labels), "value": [t, bytes.to_string()]})
        })
        .collect();
    Ok(json(serde_json::json!({
        "status": "success",
        "data": {"resultType": "vector", "result": result}
    })))
}
