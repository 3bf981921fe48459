//! `hwmon`: hardware sensors under `/sys/class/hwmon` (temperatures, fans, voltages,
//! currents, power, energy), named and labelled as node_exporter 1.5 does: one family
//! per `node_hwmon_<type>[_<property>]_<unit>` with labels `chip` (derived from the
//! device path, stable across reboots) and `sensor` (`temp1`, `fan2`, …), plus
//! `node_hwmon_chip_names` and `node_hwmon_sensor_label` annotations.

use std::collections::BTreeMap;
use std::path::Path;

use super::{NodeCollector, NodeError, Result};
use crate::exposition::family::{MetricFamily, MetricType};

const SENSOR_TYPES: [&str; 13] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
];

/// sensor ("temp1") → property ("input", "max", "" for a bare "pwm1") → raw value.
type SensorData = BTreeMap<String, BTreeMap<String, String>>;

/// Families being built, by name: (type, help, samples as (labels, value)).
#[derive(Default)]
struct Families(BTreeMap<String, MetricFamily>);

impl Families {
    fn push(
        &mut self,
        name: String,
        kind: MetricType,
        help: String,
        labels: Vec<(String, String)>,
        v: f64,
    ) {
        self.0
            .entry(name)
            .or_insert_with_key(|name| MetricFamily::new(name.clone(), kind, help))
            .push(labels, v);
    }
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let base = c.sys_path("class/hwmon");
    let rd = std::fs::read_dir(&base).map_err(|source| NodeError::Io {
        path: base.clone(),
        source,
    })?;
    let mut dirs: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    let mut fams = Families::default();
    let mut last_err = None;
    for dir in dirs {
        // Entries are symlinks into /sys/devices; `is_dir` follows them.
        if !dir.is_dir() {
            continue;
        }
        if let Err(err) = update_chip(&dir, &mut fams) {
            last_err = Some(err);
        }
    }
    out.extend(fams.0.into_values());
    match last_err {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn update_chip(dir: &Path, fams: &mut Families) -> Result<()> {
    let chip = chip_name(dir)?;
    let mut data = SensorData::new();
    collect_sensor_data(dir, &mut data)?;
    let device = dir.join("device");
    if device.exists() {
        collect_sensor_data(&device, &mut data)?;
    }
    if let Some(name) = std::fs::read_to_string(dir.join("name"))
        .ok()
        .map(|s| clean_name(&s))
        .filter(|s| !s.is_empty())
    {
        fams.push(
            "node_hwmon_chip_names".to_string(),
            MetricType::Gauge,
            "Annotation metric for human-readable chip names".to_string(),
            vec![
                ("chip".to_string(), chip.clone()),
                ("chip_name".to_string(), name),
            ],
            1.0,
        );
    }
    for (sensor, props) in &data {
        let Some((sensor_type, _, _)) = explode(sensor) else {
            continue;
        };
        let labels = || {
            vec![
                ("chip".to_string(), chip.clone()),
                ("sensor".to_string(), sensor.clone()),
            ]
        };
        // The label as the driver writes it ("Package id 0"), as node_exporter 1.5
        // reports it; only chip and sensor names are cleaned.
        if let Some(label) = props
            .get("label")
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
        {
            let mut l = labels();
            l.push(("label".to_string(), label));
            fams.push(
                "node_hwmon_sensor_label".to_string(),
                MetricType::Gauge,
                "Label for given chip and sensor".to_string(),
                l,
                1.0,
            );
        }
        let bare = props.get("");
        match sensor_type {
            "beep_enable" => {
                let v = if bare.map(String::as_str) == Some("1") {
                    1.0
                } else {
                    0.0
                };
                fams.push(
                    "node_hwmon_beep_enabled".into(),
                    MetricType::Gauge,
                    "Hardware beep enabled".into(),
                    labels(),
                    v,
                );
                continue;
            }
            "vrm" => {
                if let Some(v) = bare.and_then(|s| s.parse::<f64>().ok()) {
                    fams.push(
                        "node_hwmon_voltage_regulator_version".into(),
                        MetricType::Gauge,
                        "Hardware voltage regulator".into(),
                        labels(),
                        v,
                    );
                }
                continue;
            }
            "update_interval" => {
                if let Some(v) = bare.and_then(|s| s.parse::<f64>().ok()) {
                    fams.push(
                        "node_hwmon_update_interval_seconds".into(),
                        MetricType::Gauge,
                        "Hardware monitor update interval".into(),
                        labels(),
                        v * 0.001,
                    );
                }
                continue;
            }
            _ => {}
        }
        let prefix = format!("node_hwmon_{sensor_type}");
        for (element, raw) in props {
            if element == "label" {
                continue;
            }
            let mut name = prefix.clone();
            if element == "input" {
                // "input" is the value itself, unless a bare file also exists.
                if bare.is_some() {
                    name.push_str("_input");
                }
            } else if !element.is_empty() {
                name.push('_');
                name.push_str(&clean_name(element));
            }
            let Ok(v) = raw.parse::<f64>() else {
                continue;
            };
            let e = element.as_str();
            let (name, kind, help, v) = match (sensor_type, e) {
                (_, "fault" | "alarm") => (
                    name,
                    MetricType::Gauge,
                    format!("Hardware sensor {e} status ({sensor_type})"),
                    v,
                ),
                (_, "beep") => (
                    name + "_enabled",
                    MetricType::Gauge,
                    "Hardware monitor sensor has beeping enabled".to_string(),
                    v,
                ),
                ("in" | "cpu", _) => (
                    name + "_volts",
                    MetricType::Gauge,
                    format!("Hardware monitor for voltage ({e})"),
                    v * 0.001,
                ),
                ("temp", t) if t != "type" => {
                    let e = if e.is_empty() { "input" } else { e };
                    (
                        name + "_celsius",
                        MetricType::Gauge,
                        format!("Hardware monitor for temperature ({e})"),
                        v * 0.001,
                    )
                }
                ("curr", _) => (
                    name + "_amps",
                    MetricType::Gauge,
                    format!("Hardware monitor for current ({e})"),
                    v * 0.001,
                ),
                ("energy", _) => (
                    name + "_joule_total",
                    MetricType::Counter,
                    format!("Hardware monitor for joules used so far ({e})"),
                    v / 1e6,
                ),
                ("power", "accuracy") => (
                    name,
                    MetricType::Gauge,
                    "Hardware monitor power meter accuracy, as a ratio".to_string(),
                    v / 1e6,
                ),
                ("power", "average_interval" | "average_interval_min" | "average_interval_max") => {
                    (
                        name + "_seconds",
                        MetricType::Gauge,
                        format!("Hardware monitor power usage update interval ({e})"),
                        v * 0.001,
                    )
                }
                ("power", _) => (
                    name + "_watt",
                    MetricType::Gauge,
                    format!("Hardware monitor for power usage in watts ({e})"),
                    v / 1e6,
                ),
                ("humidity", _) => (
                    name,
                    MetricType::Gauge,
                    format!(
                        "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a percentage) ({e})"
                    ),
                    v / 1e6,
                ),
                ("fan", "input" | "min" | "max" | "target") => (
                    name + "_rpm",
                    MetricType::Gauge,
                    format!("Hardware monitor for fan revolutions per minute ({e})"),
                    v,
                ),
                _ => (
                    name,
                    MetricType::Gauge,
                    format!("Hardware monitor {sensor_type} element {e}"),
                    v,
                ),
            };
            fams.push(name, kind, help, labels(), v);
        }
    }
    Ok(())
}

/// Splits a sensor file name into (type, number, property) per node_exporter's
/// `^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$`.
fn explode(name: &str) -> Option<(&str, u32, &str)> {
    let type_end = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    if type_end == 0 {
        return None;
    }
    let (sensor_type, rest) = name.split_at(type_end);
    let id_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (id, rest) = rest.split_at(id_end);
    let property = if rest.is_empty() {
        ""
    } else {
        let p = rest.strip_prefix('_')?;
        if p.is_empty() {
            return None;
        }
        p
    };
    // A type that runs to the end (no digits) has swallowed any "_property".
    let num = if id.is_empty() { 0 } else { id.parse().ok()? };
    Some((sensor_type, num, property))
}

fn collect_sensor_data(dir: &Path, data: &mut SensorData) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| NodeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in rd.filter_map(|e| e.ok()) {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        let Some((sensor_type, num, property)) = explode(&file) else {
            continue;
        };
        if !SENSOR_TYPES.contains(&sensor_type) {
            continue;
        }
        // Write-only and broken attributes fail to read: skip them.
        let Ok(raw) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        data.entry(format!("{sensor_type}{num}"))
            .or_default()
            .insert(property.to_string(), raw.trim_matches('\n').to_string());
    }
    Ok(())
}

/// node_exporter's chip label: `<bus>_<device>` of the resolved `device` link (stable
/// across reboots), else the cleaned `name` file, else the cleaned `hwmonN`.
fn chip_name(dir: &Path) -> Result<String> {
    if let Ok(real) = std::fs::canonicalize(dir.join("device")) {
        let dev_name = real
            .file_name()
            .map(|s| clean_name(&s.to_string_lossy()))
            .unwrap_or_default();
        let dev_type = real
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| clean_name(&s.to_string_lossy()))
            .unwrap_or_default();
        if !dev_type.is_empty() && !dev_name.is_empty() {
            return Ok(format!("{dev_type}_{dev_name}"));
        }
        if !dev_name.is_empty() {
            return Ok(dev_name);
        }
    }
    if let Some(name) = std::fs::read_to_string(dir.join("name"))
        .ok()
        .map(|s| clean_name(&s))
        .filter(|s| !s.is_empty())
    {
        return Ok(name);
    }
    let real = std::fs::canonicalize(dir).map_err(|source| NodeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    real.file_name()
        .map(|s| clean_name(&s.to_string_lossy()))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| NodeError::Parse {
            path: dir.to_path_buf(),
            what: "no name for hwmon chip".to_string(),
        })
}

/// Lower case, anything but `[a-z0-9:_]` replaced by `_`, `_` trimmed from both ends.
fn clean_name(s: &str) -> String {
    let cleaned: String = s
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn explode_sensor_file_names() {
        assert_eq!(explode("temp1_input"), Some(("temp", 1, "input")));
        assert_eq!(explode("pwm1"), Some(("pwm", 1, "")));
        assert_eq!(explode("update_interval"), Some(("update_interval", 0, "")));
        assert_eq!(
            explode("power1_average_interval"),
            Some(("power", 1, "average_interval"))
        );
        assert_eq!(explode("in0_label"), Some(("in", 0, "label")));
        assert_eq!(explode("1abc"), None);
    }

    #[test]
    fn clean_names() {
        assert_eq!(clean_name("Core 0\n"), "core_0");
        assert_eq!(clean_name("platform"), "platform");
        assert_eq!(clean_name("--Package id 0--"), "package_id_0");
    }

    #[test]
    fn hwmon_units_labels_and_chip_names() {
        let fx = Fixture::new();
        // A chip without a device link: named from its "name" file.
        let d = "sys/class/hwmon/hwmon0";
        fx.write(&format!("{d}/name"), "coretemp\n");
        fx.write(&format!("{d}/temp1_input"), "55000\n");
        fx.write(&format!("{d}/temp1_crit"), "100000\n");
        fx.write(&format!("{d}/temp1_crit_alarm"), "0\n");
        fx.write(&format!("{d}/temp1_label"), "Package id 0\n");
        fx.write(&format!("{d}/fan2_input"), "1200\n");
        fx.write(&format!("{d}/in0_input"), "1050\n");
        fx.write(&format!("{d}/power1_input"), "12500000\n");
        fx.write(&format!("{d}/energy1_input"), "3000000\n");
        fx.write(&format!("{d}/pwm1"), "128\n");
        fx.write(&format!("{d}/uevent"), "\n");
        let fams = run(&fx.collector(), collect);
        let s = [("chip", "coretemp"), ("sensor", "temp1")];
        assert_eq!(value(&fams, "node_hwmon_temp_celsius", &s), 55.0);
        assert_eq!(value(&fams, "node_hwmon_temp_crit_celsius", &s), 100.0);
        assert_eq!(value(&fams, "node_hwmon_temp_crit_alarm_celsius", &s), 0.0);
        assert_eq!(
            value(
                &fams,
                "node_hwmon_sensor_label",
                &[("sensor", "temp1"), ("label", "Package id 0")]
            ),
            1.0
        );
        assert_eq!(
            value(&fams, "node_hwmon_chip_names", &[("chip_name", "coretemp")]),
            1.0
        );
        assert_eq!(
            value(&fams, "node_hwmon_fan_rpm", &[("sensor", "fan2")]),
            1200.0
        );
        assert_eq!(
            value(&fams, "node_hwmon_in_volts", &[("sensor", "in0")]),
            1.05
        );
        assert_eq!(
            value(&fams, "node_hwmon_power_watt", &[("sensor", "power1")]),
            12.5
        );
        assert_eq!(
            value(
                &fams,
                "node_hwmon_energy_joule_total",
                &[("sensor", "energy1")]
            ),
            3.0
        );
        assert_eq!(
            find(&fams, "node_hwmon_energy_joule_total").kind,
            MetricType::Counter
        );
        assert_eq!(value(&fams, "node_hwmon_pwm", &[("sensor", "pwm1")]), 128.0);
    }

    #[test]
    fn chip_named_after_device_path() {
        let fx = Fixture::new();
        fx.write(
            "sys/devices/platform/coretemp.0/hwmon/hwmon1/temp2_input",
            "40000\n",
        );
        fx.write(
            "sys/devices/platform/coretemp.0/hwmon/hwmon1/name",
            "coretemp\n",
        );
        let class = fx.dir.path().join("sys/class/hwmon");
        std::fs::create_dir_all(&class).unwrap();
        let hw = fx
            .dir
            .path()
            .join("sys/devices/platform/coretemp.0/hwmon/hwmon1");
        std::os::unix::fs::symlink(&hw, class.join("hwmon1")).unwrap();
        std::os::unix::fs::symlink(
            fx.dir.path().join("sys/devices/platform/coretemp.0"),
            hw.join("device"),
        )
        .unwrap();
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(
                &fams,
                "node_hwmon_temp_celsius",
                &[("chip", "platform_coretemp_0"), ("sensor", "temp2")]
            ),
            40.0
        );
    }

    #[test]
    fn missing_hwmon_is_an_error() {
        assert!(collect(&Fixture::new().collector(), &mut Vec::new()).is_err());
    }
}
