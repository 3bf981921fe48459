//! The log path's costs, stage by stage, over a generated corpus shaped like a GPU
//! server's logs (100 streams: job × host × level, lines of 80-200 bytes, one rare
//! Xid line in 10,000):
//!
//! * `push_decode_check`: a Promtail request (snappy protobuf, 100 streams × 10
//!   lines) decoded and checked as the push handler does;
//! * `apply`: the same lines applied to the log store (what a committed entry costs);
//! * `segment_write`: a sealed window of 100,000 lines written out (frames, stream
//!   table, trigram index);
//! * `query_*`: log queries over that segment, limit 100 backward: a selector alone,
//!   a rare `|=` needle (answered by the index first), the same needle as a regex
//!   (`|~`: no index), and a `json`-free logfmt pipeline with a label filter;
//! * `metric_*`: range metric queries over that segment at 60 steps: Grafana's
//!   logs-volume query (`count_over_time` by level) and an `unwrap`ped logfmt value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use odin::log::record::{LogBatch, LogLine, LogStream};
use odin::logs::logql::ast::Expr;
use odin::logs::logql::parser::parse;
use odin::logs::logql::pipeline::Pipeline;
use odin::logs::metric::{self, Context, Steps};
use odin::logs::push::{PushLimits, check, decode_protobuf};
use odin::logs::query::{self, Direction, LogRange};
use odin::logs::store::{LogStore, WINDOW_NS};
use odin::model::Labels;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S / WINDOW_NS * WINDOW_NS;
const STREAMS: usize = 100;

fn stream_labels(i: usize) -> Labels {
    Labels::from_pairs([
        (
            "job",
            ["train", "serve", "kubelet", "containerd"][i % 4].to_string(),
        ),
        ("host", format!("gpu-{:02}", i / 4 % 25)),
        ("level", ["info", "warn"][i / 50].to_string()),
    ])
}

fn line(n: usize) -> String {
    if n % 10_000 == 4_321 {
        return format!(
            "level=error msg=\"NVRM: Xid (PCI:0000:3b:00): 79, pid={n}, GPU has fallen off the bus\""
        );
    }
    format!(
        "level=info ts=2023-11-14T22:{:02}:{:02}Z caller=step.go:{} msg=\"step finished\" step={n} loss={:.4} duration={}ms{}",
        n / 60 % 60,
        n % 60,
        n % 900,
        1.0 / (1.0 + n as f64),
        n % 977,
        " tokens=4096".repeat(n % 8)
    )
}

/// `lines` lines over the streams, one a second per stream.
fn corpus(lines: usize, from: usize) -> LogBatch {
    let mut streams: Vec<LogStream> = (0..STREAMS)
        .map(|i| LogStream {
            labels: stream_labels(i),
            lines: Vec::new(),
        })
        .collect();
    for n in from..from + lines {
        streams[n % STREAMS].lines.push(LogLine {
            ts_ns: T0 + (n / STREAMS) as i64 * S + (n % STREAMS) as i64,
            text: line(n),
            metadata: Vec::new(),
        });
    }
    LogBatch {
        tenant: "fake".into(),
        streams,
        positions: Vec::new(),
    }
}

/// A Promtail request of `batch`'s lines (logproto.PushRequest, snappy).
fn promtail_body(batch: &LogBatch) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, n: u32, bytes: &[u8]) {
        varint(out, u64::from(n << 3 | 2));
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut req = Vec::new();
    for s in &batch.streams {
        let mut stream = Vec::new();
        field(&mut stream, 1, s.labels.to_string().as_bytes());
        for l in &s.lines {
            let mut ts = Vec::new();
            varint(&mut ts, 1 << 3);
            varint(&mut ts, (l.ts_ns / S) as u64);
            varint(&mut ts, 2 << 3);
            varint(&mut ts, (l.ts_ns % S) as u64);
            let mut entry = Vec::new();
            field(&mut entry, 1, &ts);
            field(&mut entry, 2, l.text.as_bytes());
            field(&mut stream, 2, &entry);
        }
        field(&mut req, 1, &stream);
    }
    snap::raw::Encoder::new()
        .compress_vec(&req)
        .expect("snappy")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("logs");

    let request = corpus(1_000, 0);
    let body = promtail_body(&request);
    let limits = PushLimits::default();
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("push_decode_check", |b| {
        b.iter(|| {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("snappy");
            let streams = decode_protobuf(&raw).expect("decode");
            let checked = check(streams, &limits, T0 + 3600 * S);
            assert_eq!(checked.lines, 1_000);
        })
    });

    g.bench_function("apply", |b| {
        // A fresh store every 500 requests (half a million lines), so that memory
        // stays bounded while streams are mostly known, as in steady ingestion.
        let mut store = Arc::new(LogStore::new());
        let mut from = 0;
        b.iter_batched(
            || {
                from += 1_000;
                if from % 500_000 == 0 {
                    store = Arc::new(LogStore::new());
                }
                (store.clone(), corpus(1_000, from))
            },
            |(store, batch)| store.apply(batch),
            BatchSize::SmallInput,
        )
    });

    const WINDOW_LINES: usize = 100_000;
    let window = corpus(WINDOW_LINES, 0);
    g.throughput(Throughput::Elements(WINDOW_LINES as u64));
    g.sample_size(10);
    g.bench_function("segment_write", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = LogStore::open(dir.path()).expect("open");
                store.apply(window.clone());
                // A line an hour past the window's end seals it.
                store.apply(corpus(1, 0).with_time(T0 + WINDOW_NS + 3600 * S));
                (dir, store)
            },
            |(dir, store)| {
                assert_eq!(store.maintain(i64::MIN).expect("write").segments_written, 1);
                drop(dir);
            },
            BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path()).expect("open");
    store.apply(window.clone());
    store.apply(corpus(1, 0).with_time(T0 + WINDOW_NS + 3600 * S));
    store.maintain(i64::MIN).expect("write");
    // What a window costs on disk, by part.
    let seg = store.segments().remove(0);
    let size = |p: &std::path::Path| -> u64 {
        if p.is_dir() {
            std::fs::read_dir(p)
                .expect("read_dir")
                .flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        } else {
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        }
    };
    let (lines, index, table) = (
        size(&seg.dir.join("lines")),
        size(&seg.dir.join("index")),
        size(&seg.dir.join("streams")),
    );
    eprintln!(
        "segment of {WINDOW_LINES} lines ({} bytes of text): lines {lines} B ({:.1} B/line), \
         index {index} B ({:.1} B/line), stream table {table} B",
        seg.meta.bytes,
        lines as f64 / WINDOW_LINES as f64,
        index as f64 / WINDOW_LINES as f64,
    );
    let store = Arc::new(store);
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for (name, q) in [
        ("query_selector", r#"{job="train"}"#),
        (
            "query_needle_indexed",
            r#"{job=~".+"} |= "fallen off the bus""#,
        ),
        (
            "query_needle_regex",
            r#"{job=~".+"} |~ "fallen off the bus""#,
        ),
        (
            "query_logfmt_filter",
            r#"{job="serve"} | logfmt | duration > 900"#,
        ),
    ] {
        let Ok(Expr::Log(expr)) = parse(q) else {
            panic!("{q}: not a log query");
        };
        let pipeline = Pipeline::new(&expr.pipeline).expect("pipeline");
        let needles = query::needles(&expr.pipeline);
        let range = LogRange {
            start_ns: T0,
            end_ns: T0 + WINDOW_NS,
            limit: 100,
            direction: Direction::Backward,
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let selected = store
                    .select("fake", &expr.selector, T0, T0 + WINDOW_NS, &needles)
                    .expect("select");
                let (found, _) =
                    query::run::<()>(&pipeline, selected, &range, 0, || Ok(())).expect("run");
                assert!(!found.is_empty(), "{q}");
            })
        });
    }
    for (name, q) in [
        (
            "metric_volume_by_level",
            r#"sum by (level) (count_over_time({job=~".+"}[2m]))"#,
        ),
        (
            "metric_unwrap_logfmt",
            r#"sum by (host) (avg_over_time({job="serve"} | logfmt duration | unwrap duration(duration) | __error__="" [2m]))"#,
        ),
    ] {
        let Ok(Expr::Metric(expr)) = parse(q) else {
            panic!("{q}: not a metric query");
        };
        let steps = Steps {
            start_ns: T0 + 120 * S,
            end_ns: T0 + WINDOW_NS,
            step_ns: (WINDOW_NS - 120 * S) / 59,
        };
        let select = |m: &[odin::model::Matcher], lo: i64, hi: i64, needles: &[String]| {
            store
                .select("fake", m, lo, hi, needles)
                .map_err(|e| e.to_string())
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let ctx = Context {
                    select: &select,
                    keep_going: &|| Ok(()),
                    max_points: 1_000_000,
                    processed: Default::default(),
                };
                let found = metric::evaluate(&expr, &steps, &ctx).expect("evaluate");
                assert!(
                    matches!(found, metric::Evaluated::Vector(v) if !v.is_empty()),
                    "{q}"
                );
            })
        });
    }
    g.finish();
}

trait WithTime {
    fn with_time(self, ts_ns: i64) -> Self;
}

impl WithTime for LogBatch {
    fn with_time(mut self, ts_ns: i64) -> Self {
        for s in &mut self.streams {
            for l in &mut s.lines {
                l.ts_ns = ts_ns;
            }
        }
        self
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
