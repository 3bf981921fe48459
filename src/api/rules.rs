//! `/api/v1/rules`: the rule groups and how their rules last evaluated, in
//! Prometheus's JSON (Grafana's rule browser reads it), with its `type`,
//! `rule_name[]`, `rule_group[]` and `file[]` filters; and `/api/v1/alerts`, the
//! pending and firing alerts (Grafana's alert list); `/api/v1/alertmanagers`, where
//! alerts go.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::Storage;
use super::admin::form_params;
use super::response::{ApiError, success};
use crate::rules::alerting::Alert;
use crate::rules::file::RuleKind;

#[derive(Clone)]
pub struct RulesApi {
    pub storage: Storage,
}

pub fn routes(state: RulesApi) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alertmanagers", get(alertmanagers))
        .with_state(state)
}

/// Unix ms as Prometheus writes a rule's `lastEvaluation` (the zero time: never).
fn evaluated_at(ms: i64) -> String {
    if ms <= 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Unix ms as Go's `time.Time` marshals to JSON (RFC 3339 with as many fraction
/// digits as it needs), for an alert's `activeAt`.
fn go_json_time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .map(|s| {
            // `…:05.120Z` → `…:05.12Z`, `…:05.000Z` → `…:05Z`.
            let (body, _) = s.split_at(s.len() - 1);
            let trimmed = body.trim_end_matches('0').trim_end_matches('.');
            format!("{trimmed}Z")
        })
        .unwrap_or_default()
}

/// An alert as Prometheus's API shows it; the value as Go's `FormatFloat(v, 'e')`.
fn alert_json(a: &Alert) -> Value {
    let labels: Map<String, Value> = a
        .labels
        .iter()
        .map(|l| (l.name.to_string(), json!(l.value.as_str())))
        .collect();
    let mut out = json!({
        "labels": labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": go_json_time(a.active_at_ms),
        "value": crate::rules::unittest::go_format_e(a.value).replace('E', "e"),
    });
    if a.keep_firing_since_ms > 0 {
        out["keepFiringSince"] = json!(go_json_time(a.keep_firing_since_ms));
    }
    out
}

async fn alerts(State(s): State<RulesApi>) -> Result<Response, ApiError> {
    let manager = s.storage.get()?.rules.clone();
    let mut out = Vec::new();
    for g in manager.iter().flat_map(|m| m.groups()) {
        for rs in g.state().rules {
            out.extend(rs.alerts.current().into_iter().map(alert_json));
        }
    }
    Ok(success(json!({ "alerts": out })))
}

/// The Alertmanagers alerts go to, and the targets relabelling dropped, as
/// Prometheus lists them.
async fn alertmanagers(State(s): State<RulesApi>) -> Result<Response, ApiError> {
    let (active, dropped) = s
        .storage
        .get()?
        .rules
        .as_ref()
        .map(|m| m.alertmanagers())
        .unwrap_or_default();
    let urls =
        |v: Vec<String>| -> Vec<Value> { v.into_iter().map(|u| json!({ "url": u })).collect() };
    Ok(success(json!({
        "activeAlertmanagers": urls(active),
        "droppedAlertmanagers": urls(dropped),
    })))
}

async fn rules(State(s): State<RulesApi>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = form_params(q.as_deref(), &HeaderMap::new(), &[]);
    let all = |name: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let want_kind = match params
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.as_str())
    {
        None | Some("") => None,
        Some("record") => Some(RuleKind::Recording),
        Some("alert") => Some(RuleKind::Alerting),
        Some(other) => {
            return Err(ApiError::bad_data(format!(
                "unsupported type {other:?}: want \"alert\" or \"record\""
            )));
        }
    };
    let (names, groups, files) = (all("rule_name[]"), all("rule_group[]"), all("file[]"));
    let filtered = want_kind.is_some() || !names.is_empty();
    let manager = s.storage.get()?.rules.clone();
    let mut out = Vec::new();
    for g in manager.iter().flat_map(|m| m.groups()) {
        if (!groups.is_empty() && !groups.contains(&g.spec.name.as_str()))
            || (!files.is_empty() && !files.contains(&g.file.as_str()))
        {
            continue;
        }
        let state = g.state();
        let mut rules = Vec::new();
        for (rule, rs) in g.spec.rules.iter().zip(&state.rules) {
            if want_kind.is_some_and(|k| k != rule.kind)
                || (!names.is_empty() && !names.contains(&rule.name.as_str()))
            {
                continue;
            }
            let mut r = Map::new();
            if rule.kind == RuleKind::Alerting {
                r.insert("state".into(), json!(rs.alerts.state().as_str()));
            }
            r.insert("name".into(), json!(rule.name));
            r.insert("query".into(), json!(rule.expr));
            if rule.kind == RuleKind::Alerting {
                r.insert("duration".into(), json!(rule.for_ms as f64 / 1000.0));
                r.insert(
                    "keepFiringFor".into(),
                    json!(rule.keep_firing_for_ms as f64 / 1000.0),
                );
            }
            r.insert("labels".into(), json!(rule.labels));
            if rule.kind == RuleKind::Alerting {
                r.insert("annotations".into(), json!(rule.annotations));
                let alerts: Vec<Value> = rs.alerts.current().into_iter().map(alert_json).collect();
                r.insert("alerts".into(), json!(alerts));
            }
            r.insert("health".into(), json!(rs.health.as_str()));
            if let Some(e) = &rs.last_error {
                r.insert("lastError".into(), json!(e));
            }
            r.insert("evaluationTime".into(), json!(rs.evaluation_seconds));
            r.insert(
                "lastEvaluation".into(),
                json!(evaluated_at(rs.last_evaluation_ms)),
            );
            let kind = match rule.kind {
                RuleKind::Recording => "recording",
                RuleKind::Alerting => "alerting",
            };
            r.insert("type".into(), json!(kind));
            rules.push(Value::Object(r));
        }
        if filtered && rules.is_empty() {
            continue;
        }
        out.push(json!({
            "name": g.spec.name,
            "file": g.file,
            "rules": rules,
            "interval": g.interval_ms as f64 / 1000.0,
            "limit": g.spec.limit,
            "evaluationTime": state.evaluation_seconds,
            "lastEvaluation": evaluated_at(state.last_evaluation_ms),
        }));
    }
    Ok(success(json!({ "groups": out })))
}
