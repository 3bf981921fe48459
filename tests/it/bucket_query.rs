//! Long-term queries: blocks that live only in the bucket answer PromQL, merged with
//! local data; an unreadable bucket is a warning, not a failed query.

use std::time::Duration;

use crate::common::poll_until;
use crate::shipper::{H, T0, config_with_store, fs_bucket_blocks, settled, start, write_hours};

/// `ship_test{…}` over hours 0-9 at a one-minute step: series -> points.
fn query_range(odin: &crate::common::Odin, selector: &str) -> (u16, serde_json::Value) {
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>(),
        T0 / 1000,
        (T0 + 9 * H - 60_000) / 1000
    );
    let (code, body) = odin.get(&path);
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn points(v: &serde_json::Value) -> Vec<(String, Vec<(i64, f64)>)> {
    v["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let pts = r["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_f64().unwrap() as i64,
                                p[1].as_str().unwrap().parse().unwrap(),
                            )
                        })
                        .collect();
                    (r["metric"]["i"].as_str().unwrap_or("").to_string(), pts)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn bucket_only_blocks_answer_queries_and_an_unreadable_bucket_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let config = config_with_store(
        tmp.path(),
        &format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}",
            bucket.display()
        ),
    );
    // A first ODIN ships hours 0-6 as three blocks, then goes away with its disk.
    let first = start(&tmp.path().join("a"), &config, &[]);
    write_hours(&first, 0, 9);
    assert!(poll_until(Duration::from_secs(30), || fs_bucket_blocks(
        &bucket
    )
    .len()
        == 3));
    settled(&first, "odin_shipper_uploads_total", 3.0);
    first.stop();

    // A second one on an empty disk holds hours 6-9 locally; 0-6 come from the bucket.
    let second = start(&tmp.path().join("b"), &config, &[]);
    write_hours(&second, 6, 9);
    let want: Vec<(i64, f64)> = (0..9 * 60)
        .map(|m| {
            let t = T0 + m * 60_000;
            (t / 1000, (t / 1000) as f64)
        })
        .collect();
    let mut last = serde_json::Value::Null;
    let complete = poll_until(Duration::from_secs(20), || {
        let (code, v) = query_range(&second, "ship_test");
        last = v;
        code == 200
            && points(&last).iter().all(|(_, p)| p.len() == want.len())
            && points(&last).len() == 2
    });
    assert!(complete, "{last}");
    for (i, got) in points(&last) {
        assert_eq!(got, want, "series i={i}");
    }
    assert!(last.get("warnings").is_none(), "{last}");

    // The bucket becomes unreadable: what was not read before fails, the query
    // answers with the local hours and says why the rest is missing.
    std::fs::rename(&bucket, tmp.path().join("bucket.gone")).unwrap();
    std::fs::write(&bucket, b"not a bucket").unwrap();
    let (code, v) = query_range(&second, "ship_test{i=\"1\"}");
    assert_eq!(code, 200, "{v}");
    let got = points(&v);
    assert_eq!(got.len(), 1, "{v}");
    assert_eq!(got[0].1, want[6 * 60..].to_vec());
    let warnings = v["warnings"].as_array().expect("warnings");
    assert!(!warnings.is_empty(), "{v}");
    assert!(
        warnings[0].as_str().unwrap().starts_with("bucket block "),
        "{v}"
    );
    second.stop();
}

/// The lines of a log query over `[start_ns, end_ns]`, oldest first.
fn log_lines(odin: &crate::common::Odin, query: &str, start_ns: i64, end_ns: i64) -> Vec<String> {
    let (start, end) = (start_ns.to_string(), end_ns.to_string());
    let params = [
        ("query", query),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("limit", "5000"),
        ("direction", "forward"),
    ];
    let (code, body) = crate::loki::get(odin, None, "/loki/api/v1/query_range", &params);
    assert_eq!(code, 200, "{query}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(i64, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().clone())
        .map(|e| {
            (
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, l)| l).collect()
}

#[test]
fn log_segments_ship_to_the_bucket_and_answer_from_there() {
    const S: i64 = 1_000_000_000;
    const WINDOW: i64 = 2 * 3600 * S;
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let config = config_with_store(
        tmp.path(),
        &format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}",
            bucket.display()
        ),
    );
    // A first ODIN takes a window of lines five days ago; a line three hours later
    // seals it, maintenance writes it out and the shipper uploads it.
    let first = start(&tmp.path().join("a"), &config, &[]);
    let now_ns = crate::common::now_ms() * 1_000_000;
    let base = (now_ns - 5 * 24 * 3600 * S).div_euclid(WINDOW) * WINDOW;
    let written: Vec<String> = (0..300)
        .map(|i| {
            if i == 200 {
                "kernel: NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus".to_string()
            } else {
                format!("job {i} finished step {}", i % 7)
            }
        })
        .collect();
    let entries: Vec<crate::loki::Entry<'_>> = written
        .iter()
        .enumerate()
        .map(|(i, l)| (base + i as i64 * S, l.clone(), Vec::new()))
        .collect();
    let later = vec![(base + 3 * 3600 * S, "later".to_string(), Vec::new())];
    for body in [
        crate::loki::promtail_request(&[("{job=\"train\"}", entries)]),
        crate::loki::promtail_request(&[("{job=\"train\"}", later)]),
    ] {
        let (code, text) = crate::loki::push(&first, None, "application/x-protobuf", None, &body);
        assert_eq!(code, 204, "{text}");
    }
    settled(&first, "odin_shipper_log_segment_uploads_total", 1.0);
    let shipped: Vec<_> = std::fs::read_dir(bucket.join("logs/fake"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    for f in ["meta.json", "lines", "streams", "index/meta.json"] {
        assert!(shipped[0].join(f).exists(), "{f} not shipped");
    }
    // `odin tools bucket ls --logs` lists it, with its lines and labels.
    let (ok, out) = crate::shipper::bucket_tool(&[
        "ls",
        "--logs",
        &format!("--config.file={}", config.display()),
    ]);
    assert!(ok, "{out}");
    let ulid = shipped[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("fake/{ulid}\t")))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split('\t').collect();
    assert_eq!((cols[3], cols[4]), ("1", "300"), "{row}");
    assert!(cols[5].contains("replica=\"a\""), "{row}");
    first.stop();

    // A second ODIN on an empty disk answers that window from the bucket, the
    // index narrowing a line filter there too.
    let second = start(&tmp.path().join("b"), &config, &[]);
    let mut got = Vec::new();
    let found = poll_until(Duration::from_secs(20), || {
        got = log_lines(&second, "{job=\"train\"}", base, base + WINDOW - 1);
        got.len() == written.len()
    });
    assert!(found, "{} lines", got.len());
    assert_eq!(got, written);
    assert_eq!(
        log_lines(
            &second,
            "{job=\"train\"} |= \"fallen off\"",
            base,
            base + WINDOW - 1
        ),
        [written[200].clone()]
    );
    let (code, body) = crate::loki::get(
        &second,
        None,
        "/loki/api/v1/label/job/values",
        &[
            ("start", &base.to_string()),
            ("end", &(base + WINDOW).to_string()),
        ],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"train\""), "{body}");
    // The bucket loses the lines: the query fails with 503, it is not answered short.
    std::fs::remove_file(shipped[0].join("lines")).unwrap();
    let (start, end) = (base.to_string(), (base + WINDOW - 1).to_string());
    let (code, body) = crate::loki::get(
        &second,
        None,
        "/loki/api/v1/query_range",
        &[
            ("query", "{job=\"train\"}"),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("bucket"), "{body}");
    second.stop();
}
