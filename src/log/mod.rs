//! The durable, ordered log that every change to stored content passes through.
//!
//! * [`record`]: the entry codec: sample batches (with their labels, or in a cluster
//!   by the replicated series dictionary), log lines, deletions and head cuts. No
//!   entry holds a node-local series reference, so the same bytes apply identically
//!   on every replica.
//! * [`wal`]: the single-node log, a write-ahead log with group commit, and
//!   [`wal::WalLog`], its [`CommitLog`].
//!
//! The seam is [`CommitLog`]: submit an entry, and the answer comes once the entry is
//! durable *and* applied. The backends (`tsdb`) are [`StateMachine`]s: they receive
//! their log through a [`LogStore`] and apply its entries in order; they never build
//! one. One node's WAL and a cluster's Raft log are two implementations of the seam,
//! never both at once ("one durable record").

pub mod record;
pub mod varint;
pub mod wal;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The position of an entry in its log, counted from 1 (0: nothing applied yet).
pub type LogIndex = u64;

/// A place in the log between two entries: every entry before it applied, none
/// after. An image of the state taken there, plus the log after it, is the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Entries applied before the position, counted from the first entry the log
    /// ever held: a Raft log's index.
    pub index: LogIndex,
    /// The first WAL segment holding entries after the position (all of it does);
    /// 0 for a log without segments.
    pub segment: u64,
}

/// How soon a submission wants its entry made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Someone waits on the answer (a remote-write request, an admin call).
    Now,
    /// Nobody waits (a scrape's commit): the log may hold the entry back briefly so
    /// that it shares an fsync with others.
    Patient,
}

/// What a log feeds: applies entries in log order.
///
/// Applying must be deterministic: the same entries in the same order leave the same
/// state on every replica, whatever the timing. Anything a replica does on its own
/// schedule (writing a block, truncating) must follow from applied entries only.
pub trait StateMachine: Send + Sync + 'static {
    /// An entry as the state machine applies it: decoded, plus shortcuts only the
    /// node that proposed it has (series it already resolved), never part of the
    /// bytes.
    type Entry: Send + 'static;
    /// What applying an entry answers to whoever submitted it.
    type Output: Send + 'static;

    /// Turns an entry's bytes back into an entry, during recovery or on a replica
    /// that did not propose it. `applier_busy` says the applying side has a backlog,
    /// so decoding should take on work it could leave to [`apply`](Self::apply).
    fn decode(&self, bytes: &[u8], applier_busy: bool) -> Result<Self::Entry, String>;

    /// Applies the entry at `index`; indices arrive in order, without gaps.
    fn apply(&self, index: LogIndex, entry: Self::Entry) -> Self::Output;

    /// The entry's bytes, self-contained (what [`decode`](Self::decode) reads on any
    /// node), for a submission that came without them.
    fn encode(&self, entry: &Self::Entry) -> Vec<u8>;
}

/// Why a submission failed. Nothing was applied for it; whether its bytes reached
/// the disk is unknown, and the entry is not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    /// The state machine panicked applying an entry while recovering.
    #[error("applying an entry panicked during recovery")]
    RecoveryPanicked,
    /// This node does not lead the cluster: entries go to the leader.
    #[error("not the cluster's leader (the leader is {})", leader.map_or("unknown".to_string(), |l| format!("node {l}")))]
    NotLeader { leader: Option<u64> },
    /// The cluster could not commit the entry; whether it will apply later is unknown.
    #[error("cluster: {0}")]
    Cluster(String),
}

impl LogError {
    /// The OS error behind the failure, for callers that react to a full disk.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            LogError::Wal(e) => e.io_kind(),
            LogError::RecoveryPanicked | LogError::NotLeader { .. } | LogError::Cluster(_) => None,
        }
    }
}

/// The answer to an asynchronous submission.
pub type Submitted<O> = Pin<Box<dyn Future<Output = Result<O, LogError>> + Send>>;

/// Counters of a log, for the self metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    pub entries_written: u64,
    pub bytes_written: u64,
    pub fsyncs: u64,
    pub fsync_seconds: f64,
    pub write_errors: u64,
    /// The WAL segment being written (0 for logs without segments).
    pub segment: u64,
}

/// The commit seam: "submit an entry, get an answer once it is durable and applied".
///
/// `bytes` is the entry as the log stores and replicates it ([`record`]'s codec),
/// where the submitter has them (a scrape reuses most of its last entry's); `None`
/// lets the log encode the entry ([`StateMachine::encode`]) if it needs those bytes:
/// a cluster's leader writes batches in a shorter form of its own. `entry` is the
/// same entry decoded, with the proposer's shortcuts, so the node that proposes it
/// does not decode its own bytes again. Entries apply in the
/// order the log fixes, which for concurrent submitters is not their call order.
pub trait CommitLog<E, O>: Send + Sync {
    /// Submits and blocks until the entry is durable and applied.
    fn submit(&self, bytes: Option<Vec<u8>>, entry: E, urgency: Urgency) -> Result<O, LogError>;

    /// Submits without holding a thread. Once the entry is queued, dropping the
    /// future does not withdraw it.
    fn submit_async(&self, bytes: Option<Vec<u8>>, entry: E, urgency: Urgency) -> Submitted<O>;

    /// The index of the newest applied entry.
    fn applied_index(&self) -> LogIndex;

    /// Runs `f` on the applying side between two entries, at the position it gets:
    /// what the state is there is exactly the entries before it. `f` holds up every
    /// entry after it: it should only copy. Returns once `f` ran.
    fn at_position(&self, f: Box<dyn FnOnce(LogPosition) + Send>) -> Result<(), LogError>;

    /// Lets the log forget the entries before `position`: an image of the state
    /// there is durable.
    fn release_before(&self, position: LogPosition) -> Result<(), LogError>;

    /// Makes the calls now waiting in [`at_position`](Self::at_position) give up with
    /// an error. The state machine calls it before it waits for something such a
    /// caller holds (installing a snapshot waits for maintenance, which may be
    /// waiting to take an image). A log whose positions never wait on the applying
    /// side has nothing to do.
    fn interrupt_positions(&self) {}

    fn stats(&self) -> LogStats;

    /// Why the log can no longer take entries although nobody closed it; `None`
    /// while all is well.
    fn failure(&self) -> Option<String>;

    /// Stops taking entries, lets the queued ones finish, and closes. Idempotent.
    fn close(&self) -> Result<(), LogError>;
}

/// What recovering a state machine from a log found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Entries applied during recovery.
    pub entries: u64,
    /// Entries skipped because they could not be decoded.
    pub undecodable: u64,
    /// Damaged places the log cut out or skipped.
    pub corruptions: u64,
    /// Bytes of damaged log taken out.
    pub corrupt_bytes: u64,
    /// Pieces of log found missing (WAL segments).
    pub missing: u64,
}

/// A log that is open but takes no entries yet.
pub trait LogStore<S: StateMachine> {
    /// Applies what the log holds to `machine`, in order (from `from` on when the
    /// machine was restored from an image taken there), then starts taking
    /// submissions, which apply to `machine` too.
    #[allow(clippy::type_complexity)]
    fn start(
        self: Box<Self>,
        machine: Arc<S>,
        from: Option<LogPosition>,
    ) -> Result<(Arc<dyn CommitLog<S::Entry, S::Output>>, Recovery), LogError>;
}
