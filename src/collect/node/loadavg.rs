//! `loadavg`: `node_load1`, `node_load5`, `node_load15` from `/proc/loadavg`.

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("loadavg");
    let text = read_file(&path)?;
    let mut fields = text.split_ascii_whitespace();
    for (name, help) in [
        ("node_load1", "1m load average."),
        ("node_load5", "5m load average."),
        ("node_load15", "15m load average."),
    ] {
        let field = fields
            .next()
            .ok_or_else(|| parse_error(&path, "fewer than three fields"))?;
        out.push(single(
            name,
            MetricType::Gauge,
            help,
            parse_f64(&path, field)?,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn loadavg_three_gauges() {
        let fx = Fixture::new();
        fx.write("proc/loadavg", "0.02 0.04 0.05 1/497 11947\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_load1", &[]), 0.02);
        assert_eq!(value(&fams, "node_load5", &[]), 0.04);
        assert_eq!(value(&fams, "node_load15", &[]), 0.05);
    }

    #[test]
    fn short_loadavg_is_an_error() {
        let fx = Fixture::new();
        fx.write("proc/loadavg", "0.02\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
