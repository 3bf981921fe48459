//! Queriers over bucket blocks, and the queryable that reads local storage and the
//! bucket as one.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::BucketStore;
use super::block::{BucketBlockReader, BucketIndex, chunk_data};
use super::error::Result;
use crate::model::{Matcher, Sample};
use crate::storage::{
    ChunkData, ChunkQuerier, ChunkQueryable, ChunkSeries, ChunkSeriesSet, MergeChunkSeriesSet,
    MergeSeriesSet, Querier, Queryable, SelectHints, Series, SeriesSet, Warnings,
};
use crate::tsdb::chunkenc::{ENCODING_XOR, XorIterator};
use crate::tsdb::matchers::postings_for_matchers;

/// Series read per batch of one block: their entries come in one coalesced read,
/// then their chunks in another. Bounds what a block's iterator holds.
const SERIES_BATCH: usize = 512;

/// Reads the blocks that overlap `[min_t, max_t]`; never fails a query: a block that
/// cannot be read adds a warning and contributes what it read before.
pub struct BucketQuerier {
    blocks: Vec<Arc<BucketBlockReader>>,
    min_t: i64,
    max_t: i64,
    warnings: Warnings,
}

impl BucketQuerier {
    pub(crate) fn new(store: &BucketStore, min_t: i64, max_t: i64) -> Self {
        let warnings = Warnings::default();
        if let Some(e) = store.last_sync_error() {
            warnings.push(format!("bucket store: listing the bucket failed: {e}"));
        }
        let blocks = store
            .blocks()
            .into_iter()
            .filter(|b| b.meta().min_time <= max_t && b.meta().max_time > min_t)
            .collect();
        Self {
            blocks,
            min_t,
            max_t,
            warnings,
        }
    }

    fn warn(&self, b: &BucketBlockReader, e: impl std::fmt::Display) {
        let msg = format!("bucket block {}: {e}", b.meta().ulid);
        tracing::warn!("{msg}");
        self.warnings.push(msg);
    }

    fn series_iters(&self, matchers: &[Matcher]) -> Vec<BlockBatches> {
        let mut out = Vec::new();
        for b in &self.blocks {
            match postings_for_matchers(&BucketIndex(b), matchers) {
                Ok(refs) if refs.is_empty() => {}
                Ok(refs) => out.push(BlockBatches {
                    block: b.clone(),
                    refs,
                    pos: 0,
                    min_t: self.min_t,
                    max_t: self.max_t,
                    warnings: self.warnings.clone(),
                }),
                Err(e) => self.warn(b, e),
            }
        }
        out
    }
}

/// One block's matching series, read a batch at a time.
struct BlockBatches {
    block: Arc<BucketBlockReader>,
    refs: Vec<u64>,
    pos: usize,
    min_t: i64,
    max_t: i64,
    warnings: Warnings,
}

impl BlockBatches {
    /// The next batch's series with their chunks overlapping the range (`with_chunks`
    /// false: labels only, no chunk read). `None` when done or after an error, which
    /// became a warning.
    fn next_batch(&mut self, with_chunks: bool) -> Option<Vec<ChunkSeries>> {
        loop {
            if self.pos >= self.refs.len() {
                return None;
            }
            let end = (self.pos + SERIES_BATCH).min(self.refs.len());
            let ids = &self.refs[self.pos..end];
            self.pos = end;
            match self.load(ids, with_chunks) {
                Ok(batch) if batch.is_empty() => continue,
                Ok(batch) => return Some(batch),
                Err(e) => {
                    let msg = format!("bucket block {}: {e}", self.block.meta().ulid);
                    tracing::warn!("{msg}");
                    self.warnings.push(msg);
                    self.pos = self.refs.len();
                    return None;
                }
            }
        }
    }

    fn load(&self, ids: &[u64], with_chunks: bool) -> Result<Vec<ChunkSeries>> {
        let (min_t, max_t) = (self.min_t, self.max_t);
        let series = self.block.series(ids)?;
        let mut out = Vec::with_capacity(series.len());
        if !with_chunks {
            for (labels, metas) in series {
                if metas.iter().any(|m| m.max_t >= min_t && m.min_t <= max_t) {
                    out.push(ChunkSeries {
                        labels,
                        chunks: Vec::new(),
                    });
                }
            }
            return Ok(out);
        }
        let refs: Vec<u64> = series
            .iter()
            .flat_map(|(_, metas)| metas.iter())
            .filter(|m| m.max_t >= min_t && m.min_t <= max_t)
            .map(|m| m.chunk_ref)
            .collect();
        let entries = self.block.chunks(&refs)?;
        for (labels, metas) in series {
            let mut chunks = Vec::new();
            for m in metas
                .iter()
                .filter(|m| m.max_t >= min_t && m.min_t <= max_t)
            {
                let Some(entry) = entries.get(&m.chunk_ref) else {
                    continue;
                };
                let (enc, data) = chunk_data(entry).map_err(|e| {
                    super::error::BucketStoreError::Corrupt(format!(
                        "{}: chunk {}: {e}",
                        self.block.meta().ulid,
                        m.chunk_ref
                    ))
                })?;
                if enc != ENCODING_XOR {
                    continue;
                }
                // The data as a slice of the entry: no copy.
                let start = data.as_ptr() as usize - entry.as_ptr() as usize;
                chunks.push(ChunkData {
                    min_t: m.min_t,
                    max_t: m.max_t,
                    bytes: entry.slice(start..start + data.len()),
                });
            }
            if !chunks.is_empty() {
                out.push(ChunkSeries { labels, chunks });
            }
        }
        Ok(out)
    }
}

/// A block's series with chunks, in ID (= label) order.
struct ChunkIter {
    batches: BlockBatches,
    buffered: VecDeque<ChunkSeries>,
    with_chunks: bool,
}

impl Iterator for ChunkIter {
    type Item = crate::storage::Result<ChunkSeries>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() {
            self.buffered = self.batches.next_batch(self.with_chunks)?.into();
        }
        self.buffered.pop_front().map(Ok)
    }
}

/// Decodes the samples of `s` in `[min_t, max_t]`; `None` when there are none.
fn decode(s: ChunkSeries, min_t: i64, max_t: i64, warnings: &Warnings) -> Option<Series> {
    let mut samples: Vec<Sample> = Vec::new();
    for c in &s.chunks {
        let mut it = XorIterator::new(&c.bytes);
        for (t, v) in it.by_ref() {
            if t > max_t {
                break;
            }
            if t >= min_t {
                samples.push(Sample { t, v });
            }
        }
        if let Some(e) = it.err() {
            warnings.push(format!("bucket chunk of {}: {e}", s.labels));
            break;
        }
    }
    (!samples.is_empty()).then_some(Series {
        labels: s.labels,
        samples,
    })
}

impl Querier for BucketQuerier {
    fn select(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> crate::storage::Result<SeriesSet> {
        let (min_t, max_t) = (self.min_t, self.max_t);
        let series_only = hints.series_only;
        let sets: Vec<SeriesSet> = self
            .series_iters(matchers)
            .into_iter()
            .map(|batches| {
                let warnings = batches.warnings.clone();
                let it = ChunkIter {
                    batches,
                    buffered: VecDeque::new(),
                    with_chunks: !series_only,
                };
                let set: SeriesSet = if series_only {
                    Box::new(it.map(|s| {
                        s.map(|s| Series {
                            labels: s.labels,
                            samples: Vec::new(),
                        })
                    }))
                } else {
                    Box::new(it.filter_map(move |s| match s {
                        Ok(s) => decode(s, min_t, max_t, &warnings).map(Ok),
                        Err(e) => Some(Err(e)),
                    }))
                };
                set
            })
            .collect();
        if sets.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(MergeSeriesSet::merge(sets))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> crate::storage::Result<Vec<String>> {
        let mut out = BTreeSet::new();
        if matchers.is_empty() {
            for b in &self.blocks {
                out.extend(b.label_values(name).map(|v| v.to_string()));
            }
            return Ok(out.into_iter().collect());
        }
        for mut batches in self.series_iters(matchers) {
            while let Some(batch) = batches.next_batch(false) {
                out.extend(
                    batch
                        .iter()
                        .filter_map(|s| s.labels.get(name).map(str::to_string)),
                );
            }
        }
        Ok(out.into_iter().collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> crate::storage::Result<Vec<String>> {
        let mut out = BTreeSet::new();
        if matchers.is_empty() {
            for b in &self.blocks {
                out.extend(b.label_names().map(|v| v.to_string()));
            }
            return Ok(out.into_iter().collect());
        }
        for mut batches in self.series_iters(matchers) {
            while let Some(batch) = batches.next_batch(false) {
                for s in &batch {
                    out.extend(s.labels.iter().map(|l| l.name.to_string()));
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.to_vec()
    }
}

impl ChunkQuerier for BucketQuerier {
    fn select_chunks(&self, matchers: &[Matcher]) -> crate::storage::Result<ChunkSeriesSet> {
        let sets: Vec<ChunkSeriesSet> = self
            .series_iters(matchers)
            .into_iter()
            .map(|batches| {
                let set: ChunkSeriesSet = Box::new(ChunkIter {
                    batches,
                    buffered: VecDeque::new(),
                    with_chunks: true,
                });
                set
            })
            .collect();
        if sets.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(MergeChunkSeriesSet::merge(sets))
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.to_vec()
    }
}

/// Local storage and the bucket read as one: the local data first (it wins on equal
/// timestamps), the bucket only for the time before the oldest local sample, so no
/// sample is read twice and a block that is both local and shipped is read locally.
///
/// A bucket that fails never fails the query: its errors become warnings
/// ([`Querier::warnings`]) and the answer holds the local data.
pub struct LongTermQueryable {
    local: Arc<dyn Queryable>,
    local_chunks: Arc<dyn ChunkQueryable>,
    bucket: Arc<BucketStore>,
}

impl LongTermQueryable {
    pub fn new(
        local: Arc<dyn Queryable>,
        local_chunks: Arc<dyn ChunkQueryable>,
        bucket: Arc<BucketStore>,
    ) -> Self {
        Self {
            local,
            local_chunks,
            bucket,
        }
    }

    /// The part of `[min_t, max_t]` the bucket answers for: before the oldest local
    /// sample (everything when nothing is local).
    fn bucket_range(&self, min_t: i64, max_t: i64) -> Option<(i64, i64)> {
        let cutoff = self.local_chunks.start_time().unwrap_or(i64::MAX);
        let hi = max_t.min(cutoff.saturating_sub(1));
        (min_t <= hi).then_some((min_t, hi))
    }
}

/// A local querier and, for the older part of the range, a bucket querier.
struct LongTermQuerier<Q: ?Sized> {
    local: Box<Q>,
    bucket: Option<BucketQuerier>,
}

impl Queryable for LongTermQueryable {
    fn querier(&self, min_t: i64, max_t: i64) -> crate::storage::Result<Box<dyn Querier>> {
        let local = self.local.querier(min_t, max_t)?;
        let bucket = self
            .bucket_range(min_t, max_t)
            .map(|(lo, hi)| BucketQuerier::new(&self.bucket, lo, hi));
        Ok(Box::new(LongTermQuerier { local, bucket }))
    }

    fn as_chunk_queryable(&self) -> Option<&dyn ChunkQueryable> {
        Some(self)
    }
}

impl ChunkQueryable for LongTermQueryable {
    fn chunk_querier(
        &self,
        min_t: i64,
        max_t: i64,
    ) -> crate::storage::Result<Box<dyn ChunkQuerier>> {
        let local = self.local_chunks.chunk_querier(min_t, max_t)?;
        let bucket = self
            .bucket_range(min_t, max_t)
            .map(|(lo, hi)| BucketQuerier::new(&self.bucket, lo, hi));
        Ok(Box::new(LongTermQuerier { local, bucket }))
    }

    fn start_time(&self) -> Option<i64> {
        let local = self.local_chunks.start_time();
        let bucket = self.bucket.min_time();
        match (local, bucket) {
            (Some(l), Some(b)) => Some(l.min(b)),
            (l, b) => l.or(b),
        }
    }
}

fn joined(local: Vec<String>, bucket: &Option<BucketQuerier>) -> Vec<String> {
    let mut out = local;
    if let Some(b) = bucket {
        out.extend(b.warnings.to_vec());
    }
    out
}

impl Querier for LongTermQuerier<dyn Querier> {
    fn select(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> crate::storage::Result<SeriesSet> {
        let Some(bucket) = &self.bucket else {
            return self.local.select(hints, matchers);
        };
        // Merged with the bucket's series: in label order.
        let hints = &SelectHints {
            sorted: true,
            ..*hints
        };
        let local = self.local.select(hints, matchers)?;
        match bucket.select(hints, matchers) {
            Ok(b) => Ok(MergeSeriesSet::merge(vec![local, b])),
            Err(e) => {
                bucket.warnings.push(format!("bucket store: {e}"));
                Ok(local)
            }
        }
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> crate::storage::Result<Vec<String>> {
        let mut out: BTreeSet<String> = self
            .local
            .label_values(name, matchers)?
            .into_iter()
            .collect();
        if let Some(b) = &self.bucket {
            match b.label_values(name, matchers) {
                Ok(v) => out.extend(v),
                Err(e) => b.warnings.push(format!("bucket store: {e}")),
            }
        }
        Ok(out.into_iter().collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> crate::storage::Result<Vec<String>> {
        let mut out: BTreeSet<String> = self.local.label_names(matchers)?.into_iter().collect();
        if let Some(b) = &self.bucket {
            match b.label_names(matchers) {
                Ok(v) => out.extend(v),
                Err(e) => b.warnings.push(format!("bucket store: {e}")),
            }
        }
        Ok(out.into_iter().collect())
    }

    fn warnings(&self) -> Vec<String> {
        joined(self.local.warnings(), &self.bucket)
    }
}

impl ChunkQuerier for LongTermQuerier<dyn ChunkQuerier> {
    fn select_chunks(&self, matchers: &[Matcher]) -> crate::storage::Result<ChunkSeriesSet> {
        let local = self.local.select_chunks(matchers)?;
        let Some(bucket) = &self.bucket else {
            return Ok(local);
        };
        match bucket.select_chunks(matchers) {
            Ok(b) => Ok(MergeChunkSeriesSet::merge(vec![local, b])),
            Err(e) => {
                bucket.warnings.push(format!("bucket store: {e}"));
                Ok(local)
            }
        }
    }

    fn warnings(&self) -> Vec<String> {
        joined(self.local.warnings(), &self.bucket)
    }
}
