//! `stat`: boot time, context switches, forks, interrupts and process counts from
//! `/proc/stat`, and with `--collector.stat.softirq` (off by default) the softirq
//! calls per vector.

use super::{NodeCollector, Result, labels, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("stat");
    let text = read_file(&path)?;
    let mut found = 0;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(key), Some(first)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (name, kind, help) = match key {
            "intr" => (
                "node_intr_total",
                MetricType::Counter,
                "Total number of interrupts serviced.",
            ),
            "ctxt" => (
                "node_context_switches_total",
                MetricType::Counter,
                "Total number of context switches.",
            ),
            "processes" => (
                "node_forks_total",
                MetricType::Counter,
                "Total number of forks.",
            ),
            "btime" => (
                "node_boot_time_seconds",
                MetricType::Gauge,
                "Node boot time, in unixtime.",
            ),
            "procs_running" => (
                "node_procs_running",
                MetricType::Gauge,
                "Number of processes in runnable state.",
            ),
            "procs_blocked" => (
                "node_procs_blocked",
                MetricType::Gauge,
                "Number of processes blocked waiting for I/O to complete.",
            ),
            _ => continue,
        };
        out.push(single(name, kind, help, parse_f64(&path, first)?));
        found += 1;
    }
    if found == 0 {
        return Err(parse_error(&path, "no known fields"));
    }
    if c.flags.stat_softirq {
        out.push(softirqs(&path, &text)?);
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

/// `node_softirqs_total{vector}` (`--collector.stat.softirq`): the calls per vector
/// since boot. As procfs reads it, a missing line is all zeros and a short one an
/// error.
fn softirqs(path: &std::path::Path, text: &str) -> Result<MetricFamily> {
    let mut counts = [0.0; SOFTIRQ_VECTORS.len()];
    if let Some(line) = text.lines().find(|l| l.starts_with("softirq ")) {
        // "softirq <total> <hi> <timer> …"
        let values: Vec<&str> = line.split_ascii_whitespace().skip(2).collect();
        if values.len() < counts.len() {
            return Err(parse_error(path, format!("short softirq line {line:?}")));
        }
        for (count, v) in counts.iter_mut().zip(values) {
            *count = v
                .parse::<u64>()
                .map_err(|_| parse_error(path, format!("bad softirq count {v:?}")))?
                as f64;
        }
    }
    let mut f = MetricFamily::new(
        "node_softirqs_total",
        MetricType::Counter,
        "Number of softirq calls.",
    );
    for (vector, count) in SOFTIRQ_VECTORS.iter().zip(counts) {
        f.push(labels([("vector", vector)]), count);
    }
    Ok(f)
}

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
processes 26442\nprocs_running 2\nprocs_blocked 1\nsoftirq 5057579 250191\n",
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
        let flags =
            crate::collect::node::NodeFlags::from_pairs([("collector.stat.softirq", "true")])
                .unwrap();
        let c = NodeCollector::with_flags(fx.paths(), &flags).unwrap();
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
        // A short line is an error, as in procfs; a missing one reads as zeros.
        fx.write("proc/stat", "ctxt 1\nsoftirq 5057579 250191\n");
        assert!(collect(&c, &mut Vec::new()).is_err());
        fx.write("proc/stat", "ctxt 1\n");
        let fams = run(&c, collect);
        assert_eq!(
            value(&fams, "node_softirqs_total", &[("vector", "hi")]),
            0.0
        );
    }
}
