//! `sockstat`: socket counts from `/proc/net/sockstat` and `/proc/net/sockstat6` as
//! `node_sockstat_<PROTO>_<state>`; `mem` (pages) also as `mem_bytes`.

use std::path::Path;

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("net/sockstat");
    let text = read_file(&path)?;
    parse(c, &path, &text, out)?;
    // IPv6 may be disabled; node_exporter ignores a missing sockstat6.
    let path6 = c.proc_path("net/sockstat6");
    if let Ok(text) = std::fs::read_to_string(&path6) {
        parse(c, &path6, &text, out)?;
    }
    Ok(())
}

fn parse(c: &NodeCollector, path: &Path, text: &str, out: &mut Vec<MetricFamily>) -> Result<()> {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        while let Some(state) = fields.next() {
            let value = fields
                .next()
                .ok_or_else(|| parse_error(path, format!("{proto} {state} without value")))?;
            let v = parse_f64(path, value)?;
            if proto == "sockets" {
                if state == "used" {
                    out.push(single(
                        "node_sockstat_sockets_used",
                        MetricType::Gauge,
                        "Number of IPv4 sockets in use.",
                        v,
                    ));
                }
                continue;
            }
            out.push(single(
                format!("node_sockstat_{proto}_{state}"),
                MetricType::Gauge,
                format!("Number of {proto} sockets in state {state}."),
                v,
            ));
            if state == "mem" {
                out.push(single(
                    format!("node_sockstat_{proto}_mem_bytes"),
                    MetricType::Gauge,
                    format!("Number of {proto} sockets in state mem_bytes."),
                    v * c.page_size,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn sockstat_counts_and_mem_bytes() {
        let fx = Fixture::new();
        fx.write(
            "proc/net/sockstat",
            "sockets: used 229\nTCP: inuse 4 orphan 0 tw 4 alloc 17 mem 1\nUDP: inuse 0 mem 0\n\
UDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n",
        );
        fx.write(
            "proc/net/sockstat6",
            "TCP6: inuse 17\nUDP6: inuse 9\nFRAG6: inuse 0 memory 0\n",
        );
        let c = fx.collector();
        let fams = run(&c, collect);
        assert_eq!(value(&fams, "node_sockstat_sockets_used", &[]), 229.0);
        assert_eq!(value(&fams, "node_sockstat_TCP_alloc", &[]), 17.0);
        assert_eq!(
            value(&fams, "node_sockstat_TCP_mem_bytes", &[]),
            c.page_size
        );
        assert_eq!(value(&fams, "node_sockstat_FRAG_memory", &[]), 0.0);
        assert_eq!(value(&fams, "node_sockstat_TCP6_inuse", &[]), 17.0);
        assert_eq!(
            find(&fams, "node_sockstat_UDP6_inuse").help,
            "Number of UDP6 sockets in state inuse."
        );
        assert!(
            !fams
                .iter()
                .any(|f| f.name == "node_sockstat_FRAG_memory_bytes")
        );
    }
}
