//! ODIN's durable Raft log: [`RaftLogStore`], openraft's `RaftLogStorage`.
//!
//! # On disk
//!
//! ```text
//! <dir>/00000000, 00000001, …   segments: entries in the WAL's record framing
//!                                (length, CRC-32C, payload), in index order
//! <dir>/vote                     the vote, JSON; replaced atomically and fsynced
//! <dir>/committed                the last committed log id, JSON (a hint: not fsynced)
//! <dir>/purged                   the last purged log id, JSON; fsynced before
//!                                segments it covers are deleted
//! ```
//!
//! An entry's payload is `version:u8 kind:u8 meta_len:u32le meta body`: `meta` is a
//! JSON object with its log id, its proposer (node, number) or its membership; a
//! normal entry's body is the proposal's bytes, stored as they are.
//!
//! # Durability
//!
//! An append is written (readable at once, so that the leader replicates it while it
//! is being made durable) and handed to the store's flusher thread, which
//! `fdatasync`s and only then reports it flushed to openraft. Appends that arrive
//! while an fsync runs share the next one: the WAL's group commit. A truncation is
//! synced before it returns; the vote is on disk before `save_vote` returns. The
//! commit hint is written at most every [`COMMITTED_HINT_EVERY`].
//!
//! # Recovery
//!
//! At open every segment is read. The first damaged record (torn tail, bad CRC,
//! an index out of sequence) ends the log: its segment is cut there and later
//! segments are deleted, as the WAL does. Entries a quorum committed also live on
//! the other replicas, which send them again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, LogIdOptionExt, OptionalSend, RaftLogReader};
use parking_lot::Mutex;

use super::types::{Entry, LogId, OdinRaft, Vote};
use crate::log::wal::segment::{self, HEADER_LEN, Next, RecordReader};

const ENTRY_VERSION: u8 = 1;
const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Default size past which a new segment starts.
const SEGMENT_BYTES: u64 = 64 << 20;

/// How often the commit hint is written at most (it is a hint: a restart that finds
/// an older one waits for the leader to say more).
pub const COMMITTED_HINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Appended entries waiting to be made durable: the segment they were written to
/// (its number and a handle on it), and whom to tell.
struct Flush {
    seq: u64,
    file: File,
    callback: IOFlushed<OdinRaft>,
}

/// Where an entry lies.
#[derive(Debug, Clone)]
struct Loc {
    seq: u64,
    /// Offset of the record's header in the segment.
    offset: u64,
    /// Payload length.
    len: u32,
    log_id: LogId,
}

struct Store {
    dir: PathBuf,
    segment_bytes: u64,
    /// Every entry held, contiguous, oldest first; `locs[0]` has index `first_index`.
    locs: VecDeque<Loc>,
    first_index: u64,
    purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// The segment appended to and its length.
    current: Option<(u64, File, u64)>,
    /// Segments on disk, each with the index of its newest entry (`None`: empty).
    segments: BTreeMap<u64, Option<u64>>,
    readers: HashMap<u64, File>,
    /// Set once a write failed: nothing is written after it.
    failed: Option<String>,
    written: Arc<WrittenStats>,
    /// When the commit hint was last written.
    committed_written: Option<std::time::Instant>,
}

/// The Raft log of one node; cheap to clone (clones share the store).
#[derive(Clone)]
pub struct RaftLogStore {
    store: Arc<Mutex<Store>>,
    /// The flusher thread's queue; it ends once every clone is dropped.
    flushes: std::sync::mpsc::Sender<Flush>,
}

/// What a log store wrote, for the self metrics and the TSDB's image policy (an
/// image is due once the log grew enough past the last one).
#[derive(Debug, Default)]
pub struct WrittenStats {
    pub entries: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    pub fsyncs: std::sync::atomic::AtomicU64,
    /// Nanoseconds spent in fsyncs.
    pub fsync_nanos: std::sync::atomic::AtomicU64,
    pub write_errors: std::sync::atomic::AtomicU64,
}

impl RaftLogStore {
    /// Opens (creating if needed) the log in `dir`, repairing a damaged tail.
    pub fn open(dir: &Path) -> io::Result<RaftLogStore> {
        Self::open_with_segment_bytes(dir, SEGMENT_BYTES)
    }

    fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> io::Result<RaftLogStore> {
        fs::create_dir_all(dir)?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            segment_bytes,
            locs: VecDeque::new(),
            first_index: 0,
            purged: read_json(&dir.join("purged"))?,
            vote: read_json(&dir.join("vote"))?,
            // A hint written without fsync: a torn one is as good as none.
            committed: read_json(&dir.join("committed")).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "raft log: ignoring an unreadable commit hint");
                None
            }),
            current: None,
            segments: BTreeMap::new(),
            readers: HashMap::new(),
            failed: None,
            written: Arc::default(),
            committed_written: None,
        };
        store.first_index = store.purged.next_index();
        store.recover()?;
        // Recovery may have cut entries the hint says were committed; the others
        // hold them and send them again.
        if store
            .committed
            .is_some_and(|c| Some(c) > store.last_log_id())
        {
            tracing::warn!("raft log: the commit hint is past the log's end; lowered to it");
            store.committed = store.last_log_id();
        }
        let written = store.written.clone();
        let store = Arc::new(Mutex::new(store));
        let (flushes, queue) = std::sync::mpsc::channel();
        let failing = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("odin-raft-flush".into())
            .spawn(move || flush_loop(queue, written, failing))?;
        Ok(RaftLogStore { store, flushes })
    }

    /// What this store wrote since it was opened.
    pub fn written(&self) -> Arc<WrittenStats> {
        self.store.lock().written.clone()
    }

    /// Whether nothing was ever written: no vote, no entry. A fresh cluster starts
    /// from such logs, and only then is it initialised.
    pub fn is_fresh(&self) -> bool {
        let store = self.store.lock();
        store.vote.is_none() && store.last_log_id().is_none()
    }

    /// Runs `f` on the store on the blocking pool: the store does file I/O.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock()))
            .await
            .map_err(|e| io::Error::other(format!("raft log task: {e}")))?
    }
}

impl Store {
    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment::segment_name(seq))
    }

    /// The index the next appended entry must have.
    fn next_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.locs.back().map(|l| l.log_id).or(self.purged)
    }

    /// Reads every segment; see the module documentation.
    fn recover(&mut self) -> io::Result<()> {
        let listing = segment::list_dir(&self.dir).map_err(io::Error::other)?;
        let mut damaged_from: Option<u64> = None;
        for &seq in &listing.segments {
            if damaged_from.is_some() {
                tracing::error!(segment = seq, "raft log: removing segment after damage");
                fs::remove_file(self.segment_path(seq))?;
                continue;
            }
            let path = self.segment_path(seq);
            let mut reader = RecordReader::open(&path).map_err(io::Error::other)?;
            let mut newest = None;
            loop {
                let offset = reader.offset();
                let why = match reader.next_record().map_err(io::Error::other)? {
                    Next::End => break,
                    Next::Corrupt(c) => format!("{c:?}"),
                    Next::Record(payload) => match decode_log_id(payload) {
                        Ok(log_id) if log_id.index < self.first_index => continue,
                        // A log that never purged may start anywhere (after a
                        // snapshot); one that purged goes on right after it.
                        Ok(log_id)
                            if log_id.index == self.next_index()
                                || (self.locs.is_empty() && self.purged.is_none()) =>
                        {
                            if self.locs.is_empty() {
                                self.first_index = log_id.index;
                            }
                            newest = Some(log_id.index);
                            self.locs.push_back(Loc {
                                seq,
                                offset,
                                len: payload.len() as u32,
                                log_id,
                            });
                            continue;
                        }
                        Ok(log_id) => format!(
                            "entry {} where {} was expected",
                            log_id.index,
                            self.next_index()
                        ),
                        Err(e) => e.to_string(),
                    },
                };
                tracing::error!(segment = seq, offset, reason = %why,
                    "raft log: damaged entry; the log ends before it");
                segment::truncate_file(&path, offset).map_err(io::Error::other)?;
                damaged_from = Some(seq);
                break;
            }
            self.segments.insert(seq, newest);
        }
        if let Some(&seq) = self.segments.keys().next_back() {
            let path = self.segment_path(seq);
            let file = OpenOptions::new().append(true).open(&path)?;
            let len = file.metadata()?.len();
            self.current = Some((seq, file, len));
        }
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(format!("raft log failed earlier: {why}")));
        }
        let result = self.append_entries(entries);
        if let Err(e) = &result {
            self.written
                .write_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // What reached the files is unknown now; openraft stops on a storage
            // error, and the next start reads back what is there.
            self.failed = Some(e.to_string());
        }
        result
    }

    fn append_entries(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut pending: Vec<u8> = Vec::new();
        let mut locs: Vec<Loc> = Vec::with_capacity(entries.len());
        for entry in entries {
            // An empty log starts wherever it is told (past what was purged).
            if self.locs.is_empty() && locs.is_empty() && entry.log_id.index >= self.first_index {
                self.first_index = entry.log_id.index;
            }
            let expected = self.next_index() + locs.len() as u64;
            if entry.log_id.index != expected {
                return Err(io::Error::other(format!(
                    "raft log: appending entry {} where {expected} was expected",
                    entry.log_id.index
                )));
            }
            let payload = encode_entry(&entry)?;
            let crc = segment::check_record(&payload).map_err(io::Error::other)?;
            let full = self
                .current
                .as_ref()
                .is_none_or(|(_, _, len)| len + pending.len() as u64 >= self.segment_bytes);
            if full {
                self.write_current(&mut pending)?;
                self.start_segment()?;
            }
            let Some((seq, _, len)) = &self.current else {
                return Err(io::Error::other("raft log: no segment to write"));
            };
            locs.push(Loc {
                seq: *seq,
                offset: len + pending.len() as u64,
                len: payload.len() as u32,
                log_id: entry.log_id,
            });
            segment::encode_record(&mut pending, &payload, crc);
        }
        self.write_current(&mut pending)?;
        self.written
            .entries
            .fetch_add(locs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for loc in locs {
            self.segments.insert(loc.seq, Some(loc.log_id.index));
            self.locs.push_back(loc);
        }
        Ok(())
    }

    /// The segment appended to and a handle on it, for the flusher.
    fn current_for_flush(&self) -> io::Result<(u64, File)> {
        let (seq, file, _) = self
            .current
            .as_ref()
            .ok_or_else(|| io::Error::other("raft log: no segment written"))?;
        Ok((*seq, file.try_clone()?))
    }

    /// Syncs the current segment and starts the next.
    fn start_segment(&mut self) -> io::Result<()> {
        let seq = match &self.current {
            Some((seq, file, _)) => {
                file.sync_data()?;
                seq + 1
            }
            None => self.segments.keys().next_back().map_or(0, |s| s + 1),
        };
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.segment_path(seq))?;
        segment::sync_dir(&self.dir).map_err(io::Error::other)?;
        self.segments.insert(seq, None);
        self.current = Some((seq, file, 0));
        Ok(())
    }

    fn write_current(&mut self, pending: &mut Vec<u8>) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let (_, file, len) = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("raft log: no segment to write"))?;
        file.write_all(pending)?;
        *len += pending.len() as u64;
        self.written
            .bytes
            .fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
        pending.clear();
        Ok(())
    }

    /// Deletes every entry after `last` (all of them for `None`).
    fn truncate_after(&mut self, last: Option<LogId>) -> io::Result<()> {
        let keep = last.next_index().max(self.first_index);
        if keep >= self.next_index() {
            return Ok(());
        }
        let cut = self.locs[(keep - self.first_index) as usize].clone();
        self.locs.truncate((keep - self.first_index) as usize);
        let later: Vec<u64> = self
            .segments
            .range(cut.seq + 1..)
            .map(|(s, _)| *s)
            .collect();
        for seq in later.into_iter().rev() {
            self.readers.remove(&seq);
            self.segments.remove(&seq);
            fs::remove_file(self.segment_path(seq))?;
        }
        let path = self.segment_path(cut.seq);
        segment::truncate_file(&path, cut.offset).map_err(io::Error::other)?;
        segment::sync_dir(&self.dir).map_err(io::Error::other)?;
        let newest = self.locs.back().filter(|l| l.seq == cut.seq);
        self.segments
            .insert(cut.seq, newest.map(|l| l.log_id.index));
        let file = OpenOptions::new().append(true).open(&path)?;
        self.current = Some((cut.seq, file, cut.offset));
        Ok(())
    }

    /// Forgets every entry up to and including `upto`.
    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        if self.purged.as_ref().is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        write_json(&self.dir, "purged", &upto, true)?;
        let drop = (upto.index + 1).saturating_sub(self.first_index) as usize;
        self.locs.drain(..drop.min(self.locs.len()));
        self.first_index = upto.index + 1;
        self.purged = Some(upto);
        // Whole segments whose entries are all purged; never the one written to.
        let current = self.current.as_ref().map(|c| c.0);
        let gone: Vec<u64> = self
            .segments
            .iter()
            .filter(|(seq, newest)| {
                Some(**seq) != current && newest.is_none_or(|n| n <= upto.index)
            })
            .map(|(s, _)| *s)
            .collect();
        for seq in gone {
            self.readers.remove(&seq);
            self.segments.remove(&seq);
            fs::remove_file(self.segment_path(seq))?;
        }
        Ok(())
    }

    /// The entries with indices in `[from, to)` that the log holds.
    fn read(&mut self, from: u64, to: u64) -> io::Result<Vec<Entry>> {
        let from = from.max(self.first_index);
        let to = to.min(self.next_index());
        let mut out = Vec::with_capacity(to.saturating_sub(from) as usize);
        for i in from..to {
            let loc = self.locs[(i - self.first_index) as usize].clone();
            let file = match self.readers.entry(loc.seq) {
                std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(File::open(self.dir.join(segment::segment_name(loc.seq)))?)
                }
            };
            let mut buf = vec![0u8; loc.len as usize];
            file.read_exact_at(&mut buf, loc.offset + HEADER_LEN as u64)?;
            let entry = decode_entry(&buf)?;
            if entry.log_id != loc.log_id {
                return Err(io::Error::other(format!(
                    "raft log: entry {i} changed on disk since it was written"
                )));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

/// Makes appended entries durable, as many at a time as are waiting, and reports
/// each append flushed (or failed) in order.
fn flush_loop(
    queue: std::sync::mpsc::Receiver<Flush>,
    written: Arc<WrittenStats>,
    store: std::sync::Weak<Mutex<Store>>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let started = std::time::Instant::now();
        // Each segment once, newest handle first (a rotation synced the older ones
        // already, but syncing again is harmless).
        let mut synced: Vec<u64> = Vec::new();
        let mut failure: Option<io::Error> = None;
        for f in batch.iter().rev() {
            if synced.contains(&f.seq) {
                continue;
            }
            synced.push(f.seq);
            if let Err(e) = f.file.sync_data() {
                failure = Some(e);
                break;
            }
        }
        written.fsyncs.fetch_add(synced.len() as u64, Relaxed);
        written
            .fsync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        if let Some(e) = &failure {
            written.write_errors.fetch_add(1, Relaxed);
            // What reached the disk is unknown now: nothing more is written, and
            // the next start reads back what is there.
            if let Some(store) = store.upgrade() {
                store.lock().failed = Some(format!("fsync: {e}"));
            }
        }
        for f in batch {
            let result = match &failure {
                None => Ok(()),
                Some(e) => Err(io::Error::new(e.kind(), format!("raft log fsync: {e}"))),
            };
            f.callback.io_completed(result);
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

type Membership = openraft::Membership<u64, super::types::Peer>;

/// An entry's meta: its log id, and what else it carries besides a proposal's bytes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    log_id: LogId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proposer: Option<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    membership: Option<Membership>,
}

pub(crate) fn encode_entry(entry: &Entry) -> io::Result<Vec<u8>> {
    let mut meta = Meta {
        log_id: entry.log_id,
        proposer: None,
        membership: None,
    };
    let (kind, body): (u8, &[u8]) = match &entry.payload {
        EntryPayload::Blank => (KIND_BLANK, &[]),
        EntryPayload::Normal(p) => {
            meta.proposer = Some((p.origin, p.seq));
            (KIND_NORMAL, &p.bytes)
        }
        EntryPayload::Membership(m) => {
            meta.membership = Some(m.clone());
            (KIND_MEMBERSHIP, &[])
        }
    };
    let meta = serde_json::to_vec(&meta)?;
    let mut out = Vec::with_capacity(6 + meta.len() + body.len());
    out.push(ENTRY_VERSION);
    out.push(kind);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(body);
    Ok(out)
}

/// The parts of an entry's payload: kind, meta, body.
fn split_entry(payload: &[u8]) -> io::Result<(u8, Meta, &[u8])> {
    let [version, kind, a, b, c, d, rest @ ..] = payload else {
        return Err(invalid("raft log: entry too short"));
    };
    if *version != ENTRY_VERSION {
        return Err(invalid(format!("raft log: entry version {version}")));
    }
    let n = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
    let (meta, body) = rest
        .split_at_checked(n)
        .ok_or_else(|| invalid("raft log: entry meta past its end"))?;
    Ok((*kind, serde_json::from_slice(meta)?, body))
}

fn decode_log_id(payload: &[u8]) -> io::Result<LogId> {
    Ok(split_entry(payload)?.1.log_id)
}

pub(crate) fn decode_entry(payload: &[u8]) -> io::Result<Entry> {
    let (kind, meta, body) = split_entry(payload)?;
    let payload = match (kind, meta.proposer, meta.membership) {
        (KIND_BLANK, _, _) => EntryPayload::Blank,
        (KIND_NORMAL, Some((origin, seq)), _) => EntryPayload::Normal(super::types::Proposal {
            origin,
            seq,
            bytes: body.to_vec(),
        }),
        (KIND_MEMBERSHIP, _, Some(m)) => EntryPayload::Membership(m),
        (k, _, _) => return Err(invalid(format!("raft log: malformed entry of kind {k}"))),
    };
    Ok(Entry {
        log_id: meta.log_id,
        payload,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `<dir>/<name>` with `value`'s JSON through a temporary file; with
/// `durable`, fsynced (file and directory) before it returns.
fn write_json<T: serde::Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
    durable: bool,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(value)?)?;
    if durable {
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    if durable {
        segment::sync_dir(dir).map_err(io::Error::other)?;
    }
    Ok(())
}

/// `[from, to)` of a range of indices.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<OdinRaft> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (from, to) = bounds(&range);
        self.with_store(move |s| s.read(from, to)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.store.lock().vote)
    }
}

impl RaftLogStorage<OdinRaft> for RaftLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<OdinRaft>, io::Error> {
        let s = self.store.lock();
        Ok(LogState {
            last_purged_log_id: s.purged,
            last_log_id: s.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.with_store(move |s| {
            write_json(&s.dir, "vote", &vote, true)?;
            s.vote = Some(vote);
            Ok(())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // A hint that lets a restarted node apply what it knows was committed
        // without waiting for a leader; losing it costs only that wait.
        let due = {
            let mut store = self.store.lock();
            store.committed = committed;
            let due = store
                .committed_written
                .is_none_or(|at| at.elapsed() >= COMMITTED_HINT_EVERY);
            if due {
                store.committed_written = Some(std::time::Instant::now());
            }
            due
        };
        if !due {
            return Ok(());
        }
        self.with_store(move |s| write_json(&s.dir, "committed", &s.committed, false))
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.store.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<OdinRaft>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Written here rather than on the blocking pool: a write into the page cache
        // is short (the fsync is the flusher's), and a thread hop per append costs
        // commit latency. A new segment now and then syncs the last one here.
        let result = {
            let mut s = self.store.lock();
            s.append(entries).and_then(|()| s.current_for_flush())
        };
        match result {
            Ok((seq, file)) => {
                let flush = Flush {
                    seq,
                    file,
                    callback,
                };
                if let Err(std::sync::mpsc::SendError(f)) = self.flushes.send(flush) {
                    let gone = io::Error::other("raft log: the flusher thread is gone");
                    f.callback
                        .io_completed(Err(io::Error::new(gone.kind(), gone.to_string())));
                    return Err(gone);
                }
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.with_store(move |s| s.truncate_after(last_log_id))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.with_store(move |s| s.purge(log_id)).await
    }
}

#[cfg(test)]
mod tests;
