//! Long-term queries: the same PromQL range query over a week of data on local
//! blocks, and on the same blocks read from a FILESYSTEM bucket with a cold cache
//! (emptied before every iteration) and a warm one. Prints the ratios.
//!
//! Data: `BUCKET_BENCH_SERIES` series (default 10,000) with one sample a minute for
//! 7 days, as 84 two-hour blocks written with ODIN's block writer. Query:
//! `sum(rate(bench_metric{g="0"}[5m]))` (a tenth of the series) over the week at a
//! 1 h step. A FILESYSTEM bucket has no network latency: the cold numbers are a
//! floor for S3.

// A benchmark fails loudly on bad setup, as a test does.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use odin::bucketstore::fixture::{upload_to_fs_bucket, write_local_block};
use odin::bucketstore::{BucketStore, BucketStoreOptions, LongTermQueryable};
use odin::model::{Labels, Sample};
use odin::promql::{CancelFlag, Engine};
use odin::storage::Queryable;
use odin::tsdb::{Db, DbOptions, TsdbMetrics};

const H: i64 = 3_600_000;
const BLOCKS: i64 = 84;
const QUERY: &str = "sum(rate(bench_metric{g=\"0\"}[5m]))";

fn series_count() -> usize {
    // `cargo test --benches` (the test suite) runs each bench once without `--bench`,
    // in a debug build: a small data set keeps that a check, not a measurement.
    let measuring = std::env::args().any(|a| a == "--bench");
    std::env::var("BUCKET_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 10_000 } else { 200 })
}

fn block_series(block: i64, n: usize) -> Vec<(Labels, Vec<Sample>)> {
    let mut out: Vec<(Labels, Vec<Sample>)> = (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "bench_metric".to_string()),
                ("g", (i % 10).to_string()),
                ("instance", format!("host-{i:05}")),
            ]);
            let samples = (0..120)
                .map(|k| {
                    let t = block * 2 * H + k * 60_000;
                    Sample::new(t, (t / 60_000) as f64 * ((i % 7) as f64 + 1.0))
                })
                .collect();
            (labels, samples)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn time(f: impl Fn()) -> Duration {
    let runs = 5;
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed() / runs
}

fn bench(c: &mut Criterion) {
    let n = series_count();
    let tmp = tempfile::tempdir().unwrap();
    let (local, bucket, empty) = (
        tmp.path().join("local"),
        tmp.path().join("bucket"),
        tmp.path().join("empty"),
    );
    for d in [&local, &bucket, &empty] {
        std::fs::create_dir_all(d).unwrap();
    }
    let labels = BTreeMap::from([("cluster".to_string(), "bench".to_string())]);
    let built = Instant::now();
    for b in 0..BLOCKS {
        let dir =
            write_local_block(&local, b * 2 * H, (b + 1) * 2 * H, &block_series(b, n)).unwrap();
        upload_to_fs_bucket(&dir, &bucket, &labels).unwrap();
    }
    eprintln!(
        "bucket_query: {n} series x 7 days at 60 s in {BLOCKS} blocks, built in {:.1?}",
        built.elapsed()
    );
    let opts = DbOptions {
        retention_ms: 365 * 24 * H,
        ..DbOptions::default()
    };
    let db = Db::open(
        &local,
        opts.clone(),
        TsdbMetrics::default(),
        odin::log::wal::WalLog::in_data_dir(&local),
    )
    .unwrap();
    let nothing = Db::open(
        &empty,
        opts,
        TsdbMetrics::default(),
        odin::log::wal::WalLog::in_data_dir(&empty),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fs: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&bucket).unwrap());
    let store = BucketStore::new(
        fs,
        rt.handle().clone(),
        BucketStoreOptions {
            cache_bytes: 4 << 30,
            external_labels: labels,
            ..BucketStoreOptions::default()
        },
    );
    rt.block_on(store.sync()).unwrap();
    let long_term = LongTermQueryable::new(
        Arc::new(nothing.clone()),
        Arc::new(nothing.clone()),
        store.clone(),
    );
    let engine = Engine::default();
    let (start, end) = (0, BLOCKS * 2 * H - 1);
    let run = |q: &dyn Queryable| {
        let v = engine
            .range(q, QUERY, start, end, H, &CancelFlag::default())
            .unwrap();
        std::hint::black_box(v);
    };
    // The answers agree.
    let a = engine
        .range(&db, QUERY, start, end, H, &CancelFlag::default())
        .unwrap();
    let b = engine
        .range(&long_term, QUERY, start, end, H, &CancelFlag::default())
        .unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));

    let mut g = c.benchmark_group("bucket_query");
    g.sample_size(10);
    g.bench_function("local", |bch| bch.iter(|| run(&db)));
    g.bench_function("bucket_cold", |bch| {
        bch.iter(|| {
            store.cache().clear();
            run(&long_term)
        })
    });
    g.bench_function("bucket_warm", |bch| bch.iter(|| run(&long_term)));
    g.finish();

    let local_t = time(|| run(&db));
    let cold_t = time(|| {
        store.cache().clear();
        run(&long_term)
    });
    run(&long_term);
    let warm_t = time(|| run(&long_term));
    eprintln!(
        "bucket_query: local {local_t:.1?}, bucket cold {cold_t:.1?} ({:.2}x), bucket warm {warm_t:.1?} ({:.2}x); cache {:?}",
        cold_t.as_secs_f64() / local_t.as_secs_f64(),
        warm_t.as_secs_f64() / local_t.as_secs_f64(),
        store.cache().stats()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
