//! Reading the head and the blocks as one, through the `storage` seams.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::{Interval, Matcher, Sample};
use crate::storage::{
    ChunkData, ChunkQuerier, ChunkSeries, ChunkSeriesSet, MergeChunkSeriesSet, MergeSeriesSet,
    Querier, Result, SelectHints, Series, SeriesSet, StorageError,
};
use crate::tsdb::block::Block;
use crate::tsdb::chunkenc::{ENCODING_XOR, XorIterator};
use crate::tsdb::db::DbInner;
use crate::tsdb::head::Head;
use crate::tsdb::index::{IndexError, IndexReader};
use crate::tsdb::isolation::ReadGuard;
use crate::tsdb::matchers::{PostingsIndex, postings_for_matchers};

pub(crate) struct DbQuerier {
    head: Arc<Head>,
    /// Where damaged block chunks are reported; the reads go on without them.
    damage: Arc<ChunkDamage>,
    /// Keeps the head from being truncated under this querier and the iterators it
    /// hands out (each holds a clone) until they are done.
    read: Arc<ReadGuard>,
    blocks: Vec<Arc<Block>>,
    min_t: i64,
    max_t: i64,
}

impl DbQuerier {
    pub(crate) fn new(db: &DbInner, min_t: i64, max_t: i64) -> Self {
        // The guard is taken under the list's lock: its epoch names this list.
        let blocks = db.blocks.read();
        let read = db.reads.begin();
        let blocks = blocks
            .iter()
            // A block's max time is exclusive.
            .filter(|b| b.meta().min_time <= max_t && b.meta().max_time > min_t)
            .cloned()
            .collect();
        Self {
            head: db.head.clone(),
            damage: Arc::new(ChunkDamage::new(db.metrics.corrupt_chunks.clone())),
            read,
            blocks,
            min_t,
            max_t,
        }
    }

    fn head_in_range(&self) -> bool {
        !self.head.is_empty() && self.head.max_time() >= self.min_t
    }

    /// Where reading the head starts: not before the head's minimum time, which a
    /// truncation raises to the end of the block just cut. A chunk that crosses that
    /// end keeps older samples in memory; they are the block's now, and the block's
    /// tombstones, not the head, say which of them are deleted.
    fn head_min_t(&self) -> i64 {
        self.min_t.max(self.head.min_time())
    }
}

/// Reports block chunks that cannot be read: a damaged chunk file must not fail every
/// query over its block. Each skipped chunk is counted
/// (`odin_tsdb_corrupt_chunks_total`); each damaged block is logged once per querier
/// and named in the query's warnings.
pub(crate) struct ChunkDamage {
    counter: prometheus_client::metrics::counter::Counter,
    warnings: crate::storage::Warnings,
    logged: parking_lot::Mutex<Vec<ulid::Ulid>>,
}

impl ChunkDamage {
    pub(crate) fn new(counter: prometheus_client::metrics::counter::Counter) -> Self {
        Self {
            counter,
            warnings: crate::storage::Warnings::default(),
            logged: parking_lot::Mutex::new(Vec::new()),
        }
    }

    fn report(&self, b: &Block, chunk_ref: u64, e: &dyn std::fmt::Display) {
        self.counter.inc();
        let ulid = b.meta().ulid;
        let mut logged = self.logged.lock();
        if logged.contains(&ulid) {
            return;
        }
        logged.push(ulid);
        drop(logged);
        tracing::error!(
            block = %ulid,
            chunk_ref,
            error = %e,
            "BLOCK CORRUPTION: damaged chunk skipped; the query is answered without it"
        );
        self.warnings.push(format!(
            "block {ulid} has damaged chunks; their samples are missing from the result"
        ));
    }
}

fn index_err(b: &Block, e: impl std::fmt::Display) -> StorageError {
    StorageError::internal(format!("read block {}", b.meta().ulid), e.to_string())
}

impl Querier for DbQuerier {
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<SeriesSet> {
        let mut sets: Vec<SeriesSet> = Vec::new();
        for b in &self.blocks {
            let refs = postings_for_matchers(&BlockIndex(b.index()), matchers)
                .map_err(|e| index_err(b, e))?;
            sets.push(Box::new(BlockSeriesIter {
                block: b.clone(),
                damage: self.damage.clone(),
                refs: refs.into_iter(),
                min_t: self.min_t,
                max_t: self.max_t,
                series_only: hints.series_only,
            }));
        }
        if self.head_in_range() {
            // Alone, the head's series need no order unless the caller asks for one.
            let series = if hints.sorted || !sets.is_empty() {
                self.head.select_series(matchers)
            } else {
                self.head.select_series_unsorted(matchers)
            };
            let (min_t, max_t, series_only) = (self.head_min_t(), self.max_t, hints.series_only);
            let head = self.head.clone();
            let read = self.read.clone();
            sets.push(Box::new(series.into_iter().filter_map(move |s| {
                let _read = &read;
                // For labels only, a chunk overlapping the range is enough, as in
                // Prometheus: nothing is decoded.
                let samples = if series_only {
                    if !s.has_chunks_in(min_t, max_t) {
                        return None;
                    }
                    Vec::new()
                } else {
                    let samples = s.samples(head.chunk_files(), min_t, max_t);
                    if samples.is_empty() {
                        return None;
                    }
                    samples
                };
                Some(Ok(Series {
                    labels: s.labels.clone(),
                    samples,
                }))
            })));
        }
        Ok(MergeSeriesSet::merge(sets))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut lists: Vec<Vec<String>> = Vec::new();
        for b in &self.blocks {
            if matchers.is_empty() {
                lists.push(b.index().label_values(name));
                continue;
            }
            let refs = postings_for_matchers(&BlockIndex(b.index()), matchers)
                .map_err(|e| index_err(b, e))?;
            let mut values = BTreeSet::new();
            for r in refs {
                let (labels, _) = b.index().series(r).map_err(|e| index_err(b, e))?;
                if let Some(v) = labels.get(name) {
                    values.insert(v.to_string());
                }
            }
            lists.push(values.into_iter().collect());
        }
        if self.head_in_range() {
            lists.push(self.head.label_values(name, matchers));
        }
        Ok(sorted_union(lists))
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut lists: Vec<Vec<String>> = Vec::new();
        for b in &self.blocks {
            if matchers.is_empty() {
                lists.push(b.index().label_names());
                continue;
            }
            let refs = postings_for_matchers(&BlockIndex(b.index()), matchers)
                .map_err(|e| index_err(b, e))?;
            let mut names = BTreeSet::new();
            for r in refs {
                let (labels, _) = b.index().series(r).map_err(|e| index_err(b, e))?;
                names.extend(labels.iter().map(|l| l.name.to_string()));
            }
            lists.push(names.into_iter().collect());
        }
        if self.head_in_range() {
            lists.push(self.head.label_names(matchers));
        }
        Ok(sorted_union(lists))
    }

    fn warnings(&self) -> Vec<String> {
        self.damage.warnings.to_vec()
    }
}

/// The sorted, deduplicated union of lists. One list (the head alone, the usual case
/// for a dashboard's recent range) is handed back as it is.
fn sorted_union(lists: Vec<Vec<String>>) -> Vec<String> {
    let mut union: Vec<String> = Vec::new();
    for mut list in lists {
        // Every source hands its list over sorted; a merge is linear, where sorting
        // the lists put together cost most of a label-values call over a block and
        // the head.
        if !list.is_sorted() {
            list.sort_unstable();
        }
        list.dedup();
        union = if union.is_empty() {
            list
        } else {
            merge_sorted_unique(union, list)
        };
    }
    union
}

/// Two sorted lists without repeats merged into one.
fn merge_sorted_unique(a: Vec<String>, b: Vec<String>) -> Vec<String> {
    use std::cmp::Ordering;
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Less => a.next(),
                Ordering::Greater => b.next(),
                Ordering::Equal => {
                    b.next();
                    a.next()
                }
            },
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
}

impl ChunkQuerier for DbQuerier {
    fn select_chunks(&self, matchers: &[Matcher]) -> Result<ChunkSeriesSet> {
        let mut sets: Vec<ChunkSeriesSet> = Vec::new();
        for b in &self.blocks {
            let refs = postings_for_matchers(&BlockIndex(b.index()), matchers)
                .map_err(|e| index_err(b, e))?;
            let block = b.clone();
            let (min_t, max_t) = (self.min_t, self.max_t);
            let damage = self.damage.clone();
            sets.push(Box::new(refs.into_iter().filter_map(move |r| {
                block_chunk_series(&block, r, min_t, max_t, Some(&damage)).transpose()
            })));
        }
        if self.head_in_range() {
            let (min_t, max_t) = (self.head_min_t(), self.max_t);
            let series = self.head.select_series(matchers);
            let head = self.head.clone();
            let read = self.read.clone();
            sets.push(Box::new(series.into_iter().filter_map(move |s| {
                let _read = &read;
                let chunks = s.chunks(head.chunk_files(), min_t, max_t);
                (!chunks.is_empty()).then(|| {
                    Ok(ChunkSeries {
                        labels: s.labels.clone(),
                        chunks,
                    })
                })
            })));
        }
        Ok(MergeChunkSeriesSet::merge(sets))
    }

    fn warnings(&self) -> Vec<String> {
        self.damage.warnings.to_vec()
    }
}

/// The chunks of block series `r` that overlap `[min_t, max_t]`. Series with
/// tombstones are decoded and re-encoded without the deleted samples. A chunk that
/// cannot be read is reported to `damage` and skipped; without `damage` (compaction,
/// which must not write a block that silently lacks it) it fails the read.
pub(crate) fn block_chunk_series(
    block: &Block,
    r: u64,
    min_t: i64,
    max_t: i64,
    damage: Option<&ChunkDamage>,
) -> Result<Option<ChunkSeries>> {
    let (labels, metas) = block.index().series(r).map_err(|e| index_err(block, e))?;
    let deleted = block.tombstones().get(&r);
    let mut chunks = Vec::new();
    for m in metas
        .iter()
        .filter(|m| m.max_t >= min_t && m.min_t <= max_t)
    {
        let (enc, data) = match (block.chunks().chunk(m.chunk_ref), damage) {
            (Ok(c), _) => c,
            (Err(e), Some(damage)) => {
                damage.report(block, m.chunk_ref, &e);
                continue;
            }
            (Err(e), None) => return Err(index_err(block, e)),
        };
        if enc != ENCODING_XOR {
            continue;
        }
        match deleted {
            Some(ivs) if ivs.iter().any(|iv| iv.overlaps(m.min_t, m.max_t)) => {
                let mut c = crate::tsdb::chunkenc::XorChunk::new();
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                for (t, v) in XorIterator::new(data) {
                    if !ivs.iter().any(|iv| iv.contains(t)) {
                        c.append(t, v);
                        lo = lo.min(t);
                        hi = hi.max(t);
                    }
                }
                if c.num_samples() > 0 {
                    chunks.push(ChunkData {
                        min_t: lo,
                        max_t: hi,
                        bytes: bytes::Bytes::copy_from_slice(c.bytes()),
                    });
                }
            }
            _ => chunks.push(ChunkData {
                min_t: m.min_t,
                max_t: m.max_t,
                bytes: bytes::Bytes::copy_from_slice(data),
            }),
        }
    }
    Ok((!chunks.is_empty()).then_some(ChunkSeries { labels, chunks }))
}

/// Decodes a block's series lazily, one per `next`.
struct BlockSeriesIter {
    block: Arc<Block>,
    damage: Arc<ChunkDamage>,
    refs: std::vec::IntoIter<u64>,
    min_t: i64,
    max_t: i64,
    series_only: bool,
}

impl BlockSeriesIter {
    fn load(&self, r: u64) -> Result<Option<Series>> {
        let b = &self.block;
        let (labels, metas) = b.index().series(r).map_err(|e| index_err(b, e))?;
        if self.series_only {
            // Labels only: a chunk overlapping the range is enough, nothing decoded.
            let overlaps = metas
                .iter()
                .any(|m| m.max_t >= self.min_t && m.min_t <= self.max_t);
            return Ok(overlaps.then(|| Series {
                labels,
                samples: Vec::new(),
            }));
        }
        let deleted: &[Interval] = b.tombstones().get(&r).map(Vec::as_slice).unwrap_or(&[]);
        let mut samples: Vec<Sample> = Vec::new();
        for m in metas
            .iter()
            .filter(|m| m.max_t >= self.min_t && m.min_t <= self.max_t)
        {
            let (enc, data) = match b.chunks().chunk(m.chunk_ref) {
                Ok(c) => c,
                Err(e) => {
                    self.damage.report(b, m.chunk_ref, &e);
                    continue;
                }
            };
            if enc != ENCODING_XOR {
                continue;
            }
            let before = samples.len();
            let mut it = XorIterator::new(data);
            for (t, v) in it.by_ref() {
                if t > self.max_t {
                    break;
                }
                if t >= self.min_t && !deleted.iter().any(|iv| iv.contains(t)) {
                    samples.push(Sample { t, v });
                }
            }
            if let Some(e) = it.err() {
                // What was decoded before the damage is not trusted either.
                samples.truncate(before);
                self.damage.report(b, m.chunk_ref, &e);
            }
        }
        if samples.is_empty() {
            return Ok(None);
        }
        Ok(Some(Series { labels, samples }))
    }
}

impl Iterator for BlockSeriesIter {
    type Item = Result<Series>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let r = self.refs.next()?;
            match self.load(r) {
                Ok(Some(s)) => return Some(Ok(s)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// A block's index as a [`PostingsIndex`].
pub(crate) struct BlockIndex<'a>(pub(crate) &'a IndexReader);

impl PostingsIndex for BlockIndex<'_> {
    type Error = IndexError;
    fn postings(&self, name: &str, value: &str) -> std::result::Result<Vec<u64>, IndexError> {
        self.0.postings(name, value)
    }
    fn postings_for_values(
        &self,
        name: &str,
        keep: &mut dyn FnMut(&str) -> bool,
    ) -> std::result::Result<Vec<u64>, IndexError> {
        self.0.postings_for_values(name, keep)
    }
    fn all_postings(&self) -> std::result::Result<Vec<u64>, IndexError> {
        self.0.all_postings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sorted_union_merges_sorted_and_unsorted_lists_without_repeats() {
        assert!(sorted_union(Vec::new()).is_empty());
        assert_eq!(
            sorted_union(vec![list(&["b", "a", "b"])]),
            list(&["a", "b"])
        );
        assert_eq!(
            sorted_union(vec![
                list(&["a", "c", "e"]),
                list(&["b", "c", "d", "f"]),
                Vec::new(),
                list(&["f", "a", "z"]),
                list(&["a"]),
            ]),
            list(&["a", "b", "c", "d", "e", "f", "z"])
        );
    }
}
