//! Alerting end to end: ODIN's alerting rules notify a real Alertmanager (Debian's
//! `prometheus-alertmanager` 0.25, installed by scripts/test.sh), which calls a
//! webhook receiver inside the test. An alert fires, is grouped, notified once and
//! resolved; with Alertmanager down the sends fail and are counted, and the alert
//! arrives once Alertmanager is back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Killed, Odin, TestSeries, agent, free_port, now_ms, poll_until};

const ALERTMANAGER: &str = "prometheus-alertmanager";

/// Fails the test where Alertmanager is missing (scripts/test.sh installs it).
pub fn require_alertmanager() {
    let installed = Command::new(ALERTMANAGER)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "{ALERTMANAGER} (Debian's 0.25) is needed: scripts/test.sh installs it"
    );
}

/// A scratch directory, a webhook receiver and a free port for Alertmanager.
fn setup() -> (tempfile::TempDir, Webhook, u16) {
    require_alertmanager();
    (tempfile::tempdir().unwrap(), Webhook::start(), free_port())
}

/// A webhook receiver: every JSON body POSTed to it, in arrival order.
pub struct Webhook {
    port: u16,
    pub received: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        sink.lock().unwrap().push(v);
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Webhook { port, received }
    }

    /// The notifications so far with this `status` ("firing" or "resolved").
    pub fn with_status(&self, status: &str) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n["status"] == status)
            .cloned()
            .collect()
    }
}

/// Starts Alertmanager on `port`, grouping fast and repeating seldom, sending to
/// the webhook (resolutions too); returns once it is ready.
pub fn start_alertmanager(dir: &Path, port: u16, webhook: &Webhook) -> Killed {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{}/hook\n        send_resolved: true\n",
            webhook.port
        ),
    )
    .unwrap();
    let child: Child = Command::new(ALERTMANAGER)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let am = Killed(child);
    let ready = poll_until(Duration::from_secs(30), || {
        agent()
            .get(&format!("http://127.0.0.1:{port}/-/ready"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(ready, "Alertmanager did not become ready");
    am
}

const RULES: &str = r#"groups:
  - name: switch
    rules:
      - alert: SwitchOn
        expr: switch == 1
        for: 2s
        labels: {severity: page}
        annotations:
          summary: 'switch {{ $labels.instance }} is {{ $value }}'
"#;

/// Starts ODIN with the rule above, evaluated every second, notifying the
/// Alertmanager at `am_port`.
fn start_odin(dir: &Path, am_port: u16) -> Odin {
    std::fs::write(dir.join("alerts.yml"), RULES).unwrap();
    let cfg = dir.join("odin.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  evaluation_interval: 1s\n  external_labels: {{site: lab}}\nrule_files: [alerts.yml]\nalerting:\n  alertmanagers:\n    - timeout: 2s\n      static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n"
        ),
    )
    .unwrap();
    Odin::start(
        &dir.join("data"),
        &[
            &format!("--config.file={}", cfg.display()),
            "--rules.alert.resend-delay=1s",
        ],
    )
}

fn set_switch(odin: &Odin, v: f64) {
    let (status, body) = odin.write(&[TestSeries::new(
        &[("__name__", "switch"), ("instance", "a")],
        vec![(now_ms(), v)],
    )]);
    assert_eq!(status, 204, "{body}");
}

fn metric(odin: &Odin, name: &str) -> f64 {
    let (_, text) = odin.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn an_alert_fires_is_notified_once_and_resolves_through_alertmanager() {
    let (dir, webhook, am_port) = setup();
    let _am = start_alertmanager(dir.path(), am_port, &webhook);
    let odin = start_odin(dir.path(), am_port);
    set_switch(&odin, 1.0);
    // Where alerts go, as Prometheus lists it.
    let (code, body) = odin.get("/api/v1/alertmanagers");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"],
        serde_json::json!({
            "activeAlertmanagers": [{"url": format!("http://127.0.0.1:{am_port}/api/v2/alerts")}],
            "droppedAlertmanagers": [],
        })
    );

    // Pending first, then firing after `for`, and notified.
    assert!(
        poll_until(Duration::from_secs(20), || odin
            .get("/api/v1/alerts")
            .1
            .contains("\"pending\"")
            || !webhook.with_status("firing").is_empty()),
        "the alert never became pending"
    );
    assert!(
        poll_until(Duration::from_secs(30), || !webhook
            .with_status("firing")
            .is_empty()),
        "no firing notification; ODIN log:\n{}",
        odin.log_text()
    );
    let firing = webhook.with_status("firing");
    let alert = &firing[0]["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "SwitchOn");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["instance"], "a");
    // The external labels are attached, and the templates expanded.
    assert_eq!(alert["labels"]["site"], "lab");
    assert_eq!(alert["annotations"]["summary"], "switch a is 1");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .ends_with("/graph?g0.expr=switch+%3D%3D+1&g0.tab=1"),
        "{alert}"
    );

    // The APIs and the ALERTS series agree.
    let (_, alerts) = odin.get("/api/v1/alerts");
    let alerts: serde_json::Value = serde_json::from_str(&alerts).unwrap();
    let listed = &alerts["data"]["alerts"][0];
    assert_eq!(listed["state"], "firing");
    assert_eq!(listed["value"], "1e+00");
    assert_eq!(listed["annotations"]["summary"], "switch a is 1");
    let (_, rules) = odin.get("/api/v1/rules?type=alert");
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let rule = &rules["data"]["groups"][0]["rules"][0];
    assert_eq!(rule["type"], "alerting");
    assert_eq!(rule["state"], "firing");
    assert_eq!(rule["duration"], 2.0);
    assert_eq!(rule["alerts"][0]["labels"]["alertname"], "SwitchOn");
    let (_, q) = odin.get("/api/v1/query?query=ALERTS%7Balertstate%3D%22firing%22%7D");
    assert!(q.contains("SwitchOn"), "{q}");
    assert!(metric(&odin, "prometheus_notifications_sent_total") >= 1.0);

    // Off: resolved, and Alertmanager says so.
    set_switch(&odin, 0.0);
    assert!(
        poll_until(Duration::from_secs(30), || !webhook
            .with_status("resolved")
            .is_empty()),
        "no resolved notification"
    );
    // The stale marker is written by the same evaluation that sends the resolved
    // alert, but the notification can reach the receiver before the write lands.
    let mut q = String::new();
    assert!(
        poll_until(Duration::from_secs(10), || {
            q = odin.get("/api/v1/query?query=ALERTS").1;
            !q.contains("SwitchOn")
        }),
        "ALERTS not marked stale: {q}"
    );
    // Alertmanager got the alert every second while it fired, and told the
    // receiver once: one firing and one resolved notification, nothing more after
    // a few more group intervals.
    let counts = || {
        (
            webhook.with_status("firing").len(),
            webhook.with_status("resolved").len(),
        )
    };
    assert!(!poll_until(Duration::from_secs(3), || counts() != (1, 1)));
    assert_eq!(counts(), (1, 1), "{:?}", webhook.received.lock().unwrap());
    assert_eq!(metric(&odin, "prometheus_notifications_dropped_total"), 0.0);
}

#[test]
fn with_alertmanager_down_the_alert_arrives_once_it_is_back() {
    let (dir, webhook, am_port) = setup();
    let odin = start_odin(dir.path(), am_port);
    set_switch(&odin, 1.0);
    // Firing while nobody listens: every send fails, is counted, and the batch is
    // dropped (counted too); the rule goes on.
    assert!(
        poll_until(Duration::from_secs(30), || metric(
            &odin,
            "prometheus_notifications_errors_total"
        ) >= 2.0),
        "no failed sends; log:\n{}",
        odin.log_text()
    );
    assert!(metric(&odin, "prometheus_notifications_dropped_total") >= 1.0);
    assert!(odin.get("/api/v1/alerts").1.contains("\"firing\""));
    // Back: the next re-send reaches it.
    let _am = start_alertmanager(dir.path(), am_port, &webhook);
    assert!(
        poll_until(Duration::from_secs(30), || !webhook
            .with_status("firing")
            .is_empty()),
        "the alert never arrived"
    );
    let firing = webhook.with_status("firing");
    assert_eq!(firing[0]["alerts"][0]["labels"]["alertname"], "SwitchOn");
}
