//! `netclass`: each network interface's properties from `/sys/class/net/<iface>/`, as
//! node_exporter 1.5 reports them: `node_network_up`, `node_network_info{address,
//! broadcast, duplex, ifalias, operstate}` and one family per numeric attribute
//! (`mtu_bytes`, `speed_bytes`, `carrier`, `flags`, …). Dashboards (Node Exporter
//! Full's network panels) and link-down alerts read them.
//!
//! As node_exporter does, an attribute the kernel refuses to read (a link that is
//! down has no `carrier` or `speed`; virtual devices no `duplex`) is left out rather
//! than reported as 0, and a speed of -1 (unknown) is reported as it is, times
//! 125000, unless `--collector.netclass.ignore-invalid-speed` is set (off by
//! default). Devices `--collector.netclass.ignored-devices` matches are not read.

use std::path::Path;

use super::{NodeCollector, NodeError, Result, labels};
use crate::exposition::family::{MetricFamily, MetricType};

/// The numeric attributes: sysfs file, metric name suffix, type.
const ATTRIBUTES: [(&str, &str, MetricType); 16] = [
    ("addr_assign_type", "address_assign_type", MetricType::Gauge),
    ("carrier", "carrier", MetricType::Gauge),
    (
        "carrier_changes",
        "carrier_changes_total",
        MetricType::Counter,
    ),
    (
        "carrier_up_count",
        "carrier_up_changes_total",
        MetricType::Counter,
    ),
    (
        "carrier_down_count",
        "carrier_down_changes_total",
        MetricType::Counter,
    ),
    ("dev_id", "device_id", MetricType::Gauge),
    ("dormant", "dormant", MetricType::Gauge),
    ("flags", "flags", MetricType::Gauge),
    ("ifindex", "iface_id", MetricType::Gauge),
    ("iflink", "iface_link", MetricType::Gauge),
    ("link_mode", "iface_link_mode", MetricType::Gauge),
    ("mtu", "mtu_bytes", MetricType::Gauge),
    ("name_assign_type", "name_assign_type", MetricType::Gauge),
    ("netdev_group", "net_dev_group", MetricType::Gauge),
    ("tx_queue_len", "transmit_queue_length", MetricType::Gauge),
    ("type", "protocol_type", MetricType::Gauge),
];

/// An attribute's text, trimmed; `None` when the kernel does not give it.
fn attribute(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A numeric attribute: decimal, or hexadecimal with `0x` (`flags`, `dev_id`).
fn number(text: &str) -> Option<i64> {
    match text.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let root = c.sys_path("class/net");
    let entries = std::fs::read_dir(&root).map_err(|source| NodeError::Io {
        path: root.clone(),
        source,
    })?;
    // Interfaces are directories (symlinks to them); `bonding_masters` is a file.
    let mut devices: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    devices.sort();
    let mut up = MetricFamily::new(
        "node_network_up",
        MetricType::Gauge,
        "Value is 1 if operstate is 'up', 0 otherwise.",
    );
    let mut info = MetricFamily::new(
        "node_network_info",
        MetricType::Gauge,
        "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
    );
    let mut speed = MetricFamily::new(
        "node_network_speed_bytes",
        MetricType::Gauge,
        "Network device property: speed_bytes",
    );
    let mut numeric: Vec<MetricFamily> = ATTRIBUTES
        .iter()
        .map(|(_, suffix, kind)| {
            MetricFamily::new(
                format!("node_network_{suffix}"),
                *kind,
                format!("Network device property: {suffix}"),
            )
        })
        .collect();
    for device in devices
        .iter()
        .filter(|d| !c.flags.netclass_ignored_devices.is_match(d))
    {
        let dir = root.join(device);
        let text = |name: &str| attribute(&dir, name).unwrap_or_default();
        let operstate = text("operstate");
        up.push(
            labels([("device", device)]),
            if operstate == "up" { 1.0 } else { 0.0 },
        );
        info.push(
            labels([
                ("address", &text("address")),
                ("broadcast", &text("broadcast")),
                ("device", device),
                ("duplex", &text("duplex")),
                ("ifalias", &text("ifalias")),
                ("operstate", &operstate),
            ]),
            1.0,
        );
        for (fam, (file, _, _)) in numeric.iter_mut().zip(ATTRIBUTES.iter()) {
            if let Some(v) = attribute(&dir, file).as_deref().and_then(number) {
                fam.push(labels([("device", device)]), v as f64);
            }
        }
        let speed_known = |mbps: &i64| *mbps >= 0 || !c.flags.netclass_ignore_invalid_speed;
        if let Some(mbps) = attribute(&dir, "speed")
            .as_deref()
            .and_then(number)
            .filter(speed_known)
        {
            // Mbit/s to bytes/s, in integers as node_exporter computes it.
            speed.push(
                labels([("device", device)]),
                mbps.saturating_mul(1_000_000) as f64 / 8.0,
            );
        }
    }
    numeric.push(speed);
    out.push(up);
    out.push(info);
    out.extend(numeric.into_iter().filter(|f| !f.samples.is_empty()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn interfaces_as_node_exporter_reports_them() {
        let fx = Fixture::new();
        for (file, v) in [
            ("addr_assign_type", "0"),
            ("address", "02:fc:00:00:00:01"),
            ("broadcast", "ff:ff:ff:ff:ff:ff"),
            ("carrier", "1"),
            ("carrier_changes", "2"),
            ("carrier_up_count", "1"),
            ("carrier_down_count", "1"),
            ("dev_id", "0x0"),
            ("dormant", "0"),
            ("duplex", "full"),
            ("flags", "0x1003"),
            ("ifalias", ""),
            ("ifindex", "4"),
            ("iflink", "4"),
            ("link_mode", "0"),
            ("mtu", "1400"),
            ("name_assign_type", "1"),
            ("netdev_group", "0"),
            ("operstate", "up"),
            ("speed", "10000"),
            ("tx_queue_len", "1000"),
            ("type", "1"),
        ] {
            fx.write(&format!("sys/class/net/eth0/{file}"), &format!("{v}\n"));
        }
        // A link that is down: no carrier, speed or duplex to read.
        for (file, v) in [("operstate", "down"), ("mtu", "1500"), ("flags", "0x1002")] {
            fx.write(&format!("sys/class/net/ifb0/{file}"), &format!("{v}\n"));
        }
        // Unknown speed is reported as node_exporter reports it.
        fx.write("sys/class/net/veth1/speed", "-1\n");
        fx.write("sys/class/net/bonding_masters", "bond0\n");
        let fams = run(&fx.collector(), collect);
        let dev = |d: &'static str| [("device", d)];
        assert_eq!(value(&fams, "node_network_up", &dev("eth0")), 1.0);
        assert_eq!(value(&fams, "node_network_up", &dev("ifb0")), 0.0);
        assert_eq!(value(&fams, "node_network_flags", &dev("eth0")), 4099.0);
        assert_eq!(value(&fams, "node_network_mtu_bytes", &dev("ifb0")), 1500.0);
        assert_eq!(
            value(&fams, "node_network_speed_bytes", &dev("eth0")),
            1_250_000_000.0
        );
        assert_eq!(
            value(&fams, "node_network_speed_bytes", &dev("veth1")),
            -125_000.0
        );
        assert_eq!(
            value(&fams, "node_network_carrier_changes_total", &dev("eth0")),
            2.0
        );
        assert_eq!(
            find(&fams, "node_network_carrier_changes_total").kind,
            MetricType::Counter
        );
        // Left out where the kernel gives nothing, not reported as 0.
        let carrier = find(&fams, "node_network_carrier");
        assert_eq!(carrier.samples.len(), 1);
        let info = find(&fams, "node_network_info");
        assert_eq!(info.samples.len(), 3, "bonding_masters is not an interface");
        let eth0 = &info.samples[0].labels;
        assert!(eth0.contains(&("duplex".to_string(), "full".to_string())));
        assert!(eth0.contains(&("operstate".to_string(), "up".to_string())));
        assert!(!fams.iter().any(|f| f.samples.is_empty()));

        let fams = run(
            &fx.collector_with(&[
                ("collector.netclass.ignored-devices", "^ifb"),
                ("collector.netclass.ignore-invalid-speed", "true"),
            ]),
            collect,
        );
        let devices: Vec<&str> = find(&fams, "node_network_up")
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(devices, ["eth0", "veth1"]);
        let speeds = find(&fams, "node_network_speed_bytes");
        assert_eq!(speeds.samples.len(), 1, "veth1's unknown speed is left out");
    }
}
