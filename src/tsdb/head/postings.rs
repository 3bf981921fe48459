//! The head's inverted index: label name → value → sorted series refs.

use arcstr::ArcStr;
use std::collections::{HashMap, HashSet};

use crate::model::Labels;
use crate::storage::LabelStats;

#[derive(Default)]
pub struct MemPostings {
    by_name: HashMap<ArcStr, HashMap<ArcStr, Vec<u64>>>,
    /// Every live series ref, sorted.
    all: Vec<u64>,
}

impl MemPostings {
    /// Adds a new series. Refs are handed out in increasing order, so pushing keeps
    /// every list sorted.
    pub fn add(&mut self, series_ref: u64, labels: &Labels) {
        for l in labels.iter() {
            let list = self
                .by_name
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default();
            push_sorted(list, series_ref);
        }
        push_sorted(&mut self.all, series_ref);
    }

    /// Removes the given series from every list they are in. Each touched list is
    /// rebuilt once (a merge against the sorted removed refs), not edited per series:
    /// removing many series from a list of a million entries stays linear.
    pub fn delete(&mut self, deleted: &[(u64, Labels)]) {
        if deleted.is_empty() {
            return;
        }
        let mut refs: Vec<u64> = deleted.iter().map(|(r, _)| *r).collect();
        refs.sort_unstable();
        refs.dedup();
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
                *list = crate::tsdb::postings::without(list, &refs);
                if list.is_empty() {
                    values.remove(&value);
                }
            }
            if values.is_empty() {
                self.by_name.remove(&name);
            }
        }
        self.all = crate::tsdb::postings::without(&self.all, &refs);
    }

    pub fn get(&self, name: &str, value: &str) -> Vec<u64> {
        self.by_name
            .get(name)
            .and_then(|v| v.get(value))
            .cloned()
            .unwrap_or_default()
    }

    pub fn for_values(&self, name: &str, keep: &mut dyn FnMut(&str) -> bool) -> Vec<u64> {
        let Some(values) = self.by_name.get(name) else {
            return Vec::new();
        };
        let lists: Vec<&[u64]> = values
            .iter()
            .filter(|(v, _)| keep(v))
            .map(|(_, l)| l.as_slice())
            .collect();
        crate::tsdb::postings::union(&lists)
    }

    pub fn all(&self) -> Vec<u64> {
        self.all.clone()
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_name
            .get(name)
            .map(|m| m.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
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

fn push_sorted(list: &mut Vec<u64>, r: u64) {
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
        assert_eq!(p.all(), vec![1, 5, 6]);
        assert_eq!(p.label_values("i"), vec!["1", "5", "6"]);
    }
}
