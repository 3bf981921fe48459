//! Prometheus's TSDB admin API (`--web.enable-admin-api`): delete_series,
//! clean_tombstones, snapshot — same paths, parameters and answers.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;

use super::Storage;
use super::response::{ApiError, success};
use crate::model::{Matcher, parse_time_ms};
use crate::storage::StorageAdmin;

/// The TSDB admin area: off unless `--web.enable-admin-api`.
#[derive(Clone)]
pub struct AdminApi {
    pub storage: Storage,
    pub enabled: bool,
}

pub fn routes(state: AdminApi) -> Router {
    Router::new()
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(clean_tombstones).put(clean_tombstones),
        )
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
        .with_state(state)
}

/// Request parameters from the query string and, for form posts, the body — as Go's
/// `Request.ParseForm` merges them: the body's first (a name in both reads the
/// body's value), a pair with a bad `%` escape or a `;` left out, and the form
/// recognised by its media type in any case.
pub fn form_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let mut out = if is_form {
        go_parse_query(body)
    } else {
        Vec::new()
    };
    out.extend(go_parse_query(query.unwrap_or("").as_bytes()));
    out
}

/// Go's `url.ParseQuery`, keeping what it keeps: pairs split at `&`, each decoded
/// (`+` a space, `%XX` a byte); a pair holding a `;` or an escape that is not `%`
/// and two hex digits is skipped (Go reports it and goes on).
fn go_parse_query(raw: &[u8]) -> Vec<(String, String)> {
    let valid_escapes = |pair: &[u8]| {
        pair.iter().enumerate().all(|(i, &b)| {
            b != b'%'
                || (pair.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && pair.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        })
    };
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty() && !pair.contains(&b';') && valid_escapes(pair))
        .flat_map(|pair| form_urlencoded::parse(pair).into_owned())
        .collect()
}

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn admin(s: &AdminApi) -> Result<std::sync::Arc<dyn StorageAdmin>, ApiError> {
    if !s.enabled {
        return Err(ApiError::unavailable("admin APIs disabled"));
    }
    Ok(s.storage.get()?.admin.clone())
}

/// Parses a series selector such as `up{job="node"}` into matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, ApiError> {
    use promql_parser::parser::Expr;
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::bad_data(format!("invalid parameter \"match[]\": {e}"))
    };
    let expr = crate::promql::parse_expr(s).map_err(|e| bad(&e))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(ApiError::bad_data(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        )));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(ApiError::bad_data(
            "invalid parameter \"match[]\": \"or\" in selectors is not supported",
        ));
    }
    let out = crate::promql::selector_matchers(&vs).map_err(|e| bad(&e))?;
    if out.iter().all(Matcher::matches_empty) {
        return Err(ApiError::bad_data(
            "invalid parameter \"match[]\": match[] must contain at least one non-empty matcher",
        ));
    }
    Ok(out)
}

pub(super) fn time_param(
    params: &[(String, String)],
    name: &str,
    default: i64,
) -> Result<i64, ApiError> {
    match param(params, name) {
        None | Some("") => Ok(default),
        Some(v) => parse_time_ms(v)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter {name:?}: {e}"))),
    }
}

async fn delete_series(
    State(s): State<AdminApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let admin = admin(&s)?;
    let params = form_params(q.as_deref(), &headers, &body);
    let selectors: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v.as_str())
        .collect();
    if selectors.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let start = time_param(&params, "start", i64::MIN)?;
    let end = time_param(&params, "end", i64::MAX)?;
    let sets = selectors
        .into_iter()
        .map(parse_selector)
        .collect::<Result<Vec<_>, _>>()?;
    tokio::task::spawn_blocking(move || {
        for matchers in sets {
            admin.delete_series(matchers, start, end)?;
        }
        Ok::<(), crate::storage::StorageError>(())
    })
    .await
    .map_err(|e| ApiError::new(super::response::ErrorType::Internal, e.to_string()))??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clean_tombstones(State(s): State<AdminApi>) -> Result<Response, ApiError> {
    let admin = admin(&s)?;
    tokio::task::spawn_blocking(move || admin.clean_tombstones())
        .await
        .map_err(|e| ApiError::new(super::response::ErrorType::Internal, e.to_string()))??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct SnapshotData {
    name: String,
}

async fn snapshot(
    State(s): State<AdminApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let admin = admin(&s)?;
    let params = form_params(q.as_deref(), &headers, &body);
    let skip_head = match param(&params, "skip_head") {
        None | Some("") => false,
        Some(v) => v.parse::<bool>().map_err(|_| {
            ApiError::bad_data(format!(
                "unable to parse boolean 'skip_head' argument: {v:?}"
            ))
        })?,
    };
    let name = tokio::task::spawn_blocking(move || admin.snapshot(skip_head))
        .await
        .map_err(|e| ApiError::new(super::response::ErrorType::Internal, e.to_string()))??;
    Ok(success(SnapshotData { name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_to_matchers() {
        let m = parse_selector(r#"up{job=~"n.*",instance!="a"}"#).unwrap();
        let shown: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [r#"__name__="up""#, r#"job=~"n.*""#, r#"instance!="a""#]
        );
        assert!(parse_selector("rate(up[5m])").is_err());
        assert!(parse_selector(r#"{job=""}"#).is_err());
    }

    #[test]
    fn parameters_merge_as_go_parse_form_merges_them() {
        let form = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            h
        };
        let p = form_params(
            Some("query=1%2B3&match[]=a"),
            &form("application/x-www-form-urlencoded; charset=utf-8"),
            b"query=1%2B2&time=4&match[]=b",
        );
        // The body's value wins; a repeated name keeps both, the body's first.
        assert_eq!(param(&p, "query"), Some("1+2"));
        assert_eq!(param(&p, "time"), Some("4"));
        let matches: Vec<&str> = p
            .iter()
            .filter(|(k, _)| k == "match[]")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(matches, ["b", "a"]);
        // The media type in any case; another type's body is not read.
        let p = form_params(
            None,
            &form("APPLICATION/X-WWW-FORM-URLENCODED"),
            b"query=up",
        );
        assert_eq!(param(&p, "query"), Some("up"));
        let p = form_params(None, &form("application/json"), b"query=up");
        assert_eq!(param(&p, "query"), None);
        // A bad escape or a semicolon drops its pair only.
        let p = form_params(Some("query=1%zz&a=%4&b=x;y&c=+%41"), &HeaderMap::new(), b"");
        assert_eq!(p, [("c".to_string(), " A".to_string())]);
    }
}
