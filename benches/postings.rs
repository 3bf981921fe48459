//! Postings list set operations at the sizes query planning sees: small
//! label matchers (1k series) up to whole-metric-name lists (1M series).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use odin::tsdb::postings::{intersect, union};

/// Small deterministic PRNG so runs are comparable without extra crates.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` sorted refs spread over `[0, 2n)`, so two lists overlap by about half.
fn list(rng: &mut XorShift, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut x = 0u64;
    for _ in 0..n {
        x += 1 + (rng.next() & 1) * 2 * (rng.next() & 1);
        out.push(x);
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut group = c.benchmark_group("postings_intersect");
    for n in [1_000usize, 100_000, 1_000_000] {
        let lists: Vec<Vec<u64>> = (0..3).map(|_| list(&mut rng, n)).collect();
        let two: Vec<&[u64]> = lists[..2].iter().map(Vec::as_slice).collect();
        let three: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
        group.bench_with_input(BenchmarkId::new("2_lists", n), &two, |b, l| {
            b.iter(|| black_box(intersect(black_box(l))))
        });
        group.bench_with_input(BenchmarkId::new("3_lists", n), &three, |b, l| {
            b.iter(|| black_box(intersect(black_box(l))))
        });
    }
    // Skewed sizes: a narrow matcher against a whole metric name.
    let small = list(&mut rng, 1_000);
    let big = list(&mut rng, 1_000_000);
    let skewed: Vec<&[u64]> = vec![&small, &big];
    group.bench_with_input(BenchmarkId::new("skewed", "1k_x_1M"), &skewed, |b, l| {
        b.iter(|| black_box(intersect(black_box(l))))
    });
    group.finish();

    let mut group = c.benchmark_group("postings_union");
    for n in [1_000usize, 100_000] {
        let lists: Vec<Vec<u64>> = (0..10).map(|_| list(&mut rng, n)).collect();
        let refs: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
        group.bench_with_input(BenchmarkId::new("10_lists", n), &refs, |b, l| {
            b.iter(|| black_box(union(black_box(l))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
