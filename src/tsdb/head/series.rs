//! One series in the head: its labels and its in-memory XOR chunks, cut by
//! Prometheus's rules so that the blocks ODIN writes look like Prometheus's.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::model::{Labels, Sample};
use crate::storage::{ChunkData, RejectReason};
use crate::tsdb::chunkenc::{XorChunk, XorIterator, encode_chunks};

use super::chunk_files::{DiskChunkRef, HeadChunkFiles};

/// The number of samples a chunk aims for (Prometheus's `samplesPerChunk`).
pub const SAMPLES_PER_CHUNK: usize = 120;

pub struct MemSeries {
    pub series_ref: u64,
    pub labels: Labels,
    /// `labels.stable_hash()`, kept for the head's hash table.
    pub label_hash: u64,
    pub(super) state: Mutex<SeriesState>,
    /// Set when truncation dropped the series from the head's maps, so that a holder
    /// of a stale reference (an appender's hint) looks the labels up again.
    removed: AtomicBool,
}

/// The chunk being appended to, on the heap.
pub(super) struct OpenChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub chunk: XorChunk,
}

/// A chunk that is complete: in a head chunk file, or on the heap when it could not
/// be written there (or no files are configured, as in tests and tools).
pub(super) struct ClosedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub data: ClosedData,
}

pub(super) enum ClosedData {
    Heap(Box<[u8]>),
    File(DiskChunkRef),
}

#[derive(Default)]
pub(super) struct SeriesState {
    /// Complete chunks, oldest first.
    pub closed: Vec<ClosedChunk>,
    /// The chunk open for appends, newer than every closed one.
    pub open: Option<OpenChunk>,
    /// The time at which the open chunk is cut (Prometheus's `nextAt`).
    pub next_at: i64,
    /// Bits of the newest value, to tell a resent sample from a conflicting one.
    pub last_value_bits: u64,
}

/// What appending one sample did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended,
    /// Same timestamp and same value bits as the newest sample: a no-op.
    Unchanged,
    Rejected(RejectReason),
}

impl MemSeries {
    pub fn new(series_ref: u64, labels: Labels, label_hash: u64) -> Self {
        Self {
            series_ref,
            labels,
            label_hash,
            state: Mutex::new(SeriesState::default()),
            removed: AtomicBool::new(false),
        }
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(super) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// The newest sample's timestamp, if any.
    pub fn max_time(&self) -> Option<i64> {
        self.state.lock().max_time()
    }

    /// Samples in `[min_t, max_t]`, oldest first.
    pub fn samples(&self, files: Option<&HeadChunkFiles>, min_t: i64, max_t: i64) -> Vec<Sample> {
        let st = self.state.lock();
        let mut out = Vec::new();
        st.for_each_chunk(files, min_t, max_t, |_, _, bytes| {
            out.extend(
                XorIterator::new(bytes)
                    .filter(|(t, _)| *t >= min_t && *t <= max_t)
                    .map(|(t, v)| Sample { t, v }),
            );
        });
        out
    }

    /// Copies of the chunks overlapping `[min_t, max_t]`.
    pub fn chunks(&self, files: Option<&HeadChunkFiles>, min_t: i64, max_t: i64) -> Vec<ChunkData> {
        let st = self.state.lock();
        let mut out = Vec::new();
        st.for_each_chunk(files, min_t, max_t, |lo, hi, bytes| {
            out.push(ChunkData {
                min_t: lo,
                max_t: hi,
                bytes: bytes::Bytes::copy_from_slice(bytes),
            });
        });
        out
    }
}

impl SeriesState {
    pub fn max_time(&self) -> Option<i64> {
        match (&self.open, self.closed.last()) {
            (Some(o), _) => Some(o.max_t),
            (None, Some(c)) => Some(c.max_t),
            (None, None) => None,
        }
    }

    pub fn min_time(&self) -> Option<i64> {
        self.closed
            .first()
            .map(|c| c.min_t)
            .or(self.open.as_ref().map(|o| o.min_t))
    }

    /// Calls `f(min_t, max_t, bytes)` for every chunk overlapping `[min_t, max_t]`,
    /// oldest first. A chunk whose file cannot be read is skipped with a warning.
    pub fn for_each_chunk(
        &self,
        files: Option<&HeadChunkFiles>,
        min_t: i64,
        max_t: i64,
        mut f: impl FnMut(i64, i64, &[u8]),
    ) {
        for c in self
            .closed
            .iter()
            .filter(|c| c.max_t >= min_t && c.min_t <= max_t)
        {
            match &c.data {
                ClosedData::Heap(b) => f(c.min_t, c.max_t, b),
                ClosedData::File(r) => match files.and_then(|fs| fs.read(*r)) {
                    Some(b) => f(c.min_t, c.max_t, &b),
                    None => tracing::warn!(?r, "head chunk unreadable; skipped"),
                },
            }
        }
        if let Some(o) = self
            .open
            .as_ref()
            .filter(|o| o.max_t >= min_t && o.min_t <= max_t)
        {
            f(o.min_t, o.max_t, o.chunk.bytes());
        }
    }

    /// Appends one sample, cutting chunks as Prometheus's `appendPreprocessor` does:
    /// at the chunk-range boundary, at the predicted end time once a quarter of
    /// [`SAMPLES_PER_CHUNK`] is reached, and at twice that many samples. A cut chunk
    /// moves to `files` when given.
    pub fn append(
        &mut self,
        t: i64,
        v: f64,
        chunk_range_ms: i64,
        files: Option<&HeadChunkFiles>,
    ) -> AppendOutcome {
        if let Some(max_t) = self.max_time() {
            if t < max_t {
                return AppendOutcome::Rejected(RejectReason::OutOfOrder);
            }
            if t == max_t {
                return if self.last_value_bits == v.to_bits() {
                    AppendOutcome::Unchanged
                } else {
                    AppendOutcome::Rejected(RejectReason::Duplicate)
                };
            }
        }
        let cut = match &self.open {
            None => true,
            Some(c) => {
                let n = c.chunk.num_samples();
                if n == SAMPLES_PER_CHUNK / 4 {
                    self.next_at = compute_chunk_end_time(c.min_t, c.max_t, self.next_at);
                }
                t >= self.next_at || n >= SAMPLES_PER_CHUNK * 2
            }
        };
        if cut {
            self.close_open_chunk(files);
            self.open = Some(OpenChunk {
                min_t: t,
                max_t: t,
                chunk: XorChunk::new(),
            });
            self.next_at = range_for_timestamp(t, chunk_range_ms);
        }
        if let Some(c) = self.open.as_mut() {
            c.chunk.append(t, v);
            c.max_t = t;
        }
        self.last_value_bits = v.to_bits();
        AppendOutcome::Appended
    }

    /// Moves the open chunk to the closed list (into a file when possible).
    fn close_open_chunk(&mut self, files: Option<&HeadChunkFiles>) {
        let Some(open) = self.open.take() else { return };
        let bytes = open.chunk.bytes();
        let data = match files.map(|f| f.write(bytes, open.max_t)) {
            Some(Ok(r)) => ClosedData::File(r),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot write head chunk file; keeping the chunk in memory");
                ClosedData::Heap(bytes.into())
            }
            None => ClosedData::Heap(bytes.into()),
        };
        self.closed.push(ClosedChunk {
            min_t: open.min_t,
            max_t: open.max_t,
            data,
        });
    }

    /// Drops every chunk that ends before `min_t`.
    pub fn truncate(&mut self, min_t: i64) {
        self.closed.retain(|c| c.max_t >= min_t);
        if self.open.as_ref().is_some_and(|o| o.max_t < min_t) {
            self.open = None;
        }
    }

    /// Removes samples in `[min_t, max_t]`. Deletions are rare, so the series is simply
    /// re-encoded into fresh heap chunks of [`SAMPLES_PER_CHUNK`]; the newest becomes
    /// the open chunk. (Old file chunks are left for truncation to reclaim.)
    pub fn delete_range(&mut self, files: Option<&HeadChunkFiles>, min_t: i64, max_t: i64) {
        let mut samples: Vec<Sample> = Vec::new();
        self.for_each_chunk(files, i64::MIN, i64::MAX, |_, _, bytes| {
            samples.extend(
                XorIterator::new(bytes)
                    .filter(|(t, _)| *t < min_t || *t > max_t)
                    .map(|(t, v)| Sample { t, v }),
            );
        });
        self.closed.clear();
        self.open = None;
        for (min_t, max_t, chunk) in encode_chunks(&samples, SAMPLES_PER_CHUNK) {
            if let Some(prev) = self.open.take() {
                self.closed.push(ClosedChunk {
                    min_t: prev.min_t,
                    max_t: prev.max_t,
                    data: ClosedData::Heap(prev.chunk.bytes().into()),
                });
            }
            self.open = Some(OpenChunk {
                min_t,
                max_t,
                chunk,
            });
        }
        if let Some(last) = samples.last() {
            self.last_value_bits = last.v.to_bits();
        }
    }
}

/// The end of the chunk range holding `t`, as Prometheus's `rangeForTimestamp`
/// (Go's truncating division, kept for identical chunk boundaries).
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    (t / width) * width + width
}

/// Prometheus's `computeChunkEndTime`: the chunk is a quarter full at `cur`; spread
/// the rest of the range evenly over chunks of about [`SAMPLES_PER_CHUNK`].
fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let n = (max - start) / ((cur - start + 1) * 4);
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: i64 = 2 * 3600 * 1000;

    fn sizes(st: &SeriesState, files: Option<&HeadChunkFiles>) -> Vec<usize> {
        let mut out = Vec::new();
        st.for_each_chunk(files, i64::MIN, i64::MAX, |_, _, b| {
            out.push(XorIterator::new(b).count())
        });
        out
    }

    #[test]
    fn chunks_hold_about_120_samples_at_15s() {
        let mut st = SeriesState::default();
        for i in 0..480 {
            assert_eq!(
                st.append(i * 15_000, i as f64, RANGE, None),
                AppendOutcome::Appended
            );
        }
        // 2h at 15s = 480 samples → 4 chunks of 120 within the range.
        assert_eq!(sizes(&st, None), vec![120, 120, 120, 120]);
    }

    #[test]
    fn chunks_are_cut_at_the_range_boundary() {
        let mut st = SeriesState::default();
        st.append(RANGE - 1000, 1.0, RANGE, None);
        st.append(RANGE, 2.0, RANGE, None);
        assert_eq!(st.closed.len(), 1);
        assert_eq!(st.open.as_ref().map(|o| o.min_t), Some(RANGE));
    }

    #[test]
    fn order_and_duplicates() {
        let mut st = SeriesState::default();
        st.append(10, 1.0, RANGE, None);
        assert_eq!(
            st.append(5, 1.0, RANGE, None),
            AppendOutcome::Rejected(RejectReason::OutOfOrder)
        );
        assert_eq!(st.append(10, 1.0, RANGE, None), AppendOutcome::Unchanged);
        assert_eq!(
            st.append(10, 2.0, RANGE, None),
            AppendOutcome::Rejected(RejectReason::Duplicate)
        );
        let stale = crate::model::stale_nan();
        assert_eq!(st.append(20, stale, RANGE, None), AppendOutcome::Appended);
        assert_eq!(st.append(20, stale, RANGE, None), AppendOutcome::Unchanged);
        assert_eq!(
            st.append(20, f64::NAN, RANGE, None),
            AppendOutcome::Rejected(RejectReason::Duplicate)
        );
    }

    #[test]
    fn closed_chunks_move_to_files_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(dir.path()).unwrap();
        let mut st = SeriesState::default();
        for i in 0..480 {
            st.append(i * 15_000, i as f64, RANGE, Some(&files));
        }
        assert_eq!(st.closed.len(), 3);
        assert!(
            st.closed
                .iter()
                .all(|c| matches!(c.data, ClosedData::File(_)))
        );
        assert_eq!(sizes(&st, Some(&files)), vec![120, 120, 120, 120]);
        assert!(files.size_bytes() > 0);
    }

    #[test]
    fn delete_range_reencodes() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(dir.path()).unwrap();
        let mut st = SeriesState::default();
        // 300 samples: closed chunks in the file, one open.
        for i in 0..300 {
            st.append(i, i as f64, 1000, Some(&files));
        }
        assert!(!st.closed.is_empty());
        st.delete_range(Some(&files), 3, 5);
        let mut ts: Vec<i64> = Vec::new();
        st.for_each_chunk(Some(&files), i64::MIN, i64::MAX, |_, _, b| {
            ts.extend(XorIterator::new(b).map(|(t, _)| t))
        });
        let want: Vec<i64> = (0..300).filter(|t| !(3..=5).contains(t)).collect();
        assert_eq!(ts, want);
        // Appends go on after the rebuilt chunks.
        assert_eq!(
            st.append(300, 1.0, 1000, Some(&files)),
            AppendOutcome::Appended
        );
    }
}
