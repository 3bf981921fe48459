//! `edac`: memory controllers' corrected and uncorrected ECC error counts from
//! `/sys/devices/system/edac/mc/mc<N>/` (and per chip-select row, `csrow<M>/`), as
//! node_exporter 1.5 reports them. Errors the controller cannot place on a row are
//! reported under `csrow="unknown"`. A host without EDAC (most VMs) has no
//! controllers: no families, no error.

use std::path::Path;

use super::{NodeCollector, Result, numbered_entries, parse_f64, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// A counter file of a controller or row.
fn count(path: &Path) -> Result<f64> {
    parse_f64(path, read_file(path)?.trim())
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let root = c.sys_path("devices/system/edac/mc");
    if !root.is_dir() {
        return Ok(());
    }
    let mut ce = MetricFamily::new(
        "node_edac_correctable_errors_total",
        MetricType::Counter,
        "Total correctable memory errors.",
    );
    let mut ue = MetricFamily::new(
        "node_edac_uncorrectable_errors_total",
        MetricType::Counter,
        "Total uncorrectable memory errors.",
    );
    let mut row_ce = MetricFamily::new(
        "node_edac_csrow_correctable_errors_total",
        MetricType::Counter,
        "Total correctable memory errors for this csrow.",
    );
    let mut row_ue = MetricFamily::new(
        "node_edac_csrow_uncorrectable_errors_total",
        MetricType::Counter,
        "Total uncorrectable memory errors for this csrow.",
    );
    let row = |controller: &str, csrow: &str| {
        vec![
            ("controller".to_string(), controller.to_string()),
            ("csrow".to_string(), csrow.to_string()),
        ]
    };
    for (controller, dir) in numbered_entries(&root, "mc")? {
        let controller_labels = vec![("controller".to_string(), controller.clone())];
        ce.push(controller_labels.clone(), count(&dir.join("ce_count"))?);
        row_ce.push(
            row(&controller, "unknown"),
            count(&dir.join("ce_noinfo_count"))?,
        );
        ue.push(controller_labels, count(&dir.join("ue_count"))?);
        row_ue.push(
            row(&controller, "unknown"),
            count(&dir.join("ue_noinfo_count"))?,
        );
        for (csrow, row_dir) in numbered_entries(&dir, "csrow")? {
            row_ce.push(row(&controller, &csrow), count(&row_dir.join("ce_count"))?);
            row_ue.push(row(&controller, &csrow), count(&row_dir.join("ue_count"))?);
        }
    }
    if !ce.samples.is_empty() {
        out.extend([ce, row_ce, row_ue, ue]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn controllers_and_rows() {
        let fx = Fixture::new();
        let mc = "sys/devices/system/edac/mc/mc0";
        fx.write(&format!("{mc}/ce_count"), "7\n");
        fx.write(&format!("{mc}/ce_noinfo_count"), "1\n");
        fx.write(&format!("{mc}/ue_count"), "0\n");
        fx.write(&format!("{mc}/ue_noinfo_count"), "0\n");
        fx.write(&format!("{mc}/csrow0/ce_count"), "6\n");
        fx.write(&format!("{mc}/csrow0/ue_count"), "0\n");
        fx.write("sys/devices/system/edac/mc/power/control", "auto\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(
                &fams,
                "node_edac_correctable_errors_total",
                &[("controller", "0")]
            ),
            7.0
        );
        assert_eq!(
            value(
                &fams,
                "node_edac_csrow_correctable_errors_total",
                &[("controller", "0"), ("csrow", "unknown")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &fams,
                "node_edac_csrow_correctable_errors_total",
                &[("controller", "0"), ("csrow", "0")]
            ),
            6.0
        );
        assert_eq!(
            find(&fams, "node_edac_uncorrectable_errors_total").kind,
            MetricType::Counter
        );
    }

    #[test]
    fn no_edac_is_nothing_and_a_missing_counter_is_an_error() {
        let fx = Fixture::new();
        assert!(run(&fx.collector(), collect).is_empty());
        fx.write("sys/devices/system/edac/mc/mc0/ce_count", "1\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
