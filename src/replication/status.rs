//! What `/api/v1/status/cluster` answers: one node's view of the cluster, from
//! openraft's metrics, in the camelCase of Prometheus's status endpoints.

use openraft::async_runtime::watch::WatchReceiver;
use std::time::Duration;

use openraft::{Instant, RaftMetrics, ServerState};

use super::commit_log::Raft;
use super::machine::Replicated;
use super::types::OdinRaft;

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

/// Whether the node of `m` leads and may commit now: openraft's state is leader, and
/// a quorum acknowledged it within the lease (the longest election timeout), or it is
/// the only voter. A leader cut off from the quorum keeps openraft's leader state
/// until it hears of a newer term, but refuses every write once the lease ran out;
/// it reports itself as a follower without a leader, as etcd's CheckQuorum steps
/// such a leader down.
pub fn leads_now(m: &RaftMetrics<OdinRaft>, lease: Duration) -> bool {
    if m.state != ServerState::Leader || m.current_leader != Some(m.id) {
        return false;
    }
    let mut voters = m.membership_config.membership().voter_ids();
    if voters.next() == Some(m.id) && voters.next().is_none() {
        return true;
    }
    m.last_quorum_acked
        .as_ref()
        .is_some_and(|at| at.elapsed() < lease)
}

/// The lease of `raft`'s leadership (see [`leads_now`]).
pub fn lease<S: Replicated>(raft: &Raft<S>) -> Duration {
    Duration::from_millis(raft.config().election_timeout_max)
}

/// The status of `raft`'s node now.
pub fn cluster_status<S: Replicated>(raft: &Raft<S>) -> ClusterStatus {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let stepped_down = m.state == ServerState::Leader && !leads_now(&m, lease(raft));
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
        role: if stepped_down {
            "follower"
        } else {
            role(m.state)
        },
        leader_id: if stepped_down { None } else { m.current_leader },
        term: m.current_term,
        commit_index: m.local_committed.max(m.cluster_committed).map(|l| l.index),
        applied_index: m.last_applied.map(|l| l.index),
        members,
    }
}
