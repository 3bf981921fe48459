//! The seams between ODIN's sources, its backends and its readers, after Prometheus's
//! `storage/interface.go`.
//!
//! * Writers (scrape loops, collectors, the remote-write receiver) go through
//!   [`Appendable`] / [`Appender`]: samples are buffered by `append` and become durable
//!   and visible together on `commit`.
//! * Readers (PromQL, the series API, federation, remote read) go through
//!   [`Queryable`] / [`Querier`], which yield decoded samples per series, sorted by
//!   labels.
//! * The StoreAPI and remote read's streamed mode go through [`ChunkQueryable`], which
//!   yields encoded chunks without decoding them.
//!
//! Only `app/` names the concrete TSDB; everything above the backends sees these traits.
//! This module must not import any backend.

mod error;
pub mod memory;
mod merge;

pub use error::{AppendError, ErrorKind, Result, StorageError};
pub use merge::{MergeChunkSeriesSet, MergeSeriesSet, merge_chunk_series, merge_samples};

use crate::model::{Labels, Matcher, Sample};

/// Something samples can be written to.
pub trait Appendable: Send + Sync {
    /// A new appender. Appenders are cheap, single-use and not shared between threads.
    fn appender(&self) -> Box<dyn Appender>;
}

/// Why the storage refused one sample. Refusals are values, counted per reason; the
/// rest of the batch goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the newest sample of its series.
    OutOfOrder,
    /// Older than the oldest time the head still accepts (already cut into a block).
    OutOfBounds,
    /// Same timestamp as the newest sample of its series, with another value.
    Duplicate,
    /// Newer than the wall clock plus the allowed window
    /// (`--storage.tsdb.too-far-in-future.time-window`).
    TooFarInFuture,
}

impl RejectReason {
    pub const ALL: [RejectReason; 4] = [
        RejectReason::OutOfOrder,
        RejectReason::OutOfBounds,
        RejectReason::Duplicate,
        RejectReason::TooFarInFuture,
    ];

    /// The label value used in `odin_tsdb_rejected_samples_total{reason=...}` and in
    /// messages to clients.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::OutOfBounds => "out_of_bounds",
            RejectReason::Duplicate => "duplicate",
            RejectReason::TooFarInFuture => "too_far_in_future",
        }
    }
}

/// What a committed batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendSummary {
    /// Samples stored.
    pub accepted: u64,
    /// Samples identical to one already stored (same timestamp and value bits); kept
    /// once and not an error, as in Prometheus.
    pub unchanged: u64,
    pub out_of_order: u64,
    pub out_of_bounds: u64,
    pub duplicate: u64,
    pub too_far_in_future: u64,
}

impl AppendSummary {
    pub fn rejected(&self) -> u64 {
        self.out_of_order + self.out_of_bounds + self.duplicate + self.too_far_in_future
    }

    pub fn count(&self, reason: RejectReason) -> u64 {
        match reason {
            RejectReason::OutOfOrder => self.out_of_order,
            RejectReason::OutOfBounds => self.out_of_bounds,
            RejectReason::Duplicate => self.duplicate,
            RejectReason::TooFarInFuture => self.too_far_in_future,
        }
    }

    pub fn add_rejected(&mut self, reason: RejectReason, n: u64) {
        match reason {
            RejectReason::OutOfOrder => self.out_of_order += n,
            RejectReason::OutOfBounds => self.out_of_bounds += n,
            RejectReason::Duplicate => self.duplicate += n,
            RejectReason::TooFarInFuture => self.too_far_in_future += n,
        }
    }

    pub fn merge(&mut self, other: &AppendSummary) {
        self.accepted += other.accepted;
        self.unchanged += other.unchanged;
        self.out_of_order += other.out_of_order;
        self.out_of_bounds += other.out_of_bounds;
        self.duplicate += other.duplicate;
        self.too_far_in_future += other.too_far_in_future;
    }
}

/// A batch of writes. Nothing is visible to readers before `commit`, and `commit`
/// returns only once the batch is durable.
pub trait Appender: Send {
    /// Buffers one sample for `labels`. Fails only for input that can never be stored
    /// (an invalid label set); time-based refusals are reported by `commit`.
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> std::result::Result<(), AppendError>;

    /// Buffers samples of the series given by borrowed label pairs, sorted by name and
    /// unique, as decoders produce them. Backends override this to find an existing
    /// series without building a [`Labels`]; the default builds one.
    fn append_pairs(
        &mut self,
        labels: &[(&str, &str)],
        samples: &[Sample],
    ) -> std::result::Result<(), AppendError> {
        let labels = Labels::from_pairs(labels.iter().copied());
        for s in samples {
            self.append(&labels, s.t, s.v)?;
        }
        Ok(())
    }

    /// Called with the labels of a series a few series before
    /// [`Appender::append_pairs_prepared`] is called with them: a backend whose
    /// lookup waits on memory starts fetching it here, so that the waits of several
    /// series overlap. Returns the key the later call gets (a hash, say).
    fn prepare_pairs(&mut self, labels: &[(&str, &str)]) -> u64 {
        let _ = labels;
        0
    }

    /// [`Appender::append_pairs`] for labels [`Appender::prepare_pairs`] was called
    /// with, and the key it returned.
    fn append_pairs_prepared(
        &mut self,
        key: u64,
        labels: &[(&str, &str)],
        samples: &[Sample],
    ) -> std::result::Result<(), AppendError> {
        let _ = key;
        self.append_pairs(labels, samples)
    }

    /// A hint that about `series` series are coming, so that the batch is sized once.
    fn reserve(&mut self, series: usize) {
        let _ = series;
    }

    /// As [`Appender::append`], with the reference this backend gave for these labels
    /// before (Prometheus's `Append(ref, …)`): a scraper keeps it per exposed series,
    /// so the backend finds the series without hashing and comparing labels. The
    /// backend updates `series` in place: it sets a reference where it has one. A
    /// caller lets go of a reference when the series missed a scrape (it may have
    /// been dropped from the backend meanwhile). The default leaves it as it is.
    fn append_ref(
        &mut self,
        series: &mut Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> std::result::Result<(), AppendError> {
        let _ = series;
        self.append(labels, t, v)
    }

    /// Makes the batch durable, then visible. Blocks the calling thread until the
    /// batch is on disk (call it from a blocking context, not from an async task).
    fn commit(self: Box<Self>) -> Result<AppendSummary>;

    /// [`commit`](Appender::commit) for a writer nobody is waiting on (a scrape):
    /// the storage may hold the batch back a little (a tenth of a second in the TSDB)
    /// so that it shares its log sync with others. As durable once it returns.
    fn commit_patient(self: Box<Self>) -> Result<AppendSummary> {
        self.commit()
    }

    /// [`commit_patient`](Appender::commit_patient) for a writer that commits much the
    /// same batch again and again (a scrape loop, every interval) and keeps `memo`
    /// between its commits: the backend may leave work there to reuse next time (the
    /// TSDB keeps the encoded labels of its WAL record). The batch is prepared on the
    /// calling thread, which must not wait for disk here: a scrape loop calls this on
    /// the async runtime. The returned future resolves once the batch is durable, so
    /// the writer waits for the log without holding a thread. The default ignores
    /// `memo` and commits before returning, which suits only backends whose commit
    /// does not wait for disk (the in-memory one); the TSDB overrides it.
    fn commit_patient_async(self: Box<Self>, memo: &mut CommitMemo) -> CommitFuture {
        let _ = memo;
        Box::pin(std::future::ready(self.commit_patient()))
    }

    /// Drops the batch.
    fn rollback(self: Box<Self>);
}

/// A commit in flight (see [`Appender::commit_patient_async`]). Dropping it does not
/// undo the commit.
pub type CommitFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AppendSummary>> + Send + 'static>>;

/// What one writer keeps between its commits for the backend (see
/// [`Appender::commit_patient_async`]); only the backend that filled it reads it.
#[derive(Default)]
pub struct CommitMemo(pub Option<Box<dyn std::any::Any + Send>>);

/// A backend's handle on a stored series, handed out by [`Appender::append_ref`] and
/// only meaningful to the backend that made it.
#[derive(Clone)]
pub struct SeriesRef(pub std::sync::Arc<dyn std::any::Any + Send + Sync>);

/// Optional hints for a select, as Prometheus's `SelectHints`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectHints {
    pub start_ms: i64,
    pub end_ms: i64,
    /// When true, only labels are needed; samples may be left out.
    pub series_only: bool,
    /// When true, series come in label order. The PromQL engine takes any order
    /// (as Prometheus's asks `Select(sortSeries=false)`), which spares the head a
    /// sort of every selected series; a merge across sources sorts regardless.
    pub sorted: bool,
}

/// A read view over `[min_t, max_t]`.
pub trait Queryable: Send + Sync {
    fn querier(&self, min_t: i64, max_t: i64) -> Result<Box<dyn Querier>>;

    /// The same data at chunk level, when the backend keeps chunks: readers that walk
    /// forward in time (the PromQL engine) then decode chunks as they reach them
    /// instead of loading every sample first.
    fn as_chunk_queryable(&self) -> Option<&dyn ChunkQueryable> {
        None
    }
}

/// One series with its samples in the querier's range, oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Series sorted by labels, one at a time, so that a reader holds one series'
/// samples at a time rather than the whole result.
pub type SeriesSet = Box<dyn Iterator<Item = Result<Series>> + Send>;

pub trait Querier: Send + Sync {
    /// Series matching all `matchers` (at least one must not match the empty string),
    /// sorted by labels.
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<SeriesSet>;

    /// Sorted unique values of label `name` over series matching `matchers` (all series
    /// when empty).
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>>;

    /// Sorted unique label names over series matching `matchers` (all when empty).
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>>;

    /// Problems that did not fail the reads but may have left data out (a bucket
    /// that could not be read), gathered so far by this querier and the series sets
    /// it handed out; read it once they are consumed. Prometheus's "warnings".
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A shared list of warnings: a querier and its series sets push, the reader of the
/// results takes them for the response. Each message is kept once.
#[derive(Debug, Clone, Default)]
pub struct Warnings(std::sync::Arc<parking_lot::Mutex<Vec<String>>>);

impl Warnings {
    pub fn push(&self, message: impl Into<String>) {
        let message = message.into();
        let mut g = self.0.lock();
        if !g.contains(&message) {
            g.push(message);
        }
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

/// One encoded chunk as it is stored: `[min_t, max_t]` and the chunk's bytes in
/// Prometheus's XOR encoding (without the encoding byte).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkData {
    pub min_t: i64,
    pub max_t: i64,
    pub bytes: bytes::Bytes,
}

/// One series with its encoded chunks, oldest first.
#[derive(Debug, Clone)]
pub struct ChunkSeries {
    pub labels: Labels,
    pub chunks: Vec<ChunkData>,
}

pub type ChunkSeriesSet = Box<dyn Iterator<Item = Result<ChunkSeries>> + Send>;

/// A chunk-level read view: for consumers that forward chunks still encoded.
pub trait ChunkQueryable: Send + Sync {
    fn chunk_querier(&self, min_t: i64, max_t: i64) -> Result<Box<dyn ChunkQuerier>>;

    /// The oldest sample time the storage holds (Prometheus's `StartTime`), which the
    /// StoreAPI advertises as its minimum time; `None` when empty or unknown.
    fn start_time(&self) -> Option<i64> {
        None
    }
}

pub trait ChunkQuerier: Send + Sync {
    /// Series matching all `matchers`, sorted by labels, with every chunk that overlaps
    /// the querier's range (chunks are not cut at the range boundaries).
    fn select_chunks(&self, matchers: &[Matcher]) -> Result<ChunkSeriesSet>;

    /// As [`Querier::warnings`].
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Counts describing the stored data, for `/api/v1/status/tsdb` and logs.
#[derive(Debug, Clone, Default)]
pub struct StorageStats {
    pub head_series: u64,
    /// Oldest and newest sample time in the head; `None` when the head is empty.
    pub head_time_range: Option<(i64, i64)>,
    pub blocks: usize,
    pub blocks_bytes: u64,
    /// Chunks held by the head (open and completed).
    pub head_chunks: u64,
    /// Per label name over the head.
    pub head_labels: Vec<LabelStats>,
    /// Series per `name=value` pair over the head.
    pub head_label_pairs: Vec<(String, usize)>,
}

/// One label name's cardinality in the head.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelStats {
    pub name: String,
    pub distinct_values: usize,
    /// Series carrying the label.
    pub series: usize,
    /// Bytes of the label's values summed over the series carrying them (Prometheus's
    /// `memoryInBytesByLabelName`).
    pub value_bytes: u64,
}

/// Operations on the stored data that Prometheus offers through its admin API.
pub trait StorageAdmin: Send + Sync {
    /// Deletes the samples of the series matching `matchers` in `[min_t, max_t]`.
    fn delete_series(&self, matchers: Vec<Matcher>, min_t: i64, max_t: i64) -> Result<()>;
    /// Rewrites stored data without what deletions removed.
    fn clean_tombstones(&self) -> Result<()>;
    /// Writes a snapshot of all data and returns its name.
    fn snapshot(&self, skip_head: bool) -> Result<String>;
    fn stats(&self) -> StorageStats;
}
