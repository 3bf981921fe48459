//! One series in the head: its labels and its in-memory XOR chunks, cut by
//! Prometheus's rules so that the blocks ODIN writes look like Prometheus's.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::model::{Labels, Sample};
use crate::storage::{ChunkData, RejectReason};
use crate::tsdb::chunkenc::XorChunk;

/// The number of samples a chunk aims for (Prometheus's `samplesPerChunk`).
pub const SAMPLES_PER_CHUNK: usize = 120;

pub struct MemSeries {
    pub series_ref: u64,
    pub labels: Labels,
    pub(super) state: Mutex<SeriesState>,
    /// Set when truncation dropped the series from the head's maps, so that a holder
    /// of a stale reference (an appender's hint) looks the labels up again.
    removed: AtomicBool,
}

/// A chunk with its time range.
pub(super) struct HeadChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub chunk: XorChunk,
}

#[derive(Default)]
pub(super) struct SeriesState {
    /// Oldest first; the last one is open for appends.
    pub chunks: Vec<HeadChunk>,
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
    pub fn new(series_ref: u64, labels: Labels) -> Self {
        Self {
            series_ref,
            labels,
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
        self.state.lock().chunks.last().map(|c| c.max_t)
    }

    /// Samples in `[min_t, max_t]`, oldest first.
    pub fn samples(&self, min_t: i64, max_t: i64) -> Vec<Sample> {
        let st = self.state.lock();
        let mut out = Vec::new();
        for c in st
            .chunks
            .iter()
            .filter(|c| c.max_t >= min_t && c.min_t <= max_t)
        {
            out.extend(
                c.chunk
                    .iter()
                    .filter(|(t, _)| *t >= min_t && *t <= max_t)
                    .map(|(t, v)| Sample { t, v }),
            );
        }
        out
    }

    /// Copies of the chunks overlapping `[min_t, max_t]`.
    pub fn chunks(&self, min_t: i64, max_t: i64) -> Vec<ChunkData> {
        let st = self.state.lock();
        st.chunks
            .iter()
            .filter(|c| c.max_t >= min_t && c.min_t <= max_t)
            .map(|c| ChunkData {
                min_t: c.min_t,
                max_t: c.max_t,
                bytes: bytes::Bytes::copy_from_slice(c.chunk.bytes()),
            })
            .collect()
    }
}

impl SeriesState {
    /// Appends one sample, cutting chunks as Prometheus's `appendPreprocessor` does:
    /// at the chunk-range boundary, at the predicted end time once a quarter of
    /// [`SAMPLES_PER_CHUNK`] is reached, and at twice that many samples.
    pub fn append(&mut self, t: i64, v: f64, chunk_range_ms: i64) -> AppendOutcome {
        if let Some(last) = self.chunks.last() {
            if t < last.max_t {
                return AppendOutcome::Rejected(RejectReason::OutOfOrder);
            }
            if t == last.max_t {
                return if self.last_value_bits == v.to_bits() {
                    AppendOutcome::Unchanged
                } else {
                    AppendOutcome::Rejected(RejectReason::Duplicate)
                };
            }
        }
        let cut = match self.chunks.last() {
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
            if let Some(prev) = self.chunks.last_mut() {
                prev.chunk.shrink_to_fit();
            }
            self.chunks.push(HeadChunk {
                min_t: t,
                max_t: t,
                chunk: XorChunk::new(),
            });
            self.next_at = range_for_timestamp(t, chunk_range_ms);
        }
        // `cut` guarantees there is a chunk.
        if let Some(c) = self.chunks.last_mut() {
            c.chunk.append(t, v);
            c.max_t = t;
        }
        self.last_value_bits = v.to_bits();
        AppendOutcome::Appended
    }

    /// Removes samples in `[min_t, max_t]`, re-encoding the chunks that held them.
    pub fn delete_range(&mut self, min_t: i64, max_t: i64) {
        let mut kept: Vec<HeadChunk> = Vec::with_capacity(self.chunks.len());
        for c in self.chunks.drain(..) {
            if c.max_t < min_t || c.min_t > max_t {
                kept.push(c);
                continue;
            }
            let mut rebuilt: Option<HeadChunk> = None;
            for (t, v) in c.chunk.iter().filter(|(t, _)| *t < min_t || *t > max_t) {
                let h = rebuilt.get_or_insert_with(|| HeadChunk {
                    min_t: t,
                    max_t: t,
                    chunk: XorChunk::new(),
                });
                h.chunk.append(t, v);
                h.max_t = t;
            }
            kept.extend(rebuilt);
        }
        self.chunks = kept;
        if let Some((_, v)) = self.chunks.last().and_then(|c| c.chunk.iter().last()) {
            self.last_value_bits = v.to_bits();
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

    #[test]
    fn chunks_hold_about_120_samples_at_15s() {
        let mut st = SeriesState::default();
        for i in 0..480 {
            assert_eq!(
                st.append(i * 15_000, i as f64, RANGE),
                AppendOutcome::Appended
            );
        }
        // 2h at 15s = 480 samples → 4 chunks of 120 within the range.
        let sizes: Vec<usize> = st.chunks.iter().map(|c| c.chunk.num_samples()).collect();
        assert_eq!(sizes, vec![120, 120, 120, 120]);
    }

    #[test]
    fn chunks_are_cut_at_the_range_boundary() {
        let mut st = SeriesState::default();
        st.append(RANGE - 1000, 1.0, RANGE);
        st.append(RANGE, 2.0, RANGE);
        assert_eq!(st.chunks.len(), 2);
        assert_eq!(st.chunks[1].min_t, RANGE);
    }

    #[test]
    fn order_and_duplicates() {
        let mut st = SeriesState::default();
        st.append(10, 1.0, RANGE);
        assert_eq!(
            st.append(5, 1.0, RANGE),
            AppendOutcome::Rejected(RejectReason::OutOfOrder)
        );
        assert_eq!(st.append(10, 1.0, RANGE), AppendOutcome::Unchanged);
        assert_eq!(
            st.append(10, 2.0, RANGE),
            AppendOutcome::Rejected(RejectReason::Duplicate)
        );
        let stale = crate::model::stale_nan();
        assert_eq!(st.append(20, stale, RANGE), AppendOutcome::Appended);
        assert_eq!(st.append(20, stale, RANGE), AppendOutcome::Unchanged);
        assert_eq!(
            st.append(20, f64::NAN, RANGE),
            AppendOutcome::Rejected(RejectReason::Duplicate)
        );
    }

    #[test]
    fn delete_range_reencodes() {
        let mut st = SeriesState::default();
        for i in 0..10 {
            st.append(i, i as f64, RANGE);
        }
        st.delete_range(3, 5);
        let ts: Vec<i64> = st
            .chunks
            .iter()
            .flat_map(|c| c.chunk.iter().map(|(t, _)| t))
            .collect();
        assert_eq!(ts, vec![0, 1, 2, 6, 7, 8, 9]);
    }
}
