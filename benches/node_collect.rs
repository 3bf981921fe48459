//! The node collector's cost per scrape: one `NodeCollector::collect` of this host
//! (every collector ODIN has, node_exporter 1.5's default filters). The host's own
//! `/proc` and `/sys` are read, so the figure is this machine's.
//!
//! Run with `cargo bench --bench node_collect`; the series count is printed so the
//! time per series follows.

#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use odin::collect::node::{NodeCollector, NodePaths};

fn collect(c: &mut Criterion) {
    let node = NodeCollector::new(NodePaths::default()).expect("node collector");
    let families = node.collect();
    let series: usize = families.iter().map(|f| f.samples.len()).sum();
    println!(
        "node collect on this host: {} families, {series} series",
        families.len()
    );
    c.bench_function("node_collect_host", |b| {
        b.iter(|| black_box(node.collect()))
    });
}

criterion_group!(benches, collect);
criterion_main!(benches);
