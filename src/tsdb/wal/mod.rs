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
mod error;
mod segment;
mod stats;
mod writer;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use checkpoint::CheckpointStats;
pub use error::{Result, WalError};
pub use segment::MAX_RECORD_LEN;
pub use stats::WalStats;
pub use writer::WalWriter;

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
    /// Corruptions found (torn tail, bad record, gap in numbering).
    pub corruptions: u64,
    /// Bytes cut off: truncated tails plus deleted later segments.
    pub bytes_truncated: u64,
    /// Segments deleted because they followed a corruption.
    pub segments_deleted: u64,
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
            // (No let-chains: the crate's MSRV is 1.85.)
            if let Some(&first) = segments.first().filter(|&&first| first != cp + 1) {
                tracing::warn!(
                    checkpoint = %checkpoint_name(cp),
                    first_segment = %segment_name(first),
                    "wal segments between the checkpoint and the first segment are missing; \
                     replaying what exists"
                );
            }
        }

        // A gap in numbering: what follows cannot be replayed consistently.
        if let Some(pos) = segments.windows(2).position(|w| w[1] != w[0] + 1) {
            let after = segments[pos];
            let lost = segments.split_off(pos + 1);
            let (count, bytes) = delete_segments(&dir, &lost)?;
            tracing::warn!(
                after = %segment_name(after),
                deleted_segments = count,
                deleted_bytes = bytes,
                "WAL CORRUPTION: gap in segment numbering; deleted every segment after it"
            );
            repair.corruptions += 1;
            repair.segments_deleted += count;
            repair.bytes_truncated += bytes;
            dir_dirty = true;
        }

        // Validate every record; the first bad one ends the log.
        for i in 0..segments.len() {
            let seq = segments[i];
            let path = dir.join(segment_name(seq));
            let scan = scan_file(&path)?;
            let Some(corruption) = scan.corruption else {
                continue;
            };
            let lost = segments.split_off(i + 1);
            let (count, bytes) = delete_segments(&dir, &lost)?;
            if count > 0 {
                sync_dir(&dir)?;
            }
            truncate_file(&path, scan.valid_len)?;
            let cut = scan.file_len - scan.valid_len;
            if lost.is_empty() {
                tracing::warn!(
                    segment = %segment_name(seq),
                    offset = scan.valid_len,
                    truncated_bytes = cut,
                    records_kept = scan.records,
                    %corruption,
                    "wal: torn tail of the last segment truncated"
                );
            } else {
                tracing::warn!(
                    segment = %segment_name(seq),
                    offset = scan.valid_len,
                    truncated_bytes = cut,
                    records_kept = scan.records,
                    deleted_segments = count,
                    deleted_bytes = bytes,
                    %corruption,
                    "WAL CORRUPTION in an earlier segment: truncated it and deleted every later \
                     segment; records after the corruption are lost"
                );
            }
            repair.corruptions += 1;
            repair.segments_deleted += count;
            repair.bytes_truncated += cut + bytes;
            dir_dirty = true;
            break;
        }

        // The checkpoint was fsynced before its rename, so damage here is
        // media corruption; keep its readable prefix.
        if let Some(cp) = checkpoint {
            let path = dir.join(checkpoint_name(cp));
            let scan = scan_file(&path)?;
            if let Some(corruption) = scan.corruption {
                truncate_file(&path, scan.valid_len)?;
                let cut = scan.file_len - scan.valid_len;
                tracing::warn!(
                    checkpoint = %checkpoint_name(cp),
                    offset = scan.valid_len,
                    truncated_bytes = cut,
                    %corruption,
                    "WAL CORRUPTION in the checkpoint: truncated it"
                );
                repair.corruptions += 1;
                repair.bytes_truncated += cut;
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
        })
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
        match (self.segments.last(), self.checkpoint) {
            (Some(&s), _) => s + 1,
            (None, Some(cp)) => cp + 1,
            (None, None) => 0,
        }
    }

    /// Calls `f` for every record in log order: the newest checkpoint's
    /// records, then every segment after it. Stops at the first error of `f`.
    ///
    /// Open already validated the files; should one have been damaged since,
    /// replay logs it and stops at the damage (skipping only the rest of the
    /// checkpoint if the damage is there), so the replayed records are always
    /// a consistent prefix.
    pub fn replay<E: From<WalError>>(
        &self,
        mut f: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<ReplayStats, E> {
        let mut stats = ReplayStats {
            checkpoint: self.checkpoint,
            corrupt_bytes_truncated: self.repair.bytes_truncated,
            ..ReplayStats::default()
        };
        if let Some(cp) = self.checkpoint {
            let path = self.dir.join(checkpoint_name(cp));
            let (records, _) = replay_file(&path, &mut f, &mut stats)?;
            stats.checkpoint_records = records;
        }
        for &seq in &self.segments {
            let path = self.dir.join(segment_name(seq));
            stats.segments += 1;
            let (_, complete) = replay_file(&path, &mut f, &mut stats)?;
            if !complete {
                break;
            }
        }
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
                     stopping there, the next open repairs it"
                );
                return Ok((records, false));
            }
        }
    }
}

/// Deletes `segments` highest first (so a crash midway never leaves a gap
/// followed by valid-looking segments); returns count and bytes.
fn delete_segments(dir: &Path, segments: &[u64]) -> Result<(u64, u64)> {
    let mut bytes = 0;
    for &seq in segments.iter().rev() {
        let path = dir.join(segment_name(seq));
        bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        remove_path(&path)?;
    }
    Ok((segments.len() as u64, bytes))
}
