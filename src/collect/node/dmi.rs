//! `dmi`: `node_dmi_info`, the machine's DMI identity (vendor, product, board, BIOS,
//! serial numbers) from `/sys/class/dmi/id`, as labels of a constant 1.
//!
//! node_exporter reads the table once at start-up; ODIN reads it each scrape (two
//! dozen small files), which gives the same series and follows a BIOS update without
//! a restart. Files the process may not read (`*_serial` and `product_uuid` are
//! root-only) are left out, as node_exporter does.

use std::io::ErrorKind;

use super::{NodeCollector, NodeError, Result, is_attribute_file, read_sysfs_value};
use crate::exposition::family::{MetricFamily, MetricType};

/// The files node_exporter turns into labels, with the label each becomes.
const FIELDS: &[(&str, &str)] = &[
    ("bios_date", "bios_date"),
    ("bios_release", "bios_release"),
    ("bios_vendor", "bios_vendor"),
    ("bios_version", "bios_version"),
    ("board_asset_tag", "board_asset_tag"),
    ("board_name", "board_name"),
    ("board_serial", "board_serial"),
    ("board_vendor", "board_vendor"),
    ("board_version", "board_version"),
    ("chassis_asset_tag", "chassis_asset_tag"),
    ("chassis_serial", "chassis_serial"),
    ("chassis_vendor", "chassis_vendor"),
    ("chassis_version", "chassis_version"),
    ("product_family", "product_family"),
    ("product_name", "product_name"),
    ("product_serial", "product_serial"),
    ("product_sku", "product_sku"),
    ("product_uuid", "product_uuid"),
    ("product_version", "product_version"),
    ("sys_vendor", "system_vendor"),
];

const HELP: &str = "A metric with a constant '1' value labeled by bios_date, bios_release, \
    bios_vendor, bios_version, board_asset_tag, board_name, board_serial, board_vendor, \
    board_version, chassis_asset_tag, chassis_serial, chassis_vendor, chassis_version, \
    product_family, product_name, product_serial, product_sku, product_uuid, \
    product_version, system_vendor if provided by DMI.";

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let dir = c.sys_path("class/dmi/id");
    let mut labels = Vec::new();
    for (file, label) in FIELDS {
        let path = dir.join(file);
        if !is_attribute_file(&path)? {
            continue;
        }
        match read_sysfs_value(&path) {
            Ok(value) => labels.push(((*label).to_string(), value)),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => continue,
            Err(source) => return Err(NodeError::Io { path, source }),
        }
    }
    if labels.is_empty() {
        // No table (most VMs): node_exporter's "no data", a failed collector.
        return Err(NodeError::Io {
            path: dir,
            source: std::io::Error::new(ErrorKind::NotFound, "no DMI attributes"),
        });
    }
    let mut family = MetricFamily::new("node_dmi_info", MetricType::Gauge, HELP);
    family.push(labels, 1.0);
    out.push(family);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn labels_from_the_files_present() {
        let fx = Fixture::new();
        fx.write("sys/class/dmi/id/sys_vendor", "Supermicro\n")
            .write("sys/class/dmi/id/product_name", "  SYS-420GP  TNAR+ \n")
            .write("sys/class/dmi/id/product_sku", "\n")
            .write("sys/class/dmi/id/modalias", "dmi:bvnAmerican\n")
            .write("sys/class/dmi/id/chassis_type", "23\n");
        let fams = run(&fx.collector(), collect);
        let info = find(&fams, "node_dmi_info");
        assert_eq!(
            info.samples[0].labels,
            vec![
                ("product_name".to_string(), "SYS-420GP  TNAR+".to_string()),
                ("product_sku".to_string(), String::new()),
                ("system_vendor".to_string(), "Supermicro".to_string()),
            ]
        );
        assert_eq!(info.samples[0].value, 1.0);
    }

    #[test]
    fn long_and_invalid_values_as_node_exporter_reads_them() {
        let fx = Fixture::new();
        fx.write("sys/class/dmi/id/board_name", &"x".repeat(140));
        std::fs::write(
            fx.dir.path().join("sys/class/dmi/id/board_vendor"),
            b"A\xff\xfeB\xc3\n",
        )
        .unwrap();
        let fams = run(&fx.collector(), collect);
        let labels = &find(&fams, "node_dmi_info").samples[0].labels;
        assert_eq!(labels[0].1.len(), 128);
        assert_eq!(labels[1].1, "A\u{FFFD}B\u{FFFD}");
    }

    #[test]
    fn no_table_is_a_failed_collector() {
        let fx = Fixture::new();
        let mut out = Vec::new();
        assert!(collect(&fx.collector(), &mut out).is_err());
        assert!(out.is_empty());
    }
}
