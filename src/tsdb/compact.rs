//! Structural changes to the set of blocks: cutting the head into blocks, compacting
//! blocks into larger ranges (Prometheus's leveled planner), retention, tombstones and
//! snapshots. Every function here runs with the database's maintenance lock held.
//!
//! A block becomes visible only once complete: it is written under
//! `<ULID>.tmp-for-creation` and renamed. A block is deleted by renaming it to
//! `<ULID>.tmp-for-deletion` first, so a crash never leaves a half-deleted block that
//! would be read; leftovers of both kinds are removed at start-up.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::log::record::Deletion;
use crate::model::{Interval, Sample};
use crate::storage::{ChunkData, ChunkSeries, ChunkSeriesSet, MergeChunkSeriesSet, merge_samples};
use crate::tsdb::block::meta::BlockMeta;
use crate::tsdb::block::tombstones::{Tombstones, write_tombstones};
use crate::tsdb::block::writer::{BlockSeries, write_block};
use crate::tsdb::block::{Block, BlockError};
use crate::tsdb::chunkenc::{ENCODING_XOR, XorIterator, encode_chunks};
use crate::tsdb::db::DbInner;
use crate::tsdb::error::{Result, TsdbError};
use crate::tsdb::head::{Head, SAMPLES_PER_CHUNK};
use crate::tsdb::machine::{Pending, PendingCut};
use crate::tsdb::matchers::postings_for_matchers;
use crate::tsdb::querier::{BlockIndex, block_chunk_series};

/// One round of maintenance: cut the head, compact, apply retention.
pub(crate) fn run(db: &DbInner) -> Result<()> {
    let _m = db.maintenance.lock();
    // Retention runs whatever the cut or the compaction did: it is what frees the
    // disk, and a block that cannot be merged must not keep old blocks forever.
    let result = cut_head(db).and_then(|_| compact_blocks(db));
    let retained = apply_retention(db);
    let result = result.and(retained).and(write_out_logs(db));
    if result.is_err() {
        db.metrics.compactions_failed.inc();
    }
    db.refresh_gauges();
    result
}

/// Writes the sealed log windows out as segments, merges closed days, and drops the
/// segments past retention (`--logs.retention.time`, by default the TSDB's; 0 keeps
/// them). With shipping on, only shipped segments are merged or dropped.
fn write_out_logs(db: &DbInner) -> Result<()> {
    let retention_ms = db.opts.logs_retention_ms.unwrap_or(db.opts.retention_ms);
    let retain_after_ns = match retention_ms {
        0 => i64::MIN,
        ms => crate::model::now_ms()
            .saturating_sub(ms)
            .saturating_mul(1_000_000),
    };
    let shipped = |meta: &crate::logs::segment::SegmentMeta| {
        db.opts
            .shipping
            .as_ref()
            .is_none_or(|hook| hook.0.is_log_segment_shipped(meta))
    };
    let done = db
        .machine
        .logs
        .maintain_shipped(retain_after_ns, &shipped)
        .map_err(|e| TsdbError::io("write out log segments".to_string(), e))?;
    if done.segments_written + done.segments_merged + done.segments_deleted > 0 {
        tracing::info!(
            written = done.segments_written,
            merged = done.segments_merged,
            deleted = done.segments_deleted,
            "log segments"
        );
    }
    if done.segments_written > 0
        && let Some(hook) = &db.opts.shipping
    {
        hook.0.segments_written();
    }
    Ok(())
}

/// The ranges compaction builds: Prometheus's `ExponentialBlockRanges(min, 10, 3)`,
/// capped at the largest block span.
pub fn block_ranges(min_block_ms: i64, max_block_ms: i64) -> Vec<i64> {
    let mut out = vec![min_block_ms];
    let mut r = min_block_ms;
    for _ in 1..10 {
        r *= 3;
        if r > max_block_ms {
            break;
        }
        out.push(r);
    }
    out
}

/// How long a head cut waits for queriers that began before its block was listed.
/// Queries time out well before this (`--query.timeout`, 2 m); a reader still open
/// after it is a stalled stream, and the head must not grow without bound for it.
const READER_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Cuts the head into blocks: carries out the cuts already applied, then, while the
/// head spans more than one and a half ranges (Prometheus's rule), proposes the next
/// cut through the log and carries it out once applied. The cut is an entry so that
/// the bound it sets falls at the same place among the batches on every replica. One
/// head image follows the run of cuts.
fn cut_head(db: &DbInner) -> Result<()> {
    let mut cut = carry_out(db)?;
    while let Some(end) = db.head_cut_due() {
        match db.propose_head_cut(end) {
            Ok(()) => {}
            // In a cluster, the leader's maintenance cuts; this replica applies the
            // cut when it arrives, at the same place in the log as everyone.
            Err(crate::tsdb::TsdbError::Log(crate::log::LogError::NotLeader { .. })) => break,
            Err(e) => return Err(e),
        }
        if !db.machine.pending.lock().has_cut() {
            // The cut was already below the head's bound; nothing to do.
            break;
        }
        cut |= carry_out(db)?;
    }
    if cut {
        crate::tsdb::recovery::take_image(db, "head cut")?;
    }
    Ok(())
}

/// Carries out what applied entries left for maintenance, then, after a head cut,
/// takes an image of the head, which lets the log forget what the blocks hold and
/// the truncations' chunk files go. Runs with the maintenance lock held.
pub(crate) fn carry_out_pending(db: &DbInner) -> Result<()> {
    if carry_out(db)? {
        crate::tsdb::recovery::take_image(db, "head cut")?;
    }
    Ok(())
}

/// Carries out the pending work, oldest first: the block of a head cut (then the
/// head is truncated), the tombstones of a deletion. An item leaves the queue only
/// once done, so a failure leaves it for the next round. Returns whether a cut was
/// carried out (one image then serves a run of them).
fn carry_out(db: &DbInner) -> Result<bool> {
    let mut cut = false;
    loop {
        let Some(next) = db.machine.pending.lock().queue.front().cloned() else {
            return Ok(cut);
        };
        match &next {
            Pending::Cut(c) => write_cut(db, *c)?,
            Pending::Tombstones(d) => add_tombstones(db, d)?,
        }
        db.machine.pending.lock().queue.pop_front();
        if let Pending::Cut(c) = next {
            db.head.truncate(c.end);
            db.metrics.head_truncations.inc();
            cut = true;
        }
    }
}

/// Writes and lists the block of one head cut, unless it exists already (the cut was
/// replayed after a restart that came between writing the block and compacting the
/// log).
fn write_cut(db: &DbInner, cut: PendingCut) -> Result<()> {
    let ulid = head_block_ulid(cut.end, &db.opts.external_labels);
    let existing = db
        .blocks
        .read()
        .iter()
        .find(|b| b.meta().ulid == ulid)
        .map(|b| b.meta().clone());
    if let Some(meta) = existing {
        // Truncating the head trusts this block to hold the range: make sure it is
        // the block of this cut, not a foreign one that happens to share the name.
        if meta.max_time == cut.end
            && meta.compaction.level == 1
            && meta.compaction.sources == [ulid]
        {
            return Ok(());
        }
        return Err(TsdbError::Internal(format!(
            "block {ulid} exists but is not the head block ending at {}; the head is kept",
            cut.end
        )));
    }
    let Some(meta) = write_head_block(&db.head, &db.dir, cut.from, cut.end, ulid)? else {
        return Ok(());
    };
    let block = Block::open(&db.dir.join(meta.ulid.to_string()))?;
    let epoch = {
        let mut blocks = db.blocks.write();
        blocks.push(Arc::new(block));
        blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        db.reads.advance()
    };
    tracing::info!(ulid = %meta.ulid, min_time = meta.min_time, max_time = meta.max_time,
        series = meta.stats.num_series, samples = meta.stats.num_samples, "head block written");
    if let Some(hook) = &db.opts.shipping {
        hook.0.block_written(&meta);
    }
    // Queriers that started before the block was listed read this range from the
    // head only: let them finish before the head lets go of it.
    let open = db.reads.wait_for_older(epoch, READER_WAIT_LIMIT);
    if open > 0 {
        tracing::warn!(
            open,
            limit_s = READER_WAIT_LIMIT.as_secs(),
            "head truncated while older queriers were still reading; they may miss samples of the cut range"
        );
    }
    Ok(())
}

/// A block's ULID, derived from what the block is instead of drawn at random, so that
/// every replica names the same block the same and a second upload of it is a
/// no-op. The time part is the block's end, when its data was complete (Thanos's
/// consistency delay reads it); the random part is a hash of `identity` and the
/// external labels.
fn derived_ulid(
    max_time: i64,
    identity: &[u8],
    external_labels: &std::collections::BTreeMap<String, String>,
) -> ulid::Ulid {
    let mut key = identity.to_vec();
    for (name, value) in external_labels {
        key.push(0xff);
        key.extend_from_slice(name.as_bytes());
        key.push(0);
        key.extend_from_slice(value.as_bytes());
    }
    let ms = max_time.clamp(0, (1 << 48) - 1) as u64;
    let random = xxhash_rust::xxh3::xxh3_128(&key) & ((1u128 << 80) - 1);
    ulid::Ulid::from_parts(ms, random)
}

/// The ULID of the block cut from the head at `end`: one cut per end, ever, since
/// the bound never moves back.
pub(crate) fn head_block_ulid(
    end: i64,
    external_labels: &std::collections::BTreeMap<String, String>,
) -> ulid::Ulid {
    let mut identity = b"odin head block\0".to_vec();
    identity.extend_from_slice(&end.to_be_bytes());
    derived_ulid(end, &identity, external_labels)
}

/// The ULID of a block merged from `parents` at `level`.
fn merged_block_ulid(
    parents: &[Arc<Block>],
    level: u32,
    max_time: i64,
    external_labels: &std::collections::BTreeMap<String, String>,
) -> ulid::Ulid {
    let mut identity = b"odin merged block\0".to_vec();
    identity.extend_from_slice(&level.to_be_bytes());
    let mut ids: Vec<ulid::Ulid> = parents.iter().map(|b| b.meta().ulid).collect();
    ids.sort();
    for id in ids {
        identity.extend_from_slice(&id.to_bytes());
    }
    derived_ulid(max_time, &identity, external_labels)
}

/// Writes the head's chunks in `[min_t, max_t)` as a level-1 block named `ulid`
/// under `parent`. Its meta's minimum time is the oldest sample in the range, so that
/// the block depends only on the head's content. Returns `None` when the range holds
/// no samples.
fn write_head_block(
    head: &Head,
    parent: &Path,
    min_t: i64,
    max_t: i64,
    ulid: ulid::Ulid,
) -> Result<Option<BlockMeta>> {
    let series = head.series_in_range(min_t, max_t);
    if series.is_empty() {
        return Ok(None);
    }
    let oldest = series
        .iter()
        .filter_map(|s| head.first_sample_time(s, min_t, max_t))
        .min();
    let Some(oldest) = oldest else {
        return Ok(None);
    };
    let mut symbols = BTreeSet::new();
    for s in &series {
        for l in s.labels.iter() {
            symbols.insert(l.name.clone());
            symbols.insert(l.value.clone());
        }
    }
    let meta = BlockMeta::new(ulid, oldest, max_t, 1, vec![ulid], Vec::new());
    // Chunks are read one series at a time as the writer asks for them.
    let iter = series.into_iter().map(|s| {
        let chunks = head.series_chunks_in_range(&s, min_t, max_t);
        Ok(BlockSeries {
            labels: s.labels.clone(),
            num_samples: chunks.iter().map(chunk_samples).sum(),
            chunks: chunks
                .into_iter()
                .map(|c| (c.min_t, c.max_t, ENCODING_XOR, c.bytes))
                .collect(),
        })
    });
    let meta = write_block(parent, meta, symbols.iter().map(|s| &**s), iter)?;
    Ok(Some(meta))
}

/// The sample count in an XOR chunk's header.
fn chunk_samples(c: &ChunkData) -> u64 {
    match c.bytes.get(..2) {
        Some(b) => u64::from(u16::from_be_bytes([b[0], b[1]])),
        None => 0,
    }
}

/// Which blocks to compact next, if any: overlapping blocks first, then Prometheus's
/// leveled selection. The newest block is left alone, as Prometheus does, so that a
/// block just cut from the head stays available as it is for a while.
fn plan(blocks: &[Arc<Block>], ranges: &[i64]) -> Option<Vec<Arc<Block>>> {
    let mut sorted: Vec<Arc<Block>> = blocks.to_vec();
    sorted.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));

    // Overlapping blocks (vertical compaction).
    let mut group: Vec<Arc<Block>> = Vec::new();
    let mut group_max = i64::MIN;
    for b in &sorted {
        if !group.is_empty() && b.meta().min_time < group_max {
            group.push(b.clone());
            group_max = group_max.max(b.meta().max_time);
            continue;
        }
        if group.len() > 1 {
            return Some(group);
        }
        group = vec![b.clone()];
        group_max = b.meta().max_time;
    }
    if group.len() > 1 {
        return Some(group);
    }

    if sorted.len() < 2 {
        return None;
    }
    sorted.pop();
    let high_time = sorted.last().map(|b| b.meta().min_time)?;
    for &r in ranges.iter().skip(1) {
        for part in split_by_range(&sorted, r) {
            let mint = part.first().map(|b| b.meta().min_time)?;
            let maxt = part.last().map(|b| b.meta().max_time)?;
            if part.len() > 1 && (maxt.saturating_sub(mint) == r || maxt <= high_time) {
                return Some(part);
            }
        }
    }
    None
}

/// Groups blocks (sorted by time) that lie entirely within the same aligned range of
/// width `r`; blocks that straddle a boundary belong to no group.
fn split_by_range(blocks: &[Arc<Block>], r: i64) -> Vec<Vec<Arc<Block>>> {
    let mut out: Vec<Vec<Arc<Block>>> = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let m = blocks[i].meta();
        // In i128: a block at the ends of the i64 range has its aligned range partly
        // outside it.
        let start = i128::from(m.min_time).div_euclid(i128::from(r)) * i128::from(r);
        let end = start + i128::from(r);
        if i128::from(m.max_time) > end {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < blocks.len() {
            let m = blocks[i].meta();
            if i128::from(m.min_time) >= end {
                break;
            }
            if i128::from(m.max_time) <= end {
                group.push(blocks[i].clone());
            }
            i += 1;
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}

fn compact_blocks(db: &DbInner) -> Result<()> {
    let ranges = block_ranges(
        db.opts.min_block_ms,
        db.opts.max_block_ms.max(db.opts.min_block_ms),
    );
    // Bounded: each round removes at least one block.
    for _ in 0..64 {
        let blocks: Vec<Arc<Block>> = {
            let failed = db.compaction_failed.lock();
            db.blocks
                .read()
                .iter()
                .filter(|b| !failed.contains(&b.meta().ulid))
                .cloned()
                .collect()
        };
        let Some(group) = plan(&blocks, &ranges) else {
            return Ok(());
        };
        // With shipping on, a block is merged only once its data is in the bucket:
        // the merged block is not shipped again (Thanos Compactor compacts the
        // bucket), so merging an unshipped block would lose its data for the bucket.
        // Blocks ship oldest first, so waiting here only delays compaction.
        if let Some(hook) = &db.opts.shipping {
            if let Some(b) = group.iter().find(|b| !hook.0.is_shipped(b.meta())) {
                tracing::debug!(ulid = %b.meta().ulid, "compaction waits for the block to ship");
                return Ok(());
            }
        }
        let level = group
            .iter()
            .map(|b| b.meta().compaction.level)
            .max()
            .unwrap_or(1)
            + 1;
        let meta = match merge_blocks(&db.dir, &group, level, &db.opts.external_labels) {
            Ok(meta) => meta,
            Err(e) => {
                let ulids: Vec<String> = group.iter().map(|b| b.meta().ulid.to_string()).collect();
                tracing::error!(error = %e, blocks = ?ulids,
                    "compaction failed; these blocks are left out of compaction from now on (they are still queried and deleted by retention)");
                db.compaction_failed
                    .lock()
                    .extend(group.iter().map(|b| b.meta().ulid));
                return Err(e);
            }
        };
        db.metrics.compactions.inc();
        replace_blocks(db, &group, meta.as_ref())?;
    }
    Ok(())
}

/// Writes the merge of `sources` as one block (tombstones applied, overlapping chunks
/// re-encoded, duplicates dropped). Returns `None` if nothing is left.
fn merge_blocks(
    parent: &Path,
    sources: &[Arc<Block>],
    level: u32,
    external_labels: &std::collections::BTreeMap<String, String>,
) -> Result<Option<BlockMeta>> {
    let min_t = sources.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
    let max_t = sources.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
    let mut symbols: BTreeSet<String> = BTreeSet::new();
    for b in sources {
        for name in b.index().label_names() {
            symbols.extend(b.index().label_values(&name));
            symbols.insert(name);
        }
    }
    let mut sets: Vec<ChunkSeriesSet> = Vec::new();
    for b in sources {
        let refs = b.index().all_postings().map_err(BlockError::from)?;
        let block = b.clone();
        sets.push(Box::new(refs.into_iter().filter_map(move |r| {
            block_chunk_series(&block, r, i64::MIN, i64::MAX, None).transpose()
        })));
    }
    let merged = MergeChunkSeriesSet::merge(sets);
    let iter = merged.map(|cs| {
        let cs = cs.map_err(|e| BlockError::Corrupt(e.to_string()))?;
        Ok(rechunk_if_overlapping(cs))
    });
    let mut sources_ulids: Vec<ulid::Ulid> = Vec::new();
    for b in sources {
        sources_ulids.extend(b.meta().compaction.sources.iter().copied());
    }
    sources_ulids.sort();
    sources_ulids.dedup();
    let parents = sources
        .iter()
        .map(|b| (b.meta().ulid, b.meta().min_time, b.meta().max_time))
        .collect();
    let ulid = merged_block_ulid(sources, level, max_t, external_labels);
    let meta = BlockMeta::new(ulid, min_t, max_t, level, sources_ulids, parents);
    let meta = write_block(parent, meta, symbols.iter().map(String::as_str), iter)?;
    if meta.stats.num_series == 0 {
        remove_block_dir(&parent.join(meta.ulid.to_string()))?;
        return Ok(None);
    }
    Ok(Some(meta))
}

/// Turns a merged chunk series into block series: chunks that do not overlap are kept
/// as they are; overlapping ones are decoded, merged and re-encoded.
fn rechunk_if_overlapping(cs: ChunkSeries) -> BlockSeries {
    let overlapping = cs.chunks.windows(2).any(|w| w[1].min_t <= w[0].max_t);
    if !overlapping {
        return BlockSeries {
            labels: cs.labels,
            num_samples: cs.chunks.iter().map(chunk_samples).sum(),
            chunks: cs
                .chunks
                .into_iter()
                .map(|c| (c.min_t, c.max_t, ENCODING_XOR, c.bytes))
                .collect(),
        };
    }
    let lists: Vec<Vec<Sample>> = cs
        .chunks
        .iter()
        .map(|c| {
            XorIterator::new(&c.bytes)
                .map(|(t, v)| Sample { t, v })
                .collect()
        })
        .collect();
    let samples = merge_samples(lists);
    let chunks = encode_chunks(&samples, SAMPLES_PER_CHUNK)
        .into_iter()
        .map(|(lo, hi, c)| {
            (
                lo,
                hi,
                ENCODING_XOR,
                bytes::Bytes::copy_from_slice(c.bytes()),
            )
        })
        .collect();
    BlockSeries {
        labels: cs.labels,
        num_samples: samples.len() as u64,
        chunks,
    }
}

/// Swaps `old` blocks for `new` in the live list, then deletes the old directories.
fn replace_blocks(db: &DbInner, old: &[Arc<Block>], new: Option<&BlockMeta>) -> Result<()> {
    let opened = match new {
        Some(meta) => Some(Arc::new(Block::open(&db.dir.join(meta.ulid.to_string()))?)),
        None => None,
    };
    {
        let mut blocks = db.blocks.write();
        blocks.retain(|b| !old.iter().any(|o| o.meta().ulid == b.meta().ulid));
        blocks.extend(opened);
        blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    }
    for b in old {
        remove_block_dir(b.dir())?;
    }
    Ok(())
}

/// Deletes a block directory by renaming it out of the way first.
pub(crate) fn remove_block_dir(dir: &Path) -> Result<()> {
    let mut tmp = dir.as_os_str().to_owned();
    tmp.push(".tmp-for-deletion");
    fs::rename(dir, &tmp).map_err(|e| TsdbError::io(format!("rename {}", dir.display()), e))?;
    fs::remove_dir_all(&tmp).map_err(|e| TsdbError::io(format!("remove {}", dir.display()), e))
}

/// Deletes blocks beyond the time retention (relative to the newest block's end, as
/// Prometheus) and then, oldest first, while blocks and WAL together exceed the size
/// retention. With shipping on, a block that has not shipped is never deleted: it is
/// kept, counted in `odin_tsdb_retention_blocked_by_unshipped_*` and logged, and size
/// retention goes on with the next (shipped) block.
fn apply_retention(db: &DbInner) -> Result<()> {
    let blocks = db.blocks.read().clone();
    let shipped = |b: &Arc<Block>| {
        db.opts
            .shipping
            .as_ref()
            .is_none_or(|h| h.0.is_shipped(b.meta()))
    };
    let mut doomed: Vec<Arc<Block>> = Vec::new();
    let mut held: Vec<Arc<Block>> = Vec::new();
    if db.opts.retention_ms > 0 {
        if let Some(newest) = blocks.iter().map(|b| b.meta().max_time).max() {
            for b in blocks
                .iter()
                .filter(|b| newest.saturating_sub(b.meta().max_time) > db.opts.retention_ms)
            {
                if shipped(b) {
                    doomed.push(b.clone());
                } else {
                    held.push(b.clone());
                }
            }
        }
    }
    if db.opts.retention_bytes > 0 {
        let is_in = |list: &[Arc<Block>], b: &Arc<Block>| {
            list.iter().any(|d| d.meta().ulid == b.meta().ulid)
        };
        // As Prometheus: blocks, WAL and head chunk files together.
        let mut total: u64 = dir_size(&db.dir.join("wal"))
            + dir_size(&db.dir.join("chunks_head"))
            + blocks
                .iter()
                .filter(|b| !is_in(&doomed, b))
                .map(|b| b.size_bytes())
                .sum::<u64>();
        for b in &blocks {
            if total <= db.opts.retention_bytes {
                break;
            }
            if is_in(&doomed, b) || is_in(&held, b) {
                continue;
            }
            if !shipped(b) {
                held.push(b.clone());
                continue;
            }
            total = total.saturating_sub(b.size_bytes());
            doomed.push(b.clone());
        }
    }
    let held_bytes: u64 = held.iter().map(|b| b.size_bytes()).sum();
    db.metrics.retention_blocked_blocks.set(held.len() as i64);
    db.metrics.retention_blocked_bytes.set(held_bytes as i64);
    if let Some(oldest) = held.iter().min_by_key(|b| b.meta().min_time) {
        tracing::warn!(
            blocks = held.len(),
            bytes = held_bytes,
            oldest = %oldest.meta().ulid,
            "retention keeps blocks it would delete because they have not shipped to object storage yet; the disk fills until uploads succeed"
        );
    }
    if doomed.is_empty() {
        return Ok(());
    }
    for b in &doomed {
        tracing::info!(ulid = %b.meta().ulid, min_time = b.meta().min_time, max_time = b.meta().max_time,
            "deleting block beyond retention");
    }
    db.metrics
        .retention_deleted_blocks
        .inc_by(doomed.len() as u64);
    replace_blocks(db, &doomed, None)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Records tombstones for `d` in every block that holds matching data.
pub(crate) fn add_tombstones(db: &DbInner, d: &Deletion) -> Result<()> {
    let blocks = db.blocks.read().clone();
    for b in blocks {
        let m = b.meta();
        if m.min_time > d.max_t || m.max_time <= d.min_t {
            continue;
        }
        let refs =
            postings_for_matchers(&BlockIndex(b.index()), &d.matchers).map_err(BlockError::from)?;
        if refs.is_empty() {
            continue;
        }
        let mut ts: Tombstones = b.tombstones().clone();
        for r in refs {
            let ivs = ts.entry(r).or_default();
            ivs.push(Interval::new(d.min_t, d.max_t));
            normalize_intervals(ivs);
        }
        write_tombstones(b.dir(), &ts)?;
        let reopened = Arc::new(Block::open(b.dir())?);
        let mut live = db.blocks.write();
        for slot in live.iter_mut() {
            if slot.meta().ulid == m.ulid {
                *slot = reopened.clone();
            }
        }
    }
    Ok(())
}

/// Sorts and merges overlapping or adjacent intervals.
fn normalize_intervals(ivs: &mut Vec<Interval>) {
    ivs.sort();
    let mut out: Vec<Interval> = Vec::with_capacity(ivs.len());
    for iv in ivs.drain(..) {
        match out.last_mut() {
            Some(last) if iv.min_t <= last.max_t.saturating_add(1) => {
                last.max_t = last.max_t.max(iv.max_t);
            }
            _ => out.push(iv),
        }
    }
    *ivs = out;
}

/// Rewrites each block with tombstones as a new block without the deleted data.
pub(crate) fn clean_tombstones(db: &DbInner) -> Result<()> {
    let blocks = db.blocks.read().clone();
    for b in blocks.iter().filter(|b| !b.tombstones().is_empty()) {
        let level = b.meta().compaction.level;
        let meta = merge_blocks(
            &db.dir,
            std::slice::from_ref(b),
            level,
            &db.opts.external_labels,
        )?;
        replace_blocks(db, std::slice::from_ref(b), meta.as_ref())?;
    }
    db.refresh_gauges();
    Ok(())
}

/// Writes a snapshot: hard links of every block, plus the head as a block.
pub(crate) fn snapshot(db: &DbInner, skip_head: bool) -> Result<String> {
    // A pending cut's range is below the head's bound but in no block yet.
    carry_out_pending(db)?;
    let name = format!(
        "{}-{:016x}",
        utc_stamp(crate::model::now_ms()),
        rand::random::<u64>()
    );
    let dir = db.dir.join("snapshots").join(&name);
    fs::create_dir_all(&dir).map_err(|e| TsdbError::io(format!("create {}", dir.display()), e))?;
    for b in db.blocks.read().iter() {
        let name = b
            .dir()
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        link_tree(b.dir(), &dir.join(name))?;
    }
    let head = &db.head;
    if !skip_head && !head.is_empty() && head.min_time() != i64::MAX {
        let end = head.max_time().saturating_add(1);
        // Not the ULID a cut at `end` would give: a snapshot's head block is a copy
        // with a name of its own.
        let ulid = ulid::Ulid::from_parts(
            end.clamp(0, (1 << 48) - 1) as u64,
            rand::random::<u128>() & ((1u128 << 80) - 1),
        );
        write_head_block(head, &dir, head.min_valid_time(), end, ulid)?;
    }
    Ok(name)
}

/// Hard-links every file under `src` into `dst`, recreating directories.
fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| TsdbError::io(format!("create {}", dst.display()), e))?;
    let entries =
        fs::read_dir(src).map_err(|e| TsdbError::io(format!("read {}", src.display()), e))?;
    for e in entries.flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            link_tree(&e.path(), &to)?;
        } else {
            fs::hard_link(e.path(), &to)
                .map_err(|err| TsdbError::io(format!("link {}", e.path().display()), err))?;
        }
    }
    Ok(())
}

/// `20060102T150405Z`, as Prometheus names snapshots.
fn utc_stamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ranges_follow_prometheus() {
        let h = 3_600_000;
        assert_eq!(block_ranges(2 * h, 168 * h / 10), vec![2 * h, 6 * h]);
        assert_eq!(
            block_ranges(2 * h, 31 * 24 * h),
            vec![2 * h, 6 * h, 18 * h, 54 * h, 162 * h, 486 * h]
        );
    }

    #[test]
    fn utc_stamp_formats_like_go() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_700_000_000_000), "20231114T221320Z");
    }

    #[test]
    fn intervals_merge() {
        let mut v = vec![
            Interval::new(5, 10),
            Interval::new(0, 4),
            Interval::new(20, 30),
        ];
        normalize_intervals(&mut v);
        assert_eq!(v, vec![Interval::new(0, 10), Interval::new(20, 30)]);
    }
}
