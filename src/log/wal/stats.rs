//! Counters exported by the WAL.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live WAL counters, shared (`Arc`) between the writer thread and readers
/// such as the metrics endpoint. All counters are monotonic except
/// `segments_current`.
#[derive(Debug, Default)]
pub struct WalStats {
    pub(crate) records_written: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) fsync_nanos_total: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) commit_errors: AtomicU64,
    pub(crate) segments_current: AtomicU64,
    pub(crate) corruptions_repaired: AtomicU64,
    pub(crate) bytes_truncated: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    /// Records applied: replayed at open plus applied by the writer since.
    pub(crate) log_index: AtomicU64,
    /// Tests: number of upcoming segment writes to fail (after writing half).
    #[cfg(test)]
    pub(crate) inject_write_failures: AtomicU64,
}

impl WalStats {
    /// Records made durable by the writer.
    pub fn records_written(&self) -> u64 {
        self.records_written.load(Ordering::Relaxed)
    }

    /// Bytes (framing included) made durable by the writer.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// `fdatasync` calls on segments (one per group commit per segment).
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in segment `fdatasync`, in seconds.
    pub fn fsync_duration_seconds_total(&self) -> f64 {
        self.fsync_nanos_total.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Total time spent in segment `fdatasync`, in nanoseconds.
    pub fn fsync_nanos_total(&self) -> u64 {
        self.fsync_nanos_total.load(Ordering::Relaxed)
    }

    /// Commits that succeeded (record durable, payload applied).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Commits that failed because their group's write or fsync failed.
    pub fn commit_errors(&self) -> u64 {
        self.commit_errors.load(Ordering::Relaxed)
    }

    /// Number of the segment currently being written.
    pub fn segments_current(&self) -> u64 {
        self.segments_current.load(Ordering::Relaxed)
    }

    /// Corruptions (torn tails, bad CRCs, gaps) repaired when the WAL was opened.
    pub fn corruptions_repaired(&self) -> u64 {
        self.corruptions_repaired.load(Ordering::Relaxed)
    }

    /// Bytes cut off (truncated or deleted) as corrupt when the WAL was opened.
    pub fn bytes_truncated(&self) -> u64 {
        self.bytes_truncated.load(Ordering::Relaxed)
    }

    /// Checkpoints written.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
