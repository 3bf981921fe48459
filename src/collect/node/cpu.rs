//! `cpu`: per-CPU time by mode from `/proc/stat`, and thermal throttle counts from
//! `/sys/devices/system/cpu/cpu*/thermal_throttle` where the kernel has them.

use super::{
    NodeCollector, Result, dir_entries_with_prefix, labels, parse_error, read_attr, read_file,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// The kernel's USER_HZ. node_exporter (through procfs) divides by a fixed 100 rather
/// than asking sysconf; so do we, so the numbers agree.
const USER_HZ: f64 = 100.0;

/// `/proc/stat`'s cpu columns in order; guest and guest_nice go to a separate family.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("stat");
    let text = read_file(&path)?;
    let mut seconds = MetricFamily::new(
        "node_cpu_seconds_total",
        MetricType::Counter,
        "Seconds the CPUs spent in each mode.",
    );
    let mut guest = MetricFamily::new(
        "node_cpu_guest_seconds_total",
        MetricType::Counter,
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    for line in text.lines() {
        // Per-CPU lines are "cpuN ..."; the aggregate "cpu  ..." line is skipped.
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        if !rest.starts_with(|ch: char| ch.is_ascii_digit()) {
            continue;
        }
        let mut fields = rest.split_ascii_whitespace();
        let Some(cpu) = fields.next() else {
            continue;
        };
        for (i, field) in fields.enumerate() {
            let ticks: u64 = field
                .parse()
                .map_err(|_| parse_error(&path, format!("bad cpu field {field:?}")))?;
            let v = ticks as f64 / USER_HZ;
            match (MODES.get(i), i) {
                (Some(mode), _) => {
                    seconds.push(labels([("cpu", cpu), ("mode", mode)]), v);
                }
                (None, 8) => {
                    guest.push(labels([("cpu", cpu), ("mode", "user")]), v);
                }
                (None, 9) => {
                    guest.push(labels([("cpu", cpu), ("mode", "nice")]), v);
                }
                _ => {}
            }
        }
    }
    if seconds.samples.is_empty() {
        return Err(parse_error(&path, "no per-cpu lines"));
    }
    out.push(seconds);
    if !guest.samples.is_empty() {
        out.push(guest);
    }
    thermal_throttle(c, out);
    Ok(())
}

/// `node_cpu_core_throttles_total` and `node_cpu_package_throttles_total`, which
/// node_exporter reads on x86 machines with the thermal_throttle driver. Missing files
/// are not an error (VMs and most non-x86 machines have none).
fn thermal_throttle(c: &NodeCollector, out: &mut Vec<MetricFamily>) {
    let Ok(cpus) = dir_entries_with_prefix(&c.sys_path("devices/system/cpu"), "cpu") else {
        return;
    };
    let mut core = MetricFamily::new(
        "node_cpu_core_throttles_total",
        MetricType::Counter,
        "Number of times this CPU core has been throttled.",
    );
    let mut package = MetricFamily::new(
        "node_cpu_package_throttles_total",
        MetricType::Counter,
        "Number of times this CPU package has been throttled.",
    );
    let mut seen_cores: Vec<(String, String)> = Vec::new();
    let mut seen_packages: Vec<String> = Vec::new();
    for (id, dir) in cpus {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let throttle = dir.join("thermal_throttle");
        if !throttle.is_dir() {
            continue;
        }
        let Some(pkg) = read_attr(&dir.join("topology/physical_package_id")) else {
            continue;
        };
        let Some(core_id) = read_attr(&dir.join("topology/core_id")) else {
            continue;
        };
        let key = (pkg.clone(), core_id.clone());
        if !seen_cores.contains(&key) {
            if let Some(n) =
                read_attr(&throttle.join("core_throttle_count")).and_then(|s| s.parse::<u64>().ok())
            {
                core.push(
                    labels([("core", core_id.as_str()), ("package", pkg.as_str())]),
                    n as f64,
                );
            }
            seen_cores.push(key);
        }
        if !seen_packages.contains(&pkg) {
            if let Some(n) = read_attr(&throttle.join("package_throttle_count"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                package.push(labels([("package", pkg.as_str())]), n as f64);
            }
            seen_packages.push(pkg);
        }
    }
    if !core.samples.is_empty() {
        out.push(core);
    }
    if !package.samples.is_empty() {
        out.push(package);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const STAT: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\n\
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n\
cpu1 1335 10 20 30 40 50 60 70 80 90\n\
intr 8885917 17 0 0\n\
ctxt 38014093\n\
btime 1418183276\n\
processes 26442\n\
procs_running 2\n\
procs_blocked 1\n";

    #[test]
    fn cpu_seconds_are_ticks_over_user_hz() {
        let fx = Fixture::new();
        fx.write("proc/stat", STAT);
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(
                &fams,
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "user")]
            ),
            13932.8
        );
        assert_eq!(
            value(
                &fams,
                "node_cpu_seconds_total",
                &[("cpu", "1"), ("mode", "steal")]
            ),
            0.7
        );
        assert_eq!(
            value(
                &fams,
                "node_cpu_guest_seconds_total",
                &[("cpu", "0"), ("mode", "user")]
            ),
            239.33
        );
        assert_eq!(
            value(
                &fams,
                "node_cpu_guest_seconds_total",
                &[("cpu", "1"), ("mode", "nice")]
            ),
            0.9
        );
        let s = find(&fams, "node_cpu_seconds_total");
        // Two CPUs × eight modes; the aggregate line is not a CPU.
        assert_eq!(s.samples.len(), 16);
        assert_eq!(s.kind, MetricType::Counter);
        assert_eq!(s.samples[0].labels[0].0, "cpu");
        assert_eq!(s.samples[0].labels[1].0, "mode");
    }

    #[test]
    fn thermal_throttle_counts_are_read_per_core_and_package() {
        let fx = Fixture::new();
        fx.write("proc/stat", STAT);
        for (cpu, core) in [("cpu0", "0"), ("cpu1", "1"), ("cpu2", "0")] {
            let base = format!("sys/devices/system/cpu/{cpu}");
            fx.write(&format!("{base}/topology/physical_package_id"), "0\n");
            fx.write(&format!("{base}/topology/core_id"), &format!("{core}\n"));
            fx.write(
                &format!("{base}/thermal_throttle/core_throttle_count"),
                "5\n",
            );
            fx.write(
                &format!("{base}/thermal_throttle/package_throttle_count"),
                "30\n",
            );
        }
        let fams = run(&fx.collector(), collect);
        let core = find(&fams, "node_cpu_core_throttles_total");
        assert_eq!(core.samples.len(), 2);
        assert_eq!(
            value(
                &fams,
                "node_cpu_package_throttles_total",
                &[("package", "0")]
            ),
            30.0
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let fx = Fixture::new();
        fx.write("proc/stat", "cpu0 1 two 3\n");
        let mut out = Vec::new();
        assert!(collect(&fx.collector(), &mut out).is_err());
    }
}
