//! The local cache of byte ranges read from the bucket, and the coalescing of ranges
//! into few GETs.
//!
//! The cache holds *entries*, not raw GET responses: one postings list, one series
//! entry, one chunk, each keyed by its block and offset (as the Thanos store gateway
//! caches postings, series and chunks). A later query that needs the same entry finds
//! it whatever GET first brought it in, and entries are copied out of the GET buffer
//! so that what is accounted is what is held. Memory only: a restart starts cold,
//! which the bucket (the source of truth) makes safe.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use parking_lot::Mutex;

/// Which kind of entry a cache key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// A postings list, keyed by its offset in the index.
    Postings,
    /// A series entry, keyed by its offset in the index (the series ID × 16).
    Series,
    /// A chunk, keyed by its chunk reference.
    Chunk,
}

/// One cached entry: block ULID, kind and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub block: u128,
    pub part: Part,
    pub offset: u64,
}

/// What an entry costs beyond its bytes (key, map slots, LRU slot), so that a cache
/// of many tiny entries stays near its bound.
const ENTRY_OVERHEAD_BYTES: u64 = 96;

/// A size-bounded LRU cache of entries read from the bucket. Shared by all queriers;
/// every method takes the lock once, so a batch of lookups costs one lock.
pub struct RangeCache {
    capacity_bytes: u64,
    inner: Mutex<Inner>,
}

struct Entry {
    bytes: Bytes,
    used: u64,
    slot: u64,
}

#[derive(Default)]
struct Inner {
    /// Entry -> its bytes, last-use tick, and the tick of its slot in `order`.
    map: hashbrown::HashMap<CacheKey, Entry>,
    /// Tick -> entry, oldest first; one slot per entry. A hit only moves the entry's
    /// tick in `map` (a warm query hits hundreds of thousands of entries, and moving
    /// each in this tree was a sixth of its time); eviction puts a popped entry whose
    /// tick has moved back at that tick instead of dropping it, so what it drops is
    /// still the least recently used.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    size_bytes: u64,
    hits: u64,
    misses: u64,
}

/// Counters of a [`RangeCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub size_bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

impl RangeCache {
    /// A cache that holds at most `capacity_bytes` (entries and their overhead); 0
    /// turns caching off.
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            capacity_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Looks up every key, marking hits as recently used; `None` for a miss.
    pub fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Bytes>> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match inner.map.get_mut(k) {
                Some(e) => {
                    inner.tick += 1;
                    e.used = inner.tick;
                    inner.hits += 1;
                    out.push(Some(e.bytes.clone()));
                }
                None => {
                    inner.misses += 1;
                    out.push(None);
                }
            }
        }
        out
    }

    /// Inserts entries, evicting the least recently used ones beyond the bound. An
    /// entry larger than the whole cache is not kept.
    pub fn insert_many(&self, entries: impl IntoIterator<Item = (CacheKey, Bytes)>) {
        if self.capacity_bytes == 0 {
            return;
        }
        let mut g = self.inner.lock();
        let inner = &mut *g;
        for (k, bytes) in entries {
            let cost = bytes.len() as u64 + ENTRY_OVERHEAD_BYTES;
            if cost > self.capacity_bytes {
                continue;
            }
            if let Some(old) = inner.map.remove(&k) {
                inner.order.remove(&old.slot);
                inner.size_bytes -= old.bytes.len() as u64 + ENTRY_OVERHEAD_BYTES;
            }
            while inner.size_bytes + cost > self.capacity_bytes {
                let Some((slot, victim)) = inner.order.pop_first() else {
                    break;
                };
                let Some(e) = inner.map.get_mut(&victim) else {
                    continue;
                };
                if e.used != slot {
                    // Used since: back in line at its last use.
                    e.slot = e.used;
                    let used = e.used;
                    inner.order.insert(used, victim);
                } else if let Some(old) = inner.map.remove(&victim) {
                    inner.size_bytes -= old.bytes.len() as u64 + ENTRY_OVERHEAD_BYTES;
                }
            }
            inner.tick += 1;
            let tick = inner.tick;
            inner.order.insert(tick, k);
            inner.map.insert(
                k,
                Entry {
                    bytes,
                    used: tick,
                    slot: tick,
                },
            );
            inner.size_bytes += cost;
        }
    }

    /// Drops every entry (the counters stay).
    pub fn clear(&self) {
        let mut g = self.inner.lock();
        g.map.clear();
        g.order.clear();
        g.size_bytes = 0;
    }

    pub fn stats(&self) -> CacheStats {
        let g = self.inner.lock();
        CacheStats {
            entries: g.map.len(),
            size_bytes: g.size_bytes,
            hits: g.hits,
            misses: g.misses,
        }
    }
}

/// Merges ranges (sorted by start) that overlap or lie at most `max_gap` bytes apart,
/// so that nearby entries come in one GET: reading a few unneeded bytes costs less
/// than a request's round trip.
pub fn coalesce(ranges: &[Range<u64>], max_gap: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(max_gap) => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: u64) -> CacheKey {
        CacheKey {
            block: 1,
            part: Part::Chunk,
            offset,
        }
    }

    fn entry(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    #[test]
    fn cache_evicts_least_recently_used_beyond_its_size() {
        let per = 100 + ENTRY_OVERHEAD_BYTES;
        let cache = RangeCache::new(3 * per);
        cache.insert_many([
            (key(1), entry(100)),
            (key(2), entry(100)),
            (key(3), entry(100)),
        ]);
        assert_eq!(cache.stats().entries, 3);
        // Using 1 makes 2 the oldest.
        assert!(cache.get_many(&[key(1)])[0].is_some());
        cache.insert_many([(key(4), entry(100))]);
        let got = cache.get_many(&[key(1), key(2), key(3), key(4)]);
        assert_eq!(
            got.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, false, true, true]
        );
        assert!(cache.stats().size_bytes <= 3 * per);
        // A big entry evicts as many as it needs.
        cache.insert_many([(key(5), entry(250))]);
        let s = cache.stats();
        assert!(s.size_bytes <= 3 * per, "{s:?}");
        assert!(cache.get_many(&[key(5)])[0].is_some());
    }

    #[test]
    fn cache_skips_entries_larger_than_itself_and_zero_turns_it_off() {
        let cache = RangeCache::new(50);
        cache.insert_many([(key(1), entry(100))]);
        assert_eq!(cache.stats().entries, 0);
        let off = RangeCache::new(0);
        off.insert_many([(key(1), entry(1))]);
        assert!(off.get_many(&[key(1)])[0].is_none());
    }

    #[test]
    fn cache_replacing_an_entry_keeps_the_size_right() {
        let cache = RangeCache::new(10_000);
        cache.insert_many([(key(1), entry(100))]);
        cache.insert_many([(key(1), entry(200))]);
        let s = cache.stats();
        assert_eq!(s.entries, 1);
        assert_eq!(s.size_bytes, 200 + ENTRY_OVERHEAD_BYTES);
        cache.clear();
        assert_eq!(cache.stats().size_bytes, 0);
    }

    #[test]
    fn coalesce_merges_overlapping_and_near_ranges_only() {
        let got = coalesce(&[0..10, 5..20, 25..30, 100..110, 111..120], 5);
        assert_eq!(got, vec![0..30, 100..120]);
        assert_eq!(coalesce(&[0..10, 11..12], 0), vec![0..10, 11..12]);
        assert_eq!(coalesce(&[0..10, 10..12], 0), vec![0..12]);
        assert!(coalesce(&[], 10).is_empty());
    }
}
