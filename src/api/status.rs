//! `/api/v1/status/*`: build, runtime, flags, configuration and TSDB statistics, in
//! Prometheus's shapes (Grafana reads buildinfo to decide how to talk to a server).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::Storage;
use super::admin::form_params;
use super::response::{ApiError, success};

/// The Prometheus version ODIN answers to: its API and PromQL are 2.42's.
pub const PROMETHEUS_VERSION: &str = "2.42.0";

/// What the status endpoints report about the running process.
#[derive(Debug, Default)]
pub struct StatusInfo {
    /// Unix milliseconds.
    pub start_time_ms: i64,
    /// The configuration in effect, as YAML.
    /// The configuration in effect, replaced on reload.
    pub config_yaml: parking_lot::RwLock<String>,
    /// Every flag with its value, as Prometheus lists them.
    pub flags: BTreeMap<String, String>,
    /// `--storage.tsdb.retention.time`/`.size`, as Prometheus shows them.
    pub storage_retention: String,
}

/// The status area: build and runtime information, flags, configuration, TSDB
/// statistics.
#[derive(Clone)]
pub struct StatusApi {
    pub storage: Storage,
    pub status: Arc<StatusInfo>,
}

pub fn routes(state: StatusApi) -> Router {
    Router::new()
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/tsdb", get(tsdb))
        .with_state(state)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: String,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: &'static str,
}

/// No `features` field: Grafana then treats the server as Prometheus.
async fn buildinfo() -> Response {
    success(BuildInfo {
        version: PROMETHEUS_VERSION,
        revision: format!("odin-{}", env!("CARGO_PKG_VERSION")),
        branch: "odin",
        build_user: "odin",
        build_date: "",
        go_version: "none (ODIN is written in Rust)",
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeInfo {
    start_time: String,
    #[serde(rename = "CWD")]
    cwd: String,
    reload_config_success: bool,
    last_config_time: String,
    corruption_count: u64,
    goroutine_count: usize,
    #[serde(rename = "GOMAXPROCS")]
    gomaxprocs: usize,
    #[serde(rename = "GOMEMLIMIT")]
    gomemlimit: i64,
    #[serde(rename = "GOGC")]
    gogc: &'static str,
    #[serde(rename = "GODEBUG")]
    godebug: &'static str,
    storage_retention: String,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

async fn runtimeinfo(State(s): State<StatusApi>) -> Response {
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    success(RuntimeInfo {
        start_time: rfc3339(s.status.start_time_ms),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        reload_config_success: true,
        last_config_time: rfc3339(s.status.start_time_ms),
        corruption_count: 0,
        goroutine_count: threads,
        gomaxprocs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        gomemlimit: i64::MAX,
        gogc: "",
        godebug: "",
        storage_retention: s.status.storage_retention.clone(),
    })
}

async fn flags(State(s): State<StatusApi>) -> Response {
    success(&s.status.flags)
}

#[derive(Serialize)]
struct ConfigBody<'a> {
    yaml: &'a str,
}

async fn config(State(s): State<StatusApi>) -> Response {
    success(ConfigBody {
        yaml: &s.status.config_yaml.read(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeadStats {
    num_series: u64,
    num_label_pairs: usize,
    chunk_count: u64,
    min_time: i64,
    max_time: i64,
}

#[derive(Serialize)]
struct Stat {
    name: String,
    value: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TsdbStatus {
    head_stats: HeadStats,
    series_count_by_metric_name: Vec<Stat>,
    label_value_count_by_label_name: Vec<Stat>,
    memory_in_bytes_by_label_name: Vec<Stat>,
    series_count_by_label_value_pair: Vec<Stat>,
}

/// Cardinality statistics of the head, top 10 of each (`limit` changes that).
async fn tsdb(State(s): State<StatusApi>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &HeaderMap::new(), &[]);
    let limit = match params
        .iter()
        .find(|(k, _)| k == "limit")
        .map(|(_, v)| v.as_str())
    {
        None | Some("") => 10,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(ApiError::bad_data("limit must be a positive number")),
        },
    };
    let admin = s.storage.get()?.admin.clone();
    let stats = tokio::task::spawn_blocking(move || admin.stats())
        .await
        .map_err(|e| ApiError::new(super::response::ErrorType::Internal, e.to_string()))?;
    let top = |mut v: Vec<Stat>| {
        v.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
        v.truncate(limit);
        v
    };
    let (min_time, max_time) = stats.head_time_range.unwrap_or((i64::MAX, i64::MIN));
    let by_label = |value: fn(&crate::storage::LabelStats) -> u64| {
        top(stats
            .head_labels
            .iter()
            .map(|l| Stat {
                name: l.name.clone(),
                value: value(l),
            })
            .collect())
    };
    let pairs = |only_names: bool| {
        top(stats
            .head_label_pairs
            .iter()
            .filter_map(|(pair, n)| {
                let stat = |name: &str| Stat {
                    name: name.to_string(),
                    value: *n as u64,
                };
                if only_names {
                    pair.strip_prefix("__name__=").map(stat)
                } else {
                    Some(stat(pair))
                }
            })
            .collect())
    };
    Ok(success(TsdbStatus {
        head_stats: HeadStats {
            num_series: stats.head_series,
            num_label_pairs: stats.head_label_pairs.len(),
            chunk_count: stats.head_chunks,
            min_time,
            max_time,
        },
        series_count_by_metric_name: pairs(true),
        label_value_count_by_label_name: by_label(|l| l.distinct_values as u64),
        memory_in_bytes_by_label_name: by_label(|l| l.value_bytes),
        series_count_by_label_value_pair: pairs(false),
    }))
}
