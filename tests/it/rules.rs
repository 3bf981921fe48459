//! Rules: `odin check rules` as promtool checks them (and promtool itself, where it
//! is installed, on the same files), recording rules evaluated by the running
//! binary, `/api/v1/rules`, reloads that keep or refuse rule files.

use std::process::Command;
use std::time::Duration;

use crate::common::{BIN, Odin, TestSeries, now_ms, poll_until};

const GOOD: &str = r#"groups:
  - name: demo
    interval: 1s
    rules:
      - record: job:demo_requests:sum
        expr: sum by (job) (demo_requests)
        labels: {source: rules}
      - record: job:demo_requests:doubled
        expr: job:demo_requests:sum * 2
"#;

const BAD: &str = r#"groups:
  - name: demo
    rules:
      - record: "bad name"
        expr: sum(
"#;

fn check(args: &[&str], files: &[&std::path::Path]) -> (bool, String) {
    let out = Command::new(BIN).args(args).args(files).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn check_rules_agrees_with_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&good, GOOD).unwrap();
    std::fs::write(&bad, BAD).unwrap();
    let (ok, text) = check(&["check", "rules"], &[&good]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 2 rules found"), "{text}");
    let (ok, text) = check(&["check", "rules"], &[&bad]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "{}: 4:9: group \"demo\", rule 1, \"bad name\": could not parse expression",
            bad.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("invalid recording rule name: bad name"),
        "{text}"
    );
    // `check config` checks the rule files the configuration names.
    // (`.yaml`: the pattern must not take the configuration itself for a rule file.)
    let cfg = dir.path().join("odin.yaml");
    std::fs::write(&cfg, "rule_files: ['*.yml']\n").unwrap();
    std::fs::remove_file(&bad).unwrap();
    let (ok, text) = check(&["check", "config"], &[&cfg]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 1 rule files found"), "{text}");
    std::fs::write(&bad, BAD).unwrap();
    let (ok, _) = check(&["check", "config"], &[&cfg]);
    assert!(!ok);
    // promtool (Debian's 2.42), when installed, judges the same files the same way.
    if Command::new("promtool").arg("--version").output().is_ok() {
        for (file, want) in [(&good, true), (&bad, false)] {
            let out = Command::new("promtool")
                .args(["check", "rules"])
                .arg(file)
                .output()
                .unwrap();
            assert_eq!(out.status.success(), want, "promtool on {}", file.display());
        }
    } else {
        eprintln!("promtool is not installed (scripts/test.sh installs it): skipping it");
    }
}

fn query(odin: &Odin, q: &str) -> Vec<serde_json::Value> {
    let (code, body) = odin.get(&format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn metric(odin: &Odin, prefix: &str) -> f64 {
    let (_, body) = odin.get("/metrics");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn recording_rules_are_evaluated_listed_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, GOOD).unwrap();
    let cfg = dir.path().join("odin.yml");
    std::fs::write(
        &cfg,
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n",
    )
    .unwrap();
    let odin = Odin::start(
        &dir.path().join("data"),
        &[
            &format!("--config.file={}", cfg.display()),
            "--web.enable-lifecycle",
        ],
    );
    // Samples keep coming, as a scrape would bring them.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = now_ms();
                let series: Vec<TestSeries> = ["a", "b"]
                    .iter()
                    .map(|i| {
                        TestSeries::new(
                            &[
                                ("__name__", "demo_requests"),
                                ("job", "app"),
                                ("instance", i),
                            ],
                            vec![(t, 5.0)],
                        )
                    })
                    .collect();
                let _ = odin.write(&series);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        evaluated_listed_and_reloaded(&odin, &rules);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

fn evaluated_listed_and_reloaded(odin: &Odin, rules: &std::path::Path) {
    let mut found = Vec::new();
    assert!(
        poll_until(Duration::from_secs(20), || {
            found = query(odin, "job:demo_requests:doubled");
            !found.is_empty()
        }),
        "nothing recorded"
    );
    assert_eq!(found[0]["metric"]["source"], "rules", "{found:?}");
    assert_eq!(found[0]["value"][1], "20");

    // The API lists the group and its rules, healthy.
    let (code, body) = odin.get("/api/v1/rules");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let group = &v["data"]["groups"][0];
    assert_eq!(group["name"], "demo", "{v}");
    assert_eq!(group["interval"], 1.0);
    assert_eq!(group["rules"][0]["type"], "recording");
    assert_eq!(group["rules"][0]["health"], "ok", "{v}");
    assert_eq!(group["rules"][1]["query"], "job:demo_requests:sum * 2");
    let (_, body) = odin.get("/api/v1/rules?type=alert");
    assert!(body.contains(r#""groups":[]"#), "{body}");
    let (_, body) = odin.get("/api/v1/rules?rule_name[]=job:demo_requests:sum");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["groups"][0]["rules"].as_array().unwrap().len(), 1);
    assert!(metric(odin, "prometheus_rule_evaluations_total") > 0.0);
    assert_eq!(
        metric(odin, "prometheus_rule_evaluation_failures_total"),
        0.0
    );

    // A reload with a broken rule file is refused whole; the rules keep running.
    std::fs::write(rules, BAD).unwrap();
    let (code, body) = odin.post("/-/reload", "text/plain", b"");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("could not parse expression"), "{body}");
    let (_, body) = odin.get("/api/v1/rules");
    assert!(body.contains("job:demo_requests:doubled"), "{body}");

    // A good one replaces the group: the new rule records, the old ones are gone
    // from the list.
    std::fs::write(
        rules,
        "groups:\n  - name: other\n    interval: 1s\n    rules:\n      - record: demo:count\n        expr: count(demo_requests)\n",
    )
    .unwrap();
    let (code, body) = odin.post("/-/reload", "text/plain", b"");
    assert_eq!(code, 200, "{body}");
    assert!(poll_until(Duration::from_secs(20), || {
        query(odin, "demo:count")
            .first()
            .is_some_and(|s| s["value"][1] == "2")
    }));
    let (_, body) = odin.get("/api/v1/rules");
    assert!(!body.contains("job:demo_requests:doubled"), "{body}");
    // The removed rules' series were marked stale: gone at once, not five minutes
    // later.
    assert!(
        poll_until(Duration::from_secs(10), || query(
            odin,
            "job:demo_requests:doubled"
        )
        .is_empty()),
        "a removed rule's series is still there"
    );
}

#[test]
fn a_rule_file_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), BAD).unwrap();
    let cfg = dir.path().join("odin.yml");
    std::fs::write(&cfg, "rule_files: [rules.yml]\n").unwrap();
    let out = crate::common::run_to_end(&cfg, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule_files"), "{err}");
    assert!(err.contains("could not parse expression"), "{err}");
}

const UNIT_RULES: &str = r#"groups:
  - name: node
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - record: job:requests:rate1m
        expr: sum by (job) (rate(requests_total[1m]))
"#;

fn unit_test(expected_up: &str, expected_rate: &str) -> String {
    format!(
        r#"rule_files: [unit_rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="node", instance="a"}}'
        values: '1 1 1 0 0'
      - series: 'up{{job="node", instance="b"}}'
        values: '1 1 _ 1 stale'
      - series: 'requests_total{{job="node", instance="a"}}'
        values: '0+60x10'
    promql_expr_test:
      - expr: job:up:sum
        eval_time: 1m
        exp_samples:
          - labels: 'job:up:sum{{job="node"}}'
            value: {expected_up}
      - expr: job:up:sum
        eval_time: 4m
        exp_samples:
          - labels: 'job:up:sum{{job="node"}}'
            value: 0
      - expr: job:requests:rate1m
        eval_time: 5m
        exp_samples:
          - labels: 'job:requests:rate1m{{job="node"}}'
            value: {expected_rate}
"#
    )
}

#[test]
fn rule_unit_tests_run_as_promtool_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("unit_rules.yml"), UNIT_RULES).unwrap();
    let good = dir.path().join("good_test.yml");
    let bad = dir.path().join("bad_test.yml");
    std::fs::write(&good, unit_test("2", "1")).unwrap();
    std::fs::write(&bad, unit_test("3", "1")).unwrap();
    let (ok, text) = check(&["test", "rules"], &[&good]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let (ok, text) = check(&["test", "rules"], &[&bad]);
    assert!(!ok, "{text}");
    assert!(text.contains(r#"expr: "job:up:sum", time: 1m,"#), "{text}");
    assert!(
        text.contains(r#"exp: {__name__="job:up:sum", job="node"} 3E+00"#),
        "{text}"
    );
    assert!(
        text.contains(r#"got: {__name__="job:up:sum", job="node"} 2E+00"#),
        "{text}"
    );
    // An alert test item without its alert's name is refused, as by promtool.
    let alerts = dir.path().join("alert_test.yml");
    std::fs::write(
        &alerts,
        "rule_files: [unit_rules.yml]\ntests:\n  - input_series: []\n    alert_rule_test:\n      - eval_time: 1m\n",
    )
    .unwrap();
    let (ok, text) = check(&["test", "rules"], &[&alerts]);
    assert!(
        !ok && text.contains("misses required attribute alertname at eval_time 1m"),
        "{text}"
    );
    // promtool, where installed, judges the same files the same way.
    if Command::new("promtool").arg("--version").output().is_ok() {
        for (file, want) in [(&good, true), (&bad, false)] {
            let out = Command::new("promtool")
                .args(["test", "rules"])
                .arg(file)
                .output()
                .unwrap();
            assert_eq!(
                out.status.success(),
                want,
                "promtool on {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// The built-in pack's unit tests (rules/gpu-server.test.yml) pass in ODIN and in
/// promtool alike.
#[test]
fn the_built_in_pack_passes_its_unit_tests_in_odin_and_promtool() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/gpu-server.test.yml");
    let (ok, text) = check(&["test", "rules"], &[&tests]);
    assert!(ok, "{text}");
    if Command::new("promtool").arg("--version").output().is_ok() {
        let out = Command::new("promtool")
            .args(["test", "rules"])
            .arg(&tests)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A recorded sample: Unix ms and value.
type Point = (i64, f64);

/// `rule[window]` at `at_ms` on a server: series (labels as text) -> (ms, value).
fn recorded(
    base: &str,
    rule: &str,
    at_ms: i64,
    window_s: i64,
) -> std::collections::BTreeMap<String, Vec<(i64, f64)>> {
    let url = format!(
        "{base}/api/v1/query?query={}&time={}.{:03}",
        form_urlencoded::byte_serialize(format!("{rule}[{window_s}s]").as_bytes())
            .collect::<String>(),
        at_ms / 1000,
        at_ms % 1000
    );
    let mut r = crate::common::agent().get(&url).call().expect("query");
    let body = r.body_mut().read_to_string().unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for s in v["data"]["result"].as_array().cloned().unwrap_or_default() {
        let mut labels: Vec<(String, String)> = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        labels.sort();
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    p[1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect();
        out.insert(format!("{labels:?}"), points);
    }
    out
}

/// Prometheus 2.42 and ODIN on the same configuration: `rules`, evaluated every
/// second. The same file path in both: a group's place in its interval comes from it.
fn start_both(
    dir: &std::path::Path,
    rules: &std::path::Path,
) -> (crate::promql_diff::Prometheus, Odin) {
    let config = dir.join("diff.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files: ['{}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let prometheus = crate::promql_diff::Prometheus::start(&dir.join("prom"), &config);
    let odin = Odin::start(
        &dir.join("odin"),
        &[&format!("--config.file={}", config.display())],
    );
    (prometheus, odin)
}

/// Remote-writes the same series to each server.
fn write_to_both(bases: &[&str], series: &[TestSeries]) {
    let body = crate::common::encode_write(series);
    for base in bases {
        let mut r = crate::common::agent()
            .post(&format!("{}/api/v1/write", base.trim_end_matches('/')))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(&body[..])
            .expect("remote write");
        assert_eq!(
            r.status().as_u16(),
            204,
            "{base}: {}",
            r.body_mut().read_to_string().unwrap_or_default()
        );
    }
}

/// The same alerting rules and the same remote-written data in Prometheus 2.42 and
/// ODIN: the same alert state transitions, compared as the `ALERTS` and
/// `ALERTS_FOR_STATE` series both write (pending, then firing after `for`,
/// `keep_firing_for`, resolution), sample for sample at the same timestamps.
#[test]
fn alert_states_match_prometheus() {
    assert!(
        crate::common::have_prometheus(),
        "promtool and prometheus (Debian's 2.42) are needed: scripts/test.sh installs them"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alert_diff.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: alert-diff
    interval: 1s
    rules:
      - alert: Hot
        expr: temp > 50
        for: 3s
        labels: {severity: warning}
      - alert: Scorching
        expr: temp > 70
        keep_firing_for: 2s
      - alert: Warm
        expr: max by (site) (temp) > 60
        for: 1s
"#,
    )
    .unwrap();
    let (prometheus, odin) = start_both(dir.path(), &rules);
    // Cool until 5 s from now (so neither server saw an alert before both ran),
    // then waves of different periods cross the thresholds again and again.
    let now = now_ms() / 1000 * 1000;
    let series: Vec<TestSeries> = (0..3)
        .map(|i| {
            let temp: Vec<(i64, f64)> = (-30..35)
                .map(|s: i64| {
                    let v = if s < 5 {
                        20.0
                    } else {
                        let period = 7 + 3 * i;
                        let phase = (s + i * 2).rem_euclid(period) as f64 / period as f64;
                        30.0 + 50.0 * (phase * std::f64::consts::TAU).sin().abs()
                    };
                    (now + s * 1000, v)
                })
                .collect();
            let site = if i < 2 { "north" } else { "south" };
            TestSeries::new(
                &[
                    ("__name__", "temp"),
                    ("site", site),
                    ("instance", &format!("t{i}")),
                ],
                temp,
            )
        })
        .collect();
    write_to_both(&[&prometheus.base, &odin.url("")], &series);
    // Compared over the 20 s from 6 s ahead, once both are past it.
    let window_end = now + 26_000;
    assert!(
        poll_until(Duration::from_secs(60), || now_ms() > window_end + 2_000),
        "clock"
    );
    let odin_base = odin.url("");
    let odin_base = odin_base.trim_end_matches('/');
    for name in ["ALERTS", "ALERTS_FOR_STATE"] {
        let p = recorded(&prometheus.base, name, window_end, 20);
        let o = recorded(odin_base, name, window_end, 20);
        assert!(
            p.len() >= 4,
            "Prometheus wrote too few {name} series to compare: {p:?}"
        );
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            o.keys().collect::<Vec<_>>(),
            "{name}: series differ"
        );
        // Sample for sample where both evaluated (a missed iteration in either,
        // on a busy machine, leaves a gap that is not a difference).
        for (series, want) in &p {
            let got = &o[series];
            let common: Vec<_> = want
                .iter()
                .filter_map(|w| got.iter().find(|g| g.0 == w.0).map(|g| (w, g)))
                .collect();
            assert!(
                common.len() * 5 >= want.len() * 4,
                "{name} {series}: few common timestamps: {want:?} vs {got:?}"
            );
            for (w, g) in common {
                assert_eq!(w, g, "{name} {series}: {want:?} vs {got:?}");
            }
        }
    }
}

/// The same rule file and the same remote-written data in Prometheus 2.42 and ODIN:
/// the same recorded series, at the same aligned timestamps, with the same values.
#[test]
fn recorded_series_match_prometheus() {
    assert!(
        crate::common::have_prometheus(),
        "promtool and prometheus (Debian's 2.42) are needed: scripts/test.sh installs them"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("diff_rules.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: diff
    interval: 1s
    rules:
      - record: job:req:rate30s
        expr: sum by (job) (rate(req_total[30s]))
      - record: job:req:doubled
        expr: job:req:rate30s * 2
      - record: instance:lat:max20s
        expr: max_over_time(lat_seconds[20s])
      - record: job:lat:avg
        expr: avg by (job) (lat_seconds) > 0.08
  - name: diff-2
    interval: 2s
    rules:
      - record: job:req:increase1m
        expr: sum without (instance) (increase(req_total[1m]))
"#,
    )
    .unwrap();
    let (prometheus, odin) = start_both(dir.path(), &rules);
    // A second of data for two minutes back and forty seconds ahead, all written
    // before the rules read it, so both servers see the same samples.
    let now = now_ms() / 1000 * 1000;
    let series: Vec<TestSeries> = (0..4)
        .flat_map(|i| {
            let instance = format!("i{i}");
            let job = if i < 2 { "api" } else { "db" };
            let req: Vec<(i64, f64)> = (-120..40)
                .map(|s| (now + s * 1000, ((s + 120) * (i + 1) + (s * s) % 7) as f64))
                .collect();
            let lat: Vec<(i64, f64)> = (-120..40)
                .map(|s| {
                    (
                        now + s * 1000,
                        0.05 + ((s * 31 + i * 17).rem_euclid(23)) as f64 / 100.0,
                    )
                })
                .collect();
            [
                TestSeries::new(
                    &[
                        ("__name__", "req_total"),
                        ("job", job),
                        ("instance", &instance),
                    ],
                    req,
                ),
                TestSeries::new(
                    &[
                        ("__name__", "lat_seconds"),
                        ("job", job),
                        ("instance", &instance),
                    ],
                    lat,
                ),
            ]
        })
        .collect();
    write_to_both(&[&prometheus.base, &odin.url("")], &series);
    // Both evaluate for a while: until each has recorded every rule several times
    // in the window compared.
    let rules_recorded = [
        "job:req:rate30s",
        "job:req:doubled",
        "instance:lat:max20s",
        "job:lat:avg",
        "job:req:increase1m",
    ];
    let odin_base = odin.url("");
    let filled = |base: &str, at: i64| {
        rules_recorded.iter().all(|rule| {
            recorded(base, rule, at, 8)
                .values()
                .map(Vec::len)
                .sum::<usize>()
                >= 3
        })
    };
    let mut at = 0;
    assert!(
        poll_until(Duration::from_secs(30), || {
            at = now_ms() - 2_000;
            filled(&prometheus.base, at) && filled(&odin_base, at)
        }),
        "the servers did not record every rule"
    );
    for rule in rules_recorded {
        let p = recorded(&prometheus.base, rule, at, 8);
        let o = recorded(&odin_base, rule, at, 8);
        assert!(!p.is_empty(), "Prometheus recorded no {rule}");
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            o.keys().collect::<Vec<_>>(),
            "{rule}: series differ"
        );
        let mut compared = 0;
        for (series, want) in &p {
            let got = &o[series];
            let common: Vec<(&Point, &Point)> = want
                .iter()
                .filter_map(|w| got.iter().find(|g| g.0 == w.0).map(|g| (w, g)))
                .collect();
            compared += common.len();
            for (w, g) in common {
                let scale = w.1.abs().max(g.1.abs()).max(1e-300);
                assert!(
                    (w.1 - g.1).abs() / scale <= 1e-9,
                    "{rule} {series} at {}: Prometheus {}, ODIN {}",
                    w.0,
                    w.1,
                    g.1
                );
            }
            // Same place in the interval: every ODIN timestamp is one Prometheus
            // would use.
            let offset = want[0].0.rem_euclid(1000);
            assert!(
                got.iter().all(|g| g.0.rem_euclid(1000) == offset),
                "{rule}: {want:?} vs {got:?}"
            );
        }
        assert!(
            compared >= 3,
            "{rule}: only {compared} samples at common timestamps"
        );
    }
}

/// Runs `promtool test rules` on `file` when promtool is installed: its verdict and
/// the failures it prints (on stderr).
fn promtool_test(file: &std::path::Path) -> Option<(bool, String)> {
    Command::new("promtool").arg("--version").output().ok()?;
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(file)
        .output()
        .unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// Alerting rules through promtool's unit tests: pending, `for`, firing, resolved,
/// `ALERTS` and `ALERTS_FOR_STATE`, and annotations using Prometheus's template
/// functions (`query`, `range`, `humanize*`, `reReplaceAll`, `args`, …) expanded
/// exactly as Prometheus 2.42 expands them. A wrong expectation fails in both, with
/// the same report.
#[test]
fn alert_rule_tests_and_templates_agree_with_promtool() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules");
    let good = fixtures.join("alert_templates.test.yml");
    let (ok, text) = check(&["test", "rules"], &[&good]);
    assert!(ok, "{text}");
    if let Some((ok, text)) = promtool_test(&good) {
        assert!(ok, "promtool: {text}");
    }
    // The same test, expecting another description: both fail, and say the same.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures.join("alert_templates.yml"),
        dir.path().join("alert_templates.yml"),
    )
    .unwrap();
    let bad = dir.path().join("bad.test.yml");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&bad, text.replace("value 0, 0, lab", "value 1, 1, lab")).unwrap();
    let (ok, odin_text) = check(&["test", "rules"], &[&bad]);
    assert!(!ok, "{odin_text}");
    assert!(odin_text.contains("alertname: InstanceDown, time: 7m, \n        exp:[\n            0:\n              Labels:{alertname=\"InstanceDown\""), "{odin_text}");
    if let Some((ok, promtool_text)) = promtool_test(&bad) {
        assert!(!ok);
        assert!(
            odin_text.contains(promtool_text.trim_end()),
            "odin:\n{odin_text}\npromtool:\n{promtool_text}"
        );
    }
    // Templates that do not parse fail `check rules`, worded as promtool words them.
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up == 0\n        labels: {sev: '{{ nosuch }}'}\n        annotations: {d: '{{ .Labels.x'}\n",
    )
    .unwrap();
    let (ok, text) = check(&["check", "rules"], &[&broken]);
    assert!(!ok, "{text}");
    let want = [
        format!(
            "{}: group \"g\", rule 1, \"X\": label \"sev\": template: __alert_X:1: function \"nosuch\" not defined",
            broken.display()
        ),
        format!(
            "{}: group \"g\", rule 1, \"X\": annotation \"d\": template: __alert_X:1: unclosed action",
            broken.display()
        ),
    ];
    for line in &want {
        assert!(text.contains(line.as_str()), "{text}");
    }
    if Command::new("promtool").arg("--version").output().is_ok() {
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&broken)
            .output()
            .unwrap();
        let promtool_text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        for line in &want {
            assert!(promtool_text.contains(line.as_str()), "{promtool_text}");
        }
    }
}

/// Six hours of data through promtool 2.42's rule engine and ODIN's, with alerts of
/// every kind (`for`, `keep_firing_for`, an alert on a recorded series, one on
/// `changes`): a unit test that expects nothing makes both print what they got —
/// `ALERTS` and `ALERTS_FOR_STATE` every 7 minutes, the firing alerts with their
/// expanded annotations every 11 — and the two reports must be the same, line for
/// line.
#[test]
fn six_hours_of_alert_states_match_promtool() {
    if Command::new("promtool").arg("--version").output().is_err() {
        panic!("promtool (Debian's prometheus package) is needed: scripts/test.sh installs it");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hours.yml"),
        r#"groups:
  - name: hours
    interval: 1m
    rules:
      - record: job:load:avg
        expr: avg by (job) (load)
      - alert: LoadHigh
        expr: load > 65
        for: 3m
        labels: {severity: warning}
        annotations: {summary: '{{ $labels.instance }} load {{ $value | humanize }}'}
      - alert: LoadCritical
        expr: load > 85
        keep_firing_for: 5m
      - alert: JobLoadHigh
        expr: job:load:avg > 60
        for: 15m
      - alert: Flapping
        expr: changes(load[10m]) > 8
        for: 3m
        keep_firing_for: 2m
"#,
    )
    .unwrap();
    let mut test = String::from(
        "rule_files: [hours.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    for i in 0..6_i64 {
        let values: Vec<String> = (0..=360_i64)
            .map(|m| {
                let wave = 40.0 * ((m + 37 * i) as f64 / (23 + 5 * i) as f64).sin();
                let noise = (13 * ((m * 7 + i * 3) % 5) - 26) as f64;
                format!("{:.1}", 50.0 + wave + noise)
            })
            .collect();
        let job = if i < 3 { "api" } else { "db" };
        test += &format!(
            "      - series: 'load{{job=\"{job}\", instance=\"h{i}\"}}'\n        values: '{}'\n",
            values.join(" ")
        );
    }
    test += "    promql_expr_test:\n";
    for t in (0..=360).step_by(7) {
        for e in ["ALERTS", "ALERTS_FOR_STATE"] {
            test += &format!("      - expr: {e}\n        eval_time: {t}m\n");
        }
    }
    test += "    alert_rule_test:\n";
    for t in (0..=360).step_by(11) {
        for a in ["LoadHigh", "LoadCritical", "JobLoadHigh", "Flapping"] {
            test += &format!("      - alertname: {a}\n        eval_time: {t}m\n");
        }
    }
    let file = dir.path().join("hours.test.yml");
    std::fs::write(&file, test).unwrap();
    let (ok, odin_text) = check(&["test", "rules"], &[&file]);
    let (promtool_ok, promtool_text) = promtool_test(&file).unwrap();
    assert!(!ok && !promtool_ok);
    let report = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("Unit Testing"))
            .map(str::to_string)
            .collect()
    };
    let (odin_lines, promtool_lines) = (report(&odin_text), report(&promtool_text));
    // Alerts in every state were seen, not only quiet stretches.
    for state in [
        "alertstate=\"pending\"",
        "alertstate=\"firing\"",
        "Annotations:{summary=",
    ] {
        assert!(promtool_text.contains(state), "no {state} in the report");
    }
    assert!(promtool_lines.len() > 1000, "{}", promtool_lines.len());
    for (i, (p, o)) in promtool_lines.iter().zip(&odin_lines).enumerate() {
        assert_eq!(p, o, "line {i} differs");
    }
    assert_eq!(promtool_lines.len(), odin_lines.len());
}
