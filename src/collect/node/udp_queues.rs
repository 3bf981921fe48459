//! `udp_queues`: `node_udp_queues{ip, queue}`, the bytes queued in UDP sockets' send
//! and receive buffers, summed from `/proc/net/udp` and `/proc/net/udp6`.

use super::{NodeCollector, NodeError, Result, labels, parse_error, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut f = MetricFamily::new(
        "node_udp_queues",
        MetricType::Gauge,
        "Number of allocated memory in the kernel for UDP datagrams in bytes.",
    );
    let mut missing: Option<NodeError> = None;
    for (file, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
        let path = c.proc_path(file);
        let text = match read_file(&path) {
            Ok(text) => text,
            // A kernel without IPv6 has no udp6: the other still counts.
            Err(e) => {
                missing.get_or_insert(e);
                continue;
            }
        };
        let (mut tx, mut rx) = (0u64, 0u64);
        // sl local_address rem_address st tx_queue:rx_queue …; a header line first.
        for line in text.lines().skip(1) {
            let Some(queues) = line.split_ascii_whitespace().nth(4) else {
                continue;
            };
            let (t, r) = queues
                .split_once(':')
                .ok_or_else(|| parse_error(&path, format!("bad queues {queues:?}")))?;
            let hex = |s: &str| {
                u64::from_str_radix(s, 16)
                    .map_err(|_| parse_error(&path, format!("bad queue {s:?}")))
            };
            tx = tx.saturating_add(hex(t)?);
            rx = rx.saturating_add(hex(r)?);
        }
        f.push(labels([("ip", ip), ("queue", "tx")]), tx as f64);
        f.push(labels([("ip", ip), ("queue", "rx")]), rx as f64);
    }
    match missing {
        Some(e) if f.samples.is_empty() => Err(e),
        _ => {
            out.push(f);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
        \x20 123: 0100007F:0035 00000000:0000 07 00000100:00000200 00:00000000 00000000   101        0 16617 2 0000000000000000 0\n\
        \x20 456: 00000000:0044 00000000:0000 07 00000001:00000002 00:00000000 00000000     0        0 16618 2 0000000000000000 0\n";

    #[test]
    fn queues_are_summed_per_protocol() {
        let fx = Fixture::new();
        fx.write("proc/net/udp", UDP);
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(&fams, "node_udp_queues", &[("ip", "v4"), ("queue", "tx")]),
            f64::from(0x101)
        );
        assert_eq!(
            value(&fams, "node_udp_queues", &[("ip", "v4"), ("queue", "rx")]),
            f64::from(0x202)
        );
        // No udp6 on this kernel: only v4.
        assert_eq!(find(&fams, "node_udp_queues").samples.len(), 2);
    }

    #[test]
    fn neither_file_is_an_error() {
        let fx = Fixture::new();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
