//! The node collector's cost per scrape:
//!
//! - `node_collect_host`: one `NodeCollector::collect` of this host (every collector
//!   ODIN has, node_exporter 1.5's default filters). The host's own `/proc` and
//!   `/sys` are read, so the figure is this machine's.
//! - `node_collect_gpu_server_hardware`: the collectors whose hardware a CI machine
//!   lacks (InfiniBand, RAID, ZFS, IPVS, NFS, …) over the fake GPU server of
//!   `tests/fixtures/node-host`: what they add on a host that has all of it.
//!
//! Run with `cargo bench --bench node_collect`; the series counts are printed so the
//! time per series follows.

#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use odin::collect::node::{NodeCollector, NodePaths};

/// The collectors the fake GPU server has files for.
const GPU_SERVER_HARDWARE: &[&str] = &[
    "bcache",
    "bonding",
    "btrfs",
    "dmi",
    "fibrechannel",
    "infiniband",
    "ipvs",
    "mdadm",
    "nfs",
    "nfsd",
    "nvme",
    "powersupplyclass",
    "rapl",
    "schedstat",
    "tapestats",
    "xfs",
    "zfs",
];

fn bench(c: &mut Criterion, name: &str, what: &str, node: NodeCollector) {
    let families = node.collect();
    let series: usize = families.iter().map(|f| f.samples.len()).sum();
    println!("{what}: {} families, {series} series", families.len());
    c.bench_function(name, |b| b.iter(|| black_box(node.collect())));
}

fn collect(c: &mut Criterion) {
    let host = NodeCollector::new(NodePaths::default()).expect("node collector");
    bench(c, "node_collect_host", "node collect on this host", host);

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-host");
    let paths = NodePaths {
        proc: fixture.join("proc"),
        sys: fixture.join("sys"),
        root: fixture.join("root"),
        textfile: None,
        udev_data: None,
    };
    let gpu_server = NodeCollector::new(paths)
        .expect("node collector")
        .only(GPU_SERVER_HARDWARE)
        .expect("collector names");
    bench(
        c,
        "node_collect_gpu_server_hardware",
        "GPU server hardware collectors on tests/fixtures/node-host",
        gpu_server,
    );
}

criterion_group!(benches, collect);
criterion_main!(benches);
