//! What a scrape loop remembers per exposed line, found by the line's text.
//!
//! A page lists its series (and its HELP and TYPE lines) in the same order at every
//! scrape, so the `i`-th lookup of a scrape is first compared with the entry the
//! `i`-th lookup found last time: a walk along the entries, with no hashing and no
//! random access into the index. Other lookups go by hash (hashbrown's default
//! hasher, foldhash).

use std::hash::BuildHasher;

/// An entry and the text it is found by.
pub trait Keyed {
    fn key(&self) -> &str;
}

pub struct KeyedTable<E> {
    entries: Vec<E>,
    /// Positions in `entries`, by the hash of their key.
    index: hashbrown::HashTable<usize>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The entries in the order the last finished scrape looked them up.
    order: Vec<usize>,
    /// The order of the scrape under way.
    next_order: Vec<usize>,
}

impl<E> Default for KeyedTable<E> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            order: Vec::new(),
            next_order: Vec::new(),
        }
    }
}

impl<E: Keyed> KeyedTable<E> {
    /// Starts a scrape.
    pub fn begin(&mut self) {
        self.next_order.clear();
    }

    /// The scrape's next lookup: the position of the entry whose key is `key`.
    pub fn find(&mut self, key: &str) -> Option<usize> {
        let at = match self.order.get(self.next_order.len()) {
            Some(&i) if self.entries.get(i).is_some_and(|e| e.key() == key) => i,
            _ => {
                let entries = &self.entries;
                let hash = self.hasher.hash_one(key);
                *self
                    .index
                    .find(hash, |&i| entries.get(i).is_some_and(|e| e.key() == key))?
            }
        };
        self.next_order.push(at);
        Some(at)
    }

    /// Adds an entry for the scrape's next lookup (one [`find`](Self::find) did not
    /// know), returning its position.
    pub fn insert(&mut self, entry: E) -> usize {
        let at = self.entries.len();
        let hash = self.hasher.hash_one(entry.key());
        self.entries.push(entry);
        self.index_at(hash, at);
        self.next_order.push(at);
        at
    }

    /// The entry at `at`, or the one of `key` (added with `make` if new), as the
    /// scrape's next lookup; true when it was added.
    pub fn find_or_insert(&mut self, key: &str, make: impl FnOnce() -> E) -> (&mut E, bool) {
        let (at, added) = match self.find(key) {
            Some(at) => (at, false),
            None => (self.insert(make()), true),
        };
        // `find` and `insert` return positions of entries.
        (&mut self.entries[at], added)
    }

    pub fn get_mut(&mut self, at: usize) -> Option<&mut E> {
        self.entries.get_mut(at)
    }

    /// Ends a finished scrape: its order is the one the next scrape expects, and
    /// entries `keep` refuses are forgotten.
    pub fn finish(&mut self, keep: impl Fn(&E) -> bool) {
        std::mem::swap(&mut self.order, &mut self.next_order);
        if self.entries.iter().all(&keep) {
            return;
        }
        // Rare (lines went away): compact, and rebuild the index and the order.
        let mut moved: Vec<Option<usize>> = Vec::with_capacity(self.entries.len());
        let mut kept = 0;
        for e in &self.entries {
            moved.push(keep(e).then(|| {
                kept += 1;
                kept - 1
            }));
        }
        self.entries.retain(|e| keep(e));
        self.index.clear();
        for at in 0..self.entries.len() {
            let hash = self.hasher.hash_one(self.entries[at].key());
            self.index_at(hash, at);
        }
        self.order = self
            .order
            .iter()
            .filter_map(|&i| moved.get(i).copied().flatten())
            .collect();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &E> {
        self.entries.iter()
    }

    fn index_at(&mut self, hash: u64, at: usize) {
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, at, |&i| {
            hasher.hash_one(entries.get(i).map_or("", |e| e.key()))
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct E(String, u32);

    impl Keyed for E {
        fn key(&self) -> &str {
            &self.0
        }
    }

    /// One scrape's lookups: the value found (or 0 when new) for each key.
    fn scrape(t: &mut KeyedTable<E>, keys: &[&str], round: u32) -> Vec<u32> {
        t.begin();
        let mut out = Vec::new();
        for k in keys {
            let (e, added) = t.find_or_insert(k, || E(k.to_string(), round));
            out.push(if added { 0 } else { e.1 });
            e.1 = round;
        }
        t.finish(|e| e.1 + 1 >= round);
        out
    }

    #[test]
    fn lookups_in_any_order_find_their_entries_and_old_ones_go() {
        let mut t = KeyedTable::default();
        assert_eq!(scrape(&mut t, &["a", "b", "c"], 1), [0, 0, 0]);
        assert_eq!(scrape(&mut t, &["a", "b", "c"], 2), [1, 1, 1]);
        assert_eq!(scrape(&mut t, &["c", "a", "a"], 3), [2, 2, 3]);
        assert_eq!(t.len(), 3);
        assert_eq!(scrape(&mut t, &["a", "d"], 4), [3, 0]);
        // b was last seen in round 2: forgotten now; c (round 3) kept one more.
        assert_eq!(t.len(), 3);
        assert_eq!(scrape(&mut t, &["b", "c", "a", "d"], 5), [0, 3, 4, 4]);
        assert_eq!(scrape(&mut t, &["b", "c", "a", "d"], 6), [5, 5, 5, 5]);
    }
}
