//! Head append: the in-memory part of ingestion (series lookup, bounds and order
//! checks, XOR encoding), without the WAL. Batches are shaped like remote-write
//! requests: 2,000 samples over 2,000 series, one timestamp each.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use odin::log::record::Batch;
use odin::model::{Labels, Sample};
use odin::tsdb::head::Head;

const SERIES: usize = 10_000;
const BATCH: usize = 2_000;

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("node_metric_{}", i % 50)),
        ("instance", format!("host-{}:9100", i / 600)),
        ("job", "node".to_string()),
        ("cpu", (i % 64).to_string()),
        (
            "mode",
            ["user", "system", "idle", "iowait"][i % 4].to_string(),
        ),
    ])
}

/// One batch per group of `BATCH` series at timestamp `t`.
fn batches(all: &[Labels], t: i64) -> Vec<Batch> {
    all.chunks(BATCH)
        .map(|c| {
            let mut b = Batch::default();
            for (i, l) in c.iter().enumerate() {
                let s = Sample::new(t + (i % 7) as i64, (t / 1000) as f64 * 1.5 + i as f64);
                b.push_series(l.clone(), &[s]);
            }
            b
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let all: Vec<Labels> = (0..SERIES).map(labels).collect();
    let mut g = c.benchmark_group("head_append");
    g.throughput(Throughput::Elements(SERIES as u64));

    // Steady state: every series exists, each round appends one sample to each.
    let head = Head::new(7_200_000);
    let mut t = 1_700_000_000_000i64;
    for b in batches(&all, t) {
        head.apply_batch(&b);
    }
    g.bench_function("existing_series", |bench| {
        bench.iter_batched(
            || {
                t += 15_000;
                batches(&all, t)
            },
            |bs| {
                for b in &bs {
                    head.apply_batch(b);
                }
            },
            BatchSize::LargeInput,
        )
    });

    // Series creation: a fresh head each round.
    g.bench_function("new_series", |bench| {
        bench.iter_batched(
            || (Head::new(7_200_000), batches(&all, 1_700_000_000_000)),
            |(head, bs)| {
                for b in &bs {
                    head.apply_batch(b);
                }
                head
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // Finding series by label pairs among 100k (larger than the caches), as the
    // remote-write receiver and a replica's log decoder do: one at a time, and with
    // each lookup prepared eight series ahead.
    let many: Vec<Labels> = (0..100_000).map(labels_wide).collect();
    let head = Head::new(7_200_000);
    for b in batches(&many, 1_700_000_000_000) {
        head.apply_batch(&b);
    }
    let pairs: Vec<Vec<(&str, &str)>> = (0..BATCH)
        .map(|i| {
            many[(i * 7_919) % many.len()]
                .iter()
                .map(|l| (&*l.name, &*l.value))
                .collect()
        })
        .collect();
    let mut g = c.benchmark_group("series_lookup_100k");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("one_at_a_time", |bench| {
        bench.iter(|| {
            pairs
                .iter()
                .filter(|p| head.get_by_pairs(p).is_some())
                .count()
        })
    });
    g.bench_function("prepared_ahead", |bench| {
        bench.iter(|| {
            const AHEAD: usize = 8;
            let mut keys: std::collections::VecDeque<u64> = pairs[..AHEAD]
                .iter()
                .map(|p| head.prefetch_pairs(p))
                .collect();
            let mut found = 0;
            for (i, p) in pairs.iter().enumerate() {
                if let Some(next) = pairs.get(i + AHEAD) {
                    keys.push_back(head.prefetch_pairs(next));
                }
                if let Some(key) = keys.pop_front() {
                    found += usize::from(head.get_by_pairs_hashed(key, p).is_some());
                }
            }
            found
        })
    });
    g.finish();
}

/// Labels shaped like node_exporter's, spread over many hosts.
fn labels_wide(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("node_metric_{}", i % 400)),
        ("instance", format!("host-{}:9100", i / 600)),
        ("job", "node".to_string()),
        ("device", format!("dev{}", i % 13)),
    ])
}

criterion_group!(benches, bench);
criterion_main!(benches);
