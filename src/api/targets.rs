//! `/api/v1/targets`, `/api/v1/targets/metadata` and `/api/v1/metadata`: what the
//! scrape manager runs and what its targets said about their metrics, in Prometheus's
//! JSON.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::Storage;
use super::admin::{form_params, param};
use super::query::limit_param;
use super::response::{ApiError, success};
use crate::model::{Labels, Matcher};
use crate::scrape::manager::{ActiveTarget, PoolStatus, format_last_scrape};

/// The targets area: scrape targets and metric metadata.
#[derive(Clone)]
pub struct TargetsApi {
    pub storage: Storage,
}

pub fn routes(state: TargetsApi) -> Router {
    Router::new()
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/metadata", get(targets_metadata))
        .route("/api/v1/metadata", get(metadata))
        .with_state(state)
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.name.to_string(), Value::String(l.value.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// A duration as Prometheus's model.Duration prints it (`15s`, `1m`, `1m30s`).
fn format_duration(d: std::time::Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

fn active_json(t: &ActiveTarget) -> Value {
    let health = t.health.lock().clone();
    json!({
        "discoveredLabels": labels_json(&t.discovered_labels),
        "labels": labels_json(&t.labels),
        "scrapePool": t.scrape_pool,
        "scrapeUrl": t.scrape_url,
        "globalUrl": t.scrape_url,
        "lastError": health.last_error,
        "lastScrape": format_last_scrape(health.last_scrape),
        "lastScrapeDuration": health.last_scrape_duration.as_secs_f64(),
        "health": health.health.as_str(),
        "scrapeInterval": format_duration(t.interval),
        "scrapeTimeout": format_duration(t.timeout),
    })
}

fn pools(s: &TargetsApi) -> Result<BTreeMap<String, PoolStatus>, ApiError> {
    Ok(s.storage
        .get()?
        .scrape
        .as_ref()
        .map(|m| m.status())
        .unwrap_or_default())
}

async fn targets(State(s): State<TargetsApi>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &HeaderMap::new(), &[]);
    let state = param(&params, "state")
        .unwrap_or("any")
        .to_ascii_lowercase();
    let (show_active, show_dropped) = match state.as_str() {
        "active" => (true, false),
        "dropped" => (false, true),
        _ => (true, true),
    };
    let pool_filter = param(&params, "scrapePool").filter(|p| !p.is_empty());
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    for (name, pool) in pools(&s)? {
        if pool_filter.is_some_and(|p| p != name) {
            continue;
        }
        if show_active {
            active.extend(pool.active.iter().map(active_json));
        }
        if show_dropped {
            dropped.extend(
                pool.dropped
                    .iter()
                    .map(|l| json!({ "discoveredLabels": labels_json(l) })),
            );
        }
    }
    let mut data = Map::new();
    if show_active {
        data.insert("activeTargets".into(), Value::Array(active));
    }
    if show_dropped {
        data.insert("droppedTargets".into(), Value::Array(dropped));
    }
    Ok(success(Value::Object(data)))
}

/// Matchers of `match_target` (a selector without a metric name, such as
/// `{job="node"}`), applied to target labels.
fn target_matchers(params: &[(String, String)]) -> Result<Vec<Matcher>, ApiError> {
    match param(params, "match_target") {
        None | Some("") => Ok(Vec::new()),
        Some(sel) => super::parse_selector_matchers(sel).map_err(ApiError::bad_data),
    }
}

async fn targets_metadata(
    State(s): State<TargetsApi>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &HeaderMap::new(), &[]);
    let limit = limit_param(&params)?;
    let matchers = target_matchers(&params)?;
    let metric = param(&params, "metric").filter(|m| !m.is_empty());
    let mut out = Vec::new();
    'pools: for pool in pools(&s)?.values() {
        for t in &pool.active {
            if !matchers
                .iter()
                .all(|m| m.matches(t.labels.get(&m.name).unwrap_or("")))
            {
                continue;
            }
            let md = t.metadata.lock();
            let mut names: Vec<&String> = md
                .keys()
                .filter(|n| metric.is_none_or(|m| m == *n))
                .collect();
            names.sort();
            for name in names {
                let Some(m) = md.get(name) else { continue };
                let mut entry = json!({
                    "target": labels_json(&t.labels),
                    "type": m.kind.as_str(),
                    "help": m.help,
                    "unit": m.unit,
                });
                if metric.is_none() {
                    if let Some(obj) = entry.as_object_mut() {
                        obj.insert("metric".into(), Value::String(name.clone()));
                    }
                }
                out.push(entry);
                if limit.is_some_and(|l| out.len() >= l) {
                    break 'pools;
                }
            }
        }
    }
    Ok(success(out))
}

/// Metadata per metric name across all targets, distinct entries only.
async fn metadata(
    State(s): State<TargetsApi>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &HeaderMap::new(), &[]);
    let limit = limit_param(&params)?;
    let per_metric = match param(&params, "limit_per_metric") {
        None | Some("") => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"limit_per_metric\": cannot parse {v:?}"
                )));
            }
        },
    };
    let metric = param(&params, "metric").filter(|m| !m.is_empty());
    let mut by_name: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for pool in pools(&s)?.values() {
        for t in &pool.active {
            for (name, m) in t.metadata.lock().iter() {
                if metric.is_some_and(|x| x != name) {
                    continue;
                }
                let entry = (m.kind.as_str().to_string(), m.help.clone(), m.unit.clone());
                let list = by_name.entry(name.clone()).or_default();
                if !list.contains(&entry) {
                    list.push(entry);
                }
            }
        }
    }
    let mut data = Map::new();
    for (name, mut entries) in by_name {
        if limit.is_some_and(|l| data.len() >= l) {
            break;
        }
        if let Some(n) = per_metric {
            entries.truncate(n);
        }
        data.insert(
            name,
            Value::Array(
                entries
                    .into_iter()
                    .map(|(kind, help, unit)| json!({"type": kind, "help": help, "unit": unit}))
                    .collect(),
            ),
        );
    }
    Ok(success(Value::Object(data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_print_as_prometheus_does() {
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
