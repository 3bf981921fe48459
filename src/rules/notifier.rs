//! The Alertmanager notifier, as Prometheus's `notifier.Manager` works.
//!
//! Alerting rules hand it the alerts due after each evaluation ([`AlertSink`]). Each
//! alert gets the external labels it lacks, then `alert_relabel_configs`; it goes
//! into a bounded queue (the oldest alerts are dropped, and counted, when it is
//! full). A sender task takes batches of up to 64 and POSTs each batch to every
//! configured Alertmanager's `/api/v2/alerts` at once. A batch no Alertmanager took
//! is dropped and counted; firing alerts are re-sent at the resend delay anyway, so
//! an Alertmanager that was down hears of them once it is back.
//!
//! The self-metrics keep Prometheus's names: `prometheus_notifications_sent_total`,
//! `_errors_total` and `_latency_seconds` by `alertmanager`, `_dropped_total`,
//! `_queue_length`, `_queue_capacity`, `_alertmanagers_discovered`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::DurationMs;
use crate::model::{Labels, LabelsBuilder};
use crate::rules::alerting::Alert;
use crate::rules::group::AlertSink;
use crate::scrape::config::{Authorization, BasicAuth, Scheme, StaticConfig, TlsConfig};
use crate::scrape::relabel::{RelabelConfig, process};

/// Prometheus's `maxBatchSize`: alerts per request.
const MAX_BATCH: usize = 64;

/// The `alerting:` section of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Applied to each alert (after the external labels) before it is queued.
    #[serde(default)]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One set of Alertmanagers, all sent every alert (Prometheus's
/// `AlertmanagerConfig`; targets from `static_configs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default = "default_timeout")]
    pub timeout: DurationMs,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Applied to each target's labels (`__address__`, `__scheme__`,
    /// `__alerts_path__`, the static labels); a dropped target is not sent to.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<crate::model::Secret>,
    pub bearer_token_file: Option<String>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    #[serde(default = "default_true")]
    pub enable_http2: bool,
}

fn default_timeout() -> DurationMs {
    DurationMs(10_000)
}

fn default_api_version() -> String {
    "v2".to_string()
}

fn default_true() -> bool {
    true
}

impl AlertingConfig {
    /// The checks Prometheus makes when it loads the section.
    pub fn validate(&self) -> Result<(), String> {
        for (i, am) in self.alertmanagers.iter().enumerate() {
            let at = format!("alertmanagers[{i}]");
            match am.api_version.as_str() {
                "v2" => {}
                "v1" => {
                    return Err(format!(
                        "{at}: api_version v1 is not supported (Alertmanager removed it in 0.27); use v2"
                    ));
                }
                other => return Err(format!("{at}: unknown api_version {other:?}")),
            }
            let credentials = usize::from(am.basic_auth.is_some())
                + usize::from(am.authorization.is_some())
                + usize::from(am.bearer_token.is_some() || am.bearer_token_file.is_some());
            if credentials > 1 {
                return Err(format!(
                    "{at}: at most one of basic_auth, authorization and bearer_token may be set"
                ));
            }
            if am.timeout.0 <= 0 {
                return Err(format!("{at}: timeout must be greater than 0"));
            }
            for sc in &am.static_configs {
                for t in &sc.targets {
                    if t.is_empty() || t.contains('/') {
                        return Err(format!("{at}: target {t:?} is not a host:port address"));
                    }
                }
            }
        }
        Ok(())
    }
}

impl AlertmanagerConfig {
    fn authorization(&self) -> Option<Authorization> {
        Authorization::effective(
            self.authorization.as_ref(),
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_ref(),
        )
    }

    /// The URLs alerts are POSTed to, and those of the targets relabelling dropped
    /// (written from their labels before relabelling), as Prometheus's
    /// `alertmanagerFromGroup` finds them.
    fn discover(&self) -> (Vec<String>, Vec<String>) {
        let path = format!("{}/api/v2/alerts", self.path_prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut dropped = Vec::new();
        for sc in &self.static_configs {
            for target in &sc.targets {
                let mut b = LabelsBuilder::default();
                for (k, v) in &sc.labels {
                    b.set(k.as_str(), v.as_str());
                }
                b.set("__address__", target.as_str());
                b.set("__scheme__", self.scheme.as_str());
                b.set("__alerts_path__", path.as_str());
                if !process(&mut b, &self.relabel_configs) {
                    dropped.push(format!("{}://{target}{path}", self.scheme.as_str()));
                    continue;
                }
                let labels = b.build();
                let (Some(address), Some(scheme)) =
                    (labels.get("__address__"), labels.get("__scheme__"))
                else {
                    continue;
                };
                let path = labels.get("__alerts_path__").unwrap_or("/api/v2/alerts");
                let url = format!("{scheme}://{address}{path}");
                if !out.contains(&url) {
                    out.push(url);
                }
            }
        }
        (out, dropped)
    }
}

/// An alert as Alertmanager's API v2 takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PostableAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
}

/// RFC 3339 with milliseconds, as Alertmanager reads times.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The JSON body of `POST /api/v2/alerts`.
fn payload(alerts: &[PostableAlert]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let labels: serde_json::Map<String, serde_json::Value> = a
                .labels
                .iter()
                .map(|l| (l.name.to_string(), serde_json::json!(l.value.as_str())))
                .collect();
            let mut v = serde_json::json!({
                "labels": labels,
                "annotations": a.annotations,
                "generatorURL": a.generator_url,
            });
            if a.starts_at_ms > 0 {
                v["startsAt"] = serde_json::json!(rfc3339(a.starts_at_ms));
            }
            if a.ends_at_ms > 0 {
                v["endsAt"] = serde_json::json!(rfc3339(a.ends_at_ms));
            }
            v
        })
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertmanagerLabel {
    pub alertmanager: String,
}

#[derive(Clone)]
pub struct NotifierMetrics {
    pub sent: Family<AlertmanagerLabel, Counter>,
    pub errors: Family<AlertmanagerLabel, Counter>,
    pub latency: Family<AlertmanagerLabel, Histogram>,
    pub dropped: Counter,
    pub queue_length: Gauge,
    pub queue_capacity: Gauge,
    pub alertmanagers: Gauge,
}

impl NotifierMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = NotifierMetrics {
            sent: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            dropped: Counter::default(),
            queue_length: Gauge::default(),
            queue_capacity: Gauge::default(),
            alertmanagers: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("prometheus_notifications");
        r.register("sent", "Total number of alerts sent.", m.sent.clone());
        r.register(
            "errors",
            "Total number of errors sending alert notifications.",
            m.errors.clone(),
        );
        r.register(
            "latency_seconds",
            "Latency of sending alert notifications.",
            m.latency.clone(),
        );
        r.register(
            "dropped",
            "Total number of alerts dropped due to errors when sending to Alertmanager.",
            m.dropped.clone(),
        );
        r.register(
            "queue_length",
            "The number of alert notifications in the queue.",
            m.queue_length.clone(),
        );
        r.register(
            "queue_capacity",
            "The capacity of the alert notifications queue.",
            m.queue_capacity.clone(),
        );
        r.register(
            "alertmanagers_discovered",
            "The number of alertmanagers discovered and active.",
            m.alertmanagers.clone(),
        );
        m
    }
}

/// One configured set of Alertmanagers: its client, timeout and URLs.
struct AlertmanagerSet {
    client: reqwest::Client,
    timeout: Duration,
    urls: Vec<String>,
    /// The targets relabelling dropped, for `/api/v1/alertmanagers`.
    dropped: Vec<String>,
}

/// What the configuration sets, swapped whole on reload.
struct Settings {
    sets: Vec<AlertmanagerSet>,
    relabel: Vec<RelabelConfig>,
    external_labels: Labels,
    /// The links alerts carry back: `--web.external-url`.
    external_url: String,
}

pub struct Notifier {
    queue: Mutex<VecDeque<PostableAlert>>,
    capacity: usize,
    more: Notify,
    settings: Mutex<Arc<Settings>>,
    metrics: NotifierMetrics,
}

impl Notifier {
    /// A notifier with a queue of `capacity` alerts
    /// (`--alertmanager.notification-queue-capacity`), sending nowhere until
    /// [`Notifier::apply`] gives it Alertmanagers.
    pub fn new(capacity: usize, external_url: &str, metrics: NotifierMetrics) -> Arc<Notifier> {
        metrics
            .queue_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        Arc::new(Notifier {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            more: Notify::new(),
            settings: Mutex::new(Arc::new(Settings {
                sets: Vec::new(),
                relabel: Vec::new(),
                external_labels: Labels::default(),
                external_url: external_url.to_string(),
            })),
            metrics,
        })
    }

    /// Takes the `alerting` section (at start and on reload). A client that cannot
    /// be built (a missing certificate, say) fails the whole section and the
    /// running one stays.
    pub fn apply(
        &self,
        config: &AlertingConfig,
        external_labels: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        config.validate()?;
        let mut sets = Vec::new();
        for (i, am) in config.alertmanagers.iter().enumerate() {
            let client =
                crate::scrape::client::build_http_client(&crate::scrape::client::ClientSettings {
                    owner: format!("alerting.alertmanagers[{i}]"),
                    accept: None,
                    basic_auth: am.basic_auth.as_ref(),
                    authorization: am.authorization(),
                    tls: &am.tls_config,
                    follow_redirects: am.follow_redirects,
                    enable_http2: am.enable_http2,
                })?;
            let (urls, dropped) = am.discover();
            sets.push(AlertmanagerSet {
                client,
                timeout: Duration::from_millis(u64::try_from(am.timeout.0).unwrap_or(10_000)),
                urls,
                dropped,
            });
        }
        let discovered: usize = sets.iter().map(|s| s.urls.len()).sum();
        self.metrics
            .alertmanagers
            .set(i64::try_from(discovered).unwrap_or(i64::MAX));
        let mut settings = self.settings.lock();
        *settings = Arc::new(Settings {
            sets,
            relabel: config.alert_relabel_configs.clone(),
            external_labels: Labels::from_pairs(
                external_labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
            external_url: settings.external_url.clone(),
        });
        Ok(())
    }

    /// Queues alerts: external labels added where missing, relabelled, the oldest
    /// dropped (and counted) past the queue's capacity. Without Alertmanagers there
    /// is nobody to tell, and nothing is queued.
    pub fn enqueue(&self, alerts: Vec<PostableAlert>) {
        let settings = self.settings.lock().clone();
        if settings.sets.iter().all(|s| s.urls.is_empty()) {
            return;
        }
        let mut relabelled: Vec<PostableAlert> = Vec::with_capacity(alerts.len());
        for mut a in alerts {
            let mut b = a.labels.to_builder();
            for l in settings.external_labels.iter() {
                if a.labels.get(&l.name).is_none() {
                    b.set(l.name.clone(), l.value.clone());
                }
            }
            if !process(&mut b, &settings.relabel) {
                continue;
            }
            a.labels = b.build();
            relabelled.push(a);
        }
        if relabelled.is_empty() {
            return;
        }
        let mut queue = self.queue.lock();
        let mut dropped = 0;
        if relabelled.len() > self.capacity {
            dropped += relabelled.len() - self.capacity;
            relabelled.drain(..relabelled.len() - self.capacity);
        }
        let over = (queue.len() + relabelled.len()).saturating_sub(self.capacity);
        if over > 0 {
            queue.drain(..over);
            dropped += over;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "alert notification queue full, dropping the oldest alerts"
            );
            self.metrics.dropped.inc_by(dropped as u64);
        }
        queue.extend(relabelled);
        self.metrics
            .queue_length
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        drop(queue);
        self.more.notify_one();
    }

    fn next_batch(&self) -> Vec<PostableAlert> {
        let mut queue = self.queue.lock();
        let n = queue.len().min(MAX_BATCH);
        let batch: Vec<PostableAlert> = queue.drain(..n).collect();
        self.metrics
            .queue_length
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        batch
    }

    /// Sends queued alerts until `shutdown` (a supervised task: should it die, the
    /// supervisor says so and starts it again; the queue is kept).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), String> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.more.notified() => {}
            }
            loop {
                let batch = self.next_batch();
                if batch.is_empty() {
                    break;
                }
                if !self.send_all(&batch).await {
                    self.metrics.dropped.inc_by(batch.len() as u64);
                }
            }
        }
    }

    /// POSTs a batch to every Alertmanager at once; true when at least one took it.
    async fn send_all(&self, batch: &[PostableAlert]) -> bool {
        let settings = self.settings.lock().clone();
        let body = bytes::Bytes::from(payload(batch));
        let mut sends = Vec::new();
        for set in &settings.sets {
            for url in &set.urls {
                let request = set
                    .client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .timeout(set.timeout)
                    .body(body.clone());
                let url = url.clone();
                sends.push(async move {
                    let started = Instant::now();
                    let outcome = match request.send().await {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("bad response status {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    (url, started.elapsed(), outcome)
                });
            }
        }
        let mut delivered = false;
        for (url, took, outcome) in futures_util::future::join_all(sends).await {
            let label = AlertmanagerLabel { alertmanager: url };
            self.metrics
                .latency
                .get_or_create(&label)
                .observe(took.as_secs_f64());
            self.metrics
                .sent
                .get_or_create(&label)
                .inc_by(batch.len() as u64);
            match outcome {
                Ok(()) => delivered = true,
                Err(e) => {
                    tracing::error!(
                        alertmanager = label.alertmanager,
                        count = batch.len(),
                        error = e,
                        "error sending alerts"
                    );
                    self.metrics.errors.get_or_create(&label).inc();
                }
            }
        }
        delivered
    }
}

impl AlertSink for Notifier {
    fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
        let settings = self.settings.lock().clone();
        let active = settings.sets.iter().flat_map(|s| s.urls.iter().cloned());
        let dropped = settings.sets.iter().flat_map(|s| s.dropped.iter().cloned());
        (active.collect(), dropped.collect())
    }

    /// Prometheus's `sendAlerts`: starts at the firing time, ends at the resolution
    /// or, while firing, when the alert would go stale in Alertmanager.
    fn send(&self, expr: &str, alerts: Vec<Alert>) {
        let generator_url = {
            let settings = self.settings.lock();
            format!(
                "{}{}",
                settings.external_url,
                crate::template::prometheus::table_link(expr)
            )
        };
        let postable = alerts
            .into_iter()
            .map(|a| PostableAlert {
                labels: a.labels,
                annotations: a.annotations,
                starts_at_ms: a.fired_at_ms,
                ends_at_ms: if a.resolved_at_ms > 0 {
                    a.resolved_at_ms
                } else {
                    a.valid_until_ms
                },
                generator_url: generator_url.clone(),
            })
            .collect();
        self.enqueue(postable);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> AlertingConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn notifier(capacity: usize) -> Arc<Notifier> {
        let metrics = NotifierMetrics::new(&mut Registry::default());
        Notifier::new(capacity, "http://odin:9090", metrics)
    }

    fn alert(name: &str) -> PostableAlert {
        PostableAlert {
            labels: Labels::from_pairs([("alertname", name), ("cluster", "own")]),
            annotations: BTreeMap::new(),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: 0,
            generator_url: String::new(),
        }
    }

    #[test]
    fn targets_become_urls_through_path_prefix_and_relabelling() {
        let c = config(
            "alertmanagers:\n  - path_prefix: /am/\n    static_configs: [{targets: ['a:9093', 'b:9093']}]\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: 'b:.*'\n        action: drop\n  - scheme: https\n    static_configs: [{targets: ['c:9093']}]\n",
        );
        c.validate().unwrap();
        let (active, dropped) = c.alertmanagers[0].discover();
        assert_eq!(active, ["http://a:9093/am/api/v2/alerts"]);
        assert_eq!(dropped, ["http://b:9093/am/api/v2/alerts"]);
        let (active, dropped) = c.alertmanagers[1].discover();
        assert_eq!(active, ["https://c:9093/api/v2/alerts"]);
        assert!(dropped.is_empty());
        for (bad, want) in [
            ("alertmanagers: [{api_version: v1}]", "v1 is not supported"),
            ("alertmanagers: [{api_version: v3}]", "unknown api_version"),
            (
                "alertmanagers: [{basic_auth: {username: u}, bearer_token: t}]",
                "at most one",
            ),
            (
                "alertmanagers: [{static_configs: [{targets: ['http://x']}]}]",
                "host:port",
            ),
        ] {
            let err = config(bad).validate().unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn alerts_get_external_labels_are_relabelled_and_the_queue_drops_the_oldest() {
        let n = notifier(3);
        // Without Alertmanagers nothing is queued (and nothing counts as dropped).
        n.enqueue(vec![alert("A")]);
        assert!(n.next_batch().is_empty());
        let c = config(
            "alert_relabel_configs:\n  - source_labels: [alertname]\n    regex: Silenced\n    action: drop\nalertmanagers:\n  - static_configs: [{targets: ['127.0.0.1:1']}]\n",
        );
        let external = BTreeMap::from([
            ("cluster".to_string(), "lab".to_string()),
            ("region".to_string(), "eu".to_string()),
        ]);
        n.apply(&c, &external).unwrap();
        n.enqueue(vec![alert("A"), alert("Silenced"), alert("B")]);
        n.enqueue(vec![alert("C"), alert("D")]);
        assert_eq!(n.metrics.dropped.get(), 1);
        let batch = n.next_batch();
        let names: Vec<&str> = batch
            .iter()
            .map(|a| a.labels.get("alertname").unwrap())
            .collect();
        assert_eq!(names, ["B", "C", "D"]);
        // The alert's own label wins over the external one.
        assert_eq!(batch[0].labels.get("cluster"), Some("own"));
        assert_eq!(batch[0].labels.get("region"), Some("eu"));
        assert_eq!(n.metrics.queue_length.get(), 0);
    }

    #[test]
    fn payload_is_alertmanagers_v2_shape() {
        let mut a = alert("A");
        a.ends_at_ms = 1_700_000_060_000;
        a.generator_url = "http://odin:9090/graph?g0.expr=up&g0.tab=1".into();
        let v: serde_json::Value = serde_json::from_slice(&payload(&[a])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "labels": {"alertname": "A", "cluster": "own"},
                "annotations": {},
                "startsAt": "2023-11-14T22:13:20.000Z",
                "endsAt": "2023-11-14T22:14:20.000Z",
                "generatorURL": "http://odin:9090/graph?g0.expr=up&g0.tab=1",
            }])
        );
    }

    /// A header's value in a request's text (names compared without case).
    fn header(request: &str, name: &str) -> String {
        request
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    }

    /// Accepts one HTTP request, answers `status`, and hands back what it read.
    fn one_request(status: u16) -> (u16, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            head + "\r\n" + &String::from_utf8(body).unwrap()
        });
        (port, handle)
    }

    #[tokio::test]
    async fn batches_are_posted_with_the_configured_path_and_credentials() {
        let n = notifier(10);
        let (port, request) = one_request(200);
        let c = config(&format!(
            "alertmanagers:\n  - path_prefix: /am\n    basic_auth: {{username: odin, password: s3cret}}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ));
        n.apply(&c, &BTreeMap::new()).unwrap();
        assert!(n.send_all(&[alert("A")]).await);
        let request = request.join().unwrap();
        assert!(
            request.starts_with("POST /am/api/v2/alerts HTTP/1.1"),
            "{request}"
        );
        // base64("odin:s3cret")
        assert_eq!(header(&request, "authorization"), "Basic b2RpbjpzM2NyZXQ=");
        assert_eq!(header(&request, "content-type"), "application/json");
        assert!(request.contains(r#""alertname":"A""#), "{request}");
        // An Alertmanager that refuses: an error, counted, not a delivery.
        let (port, request) = one_request(503);
        let c = config(&format!(
            "alertmanagers:\n  - authorization: {{credentials: tok}}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ));
        n.apply(&c, &BTreeMap::new()).unwrap();
        assert!(!n.send_all(&[alert("A")]).await);
        assert_eq!(
            header(&request.join().unwrap(), "authorization"),
            "Bearer tok"
        );
        let label = AlertmanagerLabel {
            alertmanager: format!("http://127.0.0.1:{port}/api/v2/alerts"),
        };
        assert_eq!(n.metrics.errors.get_or_create(&label).get(), 1);
    }

    #[tokio::test]
    async fn a_batch_no_alertmanager_takes_is_dropped_and_counted() {
        let n = notifier(10);
        // Nothing listens on port 1.
        let c = config(
            "alertmanagers:\n  - timeout: 1s\n    static_configs: [{targets: ['127.0.0.1:1']}]\n",
        );
        n.apply(&c, &BTreeMap::new()).unwrap();
        assert!(!n.send_all(&[alert("A")]).await);
        let label = AlertmanagerLabel {
            alertmanager: "http://127.0.0.1:1/api/v2/alerts".into(),
        };
        assert_eq!(n.metrics.errors.get_or_create(&label).get(), 1);
        assert_eq!(n.metrics.sent.get_or_create(&label).get(), 1);
    }
}
