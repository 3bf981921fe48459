//! A block written locally and read back through the bucket path equals the local
//! read; the cache serves warm reads without GETs; a failing bucket is a warning.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;

use super::fixture::{upload_to_fs_bucket, write_local_block};
use super::*;
use crate::model::{Labels, Matcher, Sample};
use crate::storage::{ChunkQuerier, Querier, SelectHints};
use crate::tsdb::block::Block;

const H: i64 = 3_600_000;

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("cluster".to_string(), "test".to_string())])
}

fn series(block: i64, n: usize) -> Vec<(Labels, Vec<Sample>)> {
    let mut out: Vec<(Labels, Vec<Sample>)> = (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "m".to_string()),
                ("g", (i % 3).to_string()),
                ("i", format!("{i:04}")),
            ]);
            let samples = (0..480)
                .map(|k| {
                    let t = block * 2 * H + k * 15_000;
                    Sample::new(t, (i as f64) * 1000.0 + (t / 15_000) as f64 * 0.5)
                })
                .collect();
            (labels, samples)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    local: Vec<std::path::PathBuf>,
    bucket: std::path::PathBuf,
    rt: tokio::runtime::Runtime,
    store: Arc<BucketStore>,
    written: Vec<Vec<(Labels, Vec<Sample>)>>,
}

fn fixture(blocks: i64, n: usize, cache_bytes: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let (local_dir, bucket) = (tmp.path().join("local"), tmp.path().join("bucket"));
    std::fs::create_dir_all(&local_dir).unwrap();
    std::fs::create_dir_all(&bucket).unwrap();
    let mut local = Vec::new();
    let mut written = Vec::new();
    for b in 0..blocks {
        let s = series(b, n);
        let dir = write_local_block(&local_dir, b * 2 * H, (b + 1) * 2 * H, &s).unwrap();
        upload_to_fs_bucket(&dir, &bucket, &labels()).unwrap();
        local.push(dir);
        written.push(s);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fs: Arc<dyn object_store::ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&bucket).unwrap());
    let store = BucketStore::new(
        fs,
        rt.handle().clone(),
        BucketStoreOptions {
            cache_bytes,
            external_labels: labels(),
            ..BucketStoreOptions::default()
        },
    );
    Fixture {
        _tmp: tmp,
        local,
        bucket,
        rt,
        store,
        written,
    }
}

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(crate::model::MatchType::Equal, name, value).unwrap()
}

fn re(name: &str, value: &str) -> Matcher {
    Matcher::new(crate::model::MatchType::Regex, name, value).unwrap()
}

fn select(q: &dyn Querier, matchers: &[Matcher]) -> Vec<(Labels, Vec<Sample>)> {
    q.select(&SelectHints::default(), matchers)
        .unwrap()
        .map(|s| {
            let s = s.unwrap();
            (s.labels, s.samples)
        })
        .collect()
}

/// What was written for series matching `keep`, samples in `[lo, hi]`, merged over
/// blocks.
fn expected(
    f: &Fixture,
    keep: impl Fn(&Labels) -> bool,
    lo: i64,
    hi: i64,
) -> Vec<(Labels, Vec<Sample>)> {
    let mut by: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for block in &f.written {
        for (l, s) in block {
            if keep(l) {
                by.entry(l.clone())
                    .or_default()
                    .extend(s.iter().filter(|x| x.t >= lo && x.t <= hi));
            }
        }
    }
    by.into_iter().filter(|(_, s)| !s.is_empty()).collect()
}

#[test]
fn bucket_reads_equal_what_was_written_and_the_local_block_read() {
    let f = fixture(3, 300, 64 << 20);
    let summary = f.rt.block_on(f.store.sync()).unwrap();
    assert_eq!(summary.opened, 3);
    let q = BucketQuerier::new(&f.store, 0, 6 * H);
    let all = select(&q, &[eq("__name__", "m")]);
    assert_eq!(all, expected(&f, |_| true, 0, 6 * H));
    // Postings of several values, a time range cut inside blocks.
    let q = BucketQuerier::new(&f.store, H, 5 * H);
    let got = select(&q, &[re("g", "1|2"), re("i", "00.*")]);
    let want = expected(
        &f,
        |l| l.get("g") != Some("0") && l.get("i").is_some_and(|i| i.starts_with("00")),
        H,
        5 * H,
    );
    assert_eq!(got, want);
    assert!(
        Querier::warnings(&q).is_empty(),
        "{:?}",
        Querier::warnings(&q)
    );

    // Chunks are the local block's bytes.
    let local = Block::open(&f.local[0]).unwrap();
    let q = BucketQuerier::new(&f.store, 0, 2 * H - 1);
    let chunks: Vec<_> = q
        .select_chunks(&[eq("i", "0007")])
        .unwrap()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(chunks.len(), 1);
    let id = local.index().postings("i", "0007").unwrap()[0];
    let (labels, metas) = local.index().series(id).unwrap();
    assert_eq!(chunks[0].labels, labels);
    let local_bytes: Vec<&[u8]> = metas
        .iter()
        .map(|m| local.chunks().chunk(m.chunk_ref).unwrap().1)
        .collect();
    let bucket_bytes: Vec<&[u8]> = chunks[0].chunks.iter().map(|c| &c.bytes[..]).collect();
    assert_eq!(bucket_bytes, local_bytes);

    // Labels from the index-header.
    let q = BucketQuerier::new(&f.store, 0, 6 * H);
    assert_eq!(q.label_values("g", &[]).unwrap(), ["0", "1", "2"]);
    assert_eq!(
        q.label_names(&[eq("i", "0001")]).unwrap(),
        ["__name__", "g", "i"]
    );
}

#[test]
fn warm_reads_come_from_the_cache_and_a_vanished_bucket_is_a_warning() {
    let f = fixture(2, 50, 64 << 20);
    f.rt.block_on(f.store.sync()).unwrap();
    let m = [eq("g", "1")];
    let cold = select(&BucketQuerier::new(&f.store, 0, 4 * H), &m);
    let misses = f.store.cache().stats().misses;
    assert!(misses > 0);
    // The bucket goes away (a file where its directory was: listing fails too):
    // what is cached still answers, without a warning.
    std::fs::rename(&f.bucket, f.bucket.with_extension("gone")).unwrap();
    std::fs::write(&f.bucket, b"not a bucket").unwrap();
    let q = BucketQuerier::new(&f.store, 0, 4 * H);
    let warm = select(&q, &m);
    assert_eq!(warm, cold);
    assert!(
        Querier::warnings(&q).is_empty(),
        "{:?}",
        Querier::warnings(&q)
    );
    assert_eq!(f.store.cache().stats().misses, misses);
    // What is not cached fails: the select answers (empty), with warnings.
    let q = BucketQuerier::new(&f.store, 0, 4 * H);
    let got = select(&q, &[eq("g", "2")]);
    assert!(got.is_empty());
    let w = Querier::warnings(&q);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("bucket block "), "{w:?}");
}

#[test]
fn a_small_cache_evicts_and_reads_stay_correct() {
    let f = fixture(2, 100, 16 << 10);
    f.rt.block_on(f.store.sync()).unwrap();
    for _ in 0..2 {
        let got = select(
            &BucketQuerier::new(&f.store, 0, 4 * H),
            &[eq("__name__", "m")],
        );
        assert_eq!(got, expected(&f, |_| true, 0, 4 * H));
        assert!(f.store.cache().stats().size_bytes <= 16 << 10);
    }
}

fn remove_meta(bucket: &Path, local: &Path) {
    let id = local.file_name().unwrap();
    std::fs::remove_file(bucket.join(id).join("meta.json")).unwrap();
}

#[test]
fn partial_uploads_downsampled_blocks_and_other_labels_are_skipped() {
    let f = fixture(3, 5, 1 << 20);
    // Block 0: an interrupted upload (no meta.json).
    remove_meta(&f.bucket, &f.local[0]);
    // Block 1: downsampled.
    let id1 = f.local[1].file_name().unwrap();
    let meta_path = f.bucket.join(id1).join("meta.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let text = text.replace("\"resolution\": 0", "\"resolution\": 300000");
    std::fs::write(&meta_path, text).unwrap();
    // A block of another cluster.
    let other =
        write_local_block(&f.bucket.join("..").join("local"), 0, 2 * H, &series(0, 2)).unwrap();
    let mut labels = labels();
    labels.insert("cluster".into(), "other".into());
    upload_to_fs_bucket(&other, &f.bucket, &labels).unwrap();
    let summary = f.rt.block_on(f.store.sync()).unwrap();
    assert_eq!(summary.blocks, 1, "{summary:?}");
    assert_eq!(summary.skipped, 3, "{summary:?}");
    assert_eq!(f.store.blocks()[0].meta().min_time, 4 * H);
}
