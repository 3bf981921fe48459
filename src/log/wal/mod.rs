//! Write-ahead log of opaque byte records.
//!
//! The TSDB encodes its own batches; the WAL only guarantees that a record it
//! acknowledged survives a crash and is replayed in order, and that a crash in
//! the middle of a write never prevents the next start.
//!
//! # On-disk format
//!
//! A WAL is a directory:
//!
//! * `00000000`, `00000001`, … — segments, named by their sequence number
//!   (8 zero-padded decimal digits, more only past 99,999,999). Records are
//!   appended to the highest-numbered segment; a new one is started when the
//!   next record would push the current one past
//!   [`WalOptions::segment_size`] (a record never spans segments; a record
//!   larger than the limit gets a segment of its own). Each start of the
//!   writer opens a fresh segment rather than appending to an old one.
//! * `checkpoint.NNNNNNNN` — the records that a checkpoint carried over from
//!   the previous checkpoint and all segments `<= NNNNNNNN`, in the same
//!   record format. Only the newest checkpoint is meaningful.
//! * `checkpoint.NNNNNNNN.tmp` — a checkpoint being written; deleted at open.
//!
//! Segment and checkpoint files have no header; they are a plain sequence of
//! records:
//!
//! ```text
//! +-------------------+--------------------+---------------------+
//! | length: u32 LE    | crc: u32 LE        | payload (length B)  |
//! +-------------------+--------------------+---------------------+
//! ```
//!
//! `crc` is the CRC-32C (Castagnoli) of the payload. `length` is in
//! `1..=`[`MAX_RECORD_LEN`]: a zero length is invalid so that a zero-filled
//! tail (common after power loss on some filesystems) is recognised as a torn
//! write, and the upper bound keeps garbage lengths from causing huge
//! allocations.
//!
//! # Recovery
//!
//! [`Wal::open`] validates every record. The first invalid one (short header,
//! length past end of file, impossible length, bad CRC, zero length) marks the
//! end of the log: its segment is truncated there, every later segment is
//! deleted (loudly, with counts: they cannot be replayed without the lost
//! records before them), and a gap in segment numbers is treated the same way.
//! Later segments are deleted before the truncation, highest first, so a
//! crash during repair never leaves a gap that would look valid. Corruption
//! never refuses the start; only real I/O errors do.
//!
//! # Writing
//!
//! [`Wal::start`] moves the WAL onto a dedicated thread (`odin-wal`) and
//! returns a [`WalWriter`] handle; see `writer.rs` for the group commit.

mod checkpoint;
mod commit_log;
mod error;
pub(crate) mod segment;
mod stats;
mod writer;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use checkpoint::CheckpointStats;
pub use commit_log::WalLog;
#[cfg(test)]
pub(crate) use commit_log::replay;
pub use error::{Result, WalError};
pub use segment::MAX_RECORD_LEN;
pub use stats::WalStats;
pub use writer::{LogPosition, WalWriter};

pub use segment::Damage;
use segment::{
    Next, RecordReader, checkpoint_name, list_dir, remove_path, scan_file, segment_name, sync_dir,
    truncate_file,
};

/// Tuning of the WAL.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size limit of a segment file; smaller segments let checkpoints reclaim
    /// space sooner, larger ones mean fewer files.
    pub segment_size: u64,
    /// Payload bytes one group commit drains from the queue at most, so a
    /// burst cannot make the fsync (and every waiter's latency) unbounded.
    pub max_batch_bytes: usize,
    /// Commits that may wait in the queue before committers block.
    pub max_queue_records: usize,
    /// Payload bytes that may wait in the queue before committers block.
    pub max_queue_bytes: usize,
    /// How long patient commits (see `WalWriter::commit_patient`) may wait for
    /// others to share their fsync.
    pub patience: std::time::Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 << 20,
            max_batch_bytes: 8 << 20,
            max_queue_records: 16 << 10,
            max_queue_bytes: 64 << 20,
            patience: std::time::Duration::from_millis(100),
        }
    }
}

/// What [`Wal::open`] had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Corruptions found: damaged byte ranges (torn tails included) and gaps in
    /// the segment numbering.
    pub corruptions: u64,
    /// Bytes taken out of the log: torn tails and skipped damaged ranges.
    pub bytes_truncated: u64,
    /// Segments missing from the numbering (their records are lost).
    pub segments_missing: u64,
    /// The missing segment numbers, as inclusive ranges.
    pub missing: Vec<(u64, u64)>,
    /// Copies of the damaged bytes, under `wal/corrupted/`.
    pub kept_aside: Vec<PathBuf>,
}

/// What [`Wal::replay`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records passed to the callback (checkpoint included).
    pub records: u64,
    /// Payload bytes passed to the callback.
    pub bytes: u64,
    /// Segment files read (the checkpoint not counted).
    pub segments: u64,
    /// Checkpoint replayed first, if any.
    pub checkpoint: Option<u64>,
    /// Records of that checkpoint.
    pub checkpoint_records: u64,
    /// Bytes cut off as corrupt when the WAL was opened.
    pub corrupt_bytes_truncated: u64,
    /// Files found damaged during replay (changed since open); the rest of such a
    /// file is skipped and replay goes on with the next.
    pub corrupt_files: u64,
}

/// An opened, repaired WAL directory, ready to replay and then
/// [`start`](Wal::start).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    checkpoint: Option<u64>,
    segments: Vec<u64>,
    repair: RepairReport,
    stats: Arc<WalStats>,
    /// Set by [`Wal::resume_at`]: replay starts at this segment.
    resume_at: Option<u64>,
    /// Records applied before the first one replay passes on.
    base_index: u64,
    /// Records replay passed on.
    replayed: std::sync::atomic::AtomicU64,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and repairs it: see the
    /// module documentation. Fails only on real I/O errors.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| WalError::io(format!("create wal directory {}", dir.display()), e))?;
        let listing = list_dir(&dir)?;
        let mut dir_dirty = false;
        let mut repair = RepairReport::default();

        // A crash during a checkpoint leaves its temporary file behind.
        for tmp in &listing.temps {
            tracing::info!(path = %tmp.display(), "removing unfinished wal checkpoint");
            remove_path(tmp)?;
            dir_dirty = true;
        }

        // Only the newest checkpoint counts; older ones and the segments it
        // covers are leftovers of a crash right after it was written.
        let checkpoint = listing.checkpoints.last().copied();
        let mut segments = listing.segments;
        if let Some(cp) = checkpoint {
            for &old in listing.checkpoints.iter().filter(|&&c| c < cp) {
                remove_path(&dir.join(checkpoint_name(old)))?;
                dir_dirty = true;
            }
            let covered: Vec<u64> = segments.iter().copied().filter(|&s| s <= cp).collect();
            if !covered.is_empty() {
                tracing::info!(
                    checkpoint = %checkpoint_name(cp),
                    segments = covered.len(),
                    "removing wal segments already covered by the checkpoint"
                );
                for &s in &covered {
                    remove_path(&dir.join(segment_name(s)))?;
                }
                segments.retain(|&s| s > cp);
                dir_dirty = true;
            }
        }

        // A gap in numbering loses the missing segments' records, nothing more:
        // every record carries its series' labels, so no later record needs an
        // earlier one to be read. Later segments are kept and replayed.
        let expected_first = checkpoint.map(|cp| cp + 1);
        let mut prev = expected_first.map(|f| f.wrapping_sub(1));
        for &seq in &segments {
            if let Some(p) = prev {
                if seq > p + 1 {
                    let (from, to) = (p + 1, seq - 1);
                    tracing::error!(
                        first_missing = %segment_name(from),
                        last_missing = %segment_name(to),
                        "WAL CORRUPTION: wal segments are missing; their records are lost, \
                         later segments are still replayed"
                    );
                    repair.corruptions += 1;
                    repair.segments_missing += to - from + 1;
                    repair.missing.push((from, to));
                }
            }
            prev = Some(seq);
        }

        // Validate every record; damaged ranges are skipped, the rest is kept.
        let last = segments.last().copied();
        for &seq in &segments {
            let name = segment_name(seq);
            if repair_file(&dir, &name, Some(seq) == last, &mut repair)? {
                dir_dirty = true;
            }
        }
        // The checkpoint was fsynced before its rename, so damage here is media
        // corruption: it gets the same treatment as a segment's.
        if let Some(cp) = checkpoint {
            if repair_file(&dir, &checkpoint_name(cp), false, &mut repair)? {
                dir_dirty = true;
            }
        }

        if dir_dirty {
            sync_dir(&dir)?;
        }
        let stats = Arc::new(WalStats::default());
        stats
            .corruptions_repaired
            .store(repair.corruptions, Ordering::Relaxed);
        stats
            .bytes_truncated
            .store(repair.bytes_truncated, Ordering::Relaxed);
        Ok(Wal {
            dir,
            opts,
            checkpoint,
            segments,
            repair,
            stats,
            resume_at: None,
            base_index: 0,
            replayed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Makes replay start at `segment`, skipping the checkpoint and earlier
    /// segments: a head image holds everything before it (see
    /// `tsdb::head::image`), and `index` records. The writer then starts at
    /// `segment` or later, and counts records from `index` plus those replayed.
    pub fn resume_at(&mut self, segment: u64, index: u64) {
        self.resume_at = Some(segment);
        self.base_index = index;
    }

    /// The segments replay reads: those at or after [`Wal::resume_at`]'s.
    fn replayed_segments(&self) -> impl Iterator<Item = u64> + '_ {
        self.segments
            .iter()
            .copied()
            .filter(|&s| self.resume_at.is_none_or(|r| s >= r))
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of the checkpoint that replay starts with.
    pub fn checkpoint(&self) -> Option<u64> {
        self.checkpoint
    }

    /// Segments that replay reads, in order.
    pub fn segments(&self) -> &[u64] {
        &self.segments
    }

    /// What open repaired.
    pub fn repair_report(&self) -> &RepairReport {
        &self.repair
    }

    /// Number of the segment the writer will create first.
    pub fn next_segment(&self) -> u64 {
        let next = match (self.segments.last(), self.checkpoint) {
            (Some(&s), _) => s + 1,
            (None, Some(cp)) => cp + 1,
            (None, None) => 0,
        };
        next.max(self.resume_at.unwrap_or(0))
    }

    /// Calls `f` for every record in log order: the newest checkpoint's
    /// records, then every segment after it. Stops at the first error of `f`.
    ///
    /// Open already repaired the files; should one have been damaged since,
    /// replay logs it, skips the rest of that file and goes on with the next
    /// (records are self-contained, so later ones need nothing from it).
    pub fn replay<E: From<WalError>>(
        &self,
        mut f: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<ReplayStats, E> {
        let checkpoint = self.checkpoint.filter(|_| self.resume_at.is_none());
        let mut stats = ReplayStats {
            checkpoint,
            corrupt_bytes_truncated: self.repair.bytes_truncated,
            ..ReplayStats::default()
        };
        if let Some(first) = self.resume_at
            && let Some(found) = self.replayed_segments().next()
            && found > first
        {
            tracing::error!(
                first_missing = %segment_name(first),
                last_missing = %segment_name(found - 1),
                "WAL CORRUPTION: wal segments after the head image are missing; \
                 their records are lost"
            );
        }
        if let Some(cp) = checkpoint {
            let path = self.dir.join(checkpoint_name(cp));
            let (records, complete) = replay_file(&path, &mut f, &mut stats)?;
            stats.checkpoint_records = records;
            if !complete {
                stats.corrupt_files += 1;
            }
        }
        for seq in self.replayed_segments() {
            let path = self.dir.join(segment_name(seq));
            stats.segments += 1;
            let (_, complete) = replay_file(&path, &mut f, &mut stats)?;
            if !complete {
                stats.corrupt_files += 1;
            }
        }
        self.replayed.store(stats.records, Ordering::Relaxed);
        Ok(stats)
    }

    /// Moves the WAL onto its writer thread. Appends go to a fresh segment
    /// numbered after every existing one. `apply` runs on that thread, after
    /// each group's fsync, once per record in log order; its result is
    /// returned to the committer.
    pub fn start<T: Send + 'static, R: Send + 'static>(
        self,
        apply: impl FnMut(T) -> R + Send + 'static,
    ) -> WalWriter<T, R> {
        let cfg = writer::WriterConfig {
            next_segment: self.next_segment(),
            dir: self.dir,
            segment_size: self.opts.segment_size,
            max_batch_bytes: self.opts.max_batch_bytes,
            patience: self.opts.patience,
            max_queue_records: self.opts.max_queue_records,
            max_queue_bytes: self.opts.max_queue_bytes,
            first_index: self.base_index + self.replayed.load(Ordering::Relaxed),
        };
        WalWriter::spawn(cfg, self.stats, apply)
    }
}

/// Replays one file; returns its record count and whether it was read to a
/// clean end.
fn replay_file<E: From<WalError>>(
    path: &Path,
    f: &mut impl FnMut(&[u8]) -> std::result::Result<(), E>,
    stats: &mut ReplayStats,
) -> std::result::Result<(u64, bool), E> {
    let mut reader = RecordReader::open(path)?;
    let mut records = 0;
    loop {
        match reader.next_record()? {
            Next::Record(record) => {
                f(record)?;
                records += 1;
                stats.records += 1;
                stats.bytes += record.len() as u64;
            }
            Next::End => return Ok((records, true)),
            Next::Corrupt(corruption) => {
                tracing::warn!(
                    file = %path.display(),
                    offset = reader.offset(),
                    %corruption,
                    "WAL CORRUPTION found during replay (file changed since open); \
                     skipping the rest of the file, the next open repairs it"
                );
                return Ok((records, false));
            }
        }
    }
}

/// A WAL directory as `odin tsdb check` reports it, read without changing it.
#[derive(Debug, Default)]
pub struct WalInspection {
    pub checkpoint: Option<u64>,
    /// Segments replay would read.
    pub segments: Vec<u64>,
    /// Valid records (checkpoint included).
    pub records: u64,
    /// Missing segment numbers, as inclusive ranges.
    pub missing: Vec<(u64, u64)>,
    /// Damaged ranges, by file name.
    pub damage: Vec<(String, Damage)>,
    /// Files under `corrupted/`: damage repaired at an earlier start, kept there
    /// for inspection.
    pub kept_aside: Vec<String>,
}

impl WalInspection {
    /// Whether anything is wrong or was found wrong before.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.damage.is_empty() && self.kept_aside.is_empty()
    }
}

/// Reads every record of the WAL in `dir` and reports damage the way
/// [`Wal::open`] would find it, changing nothing. Only damaged files are read
/// whole.
pub fn inspect(dir: &Path) -> Result<WalInspection> {
    let listing = list_dir(dir)?;
    let mut out = WalInspection {
        checkpoint: listing.checkpoints.last().copied(),
        ..WalInspection::default()
    };
    out.segments = listing
        .segments
        .iter()
        .copied()
        .filter(|&s| out.checkpoint.is_none_or(|cp| s > cp))
        .collect();
    let mut prev = out.checkpoint;
    for &seq in &out.segments {
        if let Some(p) = prev.filter(|&p| seq > p + 1) {
            out.missing.push((p + 1, seq - 1));
        }
        prev = Some(seq);
    }
    let names = out
        .checkpoint
        .map(checkpoint_name)
        .into_iter()
        .chain(out.segments.iter().map(|&s| segment_name(s)));
    for name in names {
        let path = dir.join(&name);
        let scan = scan_file(&path)?;
        if scan.corruption.is_none() {
            out.records += scan.records;
            continue;
        }
        let buf =
            fs::read(&path).map_err(|e| WalError::io(format!("read {}", path.display()), e))?;
        let analysis = segment::analyze(&buf);
        out.records += analysis.records;
        out.damage
            .extend(analysis.damage.into_iter().map(|d| (name.clone(), d)));
    }
    if let Ok(entries) = fs::read_dir(dir.join(CORRUPTED_DIR)) {
        out.kept_aside = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.kept_aside.sort();
    }
    Ok(out)
}

/// The folder under the WAL directory where damaged bytes are kept for
/// inspection. Its name is no segment or checkpoint name, so the WAL ignores it.
pub const CORRUPTED_DIR: &str = "corrupted";

/// Suffix of a segment or checkpoint being rewritten without its damage.
pub(crate) const REPAIR_SUFFIX: &str = ".repair";

/// Validates the record file `dir/name` and repairs it if damaged: a torn tail of
/// the last segment (the normal trace of a crash) is cut off; any other damage is
/// skipped, keeping every valid record before and after it. The damaged bytes are
/// copied to `wal/corrupted/` first (the whole original file, or the torn tail
/// unless it is all zeros). Returns whether the file was changed.
fn repair_file(dir: &Path, name: &str, is_last: bool, repair: &mut RepairReport) -> Result<bool> {
    let path = dir.join(name);
    if scan_file(&path)?.corruption.is_none() {
        return Ok(false);
    }
    // Only a damaged file is read whole: at most a segment (or one record of up
    // to MAX_RECORD_LEN) in memory, once, at start-up.
    let buf = fs::read(&path).map_err(|e| WalError::io(format!("read {}", path.display()), e))?;
    let analysis = segment::analyze(&buf);
    let len = buf.len() as u64;
    let torn_tail = match analysis.damage.as_slice() {
        [d] if is_last && d.end == len => Some(d),
        _ => None,
    };
    if let Some(d) = torn_tail {
        let kept = if d.zeroed {
            None
        } else {
            let tail = usize::try_from(d.start).unwrap_or(buf.len());
            Some(keep_aside(
                dir,
                &format!("{name}.tail-at-{}", d.start),
                buf.get(tail..).unwrap_or_default(),
            )?)
        };
        truncate_file(&path, d.start)?;
        tracing::warn!(
            segment = name,
            offset = d.start,
            truncated_bytes = len - d.start,
            records_kept = analysis.records,
            corruption = %d.corruption,
            kept_at = kept.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "wal: torn tail of the last segment truncated"
        );
        repair.kept_aside.extend(kept);
    } else {
        let kept = keep_aside(dir, name, &buf)?;
        let mut out = Vec::with_capacity(buf.len());
        let mut off = 0usize;
        for d in &analysis.damage {
            let (start, end) = (d.start as usize, d.end as usize);
            out.extend_from_slice(buf.get(off..start).unwrap_or_default());
            off = end;
            tracing::error!(
                file = name,
                offset = d.start,
                skipped_bytes = d.end - d.start,
                corruption = %d.corruption,
                kept_at = %kept.display(),
                "WAL CORRUPTION: skipped the damaged bytes; the records in them are lost, \
                 every other record is kept and replayed"
            );
        }
        out.extend_from_slice(buf.get(off..).unwrap_or_default());
        replace_file(dir, &path, &out)?;
        repair.kept_aside.push(kept);
    }
    repair.corruptions += analysis.damage.len() as u64;
    repair.bytes_truncated += analysis.damage.iter().map(|d| d.end - d.start).sum::<u64>();
    Ok(true)
}

/// `dir/<name>`, or `dir/<name>.N` with the first `N` not taken: where damaged
/// files and blocks are put aside without ever replacing an earlier one.
pub(crate) fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.join(name);
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    path
}

/// Writes `bytes` to `wal/corrupted/<name>` (or `<name>.N` if taken), durably, and
/// returns the path.
fn keep_aside(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let aside = dir.join(CORRUPTED_DIR);
    fs::create_dir_all(&aside)
        .map_err(|e| WalError::io(format!("create {}", aside.display()), e))?;
    let path = unused_path(&aside, name);
    write_synced(&path, bytes)?;
    sync_dir(&aside)?;
    Ok(path)
}

/// Writes and fsyncs a file.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    fs::File::create(path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| WalError::io(format!("write {}", path.display()), e))
}

/// Replaces `path` with `bytes` atomically: written beside it, fsynced, renamed.
fn replace_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(REPAIR_SUFFIX);
    let tmp = PathBuf::from(tmp);
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)
        .map_err(|e| WalError::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    sync_dir(dir)
}
