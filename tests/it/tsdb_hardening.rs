//! Issue 14, storage half: a sample from a wrong clock cannot block ingestion, and
//! `odin tsdb check` reports damage with its exit status.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::{BIN, Odin, TestSeries};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn tsdb_check(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["tsdb", "check"])
        .arg(dir)
        .output()
        .expect("run odin tsdb check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One remote-written sample at now + 1 day made every later write
/// `400 out_of_bounds`, new series and scrapes included.
#[test]
fn a_sample_a_day_ahead_is_refused_alone_and_later_writes_land() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let now = now_ms();
    let (code, body) = odin.write(&[
        TestSeries::new(
            &[("__name__", "future"), ("job", "w")],
            vec![(now + 86_400_000, 1.0)],
        ),
        TestSeries::new(
            &[("__name__", "kept"), ("job", "w")],
            vec![(now - 1000, 1.0)],
        ),
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("1 too_far_in_future"), "{body}");
    assert!(body.contains("stored 1"), "{body}");
    for (name, t) in [("future", now), ("kept", now), ("new", now + 1)] {
        let (code, body) = odin.write(&[TestSeries::new(
            &[("__name__", name), ("job", "w")],
            vec![(t, 2.0)],
        )]);
        assert_eq!(code, 204, "{name}: {body}");
    }
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_tsdb_rejected_samples_total{reason=\"too_far_in_future\"} 1"),
        "{metrics}"
    );
    // A smaller window from the flag is honoured.
    drop(odin);
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(
        dir.path(),
        &["--storage.tsdb.too-far-in-future.time-window=1m"],
    );
    let (code, body) = odin.write(&[TestSeries::new(
        &[("__name__", "a")],
        vec![(now_ms() + 5 * 60_000, 1.0)],
    )]);
    assert_eq!(code, 400, "{body}");
}

#[test]
fn tsdb_check_exits_non_zero_on_wal_damage_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let now = now_ms();
    for i in 0..20 {
        let (code, body) = odin.write(&[TestSeries::new(
            &[("__name__", "m"), ("i", &i.to_string())],
            vec![(now + i, 1.0)],
        )]);
        assert_eq!(code, 204, "{body}");
    }
    // A crash: a clean stop would write a head image holding every sample, and the
    // next start would not read the damaged WAL below it.
    odin.kill9();
    let (ok, out) = tsdb_check(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("no problems found"), "{out}");

    // Flip a byte in the middle of the first non-empty segment.
    let wal = dir.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.len() > 200)
                .unwrap_or(false)
        })
        .collect();
    segs.sort();
    let seg = &segs[0];
    let mut b = std::fs::read(seg).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(seg, &b).unwrap();
    let (ok, out) = tsdb_check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("PROBLEM: wal:"), "{out}");
    assert_eq!(std::fs::read(seg).unwrap(), b, "check changed the segment");

    // The next start skips only the damaged record: 19 or so of 20 series are back.
    let odin = Odin::start(dir.path(), &[]);
    let (code, body) = odin.get("/api/v1/query?query=count(m)");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let n: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((18.0..20.0).contains(&n), "{n} series replayed: {body}");
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_tsdb_wal_corruptions_total 1"),
        "{metrics}"
    );
}
