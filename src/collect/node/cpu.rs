//! `cpu`: per-CPU time by mode from `/proc/stat`, and thermal throttle counts from
//! `/sys/devices/system/cpu/cpu*/thermal_throttle` where the kernel has them. With
//! `--collector.cpu.info` (off by default), `node_cpu_info` from `/proc/cpuinfo`, and
//! the first CPU's flags and bugs that `--collector.cpu.info.flags-include` and
//! `bugs-include` pick; `--collector.cpu.guest` (on by default) keeps guest time.

use std::path::Path;

use super::proc_stat::{self, GUEST, GUEST_NICE};
use super::{
    NodeCollector, Result, dir_entries_with_prefix, labels, parse_error, parse_go_float,
    parse_go_uint, read_attr, read_file,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// `/proc/stat`'s cpu columns in order; guest and guest_nice go to a separate family.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    // As in node_exporter: the information first, and a cpuinfo it cannot read fails
    // the collector before /proc/stat is read.
    if c.flags.cpu_info {
        info(c, out)?;
    }
    let stat = proc_stat::read(c)?;
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
    for (id, times) in c.cpu_times.update(&stat.cpus).iter().enumerate() {
        let cpu = id.to_string();
        for (mode, v) in MODES.iter().zip(times) {
            seconds.push(labels([("cpu", cpu.as_str()), ("mode", mode)]), *v);
        }
        guest.push(
            labels([("cpu", cpu.as_str()), ("mode", "user")]),
            times[GUEST],
        );
        guest.push(
            labels([("cpu", cpu.as_str()), ("mode", "nice")]),
            times[GUEST_NICE],
        );
    }
    out.push(seconds);
    if c.flags.cpu_guest {
        out.push(guest);
    }
    isolated(c, out)?;
    thermal_throttle(c, out);
    Ok(())
}

/// `node_cpu_isolated{cpu}` for each CPU in `/sys/devices/system/cpu/isolated` (the
/// kernel's `isolcpus`, a list like `1-2,5`); nothing where the file is missing or
/// empty. node_exporter 1.5 reads it once and refuses to start on a value it cannot
/// parse; ODIN reads it every scrape and fails the collector instead.
fn isolated(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.sys_path("devices/system/cpu/isolated");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let cpus = parse_cpu_list(&text)
        .ok_or_else(|| parse_error(&path, format!("not a CPU list: {:?}", text.trim_end())))?;
    if cpus.is_empty() {
        return Ok(());
    }
    let mut f = MetricFamily::new(
        "node_cpu_isolated",
        MetricType::Gauge,
        "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
    );
    for cpu in cpus {
        f.push(labels([("cpu", cpu.to_string().as_str())]), 1.0);
    }
    out.push(f);
    Ok(())
}

/// A kernel CPU list (`0-2,8,10-11`), each CPU once, in order. Ranges are bounded by
/// the largest CPU number Linux has.
fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    const MAX_CPU: u32 = 1 << 16;
    let number = |s: &str| -> Option<u32> {
        Some(s)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .filter(|n| *n <= MAX_CPU)
    };
    let mut cpus = std::collections::BTreeSet::new();
    for part in text.trim_end_matches('\n').split(',') {
        if part.is_empty() {
            continue;
        }
        match part.split_once('-') {
            Some((first, last)) => cpus.extend(number(first)?..=number(last)?),
            None => {
                cpus.insert(number(part)?);
            }
        }
    }
    Some(cpus.into_iter().collect())
}

/// One processor's entry in `/proc/cpuinfo`: the fields node_exporter reports.
#[derive(Debug, Default, Clone, PartialEq)]
struct CpuInfo {
    processor: u64,
    vendor_id: String,
    cpu_family: String,
    model: String,
    model_name: String,
    stepping: String,
    microcode: String,
    cache_size: String,
    physical_id: String,
    core_id: String,
    flags: Vec<String>,
    bugs: Vec<String>,
}

/// `/proc/cpuinfo` as procfs 0.8 parses an x86 kernel's: a `processor` line first,
/// each `key: value` line split at the first `": "` (so a key with no value is not
/// read), values kept as written, and a numeric field that does not parse failing
/// the whole file. Other architectures' layouts differ; the flags refuse
/// `cpu.info` there.
fn parse_cpuinfo(path: &Path, text: &str) -> Result<Vec<CpuInfo>> {
    let mut lines = text.lines();
    let first = lines.by_ref().find(|l| !l.trim().is_empty()).unwrap_or("");
    if !first.starts_with("processor") || !first.contains(':') {
        return Err(parse_error(
            path,
            format!("invalid cpuinfo file: {first:?}"),
        ));
    }
    let uint = |v: &str| -> Result<u64> {
        parse_go_uint(v)
            .filter(|n| *n <= u64::from(u32::MAX))
            .ok_or_else(|| parse_error(path, format!("bad number {v:?}")))
    };
    let first_value = first.split_once(": ").map_or("", |(_, v)| v);
    let mut cpus = vec![CpuInfo {
        processor: uint(first_value)?,
        ..CpuInfo::default()
    }];
    for line in lines {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let Some(cpu) = cpus.last_mut() else {
            continue;
        };
        match key.trim() {
            "processor" => cpus.push(CpuInfo {
                processor: uint(value)?,
                ..CpuInfo::default()
            }),
            "vendor" | "vendor_id" => cpu.vendor_id = value.to_string(),
            "cpu family" => cpu.cpu_family = value.to_string(),
            "model" => cpu.model = value.to_string(),
            "model name" => cpu.model_name = value.to_string(),
            "stepping" => cpu.stepping = value.to_string(),
            "microcode" => cpu.microcode = value.to_string(),
            "cache size" => cpu.cache_size = value.to_string(),
            "physical id" => cpu.physical_id = value.to_string(),
            "core id" => cpu.core_id = value.to_string(),
            "flags" => cpu.flags = value.split_whitespace().map(str::to_string).collect(),
            "bugs" => cpu.bugs = value.split_whitespace().map(str::to_string).collect(),
            // Read only to fail on what procfs fails on (apicid is text there).
            "siblings" | "cpu cores" | "cpuid level" | "clflush size" | "cache_alignment" => {
                uint(value)?;
            }
            "cpu MHz" | "bogomips" => {
                parse_go_float(value)
                    .ok_or_else(|| parse_error(path, format!("bad number {value:?}")))?;
            }
            _ => {}
        }
    }
    Ok(cpus)
}

/// `node_cpu_info` for every processor, and the first one's flags and bugs that the
/// include patterns match (none without a pattern).
fn info(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("cpuinfo");
    let cpus = parse_cpuinfo(&path, &read_file(&path)?)?;
    let mut info = MetricFamily::new(
        "node_cpu_info",
        MetricType::Gauge,
        "CPU information from /proc/cpuinfo.",
    );
    for cpu in &cpus {
        let l = labels([
            ("package", cpu.physical_id.as_str()),
            ("core", &cpu.core_id),
            ("cpu", &cpu.processor.to_string()),
            ("vendor", &cpu.vendor_id),
            ("family", &cpu.cpu_family),
            ("model", &cpu.model),
            ("model_name", &cpu.model_name),
            ("microcode", &cpu.microcode),
            ("stepping", &cpu.stepping),
            ("cachesize", &cpu.cache_size),
        ]);
        // node_exporter's registry drops a repeated series (and logs it).
        if !info.samples.iter().any(|s| s.labels == l) {
            info.push(l, 1.0);
        }
    }
    out.push(info);
    let first = &cpus[0];
    for (values, include, name, label, field) in [
        (
            &first.flags,
            &c.flags.cpu_flags_include,
            "node_cpu_flag_info",
            "flag",
            "flags",
        ),
        (
            &first.bugs,
            &c.flags.cpu_bugs_include,
            "node_cpu_bug_info",
            "bug",
            "bugs",
        ),
    ] {
        let Some(include) = include else {
            continue;
        };
        let mut f = MetricFamily::new(
            name,
            MetricType::Gauge,
            format!(
                "The `{field}` field of CPU information from /proc/cpuinfo taken from the first core."
            ),
        );
        let mut seen: Vec<&str> = Vec::new();
        for v in values.iter().filter(|v| include.is_match(v)) {
            if !seen.contains(&v.as_str()) {
                seen.push(v);
                f.push(labels([(label, v.as_str())]), 1.0);
            }
        }
        out.push(f);
    }
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

    const CPUINFO: &str = "processor\t: 0\n\
vendor_id\t: GenuineIntel\n\
cpu family\t: 6\n\
model\t\t: 143\n\
model name\t: Intel(R) Xeon(R) Platinum 8480+\n\
stepping\t: 8\n\
microcode\t: 0x2b0004d0\n\
cpu MHz\t\t: 2_000.000\n\
apicid\t\t: n/a\n\
cache size\t: 107520 KB\n\
physical id\t: 0\n\
siblings\t: 112\n\
core id\t\t: 0\n\
cpu cores\t: 56\n\
flags\t\t: fpu vme avx512f amx_tile aes avx512f\n\
bugs\t\t: spectre_v1 spectre_v2\n\
power management:\n\
\n\
processor\t: 1\n\
vendor_id\t: GenuineIntel\n\
model name\t: Intel(R) Xeon(R) Platinum 8480+\n\
physical id\t: 1\n\
core id\t\t: 3\n\
flags\t\t: fpu\n";

    #[test]
    fn cpu_info_and_the_first_cpus_flags_and_bugs() {
        let fx = Fixture::new();
        fx.write("proc/stat", STAT);
        fx.write("proc/cpuinfo", CPUINFO);
        let c = fx.collector_with(&[
            ("collector.cpu.info.flags-include", "^(avx512.*|amx.*)$"),
            ("collector.cpu.guest", "false"),
        ]);
        let fams = run(&c, collect);
        let info = find(&fams, "node_cpu_info");
        assert_eq!(info.samples.len(), 2);
        assert_eq!(
            info.samples[0].labels,
            labels([
                ("package", "0"),
                ("core", "0"),
                ("cpu", "0"),
                ("vendor", "GenuineIntel"),
                ("family", "6"),
                ("model", "143"),
                ("model_name", "Intel(R) Xeon(R) Platinum 8480+"),
                ("microcode", "0x2b0004d0"),
                ("stepping", "8"),
                ("cachesize", "107520 KB"),
            ])
        );
        assert_eq!(
            value(&fams, "node_cpu_info", &[("cpu", "1"), ("core", "3")]),
            1.0
        );
        let flags: Vec<&str> = find(&fams, "node_cpu_flag_info")
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(flags, ["avx512f", "amx_tile"]);
        assert!(!fams.iter().any(|f| f.name == "node_cpu_bug_info"));
        assert!(
            !fams
                .iter()
                .any(|f| f.name == "node_cpu_guest_seconds_total")
        );
    }

    #[test]
    fn a_cpuinfo_procfs_refuses_fails_the_collector() {
        let fx = Fixture::new();
        fx.write("proc/stat", STAT);
        let c = fx.collector_with(&[("collector.cpu.info", "true")]);
        for bad in [
            "",
            "vendor_id\t: GenuineIntel\n",
            "processor\t: x\n",
            "processor\t: 0\nsiblings\t: many\n",
            "processor\t: 0\ncpu MHz\t\t: fast\n",
            "processor\t: 4294967296\n",
        ] {
            fx.write("proc/cpuinfo", bad);
            let mut out = Vec::new();
            assert!(collect(&c, &mut out).is_err(), "{bad:?}");
            assert!(out.is_empty(), "nothing kept from {bad:?}");
        }
        // Without cpu.info the file is not read.
        assert!(collect(&fx.collector(), &mut Vec::new()).is_ok());
    }

    #[test]
    fn isolated_cpus_from_the_kernels_list() {
        assert_eq!(parse_cpu_list("1-2,5\n"), Some(vec![1, 2, 5]));
        assert_eq!(parse_cpu_list("3,1-2"), Some(vec![1, 2, 3]));
        assert_eq!(parse_cpu_list("\n"), Some(vec![]));
        assert_eq!(parse_cpu_list("2-1"), Some(vec![]));
        for bad in ["x", "1-", "-1", "1-x", "0-99999999", "1 2"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
        let fx = Fixture::new();
        fx.write("proc/stat", STAT);
        let fams = run(&fx.collector(), collect);
        assert!(
            !fams.iter().any(|f| f.name == "node_cpu_isolated"),
            "no file"
        );
        fx.write("sys/devices/system/cpu/isolated", "1-2,5\n");
        let fams = run(&fx.collector(), collect);
        let f = find(&fams, "node_cpu_isolated");
        assert_eq!(f.samples.len(), 3);
        assert_eq!(value(&fams, "node_cpu_isolated", &[("cpu", "5")]), 1.0);
        fx.write("sys/devices/system/cpu/isolated", "x\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let fx = Fixture::new();
        fx.write("proc/stat", "cpu0 1 two 3\n");
        let mut out = Vec::new();
        assert!(collect(&fx.collector(), &mut out).is_err());
    }
}
