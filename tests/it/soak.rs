//! Issue 14's soak: a good writer keeps writing while a battery of bad requests runs
//! against the same process. Afterwards every sample the writer got acknowledged is
//! there, every bad request was answered (or its connection closed) within the
//! timeout, and the process's peak RSS stayed bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Odin, TestSeries, encode_write};

/// How long the writer writes while the battery runs.
const SOAK: Duration = Duration::from_secs(12);
/// Every bad request must be answered within this (the server's query timeout is
/// set to 5 s below).
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// A snappy body of `n` copies of one length-delimited field-1 entry.
fn repeated_field(entry: &[u8], decoded_bytes: usize) -> Vec<u8> {
    let mut raw = Vec::with_capacity(decoded_bytes);
    while raw.len() + entry.len() <= decoded_bytes {
        raw.extend_from_slice(entry);
    }
    snappy(&raw)
}

/// The battery: each entry is (name, method, path, content type, body).
fn battery() -> Vec<(&'static str, &'static str, String, &'static str, Vec<u8>)> {
    let now_s = now_ms() / 1000;
    let deep = format!("{}up{}", "(".repeat(10_000), ")".repeat(10_000));
    let deep_abs = format!("{}up{}", "abs(".repeat(3_000), ")".repeat(3_000));
    // A TimeSeries holding 40,000 empty labels: `0a 02 0a 00` per label inside.
    let mut ts = Vec::new();
    for _ in 0..40_000 {
        ts.extend_from_slice(&[0x0a, 0x00]);
    }
    let mut empty_labels = vec![0x0a];
    prost::encoding::encode_varint(ts.len() as u64, &mut empty_labels);
    empty_labels.extend_from_slice(&ts);
    let injected = encode_write(&[TestSeries::new(
        &[("__name__", "up\ninjected_metric{job=\"victim\"} 12345")],
        vec![(now_ms(), 1.0)],
    )]);
    let future = encode_write(&[TestSeries::new(
        &[("__name__", "soak_future")],
        vec![(now_ms() + 86_400_000, 1.0)],
    )]);
    let ancient = encode_write(&[TestSeries::new(
        &[("__name__", "soak_ancient")],
        vec![(i64::MIN + 1, 1.0)],
    )]);
    let q = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    vec![
        ("query_range at the end of time", "GET",
            format!("/api/v1/query_range?query=up&start={}&end=9223372036854775.807&step=1e15&timeout=1s", now_s - 60),
            "", vec![]),
        ("query_range huge step", "GET",
            format!("/api/v1/query_range?query=up&start={}&end=9223372036854775.807&step=1152921504606846.976", now_s - 60),
            "", vec![]),
        ("query_range points overflow", "GET",
            "/api/v1/query_range?query=up&start=-9223372036854775.808&end=9223372036854775.807&step=1".into(),
            "", vec![]),
        ("subquery of a billion steps", "GET",
            format!("/api/v1/query?query={}", q("count_over_time(vector(1)[1000y:1ms])")), "", vec![]),
        ("format_query 10,000 parentheses", "POST", "/api/v1/format_query".into(),
            "application/x-www-form-urlencoded", format!("query={}", q(&deep)).into_bytes()),
        ("query 3,000 nested abs", "POST", "/api/v1/query".into(),
            "application/x-www-form-urlencoded", format!("query={}", q(&deep_abs)).into_bytes()),
        ("series over all time", "GET",
            format!("/api/v1/series?match[]={}&start=-9223372036854775.808&end=9223372036854775.807", q("{__name__=~\".+\"}")),
            "", vec![]),
        ("labels over all time", "GET",
            "/api/v1/labels?start=-9223372036854775.808&end=9223372036854775.807".into(), "", vec![]),
        ("federate everything", "GET", format!("/federate?match[]={}", q("{__name__=~\".+\"}")), "", vec![]),
        ("remote read of empty queries", "POST", "/api/v1/read".into(),
            "application/x-protobuf", repeated_field(&[0x0a, 0x00], 16 << 20)),
        ("remote write of empty labels", "POST", "/api/v1/write".into(),
            "application/x-protobuf", repeated_field(&empty_labels, 9 << 20)),
        ("remote write of a newline name", "POST", "/api/v1/write".into(),
            "application/x-protobuf", injected),
        ("remote write a day ahead", "POST", "/api/v1/write".into(),
            "application/x-protobuf", future),
        ("remote write at the start of time", "POST", "/api/v1/write".into(),
            "application/x-protobuf", ancient),
        ("remote write of garbage", "POST", "/api/v1/write".into(),
            "application/x-protobuf", snappy(&[0xff; 4096])),
        ("remote write of bad snappy", "POST", "/api/v1/write".into(),
            "application/x-protobuf", b"\xff\xff\xff\xff\x0fnot snappy".to_vec()),
        ("bad timestamps", "GET", "/api/v1/query?query=up&time=1e300".into(), "", vec![]),
        ("bad query", "GET", "/api/v1/query?query=sum(".into(), "", vec![]),
    ]
}

/// Opens a connection, sends half a request header and stops; returns whether the
/// server closed it within `within`.
fn half_header_closed(odin: &Odin, within: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(odin.addr) else {
        return false;
    };
    let _ = s.write_all(b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let _ = s.set_read_timeout(Some(within));
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed() < within,
            Ok(_) => {}
        }
    }
}

fn peak_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_writer_loses_nothing_while_bad_requests_run() {
    let tmp = tempfile::tempdir().unwrap();
    let odin = Arc::new(Odin::start(
        tmp.path(),
        &["--query.timeout=5s", "--web.read-header-timeout=2s"],
    ));
    let rss_at_start = peak_rss_kib(odin.pid());
    let stop = Arc::new(AtomicBool::new(false));

    // The good writer: 20 series, one sample each per batch, until stopped.
    let writer = {
        let (odin, stop) = (odin.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut acknowledged = 0u64;
            let mut failed = Vec::new();
            let mut t = now_ms() - 60_000;
            while !stop.load(Ordering::Relaxed) {
                // 1 ms a batch: the writer never runs ahead of the wall clock.
                t += 1;
                let batch: Vec<TestSeries> = (0..20)
                    .map(|i| {
                        TestSeries::new(
                            &[("__name__", "soak_good"), ("i", &i.to_string())],
                            vec![(t, acknowledged as f64)],
                        )
                    })
                    .collect();
                match odin.write_raw(&encode_write(&batch)) {
                    Ok((204, _)) => acknowledged += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (acknowledged, failed)
        })
    };

    // The battery, from four threads at once, until the soak ends.
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..4)
        .map(|k| {
            let (odin, stop, slowest) = (odin.clone(), stop.clone(), slowest_ms.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(ANSWER_WITHIN))
                    .build()
                    .into();
                let mut unanswered = Vec::new();
                let mut answered = 0u32;
                let battery = battery();
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let (name, method, path, ctype, body) = &battery[i % battery.len()];
                    i += 1;
                    let started = Instant::now();
                    let url = odin.url(path);
                    let result = if *method == "GET" {
                        agent.get(&url).call()
                    } else {
                        agent
                            .post(&url)
                            .header("Content-Type", *ctype)
                            .header("Content-Encoding", "snappy")
                            .send(&body[..])
                    };
                    slowest.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    match result {
                        Ok(r) if r.status().as_u16() < 500 || r.status().as_u16() == 503 => {
                            answered += 1
                        }
                        Ok(r) => unanswered.push(format!("{name}: status {}", r.status())),
                        Err(e) => unanswered.push(format!("{name}: {e}")),
                    }
                    if i % 7 == 0 && !half_header_closed(&odin, Duration::from_secs(6)) {
                        unanswered.push("half-sent header kept open".to_string());
                    }
                }
                (answered, unanswered)
            })
        })
        .collect();

    std::thread::sleep(SOAK);
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, failed) = writer.join().unwrap();
    let mut answered = 0;
    for a in attackers {
        let (n, unanswered) = a.join().unwrap();
        answered += n;
        assert!(
            unanswered.is_empty(),
            "not answered in time: {unanswered:?}"
        );
    }
    let peak_kib = peak_rss_kib(odin.pid());
    eprintln!(
        "soak: {acknowledged} batches acknowledged ({} failed), {answered} bad requests answered, slowest {} ms, peak RSS {} MiB (at start {} MiB)",
        failed.len(),
        slowest_ms.load(Ordering::Relaxed),
        peak_kib / 1024,
        rss_at_start / 1024
    );
    assert!(
        failed.is_empty(),
        "the good writer was refused {} times, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(acknowledged > 10, "the good writer made no progress");
    assert!(answered > 20, "the battery barely ran: {answered}");
    // Each bad body is bounded to tens of MiB (the bodies cost a GiB each
    // before); four at once in a debug build peak near 250 MiB.
    assert!(peak_kib < 512 * 1024, "peak RSS {} MiB", peak_kib / 1024);

    // Every acknowledged sample is there, in every series.
    let (code, body) = odin.get(&format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(b"count_over_time(soak_good[1h])").collect::<String>()
    ));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 20, "{body}");
    for s in result {
        assert_eq!(
            s["value"][1].as_str().unwrap(),
            acknowledged.to_string(),
            "{}",
            s["metric"]
        );
    }
    // Nothing of the refused writes was stored.
    let (_, body) = odin.get("/api/v1/series?match[]=soak_future&match[]=injected_metric");
    assert!(body.contains("\"data\":[]"), "{body}");
}
