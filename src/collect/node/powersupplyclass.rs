//! `powersupplyclass`: power supplies, UPS batteries and chargers from
//! `/sys/class/power_supply/<supply>`: one gauge per numeric attribute the supply
//! has, in base units (µA, µV, µW, µWh → A, V, W, Wh; tenths of °C → °C), and
//! `node_power_supply_info` with its text attributes as labels.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    NodeCollector, NodeError, Result, attribute_unavailable, dir_entries_with_prefix, family_entry,
    labels, parse_error, parse_go_int, read_sysfs_value,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// How a numeric attribute's value becomes the metric's.
#[derive(Clone, Copy)]
enum Scale {
    Raw,
    /// Micro-units to units.
    Micro,
    /// Tenths of a degree to degrees.
    Tenths,
}

/// Numeric attributes: file, metric suffix, scale.
const NUMERIC: &[(&str, &str, Scale)] = &[
    ("authentic", "authentic", Scale::Raw),
    ("calibrate", "calibrate", Scale::Raw),
    ("capacity", "capacity", Scale::Raw),
    ("capacity_alert_max", "capacity_alert_max", Scale::Raw),
    ("capacity_alert_min", "capacity_alert_min", Scale::Raw),
    ("cycle_count", "cyclecount", Scale::Raw),
    ("online", "online", Scale::Raw),
    ("present", "present", Scale::Raw),
    ("time_to_empty_now", "time_to_empty_seconds", Scale::Raw),
    ("time_to_full_now", "time_to_full_seconds", Scale::Raw),
    ("current_boot", "current_boot", Scale::Micro),
    ("current_max", "current_max", Scale::Micro),
    ("current_now", "current_ampere", Scale::Micro),
    ("energy_empty", "energy_empty", Scale::Micro),
    ("energy_empty_design", "energy_empty_design", Scale::Micro),
    ("energy_full", "energy_full", Scale::Micro),
    ("energy_full_design", "energy_full_design", Scale::Micro),
    ("energy_now", "energy_watthour", Scale::Micro),
    ("voltage_boot", "voltage_boot", Scale::Micro),
    ("voltage_max", "voltage_max", Scale::Micro),
    ("voltage_max_design", "voltage_max_design", Scale::Micro),
    ("voltage_min", "voltage_min", Scale::Micro),
    ("voltage_min_design", "voltage_min_design", Scale::Micro),
    ("voltage_now", "voltage_volt", Scale::Micro),
    ("voltage_ocv", "voltage_ocv", Scale::Micro),
    ("charge_control_limit", "charge_control_limit", Scale::Micro),
    (
        "charge_control_limit_max",
        "charge_control_limit_max",
        Scale::Micro,
    ),
    ("charge_counter", "charge_counter", Scale::Micro),
    ("charge_empty", "charge_empty", Scale::Micro),
    ("charge_empty_design", "charge_empty_design", Scale::Micro),
    ("charge_full", "charge_full", Scale::Micro),
    ("charge_full_design", "charge_full_design", Scale::Micro),
    ("charge_now", "charge_ampere", Scale::Micro),
    ("charge_term_current", "charge_term_current", Scale::Micro),
    (
        "constant_charge_current",
        "constant_charge_current",
        Scale::Micro,
    ),
    (
        "constant_charge_current_max",
        "constant_charge_current_max",
        Scale::Micro,
    ),
    (
        "constant_charge_voltage",
        "constant_charge_voltage",
        Scale::Micro,
    ),
    (
        "constant_charge_voltage_max",
        "constant_charge_voltage_max",
        Scale::Micro,
    ),
    ("precharge_current", "precharge_current", Scale::Micro),
    ("input_current_limit", "input_current_limit", Scale::Micro),
    ("power_now", "power_watt", Scale::Micro),
    ("temp", "temp_celsius", Scale::Tenths),
    ("temp_alert_max", "temp_alert_max_celsius", Scale::Tenths),
    ("temp_alert_min", "temp_alert_min_celsius", Scale::Tenths),
    ("temp_ambient", "temp_ambient_celsius", Scale::Tenths),
    (
        "temp_ambient_max",
        "temp_ambient_max_celsius",
        Scale::Tenths,
    ),
    (
        "temp_ambient_min",
        "temp_ambient_min_celsius",
        Scale::Tenths,
    ),
    ("temp_max", "temp_max_celsius", Scale::Tenths),
    ("temp_min", "temp_min_celsius", Scale::Tenths),
];

/// Averages node_exporter parses (so a bad one fails the collector there too) but
/// does not export.
const NUMERIC_NOT_EXPORTED: &[&str] = &[
    "charge_avg",
    "current_avg",
    "energy_avg",
    "power_avg",
    "voltage_avg",
    "time_to_empty_avg",
    "time_to_full_avg",
];

/// Text attributes, the labels of `node_power_supply_info`.
const TEXT: &[&str] = &[
    "capacity_level",
    "charge_type",
    "health",
    "manufacturer",
    "model_name",
    "serial_number",
    "status",
    "technology",
    "type",
    "usb_type",
    "scope",
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut families: Vec<MetricFamily> = Vec::new();
    let mut info = MetricFamily::new(
        "node_power_supply_info",
        MetricType::Gauge,
        "info of /sys/class/power_supply/<power_supply>.",
    );
    // Everything is read before anything is kept: one bad attribute fails the whole
    // collector, as in node_exporter, rather than leave a supply half reported.
    for (supply, dir) in dir_entries_with_prefix(&c.sys_path("class/power_supply"), "")? {
        let attributes = read_attributes(&dir)?;
        // An ignored supply is still parsed: a bad value fails the collector, as in
        // node_exporter, which parses every supply before it filters.
        let ignored = c.flags.powersupply_ignored_supplies.is_match(&supply);
        let mut text_labels = labels([("power_supply", &supply)]);
        for (file, value) in &attributes {
            let path = dir.join(file);
            if let Some((_, suffix, scale)) = NUMERIC.iter().find(|(f, _, _)| f == file) {
                let raw = parse_go_int(value)
                    .ok_or_else(|| parse_error(&path, format!("bad number {value:?}")))?
                    as f64;
                let v = match scale {
                    Scale::Raw => raw,
                    Scale::Micro => raw / 1e6,
                    Scale::Tenths => raw / 10.0,
                };
                if ignored {
                    continue;
                }
                family_entry(
                    &mut families,
                    &format!("node_power_supply_{suffix}"),
                    MetricType::Gauge,
                    &format!("{suffix} value of /sys/class/power_supply/<power_supply>."),
                )
                .push(labels([("power_supply", &supply)]), v);
            } else if NUMERIC_NOT_EXPORTED.contains(&file.as_str()) {
                parse_go_int(value)
                    .ok_or_else(|| parse_error(&path, format!("bad number {value:?}")))?;
            } else if TEXT.contains(&file.as_str()) && !value.is_empty() {
                text_labels.push((file.clone(), value.clone()));
            }
        }
        if ignored {
            continue;
        }
        info.push(text_labels, 1.0);
    }
    out.extend(families);
    out.push(info);
    Ok(())
}

/// The supply's attribute files (regular files only: `device`, `subsystem` and
/// `power` are links and directories) and their values, by name. An attribute the
/// driver cannot report now is left out.
fn read_attributes(dir: &Path) -> Result<BTreeMap<String, String>> {
    let io = |path: &Path, source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut attributes = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        if !entry
            .file_type()
            .map_err(|e| io(&entry.path(), e))?
            .is_file()
        {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        match read_sysfs_value(&entry.path()) {
            Ok(value) => {
                attributes.insert(name, value);
            }
            Err(e) if attribute_unavailable(&e) => {}
            Err(e) => return Err(io(&entry.path(), e)),
        }
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn numeric_attributes_in_base_units_and_text_ones_as_info_labels() {
        let fx = Fixture::new();
        let bat = "sys/class/power_supply/BAT0";
        fx.write(&format!("{bat}/type"), "Battery\n")
            .write(&format!("{bat}/status"), "Discharging\n")
            .write(&format!("{bat}/manufacturer"), "\n")
            .write(&format!("{bat}/current_now"), "-1520000\n")
            .write(&format!("{bat}/temp"), "253\n")
            .write(&format!("{bat}/cycle_count"), "42\n")
            .write(&format!("{bat}/energy_avg"), "1\n")
            .write(&format!("{bat}/uevent"), "POWER_SUPPLY_NAME=BAT0\n")
            .write(&format!("{bat}/power/control"), "auto\n")
            .write("sys/class/power_supply/AC/type", "Mains\n")
            .write("sys/class/power_supply/AC/online", "1\n");
        let fams = run(&fx.collector(), collect);
        let bat0 = [("power_supply", "BAT0")];
        assert_eq!(
            value(&fams, "node_power_supply_current_ampere", &bat0),
            -1.52
        );
        assert_eq!(value(&fams, "node_power_supply_temp_celsius", &bat0), 25.3);
        assert_eq!(value(&fams, "node_power_supply_cyclecount", &bat0), 42.0);
        assert_eq!(
            find(&fams, "node_power_supply_cyclecount").help,
            "cyclecount value of /sys/class/power_supply/<power_supply>."
        );
        assert!(fams.iter().all(|f| !f.name.contains("avg")));
        let info = find(&fams, "node_power_supply_info");
        let labels_of = |supply: &str| {
            info.samples
                .iter()
                .find(|s| s.labels[0].1 == supply)
                .unwrap()
                .labels
                .clone()
        };
        assert_eq!(
            labels_of("BAT0"),
            labels([
                ("power_supply", "BAT0"),
                ("status", "Discharging"),
                ("type", "Battery")
            ])
        );
        assert_eq!(
            labels_of("AC"),
            labels([("power_supply", "AC"), ("type", "Mains")])
        );
    }

    #[test]
    fn a_bad_number_fails_the_collector() {
        let fx = Fixture::new();
        fx.write("sys/class/power_supply/AC/online", "1\n")
            .write("sys/class/power_supply/BAT0/voltage_avg", "zz\n");
        let mut out = Vec::new();
        assert!(collect(&fx.collector(), &mut out).is_err());
        assert!(out.is_empty());
        // Ignoring the supply does not skip its parsing, as in node_exporter.
        let ignoring = fx.collector_with(&[("collector.powersupply.ignored-supplies", "^BAT")]);
        assert!(collect(&ignoring, &mut Vec::new()).is_err());
    }

    #[test]
    fn ignored_supplies_are_left_out() {
        let fx = Fixture::new();
        fx.write("sys/class/power_supply/AC/online", "1\n")
            .write("sys/class/power_supply/AC/type", "Mains\n")
            .write("sys/class/power_supply/BAT0/capacity", "87\n")
            .write("sys/class/power_supply/BAT0/type", "Battery\n");
        let c = fx.collector_with(&[("collector.powersupply.ignored-supplies", "^AC$")]);
        let fams = run(&c, collect);
        for f in &fams {
            assert!(
                f.samples.iter().all(|s| s.labels[0].1 == "BAT0"),
                "{}: {:?}",
                f.name,
                f.samples
            );
        }
        assert_eq!(
            value(
                &fams,
                "node_power_supply_capacity",
                &[("power_supply", "BAT0")]
            ),
            87.0
        );
        assert_eq!(find(&fams, "node_power_supply_info").samples.len(), 1);
    }
}
