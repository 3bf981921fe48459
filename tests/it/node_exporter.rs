//! ODIN's built-in node collector against Debian's `prometheus-node-exporter` 1.5 on
//! the same machine, both scraped by one ODIN every second.
//!
//! node_exporter runs on a free loopback port with upstream 1.5's default collectors
//! (all of which ODIN implements) and with ODIN's (upstream 1.5's) filter defaults,
//! which Debian's package patches;
//! ODIN runs its node collector as job `node` and scrapes node_exporter as job `ne`,
//! both every second. Once both have been scraped three times, one instant query per
//! job at the same evaluation time reads the last 5 s of raw samples, and for every
//! family node_exporter exposes:
//!
//! - the family is in ODIN's job `node` (unless [`ONLY_IN_NODE_EXPORTER`] lists it),
//!   with the same type and HELP text, and ODIN's job has no family node_exporter lacks;
//! - the same series: label names and values, `job`/`instance` aside;
//! - the same values: counters within one interval's growth (the largest step either
//!   job's series made between two scrapes in the window, × [`GROWTH_SLACK`]), gauges
//!   within 5 % or [`GAUGE_ABSOLUTE_TOLERANCE`] or one interval's movement, whichever
//!   is larger (the two reads can be up to one interval apart). A value difference
//!   must show at [`EVALUATIONS`] evaluation times in a row, one scrape apart, to
//!   count. [`VALUES_NOT_COMPARED`] lists the few families whose values are not the
//!   node's or jump between any two reads, each with the reason.
//!
//! The collectors whose hardware this machine lacks (RAID, InfiniBand, ZFS, …) are
//! compared on a fake GPU server instead (`tests/fixtures/node-host`,
//! [`node_collector_matches_node_exporter_on_a_fixture_host`]), value for value.
//!
//! `docs/node-collector.md` lists the same exceptions. Without the
//! `prometheus-node-exporter` binary (scripts/test.sh installs Debian's package) the
//! test prints a notice and passes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use odin::collect::node::{
    DEFAULT_DISKSTATS_DEVICE_EXCLUDE, DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE,
    DEFAULT_NETSTAT_FIELDS, DEFAULT_VMSTAT_FIELDS, NodeCollector, NodeFlags, NodePaths,
};
use odin::exposition::family::MetricFamily;
use odin::exposition::format::{Format, parse_families};
use serde_json::Value;

use crate::common::{Odin, agent, free_port, poll_until};

const NODE_EXPORTER: &str = "prometheus-node-exporter";

/// Families node_exporter exposes that ODIN's node job does not, by name prefix, with
/// the reason (also in docs/node-collector.md).
const ONLY_IN_NODE_EXPORTER: &[(&str, &str)] = &[
    (
        "node_exporter_build_info",
        "node_exporter's own version, not the node's",
    ),
    ("go_", "the Go runtime of the node_exporter process"),
    ("process_", "the node_exporter process itself"),
    ("promhttp_", "node_exporter's HTTP handler"),
];

/// Families whose series and labels are compared but whose values are not: they are
/// not the node's, or they count what runs at the instant of the read (the reader
/// included), so two reads a few milliseconds apart legitimately differ.
const VALUES_NOT_COMPARED: &[(&str, &str)] = &[
    (
        "node_scrape_collector_duration_seconds",
        "how long each exporter took to read, not a property of the node",
    ),
    (
        "node_filefd_allocated",
        "file handles open at the instant of the read in every process, the tests \
         running beside this one included: they open and close sockets by the dozen",
    ),
    (
        "node_procs_running",
        "runnable threads at the instant of the read, the reader's own included: \
         node_exporter runs its collectors in parallel goroutines, so it counts several \
         more of its own threads than ODIN",
    ),
    (
        "node_procs_blocked",
        "threads in uninterruptible (I/O) sleep at the instant of the read",
    ),
    (
        "node_sockstat_sockets_used",
        "sockets open at the instant of the read in every process: ODIN's scrape of \
         node_exporter holds two while node_exporter reads, none while ODIN does, and \
         the tests beside this one open and close them by the dozen",
    ),
    (
        "node_memory_Committed_AS_bytes",
        "address space committed by all processes: moves by hundreds of MB whenever any \
         process starts a thread or maps memory (each ODIN query runs on a thread with \
         a 256 MiB stack), also between reads a few milliseconds apart",
    ),
];

/// Series the scrape layer adds to every target (`up`, `scrape_*`), not the
/// exporters' own.
fn is_report_series(name: &str) -> bool {
    name == "up" || name.starts_with("scrape_")
}

const GAUGE_RELATIVE_TOLERANCE: f64 = 0.05;
/// For gauges near zero: the resolution of the coarsest one (`/proc/loadavg`'s 0.01).
const GAUGE_ABSOLUTE_TOLERANCE: f64 = 0.01;
/// Slack on "one interval's growth": scrape jitter makes intervals a bit uneven.
const GROWTH_SLACK: f64 = 1.5;
/// Both exporters turn the same kernel numbers into floats, perhaps in another order
/// of operations (ms × 0.001 or ms / 1000).
const FLOAT_RELATIVE_TOLERANCE: f64 = 1e-9;
/// A value difference must show at this many evaluation times, one scrape apart.
const EVALUATIONS: usize = 3;

/// A `prometheus-node-exporter` child on 127.0.0.1, killed on drop.
struct NodeExporter {
    child: Child,
    port: u16,
}

impl NodeExporter {
    /// Starts node_exporter with `args` and waits until it answers. A free port can
    /// be taken before node_exporter binds it: then it exits, and another port is
    /// tried.
    fn start(log: &Path, args: &[String]) -> NodeExporter {
        let mut error = String::new();
        for _ in 0..3 {
            match Self::try_start(log, args) {
                Ok(ne) => return ne,
                Err(e) => error = e,
            }
        }
        panic!("{error}");
    }

    fn try_start(log: &Path, args: &[String]) -> Result<NodeExporter, String> {
        let port = free_port();
        let mut cmd = Command::new(NODE_EXPORTER);
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).expect("node_exporter log"));
        let child = cmd.spawn().expect("spawn prometheus-node-exporter");
        let mut ne = NodeExporter { child, port };
        let http = agent();
        let url = format!("http://127.0.0.1:{port}/metrics");
        let mut exited = None;
        let up = poll_until(Duration::from_secs(15), || {
            if let Ok(Some(status)) = ne.child.try_wait() {
                exited = Some(status);
                return true;
            }
            http.get(&url)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200)
        });
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        match exited {
            Some(status) => Err(format!("node_exporter exited ({status}): {}", log_text())),
            None if !up => Err(format!(
                "node_exporter did not answer on {url}: {}",
                log_text()
            )),
            None => Ok(ne),
        }
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// node_exporter 1.5's default collectors with ODIN's (upstream 1.5's) filters:
/// Debian's package also turns on systemd, which upstream leaves off, and patches the
/// mount point and network device excludes, so every filter is given explicitly. ODIN
/// reads /proc/net/dev, as node_exporter does without netlink. Both read the same
/// textfile directory. `flags` replace the defaults of the same name.
fn collector_args(textfile: &Path, flags: &[(&str, &str)]) -> Vec<String> {
    let mut all: BTreeMap<&str, &str> = [
        (
            "collector.filesystem.mount-points-exclude",
            DEFAULT_MOUNT_POINTS_EXCLUDE,
        ),
        (
            "collector.filesystem.fs-types-exclude",
            DEFAULT_FS_TYPES_EXCLUDE,
        ),
        (
            "collector.diskstats.device-exclude",
            DEFAULT_DISKSTATS_DEVICE_EXCLUDE,
        ),
        ("collector.netdev.device-exclude", ""),
        ("collector.netstat.fields", DEFAULT_NETSTAT_FIELDS),
        ("collector.vmstat.fields", DEFAULT_VMSTAT_FIELDS),
    ]
    .into_iter()
    .collect();
    all.extend(flags.iter().copied());
    let mut args = vec![
        "--no-collector.systemd".to_string(),
        "--no-collector.netdev.netlink".to_string(),
        format!("--collector.textfile.directory={}", textfile.display()),
    ];
    args.extend(flag_args(&all.into_iter().collect::<Vec<_>>()));
    args
}

fn have_node_exporter() -> bool {
    Command::new(NODE_EXPORTER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn json(odin: &Odin, path: &str) -> Value {
    let (status, body) = odin.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The result of an instant query, at `time` (`"<s>.<ms>"`) when given.
fn query(odin: &Odin, q: &str, time: Option<&str>) -> Vec<Value> {
    let mut path = format!("/api/v1/query?query={}", enc(q));
    if let Some(t) = time {
        path.push_str(&format!("&time={t}"));
    }
    json(odin, &path)["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn scalar(v: &Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

/// The job's metric names (the scrape layer's report series left out).
fn families(odin: &Odin, job: &str) -> BTreeSet<String> {
    let path = format!(
        "/api/v1/label/__name__/values?match[]={}",
        enc(&format!("{{job=\"{job}\"}}"))
    );
    json(odin, &path)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|n| !is_report_series(n))
        .collect()
}

/// Type and HELP of each family of the job's target.
fn metadata(odin: &Odin, job: &str) -> BTreeMap<String, (String, String)> {
    let path = format!(
        "/api/v1/targets/metadata?match_target={}",
        enc(&format!("{{job=\"{job}\"}}"))
    );
    json(odin, &path)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["metric"].as_str().unwrap().to_string(),
                (
                    m["type"].as_str().unwrap().to_string(),
                    m["help"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// A series' labels without `job` and `instance`, `__name__` included.
type Key = BTreeMap<String, String>;

/// The raw samples (value only, oldest first) of every series of `job` in (t-5s, t].
fn samples(odin: &Odin, job: &str, time: &str) -> BTreeMap<Key, Vec<f64>> {
    let q = format!("{{__name__=~\".+\",job=\"{job}\"}}[5s]");
    query(odin, &q, Some(time))
        .iter()
        .map(|s| {
            let key: Key = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(n, _)| *n != "job" && *n != "instance")
                .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
                .collect();
            (key, values)
        })
        .filter(|(k, _)| !is_report_series(&k["__name__"]))
        .collect()
}

fn series_name(key: &Key) -> String {
    let labels: Vec<String> = key
        .iter()
        .filter(|(n, _)| *n != "__name__")
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{}{{{}}}", key["__name__"], labels.join(","))
}

/// The largest step a series made from one scrape to the next in the window.
fn movement(values: &[f64]) -> f64 {
    values
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f64::max)
}

/// Whether node_exporter's and ODIN's last values of one series agree; `None` when
/// they do, else the allowed difference.
fn disagreement(kind: &str, ne: &[f64], node: &[f64]) -> Option<f64> {
    let (Some(&a), Some(&b)) = (ne.last(), node.last()) else {
        return Some(0.0);
    };
    if a == b || (a.is_nan() && b.is_nan()) {
        return None;
    }
    // The two reads are at most one interval apart: what the series moved in one
    // interval bounds what it can have moved between them (counters, and gauges that
    // changed while both were read).
    let growth = GROWTH_SLACK * movement(ne).max(movement(node))
        + FLOAT_RELATIVE_TOLERANCE * a.abs().max(b.abs());
    let allowed = match kind {
        "counter" => growth,
        // Gauges and node_exporter's untyped netstat/vmstat fields (mostly counters).
        _ => growth
            .max(GAUGE_RELATIVE_TOLERANCE * a.abs().max(b.abs()))
            .max(GAUGE_ABSOLUTE_TOLERANCE),
    };
    ((a - b).abs() > allowed).then_some(allowed)
}

#[test]
fn node_collector_matches_node_exporter() {
    compare_on_this_host(&[]);
}

/// Flags that change what this machine's collectors report, set the same on both (in
/// ODIN through `collectors.node.flags` in its configuration file): device filters,
/// field filters, the filesystem excludes and timeout, CPU information, softirqs.
#[test]
fn node_collector_flags_match_node_exporter() {
    let Some(cmp) = compare_on_this_host(&[
        ("collector.arp.device-include", "^eth"),
        ("collector.cpu.guest", "false"),
        ("collector.cpu.info", "true"),
        ("collector.cpu.info.bugs-include", "."),
        ("collector.cpu.info.flags-include", "^(avx|sse)"),
        ("collector.diskstats.device-exclude", ""),
        ("collector.diskstats.device-include", "^vd"),
        (
            "collector.filesystem.fs-types-exclude",
            "^(autofs|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|mqueue|nsfs|overlay|proc|pstore|securityfs|sysfs|tmpfs|tracefs)$",
        ),
        (
            "collector.filesystem.mount-points-exclude",
            "^/(dev|proc|sys|run|var/lib/kubelet/.+)($|/)",
        ),
        ("collector.filesystem.mount-timeout", "2s"),
        ("collector.netclass.ignore-invalid-speed", "true"),
        ("collector.netclass.ignored-devices", "^ifb"),
        ("collector.netdev.address-info", "true"),
        ("collector.netdev.device-exclude", ""),
        ("collector.netdev.device-include", "^(lo|eth0)$"),
        ("collector.netdev.enable-detailed-metrics", "true"),
        ("collector.netstat.fields", "^(Tcp|Udp)_.*"),
        ("collector.stat.softirq", "true"),
        ("collector.vmstat.fields", "^(pgfault|pgmajfault|oom_kill)$"),
    ]) else {
        return;
    };
    for family in [
        "node_cpu_info",
        "node_cpu_flag_info",
        "node_softirqs_total",
        "node_network_address_info",
        "node_network_receive_dropped_total",
    ] {
        assert!(cmp.families.contains(family), "{family} compared");
    }
    assert!(!cmp.families.contains("node_cpu_guest_seconds_total"));
    // The filters took effect (on both sides, or the comparison would have failed).
    for series in &cmp.series_names {
        let device = |prefix: &str| {
            series
                .starts_with(prefix)
                .then(|| series.split("device=\"").nth(1))
                .flatten()
                .and_then(|rest| rest.split('"').next())
        };
        if let Some(d) = device("node_network_receive_bytes_total") {
            assert!(d == "lo" || d == "eth0", "{series}");
        }
        if let Some(d) = device("node_network_up") {
            assert!(!d.starts_with("ifb"), "{series}");
        }
        if let Some(d) = device("node_disk_reads_completed_total") {
            assert!(d.starts_with("vd"), "{series}");
        }
        if let Some(d) = device("node_arp_entries") {
            assert!(d.starts_with("eth"), "{series}");
        }
        assert!(!series.starts_with("node_netstat_Ip"), "{series}");
        assert!(!series.starts_with("node_vmstat_pgpg"), "{series}");
    }
}

/// node_exporter with `flags` and ODIN's node collector with the same flags, both
/// scraped by one ODIN every second: no differences (see the module's comment). What
/// was compared; `None` without node_exporter.
fn compare_on_this_host(flags: &[(&str, &str)]) -> Option<Comparison> {
    // One comparison at a time: each one's processes and sockets move the other's
    // instantaneous figures.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !have_node_exporter() {
        eprintln!(
            "node_exporter: skipped, {NODE_EXPORTER} is not installed (scripts/test.sh installs Debian's package)"
        );
        return None;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // What a cron job would leave for the textfile collector.
    let textfile = dir.path().join("textfile");
    std::fs::create_dir_all(&textfile).unwrap();
    std::fs::write(
        textfile.join("gpu_burn_in.prom"),
        "# HELP gpu_burn_in_passed Whether the last burn-in passed.\n\
         # TYPE gpu_burn_in_passed gauge\n\
         gpu_burn_in_passed{gpu=\"0\"} 1\n\
         gpu_burn_in_passed{gpu=\"1\"} 0\n",
    )
    .unwrap();
    let ne = NodeExporter::start(
        &dir.path().join("node_exporter.log"),
        &collector_args(&textfile, flags),
    );
    // YAML single quotes: a regular expression's backslashes stay as written.
    let odin_flags: Vec<String> = flags
        .iter()
        .map(|(name, value)| format!("'{name}': '{}'", value.replace('\'', "''")))
        .collect();
    let cfg = dir.path().join("odin.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
             collectors:\n  node: {{textfile_directory: '{}', flags: {{{}}}}}\n\
             scrape_configs:\n\
             - job_name: ne\n  static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            textfile.display(),
            odin_flags.join(", "),
            ne.port
        ),
    )
    .unwrap();
    let odin = Odin::start(
        &dir.path().join("data"),
        &[&format!("--config.file={}", cfg.display())],
    );

    // Three scrapes of each after both are up, so that every series has two samples
    // before the evaluation time.
    wait_for_scrapes(&odin, 3);
    let mut cmp = compare(&odin);
    // A value difference counts when it shows at every evaluation time, one scrape
    // apart: a wrong field or unit differs every time, while a process starting or
    // allocating during one of the two reads (other tests run beside this one) does
    // not repeat.
    let mut persistent: BTreeSet<String> = cmp.values.keys().cloned().collect();
    let mut evaluations = vec![cmp.time.clone()];
    while !persistent.is_empty() && evaluations.len() < EVALUATIONS {
        wait_for_scrapes(&odin, 1);
        cmp = compare(&odin);
        evaluations.push(cmp.time.clone());
        persistent.retain(|s| cmp.values.contains_key(s));
    }
    eprintln!(
        "node_exporter with {flags:?}: {} families and {} series compared at \
         {evaluations:?} ({} families only in node_exporter by design) in {:.1}s",
        cmp.families.len(),
        cmp.series,
        cmp.only_in_node_exporter,
        started.elapsed().as_secs_f64()
    );
    assert!(cmp.families.len() > 50, "too few families compared");
    let mut problems = std::mem::take(&mut cmp.problems);
    problems.extend(persistent.iter().map(|s| cmp.values[s].clone()));
    assert!(
        problems.is_empty(),
        "{} differences between node_exporter and ODIN's node collector:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Some(cmp)
}

/// Polls the targets API until both jobs have been scraped successfully `n` more
/// times. (A query would run on a thread of its own with a 256 MiB stack and move
/// the node's committed memory while the exporters read it.)
fn wait_for_scrapes(odin: &Odin, n: usize) {
    let last_scrapes = || -> BTreeMap<String, String> {
        json(odin, "/api/v1/targets")["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["health"] == "up")
            .map(|t| {
                (
                    t["scrapePool"].as_str().unwrap_or_default().to_string(),
                    t["lastScrape"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let before = last_scrapes();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let scraped = poll_until(Duration::from_secs(20), || {
        for (job, last) in last_scrapes() {
            if before.get(&job) != Some(&last) {
                seen.entry(job).or_default().insert(last);
            }
        }
        ["ne", "node"]
            .iter()
            .all(|job| seen.get(*job).is_some_and(|s| s.len() >= n))
    });
    assert!(scraped, "{}", odin.get("/api/v1/targets").1);
}

/// One comparison of the two jobs at one evaluation time.
struct Comparison {
    /// The evaluation time, `<s>.<ms>`.
    time: String,
    /// The families both exposed, by name.
    families: BTreeSet<String>,
    series: usize,
    /// The series both exposed, `name{labels}`.
    series_names: BTreeSet<String>,
    only_in_node_exporter: usize,
    /// Missing families and series, other label names, types or HELP texts.
    problems: Vec<String>,
    /// Values that disagree, by series.
    values: BTreeMap<String, String>,
}

/// Compares every family node_exporter exposes with ODIN's, at the earlier of the two
/// jobs' last scrapes: both are stored by then, and the other job's last sample at
/// that time is at most one interval older.
fn compare(odin: &Odin) -> Comparison {
    let last_ms = |job: &str| {
        let r = query(odin, &format!("timestamp(up{{job=\"{job}\"}})"), None);
        (scalar(&r[0]) * 1000.0).round() as i64
    };
    let t_ms = last_ms("ne").min(last_ms("node"));
    let time = format!("{}.{:03}", t_ms / 1000, t_ms % 1000);

    let ne_families = families(odin, "ne");
    let node_families = families(odin, "node");
    let ne_meta = metadata(odin, "ne");
    let node_meta = metadata(odin, "node");
    let ne_samples = samples(odin, "ne", &time);
    let node_samples = samples(odin, "node", &time);

    let mut cmp = Comparison {
        time,
        families: BTreeSet::new(),
        series: 0,
        series_names: BTreeSet::new(),
        only_in_node_exporter: 0,
        problems: Vec::new(),
        values: BTreeMap::new(),
    };
    for family in &ne_families {
        if ONLY_IN_NODE_EXPORTER
            .iter()
            .any(|(prefix, _)| family.starts_with(prefix))
        {
            cmp.only_in_node_exporter += 1;
            continue;
        }
        if !node_families.contains(family) {
            cmp.problems
                .push(format!("{family}: exposed by node_exporter, not by ODIN"));
            continue;
        }
        cmp.families.insert(family.clone());
        let (kind, help) = ne_meta.get(family).cloned().unwrap_or_default();
        match node_meta.get(family) {
            Some((k, h)) if *k == kind && *h == help => {}
            other => cmp.problems.push(format!(
                "{family}: node_exporter has type {kind} and HELP {help:?}, ODIN {other:?}"
            )),
        }
        let of = |all: &BTreeMap<Key, Vec<f64>>| -> BTreeMap<Key, Vec<f64>> {
            all.iter()
                .filter(|(k, _)| k["__name__"] == *family)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let (ne_series, node_series) = (of(&ne_samples), of(&node_samples));
        let label_names = |s: &BTreeMap<Key, Vec<f64>>| -> BTreeSet<Vec<String>> {
            s.keys().map(|k| k.keys().cloned().collect()).collect()
        };
        if label_names(&ne_series) != label_names(&node_series) {
            cmp.problems.push(format!(
                "{family}: label names {:?} in node_exporter, {:?} in ODIN",
                label_names(&ne_series),
                label_names(&node_series)
            ));
        }
        for key in node_series.keys().filter(|k| !ne_series.contains_key(*k)) {
            cmp.problems
                .push(format!("{}: only in ODIN", series_name(key)));
        }
        let values_compared = !VALUES_NOT_COMPARED.iter().any(|(f, _)| f == family);
        for (key, ne_values) in &ne_series {
            let Some(node_values) = node_series.get(key) else {
                cmp.problems
                    .push(format!("{}: only in node_exporter", series_name(key)));
                continue;
            };
            cmp.series += 1;
            cmp.series_names.insert(series_name(key));
            if !values_compared {
                continue;
            }
            if let Some(allowed) = disagreement(&kind, ne_values, node_values) {
                let name = series_name(key);
                let detail = format!(
                    "{name} ({kind}): node_exporter {ne_values:?}, ODIN {node_values:?} \
                     (allowed difference {allowed}, at {})",
                    cmp.time
                );
                cmp.values.insert(name, detail);
            }
        }
    }
    for family in node_families.difference(&ne_families) {
        cmp.problems
            .push(format!("{family}: exposed by ODIN, not by node_exporter"));
    }
    cmp
}

/// The collectors whose hardware this machine lacks, compared on a fake host instead:
/// `tests/fixtures/node-host/` holds a GPU server's `proc`, `sys` and root files for
/// them (DMI tables, RAPL zones, NVMe controllers, InfiniBand HCAs, software RAID, …),
/// and `cpu` and `stat` (a two-socket Xeon's `/proc/stat` and `/proc/cpuinfo`), whose
/// values do not move there as they do on a live machine.
const FIXTURE_HOST_COLLECTORS: &[&str] = &[
    "bcache",
    "bonding",
    "btrfs",
    "cpu",
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
    "rapl",
    "schedstat",
    "stat",
    "tapestats",
    "thermal_zone",
    "xfs",
    "zfs",
];

/// Where ODIN reads the fake host differently from node_exporter 1.5 on purpose, as
/// text every such difference contains, with the reason (also in
/// docs/node-collector.md). Each must show (the fixture pins it down), and nothing
/// else may differ.
const FIXTURE_HOST_DIFFERENCES: &[(&str, &str)] = &[
    (
        r#"proto="SCTP",remote_address="10.42.1.9""#,
        "an SCTP virtual service is one: procfs 0.8 skips its line and files its real \
         servers under the TCP service before it",
    ),
    (
        r#"local_port="8080",proto="TCP",remote_address="10.42.1.9""#,
        "the same SCTP real server, where node_exporter files it",
    ),
    (
        r#"node_nfsd_requests_total{method="Verify",proto="4"}"#,
        "procfs 0.8 skips SETCLIENTID and SETCLIENTID_CONFIRM, so it reports \
         SETCLIENTID as Verify, SETCLIENTID_CONFIRM as Write and VERIFY as \
         RelLockOwner; ODIN reports each operation's own count",
    ),
    (
        r#"node_nfsd_requests_total{method="Write",proto="4"}"#,
        "as Verify",
    ),
    (
        r#"node_nfsd_requests_total{method="RelLockOwner",proto="4"}"#,
        "as Verify",
    ),
];

/// node_exporter's command line for `(flag, value)` pairs: kingpin takes a boolean as
/// `--flag` or `--no-flag`, anything else as `--flag=value`.
fn flag_args(flags: &[(&str, &str)]) -> Vec<String> {
    flags
        .iter()
        .map(|(name, value)| match *value {
            "true" => format!("--{name}"),
            "false" => format!("--no-{name}"),
            _ => format!("--{name}={value}"),
        })
        .collect()
}

/// What one comparison on the fake host found.
struct FixtureComparison {
    /// The families both exposed, by name.
    families: BTreeSet<String>,
    series: usize,
    problems: Vec<String>,
}

/// Every family `collectors` make of the fake host with node_exporter's `flags` set,
/// read by node_exporter (`--path.procfs`/`--path.sysfs`/`--path.rootfs` pointed at
/// it, only those collectors on) and by ODIN's node collector (the same paths,
/// collectors and flags): the differences in families, types, HELP texts, series and
/// values. The files do not change, so the values must be equal (but for float
/// rounding). `None` without node_exporter.
fn compare_on_fixture_host(
    collectors: &[&str],
    flags: &[(&str, &str)],
) -> Option<FixtureComparison> {
    if !have_node_exporter() {
        eprintln!(
            "node_exporter: skipped, {NODE_EXPORTER} is not installed (scripts/test.sh installs Debian's package)"
        );
        return None;
    }
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-host");
    let paths = NodePaths {
        proc: host.join("proc"),
        sys: host.join("sys"),
        root: host.join("root"),
        textfile: None,
        udev_data: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        format!("--path.procfs={}", paths.proc.display()),
        format!("--path.sysfs={}", paths.sys.display()),
        format!("--path.rootfs={}", paths.root.display()),
        "--collector.disable-defaults".to_string(),
    ];
    args.extend(collectors.iter().map(|c| format!("--collector.{c}")));
    args.extend(flag_args(flags));
    let ne = NodeExporter::start(&dir.path().join("node_exporter.log"), &args);
    let (status, body) = {
        let mut r = agent()
            .get(&format!("http://127.0.0.1:{}/metrics", ne.port))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(status, 200, "{body}");
    // Families with no series (a filter left every device out) are not compared:
    // node_exporter prints their HELP and TYPE, ODIN leaves them out.
    let ne_families: BTreeMap<String, MetricFamily> = parse_families(Format::Text, body.as_bytes())
        .unwrap()
        .into_iter()
        .filter(|f| {
            !f.samples.is_empty()
                && !ONLY_IN_NODE_EXPORTER
                    .iter()
                    .any(|(prefix, _)| f.name.starts_with(prefix))
        })
        .map(|f| (f.name.clone(), f))
        .collect();
    let node_flags = NodeFlags::from_pairs(flags.iter().copied()).unwrap();
    let odin_families: BTreeMap<String, MetricFamily> =
        NodeCollector::with_flags(paths, &node_flags)
            .unwrap()
            .only(collectors)
            .unwrap()
            .collect()
            .into_iter()
            .filter(|f| !f.samples.is_empty())
            .map(|f| (f.name.clone(), f))
            .collect();

    // The fixture must give every collector something to read: node_exporter reports
    // each one succeeded.
    let successes: BTreeMap<&str, f64> = ne_families["node_scrape_collector_success"]
        .samples
        .iter()
        .map(|s| (s.labels[0].1.as_str(), s.value))
        .collect();
    assert_eq!(
        successes,
        collectors.iter().map(|c| (*c, 1.0)).collect(),
        "node_exporter on the fixture host"
    );

    let mut cmp = FixtureComparison {
        families: BTreeSet::new(),
        series: 0,
        problems: Vec::new(),
    };
    for name in odin_families
        .keys()
        .filter(|n| !ne_families.contains_key(*n))
    {
        cmp.problems
            .push(format!("{name}: exposed by ODIN, not by node_exporter"));
    }
    for (name, ne_family) in &ne_families {
        let Some(odin_family) = odin_families.get(name) else {
            cmp.problems
                .push(format!("{name}: exposed by node_exporter, not by ODIN"));
            continue;
        };
        cmp.families.insert(name.clone());
        if (ne_family.kind, &ne_family.help) != (odin_family.kind, &odin_family.help) {
            cmp.problems.push(format!(
                "{name}: node_exporter has type {:?} and HELP {:?}, ODIN {:?} and {:?}",
                ne_family.kind, ne_family.help, odin_family.kind, odin_family.help
            ));
        }
        let by_labels = |f: &MetricFamily| -> BTreeMap<Key, f64> {
            f.samples
                .iter()
                .map(|s| {
                    let mut key: Key = s.labels.iter().cloned().collect();
                    key.insert("__name__".to_string(), s.name.clone());
                    (key, s.value)
                })
                .collect()
        };
        let (ne_series, odin_series) = (by_labels(ne_family), by_labels(odin_family));
        for key in odin_series.keys().filter(|k| !ne_series.contains_key(*k)) {
            cmp.problems
                .push(format!("{}: only in ODIN", series_name(key)));
        }
        let values_compared = name != "node_scrape_collector_duration_seconds";
        for (key, &a) in &ne_series {
            let Some(&b) = odin_series.get(key) else {
                cmp.problems
                    .push(format!("{}: only in node_exporter", series_name(key)));
                continue;
            };
            cmp.series += 1;
            let equal = a == b
                || (a.is_nan() && b.is_nan())
                || (a - b).abs() <= FLOAT_RELATIVE_TOLERANCE * a.abs().max(b.abs());
            if values_compared && !equal {
                cmp.problems
                    .push(format!("{}: node_exporter {a}, ODIN {b}", series_name(key)));
            }
        }
    }
    Some(cmp)
}

/// Every family the collectors in [`FIXTURE_HOST_COLLECTORS`] make of the fake host,
/// with node_exporter's default flags, is the same in ODIN, but for the differences
/// [`FIXTURE_HOST_DIFFERENCES`] names.
#[test]
fn node_collector_matches_node_exporter_on_a_fixture_host() {
    let Some(mut cmp) = compare_on_fixture_host(FIXTURE_HOST_COLLECTORS, &[]) else {
        return;
    };
    eprintln!(
        "node_exporter on the fixture host: {} families, {} series compared",
        cmp.families.len(),
        cmp.series
    );
    for (pattern, reason) in FIXTURE_HOST_DIFFERENCES {
        assert!(
            cmp.problems.iter().any(|p| p.contains(pattern)),
            "no longer differs from node_exporter on the fixture host: {pattern} ({reason})"
        );
    }
    cmp.problems.retain(|p| {
        !FIXTURE_HOST_DIFFERENCES
            .iter()
            .any(|(pattern, _)| p.contains(pattern))
    });
    assert!(
        cmp.problems.is_empty(),
        "{} differences between node_exporter and ODIN on the fixture host:\n{}",
        cmp.problems.len(),
        cmp.problems.join("\n")
    );
}

/// The per-collector flags (`collectors.node.flags`) that change what the fake host's
/// collectors report, set the same on both: the same families, series and values. The
/// IPVS labels kept are ones the SCTP difference does not touch (node_exporter 1.5
/// misfiles only the service side of an SCTP real server).
#[test]
fn node_collector_flags_match_node_exporter_on_a_fixture_host() {
    let flags = [
        ("collector.bcache.priorityStats", "true"),
        ("collector.cpu.guest", "false"),
        ("collector.cpu.info", "true"),
        ("collector.cpu.info.flags-include", "^(avx512.*|amx.*)$"),
        ("collector.cpu.info.bugs-include", "^spectre"),
        (
            "collector.ipvs.backend-labels",
            "remote_port,remote_address",
        ),
        ("collector.powersupply.ignored-supplies", "^AC$"),
        ("collector.rapl.enable-zone-label", "true"),
        ("collector.stat.softirq", "true"),
        ("collector.tapestats.ignored-devices", "^st0$"),
    ];
    let collectors = [
        "bcache",
        "cpu",
        "ipvs",
        "powersupplyclass",
        "rapl",
        "stat",
        "tapestats",
    ];
    let Some(cmp) = compare_on_fixture_host(&collectors, &flags) else {
        return;
    };
    eprintln!(
        "node_exporter with flags on the fixture host: {} families, {} series compared",
        cmp.families.len(),
        cmp.series
    );
    assert!(
        cmp.problems.is_empty(),
        "{} differences between node_exporter and ODIN with {flags:?}:\n{}",
        cmp.problems.len(),
        cmp.problems.join("\n")
    );
    // The flags took effect on both sides.
    for family in [
        "node_bcache_priority_stats_unused_percent",
        "node_cpu_info",
        "node_cpu_flag_info",
        "node_cpu_bug_info",
        "node_rapl_joules_total",
        "node_softirqs_total",
        "node_ipvs_backend_weight",
    ] {
        assert!(cmp.families.contains(family), "{family} compared");
    }
    for family in [
        "node_cpu_guest_seconds_total",
        "node_rapl_package_joules_total",
        "node_tape_io_now",
    ] {
        assert!(!cmp.families.contains(family), "{family} left out");
    }
}

/// `collectors.node.disabled_collectors` leaves collectors out (no series, no
/// `node_scrape_collector_*` for them), and an unknown name is refused by
/// `odin check config` and at start-up.
#[test]
fn disabled_node_collectors_neither_run_nor_report() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("odin.yml");
    std::fs::write(
        &cfg,
        "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n\
         collectors:\n  node: {disabled_collectors: [loadavg, ipvs]}\n",
    )
    .unwrap();
    let odin = Odin::start(
        &dir.path().join("data"),
        &[&format!("--config.file={}", cfg.display())],
    );
    let mut collectors = Vec::new();
    let scraped = poll_until(Duration::from_secs(15), || {
        collectors = query(&odin, "node_scrape_collector_success", None)
            .iter()
            .map(|s| s["metric"]["collector"].as_str().unwrap().to_string())
            .collect();
        !collectors.is_empty()
    });
    assert!(scraped, "no node scrape");
    assert_eq!(
        collectors.len(),
        NodeCollector::collector_names().count() - 2
    );
    assert!(collectors.iter().any(|c| c == "meminfo"));
    assert!(!collectors.iter().any(|c| c == "loadavg" || c == "ipvs"));
    assert!(query(&odin, "node_load1", None).is_empty());
    assert!(!query(&odin, "node_memory_MemTotal_bytes", None).is_empty());

    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "collectors:\n  node: {disabled_collectors: [gpu]}\n").unwrap();
    let out = crate::common::check_config(&bad);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("disabled_collectors") && text.contains("\"gpu\""),
        "{text}"
    );
}

/// A node_exporter flag ODIN does not take, or a value node_exporter would refuse, is
/// refused by `odin check config` and by `odin run`, with the flag and the reason; a
/// good set passes.
#[test]
fn bad_node_collector_flags_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let check = |flags: &str| -> (bool, String) {
        let cfg = dir.path().join("odin.yml");
        std::fs::write(&cfg, format!("collectors:\n  node:\n    flags: {flags}\n")).unwrap();
        let out = crate::common::check_config(&cfg);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    for (flags, expected) in [
        (
            "{collector.netdev.device-include: '(eth'}",
            "--collector.netdev.device-include: invalid regular expression",
        ),
        (
            "{collector.netdev.device-include: ^eth, collector.netdev.device-exclude: ^lo$}",
            "mutually exclusive",
        ),
        (
            "{collector.ipvs.backend-labels: 'proto,pod'}",
            "unknown IPVS backend labels",
        ),
        ("{collector.cpu.info: maybe}", "is not a boolean"),
        (
            "{collector.ntp.server: 127.0.0.1}",
            "the ntp collector is not built",
        ),
        ("{collector.cpu.freq: true}", "unknown flag"),
        (
            "{collector.cpu.info: [true]}",
            "expected a string, boolean or number",
        ),
    ] {
        let (ok, text) = check(flags);
        assert!(!ok, "{flags} accepted: {text}");
        assert!(text.contains(expected), "{flags}: {text}");
    }
    // A quoted `yes` is text, which node_exporter would not take as a boolean either.
    let (ok, text) = check("{collector.stat.softirq: 'yes'}");
    assert!(!ok && text.contains("\"yes\" is not a boolean"), "{text}");
    let (ok, text) = check(
        "{collector.cpu.info: true, collector.stat.softirq: 1, \
         '--collector.filesystem.mount-timeout': 2s, collector.diskstats.device-include: ^nvme}",
    );
    assert!(ok, "{text}");

    // `odin run` refuses it too, before it serves anything.
    let cfg = dir.path().join("run.yml");
    std::fs::write(
        &cfg,
        "collectors:\n  node:\n    flags: {collector.netclass.ignored-devices: '['}\n",
    )
    .unwrap();
    let out = crate::common::run_to_end(&cfg, dir.path());
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("collector.netclass.ignored-devices"),
        "{text}"
    );
}
