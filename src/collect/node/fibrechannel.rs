//! `fibrechannel`: Fibre Channel HBAs from `/sys/class/fc_host/<host>`:
//! `node_fibrechannel_info` (speed, port state and type, WWNs, …) and the host port's
//! frame, word and error counters from `statistics/`. A counter the HBA does not
//! implement (it reads all ones) has no series.

use super::{
    NodeCollector, NodeError, Result, attribute_unavailable, dir_entries_with_prefix,
    is_attribute_file, labels, parse_error, parse_go_uint, read_sysfs_value,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// `statistics/` files reported: file, family (after `node_fibrechannel_`), HELP.
const COUNTERS: &[(&str, &str, &str)] = &[
    (
        "dumped_frames",
        "dumped_frames_total",
        "Number of dumped frames",
    ),
    (
        "error_frames",
        "error_frames_total",
        "Number of errors in frames",
    ),
    (
        "invalid_crc_count",
        "invalid_crc_total",
        "Invalid Cyclic Redundancy Check count",
    ),
    ("rx_frames", "rx_frames_total", "Number of frames received"),
    (
        "rx_words",
        "rx_words_total",
        "Number of words received by host port",
    ),
    (
        "tx_frames",
        "tx_frames_total",
        "Number of frames transmitted by host port",
    ),
    (
        "tx_words",
        "tx_words_total",
        "Number of words transmitted by host port",
    ),
    (
        "seconds_since_last_reset",
        "seconds_since_last_reset_total",
        "Number of seconds since last host port reset",
    ),
    (
        "invalid_tx_word_count",
        "invalid_tx_words_total",
        "Number of invalid words transmitted by host port",
    ),
    (
        "link_failure_count",
        "link_failure_total",
        "Number of times the host port link has failed",
    ),
    (
        "loss_of_sync_count",
        "loss_of_sync_total",
        "Number of failures on either bit or transmission word boundaries",
    ),
    (
        "loss_of_signal_count",
        "loss_of_signal_total",
        "Number of times signal has been lost",
    ),
    (
        "nos_count",
        "nos_total",
        "Number Not_Operational Primitive Sequence received by host port",
    ),
    (
        "fcp_packet_aborts",
        "fcp_packet_aborts_total",
        "Number of aborted packets",
    ),
];

/// What an HBA reports for a counter it does not implement.
const NOT_IMPLEMENTED: u64 = u64::MAX;

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut info = MetricFamily::new(
        "node_fibrechannel_info",
        MetricType::Gauge,
        "Non-numeric data from /sys/class/fc_host/<host>, value is always 1.",
    );
    let mut counters: Vec<MetricFamily> = COUNTERS
        .iter()
        .map(|(_, family, help)| {
            MetricFamily::new(
                format!("node_fibrechannel_{family}"),
                MetricType::Counter,
                *help,
            )
        })
        .collect();
    // Every host is read before anything is kept: one unreadable host fails the
    // collector, as in node_exporter.
    for (host, dir) in dir_entries_with_prefix(&c.sys_path("class/fc_host"), "")? {
        let attr = |file: &str| {
            let path = dir.join(file);
            read_sysfs_value(&path).map_err(|source| NodeError::Io { path, source })
        };
        // World wide names and the port ID are written `0x…`; node_exporter drops the
        // first two characters of each.
        let without_prefix = |file: &str| -> Result<String> {
            let v = attr(file)?;
            Ok(if v.len() > 2 {
                v.get(2..).unwrap_or(&v).to_string()
            } else {
                v
            })
        };
        // Read though not reported, as in node_exporter: a host without it fails.
        without_prefix("node_name")?;
        info.push(
            labels([
                ("fc_host", &host),
                ("speed", &attr("speed")?),
                ("port_state", &attr("port_state")?),
                ("port_type", &attr("port_type")?),
                ("port_id", &without_prefix("port_id")?),
                ("port_name", &without_prefix("port_name")?),
                ("fabric_name", &without_prefix("fabric_name")?),
                ("symbolic_name", &attr("symbolic_name")?),
                ("supported_classes", &attr("supported_classes")?),
                ("supported_speeds", &attr("supported_speeds")?),
                ("dev_loss_tmo", &attr("dev_loss_tmo")?),
            ]),
            1.0,
        );
        let statistics = dir.join("statistics");
        // Listed first: a host without statistics fails the collector.
        dir_entries_with_prefix(&statistics, "")?;
        for ((file, _, _), family) in COUNTERS.iter().zip(counters.iter_mut()) {
            let path = statistics.join(file);
            // A statistic the HBA does not list reads 0, as in node_exporter.
            let v = if !is_attribute_file(&path)? {
                0
            } else {
                match read_sysfs_value(&path) {
                    Ok(text) => parse_go_uint(&text)
                        .ok_or_else(|| parse_error(&path, format!("bad counter {text:?}")))?,
                    Err(e) if attribute_unavailable(&e) => 0,
                    Err(source) => return Err(NodeError::Io { path, source }),
                }
            };
            if v != NOT_IMPLEMENTED {
                family.push(labels([("fc_host", &host)]), v as f64);
            }
        }
    }
    out.push(info);
    out.extend(counters);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn host(fx: &Fixture) {
        let dir = "sys/class/fc_host/host7";
        for (file, v) in [
            ("speed", "32 Gbit"),
            ("port_state", "Online"),
            ("port_type", "NPort (fabric via point-to-point)"),
            ("node_name", "0x20000090fa9e5c10"),
            ("port_id", "0x010e00"),
            ("port_name", "0x10000090fa9e5c10"),
            ("fabric_name", "0x100000051e0c2a01"),
            ("dev_loss_tmo", "30"),
            ("symbolic_name", "Emulex LPe32002"),
            ("supported_classes", "Class 3"),
            ("supported_speeds", "8 Gbit, 16 Gbit, 32 Gbit"),
        ] {
            fx.write(&format!("{dir}/{file}"), &format!("{v}\n"));
        }
        fx.write(&format!("{dir}/statistics/rx_frames"), "0x1f\n")
            .write(
                &format!("{dir}/statistics/dumped_frames"),
                "0xffffffffffffffff\n",
            )
            .write(&format!("{dir}/statistics/lip_count"), "junk\n");
    }

    #[test]
    fn info_and_counters() {
        let fx = Fixture::new();
        host(&fx);
        let fams = run(&fx.collector(), collect);
        let info = &find(&fams, "node_fibrechannel_info").samples[0].labels;
        assert!(info.contains(&("port_id".to_string(), "010e00".to_string())));
        assert!(info.contains(&("port_name".to_string(), "10000090fa9e5c10".to_string())));
        let h = [("fc_host", "host7")];
        assert_eq!(value(&fams, "node_fibrechannel_rx_frames_total", &h), 31.0);
        // Absent: zero; not implemented: no series.
        assert_eq!(value(&fams, "node_fibrechannel_tx_frames_total", &h), 0.0);
        assert!(
            find(&fams, "node_fibrechannel_dumped_frames_total")
                .samples
                .is_empty()
        );
    }

    #[test]
    fn a_bad_counter_or_missing_attribute_fails() {
        let fx = Fixture::new();
        host(&fx);
        fx.write("sys/class/fc_host/host7/statistics/rx_words", "\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
        let fx = Fixture::new();
        host(&fx);
        std::fs::remove_file(fx.dir.path().join("sys/class/fc_host/host7/node_name")).unwrap();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
