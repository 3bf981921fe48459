//! `diskstats`: per-device I/O counters from `/proc/diskstats` as `node_disk_*{device}`
//! (sectors read/written become bytes at 512 bytes a sector, milliseconds become
//! seconds; discarded sectors stay sectors, as in node_exporter), and
//! `node_disk_info` with the udev properties node_exporter reads from
//! `/run/udev/data/b<major>:<minor>`.

use std::path::Path;

use super::{NodeCollector, Result, labels, parse_error, parse_f64, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

const SECTOR_BYTES: f64 = 512.0;
const MS: f64 = 0.001;

/// The columns after major, minor and name: (metric suffix, type, scale, help). The
/// kernel writes 11, 15 (4.18+) or 17 (5.5+) of them.
const FIELDS: [(&str, MetricType, f64, &str); 17] = [
    (
        "reads_completed_total",
        MetricType::Counter,
        1.0,
        "The total number of reads completed successfully.",
    ),
    (
        "reads_merged_total",
        MetricType::Counter,
        1.0,
        "The total number of reads merged.",
    ),
    (
        "read_bytes_total",
        MetricType::Counter,
        SECTOR_BYTES,
        "The total number of bytes read successfully.",
    ),
    (
        "read_time_seconds_total",
        MetricType::Counter,
        MS,
        "The total number of seconds spent by all reads.",
    ),
    (
        "writes_completed_total",
        MetricType::Counter,
        1.0,
        "The total number of writes completed successfully.",
    ),
    (
        "writes_merged_total",
        MetricType::Counter,
        1.0,
        "The number of writes merged.",
    ),
    (
        "written_bytes_total",
        MetricType::Counter,
        SECTOR_BYTES,
        "The total number of bytes written successfully.",
    ),
    (
        "write_time_seconds_total",
        MetricType::Counter,
        MS,
        "This is the total number of seconds spent by all writes.",
    ),
    (
        "io_now",
        MetricType::Gauge,
        1.0,
        "The number of I/Os currently in progress.",
    ),
    (
        "io_time_seconds_total",
        MetricType::Counter,
        MS,
        "Total seconds spent doing I/Os.",
    ),
    (
        "io_time_weighted_seconds_total",
        MetricType::Counter,
        MS,
        "The weighted # of seconds spent doing I/Os.",
    ),
    (
        "discards_completed_total",
        MetricType::Counter,
        1.0,
        "The total number of discards completed successfully.",
    ),
    (
        "discards_merged_total",
        MetricType::Counter,
        1.0,
        "The total number of discards merged.",
    ),
    (
        "discarded_sectors_total",
        MetricType::Counter,
        1.0,
        "The total number of sectors discarded successfully.",
    ),
    (
        "discard_time_seconds_total",
        MetricType::Counter,
        MS,
        "This is the total number of seconds spent by all discards.",
    ),
    (
        "flush_requests_total",
        MetricType::Counter,
        1.0,
        "The total number of flush requests completed successfully",
    ),
    (
        "flush_requests_time_seconds_total",
        MetricType::Counter,
        MS,
        "This is the total number of seconds spent by all flush requests.",
    ),
];

/// udev properties → `node_disk_info` labels, in node_exporter's label order.
const UDEV_LABELS: [(&str, &str); 5] = [
    ("path", "ID_PATH"),
    ("wwn", "ID_WWN"),
    ("model", "ID_MODEL"),
    ("serial", "ID_SERIAL_SHORT"),
    ("revision", "ID_REVISION"),
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("diskstats");
    let text = read_file(&path)?;
    let mut fams: Vec<MetricFamily> = FIELDS
        .iter()
        .map(|(suffix, kind, _, help)| {
            MetricFamily::new(format!("node_disk_{suffix}"), *kind, *help)
        })
        .collect();
    let mut info = MetricFamily::new(
        "node_disk_info",
        MetricType::Gauge,
        "Info of /sys/block/<block_device>.",
    );
    let udev_dir = c
        .paths
        .udev_data
        .clone()
        .unwrap_or_else(|| c.root_path("run/udev/data"));
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(major), Some(minor), Some(device)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if c.flags.diskstats_devices.ignored(device) {
            continue;
        }
        let mut n = 0;
        for ((fam, (_, _, scale, _)), field) in fams.iter_mut().zip(FIELDS.iter()).zip(fields) {
            fam.push(
                labels([("device", device)]),
                parse_f64(&path, field)? * scale,
            );
            n += 1;
        }
        if n < 11 {
            return Err(parse_error(
                &path,
                format!("{device}: {n} fields, want at least 11"),
            ));
        }
        let udev = udev_properties(&udev_dir.join(format!("b{major}:{minor}")));
        let mut l = labels([("device", device), ("major", major), ("minor", minor)]);
        for (label, key) in UDEV_LABELS {
            let v = udev
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            l.push((label.to_string(), v));
        }
        info.push(l, 1.0);
    }
    out.push(info);
    out.extend(fams.into_iter().filter(|f| !f.samples.is_empty()));
    Ok(())
}

/// The `E:KEY=value` lines of a udev database entry; empty when there is none (no
/// udev in containers).
fn udev_properties(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   8       0 sda 25354637 34367663 1003346126 18492372 28444756 11134226 505697032 63877960 0 9653880 82621804 1 2 3 4 5 6
   8       1 sda1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17
 259       0 nvme0n1 47114 4 4643973 21650 1078320 43950 39451633 1011053 0 222766 1032546
 259       1 nvme0n1p1 1 2 3 4 5 6 7 8 9 10 11
";

    #[test]
    fn diskstats_units_and_default_exclude() {
        let fx = Fixture::new();
        fx.write("proc/diskstats", DISKSTATS);
        fx.write(
            "root/run/udev/data/b8:0",
            "S:disk/by-id/x\nE:ID_MODEL=Samsung_SSD\nE:ID_SERIAL_SHORT=S1234\nE:ID_PATH=pci-0000:00:1f.2-ata-1\n",
        );
        let fams = run(&fx.collector(), collect);
        let reads = find(&fams, "node_disk_reads_completed_total");
        let devices: Vec<&str> = reads
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(devices, ["sda", "nvme0n1"]);
        assert_eq!(
            value(&fams, "node_disk_read_bytes_total", &[("device", "sda")]),
            1003346126.0 * 512.0
        );
        assert_eq!(
            value(
                &fams,
                "node_disk_write_time_seconds_total",
                &[("device", "sda")]
            ),
            63877.96
        );
        assert_eq!(value(&fams, "node_disk_io_now", &[("device", "sda")]), 0.0);
        assert_eq!(
            value(
                &fams,
                "node_disk_discarded_sectors_total",
                &[("device", "sda")]
            ),
            3.0
        );
        assert_eq!(
            value(
                &fams,
                "node_disk_flush_requests_time_seconds_total",
                &[("device", "sda")]
            ),
            0.006
        );
        // The 11-field device has no discard or flush samples.
        assert_eq!(
            find(&fams, "node_disk_flush_requests_total").samples.len(),
            1
        );
        let info = find(&fams, "node_disk_info");
        assert_eq!(info.samples.len(), 2);
        assert_eq!(
            value(
                &fams,
                "node_disk_info",
                &[
                    ("device", "sda"),
                    ("model", "Samsung_SSD"),
                    ("serial", "S1234"),
                    ("major", "8"),
                    ("wwn", "")
                ]
            ),
            1.0
        );
        let names: Vec<&str> = info.samples[1]
            .labels
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "device", "major", "minor", "path", "wwn", "model", "serial", "revision"
            ]
        );

        // udev's database elsewhere (node_exporter's --path.udev.data).
        fx.write("udev/b8:0", "E:ID_MODEL=Micron_7450\n");
        let mut paths = fx.paths();
        paths.udev_data = Some(fx.dir.path().join("udev"));
        let fams = run(&NodeCollector::new(paths).unwrap(), collect);
        let sda = [("device", "sda"), ("model", "Micron_7450")];
        assert_eq!(value(&fams, "node_disk_info", &sda), 1.0);
    }
}
