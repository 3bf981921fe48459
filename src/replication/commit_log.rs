//! [`RaftCommitLog`]: the cluster's Raft log behind the commit seam.

use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};

use super::machine::{ClusterMachine, Proposals, Snapshots};
use super::types::OdinRaft;
use crate::log::{CommitLog, LogError, LogIndex, LogStats, Submitted, Urgency};

pub type Raft<S> = openraft::Raft<OdinRaft, ClusterMachine<S>>;

/// Submits entries to the cluster: an entry is answered once a quorum holds it and
/// this node applied it.
pub struct RaftCommitLog<S: Snapshots> {
    raft: Raft<S>,
    proposals: Arc<Proposals<S>>,
    runtime: tokio::runtime::Handle,
}

impl<S: Snapshots> RaftCommitLog<S> {
    /// The log of `raft`, whose state machine shares `proposals`. Must be called
    /// inside the runtime Raft runs on.
    pub fn new(raft: Raft<S>, proposals: Arc<Proposals<S>>) -> Self {
        RaftCommitLog {
            raft,
            proposals,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }
}

/// What Raft's refusal means for the submitter.
fn refusal(e: RaftError<OdinRaft, ClientWriteError<OdinRaft>>) -> LogError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => LogError::NotLeader {
            leader: f.leader_id,
        },
        other => LogError::Cluster(other.to_string()),
    }
}

impl<S: Snapshots> CommitLog<S::Entry, S::Output> for RaftCommitLog<S> {
    /// Blocks on the runtime the log was built in: call it from a thread of its own
    /// (the maintenance thread, the blocking pool), never from a task.
    fn submit(
        &self,
        bytes: Vec<u8>,
        entry: S::Entry,
        urgency: Urgency,
    ) -> Result<S::Output, LogError> {
        self.runtime
            .block_on(self.submit_async(bytes, entry, urgency))
    }

    fn submit_async(
        &self,
        bytes: Vec<u8>,
        entry: S::Entry,
        _urgency: Urgency,
    ) -> Submitted<S::Output> {
        let (proposal, outcome) = self.proposals.register(bytes, entry);
        let seq = proposal.seq;
        let raft = self.raft.clone();
        let proposals = self.proposals.clone();
        Box::pin(async move {
            match raft.client_write(proposal).await {
                Ok(_) => outcome.await.map_err(|_| {
                    LogError::Cluster("the entry applied without an outcome".to_string())
                }),
                Err(e) => {
                    proposals.withdraw(seq);
                    Err(refusal(e))
                }
            }
        })
    }

    fn applied_index(&self) -> LogIndex {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.last_applied.map_or(0, |l| l.index)
    }

    /// Raft forgets entries once a snapshot covers them; this asks for one.
    fn compact(&self, _keep: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>) -> Result<(), LogError> {
        self.runtime
            .block_on(self.raft.trigger().snapshot())
            .map_err(|e| LogError::Cluster(e.to_string()))
    }

    fn stats(&self) -> LogStats {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        LogStats {
            entries_written: m.last_log_index.unwrap_or(0),
            ..LogStats::default()
        }
    }

    fn failure(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.running_state.as_ref().err().map(|e| e.to_string())
    }

    fn close(&self) -> Result<(), LogError> {
        self.runtime
            .block_on(self.raft.shutdown())
            .map_err(|e| LogError::Cluster(e.to_string()))
    }
}
