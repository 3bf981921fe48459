//! [`RaftCommitLog`]: the cluster's Raft log behind the commit seam.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};

use super::machine::{ClusterMachine, Proposals, Replicated};
use super::network::PeerNetwork;
use super::types::OdinRaft;
use crate::log::{CommitLog, LogError, LogIndex, LogPosition, LogStats, Submitted, Urgency};

pub type Raft<S> = openraft::Raft<OdinRaft, ClusterMachine<S>>;

/// How long an entry may wait to be committed before its submitter is told it was
/// not: a node cut off from the quorum answers within this, never with success.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Submits entries to the cluster: an entry is answered once a quorum holds it and
/// the node that proposed it applied it. A node that knows another node leads
/// forwards the entry there. Cheap to clone.
pub struct RaftCommitLog<S: Replicated> {
    inner: Arc<Inner<S>>,
}

impl<S: Replicated> Clone for RaftCommitLog<S> {
    fn clone(&self) -> Self {
        RaftCommitLog {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S: Replicated> {
    id: u64,
    raft: Raft<S>,
    machine: Arc<S>,
    proposals: Arc<Proposals<S>>,
    /// How to reach the leader to forward to; `None`: never forward, refuse.
    peers: Option<PeerNetwork>,
    write_timeout: Duration,
    runtime: tokio::runtime::Handle,
}

impl<S: Replicated> RaftCommitLog<S> {
    /// The log of node `id`'s `raft`, whose state machine is `machine` and shares
    /// `proposals`; `peers` reaches the leader to forward to (without, a node that does
    /// not lead refuses with [`LogError::NotLeader`]). Must be called inside the
    /// runtime Raft runs on.
    pub fn new(
        id: u64,
        raft: Raft<S>,
        machine: Arc<S>,
        proposals: Arc<Proposals<S>>,
        peers: Option<PeerNetwork>,
        write_timeout: Duration,
    ) -> Self {
        RaftCommitLog {
            inner: Arc::new(Inner {
                id,
                raft,
                machine,
                proposals,
                peers,
                write_timeout,
                runtime: tokio::runtime::Handle::current(),
            }),
        }
    }

    pub fn raft(&self) -> &Raft<S> {
        &self.inner.raft
    }

    pub(crate) fn machine(&self) -> &Arc<S> {
        &self.inner.machine
    }

    /// Proposes an entry on this node, which must lead; never forwards. Returns the
    /// output and the index the entry applied at.
    pub(crate) async fn propose(
        &self,
        bytes: Vec<u8>,
        entry: S::Entry,
    ) -> Result<(S::Output, LogIndex), LogError> {
        let inner = &self.inner;
        let (proposal, outcome) = inner.proposals.register(bytes, entry);
        // Whatever ends this call (an answer, a refusal, the caller giving up), the
        // decoded entry does not stay behind; one that commits later is decoded like
        // anyone's.
        let _withdraw = Withdraw {
            proposals: &inner.proposals,
            seq: proposal.seq,
        };
        let written = tokio::time::timeout(inner.write_timeout, inner.raft.client_write(proposal));
        match written.await {
            Ok(Ok(response)) => {
                let output = outcome.await.map_err(|_| {
                    LogError::Cluster("the entry applied without an outcome".to_string())
                })?;
                Ok((output, response.log_id.index))
            }
            Ok(Err(e)) => Err(refusal(e)),
            Err(_) => Err(LogError::Cluster(format!(
                "not committed by a quorum within {:?}",
                inner.write_timeout
            ))),
        }
    }

    /// Waits until this node applied `index` (a forwarded entry), so that what the
    /// submitter wrote is visible here when it is answered.
    async fn applied(&self, index: LogIndex) -> Result<(), LogError> {
        self.inner
            .raft
            .wait(Some(self.inner.write_timeout))
            .applied_index_at_least(Some(index), "forwarded entry")
            .await
            .map(|_| ())
            .map_err(|e| {
                LogError::Cluster(format!(
                    "committed at {index}, but not applied here within {:?}: {e}",
                    self.inner.write_timeout
                ))
            })
    }

    /// The leader this node knows of, when that is another node, with its address.
    fn other_leader(&self) -> Option<(u64, String)> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let leader = m.current_leader.filter(|l| *l != self.inner.id)?;
        let peer = m.membership_config.membership().get_node(&leader)?;
        Some((leader, peer.address.clone()))
    }
}

/// Withdraws a proposal when dropped.
struct Withdraw<'a, S: Replicated> {
    proposals: &'a Proposals<S>,
    seq: u64,
}

impl<S: Replicated> Drop for Withdraw<'_, S> {
    fn drop(&mut self) {
        self.proposals.withdraw(self.seq);
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

impl<S: Replicated> CommitLog<S::Entry, S::Output> for RaftCommitLog<S> {
    /// Blocks on the runtime the log was built in: call it from a thread of its own
    /// (the maintenance thread, the blocking pool), never from a task.
    fn submit(
        &self,
        bytes: Vec<u8>,
        entry: S::Entry,
        urgency: Urgency,
    ) -> Result<S::Output, LogError> {
        self.inner
            .runtime
            .block_on(self.submit_async(bytes, entry, urgency))
    }

    fn submit_async(
        &self,
        bytes: Vec<u8>,
        entry: S::Entry,
        _urgency: Urgency,
    ) -> Submitted<S::Output> {
        let this = self.clone();
        Box::pin(async move {
            let forward_to = this
                .inner
                .peers
                .as_ref()
                .and_then(|p| Some((p, this.other_leader()?)));
            match forward_to {
                Some((peers, (leader, address))) => {
                    let (reply, index) = peers
                        .forward(leader, &address, bytes, this.inner.write_timeout)
                        .await?;
                    let output = S::decode_output(&reply)
                        .map_err(|e| LogError::Cluster(format!("leader's answer: {e}")))?;
                    this.applied(index).await?;
                    Ok(output)
                }
                None => Ok(this.propose(bytes, entry).await?.0),
            }
        })
    }

    fn applied_index(&self) -> LogIndex {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        m.last_applied.map_or(0, |l| l.index)
    }

    /// Runs `f` on the task that applies entries (openraft's state machine task),
    /// between two of them.
    fn at_position(&self, f: Box<dyn FnOnce(LogPosition) + Send>) -> Result<(), LogError> {
        let ran = self
            .inner
            .raft
            .with_state_machine(move |sm: &mut ClusterMachine<S>| {
                let index = sm.last_applied_index();
                Box::pin(async move {
                    f(LogPosition { index, segment: 0 });
                })
            });
        self.inner
            .runtime
            .block_on(ran)
            .map_err(|e| LogError::Cluster(e.to_string()))
    }

    fn release_before(&self, position: LogPosition) -> Result<(), LogError> {
        let Some(upto) = position.index.checked_sub(1) else {
            return Ok(());
        };
        self.inner
            .runtime
            .block_on(self.inner.raft.trigger().purge_log(upto))
            .map_err(|e| LogError::Cluster(e.to_string()))
    }

    fn stats(&self) -> LogStats {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        LogStats {
            entries_written: m.last_log_index.unwrap_or(0),
            ..LogStats::default()
        }
    }

    fn failure(&self) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        m.running_state.as_ref().err().map(|e| e.to_string())
    }

    fn close(&self) -> Result<(), LogError> {
        self.inner
            .runtime
            .block_on(self.inner.raft.shutdown())
            .map_err(|e| LogError::Cluster(e.to_string()))
    }
}
