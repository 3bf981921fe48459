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
