//! `pressure`: pressure-stall totals from `/proc/pressure/{cpu,io,memory}` in
//! seconds. Like node_exporter 1.5, only the "some" line of `cpu` is exposed (newer
//! kernels also write a "full" line for cpu).

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

/// (resource, line, metric, help).
const SERIES: [(&str, &str, &str, &str); 5] = [
    (
        "cpu",
        "some",
        "node_pressure_cpu_waiting_seconds_total",
        "Total time in seconds that processes have waited for CPU time",
    ),
    (
        "io",
        "some",
        "node_pressure_io_waiting_seconds_total",
        "Total time in seconds that processes have waited due to IO congestion",
    ),
    (
        "io",
        "full",
        "node_pressure_io_stalled_seconds_total",
        "Total time in seconds no process could make progress due to IO congestion",
    ),
    (
        "memory",
        "some",
        "node_pressure_memory_waiting_seconds_total",
        "Total time in seconds that processes have waited for memory",
    ),
    (
        "memory",
        "full",
        "node_pressure_memory_stalled_seconds_total",
        "Total time in seconds no process could make progress due to memory congestion",
    ),
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    for resource in ["cpu", "io", "memory"] {
        let path = c.proc_path(&format!("pressure/{resource}"));
        let text = read_file(&path)?;
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let Some(kind) = fields.next() else {
                continue;
            };
            let Some((_, _, name, help)) = SERIES
                .iter()
                .find(|(r, k, _, _)| *r == resource && *k == kind)
            else {
                continue;
            };
            let total = fields
                .find_map(|f| f.strip_prefix("total="))
                .ok_or_else(|| parse_error(&path, "no total="))?;
            // Microseconds.
            let v = parse_f64(&path, total)? / 1e6;
            out.push(single(*name, MetricType::Counter, *help, v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn pressure_totals_in_seconds() {
        let fx = Fixture::new();
        fx.write(
            "proc/pressure/cpu",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=14036781\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        fx.write(
            "proc/pressure/io",
            "some avg10=0.18 avg60=0.34 avg300=0.10 total=159886802\nfull avg10=0.18 avg60=0.16 avg300=0.05 total=159229614\n",
        );
        fx.write(
            "proc/pressure/memory",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(fams.len(), 5);
        assert_eq!(
            value(&fams, "node_pressure_cpu_waiting_seconds_total", &[]),
            14.036781
        );
        assert_eq!(
            value(&fams, "node_pressure_io_stalled_seconds_total", &[]),
            159.229614
        );
        assert_eq!(
            value(&fams, "node_pressure_memory_stalled_seconds_total", &[]),
            1.5
        );
    }

    #[test]
    fn missing_pressure_is_an_error() {
        let fx = Fixture::new();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
