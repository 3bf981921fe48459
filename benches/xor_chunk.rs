//! XOR chunk encode/decode throughput on scrape-like data: 120-sample chunks
//! (30 minutes at a 15 s interval, Prometheus's usual chunk size) with a few
//! milliseconds of scrape jitter.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use odin::tsdb::chunkenc::{XorChunk, XorIterator};

const SAMPLES_PER_CHUNK: usize = 120;
const CHUNKS: usize = 200;

/// One chunk's worth of `(timestamp, value)` samples.
type Series = Vec<(i64, f64)>;

/// Small deterministic PRNG so runs are comparable without extra crates.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn timestamps(rng: &mut XorShift) -> Vec<i64> {
    let mut t = 1_700_000_000_000i64 + rng.below(15_000) as i64;
    (0..SAMPLES_PER_CHUNK)
        .map(|_| {
            t += 15_000 + rng.below(9) as i64 - 4;
            t
        })
        .collect()
}

/// Counters: mostly-integer totals growing by bursty amounts, some idle.
fn counter_series(rng: &mut XorShift) -> Series {
    let mut v = rng.below(1_000_000) as f64;
    let rate = rng.below(500);
    timestamps(rng)
        .into_iter()
        .map(|t| {
            if rate > 0 {
                v += rng.below(2 * rate) as f64;
            }
            (t, v)
        })
        .collect()
}

/// Gauges: a mix of fractional readings (temperatures, load averages) and
/// byte counts wandering around a level.
fn gauge_series(rng: &mut XorShift) -> Series {
    let fractional = rng.below(2) == 0;
    let mut level = rng.below(1 << 30) as f64;
    timestamps(rng)
        .into_iter()
        .map(|t| {
            let v = if fractional {
                (rng.below(10_000) as f64) / 100.0
            } else {
                level += (rng.below(1 << 20) as f64) - f64::from(1u32 << 19);
                level
            };
            (t, v)
        })
        .collect()
}

fn encode(series: &[(i64, f64)]) -> XorChunk {
    let mut c = XorChunk::new();
    for &(t, v) in series {
        c.append(t, v);
    }
    c
}

fn bench(c: &mut Criterion) {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let kinds: [(&str, Vec<Series>); 2] = [
        (
            "counter",
            (0..CHUNKS).map(|_| counter_series(&mut rng)).collect(),
        ),
        (
            "gauge",
            (0..CHUNKS).map(|_| gauge_series(&mut rng)).collect(),
        ),
    ];
    let total = (SAMPLES_PER_CHUNK * CHUNKS) as u64;

    let mut group = c.benchmark_group("xor_encode");
    group.throughput(Throughput::Elements(total));
    for (name, data) in &kinds {
        group.bench_with_input(BenchmarkId::from_parameter(name), data, |b, data| {
            b.iter(|| {
                for s in data {
                    black_box(encode(black_box(s)));
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("xor_decode");
    group.throughput(Throughput::Elements(total));
    for (name, data) in &kinds {
        let chunks: Vec<XorChunk> = data.iter().map(|s| encode(s)).collect();
        let bytes: usize = chunks.iter().map(|c| c.bytes().len()).sum();
        eprintln!(
            "{name}: {:.2} bytes/sample",
            bytes as f64 / (SAMPLES_PER_CHUNK * CHUNKS) as f64
        );
        group.bench_with_input(BenchmarkId::from_parameter(name), &chunks, |b, chunks| {
            b.iter(|| {
                let mut acc = 0i64;
                let mut sum = 0.0f64;
                for c in chunks {
                    for (t, v) in XorIterator::new(black_box(c.bytes())) {
                        acc = acc.wrapping_add(t);
                        sum += v;
                    }
                }
                black_box((acc, sum))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
