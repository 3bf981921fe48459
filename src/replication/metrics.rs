//! `odin_raft_*`: the cluster's self metrics, after openraft's and etcd's.
//!
//! Counters and histograms are kept by the log as it works ([`RaftCounters`]); the
//! node's state (term, leader, indices) is read from openraft's metrics at scrape
//! time ([`RaftStateCollector`]), once the log has started.

use std::sync::{Arc, OnceLock};

use openraft::async_runtime::watch::WatchReceiver;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::commit_log::RaftCommitLog;
use super::machine::Replicated;

const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What the log counts as it works; cheap to clone (clones count together).
#[derive(Clone)]
pub struct RaftCounters {
    /// Entries this node proposed as leader: from the proposal to its apply here.
    pub proposal_seconds: Histogram,
    /// Entries this node forwarded to the leader: to the leader's answer and the
    /// apply here.
    pub forward_seconds: Histogram,
    pub proposals_failed: Counter,
    pub forwarded: Counter,
    pub forwards_failed: Counter,
    /// Images made Raft's snapshot (the log before them may then be purged).
    pub snapshots: Counter,
    pub leader_changes: Counter,
}

impl Default for RaftCounters {
    fn default() -> Self {
        RaftCounters {
            proposal_seconds: Histogram::new(LATENCY_BUCKETS),
            forward_seconds: Histogram::new(LATENCY_BUCKETS),
            proposals_failed: Counter::default(),
            forwarded: Counter::default(),
            forwards_failed: Counter::default(),
            snapshots: Counter::default(),
            leader_changes: Counter::default(),
        }
    }
}

/// Reads the node's Raft state at scrape time.
type StateReader = Arc<dyn Fn() -> RaftState + Send + Sync>;

#[derive(Debug, Default, Clone, Copy)]
struct RaftState {
    term: u64,
    is_leader: bool,
    has_leader: bool,
    commit_index: u64,
    applied_index: u64,
    last_log_index: u64,
    snapshot_index: u64,
    purged_index: u64,
    voters: u64,
}

struct RaftStateCollector {
    reader: Arc<OnceLock<StateReader>>,
}

impl std::fmt::Debug for RaftStateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStateCollector")
            .field("started", &self.reader.get().is_some())
            .finish()
    }
}

impl Collector for RaftStateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(read) = self.reader.get() else {
            return Ok(());
        };
        let s = read();
        let gauges: [(&str, &str, u64); 9] = [
            ("odin_raft_term", "The node's current Raft term.", s.term),
            (
                "odin_raft_is_leader",
                "1 while this node leads the cluster.",
                u64::from(s.is_leader),
            ),
            (
                "odin_raft_has_leader",
                "1 while this node knows a leader.",
                u64::from(s.has_leader),
            ),
            (
                "odin_raft_commit_index",
                "The newest log index a quorum holds, as this node knows it.",
                s.commit_index,
            ),
            (
                "odin_raft_applied_index",
                "The newest log index applied to this node's TSDB.",
                s.applied_index,
            ),
            (
                "odin_raft_last_log_index",
                "The newest log index in this node's log.",
                s.last_log_index,
            ),
            (
                "odin_raft_snapshot_index",
                "The log index of the image Raft offers as its snapshot.",
                s.snapshot_index,
            ),
            (
                "odin_raft_purged_index",
                "The newest log index purged from this node's log.",
                s.purged_index,
            ),
            (
                "odin_raft_voters",
                "Voting members of the cluster.",
                s.voters,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v as i64);
            g.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

/// The cluster metrics of a registry: counters for the log to keep, and the state
/// read once [`RaftMetrics::watch`] names the running log.
pub struct RaftMetrics {
    pub counters: RaftCounters,
    reader: Arc<OnceLock<StateReader>>,
}

impl RaftMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let counters = RaftCounters::default();
        let r = registry.sub_registry_with_prefix("odin_raft");
        r.register(
            "proposal_duration_seconds",
            "Entries proposed by this node as leader: from the proposal until it applied here",
            counters.proposal_seconds.clone(),
        );
        r.register(
            "forward_duration_seconds",
            "Writes forwarded to the leader: until the leader answered and the entry applied here",
            counters.forward_seconds.clone(),
        );
        r.register(
            "proposals_failed",
            "Entries this node proposed that were not committed (no quorum in time, leadership lost)",
            counters.proposals_failed.clone(),
        );
        r.register(
            "forwarded_writes",
            "Writes this node forwarded to the leader",
            counters.forwarded.clone(),
        );
        r.register(
            "forwarded_writes_failed",
            "Writes this node forwarded to the leader that failed",
            counters.forwards_failed.clone(),
        );
        r.register(
            "snapshots",
            "Head images made Raft's snapshot, after which the log before them may be purged",
            counters.snapshots.clone(),
        );
        r.register(
            "leader_changes",
            "Times the leader this node knows changed",
            counters.leader_changes.clone(),
        );
        let reader: Arc<OnceLock<StateReader>> = Arc::default();
        registry.register_collector(Box::new(RaftStateCollector {
            reader: reader.clone(),
        }));
        RaftMetrics { counters, reader }
    }

    /// Reads `log`'s state from now on, and counts leader changes until `stop`.
    pub fn watch<S: Replicated>(
        &self,
        log: &RaftCommitLog<S>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let raft = log.raft().clone();
        let lease = super::status::lease(&raft);
        let reader: StateReader = Arc::new(move || {
            let metrics = raft.metrics();
            let m = metrics.borrow_watched();
            let leads = super::status::leads_now(&m, lease);
            let stepped_down = m.state == openraft::ServerState::Leader && !leads;
            RaftState {
                term: m.current_term,
                is_leader: leads,
                has_leader: m.current_leader.is_some() && !stepped_down,
                commit_index: m
                    .local_committed
                    .max(m.cluster_committed)
                    .map_or(0, |l| l.index),
                applied_index: m.last_applied.map_or(0, |l| l.index),
                last_log_index: m.last_log_index.unwrap_or(0),
                snapshot_index: m.snapshot.map_or(0, |l| l.index),
                purged_index: m.purged.map_or(0, |l| l.index),
                voters: m.membership_config.membership().voter_ids().count() as u64,
            }
        });
        let _ = self.reader.set(reader);
        let mut watch = log.raft().metrics();
        let changes = self.counters.leader_changes.clone();
        tokio::spawn(async move {
            let mut leader = watch.borrow_watched().current_leader;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = watch.changed() => if changed.is_err() { return },
                }
                let now = watch.borrow_watched().current_leader;
                if now != leader && now.is_some() {
                    changes.inc();
                }
                leader = now;
            }
        });
    }
}
