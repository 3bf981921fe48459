//! The YAML configuration file: loading, validation, and errors that name the key and
//! the line. Each component's part is its own struct with `deny_unknown_fields`, so a
//! key ODIN does not support is reported by name, never ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::model::{parse_bytes, parse_duration_ms};

mod redact;
pub use redact::{SECRET, redact_config_text};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

/// A duration written as Prometheus writes them (`15s`, `1m`, `7d`), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationMs(pub i64);

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration_ms(&s)
            .map(DurationMs)
            .map_err(serde::de::Error::custom)
    }
}

/// A node_exporter flag's value in `collectors.node.flags`: a YAML string, boolean or
/// number, kept as the text node_exporter would get on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue(pub String);

impl<'de> Deserialize<'de> for FlagValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FlagValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, boolean or number")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<FlagValue, E> {
                Ok(FlagValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FlagValue, E> {
                Ok(FlagValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FlagValue, E> {
                Ok(FlagValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<FlagValue, E> {
                Ok(FlagValue(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FlagValue, E> {
                Ok(FlagValue(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A byte size such as `512MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_bytes(&s)
            .map(ByteSize)
            .map_err(serde::de::Error::custom)
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub scrape_configs: Vec<crate::scrape::config::ScrapeConfig>,
    /// The built-in collectors; each runs only when named here.
    #[serde(default)]
    pub collectors: CollectorsConfig,
    /// Running as one node of a Raft cluster; absent: a single node on its WAL.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Rule files (globs, relative to the configuration file's directory), read by
    /// `rules::load_files`.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Where alerts go: Alertmanagers and the relabelling of alerts.
    #[serde(default)]
    pub alerting: crate::rules::notifier::AlertingConfig,
    /// Prometheus sections ODIN reads but does not act on yet; each is reported by
    /// name ([`Config::warnings`]) rather than ignored silently.
    #[serde(default)]
    remote_write: crate::scrape::config::Unsupported,
    #[serde(default)]
    remote_read: crate::scrape::config::Unsupported,
    #[serde(default)]
    tracing: crate::scrape::config::Unsupported,
}

/// The configuration `odin run` uses without `--config.file`: scrape ODIN itself, the
/// node and (when NVML loads) the GPUs every 15 seconds.
pub const EMBEDDED_DEFAULT: &str = "\
# ODIN's embedded default configuration (no --config.file).
global:
  scrape_interval: 15s
  scrape_timeout: 10s
rule_files: [builtin:gpu-server]
collectors:
  self: {}
  node: {}
  gpu: {}
  journald: {}
";

/// `collectors:` — ODIN's in-process sources, each shown as a target of its own job.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorsConfig {
    /// ODIN's own metrics (`/metrics`), job `odin`.
    #[serde(rename = "self")]
    pub self_metrics: Option<CollectorConfig>,
    /// node_exporter's metrics from /proc and /sys, job `node`.
    pub node: Option<NodeCollectorConfig>,
    /// dcgm-exporter's metrics from NVML, job `gpu`.
    pub gpu: Option<GpuCollectorConfig>,
    /// Log files to follow (globs, labels, multi-line joining).
    #[serde(default)]
    pub files: Vec<crate::logs::sources::FileSourceConfig>,
    /// Kubernetes pod logs (`/var/log/pods`, CRI format).
    pub pods: Option<crate::logs::sources::PodSourceConfig>,
    /// The systemd journal (read at start; a reload does not change it).
    pub journald: Option<crate::logs::sources::journald::JournaldConfig>,
}

impl CollectorsConfig {
    /// The log sources named here.
    pub fn log_sources(&self) -> crate::logs::sources::SourcesConfig {
        crate::logs::sources::SourcesConfig {
            files: self.files.clone(),
            pods: self.pods.clone(),
        }
    }
}

/// One collector's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Defaults to `global.scrape_interval`.
    pub scrape_interval: Option<DurationMs>,
    /// Defaults to `global.scrape_timeout` (at most the interval).
    pub scrape_timeout: Option<DurationMs>,
}

fn default_true() -> bool {
    true
}

/// `collectors.node`: the scrape settings and where the host's file systems are
/// mounted, as node_exporter's `--path.procfs`, `--path.sysfs` and `--path.rootfs`
/// (a containerised ODIN mounts the host's at, say, `/host/proc`). Read when the
/// collector starts (a reload does not move it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCollectorConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub scrape_interval: Option<DurationMs>,
    pub scrape_timeout: Option<DurationMs>,
    /// Default `/proc`.
    pub procfs: Option<PathBuf>,
    /// Default `/sys`.
    pub sysfs: Option<PathBuf>,
    /// Default `/`.
    pub rootfs: Option<PathBuf>,
    /// A directory of `*.prom` files to expose with the node's metrics
    /// (node_exporter's `--collector.textfile.directory`) [default: none].
    pub textfile_directory: Option<PathBuf>,
    /// udev's database (node_exporter's `--path.udev.data`) [default:
    /// `run/udev/data` under `rootfs`].
    pub udev_data: Option<PathBuf>,
    /// Sub-collectors not to run, by node_exporter's names (its
    /// `--no-collector.<name>`) [default: none; all of node_exporter 1.5's default
    /// collectors run].
    #[serde(default)]
    pub disabled_collectors: Vec<String>,
    /// node_exporter 1.5's per-collector flags by name, without the leading `--`
    /// (`collector.filesystem.mount-points-exclude: ^/(dev|proc|sys)($|/)`,
    /// `collector.cpu.info: true`) [default: node_exporter 1.5's defaults].
    #[serde(default)]
    pub flags: BTreeMap<String, FlagValue>,
}

/// `collectors.gpu`: the scrape settings and the GPU collector's own. Read when the
/// collector starts (a reload does not change them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuCollectorConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub scrape_interval: Option<DurationMs>,
    pub scrape_timeout: Option<DurationMs>,
    /// The `Hostname` label [default: `$NODE_NAME`, else the kernel's host name].
    pub hostname: Option<String>,
    /// dcgm-exporter's `DCGM_FI_DRIVER_VERSION` label on every series [default true].
    pub driver_version_label: Option<bool>,
    /// Per-process GPU memory and utilization (`odin_gpu_process_*`) [default true].
    pub processes: Option<bool>,
    /// The host's `/proc` (NVML reports the host's pids) [default `/proc`].
    pub proc_root: Option<PathBuf>,
    /// The host's root file system, for container runtimes' state [default `/`].
    pub host_root: Option<PathBuf>,
    /// The kubelet's pod-resources socket, for `pod`/`namespace`/`container` on the
    /// series of a GPU a pod holds [default
    /// `/var/lib/kubelet/pod-resources/kubelet.sock`; `""` turns it off].
    pub pod_resources_socket: Option<PathBuf>,
    /// The container runtime's CRI socket, for the pod of a GPU process whose runtime
    /// files are not under `host_root` [default: the first of containerd's, K3s's,
    /// CRI-O's and cri-dockerd's usual sockets found under `host_root`; `""` turns it
    /// off].
    pub cri_socket: Option<PathBuf>,
}

impl NodeCollectorConfig {
    /// The node collector's flags, checked as node_exporter checks its own.
    pub fn node_flags(
        &self,
    ) -> Result<crate::collect::node::NodeFlags, crate::collect::node::NodeError> {
        crate::collect::node::NodeFlags::from_pairs(
            self.flags.iter().map(|(name, value)| (name, &value.0)),
        )
    }

    pub fn scrape(&self) -> CollectorConfig {
        CollectorConfig {
            enabled: self.enabled,
            scrape_interval: self.scrape_interval,
            scrape_timeout: self.scrape_timeout,
        }
    }
}

impl GpuCollectorConfig {
    pub fn scrape(&self) -> CollectorConfig {
        CollectorConfig {
            enabled: self.enabled,
            scrape_interval: self.scrape_interval,
            scrape_timeout: self.scrape_timeout,
        }
    }
}

impl CollectorConfig {
    /// The interval and timeout in effect, in milliseconds.
    pub fn timing_ms(&self, global: &GlobalConfig) -> (i64, i64) {
        let interval = self.scrape_interval.unwrap_or(global.scrape_interval).0;
        let timeout = self
            .scrape_timeout
            .unwrap_or(DurationMs(global.scrape_timeout.0.min(interval)))
            .0;
        (interval, timeout)
    }
}

/// `global:` — Prometheus's keys and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How often targets are scraped (default 1m).
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval: DurationMs,
    /// How long a scrape may take (default 10s).
    #[serde(default = "default_scrape_timeout")]
    pub scrape_timeout: DurationMs,
    /// How often rules are evaluated (default 1m).
    #[serde(default = "default_scrape_interval")]
    pub evaluation_interval: DurationMs,
    /// Labels added to every series when it leaves ODIN (federation, shipping).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Defaults for every job's limits (0 = none), as Prometheus 2.45+ accepts them
    /// under `global`.
    pub body_size_limit: Option<ByteSize>,
    pub sample_limit: Option<u64>,
    pub target_limit: Option<u64>,
    pub label_limit: Option<u64>,
    pub label_name_length_limit: Option<u64>,
    pub label_value_length_limit: Option<u64>,
    pub keep_dropped_targets: Option<u64>,
}

impl GlobalConfig {
    /// What a job inherits from `global`.
    pub fn scrape_defaults(&self) -> crate::scrape::config::ScrapeDefaults {
        crate::scrape::config::ScrapeDefaults {
            scrape_interval: self.scrape_interval,
            scrape_timeout: self.scrape_timeout,
            body_size_limit: self.body_size_limit.unwrap_or(ByteSize(0)),
            sample_limit: self.sample_limit.unwrap_or(0),
            target_limit: self.target_limit.unwrap_or(0),
            label_limit: self.label_limit.unwrap_or(0),
            label_name_length_limit: self.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: self.label_value_length_limit.unwrap_or(0),
            keep_dropped_targets: self.keep_dropped_targets.unwrap_or(0),
        }
    }
}

fn default_scrape_interval() -> DurationMs {
    DurationMs(60_000)
}

fn default_scrape_timeout() -> DurationMs {
    DurationMs(10_000)
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            scrape_interval: default_scrape_interval(),
            scrape_timeout: default_scrape_timeout(),
            evaluation_interval: default_scrape_interval(),
            external_labels: BTreeMap::new(),
            body_size_limit: None,
            sample_limit: None,
            target_limit: None,
            label_limit: None,
            label_name_length_limit: None,
            label_value_length_limit: None,
            keep_dropped_targets: None,
        }
    }
}

/// `cluster:` — the same settings as the `--cluster.*` flags; a flag given on the
/// command line wins over the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id (flag `--cluster.node-id`).
    pub node_id: Option<u64>,
    /// `host:port` the cluster (gRPC) listener binds (flag `--cluster.listen-address`).
    pub listen_address: Option<String>,
    /// `host:port` peers reach this node at (flag `--cluster.advertise-address`).
    pub advertise_address: Option<String>,
    /// The members a fresh cluster starts with, `ID@HOST:PORT` each (flag
    /// `--cluster.peers`, comma-separated).
    #[serde(default)]
    pub peers: Vec<String>,
}

/// `storage:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub tsdb: TsdbConfig,
    /// Object storage that finished blocks ship to, in Thanos's objstore shape
    /// (`type: S3|FILESYSTEM`, `config: {…}`); nothing ships without it. Shipping
    /// needs `global.external_labels`. `--objstore.config-file` wins over this key.
    pub object_store: Option<crate::shipper::ObjectStoreConfig>,
}

/// `storage.tsdb:` — the same settings as the `--storage.tsdb.*` flags; a flag given
/// on the command line wins over the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsdbConfig {
    /// Data directory (flag `--storage.tsdb.path`, default `./data`).
    pub path: Option<String>,
    /// Keep blocks this long (flag `--storage.tsdb.retention.time`, default 7d).
    pub retention_time: Option<DurationMs>,
    /// Keep at most this many bytes of blocks and WAL (flag `--storage.tsdb.retention.size`).
    pub retention_size: Option<ByteSize>,
}

/// A parser's message as ODIN shows it (log, `/-/reload`, `odin check config`): its
/// first line (a parser may quote the offending source lines after it), with every
/// value that stands under a secret key in `text` shown as `<secret>`. serde quotes
/// the value it could not use (`invalid value: string "…", expected …`). When the
/// text is not even YAML, every quoted value is elided; keys are quoted with
/// backticks and stay, as do the line and the column.
fn without_secrets(message: &str, text: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    match redact::secret_values(text) {
        Some(secrets) => secrets.iter().fold(first.to_string(), |m, secret| {
            m.replace(&format!("{secret:?}"), "\"<secret>\"")
        }),
        None => without_quoted_values(first),
    }
}

fn without_quoted_values(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        match (c, quoted) {
            ('"', false) => {
                out.push_str("\"…\"");
                quoted = true;
            }
            (_, true) if escaped => escaped = false,
            ('\\', true) => escaped = true,
            ('"', true) => quoted = false,
            (_, false) => out.push(c),
            (_, true) => {}
        }
    }
    out
}

impl Config {
    /// Parses and validates YAML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_string(),
                message: without_secrets(&e.to_string(), text),
            })?
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The embedded default (see [`EMBEDDED_DEFAULT`]).
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Self::parse(EMBEDDED_DEFAULT, "<embedded default>")
    }

    /// Sections of a Prometheus configuration that this version of ODIN does not act
    /// on, by name and line.
    pub fn warnings(&self) -> Vec<String> {
        [
            (
                "remote_write",
                &self.remote_write,
                "remote write is not sent yet",
            ),
            (
                "remote_read",
                &self.remote_read,
                "remote read is not queried yet",
            ),
            ("tracing", &self.tracing, "tracing is not exported"),
        ]
        .into_iter()
        .filter_map(|(key, value, why)| {
            let span = value.as_ref()?;
            Some(format!(
                "{key} (line {}) is ignored: {why} by this version of ODIN",
                span.referenced.line()
            ))
        })
        .collect()
    }

    fn validate(&mut self, path: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_string(),
            key: key.to_string(),
            message,
        };
        let g = &self.global;
        if g.scrape_interval.0 <= 0 {
            return Err(invalid(
                "global.scrape_interval",
                "must be greater than 0".into(),
            ));
        }
        if g.scrape_timeout.0 > g.scrape_interval.0 {
            return Err(invalid(
                "global.scrape_timeout",
                "must not be greater than global.scrape_interval".into(),
            ));
        }
        if let Err(e) = self.alerting.validate() {
            return Err(invalid("alerting", e));
        }
        for name in g.external_labels.keys() {
            if !crate::model::is_valid_label_name(name) {
                return Err(invalid(
                    "global.external_labels",
                    format!("{name:?} is not a valid label name"),
                ));
            }
        }
        if let Some(r) = self.storage.tsdb.retention_time {
            if r.0 < 0 {
                return Err(invalid(
                    "storage.tsdb.retention_time",
                    "must not be negative".into(),
                ));
            }
        }
        if let Some(store) = &self.storage.object_store {
            store
                .validate()
                .map_err(|e| invalid("storage.object_store", e))?;
            check_external_labels_for_shipping(&self.global.external_labels)
                .map_err(|e| invalid("global.external_labels", e))?;
        }
        self.collectors
            .log_sources()
            .validate()
            .map_err(|e| invalid("collectors", e))?;
        if let Some(j) = &self.collectors.journald {
            if let Some(t) = &j.tenant {
                crate::logs::tenant::check_tenant_id(t)
                    .map_err(|e| invalid("collectors.journald.tenant", e))?;
            }
            for name in j.labels.keys() {
                if !crate::model::is_valid_label_name(name) {
                    return Err(invalid(
                        "collectors.journald.labels",
                        format!("invalid label name {name:?}"),
                    ));
                }
            }
        }
        if let Some(node) = &self.collectors.node {
            let known: Vec<&str> = crate::collect::node::NodeCollector::collector_names().collect();
            if let Some(unknown) = node
                .disabled_collectors
                .iter()
                .find(|n| !known.contains(&n.as_str()))
            {
                return Err(invalid(
                    "collectors.node.disabled_collectors",
                    format!(
                        "unknown collector {unknown:?} (known: {})",
                        known.join(", ")
                    ),
                ));
            }
            node.node_flags()
                .map_err(|e| invalid("collectors.node.flags", e.to_string()))?;
        }
        let collectors = [
            ("collectors.self", self.collectors.self_metrics.clone()),
            (
                "collectors.node",
                self.collectors
                    .node
                    .as_ref()
                    .map(NodeCollectorConfig::scrape),
            ),
            (
                "collectors.gpu",
                self.collectors.gpu.as_ref().map(GpuCollectorConfig::scrape),
            ),
        ];
        for (key, c) in collectors {
            let Some(c) = c else { continue };
            let (interval, timeout) = c.timing_ms(&self.global);
            if interval <= 0 {
                return Err(invalid(
                    key,
                    "scrape_interval must be greater than 0".into(),
                ));
            }
            if timeout > interval {
                return Err(invalid(
                    key,
                    "scrape_timeout must not be greater than scrape_interval".into(),
                ));
            }
        }
        let defaults = self.global.scrape_defaults();
        crate::scrape::config::validate_scrape_configs(&mut self.scrape_configs, &defaults, path)?;
        for job in ["odin", "node", "gpu"] {
            let taken = self.scrape_configs.iter().any(|c| c.job_name == job);
            let enabled = match job {
                "odin" => self.collectors.self_metrics.as_ref().map(|c| c.enabled),
                "node" => self.collectors.node.as_ref().map(|c| c.enabled),
                _ => self.collectors.gpu.as_ref().map(|c| c.enabled),
            };
            if taken && enabled == Some(true) {
                return Err(invalid(
                    "scrape_configs",
                    format!("job name {job:?} is used by a built-in collector"),
                ));
            }
        }
        Ok(())
    }
}

/// Shipping needs external labels: Thanos tells the producers of blocks apart by
/// them (deduplication, compaction groups), and a bucket with unlabeled blocks from
/// several producers cannot be compacted correctly.
pub fn check_external_labels_for_shipping(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.is_empty() {
        return Err("must be set when blocks ship to object storage (storage.object_store or --objstore.config-file): they become the blocks' Thanos labels".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::parse("", "x.yml").unwrap();
        assert_eq!(c.global.scrape_interval, DurationMs(60_000));
    }

    #[test]
    fn collector_sections_take_their_own_keys() {
        let c = Config::parse(
            "collectors:\n  gpu:\n    hostname: node-7\n    processes: false\n    proc_root: /host/proc\n    host_root: /host\n    driver_version_label: false\n    scrape_interval: 5s\n  node:\n    rootfs: /host\n",
            "x.yml",
        )
        .unwrap();
        let gpu = c.collectors.gpu.unwrap();
        assert_eq!(gpu.hostname.as_deref(), Some("node-7"));
        assert_eq!(gpu.processes, Some(false));
        assert_eq!(gpu.proc_root, Some(PathBuf::from("/host/proc")));
        assert_eq!(gpu.scrape().scrape_interval, Some(DurationMs(5000)));
        let node = c.collectors.node.unwrap();
        assert_eq!(node.rootfs, Some(PathBuf::from("/host")));
        assert!(node.enabled);
        // A GPU key under `node` (or `self`) is an error, not ignored.
        assert!(Config::parse("collectors:\n  node:\n    proc_root: /x\n", "x.yml").is_err());
        let c = Config::parse(
            "collectors:\n  node:\n    disabled_collectors: [hwmon, textfile]\n",
            "x.yml",
        )
        .unwrap();
        assert_eq!(
            c.collectors.node.unwrap().disabled_collectors,
            vec!["hwmon".to_string(), "textfile".to_string()]
        );
        let err = Config::parse(
            "collectors:\n  node:\n    disabled_collectors: [hwmon, gpu]\n",
            "x.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("collectors.node.disabled_collectors") && err.contains("\"gpu\""),
            "{err}"
        );
        assert!(Config::parse("collectors:\n  self:\n    procfs: /x\n", "x.yml").is_err());
    }

    #[test]
    fn parses_global_and_storage() {
        let c = Config::parse(
            "global:\n  scrape_interval: 15s\n  external_labels:\n    cluster: a\nstorage:\n  tsdb:\n    retention_time: 30d\n    retention_size: 1GB\n",
            "x.yml",
        )
        .unwrap();
        assert_eq!(c.global.scrape_interval, DurationMs(15_000));
        assert_eq!(
            c.storage.tsdb.retention_time,
            Some(DurationMs(30 * 86_400_000))
        );
        assert_eq!(c.storage.tsdb.retention_size, Some(ByteSize(1 << 30)));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = Config::parse("global:\n  scrape_interval: 15s\n  bogus_key: 1\n", "x.yml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus_key"), "{err}");
        assert!(
            err.contains("line 3") || err.contains(":3:") || err.contains("3:"),
            "{err}"
        );
    }

    #[test]
    fn bad_durations_and_relations_are_reported() {
        let err = Config::parse("global:\n  scrape_interval: 15x\n", "x.yml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("15x"), "{err}");
        let err = Config::parse(
            "global:\n  scrape_interval: 5s\n  scrape_timeout: 10s\n",
            "x.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("global.scrape_timeout"), "{err}");
    }

    #[test]
    fn object_store_needs_external_labels_and_known_keys() {
        let store = "storage:\n  object_store:\n    type: FILESYSTEM\n    config:\n      directory: /tmp/b\n";
        let err = Config::parse(store, "x.yml").unwrap_err().to_string();
        assert!(err.contains("global.external_labels"), "{err}");
        assert!(err.contains("must be set"), "{err}");
        let ok = format!("global:\n  external_labels:\n    cluster: a\n{store}");
        let c = Config::parse(&ok, "x.yml").unwrap();
        assert!(matches!(
            c.storage.object_store,
            Some(crate::shipper::ObjectStoreConfig::Filesystem(_))
        ));
        let bad = ok.replace("directory: /tmp/b", "directory: /tmp/b\n      bogus: 1");
        let err = Config::parse(&bad, "x.yml").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        let bad = ok.replace(
            "type: FILESYSTEM\n    config:\n      directory: /tmp/b",
            "type: S3\n    config:\n      endpoint: x",
        );
        let err = Config::parse(&bad, "x.yml").unwrap_err().to_string();
        assert!(err.contains("bucket"), "{err}");
    }

    #[test]
    fn a_parse_error_never_shows_a_secret() {
        // A value under a secret key, quoted by the parser's message.
        let text =
            "scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: hunter2}\n";
        let m = without_secrets(
            "line 3 column 5: invalid value: string \"hunter2\", expected x\n  3 | source",
            text,
        );
        assert_eq!(
            m,
            "line 3 column 5: invalid value: string \"<secret>\", expected x"
        );
        // Not YAML at all: every quoted value goes.
        let m = without_secrets("bad \"hunter2\\\"x\" at `key`", "password: [unclosed");
        assert_eq!(m, "bad \"…\" at `key`");
        // Other values stay, so that the message still helps.
        let err = Config::parse("global:\n  scrape_interval: 15x\n", "x.yml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("15x"), "{err}");
        for text in [
            "scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: [hunter2]}\n",
            "storage:\n  object_store:\n    type: S3\n    config: {secret_key: hunter2, bogus: 1}\n",
        ] {
            let e = Config::parse(text, "odin.yml").unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
