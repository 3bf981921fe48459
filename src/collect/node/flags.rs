//! node_exporter 1.5's per-collector flags (`--collector.<collector>.<setting>`), so
//! that an operator moving from node_exporter can carry its arguments over
//! (`collectors.node.flags` in ODIN's configuration, keyed by the flag's name).
//!
//! [`NodeFlags`] holds the settings as given and checks them the way node_exporter
//! does when it starts (a bad regular expression, an unknown IPVS label, two flags
//! that exclude each other), so a bad configuration is refused when it loads rather
//! than when a collector first runs. [`Flags`] is the compiled form the collectors
//! read.
//!
//! One rule differs from 1.5, on purpose: an include pattern given without its
//! exclude pattern replaces that exclude's default (diskstats' device filter) where
//! 1.5 refuses to start ("mutually exclusive"), so `device-include` works on its own
//! as it does in later node_exporter releases. Every combination 1.5 accepts means the
//! same in ODIN.

use std::time::Duration;

use regex::Regex;

use super::{NodeError, Result};

/// node_exporter 1.5.0's upstream default filters (Debian's package patches two of
/// them: `run|mnt|media` in the mount points, `^lo$` for netdev).
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
pub const DEFAULT_DISKSTATS_DEVICE_EXCLUDE: &str =
    r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
pub const DEFAULT_NETSTAT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";
pub const DEFAULT_VMSTAT_FIELDS: &str = r"^(oom_kill|pgpg|pswp|pg.*fault).*";
/// `--collector.filesystem.mount-timeout`'s default.
pub const DEFAULT_MOUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// The IPVS backend labels in node_exporter's order (`--collector.ipvs.backend-labels`
/// picks from these; the series keep this order whatever order they are named in).
pub const IPVS_BACKEND_LABELS: [&str; 6] = [
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
];

/// The flags ODIN reads, as node_exporter 1.5 names them.
pub const FLAG_NAMES: &[&str] = &[
    "collector.arp.device-exclude",
    "collector.arp.device-include",
    "collector.bcache.priorityStats",
    "collector.cpu.guest",
    "collector.cpu.info",
    "collector.cpu.info.bugs-include",
    "collector.cpu.info.flags-include",
    "collector.diskstats.device-exclude",
    "collector.diskstats.device-include",
    "collector.diskstats.ignored-devices",
    "collector.filesystem.fs-types-exclude",
    "collector.filesystem.ignored-fs-types",
    "collector.filesystem.ignored-mount-points",
    "collector.filesystem.mount-points-exclude",
    "collector.filesystem.mount-timeout",
    "collector.ipvs.backend-labels",
    "collector.netclass.ignore-invalid-speed",
    "collector.netclass.ignored-devices",
    "collector.netclass.netlink",
    "collector.netdev.address-info",
    "collector.netdev.device-exclude",
    "collector.netdev.device-include",
    "collector.netdev.enable-detailed-metrics",
    "collector.netdev.netlink",
    "collector.netstat.fields",
    "collector.powersupply.ignored-supplies",
    "collector.rapl.enable-zone-label",
    "collector.stat.softirq",
    "collector.tapestats.ignored-devices",
    "collector.vmstat.fields",
];

/// node_exporter 1.5 flags ODIN knows but does not take, and why.
const NOT_TAKEN: &[(&str, &str)] = &[
    (
        "collector.textfile.directory",
        "set collectors.node.textfile_directory",
    ),
    (
        "collector.disable-defaults",
        "list the collectors not to run in collectors.node.disabled_collectors",
    ),
];

/// The settings of node_exporter's per-collector flags. `Default` is node_exporter
/// 1.5.0's upstream default for each; [`NodeFlags::set`] takes one flag as
/// node_exporter would on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFlags {
    arp_device_include: String,
    arp_device_exclude: String,
    bcache_priority_stats: bool,
    cpu_guest: bool,
    cpu_info: bool,
    cpu_info_flags_include: String,
    cpu_info_bugs_include: String,
    diskstats_device_include: String,
    /// `None` until given: the default, unless an include pattern replaces it.
    diskstats_device_exclude: Option<String>,
    /// The deprecated `ignored-devices`, kept apart to refuse it beside
    /// `device-exclude` as 1.5 does.
    diskstats_ignored_devices: Option<String>,
    mount_points_exclude: Option<String>,
    ignored_mount_points: Option<String>,
    fs_types_exclude: Option<String>,
    ignored_fs_types: Option<String>,
    mount_timeout: Duration,
    ipvs_backend_labels: Vec<&'static str>,
    netclass_ignored_devices: String,
    netclass_ignore_invalid_speed: bool,
    netdev_address_info: bool,
    netdev_detailed: bool,
    netdev_device_include: String,
    netdev_device_exclude: String,
    netstat_fields: String,
    powersupply_ignored_supplies: String,
    rapl_zone_label: bool,
    stat_softirq: bool,
    tapestats_ignored_devices: String,
    vmstat_fields: String,
}

impl Default for NodeFlags {
    fn default() -> Self {
        Self {
            arp_device_include: String::new(),
            arp_device_exclude: String::new(),
            bcache_priority_stats: false,
            cpu_guest: true,
            cpu_info: false,
            cpu_info_flags_include: String::new(),
            cpu_info_bugs_include: String::new(),
            diskstats_device_include: String::new(),
            diskstats_device_exclude: None,
            diskstats_ignored_devices: None,
            mount_points_exclude: None,
            ignored_mount_points: None,
            fs_types_exclude: None,
            ignored_fs_types: None,
            mount_timeout: DEFAULT_MOUNT_TIMEOUT,
            ipvs_backend_labels: IPVS_BACKEND_LABELS.to_vec(),
            netclass_ignored_devices: "^$".to_string(),
            netclass_ignore_invalid_speed: false,
            netdev_address_info: false,
            netdev_detailed: false,
            netdev_device_include: String::new(),
            netdev_device_exclude: String::new(),
            netstat_fields: DEFAULT_NETSTAT_FIELDS.to_string(),
            powersupply_ignored_supplies: "^$".to_string(),
            rapl_zone_label: false,
            stat_softirq: false,
            tapestats_ignored_devices: "^$".to_string(),
            vmstat_fields: DEFAULT_VMSTAT_FIELDS.to_string(),
        }
    }
}

fn flag_error(flag: &str, reason: impl Into<String>) -> NodeError {
    NodeError::Flag {
        flag: flag.to_string(),
        reason: reason.into(),
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it (kingpin's boolean flags).
fn parse_bool(flag: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(flag_error(flag, format!("{value:?} is not a boolean"))),
    }
}

impl NodeFlags {
    /// Flags from `(name, value)` pairs, as `collectors.node.flags` gives them; the
    /// name is node_exporter's, with or without its leading `--`. The whole set is
    /// checked as node_exporter checks it at start-up.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut flags = Self::default();
        for (name, value) in pairs {
            flags.set(name.as_ref(), value.as_ref())?;
        }
        Flags::new(&flags)?;
        Ok(flags)
    }

    /// Sets one flag. A regular expression is checked by [`Flags::new`], with the
    /// combinations of flags.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.strip_prefix("--").unwrap_or(name);
        let text = || value.to_string();
        match name {
            "collector.arp.device-exclude" => self.arp_device_exclude = text(),
            "collector.arp.device-include" => self.arp_device_include = text(),
            "collector.bcache.priorityStats" => {
                self.bcache_priority_stats = parse_bool(name, value)?
            }
            "collector.cpu.guest" => self.cpu_guest = parse_bool(name, value)?,
            "collector.cpu.info" => self.cpu_info = parse_bool(name, value)?,
            "collector.cpu.info.bugs-include" => self.cpu_info_bugs_include = text(),
            "collector.cpu.info.flags-include" => self.cpu_info_flags_include = text(),
            "collector.diskstats.device-exclude" => self.diskstats_device_exclude = Some(text()),
            "collector.diskstats.device-include" => self.diskstats_device_include = text(),
            "collector.diskstats.ignored-devices" => self.diskstats_ignored_devices = Some(text()),
            "collector.filesystem.fs-types-exclude" => self.fs_types_exclude = Some(text()),
            "collector.filesystem.ignored-fs-types" => self.ignored_fs_types = Some(text()),
            "collector.filesystem.ignored-mount-points" => self.ignored_mount_points = Some(text()),
            "collector.filesystem.mount-points-exclude" => self.mount_points_exclude = Some(text()),
            "collector.filesystem.mount-timeout" => {
                self.mount_timeout = parse_go_duration(value).ok_or_else(|| {
                    flag_error(
                        name,
                        format!("{value:?} is not a duration (as Go writes them: 1m30s, 1.5s)"),
                    )
                })?;
            }
            "collector.ipvs.backend-labels" => {
                self.ipvs_backend_labels = parse_ipvs_labels(name, value)?
            }
            "collector.netclass.ignore-invalid-speed" => {
                self.netclass_ignore_invalid_speed = parse_bool(name, value)?
            }
            "collector.netclass.ignored-devices" => self.netclass_ignored_devices = text(),
            // Where the statistics are read from: ODIN has one way, so only the value
            // that names it is taken.
            "collector.netclass.netlink" => {
                if parse_bool(name, value)? {
                    return Err(flag_error(
                        name,
                        "not supported by ODIN: it reads /sys/class/net, as node_exporter \
                         1.5 does by default",
                    ));
                }
            }
            "collector.netdev.netlink" => {
                if parse_bool(name, value)? {
                    return Err(flag_error(
                        name,
                        "not supported by ODIN: it reads /proc/net/dev, as node_exporter \
                         does with --no-collector.netdev.netlink",
                    ));
                }
            }
            "collector.netdev.address-info" => self.netdev_address_info = parse_bool(name, value)?,
            "collector.netdev.device-exclude" => self.netdev_device_exclude = text(),
            "collector.netdev.enable-detailed-metrics" => {
                self.netdev_detailed = parse_bool(name, value)?
            }
            "collector.netdev.device-include" => self.netdev_device_include = text(),
            "collector.netstat.fields" => self.netstat_fields = text(),
            "collector.powersupply.ignored-supplies" => self.powersupply_ignored_supplies = text(),
            "collector.rapl.enable-zone-label" => self.rapl_zone_label = parse_bool(name, value)?,
            "collector.stat.softirq" => self.stat_softirq = parse_bool(name, value)?,
            "collector.tapestats.ignored-devices" => self.tapestats_ignored_devices = text(),
            "collector.vmstat.fields" => self.vmstat_fields = text(),
            _ => return Err(unknown_flag(name)),
        }
        Ok(())
    }
}

/// Why a flag is refused: one ODIN knows it does not take, a collector ODIN does not
/// have, or a name node_exporter 1.5 does not have either.
fn unknown_flag(name: &str) -> NodeError {
    if let Some((_, why)) = NOT_TAKEN.iter().find(|(n, _)| *n == name) {
        return flag_error(name, format!("not supported by ODIN: {why}"));
    }
    if name.starts_with("path.") {
        return flag_error(
            name,
            "the paths are collectors.node's procfs, sysfs, rootfs and udev_data",
        );
    }
    let collector = name
        .strip_prefix("collector.")
        .and_then(|rest| rest.split('.').next());
    if let Some(collector) = collector {
        if name.matches('.').count() == 1 {
            return flag_error(
                name,
                "turning collectors on and off is collectors.node.disabled_collectors \
                 (every default collector runs otherwise)",
            );
        }
        if !super::NodeCollector::collector_names().any(|c| c == collector) {
            return flag_error(
                name,
                format!(
                    "the {collector} collector is not built in ODIN (only node_exporter \
                     1.5's default collectors are)"
                ),
            );
        }
    }
    flag_error(
        name,
        format!("unknown flag (known: {})", FLAG_NAMES.join(", ")),
    )
}

/// A duration flag as kingpin reads it (Go's `time.ParseDuration`). A negative one
/// is zero: a timeout that has already passed.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let nanos = crate::gostrconv::parse_duration(s).ok()?;
    Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

/// node_exporter's `parseIPVSLabels`: a comma-separated subset of the six labels
/// (empty names skipped), kept in node_exporter's order.
fn parse_ipvs_labels(flag: &str, value: &str) -> Result<Vec<&'static str>> {
    let named: Vec<&str> = value.split(',').filter(|l| !l.is_empty()).collect();
    let unknown: Vec<&str> = named
        .iter()
        .copied()
        .filter(|l| !IPVS_BACKEND_LABELS.contains(l))
        .collect();
    if !unknown.is_empty() {
        return Err(flag_error(
            flag,
            format!(
                "unknown IPVS backend labels {:?} (known: {})",
                unknown.join(", "),
                IPVS_BACKEND_LABELS.join(", ")
            ),
        ));
    }
    Ok(IPVS_BACKEND_LABELS
        .iter()
        .copied()
        .filter(|l| named.contains(l))
        .collect())
}

/// node_exporter's device filter: a device is left out when the exclude pattern
/// matches it or the include pattern does not. An empty pattern is no pattern.
#[derive(Debug)]
pub(super) struct DeviceFilter {
    exclude: Option<Regex>,
    include: Option<Regex>,
}

impl DeviceFilter {
    fn new(flag: &str, exclude: &str, include: &str) -> Result<Self> {
        Ok(Self {
            exclude: compile_non_empty(&format!("{flag}.device-exclude"), exclude)?,
            include: compile_non_empty(&format!("{flag}.device-include"), include)?,
        })
    }

    pub(super) fn ignored(&self, device: &str) -> bool {
        self.exclude.as_ref().is_some_and(|re| re.is_match(device))
            || self.include.as_ref().is_some_and(|re| !re.is_match(device))
    }
}

fn compile(flag: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| flag_error(flag, format!("invalid regular expression: {e}")))
}

/// An empty pattern is no pattern (node_exporter's device filters and CPU info
/// includes).
fn compile_non_empty(flag: &str, pattern: &str) -> Result<Option<Regex>> {
    if pattern.is_empty() {
        Ok(None)
    } else {
        compile(flag, pattern).map(Some)
    }
}

/// node_exporter's refusal of an include and an exclude pattern together.
fn exclusive(flag: &str, exclude: &str, include: &str) -> Result<()> {
    if !exclude.is_empty() && !include.is_empty() {
        return Err(flag_error(
            flag,
            "device-exclude & device-include are mutually exclusive",
        ));
    }
    Ok(())
}

/// The one given of a flag and its deprecated name, refusing both (as 1.5 does). An
/// empty deprecated value counts as not given, as in 1.5.
fn one_of(
    (name, value): (&str, &Option<String>),
    (old_name, old_value): (&str, &Option<String>),
    default: &str,
) -> Result<String> {
    let old_value = &old_value.clone().filter(|v| !v.is_empty());
    match (value, old_value) {
        (Some(_), Some(_)) => Err(flag_error(
            name,
            format!("--{old_name} and --{name} are mutually exclusive"),
        )),
        (Some(v), None) | (None, Some(v)) => Ok(v.clone()),
        (None, None) => Ok(default.to_string()),
    }
}

/// The flags compiled for the collectors to read.
#[derive(Debug)]
pub(super) struct Flags {
    pub(super) arp_devices: DeviceFilter,
    pub(super) bcache_priority_stats: bool,
    pub(super) cpu_guest: bool,
    /// `node_cpu_info`: on with `cpu.info`, or with either include pattern (as in 1.5).
    pub(super) cpu_info: bool,
    pub(super) cpu_flags_include: Option<Regex>,
    pub(super) cpu_bugs_include: Option<Regex>,
    pub(super) diskstats_devices: DeviceFilter,
    pub(super) mount_points_exclude: Regex,
    pub(super) fs_types_exclude: Regex,
    pub(super) mount_timeout: Duration,
    pub(super) ipvs_backend_labels: Vec<&'static str>,
    pub(super) netclass_ignored_devices: Regex,
    pub(super) netclass_ignore_invalid_speed: bool,
    pub(super) netdev_address_info: bool,
    pub(super) netdev_detailed: bool,
    pub(super) netdev_devices: DeviceFilter,
    pub(super) netstat_fields: Regex,
    pub(super) powersupply_ignored_supplies: Regex,
    pub(super) rapl_zone_label: bool,
    pub(super) stat_softirq: bool,
    pub(super) tapestats_ignored_devices: Regex,
    pub(super) vmstat_fields: Regex,
}

impl Flags {
    pub(super) fn new(f: &NodeFlags) -> Result<Self> {
        exclusive(
            "collector.netdev.device-include",
            &f.netdev_device_exclude,
            &f.netdev_device_include,
        )?;
        let diskstats_exclude = one_of(
            (
                "collector.diskstats.device-exclude",
                &f.diskstats_device_exclude,
            ),
            (
                "collector.diskstats.ignored-devices",
                &f.diskstats_ignored_devices,
            ),
            // An include pattern on its own replaces the default exclude.
            if f.diskstats_device_include.is_empty() {
                DEFAULT_DISKSTATS_DEVICE_EXCLUDE
            } else {
                ""
            },
        )?;
        exclusive(
            "collector.diskstats.device-include",
            &diskstats_exclude,
            &f.diskstats_device_include,
        )?;
        let mount_points = one_of(
            (
                "collector.filesystem.mount-points-exclude",
                &f.mount_points_exclude,
            ),
            (
                "collector.filesystem.ignored-mount-points",
                &f.ignored_mount_points,
            ),
            DEFAULT_MOUNT_POINTS_EXCLUDE,
        )?;
        let fs_types = one_of(
            ("collector.filesystem.fs-types-exclude", &f.fs_types_exclude),
            ("collector.filesystem.ignored-fs-types", &f.ignored_fs_types),
            DEFAULT_FS_TYPES_EXCLUDE,
        )?;
        let cpu_flags_include = compile_non_empty(
            "collector.cpu.info.flags-include",
            &f.cpu_info_flags_include,
        )?;
        let cpu_bugs_include =
            compile_non_empty("collector.cpu.info.bugs-include", &f.cpu_info_bugs_include)?;
        let cpu_info = f.cpu_info || cpu_flags_include.is_some() || cpu_bugs_include.is_some();
        if cpu_info && !cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
            return Err(flag_error(
                "collector.cpu.info",
                format!(
                    "not built for {}: ODIN reads x86's /proc/cpuinfo layout only",
                    std::env::consts::ARCH
                ),
            ));
        }
        Ok(Self {
            arp_devices: DeviceFilter::new(
                "collector.arp",
                &f.arp_device_exclude,
                &f.arp_device_include,
            )?,
            bcache_priority_stats: f.bcache_priority_stats,
            cpu_guest: f.cpu_guest,
            cpu_info,
            cpu_flags_include,
            cpu_bugs_include,
            diskstats_devices: DeviceFilter::new(
                "collector.diskstats",
                &diskstats_exclude,
                &f.diskstats_device_include,
            )?,
            mount_points_exclude: compile(
                "collector.filesystem.mount-points-exclude",
                &mount_points,
            )?,
            fs_types_exclude: compile("collector.filesystem.fs-types-exclude", &fs_types)?,
            mount_timeout: f.mount_timeout,
            ipvs_backend_labels: f.ipvs_backend_labels.clone(),
            netclass_ignored_devices: compile(
                "collector.netclass.ignored-devices",
                &f.netclass_ignored_devices,
            )?,
            netclass_ignore_invalid_speed: f.netclass_ignore_invalid_speed,
            netdev_address_info: f.netdev_address_info,
            netdev_detailed: f.netdev_detailed,
            netdev_devices: DeviceFilter::new(
                "collector.netdev",
                &f.netdev_device_exclude,
                &f.netdev_device_include,
            )?,
            netstat_fields: compile("collector.netstat.fields", &f.netstat_fields)?,
            powersupply_ignored_supplies: compile(
                "collector.powersupply.ignored-supplies",
                &f.powersupply_ignored_supplies,
            )?,
            rapl_zone_label: f.rapl_zone_label,
            stat_softirq: f.stat_softirq,
            tapestats_ignored_devices: compile(
                "collector.tapestats.ignored-devices",
                &f.tapestats_ignored_devices,
            )?,
            vmstat_fields: compile("collector.vmstat.fields", &f.vmstat_fields)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(pairs: &[(&str, &str)]) -> String {
        NodeFlags::from_pairs(pairs.iter().copied())
            .unwrap_err()
            .to_string()
    }

    fn compiled(pairs: &[(&str, &str)]) -> Flags {
        Flags::new(&NodeFlags::from_pairs(pairs.iter().copied()).unwrap()).unwrap()
    }

    #[test]
    fn defaults_are_node_exporter_1_5_upstream() {
        let f = compiled(&[]);
        assert!(f.cpu_guest && !f.cpu_info && !f.stat_softirq && !f.rapl_zone_label);
        assert!(f.diskstats_devices.ignored("loop0") && !f.diskstats_devices.ignored("sda"));
        assert!(
            !f.netdev_devices.ignored("lo"),
            "upstream excludes no device"
        );
        assert!(f.mount_points_exclude.is_match("/proc/sys"));
        assert!(f.fs_types_exclude.is_match("overlay"));
        assert_eq!(f.mount_timeout, Duration::from_secs(5));
        assert_eq!(f.ipvs_backend_labels, IPVS_BACKEND_LABELS);
        assert!(!f.netclass_ignored_devices.is_match("eth0"));
        assert!(f.netclass_ignored_devices.is_match(""));
    }

    #[test]
    fn flags_are_read_as_node_exporter_reads_its_command_line() {
        let f = compiled(&[
            ("--collector.cpu.guest", "false"),
            ("collector.stat.softirq", "T"),
            ("collector.netdev.device-include", "^(eth|en)"),
            ("collector.arp.device-exclude", "^docker"),
            ("collector.arp.device-include", "^(eth|docker)"),
            ("collector.filesystem.mount-timeout", "1.5m30s"),
            ("collector.ipvs.backend-labels", "proto,,local_address"),
            ("collector.netdev.netlink", "false"),
            ("collector.netclass.netlink", "0"),
        ]);
        assert!(!f.cpu_guest && f.stat_softirq);
        assert!(f.netdev_devices.ignored("lo") && !f.netdev_devices.ignored("eth0"));
        // Both arp patterns apply: excluded, or not included.
        assert!(f.arp_devices.ignored("docker0") && f.arp_devices.ignored("cni0"));
        assert!(!f.arp_devices.ignored("eth0"));
        assert_eq!(f.mount_timeout, Duration::from_secs(120));
        assert_eq!(f.ipvs_backend_labels, ["local_address", "proto"]);
    }

    #[test]
    fn durations_as_go_reads_them() {
        for (text, micros) in [
            ("0", 0),
            ("5s", 5_000_000),
            ("1.5s", 1_500_000),
            ("300ms", 300_000),
            ("2500us", 2500),
            ("2500\u{b5}s", 2500),
            ("1h1m", 3_660_000_000),
            ("1s1m", 61_000_000),
            (".5s", 500_000),
            ("-3s", 0),
        ] {
            assert_eq!(
                parse_go_duration(text),
                Some(Duration::from_micros(micros)),
                "{text}"
            );
        }
        for bad in [
            "",
            "5",
            "1d",
            "1w",
            "5 s",
            "1..5s",
            ".s",
            "s",
            "1e3s",
            "-",
            "99999999h",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_listed_flag_is_taken() {
        for name in FLAG_NAMES {
            let mut flags = NodeFlags::default();
            let taken = ["false", "1s", "proto", "^x$"]
                .iter()
                .any(|value| flags.set(name, value).is_ok());
            assert!(taken, "{name} is listed but not taken");
        }
    }

    #[test]
    fn empty_deprecated_values_are_not_given() {
        let f = compiled(&[
            ("collector.filesystem.ignored-mount-points", ""),
            ("collector.diskstats.ignored-devices", ""),
            ("collector.filesystem.fs-types-exclude", "^tmpfs$"),
            ("collector.filesystem.ignored-fs-types", ""),
        ]);
        assert!(f.mount_points_exclude.is_match("/proc"));
        assert!(!f.mount_points_exclude.is_match("/data"));
        assert!(f.diskstats_devices.ignored("loop0") && !f.diskstats_devices.ignored("sda"));
        assert!(f.fs_types_exclude.is_match("tmpfs") && !f.fs_types_exclude.is_match("overlay"));
    }

    #[test]
    fn an_include_pattern_alone_replaces_the_default_exclude() {
        let f = compiled(&[("collector.diskstats.device-include", "^nvme")]);
        assert!(!f.diskstats_devices.ignored("nvme0n1p1"));
        assert!(f.diskstats_devices.ignored("sda"));
        // As 1.5 accepts it: the exclude emptied by hand.
        let f = compiled(&[
            ("collector.diskstats.device-include", "^nvme"),
            ("collector.diskstats.device-exclude", ""),
        ]);
        assert!(!f.diskstats_devices.ignored("nvme0n1p1"));
    }

    #[test]
    fn cpu_info_patterns_turn_cpu_info_on() {
        assert!(compiled(&[("collector.cpu.info.bugs-include", ".")]).cpu_info);
        let f = compiled(&[("collector.cpu.info", "true")]);
        assert!(f.cpu_info && f.cpu_flags_include.is_none());
    }

    #[test]
    fn deprecated_names_stand_in_for_the_new_ones_but_not_beside_them() {
        let f = compiled(&[("collector.filesystem.ignored-mount-points", "^/boot")]);
        assert!(f.mount_points_exclude.is_match("/boot/efi"));
        assert!(!f.mount_points_exclude.is_match("/proc"));
        let e = error(&[
            ("collector.filesystem.ignored-fs-types", "^x$"),
            ("collector.filesystem.fs-types-exclude", "^y$"),
        ]);
        assert!(e.contains("mutually exclusive"), "{e}");
        let e = error(&[
            ("collector.diskstats.ignored-devices", "^x$"),
            ("collector.diskstats.device-exclude", "^y$"),
        ]);
        assert!(e.contains("mutually exclusive"), "{e}");
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        for (pairs, expected) in [
            (
                &[("collector.netdev.device-include", "(")][..],
                "invalid regular expression",
            ),
            // Go's quoting, which RE2 has and Rust's regex does not.
            (
                &[("collector.arp.device-exclude", r"\Qdocker0\E")][..],
                "invalid regular expression",
            ),
            (
                &[
                    ("collector.netdev.device-include", "^eth"),
                    ("collector.netdev.device-exclude", "^lo$"),
                ][..],
                "mutually exclusive",
            ),
            (
                &[
                    ("collector.diskstats.device-include", "^nvme"),
                    ("collector.diskstats.device-exclude", "p\\d+$"),
                ][..],
                "mutually exclusive",
            ),
            (
                &[("collector.ipvs.backend-labels", "proto,pod")][..],
                "unknown IPVS backend labels \"pod\"",
            ),
            (&[("collector.cpu.info", "yes")][..], "not a boolean"),
            (
                &[("collector.filesystem.mount-timeout", "1d")][..],
                "is not a duration",
            ),
            (
                &[("collector.textfile.directory", "/x")][..],
                "set collectors.node.textfile_directory",
            ),
            (
                &[("collector.systemd.unit-include", ".+")][..],
                "the systemd collector is not built",
            ),
            (
                &[("collector.cpu", "false")][..],
                "collectors.node.disabled_collectors",
            ),
            (&[("collector.cpu.frequency", "1")][..], "unknown flag"),
            (
                &[("collector.netdev.netlink", "true")][..],
                "reads /proc/net/dev",
            ),
            (&[("web.listen-address", ":9100")][..], "unknown flag"),
            (
                &[("path.udev.data", "/host/run/udev/data")][..],
                "collectors.node's procfs, sysfs, rootfs and udev_data",
            ),
        ] {
            let e = error(pairs);
            assert!(e.contains(expected), "{pairs:?}: {e}");
            assert!(
                e.starts_with("node_exporter flag --"),
                "names the flag: {e}"
            );
        }
    }
}
