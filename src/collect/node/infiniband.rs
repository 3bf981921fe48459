//! `infiniband`: InfiniBand (and RoCE) HCAs from `/sys/class/infiniband/<device>`:
//! `node_infiniband_info` per device, and per port its state, physical state, rate and
//! the port counters the IB core keeps (`ports/<n>/counters`, and `counters_ext` on
//! kernels before 4.5). A counter the device does not keep has no series.
//!
//! As in node_exporter 1.5, the driver's own `hw_counters` are not read, and a device
//! that cannot be read completely fails the collector (no partial HCA list).

use std::io::ErrorKind;
use std::path::Path;

use super::{
    NodeCollector, NodeError, Result, attribute_unavailable, dir_entries_with_prefix,
    is_attribute_file, labels, parse_error, parse_go_uint, read_file, read_sysfs_value,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// A port counter: its directory and file, the family (after `node_infiniband_`), its
/// HELP, and whether the file counts 32-bit words rather than octets.
struct Counter {
    dir: &'static str,
    file: &'static str,
    family: &'static str,
    help: &'static str,
    in_words: bool,
}

const fn counter(
    dir: &'static str,
    file: &'static str,
    family: &'static str,
    help: &'static str,
) -> Counter {
    Counter {
        dir,
        file,
        family,
        help,
        in_words: false,
    }
}

const fn words(
    dir: &'static str,
    file: &'static str,
    family: &'static str,
    help: &'static str,
) -> Counter {
    Counter {
        in_words: true,
        ..counter(dir, file, family, help)
    }
}

const COUNTERS: &[Counter] = &[
    counter(
        "counters",
        "excessive_buffer_overrun_errors",
        "excessive_buffer_overrun_errors_total",
        "Number of times that OverrunErrors consecutive flow control update periods occurred, each having at least one overrun error.",
    ),
    counter(
        "counters",
        "link_downed",
        "link_downed_total",
        "Number of times the link failed to recover from an error state and went down",
    ),
    counter(
        "counters",
        "link_error_recovery",
        "link_error_recovery_total",
        "Number of times the link successfully recovered from an error state",
    ),
    counter(
        "counters",
        "local_link_integrity_errors",
        "local_link_integrity_errors_total",
        "Number of times that the count of local physical errors exceeded the threshold specified by LocalPhyErrors.",
    ),
    counter(
        "counters",
        "multicast_rcv_packets",
        "multicast_packets_received_total",
        "Number of multicast packets received (including errors)",
    ),
    counter(
        "counters",
        "multicast_xmit_packets",
        "multicast_packets_transmitted_total",
        "Number of multicast packets transmitted (including errors)",
    ),
    counter(
        "counters",
        "port_rcv_constraint_errors",
        "port_constraint_errors_received_total",
        "Number of packets received on the switch physical port that are discarded",
    ),
    counter(
        "counters",
        "port_xmit_constraint_errors",
        "port_constraint_errors_transmitted_total",
        "Number of packets not transmitted from the switch physical port",
    ),
    words(
        "counters",
        "port_rcv_data",
        "port_data_received_bytes_total",
        "Number of data octets received on all links",
    ),
    words(
        "counters",
        "port_xmit_data",
        "port_data_transmitted_bytes_total",
        "Number of data octets transmitted on all links",
    ),
    counter(
        "counters",
        "port_rcv_discards",
        "port_discards_received_total",
        "Number of inbound packets discarded by the port because the port is down or congested",
    ),
    counter(
        "counters",
        "port_xmit_discards",
        "port_discards_transmitted_total",
        "Number of outbound packets discarded by the port because the port is down or congested",
    ),
    counter(
        "counters",
        "port_rcv_errors",
        "port_errors_received_total",
        "Number of packets containing an error that were received on this port",
    ),
    counter(
        "counters",
        "port_rcv_packets",
        "port_packets_received_total",
        "Number of packets received on all VLs by this port (including errors)",
    ),
    counter(
        "counters",
        "port_xmit_packets",
        "port_packets_transmitted_total",
        "Number of packets transmitted on all VLs from this port (including errors)",
    ),
    counter(
        "counters",
        "port_rcv_remote_physical_errors",
        "port_receive_remote_physical_errors_total",
        "Number of packets marked with the EBP (End of Bad Packet) delimiter received on the port.",
    ),
    counter(
        "counters",
        "port_rcv_switch_relay_errors",
        "port_receive_switch_relay_errors_total",
        "Number of packets that could not be forwarded by the switch.",
    ),
    counter(
        "counters",
        "port_xmit_wait",
        "port_transmit_wait_total",
        "Number of ticks during which the port had data to transmit but no data was sent during the entire tick",
    ),
    counter(
        "counters",
        "symbol_error",
        "symbol_error_total",
        "Number of minor link errors detected on one or more physical lanes.",
    ),
    counter(
        "counters",
        "unicast_rcv_packets",
        "unicast_packets_received_total",
        "Number of unicast packets received (including errors)",
    ),
    counter(
        "counters",
        "unicast_xmit_packets",
        "unicast_packets_transmitted_total",
        "Number of unicast packets transmitted (including errors)",
    ),
    counter(
        "counters",
        "VL15_dropped",
        "vl15_dropped_total",
        "Number of incoming VL15 packets dropped due to resource limitations.",
    ),
    words(
        "counters_ext",
        "port_rcv_data_64",
        "legacy_data_received_bytes_total",
        "Number of data octets received on all links",
    ),
    words(
        "counters_ext",
        "port_xmit_data_64",
        "legacy_data_transmitted_bytes_total",
        "Number of data octets transmitted on all links",
    ),
    counter(
        "counters_ext",
        "port_multicast_rcv_packets",
        "legacy_multicast_packets_received_total",
        "Number of multicast packets received",
    ),
    counter(
        "counters_ext",
        "port_multicast_xmit_packets",
        "legacy_multicast_packets_transmitted_total",
        "Number of multicast packets transmitted",
    ),
    counter(
        "counters_ext",
        "port_rcv_packets_64",
        "legacy_packets_received_total",
        "Number of data packets received on all links",
    ),
    // node_exporter's HELP says "received" for the transmitted packets; kept so that
    // the metadata matches.
    counter(
        "counters_ext",
        "port_xmit_packets_64",
        "legacy_packets_transmitted_total",
        "Number of data packets received on all links",
    ),
    counter(
        "counters_ext",
        "port_unicast_rcv_packets",
        "legacy_unicast_packets_received_total",
        "Number of unicast packets received",
    ),
    counter(
        "counters_ext",
        "port_unicast_xmit_packets",
        "legacy_unicast_packets_transmitted_total",
        "Number of unicast packets transmitted",
    ),
];

/// What a counter file holds when the device has no performance-management agent.
const NO_PMA: &str = "N/A (no PMA)";

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut info = MetricFamily::new(
        "node_infiniband_info",
        MetricType::Gauge,
        "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
    );
    let mut state = MetricFamily::new(
        "node_infiniband_state_id",
        MetricType::Gauge,
        "State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, 4: active, 5: act defer)",
    );
    let mut physical_state = MetricFamily::new(
        "node_infiniband_physical_state_id",
        MetricType::Gauge,
        "Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, 3: disable, 4: shift, 5: link up, 6: link error recover, 7: phytest)",
    );
    let mut rate = MetricFamily::new(
        "node_infiniband_rate_bytes_per_second",
        MetricType::Gauge,
        "Maximum signal transfer rate",
    );
    let mut counters: Vec<MetricFamily> = COUNTERS
        .iter()
        .map(|k| {
            MetricFamily::new(
                format!("node_infiniband_{}", k.family),
                MetricType::Counter,
                k.help,
            )
        })
        .collect();

    for (device, dir) in dir_entries_with_prefix(&c.sys_path("class/infiniband"), "")? {
        let attr = |file: &str| {
            let path = dir.join(file);
            read_sysfs_value(&path).map_err(|source| NodeError::Io { path, source })
        };
        let hca_type = match attr("hca_type") {
            Err(NodeError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                String::new()
            }
            other => other?,
        };
        info.push(
            labels([
                ("board_id", &attr("board_id")?),
                ("device", &device),
                ("firmware_version", &attr("fw_ver")?),
                ("hca_type", &hca_type),
            ]),
            1.0,
        );
        for (port_name, port_dir) in dir_entries_with_prefix(&dir.join("ports"), "")? {
            let port: u32 = port_name
                .parse()
                .map_err(|_| parse_error(&port_dir, "port directory is not a number"))?;
            let port_labels = labels([("device", &device), ("port", &port.to_string())]);
            state.push(port_labels.clone(), state_id(&port_dir.join("state"))?);
            physical_state.push(port_labels.clone(), state_id(&port_dir.join("phys_state"))?);
            rate.push(port_labels.clone(), rate_bytes(&port_dir.join("rate"))?);
            // `counters` must be there; `counters_ext` only exists on old kernels.
            let counters_dir = port_dir.join("counters");
            if !counters_dir.is_dir() {
                return Err(NodeError::Io {
                    path: counters_dir,
                    source: std::io::Error::from(ErrorKind::NotFound),
                });
            }
            for (counter, family) in COUNTERS.iter().zip(counters.iter_mut()) {
                let counter_dir = port_dir.join(counter.dir);
                if let Some(v) = read_counter(&counter_dir, counter)? {
                    family.push(port_labels.clone(), v);
                }
            }
        }
    }
    out.push(info);
    out.extend([state, physical_state, rate]);
    out.extend(counters);
    Ok(())
}

/// The number before the colon of a port state (`4: ACTIVE`).
fn state_id(path: &Path) -> Result<f64> {
    let text = read_file(path)?;
    let mut parts = text.split(':');
    let (Some(id), Some(_), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(parse_error(path, format!("bad port state {text:?}")));
    };
    id.trim()
        .parse::<u32>()
        .map(f64::from)
        .map_err(|_| parse_error(path, format!("bad port state {text:?}")))
}

/// The port's signalling rate in bytes per second from `200 Gb/sec (4X HDR)`. Read
/// as node_exporter does, with single precision, and truncated.
fn rate_bytes(path: &Path) -> Result<f64> {
    let text = read_file(path)?;
    let gbits = text
        .split_once(' ')
        .and_then(|(number, _)| number.trim().parse::<f32>().ok())
        .ok_or_else(|| parse_error(path, format!("bad rate {text:?}")))?;
    Ok(((f64::from(gbits) * 125_000_000.0) as u64) as f64)
}

/// One counter of a port, `None` when the port does not keep it. Only regular files
/// count: the kernel may link other things into the directory.
fn read_counter(dir: &Path, counter: &Counter) -> Result<Option<f64>> {
    let path = dir.join(counter.file);
    if !is_attribute_file(&path)? {
        return Ok(None);
    }
    let text = match read_sysfs_value(&path) {
        Ok(text) => text,
        Err(e) if attribute_unavailable(&e) || e.kind() == ErrorKind::PermissionDenied => {
            return Ok(None);
        }
        Err(source) => return Err(NodeError::Io { path, source }),
    };
    match parse_go_uint(&text) {
        // The data counters count 4-octet words; the product wraps as the kernel's
        // u64 would.
        Some(v) if counter.in_words => Ok(Some(v.wrapping_mul(4) as f64)),
        Some(v) => Ok(Some(v as f64)),
        None if text.contains(NO_PMA) => Ok(None),
        None => Err(parse_error(&path, format!("bad counter {text:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn hca(fx: &Fixture, device: &str) -> String {
        let dir = format!("sys/class/infiniband/{device}");
        fx.write(&format!("{dir}/board_id"), "MT_0000000223\n")
            .write(&format!("{dir}/fw_ver"), "20.39.1002\n")
            .write(&format!("{dir}/hca_type"), "MT4123\n")
            .write(&format!("{dir}/ports/1/state"), "4: ACTIVE\n")
            .write(&format!("{dir}/ports/1/phys_state"), "5: LinkUp\n")
            .write(&format!("{dir}/ports/1/rate"), "200 Gb/sec (4X HDR)\n")
            .write(&format!("{dir}/ports/1/counters/port_rcv_data"), "1000\n")
            .write(&format!("{dir}/ports/1/counters/link_downed"), "0x10\n")
            .write(
                &format!("{dir}/ports/1/counters/symbol_error"),
                "N/A (no PMA)\n",
            )
            .write(
                &format!("{dir}/ports/1/hw_counters/out_of_buffer"),
                "junk\n",
            );
        dir
    }

    #[test]
    fn ports_and_counters() {
        let fx = Fixture::new();
        hca(&fx, "mlx5_0");
        let fams = run(&fx.collector(), collect);
        let port = [("device", "mlx5_0"), ("port", "1")];
        assert_eq!(
            find(&fams, "node_infiniband_info").samples[0].labels,
            labels([
                ("board_id", "MT_0000000223"),
                ("device", "mlx5_0"),
                ("firmware_version", "20.39.1002"),
                ("hca_type", "MT4123"),
            ])
        );
        assert_eq!(value(&fams, "node_infiniband_state_id", &port), 4.0);
        assert_eq!(
            value(&fams, "node_infiniband_physical_state_id", &port),
            5.0
        );
        assert_eq!(
            value(&fams, "node_infiniband_rate_bytes_per_second", &port),
            2.5e10
        );
        assert_eq!(
            value(
                &fams,
                "node_infiniband_port_data_received_bytes_total",
                &port
            ),
            4000.0
        );
        assert_eq!(
            value(&fams, "node_infiniband_link_downed_total", &port),
            16.0
        );
        assert!(
            find(&fams, "node_infiniband_symbol_error_total")
                .samples
                .is_empty()
        );
    }

    #[test]
    fn data_counters_wrap_as_u64() {
        let fx = Fixture::new();
        let dir = hca(&fx, "mlx5_0");
        fx.write(
            &format!("{dir}/ports/1/counters/port_rcv_data"),
            "4611686018427387904\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(
                &fams,
                "node_infiniband_port_data_received_bytes_total",
                &[("device", "mlx5_0")]
            ),
            0.0
        );
    }

    #[test]
    fn a_bad_counter_or_state_fails_the_collector() {
        for (file, contents) in [
            ("ports/1/counters/link_downed", "abc\n"),
            ("ports/1/counters/link_downed", "\n"),
            ("ports/1/state", "ACTIVE\n"),
            ("ports/1/rate", "N/A\n"),
            ("ports/x/state", "4: ACTIVE\n"),
        ] {
            let fx = Fixture::new();
            let dir = hca(&fx, "mlx5_0");
            fx.write(&format!("{dir}/{file}"), contents);
            let mut out = Vec::new();
            assert!(
                collect(&fx.collector(), &mut out).is_err(),
                "{file} = {contents:?}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn missing_identity_fails_missing_type_is_empty() {
        let fx = Fixture::new();
        let dir = hca(&fx, "mlx5_0");
        std::fs::remove_file(fx.dir.path().join(&dir).join("hca_type")).unwrap();
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            find(&fams, "node_infiniband_info").samples[0].labels[3],
            ("hca_type".to_string(), String::new())
        );
        std::fs::remove_file(fx.dir.path().join(&dir).join("fw_ver")).unwrap();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
