//! The built-in node collector: node_exporter 1.5's metric families read in-process
//! from `/proc`, `/sys` and `/etc/os-release`, so that dashboards written for
//! node_exporter (Node Exporter Full and friends) work against ODIN unchanged.
//!
//! Main types: [`NodeCollector`] (built from [`NodePaths`] and [`NodeFlags`]) whose
//! [`NodeCollector::collect`] returns `Vec<MetricFamily>`. Each sub-collector lives in
//! its own file and carries node_exporter's collector name (`cpu`, `meminfo`, …); one
//! that fails (missing file, unexpected contents) does not stop the others and is
//! reported as `node_scrape_collector_success{collector="…"} 0` and logged (a warning
//! when it starts failing, debug where its hardware is simply absent).
//!
//! Metric names, label names, types, HELP texts and unit conversions follow
//! node_exporter 1.5.0's Linux collectors; where ODIN differs it says so in a comment
//! and in `docs/node-collector.md`. No `job`/`instance` labels: the scrape layer adds
//! them.
//!
//! This module must not import the TSDB, the scrape path or the API: it only reads
//! the kernel's files and builds families.

mod arp;
mod bcache;
mod bonding;
mod btrfs;
mod conntrack;
mod cpu;
mod cpufreq;
mod diskstats;
mod dmi;
mod edac;
mod entropy;
mod error;
mod fibrechannel;
mod filefd;
mod filesystem;
mod flags;
mod hwmon;
mod infiniband;
mod ipvs;
mod loadavg;
mod mdadm;
mod meminfo;
mod netclass;
mod netdev;
mod netstat;
mod nfs;
mod nfsd;
mod nvme;
mod os;
mod powersupplyclass;
mod pressure;
mod proc_stat;
mod rapl;
#[cfg(test)]
mod robustness;
mod schedstat;
mod selinux;
mod sockstat;
mod softnet;
mod stat;
mod tapestats;
mod textfile;
mod thermal_zone;
mod time;
mod timex;
mod udp_queues;
mod uname;
mod vmstat;
mod xfs;
mod zfs;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use error::{NodeError, Result};
pub use flags::{
    DEFAULT_DISKSTATS_DEVICE_EXCLUDE, DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE,
    DEFAULT_MOUNT_TIMEOUT, DEFAULT_NETSTAT_FIELDS, DEFAULT_VMSTAT_FIELDS, FLAG_NAMES,
    IPVS_BACKEND_LABELS, NodeFlags,
};

use flags::Flags;
// Go's number syntax, as procfs reads the kernel's files for node_exporter.
use crate::gostrconv::{
    parse_float as parse_go_float, parse_int as parse_go_int, parse_uint as parse_go_uint,
};

use crate::exposition::family::{MetricFamily, MetricType};

/// Where the collector finds the kernel's files. Point these at a host's mounts to
/// monitor the host from a container (node_exporter's `--path.procfs`,
/// `--path.sysfs`, `--path.rootfs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// procfs, `/proc` by default.
    pub proc: PathBuf,
    /// sysfs, `/sys` by default.
    pub sys: PathBuf,
    /// The root filesystem, `/` by default: `etc/os-release`, `run/udev/data` and the
    /// mount points that `filesystem` stats are looked up under it.
    pub root: PathBuf,
    /// The `textfile` collector's directory of `*.prom` files (node_exporter's
    /// `--collector.textfile.directory`); none by default.
    pub textfile: Option<PathBuf>,
    /// udev's database, for `node_disk_info` (node_exporter's `--path.udev.data`);
    /// `run/udev/data` under `root` by default, so that one host mount serves both.
    pub udev_data: Option<PathBuf>,
}

impl Default for NodePaths {
    fn default() -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            root: PathBuf::from("/"),
            textfile: None,
            udev_data: None,
        }
    }
}

/// An error for the first name that is not a sub-collector's.
fn check_names<S: AsRef<str>>(names: &[S]) -> Result<()> {
    match names
        .iter()
        .find(|n| !COLLECTORS.iter().any(|(name, _)| *name == n.as_ref()))
    {
        Some(unknown) => Err(NodeError::UnknownCollector(unknown.as_ref().to_string())),
        None => Ok(()),
    }
}

/// The collectors whose files exist only with their hardware, kernel module or kernel
/// option: their missing files say "none here" (node_exporter's no data), where a
/// missing `/proc/stat` or `/proc/meminfo` says the paths are wrong.
const MAY_BE_ABSENT: &[&str] = &[
    "bcache",
    "bonding",
    "btrfs",
    "conntrack",
    "cpufreq",
    "dmi",
    "edac",
    "fibrechannel",
    "hwmon",
    "infiniband",
    "ipvs",
    "mdadm",
    "nfs",
    "nfsd",
    "nvme",
    "powersupplyclass",
    "pressure",
    "rapl",
    "schedstat",
    "selinux",
    "tapestats",
    "thermal_zone",
    "xfs",
    "zfs",
];

/// One sub-collector: node_exporter's name for it and the function that fills in its
/// families.
type CollectFn = fn(&NodeCollector, &mut Vec<MetricFamily>) -> Result<()>;

/// node_exporter's default-enabled Linux collectors that ODIN implements, in the
/// order node_exporter sorts them (by name), but `textfile` last: it refuses a file
/// whose families collide with the built-in ones, so those must be there before it.
const COLLECTORS: &[(&str, CollectFn)] = &[
    ("arp", arp::collect),
    ("bcache", bcache::collect),
    ("bonding", bonding::collect),
    ("btrfs", btrfs::collect),
    ("conntrack", conntrack::collect),
    ("cpu", cpu::collect),
    ("cpufreq", cpufreq::collect),
    ("diskstats", diskstats::collect),
    ("dmi", dmi::collect),
    ("edac", edac::collect),
    ("entropy", entropy::collect),
    ("fibrechannel", fibrechannel::collect),
    ("filefd", filefd::collect),
    ("filesystem", filesystem::collect),
    ("hwmon", hwmon::collect),
    ("infiniband", infiniband::collect),
    ("ipvs", ipvs::collect),
    ("loadavg", loadavg::collect),
    ("mdadm", mdadm::collect),
    ("meminfo", meminfo::collect),
    ("netclass", netclass::collect),
    ("netdev", netdev::collect),
    ("netstat", netstat::collect),
    ("nfs", nfs::collect),
    ("nfsd", nfsd::collect),
    ("nvme", nvme::collect),
    ("os", os::collect),
    ("powersupplyclass", powersupplyclass::collect),
    ("pressure", pressure::collect),
    ("rapl", rapl::collect),
    ("schedstat", schedstat::collect),
    ("selinux", selinux::collect),
    ("sockstat", sockstat::collect),
    ("softnet", softnet::collect),
    ("stat", stat::collect),
    ("tapestats", tapestats::collect),
    ("thermal_zone", thermal_zone::collect),
    ("time", time::collect),
    ("timex", timex::collect),
    ("udp_queues", udp_queues::collect),
    ("uname", uname::collect),
    ("vmstat", vmstat::collect),
    ("xfs", xfs::collect),
    ("zfs", zfs::collect),
    ("textfile", textfile::collect),
];

/// Reads node metrics on demand. Cheap to keep around: it holds paths, compiled
/// flags, the set of stuck mount points and the CPU times last reported. `collect` is synchronous and does blocking file I/O
/// (a few dozen small reads plus one `statfs` per mount): call it from a blocking
/// thread.
#[derive(Debug)]
pub struct NodeCollector {
    paths: NodePaths,
    flags: Flags,
    /// The sub-collectors that run, in [`COLLECTORS`]' order: all by default.
    enabled: Vec<(&'static str, CollectFn)>,
    /// The kernel's page size, for `node_sockstat_*_mem_bytes`.
    page_size: f64,
    /// Mount points whose `statfs` hangs; kept between scrapes.
    stuck_mounts: filesystem::StuckMounts,
    /// The CPU times last reported, which never go backwards; kept between scrapes.
    cpu_times: proc_stat::MonotonicCpus,
    /// The sub-collectors failing for a reason other than absent hardware, so that
    /// each failure and recovery is logged once.
    failing: std::sync::Mutex<std::collections::BTreeSet<&'static str>>,
}

impl NodeCollector {
    /// A collector with node_exporter 1.5.0's default flags.
    pub fn new(paths: NodePaths) -> Result<Self> {
        Self::with_flags(paths, &NodeFlags::default())
    }

    /// A collector with node_exporter's per-collector flags set as given.
    pub fn with_flags(paths: NodePaths, flags: &NodeFlags) -> Result<Self> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(Self {
            paths,
            flags: Flags::new(flags)?,
            enabled: COLLECTORS.to_vec(),
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            stuck_mounts: filesystem::StuckMounts::default(),
            cpu_times: proc_stat::MonotonicCpus::default(),
            failing: std::sync::Mutex::default(),
        })
    }

    fn failing_lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<&'static str>> {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn paths(&self) -> &NodePaths {
        &self.paths
    }

    /// The sub-collectors' names, node_exporter's names for them.
    pub fn collector_names() -> impl Iterator<Item = &'static str> {
        COLLECTORS.iter().map(|(name, _)| *name)
    }

    /// Keeps only the named sub-collectors (node_exporter's
    /// `--collector.disable-defaults --collector.<name>…`). A name that is not a
    /// collector's is an error.
    pub fn only<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self> {
        check_names(names)?;
        self.enabled
            .retain(|(name, _)| names.iter().any(|n| n.as_ref() == *name));
        Ok(self)
    }

    /// Leaves out the named sub-collectors (node_exporter's `--no-collector.<name>`).
    /// A name that is not a collector's is an error.
    pub fn without<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self> {
        check_names(names)?;
        self.enabled
            .retain(|(name, _)| !names.iter().any(|n| n.as_ref() == *name));
        Ok(self)
    }

    /// Runs every sub-collector and returns their families followed by
    /// `node_scrape_collector_duration_seconds` and `node_scrape_collector_success`.
    pub fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::with_capacity(256);
        let mut duration = MetricFamily::new(
            "node_scrape_collector_duration_seconds",
            MetricType::Gauge,
            "node_exporter: Duration of a collector scrape.",
        );
        let mut success = MetricFamily::new(
            "node_scrape_collector_success",
            MetricType::Gauge,
            "node_exporter: Whether a collector succeeded.",
        );
        for (name, run) in &self.enabled {
            let start = Instant::now();
            let ok = match run(self, &mut out) {
                Ok(()) => {
                    if self.failing_lock().remove(name) {
                        tracing::info!(collector = %name, "node collector reads again");
                    }
                    1.0
                }
                // No such hardware or kernel module: node_exporter's "no data".
                Err(err) if err.is_absent() && MAY_BE_ABSENT.contains(name) => {
                    self.failing_lock().remove(name);
                    tracing::debug!(collector = %name, error = %err, "node collector has no data");
                    0.0
                }
                Err(err) => {
                    // Once when it starts failing, not every scrape; the series
                    // `node_scrape_collector_success` says it meanwhile.
                    if self.failing_lock().insert(name) {
                        tracing::warn!(collector = %name, error = %err,
                            "node collector failed; node_scrape_collector_success is 0 until it reads again");
                    }
                    0.0
                }
            };
            let labels = vec![("collector".to_string(), (*name).to_string())];
            duration.push(labels.clone(), start.elapsed().as_secs_f64());
            success.push(labels, ok);
        }
        out.push(duration);
        out.push(success);
        out
    }

    fn proc_path(&self, rel: &str) -> PathBuf {
        self.paths.proc.join(rel)
    }

    fn sys_path(&self, rel: &str) -> PathBuf {
        self.paths.sys.join(rel)
    }

    fn root_path(&self, rel: &str) -> PathBuf {
        self.paths.root.join(rel.trim_start_matches('/'))
    }
}

// ---- helpers shared by the sub-collectors ----

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, what: impl Into<String>) -> NodeError {
    NodeError::Parse {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Parses a number as Go's `strconv.ParseFloat` does (node_exporter's parsers use it
/// for most of the kernel's numbers).
fn parse_f64(path: &Path, s: &str) -> Result<f64> {
    parse_go_float(s).ok_or_else(|| parse_error(path, format!("bad number {s:?}")))
}

/// A family with a single unlabelled sample.
fn single(
    name: impl Into<String>,
    kind: MetricType,
    help: impl Into<String>,
    v: f64,
) -> MetricFamily {
    let mut f = MetricFamily::new(name, kind, help);
    f.push(Vec::new(), v);
    f
}

/// Builds a label list from pairs.
fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The entries of a directory whose names start with `prefix`, sorted by name, with
/// the rest of the name after the prefix. A missing directory is an error.
fn dir_entries_with_prefix(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|source| NodeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut v: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(prefix)?.to_string();
            Some((rest, e.path()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The entries of a directory named `<prefix><number>` (`mc0`, `cpu12`), by number,
/// with the number as written. A missing directory is an error.
fn numbered_entries(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut entries: Vec<(u64, String, PathBuf)> = dir_entries_with_prefix(dir, prefix)?
        .into_iter()
        .filter_map(|(n, path)| Some((n.parse().ok()?, n, path)))
        .collect();
    entries.sort();
    Ok(entries.into_iter().map(|(_, n, path)| (n, path)).collect())
}

/// Reads a small sysfs attribute, trimmed; `None` when it is missing or unreadable.
fn read_attr(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads a sysfs attribute as procfs's `SysReadFile` does for node_exporter: one
/// read of at most 128 bytes (so a longer value is cut where node_exporter cuts it),
/// surrounding whitespace trimmed, invalid UTF-8 replaced.
fn read_sysfs_value(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let n = std::fs::File::open(path)?.read(&mut buf)?;
    Ok(valid_utf8(&buf[..n]).trim().to_string())
}

/// `bytes` as text, each run of invalid UTF-8 bytes replaced by one U+FFFD (Go's
/// `strings.ToValidUTF8(s, "\uFFFD")`, which node_exporter applies to label values
/// read from hardware).
fn valid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    // A chunk is valid text followed by at most one invalid sequence; a run of
    // invalid bytes spans chunks whose valid text is empty.
    let mut in_invalid_run = false;
    for chunk in bytes.utf8_chunks() {
        if !chunk.valid().is_empty() {
            out.push_str(chunk.valid());
            in_invalid_run = false;
        }
        if !chunk.invalid().is_empty() {
            if !in_invalid_run {
                out.push('\u{FFFD}');
            }
            in_invalid_run = true;
        }
    }
    out
}

/// Whether `path` is an attribute file: `false` when it is missing or is something
/// else (sysfs puts links to devices and subsystems, and directories, beside the
/// attributes), an error when it cannot be looked at.
fn is_attribute_file(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(NodeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether a read failed because the driver cannot report the attribute now
/// (`EOPNOTSUPP`, `EINVAL`) or it is gone: procfs skips such an attribute rather than
/// fail the device.
fn attribute_unavailable(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL))
}

/// The family named `name` in `families`, added (empty) when it is not there yet:
/// for collectors whose families depend on what the host has.
fn family_entry<'a>(
    families: &'a mut Vec<MetricFamily>,
    name: &str,
    kind: MetricType,
    help: &str,
) -> &'a mut MetricFamily {
    let i = match families.iter().position(|f| f.name == name) {
        Some(i) => i,
        None => {
            families.push(MetricFamily::new(name, kind, help));
            families.len() - 1
        }
    };
    &mut families[i]
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// A fake root with `proc/`, `sys/` and `root/` under a temporary directory.
    pub struct Fixture {
        pub dir: tempfile::TempDir,
    }

    impl Fixture {
        pub fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        /// Writes `contents` at `rel` (e.g. `proc/stat`), creating parent directories.
        pub fn write(&self, rel: &str, contents: &str) -> &Self {
            let p = self.dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, contents).unwrap();
            self
        }

        pub fn paths(&self) -> NodePaths {
            NodePaths {
                proc: self.dir.path().join("proc"),
                sys: self.dir.path().join("sys"),
                root: self.dir.path().join("root"),
                textfile: None,
                udev_data: None,
            }
        }

        /// A collector with node_exporter's flags set as given.
        pub fn collector_with(&self, flags: &[(&str, &str)]) -> NodeCollector {
            let flags = NodeFlags::from_pairs(flags.iter().copied()).unwrap();
            NodeCollector::with_flags(self.paths(), &flags).unwrap()
        }

        pub fn collector(&self) -> NodeCollector {
            NodeCollector::new(self.paths()).unwrap()
        }
    }

    pub fn find<'a>(fams: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
        fams.iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    /// The value of the sample of `name` whose labels include all of `want`.
    pub fn value(fams: &[MetricFamily], name: &str, want: &[(&str, &str)]) -> f64 {
        let f = find(fams, name);
        f.samples
            .iter()
            .find(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .unwrap_or_else(|| panic!("no sample {name}{want:?}"))
            .value
    }

    pub fn run(
        c: &NodeCollector,
        f: fn(&NodeCollector, &mut Vec<MetricFamily>) -> Result<()>,
    ) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        f(c, &mut out).unwrap();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn collectors_left_out_do_not_run_nor_report() {
        let fx = Fixture::new();
        fx.write("proc/loadavg", "0.50 0.25 0.10 1/100 42\n");
        let fams = fx
            .collector()
            .without(&["loadavg", "hwmon"])
            .unwrap()
            .collect();
        assert!(fams.iter().all(|f| f.name != "node_load1"));
        let success = find(&fams, "node_scrape_collector_success");
        assert_eq!(success.samples.len(), COLLECTORS.len() - 2);
        assert!(success.samples.iter().all(|s| s.labels[0].1 != "loadavg"));
        let only = fx.collector().only(&["loadavg"]).unwrap().collect();
        assert_eq!(
            find(&only, "node_scrape_collector_success").samples.len(),
            1
        );
        assert!(fx.collector().without(&["loadavg", "nope"]).is_err());
    }

    #[test]
    fn failing_collector_reports_success_zero_and_others_still_run() {
        let fx = Fixture::new();
        fx.write("proc/loadavg", "0.50 0.25 0.10 1/100 42\n");
        let fams = fx.collector().collect();
        assert_eq!(value(&fams, "node_load1", &[]), 0.5);
        assert_eq!(
            value(
                &fams,
                "node_scrape_collector_success",
                &[("collector", "loadavg")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &fams,
                "node_scrape_collector_success",
                &[("collector", "meminfo")]
            ),
            0.0
        );
        let d = find(&fams, "node_scrape_collector_duration_seconds");
        assert_eq!(d.samples.len(), COLLECTORS.len());
    }

    #[test]
    fn a_failure_is_told_once_and_absent_hardware_is_no_failure() {
        let fx = Fixture::new();
        let c = fx.collector();
        fx.write("proc/loadavg", "garbage\n");
        fx.write("proc/meminfo", "MemTotal: 1 kB\n");
        c.collect();
        c.collect();
        let failing = |c: &NodeCollector| c.failing_lock().iter().copied().collect::<Vec<_>>();
        // The hardware collectors find nothing (no data, as node_exporter says) and
        // are not failing; a missing core file is (the paths are wrong).
        let core = failing(&c);
        assert!(
            core.contains(&"loadavg") && core.contains(&"stat"),
            "{core:?}"
        );
        assert!(
            !core.contains(&"meminfo") && !core.contains(&"ipvs"),
            "{core:?}"
        );
        fx.write("proc/loadavg", "0.50 0.25 0.10 1/100 42\n");
        c.collect();
        assert!(!failing(&c).contains(&"loadavg"), "recovered");
        assert!(core.iter().all(|name| !MAY_BE_ABSENT.contains(name)));
    }

    #[test]
    fn bad_filter_is_an_error() {
        let mut f = NodeFlags::default();
        f.set("collector.vmstat.fields", "(").unwrap();
        let err = NodeCollector::with_flags(NodePaths::default(), &f).unwrap_err();
        assert!(err.to_string().contains("vmstat.fields"), "{err}");
    }

    #[test]
    fn family_names_are_unique() {
        let fx = Fixture::new();
        let fams = fx.collector().collect();
        let mut names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn invalid_utf8_runs_become_one_replacement_each() {
        assert_eq!(valid_utf8(b"A\xff\xfeB\xc3"), "A\u{FFFD}B\u{FFFD}");
        assert_eq!(valid_utf8("\u{FFFD}\u{e9}".as_bytes()), "\u{FFFD}\u{e9}");
        assert_eq!(valid_utf8(b"\xe9x\xe9"), "\u{FFFD}x\u{FFFD}");
    }
}
