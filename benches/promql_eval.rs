//! PromQL evaluation's hot paths over ODIN's TSDB head: `rate` over many series,
//! `sum by` of it, and `histogram_quantile` over classic buckets — each as a one-hour
//! range query at a 60 s step, the shape of a dashboard panel.

// A benchmark fails loudly on bad setup, as a test does.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use odin::model::Labels;
use odin::promql::{CancelFlag, Engine};
use odin::storage::Appendable;
use odin::tsdb::{Db, DbOptions, TsdbMetrics};

const SERIES: usize = 2_000;
const STEP_MS: i64 = 15_000;
/// Two hours of samples; queries cover the second.
const SAMPLES: i64 = 480;

fn storage(dir: &std::path::Path) -> Db {
    let s = Db::open(
        dir,
        DbOptions::default(),
        TsdbMetrics::default(),
        odin::log::wal::WalLog::in_data_dir(dir),
    )
    .unwrap();
    let mut app = s.appender();
    for i in 0..SERIES {
        let counter = Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total".to_string()),
            ("instance", format!("host-{}:9100", i / 16)),
            ("cpu", (i % 8).to_string()),
            ("mode", ["user", "idle"][(i / 8) % 2].to_string()),
        ]);
        for t in 0..SAMPLES {
            app.append(&counter, t * STEP_MS, (t * (i as i64 % 7 + 1)) as f64)
                .unwrap();
        }
    }
    // 200 histograms of 10 buckets each.
    for h in 0..200 {
        for (b, le) in [
            "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "25", "50", "+Inf",
        ]
        .iter()
        .enumerate()
        {
            let l = Labels::from_pairs([
                ("__name__", "req_duration_seconds_bucket".to_string()),
                ("instance", format!("host-{h}:9100")),
                ("le", le.to_string()),
            ]);
            for t in 0..SAMPLES {
                app.append(&l, t * STEP_MS, (t * (b as i64 + 1) * 3) as f64)
                    .unwrap();
            }
        }
    }
    app.commit().unwrap();
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let engine = Engine::default();
    let cancel = CancelFlag::default();
    let (start, end) = (3_600_000, 7_200_000);
    let mut g = c.benchmark_group("promql_range_1h_step60s");
    g.sample_size(10);
    for (name, q, series) in [
        (
            "rate_2000_series",
            "rate(node_cpu_seconds_total[5m])",
            SERIES,
        ),
        (
            "sum_by_instance_rate",
            "sum by (instance) (rate(node_cpu_seconds_total[5m]))",
            SERIES,
        ),
        // A scalar operation and unary minus drop the name: their results are
        // checked for duplicate label sets at every step.
        ("vector_times_scalar", "node_cpu_seconds_total * 2", SERIES),
        ("unary_minus", "-node_cpu_seconds_total", SERIES),
        (
            "histogram_quantile_200x10",
            "histogram_quantile(0.9, sum by (instance, le) (rate(req_duration_seconds_bucket[5m])))",
            2_000,
        ),
    ] {
        // Input series × steps: the work a query does.
        g.throughput(Throughput::Elements((series * 61) as u64));
        g.bench_function(name, |b| {
            b.iter(|| engine.range(&s, q, start, end, 60_000, &cancel).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
