//! One series in the head: its labels and its in-memory XOR chunks, cut by
//! Prometheus's rules so that the blocks ODIN writes look like Prometheus's.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::model::{Labels, Sample};
use crate::storage::{ChunkData, RejectReason};
use crate::tsdb::chunkenc::{HEADER_LEN, XorChunk, XorIterator};

use super::chunk_files::{ChunkSlot, DiskChunkRef, HeadChunkFiles};

/// The number of samples a chunk aims for (Prometheus's `samplesPerChunk`).
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Finished bytes an open chunk collects on the heap before they move to its slot in
/// the head chunk files. What stays behind after a drain is at most one byte, and one
/// sample adds at most 19.
const DRAIN_AT: usize = 28;

/// The buffer of an open chunk whose finished bytes move to files: the header, at
/// most `DRAIN_AT - 1` finished bytes and a partial one, one more sample (19 bytes)
/// and the encoder's 8-byte write window always fit, so it is never reallocated.
/// 56 bytes is glibc's 64-byte size class with its 8-byte chunk header; 64 would
/// cost 80.
pub(super) const OPEN_CHUNK_CAPACITY: usize = 56;

/// Sized with the allocator in mind: with its `Arc` counts a series is 136 bytes, in
/// glibc's 144-byte size class (the layout test below keeps it there).
///
/// A series dropped by truncation has no chunks left; the head tells a holder of a
/// stale reference (an appender's hint) by that (see `Head::apply_batch_with_hints`),
/// rather than by a flag that would cost the series another 8 bytes.
pub struct MemSeries {
    pub labels: Labels,
    pub(super) state: Mutex<SeriesState>,
}

/// The chunk being appended to. With head chunk files, its finished bytes move to
/// `slot` as they accumulate (see `chunk_files`): `chunk` then holds the header and
/// the unfinished end of the bit stream, and the whole chunk is header + slot (past
/// its header) + the rest of `chunk`.
///
/// The newest sample's time and value are the encoder's own state, not kept twice.
pub(super) struct OpenChunk {
    pub min_t: i64,
    pub chunk: XorChunk,
    pub slot: Option<ChunkSlot>,
}

impl OpenChunk {
    fn new(min_t: i64, chunk: XorChunk) -> Self {
        Self {
            min_t,
            chunk,
            slot: None,
        }
    }

    /// The newest sample's time (an open chunk is never empty).
    pub fn max_t(&self) -> i64 {
        self.chunk.last_sample().map_or(self.min_t, |(t, _)| t)
    }

    /// Calls `f` with the whole chunk's bytes; `None` when the slot cannot be read.
    pub(super) fn with_bytes<R>(
        &self,
        files: Option<&HeadChunkFiles>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        let Some(slot) = &self.slot else {
            return Some(f(self.chunk.bytes()));
        };
        let mut whole = files?.read_slot(slot)?;
        let (header, rest) = self.chunk.bytes().split_at_checked(HEADER_LEN)?;
        whole.get_mut(..HEADER_LEN)?.copy_from_slice(header);
        whole.extend_from_slice(rest);
        Some(f(&whole))
    }

    /// Moves the chunk's finished bytes into its slot, reserving one sized for the
    /// whole chunk first. On failure the bytes stay on the heap, where they are
    /// still correct.
    fn drain_to(&mut self, files: &HeadChunkFiles) -> std::io::Result<()> {
        let n = self.chunk.finished_stream_len();
        if let Some(slot) = self.slot.as_mut() {
            return self
                .chunk
                .drain_stream(n, |part| files.append_to_slot(slot, part));
        }
        let mut slot = files.reserve_slot(slot_capacity(&self.chunk))?;
        let bytes = self.chunk.bytes();
        // The first piece carries the header too; its count is rewritten at close.
        files.append_to_slot(&mut slot, bytes.get(..HEADER_LEN + n).unwrap_or(bytes))?;
        self.chunk
            .drain_stream(n, |_| Ok::<(), std::io::Error>(()))?;
        self.slot = Some(slot);
        Ok(())
    }
}

/// A slot size for a chunk about to move its first bytes to the files: room for
/// about [`SAMPLES_PER_CHUNK`] and a quarter more samples at the bytes per sample
/// seen so far. A chunk that outgrows it moves to a larger one.
fn slot_capacity(chunk: &XorChunk) -> usize {
    let samples = chunk.num_samples().max(1);
    let bytes = chunk.bytes().len();
    (bytes * (SAMPLES_PER_CHUNK + SAMPLES_PER_CHUNK / 4) / samples)
        .clamp(128, 8192)
        .next_multiple_of(64)
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
    /// Complete chunks, oldest first. A boxed slice: chunks are cut a few times per
    /// range, and a vector's spare capacity would be paid by every series.
    pub closed: Box<[ClosedChunk]>,
    /// The chunk open for appends, newer than every closed one.
    pub open: Option<OpenChunk>,
    /// The time at which the open chunk is cut (Prometheus's `nextAt`).
    pub next_at: i64,
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
    pub fn new(labels: Labels) -> Self {
        Self {
            labels,
            state: Mutex::new(SeriesState::default()),
        }
    }

    /// The newest sample's timestamp, if any.
    pub fn max_time(&self) -> Option<i64> {
        self.state.lock().max_time()
    }

    /// Whether any chunk overlaps `[min_t, max_t]` (without decoding).
    pub fn has_chunks_in(&self, min_t: i64, max_t: i64) -> bool {
        let st = self.state.lock();
        st.closed
            .iter()
            .any(|c| c.max_t >= min_t && c.min_t <= max_t)
            || st
                .open
                .as_ref()
                .is_some_and(|o| o.max_t() >= min_t && o.min_t <= max_t)
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
            (Some(o), _) => Some(o.max_t()),
            (None, Some(c)) => Some(c.max_t),
            (None, None) => None,
        }
    }

    /// Whether the series holds no chunk (new, emptied by deletion, or dropped).
    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.closed.is_empty()
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
            .filter(|o| o.max_t() >= min_t && o.min_t <= max_t)
            && o.with_bytes(files, |b| f(o.min_t, o.max_t(), b)).is_none()
        {
            tracing::warn!("open head chunk unreadable; skipped");
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
                return if self.last_value_bits(files) == Some(v.to_bits()) {
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
                    self.next_at = compute_chunk_end_time(c.min_t, c.max_t(), self.next_at);
                }
                t >= self.next_at || n >= SAMPLES_PER_CHUNK * 2
            }
        };
        if cut {
            self.close_open_chunk(files);
            let chunk = match files {
                Some(_) => XorChunk::with_capacity(OPEN_CHUNK_CAPACITY),
                None => XorChunk::new(),
            };
            self.open = Some(OpenChunk::new(t, chunk));
            self.next_at = range_for_timestamp(t, chunk_range_ms);
        }
        if let Some(c) = self.open.as_mut() {
            c.chunk.append(t, v);
            if let Some(files) = files
                && c.chunk.finished_stream_len() >= DRAIN_AT
                && let Err(e) = c.drain_to(files)
            {
                warn_drain_failed(&e);
            }
        }
        AppendOutcome::Appended
    }

    /// Moves the open chunk to the closed list (into a file when possible).
    fn close_open_chunk(&mut self, files: Option<&HeadChunkFiles>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let max_t = open.max_t();
        let written = match (files, open.slot.as_mut()) {
            (Some(files), Some(slot)) => match open.chunk.bytes().split_at_checked(HEADER_LEN) {
                Some((header, rest)) => files.close_slot(slot, header, rest, max_t),
                None => Err(std::io::Error::other("open chunk shorter than its header")),
            },
            (Some(files), None) => files.write(open.chunk.bytes(), max_t),
            (None, _) => Err(std::io::Error::other("no head chunk files")),
        };
        let data = match written {
            Ok(r) => ClosedData::File(r),
            Err(e) => {
                if files.is_some() {
                    tracing::warn!(error = %e, "cannot write head chunk file; keeping the chunk in memory");
                }
                match open.with_bytes(files, |b| b.into()) {
                    Some(bytes) => ClosedData::Heap(bytes),
                    None => {
                        tracing::error!("head chunk lost: its file is unreadable");
                        return;
                    }
                }
            }
        };
        self.push_closed(ClosedChunk {
            min_t: open.min_t,
            max_t,
            data,
        });
    }

    fn push_closed(&mut self, c: ClosedChunk) {
        let mut v = std::mem::take(&mut self.closed).into_vec();
        v.push(c);
        self.closed = v.into_boxed_slice();
    }

    /// Bits of the newest value, to tell a resent sample from a conflicting one: the
    /// open chunk's encoder state, or (rarely, with no open chunk) decoded from the
    /// newest closed chunk.
    fn last_value_bits(&self, files: Option<&HeadChunkFiles>) -> Option<u64> {
        if let Some(o) = &self.open {
            return o.chunk.last_sample().map(|(_, v)| v);
        }
        let mut last = None;
        let newest = self.closed.last()?;
        self.for_each_chunk(files, newest.max_t, newest.max_t, |_, _, b| {
            last = XorIterator::new(b).last().map(|(_, v)| v.to_bits());
        });
        last
    }

    /// Drops every chunk that ends before `min_t`.
    pub fn truncate(&mut self, min_t: i64) {
        if self.closed.iter().any(|c| c.max_t < min_t) {
            let mut v = std::mem::take(&mut self.closed).into_vec();
            v.retain(|c| c.max_t >= min_t);
            self.closed = v.into_boxed_slice();
        }
        if self.open.as_ref().is_some_and(|o| o.max_t() < min_t) {
            self.open = None;
        }
    }

    /// Removes samples in `[min_t, max_t]`. Each chunk holding some is re-encoded on
    /// its own without them (a heap chunk; an emptied chunk goes), and nothing else
    /// changes: not the other chunks, not where the open chunk will be cut. So a
    /// deletion leaves the same chunks whatever else the head still holds (a replica
    /// that has not yet truncated a cut range keeps it as it was). A chunk that
    /// cannot be read is left as it is, with a warning.
    pub fn delete_range(&mut self, files: Option<&HeadChunkFiles>, min_t: i64, max_t: i64) {
        let hit = |lo: i64, hi: i64| hi >= min_t && lo <= max_t;
        let kept = |bytes: &[u8]| -> Vec<Sample> {
            XorIterator::new(bytes)
                .filter(|(t, _)| *t < min_t || *t > max_t)
                .map(|(t, v)| Sample { t, v })
                .collect()
        };
        if self.closed.iter().any(|c| hit(c.min_t, c.max_t)) {
            let mut out = Vec::with_capacity(self.closed.len());
            for c in std::mem::take(&mut self.closed).into_vec() {
                if !hit(c.min_t, c.max_t) {
                    out.push(c);
                    continue;
                }
                let samples = match &c.data {
                    ClosedData::Heap(b) => Some(kept(b)),
                    ClosedData::File(r) => files.and_then(|f| f.read(*r)).map(|b| kept(&b)),
                };
                let Some(samples) = samples else {
                    tracing::warn!(min_t = c.min_t, "head chunk unreadable; deletion skips it");
                    out.push(c);
                    continue;
                };
                if let Some(chunk) = encode_one(&samples) {
                    out.push(ClosedChunk {
                        min_t: chunk.0,
                        max_t: chunk.1,
                        data: ClosedData::Heap(chunk.2.bytes().into()),
                    });
                }
            }
            self.closed = out.into_boxed_slice();
        }
        let Some(open) = self.open.as_ref().filter(|o| hit(o.min_t, o.max_t())) else {
            return;
        };
        match open.with_bytes(files, kept) {
            None => tracing::warn!(
                min_t = open.min_t,
                "open head chunk unreadable; deletion skips it"
            ),
            Some(samples) => {
                self.open = encode_one(&samples).map(|(lo, _, chunk)| OpenChunk::new(lo, chunk));
            }
        }
    }
}

/// `samples` as one chunk, with its first and last time; `None` when empty.
fn encode_one(samples: &[Sample]) -> Option<(i64, i64, XorChunk)> {
    let (first, last) = (samples.first()?, samples.last()?);
    let mut chunk = XorChunk::new();
    for s in samples {
        chunk.append(s.t, s.v);
    }
    Some((first.t, last.t, chunk))
}

/// Logs the first failure to move open-chunk bytes to the files as a warning (a full
/// disk would otherwise log once per sample); later ones at debug level.
fn warn_drain_failed(e: &std::io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.swap(true, Ordering::Relaxed) {
        tracing::debug!(error = %e, "cannot move open chunk bytes to head chunk files");
    } else {
        tracing::warn!(error = %e, "cannot move open chunk bytes to head chunk files; keeping them in memory (further failures are logged at debug level)");
    }
}

/// The end of the chunk range holding `t`, as Prometheus's `rangeForTimestamp`
/// (Go's truncating division, kept for identical chunk boundaries). Saturates at
/// `i64::MAX` for the last range instead of wrapping to the far past.
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    ((t / width) * width).saturating_add(width)
}

/// Prometheus's `computeChunkEndTime`: the chunk is a quarter full at `cur`; spread
/// the rest of the range evenly over chunks of about [`SAMPLES_PER_CHUNK`].
/// Computed in i128: `start` and `max` may lie at the ends of the i64 range.
fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let (start, cur, max) = (i128::from(start), i128::from(cur), i128::from(max));
    let n = (max - start) / ((cur - start + 1) * 4).max(1);
    if n <= 1 {
        return max as i64;
    }
    // Between start and max, so it fits.
    (start + (max - start) / n) as i64
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
    fn open_chunks_move_their_finished_bytes_to_slots() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(dir.path()).unwrap();
        let mut with_files = SeriesState::default();
        let mut on_heap = SeriesState::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..1000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Jittered timestamps and noisy values: several bytes per sample.
            let (t, v) = (i * 15_000 + (x % 5) as i64, (x >> 11) as f64);
            with_files.append(t, v, RANGE, Some(&files));
            on_heap.append(t, v, RANGE, None);
            let open = with_files.open.as_ref().unwrap();
            // The heap keeps the header and the unfinished end only.
            assert!(open.chunk.bytes().len() < HEADER_LEN + DRAIN_AT + 20);
            assert_eq!(open.chunk.heap_bytes(), OPEN_CHUNK_CAPACITY);
        }
        assert!(with_files.open.as_ref().unwrap().slot.is_some());
        let chunks = |st: &SeriesState, files| {
            let mut out: Vec<(i64, i64, Vec<u8>)> = Vec::new();
            st.for_each_chunk(files, i64::MIN, i64::MAX, |lo, hi, b| {
                out.push((lo, hi, b.to_vec()))
            });
            out
        };
        // Byte for byte the chunks a heap-only series has, closed ones included.
        assert_eq!(chunks(&with_files, Some(&files)), chunks(&on_heap, None));
        assert!(
            with_files
                .closed
                .iter()
                .all(|c| matches!(c.data, ClosedData::File(_)))
        );
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

#[cfg(test)]
mod layout {
    use super::*;

    /// The head holds one `MemSeries` per series; glibc hands out chunks in 16-byte
    /// size classes with 8 bytes of overhead, so `Arc<MemSeries>` (16 bytes of
    /// counts plus the series) must stay at or below 136 to cost 144.
    #[test]
    fn a_series_fits_its_allocator_size_class() {
        assert!(size_of::<OpenChunk>() <= 80, "{}", size_of::<OpenChunk>());
        assert!(
            size_of::<MemSeries>() + 16 <= 136,
            "{}",
            size_of::<MemSeries>()
        );
    }
}
