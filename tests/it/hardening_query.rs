//! Issue 14, the query paths: requests that ran on for ever or without bounds answer
//! promptly, within Prometheus's bounds and under `--query.timeout`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Odin, TestSeries};

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `GET path`, which must answer within `secs`; returns the status and the body.
fn answered_within(odin: &Odin, path: &str, secs: u64) -> (u16, Value) {
    let started = Instant::now();
    let (code, body) = odin.get(path);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(secs), "{path}: took {took:?}");
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (code, v)
}

/// `n` series of one sample each at `t_ms`.
fn write_series(odin: &Odin, n: usize, t_ms: i64) {
    let series: Vec<TestSeries> = (0..n)
        .map(|i| {
            let i = i.to_string();
            TestSeries::new(&[("__name__", "m"), ("i", &i)], vec![(t_ms, 1.0)])
        })
        .collect();
    let (code, body) = odin.write(&series);
    assert_eq!(code, 204, "{body}");
}

/// The issue's requests: `end` at i64::MAX ms with a step of 1e15 s never answered
/// (the step loop wrapped); the full i64 span with step 1 ran to the timeout instead
/// of the points check's 400 (`(end - start) / step` overflowed). Times and steps
/// within Prometheus's bounds but as large as they go answer promptly too.
#[test]
fn issue14_query_range_at_the_ends_of_time_answers_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let now = now_s();
    // Samples on both sides of `start`.
    let series = TestSeries::new(
        &[("__name__", "up"), ("job", "x")],
        (0..20)
            .map(|k| ((now - 100 + k * 10) * 1000, 1.0))
            .collect(),
    );
    assert_eq!(odin.write(&[series]).0, 204);
    let start = now - 60;
    for (params, want) in [
        // The issue's own.
        (
            format!("start={start}&end=9223372036854775.807&step=1e15&timeout=1s"),
            "to a valid timestamp",
        ),
        (
            format!("start={start}&end=9223372036854775.807&step=1152921504606846.976"),
            "to a valid timestamp",
        ),
        (
            "start=-9223372036854775.808&end=9223372036854775.807&step=1".into(),
            "to a valid timestamp",
        ),
        // Within the time bounds: the duration bound, then the points check.
        (
            format!("start={start}&end=9223309901257974&step=1e15"),
            "It overflows int64",
        ),
        (
            "start=-9223309901257974&end=9223309901257974&step=1".into(),
            "exceeded maximum resolution",
        ),
        (
            "start=-9223309901257974&end=9223309901257974&step=1000000000".into(),
            "exceeded maximum resolution",
        ),
    ] {
        let path = format!("/api/v1/query_range?query=up&{params}");
        let (code, v) = answered_within(&odin, &path, 5);
        assert_eq!(code, 400, "{params}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{params}: {v}");
    }
    // The largest step and the latest end accepted: a few points, at once.
    let (step, end) = (9_223_372_036i64, 9_223_309_901_257_974i64);
    let late = end - 5 * step;
    for q in [
        "up",
        "rate(up[5m])",
        "max_over_time(up[10m:1m])",
        "up offset -1y",
    ] {
        let path = format!(
            "/api/v1/query_range?query={}&start={late}&end={end}&step={step}&timeout=2s",
            q.replace(' ', "%20")
        );
        let (code, v) = answered_within(&odin, &path, 5);
        assert_eq!(code, 200, "{q}: {v}");
    }
    // Instant queries at the bounds, and series/labels over the whole span.
    for path in [
        "/api/v1/query?query=up&time=9223309901257974".to_string(),
        "/api/v1/query?query=up%20offset%20-1y&time=-9223309901257974".into(),
        "/api/v1/series?match[]=up&start=-9223309901257974&end=9223309901257974".into(),
        "/api/v1/labels?start=-9223309901257974&end=9223309901257974".into(),
    ] {
        let (code, v) = answered_within(&odin, &path, 5);
        assert_eq!(code, 200, "{path}: {v}");
    }
    let (code, _) = odin.get("/api/v1/query?query=up&time=9223372036854775.807");
    assert_eq!(code, 400);
}

/// `format_query` with 10,000 nested parentheses took over a minute of CPU; deep
/// queries are refused before the costly work, within the timeout.
#[test]
fn issue14_format_query_deep_nesting_answers_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--query.timeout=10s"]);
    let nest = |open: &str, inner: &str, n: usize| {
        format!("{}{inner}{}", open.repeat(n), ")".repeat(n)).replace('(', "%28")
    };
    for (q, formatted, parsed) in [
        // The issue's.
        (nest("(", "1", 10_000), 400, 400),
        (nest("(", "1", 3_200), 400, 200),
        (nest("abs(", "up", 1_000), 400, 200),
        (nest("sum(", "up", 1_000), 400, 200),
        (nest("abs(", "up", 100), 200, 200),
    ] {
        let path = format!("/api/v1/format_query?query={q}");
        let (code, v) = answered_within(&odin, &path, 5);
        assert_eq!(code, formatted, "{}: {v}", q.len());
        if code == 400 {
            let error = v["error"].as_str().unwrap_or_default();
            assert!(error.contains("too deeply nested"), "{v}");
        }
        let path = format!("/api/v1/query_exemplars?query={q}");
        let (code, v) = answered_within(&odin, &path, 5);
        assert_eq!(code, parsed, "{}: {v}", q.len());
    }
}

/// `/series`, `/federate` and queries stop at `--query.timeout`, as a query does
/// (they ran without one before).
#[test]
fn metadata_and_federation_stop_at_the_query_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--query.timeout=1ms"]);
    write_series(&odin, 20_000, now_s() * 1000);
    for path in [
        "/api/v1/series?match[]=m",
        "/api/v1/query?query=count(m)",
        "/api/v1/label/i/values?match[]=m",
    ] {
        let (code, v) = answered_within(&odin, path, 5);
        assert_eq!(code, 503, "{path}: {v}");
        assert_eq!(v["errorType"], "timeout", "{path}: {v}");
    }
    let (code, body) = odin.get("/federate?match[]=m");
    assert_eq!(code, 503, "{body}");
    // The work itself stopped too (the answer at the deadline does not wait for
    // it): nothing is left evaluating, no permit held.
    let evaluating = || {
        odin.get("/metrics")
            .1
            .lines()
            .find_map(|l| l.strip_prefix("odin_engine_queries "))
            .map(|v| v.trim().to_string())
    };
    assert!(
        crate::common::poll_until(Duration::from_secs(2), || evaluating().as_deref()
            == Some("0")),
        "work still running after its timeout: odin_engine_queries {:?}",
        evaluating()
    );
}

/// What a metadata or federation request holds counts against
/// `--query.max-samples`, as a query's samples do.
#[test]
fn metadata_and_federation_count_against_max_samples() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--query.max-samples=100"]);
    write_series(&odin, 500, now_s() * 1000);
    for path in [
        "/api/v1/series?match[]=m",
        "/api/v1/label/i/values",
        "/federate?match[]=m",
    ] {
        let (code, v) = answered_within(&odin, path, 5);
        assert_eq!(code, 422, "{path}: {v}");
    }
    // Below the limit, the same paths answer.
    for path in [
        "/api/v1/series?match[]=m%7Bi=~%221.%22%7D",
        "/api/v1/labels",
        "/federate?match[]=m%7Bi=%227%22%7D",
    ] {
        let (code, v) = answered_within(&odin, path, 5);
        assert_eq!(code, 200, "{path}: {v}");
    }
}
