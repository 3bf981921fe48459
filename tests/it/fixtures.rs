//! Golden data written by an earlier ODIN: a format change that would make existing
//! data directories unreadable fails here.

use std::path::Path;

use crate::common::{Odin, TestSeries, copy_dir, odin_dump};

const WAL_FIXTURE: &str = "tests/fixtures/odin-wal-v1";

fn fixture_series() -> Vec<TestSeries> {
    let mut out = Vec::new();
    for (i, job) in ["node", "dcgm", "odin"].iter().enumerate() {
        let samples = (0..50)
            .map(|k| {
                let t = 1_700_000_000_000 + k * 15_000 + i as i64;
                let v = match k {
                    10 => odin::model::stale_nan(),
                    20 => f64::INFINITY,
                    _ => k as f64 * 0.25 + i as f64,
                };
                (t, v)
            })
            .collect();
        out.push(TestSeries::new(
            &[
                ("__name__", "fixture_metric"),
                ("job", job),
                ("instance", "host:9100"),
            ],
            samples,
        ));
    }
    out
}

#[test]
fn wal_written_by_an_earlier_odin_replays() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(WAL_FIXTURE).join("data"), dir.path());
    let want: Vec<String> = std::fs::read_to_string(Path::new(WAL_FIXTURE).join("expected.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(want.len(), 150);
    assert_eq!(odin_dump(dir.path()), want);
}

/// Rewrites the fixture. Run by hand only after a deliberate format change, and say
/// so in the commit: `cargo test --test it -- --ignored regenerate_wal_fixture`.
#[test]
#[ignore = "regenerates the golden WAL fixture; run by hand"]
fn regenerate_wal_fixture() {
    let root = Path::new(WAL_FIXTURE);
    let _ = std::fs::remove_dir_all(root);
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let odin = Odin::start(&data, &[]);
    for s in fixture_series() {
        assert_eq!(odin.write(&[s]).0, 204);
    }
    assert_eq!(odin.stop().code(), Some(0));
    // Only the WAL is the fixture; the rest is rebuilt at start-up.
    for e in std::fs::read_dir(&data).unwrap().flatten() {
        if e.file_name() != "wal" {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
    let lines = odin_dump(&data);
    for e in std::fs::read_dir(&data).unwrap().flatten() {
        if e.file_name() != "wal" {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
    std::fs::write(root.join("expected.txt"), lines.join("\n") + "\n").unwrap();
}
