//! Building bucket blocks for tests and benchmarks: a block written with ODIN's
//! block writer, placed in a FILESYSTEM bucket as the shipper places it (files, then
//! meta.json with the `thanos` section).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::model::{Labels, Sample};
use crate::shipper::thanos::{block_files, thanos_section, with_thanos};
use crate::tsdb::block::meta::{META_FILENAME, encode_meta};
use crate::tsdb::block::{BlockMeta, BlockSeries, write_block};
use crate::tsdb::chunkenc::{ENCODING_XOR, encode_chunks};

/// Writes a level-1 block of `series` (sorted by labels, samples in time order)
/// covering `[min_t, max_t)` under `parent`; returns its directory.
pub fn write_local_block(
    parent: &Path,
    min_t: i64,
    max_t: i64,
    series: &[(Labels, Vec<Sample>)],
) -> anyhow::Result<PathBuf> {
    let ulid = ulid::Ulid::new();
    let meta = BlockMeta::new(ulid, min_t, max_t, 1, vec![ulid], Vec::new());
    let mut symbols = BTreeSet::new();
    for (labels, _) in series {
        for l in labels.iter() {
            symbols.insert(l.name.to_string());
            symbols.insert(l.value.to_string());
        }
    }
    let iter = series.iter().map(|(labels, samples)| {
        Ok(BlockSeries {
            labels: labels.clone(),
            chunks: encode_chunks(samples, 120)
                .into_iter()
                .map(|(lo, hi, c)| (lo, hi, ENCODING_XOR, Bytes::copy_from_slice(c.bytes())))
                .collect(),
            num_samples: samples.len() as u64,
        })
    });
    write_block(parent, meta, symbols.iter().map(String::as_str), iter)?;
    Ok(parent.join(ulid.to_string()))
}

/// Copies a local block into the FILESYSTEM bucket at `bucket`, meta.json last and
/// with the `thanos` section for `labels`, as the shipper uploads it.
pub fn upload_to_fs_bucket(
    block: &Path,
    bucket: &Path,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let id = block
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("block path has no name"))?;
    let to = bucket.join(id);
    std::fs::create_dir_all(to.join("chunks"))?;
    let files = block_files(block)?;
    for f in &files {
        if f.rel_path != META_FILENAME {
            std::fs::copy(block.join(&f.rel_path), to.join(&f.rel_path))?;
        }
    }
    let meta = crate::tsdb::block::read_meta(block)?;
    let meta = with_thanos(&meta, &thanos_section(labels, files))?;
    std::fs::write(to.join(META_FILENAME), encode_meta(&meta)?)?;
    Ok(())
}
