//! The TSDB as the state machine of its log: what applying each entry does.
//!
//! Applying is deterministic: a batch goes into the head; a deletion removes head
//! samples at or after the head's bound and leaves the range before it to the blocks
//! as tombstones; a head cut raises the bound. The work that follows from an entry
//! but is too slow for the log's thread (writing the cut block, writing tombstones)
//! is queued here as [`Pending`] and carried out by maintenance, strictly in entry
//! order, on each replica's own schedule. What it writes depends only on the entries, so
//! every replica writes the same blocks.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::log::record::{self, Batch, Deletion, HeadCut, LogBatch, Record};
use crate::log::{LogIndex, StateMachine};
use crate::logs::store::{LogStore, StoreImage};
use crate::model::Labels;
use crate::storage::AppendSummary;
use crate::tsdb::dictionary::{self, DictionaryProposer, DictionaryUpdate, SeriesDictionary};
use crate::tsdb::head::{Head, MemSeries};

/// An entry of the TSDB's log, decoded.
pub enum DbEntry {
    /// A batch and, per series, the head series it was resolved to when it was
    /// built (a shortcut of the node that built it; `None` where unknown).
    Batch(Batch, Vec<Option<Arc<MemSeries>>>),
    Deletion(Deletion),
    HeadCut(HeadCut),
    /// A batch that names its series by the log's series dictionary (a cluster
    /// leader's entry; see `tsdb::dictionary`), resolved: the batch with its labels,
    /// a hint per series, and what the entry adds to the dictionary.
    ByReference(Batch, Vec<Option<Arc<MemSeries>>>, DictionaryUpdate),
    /// Log lines, for the log store beside the head.
    Logs(LogBatch),
}

impl DbEntry {
    /// The entry's bytes in the log.
    pub(crate) fn encode(&self, memo: Option<&mut record::LabelSectionMemo>) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            DbEntry::Batch(b, _) => {
                out.reserve(64 + b.num_samples() * 48);
                record::encode_batch_reusing(b, memo, &mut out);
            }
            // Written out on its own, a batch by reference is the batch it names:
            // a series resolved to its head series has that series' labels.
            DbEntry::ByReference(b, hints, _) => {
                let mut named = b.clone();
                for (s, hint) in named.series.iter_mut().zip(hints) {
                    if let Some(h) = hint {
                        s.labels = h.labels.clone();
                    }
                }
                record::encode_batch_reusing(&named, None, &mut out);
            }
            DbEntry::Deletion(d) => record::encode_deletion(d, &mut out),
            DbEntry::HeadCut(c) => record::encode_head_cut(c, &mut out),
            // A push is bounded far below a snappy block (`logs::push`), so this
            // holds; an empty record would be refused by every decoder rather than
            // misapplied.
            DbEntry::Logs(b) => {
                let _ = record::encode_log_batch(b, &mut out);
            }
        }
        out
    }
}

/// A block to cut from the head: its samples in `[from, end)`. `from` is the bound
/// before the cut (`i64::MIN` for the first), so nothing the head still holds is
/// left out of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingCut {
    pub from: i64,
    pub end: i64,
}

/// Work an applied entry left for maintenance.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    /// Write the block of a head cut, then truncate the head.
    Cut(PendingCut),
    /// Write a deletion's tombstones into the blocks below the bound it met.
    Tombstones(Deletion),
}

/// Work applied entries left for maintenance, carried out strictly in entry order:
/// a deletion's tombstones go into the blocks of every cut before it, and of none
/// after it.
#[derive(Default, Clone)]
pub(crate) struct PendingWork {
    pub queue: VecDeque<Pending>,
}

impl PendingWork {
    /// The queue as bytes, stored with a head image: the work belongs to the image's
    /// position, and the log before it is gone once the image is durable.
    ///
    /// ```text
    /// u32 #items, each: u8 kind
    ///   0 (cut):        i64 from, i64 end
    ///   1 (tombstones): u32 len, a deletion in the log's record format
    /// ```
    /// (little-endian)
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.queue.len() as u32).to_le_bytes());
        for item in &self.queue {
            match item {
                Pending::Cut(c) => {
                    out.push(0);
                    out.extend_from_slice(&c.from.to_le_bytes());
                    out.extend_from_slice(&c.end.to_le_bytes());
                }
                Pending::Tombstones(d) => {
                    let mut rec = Vec::new();
                    record::encode_deletion(d, &mut rec);
                    out.push(1);
                    out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
                    out.extend_from_slice(&rec);
                }
            }
        }
        out
    }

    /// [`encode`](Self::encode)'s bytes back; empty bytes are an empty queue.
    #[cfg(test)]
    pub fn decode(bytes: &[u8]) -> Result<PendingWork, String> {
        let (work, rest) = Self::decode_prefix(bytes)?;
        if !rest.is_empty() {
            return Err("trailing bytes after the pending work".into());
        }
        Ok(work)
    }

    /// [`encode`](Self::encode)'s bytes at the front of `bytes`, and what follows.
    fn decode_prefix(mut bytes: &[u8]) -> Result<(PendingWork, &[u8]), String> {
        /// The next `N` bytes, taken off the front.
        fn take<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], String> {
            let (head, rest) = b.split_first_chunk::<N>().ok_or("pending work truncated")?;
            *b = rest;
            Ok(*head)
        }
        let mut work = PendingWork::default();
        if bytes.is_empty() {
            return Ok((work, bytes));
        }
        let n = u32::from_le_bytes(take(&mut bytes)?);
        for _ in 0..n {
            match take::<1>(&mut bytes)? {
                [0] => {
                    let from = i64::from_le_bytes(take(&mut bytes)?);
                    let end = i64::from_le_bytes(take(&mut bytes)?);
                    work.queue.push_back(Pending::Cut(PendingCut { from, end }));
                }
                [1] => {
                    let len = u32::from_le_bytes(take(&mut bytes)?) as usize;
                    let (rec, rest) = bytes
                        .split_at_checked(len)
                        .ok_or("pending tombstones truncated")?;
                    bytes = rest;
                    match record::decode(rec, &mut |s| s.into()) {
                        Ok(Record::Deletion(d)) => work.queue.push_back(Pending::Tombstones(d)),
                        Ok(_) => return Err("pending tombstones are not a deletion".into()),
                        Err(e) => return Err(format!("pending tombstones: {e}")),
                    }
                }
                [k] => return Err(format!("unknown pending work kind {k}")),
            }
        }
        Ok((work, bytes))
    }

    pub fn has_cut(&self) -> bool {
        self.queue.iter().any(|p| matches!(p, Pending::Cut(_)))
    }
}

/// What of the state machine's own state is stored with a head image, besides the
/// head: the work pending at its position, the log store's lines not yet written
/// out, and, in a cluster, the series dictionary.
///
/// ```text
/// pending work (`PendingWork::encode`)
/// [u8 2 | u64 len | the log store's image (`StoreImage::encode`)]   only when not empty
/// [u8 1 | the dictionary's label sets (`dictionary::encode_sets`)]   only when not empty
/// ```
/// (little-endian)
pub(crate) struct MachineState {
    pub pending: PendingWork,
    pub logs: StoreImage,
    pub dictionary: Vec<Labels>,
}

const STATE_DICTIONARY: u8 = 1;
const STATE_LOGS: u8 = 2;

impl MachineState {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = self.pending.encode();
        if !self.logs.is_empty() {
            let logs = self.logs.encode()?;
            out.push(STATE_LOGS);
            out.extend_from_slice(&(logs.len() as u64).to_le_bytes());
            out.extend_from_slice(&logs);
        }
        if !self.dictionary.is_empty() {
            out.push(STATE_DICTIONARY);
            dictionary::encode_sets(&self.dictionary, &mut out)?;
        }
        Ok(out)
    }

    /// [`encode`](Self::encode)'s bytes back, the dictionary's strings interned by
    /// `head`.
    pub fn decode(bytes: &[u8], head: &Head) -> Result<MachineState, String> {
        let (pending, mut rest) = PendingWork::decode_prefix(bytes)?;
        let mut logs = StoreImage::default();
        if let Some((&STATE_LOGS, after)) = rest.split_first() {
            let (len, after) = after
                .split_first_chunk::<8>()
                .ok_or("log store section truncated")?;
            let (section, after) = usize::try_from(u64::from_le_bytes(*len))
                .ok()
                .and_then(|n| after.split_at_checked(n))
                .ok_or("log store section truncated")?;
            logs = StoreImage::decode(section)?;
            rest = after;
        }
        let dictionary = match rest.split_first() {
            None => Vec::new(),
            Some((&STATE_DICTIONARY, sets)) => dictionary::decode_sets(sets, head)?,
            Some((k, _)) => {
                return Err(format!("unknown state section {k} after the pending work"));
            }
        };
        Ok(MachineState {
            pending,
            logs,
            dictionary,
        })
    }
}

/// Wakes the maintenance loop: the head became compactable, or work is pending.
#[derive(Default)]
pub(crate) struct MaintenanceSignal {
    wanted: Mutex<bool>,
    cv: Condvar,
}

impl MaintenanceSignal {
    pub fn wake(&self) {
        *self.wanted.lock() = true;
        self.cv.notify_all();
    }

    /// Waits until woken or `timeout` passes, unless `stop()` holds; clears the wish.
    /// Returns whether it was woken.
    pub fn wait(&self, timeout: std::time::Duration, stop: impl Fn() -> bool) -> bool {
        let mut wanted = self.wanted.lock();
        if !*wanted && !stop() {
            self.cv.wait_for(&mut wanted, timeout);
        }
        std::mem::replace(&mut *wanted, false)
    }
}

/// The TSDB's state machine: the head, and the work applied entries left pending.
pub struct DbMachine {
    pub(crate) head: Arc<Head>,
    pub(crate) pending: Mutex<PendingWork>,
    /// The series dictionary of a replicated log, as applied (empty for a WAL).
    pub(crate) dictionary: Mutex<SeriesDictionary>,
    /// The leader's side of the dictionary: used only while this node proposes.
    pub(crate) proposer: Mutex<DictionaryProposer>,
    /// Log lines not yet written out as segments.
    pub(crate) logs: Arc<LogStore>,
    pub(crate) signal: Arc<MaintenanceSignal>,
    /// Where the head images are kept (`chunks_head`).
    pub(crate) images_dir: Option<std::path::PathBuf>,
    /// Installs a snapshot a peer sent (set once the database is open).
    pub(crate) installer: std::sync::OnceLock<crate::tsdb::replicated::Installer>,
    /// Samples newer than the clock plus this are refused where a write enters
    /// (0: any time); the leader checks a forwarded write again with its own clock.
    pub(crate) too_far_in_future_ms: i64,
}

impl DbMachine {
    pub(crate) fn new(
        head: Arc<Head>,
        images_dir: Option<std::path::PathBuf>,
        too_far_in_future_ms: i64,
    ) -> Self {
        DbMachine {
            head,
            pending: Mutex::default(),
            dictionary: Mutex::default(),
            proposer: Mutex::default(),
            logs: Arc::default(),
            signal: Arc::default(),
            images_dir,
            installer: std::sync::OnceLock::new(),
            too_far_in_future_ms,
        }
    }

    /// Whether the head spans more than one and a half chunk ranges (see
    /// `DbInner::head_cut_due`, which also picks the cut).
    fn head_cut_due(&self) -> bool {
        let h = &self.head;
        let (mint, maxt) = (h.min_time().max(h.min_valid_time()), h.max_time());
        mint != i64::MAX && maxt.saturating_sub(mint) > h.chunk_range_ms() / 2 * 3
    }

    fn apply_deletion(&self, d: Deletion) {
        let bound = self.head.min_valid_time();
        // Before the bound, samples belong to a block (written, or to be written by a
        // pending cut from what the head holds now); removing them from the head here
        // would make that block depend on when maintenance got to it.
        if d.max_t >= bound {
            self.head.apply_deletion(&Deletion {
                matchers: d.matchers.clone(),
                min_t: d.min_t.max(bound),
                max_t: d.max_t,
            });
        }
        if d.min_t < bound {
            // Only below the bound: the blocks there are those cut before this
            // entry; a block cut later holds nothing this deletion may remove.
            let max_t = d.max_t.min(bound - 1);
            let tombstones = Pending::Tombstones(Deletion { max_t, ..d });
            self.pending.lock().queue.push_back(tombstones);
            self.signal.wake();
        }
    }

    fn apply_head_cut(&self, cut: HeadCut) {
        let from = self.head.min_valid_time();
        if cut.end <= from {
            // Already below the bound: a cut replayed after its block was written.
            return;
        }
        self.head.set_min_valid_time(cut.end);
        self.logs.apply_head_cut(cut.end);
        let cut = Pending::Cut(PendingCut { from, end: cut.end });
        self.pending.lock().queue.push_back(cut);
        self.signal.wake();
    }
}

/// Finds a record's series in the head, each lookup's memory fetched a few series
/// ahead (see [`Head::prefetch_pairs`]); with `on` false, finds nothing.
struct HeadLookup<'a> {
    head: &'a Head,
    on: bool,
}

impl record::SeriesLookup for HeadLookup<'_> {
    type Handle = Arc<MemSeries>;

    fn prepare(&mut self, pairs: &[(&str, &str)]) -> u64 {
        if self.on {
            self.head.prefetch_pairs(pairs)
        } else {
            0
        }
    }

    fn find(&mut self, key: u64, pairs: &[(&str, &str)]) -> Option<(Labels, Arc<MemSeries>)> {
        if !self.on {
            return None;
        }
        let s = self.head.get_by_pairs_hashed(key, pairs)?;
        Some((s.labels.clone(), s))
    }
}

impl StateMachine for DbMachine {
    type Entry = DbEntry;
    type Output = AppendSummary;

    fn decode(&self, bytes: &[u8], applier_busy: bool) -> Result<DbEntry, String> {
        let head = &self.head;
        // Finding each series in the head is most of a batch's work; the decoder
        // takes it on while the applier has a backlog, else leaves it to the applier.
        let known = &mut HeadLookup {
            head,
            on: applier_busy,
        };
        match record::decode_resolving(bytes, &mut |s| head.intern(s), known) {
            Ok((Record::Samples(b), hints)) => Ok(DbEntry::Batch(b, hints)),
            Ok((Record::SamplesById(b), def_hints)) => {
                // Entries apply in order right after they decode, so the dictionary
                // is the one this entry was written against.
                let (batch, hints, update) =
                    self.dictionary
                        .lock()
                        .resolve(b, def_hints, head, applier_busy)?;
                Ok(DbEntry::ByReference(batch, hints, update))
            }
            Ok((Record::Deletion(d), _)) => Ok(DbEntry::Deletion(d)),
            Ok((Record::LogLines(b), _)) => Ok(DbEntry::Logs(b)),
            Ok((Record::HeadCut(c), _)) => Ok(DbEntry::HeadCut(c)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn encode(&self, entry: &DbEntry) -> Vec<u8> {
        entry.encode(None)
    }

    fn apply(&self, _index: LogIndex, entry: DbEntry) -> AppendSummary {
        match entry {
            DbEntry::ByReference(b, hints, update) => {
                let summary = self.apply_batch(&b, &hints);
                self.dictionary.lock().apply(update, &self.head);
                summary
            }
            DbEntry::Batch(b, hints) => self.apply_batch(&b, &hints),
            DbEntry::Deletion(d) => {
                self.apply_deletion(d);
                AppendSummary::default()
            }
            DbEntry::HeadCut(c) => {
                self.apply_head_cut(c);
                AppendSummary::default()
            }
            DbEntry::Logs(b) => {
                let summary = self.logs.apply(b);
                if self.logs.has_sealing() {
                    self.signal.wake();
                }
                summary
            }
        }
    }
}

impl DbMachine {
    fn apply_batch(&self, b: &Batch, hints: &[Option<Arc<MemSeries>>]) -> AppendSummary {
        let summary = self.head.apply_batch_with_hints(b, hints);
        // On a replica that did not take the write (in a cluster, the leader
        // applying a follower's batch) this is the only place that sees the head
        // become due for a cut.
        if self.head_cut_due() {
            self.signal.wake();
        }
        summary
    }

    /// The leader's encoding of a batch it is about to propose (see
    /// `tsdb::dictionary`): the batch by reference, or as it came when it cannot go
    /// so. `leadership`: the leader's term, and whether the last applied entry is
    /// of it.
    pub(crate) fn encode_by_reference(
        &self,
        entry: DbEntry,
        leadership: (u64, bool),
    ) -> (Option<Vec<u8>>, DbEntry) {
        let DbEntry::Batch(batch, hints) = entry else {
            return (None, entry);
        };
        let head_series = self.head.num_series() as usize;
        let encoded =
            self.proposer
                .lock()
                .encode(&self.dictionary, &batch, &hints, leadership, head_series);
        match encoded {
            Some((bytes, update)) => (Some(bytes), DbEntry::ByReference(batch, hints, update)),
            None => (None, DbEntry::Batch(batch, hints)),
        }
    }

    /// An entry this node proposed was refused, never to apply.
    pub(crate) fn proposal_refused(&self, entry: &DbEntry) {
        if let DbEntry::ByReference(_, _, update) = entry {
            self.proposer.lock().refused(update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Matcher;

    #[test]
    fn pending_work_round_trips_and_damage_is_refused() {
        let mut work = PendingWork::default();
        work.queue.push_back(Pending::Cut(PendingCut {
            from: i64::MIN,
            end: 7_200_000,
        }));
        work.queue.push_back(Pending::Tombstones(Deletion {
            matchers: vec![Matcher::equal("job", "node")],
            min_t: 5,
            max_t: 7_199_999,
        }));
        let bytes = work.encode();
        let back = PendingWork::decode(&bytes).unwrap();
        assert_eq!(format!("{:?}", back.queue), format!("{:?}", work.queue));
        assert!(PendingWork::decode(&[]).unwrap().queue.is_empty());
        for cut in 1..bytes.len() {
            assert!(PendingWork::decode(&bytes[..cut]).is_err(), "{cut}");
        }
    }
}
