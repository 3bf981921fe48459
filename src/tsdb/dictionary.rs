//! The series dictionary of a replicated log: series named by a number instead of
//! their labels (record type 7), as Prometheus's WAL names them by reference after
//! one series record.
//!
//! In a cluster every replica applies the same entries in the same order, so each
//! can keep the same dictionary of label sets, built by applying: an entry defines
//! ids (their label sets travel in it, once) and names series by ids that it or an
//! entry before it defined. Followers then find a series by indexing a vector, not
//! by hashing and comparing its labels, and the log carries a few bytes per series
//! instead of its labels.
//!
//! Every replica applies the same entries in the same order, so every replica
//! builds the same dictionary: an entry appends label sets to it (each becomes the
//! next id) and names earlier ones by id. Only the leader writes entries, and it
//! names by id only what its own replica has *applied* (with the head series each
//! id was defined for, so that finding a batch's ids costs a pointer lookup), never
//! what an entry in flight defines: an entry the cluster refuses, or that a new
//! leader drops from the log, then takes nothing with it. Two rules keep the ids
//! it names valid where the entry applies, after the entries still in flight:
//! - only once the last applied entry is of the leader's own term (its first one,
//!   the blank entry Raft appends, applied), so that no entry of another leader
//!   lies in between;
//! - a *reset* (the dictionary emptied; the leader asks for one when the dictionary
//!   outgrows twice the head's series, so that churn does not grow it without
//!   bound) is the one entry that invalidates ids: after proposing one, the leader
//!   names nothing by id until it has applied it, or until it is refused.
//!
//! The dictionary is state-machine state: a head image carries its label sets in id
//! order, so that a restarted or restored replica continues it.
//!
//! A slot also caches the head series its labels resolved to. A series truncation
//! dropped is found again by its labels when samples come for it (as any stale
//! hint is, in `Head::apply_batch_with_hints`).

use std::sync::Arc;

use parking_lot::Mutex;

use crate::log::record::{self, Batch, BatchSeries, IdBatch};
use crate::model::Labels;
use crate::tsdb::head::prefetch_line;
use crate::tsdb::head::{Head, MemSeries};

/// The labels of a batch's series that is resolved to its head series (see
/// [`SeriesDictionary::resolve`]).
static UNNAMED: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(Labels::default);

/// A head series as a batch refers to it (`None`: not resolved yet).
type Hint = Option<Arc<MemSeries>>;

/// What a type-7 entry does to the dictionary, applied with its batch.
#[derive(Clone)]
pub struct DictionaryUpdate {
    /// The dictionary is emptied first (the reset's number).
    pub reset: Option<u64>,
    /// The label sets appended, with their head series where known.
    pub defined: Vec<(Labels, Hint)>,
}

struct Slot {
    labels: Labels,
    series: Hint,
}

/// The dictionary as applying builds it; the same on every replica at the same log
/// index (the cached series aside).
#[derive(Default)]
pub struct SeriesDictionary {
    slots: Vec<Slot>,
    /// Id by the address of the head series its slot holds (the slot's reference
    /// keeps the address from being reused while the entry is here).
    by_series: AddrTable,
    /// The number of the last reset applied.
    last_reset: Option<u64>,
}

impl SeriesDictionary {
    /// The batch a type-7 entry names, with a hint per series, against the dictionary
    /// as it stands before the entry. `def_hints` are the head series of the entry's
    /// definitions where its decoding found them. With `resolve`, slots that have no
    /// series yet are looked up in `head` (and keep what was found).
    ///
    /// An entry that names an id the dictionary does not hold is an error: applying
    /// it could not be the same everywhere.
    ///
    /// A series resolved to its head series gets no labels in the batch (the head
    /// reads a hinted series' labels from the hint): copying them was a cache miss
    /// per series, as large a part of a follower's work as finding the slot.
    pub fn resolve(
        &mut self,
        entry: IdBatch,
        def_hints: Vec<Hint>,
        head: &Head,
        resolve: bool,
    ) -> Result<(Batch, Vec<Hint>, DictionaryUpdate), String> {
        let IdBatch {
            reset,
            defined,
            series,
            samples,
        } = entry;
        let known = if reset.is_some() { 0 } else { self.slots.len() };
        self.prefetch(&series, known);
        let mut def_hints = def_hints;
        def_hints.resize(defined.len(), None);
        let mut batch = Batch {
            series: Vec::with_capacity(series.len()),
            samples,
        };
        let mut hints = Vec::with_capacity(series.len());
        let mut next_def = 0;
        for (id, range) in series {
            let (labels, hint) = match id {
                None => {
                    let k = next_def;
                    next_def += 1;
                    let labels = defined.get(k).ok_or("more series than definitions")?;
                    (labels.clone(), def_hints[k].clone())
                }
                Some(id) if (id as usize) < known => {
                    let slot = &mut self.slots[id as usize];
                    if slot.series.is_none() && resolve {
                        slot.series = head.get_by_labels(&slot.labels);
                        if let Some(s) = &slot.series {
                            self.by_series.insert(Arc::as_ptr(s) as usize, id);
                        }
                    }
                    match &slot.series {
                        Some(s) => (UNNAMED.clone(), Some(s.clone())),
                        None => (slot.labels.clone(), None),
                    }
                }
                Some(id) => {
                    return Err(format!(
                        "names series id {id}, but the dictionary holds {known}"
                    ));
                }
            };
            batch.series.push(BatchSeries {
                labels,
                samples: range,
            });
            hints.push(hint);
        }
        let update = DictionaryUpdate {
            reset,
            defined: defined.into_iter().zip(def_hints).collect(),
        };
        Ok((batch, hints, update))
    }

    /// Starts fetching the slots an entry names, and the head series they hold, a
    /// few series before [`resolve`](Self::resolve) reaches them: a dictionary of
    /// 100k series and their series are far larger than the caches, and the waits
    /// for memory were most of resolving.
    fn prefetch(&self, series: &[(Option<u32>, std::ops::Range<usize>)], known: usize) {
        const SLOTS_AHEAD: usize = 16;
        const SERIES_AHEAD: usize = 8;
        let slot = |i: usize| {
            series
                .get(i)
                .and_then(|(id, _)| *id)
                .filter(|&id| (id as usize) < known)
                .map(|id| &self.slots[id as usize])
        };
        for i in 0..series.len() + SLOTS_AHEAD {
            if let Some(s) = slot(i) {
                prefetch_line((s as *const Slot).cast());
            }
            if let Some(s) = i.checked_sub(SLOTS_AHEAD - SERIES_AHEAD).and_then(slot)
                && let Some(m) = &s.series
            {
                prefetch_line(Arc::as_ptr(m).cast());
            }
        }
    }

    /// Applies an entry's definitions (and its reset), once its batch applied to
    /// `head`: a series the batch created is found there now, so that the leader
    /// can name it by id from the next entry on.
    pub fn apply(&mut self, update: DictionaryUpdate, head: &Head) {
        if let Some(token) = update.reset {
            self.slots.clear();
            self.by_series.clear();
            self.last_reset = Some(token);
        }
        for (labels, series) in update.defined {
            let series = series.or_else(|| head.get_by_labels(&labels));
            let id = self.slots.len() as u32;
            if let Some(s) = &series {
                self.by_series.insert(Arc::as_ptr(s) as usize, id);
            }
            self.slots.push(Slot { labels, series });
        }
    }

    /// The ids of head series, where a slot holds them (`None` for a series without
    /// one or an unknown one).
    fn ids_of(&self, series: &[Hint]) -> Vec<Option<u32>> {
        const AHEAD: usize = 8;
        let addr = |i: usize| {
            series
                .get(i)
                .and_then(Option::as_ref)
                .map(|s| Arc::as_ptr(s) as usize)
        };
        for i in 0..AHEAD {
            if let Some(a) = addr(i) {
                self.by_series.prefetch(a);
            }
        }
        (0..series.len())
            .map(|i| {
                if let Some(a) = addr(i + AHEAD) {
                    self.by_series.prefetch(a);
                }
                self.by_series.get(addr(i)?)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The label sets in id order: what a head image keeps of the dictionary.
    /// Only copies (a reference count per set): it runs between two entries.
    pub fn label_sets(&self) -> Vec<Labels> {
        self.slots.iter().map(|s| s.labels.clone()).collect()
    }

    /// Replaces the dictionary with label sets in id order (from a head image),
    /// each resolved to its series in `head` (loaded from the same image) where it
    /// has one: a node that leads after a restart names them by id at once, rather
    /// than defining every series again.
    pub fn restore(&mut self, sets: Vec<Labels>, head: &Head) {
        self.by_series.clear();
        self.slots = Vec::with_capacity(sets.len());
        for labels in sets {
            let series = head.get_by_labels(&labels);
            if let Some(s) = &series {
                self.by_series
                    .insert(Arc::as_ptr(s) as usize, self.slots.len() as u32);
            }
            self.slots.push(Slot { labels, series });
        }
    }
}

/// A map from addresses to ids: open addressing with linear probing, at most three
/// quarters full, so that a lookup is one multiplication and (mostly) one cache
/// line, which can be fetched ahead. Finding 2,000 series' ids in a map of 100k
/// was a sixteenth of the leader's work with `HashMap`.
#[derive(Default)]
struct AddrTable {
    /// (address, id); address 0: empty.
    slots: Vec<(usize, u32)>,
    len: usize,
}

impl AddrTable {
    fn home(&self, addr: usize) -> usize {
        // Fibonacci hashing of the address, its top bits.
        let h = (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    fn prefetch(&self, addr: usize) {
        if !self.slots.is_empty() {
            prefetch_line((&self.slots[self.home(addr)] as *const (usize, u32)).cast());
        }
    }

    fn get(&self, addr: usize) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        loop {
            match self.slots[i] {
                (0, _) => return None,
                (a, id) if a == addr => return Some(id),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn insert(&mut self, addr: usize, id: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        loop {
            match self.slots[i] {
                (0, _) => {
                    self.slots[i] = (addr, id);
                    self.len += 1;
                    return;
                }
                (a, _) if a == addr => {
                    self.slots[i].1 = id;
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); capacity]);
        self.len = 0;
        for (a, id) in old {
            if a != 0 {
                self.insert(a, id);
            }
        }
    }

    fn clear(&mut self) {
        *self = AddrTable::default();
    }
}

/// How much larger than the head's series count the dictionary may grow before the
/// leader resets it (plus [`GROWTH_SLACK`]).
const GROWTH_FACTOR: usize = 2;
const GROWTH_SLACK: usize = 4096;

/// Batches larger than this many samples are proposed with their labels: their
/// sections could exceed what snappy compresses in one block.
const MAX_SAMPLES_BY_REF: usize = 16 << 20;

/// The leader's side: the reset it waits for, if any.
#[derive(Default)]
pub struct DictionaryProposer {
    /// A reset proposed and not yet applied: its number and the term it was
    /// proposed in. Until it applies, entries name nothing by id.
    awaiting: Option<(u64, u64)>,
}

impl DictionaryProposer {
    /// The type-7 entry of `batch` (with `hints`, its series in the head where
    /// known), and what it does to the dictionary; `None` for a batch that goes
    /// with its labels instead (too large). `dict` is the dictionary as applied,
    /// `term` the leader's, and `settled` whether the last applied entry is of that
    /// term (see the module documentation); `head_series` bounds the dictionary.
    pub fn encode(
        &mut self,
        dict: &Mutex<SeriesDictionary>,
        batch: &Batch,
        hints: &[Hint],
        (term, settled): (u64, bool),
        head_series: usize,
    ) -> Option<(Vec<u8>, DictionaryUpdate)> {
        if batch.num_samples() > MAX_SAMPLES_BY_REF {
            return None;
        }
        // The dictionary is held only to find the ids: the applying side waits on it.
        let dict = dict.lock();
        if let Some((token, reset_term)) = self.awaiting {
            // Applied; or proposed in an earlier term, while every entry up to
            // this term's first has applied: it applied or never will.
            if dict.last_reset == Some(token) || (settled && reset_term != term) {
                self.awaiting = None;
            }
        }
        let mut reset = None;
        if self.awaiting.is_none()
            && dict.len() > head_series.saturating_mul(GROWTH_FACTOR) + GROWTH_SLACK
        {
            let token = rand::random::<u64>();
            self.awaiting = Some((token, term));
            reset = Some(token);
        }
        let by_id = settled && self.awaiting.is_none();
        let refs = if by_id {
            let mut refs = dict.ids_of(hints);
            refs.resize(batch.series.len(), None);
            refs
        } else {
            vec![None; batch.series.len()]
        };
        drop(dict);
        let mut out = Vec::with_capacity(32 + batch.num_samples() * 12);
        if !record::encode_batch_by_ref(batch, &refs, reset, &mut out) {
            if reset.is_some() {
                self.awaiting = None;
            }
            return None;
        }
        let defined = batch
            .series
            .iter()
            .zip(&refs)
            .enumerate()
            .filter(|(_, (_, r))| r.is_none())
            .map(|(i, (s, _))| (s.labels.clone(), hints.get(i).cloned().flatten()))
            .collect();
        Some((out, DictionaryUpdate { reset, defined }))
    }

    /// An entry of this leader's was refused, never to apply: a reset in it is
    /// waited for no longer.
    pub fn refused(&mut self, update: &DictionaryUpdate) {
        if update.reset.is_some() && self.awaiting.map(|(t, _)| t) == update.reset {
            self.awaiting = None;
        }
    }
}

/// The dictionary as a head image stores it, after the pending work: type 5's label
/// section, snappy-compressed, of the label sets in id order.
pub fn encode_sets(sets: &[Labels], out: &mut Vec<u8>) -> Result<(), String> {
    let mut section = Vec::new();
    record::encode_label_section(sets.iter(), &mut section);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&section)
        .map_err(|e| format!("series dictionary of {} series: {e}", sets.len()))?;
    out.extend_from_slice(&(compressed.len() as u64).to_le_bytes());
    out.extend_from_slice(&compressed);
    Ok(())
}

/// [`encode_sets`]'s bytes back, strings interned by `head`.
pub fn decode_sets(bytes: &[u8], head: &Head) -> Result<Vec<Labels>, String> {
    let (len, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or("series dictionary truncated")?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| e.to_string())?;
    if rest.len() != len {
        return Err(format!(
            "series dictionary: {} bytes where {len} were announced",
            rest.len()
        ));
    }
    let section = snap::raw::Decoder::new()
        .decompress_vec(rest)
        .map_err(|e| format!("series dictionary: {e}"))?;
    record::decode_label_section(&section, &mut |s| head.intern(s))
        .map_err(|e| format!("series dictionary: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StateMachine;
    use crate::model::Sample;
    use crate::tsdb::machine::{DbEntry, DbMachine, MachineState, PendingWork};

    fn machine() -> DbMachine {
        DbMachine::new(Arc::new(Head::new(7_200_000)), None, 0)
    }

    fn labels(name: &str, i: usize) -> Labels {
        Labels::from_pairs([("__name__", name), ("i", &i.to_string())])
    }

    /// A batch of `series` as the leader's appender builds it: each series with the
    /// head's label set and series where the head has it.
    fn batch(head: &Head, series: &[Labels], t: i64) -> DbEntry {
        let mut b = Batch::default();
        let mut hints = Vec::new();
        for (i, l) in series.iter().enumerate() {
            let known = head.get_by_labels(l);
            let l = known
                .as_ref()
                .map_or_else(|| l.clone(), |s| s.labels.clone());
            b.push_series(l, &[Sample::new(t, i as f64)]);
            hints.push(known);
        }
        DbEntry::Batch(b, hints)
    }

    /// Proposes `entry` on `leader` and applies it there and on `followers` (from
    /// its bytes); returns the bytes.
    fn replicate(
        leader: &DbMachine,
        followers: &[&DbMachine],
        index: u64,
        entry: DbEntry,
        leadership: (u64, bool),
    ) -> Vec<u8> {
        let (bytes, entry) = leader.encode_by_reference(entry, leadership);
        let bytes = bytes.expect("encoded by reference");
        leader.apply(index, entry);
        for f in followers {
            let decoded = f.decode(&bytes, true).expect("decodes on a follower");
            f.apply(index, decoded);
        }
        bytes
    }

    /// The series an entry names on `m`: labels, and whether it was resolved to
    /// a head series (whose labels it then has).
    fn series_of(m: &DbMachine, entry_bytes: &[u8]) -> Vec<(Labels, bool)> {
        match m.decode(entry_bytes, true).unwrap() {
            DbEntry::ByReference(b, hints, _) => b
                .series
                .iter()
                .zip(&hints)
                .map(|(s, h)| match h {
                    Some(h) => (h.labels.clone(), true),
                    None => (s.labels.clone(), false),
                })
                .collect(),
            _ => panic!("not a batch by reference"),
        }
    }

    #[test]
    fn followers_resolve_ids_the_leader_applied_and_the_log_shrinks() {
        let (leader, f1, f2) = (machine(), machine(), machine());
        let set: Vec<Labels> = (0..50).map(|i| labels("up", i)).collect();
        // Not settled (the leader's term has no applied entry yet): all defined.
        let first = replicate(
            &leader,
            &[&f1],
            1,
            batch(&leader.head, &set, 1_000),
            (3, false),
        );
        assert_eq!(leader.dictionary.lock().len(), 50);
        // Settled: every series by id, no label in the entry.
        let second = replicate(
            &leader,
            &[&f1],
            2,
            batch(&leader.head, &set, 2_000),
            (3, true),
        );
        assert!(
            second.len() < first.len(),
            "{} bytes by id, {} with labels",
            second.len(),
            first.len()
        );
        assert_eq!(leader.dictionary.lock().len(), 50, "nothing defined twice");
        // The follower finds each series by its id, already resolved to its head
        // series, and with the labels the leader wrote.
        let named = series_of(&f1, &second);
        assert_eq!(
            named.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
            set
        );
        assert!(named.iter().all(|(_, resolved)| *resolved));
        assert_eq!(f1.head.num_series(), 50);
        // Such an entry is the leader's own: a peer may not forward one.
        use crate::replication::machine::Replicated;
        assert!(!DbMachine::may_forward(&f1.decode(&second, true).unwrap()));
        assert!(DbMachine::may_forward(&batch(&leader.head, &set, 3_000)));

        // A replica restored from an image taken after the first entry continues:
        // the dictionary travels with it.
        let state = MachineState {
            pending: PendingWork::default(),
            logs: Default::default(),
            dictionary: f1.dictionary.lock().label_sets(),
        };
        let bytes = state.encode().unwrap();
        let back = MachineState::decode(&bytes, &f2.head).unwrap();
        assert_eq!(back.dictionary, set);
        f2.dictionary.lock().restore(back.dictionary, &f2.head);
        let decoded = f2.decode(&second, true).unwrap();
        f2.apply(2, decoded);
        assert_eq!(f2.head.num_series(), 50);
    }

    #[test]
    fn a_restarted_leader_names_restored_series_by_id_at_once() {
        let leader = machine();
        let set: Vec<Labels> = (0..20).map(|i| labels("up", i)).collect();
        let (_, e) = leader.encode_by_reference(batch(&leader.head, &set, 1_000), (1, true));
        leader.apply(1, e);
        // A restart: the head as the image had it, the dictionary from its label sets.
        let sets = leader.dictionary.lock().label_sets();
        leader.dictionary.lock().restore(sets, &leader.head);
        let (_, e) = leader.encode_by_reference(batch(&leader.head, &set, 2_000), (2, true));
        let DbEntry::ByReference(_, _, update) = &e else {
            panic!("not by reference")
        };
        assert!(update.defined.is_empty(), "every series named by id");
    }

    #[test]
    fn a_new_series_is_defined_and_later_named_by_id() {
        let (leader, f) = (machine(), machine());
        let mut set: Vec<Labels> = (0..3).map(|i| labels("a", i)).collect();
        replicate(
            &leader,
            &[&f],
            1,
            batch(&leader.head, &set, 1_000),
            (1, true),
        );
        set.push(labels("b", 0));
        let mixed = replicate(
            &leader,
            &[&f],
            2,
            batch(&leader.head, &set, 2_000),
            (1, true),
        );
        assert_eq!(series_of(&f, &mixed).len(), 4);
        assert_eq!(leader.dictionary.lock().len(), 4);
        assert_eq!(f.dictionary.lock().len(), 4);
        let entry = f.decode(&mixed, true).unwrap();
        let DbEntry::ByReference(b, _, update) = &entry else {
            panic!("not by reference")
        };
        assert_eq!(update.defined.len(), 1, "only the new series is defined");
        assert_eq!(b.series[3].labels, labels("b", 0));
        // Written out on its own, the entry is the batch with every label.
        let Ok(DbEntry::Batch(whole, _)) = f.decode(&entry.encode(None), false) else {
            panic!("not a batch")
        };
        assert_eq!(
            whole
                .series
                .iter()
                .map(|s| s.labels.clone())
                .collect::<Vec<_>>(),
            set
        );
    }

    #[test]
    fn a_reset_empties_the_dictionary_and_nothing_is_named_until_it_applied() {
        let (leader, f) = (machine(), machine());
        let a: Vec<Labels> = (0..10).map(|i| labels("a", i)).collect();
        replicate(&leader, &[&f], 1, batch(&leader.head, &a, 1_000), (1, true));
        // Grow the dictionary past its bound without growing the head: a follower
        // that defined them all anew each time (as a new leader's first entries do).
        {
            let mut d = leader.dictionary.lock();
            let mut fd = f.dictionary.lock();
            let junk: Vec<(Labels, Hint)> = (0..GROWTH_SLACK + 30)
                .map(|i| (labels("gone", i), None))
                .collect();
            for (dict, head) in [(&mut *d, &leader.head), (&mut *fd, &f.head)] {
                dict.apply(
                    DictionaryUpdate {
                        reset: None,
                        defined: junk.clone(),
                    },
                    head,
                );
            }
        }
        // Encoded: a reset, naming nothing by id.
        let (bytes, reset_entry) =
            leader.encode_by_reference(batch(&leader.head, &a, 2_000), (1, true));
        let bytes = bytes.unwrap();
        let DbEntry::ByReference(_, _, update) = &reset_entry else {
            panic!("not by reference")
        };
        assert!(update.reset.is_some());
        assert_eq!(update.defined.len(), 10);
        // While it is in flight, entries name nothing by id either.
        let (_, waiting) = leader.encode_by_reference(batch(&leader.head, &a, 3_000), (1, true));
        let DbEntry::ByReference(_, _, w) = &waiting else {
            panic!("not by reference")
        };
        assert!(w.reset.is_none() && w.defined.len() == 10);
        // Applied (the waiting entry after it, as the log orders them): ids again.
        leader.apply(2, reset_entry);
        let decoded = f.decode(&bytes, true).unwrap();
        f.apply(2, decoded);
        assert_eq!(f.dictionary.lock().len(), 10);
        let (_, after) = leader.encode_by_reference(batch(&leader.head, &a, 4_000), (1, true));
        let DbEntry::ByReference(_, _, u) = &after else {
            panic!("not by reference")
        };
        assert!(u.defined.is_empty(), "named by id once the reset applied");
    }

    #[test]
    fn a_refused_reset_is_waited_for_no_longer() {
        let leader = machine();
        let a: Vec<Labels> = (0..5).map(|i| labels("a", i)).collect();
        let (_, e) = leader.encode_by_reference(batch(&leader.head, &a, 1_000), (1, true));
        leader.apply(1, e);
        leader.dictionary.lock().apply(
            DictionaryUpdate {
                reset: None,
                defined: (0..GROWTH_SLACK + 20)
                    .map(|i| (labels("gone", i), None))
                    .collect(),
            },
            &leader.head,
        );
        let (_, reset) = leader.encode_by_reference(batch(&leader.head, &a, 2_000), (1, true));
        leader.proposal_refused(&reset);
        // The next entry resets again (the dictionary is still too large).
        let (_, again) = leader.encode_by_reference(batch(&leader.head, &a, 3_000), (1, true));
        let DbEntry::ByReference(_, _, u) = &again else {
            panic!("not by reference")
        };
        let token = u.reset;
        assert!(token.is_some());
        // In flight: waited for (no second reset, nothing by id).
        let (_, e) = leader.encode_by_reference(batch(&leader.head, &a, 4_000), (1, true));
        let DbEntry::ByReference(_, _, u) = &e else {
            panic!("not by reference")
        };
        assert!(u.reset.is_none() && u.defined.len() == 5);
        // A reset of an earlier term is waited for no longer once the new term
        // settled (it applied or never will): the dictionary, still too large, is
        // reset anew.
        let (_, e) = leader.encode_by_reference(batch(&leader.head, &a, 5_000), (2, true));
        let DbEntry::ByReference(_, _, u) = &e else {
            panic!("not by reference")
        };
        assert!(u.reset.is_some() && u.reset != token);
    }

    #[test]
    fn the_address_table_finds_what_it_holds_through_growth() {
        let mut t = AddrTable::default();
        assert_eq!(t.get(16), None);
        // Aligned addresses, as allocations are: the hash must spread them.
        for i in 1..5_000usize {
            t.insert(i * 64, i as u32);
        }
        t.insert(64, 99);
        assert_eq!(t.get(64), Some(99));
        for i in 2..5_000usize {
            assert_eq!(t.get(i * 64), Some(i as u32));
        }
        assert_eq!(t.get(5_000 * 64), None);
        assert_eq!(t.len, 4_999);
        t.clear();
        assert_eq!(t.get(128), None);
    }

    #[test]
    fn entries_naming_ids_the_dictionary_lacks_are_refused() {
        let (leader, f) = (machine(), machine());
        let a: Vec<Labels> = (0..5).map(|i| labels("a", i)).collect();
        replicate(&leader, &[], 1, batch(&leader.head, &a, 1_000), (1, true));
        let (bytes, _) = leader.encode_by_reference(batch(&leader.head, &a, 2_000), (1, true));
        // `f` never saw the first entry.
        let err = f.decode(&bytes.unwrap(), true).err().unwrap();
        assert!(err.contains("dictionary holds 0"), "{err}");
    }
}
