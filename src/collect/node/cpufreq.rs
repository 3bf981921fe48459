//! `cpufreq`: each CPU's frequency limits and current frequency from
//! `/sys/devices/system/cpu/cpu<N>/cpufreq/` (kHz, reported in Hz). A host without
//! frequency scaling (most VMs) has no `cpufreq` directories: no families, no error.
//! A file the kernel keeps from unprivileged readers (`cpuinfo_cur_freq` is root's)
//! leaves out that one series.

use super::{NodeCollector, Result, labels, numbered_entries, read_attr};
use crate::exposition::family::{MetricFamily, MetricType};

/// The files read, node_exporter's family for each, and its help.
const FILES: [(&str, &str, &str); 6] = [
    (
        "cpuinfo_cur_freq",
        "node_cpu_frequency_hertz",
        "Current cpu thread frequency in hertz.",
    ),
    (
        "cpuinfo_max_freq",
        "node_cpu_frequency_max_hertz",
        "Maximum cpu thread frequency in hertz.",
    ),
    (
        "cpuinfo_min_freq",
        "node_cpu_frequency_min_hertz",
        "Minimum cpu thread frequency in hertz.",
    ),
    (
        "scaling_cur_freq",
        "node_cpu_scaling_frequency_hertz",
        "Current scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_max_freq",
        "node_cpu_scaling_frequency_max_hertz",
        "Maximum scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_min_freq",
        "node_cpu_scaling_frequency_min_hertz",
        "Minimum scaled CPU thread frequency in hertz.",
    ),
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut families: Vec<MetricFamily> = FILES
        .iter()
        .map(|(_, name, help)| MetricFamily::new(*name, MetricType::Gauge, *help))
        .collect();
    for (cpu, dir) in numbered_entries(&c.sys_path("devices/system/cpu"), "cpu")? {
        let dir = dir.join("cpufreq");
        if !dir.is_dir() {
            continue;
        }
        for ((file, _, _), family) in FILES.iter().zip(&mut families) {
            let Some(khz) = read_attr(&dir.join(file)).and_then(|s| s.parse::<f64>().ok()) else {
                continue;
            };
            family.push(labels([("cpu", cpu.as_str())]), khz * 1000.0);
        }
    }
    out.extend(families.into_iter().filter(|f| !f.samples.is_empty()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn frequencies_in_hertz_per_cpu() {
        let fx = Fixture::new();
        for cpu in ["cpu0", "cpu1"] {
            let dir = format!("sys/devices/system/cpu/{cpu}/cpufreq");
            fx.write(&format!("{dir}/cpuinfo_max_freq"), "3500000\n");
            fx.write(&format!("{dir}/cpuinfo_min_freq"), "800000\n");
            fx.write(&format!("{dir}/scaling_cur_freq"), "2400123\n");
            fx.write(&format!("{dir}/scaling_max_freq"), "3500000\n");
            fx.write(&format!("{dir}/scaling_min_freq"), "800000\n");
        }
        // Root's only: absent for cpu1 here.
        fx.write(
            "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_cur_freq",
            "2400000\n",
        );
        // Not CPUs.
        fx.write("sys/devices/system/cpu/cpufreq/boost", "1\n");
        fx.write("sys/devices/system/cpu/cpuidle/current_driver", "none\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(&fams, "node_cpu_scaling_frequency_hertz", &[("cpu", "1")]),
            2_400_123_000.0
        );
        assert_eq!(
            value(&fams, "node_cpu_frequency_max_hertz", &[("cpu", "0")]),
            3.5e9
        );
        assert_eq!(find(&fams, "node_cpu_frequency_hertz").samples.len(), 1);
        assert_eq!(fams.len(), 6);
    }

    #[test]
    fn a_host_without_frequency_scaling_has_nothing() {
        let fx = Fixture::new();
        fx.write("sys/devices/system/cpu/cpu0/online", "1\n");
        let fams = run(&fx.collector(), collect);
        assert!(fams.is_empty());
    }
}
