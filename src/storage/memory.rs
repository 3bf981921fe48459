//! An in-memory implementation of the seams, for testing the components above storage
//! (scrape loops, the remote-write receiver, PromQL) without a TSDB. Samples are kept
//! per series in a sorted map; the append rules are Prometheus's (out of order and
//! conflicting duplicates refused per sample).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{
    AppendError, AppendSummary, Appendable, Appender, Querier, Queryable, RejectReason, Result,
    SelectHints, Series, SeriesSet,
};
use crate::model::{Labels, Matcher, Sample};

#[derive(Clone, Default)]
pub struct MemoryStorage {
    series: Arc<Mutex<BTreeMap<Labels, Vec<Sample>>>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored series, sorted by labels.
    pub fn dump(&self) -> Vec<Series> {
        self.series
            .lock()
            .iter()
            .map(|(l, s)| Series {
                labels: l.clone(),
                samples: s.clone(),
            })
            .collect()
    }
}

impl Appendable for MemoryStorage {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(MemoryAppender {
            storage: self.clone(),
            pending: Vec::new(),
        })
    }
}

struct MemoryAppender {
    storage: MemoryStorage,
    pending: Vec<(Labels, Sample)>,
}

impl Appender for MemoryAppender {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> std::result::Result<(), AppendError> {
        if labels.is_empty() {
            return Err(AppendError::InvalidLabels("empty label set".into()));
        }
        self.pending.push((labels.clone(), Sample { t, v }));
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<AppendSummary> {
        let mut summary = AppendSummary::default();
        let mut map = self.storage.series.lock();
        for (labels, s) in self.pending {
            let list = map.entry(labels).or_default();
            match list.last() {
                Some(last) if s.t < last.t => summary.add_rejected(RejectReason::OutOfOrder, 1),
                Some(last) if s.t == last.t && s.v.to_bits() == last.v.to_bits() => {
                    summary.unchanged += 1
                }
                Some(last) if s.t == last.t => summary.add_rejected(RejectReason::Duplicate, 1),
                _ => {
                    list.push(s);
                    summary.accepted += 1;
                }
            }
        }
        map.retain(|_, v| !v.is_empty());
        Ok(summary)
    }

    fn rollback(self: Box<Self>) {}
}

impl Queryable for MemoryStorage {
    fn querier(&self, min_t: i64, max_t: i64) -> Result<Box<dyn Querier>> {
        Ok(Box::new(MemoryQuerier {
            storage: self.clone(),
            min_t,
            max_t,
        }))
    }
}

struct MemoryQuerier {
    storage: MemoryStorage,
    min_t: i64,
    max_t: i64,
}

impl MemoryQuerier {
    fn matching(&self, matchers: &[Matcher]) -> Vec<Series> {
        self.storage
            .series
            .lock()
            .iter()
            .filter(|(l, _)| {
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            })
            .map(|(l, s)| Series {
                labels: l.clone(),
                samples: s
                    .iter()
                    .filter(|x| x.t >= self.min_t && x.t <= self.max_t)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect()
    }
}

impl Querier for MemoryQuerier {
    fn select(&self, _hints: &SelectHints, matchers: &[Matcher]) -> Result<SeriesSet> {
        Ok(Box::new(self.matching(matchers).into_iter().map(Ok)))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut v: Vec<String> = self
            .matching(matchers)
            .iter()
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut v: Vec<String> = self
            .matching(matchers)
            .iter()
            .flat_map(|s| {
                s.labels
                    .iter()
                    .map(|l| l.name.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_rules_and_select() {
        let st = MemoryStorage::new();
        let l = Labels::from_pairs([("__name__", "x")]);
        let mut app = st.appender();
        for (t, v) in [(1, 1.0), (2, 2.0), (1, 5.0), (2, 3.0), (2, 2.0)] {
            app.append(&l, t, v).unwrap();
        }
        let s = app.commit().unwrap();
        assert_eq!(
            (s.accepted, s.out_of_order, s.duplicate, s.unchanged),
            (2, 1, 1, 1)
        );
        let q = st.querier(0, 10).unwrap();
        let got: Vec<Series> = q
            .select(&SelectHints::default(), &[Matcher::equal("__name__", "x")])
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(got[0].samples.len(), 2);
    }
}
