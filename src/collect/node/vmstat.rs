//! `vmstat`: the fields of `/proc/vmstat` matching `--collector.vmstat.fields`, as
//! untyped `node_vmstat_<field>` (node_exporter does not type them).

use super::{NodeCollector, Result, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("vmstat");
    let text = read_file(&path)?;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !c.flags.vmstat_fields.is_match(key) {
            continue;
        }
        out.push(single(
            format!("node_vmstat_{key}"),
            MetricType::Untyped,
            format!("/proc/vmstat information field {key}."),
            parse_f64(&path, value)?,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn vmstat_default_filter_keeps_faults_paging_swapping_and_oom() {
        let fx = Fixture::new();
        fx.write(
            "proc/vmstat",
            "nr_free_pages 977769\npgpgin 7344136\npgpgout 1541180581\npswpin 1476\n\
pswpout 2045\npgfault 6030911\npgmajfault 4444\noom_kill 3\nnr_dirty 12\n",
        );
        let fams = run(&fx.collector(), collect);
        let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_vmstat_pgpgin",
                "node_vmstat_pgpgout",
                "node_vmstat_pswpin",
                "node_vmstat_pswpout",
                "node_vmstat_pgfault",
                "node_vmstat_pgmajfault",
                "node_vmstat_oom_kill"
            ]
        );
        assert_eq!(value(&fams, "node_vmstat_pgpgout", &[]), 1541180581.0);
        assert_eq!(fams[0].kind, MetricType::Untyped);
    }
}
