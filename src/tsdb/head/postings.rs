//! The head's inverted index: label name → value → sorted series refs.

use arcstr::ArcStr;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::Labels;
use crate::storage::LabelStats;

/// Label name → value → the series having it.
///
/// Lists hold refs as 32-bit offsets from `base`: they are the largest part of the
/// index (one entry per label of every series), and halving them is worth the
/// conversion when a list is read. Refs grow for the life of the process, so when an
/// offset would no longer fit, every list is rebased on the oldest live ref — which
/// happens only after billions of series were created, and whose cost is one pass
/// over the lists.
#[derive(Default)]
pub struct MemPostings {
    base: u64,
    by_name: HashMap<ArcStr, HashMap<ArcStr, Vec<u32>>>,
    /// Names' values in order, as `label_values` last sorted them; a name's list is
    /// dropped when one of its values comes or goes. Value lists are asked for often
    /// (Grafana's metric browser wants `__name__`'s at every opening) and change
    /// rarely, so most calls copy a list rather than sort one. Filled under the
    /// index's read lock (hence the mutex), emptied under its write lock.
    sorted_values: Mutex<HashMap<ArcStr, Arc<[ArcStr]>>>,
}

impl MemPostings {
    /// Adds a new series. Refs are handed out in increasing order, so pushing keeps
    /// every list sorted.
    pub fn add(&mut self, series_ref: u64, labels: &Labels) {
        let Some(offset) = self.offset_of(series_ref) else {
            // Only reachable with more than 2^32 live series.
            tracing::error!(series_ref, "series ref out of the postings' range");
            return;
        };
        for l in labels.iter() {
            let values = self.by_name.entry(l.name.clone()).or_default();
            let list = match values.entry(l.value.clone()) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    self.sorted_values.get_mut().remove(&l.name);
                    v.insert(Vec::new())
                }
            };
            push_sorted(list, offset);
        }
    }

    /// The offset of `r` from the base, rebasing the lists first if it does not fit.
    fn offset_of(&mut self, r: u64) -> Option<u32> {
        if let Ok(o) = u32::try_from(r.checked_sub(self.base)?) {
            return Some(o);
        }
        self.rebase();
        u32::try_from(r.checked_sub(self.base)?).ok()
    }

    /// Moves the base to the oldest ref still listed.
    fn rebase(&mut self) {
        let oldest = self
            .by_name
            .values()
            .flat_map(|values| values.values())
            .filter_map(|list| list.first().copied())
            .min();
        let Some(shift) = oldest else {
            // Nothing listed: any base will do; the next ref becomes offset 0.
            self.base = 0;
            return;
        };
        for list in self.by_name.values_mut().flat_map(|v| v.values_mut()) {
            for r in list.iter_mut() {
                *r -= shift;
            }
        }
        self.base += u64::from(shift);
    }

    /// Sets the base for an empty index, so that refs starting at `first` fit.
    #[cfg(test)]
    fn with_base(base: u64) -> Self {
        Self {
            base,
            ..Self::default()
        }
    }

    /// Removes the given series from every list they are in. Each touched list is
    /// rebuilt once (a merge against the sorted removed refs), not edited per series:
    /// removing many series from a list of a million entries stays linear.
    pub fn delete(&mut self, deleted: &[(u64, Labels)]) {
        if deleted.is_empty() {
            return;
        }
        let mut offsets: Vec<u32> = deleted
            .iter()
            .filter_map(|(r, _)| u32::try_from(r.checked_sub(self.base)?).ok())
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        let mut touched: HashSet<(ArcStr, ArcStr)> = HashSet::new();
        for (_, labels) in deleted {
            for l in labels.iter() {
                touched.insert((l.name.clone(), l.value.clone()));
            }
        }
        for (name, value) in touched {
            let Some(values) = self.by_name.get_mut(&name) else {
                continue;
            };
            if let Some(list) = values.get_mut(&value) {
                *list = crate::tsdb::postings::without(list, &offsets);
                if list.is_empty() {
                    values.remove(&value);
                    self.sorted_values.get_mut().remove(&name);
                }
            }
            if values.is_empty() {
                self.by_name.remove(&name);
            }
        }
    }

    fn to_refs(&self, list: &[u32]) -> Vec<u64> {
        list.iter().map(|&o| self.base + u64::from(o)).collect()
    }

    pub fn get(&self, name: &str, value: &str) -> Vec<u64> {
        self.by_name
            .get(name)
            .and_then(|v| v.get(value))
            .map(|list| self.to_refs(list))
            .unwrap_or_default()
    }

    pub fn for_values(&self, name: &str, keep: &mut dyn FnMut(&str) -> bool) -> Vec<u64> {
        let Some(values) = self.by_name.get(name) else {
            return Vec::new();
        };
        let lists: Vec<&[u32]> = values
            .iter()
            .filter(|(v, _)| keep(v))
            .map(|(_, l)| l.as_slice())
            .collect();
        self.to_refs(&crate::tsdb::postings::union(&lists))
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().map(|k| k.to_string()).collect();
        v.sort_unstable();
        v
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let Some((name, values)) = self.by_name.get_key_value(name) else {
            return Vec::new();
        };
        let sorted = self
            .sorted_values
            .lock()
            .entry(name.clone())
            .or_insert_with(|| {
                let mut v: Vec<ArcStr> = values.keys().cloned().collect();
                v.sort_unstable();
                v.into()
            })
            .clone();
        sorted.iter().map(|v| v.to_string()).collect()
    }

    /// (name, number of values, number of series) per label, for cardinality stats.
    pub fn label_stats(&self) -> Vec<LabelStats> {
        self.by_name
            .iter()
            .map(|(n, vals)| LabelStats {
                name: n.to_string(),
                distinct_values: vals.len(),
                series: vals.values().map(Vec::len).sum(),
                value_bytes: vals
                    .iter()
                    .map(|(v, refs)| (v.len() * refs.len()) as u64)
                    .sum(),
            })
            .collect()
    }

    /// Series per `name=value` pair.
    pub fn label_pair_counts(&self) -> Vec<(String, usize)> {
        self.by_name
            .iter()
            .flat_map(|(n, vals)| {
                vals.iter()
                    .map(move |(v, refs)| (format!("{n}={v}"), refs.len()))
            })
            .collect()
    }
}

fn push_sorted(list: &mut Vec<u32>, r: u32) {
    match list.last() {
        Some(&last) if last >= r => {
            if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
        _ => list.push(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_removes_series_from_every_list() {
        let mut p = MemPostings::default();
        let l = |job: &str, i: u64| {
            Labels::from_pairs([("job", job.to_string()), ("i", i.to_string())])
        };
        for i in 1..=6 {
            p.add(i, &l(if i % 2 == 0 { "even" } else { "odd" }, i));
        }
        p.delete(&[(2, l("even", 2)), (3, l("odd", 3)), (4, l("even", 4))]);
        assert_eq!(p.get("job", "even"), vec![6]);
        assert_eq!(p.get("job", "odd"), vec![1, 5]);
        assert_eq!(p.label_values("i"), vec!["1", "5", "6"]);
    }

    /// The sorted value lists kept between calls follow every added and deleted
    /// value.
    #[test]
    fn label_values_follow_additions_and_deletions() {
        let mut p = MemPostings::default();
        let l = |v: &str| Labels::from_pairs([("__name__", "m"), ("v", v)]);
        p.add(1, &l("b"));
        p.add(2, &l("a"));
        assert_eq!(p.label_values("v"), ["a", "b"]);
        assert_eq!(p.label_values("v"), ["a", "b"]);
        p.add(3, &l("c"));
        p.add(4, &l("a"));
        assert_eq!(p.label_values("v"), ["a", "b", "c"]);
        p.delete(&[(1, l("b"))]);
        assert_eq!(p.label_values("v"), ["a", "c"]);
        // A value still held by another series stays.
        p.delete(&[(2, l("a"))]);
        assert_eq!(p.label_values("v"), ["a", "c"]);
        p.delete(&[(3, l("c")), (4, l("a"))]);
        assert!(p.label_values("v").is_empty());
        assert!(p.label_values("__name__").is_empty());
        p.add(5, &l("z"));
        assert_eq!(p.label_values("v"), ["z"]);
        assert_eq!(p.label_values("nope"), Vec::<String>::new());
    }

    #[test]
    fn refs_beyond_32_bits_rebase_on_the_oldest_live_series() {
        let l = |i: u64| Labels::from_pairs([("job", "a".to_string()), ("i", i.to_string())]);
        let first = u64::from(u32::MAX) - 1;
        let mut p = MemPostings::with_base(0);
        p.add(7, &l(7));
        p.add(first, &l(first));
        p.delete(&[(7, l(7))]);
        // Past u32::MAX from base 0: the lists move to base `first`.
        p.add(first + 10, &l(first + 10));
        assert_eq!(p.base, first);
        assert_eq!(p.get("job", "a"), vec![first, first + 10]);
        assert_eq!(p.for_values("i", &mut |_| true), vec![first, first + 10]);
        p.delete(&[(first, l(first))]);
        assert_eq!(p.get("job", "a"), vec![first + 10]);
    }
}
