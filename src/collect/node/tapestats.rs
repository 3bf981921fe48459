//! `tapestats`: SCSI tape drives' I/O statistics from
//! `/sys/class/scsi_tape/st<N>/stats` (the rewinding device of each drive; its `nst`
//! and mode variants are the same drive).

use super::{
    NodeCollector, NodeError, Result, dir_entries_with_prefix, labels, parse_error, parse_go_uint,
    read_sysfs_value,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// How a statistic's value becomes the metric's.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    /// Nanoseconds to seconds, multiplied by 1e-9 as node_exporter does (dividing
    /// by 1e9 can differ in the last bit).
    Nanoseconds,
}

/// `stats/` files reported: file, family (after `node_tape_`), type, unit, HELP.
const STATS: &[(&str, &str, MetricType, Unit, &str)] = &[
    (
        "in_flight",
        "io_now",
        MetricType::Gauge,
        Unit::Count,
        "The number of I/Os currently outstanding to this device.",
    ),
    (
        "io_ns",
        "io_time_seconds_total",
        MetricType::Counter,
        Unit::Nanoseconds,
        "The amount of time spent waiting for all I/O to complete (including read and write). This includes tape movement commands such as seeking between file or set marks and implicit tape movement such as when rewind on close tape devices are used.",
    ),
    (
        "other_cnt",
        "io_others_total",
        MetricType::Counter,
        Unit::Count,
        "The number of I/Os issued to the tape drive other than read or write commands. The time taken to complete these commands uses the following calculation io_time_seconds_total-read_time_seconds_total-write_time_seconds_total",
    ),
    (
        "read_byte_cnt",
        "read_bytes_total",
        MetricType::Counter,
        Unit::Count,
        "The number of bytes read from the tape drive.",
    ),
    (
        "read_cnt",
        "reads_completed_total",
        MetricType::Counter,
        Unit::Count,
        "The number of read requests issued to the tape drive.",
    ),
    (
        "read_ns",
        "read_time_seconds_total",
        MetricType::Counter,
        Unit::Nanoseconds,
        "The amount of time spent waiting for read requests to complete.",
    ),
    (
        "resid_cnt",
        "residual_total",
        MetricType::Counter,
        Unit::Count,
        "The number of times during a read or write we found the residual amount to be non-zero. This should mean that a program is issuing a read larger thean the block size on tape. For write not all data made it to tape.",
    ),
    (
        "write_byte_cnt",
        "written_bytes_total",
        MetricType::Counter,
        Unit::Count,
        "The number of bytes written to the tape drive.",
    ),
    (
        "write_cnt",
        "writes_completed_total",
        MetricType::Counter,
        Unit::Count,
        "The number of write requests issued to the tape drive.",
    ),
    (
        "write_ns",
        "write_time_seconds_total",
        MetricType::Counter,
        Unit::Nanoseconds,
        "The amount of time spent waiting for write requests to complete.",
    ),
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut families: Vec<MetricFamily> = STATS
        .iter()
        .map(|(_, name, kind, _, help)| {
            MetricFamily::new(format!("node_tape_{name}"), *kind, *help)
        })
        .collect();
    let drives = dir_entries_with_prefix(&c.sys_path("class/scsi_tape"), "st")?
        .into_iter()
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    // Every drive is read before anything is kept: one unreadable drive fails the
    // collector, as in node_exporter.
    for (number, dir) in drives {
        let device = format!("st{number}");
        let stats_dir = dir.join("stats");
        let mut values = vec![0u64; STATS.len()];
        for (file, path) in dir_entries_with_prefix(&stats_dir, "")? {
            let text = read_sysfs_value(&path).map_err(|source| NodeError::Io {
                path: path.clone(),
                source,
            })?;
            if let Some(i) = STATS.iter().position(|(f, ..)| *f == file) {
                values[i] = parse_go_uint(&text)
                    .ok_or_else(|| parse_error(&path, format!("bad statistic {text:?}")))?;
            }
        }
        // An ignored drive is still read: it fails the collector as in node_exporter,
        // which reads every drive before it filters.
        if c.flags.tapestats_ignored_devices.is_match(&device) {
            continue;
        }
        for ((_, _, _, unit, _), (family, v)) in STATS.iter().zip(families.iter_mut().zip(values)) {
            let v = match unit {
                Unit::Count => v as f64,
                Unit::Nanoseconds => v as f64 * 0.000_000_001,
            };
            family.push(labels([("device", &device)]), v);
        }
    }
    out.extend(families);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn rewinding_devices_only_times_in_seconds() {
        let fx = Fixture::new();
        for dev in ["st0", "nst0", "st0a"] {
            fx.write(
                &format!("sys/class/scsi_tape/{dev}/stats/io_ns"),
                "9247120003461\n",
            )
            .write(
                &format!("sys/class/scsi_tape/{dev}/stats/read_cnt"),
                "0x10\n",
            );
        }
        let fams = run(&fx.collector(), collect);
        let st0 = [("device", "st0")];
        assert_eq!(
            value(&fams, "node_tape_io_time_seconds_total", &st0),
            9247.120003461001
        );
        assert_eq!(value(&fams, "node_tape_reads_completed_total", &st0), 16.0);
        assert_eq!(
            value(&fams, "node_tape_write_time_seconds_total", &st0),
            0.0
        );
        assert!(fams.iter().all(|f| f.samples.len() == 1));
    }

    #[test]
    fn a_bad_statistic_fails() {
        let fx = Fixture::new();
        fx.write("sys/class/scsi_tape/st0/stats/read_cnt", "08\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
        // Ignoring the drive does not skip its reading, as in node_exporter.
        let ignoring = fx.collector_with(&[("collector.tapestats.ignored-devices", "^st0$")]);
        assert!(collect(&ignoring, &mut Vec::new()).is_err());
    }

    #[test]
    fn ignored_drives_are_left_out() {
        let fx = Fixture::new();
        for dev in ["st0", "st1"] {
            fx.write(&format!("sys/class/scsi_tape/{dev}/stats/read_cnt"), "3\n");
        }
        let c = fx.collector_with(&[("collector.tapestats.ignored-devices", "^st0$")]);
        let fams = run(&c, collect);
        let reads = find(&fams, "node_tape_reads_completed_total");
        assert_eq!(reads.samples.len(), 1);
        assert_eq!(
            value(
                &fams,
                "node_tape_reads_completed_total",
                &[("device", "st1")]
            ),
            3.0
        );
    }
}
