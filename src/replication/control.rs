//! What the rest of the appliance asks of the cluster, without openraft's types: its
//! status, membership changes (`odin cluster add|remove`), and whether this node leads.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::BoxFuture;
use openraft::ChangeMembers;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};

use super::commit_log::RaftCommitLog;
use super::machine::Replicated;
use super::status::{ClusterStatus, cluster_status, leads_now, lease};
use super::types::{OdinRaft, Peer};

/// How long adding a member may take: the learner catching up included.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a membership change was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MembershipError {
    /// Changes go to the leader.
    #[error("this node does not lead the cluster; ask the leader (node {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader { leader: Option<u64> },
    /// The request itself is wrong (an unknown node, the last voter, a bad address).
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not make the change now (no quorum, a change in progress,
    /// the learner did not catch up in time).
    #[error("{0}")]
    Unavailable(String),
}

/// One node's handle on its cluster.
pub trait ClusterControl: Send + Sync {
    fn status(&self) -> ClusterStatus;

    /// Whether this node leads now (and can commit).
    fn is_leader(&self) -> bool;

    /// Adds node `id`, reached at `address`, as a learner; once it caught up with the
    /// log, makes it a voter.
    fn add_member(
        &self,
        id: u64,
        address: String,
    ) -> BoxFuture<'static, Result<ClusterStatus, MembershipError>>;

    /// Removes node `id` (a voter or a learner) from the cluster.
    fn remove_member(&self, id: u64) -> BoxFuture<'static, Result<ClusterStatus, MembershipError>>;
}

fn refused(e: RaftError<OdinRaft, ClientWriteError<OdinRaft>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MembershipError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            MembershipError::Invalid(c.to_string())
        }
        other => MembershipError::Unavailable(other.to_string()),
    }
}

impl<S: Replicated> ClusterControl for RaftCommitLog<S> {
    fn status(&self) -> ClusterStatus {
        cluster_status(self.raft())
    }

    fn is_leader(&self) -> bool {
        let metrics = self.raft().metrics();
        let m = metrics.borrow_watched();
        leads_now(&m, lease(self.raft()))
    }

    fn add_member(
        &self,
        id: u64,
        address: String,
    ) -> BoxFuture<'static, Result<ClusterStatus, MembershipError>> {
        let log = self.clone();
        Box::pin(async move {
            super::node::check_address(&address).map_err(MembershipError::Invalid)?;
            if id == 0 {
                return Err(MembershipError::Invalid("ids start at 1".into()));
            }
            let raft = log.raft().clone();
            let change = async {
                // Blocking: returns once the learner holds the log up to the leader's
                // end when it was added.
                raft.add_learner(id, Peer { address }, true)
                    .await
                    .map_err(refused)?;
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(refused)
            };
            tokio::time::timeout(MEMBERSHIP_TIMEOUT, change)
                .await
                .map_err(|_| {
                    MembershipError::Unavailable(format!(
                        "node {id} did not catch up and become a voter within {MEMBERSHIP_TIMEOUT:?}"
                    ))
                })??;
            Ok(log.status())
        })
    }

    fn remove_member(&self, id: u64) -> BoxFuture<'static, Result<ClusterStatus, MembershipError>> {
        let log = self.clone();
        Box::pin(async move {
            let raft = log.raft().clone();
            let (is_voter, known) = {
                let metrics = raft.metrics();
                let m = metrics.borrow_watched();
                let membership = m.membership_config.membership();
                let voters: BTreeSet<u64> = membership.voter_ids().collect();
                let known = membership.get_node(&id).is_some();
                if voters.contains(&id) && voters.len() == 1 {
                    return Err(MembershipError::Invalid(format!(
                        "node {id} is the last voter; a cluster cannot remove it"
                    )));
                }
                (voters.contains(&id), known)
            };
            if !known {
                return Err(MembershipError::Invalid(format!(
                    "node {id} is not a member"
                )));
            }
            let change = if is_voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            tokio::time::timeout(MEMBERSHIP_TIMEOUT, raft.change_membership(change, false))
                .await
                .map_err(|_| {
                    MembershipError::Unavailable(format!(
                        "removing node {id} was not committed within {MEMBERSHIP_TIMEOUT:?}"
                    ))
                })?
                .map_err(refused)?;
            Ok(log.status())
        })
    }
}
