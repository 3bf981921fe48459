//! `rapl`: energy counters of Intel's and AMD's RAPL power zones (CPU packages, DRAM,
//! the platform) from the powercap class, `/sys/class/powercap/<zone>/energy_uj`, in
//! joules. One family per zone name (`node_rapl_package_joules_total`, …), the zone's
//! index and sysfs path as labels; with `--collector.rapl.enable-zone-label` one
//! family, `node_rapl_joules_total`, with the zone's name as `rapl_zone`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    NodeCollector, Result, dir_entries_with_prefix, family_entry, labels, parse_error, read_file,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// One zone directory with a name.
struct Zone {
    /// The name without a numeric suffix (`package` of `package-1`).
    name: String,
    index: i64,
    dir: PathBuf,
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let zones = zones(&c.sys_path("class/powercap"))?;
    // Families by metric name, in the order zones are read.
    let mut families: Vec<MetricFamily> = Vec::new();
    let mut result = Ok(());
    for zone in &zones {
        let joules = match read_u64(&zone.dir.join("energy_uj")) {
            Ok(uj) => uj as f64 / 1_000_000.0,
            Err(e) => {
                // node_exporter sends each zone as it reads it: the zones before a
                // failing one are in the scrape, the collector is marked failed.
                result = Err(e);
                break;
            }
        };
        let index = zone.index.to_string();
        let path = zone.dir.display().to_string();
        if c.flags.rapl_zone_label {
            // `--collector.rapl.enable-zone-label`: one family, the zone as a label.
            family_entry(
                &mut families,
                "node_rapl_joules_total",
                MetricType::Counter,
                "Current RAPL value in joules",
            )
            .push(
                labels([
                    ("index", &index),
                    ("path", &path),
                    ("rapl_zone", &zone.name),
                ]),
                joules,
            );
            continue;
        }
        family_entry(
            &mut families,
            &format!(
                "node_rapl_{}_joules_total",
                sanitize_metric_name(&zone.name)
            ),
            MetricType::Counter,
            &format!("Current RAPL {} value in joules", zone.name),
        )
        .push(labels([("index", &index), ("path", &path)]), joules);
    }
    out.extend(families);
    result
}

/// The zones under the powercap class, by directory name. An entry without a `name`
/// (the control type, `intel-rapl`) is not a zone. Every zone's energy range is read
/// first: a zone whose counter cannot be interpreted fails the collector before any
/// reading, as in node_exporter.
fn zones(class: &Path) -> Result<Vec<Zone>> {
    let mut next_index: BTreeMap<String, i64> = BTreeMap::new();
    let mut zones = Vec::new();
    for (_, dir) in dir_entries_with_prefix(class, "")? {
        let Ok(raw_name) = read_file(&dir.join("name")) else {
            continue;
        };
        let raw_name = raw_name.trim();
        // `package-1` is package zone 1; a name without a numeric suffix (`dram`, one
        // per package) is numbered in the order it appears.
        let numbered = match raw_name.split('-').collect::<Vec<_>>()[..] {
            // A 32-bit suffix, as procfs parses it: a longer number is part of the name.
            [base, suffix] => suffix.parse::<i32>().ok().map(|i| (base, i64::from(i))),
            _ => None,
        };
        let (name, index) = match numbered {
            Some((base, index)) => (base.to_string(), index),
            None => {
                let index = next_index.get(raw_name).copied().unwrap_or(0);
                (raw_name.to_string(), index)
            }
        };
        next_index.insert(name.clone(), index + 1);
        read_u64(&dir.join("max_energy_range_uj"))?;
        zones.push(Zone { name, index, dir });
    }
    Ok(zones)
}

/// node_exporter's `SanitizeMetricName`: each run of characters a metric name may not
/// hold, with the underscores around it, becomes one `_`.
fn sanitize_metric_name(name: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < chars.len() {
        let underscores_end = chars[i..]
            .iter()
            .position(|&c| c != '_')
            .map_or(chars.len(), |n| i + n);
        let run_end = chars[underscores_end..]
            .iter()
            .position(|&c| allowed(c))
            .map_or(chars.len(), |n| underscores_end + n);
        if run_end == underscores_end {
            // No character to replace after these underscores (or none at all).
            out.extend(&chars[i..underscores_end.max(i + 1)]);
            i = underscores_end.max(i + 1);
            continue;
        }
        let after = chars[run_end..]
            .iter()
            .position(|&c| c != '_')
            .map_or(chars.len(), |n| run_end + n);
        out.push('_');
        i = after;
    }
    out
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = read_file(path)?;
    let text = text.trim();
    text.parse()
        .map_err(|_| parse_error(path, format!("bad counter {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn zone(fx: &Fixture, dir: &str, name: &str, uj: &str) {
        fx.write(
            &format!("sys/class/powercap/{dir}/name"),
            &format!("{name}\n"),
        )
        .write(&format!("sys/class/powercap/{dir}/energy_uj"), uj)
        .write(
            &format!("sys/class/powercap/{dir}/max_energy_range_uj"),
            "262143328850\n",
        );
    }

    #[test]
    fn zones_by_name_and_index_in_joules() {
        let fx = Fixture::new();
        fx.write("sys/class/powercap/intel-rapl/enabled", "1\n");
        zone(&fx, "intel-rapl:0", "package-0", "218493621047\n");
        zone(&fx, "intel-rapl:0:0", "dram", "40118852361\n");
        zone(&fx, "intel-rapl:1", "package-1", "203877140559\n");
        zone(&fx, "intel-rapl:1:0", "dram", "38224601183\n");
        zone(&fx, "intel-rapl:2", "psys-die-x", "5\n");
        // A suffix beyond 32 bits is part of the name, as procfs reads it.
        zone(&fx, "intel-rapl:3", "core-9223372036854775807", "6\n");
        let c = fx.collector();
        let fams = run(&c, collect);
        let path = |d: &str| c.sys_path("class/powercap").join(d).display().to_string();
        let package = find(&fams, "node_rapl_package_joules_total");
        assert_eq!(package.help, "Current RAPL package value in joules");
        assert_eq!(
            value(
                &fams,
                "node_rapl_package_joules_total",
                &[("index", "1"), ("path", &path("intel-rapl:1"))]
            ),
            203877.140559
        );
        assert_eq!(
            value(
                &fams,
                "node_rapl_dram_joules_total",
                &[("index", "1"), ("path", &path("intel-rapl:1:0"))]
            ),
            38224.601183
        );
        let psys = find(&fams, "node_rapl_psys_die_x_joules_total");
        assert_eq!(psys.help, "Current RAPL psys-die-x value in joules");
        assert_eq!(psys.samples[0].labels[0].1, "0");
        let core = find(&fams, "node_rapl_core_9223372036854775807_joules_total");
        assert_eq!(core.samples[0].labels[0].1, "0");

        let fams = run(
            &fx.collector_with(&[("collector.rapl.enable-zone-label", "true")]),
            collect,
        );
        assert_eq!(fams.len(), 1, "one family, the zone as a label");
        assert_eq!(fams[0].help, "Current RAPL value in joules");
        assert_eq!(
            value(
                &fams,
                "node_rapl_joules_total",
                &[("index", "1"), ("rapl_zone", "dram")]
            ),
            38224.601183
        );
        assert_eq!(
            value(
                &fams,
                "node_rapl_joules_total",
                &[("rapl_zone", "psys-die-x")]
            ),
            5e-6
        );
    }

    #[test]
    fn metric_names_as_client_golang_sanitizes_them() {
        for (raw, want) in [
            ("package", "package"),
            ("psys-die-x", "psys_die_x"),
            ("Foo.__-Bar", "Foo__Bar"),
            ("a__-_b", "a_b"),
            ("a__b", "a__b"),
            ("core.", "core_"),
            ("-x", "_x"),
        ] {
            assert_eq!(sanitize_metric_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn a_bad_counter_keeps_the_zones_read_before_it() {
        let fx = Fixture::new();
        zone(&fx, "intel-rapl:0", "package-0", "1000000\n");
        zone(&fx, "intel-rapl:0:0", "dram", "abc\n");
        let mut out = Vec::new();
        assert!(collect(&fx.collector(), &mut out).is_err());
        assert_eq!(value(&out, "node_rapl_package_joules_total", &[]), 1.0);
        assert!(out.iter().all(|f| f.name != "node_rapl_dram_joules_total"));
    }

    #[test]
    fn a_bad_energy_range_fails_before_any_reading() {
        let fx = Fixture::new();
        zone(&fx, "intel-rapl:0", "package-0", "1000000\n");
        fx.write(
            "sys/class/powercap/intel-rapl:0/max_energy_range_uj",
            "-1\n",
        );
        let mut out = Vec::new();
        assert!(collect(&fx.collector(), &mut out).is_err());
        assert!(out.is_empty());
    }
}
