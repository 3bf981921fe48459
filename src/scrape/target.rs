//! From a discovered target to the labels and URL it is scraped with, as Prometheus
//! 2.42's `PopulateLabels` does it.
//!
//! Order: the group's labels under the target's own; `job`, `__scrape_interval__`,
//! `__scrape_timeout__`, `__metrics_path__` and `__scheme__` where discovery did not set
//! them; `__param_<name>` from `params`. That is the *discovered* label set shown by
//! `/api/v1/targets`. Then `relabel_configs`; a target without `__address__` is an
//! error. A missing port is added from the scheme (`:80`, `:443`) — Prometheus 2.x
//! does this unless `--enable-feature=no-default-scrape-port`; 3.0 stopped. The
//! address must not contain a path, interval and timeout must parse with timeout ≤
//! interval, `__meta_*` labels are removed and `instance` defaults to the address.

use std::collections::BTreeMap;

use crate::model::{Labels, format_duration_ms, parse_duration_ms};
use crate::scrape::config::{ScrapeConfig, check_target_address};
use crate::scrape::discovery::{ADDRESS_LABEL, TargetGroup};
use crate::scrape::relabel::process_labels;

pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const META_LABEL_PREFIX: &str = "__meta_";
/// Labels starting with this are internal and never stored with samples.
pub const RESERVED_LABEL_PREFIX: &str = "__";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";

/// A target that survived relabeling.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The labels before relabeling (`discoveredLabels` in the API).
    pub discovered_labels: Labels,
    /// The labels after relabeling, internal `__` ones (address, scheme, path,
    /// params, interval, timeout) included; `__meta_*` removed.
    pub labels: Labels,
    /// The job's `params`, which `__param_*` labels override.
    pub params: BTreeMap<String, Vec<String>>,
}

/// What became of one discovered target.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetOutcome {
    /// To be scraped (`activeTargets`).
    Active(Target),
    /// Dropped by `relabel_configs` (`droppedTargets`), with its discovered labels.
    Dropped { discovered_labels: Labels },
}

impl Target {
    /// The labels attached to every scraped sample: all but the `__` ones.
    pub fn public_labels(&self) -> Labels {
        Labels::from_sorted(
            self.labels
                .iter()
                .filter(|l| !l.name.starts_with(RESERVED_LABEL_PREFIX))
                .cloned()
                .collect(),
        )
    }

    pub fn address(&self) -> &str {
        self.labels.get(ADDRESS_LABEL).unwrap_or("")
    }

    pub fn scheme(&self) -> &str {
        self.labels.get(SCHEME_LABEL).unwrap_or("")
    }

    pub fn job(&self) -> &str {
        self.labels.get(JOB_LABEL).unwrap_or("")
    }

    /// The interval from `__scrape_interval__` (checked by [`populate_labels`]).
    pub fn scrape_interval_ms(&self) -> i64 {
        self.labels
            .get(SCRAPE_INTERVAL_LABEL)
            .and_then(|s| parse_duration_ms(s).ok())
            .unwrap_or(0)
    }

    /// The timeout from `__scrape_timeout__` (checked by [`populate_labels`]).
    pub fn scrape_timeout_ms(&self) -> i64 {
        self.labels
            .get(SCRAPE_TIMEOUT_LABEL)
            .and_then(|s| parse_duration_ms(s).ok())
            .unwrap_or(0)
    }

    /// The URL to scrape: `scheme://address/path?query`, the query built from the
    /// job's `params` with the first value of each name replaced by its `__param_`
    /// label, names sorted and escaped as Go's `url.Values.Encode` does.
    pub fn url(&self) -> String {
        let mut params = self.params.clone();
        for l in self.labels.iter() {
            if let Some(name) = l.name.strip_prefix(PARAM_LABEL_PREFIX) {
                let values = params.entry(name.to_string()).or_default();
                match values.first_mut() {
                    Some(first) => *first = l.value.to_string(),
                    None => values.push(l.value.to_string()),
                }
            }
        }
        let mut url = format!("{}://{}", self.scheme(), self.address());
        let path = self.labels.get(METRICS_PATH_LABEL).unwrap_or("");
        if !path.is_empty() && !path.starts_with('/') {
            url.push('/');
        }
        escape_path(&mut url, path);
        let mut first = true;
        for (name, values) in &params {
            for v in values {
                url.push(if first { '?' } else { '&' });
                first = false;
                query_escape(&mut url, name);
                url.push('=');
                query_escape(&mut url, v);
            }
        }
        url
    }
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
fn query_escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// Escapes a URL path as Go's `url.URL.EscapedPath` does for ordinary paths.
fn escape_path(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@' | b'!' | b'\'' | b'('
            | b')' | b'*' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// Go's `net.SplitHostPort`: `Ok((host, port))` when `s` is `host:port` or
/// `[v6]:port`.
fn split_host_port(s: &str) -> Result<(&str, &str), &'static str> {
    let Some(colon) = s.rfind(':') else {
        return Err("missing port in address");
    };
    let (host, inner_start, inner_end) = if s.starts_with('[') {
        let Some(end) = s.find(']') else {
            return Err("missing ']' in address");
        };
        if end + 1 == s.len() {
            return Err("missing port in address");
        }
        if end + 1 != colon {
            return Err(if s.as_bytes()[end + 1] == b':' {
                "too many colons in address"
            } else {
                "missing port in address"
            });
        }
        (&s[1..end], 1, end + 1)
    } else {
        let host = &s[..colon];
        if host.contains(':') {
            return Err("too many colons in address");
        }
        (host, 0, 0)
    };
    if s[inner_start..].contains('[') {
        return Err("unexpected '[' in address");
    }
    if s[inner_end..].contains(']') {
        return Err("unexpected ']' in address");
    }
    Ok((host, &s[colon + 1..]))
}

/// Builds the discovered labels of one target of a group and runs relabeling.
/// `Err` is a target that is neither active nor dropped (Prometheus logs it).
pub fn populate_labels(
    target: &Labels,
    group_labels: &Labels,
    cfg: &ScrapeConfig,
) -> Result<TargetOutcome, String> {
    let mut b = group_labels.to_builder();
    for l in target.iter() {
        b.set(l.name.clone(), l.value.clone());
    }
    let merged = b.build();
    let defaults = [
        (JOB_LABEL, cfg.job_name.clone()),
        (
            SCRAPE_INTERVAL_LABEL,
            format_duration_ms(cfg.scrape_interval_ms()),
        ),
        (
            SCRAPE_TIMEOUT_LABEL,
            format_duration_ms(cfg.scrape_timeout_ms()),
        ),
        (METRICS_PATH_LABEL, cfg.metrics_path.clone()),
        (SCHEME_LABEL, cfg.scheme.as_str().to_string()),
    ];
    for (name, value) in defaults {
        if merged.get(name).is_none() {
            b.set(name, value);
        }
    }
    for (name, values) in &cfg.params {
        if let Some(first) = values.first() {
            b.set(format!("{PARAM_LABEL_PREFIX}{name}"), first.as_str());
        }
    }
    let discovered = b.build();

    let Some(relabeled) = process_labels(&discovered, &cfg.relabel_configs) else {
        return Ok(TargetOutcome::Dropped {
            discovered_labels: discovered,
        });
    };
    let Some(mut addr) = relabeled.get(ADDRESS_LABEL).map(str::to_string) else {
        return Err("no address".into());
    };
    let mut out = relabeled.to_builder();

    let needs_port =
        split_host_port(&addr).is_err() && split_host_port(&format!("{addr}:1234")).is_ok();
    if needs_port {
        let scheme = relabeled.get(SCHEME_LABEL).unwrap_or("");
        match scheme {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            other => return Err(format!("invalid scheme: {other:?}")),
        }
        out.set(ADDRESS_LABEL, addr.as_str());
    }
    check_target_address(&addr)?;

    let interval_text = relabeled.get(SCRAPE_INTERVAL_LABEL).unwrap_or("");
    let interval = parse_duration_ms(interval_text)
        .map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if interval == 0 {
        return Err("scrape interval cannot be 0".into());
    }
    let timeout_text = relabeled.get(SCRAPE_TIMEOUT_LABEL).unwrap_or("");
    let timeout = parse_duration_ms(timeout_text)
        .map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if timeout == 0 {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout_text:?} > {interval_text:?})"
        ));
    }

    for l in relabeled.iter() {
        if l.name.starts_with(META_LABEL_PREFIX) {
            out.delete(&l.name);
        }
    }
    if relabeled.get(INSTANCE_LABEL).is_none() {
        out.set(INSTANCE_LABEL, addr.as_str());
    }
    Ok(TargetOutcome::Active(Target {
        discovered_labels: discovered,
        labels: out.build(),
        params: cfg.params.clone(),
    }))
}

/// All targets of a group, with an error per target that could not be built
/// (`instance <i> in group <source>: <reason>`).
pub fn targets_from_group(
    group: &TargetGroup,
    cfg: &ScrapeConfig,
) -> (Vec<TargetOutcome>, Vec<String>) {
    let mut outcomes = Vec::with_capacity(group.targets.len());
    let mut errors = Vec::new();
    for (i, t) in group.targets.iter().enumerate() {
        match populate_labels(t, &group.labels, cfg) {
            Ok(o) => outcomes.push(o),
            Err(e) => errors.push(format!("instance {i} in group {}: {e}", group.source)),
        }
    }
    (outcomes, errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::scrape::config::{ScrapeDefaults, validate_scrape_configs};
    use crate::scrape::discovery::static_target_groups;

    fn job(yaml: &str) -> ScrapeConfig {
        let mut scs: Vec<ScrapeConfig> = serde_saphyr::from_str(yaml).unwrap();
        validate_scrape_configs(&mut scs, &ScrapeDefaults::default(), "t.yml").unwrap();
        scs.remove(0)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn active(o: TargetOutcome) -> Target {
        match o {
            TargetOutcome::Active(t) => t,
            TargetOutcome::Dropped { .. } => panic!("dropped"),
        }
    }

    fn one(
        cfg: &ScrapeConfig,
        target: &[(&str, &str)],
        group: &[(&str, &str)],
    ) -> Result<TargetOutcome, String> {
        populate_labels(&labels(target), &labels(group), cfg)
    }

    #[test]
    fn plain_static_target() {
        let cfg = job("- job_name: node\n  scrape_interval: 15s\n");
        let t = active(one(&cfg, &[("__address__", "h:9100")], &[("env", "prod")]).unwrap());
        assert_eq!(
            t.discovered_labels,
            labels(&[
                ("__address__", "h:9100"),
                ("__metrics_path__", "/metrics"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "15s"),
                ("__scrape_timeout__", "10s"),
                ("env", "prod"),
                ("job", "node"),
            ])
        );
        assert_eq!(
            t.public_labels(),
            labels(&[("env", "prod"), ("instance", "h:9100"), ("job", "node")])
        );
        assert_eq!(t.url(), "http://h:9100/metrics");
        assert_eq!(t.scrape_interval_ms(), 15_000);
        assert_eq!(t.scrape_timeout_ms(), 10_000);
    }

    #[test]
    fn target_labels_win_over_group_labels_and_discovered_defaults() {
        let cfg = job("- job_name: node\n");
        let t = active(
            one(
                &cfg,
                &[("__address__", "h:1"), ("env", "target"), ("job", "custom")],
                &[("env", "group"), ("__scheme__", "https")],
            )
            .unwrap(),
        );
        assert_eq!(t.labels.get("env"), Some("target"));
        assert_eq!(t.job(), "custom");
        assert_eq!(t.url(), "https://h:1/metrics");
    }

    #[test]
    fn default_ports_are_added_as_in_prometheus_2() {
        let http = job("- job_name: a\n");
        let t = active(one(&http, &[("__address__", "example.com")], &[]).unwrap());
        assert_eq!(t.address(), "example.com:80");
        assert_eq!(t.labels.get("instance"), Some("example.com:80"));
        let https = job("- job_name: a\n  scheme: https\n");
        let t = active(one(&https, &[("__address__", "[::1]")], &[]).unwrap());
        assert_eq!(t.address(), "[::1]:443");
        assert_eq!(t.url(), "https://[::1]:443/metrics");
        // Not a valid host even with a port: left alone.
        let t = active(one(&http, &[("__address__", "::1")], &[]).unwrap());
        assert_eq!(t.address(), "::1");
    }

    #[test]
    fn relabeling_can_drop_and_dropped_targets_keep_discovered_labels() {
        let cfg = job(
            "- job_name: a\n  relabel_configs:\n  - source_labels: [env]\n    regex: dev\n    action: drop\n",
        );
        match one(&cfg, &[("__address__", "h:1"), ("env", "dev")], &[]).unwrap() {
            TargetOutcome::Dropped { discovered_labels } => {
                assert_eq!(discovered_labels.get("job"), Some("a"));
                assert_eq!(discovered_labels.get("env"), Some("dev"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn meta_labels_are_removed_after_relabeling() {
        let cfg = job(
            "- job_name: a\n  relabel_configs:\n  - source_labels: [__meta_filepath]\n    target_label: file\n  - source_labels: [__address__]\n    target_label: __tmp_x\n",
        );
        let t = active(
            one(
                &cfg,
                &[("__address__", "h:1")],
                &[("__meta_filepath", "/sd/x.yml")],
            )
            .unwrap(),
        );
        assert_eq!(t.labels.get("__meta_filepath"), None);
        assert_eq!(t.labels.get("file"), Some("/sd/x.yml"));
        assert_eq!(t.labels.get("__tmp_x"), Some("h:1"));
        assert_eq!(t.public_labels().get("__tmp_x"), None);
        assert_eq!(
            t.discovered_labels.get("__meta_filepath"),
            Some("/sd/x.yml")
        );
    }

    #[test]
    fn blackbox_style_params_and_url() {
        let cfg = job(
            "- job_name: blackbox\n  metrics_path: /probe\n  params:\n    module: [http_2xx]\n  relabel_configs:\n  - source_labels: [__address__]\n    target_label: __param_target\n  - source_labels: [__param_target]\n    target_label: instance\n  - target_label: __address__\n    replacement: 127.0.0.1:9115\n",
        );
        let t = active(one(&cfg, &[("__address__", "https://example.com/a b")], &[]).unwrap());
        assert_eq!(t.discovered_labels.get("__param_module"), Some("http_2xx"));
        assert_eq!(t.labels.get("instance"), Some("https://example.com/a b"));
        assert_eq!(
            t.url(),
            "http://127.0.0.1:9115/probe?module=http_2xx&target=https%3A%2F%2Fexample.com%2Fa+b"
        );
    }

    #[test]
    fn param_labels_override_the_first_configured_value() {
        let cfg = job(
            "- job_name: a\n  params:\n    m: [x, y]\n  relabel_configs:\n  - target_label: __param_m\n    replacement: z\n",
        );
        let t = active(one(&cfg, &[("__address__", "h:1")], &[]).unwrap());
        assert_eq!(t.url(), "http://h:1/metrics?m=z&m=y");
    }

    #[test]
    fn errors_for_unusable_targets() {
        let cfg = job("- job_name: a\n");
        assert_eq!(one(&cfg, &[("env", "x")], &[]).unwrap_err(), "no address");
        let e = one(&cfg, &[("__address__", "h:1/path")], &[]).unwrap_err();
        assert!(e.contains("is not a valid hostname"), "{e}");
        let e = one(&cfg, &[("__address__", "h"), ("__scheme__", "ftp")], &[]).unwrap_err();
        assert!(e.contains("invalid scheme"), "{e}");
        let e = one(
            &cfg,
            &[("__address__", "h:1"), ("__scrape_timeout__", "2m")],
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("scrape timeout cannot be greater than scrape interval"),
            "{e}"
        );
        let e = one(
            &cfg,
            &[("__address__", "h:1"), ("__scrape_interval__", "soon")],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("error parsing scrape interval"), "{e}");
        let e = one(
            &cfg,
            &[("__address__", "h:1"), ("__scrape_interval__", "0s")],
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("cannot be 0") || e.contains("error parsing"),
            "{e}"
        );
    }

    #[test]
    fn relabeled_interval_is_used() {
        let cfg = job(
            "- job_name: a\n  relabel_configs:\n  - target_label: __scrape_interval__\n    replacement: 30s\n",
        );
        let t = active(one(&cfg, &[("__address__", "h:1")], &[]).unwrap());
        assert_eq!(t.scrape_interval_ms(), 30_000);
    }

    #[test]
    fn targets_from_a_static_group() {
        let cfg = job(
            "- job_name: a\n  static_configs:\n  - targets: ['h:1', 'h:2/x']\n    labels: {env: prod}\n",
        );
        let groups = static_target_groups(&cfg.static_configs);
        let (outcomes, errors) = targets_from_group(&groups[0], &cfg);
        assert_eq!(outcomes.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("instance 1 in group 0:"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn split_host_port_matches_go() {
        assert_eq!(split_host_port("h:1"), Ok(("h", "1")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port("h:"), Ok(("h", "")));
        assert!(split_host_port("h").is_err());
        assert!(split_host_port("::1").is_err());
        assert!(split_host_port("[::1]").is_err());
        assert!(split_host_port("[::1]x:1").is_err());
        assert!(split_host_port("a]:1").is_err());
    }
}
