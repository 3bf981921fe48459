//! WAL record encoding of scrape-shaped batches: what every scrape commit pays before
//! its fsync. 200 targets × 1,153 series with interned label strings (as the head
//! hands them out), encoded one target's batch at a time, round robin, so that label
//! sets come from memory that is not in cache, as with 1,000 real targets.

use std::collections::HashMap;

use arcstr::ArcStr;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use odin::log::record::{Batch, LabelSectionMemo, encode_batch, encode_batch_reusing};
use odin::model::{Labels, Sample};

const TARGETS: usize = 200;
const SERIES_PER_TARGET: usize = 1_153;

fn target_batches() -> Vec<Batch> {
    let mut strings: HashMap<String, ArcStr> = HashMap::new();
    let mut intern = |s: String| {
        strings
            .entry(s.clone())
            .or_insert_with(|| ArcStr::from(s))
            .clone()
    };
    (0..TARGETS)
        .map(|t| {
            let mut b = Batch::default();
            for i in 0..SERIES_PER_TARGET {
                let mut pairs = vec![
                    (
                        intern("__name__".into()),
                        intern(format!("node_family_{}", i / 12)),
                    ),
                    (intern("instance".into()), intern(format!("host-{t}:9100"))),
                    (intern("job".into()), intern("node".into())),
                ];
                if i % 3 != 0 {
                    pairs.push((intern("cpu".into()), intern((i % 39).to_string())));
                    pairs.push((
                        intern("mode".into()),
                        intern(["user", "system", "idle", "iowait"][i % 4].into()),
                    ));
                }
                pairs.sort();
                let s = Sample::new(1_700_000_000_000 + (i % 7) as i64, i as f64 * 1.5);
                b.push_series(Labels::from_pairs(pairs), &[s]);
            }
            b
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batches = target_batches();
    let mut g = c.benchmark_group("wal_record");
    g.throughput(Throughput::Elements(SERIES_PER_TARGET as u64));
    let mut next = 0;
    let mut out = Vec::new();
    g.bench_function("encode_scrape_batch", |b| {
        b.iter(|| {
            out.clear();
            encode_batch(&batches[next], &mut out);
            next = (next + 1) % batches.len();
            out.len()
        })
    });
    // As a scrape loop commits: each target keeps the label section of its last
    // record, and its series come back in the same order.
    let mut memos: Vec<LabelSectionMemo> = batches.iter().map(|_| Default::default()).collect();
    g.bench_function("encode_scrape_batch_reusing_labels", |b| {
        b.iter(|| {
            out.clear();
            encode_batch_reusing(&batches[next], Some(&mut memos[next]), &mut out);
            next = (next + 1) % batches.len();
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
