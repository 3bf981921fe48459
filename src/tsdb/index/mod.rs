//! The block `index` file in Prometheus's on-disk format (index format version 2), so
//! that blocks written by ODIN open in Prometheus and `promtool`, and Prometheus blocks
//! open in ODIN.
//!
//! Layout (all integers big-endian unless said otherwise; every section that starts
//! with a 4-byte `len` ends with a CRC-32C over exactly those `len` bytes, and `len`
//! counts neither itself nor the CRC):
//!
//! ```text
//! magic 0xBAAAD700 <4b> | version 2 <1b>
//! symbols:   len <4b> | #symbols <4b> | (len <uvarint> | utf-8 bytes)... | crc <4b>
//! series:    each entry starts 16-byte aligned; its ID is offset/16:
//!            len <uvarint> | #labels <uvarint> | (name ref, value ref <uvarint32>)...
//!            | #chunks <uvarint> | mint <varint> | maxt-mint <uvarint> | ref <uvarint>
//!            | (mint-prev maxt <uvarint> | maxt-mint <uvarint> | ref delta <varint>)...
//!            | crc <4b>   (here len is a uvarint; the CRC covers the len bytes after it)
//! label indices (one per name, 4-byte aligned, legacy but still written):
//!            len | #names=1 | #entries | value symbol refs <4b>... | crc
//! postings (4-byte aligned): len | #entries | series IDs <4b>... | crc
//!            the first list is the empty label pair ("", ""): every series
//! label offset table:    len | #entries | (1 <uvarint> | name <uvarint str> | offset <uvarint>)... | crc
//! postings offset table: len | #entries | (2 | name | value | offset)... | crc,
//!            sorted by name then value
//! TOC: symbols, series, label indices, label offset table, postings,
//!      postings offset table offsets <8b each> | crc <4b>
//! ```
//!
//! Symbol references are positions in the sorted symbol table. Because series are
//! written in label order and IDs grow with the file offset, a sorted list of IDs is a
//! list of series sorted by labels, which is what makes postings intersections cheap.

pub mod encoding;
mod reader;
mod writer;

pub use reader::IndexReader;
pub(crate) use reader::{decode_postings, decode_series, parse_toc};
pub use writer::IndexWriter;

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// The only index format version we write and read (Prometheus 2.x writes it too).
pub const INDEX_FORMAT_V2: u8 = 2;
/// Magic + version.
pub const INDEX_HEADER_LEN: usize = 5;
/// Six 8-byte section offsets and a CRC.
pub const INDEX_TOC_LEN: usize = 6 * 8 + 4;
/// Series entries are aligned so that a 4-byte ID addresses 64 GiB of index.
pub const SERIES_ALIGNMENT: u64 = 16;

/// Where one chunk of a series lives and which time range it covers (both ends
/// inclusive, milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_t: i64,
    pub max_t: i64,
    /// Segment index (0-based position among the `chunks/` files) in the upper 32
    /// bits, byte offset in that segment in the lower 32 bits.
    pub chunk_ref: u64,
}

/// Errors from writing or reading an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The file does not follow the format (bad magic, checksum, bounds, ...).
    #[error("corrupt index: {0}")]
    Corrupt(String),
    /// The writer was used wrongly: series out of order, unknown symbol, calls out
    /// of sequence, a limit of the format exceeded.
    #[error("invalid index write: {0}")]
    Invalid(String),
}

impl IndexError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        IndexError::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::model::Labels;

    type SeriesSpec = (Labels, Vec<ChunkMeta>);

    fn symbols_of(series: &[SeriesSpec]) -> BTreeSet<String> {
        let mut syms = BTreeSet::new();
        for (ls, _) in series {
            for l in ls.iter() {
                syms.insert(l.name.to_string());
                syms.insert(l.value.to_string());
            }
        }
        syms
    }

    fn write_index(path: &Path, series: &[SeriesSpec]) -> Vec<u64> {
        let syms = symbols_of(series);
        let mut w = IndexWriter::create(path).unwrap();
        w.add_symbols(syms.iter().map(|s| s.as_str())).unwrap();
        let ids = series
            .iter()
            .map(|(ls, cs)| w.add_series(ls, cs).unwrap())
            .collect();
        w.finish().unwrap();
        ids
    }

    fn meta(min_t: i64, max_t: i64, chunk_ref: u64) -> ChunkMeta {
        ChunkMeta {
            min_t,
            max_t,
            chunk_ref,
        }
    }

    fn sample_series() -> Vec<SeriesSpec> {
        vec![
            (
                Labels::from_pairs([("__name__", "up"), ("instance", "a:9100"), ("job", "node")]),
                vec![
                    meta(1000, 2000, 8),
                    meta(2001, 9000, 40),
                    meta(9500, 9500, 1u64 << 32 | 8),
                ],
            ),
            (
                Labels::from_pairs([("__name__", "up"), ("instance", "b:9100"), ("job", "node")]),
                vec![meta(-5000, -10, (1u64 << 32) | 100)],
            ),
            (
                Labels::from_pairs([("__name__", "up"), ("job", "prometheus")]),
                vec![],
            ),
            (
                Labels::from_pairs([("__name__", "x"), ("job", "node"), ("zone", "eu")]),
                vec![meta(i64::MIN / 2, i64::MAX / 2, (2u64 << 32) | 8)],
            ),
        ]
    }

    #[test]
    fn round_trip_labels_chunks_postings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let series = sample_series();
        let ids = write_index(&path, &series);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));

        let r = IndexReader::open(&path).unwrap();
        assert_eq!(r.symbols_count(), symbols_of(&series).len());
        assert_eq!(r.size_bytes(), std::fs::metadata(&path).unwrap().len());
        for (id, (ls, cs)) in ids.iter().zip(&series) {
            let (got_ls, got_cs) = r.series(*id).unwrap();
            assert_eq!(&got_ls, ls);
            assert_eq!(&got_cs, cs);
        }
        assert_eq!(r.all_postings().unwrap(), ids);
        assert_eq!(
            r.postings("job", "node").unwrap(),
            vec![ids[0], ids[1], ids[3]]
        );
        assert_eq!(r.postings("__name__", "up").unwrap(), ids[..3].to_vec());
        assert_eq!(r.postings("zone", "eu").unwrap(), vec![ids[3]]);
        assert!(r.postings("job", "nope").unwrap().is_empty());
        assert!(r.postings("nope", "node").unwrap().is_empty());
        assert_eq!(r.label_names(), vec!["__name__", "instance", "job", "zone"]);
        assert_eq!(r.label_values("job"), vec!["node", "prometheus"]);
        assert_eq!(r.label_values("instance"), vec!["a:9100", "b:9100"]);
        assert!(r.label_values("nope").is_empty());
        assert_eq!(
            r.postings_for_values("job", |v| v.starts_with('p') || v == "node")
                .unwrap(),
            ids
        );
        assert_eq!(
            r.postings_for_values("instance", |v| v.starts_with('b'))
                .unwrap(),
            vec![ids[1]]
        );
        assert!(r.postings_for_values("job", |_| false).unwrap().is_empty());
        // An ID that is not a series start is an error, not a panic.
        assert!(r.series(u64::MAX).is_err());
        assert!(r.series(0).is_err());
    }

    #[test]
    fn empty_index_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let w = IndexWriter::create(&path).unwrap();
        w.finish().unwrap();
        let r = IndexReader::open(&path).unwrap();
        assert!(r.all_postings().unwrap().is_empty());
        assert!(r.label_names().is_empty());
        assert_eq!(r.symbols_count(), 0);
    }

    #[test]
    fn writer_rejects_misuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "2")]);

        let mut w = IndexWriter::create(&path).unwrap();
        assert!(matches!(
            w.add_symbols(["b", "a"]),
            Err(IndexError::Invalid(_))
        ));

        let mut w = IndexWriter::create(&path).unwrap();
        w.add_symbols(["1", "2", "a"]).unwrap();
        assert!(w.add_symbols(["z"]).is_err(), "symbols twice");
        w.add_series(&b, &[]).unwrap();
        let e = w.add_series(&a, &[]).unwrap_err();
        assert!(e.to_string().contains("out-of-order"), "{e}");
        assert!(w.add_series(&b, &[]).is_err(), "duplicate series");
        let unknown = Labels::from_pairs([("a", "3")]);
        let e = w.add_series(&unknown, &[]).unwrap_err();
        assert!(e.to_string().contains("\"3\""), "{e}");
        let c = Labels::from_pairs([("a", "2"), ("b", "1")]);
        // Overlapping chunks, inverted time range, backwards chunk refs.
        assert!(
            w.add_series(&c, &[meta(0, 10, 8), meta(10, 20, 9)])
                .is_err()
        );
        assert!(w.add_series(&c, &[meta(10, 0, 8)]).is_err());
        let mut w = IndexWriter::create(&path).unwrap();
        w.add_symbols(["1", "2", "a"]).unwrap();
        w.add_series(&a, &[meta(0, 1, 100)]).unwrap();
        assert!(w.add_series(&b, &[meta(0, 1, 50)]).is_err());
    }

    #[test]
    fn corrupt_and_truncated_files_give_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let series = sample_series();
        let ids = write_index(&path, &series);
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad");

        // Exercise every read path; any result is fine as long as nothing panics.
        let probe = |p: &Path| -> Result<(), IndexError> {
            let r = IndexReader::open(p)?;
            for id in &ids {
                let _ = r.series(*id);
            }
            let _ = r.all_postings();
            for n in r.label_names() {
                for v in r.label_values(&n) {
                    let _ = r.postings(&n, &v);
                }
                let _ = r.postings_for_values(&n, |_| true);
            }
            Ok(())
        };

        for len in 0..good.len() {
            std::fs::write(&bad, &good[..len]).unwrap();
            assert!(
                IndexReader::open(&bad).is_err() || probe(&bad).is_ok(),
                "len {len}"
            );
        }
        let mut detected_at_open = 0;
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            std::fs::write(&bad, &b).unwrap();
            if probe(&bad).is_err() {
                detected_at_open += 1;
            }
        }
        assert!(detected_at_open > 0);

        let mut b = good.clone();
        b[0] = 0;
        std::fs::write(&bad, &b).unwrap();
        let e = IndexReader::open(&bad).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
        let mut b = good.clone();
        b[4] = 1;
        std::fs::write(&bad, &b).unwrap();
        assert!(IndexReader::open(&bad).is_err());
        // A flipped byte in the symbol table is caught by its checksum at open.
        let mut b = good.clone();
        b[12] ^= 1;
        std::fs::write(&bad, &b).unwrap();
        let e = IndexReader::open(&bad).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        // A flipped byte in a series entry is caught when that series is read.
        let mut b = good.clone();
        let off = (ids[0] * SERIES_ALIGNMENT) as usize + 2;
        b[off] ^= 1;
        std::fs::write(&bad, &b).unwrap();
        let r = IndexReader::open(&bad).unwrap();
        assert!(matches!(r.series(ids[0]), Err(IndexError::Corrupt(_))));
        assert!(r.series(ids[1]).is_ok());
    }

    fn arb_series() -> impl Strategy<Value = Vec<SeriesSpec>> {
        let names = prop::sample::select(vec!["__name__", "a", "b", "job", "zz"]);
        let values = prop::sample::select(vec!["", "0", "1", "10", "x", "\u{e9}t\u{e9}"]);
        let labels = prop::collection::vec((names, values), 1..5);
        let chunks = prop::collection::vec((0i64..1000, 0i64..1000, 0u64..1000), 0..4);
        prop::collection::vec((labels, chunks), 0..40).prop_map(|raw| {
            let mut by_labels: BTreeMap<Labels, Vec<(i64, i64, u64)>> = BTreeMap::new();
            for (pairs, chunks) in raw {
                let ls = Labels::from_pairs(pairs);
                if !ls.is_empty() {
                    by_labels.insert(ls, chunks);
                }
            }
            let mut next_ref = 8u64;
            by_labels
                .into_iter()
                .map(|(ls, raw_chunks)| {
                    let mut t = -500i64;
                    let chunks = raw_chunks
                        .into_iter()
                        .map(|(gap, span, ref_gap)| {
                            let min_t = t + gap + 1;
                            let max_t = min_t + span;
                            t = max_t;
                            next_ref += ref_gap;
                            meta(min_t, max_t, next_ref)
                        })
                        .collect();
                    (ls, chunks)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn postings_match_naive_oracle(series in arb_series()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("index");
            let ids = write_index(&path, &series);
            let r = IndexReader::open(&path).unwrap();

            let mut oracle: BTreeMap<String, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
            for (id, (ls, _)) in ids.iter().zip(&series) {
                for l in ls.iter() {
                    oracle
                        .entry(l.name.to_string())
                        .or_default()
                        .entry(l.value.to_string())
                        .or_default()
                        .push(*id);
                }
            }
            prop_assert_eq!(r.all_postings().unwrap(), ids.clone());
            prop_assert_eq!(r.label_names(), oracle.keys().cloned().collect::<Vec<_>>());
            for (name, values) in &oracle {
                prop_assert_eq!(r.label_values(name), values.keys().cloned().collect::<Vec<_>>());
                for (value, want) in values {
                    prop_assert_eq!(&r.postings(name, value).unwrap(), want);
                }
                let keep = |v: &str| v.contains('0') || v.contains('x');
                let mut want: Vec<u64> = values
                    .iter()
                    .filter(|(v, _)| keep(v))
                    .flat_map(|(_, ids)| ids.iter().copied())
                    .collect();
                want.sort_unstable();
                prop_assert_eq!(r.postings_for_values(name, keep).unwrap(), want);
            }
            for (id, (ls, cs)) in ids.iter().zip(&series) {
                let (got_ls, got_cs) = r.series(*id).unwrap();
                prop_assert_eq!(&got_ls, ls);
                prop_assert_eq!(&got_cs, cs);
            }
        }
    }
}
