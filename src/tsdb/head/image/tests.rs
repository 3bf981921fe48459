use super::*;
use crate::log::record::Batch;
use crate::model::Sample;

const RANGE: i64 = 7_200_000;

/// A deterministic noisy sample stream: jittered timestamps, values needing several
/// bytes each, so that open chunks move bytes into slots.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn labels(i: usize) -> Vec<(String, String)> {
    vec![
        ("__name__".into(), format!("m{}", i % 3)),
        ("instance".into(), format!("host-{i}")),
        ("job".into(), "node".into()),
    ]
}

/// Appends samples `[from, to)` (15 s apart, jittered) to `series` series.
fn fill(head: &Head, series: usize, from: i64, to: i64, seed: u64) {
    let mut noise = Noise(seed);
    let mut t = from;
    while t < to {
        let mut b = Batch::default();
        for i in 0..series {
            let ls = labels(i);
            let pairs: Vec<(&str, &str)> =
                ls.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let x = noise.next();
            b.push_series(
                Labels::from_pairs(pairs),
                &[Sample::new(t + (x % 5) as i64, (x >> 11) as f64)],
            );
        }
        head.apply_batch(&b);
        t += 15_000;
    }
}

/// A series' labels and its chunks (min time, max time, bytes).
type Contents = Vec<(String, Vec<(i64, i64, Vec<u8>)>)>;

/// Every series' labels and chunks, byte for byte.
fn contents(head: &Head) -> Contents {
    head.select_series(&[])
        .iter()
        .map(|s| {
            let chunks = s
                .chunks(head.chunk_files(), i64::MIN, i64::MAX)
                .into_iter()
                .map(|c| (c.min_t, c.max_t, c.bytes.to_vec()))
                .collect();
            (format!("{:?}", s.labels), chunks)
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

const POS: LogPosition = LogPosition {
    segment: 7,
    index: 42,
};

#[test]
fn an_image_round_trips_and_the_open_chunks_go_on_as_if_never_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = Head::with_chunk_files(RANGE, &dir_a).unwrap();
    // 40 series over 50 min: closed chunks in files and open ones in slots.
    fill(&a, 40, 0, 3_000_000, 1);
    // A deletion rewrites one series into heap chunks (inline in the image).
    a.apply_deletion(&crate::log::record::Deletion {
        matchers: vec![crate::model::Matcher::equal("instance", "host-3")],
        min_t: 100_000,
        max_t: 200_000,
    });
    // A series with one sample: its open chunk has no slot yet.
    let mut b = Batch::default();
    b.push_series(
        Labels::from_pairs([("__name__", "lonely")]),
        &[Sample::new(2_999_000, 1.5)],
    );
    a.apply_batch(&b);
    a.set_min_valid_time(-5);

    let img = a.capture_image(POS);
    assert_eq!(img.num_series(), 41);
    let (path, bytes) = img.write(&dir_a, a.chunk_files()).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), bytes);
    assert_eq!(path.file_name().unwrap(), "snapshot.00000007");
    // A restart sees what was on disk at that moment.
    copy_dir(&dir_a, &dir_b);

    let b = Head::with_existing_chunk_files(RANGE, &dir_b).unwrap();
    let loaded = load(&b, &dir_b.join("snapshot.00000007")).unwrap();
    assert_eq!(loaded.position, POS);
    assert_eq!(loaded.series, 41);
    assert!(!loaded.files.is_empty());
    assert_eq!(loaded.min_valid_time, -5);
    assert_eq!((b.min_time(), b.max_time()), (a.min_time(), a.max_time()));
    assert_eq!(b.num_series(), a.num_series());
    assert_eq!(
        b.label_values("instance", &[]),
        a.label_values("instance", &[])
    );
    assert_eq!(contents(&b), contents(&a));
    // Open chunks are back in their slots with the heap buffer of a live head.
    let s = b
        .get_by_labels(&Labels::from_pairs(
            labels(5).iter().map(|(n, v)| (n.as_str(), v.as_str())),
        ))
        .unwrap();
    {
        let st = s.state.lock();
        let open = st.open.as_ref().unwrap();
        assert!(open.slot.is_some());
        assert_eq!(open.chunk.heap_bytes(), OPEN_CHUNK_CAPACITY);
        assert!(
            st.closed
                .iter()
                .all(|c| matches!(c.data, ClosedData::File(_)))
        );
    }

    // The stored encoder state is what decoding each open chunk gives.
    for s in b.select_series(&[]) {
        let st = s.state.lock();
        let open = st.open.as_ref().unwrap();
        let whole = open
            .with_bytes(b.chunk_files(), |bytes| bytes.to_vec())
            .unwrap();
        let decoded = XorChunk::from_bytes(whole).unwrap();
        assert_eq!(open.chunk.state(), decoded.state(), "{:?}", s.labels);
    }

    // Both heads go on the same way, across chunk cuts and a range boundary.
    fill(&a, 40, 3_000_000, 8_000_000, 2);
    fill(&b, 40, 3_000_000, 8_000_000, 2);
    assert_eq!(contents(&b), contents(&a));
}

#[test]
fn an_image_without_chunk_files_keeps_every_chunk_inline() {
    let a = Head::new(RANGE);
    fill(&a, 5, 0, 2_000_000, 3);
    let dir = tempfile::tempdir().unwrap();
    let img = a.capture_image(POS);
    assert!(img.files().is_empty());
    let (path, _) = img.write(dir.path(), None).unwrap();
    let b = Head::new(RANGE);
    load(&b, &path).unwrap();
    assert_eq!(contents(&b), contents(&a));
    fill(&a, 5, 2_000_000, 3_000_000, 4);
    fill(&b, 5, 2_000_000, 3_000_000, 4);
    assert_eq!(contents(&b), contents(&a));
}

#[test]
fn a_portable_image_carries_every_chunk_to_a_head_without_those_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = Head::with_chunk_files(RANGE, &dir_a).unwrap();
    // Closed chunks in files, open ones in slots, one heap chunk (a deletion) and
    // an open chunk without a slot.
    fill(&a, 30, 0, 3_000_000, 5);
    a.apply_deletion(&crate::log::record::Deletion {
        matchers: vec![crate::model::Matcher::equal("instance", "host-2")],
        min_t: 100_000,
        max_t: 200_000,
    });
    let mut b = Batch::default();
    b.push_series(
        Labels::from_pairs([("__name__", "lonely")]),
        &[Sample::new(2_999_000, 2.5)],
    );
    a.apply_batch(&b);
    a.set_min_valid_time(-7);
    let (path, _) = a.capture_image(POS).write(&dir_a, a.chunk_files()).unwrap();
    let bytes = portable(&path, &dir_a).unwrap();

    // Another node's head, with chunk files of its own (none of a's).
    let b = Head::with_chunk_files(RANGE, &dir_b).unwrap();
    let path_b = dir_b.join("snapshot.00000007");
    fs::write(&path_b, &bytes).unwrap();
    let loaded = load(&b, &path_b).unwrap();
    assert!(loaded.files.is_empty(), "{:?}", loaded.files);
    assert_eq!(loaded.position, POS);
    assert_eq!(loaded.min_valid_time, -7);
    assert_eq!(contents(&b), contents(&a));
    // Both go on the same way.
    fill(&a, 30, 3_000_000, 8_000_000, 6);
    fill(&b, 30, 3_000_000, 8_000_000, 6);
    assert_eq!(contents(&b), contents(&a));
    // A damaged file or a missing chunk file is refused.
    fs::remove_file(dir_a.join("000001")).unwrap();
    assert!(portable(&path, &dir_a).is_err());
}

#[test]
fn clearing_a_head_leaves_it_empty_and_ready_for_an_image() {
    let a = Head::new(RANGE);
    fill(&a, 10, 0, 1_000_000, 8);
    a.set_min_valid_time(5);
    a.clear();
    assert_eq!(a.num_series(), 0);
    assert!(a.select_series(&[]).is_empty());
    assert!(a.label_values("instance", &[]).is_empty());
    assert_eq!(a.min_valid_time(), i64::MIN);
    let other = Head::new(RANGE);
    fill(&other, 4, 0, 500_000, 9);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = other.capture_image(POS).write(dir.path(), None).unwrap();
    load(&a, &path).unwrap();
    assert_eq!(contents(&a), contents(&other));
    assert_eq!(
        (a.min_time(), a.max_time()),
        (other.min_time(), other.max_time())
    );
}

#[test]
fn a_damaged_image_is_refused_whatever_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let a = Head::with_chunk_files(RANGE, dir.path()).unwrap();
    fill(&a, 10, 0, 3_000_000, 5);
    let (path, len) = a
        .capture_image(POS)
        .write(dir.path(), a.chunk_files())
        .unwrap();
    let good = fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("torn in half", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("a flipped bit", {
            let mut b = good.clone();
            b[len as usize / 3] ^= 0x10;
            b
        }),
        ("zeroed tail", {
            let mut b = good.clone();
            let n = b.len();
            b[n - 100..].fill(0);
            b
        }),
    ];
    for (what, bytes) in cases {
        fs::write(&path, &bytes).unwrap();
        let head = Head::with_existing_chunk_files(RANGE, dir.path()).unwrap();
        assert!(
            matches!(load(&head, &path), Err(ImageError::Damaged(_))),
            "{what}"
        );
    }
    // A chunk file the image names has gone: refused too, not a panic or a hole.
    fs::write(&path, &good).unwrap();
    for f in a.chunk_files().unwrap().dir().read_dir().unwrap() {
        let f = f.unwrap();
        if f.file_name()
            .to_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            fs::remove_file(f.path()).unwrap();
        }
    }
    let head = Head::with_existing_chunk_files(RANGE, dir.path()).unwrap();
    assert!(matches!(load(&head, &path), Err(ImageError::Damaged(_))));
}

#[test]
fn list_images_orders_them_and_removes_unfinished_ones() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "snapshot.00000010",
        "snapshot.00000002",
        "snapshot.00000011.tmp",
        "snapshot.00000003.damaged",
        "000001",
    ] {
        fs::write(dir.path().join(name), b"x").unwrap();
    }
    assert_eq!(list_images(dir.path()).unwrap(), vec![2, 10]);
    assert!(!dir.path().join("snapshot.00000011.tmp").exists());
    assert!(dir.path().join("000001").exists());
}
