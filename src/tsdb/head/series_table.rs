//! Series by ref: a paged array indexed by the ref itself.
//!
//! Refs are handed out in increasing order, so a table indexed by ref is dense where
//! series are live: 8 bytes per series, where a hash map keyed by ref costs 16 bytes
//! a bucket at a load factor between ½ and ⅞. Series die in roughly the order they
//! were created (truncation drops the ones that stopped receiving samples), so pages
//! whose series are all gone are freed, and the run of freed pages at the front is
//! dropped: memory follows the live series, not every ref ever handed out.

use std::collections::VecDeque;
use std::sync::Arc;

use super::series::MemSeries;

const PAGE_BITS: u32 = 12;
const PAGE_LEN: usize = 1 << PAGE_BITS;

struct Page {
    slots: Box<[Option<Arc<MemSeries>>]>,
    live: usize,
}

impl Page {
    fn new() -> Self {
        Self {
            slots: (0..PAGE_LEN).map(|_| None).collect(),
            live: 0,
        }
    }
}

#[derive(Default)]
pub(super) struct SeriesTable {
    /// `pages[i]` holds refs `(first_page + i) << PAGE_BITS ..`; `None` when none of
    /// them is live.
    pages: VecDeque<Option<Page>>,
    first_page: u64,
    len: usize,
}

impl SeriesTable {
    fn split(r: u64) -> (u64, usize) {
        (r >> PAGE_BITS, (r as usize) & (PAGE_LEN - 1))
    }

    /// The page index in `pages` for page number `page`, if it lies in the table.
    fn index(&self, page: u64) -> Option<usize> {
        usize::try_from(page.checked_sub(self.first_page)?)
            .ok()
            .filter(|&i| i < self.pages.len())
    }

    pub fn get(&self, r: u64) -> Option<&Arc<MemSeries>> {
        let (page, slot) = Self::split(r);
        self.pages
            .get(self.index(page)?)?
            .as_ref()?
            .slots
            .get(slot)?
            .as_ref()
    }

    /// Stores `series` under `r`, replacing what was there.
    pub fn insert(&mut self, r: u64, series: Arc<MemSeries>) {
        let (page, slot) = Self::split(r);
        if self.pages.is_empty() {
            self.first_page = page;
        }
        while page < self.first_page {
            self.pages.push_front(None);
            self.first_page -= 1;
        }
        let Ok(i) = usize::try_from(page - self.first_page) else {
            return;
        };
        if i >= self.pages.len() {
            self.pages.resize_with(i + 1, || None);
        }
        let Some(entry) = self.pages.get_mut(i) else {
            return;
        };
        let p = entry.get_or_insert_with(Page::new);
        if let Some(s) = p.slots.get_mut(slot) {
            if s.replace(series).is_none() {
                p.live += 1;
                self.len += 1;
            }
        }
    }

    /// Removes the series under `r`, freeing its page when it was the page's last.
    pub fn remove(&mut self, r: u64) -> Option<Arc<MemSeries>> {
        let (page, slot) = Self::split(r);
        let i = self.index(page)?;
        let entry = self.pages.get_mut(i)?;
        let p = entry.as_mut()?;
        let removed = p.slots.get_mut(slot)?.take()?;
        p.live -= 1;
        self.len -= 1;
        if p.live == 0 {
            *entry = None;
            while matches!(self.pages.front(), Some(None)) {
                self.pages.pop_front();
                self.first_page += 1;
            }
            while matches!(self.pages.back(), Some(None)) {
                self.pages.pop_back();
            }
        }
        Some(removed)
    }

    /// Every series with its ref, in ref order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Arc<MemSeries>)> {
        let first = self.first_page;
        self.pages
            .iter()
            .zip(first..)
            .filter_map(|(p, n)| Some((n, p.as_ref()?)))
            .flat_map(|(n, p)| {
                p.slots
                    .iter()
                    .zip((n << PAGE_BITS)..)
                    .filter_map(|(s, r)| Some((r, s.as_ref()?)))
            })
    }

    /// Every ref, sorted.
    pub fn refs(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.len);
        out.extend(self.iter().map(|(r, _)| r));
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn series(r: u64) -> Arc<MemSeries> {
        Arc::new(MemSeries::new(Labels::from_pairs([("i", r.to_string())])))
    }

    #[test]
    fn lookups_follow_inserts_and_removes() {
        let mut t = SeriesTable::default();
        let refs = [1u64, 2, 4095, 4096, 10_000, 1 << 33];
        for &r in &refs {
            t.insert(r, series(r));
        }
        assert_eq!(t.len, refs.len());
        for &r in &refs {
            assert_eq!(t.get(r).unwrap().labels.get("i").unwrap(), r.to_string());
        }
        assert!(t.get(3).is_none() && t.get(1 << 34).is_none() && t.get(0).is_none());
        assert_eq!(t.refs(), refs);
        assert_eq!(t.remove(4095).unwrap().labels.get("i").unwrap(), "4095");
        assert!(t.remove(4095).is_none());
        assert_eq!(t.refs(), [1, 2, 4096, 10_000, 1 << 33]);
    }

    #[test]
    fn emptied_pages_are_freed_and_the_front_run_dropped() {
        let mut t = SeriesTable::default();
        for r in 0..(3 * PAGE_LEN as u64) {
            t.insert(r, series(r));
        }
        assert_eq!(t.pages.len(), 3);
        // The middle page empties: freed, but it keeps its place.
        for r in PAGE_LEN as u64..2 * PAGE_LEN as u64 {
            t.remove(r);
        }
        assert!(t.pages.get(1).unwrap().is_none());
        assert_eq!(t.pages.len(), 3);
        // The first page empties: it and the freed middle one are dropped.
        for r in 0..PAGE_LEN as u64 {
            t.remove(r);
        }
        assert_eq!((t.pages.len(), t.first_page), (1, 2));
        assert_eq!(t.len, PAGE_LEN);
        assert!(t.get(2 * PAGE_LEN as u64).is_some());
        for r in 2 * PAGE_LEN as u64..3 * PAGE_LEN as u64 {
            t.remove(r);
        }
        assert!(t.pages.is_empty() && t.len == 0 && t.refs().is_empty());
        // A table emptied restarts wherever the next ref is.
        t.insert(5 * PAGE_LEN as u64, series(5 * PAGE_LEN as u64));
        assert_eq!(t.refs(), [5 * PAGE_LEN as u64]);
    }
}
