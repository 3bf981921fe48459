//! `stat`: boot time, context switches, forks, interrupts and process counts from
//! `/proc/stat`, and with `--collector.stat.softirq` (off by default) the softirq
//! calls per vector.

use super::{NodeCollector, Result, labels, proc_stat, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let stat = proc_stat::read(c)?;
    for (name, kind, help, v) in [
        (
            "node_intr_total",
            MetricType::Counter,
            "Total number of interrupts serviced.",
            stat.interrupts,
        ),
        (
            "node_context_switches_total",
            MetricType::Counter,
            "Total number of context switches.",
            stat.context_switches,
        ),
        (
            "node_forks_total",
            MetricType::Counter,
            "Total number of forks.",
            stat.forks,
        ),
        (
            "node_boot_time_seconds",
            MetricType::Gauge,
            "Node boot time, in unixtime.",
            stat.boot_time,
        ),
        (
            "node_procs_running",
            MetricType::Gauge,
            "Number of processes in runnable state.",
            stat.procs_running,
        ),
        (
            "node_procs_blocked",
            MetricType::Gauge,
            "Number of processes blocked waiting for I/O to complete.",
            stat.procs_blocked,
        ),
    ] {
        out.push(single(name, kind, help, v as f64));
    }
    if c.flags.stat_softirq {
        let mut f = MetricFamily::new(
            "node_softirqs_total",
            MetricType::Counter,
            "Number of softirq calls.",
        );
        for (vector, count) in SOFTIRQ_VECTORS.iter().zip(stat.softirqs) {
            f.push(labels([("vector", vector)]), count as f64);
        }
        out.push(f);
    }
    Ok(())
}

/// The softirq vectors of `/proc/stat`'s `softirq` line in the kernel's order, by
/// node_exporter's names (the kernel's `irq_poll` is `block_iopoll`).
const SOFTIRQ_VECTORS: [&str; 10] = [
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_iopoll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
];

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn stat_fields_become_families() {
        let fx = Fixture::new();
        fx.write(
            "proc/stat",
            "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 8885917 17 0 0\nctxt 38014093\nbtime 1418183276\n\
processes 26442\nprocs_running 2\nprocs_blocked 1\nsoftirq 5057579 250191 1 2 3 4 5 6 7 8 9\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_intr_total", &[]), 8885917.0);
        assert_eq!(value(&fams, "node_context_switches_total", &[]), 38014093.0);
        assert_eq!(value(&fams, "node_boot_time_seconds", &[]), 1418183276.0);
        assert_eq!(value(&fams, "node_forks_total", &[]), 26442.0);
        assert_eq!(value(&fams, "node_procs_running", &[]), 2.0);
        assert_eq!(value(&fams, "node_procs_blocked", &[]), 1.0);
        assert_eq!(fams.len(), 6);
        assert_eq!(find(&fams, "node_forks_total").kind, MetricType::Counter);
    }

    #[test]
    fn softirqs_per_vector_when_asked_for() {
        let fx = Fixture::new();
        let stat = "ctxt 38014093\nsoftirq 160737 0 22498 5 5003 40852 0 242 29103 2 63032\n";
        fx.write("proc/stat", stat);
        let c = fx.collector_with(&[("collector.stat.softirq", "true")]);
        let fams = run(&c, collect);
        let f = find(&fams, "node_softirqs_total");
        assert_eq!(f.samples.len(), 10);
        assert_eq!(
            value(&fams, "node_softirqs_total", &[("vector", "timer")]),
            22498.0
        );
        assert_eq!(
            value(&fams, "node_softirqs_total", &[("vector", "block_iopoll")]),
            0.0
        );
        assert_eq!(
            value(&fams, "node_softirqs_total", &[("vector", "rcu")]),
            63032.0
        );
        // A short line fails the collector with nothing reported, as in procfs; a
        // missing one reads as zeros.
        fx.write("proc/stat", "ctxt 1\nsoftirq 5057579 250191\n");
        let mut out = Vec::new();
        assert!(collect(&c, &mut out).is_err());
        assert!(out.is_empty());
        fx.write("proc/stat", "ctxt 1\n");
        let fams = run(&c, collect);
        assert_eq!(
            value(&fams, "node_softirqs_total", &[("vector", "hi")]),
            0.0
        );
    }
}
