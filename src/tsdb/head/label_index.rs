//! Series by label hash: one shard of the head's label index.
//!
//! Finding the series of each incoming sample is most of ingestion's work, and it is
//! memory latency, not computation: with 100k series the table is far larger than
//! the caches, so a lookup waits for a cache miss on its slot, then on the series.
//! hashbrown hides where a key's slot lies, so nothing can fetch it early. This
//! table is open addressing with linear probing over slots that carry the full hash
//! beside the series: where a hash's slot lies is known up front, so a caller
//! resolving many series ([`LabelShard::prefetch`]) fetches the slots of the series
//! a few places ahead of the one it looks up, and the waits overlap.
//!
//! The full hash in the slot also means a probe only dereferences a series whose
//! hash matches (almost always the one sought), and growing never rehashes labels.

use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::MemSeries;

#[derive(Clone, Default)]
struct Slot {
    hash: u64,
    /// `None`: an empty slot.
    series: Option<Arc<MemSeries>>,
}

/// Open addressing with linear probing; the capacity is a power of two and at most
/// three quarters of it are used (probes stay short without a tag array).
#[derive(Default)]
pub(crate) struct LabelTable {
    slots: Vec<Slot>,
    len: usize,
}

impl LabelTable {
    const MIN_CAPACITY: usize = 16;

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn home(hash: u64, mask: usize) -> usize {
        // The shard was picked by the hash's middle bits; the low ones spread here.
        (hash as usize) & mask
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The series with this hash for which `eq` holds.
    pub fn find(
        &self,
        hash: u64,
        mut eq: impl FnMut(&MemSeries) -> bool,
    ) -> Option<&Arc<MemSeries>> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = Self::home(hash, mask);
        loop {
            let slot = &self.slots[i];
            match &slot.series {
                None => return None,
                Some(s) if slot.hash == hash && eq(s) => return Some(s),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Adds a series the table does not hold (the caller looked it up first).
    pub fn insert_unique(&mut self, hash: u64, series: Arc<MemSeries>) {
        self.reserve(1);
        let mask = self.mask();
        let mut i = Self::home(hash, mask);
        while self.slots[i].series.is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            hash,
            series: Some(series),
        };
        self.len += 1;
    }

    /// Removes and returns the series with this hash for which `eq` holds. The run
    /// after the hole shifts back (no tombstones: a probe still ends at the first
    /// empty slot).
    pub fn remove(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(&Arc<MemSeries>) -> bool,
    ) -> Option<Arc<MemSeries>> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut hole = Self::home(hash, mask);
        loop {
            let slot = &self.slots[hole];
            match &slot.series {
                None => return None,
                Some(s) if slot.hash == hash && eq(s) => break,
                Some(_) => hole = (hole + 1) & mask,
            }
        }
        let removed = self.slots[hole].series.take();
        self.len -= 1;
        let mut next = (hole + 1) & mask;
        while self.slots[next].series.is_some() {
            let home = Self::home(self.slots[next].hash, mask);
            // The entry at `next` may move into the hole unless its home lies
            // (cyclically) after the hole and at or before `next`.
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.slots.swap(hole, next);
                hole = next;
            }
            next = (next + 1) & mask;
        }
        removed
    }

    /// Room for `more` series without growing.
    pub fn reserve(&mut self, more: usize) {
        let wanted = self.len + more;
        if wanted * 4 <= self.slots.len() * 3 {
            return;
        }
        let capacity = (wanted * 4 / 3 + 1)
            .next_power_of_two()
            .max(Self::MIN_CAPACITY);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
        let mask = self.mask();
        for slot in old {
            if slot.series.is_some() {
                let mut i = Self::home(slot.hash, mask);
                while self.slots[i].series.is_some() {
                    i = (i + 1) & mask;
                }
                self.slots[i] = slot;
            }
        }
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.slots.iter().filter_map(|s| s.series.as_ref())
    }
}

/// A [`LabelTable`] behind its lock, with where its slots lie published for
/// [`LabelShard::prefetch`], which reads it without the lock.
#[derive(Default)]
pub(crate) struct LabelShard {
    table: RwLock<LabelTable>,
    /// The slots' address and mask, refreshed by every write guard as it drops. A
    /// reader may see them stale (the table grew meanwhile): it then prefetches a
    /// line in vain, never reads through them.
    slots_at: AtomicPtr<Slot>,
    mask: AtomicUsize,
}

impl LabelShard {
    pub fn read(&self) -> RwLockReadGuard<'_, LabelTable> {
        self.table.read()
    }

    pub fn write(&self) -> ShardWriteGuard<'_> {
        ShardWriteGuard {
            table: self.table.write(),
            shard: self,
        }
    }

    /// Starts fetching the slot where a lookup of `hash` begins into the cache.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let base = self.slots_at.load(Ordering::Relaxed);
        if base.is_null() {
            return;
        }
        let mask = self.mask.load(Ordering::Relaxed);
        // Address arithmetic only (`wrapping_add`): the pointer may be stale, and a
        // prefetch of any address is harmless.
        let at = base.wrapping_add(LabelTable::home(hash, mask));
        prefetch_line(at.cast::<u8>());
    }
}

/// The write lock of a [`LabelShard`]; publishes where the slots lie when dropped.
pub(crate) struct ShardWriteGuard<'a> {
    table: RwLockWriteGuard<'a, LabelTable>,
    shard: &'a LabelShard,
}

impl std::ops::Deref for ShardWriteGuard<'_> {
    type Target = LabelTable;
    fn deref(&self) -> &LabelTable {
        &self.table
    }
}

impl std::ops::DerefMut for ShardWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut LabelTable {
        &mut self.table
    }
}

impl Drop for ShardWriteGuard<'_> {
    fn drop(&mut self) {
        let (at, mask) = if self.table.slots.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (self.table.slots.as_ptr().cast_mut(), self.table.mask())
        };
        self.shard.mask.store(mask, Ordering::Relaxed);
        self.shard.slots_at.store(at, Ordering::Relaxed);
    }
}

/// Asks the CPU to bring the cache line at `at` in, without waiting for it.
#[inline]
pub(crate) fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE is part of x86-64's baseline, so the instruction exists, and a
        // prefetch neither reads into the program nor faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn series(i: u64) -> Arc<MemSeries> {
        Arc::new(MemSeries::new(Labels::from_pairs([("i", i.to_string())])))
    }

    fn find(t: &LabelTable, hash: u64, i: u64) -> bool {
        let want = Labels::from_pairs([("i", i.to_string())]);
        t.find(hash, |s| s.labels == want).is_some()
    }

    #[test]
    fn finds_inserts_and_removes_under_collisions_and_growth() {
        let mut t = LabelTable::default();
        // Few distinct hashes: long runs, colliding homes, wrap-around at the end.
        let hash = |i: u64| (i % 7) * 0x9e37_79b9 + (i % 3);
        for i in 0..1000 {
            assert!(!find(&t, hash(i), i));
            t.insert_unique(hash(i), series(i));
        }
        assert_eq!(t.len(), 1000);
        for i in 0..1000 {
            assert!(find(&t, hash(i), i), "{i}");
        }
        // Remove every other one; the rest stay reachable.
        for i in (0..1000).step_by(2) {
            let want = Labels::from_pairs([("i", i.to_string())]);
            assert!(t.remove(hash(i), |s| s.labels == want).is_some());
            assert!(t.remove(hash(i), |s| s.labels == want).is_none());
        }
        assert_eq!(t.len(), 500);
        for i in 0..1000 {
            assert_eq!(find(&t, hash(i), i), i % 2 == 1, "{i}");
        }
        assert_eq!(t.iter().count(), 500);
    }

    #[test]
    fn removal_keeps_wrapped_runs_reachable() {
        // Every entry homes in the last slots of a 16-slot table: runs wrap to the
        // start, and backward shifting must follow them.
        let mut t = LabelTable::default();
        let hash = |i: u64| 14 + (i % 2) + (i << 40);
        for i in 0..10 {
            t.insert_unique(hash(i), series(i));
        }
        for i in [0, 3, 4, 9] {
            let want = Labels::from_pairs([("i", i.to_string())]);
            assert!(t.remove(hash(i), |s| s.labels == want).is_some());
        }
        for i in 0..10 {
            assert_eq!(find(&t, hash(i), i), ![0, 3, 4, 9].contains(&i), "{i}");
        }
    }

    #[test]
    fn the_shard_publishes_its_slots_for_prefetching() {
        let shard = LabelShard::default();
        shard.prefetch(42); // empty: nothing to fetch
        assert!(shard.slots_at.load(Ordering::Relaxed).is_null());
        shard.write().insert_unique(42, series(1));
        let at = shard.slots_at.load(Ordering::Relaxed);
        assert_eq!(at.cast_const(), shard.read().slots.as_ptr());
        assert_eq!(shard.mask.load(Ordering::Relaxed), 15);
        shard.prefetch(42);
        shard.write().clear();
        assert!(shard.slots_at.load(Ordering::Relaxed).is_null());
    }
}
