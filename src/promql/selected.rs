//! The series a selector reads during one query, and how their samples are held.
//!
//! Outside subqueries, a selector is evaluated at steps that only move forward in
//! time, so its series are *streamed*: their chunks stay encoded, each is decoded when
//! the window first reaches it, and samples behind the window are dropped. What a
//! query holds is then its windows (plus the encoded chunks), not every sample of its
//! range. A selector inside a subquery is evaluated at inner steps that restart for
//! every outer step, so its samples are decoded once and kept.
//!
//! Every decoded sample held counts against `--query.max-samples` while it is held.

use std::cell::{Cell, OnceCell};
use std::collections::VecDeque;

use crate::model::{Labels, Sample};
use crate::storage::ChunkData;
use crate::tsdb::chunkenc::XorIterator;

use super::QueryError;

/// Drop samples behind the window once this many have accumulated there (and they
/// are at least half the buffer): dropping is a copy of what remains.
const DRAIN_AT: usize = 1024;

/// One series of a selector.
pub(super) struct SelectedSeries {
    pub labels: Labels,
    /// `labels` without `__name__`, made the first time a function or operator
    /// needs it and handed out at every later step (the same set, so the range
    /// result finds it by identity).
    pub without_name: OnceCell<Labels>,
    pub samples: SampleStream,
}

/// A series' samples as the query reads them.
pub(super) struct SampleStream {
    /// Decoded samples, oldest first; those before `lo` are behind every later window.
    samples: Vec<Sample>,
    /// Chunks not decoded yet, by their first sample's time. Neighbours may overlap
    /// (a head chunk that crosses into the newest block's range, overlapping blocks):
    /// an overlapping chunk is merged into what is decoded.
    pending: VecDeque<ChunkData>,
    /// The selection's range: decoded samples outside it are not kept.
    range: (i64, i64),
    /// The last window: `samples[lo..hi]`.
    lo: usize,
    hi: usize,
    /// Windows only move forward, so samples behind them can go.
    streaming: bool,
}

/// Samples held by a query across its selectors, against the limit.
pub(super) struct SampleBudget {
    held: Cell<usize>,
    limit: usize,
}

impl SampleBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            held: Cell::new(0),
            limit,
        }
    }

    pub fn held(&self) -> usize {
        self.held.get()
    }

    fn take(&self, n: usize) -> Result<(), QueryError> {
        let held = self.held.get() + n;
        if held > self.limit {
            return Err(QueryError::too_many_samples());
        }
        self.held.set(held);
        Ok(())
    }

    fn give_back(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
    }
}

impl SelectedSeries {
    /// A series whose samples are all decoded already (`samples` in the range,
    /// oldest first).
    pub fn decoded(
        labels: Labels,
        samples: Vec<Sample>,
        budget: &SampleBudget,
    ) -> Result<Self, QueryError> {
        budget.take(samples.len())?;
        Ok(Self {
            labels,
            without_name: OnceCell::new(),
            samples: SampleStream {
                samples,
                pending: VecDeque::new(),
                range: (i64::MIN, i64::MAX),
                lo: 0,
                hi: 0,
                streaming: false,
            },
        })
    }

    /// A series read chunk by chunk as windows move forward.
    pub fn streamed(labels: Labels, mut chunks: Vec<ChunkData>, range: (i64, i64)) -> Self {
        chunks.sort_by_key(|c| c.min_t);
        Self {
            labels,
            without_name: OnceCell::new(),
            samples: SampleStream {
                samples: Vec::new(),
                pending: chunks.into(),
                range,
                lo: 0,
                hi: 0,
                streaming: true,
            },
        }
    }
}

impl SampleStream {
    /// The samples in `[start, end]`. With streaming, `start` and `end` must not move
    /// backward from one call to the next (which holds for a selector evaluated at
    /// increasing steps); decoded samples are kept only from `start` on.
    pub fn window(
        &mut self,
        start: i64,
        end: i64,
        budget: &SampleBudget,
    ) -> Result<&[Sample], QueryError> {
        // Every chunk that starts by the window's end is decoded: then the samples up
        // to `end` are complete, whatever the overlaps.
        while self.pending.front().is_some_and(|c| c.min_t <= end) {
            let Some(chunk) = self.pending.pop_front() else {
                break;
            };
            if chunk.max_t < start || chunk.max_t < self.range.0 {
                continue;
            }
            let before = self.samples.len();
            let (lo, hi) = self.range;
            let decoded = XorIterator::new(&chunk.bytes)
                .filter(|&(t, _)| t >= lo && t <= hi)
                .map(|(t, v)| Sample { t, v });
            if self.samples.last().is_none_or(|x| x.t < chunk.min_t) {
                self.samples.extend(decoded);
            } else {
                // Overlap: merge it with the decoded samples from the chunk's start
                // on; of two samples at one time, the one decoded first stays (as the
                // sample querier's merge keeps the first source's).
                let from = self.samples.partition_point(|x| x.t < chunk.min_t);
                let tail = self.samples.split_off(from);
                let merged = merge_sorted(&tail, &decoded.collect::<Vec<_>>());
                self.samples.extend(merged);
            }
            budget.take(self.samples.len().saturating_sub(before))?;
        }
        self.lo = seek(&self.samples, self.lo, |x| x.t < start);
        self.hi = seek(&self.samples, self.hi.max(self.lo), |x| x.t <= end);
        if self.streaming && self.lo >= DRAIN_AT && self.lo * 2 >= self.samples.len() {
            self.samples.drain(..self.lo);
            budget.give_back(self.lo);
            self.hi -= self.lo;
            self.lo = 0;
        }
        Ok(self.samples.get(self.lo..self.hi).unwrap_or(&[]))
    }
}

/// Two sorted runs merged; at equal times `a`'s sample is kept.
fn merge_sorted(a: &[Sample], b: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        if x.t <= y.t {
            out.push(*x);
            i += 1;
            j += usize::from(x.t == y.t);
        } else {
            out.push(*y);
            j += 1;
        }
    }
    out.extend_from_slice(a.get(i..).unwrap_or(&[]));
    out.extend_from_slice(b.get(j..).unwrap_or(&[]));
    out
}

/// `samples.partition_point(before)`, starting from `hint`, an earlier answer for a
/// nearby bound: a short walk when the bound moved forward a little, a galloping
/// search when it moved further.
///
/// Galloping (strides doubling from the hint, then a binary search within the last
/// stride) keeps the probes near the hint: a range query's windows move by a step's
/// worth of samples, and a binary search over the whole rest of a long series cost a
/// cache miss per probe (a third of a week-long query's time).
pub(super) fn seek(samples: &[Sample], hint: usize, before: impl Fn(&Sample) -> bool) -> usize {
    let hint = hint.min(samples.len());
    if hint > 0 && samples.get(hint - 1).is_some_and(|x| !before(x)) {
        // The bound moved backward (a subquery's inner steps restart): search below.
        return samples
            .get(..hint)
            .map_or(0, |s| s.partition_point(&before));
    }
    let mut i = hint;
    for _ in 0..8 {
        match samples.get(i) {
            Some(x) if before(x) => i += 1,
            _ => return i,
        }
    }
    // Everything below `i` is before the bound.
    let mut stride = 8;
    loop {
        let probe = i + stride;
        match samples.get(probe) {
            Some(x) if before(x) => {
                i = probe + 1;
                stride *= 2;
            }
            _ => {
                let end = probe.min(samples.len());
                return i + samples
                    .get(i..end)
                    .map_or(0, |s| s.partition_point(&before));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tsdb::chunkenc::encode_chunks;

    fn chunks(samples: &[Sample], per_chunk: usize) -> Vec<ChunkData> {
        encode_chunks(samples, per_chunk)
            .into_iter()
            .map(|(min_t, max_t, c)| ChunkData {
                min_t,
                max_t,
                bytes: bytes::Bytes::copy_from_slice(c.bytes()),
            })
            .collect()
    }

    #[test]
    fn streamed_windows_equal_decoded_ones_and_hold_little() {
        let all: Vec<Sample> = (0..10_000).map(|i| Sample::new(i * 10, i as f64)).collect();
        let budget = SampleBudget::new(usize::MAX);
        let mut streamed =
            SelectedSeries::streamed(Labels::empty(), chunks(&all, 120), (500, 99_000));
        let mut decoded = SelectedSeries::decoded(
            Labels::empty(),
            all.iter()
                .copied()
                .filter(|x| x.t >= 500 && x.t <= 99_000)
                .collect(),
            &budget,
        )
        .unwrap();
        let held_decoded = budget.held.get();
        let streamed_budget = SampleBudget::new(usize::MAX);
        let mut peak = 0;
        for step in 0..200 {
            let end = step * 500;
            let start = end - 3_000;
            let a = streamed
                .samples
                .window(start, end, &streamed_budget)
                .unwrap()
                .to_vec();
            let b = decoded
                .samples
                .window(start, end, &budget)
                .unwrap()
                .to_vec();
            assert_eq!(a, b, "window ending {end}");
            peak = peak.max(streamed_budget.held.get());
        }
        assert!(peak < held_decoded / 4, "held {peak} of {held_decoded}");
    }

    #[test]
    fn the_budget_refuses_windows_beyond_the_limit() {
        let all: Vec<Sample> = (0..1000).map(|i| Sample::new(i, 1.0)).collect();
        let budget = SampleBudget::new(300);
        let mut s = SelectedSeries::streamed(Labels::empty(), chunks(&all, 120), (0, 1000));
        assert!(s.samples.window(0, 100, &budget).is_ok());
        assert!(matches!(
            s.samples.window(0, 900, &budget),
            Err(QueryError::Execution(_)) | Err(_)
        ));
    }

    #[test]
    fn overlapping_chunks_are_merged_as_windows_reach_them() {
        // A block's chunks and a head chunk that overlaps the last of them, and an
        // interleaving chunk from an overlapping block.
        let a: Vec<Sample> = (0..300).map(|i| Sample::new(i * 10, 1.0)).collect();
        let b: Vec<Sample> = (250..400).map(|i| Sample::new(i * 10, 2.0)).collect();
        let c: Vec<Sample> = (0..100).map(|i| Sample::new(i * 10 + 5, 3.0)).collect();
        let mut cs = chunks(&a, 120);
        cs.extend(chunks(&b, 120));
        cs.extend(chunks(&c, 120));
        let mut want: Vec<Sample> = a.clone();
        want.extend(b.iter().filter(|x| x.t >= 3000));
        want.extend(c.iter().copied());
        want.sort_by_key(|x| x.t);
        let budget = SampleBudget::new(usize::MAX);
        let mut s = SelectedSeries::streamed(Labels::empty(), cs, (i64::MIN, i64::MAX));
        for end in (0..4000).step_by(100) {
            let got = s.samples.window(end - 500, end, &budget).unwrap().to_vec();
            let expect: Vec<Sample> = want
                .iter()
                .copied()
                .filter(|x| x.t >= end - 500 && x.t <= end)
                .collect();
            assert_eq!(got, expect, "window ending {end}");
        }
    }
}
