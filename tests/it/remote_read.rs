//! Remote read: Prometheus 2.42 configured with `remote_read` pointing at ODIN answers
//! queries with ODIN's data (it asks for streamed XOR chunks), and the sampled form
//! and bad requests over plain HTTP.

use std::process::{Command, Stdio};
use std::time::Duration;

use prost::Message;

use crate::common::{
    Killed, Odin, TestSeries, agent, free_port, have_prometheus, now_ms, poll_until,
};
use odin::remote::prompb;

#[test]
fn prometheus_reads_odin_through_remote_read() {
    assert!(
        have_prometheus(),
        "prometheus (Debian's 2.42) is needed: scripts/test.sh installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(&dir.path().join("odin"), &[]);
    // Ten minutes of samples ending a minute ago, 15 s apart.
    let end = now_ms() / 1000 * 1000 - 60_000;
    let samples: Vec<(i64, f64)> = (0..40)
        .map(|i| (end - (39 - i) * 15_000, i as f64))
        .collect();
    let (status, body) = odin.write(&[TestSeries::new(
        &[
            ("__name__", "rr_metric"),
            ("job", "odin"),
            ("instance", "a"),
        ],
        samples,
    )]);
    assert_eq!(status, 204, "{body}");

    let port = free_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1m\nremote_read:\n  - url: {}\n    read_recent: true\n",
            odin.url("/api/v1/read")
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let a = agent();
    let prom = format!("http://127.0.0.1:{port}");
    assert!(poll_until(Duration::from_secs(30), || a
        .get(&format!("{prom}/-/ready"))
        .call()
        .is_ok_and(|r| r.status() == 200)));

    let query = |q: &str| -> serde_json::Value {
        let url = format!(
            "{prom}/api/v1/query?query={}&time={}",
            form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>(),
            end as f64 / 1000.0
        );
        let body = a
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    };
    let r = query("rr_metric");
    assert_eq!(r["data"]["result"][0]["value"][1], "39", "{r}");
    assert_eq!(r["data"]["result"][0]["metric"]["instance"], "a", "{r}");
    let r = query("count_over_time(rr_metric[10m])");
    assert_eq!(r["data"]["result"][0]["value"][1], "40", "{r}");
}

#[test]
fn sampled_answers_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(&dir.path().join("odin"), &[]);
    let (status, _) = odin.write(&[TestSeries::new(
        &[("__name__", "rr_metric"), ("job", "odin")],
        vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)],
    )]);
    assert_eq!(status, 204);
    let req = prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: 1500,
            end_timestamp_ms: 3000,
            matchers: vec![prompb::LabelMatcher {
                r#type: prompb::MatcherType::Eq as i32,
                name: "__name__".into(),
                value: "rr_metric".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let (status, _) = odin.post("/api/v1/read", "application/x-protobuf", &body);
    assert_eq!(status, 200);
    let mut resp = agent()
        .post(&odin.url("/api/v1/read"))
        .header("Content-Encoding", "snappy")
        .send(&body[..])
        .unwrap();
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/x-protobuf"
    );
    let raw = resp.body_mut().read_to_vec().unwrap();
    let decoded = prompb::ReadResponse::decode(
        snap::raw::Decoder::new()
            .decompress_vec(&raw)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let samples: Vec<(i64, f64)> = decoded.results[0].timeseries[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(samples, [(2000, 2.0), (3000, 3.0)]);

    let (status, msg) = odin.post("/api/v1/read", "application/x-protobuf", b"garbage");
    assert_eq!(status, 400, "{msg}");
    // The server carries on.
    assert_eq!(odin.get("/-/ready").0, 200);
}
