//! The cluster's HTTP side: `GET /api/v1/status/cluster` (this node's view, in the
//! Prometheus envelope) and, behind `--web.enable-admin-api`, membership changes:
//! `POST /api/v1/admin/cluster/add?id=N&address=HOST:PORT` (a learner until it caught
//! up, then a voter) and `POST /api/v1/admin/cluster/remove?id=N`. Both answer the
//! status after the change.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::admin::{form_params, param};
use super::response::{ApiError, ErrorType, success};
use std::sync::{Arc, OnceLock};

use crate::replication::control::{ClusterControl, MembershipError};

/// The cluster area: status, and membership changes (admin API).
#[derive(Clone)]
pub struct ClusterApi {
    /// The cluster this node belongs to, once its log started; never set on a
    /// single node.
    pub cluster: Arc<OnceLock<Arc<dyn ClusterControl>>>,
    /// Whether this node runs in a cluster (its handle arrives once storage opened).
    pub clustered: bool,
    /// `--web.enable-admin-api`: membership changes.
    pub admin_enabled: bool,
}

pub fn routes(state: ClusterApi) -> Router {
    Router::new()
        .route("/api/v1/status/cluster", get(status))
        .route("/api/v1/admin/cluster/add", post(add).put(add))
        .route("/api/v1/admin/cluster/remove", post(remove).put(remove))
        .with_state(state)
}

fn cluster(s: &ClusterApi) -> Result<std::sync::Arc<dyn ClusterControl>, ApiError> {
    s.cluster.get().cloned().ok_or_else(|| {
        if s.clustered {
            ApiError::unavailable("the cluster is starting (opening the data directory)")
        } else {
            ApiError::new(
                ErrorType::NotFound,
                "this node runs on its own: no cluster is configured (--cluster.*)",
            )
        }
    })
}

async fn status(State(s): State<ClusterApi>) -> Response {
    match cluster(&s) {
        Ok(c) => success(c.status()),
        Err(e) => e.into_response(),
    }
}

fn membership_error(e: MembershipError) -> ApiError {
    match e {
        MembershipError::Invalid(m) => ApiError::bad_data(m),
        e => ApiError::unavailable(e.to_string()),
    }
}

fn node_id(params: &[(String, String)]) -> Result<u64, ApiError> {
    let id = param(params, "id").ok_or_else(|| ApiError::bad_data("missing parameter id"))?;
    id.parse()
        .map_err(|_| ApiError::bad_data(format!("id {id:?} is not a node id")))
}

/// The request's parameters, once the admin API is on.
fn admin_params(
    s: &ClusterApi,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    if !s.admin_enabled {
        return Err(ApiError::unavailable("admin APIs disabled"));
    }
    Ok(form_params(query, headers, body))
}

/// A membership change.
enum Change {
    /// Add the node (`address` names its cluster listener).
    Add,
    Remove,
}

async fn change(
    s: ClusterApi,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    what: Change,
) -> Response {
    let run = async {
        let params = admin_params(&s, query.as_deref(), &headers, &body)?;
        let id = node_id(&params)?;
        let c = cluster(&s)?;
        let changed = match what {
            Change::Add => {
                let address = param(&params, "address")
                    .ok_or_else(|| ApiError::bad_data("missing parameter address (HOST:PORT)"))?;
                c.add_member(id, address.to_string()).await
            }
            Change::Remove => c.remove_member(id).await,
        };
        changed.map_err(membership_error)
    };
    match run.await {
        Ok(status) => success(status),
        Err(e) => e.into_response(),
    }
}

async fn add(
    State(s): State<ClusterApi>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, query, headers, body, Change::Add).await
}

async fn remove(
    State(s): State<ClusterApi>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, query, headers, body, Change::Remove).await
}
