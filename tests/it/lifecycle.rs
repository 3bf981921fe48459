//! Start-up, health, readiness, self-metrics, clean shutdown, flags and config checks.

use std::process::Command;

use crate::common::{BIN, Odin, TestSeries};

#[test]
fn healthy_ready_metrics_and_clean_sigterm_exit() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    assert_eq!(odin.get("/-/healthy").0, 200);
    assert_eq!(odin.get("/-/ready").0, 200);
    let (code, _) = odin.write(&[TestSeries::new(
        &[("__name__", "m"), ("a", "b")],
        vec![(1000, 1.0)],
    )]);
    assert_eq!(code, 204);
    let (code, body) = odin.get("/metrics");
    assert_eq!(code, 200);
    for want in [
        "odin_tsdb_head_series 1",
        "odin_tsdb_head_samples_appended_total 1",
        "odin_http_requests_total{",
        "odin_tsdb_wal_fsyncs_total ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(body.contains(want), "/metrics lacks {want:?}:\n{body}");
    }
    assert_eq!(odin.get("/no/such/path").0, 404);
    let status = odin.stop();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

/// Issue 14: SIGTERM finishes within its grace period whatever is running — here a
/// query that would evaluate for minutes and a client that holds a connection open.
#[test]
fn sigterm_ends_promptly_during_a_long_query() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--query.timeout=10m"]);
    let url = odin.url(&format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(b"count_over_time(vector(1)[100y:1ms])")
            .collect::<String>()
    ));
    let client = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(120)))
            .build()
            .into();
        agent.get(&url).call().map(|r| r.status().as_u16())
    });
    // The query is being evaluated.
    assert!(
        crate::common::poll_until(std::time::Duration::from_secs(20), || odin
            .get("/metrics")
            .1
            .lines()
            .any(|l| l.starts_with("odin_engine_queries ") && !l.ends_with(" 0"))),
        "the query never started"
    );
    let idle = std::net::TcpStream::connect(odin.addr).unwrap();
    let started = std::time::Instant::now();
    let status = odin.stop();
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < std::time::Duration::from_secs(10),
        "SIGTERM took {took:?}"
    );
    // The query's client got an answer (503, shutting down) or a closed connection.
    let answer = client.join().unwrap();
    assert!(!matches!(answer, Ok(200)), "{answer:?}");
    drop(idle);
}

#[test]
fn quit_needs_lifecycle_flag() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    assert_eq!(odin.post("/-/quit", "text/plain", b"").0, 403);
    drop(odin);
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--web.enable-lifecycle"]);
    assert_eq!(odin.post("/-/quit", "text/plain", b"").0, 200);
    let mut child_exited = false;
    for _ in 0..500 {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(odin.pid(), 0) } != 0 {
            child_exited = true;
            break;
        }
        // A zombie still "exists" until reaped; stop() reaps it.
        std::thread::sleep(std::time::Duration::from_millis(10));
        if std::fs::read_to_string(format!("/proc/{}/stat", odin.pid()))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
        {
            child_exited = true;
            break;
        }
    }
    assert!(child_exited, "odin did not exit after /-/quit");
    assert_eq!(odin.stop().code(), Some(0));
}

#[test]
fn unknown_flag_is_an_error() {
    let out = Command::new(BIN)
        .args(["run", "--storage.tsdb.bogus=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--storage.tsdb.bogus"), "{err}");
}

#[test]
fn bad_flag_values_are_errors_that_name_the_flag() {
    for (flag, value) in [
        ("--storage.tsdb.retention.time", "7x"),
        ("--storage.tsdb.retention.size", "12XB"),
        ("--storage.tsdb.min-block-duration", "0s"),
        ("--web.listen-address", "not-an-address"),
        ("--grpc-address", "not-an-address"),
        ("--log.format", "xml"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .arg("run")
            .arg(format!("--storage.tsdb.path={}", dir.path().display()))
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
}

#[test]
fn second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _odin = Odin::start(dir.path(), &[]);
    let out = Command::new(BIN)
        .arg("run")
        .arg(format!("--storage.tsdb.path={}", dir.path().display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--grpc-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
}

#[test]
fn check_config_reports_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "global:\n  scrape_interval: 15s\n  external_labels:\n    cluster: a\nstorage:\n  tsdb:\n    retention_time: 30d\n",
    )
    .unwrap();
    let out = crate::common::check_config(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "global:\n  scrape_interval: 15s\n  scrape_intervall: 10s\n",
    )
    .unwrap();
    let out = crate::common::check_config(&bad);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("scrape_intervall") && text.contains('3'),
        "{text}"
    );

    // `odin run` refuses the same file at start-up.
    let out = Command::new(BIN)
        .arg("run")
        .arg(format!("--config.file={}", bad.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--grpc-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scrape_intervall"));
}
