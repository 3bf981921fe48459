//! `entropy`: `node_entropy_available_bits` and `node_entropy_pool_size_bits` from
//! `/proc/sys/kernel/random`.

use super::{NodeCollector, Result, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    for (file, name, help) in [
        (
            "sys/kernel/random/entropy_avail",
            "node_entropy_available_bits",
            "Bits of available entropy.",
        ),
        (
            "sys/kernel/random/poolsize",
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
        ),
    ] {
        let path = c.proc_path(file);
        let value = parse_f64(&path, read_file(&path)?.trim())?;
        out.push(single(name, MetricType::Gauge, help, value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn available_and_pool_size() {
        let fx = Fixture::new();
        fx.write("proc/sys/kernel/random/entropy_avail", "256\n");
        fx.write("proc/sys/kernel/random/poolsize", "4096\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_entropy_available_bits", &[]), 256.0);
        assert_eq!(value(&fams, "node_entropy_pool_size_bits", &[]), 4096.0);
    }
}
