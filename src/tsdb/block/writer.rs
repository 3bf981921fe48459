//! Writes a complete block directory from a sorted stream of series.

use std::fs;
use std::path::Path;

use bytes::Bytes;

use super::chunks::{ChunkWriter, DEFAULT_SEGMENT_SIZE};
use super::meta::{BlockMeta, META_VERSION_1, write_meta};
use super::tombstones::{Tombstones, write_tombstones};
use super::{BlockError, fsync_dir};
use crate::model::Labels;
use crate::tsdb::index::{ChunkMeta, IndexWriter};

/// One series to write: its labels and encoded chunks in time order.
#[derive(Debug, Clone)]
pub struct BlockSeries {
    pub labels: Labels,
    /// `(min_t, max_t, encoding, data)` per chunk; times inclusive, chunks not
    /// overlapping.
    pub chunks: Vec<(i64, i64, u8, Bytes)>,
    /// Samples across all chunks, for the meta statistics.
    pub num_samples: u64,
}

/// Suffix of the directory a block is assembled in before it is renamed into place
/// (the name Prometheus uses, so its startup clean-up removes leftovers too).
pub const TMP_FOR_CREATION_SUFFIX: &str = ".tmp-for-creation";

/// Writes a complete block under `parent/<ulid>` atomically: everything goes to
/// `parent/<ulid>.tmp-for-creation` first, files and dirs are fsynced, then renamed.
///
/// `symbols` must hold every label name and value of `series`, sorted and unique;
/// `series` must be sorted by labels. Series without chunks are skipped (Prometheus
/// drops them too). The statistics of `meta` are filled in; its time range,
/// compaction info and extra fields are written as given. On error the temporary
/// directory is removed and nothing appears under `parent/<ulid>`.
pub fn write_block<'a, I>(
    parent: &Path,
    meta: BlockMeta,
    symbols: impl IntoIterator<Item = &'a str>,
    series: I,
) -> Result<BlockMeta, BlockError>
where
    I: Iterator<Item = Result<BlockSeries, BlockError>>,
{
    write_block_with_segment_size(parent, meta, symbols, series, DEFAULT_SEGMENT_SIZE)
}

/// [`write_block`] with a chunk segment limit other than 512 MiB (clamped to it):
/// tests and tools use small segments to exercise multi-segment blocks.
pub fn write_block_with_segment_size<'a, I>(
    parent: &Path,
    mut meta: BlockMeta,
    symbols: impl IntoIterator<Item = &'a str>,
    series: I,
    segment_size: u64,
) -> Result<BlockMeta, BlockError>
where
    I: Iterator<Item = Result<BlockSeries, BlockError>>,
{
    let name = meta.ulid.to_string();
    let final_dir = parent.join(&name);
    if final_dir.exists() {
        return Err(BlockError::Invalid(format!(
            "block directory {} already exists",
            final_dir.display()
        )));
    }
    let tmp_dir = parent.join(format!("{name}{TMP_FOR_CREATION_SUFFIX}"));
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir)
            .map_err(|e| BlockError::io(format!("remove stale {}", tmp_dir.display()), e))?;
    }
    fs::create_dir_all(&tmp_dir)
        .map_err(|e| BlockError::io(format!("create {}", tmp_dir.display()), e))?;

    match populate(&tmp_dir, &mut meta, symbols, series, segment_size) {
        Ok(()) => {}
        Err(e) => {
            remove_quietly(&tmp_dir);
            return Err(e);
        }
    }
    if let Err(e) = fs::rename(&tmp_dir, &final_dir) {
        remove_quietly(&tmp_dir);
        return Err(BlockError::io(
            format!("rename {} to {}", tmp_dir.display(), final_dir.display()),
            e,
        ));
    }
    fsync_dir(parent)?;
    tracing::debug!(
        block = %name,
        series = meta.stats.num_series,
        chunks = meta.stats.num_chunks,
        samples = meta.stats.num_samples,
        "wrote block"
    );
    Ok(meta)
}

fn remove_quietly(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove temporary block directory");
    }
}

fn populate<'a, I>(
    dir: &Path,
    meta: &mut BlockMeta,
    symbols: impl IntoIterator<Item = &'a str>,
    series: I,
    segment_size: u64,
) -> Result<(), BlockError>
where
    I: Iterator<Item = Result<BlockSeries, BlockError>>,
{
    let mut chunks = ChunkWriter::with_segment_size(&dir.join("chunks"), segment_size)?;
    let mut index = IndexWriter::create(&dir.join("index"))?;
    index.add_symbols(symbols)?;

    let (mut num_series, mut num_chunks, mut num_samples) = (0u64, 0u64, 0u64);
    let mut metas: Vec<ChunkMeta> = Vec::new();
    for s in series {
        let s = s?;
        if s.chunks.is_empty() {
            continue;
        }
        metas.clear();
        for (min_t, max_t, encoding, data) in &s.chunks {
            metas.push(chunks.write_chunk(*min_t, *max_t, *encoding, data)?);
        }
        index.add_series(&s.labels, &metas)?;
        num_series += 1;
        num_chunks += metas.len() as u64;
        num_samples += s.num_samples;
    }
    chunks.finish()?;
    index.finish()?;

    meta.stats.num_series = num_series;
    meta.stats.num_chunks = num_chunks;
    meta.stats.num_samples = num_samples;
    meta.stats.num_tombstones = 0;
    meta.version = META_VERSION_1;
    write_tombstones(dir, &Tombstones::new())?;
    write_meta(dir, meta)?;
    fsync_dir(dir)
}
