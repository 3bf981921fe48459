//! Crash safety: remote-write load against a child `odin` killed with SIGKILL at random
//! moments; after each restart every acknowledged sample must be there and the data
//! directory must open.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::common::{Odin, TestSeries, odin_dump};

const ROUNDS: usize = 20;
const SERIES: usize = 20;

#[test]
fn every_acknowledged_sample_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0D1);
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut next_t: i64 = 1_700_000_000_000;
    for round in 0..ROUNDS {
        let odin = Odin::start(dir.path(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        // Several concurrent writers, so group commit is exercised while killed.
        let mut writers = Vec::new();
        for w in 0..3 {
            let (addr, acked, stop) = (odin.addr, acked.clone(), stop.clone());
            let start_t = next_t;
            writers.push(std::thread::spawn(move || {
                let agent = crate::common::agent();
                let mut t = start_t;
                while !stop.load(Ordering::Relaxed) {
                    let series: Vec<TestSeries> = (0..SERIES)
                        .map(|i| {
                            TestSeries::new(
                                &[
                                    ("__name__", "crash_test"),
                                    ("s", &i.to_string()),
                                    ("w", &w.to_string()),
                                ],
                                vec![(t, (t % 1000) as f64 + i as f64)],
                            )
                        })
                        .collect();
                    let body = crate::common::encode_write(&series);
                    let r = agent
                        .post(&format!("http://{addr}/api/v1/write"))
                        .header("Content-Encoding", "snappy")
                        .send(&body[..]);
                    match r {
                        Ok(resp) if resp.status() == 204 => {
                            let mut a = acked.lock().unwrap();
                            for s in &series {
                                a.insert(format!("{} {} {}", s.label_string(), s.samples[0].1, t));
                            }
                        }
                        _ => break,
                    }
                    t += 1000;
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
        odin.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        next_t += 10_000_000;

        // The directory opens again and serves.
        let reopened = Odin::start(dir.path(), &[]);
        assert_eq!(reopened.get("/-/ready").0, 200, "round {round}");
        assert_eq!(reopened.stop().code(), Some(0), "round {round}");

        let stored: BTreeSet<String> = odin_dump(dir.path()).into_iter().collect();
        let acked = acked.lock().unwrap();
        let missing: Vec<&String> = acked.difference(&stored).take(5).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged samples lost, e.g. {missing:?}",
            acked.difference(&stored).count()
        );
    }
    assert!(
        acked.lock().unwrap().len() > ROUNDS * SERIES,
        "the load never got through"
    );
}

/// Writes `n` requests of 50 series, one sample each, from `t0` on, and returns what
/// `odin tsdb dump` will print for the acknowledged ones.
fn write_acked(odin: &Odin, t0: i64, n: i64, tag: &str) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    for k in 0..n {
        let t = t0 + k * 1000;
        let series: Vec<TestSeries> = (0..50)
            .map(|i| {
                TestSeries::new(
                    &[
                        ("__name__", "image_test"),
                        ("s", &i.to_string()),
                        ("tag", tag),
                    ],
                    vec![(t, (k * 100 + i) as f64)],
                )
            })
            .collect();
        assert_eq!(odin.write(&series).0, 204);
        for s in &series {
            acked.insert(format!("{} {} {}", s.label_string(), s.samples[0].1, t));
        }
    }
    acked
}

fn images(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("chunks_head"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot."))
        .collect();
    out.sort();
    out
}

/// Issue 15: a restart loads the head image the clean shutdown wrote and replays
/// only the WAL written after it; a SIGKILL then loses no acknowledged sample,
/// whether it lies in the image or in the WAL tail.
#[test]
fn restart_from_a_head_image_and_the_wal_tail_keeps_every_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000;
    let odin = Odin::start(dir.path(), &[]);
    let mut acked = write_acked(&odin, t0, 100, "before");
    assert_eq!(odin.stop().code(), Some(0));
    let first = images(dir.path());
    assert_eq!(
        first.len(),
        1,
        "the clean shutdown wrote an image: {first:?}"
    );

    let odin = Odin::start(dir.path(), &[]);
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_tsdb_wal_replay_records_total 0"),
        "nothing replayed after the image"
    );
    acked.extend(write_acked(&odin, t0 + 100_000, 100, "after"));
    odin.kill9();

    let odin = Odin::start(dir.path(), &[]);
    assert_eq!(odin.get("/-/ready").0, 200);
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_tsdb_wal_replay_records_total 100"),
        "only the WAL tail replayed"
    );
    let (code, body) = odin.get("/api/v1/query?query=count(image_test)&time=1700000200");
    assert_eq!(code, 200);
    assert!(body.contains("\"100\""), "{body}");
    assert_eq!(odin.stop().code(), Some(0));

    let stored: BTreeSet<String> = odin_dump(dir.path()).into_iter().collect();
    let missing: Vec<&String> = acked.difference(&stored).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged samples lost, e.g. {missing:?}",
        acked.difference(&stored).count()
    );
    assert_eq!(acked.len(), 10_000);
}

/// A damaged newest image never refuses the start nor loses a sample: the start
/// falls back to the image before it and the WAL after that.
#[test]
fn a_damaged_head_image_falls_back_without_losing_acknowledged_samples() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000;
    let odin = Odin::start(dir.path(), &[]);
    let mut acked = write_acked(&odin, t0, 50, "one");
    assert_eq!(odin.stop().code(), Some(0));
    let odin = Odin::start(dir.path(), &[]);
    acked.extend(write_acked(&odin, t0 + 50_000, 50, "two"));
    assert_eq!(odin.stop().code(), Some(0));
    let kept = images(dir.path());
    assert_eq!(kept.len(), 2, "{kept:?}");
    let newest = dir.path().join("chunks_head").join(&kept[1]);
    let mut b = std::fs::read(&newest).unwrap();
    let n = b.len();
    b.truncate(n / 2);
    std::fs::write(&newest, b).unwrap();

    let odin = Odin::start(dir.path(), &[]);
    assert_eq!(odin.get("/-/ready").0, 200);
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_tsdb_head_image_failures_total 1"),
        "the damaged image is counted"
    );
    odin.kill9();
    let stored: BTreeSet<String> = odin_dump(dir.path()).into_iter().collect();
    assert_eq!(acked.difference(&stored).count(), 0);
}
