//! The scrape part of `prometheus.yml`: `scrape_configs` entries with Prometheus 2.42's
//! keys and defaults, and the scrape defaults that `global:` supplies.
//!
//! Keys Prometheus knows but ODIN does not implement (other service discoveries,
//! OAuth2, proxies, native histograms…) are read as placeholders so that they are
//! reported by name, job and line ("kubernetes_sd_configs is not supported by ODIN")
//! instead of as an unknown field; keys Prometheus does not know are unknown fields.

use std::collections::{BTreeMap, HashSet};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use crate::config::{ByteSize, ConfigError, DurationMs};
use crate::model::is_valid_label_name;
use crate::scrape::discovery::is_valid_file_sd_pattern;
use crate::scrape::relabel::RelabelConfig;

/// A key ODIN reads only to reject it by name; remembers where it was.
pub type Unsupported = Option<Spanned<IgnoredAny>>;

/// Default `scrape_interval` (1m).
pub const DEFAULT_SCRAPE_INTERVAL_MS: i64 = 60_000;
/// Default `scrape_timeout` (10s).
pub const DEFAULT_SCRAPE_TIMEOUT_MS: i64 = 10_000;
/// Default `file_sd_configs[].refresh_interval` (5m).
pub const DEFAULT_FILE_SD_REFRESH_MS: i64 = 300_000;

pub use crate::model::Secret;

/// `scheme:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl<'de> Deserialize<'de> for Scheme {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "http" => Ok(Scheme::Http),
            "https" => Ok(Scheme::Https),
            other => Err(serde::de::Error::custom(format!(
                "unknown scheme {other:?}: must be http or https"
            ))),
        }
    }
}

/// `basic_auth:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    pub password: Option<Secret>,
    /// Read at each scrape, so a rotated password is picked up.
    pub password_file: Option<String>,
}

/// `authorization:` — an `Authorization: <type> <credentials>` header.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Default `Bearer`.
    #[serde(rename = "type", default = "default_authorization_type")]
    pub credentials_type: String,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<String>,
}

fn default_authorization_type() -> String {
    "Bearer".into()
}

/// `tls_config.min_version:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "TLS10" => Ok(TlsVersion::Tls10),
            "TLS11" => Ok(TlsVersion::Tls11),
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            other => Err(serde::de::Error::custom(format!(
                "unknown TLS version: {other}"
            ))),
        }
    }
}

/// `tls_config:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates to verify the server with, instead of the system roots.
    pub ca_file: Option<String>,
    /// Client certificate and key, for mutual TLS; both or neither.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Server name to verify, when it is not the target's host.
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub min_version: Option<TlsVersion>,
}

/// `static_configs:` entry: targets given in the file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels given to every target of this group.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `file_sd_configs:` entry: targets read from JSON or YAML files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths ending in `.json`, `.yml` or `.yaml`; `*` may appear in the last path
    /// element. Relative paths are relative to the configuration file's directory.
    pub files: Vec<String>,
    /// How often the files are re-read besides change notifications (default 5m).
    #[serde(default = "default_file_sd_refresh")]
    pub refresh_interval: DurationMs,
}

fn default_file_sd_refresh() -> DurationMs {
    DurationMs(DEFAULT_FILE_SD_REFRESH_MS)
}

fn default_true() -> bool {
    true
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

/// One `scrape_configs:` entry. Optional durations and limits are filled from
/// [`ScrapeDefaults`] by [`validate_scrape_configs`]; after that they are all `Some`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label of every target; unique across the file.
    pub job_name: String,
    /// How often to scrape (default `global.scrape_interval`).
    pub scrape_interval: Option<DurationMs>,
    /// Per-scrape timeout, at most the interval (default `global.scrape_timeout`, or
    /// the interval when that is shorter).
    pub scrape_timeout: Option<DurationMs>,
    /// Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// URL query parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// On a clash between a scraped label and a target label, keep the scraped one
    /// (default false: the scraped one is renamed `exported_<name>`).
    #[serde(default)]
    pub honor_labels: bool,
    /// Keep timestamps exposed by the target (default true).
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,

    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    /// Deprecated in Prometheus for `authorization`, still accepted.
    pub bearer_token: Option<Secret>,
    /// Deprecated in Prometheus for `authorization.credentials_file`, still accepted.
    pub bearer_token_file: Option<String>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Default true.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// Default true.
    #[serde(default = "default_true")]
    pub enable_http2: bool,

    /// Uncompressed body bytes accepted per scrape; 0 means no limit.
    pub body_size_limit: Option<ByteSize>,
    /// Samples accepted per scrape after metric relabeling; 0 means no limit.
    pub sample_limit: Option<u64>,
    /// Targets per job after relabeling; 0 means no limit.
    pub target_limit: Option<u64>,
    /// Labels per series; 0 means no limit.
    pub label_limit: Option<u64>,
    pub label_name_length_limit: Option<u64>,
    pub label_value_length_limit: Option<u64>,
    /// Dropped targets kept for `/api/v1/targets`; 0 means all.
    pub keep_dropped_targets: Option<u64>,

    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,

    // HTTP client features ODIN does not implement.
    #[serde(default)]
    oauth2: Unsupported,
    #[serde(default)]
    proxy_url: Unsupported,
    #[serde(default)]
    no_proxy: Unsupported,
    #[serde(default)]
    proxy_from_environment: Unsupported,
    #[serde(default)]
    proxy_connect_header: Unsupported,
    #[serde(default)]
    http_headers: Unsupported,
    // Scrape features of later Prometheus versions.
    #[serde(default)]
    scrape_classic_histograms: Unsupported,
    #[serde(default)]
    always_scrape_classic_histograms: Unsupported,
    #[serde(default)]
    convert_classic_histograms_to_nhcb: Unsupported,
    #[serde(default)]
    native_histogram_bucket_limit: Unsupported,
    #[serde(default)]
    native_histogram_min_bucket_factor: Unsupported,
    #[serde(default)]
    scrape_native_histograms: Unsupported,
    #[serde(default)]
    scrape_protocols: Unsupported,
    #[serde(default)]
    fallback_scrape_protocol: Unsupported,
    #[serde(default)]
    enable_compression: Unsupported,
    #[serde(default)]
    track_timestamps_staleness: Unsupported,
    #[serde(default)]
    scrape_failure_log_file: Unsupported,
    #[serde(default)]
    metric_name_validation_scheme: Unsupported,
    #[serde(default)]
    metric_name_escaping_scheme: Unsupported,
    #[serde(default)]
    extra_scrape_metrics: Unsupported,
    // Service discoveries other than static and file.
    #[serde(default)]
    azure_sd_configs: Unsupported,
    #[serde(default)]
    consul_sd_configs: Unsupported,
    #[serde(default)]
    digitalocean_sd_configs: Unsupported,
    #[serde(default)]
    docker_sd_configs: Unsupported,
    #[serde(default)]
    dockerswarm_sd_configs: Unsupported,
    #[serde(default)]
    dns_sd_configs: Unsupported,
    #[serde(default)]
    ec2_sd_configs: Unsupported,
    #[serde(default)]
    eureka_sd_configs: Unsupported,
    #[serde(default)]
    gce_sd_configs: Unsupported,
    #[serde(default)]
    hetzner_sd_configs: Unsupported,
    #[serde(default)]
    http_sd_configs: Unsupported,
    #[serde(default)]
    ionos_sd_configs: Unsupported,
    #[serde(default)]
    kubernetes_sd_configs: Unsupported,
    #[serde(default)]
    kuma_sd_configs: Unsupported,
    #[serde(default)]
    lightsail_sd_configs: Unsupported,
    #[serde(default)]
    linode_sd_configs: Unsupported,
    #[serde(default)]
    marathon_sd_configs: Unsupported,
    #[serde(default)]
    nerve_sd_configs: Unsupported,
    #[serde(default)]
    nomad_sd_configs: Unsupported,
    #[serde(default)]
    openstack_sd_configs: Unsupported,
    #[serde(default)]
    ovhcloud_sd_configs: Unsupported,
    #[serde(default)]
    puppetdb_sd_configs: Unsupported,
    #[serde(default)]
    scaleway_sd_configs: Unsupported,
    #[serde(default)]
    serverset_sd_configs: Unsupported,
    #[serde(default)]
    stackit_sd_configs: Unsupported,
    #[serde(default)]
    triton_sd_configs: Unsupported,
    #[serde(default)]
    uyuni_sd_configs: Unsupported,
    #[serde(default)]
    vultr_sd_configs: Unsupported,
}

impl ScrapeConfig {
    /// The placeholders above, by name; each must also be a field.
    fn unsupported(&self) -> [(&'static str, &Unsupported); 48] {
        [
            ("oauth2", &self.oauth2),
            ("proxy_url", &self.proxy_url),
            ("no_proxy", &self.no_proxy),
            ("proxy_from_environment", &self.proxy_from_environment),
            ("proxy_connect_header", &self.proxy_connect_header),
            ("http_headers", &self.http_headers),
            ("scrape_classic_histograms", &self.scrape_classic_histograms),
            (
                "always_scrape_classic_histograms",
                &self.always_scrape_classic_histograms,
            ),
            (
                "convert_classic_histograms_to_nhcb",
                &self.convert_classic_histograms_to_nhcb,
            ),
            (
                "native_histogram_bucket_limit",
                &self.native_histogram_bucket_limit,
            ),
            (
                "native_histogram_min_bucket_factor",
                &self.native_histogram_min_bucket_factor,
            ),
            ("scrape_native_histograms", &self.scrape_native_histograms),
            ("scrape_protocols", &self.scrape_protocols),
            ("fallback_scrape_protocol", &self.fallback_scrape_protocol),
            ("enable_compression", &self.enable_compression),
            (
                "track_timestamps_staleness",
                &self.track_timestamps_staleness,
            ),
            ("scrape_failure_log_file", &self.scrape_failure_log_file),
            (
                "metric_name_validation_scheme",
                &self.metric_name_validation_scheme,
            ),
            (
                "metric_name_escaping_scheme",
                &self.metric_name_escaping_scheme,
            ),
            ("extra_scrape_metrics", &self.extra_scrape_metrics),
            ("azure_sd_configs", &self.azure_sd_configs),
            ("consul_sd_configs", &self.consul_sd_configs),
            ("digitalocean_sd_configs", &self.digitalocean_sd_configs),
            ("docker_sd_configs", &self.docker_sd_configs),
            ("dockerswarm_sd_configs", &self.dockerswarm_sd_configs),
            ("dns_sd_configs", &self.dns_sd_configs),
            ("ec2_sd_configs", &self.ec2_sd_configs),
            ("eureka_sd_configs", &self.eureka_sd_configs),
            ("gce_sd_configs", &self.gce_sd_configs),
            ("hetzner_sd_configs", &self.hetzner_sd_configs),
            ("http_sd_configs", &self.http_sd_configs),
            ("ionos_sd_configs", &self.ionos_sd_configs),
            ("kubernetes_sd_configs", &self.kubernetes_sd_configs),
            ("kuma_sd_configs", &self.kuma_sd_configs),
            ("lightsail_sd_configs", &self.lightsail_sd_configs),
            ("linode_sd_configs", &self.linode_sd_configs),
            ("marathon_sd_configs", &self.marathon_sd_configs),
            ("nerve_sd_configs", &self.nerve_sd_configs),
            ("nomad_sd_configs", &self.nomad_sd_configs),
            ("openstack_sd_configs", &self.openstack_sd_configs),
            ("ovhcloud_sd_configs", &self.ovhcloud_sd_configs),
            ("puppetdb_sd_configs", &self.puppetdb_sd_configs),
            ("scaleway_sd_configs", &self.scaleway_sd_configs),
            ("serverset_sd_configs", &self.serverset_sd_configs),
            ("stackit_sd_configs", &self.stackit_sd_configs),
            ("triton_sd_configs", &self.triton_sd_configs),
            ("uyuni_sd_configs", &self.uyuni_sd_configs),
            ("vultr_sd_configs", &self.vultr_sd_configs),
        ]
    }

    /// The scrape interval in milliseconds (after validation, never the fallback).
    pub fn scrape_interval_ms(&self) -> i64 {
        self.scrape_interval
            .map_or(DEFAULT_SCRAPE_INTERVAL_MS, |d| d.0)
    }

    /// The scrape timeout in milliseconds.
    pub fn scrape_timeout_ms(&self) -> i64 {
        self.scrape_timeout
            .map_or(DEFAULT_SCRAPE_TIMEOUT_MS, |d| d.0)
    }

    /// The `Authorization` header to send, folding the deprecated `bearer_token` and
    /// `bearer_token_file` into the `authorization` form as Prometheus does.
    pub fn effective_authorization(&self) -> Option<Authorization> {
        Authorization::effective(
            self.authorization.as_ref(),
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_ref(),
        )
    }
}

impl Authorization {
    /// `authorization`, else the deprecated `bearer_token`/`bearer_token_file` in its
    /// form, as Prometheus's HTTP client configuration folds them (scrape jobs and
    /// Alertmanagers alike).
    pub fn effective(
        authorization: Option<&Authorization>,
        bearer_token: Option<&Secret>,
        bearer_token_file: Option<&String>,
    ) -> Option<Authorization> {
        if let Some(a) = authorization {
            return Some(a.clone());
        }
        if bearer_token.is_none() && bearer_token_file.is_none() {
            return None;
        }
        Some(Authorization {
            credentials_type: default_authorization_type(),
            credentials: bearer_token.cloned(),
            credentials_file: bearer_token_file.cloned(),
        })
    }
}

/// What `global:` gives every job that does not set its own value. Prometheus 2.45+
/// also accepts the limits under `global:`; 0 means no limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeDefaults {
    pub scrape_interval: DurationMs,
    pub scrape_timeout: DurationMs,
    pub body_size_limit: ByteSize,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub keep_dropped_targets: u64,
}

impl Default for ScrapeDefaults {
    fn default() -> Self {
        Self {
            scrape_interval: DurationMs(DEFAULT_SCRAPE_INTERVAL_MS),
            scrape_timeout: DurationMs(DEFAULT_SCRAPE_TIMEOUT_MS),
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            keep_dropped_targets: 0,
        }
    }
}

/// Prometheus's check of a target's final address: no path.
pub fn check_target_address(address: &str) -> Result<(), String> {
    if address.contains('/') {
        return Err(format!("{address:?} is not a valid hostname"));
    }
    Ok(())
}

/// Validates `scrape_configs` and fills each job's missing durations and limits from
/// `defaults`, as Prometheus does at load. Messages name the entry, its job and the
/// key; `path` is the file, for messages.
pub fn validate_scrape_configs(
    configs: &mut [ScrapeConfig],
    defaults: &ScrapeDefaults,
    path: &str,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, sc) in configs.iter_mut().enumerate() {
        let entry = format!("scrape_configs[{i}] (job {:?})", sc.job_name);
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            key: entry.clone(),
            message,
        };
        if let Some((key, at)) = sc
            .unsupported()
            .into_iter()
            .find_map(|(k, v)| v.as_ref().map(|s| (k, s.referenced.line())))
        {
            return Err(invalid(format!(
                "{key} is not supported by ODIN (line {at})"
            )));
        }
        if sc.job_name.is_empty() {
            return Err(invalid("job_name is empty".into()));
        }
        if !seen.insert(sc.job_name.clone()) {
            return Err(invalid(format!(
                "job_name: found multiple scrape configs with job name {:?}",
                sc.job_name
            )));
        }
        validate_one(sc, defaults).map_err(invalid)?;
    }
    Ok(())
}

fn validate_one(sc: &mut ScrapeConfig, defaults: &ScrapeDefaults) -> Result<(), String> {
    let interval = sc.scrape_interval.unwrap_or(defaults.scrape_interval);
    if interval.0 <= 0 {
        return Err("scrape_interval: must be greater than 0".into());
    }
    sc.scrape_interval = Some(interval);
    match sc.scrape_timeout {
        Some(t) if t.0 > interval.0 => {
            return Err(format!(
                "scrape_timeout: scrape timeout greater than scrape interval ({} > {})",
                crate::model::format_duration_ms(t.0),
                crate::model::format_duration_ms(interval.0)
            ));
        }
        Some(t) if t.0 <= 0 => return Err("scrape_timeout: must be greater than 0".into()),
        Some(_) => {}
        None => {
            sc.scrape_timeout = Some(DurationMs(defaults.scrape_timeout.0.min(interval.0)));
        }
    }
    sc.body_size_limit.get_or_insert(defaults.body_size_limit);
    sc.sample_limit.get_or_insert(defaults.sample_limit);
    sc.target_limit.get_or_insert(defaults.target_limit);
    sc.label_limit.get_or_insert(defaults.label_limit);
    sc.label_name_length_limit
        .get_or_insert(defaults.label_name_length_limit);
    sc.label_value_length_limit
        .get_or_insert(defaults.label_value_length_limit);
    sc.keep_dropped_targets
        .get_or_insert(defaults.keep_dropped_targets);

    if !sc.metrics_path.starts_with('/') {
        return Err(format!(
            "metrics_path: {:?} must start with '/'",
            sc.metrics_path
        ));
    }
    validate_http_client(sc)?;
    for (j, st) in sc.static_configs.iter().enumerate() {
        // Targets are not checked here: blackbox-style jobs list URLs that relabeling
        // moves to a parameter. `populate_labels` checks the final address.
        for name in st.labels.keys() {
            if !is_valid_label_name(name) {
                return Err(format!(
                    "static_configs[{j}].labels: {name:?} is not a valid label name"
                ));
            }
        }
    }
    for (j, fc) in sc.file_sd_configs.iter().enumerate() {
        if fc.files.is_empty() {
            return Err(format!(
                "file_sd_configs[{j}].files: file service discovery config must contain at least one path name"
            ));
        }
        for f in &fc.files {
            if !is_valid_file_sd_pattern(f) {
                return Err(format!(
                    "file_sd_configs[{j}].files: path name {f:?} is not valid for file discovery"
                ));
            }
        }
        if fc.refresh_interval.0 <= 0 {
            return Err(format!(
                "file_sd_configs[{j}].refresh_interval: must be greater than 0"
            ));
        }
    }
    Ok(())
}

/// Prometheus's `HTTPClientConfig.Validate`, for the parts ODIN supports.
fn validate_http_client(sc: &ScrapeConfig) -> Result<(), String> {
    let bearer = sc.bearer_token.is_some() || sc.bearer_token_file.is_some();
    if sc.bearer_token.is_some() && sc.bearer_token_file.is_some() {
        return Err(
            "bearer_token: at most one of bearer_token & bearer_token_file must be configured"
                .into(),
        );
    }
    if sc.basic_auth.is_some() && (bearer || sc.authorization.is_some()) {
        return Err(
            "basic_auth: at most one of basic_auth, authorization, bearer_token & bearer_token_file must be configured"
                .into(),
        );
    }
    if let Some(b) = &sc.basic_auth
        && b.password.is_some()
        && b.password_file.is_some()
    {
        return Err(
            "basic_auth: at most one of basic_auth password & password_file must be configured"
                .into(),
        );
    }
    if let Some(a) = &sc.authorization {
        if bearer {
            return Err(
                "authorization: authorization is not compatible with bearer_token & bearer_token_file"
                    .into(),
            );
        }
        if a.credentials.is_some() && a.credentials_file.is_some() {
            return Err(
                "authorization: at most one of authorization credentials & credentials_file must be configured"
                    .into(),
            );
        }
        if a.credentials_type.eq_ignore_ascii_case("basic") {
            return Err(
                "authorization: authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                    .into(),
            );
        }
        if a.credentials_type.is_empty() || a.credentials_type.contains(char::is_whitespace) {
            return Err(format!(
                "authorization: invalid type {:?}",
                a.credentials_type
            ));
        }
    }
    let tls = &sc.tls_config;
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err("tls_config: cert_file and key_file must be configured together".into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::scrape::relabel::Action;

    /// Stands in for ODIN's top-level `Config` until `scrape_configs` is merged there.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        #[serde(default)]
        global: Option<IgnoredAny>,
        #[serde(default)]
        alerting: Option<IgnoredAny>,
        #[serde(default)]
        rule_files: Option<IgnoredAny>,
        #[serde(default)]
        scrape_configs: Vec<ScrapeConfig>,
    }

    fn parse(yaml: &str) -> Result<Vec<ScrapeConfig>, String> {
        parse_with(yaml, &ScrapeDefaults::default())
    }

    fn parse_with(yaml: &str, defaults: &ScrapeDefaults) -> Result<Vec<ScrapeConfig>, String> {
        let f: File = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        let mut scs = f.scrape_configs;
        validate_scrape_configs(&mut scs, defaults, "prometheus.yml").map_err(|e| e.to_string())?;
        Ok(scs)
    }

    fn err(yaml: &str) -> String {
        parse(yaml).unwrap_err()
    }

    /// Prometheus's documentation/examples/prometheus.yml, extended with the kinds of
    /// jobs the configuration reference describes.
    const REALISTIC: &str = r#"
# my global config
global:
  scrape_interval: 15s # Set the scrape interval to every 15 seconds. Default is every 1 minute.
  evaluation_interval: 15s # Evaluate rules every 15 seconds. The default is every 1 minute.
  # scrape_timeout is set to the global default (10s).

# Alertmanager configuration
alerting:
  alertmanagers:
    - static_configs:
        - targets:
          # - alertmanager:9093

# Load rules once and periodically evaluate them according to the global 'evaluation_interval'.
rule_files:
  # - "first_rules.yml"
  # - "second_rules.yml"

scrape_configs:
  # The job name is added as a label `job=<job_name>` to any timeseries scraped from this config.
  - job_name: "prometheus"
    # metrics_path defaults to '/metrics'
    # scheme defaults to 'http'.
    static_configs:
      - targets: ["localhost:9090"]

  - job_name: node
    scrape_interval: 30s
    scrape_timeout: 20s
    file_sd_configs:
      - files: ['targets/node/*.yml', 'targets/node/*.json']
        refresh_interval: 1m
    relabel_configs:
      - source_labels: [__address__]
        regex: '([^:]+):\d+'
        target_label: host
      - source_labels: [__address__]
        modulus: 3
        target_label: __tmp_shard
        action: hashmod
      - source_labels: [__tmp_shard]
        regex: '0'
        action: keep
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_gc_.*'
        action: drop
      - action: labeldrop
        regex: 'pod_template_hash'

  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [http_2xx]
    static_configs:
      - targets:
          - https://example.com
          - http://example.org:8080
        labels:
          team: web
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115

  - job_name: secure
    scheme: https
    sample_limit: 10000
    body_size_limit: 10MB
    honor_labels: true
    honor_timestamps: false
    basic_auth:
      username: prom
      password_file: /etc/prometheus/password
    tls_config:
      ca_file: /etc/prometheus/ca.pem
      server_name: metrics.internal
      insecure_skip_verify: false
      min_version: TLS12
    static_configs:
      - targets: ['metrics.internal:8443']
"#;

    #[test]
    fn parses_a_realistic_prometheus_yml() {
        let defaults = ScrapeDefaults {
            scrape_interval: DurationMs(15_000),
            ..ScrapeDefaults::default()
        };
        let scs = parse_with(REALISTIC, &defaults).unwrap();
        assert_eq!(scs.len(), 4);

        let prom = &scs[0];
        assert_eq!(prom.job_name, "prometheus");
        assert_eq!(prom.scrape_interval_ms(), 15_000);
        assert_eq!(prom.scrape_timeout_ms(), 10_000);
        assert_eq!(prom.metrics_path, "/metrics");
        assert_eq!(prom.scheme, Scheme::Http);
        assert!(prom.honor_timestamps && !prom.honor_labels);
        assert!(prom.follow_redirects && prom.enable_http2);
        assert_eq!(prom.static_configs[0].targets, ["localhost:9090"]);

        let node = &scs[1];
        assert_eq!(node.scrape_interval_ms(), 30_000);
        assert_eq!(node.scrape_timeout_ms(), 20_000);
        assert_eq!(node.file_sd_configs[0].files.len(), 2);
        assert_eq!(node.file_sd_configs[0].refresh_interval, DurationMs(60_000));
        assert_eq!(node.relabel_configs.len(), 3);
        assert_eq!(node.relabel_configs[1].action, Action::HashMod);
        assert_eq!(node.relabel_configs[1].modulus, 3);
        assert_eq!(node.metric_relabel_configs[1].action, Action::LabelDrop);

        let bb = &scs[2];
        assert_eq!(bb.metrics_path, "/probe");
        assert_eq!(bb.params["module"], ["http_2xx"]);
        assert_eq!(bb.static_configs[0].labels["team"], "web");

        let secure = &scs[3];
        assert_eq!(secure.scheme, Scheme::Https);
        assert_eq!(secure.sample_limit, Some(10_000));
        assert_eq!(secure.body_size_limit, Some(ByteSize(10 << 20)));
        assert_eq!(secure.target_limit, Some(0));
        assert!(secure.honor_labels && !secure.honor_timestamps);
        let auth = secure.basic_auth.as_ref().unwrap();
        assert_eq!(auth.username, "prom");
        assert_eq!(
            auth.password_file.as_deref(),
            Some("/etc/prometheus/password")
        );
        assert_eq!(secure.tls_config.min_version, Some(TlsVersion::Tls12));
        assert_eq!(
            secure.tls_config.server_name.as_deref(),
            Some("metrics.internal")
        );
    }

    #[test]
    fn timeout_defaults_to_the_interval_when_shorter_than_the_global_timeout() {
        let scs = parse("scrape_configs:\n- job_name: a\n  scrape_interval: 5s\n").unwrap();
        assert_eq!(scs[0].scrape_timeout_ms(), 5_000);
    }

    #[test]
    fn unsupported_keys_are_named_with_job_and_line() {
        let e = err(
            "scrape_configs:\n- job_name: a\n- job_name: b\n- job_name: k8s\n  kubernetes_sd_configs:\n  - role: pod\n",
        );
        assert!(
            e.contains(
                "scrape_configs[2] (job \"k8s\"): kubernetes_sd_configs is not supported by ODIN"
            ),
            "{e}"
        );
        assert!(e.contains("line 6"), "{e}");
    }

    #[test]
    fn every_unsupported_key_is_reported_by_name() {
        let dummy: ScrapeConfig = serde_saphyr::from_str("job_name: x\n").unwrap();
        for (key, _) in dummy.unsupported() {
            let e = err(&format!("scrape_configs:\n- job_name: j\n  {key}: [1]\n"));
            assert!(
                e.contains(&format!("{key} is not supported by ODIN")),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn proxy_url_is_rejected_by_name() {
        let e = err("scrape_configs:\n- job_name: a\n  proxy_url: http://proxy:3128\n");
        assert!(e.contains("proxy_url is not supported by ODIN"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = err("scrape_configs:\n- job_name: a\n  scrape_intervall: 5s\n");
        assert!(
            e.contains("scrape_intervall") && e.contains("line 3"),
            "{e}"
        );
        let e = err(
            "scrape_configs:\n- job_name: a\n  static_configs:\n  - targets: [x:1]\n    lables: {a: b}\n",
        );
        assert!(e.contains("lables") && e.contains("line 5"), "{e}");
        let e = err("scrape_configs:\n- job_name: a\n  tls_config:\n    ca: inline\n");
        assert!(e.contains("`ca`") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn relabel_errors_carry_their_line() {
        let e = err(
            "scrape_configs:\n- job_name: a\n  relabel_configs:\n  - action: hashmod\n    target_label: x\n",
        );
        assert!(
            e.contains("requires non-zero modulus") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn validation_messages_name_job_and_key() {
        for (yaml, want) in [
            (
                "scrape_configs:\n- job_name: a\n- job_name: a\n",
                "scrape_configs[1] (job \"a\"): job_name: found multiple scrape configs with job name \"a\"",
            ),
            ("scrape_configs:\n- job_name: ''\n", "job_name is empty"),
            ("scrape_configs:\n- scrape_interval: 5s\n", "job_name"),
            (
                "scrape_configs:\n- job_name: a\n  scrape_interval: 5s\n  scrape_timeout: 10s\n",
                "(job \"a\"): scrape_timeout: scrape timeout greater than scrape interval (10s > 5s)",
            ),
            (
                "scrape_configs:\n- job_name: a\n  scheme: ftp\n",
                "unknown scheme \"ftp\"",
            ),
            (
                "scrape_configs:\n- job_name: a\n  metrics_path: metrics\n",
                "metrics_path",
            ),
            (
                "scrape_configs:\n- job_name: a\n  static_configs:\n  - labels: {a-b: x}\n",
                "\"a-b\" is not a valid label name",
            ),
            (
                "scrape_configs:\n- job_name: a\n  file_sd_configs:\n  - files: []\n",
                "at least one path name",
            ),
            (
                "scrape_configs:\n- job_name: a\n  file_sd_configs:\n  - files: ['dir/*/x.yml']\n",
                "path name \"dir/*/x.yml\" is not valid for file discovery",
            ),
            (
                "scrape_configs:\n- job_name: a\n  file_sd_configs:\n  - files: ['x.txt']\n",
                "is not valid for file discovery",
            ),
            (
                "scrape_configs:\n- job_name: a\n  bearer_token: t\n  bearer_token_file: f\n",
                "at most one of bearer_token & bearer_token_file",
            ),
            (
                "scrape_configs:\n- job_name: a\n  bearer_token: t\n  authorization: {credentials: c}\n",
                "authorization is not compatible with bearer_token",
            ),
            (
                "scrape_configs:\n- job_name: a\n  basic_auth: {username: u}\n  authorization: {credentials: c}\n",
                "at most one of basic_auth",
            ),
            (
                "scrape_configs:\n- job_name: a\n  basic_auth: {username: u, password: p, password_file: f}\n",
                "password & password_file",
            ),
            (
                "scrape_configs:\n- job_name: a\n  authorization: {type: Basic, credentials: c}\n",
                "use \"basic_auth\" instead",
            ),
            (
                "scrape_configs:\n- job_name: a\n  authorization: {credentials: c, credentials_file: f}\n",
                "credentials & credentials_file",
            ),
            (
                "scrape_configs:\n- job_name: a\n  tls_config: {cert_file: c}\n",
                "cert_file and key_file",
            ),
            (
                "scrape_configs:\n- job_name: a\n  tls_config: {min_version: TLS9}\n",
                "unknown TLS version",
            ),
            (
                "scrape_configs:\n- job_name: a\n  body_size_limit: 10XB\n",
                "10XB",
            ),
        ] {
            let e = err(yaml);
            assert!(e.contains(want), "{yaml:?}\n{e}");
        }
    }

    #[test]
    fn bearer_token_becomes_authorization() {
        let scs = parse("scrape_configs:\n- job_name: a\n  bearer_token_file: /t\n").unwrap();
        let a = scs[0].effective_authorization().unwrap();
        assert_eq!(a.credentials_type, "Bearer");
        assert_eq!(a.credentials_file.as_deref(), Some("/t"));
        let scs = parse("scrape_configs:\n- job_name: a\n  authorization: {credentials: s3cret}\n")
            .unwrap();
        let a = scs[0].effective_authorization().unwrap();
        assert_eq!(a.credentials_type, "Bearer");
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn global_limits_are_defaults_and_jobs_override_them() {
        let defaults = ScrapeDefaults {
            sample_limit: 500,
            label_limit: 30,
            ..ScrapeDefaults::default()
        };
        let scs = parse_with(
            "scrape_configs:\n- job_name: a\n- job_name: b\n  sample_limit: 7\n",
            &defaults,
        )
        .unwrap();
        assert_eq!(scs[0].sample_limit, Some(500));
        assert_eq!(scs[1].sample_limit, Some(7));
        assert_eq!(scs[1].label_limit, Some(30));
    }
}
