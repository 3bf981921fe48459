//! `arp`: `node_arp_entries{device}`, the ARP table's entries per interface, from
//! `/proc/net/arp`.

use std::collections::BTreeMap;

use super::{NodeCollector, Result, labels, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let text = read_file(&c.proc_path("net/arp"))?;
    let mut per_device: BTreeMap<&str, u64> = BTreeMap::new();
    // IP address, HW type, Flags, HW address, Mask, Device; a header line first.
    for line in text.lines().skip(1) {
        if let Some(device) = line.split_ascii_whitespace().nth(5) {
            if !c.flags.arp_devices.ignored(device) {
                *per_device.entry(device).or_insert(0) += 1;
            }
        }
    }
    let mut f = MetricFamily::new(
        "node_arp_entries",
        MetricType::Gauge,
        "ARP entries by device",
    );
    for (device, n) in per_device {
        f.push(labels([("device", device)]), n as f64);
    }
    out.push(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn entries_are_counted_per_device() {
        let fx = Fixture::new();
        fx.write(
            "proc/net/arp",
            "IP address       HW type     Flags       HW address            Mask     Device\n\
             192.168.1.1      0x1         0x2         52:54:00:12:34:56     *        eth0\n\
             192.168.1.7      0x1         0x2         52:54:00:12:34:57     *        eth0\n\
             10.0.0.1         0x1         0x2         52:54:00:12:34:58     *        eth1\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_arp_entries", &[("device", "eth0")]), 2.0);
        assert_eq!(value(&fams, "node_arp_entries", &[("device", "eth1")]), 1.0);
    }

    #[test]
    fn device_filters_leave_devices_out() {
        let fx = Fixture::new();
        fx.write(
            "proc/net/arp",
            "IP address       HW type     Flags       HW address            Mask     Device\n\
             192.168.1.1      0x1         0x2         52:54:00:12:34:56     *        eth0\n\
             10.42.0.7        0x1         0x2         52:54:00:12:34:58     *        cni0\n\
             172.17.0.2       0x1         0x2         52:54:00:12:34:59     *        docker0\n",
        );
        let c = fx.collector_with(&[
            ("collector.arp.device-include", "^(eth|docker)"),
            ("collector.arp.device-exclude", "^docker"),
        ]);
        let fams = run(&c, collect);
        let f = find(&fams, "node_arp_entries");
        assert_eq!(f.samples.len(), 1);
        assert_eq!(value(&fams, "node_arp_entries", &[("device", "eth0")]), 1.0);
    }

    #[test]
    fn a_missing_table_is_an_error() {
        let fx = Fixture::new();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
