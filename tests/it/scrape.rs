//! Scraping end to end: real exporters (tiny HTTP servers on loopback) scraped by the
//! real binary, read back through the query and targets APIs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Odin, poll_until};

/// An exporter on 127.0.0.1 serving whatever body it currently holds.
struct Exporter {
    port: u16,
    body: Arc<Mutex<String>>,
    /// Whether a response went out gzip-compressed.
    gzipped: Arc<std::sync::atomic::AtomicBool>,
}

impl Exporter {
    fn start(body: &str) -> Exporter {
        Self::start_with(body, "text/plain; version=0.0.4", false)
    }

    /// An exporter answering with `content_type`, gzip-compressed when `gzip` and the
    /// scraper accepts it.
    fn start_with(body: &str, content_type: &'static str, gzip: bool) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(body.to_string()));
        let served = body.clone();
        let gzipped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gzipped_flag = gzipped.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                // Read the request head; scrapes are GETs without a body.
                let mut line = String::new();
                let mut accepts_gzip = false;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if lower.starts_with("accept-encoding:") && lower.contains("gzip") {
                        accepts_gzip = true;
                    }
                    line.clear();
                }
                let text = served.lock().unwrap().clone();
                let (body, encoding) = if gzip && accepts_gzip {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    enc.write_all(text.as_bytes()).unwrap();
                    gzipped_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    (enc.finish().unwrap(), "Content-Encoding: gzip\r\n")
                } else {
                    (text.into_bytes(), "")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len(),
                );
                let _ = conn.write_all(&body);
            }
        });
        Exporter {
            port,
            body,
            gzipped,
        }
    }

    fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }
}

fn json(odin: &Odin, path: &str) -> Value {
    let (status, body) = odin.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The result vector of an instant query.
fn query(odin: &Odin, q: &str) -> Vec<Value> {
    let path = format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    json(odin, &path)["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value(v: &Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

/// The active targets of `job`.
fn targets(odin: &Odin, job: &str) -> Vec<Value> {
    json(odin, "/api/v1/targets")["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["scrapePool"] == job)
        .cloned()
        .collect()
}

fn dead_port() -> u16 {
    // Bound and dropped: nothing listens there.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn targets_are_scraped_relabeled_reported_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(
        "# HELP demo_requests_total Requests served.\n# TYPE demo_requests_total counter\n\
         demo_requests_total{code=\"200\",job=\"app\"} 10\n\
         # TYPE demo_temp gauge\ndemo_temp 21.5\ndrop_me 1\n",
    );
    let dead = dead_port();
    let cfg = dir.path().join("odin.yml");
    write_config(
        &cfg,
        &format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n\
             - job_name: demo\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n    labels: {{env: test}}\n\
             \x20 metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: drop_me\n    action: drop\n\
             - job_name: down\n  static_configs:\n  - targets: ['127.0.0.1:{dead}']\n\
             - job_name: limited\n  target_limit: 1\n  static_configs:\n  - targets: ['127.0.0.1:{dead}', 'localhost:{dead}']\n",
            exporter.port
        ),
    );
    let odin = Odin::start(
        &dir.path().join("data"),
        &[
            &format!("--config.file={}", cfg.display()),
            "--web.enable-lifecycle",
        ],
    );

    // Both targets are shown, one up, one down with the reason.
    assert!(
        poll_until(Duration::from_secs(20), || {
            let demo = targets(&odin, "demo");
            let down = targets(&odin, "down");
            demo.len() == 1
                && demo[0]["health"] == "up"
                && down.len() == 1
                && down[0]["health"] == "down"
        }),
        "{}",
        odin.get("/api/v1/targets").1
    );
    let down = &targets(&odin, "down")[0];
    assert!(
        down["lastError"].as_str().unwrap().contains("connect"),
        "{down}"
    );
    // Over its target_limit a job scrapes nothing, and says why on every target.
    let limited = targets(&odin, "limited");
    assert_eq!(limited.len(), 2);
    for t in &limited {
        assert!(
            t["lastError"]
                .as_str()
                .unwrap()
                .starts_with("target_limit exceeded (number of targets: 2, limit: 1)"),
            "{t}"
        );
    }
    assert!(query(&odin, "up{job=\"limited\"}").is_empty());
    // The scrape manager's own metrics.
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_scrape_targets{job=\"limited\",state=\"active\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("odin_scrape_scrapes_total{job=\"demo\",result=\"success\"}"));
    let demo = &targets(&odin, "demo")[0];
    assert_eq!(demo["labels"]["env"], "test");
    assert_eq!(demo["scrapeInterval"], "200ms");
    assert_eq!(
        demo["scrapeUrl"],
        format!("http://127.0.0.1:{}/metrics", exporter.port)
    );

    // Samples carry the target's labels; the clashing exposed `job` is exported.
    let r = query(&odin, "demo_requests_total");
    assert_eq!(r.len(), 1, "{r:?}");
    let m = &r[0]["metric"];
    assert_eq!(
        (
            &m["job"],
            &m["exported_job"],
            &m["env"],
            &m["code"],
            &m["instance"]
        ),
        (
            &Value::from("demo"),
            &Value::from("app"),
            &Value::from("test"),
            &Value::from("200"),
            &Value::from(format!("127.0.0.1:{}", exporter.port))
        )
    );
    assert!(query(&odin, "drop_me").is_empty());
    assert_eq!(
        value(&query(&odin, "scrape_samples_scraped{job=\"demo\"}")[0]),
        3.0
    );
    assert_eq!(
        value(&query(&odin, "scrape_samples_post_metric_relabeling{job=\"demo\"}")[0]),
        2.0
    );
    assert_eq!(value(&query(&odin, "up{job=\"down\"}")[0]), 0.0);
    assert_eq!(value(&query(&odin, "up{job=\"demo\"}")[0]), 1.0);

    // Metadata from HELP and TYPE.
    let md = json(&odin, "/api/v1/metadata?metric=demo_requests_total");
    assert_eq!(
        md["data"]["demo_requests_total"][0],
        serde_json::json!({"type": "counter", "help": "Requests served.", "unit": ""})
    );
    let tmd = json(
        &odin,
        "/api/v1/targets/metadata?match_target=%7Bjob%3D%22demo%22%7D&metric=demo_temp",
    );
    assert_eq!(tmd["data"][0]["type"], "gauge");
    assert_eq!(tmd["data"][0]["target"]["job"], "demo");

    // A series that disappears from the exposition goes stale.
    exporter.set("demo_requests_total{code=\"200\"} 11\n");
    assert!(poll_until(Duration::from_secs(10), || query(
        &odin,
        "demo_temp"
    )
    .is_empty()));

    // A bad configuration is refused and the running one stays.
    write_config(
        &cfg,
        "scrape_configs:\n- job_name: demo\n  scrape_intervall: 1s\n",
    );
    let (status, body) = odin.post("/-/reload", "text/plain", b"");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("scrape_intervall"), "{body}");
    assert_eq!(targets(&odin, "demo").len(), 1);

    // Reload: `demo` goes away (its series go stale), a file_sd job appears.
    let sd = dir.path().join("targets.json");
    std::fs::write(
        &sd,
        format!(
            "[{{\"targets\": [\"127.0.0.1:{}\"], \"labels\": {{\"team\": \"a\"}}}}]",
            exporter.port
        ),
    )
    .unwrap();
    write_config(
        &cfg,
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
         scrape_configs:\n- job_name: files\n  file_sd_configs:\n  - files: ['targets.json']\n",
    );
    let (status, body) = odin.post("/-/reload", "text/plain", b"");
    assert_eq!(status, 200, "{body}");
    assert!(targets(&odin, "demo").is_empty());
    assert!(
        query(&odin, "up{job=\"demo\"}").is_empty(),
        "demo's up is stale"
    );
    assert!(poll_until(Duration::from_secs(10), || {
        query(&odin, "demo_requests_total{job=\"files\",team=\"a\"}").len() == 1
    }));
    let files = &targets(&odin, "files")[0];
    assert!(
        files["discoveredLabels"]["__meta_filepath"]
            .as_str()
            .unwrap()
            .ends_with("targets.json"),
        "{files}"
    );
    // The file changes: the target goes, with its series.
    std::fs::write(&sd, "[]").unwrap();
    assert!(poll_until(Duration::from_secs(15), || targets(
        &odin, "files"
    )
    .is_empty()));
    assert!(query(&odin, "up{job=\"files\"}").is_empty());

    // SIGHUP reloads too; a target dropped by relabeling is listed as dropped.
    write_config(
        &cfg,
        &format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
             scrape_configs:\n- job_name: hup\n  static_configs:\n  - targets: ['127.0.0.1:{}', 'skip.invalid:1']\n\
             \x20 relabel_configs:\n  - source_labels: [__address__]\n    regex: 'skip.*'\n    action: drop\n",
            exporter.port
        ),
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(odin.pid(), libc::SIGHUP) }, 0);
    assert!(poll_until(Duration::from_secs(10), || targets(
        &odin, "hup"
    )
    .len()
        == 1));
    let dropped = json(&odin, "/api/v1/targets?state=dropped");
    assert!(dropped["data"].get("activeTargets").is_none());
    assert_eq!(
        dropped["data"]["droppedTargets"][0]["discoveredLabels"]["__address__"],
        "skip.invalid:1"
    );
}

/// `collectors.node.procfs`/`sysfs`/`rootfs` move the node collector to a host's file
/// systems mounted elsewhere, as node_exporter's `--path.*` flags do.
#[test]
fn the_node_collector_reads_the_configured_paths() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    std::fs::create_dir_all(host.join("proc")).unwrap();
    std::fs::create_dir_all(host.join("sys/class/net/eth9")).unwrap();
    std::fs::write(host.join("proc/loadavg"), "4.25 3.50 2.75 3/456 7890\n").unwrap();
    std::fs::write(host.join("sys/class/net/eth9/mtu"), "9000\n").unwrap();
    std::fs::write(host.join("sys/class/net/eth9/operstate"), "up\n").unwrap();
    let cfg = dir.path().join("odin.yml");
    std::fs::write(
        &cfg,
        format!(
            "collectors:\n  node:\n    scrape_interval: 1s\n    procfs: {p}/proc\n    sysfs: {p}/sys\n    rootfs: {p}\n",
            p = host.display()
        ),
    )
    .unwrap();
    let odin = Odin::start(
        &dir.path().join("data"),
        &[&format!("--config.file={}", cfg.display())],
    );
    assert!(
        poll_until(Duration::from_secs(20), || !query(&odin, "node_load1")
            .is_empty()),
        "{}",
        odin.get("/api/v1/targets").1
    );
    assert_eq!(query(&odin, "node_load1")[0]["value"][1], "4.25");
    let mtu = query(&odin, "node_network_mtu_bytes");
    assert_eq!(mtu.len(), 1, "{mtu:?}");
    assert_eq!(mtu[0]["metric"]["device"], "eth9");
    assert_eq!(mtu[0]["value"][1], "9000");
    // A key the collector does not have is refused, by name.
    std::fs::write(&cfg, "collectors:\n  node:\n    prcfs: /x\n").unwrap();
    let out = crate::common::check_config(&cfg);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("prcfs")
            || String::from_utf8_lossy(&out.stderr).contains("prcfs")
    );
}

#[test]
fn the_embedded_default_scrapes_itself_and_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start_args(&dir.path().join("data"), &[]);
    // The collectors run every 15 s, each at its own offset in the interval.
    assert!(
        poll_until(Duration::from_secs(40), || {
            query(&odin, "up{job=\"node\"} == 1").len() == 1
                && query(&odin, "up{job=\"odin\"} == 1").len() == 1
        }),
        "{}",
        odin.get("/api/v1/targets").1
    );
    let cpu = query(&odin, "node_cpu_seconds_total{mode=\"idle\"}");
    assert!(!cpu.is_empty());
    assert!(cpu[0]["metric"]["cpu"].is_string());
    assert!(!query(&odin, "process_resident_memory_bytes{job=\"odin\"}").is_empty());
    let (_, cfg) = odin.get("/api/v1/status/config");
    assert!(cfg.contains("collectors"), "{cfg}");
    // The built-in rule pack runs: its groups are listed.
    let (_, rules) = odin.get("/api/v1/rules");
    let v: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let groups: Vec<&str> = v["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        [
            "odin-node",
            "odin-gpu",
            "odin-containers",
            "node-alerts",
            "gpu-alerts",
            "odin-health",
            "meta"
        ],
        "{rules}"
    );
    assert_eq!(v["data"]["groups"][0]["file"], "builtin:gpu-server");
}

#[test]
fn check_config_names_what_odin_does_not_support() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 15s\nrule_files:\n  - rules/*.yml\n\
         alerting:\n  alertmanagers: []\n\
         remote_write:\n  - url: http://x/api/v1/write\n\
         scrape_configs:\n- job_name: node\n  static_configs:\n  - targets: ['a:9100']\n",
    )
    .unwrap();
    let out = crate::common::check_config(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Rule files and alerting are acted on; remote write is not yet.
    assert!(
        !text.contains("rule_files")
            && !text.contains("WARNING: alerting")
            && text.contains("WARNING: remote_write"),
        "{text}"
    );

    std::fs::write(
        &cfg,
        "scrape_configs:\n- job_name: k8s\n  kubernetes_sd_configs:\n  - role: pod\n",
    )
    .unwrap();
    let out = crate::common::check_config(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("kubernetes_sd_configs"), "{text}");
}

#[test]
fn openmetrics_gzip_and_parse_errors() {
    let dir = tempfile::tempdir().unwrap();
    let om = Exporter::start_with(
        "# TYPE om_requests counter\n# HELP om_requests Requests served.\n\
         om_requests_total{path=\"/\"} 5\nom_requests_created{path=\"/\"} 1.7e9\n\
         # TYPE om_temperature_celsius gauge\n# UNIT om_temperature_celsius celsius\nom_temperature_celsius 21.5\n# EOF\n",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        true,
    );
    let broken = Exporter::start("ok 1\nbad{x=\"1\" 2\n");
    let cfg = dir.path().join("odin.yml");
    write_config(
        &cfg,
        &format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
             scrape_configs:\n\
             - job_name: om\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n\
             - job_name: broken\n  static_configs:\n  - targets: ['127.0.0.1:{}']\n",
            om.port, broken.port
        ),
    );
    let odin = Odin::start(
        &dir.path().join("data"),
        &[&format!("--config.file={}", cfg.display())],
    );
    assert!(
        poll_until(Duration::from_secs(20), || {
            let om = targets(&odin, "om");
            let broken = targets(&odin, "broken");
            om.len() == 1
                && om[0]["health"] == "up"
                && broken.len() == 1
                && broken[0]["health"] == "down"
        }),
        "{}",
        odin.get("/api/v1/targets").1
    );
    // OpenMetrics, gzip-compressed: samples, and metadata with the unit.
    assert!(om.gzipped.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(value(&query(&odin, "om_requests_total")[0]), 5.0);
    assert_eq!(value(&query(&odin, "om_temperature_celsius")[0]), 21.5);
    let md = json(&odin, "/api/v1/metadata?metric=om_temperature_celsius");
    assert_eq!(
        md["data"]["om_temperature_celsius"][0],
        serde_json::json!({"type": "gauge", "help": "", "unit": "celsius"})
    );
    // A body that does not parse: the target is down, the error names the line, and
    // nothing of that scrape is stored.
    let err = targets(&odin, "broken")[0]["lastError"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(query(&odin, "ok").is_empty());
    assert_eq!(value(&query(&odin, "up{job=\"broken\"}")[0]), 0.0);
}
