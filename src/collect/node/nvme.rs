//! `nvme`: `node_nvme_info`, each NVMe controller's model, serial, firmware and state
//! from `/sys/class/nvme/<device>`, as labels of a constant 1.

use super::{NodeCollector, NodeError, Result, dir_entries_with_prefix, read_sysfs_value};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut info = MetricFamily::new(
        "node_nvme_info",
        MetricType::Gauge,
        "Non-numeric data from /sys/class/nvme/<device>, value is always 1.",
    );
    for (device, dir) in dir_entries_with_prefix(&c.sys_path("class/nvme"), "")? {
        let mut labels = vec![("device".to_string(), device)];
        // All four or none: a controller that lost one (being reset, removed) fails
        // the collector as in node_exporter, rather than show a partial identity.
        for (file, label) in [
            ("firmware_rev", "firmware_revision"),
            ("model", "model"),
            ("serial", "serial"),
            ("state", "state"),
        ] {
            let path = dir.join(file);
            let value = read_sysfs_value(&path).map_err(|source| NodeError::Io { path, source })?;
            labels.push((label.to_string(), value));
        }
        info.push(labels, 1.0);
    }
    out.push(info);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn controller(fx: &Fixture, name: &str, model: &str) {
        fx.write(&format!("sys/class/nvme/{name}/firmware_rev"), "GDC5602Q\n")
            .write(&format!("sys/class/nvme/{name}/model"), model)
            .write(
                &format!("sys/class/nvme/{name}/serial"),
                "S64HNE0T512345      \n",
            )
            .write(&format!("sys/class/nvme/{name}/state"), "live\n");
    }

    #[test]
    fn one_series_per_controller_with_trimmed_identity() {
        let fx = Fixture::new();
        controller(&fx, "nvme0", "SAMSUNG MZQL23T8HCLS-00A07               \n");
        controller(&fx, "nvme1", "INTEL SSDPF2KX038TZ\n");
        let fams = run(&fx.collector(), collect);
        let info = find(&fams, "node_nvme_info");
        assert_eq!(info.samples.len(), 2);
        assert_eq!(
            info.samples[0].labels,
            vec![
                ("device".to_string(), "nvme0".to_string()),
                ("firmware_revision".to_string(), "GDC5602Q".to_string()),
                (
                    "model".to_string(),
                    "SAMSUNG MZQL23T8HCLS-00A07".to_string()
                ),
                ("serial".to_string(), "S64HNE0T512345".to_string()),
                ("state".to_string(), "live".to_string()),
            ]
        );
    }

    #[test]
    fn a_controller_missing_an_attribute_fails_the_collector() {
        let fx = Fixture::new();
        controller(&fx, "nvme0", "M\n");
        fx.write("sys/class/nvme/nvme1/model", "M\n");
        let mut out = Vec::new();
        assert!(collect(&fx.collector(), &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let fx = Fixture::new();
        controller(&fx, "nvme0", "M\n");
        std::fs::write(
            fx.dir.path().join("sys/class/nvme/nvme0/model"),
            b"Caf\xe9\n",
        )
        .unwrap();
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            find(&fams, "node_nvme_info").samples[0].labels[2].1,
            "Caf\u{FFFD}"
        );
    }
}
