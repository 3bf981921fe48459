//! `softnet`: per-CPU packet processing from `/proc/net/softnet_stat` (one row of
//! hexadecimal counters per CPU: processed, dropped, time squeezed, …), the three
//! families node_exporter 1.5 reports.

use super::{NodeCollector, Result, labels, parse_error, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("net/softnet_stat");
    let text = read_file(&path)?;
    let mut processed = MetricFamily::new(
        "node_softnet_processed_total",
        MetricType::Counter,
        "Number of processed packets",
    );
    let mut dropped = MetricFamily::new(
        "node_softnet_dropped_total",
        MetricType::Counter,
        "Number of dropped packets",
    );
    let mut squeezed = MetricFamily::new(
        "node_softnet_times_squeezed_total",
        MetricType::Counter,
        "Number of times processing packets ran out of quota",
    );
    for (cpu, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < 3 {
            return Err(parse_error(
                &path,
                format!("row {cpu} has fewer than 3 fields"),
            ));
        }
        let hex = |i: usize| {
            u32::from_str_radix(fields[i], 16)
                .map(f64::from)
                .map_err(|_| parse_error(&path, format!("bad counter {:?}", fields[i])))
        };
        // node_exporter numbers CPUs by row (the kernel skips offline CPUs).
        let cpu = cpu.to_string();
        let l = labels([("cpu", cpu.as_str())]);
        processed.push(l.clone(), hex(0)?);
        dropped.push(l.clone(), hex(1)?);
        squeezed.push(l, hex(2)?);
    }
    out.push(dropped);
    out.push(processed);
    out.push(squeezed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn per_cpu_counters() {
        let fx = Fixture::new();
        fx.write(
            "proc/net/softnet_stat",
            "00049279 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n\
             000dfb82 00000029 0000000a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(&fams, "node_softnet_processed_total", &[("cpu", "0")]),
            f64::from(0x49279)
        );
        assert_eq!(
            value(&fams, "node_softnet_dropped_total", &[("cpu", "1")]),
            41.0
        );
        assert_eq!(
            value(&fams, "node_softnet_times_squeezed_total", &[("cpu", "1")]),
            10.0
        );
    }

    #[test]
    fn a_short_row_is_an_error() {
        let fx = Fixture::new();
        fx.write("proc/net/softnet_stat", "00000001 00000002\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
