//! Checkpoints: compaction of the WAL prefix into one file.
//!
//! `checkpoint.N` holds, in the segment record format, whatever `keep` chose
//! to carry over from the previous checkpoint and segments `..=N`. It is
//! written as `checkpoint.N.tmp`, fsynced, renamed and the directory fsynced,
//! so a crash leaves either the old state or the complete new checkpoint;
//! only then are the covered segments and older checkpoints deleted. Open
//! cleans up after a crash at any step (leftover `.tmp`, older checkpoints,
//! segments `<= N`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::error::{Result, WalError};
use super::segment::{
    HEADER_LEN, MAX_RECORD_LEN, Next, RecordReader, checkpoint_name, checkpoint_tmp_name, list_dir,
    remove_path, segment_name, sync_dir,
};
use super::stats::WalStats;

/// What one [`checkpoint`](super::WalWriter::checkpoint) call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Number of the checkpoint written (`None`: nothing to do).
    pub checkpoint: Option<u64>,
    /// Records read from the previous checkpoint and the segments.
    pub records_read: u64,
    /// Records written to the new checkpoint.
    pub records_kept: u64,
    /// Size of the new checkpoint file.
    pub bytes_written: u64,
    /// Segment files deleted.
    pub segments_deleted: u64,
    /// Older checkpoints deleted.
    pub checkpoints_deleted: u64,
    /// Source files that ended in corruption (their tail was skipped).
    pub corrupt_sources: u64,
}

pub(crate) fn create_checkpoint(
    dir: &Path,
    before_segment: u64,
    keep: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    stats: &WalStats,
) -> Result<CheckpointStats> {
    let mut out = CheckpointStats::default();
    let Some(n) = before_segment.checked_sub(1) else {
        return Ok(out);
    };
    let listing = list_dir(dir)?;
    let prev = listing.checkpoints.last().copied();
    if prev.is_some_and(|p| p >= n) {
        return Ok(out); // already covered
    }
    let sources: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|&s| s <= n && prev.is_none_or(|p| s > p))
        .collect();
    if sources.is_empty() {
        return Ok(out);
    }

    let tmp = dir.join(checkpoint_tmp_name(n));
    remove_path(&tmp)?;
    let written = write_tmp(dir, &tmp, prev, &sources, keep, &mut out);
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            if let Err(rm) = remove_path(&tmp) {
                tracing::warn!(error = %rm, "cannot remove failed wal checkpoint");
            }
            return Err(e);
        }
    };
    let final_path = dir.join(checkpoint_name(n));
    std::fs::rename(&tmp, &final_path).map_err(|e| {
        WalError::io(
            format!("rename {} to {}", tmp.display(), final_path.display()),
            e,
        )
    })?;
    sync_dir(dir)?;
    out.checkpoint = Some(n);
    out.bytes_written = bytes;
    WalStats::add(&stats.checkpoints, 1);

    // The checkpoint is durable; what it covers is garbage now. A crash in
    // here is finished by the next open.
    for &seq in listing.segments.iter().filter(|&&s| s <= n) {
        remove_path(&dir.join(segment_name(seq)))?;
        out.segments_deleted += 1;
    }
    for &seq in listing.checkpoints.iter().filter(|&&c| c < n) {
        remove_path(&dir.join(checkpoint_name(seq)))?;
        out.checkpoints_deleted += 1;
    }
    sync_dir(dir)?;
    tracing::info!(
        checkpoint = %checkpoint_name(n),
        records_read = out.records_read,
        records_kept = out.records_kept,
        bytes,
        segments_deleted = out.segments_deleted,
        "wal checkpoint written"
    );
    Ok(out)
}

/// Streams the previous checkpoint and `sources` through `keep` into `tmp`
/// and fsyncs it. Returns the file size.
fn write_tmp(
    dir: &Path,
    tmp: &Path,
    prev: Option<u64>,
    sources: &[u64],
    keep: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    out: &mut CheckpointStats,
) -> Result<u64> {
    let ctx = || format!("write {}", tmp.display());
    let file = File::create(tmp).map_err(|e| WalError::io(ctx(), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut bytes = 0u64;
    let paths = prev
        .map(|p| dir.join(checkpoint_name(p)))
        .into_iter()
        .chain(sources.iter().map(|&s| dir.join(segment_name(s))));
    for path in paths {
        let mut reader = RecordReader::open(&path)?;
        loop {
            let record = match reader.next_record()? {
                Next::Record(r) => r,
                Next::End => break,
                Next::Corrupt(c) => {
                    // Open validated these files, so this is damage since
                    // then; keep what is readable rather than fail forever.
                    tracing::warn!(
                        file = %path.display(),
                        offset = reader.offset(),
                        corruption = %c,
                        "wal checkpoint: skipping the corrupt rest of the file"
                    );
                    out.corrupt_sources += 1;
                    break;
                }
            };
            out.records_read += 1;
            let Some(kept) = keep(record) else { continue };
            if kept.is_empty() {
                continue;
            }
            if kept.len() > MAX_RECORD_LEN {
                return Err(WalError::RecordTooLarge {
                    len: kept.len(),
                    max: MAX_RECORD_LEN,
                });
            }
            let crc = crc32c::crc32c(&kept);
            let len = kept.len() as u32;
            w.write_all(&len.to_le_bytes())
                .and_then(|()| w.write_all(&crc.to_le_bytes()))
                .and_then(|()| w.write_all(&kept))
                .map_err(|e| WalError::io(ctx(), e))?;
            bytes += (HEADER_LEN + kept.len()) as u64;
            out.records_kept += 1;
        }
    }
    let file = w
        .into_inner()
        .map_err(|e| WalError::io(ctx(), e.into_error()))?;
    file.sync_all()
        .map_err(|e| WalError::io(format!("sync {}", tmp.display()), e))?;
    Ok(bytes)
}

/// Deletes every checkpoint and every segment numbered below `segment` (what a head
/// image made durable covers); checkpoints first, so that a crash in between never
/// leaves a checkpoint followed by a gap. Returns the files deleted.
pub(crate) fn remove_before(dir: &Path, segment: u64) -> Result<u64> {
    let listing = list_dir(dir)?;
    let mut removed = 0;
    for &seq in &listing.checkpoints {
        remove_path(&dir.join(checkpoint_name(seq)))?;
        removed += 1;
    }
    for &seq in listing.segments.iter().filter(|&&s| s < segment) {
        remove_path(&dir.join(segment_name(seq)))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}
