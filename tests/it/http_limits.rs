//! Issue 14, item 11: the HTTP listener's bounds — a half-sent header, a body that
//! never completes, more connections than allowed — and secrets kept out of
//! `/api/v1/status/config` (item 5).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{Odin, agent};

/// Reads until the server closes the connection (or `limit` passes); returns what
/// it sent and how long it took to close.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into(), Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into(), Some(start.elapsed())),
        }
    }
    (String::from_utf8_lossy(&got).into(), None)
}

#[test]
fn a_half_sent_header_and_an_idle_connection_are_closed_after_the_header_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let odin = Odin::start(tmp.path(), &["--web.read-header-timeout=1s"]);

    let mut half = TcpStream::connect(odin.addr).unwrap();
    half.write_all(b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(10));
    let closed = closed.expect("a half-sent header keeps its connection open");
    assert!(closed < Duration::from_secs(5), "closed after {closed:?}");

    // A connection that never sends anything is closed the same way.
    let mut idle = TcpStream::connect(odin.addr).unwrap();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10));
    assert!(closed.is_some(), "an idle connection stays open");

    // So is one that starts the HTTP/2 preface and stops (the protocol detection
    // has no timer of its own).
    let mut preface = TcpStream::connect(odin.addr).unwrap();
    preface.write_all(b"PRI * HT").unwrap();
    let (_, closed) = read_until_closed(&mut preface, Duration::from_secs(10));
    let closed = closed.expect("a started HTTP/2 preface keeps its connection open");
    assert!(closed < Duration::from_secs(5), "closed after {closed:?}");

    // Whole requests are unaffected.
    assert_eq!(odin.get("/-/healthy").0, 200);
}

#[test]
fn a_body_that_does_not_arrive_within_the_read_timeout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let odin = Odin::start(tmp.path(), &["--web.read-timeout=1s"]);
    let mut s = TcpStream::connect(odin.addr).unwrap();
    s.write_all(
        b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 1000\r\n\r\nabc",
    )
    .unwrap();
    // Dripping more bytes does not extend the deadline.
    let start = Instant::now();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        if s.write_all(b"x").is_err() {
            break;
        }
    }
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(
        answer.starts_with("HTTP/1.1 4") || closed.is_some(),
        "no answer and not closed: {answer:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(odin.get("/-/healthy").0, 200);
}

#[test]
fn connections_beyond_the_limit_wait_until_one_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let odin = Odin::start(tmp.path(), &["--web.max-connections=2"]);
    // The test's own agent may keep a connection from `start`'s readiness poll:
    // give it time to be dropped on our side by using fresh raw connections.
    let a = TcpStream::connect(odin.addr).unwrap();
    let b = TcpStream::connect(odin.addr).unwrap();
    let third = || {
        let a = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(1500)))
            .build();
        let a: ureq::Agent = a.into();
        a.get(&odin.url("/-/healthy"))
            .call()
            .map(|r| r.status().as_u16())
    };
    // Both slots are held (the readiness poll's connection may still hold one for
    // a moment: wait until a request is refused).
    let mut refused = false;
    for _ in 0..20 {
        if third().is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "a third connection was served while two were held");
    drop(a);
    drop(b);
    let served = (0..20).any(|_| third().ok() == Some(200));
    assert!(served, "freed slots are not reused");
    let _ = agent();
}

#[test]
fn status_config_shows_secrets_as_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("odin.yml");
    std::fs::write(
        &config,
        r#"global: {scrape_interval: 1h}
scrape_configs:
  - job_name: guarded
    basic_auth: {username: admin, password: hunter2-pass}
    static_configs: [{targets: ['127.0.0.1:1']}]
  - job_name: bearer
    authorization: {credentials: tok-credentials}
    static_configs: [{targets: ['127.0.0.1:1']}]
"#,
    )
    .unwrap();
    let data = tmp.path().join("data");
    let odin = Odin::start(&data, &[&format!("--config.file={}", config.display())]);
    let (code, body) = odin.get("/api/v1/status/config");
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("hunter2-pass"), "{body}");
    assert!(!body.contains("tok-credentials"), "{body}");
    assert_eq!(body.matches("<secret>").count(), 2, "{body}");
    assert!(body.contains("admin"), "{body}");
}
