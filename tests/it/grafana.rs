//! What Grafana 10/11's Prometheus datasource sends, replayed against a running ODIN:
//! the health check, buildinfo, the metric browser (labels, label values and series
//! with `match[]`), metadata, Explore's instant query and a dashboard's range query.
//! Each answer is checked for the shape Grafana parses.

use serde_json::Value;

use crate::common::{Odin, TestSeries};

const FORM: &str = "application/x-www-form-urlencoded";

fn json(code_body: (u16, String)) -> Value {
    let (code, body) = code_body;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    v
}

fn start_with_data() -> (tempfile::TempDir, Odin, i64) {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    // Ten minutes of a counter on two hosts and a gauge, 15 s apart, ending now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now - 600_000;
    let points = |scale: f64| {
        (0..40)
            .map(|i| (t0 + i * 15_000, i as f64 * scale))
            .collect()
    };
    let series = vec![
        TestSeries::new(
            &[
                ("__name__", "node_cpu_seconds_total"),
                ("instance", "a:9100"),
                ("job", "node"),
                ("mode", "idle"),
            ],
            points(15.0),
        ),
        TestSeries::new(
            &[
                ("__name__", "node_cpu_seconds_total"),
                ("instance", "b:9100"),
                ("job", "node"),
                ("mode", "idle"),
            ],
            points(30.0),
        ),
        TestSeries::new(
            &[
                ("__name__", "DCGM_FI_DEV_GPU_TEMP"),
                ("gpu", "0"),
                ("instance", "a:9400"),
                ("job", "dcgm"),
            ],
            points(0.5),
        ),
    ];
    assert_eq!(odin.write(&series).0, 204);
    (dir, odin, now)
}

#[test]
fn health_check_and_buildinfo() {
    let (_dir, odin, _) = start_with_data();
    // Grafana's "Save & test": an instant query of 1+1 at time 4.
    let v = json(odin.post("/api/v1/query", FORM, b"query=1%2B1&time=4"));
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"], serde_json::json!([4, "2"]));

    let v = json(odin.get("/api/v1/status/buildinfo"));
    let version = v["data"]["version"].as_str().unwrap();
    assert!(version.starts_with("2."), "{version}");
    assert!(v["data"].get("features").is_none());
}

#[test]
fn metric_browser() {
    let (_dir, odin, now) = start_with_data();
    let start = (now - 3_600_000) / 1000;
    let end = now / 1000 + 1;

    let v = json(odin.get(&format!("/api/v1/labels?start={start}&end={end}")));
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(names, ["__name__", "gpu", "instance", "job", "mode"]);

    let v = json(odin.get(&format!(
        "/api/v1/label/__name__/values?start={start}&end={end}"
    )));
    assert_eq!(
        v["data"],
        serde_json::json!(["DCGM_FI_DEV_GPU_TEMP", "node_cpu_seconds_total"])
    );

    // Label values narrowed by a selector, as the browser does once a metric is picked.
    let m = "match%5B%5D=%7B__name__%3D%22node_cpu_seconds_total%22%7D";
    let v = json(odin.get(&format!(
        "/api/v1/label/instance/values?{m}&start={start}&end={end}"
    )));
    assert_eq!(v["data"], serde_json::json!(["a:9100", "b:9100"]));
    let v = json(odin.post(
        "/api/v1/labels",
        FORM,
        format!("{m}&start={start}&end={end}").as_bytes(),
    ));
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "instance", "job", "mode"])
    );

    let v = json(odin.post(
        "/api/v1/series",
        FORM,
        format!("{m}&start={start}&end={end}").as_bytes(),
    ));
    let series = v["data"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["instance"], "a:9100");
    assert_eq!(series[0]["__name__"], "node_cpu_seconds_total");

    // Metadata: a map (empty until scraping brings HELP/TYPE).
    let v = json(odin.get("/api/v1/metadata"));
    assert!(v["data"].is_object());

    // Bad input gets Prometheus's errors.
    let (code, body) = odin.get("/api/v1/series");
    assert_eq!(code, 400, "{body}");
    let (code, body) = odin.get("/api/v1/label/bad-name/values");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn explore_and_dashboard_queries() {
    let (_dir, odin, now) = start_with_data();
    let t = now / 1000;
    let q = "query=sum+by+%28instance%29+%28rate%28node_cpu_seconds_total%5B5m%5D%29%29";
    let v = json(odin.post("/api/v1/query", FORM, format!("{q}&time={t}").as_bytes()));
    assert_eq!(v["data"]["resultType"], "vector");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    let mut rates: Vec<(String, f64)> = result
        .iter()
        .map(|r| {
            assert_eq!(r["metric"].as_object().unwrap().len(), 1);
            let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"]["instance"].as_str().unwrap().to_string(), value)
        })
        .collect();
    rates.sort_by(|a, b| a.0.cmp(&b.0));
    // Counters growing 15 and 30 per 15 s: rates of 1 and 2 per second.
    assert!((rates[0].1 - 1.0).abs() < 1e-9, "{rates:?}");
    assert!((rates[1].1 - 2.0).abs() < 1e-9, "{rates:?}");

    // A dashboard panel: a range query with a step, as Grafana posts it.
    let body = format!("{q}&start={}&end={}&step=60", t - 300, t);
    let v = json(odin.post("/api/v1/query_range", FORM, body.as_bytes()));
    assert_eq!(v["data"]["resultType"], "matrix");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["metric"]["instance"], "a:9100");
    let values = series[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 6);
    assert!(values[0][0].is_number() && values[0][1].is_string());

    // Errors: bad query (400 bad_data), too many points (400).
    let (code, body) = odin.post("/api/v1/query", FORM, b"query=sum(");
    assert_eq!(code, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errorType"], "bad_data");
    let (code, _) = odin.get(&format!(
        "/api/v1/query_range?query=up&start=0&end={t}&step=1"
    ));
    assert_eq!(code, 400);
    // The server keeps serving.
    json(odin.post("/api/v1/query", FORM, b"query=1"));
}

#[test]
fn deeply_nested_queries_are_answered_or_refused_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    // 3,000 terms: Prometheus answers this, and so must ODIN.
    let chain = vec!["vector(1)"; 3000].join(" or ");
    let body = format!("query={}&time=100", chain.replace(' ', "+"));
    let v = json(odin.post("/api/v1/query", FORM, body.as_bytes()));
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
    // Far deeper than any real query: a clear 400.
    let deep = format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000));
    let (code, body) = odin.post("/api/v1/query", FORM, format!("query={deep}").as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("too deeply nested"), "{body}");
    // Still serving.
    json(odin.post("/api/v1/query", FORM, b"query=1"));
}

/// A query whose client goes away is stopped, as Prometheus stops it (Grafana cancels
/// the requests of a dashboard the user leaves): `odin_engine_queries`, counted on the
/// evaluating thread, drops back to 0 long before the evaluation could have finished.
#[test]
fn a_query_stops_when_its_client_goes_away() {
    use std::io::Write as _;
    use std::time::Duration;

    use crate::common::poll_until;

    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let evaluating = || -> Option<i64> {
        let (_, body) = odin.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("odin_engine_queries "))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(evaluating(), Some(0));
    // 57,600 outer steps of a 3,600-step subquery: about half a minute in a release
    // build, far longer in a debug one.
    let body = "query=count_over_time(count_over_time(vector(1)[1h:1s])[40d:1m])&time=1795790000";
    let mut conn = std::net::TcpStream::connect(odin.addr).unwrap();
    write!(
        conn,
        "POST /api/v1/query HTTP/1.1\r\nHost: odin\r\nContent-Type: {FORM}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    assert!(
        poll_until(Duration::from_secs(20), || evaluating() == Some(1)),
        "the query never started"
    );
    drop(conn);
    assert!(
        poll_until(Duration::from_secs(5), || evaluating() == Some(0)),
        "the query went on after its client had gone"
    );
    json(odin.post("/api/v1/query", FORM, b"query=1"));
}

/// Browser clients (PromLens, a dashboard on another origin) read the API through
/// Prometheus's CORS: any origin by default, the preflight answered without
/// credentials; `--web.cors.origin` narrows it; only `/api/v1/` takes part.
#[test]
fn the_api_answers_browsers_as_prometheus_does() {
    let header = |r: &ureq::http::Response<ureq::Body>, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let agent = crate::common::agent();
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    // A read and a preflight alike: 200, any origin allowed.
    let answers_any_origin = |r: ureq::http::Response<ureq::Body>| {
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            header(&r, "access-control-allow-origin").as_deref(),
            Some("*")
        );
        r
    };
    let r = answers_any_origin(
        agent
            .get(&odin.url("/api/v1/query?query=1"))
            .header("Origin", "https://dash.example")
            .call()
            .unwrap(),
    );
    assert_eq!(
        header(&r, "access-control-allow-methods").as_deref(),
        Some("GET, POST, OPTIONS")
    );
    answers_any_origin(
        agent
            .options(&odin.url("/api/v1/query"))
            .header("Origin", "https://dash.example")
            .header("Access-Control-Request-Method", "POST")
            .call()
            .unwrap(),
    );
    // Without an Origin, no CORS headers; outside /api/v1/, none either.
    let r = agent
        .get(&odin.url("/api/v1/query?query=1"))
        .call()
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = agent
        .get(&odin.url("/federate?match[]=up"))
        .header("Origin", "https://dash.example")
        .call()
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    drop(odin);

    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[r"--web.cors.origin=https://dash\.example"]);
    let allowed = |origin: &str| {
        let r = agent
            .get(&odin.url("/api/v1/query?query=1"))
            .header("Origin", origin)
            .call()
            .unwrap();
        header(&r, "access-control-allow-origin")
    };
    assert_eq!(
        allowed("https://dash.example").as_deref(),
        Some("https://dash.example")
    );
    // Anchored: a longer origin does not match.
    assert_eq!(allowed("https://dash.example.evil"), None);
    assert_eq!(allowed("https://other.example"), None);
}
