//! `schedstat`: per-CPU scheduler time from `/proc/schedstat` (kernels built with
//! `CONFIG_SCHEDSTATS`): seconds spent running tasks, seconds tasks waited for the
//! CPU, and time slices run.

use super::{NodeCollector, Result, labels, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// A CPU line's number and its three timing fields, as procfs finds them: the first
/// `cpu<N>` followed by at least nine numbers one space apart, anywhere in the line
/// (procfs's pattern is not anchored), fields 7 to 9 taken as running time, waiting
/// time (ns) and time slices.
fn cpu_line(line: &str) -> Option<(&str, &str, &str, &str)> {
    fn digits(s: &str) -> Option<(&str, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        (end > 0).then(|| s.split_at(end))
    }
    let mut search_from = 0;
    while let Some(found) = line[search_from..].find("cpu") {
        let start = search_from + found;
        search_from = start + 3;
        let Some((cpu, mut rest)) = digits(&line[start + 3..]) else {
            continue;
        };
        let mut fields = [""; 9];
        let complete = fields.iter_mut().all(|field| {
            let Some((number, after)) = rest.strip_prefix(' ').and_then(digits) else {
                return false;
            };
            *field = number;
            rest = after;
            true
        });
        if complete {
            return Some((cpu, fields[6], fields[7], fields[8]));
        }
    }
    None
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let text = read_file(&c.proc_path("schedstat"))?;
    let mut running = MetricFamily::new(
        "node_schedstat_running_seconds_total",
        MetricType::Counter,
        "Number of seconds CPU spent running a process.",
    );
    let mut waiting = MetricFamily::new(
        "node_schedstat_waiting_seconds_total",
        MetricType::Counter,
        "Number of seconds spent by processing waiting for this CPU.",
    );
    let mut timeslices = MetricFamily::new(
        "node_schedstat_timeslices_total",
        MetricType::Counter,
        "Number of timeslices executed by CPU.",
    );
    for line in text.lines() {
        let Some((cpu, running_ns, waiting_ns, slices)) = cpu_line(line) else {
            continue;
        };
        // A field too large for the kernel's u64 is not a reading: skip the line.
        let (Ok(running_ns), Ok(waiting_ns), Ok(slices)) = (
            running_ns.parse::<u64>(),
            waiting_ns.parse::<u64>(),
            slices.parse::<u64>(),
        ) else {
            continue;
        };
        let cpu = labels([("cpu", cpu)]);
        running.push(cpu.clone(), running_ns as f64 / 1e9);
        waiting.push(cpu.clone(), waiting_ns as f64 / 1e9);
        timeslices.push(cpu, slices as f64);
    }
    out.extend([running, waiting, timeslices]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn cpu_lines_in_seconds() {
        let fx = Fixture::new();
        fx.write(
            "proc/schedstat",
            "version 15\ntimestamp 4297299139\n\
             cpu0 0 0 0 0 0 0 2498723516204 395612054879 18452213\n\
             domain0 00000000,00000003 212401 210117 1913 2218376 399 0 0 210117\n\
             cpu12 0 0 0 0 0 0 1873605531 1207732 5104 99\n\
             cpu3 0 0 0 0 0 0 99999999999999999999 1 1\n\
             cpu4  0 0 0 0 0 0 1 1 1\n\
             cpu5 0 0 0 0 0 0 1 1\n\
             xcpu9 cpux cpu7 0 0 0 0 0 0 1000000000 2000000000 3 junk\n",
        );
        let fams = run(&fx.collector(), collect);
        let running = find(&fams, "node_schedstat_running_seconds_total");
        assert_eq!(
            running.samples.len(),
            3,
            "overflowing, double-spaced and short lines skipped"
        );
        // Unanchored, as procfs's pattern: the first `cpu<N>` with nine numbers.
        assert_eq!(
            value(
                &fams,
                "node_schedstat_waiting_seconds_total",
                &[("cpu", "7")]
            ),
            2.0
        );
        assert_eq!(
            value(
                &fams,
                "node_schedstat_running_seconds_total",
                &[("cpu", "0")]
            ),
            2498.723516204
        );
        assert_eq!(
            value(
                &fams,
                "node_schedstat_waiting_seconds_total",
                &[("cpu", "12")]
            ),
            0.001207732
        );
        assert_eq!(
            value(&fams, "node_schedstat_timeslices_total", &[("cpu", "12")]),
            5104.0
        );
    }

    #[test]
    fn missing_file_fails() {
        let fx = Fixture::new();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
