//! [`RaftCommitLog`]: the cluster's Raft log behind the commit seam.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::impls::ProgressResponder;

use super::log_store::WrittenStats;
use super::machine::{ClusterMachine, Proposals, Replicated};
use super::metrics::RaftCounters;
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
    /// The state machine as Raft sees it (shared with Raft's own handle).
    cluster: ClusterMachine<S>,
    proposals: Arc<Proposals<S>>,
    /// Held while an entry is encoded and handed to Raft (see `propose_once`).
    proposing: tokio::sync::Mutex<()>,
    /// How to reach the leader to forward to; `None`: never forward, refuse.
    peers: Option<PeerNetwork>,
    write_timeout: Duration,
    counters: RaftCounters,
    /// Wakes `at_position` calls to give up (see `CommitLog::interrupt_positions`).
    interrupt: tokio::sync::Notify,
    /// What the log store wrote (`None`: a store that does not say).
    written: Option<Arc<WrittenStats>>,
    runtime: tokio::runtime::Handle,
}

impl<S: Replicated> RaftCommitLog<S> {
    /// The log of `raft`'s node, whose state machine is `cluster` (a clone of
    /// the one Raft was given, sharing `proposals`); `peers` reaches the leader to
    /// forward to (without, a node that does not lead refuses with
    /// [`LogError::NotLeader`]); `written`, what the log store wrote, is what
    /// [`CommitLog::stats`] reports. Must be called inside the runtime Raft runs on.
    pub fn new(
        raft: Raft<S>,
        cluster: ClusterMachine<S>,
        proposals: Arc<Proposals<S>>,
        peers: Option<PeerNetwork>,
        write_timeout: Duration,
        counters: RaftCounters,
        written: Option<Arc<WrittenStats>>,
    ) -> Self {
        // The node's id is Raft's.
        let id = raft.metrics().borrow_watched().id;
        RaftCommitLog {
            inner: Arc::new(Inner {
                id,
                raft,
                machine: cluster.machine().clone(),
                cluster,
                proposals,
                proposing: tokio::sync::Mutex::new(()),
                peers,
                write_timeout,
                counters,
                interrupt: tokio::sync::Notify::new(),
                written,
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

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Proposes an entry on this node, which must lead; never forwards. `bytes`:
    /// the entry's own, where the submitter has them. Returns the output and the
    /// index the entry applied at.
    pub(crate) async fn propose(
        &self,
        bytes: Option<Vec<u8>>,
        entry: S::Entry,
    ) -> Result<(S::Output, LogIndex), LogError> {
        let inner = &self.inner;
        let started = std::time::Instant::now();
        let result = self.propose_once(bytes, entry).await;
        match &result {
            Ok(_) => inner
                .counters
                .proposal_seconds
                .observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                inner.counters.proposals_failed.inc();
            }
        }
        result
    }

    async fn propose_once(
        &self,
        bytes: Option<Vec<u8>>,
        entry: S::Entry,
    ) -> Result<(S::Output, LogIndex), LogError> {
        let inner = &self.inner;
        // Encoding and handing to Raft happen under one lock, so that entries reach
        // the log in the order the state machine encoded them, and only in the term
        // they were encoded for (`with_leader`): see `Replicated::encode_proposal`.
        let (seq, outcome, written) = {
            let _order = inner.proposing.lock().await;
            let leader = inner.raft.as_leader().map_err(|f| LogError::NotLeader {
                leader: f.leader_id,
            })?;
            let leader_id = leader.to_committed_leader_id();
            let settled = inner
                .cluster
                .last_applied()
                .is_some_and(|l| *l.committed_leader_id() == leader_id);
            let (encoded, entry) = inner
                .machine
                .encode_proposal(entry, (leader_id.term, settled));
            let bytes = match encoded.or(bytes) {
                Some(bytes) => bytes,
                None => inner.machine.encode(&entry),
            };
            let (proposal, outcome) = inner.proposals.register(bytes, entry);
            let seq = proposal.seq;
            let (responder, written) = ProgressResponder::complete_only();
            let handed = inner
                .raft
                .write(proposal)
                .with_leader(leader_id)
                .responder(responder)
                .await;
            if let Err(fatal) = handed {
                self.refused(seq);
                return Err(LogError::Cluster(fatal.to_string()));
            }
            (seq, outcome, written)
        };
        // Whatever ends this call (an answer, a refusal, the caller giving up), the
        // decoded entry does not stay behind; one that commits later is decoded like
        // anyone's.
        let _withdraw = Withdraw {
            proposals: &inner.proposals,
            seq,
        };
        match tokio::time::timeout(inner.write_timeout, written).await {
            Ok(Ok(Ok(response))) => outcome
                .await
                .map(|output| (output, response.log_id.index))
                .map_err(|_| LogError::Cluster("the entry applied without an outcome".to_string())),
            Ok(Ok(Err(e))) => {
                // Not appended: it never applies.
                self.refused(seq);
                Err(match e {
                    ClientWriteError::ForwardToLeader(f) => LogError::NotLeader {
                        leader: f.leader_id,
                    },
                    other => LogError::Cluster(other.to_string()),
                })
            }
            Ok(Err(_)) => Err(LogError::Cluster(
                "Raft stopped before answering".to_string(),
            )),
            Err(_) => Err(LogError::Cluster(format!(
                "not committed by a quorum within {:?}",
                inner.write_timeout
            ))),
        }
    }

    /// Tells the state machine that the proposal `seq` was refused.
    fn refused(&self, seq: u64) {
        if let Some(entry) = self.inner.proposals.withdraw(seq) {
            self.inner.machine.proposal_refused(&entry);
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
        // A proposal whose submitter gave up may still apply: nothing to tell.
        let _ = self.proposals.withdraw(self.seq);
    }
}

impl<S: Replicated> CommitLog<S::Entry, S::Output> for RaftCommitLog<S> {
    /// Blocks on the runtime the log was built in: call it from a thread of its own
    /// (the maintenance thread, the blocking pool), never from a task.
    fn submit(
        &self,
        bytes: Option<Vec<u8>>,
        entry: S::Entry,
        urgency: Urgency,
    ) -> Result<S::Output, LogError> {
        self.inner
            .runtime
            .block_on(self.submit_async(bytes, entry, urgency))
    }

    fn submit_async(
        &self,
        bytes: Option<Vec<u8>>,
        entry: S::Entry,
        _urgency: Urgency,
    ) -> Submitted<S::Output> {
        let this = self.clone();
        Box::pin(async move {
            if !S::may_forward(&entry)
                && let Some((leader, _)) = this.other_leader()
            {
                // The leader's own kind of entry (a head cut): its maintenance
                // proposes it there.
                return Err(LogError::NotLeader {
                    leader: Some(leader),
                });
            }
            let forward_to = this
                .inner
                .peers
                .as_ref()
                .and_then(|p| Some((p, this.other_leader()?)));
            match forward_to {
                Some((peers, (leader, address))) => {
                    let started = std::time::Instant::now();
                    let counters = &this.inner.counters;
                    counters.forwarded.inc();
                    let bytes = match bytes {
                        Some(bytes) => bytes,
                        None => this.inner.machine.encode(&entry),
                    };
                    drop(entry);
                    let forwarded = async {
                        let (reply, index) = peers
                            .forward(leader, &address, bytes, this.inner.write_timeout)
                            .await?;
                        let output = S::decode_output(&reply)
                            .map_err(|e| LogError::Cluster(format!("leader's answer: {e}")))?;
                        this.applied(index).await?;
                        Ok(output)
                    };
                    let result = forwarded.await;
                    match &result {
                        Ok(_) => counters
                            .forward_seconds
                            .observe(started.elapsed().as_secs_f64()),
                        Err(_) => {
                            counters.forwards_failed.inc();
                        }
                    }
                    result
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
    /// between two of them, once Raft's side of the position (its log id and
    /// membership) is durable: an image taken there can be resumed from.
    fn at_position(&self, f: Box<dyn FnOnce(LogPosition) + Send>) -> Result<(), LogError> {
        let recorded: Arc<parking_lot::Mutex<Option<std::io::Result<()>>>> = Arc::default();
        let slot = recorded.clone();
        let ran = self
            .inner
            .raft
            .with_state_machine(move |sm: &mut ClusterMachine<S>| {
                let outcome = sm.record_position().map(|index| {
                    // A Raft log has no segments: the index names the position.
                    f(LogPosition {
                        index,
                        segment: index,
                    })
                });
                *slot.lock() = Some(outcome);
                Box::pin(async {})
            });
        let interrupted = self.inner.interrupt.notified();
        self.inner.runtime.block_on(async {
            tokio::select! {
                ran = ran => ran.map_err(|e| LogError::Cluster(e.to_string())),
                () = interrupted => Err(LogError::Cluster(
                    "interrupted: the state machine is installing a snapshot".into(),
                )),
            }
        })?;
        match recorded.lock().take() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(LogError::Cluster(format!(
                "record the Raft position of an image: {e}"
            ))),
            None => Err(LogError::Cluster(
                "the state machine task did not run the image's copy".into(),
            )),
        }
    }

    /// The image at `position` is durable: it becomes Raft's snapshot, and Raft
    /// purges the log before it (keeping what its settings keep for followers that
    /// lag a little).
    fn release_before(&self, position: LogPosition) -> Result<(), LogError> {
        if position.index == 0 {
            return Ok(());
        }
        self.inner
            .cluster
            .image_durable(position.index)
            .map_err(|e| LogError::Cluster(format!("image at {}: {e}", position.index)))?;
        self.inner.counters.snapshots.inc();
        self.inner
            .runtime
            .block_on(self.inner.raft.trigger().snapshot())
            .map_err(|e| LogError::Cluster(e.to_string()))
    }

    fn interrupt_positions(&self) {
        self.inner.interrupt.notify_waiters();
    }

    fn stats(&self) -> LogStats {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        match &self.inner.written {
            Some(w) => {
                let get =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                LogStats {
                    entries_written: get(&w.entries),
                    bytes_written: get(&w.bytes),
                    fsyncs: get(&w.fsyncs),
                    fsync_seconds: get(&w.fsync_nanos) as f64 / 1e9,
                    write_errors: get(&w.write_errors),
                    segment: 0,
                }
            }
            None => LogStats {
                entries_written: m.last_log_index.unwrap_or(0),
                ..LogStats::default()
            },
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
