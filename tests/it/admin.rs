//! The admin API: off unless enabled; snapshot, delete_series, clean_tombstones.

use std::time::Duration;

use crate::common::{Odin, TestSeries, block_dirs, odin_dump, poll_until};

#[test]
fn admin_api_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let (code, body) = odin.post("/api/v1/admin/tsdb/snapshot", "text/plain", b"");
    assert_eq!(code, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "unavailable");
}

#[test]
fn snapshot_holds_the_head_as_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--web.enable-admin-api"]);
    let s = TestSeries::new(
        &[("__name__", "snap"), ("a", "1")],
        (0..100).map(|i| (i * 1000, i as f64)).collect(),
    );
    assert_eq!(odin.write(&[s]).0, 204);
    let (code, body) = odin.post("/api/v1/admin/tsdb/snapshot", "text/plain", b"");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    let name = v["data"]["name"].as_str().unwrap();
    let snap = dir.path().join("snapshots").join(name);
    let blocks = block_dirs(&snap);
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let lines = odin_dump(&snap);
    assert_eq!(lines.len(), 100);
    assert_eq!(lines[99], r#"{__name__="snap", a="1"} 99 99000"#);

    let (code, _) = odin.post(
        "/api/v1/admin/tsdb/snapshot?skip_head=maybe",
        "text/plain",
        b"",
    );
    assert_eq!(code, 400);
}

#[test]
fn delete_series_and_clean_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--web.enable-admin-api"]);
    // Four hours of data: the first two become a block, the rest stays in the head.
    let t0 = 1_699_999_200_000i64;
    let mk = |name: &str| {
        TestSeries::new(
            &[("__name__", name)],
            (0..960).map(|i| (t0 + i * 15_000, i as f64)).collect(),
        )
    };
    for chunk in 0..24 {
        let part = |s: TestSeries| TestSeries {
            labels: s.labels,
            samples: s.samples[chunk * 40..(chunk + 1) * 40].to_vec(),
        };
        assert_eq!(odin.write(&[part(mk("keep")), part(mk("drop"))]).0, 204);
    }
    assert!(poll_until(Duration::from_secs(30), || !block_dirs(
        dir.path()
    )
    .is_empty()));

    let (code, body) = odin.post(
        "/api/v1/admin/tsdb/delete_series",
        "application/x-www-form-urlencoded",
        b"",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("match[]"));
    let (code, body) = odin.post(
        "/api/v1/admin/tsdb/delete_series",
        "application/x-www-form-urlencoded",
        b"match%5B%5D=drop",
    );
    assert_eq!(code, 204, "{body}");
    let (code, body) = odin.post("/api/v1/admin/tsdb/clean_tombstones", "text/plain", b"");
    assert_eq!(code, 204, "{body}");
    assert_eq!(odin.stop().code(), Some(0));

    let lines = odin_dump(dir.path());
    assert_eq!(lines.len(), 960, "only the kept series remains");
    assert!(lines.iter().all(|l| l.starts_with(r#"{__name__="keep"}"#)));
}
