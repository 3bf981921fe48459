//! `netdev`: the sixteen per-interface counters of `/proc/net/dev` as
//! `node_network_<direction>_<field>_total{device}`.
//!
//! node_exporter 1.5 reads these over netlink by default, which adds
//! `receive_nohandler` and differs slightly for `receive_drop` (netlink omits
//! `rx_missed_errors`), `receive_frame` (netlink reports only `rx_frame_errors`) and
//! `transmit_carrier` (only `tx_carrier_errors`); `/proc/net/dev` is what node_exporter
//! reads with `--no-collector.netdev.netlink` and needs no socket.

use super::{NodeCollector, Result, labels, parse_error, parse_f64, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// The columns of `/proc/net/dev` after the interface name, in order.
const FIELDS: [&str; 16] = [
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
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("net/dev");
    let text = read_file(&path)?;
    let mut fams: Vec<MetricFamily> = FIELDS
        .iter()
        .map(|f| {
            MetricFamily::new(
                format!("node_network_{f}_total"),
                MetricType::Counter,
                format!("Network device statistic {f}."),
            )
        })
        .collect();
    // Two header lines, then "  name: v1 v2 ...".
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let device = name.trim();
        if c.flags.netdev_devices.ignored(device) {
            continue;
        }
        let mut n = 0;
        for (fam, field) in fams.iter_mut().zip(rest.split_ascii_whitespace()) {
            fam.push(labels([("device", device)]), parse_f64(&path, field)?);
            n += 1;
        }
        if n != FIELDS.len() {
            return Err(parse_error(&path, format!("{device}: {n} fields, want 16")));
        }
    }
    out.extend(fams.into_iter().filter(|f| !f.samples.is_empty()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::collect::node::{NodeCollector, NodeFlags};

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  435303  245    0    0    0     0          0         0   435303    245    0    0    0     0       0          0
  eth0: 874354587 1036395 1 2 3 4 5 6 563352563 732147 7 8 9 10 11 12
";

    #[test]
    fn netdev_sixteen_counters_per_device() {
        let fx = Fixture::new();
        fx.write("proc/net/dev", DEV);
        let fams = run(&fx.collector(), collect);
        assert_eq!(fams.len(), 16);
        assert_eq!(
            value(
                &fams,
                "node_network_receive_bytes_total",
                &[("device", "eth0")]
            ),
            874354587.0
        );
        assert_eq!(
            value(
                &fams,
                "node_network_transmit_compressed_total",
                &[("device", "eth0")]
            ),
            12.0
        );
        assert_eq!(
            value(
                &fams,
                "node_network_transmit_colls_total",
                &[("device", "eth0")]
            ),
            10.0
        );
        assert_eq!(
            value(
                &fams,
                "node_network_receive_packets_total",
                &[("device", "lo")]
            ),
            245.0
        );
        let f = find(&fams, "node_network_receive_frame_total");
        assert_eq!(f.help, "Network device statistic receive_frame.");
    }

    #[test]
    fn netdev_exclude_filter() {
        let fx = Fixture::new();
        fx.write("proc/net/dev", DEV);
        let flags = NodeFlags::from_pairs([("collector.netdev.device-exclude", "^lo$")]).unwrap();
        let c = NodeCollector::with_flags(fx.paths(), &flags).unwrap();
        let fams = run(&c, collect);
        assert_eq!(
            find(&fams, "node_network_receive_bytes_total")
                .samples
                .len(),
            1
        );
    }
}
