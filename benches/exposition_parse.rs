//! Scrape-body parsing throughput: a node_exporter-shaped page of a few thousand series
//! (HELP/TYPE lines, labelled counters and gauges, a summary, histograms), built in
//! code, parsed by the text-format and the OpenMetrics parser.
//!
//! Run with `cargo bench --bench exposition_parse`. Bytes per second come from
//! criterion; the page's series count is printed so samples per second follow.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use odin::exposition::format::{Entry, Format, Parser};
use odin::model::format_go_g;

/// One family of the generated page.
struct Family {
    /// The OpenMetrics family name; the text format adds `_total` for counters.
    name: String,
    kind: &'static str,
    help: &'static str,
    /// (series suffix, labels, value)
    samples: Vec<(&'static str, String, f64)>,
}

/// A value shaped like node_exporter's: counters of all sizes, gauges with fractions.
fn value(i: usize) -> f64 {
    match i % 5 {
        0 => (i * 7919 % 100_000) as f64,
        1 => (i as f64) * 1234.5678,
        2 => 1.0e9 + (i as f64) * 3.25,
        3 => 0.000_123 * (i as f64 + 1.0),
        _ => 0.0,
    }
}

fn families() -> Vec<Family> {
    let mut out = Vec::new();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        value(n)
    };

    let modes = [
        "guest", "idle", "iowait", "irq", "nice", "softirq", "steal", "user",
    ];
    let mut cpu = Vec::new();
    for c in 0..64 {
        for m in modes {
            cpu.push(("_total", format!("cpu=\"{c}\",mode=\"{m}\""), next()));
        }
    }
    out.push(Family {
        name: "node_cpu_seconds".into(),
        kind: "counter",
        help: "Seconds the CPUs spent in each mode.",
        samples: cpu,
    });

    let mut irq = Vec::new();
    for c in 0..64 {
        for d in 0..24 {
            irq.push((
                "_total",
                format!(
                    "cpu=\"{c}\",devices=\"eth{d}-TxRx-{d}\",info=\"IR-PCI-MSI\",type=\"{}\"",
                    100 + d
                ),
                next(),
            ));
        }
    }
    out.push(Family {
        name: "node_interrupts".into(),
        kind: "counter",
        help: "Interrupt details.",
        samples: irq,
    });

    for metric in [
        "receive_bytes",
        "receive_packets",
        "receive_errs",
        "receive_drop",
        "receive_fifo",
        "receive_frame",
        "receive_compressed",
        "receive_multicast",
        "transmit_bytes",
        "transmit_packets",
        "transmit_errs",
        "transmit_drop",
        "transmit_fifo",
        "transmit_colls",
        "transmit_carrier",
        "transmit_compressed",
    ] {
        let samples = (0..20)
            .map(|d| ("_total", format!("device=\"veth{d:04x}a1\""), next()))
            .collect();
        out.push(Family {
            name: format!("node_network_{metric}"),
            kind: "counter",
            help: "Network device statistic.",
            samples,
        });
    }

    for metric in [
        "avail_bytes",
        "files",
        "files_free",
        "free_bytes",
        "readonly",
        "size_bytes",
        "device_error",
    ] {
        let samples = (0..30)
            .map(|m| {
                (
                    "",
                    format!("device=\"/dev/nvme0n1p{m}\",fstype=\"ext4\",mountpoint=\"/var/lib/docker/overlay2/{m:08x}/merged\""),
                    next(),
                )
            })
            .collect();
        out.push(Family {
            name: format!("node_filesystem_{metric}"),
            kind: "gauge",
            help: "Filesystem statistic.",
            samples,
        });
    }

    for metric in [
        "reads_completed",
        "reads_merged",
        "read_bytes",
        "read_time_seconds",
        "writes_completed",
        "writes_merged",
        "written_bytes",
        "write_time_seconds",
        "io_now",
        "io_time_seconds",
        "io_time_weighted_seconds",
        "discards_completed",
        "discards_merged",
        "discarded_sectors",
        "discard_time_seconds",
        "flush_requests",
        "flush_requests_time_seconds",
    ] {
        let samples = (0..16)
            .map(|d| ("_total", format!("device=\"nvme{d}n1\""), next()))
            .collect();
        out.push(Family {
            name: format!("node_disk_{metric}"),
            kind: "counter",
            help: "Disk statistic.",
            samples,
        });
    }

    for i in 0..60 {
        out.push(Family {
            name: format!("node_memory_Field{i}_bytes"),
            kind: "gauge",
            help: "Memory information field.",
            samples: vec![("", String::new(), next())],
        });
    }
    for i in 0..120 {
        out.push(Family {
            name: format!("node_vmstat_field{i}"),
            kind: "unknown",
            help: "/proc/vmstat information field.",
            samples: vec![("", String::new(), next())],
        });
    }

    let mut gc = Vec::new();
    for q in ["0", "0.25", "0.5", "0.75", "1"] {
        gc.push(("", format!("quantile=\"{q}\""), next()));
    }
    gc.push(("_sum", String::new(), next()));
    gc.push(("_count", String::new(), 4242.0));
    out.push(Family {
        name: "go_gc_duration_seconds".into(),
        kind: "summary",
        help: "A summary of the pause duration of garbage collection cycles.",
        samples: gc,
    });

    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let mut http = Vec::new();
    for h in 0..30 {
        let mut count = 0.0;
        for le in bounds {
            count += (h * 3 + 1) as f64;
            http.push((
                "_bucket",
                format!("handler=\"/api/v1/endpoint{h}\",le=\"{le}\""),
                count,
            ));
        }
        http.push(("_sum", format!("handler=\"/api/v1/endpoint{h}\""), next()));
        http.push(("_count", format!("handler=\"/api/v1/endpoint{h}\""), count));
    }
    out.push(Family {
        name: "prometheus_http_request_duration_seconds".into(),
        kind: "histogram",
        help: "Histogram of latencies for HTTP requests.",
        samples: http,
    });
    out
}

/// The page in `format`, and its number of series.
fn page(format: Format) -> (String, usize) {
    let mut out = String::new();
    let mut series = 0;
    for f in families() {
        let text_counter = format == Format::Text && f.kind == "counter";
        // node_exporter's text families carry `_total` in their name.
        let name = if text_counter {
            format!("{}_total", f.name)
        } else {
            f.name.clone()
        };
        let kind = match (format, f.kind) {
            (Format::Text, "unknown") => "untyped",
            (_, k) => k,
        };
        let _ = writeln!(out, "# HELP {name} {}", f.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (suffix, labels, v) in &f.samples {
            out.push_str(&f.name);
            out.push_str(suffix);
            if !labels.is_empty() {
                out.push('{');
                out.push_str(labels);
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_go_g(*v));
            out.push('\n');
            series += 1;
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    (out, series)
}

/// Pulls every entry, folding values so nothing is optimised away.
fn drain(format: Format, body: &[u8]) -> (usize, f64) {
    let mut parser = Parser::new(format, body);
    let mut n = 0;
    let mut sum = 0.0;
    while let Ok(Some(entry)) = parser.next() {
        if let Entry::Series(s) = entry {
            n += 1;
            sum += s.value + s.labels.len() as f64;
        }
    }
    (n, sum)
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("exposition_parse");
    for (label, format) in [("text", Format::Text), ("openmetrics", Format::OpenMetrics)] {
        let (body, series) = page(format);
        let (parsed, _) = drain(format, body.as_bytes());
        assert_eq!(parsed, series, "{label} page must parse completely");
        eprintln!("{label}: {} bytes, {series} series", body.len());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(label, |b| {
            b.iter(|| drain(format, black_box(body.as_bytes())));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
