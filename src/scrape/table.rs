//! What a scrape loop remembers per exposed line, found by the line's text.
//!
//! A page lists its series (and its HELP and TYPE lines) in the same order at every
//! scrape, so the `i`-th lookup of a scrape is first compared with the entry the
//! `i`-th lookup found last time: a walk along the entries, with no hashing and no
//! random access into the index. Other lookups go by hash (hashbrown's default
//! hasher, foldhash).

use std::hash::BuildHasher;
use std::ops::Range;

/// An entry and where its key lies in the table's key text.
struct Slot<E> {
    key: Range<usize>,
    entry: E,
}

pub struct KeyedTable<E> {
    slots: Vec<Slot<E>>,
    /// Every entry's key, back to back, in the order the entries were added: a page's
    /// first scrape adds its lines in page order, so a scrape that compares its lines
    /// with their keys reads this text front to back, which the prefetcher streams,
    /// instead of one cold heap allocation per line.
    keys: String,
    /// Positions in `slots`, by the hash of their key.
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
            slots: Vec::new(),
            keys: String::new(),
            index: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            order: Vec::new(),
            next_order: Vec::new(),
        }
    }
}

impl<E> KeyedTable<E> {
    /// Starts a scrape.
    pub fn begin(&mut self) {
        self.next_order.clear();
    }

    /// The key of the entry at `at` (empty for a position that holds none).
    pub fn key(&self, at: usize) -> &str {
        key_at(&self.slots, &self.keys, at)
    }

    /// The scrape's next lookup: the position of the entry whose key is `key`.
    pub fn find(&mut self, key: &str) -> Option<usize> {
        let at = match self.order.get(self.next_order.len()) {
            Some(&i) if self.key(i) == key => i,
            _ => {
                let hash = self.hasher.hash_one(key);
                let (slots, keys) = (&self.slots, &self.keys);
                *self.index.find(hash, |&i| key_at(slots, keys, i) == key)?
            }
        };
        self.next_order.push(at);
        Some(at)
    }

    /// Adds `entry` under `key` for the scrape's next lookup (one
    /// [`find`](Self::find) did not know), returning its position.
    pub fn insert(&mut self, key: &str, entry: E) -> usize {
        let at = self.slots.len();
        let start = self.keys.len();
        self.keys.push_str(key);
        self.slots.push(Slot {
            key: start..self.keys.len(),
            entry,
        });
        let hash = self.hasher.hash_one(key);
        self.index_at(hash, at);
        self.next_order.push(at);
        at
    }

    /// The entry of `key` (added with `make` if new), as the scrape's next lookup;
    /// true when it was added.
    pub fn find_or_insert(&mut self, key: &str, make: impl FnOnce() -> E) -> (&mut E, bool) {
        let (at, added) = match self.find(key) {
            Some(at) => (at, false),
            None => (self.insert(key, make()), true),
        };
        // `find` and `insert` return positions of entries.
        (&mut self.slots[at].entry, added)
    }

    pub fn get_mut(&mut self, at: usize) -> Option<&mut E> {
        self.slots.get_mut(at).map(|s| &mut s.entry)
    }

    /// Ends a finished scrape: its order is the one the next scrape expects, and
    /// entries `keep` refuses are forgotten.
    pub fn finish(&mut self, keep: impl Fn(&E) -> bool) {
        std::mem::swap(&mut self.order, &mut self.next_order);
        if self.slots.iter().all(|s| keep(&s.entry)) {
            // After the scrapes that added lines, give back what growing by doubling
            // left spare (a thousand targets' keys are tens of megabytes).
            if self.keys.capacity() > self.keys.len() + self.keys.len() / 4 + 4096 {
                self.keys.shrink_to_fit();
            }
            return;
        }
        // Rare (lines went away): compact the entries and their keys, and rebuild
        // the index and the order.
        let mut moved: Vec<Option<usize>> = Vec::with_capacity(self.slots.len());
        let mut kept_slots = Vec::with_capacity(self.slots.len());
        let mut kept_keys = String::with_capacity(self.keys.len());
        for slot in std::mem::take(&mut self.slots) {
            if !keep(&slot.entry) {
                moved.push(None);
                continue;
            }
            moved.push(Some(kept_slots.len()));
            let start = kept_keys.len();
            kept_keys.push_str(self.keys.get(slot.key).unwrap_or_default());
            kept_slots.push(Slot {
                key: start..kept_keys.len(),
                entry: slot.entry,
            });
        }
        self.slots = kept_slots;
        self.keys = kept_keys;
        self.index.clear();
        for at in 0..self.slots.len() {
            let hash = self.hasher.hash_one(self.key(at));
            self.index_at(hash, at);
        }
        self.order = self
            .order
            .iter()
            .filter_map(|&i| moved.get(i).copied().flatten())
            .collect();
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &E> {
        self.slots.iter().map(|s| &s.entry)
    }

    /// The entries, in the order they were added (which their keys are stored in).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut E> {
        self.slots.iter_mut().map(|s| &mut s.entry)
    }

    /// (key, entry) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &E)> {
        (0..self.slots.len()).map(|at| (self.key(at), &self.slots[at].entry))
    }

    fn index_at(&mut self, hash: u64, at: usize) {
        let (slots, keys, hasher) = (&self.slots, &self.keys, &self.hasher);
        self.index
            .insert_unique(hash, at, |&i| hasher.hash_one(key_at(slots, keys, i)));
    }
}

/// The key of the slot at `at` in `keys` (empty for a position that holds none). A
/// function of the two fields rather than a method, so that it can be called while
/// the index is borrowed mutably.
fn key_at<'t, E>(slots: &'t [Slot<E>], keys: &'t str, at: usize) -> &'t str {
    slots
        .get(at)
        .and_then(|s| keys.get(s.key.clone()))
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct E(String, u32);

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
    fn keys_survive_compaction() {
        let mut t = KeyedTable::default();
        scrape(&mut t, &["alpha", "beta", "gamma", "delta"], 1);
        scrape(&mut t, &["gamma", "alpha"], 2);
        // beta and delta (round 1) go at the end of round 3.
        assert_eq!(scrape(&mut t, &["alpha", "gamma"], 3), [2, 2]);
        let mut keys: Vec<(&str, &str)> = t.iter().map(|(k, e)| (k, e.0.as_str())).collect();
        keys.sort_unstable();
        assert_eq!(keys, [("alpha", "alpha"), ("gamma", "gamma")]);
        assert_eq!(scrape(&mut t, &["beta", "gamma", "alpha"], 4), [0, 3, 3]);
        assert_eq!(t.key(2), "beta");
        assert_eq!(t.key(9), "");
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
