//! `stat`: boot time, context switches, forks, interrupts and process counts from
//! `/proc/stat`.

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
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
    Ok(())
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
}
