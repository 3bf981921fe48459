//! `/api/v1/rules`: the rule groups and how their rules last evaluated, in
//! Prometheus's JSON (Grafana's rule browser reads it), with its `type`,
//! `rule_name[]`, `rule_group[]` and `file[]` filters.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::Storage;
use super::admin::form_params;
use super::response::{ApiError, success};
use crate::rules::file::RuleKind;

#[derive(Clone)]
pub struct RulesApi {
    pub storage: Storage,
}

pub fn routes(state: RulesApi) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
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
            // Alerting rules are not evaluated yet: they are not listed.
            if rule.kind != RuleKind::Recording
                || want_kind.is_some_and(|k| k != rule.kind)
                || (!names.is_empty() && !names.contains(&rule.name.as_str()))
            {
                continue;
            }
            let mut r = Map::new();
            r.insert("name".into(), json!(rule.name));
            r.insert("query".into(), json!(rule.expr));
            r.insert("labels".into(), json!(rule.labels));
            r.insert("health".into(), json!(rs.health.as_str()));
            if let Some(e) = &rs.last_error {
                r.insert("lastError".into(), json!(e));
            }
            r.insert("evaluationTime".into(), json!(rs.evaluation_seconds));
            r.insert(
                "lastEvaluation".into(),
                json!(evaluated_at(rs.last_evaluation_ms)),
            );
            r.insert("type".into(), json!("recording"));
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
