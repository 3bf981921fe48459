//! What `/api/v1/status/cluster` answers: one node's view of the cluster, from
//! openraft's metrics, in the camelCase of Prometheus's status endpoints.

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Instant, ServerState};

use super::commit_log::Raft;
use super::machine::Replicated;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate`, `learner` (or `shutdown`).
    pub role: &'static str,
    /// `null` while this node knows no leader.
    pub leader_id: Option<u64>,
    pub term: u64,
    /// The newest entry a quorum holds, as this node knows it.
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: u64,
    pub address: String,
    /// A voter, or a learner that only receives the log.
    pub voter: bool,
    /// Seconds since the member last answered this node; known on the leader only,
    /// `null` elsewhere and for a member that never answered.
    pub last_contact_seconds: Option<f64>,
}

/// The role's name in the status.
pub fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// The status of `raft`'s node now.
pub fn cluster_status<S: Replicated>(raft: &Raft<S>) -> ClusterStatus {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, peer)| {
            let contact = if *id == m.id && m.state == ServerState::Leader {
                Some(0.0)
            } else {
                m.heartbeat
                    .as_ref()
                    .and_then(|h| h.get(id).cloned().flatten())
                    .map(|at| at.elapsed().as_secs_f64())
            };
            Member {
                id: *id,
                address: peer.address.clone(),
                voter: voters.contains(id),
                last_contact_seconds: contact,
            }
        })
        .collect();
    ClusterStatus {
        node_id: m.id,
        role: role(m.state),
        leader_id: m.current_leader,
        term: m.current_term,
        commit_index: m.local_committed.max(m.cluster_committed).map(|l| l.index),
        applied_index: m.last_applied.map(|l| l.index),
        members,
    }
}
