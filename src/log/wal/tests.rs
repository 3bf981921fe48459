#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use parking_lot::Mutex;

use super::segment::{self, encode_record, scan_file};
use super::*;

fn opts(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        ..WalOptions::default()
    }
}

/// Deterministic records of varying length.
fn rec(i: usize) -> Vec<u8> {
    let mut r = format!("record-{i}-").into_bytes();
    r.extend(std::iter::repeat_n((i % 251) as u8, i % 37));
    r
}

fn replay_all(wal: &Wal) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    wal.replay(|r: &[u8]| -> Result<()> {
        out.push(r.to_vec());
        Ok(())
    })
    .unwrap();
    out
}

fn seg_path(dir: &Path, seq: u64) -> std::path::PathBuf {
    dir.join(segment_name(seq))
}

fn write_raw_segment(dir: &Path, seq: u64, records: &[Vec<u8>]) {
    let mut buf = Vec::new();
    for r in records {
        encode_record(&mut buf, r, crc32c::crc32c(r));
    }
    fs::write(seg_path(dir, seq), buf).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts(1024)).unwrap();
    assert!(replay_all(&wal).is_empty());
    assert_eq!(wal.next_segment(), 0);
    let w = wal.start(|i: usize| i * 2);
    let mut expected = Vec::new();
    for i in 0..600 {
        // Every 100th record is larger than a segment: it gets its own.
        let r = if i % 100 == 99 {
            vec![7u8; 3000]
        } else {
            rec(i)
        };
        assert_eq!(w.commit(r.clone(), i).unwrap(), i * 2);
        expected.push(r);
    }
    assert_eq!(w.stats().records_written(), 600);
    assert_eq!(w.stats().commits(), 600);
    w.close().unwrap();
    w.close().unwrap(); // idempotent

    let wal = Wal::open(dir.path(), opts(1024)).unwrap();
    assert!(wal.segments().len() > 10, "{:?}", wal.segments());
    assert_eq!(wal.repair_report(), &RepairReport::default());
    for &s in wal.segments() {
        let len = fs::metadata(seg_path(dir.path(), s)).unwrap().len();
        assert!(len <= 1024 || len == 3008, "segment {s} has {len} bytes");
    }
    let got = replay_all(&wal);
    assert_eq!(got, expected);
    let stats = wal.replay(|_: &[u8]| -> Result<()> { Ok(()) }).unwrap();
    assert_eq!(stats.records, 600);
    assert_eq!(stats.segments, wal.segments().len() as u64);

    // A new session appends to a fresh segment after the existing ones.
    let last = *wal.segments().last().unwrap();
    let w = wal.start(|(): ()| ());
    w.commit(b"second session".to_vec(), ()).unwrap();
    w.close().unwrap();
    let wal = Wal::open(dir.path(), opts(1024)).unwrap();
    assert_eq!(*wal.segments().last().unwrap(), last + 1);
    expected.push(b"second session".to_vec());
    assert_eq!(replay_all(&wal), expected);
}

#[test]
fn torn_tail_every_offset() {
    let src = tempfile::tempdir().unwrap();
    let w = Wal::open(src.path(), opts(1 << 20))
        .unwrap()
        .start(|(): ()| ());
    let records: Vec<Vec<u8>> = (0..20).map(|i| rec(i + 30)).collect();
    for r in &records {
        w.commit(r.clone(), ()).unwrap();
    }
    w.close().unwrap();
    let full = fs::read(seg_path(src.path(), 0)).unwrap();
    let last_start = full.len() - (8 + records[19].len());

    for cut in last_start..full.len() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(seg_path(dir.path(), 0), &full[..cut]).unwrap();
        let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
        let torn = (cut - last_start) as u64;
        assert_eq!(wal.repair_report().bytes_truncated, torn, "cut {cut}");
        assert_eq!(wal.repair_report().corruptions, u64::from(torn > 0));
        assert_eq!(replay_all(&wal), records[..19], "cut {cut}");
        assert_eq!(
            fs::metadata(seg_path(dir.path(), 0)).unwrap().len(),
            last_start as u64
        );

        let w = wal.start(|(): ()| ());
        w.commit(b"after".to_vec(), ()).unwrap();
        w.close().unwrap();
        let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(wal.repair_report(), &RepairReport::default());
        assert_eq!(wal.segments(), &[0, 1]);
        let mut expected = records[..19].to_vec();
        expected.push(b"after".to_vec());
        assert_eq!(replay_all(&wal), expected);
    }

    // Zero-filled tail (e.g. after power loss): all records survive.
    let dir = tempfile::tempdir().unwrap();
    let mut zeroed = full.clone();
    zeroed.extend(std::iter::repeat_n(0u8, 4096));
    fs::write(seg_path(dir.path(), 0), &zeroed).unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(wal.repair_report().bytes_truncated, 4096);
    assert_eq!(replay_all(&wal), records);

    // Garbage length: no huge allocation, just truncation.
    let dir = tempfile::tempdir().unwrap();
    let mut garbage = full.clone();
    garbage.extend_from_slice(&[0xff; 8]);
    fs::write(seg_path(dir.path(), 0), &garbage).unwrap();
    let wal = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(wal.repair_report().bytes_truncated, 8);
    assert_eq!(replay_all(&wal), records);
}

/// Writes 100 records into 256-byte segments; returns them and the segment count.
fn many_segments(dir: &Path) -> (Vec<Vec<u8>>, u64) {
    let w = Wal::open(dir, opts(256)).unwrap().start(|(): ()| ());
    let records: Vec<Vec<u8>> = (0..100).map(rec).collect();
    for r in &records {
        w.commit(r.clone(), ()).unwrap();
    }
    w.close().unwrap();
    let total = Wal::open(dir, opts(256)).unwrap().segments().len() as u64;
    assert!(total > 6);
    (records, total)
}

fn kept_aside(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir.join(CORRUPTED_DIR)) {
        Ok(_) => names(&dir.join(CORRUPTED_DIR)),
        Err(_) => Vec::new(),
    }
}

/// Issue 14: one flipped byte in the oldest segment deleted every later one (0 of
/// 40 samples replayed). Now only the damaged record is lost.
#[test]
fn a_flipped_byte_in_the_oldest_segment_loses_only_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let (records, total) = many_segments(dir.path());
    let seg0 = seg_path(dir.path(), 0);
    let original = fs::read(&seg0).unwrap();
    let mut bytes = original.clone();
    bytes[8 + 3] ^= 0x40; // a payload bit of the first record
    fs::write(&seg0, &bytes).unwrap();

    let inspected = inspect(dir.path()).unwrap();
    assert_eq!(inspected.damage.len(), 1);
    assert_eq!(inspected.damage[0].0, "00000000");
    assert_eq!(inspected.records, 99);
    assert_eq!(fs::read(&seg0).unwrap(), bytes, "inspect changes nothing");

    let wal = Wal::open(dir.path(), opts(256)).unwrap();
    let report = wal.repair_report().clone();
    assert_eq!(report.corruptions, 1);
    assert_eq!(report.bytes_truncated, 8 + records[0].len() as u64);
    assert_eq!(wal.segments().len() as u64, total, "no segment deleted");
    assert_eq!(replay_all(&wal), records[1..]);
    // The damaged original is kept for inspection, byte for byte.
    assert_eq!(kept_aside(dir.path()), ["00000000"]);
    assert_eq!(
        fs::read(dir.path().join(CORRUPTED_DIR).join("00000000")).unwrap(),
        bytes
    );
    let w = wal.start(|(): ()| ());
    assert_eq!(w.stats().corruptions_repaired(), 1);
    w.commit(b"new".to_vec(), ()).unwrap();
    w.close().unwrap();
    // Repaired for good: the next open finds nothing to do.
    let wal = Wal::open(dir.path(), opts(256)).unwrap();
    assert_eq!(wal.repair_report().corruptions, 0);
    let mut expected = records[1..].to_vec();
    expected.push(b"new".to_vec());
    assert_eq!(replay_all(&wal), expected);
}

/// The same class with other damage: a bad length (so the next record must be
/// found by scanning), a zeroed run across records, damage in a middle segment and
/// in the middle of the last one; every record outside the damage is replayed.
#[test]
fn damage_anywhere_loses_only_the_damaged_records() {
    type Damager = fn(&mut Vec<u8>, usize);
    let cases: [(&str, u64, Damager); 4] = [
        ("length of the 2nd record", 2, |b, second| {
            b[second + 1] ^= 0x7f
        }),
        ("crc of the 2nd record", 3, |b, second| b[second + 5] ^= 1),
        ("zeros over the 2nd and 3rd records", 4, |b, second| {
            let end = (second + 40).min(b.len());
            b[second..end].fill(0)
        }),
        (
            "payload of the 2nd record of the last segment",
            u64::MAX,
            |b, second| b[second + 9] ^= 0x01,
        ),
    ];
    for (what, seq, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (records, total) = many_segments(dir.path());
        let seq = if seq == u64::MAX { total - 1 } else { seq };
        let path = seg_path(dir.path(), seq);
        let mut bytes = fs::read(&path).unwrap();
        let in_segment = scan_file(&path).unwrap().records as usize;
        assert!(in_segment >= 3, "{what}");
        let first_len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let second = 8 + first_len;
        damage(&mut bytes, second);
        fs::write(&path, &bytes).unwrap();

        let wal = Wal::open(dir.path(), opts(256)).unwrap();
        let got = replay_all(&wal);
        let before = (0..seq)
            .map(|s| {
                fs::read(seg_path(dir.path(), s))
                    .map(|b| segment::analyze(&b).records as usize)
                    .unwrap()
            })
            .sum::<usize>();
        // Everything before the damaged segment and after it is there; of the
        // damaged segment only its first record and those after the damage.
        assert_eq!(got[..before + 1], records[..before + 1], "{what}");
        let after = before + in_segment;
        let lost = records.len() - got.len();
        assert!((1..=3).contains(&lost), "{what}: lost {lost}");
        assert_eq!(
            got[got.len() - (records.len() - after)..],
            records[after..],
            "{what}"
        );
        assert_eq!(wal.segments().len() as u64, total, "{what}");
        assert_eq!(wal.repair_report().corruptions, 1, "{what}");
        assert_eq!(kept_aside(dir.path()), [segment_name(seq)], "{what}");
    }
}

/// Issue 14: a missing middle segment deleted every later one.
#[test]
fn a_missing_middle_segment_loses_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    write_raw_segment(dir.path(), 0, &[rec(0), rec(1)]);
    write_raw_segment(dir.path(), 1, &[rec(2)]);
    write_raw_segment(dir.path(), 3, &[rec(3)]);
    write_raw_segment(dir.path(), 6, &[rec(4)]);
    fs::write(dir.path().join("notes.txt"), b"operator notes").unwrap();
    let inspected = inspect(dir.path()).unwrap();
    assert_eq!(inspected.missing, [(2, 2), (4, 5)]);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.segments(), &[0, 1, 3, 6]);
    let report = wal.repair_report();
    assert_eq!((report.corruptions, report.segments_missing), (2, 3));
    assert_eq!(report.missing, [(2, 2), (4, 5)]);
    assert_eq!(
        replay_all(&wal),
        vec![rec(0), rec(1), rec(2), rec(3), rec(4)]
    );
    assert_eq!(
        names(dir.path()),
        vec!["00000000", "00000001", "00000003", "00000006", "notes.txt"]
    );
    // The writer goes on after the highest segment.
    assert_eq!(wal.next_segment(), 7);
}

/// A checkpoint followed by a gap is the same case.
#[test]
fn a_gap_after_the_checkpoint_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cp = Vec::new();
    encode_record(&mut cp, &rec(0), crc32c::crc32c(&rec(0)));
    fs::write(dir.path().join(checkpoint_name(4)), cp).unwrap();
    write_raw_segment(dir.path(), 7, &[rec(1)]);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.repair_report().missing, [(5, 6)]);
    assert_eq!(replay_all(&wal), vec![rec(0), rec(1)]);
}

#[test]
fn damage_in_the_checkpoint_loses_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut cp = Vec::new();
    for i in 0..5 {
        encode_record(&mut cp, &rec(i), crc32c::crc32c(&rec(i)));
    }
    let second = 8 + rec(0).len();
    cp[second + 10] ^= 0x10;
    fs::write(dir.path().join(checkpoint_name(2)), &cp).unwrap();
    write_raw_segment(dir.path(), 3, &[rec(5)]);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(
        replay_all(&wal),
        vec![rec(0), rec(2), rec(3), rec(4), rec(5)]
    );
    assert_eq!(kept_aside(dir.path()), [checkpoint_name(2)]);
}

/// A crash during a repair leaves `NNNNNNNN.repair`; the original is intact and
/// is repaired again.
#[test]
fn a_leftover_repair_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    write_raw_segment(dir.path(), 0, &[rec(0)]);
    fs::write(dir.path().join("00000000.repair"), b"half").unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(names(dir.path()), vec!["00000000"]);
    assert_eq!(replay_all(&wal), vec![rec(0)]);
}

#[test]
fn group_commit_concurrent() {
    const THREADS: u32 = 8;
    const PER_THREAD: u32 = 500;
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size: 64 << 10,
        max_queue_records: 64,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let applied2 = Arc::clone(&applied);
    let w = wal.start(move |p: (u32, u32)| {
        applied2.lock().push(p);
        p.0 * PER_THREAD + p.1
    });
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let w = w.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let mut r = Vec::with_capacity(108);
                    r.extend_from_slice(&t.to_le_bytes());
                    r.extend_from_slice(&i.to_le_bytes());
                    r.resize(108, t as u8);
                    assert_eq!(w.commit(r, (t, i)).unwrap(), t * PER_THREAD + i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let commits = u64::from(THREADS * PER_THREAD);
    assert_eq!(w.stats().commits(), commits);
    assert_eq!(w.stats().records_written(), commits);
    let fsyncs = w.stats().fsyncs();
    assert!(fsyncs < commits, "{fsyncs} fsyncs for {commits} commits");
    w.close().unwrap();

    let wal = Wal::open(dir.path(), options).unwrap();
    let mut replayed = Vec::new();
    wal.replay(|r: &[u8]| -> Result<()> {
        let t = u32::from_le_bytes(r[..4].try_into().unwrap());
        let i = u32::from_le_bytes(r[4..8].try_into().unwrap());
        replayed.push((t, i));
        Ok(())
    })
    .unwrap();
    assert_eq!(*applied.lock(), replayed);
    // Each committer's records are in its own order.
    let mut next = vec![0u32; THREADS as usize];
    for (t, i) in replayed {
        assert_eq!(next[t as usize], i);
        next[t as usize] += 1;
    }
}

#[test]
fn checkpoint_rewrites_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), opts(512)).unwrap().start(|(): ()| ());
    assert_eq!(
        w.checkpoint(0, |r: &[u8]| Some(r.to_vec())).unwrap(),
        CheckpointStats::default()
    );
    for i in 0..200 {
        let r = if i % 3 == 0 {
            format!("keep-{i}")
        } else {
            format!("drop-{i}")
        };
        w.commit(r.into_bytes(), ()).unwrap();
    }
    let cut = w.cut_segment().unwrap();
    assert!(cut > 3, "cut {cut}");
    assert_eq!(
        w.cut_segment().unwrap(),
        cut,
        "empty segment is not cut again"
    );
    assert!(matches!(
        w.checkpoint(cut + 1, |_: &[u8]| None),
        Err(WalError::SegmentNotImmutable { .. })
    ));
    for i in 0..50 {
        w.commit(format!("new-{i}").into_bytes(), ()).unwrap();
    }
    let upper = |r: &[u8]| r.starts_with(b"keep").then(|| r.to_ascii_uppercase());
    let cs = w.checkpoint(cut, upper).unwrap();
    assert_eq!(cs.checkpoint, Some(cut - 1));
    assert_eq!(cs.records_read, 200);
    assert_eq!(cs.records_kept, 67);
    assert_eq!(cs.segments_deleted, cut);
    assert_eq!(cs.checkpoints_deleted, 0);
    let listing = names(dir.path());
    assert_eq!(listing[0], format!("{:08}", cut));
    assert!(listing.contains(&format!("checkpoint.{:08}", cut - 1)));
    // Nothing left to do for the same prefix.
    assert_eq!(w.checkpoint(cut, upper).unwrap().checkpoint, None);

    // A second checkpoint folds in the first.
    let cut2 = w.cut_segment().unwrap();
    w.commit(b"tail".to_vec(), ()).unwrap();
    let cs2 = w
        .checkpoint(cut2, |r: &[u8]| (!r.ends_with(b"3")).then(|| r.to_vec()))
        .unwrap();
    assert_eq!(cs2.checkpoint, Some(cut2 - 1));
    assert_eq!(cs2.records_read, 67 + 50);
    assert_eq!(cs2.checkpoints_deleted, 1);
    w.close().unwrap();

    let mut expected: Vec<Vec<u8>> = (0..200)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("KEEP-{i}").into_bytes())
        .chain((0..50).map(|i| format!("new-{i}").into_bytes()))
        .filter(|r| !r.ends_with(b"3"))
        .collect();
    expected.push(b"tail".to_vec());
    let wal = Wal::open(dir.path(), opts(512)).unwrap();
    assert_eq!(wal.checkpoint(), Some(cut2 - 1));
    assert_eq!(wal.segments(), &[cut2]);
    assert_eq!(replay_all(&wal), expected);
    let stats = wal.replay(|_: &[u8]| -> Result<()> { Ok(()) }).unwrap();
    assert_eq!(stats.checkpoint_records, expected.len() as u64 - 1);
    drop(wal);

    // Crash leftovers: an unfinished checkpoint (file and directory form),
    // an older checkpoint and a covered segment whose deletion did not
    // happen. Open removes them and replay is unchanged.
    let d = dir.path();
    fs::write(
        d.join(format!("checkpoint.{:08}.tmp", cut2 + 5)),
        b"\x05\0\0\0garbage",
    )
    .unwrap();
    fs::create_dir(d.join(format!("checkpoint.{:08}.tmp", cut2 + 6))).unwrap();
    fs::write(
        d.join(format!("checkpoint.{:08}.tmp/00000000", cut2 + 6)),
        b"x",
    )
    .unwrap();
    write_raw_segment(d, cut2 - 1, &[b"stale".to_vec()]);
    write_raw_segment(d, 0, &[b"stale".to_vec()]);
    fs::write(d.join("checkpoint.00000000"), b"old").unwrap();
    let wal = Wal::open(d, opts(512)).unwrap();
    assert_eq!(wal.repair_report(), &RepairReport::default());
    assert_eq!(
        names(d),
        vec![
            format!("{:08}", cut2),
            format!("checkpoint.{:08}", cut2 - 1)
        ]
    );
    assert_eq!(replay_all(&wal), expected);

    // Checkpoint everything; numbering continues after the checkpoint.
    let w = wal.start(|(): ()| ());
    let cut3 = w.cut_segment().unwrap();
    assert_eq!(cut3, cut2 + 1, "the fresh empty segment is not cut again");
    w.checkpoint(cut3, |r: &[u8]| Some(r.to_vec())).unwrap();
    w.close().unwrap();
    let wal = Wal::open(d, opts(512)).unwrap();
    assert_eq!(wal.checkpoint(), Some(cut3 - 1));
    assert_eq!(wal.segments(), &[cut3]); // the writer's fresh, empty segment
    assert_eq!(wal.next_segment(), cut3 + 1);
    assert_eq!(replay_all(&wal), expected);
    drop(wal);
    fs::remove_file(seg_path(d, cut3)).unwrap();
    let wal = Wal::open(d, opts(512)).unwrap();
    assert_eq!(
        wal.next_segment(),
        cut3,
        "numbering continues after the checkpoint"
    );
    assert_eq!(replay_all(&wal), expected);
}

#[test]
fn close_drains_pending_commits() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    // The first apply blocks until released, so later commits pile up.
    let w = wal.start(move |i: usize| {
        if i == 0 {
            let _ = gate_rx.recv();
        }
        i
    });
    let first = {
        let w = w.clone();
        thread::spawn(move || w.commit(rec(0), 0))
    };
    while w.stats().records_written() < 1 {
        thread::yield_now();
    }
    let queued: Vec<_> = (1..=10)
        .map(|i| {
            let w = w.clone();
            thread::spawn(move || w.commit(rec(i), i))
        })
        .collect();
    while w.pending_commits() < 10 {
        thread::yield_now();
    }
    let closer = {
        let w = w.clone();
        thread::spawn(move || w.close())
    };
    while !w.is_closed() {
        thread::yield_now();
    }
    assert!(matches!(w.commit(rec(99), 99), Err(WalError::Closed)));
    assert!(matches!(w.cut_segment(), Err(WalError::Closed)));
    gate_tx.send(()).unwrap();
    assert_eq!(first.join().unwrap().unwrap(), 0);
    for (i, h) in queued.into_iter().enumerate() {
        assert_eq!(h.join().unwrap().unwrap(), i + 1);
    }
    closer.join().unwrap().unwrap();
    w.close().unwrap();
    assert!(matches!(w.commit(rec(100), 100), Err(WalError::Closed)));

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let got = replay_all(&wal);
    assert_eq!(got.len(), 11);
    assert_eq!(got[0], rec(0));
}

#[test]
fn async_commit_and_record_checks() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        max_queue_records: 4,
        ..WalOptions::default()
    };
    let w = Wal::open(dir.path(), options.clone())
        .unwrap()
        .start(|i: u64| i + 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let futs: Vec<_> = (0..64u64)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move { w.commit_async(rec(i as usize), i).await })
            })
            .collect();
        for (i, f) in futs.into_iter().enumerate() {
            assert_eq!(f.await.unwrap().unwrap(), i as u64 + 1);
        }
        assert!(matches!(
            w.commit_async(Vec::new(), 0).await,
            Err(WalError::EmptyRecord)
        ));
        w.close().unwrap();
        assert!(matches!(
            w.commit_async(rec(1), 0).await,
            Err(WalError::Closed)
        ));
    });
    assert!(matches!(
        w.commit(Vec::new(), 0),
        Err(WalError::EmptyRecord)
    ));
    assert_eq!(
        replay_all(&Wal::open(dir.path(), options).unwrap()).len(),
        64
    );
}

#[test]
fn drop_without_close_stops_writer() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), WalOptions::default())
        .unwrap()
        .start(|(): ()| ());
    w.commit(b"x".to_vec(), ()).unwrap();
    drop(w); // joins the writer thread
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(replay_all(&wal), vec![b"x".to_vec()]);
}

#[test]
fn replay_callback_error_stops() {
    let dir = tempfile::tempdir().unwrap();
    write_raw_segment(dir.path(), 0, &[rec(0), rec(1), rec(2)]);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let mut seen = 0;
    let res = wal.replay(|_: &[u8]| -> Result<()> {
        seen += 1;
        if seen == 2 {
            Err(WalError::Closed)
        } else {
            Ok(())
        }
    });
    assert!(matches!(res, Err(WalError::Closed)));
    assert_eq!(seen, 2);
}

/// Throughput: 8 committers × 16 KiB records. Run with
/// `cargo test --release -- --ignored --nocapture bench_group_commit`;
/// `ODIN_WAL_BENCH_DIR` picks the disk.
#[test]
#[ignore]
fn bench_group_commit() {
    let base = std::env::var_os("ODIN_WAL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let w = Wal::open(dir.path(), WalOptions::default())
        .unwrap()
        .start(|(): ()| ());
    let per_thread = 2000;
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let w = w.clone();
            thread::spawn(move || {
                let record = vec![t as u8; 16 << 10];
                for _ in 0..per_thread {
                    w.commit(record.clone(), ()).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let s = w.stats();
    println!(
        "{} commits in {secs:.2}s = {:.0} commits/s, {:.1} MiB/s, {} fsyncs ({:.1} records/fsync, {:.3} ms/fsync)",
        s.commits(),
        s.commits() as f64 / secs,
        s.bytes_written() as f64 / secs / (1 << 20) as f64,
        s.fsyncs(),
        s.records_written() as f64 / s.fsyncs() as f64,
        s.fsync_duration_seconds_total() * 1e3 / s.fsyncs() as f64,
    );
    w.close().unwrap();
}

#[test]
fn write_failure_fails_whole_group_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let applied2 = Arc::clone(&applied);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let w = wal.start(move |i: usize| {
        if i == 0 {
            let _ = gate_rx.recv();
        }
        applied2.lock().push(i);
        i
    });
    let first = {
        let w = w.clone();
        thread::spawn(move || w.commit(rec(0), 0))
    };
    while w.stats().records_written() < 1 {
        thread::yield_now();
    }
    // Five commits queue up behind the blocked apply and form one group.
    let group: Vec<_> = (1..=5)
        .map(|i| {
            let w = w.clone();
            thread::spawn(move || w.commit(rec(i), i))
        })
        .collect();
    while w.pending_commits() < 5 {
        thread::yield_now();
    }
    w.stats()
        .inject_write_failures
        .store(1, std::sync::atomic::Ordering::Relaxed);
    gate_tx.send(()).unwrap();
    assert_eq!(first.join().unwrap().unwrap(), 0);
    for h in group {
        let err = h.join().unwrap().unwrap_err();
        assert!(
            err.to_string().starts_with("write segment 00000000: "),
            "{err}"
        );
    }
    assert_eq!(w.stats().commit_errors(), 5);
    assert_eq!(*applied.lock(), vec![0], "failed payloads are not applied");

    // The torn half-write is cut off and writing resumes in a new segment.
    assert_eq!(w.commit(rec(6), 6).unwrap(), 6);
    assert_eq!(w.stats().segments_current(), 1);
    w.close().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.repair_report(), &RepairReport::default());
    assert_eq!(replay_all(&wal), vec![rec(0), rec(6)]);
}

#[test]
fn apply_panic_stops_writer_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), WalOptions::default())
        .unwrap()
        .start(|i: usize| {
            if i == 1 {
                panic!("apply failed");
            }
            i
        });
    assert_eq!(w.commit(rec(0), 0).unwrap(), 0);
    assert!(matches!(w.commit(rec(1), 1), Err(WalError::WriterStopped)));
    // Whether or not the thread has finished unwinding, later commits fail.
    assert!(matches!(w.commit(rec(2), 2), Err(WalError::WriterStopped)));
    assert!(w.has_stopped_unexpectedly());
    assert!(matches!(w.close(), Err(WalError::WriterStopped)));
    assert!(!w.has_stopped_unexpectedly(), "closed: stopped as asked");
    assert!(matches!(w.commit(rec(3), 3), Err(WalError::Closed)));
}

#[test]
fn patient_commits_share_an_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        patience: std::time::Duration::from_millis(300),
        ..WalOptions::default()
    };
    let w = Wal::open(dir.path(), options).unwrap().start(|i: usize| i);
    let before = w.stats().fsyncs();
    let start = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (w, start) = (w.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                w.commit_patient(rec(i), i).unwrap()
            })
        })
        .collect();
    let done: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(done, vec![0, 1, 2, 3]);
    let fsyncs = w.stats().fsyncs() - before;
    assert!(fsyncs < 4, "{fsyncs} fsyncs for 4 patient commits");
    w.close().unwrap();
    assert_eq!(
        replay_all(&Wal::open(dir.path(), opts(64 << 20)).unwrap()).len(),
        4
    );
}

#[test]
fn a_waited_on_commit_ends_the_patience() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        patience: std::time::Duration::from_secs(600),
        ..WalOptions::default()
    };
    let w = Wal::open(dir.path(), options).unwrap().start(|i: usize| i);
    let started = std::time::Instant::now();
    let patient = {
        let w = w.clone();
        thread::spawn(move || w.commit_patient(rec(0), 0).unwrap())
    };
    // Each ordinary commit is written at once, taking whatever is queued along.
    let mut i = 1;
    while !patient.is_finished() {
        assert_eq!(w.commit(rec(i), i).unwrap(), i);
        i += 1;
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }
    assert_eq!(patient.join().unwrap(), 0);
    w.close().unwrap();
}

#[test]
fn a_full_group_ends_the_patience() {
    // Patient commits that join a waiting one do not wake the writer, except the one
    // that fills the group: with a patience of ten minutes, these finish at once.
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        patience: std::time::Duration::from_secs(600),
        max_batch_bytes: 3 * rec(0).len(),
        ..WalOptions::default()
    };
    let w = Wal::open(dir.path(), options).unwrap().start(|i: usize| i);
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            // Nothing tells when the writer has gone to wait for the first one's
            // deadline; a pause lets it, so that the others find it waiting.
            thread::sleep(std::time::Duration::from_millis(30));
            let w = w.clone();
            thread::spawn(move || w.commit_patient(rec(0), i).unwrap())
        })
        .collect();
    for h in &handles {
        while !h.is_finished() {
            assert!(started.elapsed() < std::time::Duration::from_secs(60));
            thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let mut done: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    done.sort_unstable();
    assert_eq!(done, vec![0, 1, 2]);
    w.close().unwrap();
}
