//! Compatibility with Debian's Prometheus 2.42 both ways: promtool and Prometheus read
//! the blocks ODIN writes, and ODIN reads the blocks promtool writes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{
    Odin, TestSeries, agent, block_dirs, copy_dir, free_port, go_g, have_prometheus, odin_dump,
    poll_until, wait_timeout,
};

/// 2023-11-14T22:00:00Z, aligned to 2 h so the first block covers a whole range.
const T0: i64 = 1_699_999_200_000;
const STEP: i64 = 15_000;

fn require_prometheus() {
    assert!(
        have_prometheus(),
        "promtool and prometheus (Debian's 2.42) are needed: scripts/test.sh installs them"
    );
}

/// Three series over four hours with awkward values: counters, a gauge with NaN,
/// ±Inf and a staleness marker.
fn dataset() -> Vec<TestSeries> {
    let n = (4 * 3_600_000 / STEP) as usize;
    let mut counter = TestSeries::new(
        &[
            ("__name__", "odin_test_total"),
            ("job", "t"),
            ("instance", "a"),
        ],
        vec![],
    );
    let mut gauge = TestSeries::new(
        &[
            ("__name__", "odin_test_gauge"),
            ("job", "t"),
            ("instance", "a"),
        ],
        vec![],
    );
    let mut jitter = TestSeries::new(
        &[
            ("__name__", "odin_test_gauge"),
            ("job", "t"),
            ("instance", "b"),
        ],
        vec![],
    );
    for i in 0..n {
        let t = T0 + i as i64 * STEP;
        counter.samples.push((t, (i * 3) as f64));
        let g = match i % 97 {
            13 => f64::NAN,
            29 => f64::INFINITY,
            41 => f64::NEG_INFINITY,
            53 => odin::model::stale_nan(),
            _ => (i as f64 * 0.37).sin() * 1e3,
        };
        gauge.samples.push((t, g));
        // Irregular timestamps exercise every delta-of-delta bucket.
        let jt = t + ((i * 7919) % 4000) as i64;
        jitter.samples.push((jt, i as f64 * 1.5e-7));
    }
    vec![counter, gauge, jitter]
}

/// Sends the dataset in time order, 40 timestamps per request.
fn send(odin: &Odin, data: &[TestSeries]) {
    let n = data[0].samples.len();
    for start in (0..n).step_by(40) {
        let batch: Vec<TestSeries> = data
            .iter()
            .map(|s| TestSeries {
                labels: s.labels.clone(),
                samples: s.samples[start..(start + 40).min(n)].to_vec(),
            })
            .collect();
        let (code, msg) = odin.write(&batch);
        assert_eq!(code, 204, "{msg}");
    }
}

fn expected_lines(data: &[TestSeries], min_t: i64, max_t_excl: i64) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in data {
        for &(t, v) in &s.samples {
            if t >= min_t && t < max_t_excl {
                out.insert(format!("{} {} {}", s.label_string(), go_g(v), t));
            }
        }
    }
    out
}

fn meta_range(block: &Path) -> (i64, i64) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(block.join("meta.json")).unwrap()).unwrap();
    (
        meta["minTime"].as_i64().unwrap(),
        meta["maxTime"].as_i64().unwrap(),
    )
}

#[test]
fn promtool_and_prometheus_read_odins_block() {
    require_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let data = dataset();
    let odin = Odin::start(dir.path(), &[]);
    send(&odin, &data);
    // The head spans 4 h > 1.5 × 2 h: the first 2 h range becomes a block.
    assert!(
        poll_until(Duration::from_secs(30), || !block_dirs(dir.path())
            .is_empty()),
        "no block was cut from the head"
    );
    assert_eq!(odin.stop().code(), Some(0));
    let blocks = block_dirs(dir.path());
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let block = &blocks[0];
    let (min_t, max_t) = meta_range(block);
    assert_eq!((min_t, max_t), (T0, T0 + 7_200_000));

    // promtool reads a directory holding just the block (it cannot read ODIN's WAL).
    let promdir = tempfile::tempdir().unwrap();
    let ulid = block.file_name().unwrap().to_str().unwrap().to_string();
    copy_dir(block, &promdir.path().join(&ulid));
    std::fs::create_dir_all(promdir.path().join("wal")).unwrap();

    let dir_arg = promdir.path().to_str().unwrap();
    let text = promtool(&["tsdb", "analyze", dir_arg, &ulid]).join("\n");
    assert!(text.contains("Series: 3"), "{text}");

    let dumped = promtool(&["tsdb", "dump", dir_arg]);
    let got: BTreeSet<String> = dumped.iter().cloned().collect();
    assert_eq!(got.len(), dumped.len(), "promtool listed a sample twice");
    let want = expected_lines(&data, min_t, max_t);
    assert_eq!(got.len(), want.len());
    assert_eq!(
        got, want,
        "promtool tsdb dump differs from what ODIN was sent"
    );

    // Prometheus 2.42 started on that directory answers queries with the same values.
    let port = free_port();
    let cfg = promdir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", promdir.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = agent();
    let base = format!("http://127.0.0.1:{port}");
    let ready = poll_until(Duration::from_secs(60), || {
        http.get(&format!("{base}/-/ready"))
            .call()
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    });
    assert!(ready, "prometheus did not become ready");
    for (series, idx) in [(&data[0], 100usize), (&data[1], 200), (&data[2], 300)] {
        let (t, v) = series.samples[idx];
        let selector = series.label_string();
        let url = format!(
            "{base}/api/v1/query?query={}&time={}",
            urlencode(&selector),
            t as f64 / 1000.0
        );
        let mut r = http.get(&url).call().unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let value = &body["data"]["result"][0]["value"];
        assert_eq!(value[0].as_f64().unwrap(), t as f64 / 1000.0, "{body}");
        let got: f64 = value[1].as_str().unwrap().parse().unwrap();
        assert!(
            got == v || (got.is_nan() && v.is_nan()),
            "{selector} at {t}: {got} != {v}"
        );
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(prom.id() as i32, libc::SIGTERM);
    }
    wait_timeout(&mut prom, Duration::from_secs(30));
    let _ = prom.kill();
}

/// Runs promtool, asserts it succeeded, and returns its standard output's lines.
fn promtool(args: &[&str]) -> Vec<String> {
    let out = Command::new("promtool").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn odin_reads_a_block_promtool_wrote() {
    require_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let mut om = String::new();
    om.push_str("# HELP om_requests Requests.\n# TYPE om_requests counter\n");
    for i in 0..300 {
        let t = 1_700_000_000 + i * 15;
        om.push_str(&format!(
            "om_requests_total{{code=\"200\",path=\"/a\"}} {} {}\n",
            i * 2,
            t
        ));
        om.push_str(&format!(
            "om_requests_total{{code=\"500\",path=\"/a\"}} {} {}\n",
            i / 7,
            t
        ));
    }
    om.push_str("# HELP om_temp Temperature.\n# TYPE om_temp gauge\n");
    for i in 0..300 {
        let t = 1_700_000_000 + i * 15;
        om.push_str(&format!(
            "om_temp{{sensor=\"x\"}} {} {}\n",
            20.0 + (i as f64) * 0.125,
            t
        ));
    }
    om.push_str("# EOF\n");
    let input = dir.path().join("in.om");
    std::fs::write(&input, om).unwrap();
    let out_dir = dir.path().join("blocks");
    let out_arg = out_dir.to_str().unwrap();
    promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        input.to_str().unwrap(),
        out_arg,
    ]);
    std::fs::create_dir_all(out_dir.join("wal")).unwrap();
    let mut want = promtool(&["tsdb", "dump", out_arg]);
    want.sort();
    assert_eq!(want.len(), 900);

    let mut got = odin_dump(&out_dir);
    got.sort();
    assert_eq!(got, want);
}
