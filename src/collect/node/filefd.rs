//! `filefd`: `node_filefd_allocated` and `node_filefd_maximum` from
//! `/proc/sys/fs/file-nr` (allocated, unused — always 0 since Linux 2.6 — and maximum).

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("sys/fs/file-nr");
    let text = read_file(&path)?;
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let [allocated, _, maximum] = fields[..] else {
        return Err(parse_error(&path, "not three fields"));
    };
    out.push(single(
        "node_filefd_allocated",
        MetricType::Gauge,
        "File descriptor statistics: allocated.",
        parse_f64(&path, allocated)?,
    ));
    out.push(single(
        "node_filefd_maximum",
        MetricType::Gauge,
        "File descriptor statistics: maximum.",
        parse_f64(&path, maximum)?,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn allocated_and_maximum() {
        let fx = Fixture::new();
        fx.write("proc/sys/fs/file-nr", "1024\t0\t1631329\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_filefd_allocated", &[]), 1024.0);
        assert_eq!(value(&fams, "node_filefd_maximum", &[]), 1631329.0);
    }

    #[test]
    fn a_short_file_is_an_error() {
        let fx = Fixture::new();
        fx.write("proc/sys/fs/file-nr", "1024\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
