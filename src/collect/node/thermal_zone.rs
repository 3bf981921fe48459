//! `thermal_zone`: `/sys/class/thermal` zone temperatures and cooling device states.

use super::{NodeCollector, Result, dir_entries_with_prefix, labels, read_attr};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let base = c.sys_path("class/thermal");
    let mut temp = MetricFamily::new(
        "node_thermal_zone_temp",
        MetricType::Gauge,
        "Zone temperature in Celsius",
    );
    for (zone, dir) in dir_entries_with_prefix(&base, "thermal_zone")? {
        // A zone whose sensor is asleep or broken fails to read: skip it.
        let (Some(kind), Some(millis)) = (
            read_attr(&dir.join("type")),
            read_attr(&dir.join("temp")).and_then(|s| s.parse::<i64>().ok()),
        ) else {
            continue;
        };
        temp.push(
            labels([("type", kind.as_str()), ("zone", zone.as_str())]),
            millis as f64 / 1000.0,
        );
    }
    let mut cur = MetricFamily::new(
        "node_cooling_device_cur_state",
        MetricType::Gauge,
        "Current throttle state of the cooling device",
    );
    let mut max = MetricFamily::new(
        "node_cooling_device_max_state",
        MetricType::Gauge,
        "Maximum throttle state of the cooling device",
    );
    for (name, dir) in dir_entries_with_prefix(&base, "cooling_device")? {
        let Some(kind) = read_attr(&dir.join("type")) else {
            continue;
        };
        let l = labels([("name", name.as_str()), ("type", kind.as_str())]);
        if let Some(v) = read_attr(&dir.join("cur_state")).and_then(|s| s.parse::<f64>().ok()) {
            cur.push(l.clone(), v);
        }
        if let Some(v) = read_attr(&dir.join("max_state")).and_then(|s| s.parse::<f64>().ok()) {
            max.push(l, v);
        }
    }
    out.extend(
        [temp, cur, max]
            .into_iter()
            .filter(|f| !f.samples.is_empty()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn thermal_zones_in_celsius_and_cooling_devices() {
        let fx = Fixture::new();
        fx.write("sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
        fx.write("sys/class/thermal/thermal_zone0/temp", "49000\n");
        fx.write("sys/class/thermal/thermal_zone1/type", "acpitz\n");
        fx.write("sys/class/thermal/thermal_zone1/temp", "-500\n");
        fx.write("sys/class/thermal/cooling_device0/type", "Processor\n");
        fx.write("sys/class/thermal/cooling_device0/cur_state", "0\n");
        fx.write("sys/class/thermal/cooling_device0/max_state", "3\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(
                &fams,
                "node_thermal_zone_temp",
                &[("zone", "0"), ("type", "x86_pkg_temp")]
            ),
            49.0
        );
        assert_eq!(
            value(&fams, "node_thermal_zone_temp", &[("zone", "1")]),
            -0.5
        );
        assert_eq!(
            value(
                &fams,
                "node_cooling_device_max_state",
                &[("name", "0"), ("type", "Processor")]
            ),
            3.0
        );
    }

    #[test]
    fn empty_thermal_class_is_success_without_families() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.dir.path().join("sys/class/thermal")).unwrap();
        let fams = run(&fx.collector(), collect);
        assert!(fams.is_empty());
    }
}
