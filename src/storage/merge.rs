//! Merging several sorted series sets into one, as Prometheus's `storage/merge.go`.
//!
//! Used to read head and blocks as one, and overlapping blocks as one: series with
//! equal labels are joined and their samples merged by timestamp, a timestamp that
//! appears in several sources kept once (the first source wins, so callers pass the
//! most authoritative source first).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::{ChunkSeries, ChunkSeriesSet, Result, Series, SeriesSet};
use crate::model::{Labels, Sample};

/// Merges sample lists sorted by time into one, keeping the first occurrence of a
/// timestamp (by list order).
///
/// The usual input is one list per block, the blocks side by side in time (a week of
/// 2-hour blocks is 84 lists): those are put in order and concatenated. Overlapping
/// lists go through a k-way merge.
pub fn merge_samples(mut lists: Vec<Vec<Sample>>) -> Vec<Sample> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => return Vec::new(),
        1 => return lists.pop().unwrap_or_default(),
        _ => {}
    }
    let first_t = |l: &Vec<Sample>| l.first().map_or(i64::MAX, |s| s.t);
    let last_t = |l: &Vec<Sample>| l.last().map_or(i64::MIN, |s| s.t);
    let mut order: Vec<usize> = (0..lists.len()).collect();
    order.sort_by_key(|&i| (first_t(&lists[i]), i));
    let disjoint = order
        .windows(2)
        .all(|w| last_t(&lists[w[0]]) < first_t(&lists[w[1]]));
    let total = lists.iter().map(Vec::len).sum();
    let mut out: Vec<Sample> = Vec::with_capacity(total);
    if disjoint {
        for i in order {
            out.extend_from_slice(&lists[i]);
        }
        return out;
    }
    // Smallest (time, list) first: on equal times the earlier list wins, and the
    // others' samples at that time are skipped.
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = lists
        .iter()
        .enumerate()
        .map(|(i, l)| Reverse((first_t(l), i)))
        .collect();
    let mut pos = vec![0usize; lists.len()];
    while let Some(Reverse((t, i))) = heap.pop() {
        let s = lists[i][pos[i]];
        if out.last().is_none_or(|last| last.t < t) {
            out.push(s);
        }
        pos[i] += 1;
        if let Some(next) = lists[i].get(pos[i]) {
            heap.push(Reverse((next.t, i)));
        }
    }
    out
}

/// Merges chunk lists of one series: chunks sorted by `min_t`; overlapping chunks are
/// passed through as they are (a reader of chunks must be ready for overlap, as
/// Thanos's querier is), duplicates (same range, same bytes) are dropped.
pub fn merge_chunk_series(parts: Vec<ChunkSeries>) -> ChunkSeries {
    let mut iter = parts.into_iter();
    let Some(mut first) = iter.next() else {
        return ChunkSeries {
            labels: Labels::empty(),
            chunks: Vec::new(),
        };
    };
    for p in iter {
        first.chunks.extend(p.chunks);
    }
    first.chunks.sort_by_key(|c| (c.min_t, c.max_t));
    first.chunks.dedup();
    first
}

/// A heap entry: the head of one source, ordered by labels then source index.
struct HeapItem<T> {
    labels: Labels,
    source: usize,
    item: T,
}

impl<T> PartialEq for HeapItem<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for HeapItem<T> {}
impl<T> PartialOrd for HeapItem<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for HeapItem<T> {
    // Reversed: BinaryHeap is a max-heap and we want the smallest labels first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .labels
            .cmp(&self.labels)
            .then(other.source.cmp(&self.source))
    }
}

/// The k-way merge shared by the sample and chunk variants.
struct KWayMerge<T> {
    sources: Vec<Box<dyn Iterator<Item = Result<T>> + Send>>,
    heap: BinaryHeap<HeapItem<T>>,
    labels_of: fn(&T) -> &Labels,
    primed: bool,
}

impl<T> KWayMerge<T> {
    fn new(
        sources: Vec<Box<dyn Iterator<Item = Result<T>> + Send>>,
        labels_of: fn(&T) -> &Labels,
    ) -> Self {
        Self {
            sources,
            heap: BinaryHeap::new(),
            labels_of,
            primed: false,
        }
    }

    fn pull(&mut self, source: usize) -> Result<()> {
        if let Some(next) = self.sources[source].next() {
            let item = next?;
            self.heap.push(HeapItem {
                labels: (self.labels_of)(&item).clone(),
                source,
                item,
            });
        }
        Ok(())
    }

    /// The next group of items with equal labels, in source order.
    fn next_group(&mut self) -> Option<Result<Vec<T>>> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.sources.len() {
                if let Err(e) = self.pull(i) {
                    return Some(Err(e));
                }
            }
        }
        let first = self.heap.pop()?;
        let labels = first.labels.clone();
        let mut group = vec![(first.source, first.item)];
        if let Err(e) = self.pull(first.source) {
            return Some(Err(e));
        }
        while self.heap.peek().is_some_and(|h| h.labels == labels) {
            let Some(h) = self.heap.pop() else { break };
            group.push((h.source, h.item));
            if let Err(e) = self.pull(h.source) {
                return Some(Err(e));
            }
        }
        group.sort_by_key(|(s, _)| *s);
        Some(Ok(group.into_iter().map(|(_, t)| t).collect()))
    }
}

/// Merges sorted series sets; series with equal labels are joined.
pub struct MergeSeriesSet(KWayMerge<Series>);

impl MergeSeriesSet {
    /// Merges `sets`, earlier sets winning on equal timestamps. A single set is
    /// returned unchanged.
    pub fn merge(mut sets: Vec<SeriesSet>) -> SeriesSet {
        if sets.len() == 1 {
            if let Some(s) = sets.pop() {
                return s;
            }
        }
        Box::new(MergeSeriesSet(KWayMerge::new(sets, |s: &Series| &s.labels)))
    }
}

impl Iterator for MergeSeriesSet {
    type Item = Result<Series>;
    fn next(&mut self) -> Option<Self::Item> {
        let group = match self.0.next_group()? {
            Ok(g) => g,
            Err(e) => return Some(Err(e)),
        };
        let mut iter = group.into_iter();
        let first = iter.next()?;
        let labels = first.labels;
        let mut lists = vec![first.samples];
        lists.extend(iter.map(|s| s.samples));
        Some(Ok(Series {
            labels,
            samples: merge_samples(lists),
        }))
    }
}

/// Merges sorted chunk series sets; series with equal labels are joined.
pub struct MergeChunkSeriesSet(KWayMerge<ChunkSeries>);

impl MergeChunkSeriesSet {
    pub fn merge(mut sets: Vec<ChunkSeriesSet>) -> ChunkSeriesSet {
        if sets.len() == 1 {
            if let Some(s) = sets.pop() {
                return s;
            }
        }
        Box::new(MergeChunkSeriesSet(KWayMerge::new(
            sets,
            |s: &ChunkSeries| &s.labels,
        )))
    }
}

impl Iterator for MergeChunkSeriesSet {
    type Item = Result<ChunkSeries>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.0.next_group()? {
            Ok(g) => Some(Ok(merge_chunk_series(g))),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, v: f64) -> Sample {
        Sample::new(t, v)
    }

    fn series(name: &str, samples: Vec<Sample>) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name)]),
            samples,
        }
    }

    #[test]
    fn merge_samples_keeps_first_source_on_equal_timestamps() {
        let a = vec![s(1, 1.0), s(3, 3.0)];
        let b = vec![s(1, 9.0), s(2, 2.0), s(4, 4.0)];
        let got = merge_samples(vec![a, b]);
        let want = vec![s(1, 1.0), s(2, 2.0), s(3, 3.0), s(4, 4.0)];
        assert_eq!(got, want);
    }

    #[test]
    fn merge_samples_orders_disjoint_lists_and_merges_overlapping_ones() {
        // Blocks side by side, given out of order.
        let got = merge_samples(vec![
            vec![s(5, 5.0), s(6, 6.0)],
            vec![s(1, 1.0), s(2, 2.0)],
            vec![s(3, 3.0)],
        ]);
        assert_eq!(
            got,
            vec![s(1, 1.0), s(2, 2.0), s(3, 3.0), s(5, 5.0), s(6, 6.0)]
        );
        // Three overlapping lists: the earliest list wins each shared timestamp.
        let got = merge_samples(vec![
            vec![s(2, 20.0), s(4, 40.0)],
            vec![s(1, 1.0), s(2, 2.0), s(3, 3.0), s(4, 4.0)],
            vec![s(3, 300.0), s(5, 500.0)],
        ]);
        assert_eq!(
            got,
            vec![s(1, 1.0), s(2, 20.0), s(3, 3.0), s(4, 40.0), s(5, 500.0)]
        );
    }

    #[test]
    fn merge_series_sets_joins_equal_labels_and_keeps_order() {
        let a: SeriesSet = Box::new(
            vec![
                Ok(series("a", vec![s(1, 1.0)])),
                Ok(series("c", vec![s(1, 1.0)])),
            ]
            .into_iter(),
        );
        let b: SeriesSet = Box::new(
            vec![
                Ok(series("a", vec![s(2, 2.0)])),
                Ok(series("b", vec![s(1, 1.0)])),
            ]
            .into_iter(),
        );
        let got: Vec<Series> = MergeSeriesSet::merge(vec![a, b])
            .collect::<Result<_>>()
            .unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|s| s.labels.metric_name().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(got[0].samples, vec![s(1, 1.0), s(2, 2.0)]);
    }
}
