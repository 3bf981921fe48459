//! `conntrack`: the netfilter connection-tracking table's size and limit
//! (`/proc/sys/net/netfilter/nf_conntrack_{count,max}`) and its statistics summed over
//! CPUs (`/proc/net/stat/nf_conntrack`), as node_exporter 1.5 reports them (gauges).
//! A host without the `nf_conntrack` module has none of these files: no families.

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

/// The statistics node_exporter reports: the column of `/proc/net/stat/nf_conntrack`,
/// the family's suffix, and its help.
const STATS: [(&str, &str, &str); 8] = [
    (
        "found",
        "found",
        "Number of searched entries which were successful.",
    ),
    (
        "invalid",
        "invalid",
        "Number of packets seen which can not be tracked.",
    ),
    (
        "ignore",
        "ignore",
        "Number of packets seen which are already connected to a conntrack entry.",
    ),
    (
        "insert",
        "insert",
        "Number of entries inserted into the list.",
    ),
    (
        "insert_failed",
        "insert_failed",
        "Number of entries for which list insertion was attempted but failed.",
    ),
    (
        "drop",
        "drop",
        "Number of packets dropped due to conntrack failure.",
    ),
    (
        "early_drop",
        "early_drop",
        "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.",
    ),
    (
        "search_restart",
        "search_restart",
        "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
    ),
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    for (file, name, help) in [
        (
            "sys/net/netfilter/nf_conntrack_count",
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
        ),
        (
            "sys/net/netfilter/nf_conntrack_max",
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
        ),
    ] {
        let path = c.proc_path(file);
        let value = parse_f64(&path, read_file(&path)?.trim())?;
        out.push(single(name, MetricType::Gauge, help, value));
    }

    let path = c.proc_path("net/stat/nf_conntrack");
    let text = read_file(&path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| parse_error(&path, "empty"))?
        .split_ascii_whitespace()
        .collect();
    let mut sums = vec![0u64; header.len()];
    // One row of hexadecimal counters per CPU.
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let values: Vec<&str> = line.split_ascii_whitespace().collect();
        if values.len() != header.len() {
            return Err(parse_error(
                &path,
                "a row's width differs from the header's",
            ));
        }
        for (sum, value) in sums.iter_mut().zip(values) {
            let n = u64::from_str_radix(value, 16)
                .map_err(|_| parse_error(&path, format!("bad counter {value:?}")))?;
            *sum = sum.wrapping_add(n);
        }
    }
    for (column, suffix, help) in STATS {
        let Some(i) = header.iter().position(|h| *h == column) else {
            return Err(parse_error(&path, format!("no column {column}")));
        };
        out.push(single(
            format!("node_nf_conntrack_stat_{suffix}"),
            MetricType::Gauge,
            help,
            sums[i] as f64,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const STAT: &str = "entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
        0000000a  00000000 00000003 00000000 00000001 00000010 00000000 00000000 00000002 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000004\n\
        0000000a  00000000 00000005 00000000 00000000 00000011 00000000 00000000 00000003 00000001 00000002 00000000 00000000  00000000 00000000 00000000 00000000\n";

    #[test]
    fn table_size_and_statistics_summed_over_cpus() {
        let fx = Fixture::new();
        fx.write("proc/sys/net/netfilter/nf_conntrack_count", "12\n");
        fx.write("proc/sys/net/netfilter/nf_conntrack_max", "262144\n");
        fx.write("proc/net/stat/nf_conntrack", STAT);
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_nf_conntrack_entries", &[]), 12.0);
        assert_eq!(
            value(&fams, "node_nf_conntrack_entries_limit", &[]),
            262144.0
        );
        assert_eq!(value(&fams, "node_nf_conntrack_stat_found", &[]), 8.0);
        assert_eq!(value(&fams, "node_nf_conntrack_stat_ignore", &[]), 33.0);
        assert_eq!(value(&fams, "node_nf_conntrack_stat_insert", &[]), 5.0);
        assert_eq!(
            value(&fams, "node_nf_conntrack_stat_insert_failed", &[]),
            1.0
        );
        assert_eq!(value(&fams, "node_nf_conntrack_stat_drop", &[]), 2.0);
        assert_eq!(value(&fams, "node_nf_conntrack_stat_invalid", &[]), 1.0);
        assert_eq!(
            value(&fams, "node_nf_conntrack_stat_search_restart", &[]),
            4.0
        );
    }

    #[test]
    fn without_the_module_it_fails() {
        let fx = Fixture::new();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
        fx.write("proc/sys/net/netfilter/nf_conntrack_count", "1\n");
        fx.write("proc/sys/net/netfilter/nf_conntrack_max", "2\n");
        fx.write("proc/net/stat/nf_conntrack", "entries found\n1 2 3\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
