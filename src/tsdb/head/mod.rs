//! The head: the in-memory part of the TSDB holding the most recent samples.
//!
//! Series are found by label hash (sharded maps), postings resolve matchers, and each
//! series keeps Prometheus-compatible XOR chunks. Batches are applied by exactly one
//! thread at a time (the WAL writer, or replay at start-up) in log order, which makes
//! the head a deterministic function of the log. Readers run concurrently.

mod chunk_files;
pub mod image;
mod label_index;
mod postings;
mod series;
mod series_table;

use arcstr::ArcStr;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

pub use chunk_files::HeadChunkFiles;
pub(crate) use label_index::prefetch_line;
pub use series::{AppendOutcome, MemSeries, SAMPLES_PER_CHUNK, range_for_timestamp};

use crate::log::record::{Batch, Deletion};
use crate::model::{Labels, Matcher};
use crate::storage::{AppendSummary, ChunkData, RejectReason};
use crate::tsdb::matchers::{PostingsIndex, postings_for_matchers};
use postings::MemPostings;
use series_table::SeriesTable;

pub(crate) const SHARDS: usize = 64;

use label_index::LabelShard;

pub struct Head {
    chunk_range_ms: i64,
    /// Series by label hash (see [`label_index`]).
    by_hash: Box<[LabelShard]>,
    /// Series by ref; also the list of every live series (in ref order) that matchers
    /// selecting by absence start from.
    by_ref: RwLock<SeriesTable>,
    postings: RwLock<MemPostings>,
    /// Label strings shared by all series.
    symbols: Mutex<HashSet<ArcStr>>,
    next_ref: AtomicU64,
    num_series: AtomicU64,
    min_t: AtomicI64,
    max_t: AtomicI64,
    /// Samples older than this belong to a block already written: out of bounds.
    min_valid_t: AtomicI64,
    /// Serialises the writers of the head: batch and deletion applies (one thread in
    /// practice) against truncation, so a series is never dropped while a sample is
    /// being added to it.
    apply_lock: Mutex<()>,
    /// Where completed chunks go; `None` keeps them on the heap.
    files: Option<HeadChunkFiles>,
    /// Closed chunks and arena bytes of the last image's copy, to size the next.
    image_sizes: Mutex<(usize, usize)>,
}

impl Head {
    pub fn new(chunk_range_ms: i64) -> Self {
        Self {
            chunk_range_ms,
            by_hash: (0..SHARDS).map(|_| LabelShard::default()).collect(),
            by_ref: RwLock::new(SeriesTable::default()),
            postings: RwLock::new(MemPostings::default()),
            symbols: Mutex::new(HashSet::new()),
            next_ref: AtomicU64::new(1),
            num_series: AtomicU64::new(0),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            min_valid_t: AtomicI64::new(i64::MIN),
            apply_lock: Mutex::new(()),
            files: None,
            image_sizes: Mutex::new((0, 0)),
        }
    }

    /// A head that moves completed chunks into files under `dir` (emptied first).
    pub fn with_chunk_files(chunk_range_ms: i64, dir: &std::path::Path) -> std::io::Result<Self> {
        let mut head = Self::new(chunk_range_ms);
        head.files = Some(HeadChunkFiles::open(dir)?);
        Ok(head)
    }

    /// A head with the chunk files found under `dir`, for an image to be loaded into
    /// (see [`image::load`]).
    pub fn with_existing_chunk_files(
        chunk_range_ms: i64,
        dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        let mut head = Self::new(chunk_range_ms);
        head.files = Some(HeadChunkFiles::open_existing(dir)?);
        Ok(head)
    }

    /// The head's chunk files, if it has them.
    pub fn chunk_files(&self) -> Option<&HeadChunkFiles> {
        self.files.as_ref()
    }

    pub fn chunk_range_ms(&self) -> i64 {
        self.chunk_range_ms
    }

    /// Oldest sample time in the head (`i64::MAX` when empty).
    pub fn min_time(&self) -> i64 {
        self.min_t.load(Ordering::Acquire)
    }

    /// Newest sample time in the head (`i64::MIN` when empty).
    pub fn max_time(&self) -> i64 {
        self.max_t.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.max_time() == i64::MIN
    }

    pub fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    /// Raises the time below which samples are refused (never lowers it).
    pub fn set_min_valid_time(&self, t: i64) {
        self.min_valid_t.fetch_max(t, Ordering::AcqRel);
    }

    /// Interns a label string so every series shares one allocation per string.
    pub fn intern(&self, s: &str) -> ArcStr {
        intern_in(&mut self.symbols.lock(), s)
    }

    /// The `by_hash` shard for a label hash, picked by middle bits: the table inside
    /// the shard takes its slot from the low bits, and a shard choice sharing them
    /// would leave them the same for every series in the shard.
    fn hash_shard(h: u64) -> usize {
        ((h >> 32) as usize) % SHARDS
    }

    /// The series with exactly these labels, if it exists.
    pub fn get_by_labels(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        let h = labels.stable_hash();
        let shard = self.by_hash[Self::hash_shard(h)].read();
        shard.find(h, |s| &s.labels == labels).cloned()
    }

    pub fn get_by_ref(&self, r: u64) -> Option<Arc<MemSeries>> {
        self.by_ref.read().get(r).cloned()
    }

    /// The series with exactly these sorted label pairs, if it exists — found without
    /// building a [`Labels`], which is what keeps ingestion of known series
    /// allocation-free.
    pub fn get_by_pairs(&self, pairs: &[(&str, &str)]) -> Option<Arc<MemSeries>> {
        // The prefetch overlaps the slot's cache miss with taking the shard's lock
        // (cheap; the bench did not tell the two apart beyond its noise).
        self.get_by_pairs_hashed(self.prefetch_pairs(pairs), pairs)
    }

    /// The hash [`Head::get_by_pairs_hashed`] takes for these pairs; also starts
    /// fetching the memory where its lookup begins. A caller resolving many series
    /// calls this a few series ahead of each lookup, so that their cache misses
    /// overlap instead of following one another.
    pub fn prefetch_pairs(&self, pairs: &[(&str, &str)]) -> u64 {
        let h = crate::model::hash_label_pairs(pairs.iter().copied());
        self.by_hash[Self::hash_shard(h)].prefetch(h);
        h
    }

    /// [`Head::get_by_pairs`] with the hash from [`Head::prefetch_pairs`].
    pub fn get_by_pairs_hashed(&self, h: u64, pairs: &[(&str, &str)]) -> Option<Arc<MemSeries>> {
        let shard = self.by_hash[Self::hash_shard(h)].read();
        shard.find(h, |s| s.labels.eq_pairs(pairs)).cloned()
    }

    /// A label set for new pairs, with strings shared with the head's other series.
    pub fn intern_labels(&self, pairs: &[(&str, &str)]) -> Labels {
        let mut syms = self.symbols.lock();
        Labels::from_sorted(
            pairs
                .iter()
                .map(|(n, v)| crate::model::Label {
                    name: intern_in(&mut syms, n),
                    value: intern_in(&mut syms, v),
                })
                .collect(),
        )
    }

    /// The series for `labels`, created (with interned strings) if new.
    fn get_or_create(&self, labels: &Labels) -> Arc<MemSeries> {
        if let Some(s) = self.get_by_labels(labels) {
            return s;
        }
        let h = labels.stable_hash();
        let pairs: Vec<(&str, &str)> = labels.iter().map(|l| (&*l.name, &*l.value)).collect();
        let interned = self.intern_labels(&pairs);
        let mut shard = self.by_hash[Self::hash_shard(h)].write();
        if let Some(s) = shard.find(h, |s| &s.labels == labels) {
            return s.clone();
        }
        let r = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let series = Arc::new(MemSeries::new(interned));
        shard.insert_unique(h, series.clone());
        drop(shard);
        self.by_ref.write().insert(r, series.clone());
        self.postings.write().add(r, &series.labels);
        self.num_series.fetch_add(1, Ordering::Relaxed);
        series
    }

    /// Applies one batch. Called by one thread at a time, in log order: the outcome of
    /// every sample depends only on the batches applied before, so replaying the log
    /// rebuilds the same head.
    pub fn apply_batch(&self, batch: &Batch) -> AppendSummary {
        self.apply_batch_with_hints(batch, &[])
    }

    /// As [`Head::apply_batch`], with the series each batch entry was resolved to when
    /// it was appended (`hints[i]` for `batch.series[i]`; missing or `None` entries are
    /// looked up). A hint to a series that truncation removed in between is ignored,
    /// so the outcome is the same as without hints. A hinted series is its hint's
    /// labels: the batch's are not read for it (and may be left empty).
    pub fn apply_batch_with_hints(
        &self,
        batch: &Batch,
        hints: &[Option<Arc<MemSeries>>],
    ) -> AppendSummary {
        let _apply = self.apply_lock.lock();
        let mut summary = AppendSummary::default();
        let head_max = self.max_time();
        // As Prometheus's appender: nothing older than half a chunk range behind the
        // newest sample, and nothing that a block already covers.
        let min_valid = if head_max == i64::MIN {
            self.min_valid_time()
        } else {
            self.min_valid_time()
                .max(head_max.saturating_sub(self.chunk_range_ms / 2))
        };
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for (i, (labels, samples)) in batch.iter().enumerate() {
            if samples.is_empty() {
                continue;
            }
            // Don't create a series for samples that would all be refused.
            if samples.iter().all(|x| x.t < min_valid) {
                summary.add_rejected(RejectReason::OutOfBounds, samples.len() as u64);
                continue;
            }
            // A hinted series without chunks may have been dropped by truncation since
            // the hint was taken (truncation runs under the apply lock, so not now):
            // look it up again by its own labels, which finds it if it is in fact
            // still live. One lock of the hinted series serves both the check and
            // the appends.
            let hint = hints.get(i).and_then(Option::as_ref);
            let hinted = hint.and_then(|s| {
                let st = s.state.lock();
                (!st.is_empty()).then_some(st)
            });
            let created;
            let mut st = match hinted {
                Some(st) => st,
                None => {
                    created = self.get_or_create(hint.map_or(labels, |s| &s.labels));
                    created.state.lock()
                }
            };
            for x in samples {
                if x.t < min_valid {
                    summary.add_rejected(RejectReason::OutOfBounds, 1);
                    continue;
                }
                match st.append(x.t, x.v, self.chunk_range_ms, self.files.as_ref()) {
                    AppendOutcome::Appended => {
                        summary.accepted += 1;
                        lo = lo.min(x.t);
                        hi = hi.max(x.t);
                    }
                    AppendOutcome::Unchanged => summary.unchanged += 1,
                    AppendOutcome::Rejected(r) => summary.add_rejected(r, 1),
                }
            }
        }
        if summary.accepted > 0 {
            self.min_t.fetch_min(lo, Ordering::AcqRel);
            self.max_t.fetch_max(hi, Ordering::AcqRel);
        }
        summary
    }

    /// Applies a deletion: samples of matching series in the range are removed.
    pub fn apply_deletion(&self, d: &Deletion) -> usize {
        let _apply = self.apply_lock.lock();
        let series = self.series_for_refs(&self.postings_for(&d.matchers));
        for s in &series {
            s.state
                .lock()
                .delete_range(self.files.as_ref(), d.min_t, d.max_t);
        }
        series.len()
    }

    /// Refs of series matching all matchers, sorted.
    pub fn postings_for(&self, matchers: &[Matcher]) -> Vec<u64> {
        let ix = HeadIndex {
            postings: &self.postings.read(),
            series: &self.by_ref,
        };
        match postings_for_matchers(&ix, matchers) {
            Ok(p) => p,
            Err(never) => match never {},
        }
    }

    /// Matching series sorted by labels.
    pub fn select_series(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let mut out = self.select_series_unsorted(matchers);
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The series matching `matchers` in no particular order (by reference).
    pub fn select_series_unsorted(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        self.series_for_refs(&self.postings_for(matchers))
    }

    /// The live series among `refs`, in the same order.
    fn series_for_refs(&self, refs: &[u64]) -> Vec<Arc<MemSeries>> {
        let table = self.by_ref.read();
        refs.iter().filter_map(|&r| table.get(r).cloned()).collect()
    }

    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            return self.postings.read().label_names();
        }
        let mut names = BTreeSet::new();
        for s in self.select_series_unsorted(matchers) {
            for l in s.labels.iter() {
                names.insert(l.name.to_string());
            }
        }
        names.into_iter().collect()
    }

    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            return self.postings.read().label_values(name);
        }
        let mut values = BTreeSet::new();
        for s in self.select_series_unsorted(matchers) {
            if let Some(v) = s.labels.get(name) {
                values.insert(v.to_string());
            }
        }
        values.into_iter().collect()
    }

    /// Cardinality per label name.
    pub fn label_stats(&self) -> Vec<crate::storage::LabelStats> {
        self.postings.read().label_stats()
    }

    /// Series per `name=value` pair.
    pub fn label_pair_counts(&self) -> Vec<(String, usize)> {
        self.postings.read().label_pair_counts()
    }

    /// Chunks held by all series, open ones included.
    pub fn num_chunks(&self) -> u64 {
        self.by_ref
            .read()
            .iter()
            .map(|(_, s)| {
                let st = s.state.lock();
                (st.closed.len() + usize::from(st.open.is_some())) as u64
            })
            .sum()
    }

    /// The series with samples in `[min_t, max_t)`, sorted by labels: what a block
    /// cut from the head holds. Read their chunks one series at a time with
    /// [`Head::series_chunks_in_range`], so that writing a block never holds the whole
    /// range in memory.
    pub fn series_in_range(&self, min_t: i64, max_t: i64) -> Vec<Arc<MemSeries>> {
        let mut out = self.select_series(&[]);
        out.retain(|s| {
            let st = s.state.lock();
            st.closed
                .iter()
                .any(|c| c.min_t < max_t && c.max_t >= min_t)
                || st
                    .open
                    .as_ref()
                    .is_some_and(|o| o.min_t < max_t && o.max_t() >= min_t)
        });
        out
    }

    /// The time of the oldest sample of `series` in `[min_t, max_t)`.
    pub fn first_sample_time(&self, series: &MemSeries, min_t: i64, max_t: i64) -> Option<i64> {
        let st = series.state.lock();
        let mut first = None;
        st.for_each_chunk(
            self.files.as_ref(),
            min_t,
            max_t.saturating_sub(1),
            |lo, _, bytes| {
                if first.is_some() {
                    return;
                }
                first = if lo >= min_t {
                    Some(lo)
                } else {
                    crate::tsdb::chunkenc::XorIterator::new(bytes)
                        .map(|(t, _)| t)
                        .find(|t| *t >= min_t && *t < max_t)
                };
            },
        );
        first.filter(|t| *t < max_t)
    }

    /// The samples of `series` in `[min_t, max_t)` as chunks. Chunks inside the range
    /// are returned as they are; one that crosses a boundary (the open chunk, when a
    /// snapshot is taken during ingestion) is cut down to the range and re-encoded.
    pub fn series_chunks_in_range(
        &self,
        series: &MemSeries,
        min_t: i64,
        max_t: i64,
    ) -> Vec<ChunkData> {
        let st = series.state.lock();
        let mut chunks: Vec<ChunkData> = Vec::new();
        st.for_each_chunk(
            self.files.as_ref(),
            min_t,
            max_t.saturating_sub(1),
            |lo, hi, bytes| {
                if lo >= min_t && hi < max_t {
                    chunks.push(ChunkData {
                        min_t: lo,
                        max_t: hi,
                        bytes: bytes::Bytes::copy_from_slice(bytes),
                    });
                    return;
                }
                let inside: Vec<crate::model::Sample> =
                    crate::tsdb::chunkenc::XorIterator::new(bytes)
                        .filter(|(t, _)| *t >= min_t && *t < max_t)
                        .map(|(t, v)| crate::model::Sample { t, v })
                        .collect();
                for (lo, hi, c) in crate::tsdb::chunkenc::encode_chunks(&inside, usize::MAX) {
                    chunks.push(ChunkData {
                        min_t: lo,
                        max_t: hi,
                        bytes: bytes::Bytes::copy_from_slice(c.bytes()),
                    });
                }
            },
        );
        chunks
    }

    /// Drops every chunk that ends before `min_t` and every series left without
    /// chunks; raises the head's minimum time. Called after a block covering the
    /// dropped range was written.
    pub fn truncate(&self, min_t: i64) -> usize {
        let _apply = self.apply_lock.lock();
        self.set_min_valid_time(min_t);
        let mut removed: Vec<(u64, Labels)> = Vec::new();
        let mut new_min = i64::MAX;
        let mut open_slot_files: HashSet<u32> = HashSet::new();
        // Series states have their own locks, and the apply lock keeps every writer
        // out: a read lock on the table lets queries go on while chunks are dropped.
        for (r, s) in self.by_ref.read().iter() {
            let mut st = s.state.lock();
            st.truncate(min_t);
            if let Some(slot) = st.open.as_ref().and_then(|o| o.slot.as_ref()) {
                open_slot_files.insert(slot.file());
            }
            match st.min_time() {
                Some(t) => new_min = new_min.min(t),
                None => removed.push((r, s.labels.clone())),
            }
        }
        let removed_series: Vec<Arc<MemSeries>> = {
            let mut table = self.by_ref.write();
            removed
                .iter()
                .filter_map(|(r, _)| table.remove(*r))
                .collect()
        };
        for series in &removed_series {
            let h = series.labels.stable_hash();
            self.by_hash[Self::hash_shard(h)]
                .write()
                .remove(h, |s| Arc::ptr_eq(s, series));
        }
        removed.sort_by_key(|(r, _)| *r);
        self.postings.write().delete(&removed);
        self.num_series
            .fetch_sub(removed.len() as u64, Ordering::Relaxed);
        if new_min == i64::MAX {
            // Empty head: keep max time so that bounds checks still hold.
            self.min_t.store(i64::MAX, Ordering::Release);
        } else {
            // A chunk that crosses `min_t` keeps older samples, but those are in the
            // block now: the head starts at `min_t`, as Prometheus's does, so the next
            // cut does not take them again.
            self.min_t.store(new_min.max(min_t), Ordering::Release);
        }
        if let Some(files) = &self.files {
            files.truncate_before(min_t, |f| open_slot_files.contains(&f));
        }
        // Strings no series uses any more are freed.
        if !removed.is_empty() {
            self.symbols
                .lock()
                .retain(|s| ArcStr::strong_count(s).is_none_or(|c| c > 1));
        }
        removed.len()
    }
}

impl Head {
    /// Empties the head, to load another node's image in its place (a Raft
    /// snapshot): every series, posting and bound goes. Chunk files leave the head
    /// as truncation retires them (deleted once no kept image needs them). A query
    /// running meanwhile keeps the series it already holds.
    pub fn clear(&self) {
        let _apply = self.apply_lock.lock();
        for shard in self.by_hash.iter() {
            shard.write().clear();
        }
        *self.by_ref.write() = SeriesTable::default();
        *self.postings.write() = MemPostings::default();
        self.symbols.lock().clear();
        self.num_series.store(0, Ordering::Relaxed);
        self.min_t.store(i64::MAX, Ordering::Release);
        self.max_t.store(i64::MIN, Ordering::Release);
        self.min_valid_t.store(i64::MIN, Ordering::Release);
        if let Some(files) = &self.files {
            files.truncate_before(i64::MAX, |_| false);
        }
    }
}

/// The shared copy of `s` in `symbols`, added if new.
fn intern_in(symbols: &mut HashSet<ArcStr>, s: &str) -> ArcStr {
    if let Some(a) = symbols.get(s) {
        return a.clone();
    }
    let a = ArcStr::from(s);
    symbols.insert(a.clone());
    a
}

/// The head's postings, and its series table for "every series".
struct HeadIndex<'a> {
    postings: &'a MemPostings,
    series: &'a RwLock<SeriesTable>,
}

impl PostingsIndex for HeadIndex<'_> {
    type Error = std::convert::Infallible;
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>, Self::Error> {
        Ok(self.postings.get(name, value))
    }
    fn postings_for_values(
        &self,
        name: &str,
        keep: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Vec<u64>, Self::Error> {
        Ok(self.postings.for_values(name, keep))
    }
    fn all_postings(&self) -> Result<Vec<u64>, Self::Error> {
        Ok(self.series.read().refs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MatchType, Sample};

    const RANGE: i64 = 7_200_000;

    type SeriesSpec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

    fn batch(items: &[SeriesSpec<'_>]) -> Batch {
        let mut b = Batch::default();
        for (l, s) in items {
            let samples: Vec<Sample> = s.iter().map(|&(t, v)| Sample::new(t, v)).collect();
            b.push_series(Labels::from_pairs(l.iter().copied()), &samples);
        }
        b
    }

    #[test]
    fn append_older_than_half_a_range_behind_newest_is_out_of_bounds() {
        let head = Head::new(RANGE);
        let s = head.apply_batch(&batch(&[(&[("__name__", "a")], &[(RANGE * 2, 1.0)])]));
        assert_eq!(s.accepted, 1);
        let s = head.apply_batch(&batch(&[(&[("__name__", "b")], &[(RANGE, 1.0)])]));
        assert_eq!(s.out_of_bounds, 1);
        assert_eq!(
            head.num_series(),
            1,
            "no series created for refused samples"
        );
    }

    #[test]
    fn rest_of_batch_is_kept_when_samples_are_rejected() {
        let head = Head::new(RANGE);
        let s = head.apply_batch(&batch(&[(
            &[("__name__", "a")],
            &[(10, 1.0), (5, 1.0), (10, 2.0), (20, 3.0)],
        )]));
        assert_eq!((s.accepted, s.out_of_order, s.duplicate), (2, 1, 1));
    }

    #[test]
    fn matchers_select_like_prometheus() {
        let head = Head::new(RANGE);
        head.apply_batch(&batch(&[
            (&[("__name__", "up"), ("job", "node")], &[(1, 1.0)]),
            (&[("__name__", "up"), ("job", "gpu")], &[(1, 1.0)]),
            (&[("__name__", "up")], &[(1, 1.0)]),
        ]));
        let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
        let names = |ms: &[Matcher]| -> Vec<String> {
            head.select_series(ms)
                .iter()
                .map(|s| s.labels.get("job").unwrap_or("-").to_string())
                .collect()
        };
        assert_eq!(names(&[m(MatchType::Equal, "job", "node")]), ["node"]);
        assert_eq!(
            names(&[
                m(MatchType::Equal, "__name__", "up"),
                m(MatchType::NotEqual, "job", "node")
            ]),
            ["-", "gpu"]
        );
        assert_eq!(
            names(&[
                m(MatchType::Equal, "__name__", "up"),
                m(MatchType::Equal, "job", "")
            ]),
            ["-"]
        );
        assert_eq!(
            names(&[m(MatchType::Regex, "job", "g.*|node")]),
            ["gpu", "node"]
        );
        assert_eq!(
            names(&[
                m(MatchType::Equal, "__name__", "up"),
                m(MatchType::NotRegex, "job", "g.*")
            ]),
            ["-", "node"]
        );
        assert_eq!(head.label_values("job", &[]), ["gpu", "node"]);
    }

    #[test]
    fn chunks_crossing_the_range_are_cut_down_to_it() {
        let head = Head::new(RANGE);
        let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
        head.apply_batch(&batch(&[(&[("__name__", "a")], &samples)]));
        let series = head.series_in_range(0, 50_000);
        assert_eq!(series.len(), 1);
        let chunks = head.series_chunks_in_range(&series[0], 0, 50_000);
        let got: Vec<i64> = chunks
            .iter()
            .flat_map(|c| crate::tsdb::chunkenc::XorIterator::new(&c.bytes).map(|(t, _)| t))
            .collect();
        assert_eq!(got, (0..50).map(|i| i * 1000).collect::<Vec<_>>());
        assert_eq!((chunks[0].min_t, chunks[0].max_t), (0, 49_000));
    }

    #[test]
    fn truncate_drops_old_chunks_and_empty_series() {
        let head = Head::new(RANGE);
        head.apply_batch(&batch(&[
            (&[("__name__", "old")], &[(1000, 1.0)]),
            (&[("__name__", "new")], &[(1000, 1.0), (RANGE + 1000, 2.0)]),
        ]));
        let removed = head.truncate(RANGE);
        assert_eq!(removed, 1);
        assert_eq!(head.num_series(), 1);
        assert_eq!(head.min_time(), RANGE + 1000);
        assert!(
            head.get_by_labels(&Labels::from_pairs([("__name__", "old")]))
                .is_none()
        );
        assert_eq!(head.label_values("__name__", &[]), ["new"]);
    }

    #[test]
    fn a_hint_truncation_dropped_is_found_again_by_its_own_labels() {
        let head = Head::new(RANGE);
        head.apply_batch(&batch(&[(&[("__name__", "old")], &[(1000, 1.0)])]));
        let old = Labels::from_pairs([("__name__", "old")]);
        let hint = head.get_by_labels(&old).unwrap();
        head.apply_batch(&batch(&[(&[("__name__", "new")], &[(RANGE * 2, 1.0)])]));
        assert_eq!(head.truncate(RANGE), 1);
        // The batch names the hinted series without labels; the hint's are used.
        let mut b = Batch::default();
        b.push_series(Labels::default(), &[Sample::new(RANGE * 2, 5.0)]);
        let s = head.apply_batch_with_hints(&b, &[Some(hint)]);
        assert_eq!(s.accepted, 1);
        let again = head.get_by_labels(&old).expect("created again");
        assert_eq!(again.labels, old);
        assert!(head.get_by_labels(&Labels::default()).is_none());
    }
}
