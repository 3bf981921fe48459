//! Persistent blocks in Prometheus's on-disk layout, readable by Prometheus and
//! `promtool` and able to read theirs:
//!
//! ```text
//! <ulid>/
//!   meta.json    identity, time range [minTime, maxTime), stats, compaction history
//!   index        symbols, series, postings (see crate::tsdb::index)
//!   chunks/      000001, 000002, … segments of encoded chunks (see `chunks`)
//!   tombstones   deleted intervals per series (see `tombstones`)
//! ```
//!
//! A block is immutable once its directory has its final name: [`write_block`]
//! assembles it in `<ulid>.tmp-for-creation` and renames it only when every file is
//! fsynced, so a crash never leaves a half-written block under a ULID name.

pub mod chunks;
pub mod meta;
pub mod tombstones;
pub mod writer;

use std::fs;
use std::path::{Path, PathBuf};

pub use chunks::{ChunkReader, ChunkWriter};
pub use meta::{BlockDesc, BlockMeta, BlockStats, Compaction, read_meta, write_meta};
pub use tombstones::{Tombstones, read_tombstones, write_tombstones};
pub use writer::{BlockSeries, write_block};

use crate::tsdb::index::{IndexError, IndexReader};

/// Errors from reading or writing blocks.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A chunk segment or tombstones file does not follow the format.
    #[error("corrupt block data: {0}")]
    Corrupt(String),
    /// meta.json is missing fields, malformed or of an unknown version.
    #[error("block meta: {0}")]
    Meta(String),
    /// The caller asked for something the format cannot hold or that conflicts with
    /// what is on disk (an existing block directory, an oversized chunk).
    #[error("invalid block write: {0}")]
    Invalid(String),
}

impl BlockError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BlockError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Fsyncs a directory so that entries created or renamed in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), BlockError> {
    let f = fs::File::open(dir)
        .map_err(|e| BlockError::io(format!("open dir {} for fsync", dir.display()), e))?;
    f.sync_all()
        .map_err(|e| BlockError::io(format!("fsync dir {}", dir.display()), e))
}

/// Total size of the regular files under `dir` (one level of subdirectories, which
/// covers `chunks/`).
fn dir_size(dir: &Path, depth: u32) -> Result<u64, BlockError> {
    let mut total = 0;
    let rd =
        fs::read_dir(dir).map_err(|e| BlockError::io(format!("read dir {}", dir.display()), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| BlockError::io(format!("read dir {}", dir.display()), e))?;
        let md = entry
            .metadata()
            .map_err(|e| BlockError::io(format!("stat {}", entry.path().display()), e))?;
        if md.is_file() {
            total += md.len();
        } else if md.is_dir() && depth > 0 {
            total += dir_size(&entry.path(), depth - 1)?;
        }
    }
    Ok(total)
}

/// An open, immutable block: its meta, index, chunks and tombstones.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
    size: u64,
}

impl Block {
    /// Opens the block in `dir`, validating meta.json, the index headers and tables,
    /// the chunk segment headers and the tombstones.
    pub fn open(dir: &Path) -> Result<Self, BlockError> {
        let meta = read_meta(dir)?;
        let index = IndexReader::open(&dir.join("index"))?;
        let chunks = ChunkReader::open(&dir.join("chunks"))?;
        let tombstones = read_tombstones(dir)?;
        let size = dir_size(dir, 1)?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            tombstones,
            size,
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Bytes of all files of the block on disk, measured at open.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use bytes::Bytes;
    use ulid::Ulid;

    use super::*;
    use crate::model::Labels;
    use crate::tsdb::index::ChunkMeta;

    const XOR: u8 = 1;

    /// Fake chunk payloads: distinct bytes per (series, chunk) so mix-ups show.
    fn payload(series: usize, chunk: usize, len: usize) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| (series * 31 + chunk * 7 + i) as u8)
                .collect::<Vec<u8>>(),
        )
    }

    fn test_series(n: usize, chunks_per_series: usize, chunk_len: usize) -> Vec<BlockSeries> {
        let mut out: Vec<BlockSeries> = (0..n)
            .map(|i| BlockSeries {
                labels: Labels::from_pairs([
                    ("__name__", "metric".to_string()),
                    ("i", format!("{i:04}")),
                    ("parity", (i % 2).to_string()),
                ]),
                chunks: (0..chunks_per_series)
                    .map(|c| {
                        let t = (c as i64) * 1000;
                        (t, t + 999, XOR, payload(i, c, chunk_len))
                    })
                    .collect(),
                num_samples: (chunks_per_series * 120) as u64,
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    fn symbols(series: &[BlockSeries]) -> BTreeSet<String> {
        series
            .iter()
            .flat_map(|s| {
                s.labels
                    .iter()
                    .flat_map(|l| [l.name.to_string(), l.value.to_string()])
            })
            .collect()
    }

    #[test]
    fn write_block_then_open_round_trips() {
        let parent = tempfile::tempdir().unwrap();
        let series = test_series(10, 3, 50);
        let syms = symbols(&series);
        let id = Ulid::new();
        let mut meta = BlockMeta::new(id, 0, 3000, 1, vec![id], Vec::new());
        meta.extra
            .insert("thanos".into(), serde_json::json!({"source": "odin"}));
        let written = write_block(
            parent.path(),
            meta,
            syms.iter().map(|s| s.as_str()),
            series.clone().into_iter().map(Ok),
        )
        .unwrap();
        assert_eq!(written.stats.num_series, 10);
        assert_eq!(written.stats.num_chunks, 30);
        assert_eq!(written.stats.num_samples, 3600);

        let dir = parent.path().join(id.to_string());
        assert!(
            !parent
                .path()
                .join(format!("{id}.tmp-for-creation"))
                .exists()
        );
        let block = Block::open(&dir).unwrap();
        assert_eq!(block.meta(), &written);
        assert_eq!(block.meta().extra["thanos"]["source"], "odin");
        assert_eq!(block.dir(), dir.as_path());
        assert!(block.tombstones().is_empty());
        assert_eq!(fs::metadata(dir.join("tombstones")).unwrap().len(), 9);

        let ix = block.index();
        let ids = ix.all_postings().unwrap();
        assert_eq!(ids.len(), 10);
        for (id, want) in ids.iter().zip(&series) {
            let (labels, metas) = ix.series(*id).unwrap();
            assert_eq!(labels, want.labels);
            assert_eq!(metas.len(), want.chunks.len());
            for (m, (min_t, max_t, enc, data)) in metas.iter().zip(&want.chunks) {
                assert_eq!((m.min_t, m.max_t), (*min_t, *max_t));
                let (got_enc, got) = block.chunks().chunk(m.chunk_ref).unwrap();
                assert_eq!(got_enc, *enc);
                assert_eq!(got, &data[..]);
            }
        }
        assert_eq!(ix.postings("parity", "1").unwrap().len(), 5);

        let on_disk: u64 = ["index", "meta.json", "tombstones", "chunks/000001"]
            .iter()
            .map(|f| fs::metadata(dir.join(f)).unwrap().len())
            .sum();
        assert_eq!(block.size_bytes(), on_disk);
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let parent = tempfile::tempdir().unwrap();
        let mut series = test_series(3, 1, 10);
        series.swap(0, 2); // Out of order.
        let syms = symbols(&series);
        let id = Ulid::new();
        let e = write_block(
            parent.path(),
            BlockMeta::new(id, 0, 1000, 1, vec![id], Vec::new()),
            syms.iter().map(|s| s.as_str()),
            series.into_iter().map(Ok),
        )
        .unwrap_err();
        assert!(
            matches!(e, BlockError::Index(IndexError::Invalid(_))),
            "{e}"
        );
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);

        // An error from the series stream aborts the write too.
        let series = test_series(3, 1, 10);
        let syms = symbols(&series);
        let stream = series
            .into_iter()
            .map(Ok)
            .chain(std::iter::once(Err(BlockError::Corrupt(
                "source went away".into(),
            ))));
        let e = write_block(
            parent.path(),
            BlockMeta::new(id, 0, 1000, 1, vec![id], Vec::new()),
            syms.iter().map(|s| s.as_str()),
            stream,
        )
        .unwrap_err();
        assert!(e.to_string().contains("source went away"));
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn chunk_refs_span_segments() {
        let parent = tempfile::tempdir().unwrap();
        // 40 chunks of ~110 bytes in 1 KiB segments: several segments.
        let series = test_series(10, 4, 100);
        let syms = symbols(&series);
        let id = Ulid::new();
        writer::write_block_with_segment_size(
            parent.path(),
            BlockMeta::new(id, 0, 4000, 1, vec![id], Vec::new()),
            syms.iter().map(|s| s.as_str()),
            series.clone().into_iter().map(Ok),
            1024,
        )
        .unwrap();
        let block = Block::open(&parent.path().join(id.to_string())).unwrap();
        let segs = block.chunks().segment_count();
        assert!(segs >= 4, "{segs} segments");
        for seq in 1..=segs {
            let p = block.dir().join("chunks").join(format!("{seq:06}"));
            assert!(fs::metadata(&p).unwrap().len() <= 1024, "{}", p.display());
        }
        let mut seen_segments = BTreeSet::new();
        let ix = block.index();
        for (id, want) in ix.all_postings().unwrap().iter().zip(&series) {
            let (_, metas) = ix.series(*id).unwrap();
            for (m, (_, _, _, data)) in metas.iter().zip(&want.chunks) {
                seen_segments.insert(m.chunk_ref >> 32);
                assert_eq!(block.chunks().chunk(m.chunk_ref).unwrap().1, &data[..]);
            }
        }
        assert_eq!(seen_segments, (0..segs as u64).collect());
    }

    #[test]
    fn chunk_writer_cuts_segments_and_reader_checks_bounds_and_crc() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::with_segment_size(&cdir, 64).unwrap();
        let a = w.write_chunk(0, 10, XOR, &[1u8; 30]).unwrap();
        let b = w.write_chunk(11, 20, XOR, &[2u8; 30]).unwrap();
        // Larger than a whole segment: gets a segment of its own.
        let c = w.write_chunk(21, 30, 2, &[3u8; 200]).unwrap();
        let total = w.finish().unwrap();
        assert_eq!(
            a,
            ChunkMeta {
                min_t: 0,
                max_t: 10,
                chunk_ref: 8
            }
        );
        assert_eq!(b.chunk_ref, (1 << 32) | 8);
        assert_eq!(c.chunk_ref, (2 << 32) | 8);
        let files: Vec<_> = ["000001", "000002", "000003"]
            .iter()
            .map(|f| fs::metadata(cdir.join(f)).unwrap().len())
            .collect();
        assert_eq!(total, files.iter().sum::<u64>());
        assert_eq!(files[0], 8 + 1 + 1 + 30 + 4);

        let r = ChunkReader::open(&cdir).unwrap();
        assert_eq!(r.chunk(a.chunk_ref).unwrap(), (XOR, &[1u8; 30][..]));
        assert_eq!(r.chunk(c.chunk_ref).unwrap(), (2, &[3u8; 200][..]));
        for bad in [3u64 << 32 | 8, 0, 7, 9, 1000, u64::MAX] {
            assert!(r.chunk(bad).is_err(), "ref {bad}");
        }
        drop(r);

        // Flip a data byte: checksum mismatch.
        let p = cdir.join("000001");
        let mut raw = fs::read(&p).unwrap();
        raw[20] ^= 0xff;
        fs::write(&p, &raw).unwrap();
        let r = ChunkReader::open(&cdir).unwrap();
        let e = r.chunk(a.chunk_ref).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        // Truncated segment: bounds error, not a panic.
        for len in 8..raw.len() {
            fs::write(&p, &raw[..len]).unwrap();
            let r = ChunkReader::open(&cdir).unwrap();
            assert!(r.chunk(a.chunk_ref).is_err());
        }
        fs::write(&p, &raw[..5]).unwrap();
        assert!(ChunkReader::open(&cdir).is_err());
        raw[0] = 0;
        fs::write(&p, &raw).unwrap();
        assert!(
            ChunkReader::open(&cdir)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
    }

    #[test]
    fn empty_block_is_valid() {
        let parent = tempfile::tempdir().unwrap();
        let id = Ulid::new();
        let meta = write_block(
            parent.path(),
            BlockMeta::new(id, 0, 1, 1, vec![id], Vec::new()),
            std::iter::empty(),
            std::iter::empty(),
        )
        .unwrap();
        assert_eq!(meta.stats, BlockStats::default());
        let block = Block::open(&parent.path().join(id.to_string())).unwrap();
        assert!(block.index().all_postings().unwrap().is_empty());
        assert_eq!(block.chunks().segment_count(), 0);
        // Writing the same ULID again is refused.
        assert!(
            write_block(
                parent.path(),
                BlockMeta::new(id, 0, 1, 1, vec![id], Vec::new()),
                std::iter::empty(),
                std::iter::empty()
            )
            .is_err()
        );
    }

    fn fixture_block_dir() -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/promtool-block");
        fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .unwrap()
    }

    /// Re-writing every series and chunk of the promtool-written fixture with our
    /// writer reproduces Prometheus's index, chunk and tombstone files byte for byte.
    #[test]
    fn rewriting_promtool_block_is_byte_identical() {
        let src_dir = fixture_block_dir();
        let src = Block::open(&src_dir).unwrap();
        let ix = src.index();
        let series: Vec<Result<BlockSeries, BlockError>> = ix
            .all_postings()
            .unwrap()
            .iter()
            .map(|id| {
                let (labels, metas) = ix.series(*id)?;
                let mut chunks = Vec::new();
                for m in metas {
                    let (enc, data) = src.chunks().chunk(m.chunk_ref)?;
                    chunks.push((m.min_t, m.max_t, enc, Bytes::copy_from_slice(data)));
                }
                Ok(BlockSeries {
                    labels,
                    chunks,
                    num_samples: 0,
                })
            })
            .collect();
        let parent = tempfile::tempdir().unwrap();
        let id = Ulid::new();
        let sm = src.meta();
        write_block(
            parent.path(),
            BlockMeta::new(id, sm.min_time, sm.max_time, 1, vec![id], Vec::new()),
            ix.symbols().iter().map(|s| &**s),
            series.into_iter(),
        )
        .unwrap();
        let dst_dir = parent.path().join(id.to_string());
        for f in ["index", "chunks/000001", "tombstones"] {
            assert!(
                fs::read(src_dir.join(f)).unwrap() == fs::read(dst_dir.join(f)).unwrap(),
                "{f} differs from promtool's"
            );
        }
    }

    /// Parses the tiny OpenMetrics subset of the fixture input: `name{k="v",...} value ts`
    /// with timestamps in seconds, into series -> timestamps in ms.
    fn parse_openmetrics(text: &str) -> BTreeMap<Labels, Vec<i64>> {
        let mut out: BTreeMap<Labels, Vec<i64>> = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (series, rest) = match line.find('}') {
                Some(i) => line.split_at(i + 1),
                None => line.split_at(line.find(' ').unwrap()),
            };
            let (name, lbls) = match series.find('{') {
                Some(i) => (&series[..i], &series[i + 1..series.len() - 1]),
                None => (series, ""),
            };
            let mut pairs = vec![("__name__".to_string(), name.to_string())];
            for kv in lbls.split(',').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap();
                pairs.push((k.to_string(), v.trim_matches('"').to_string()));
            }
            let ts = rest.split_whitespace().nth(1).unwrap();
            // Exact decimal seconds -> ms (the fixture only uses binary-exact fractions).
            let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
            let frac_ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
            let t = secs.parse::<i64>().unwrap() * 1000 + frac_ms;
            out.entry(Labels::from_pairs(pairs)).or_default().push(t);
        }
        out
    }

    #[test]
    fn reads_promtool_written_block() {
        let block_dir = fixture_block_dir();
        let input =
            parse_openmetrics(&fs::read_to_string(block_dir.with_file_name("input.om")).unwrap());
        let block = Block::open(&block_dir).unwrap();
        let meta = block.meta();
        assert_eq!(
            meta.ulid.to_string(),
            block_dir.file_name().unwrap().to_str().unwrap()
        );
        let all_ts: Vec<i64> = input.values().flatten().copied().collect();
        assert_eq!(meta.min_time, *all_ts.iter().min().unwrap());
        assert_eq!(meta.max_time, all_ts.iter().max().unwrap() + 1);
        assert_eq!(meta.stats.num_series, input.len() as u64);
        assert_eq!(meta.stats.num_samples, all_ts.len() as u64);
        assert_eq!(meta.compaction.level, 1);

        let ix = block.index();
        let ids = ix.all_postings().unwrap();
        assert_eq!(ids.len(), input.len());
        let mut chunks = 0;
        for (id, (want_labels, ts)) in ids.iter().zip(&input) {
            let (labels, metas) = ix.series(*id).unwrap();
            assert_eq!(&labels, want_labels);
            // Every fixture series has fewer than 120 samples: one chunk each.
            assert_eq!(metas.len(), 1, "{labels}");
            let m = metas[0];
            assert_eq!((m.min_t, m.max_t), (ts[0], *ts.last().unwrap()), "{labels}");
            let (enc, data) = block.chunks().chunk(m.chunk_ref).unwrap();
            assert_eq!(enc, XOR);
            // An XOR chunk starts with its sample count (big-endian u16).
            assert_eq!(
                u16::from_be_bytes([data[0], data[1]]) as usize,
                ts.len(),
                "{labels}"
            );
            chunks += metas.len();
        }
        assert_eq!(meta.stats.num_chunks, chunks as u64);

        assert_eq!(
            ix.label_names(),
            vec!["__name__", "code", "instance", "job", "method", "sensor"]
        );
        assert_eq!(
            ix.label_values("__name__"),
            vec!["http_requests_total", "node_temp_celsius", "up"]
        );
        assert_eq!(ix.postings("method", "get").unwrap(), ids[..2].to_vec());
        assert_eq!(
            ix.postings_for_values("__name__", |v| v != "up").unwrap(),
            ids[..3].to_vec()
        );
        assert!(block.tombstones().is_empty());
        let files: u64 = ["index", "meta.json", "tombstones", "chunks/000001"]
            .iter()
            .map(|f| fs::metadata(block_dir.join(f)).unwrap().len())
            .sum();
        assert_eq!(block.size_bytes(), files);
    }
}
