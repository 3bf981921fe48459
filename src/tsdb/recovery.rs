//! Fast restart: the head is recovered from its newest image plus the WAL after it
//! (see `head::image` for the image itself), and images are taken so that little
//! WAL is left to replay.
//!
//! # Which files are kept
//!
//! Up to two images are kept: the newest, and the one before it as a fallback. Once
//! an image is durable, the WAL segments before the *older* kept image's segment and
//! every old-style checkpoint are deleted, and so are the head chunk files retired
//! before the older image was taken. A damaged newest image therefore never refuses
//! the start nor loses an acknowledged sample: start-up logs it, counts it in
//! `odin_tsdb_head_image_failures_total`, renames it `*.damaged`, and loads the one
//! before with the WAL after it. With only one image (the first after an upgrade or
//! a fresh start), the fallback is the whole WAL, which is kept.
//!
//! At start-up, the image loaded becomes the only one: the others, and the chunk
//! files it does not name, are deleted.
//!
//! # When an image is taken
//!
//! At every head cut (after the head is truncated; this replaces the WAL checkpoint),
//! at clean shutdown, and from the maintenance loop once the WAL has grown by
//! [`WAL_BYTES_PER_IMAGE`] or by [`IMAGE_SIZE_FACTOR`] times the last image's size,
//! whichever is more, since the last one. The first bounds the replay after a crash; the
//! second keeps the cost of images a fixed small share of ingest whatever the number
//! of series (an image's cost grows with the series, the WAL with the samples). And
//! once the WAL has stopped growing for [`IDLE_IMAGE_AFTER`] after a burst, so that
//! the burst's end is not left to replay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::log::LogPosition;
use crate::tsdb::db::DbInner;
use crate::tsdb::error::{Result, TsdbError};
use crate::tsdb::head::Head;
use crate::tsdb::head::image::{self, HeadImage, LoadedImage};
use crate::tsdb::machine::MachineState;
use crate::tsdb::metrics::TsdbMetrics;

/// WAL bytes written after which the maintenance loop takes an image (at least).
pub const WAL_BYTES_PER_IMAGE: u64 = 16 << 20;

/// The WAL must also have grown by this many times the last image's size.
pub const IMAGE_SIZE_FACTOR: u64 = 4;

/// An image is also taken once the WAL has stopped growing for this long with at
/// least [`IDLE_IMAGE_MIN_BYTES`] written since the last image: the end of a burst
/// (a backfill, a remote-write client catching up) then leaves no WAL to replay.
pub const IDLE_IMAGE_AFTER: Duration = Duration::from_secs(2);

/// See [`IDLE_IMAGE_AFTER`].
pub const IDLE_IMAGE_MIN_BYTES: u64 = 1 << 20;

/// The images of one database and when the next is due.
pub(crate) struct HeadImages {
    dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// Images on disk that start-up may load, oldest first: the segment each resumes
    /// at, and its chunk-file capture number (`None`: loaded at start-up).
    kept: Vec<(LogPosition, Option<u64>)>,
    /// WAL bytes written (by this process) when the last image was captured.
    wal_bytes_at_last: u64,
    /// Size of the last image written.
    last_image_bytes: u64,
    /// WAL bytes written when last looked at, and since when they are unchanged.
    observed: (u64, Instant),
}

/// A head recovered from an image, or fresh for a whole WAL replay.
pub(crate) struct OpenedHead {
    pub head: Head,
    /// The image loaded; the WAL is then replayed from its position.
    pub image: Option<LoadedImage>,
    pub images: HeadImages,
}

/// Builds the head from the newest image that loads (see the module documentation);
/// without one, a fresh head with an emptied chunk directory.
pub(crate) fn open_head(
    chunks_dir: &Path,
    chunk_range_ms: i64,
    metrics: &TsdbMetrics,
) -> Result<OpenedHead> {
    let io = |e| TsdbError::io(format!("open {}", chunks_dir.display()), e);
    std::fs::create_dir_all(chunks_dir).map_err(io)?;
    let found = image::list_images(chunks_dir).map_err(io)?;
    for &segment in found.iter().rev() {
        let path = chunks_dir.join(image::image_name(segment));
        let started = Instant::now();
        let head = Head::with_existing_chunk_files(chunk_range_ms, chunks_dir).map_err(io)?;
        match image::load(&head, &path) {
            Ok(loaded) => {
                if let Some(files) = head.chunk_files() {
                    files.retain_only(&loaded.files).map_err(io)?;
                }
                for &other in found.iter().filter(|&&s| s != segment) {
                    remove(&chunks_dir.join(image::image_name(other)));
                }
                tracing::info!(
                    image = %path.display(),
                    series = loaded.series,
                    segment = loaded.position.segment,
                    log_index = loaded.position.index,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "head image loaded"
                );
                let position = loaded.position;
                return Ok(OpenedHead {
                    head,
                    image: Some(loaded),
                    images: HeadImages::new(chunks_dir, vec![(position, None)]),
                });
            }
            Err(e) => {
                metrics.head_image_failures.inc();
                let aside = chunks_dir.join(format!("{}.damaged", image::image_name(segment)));
                tracing::error!(
                    image = %path.display(),
                    error = %e,
                    moved_to = %aside.display(),
                    "HEAD IMAGE DAMAGED: falling back to the image before it (or the whole WAL); \
                     no acknowledged sample is lost while the WAL after that is intact"
                );
                if let Err(e) = std::fs::rename(&path, &aside) {
                    tracing::warn!(error = %e, "cannot move the damaged head image aside");
                }
            }
        }
    }
    let head = Head::with_chunk_files(chunk_range_ms, chunks_dir).map_err(io)?;
    Ok(OpenedHead {
        head,
        image: None,
        images: HeadImages::new(chunks_dir, Vec::new()),
    })
}

/// Replaces the database's whole state with a snapshot a peer sent (the archive of
/// `tsdb::replicated`), taken at Raft index `index`. Runs on the applying side, so
/// no entry applies meanwhile; it waits for maintenance to be between two runs.
///
/// The archive is unpacked first (the head image among the images, the blocks
/// staged), so that a failure there leaves the state as it was. Then the blocks are
/// swapped (the sender's in, the ones it no longer has out), the head is emptied and
/// loaded from the image, and the work pending at the image's position replaces
/// this node's. The image is this node's only one from then on: a restart loads it.
pub(crate) fn install_snapshot(db: &DbInner, index: u64, archive: &Path) -> std::io::Result<()> {
    let started = Instant::now();
    // Maintenance may be waiting to take an image, which needs the applying side
    // this runs on: it is told to give up until the lock is free.
    let _maintenance = loop {
        if let Some(guard) = db.maintenance.try_lock_for(Duration::from_millis(50)) {
            break guard;
        }
        db.log().interrupt_positions();
    };
    let unpacked = crate::tsdb::replicated::unpack(archive, index, &db.dir, &db.images.dir)?;
    let mut opened = Vec::with_capacity(unpacked.blocks.len());
    for (ulid, staged) in &unpacked.blocks {
        let place = db.dir.join(ulid.to_string());
        if place.exists() {
            // The same block (names are derived from content) or one the sender
            // rewrote (tombstones): the sender's copy is the state.
            crate::tsdb::compact::remove_block_dir(&place).map_err(std::io::Error::other)?;
        }
        std::fs::rename(staged, &place)?;
        let block = crate::tsdb::block::Block::open(&place).map_err(std::io::Error::other)?;
        opened.push(Arc::new(block));
    }
    std::fs::File::open(&db.dir)?.sync_all()?;
    opened.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    let old = std::mem::replace(&mut *db.blocks.write(), opened);
    for b in old {
        if !unpacked.blocks.contains_key(&b.meta().ulid)
            && let Err(e) = crate::tsdb::compact::remove_block_dir(b.dir())
        {
            tracing::warn!(block = %b.dir().display(), error = %e, "cannot remove a block the snapshot no longer has");
        }
    }

    db.machine.logs.install_segments(&unpacked.log_segments)?;

    db.head.clear();
    let loaded = image::load(&db.head, &unpacked.image).map_err(std::io::Error::other)?;
    let state = crate::tsdb::machine::MachineState::decode(&loaded.extra, &db.head)
        .map_err(std::io::Error::other)?;
    *db.machine.pending.lock() = state.pending;
    db.machine.logs.restore(state.logs);
    db.machine
        .dictionary
        .lock()
        .restore(state.dictionary, &db.head);
    {
        let mut st = db.images.state.lock();
        for (old, _) in st.kept.drain(..) {
            if old.segment != index {
                remove(&db.images.dir.join(image::image_name(old.segment)));
            }
        }
        st.kept.push((
            LogPosition {
                index,
                segment: index,
            },
            None,
        ));
    }
    db.refresh_gauges();
    db.machine.signal.wake();
    tracing::info!(
        index,
        series = loaded.series,
        blocks = unpacked.blocks.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "installed a snapshot from the leader"
    );
    Ok(())
}

/// Gives the memory an image's copy took back to the kernel. The copy is freed as a
/// whole, but glibc keeps freed heap pages (they lie below newer allocations), and
/// the harness measured 200 bytes more RSS per series after ingest (815 → 1,015 at
/// 100k series) and 430 more at the peak until this was added.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free pages to the kernel; it is safe to call
    // at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "cannot remove old head image");
    }
}

impl HeadImages {
    fn new(dir: &Path, kept: Vec<(LogPosition, Option<u64>)>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                kept,
                wal_bytes_at_last: 0,
                last_image_bytes: 0,
                observed: (0, Instant::now()),
            }),
        }
    }

    /// Whether the WAL has grown enough since the last image for another.
    pub(crate) fn due(&self, wal_bytes_written: u64) -> bool {
        let st = self.state.lock();
        let threshold = WAL_BYTES_PER_IMAGE.max(st.last_image_bytes * IMAGE_SIZE_FACTOR);
        wal_bytes_written.saturating_sub(st.wal_bytes_at_last) >= threshold
    }

    /// Whether the WAL stopped growing [`IDLE_IMAGE_AFTER`] ago with enough written
    /// since the last image for another.
    fn idle_due(&self, wal_bytes_written: u64) -> bool {
        let mut st = self.state.lock();
        if st.observed.0 != wal_bytes_written {
            st.observed = (wal_bytes_written, Instant::now());
            return false;
        }
        wal_bytes_written.saturating_sub(st.wal_bytes_at_last) >= IDLE_IMAGE_MIN_BYTES
            && st.observed.1.elapsed() >= IDLE_IMAGE_AFTER
    }

    /// Whether an image is due now, because the WAL grew enough or went idle after
    /// a burst (see [`take_image_if_due`]).
    pub(crate) fn image_due(&self, wal_bytes_written: u64) -> bool {
        self.due(wal_bytes_written) || self.idle_due(wal_bytes_written)
    }
}

/// Takes an image if the WAL has grown enough since the last one. Maintenance thread.
pub(crate) fn take_image_if_due(db: &DbInner) -> Result<()> {
    let written = db.log().stats().bytes_written;
    if db.images.due(written) {
        take_image(db, "wal grew")?;
    } else if db.images.idle_due(written) {
        take_image(db, "wal idle")?;
    }
    Ok(())
}

/// Takes an image, writes it, and deletes what it makes unnecessary (see the module
/// documentation). Called with the maintenance lock held, so that no truncation runs
/// between the copy and the deletions.
pub(crate) fn take_image(db: &DbInner, why: &str) -> Result<()> {
    let result = take(db, why);
    if let Err(e) = &result {
        db.metrics.head_image_failures.inc();
        tracing::error!(error = %e, why, "head image not written; the WAL is kept instead");
    }
    result
}

fn take(db: &DbInner, why: &str) -> Result<()> {
    let started = Instant::now();
    let log = db.log();
    let head: Arc<Head> = db.head.clone();
    let machine = db.machine.clone();
    let wal_bytes = log.stats().bytes_written;
    // The copy runs on the log's applying side, between two entries: the head and
    // the work pending there belong to exactly that position.
    let taken: Arc<Mutex<Option<(HeadImage, MachineState, Duration)>>> = Arc::default();
    let slot = taken.clone();
    log.at_position(Box::new(move |pos: LogPosition| {
        let t = Instant::now();
        let img = head.capture_image(pos);
        let state = MachineState {
            pending: machine.pending.lock().clone(),
            logs: machine.logs.capture(),
            dictionary: machine.dictionary.lock().label_sets(),
        };
        *slot.lock() = Some((img, state, t.elapsed()));
    }))?;
    let (mut img, state, pause) = taken
        .lock()
        .take()
        .ok_or_else(|| TsdbError::Internal("head image: the copy did not run".into()))?;
    // Encoded after the copy, off the applying side.
    img.extra = state
        .encode()
        .map_err(|e| TsdbError::Internal(format!("head image: {e}")))?;
    drop(state);
    db.metrics
        .head_image_pause_us
        .set(pause.as_micros().min(i64::MAX as u128) as i64);
    let images = &db.images;
    let (path, bytes) = img
        .write(&images.dir, db.head.chunk_files())
        .map_err(|e| TsdbError::Internal(format!("write head image: {e}")))?;
    let position = img.position;
    let series = img.num_series();
    let capture = img.capture;
    drop(img);
    release_freed_memory();
    db.metrics.head_images.inc();

    let mut st = images.state.lock();
    st.wal_bytes_at_last = wal_bytes;
    st.last_image_bytes = bytes;
    // An image at the same segment as the newest (nothing written since, the head
    // only truncated) replaced it under the same name.
    if st
        .kept
        .last()
        .is_some_and(|k| k.0.segment == position.segment)
    {
        st.kept.pop();
    }
    st.kept.push((position, capture));
    while st.kept.len() > 2 {
        let (old, _) = st.kept.remove(0);
        remove(&images.dir.join(image::image_name(old.segment)));
    }
    let mut files_deleted = 0;
    if let [(oldest, oldest_capture), _] = st.kept[..] {
        // The older image is the fallback: keep the WAL from its segment on.
        log.release_before(oldest)?;
        if let (Some(c), Some(files)) = (oldest_capture, db.head.chunk_files()) {
            files_deleted = files.delete_retired(c);
        }
    } else if let ([(_, Some(c))], Some(files)) = (&st.kept[..], db.head.chunk_files()) {
        // The only image; the fallback is the whole WAL, which needs no chunk file.
        files_deleted = files.delete_retired(*c);
    }
    drop(st);
    tracing::info!(
        why,
        image = %path.display(),
        bytes,
        series,
        segment = position.segment,
        log_index = position.index,
        writer_pause_us = pause.as_micros() as u64,
        elapsed_ms = started.elapsed().as_millis() as u64,
        chunk_files_deleted = files_deleted,
        "head image written"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Matcher};
    use crate::storage::{Appendable, Queryable, SelectHints, Series};
    use crate::tsdb::{Db, DbOptions};

    const H: i64 = 3_600_000;

    fn opts() -> DbOptions {
        DbOptions {
            retention_ms: 0,
            max_block_ms: 24 * H,
            too_far_in_future_ms: 0,
            ..DbOptions::default()
        }
    }

    fn open(dir: &Path, metrics: &TsdbMetrics) -> Db {
        Db::open_for_tests(dir, opts(), metrics)
    }

    /// One sample a minute in `[from, to)` for 20 series.
    fn fill(db: &Db, from: i64, to: i64) {
        let mut t = from;
        while t < to {
            let mut app = db.appender();
            for i in 0..20 {
                let l = Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]);
                app.append(&l, t, (t / 1000 + i) as f64).unwrap();
            }
            assert_eq!(app.commit().unwrap().accepted, 20, "at {t}");
            t += 60_000;
        }
    }

    /// Every sample as (labels, t, v), sorted.
    fn samples(db: &Db) -> Vec<(String, i64, u64)> {
        let set: Vec<Series> = db
            .querier(i64::MIN, i64::MAX)
            .unwrap()
            .select(&SelectHints::default(), &[Matcher::equal("__name__", "m")])
            .unwrap()
            .collect::<crate::storage::Result<_>>()
            .unwrap();
        let mut out = Vec::new();
        for s in set {
            for x in s.samples {
                out.push((format!("{:?}", s.labels), x.t, x.v.to_bits()));
            }
        }
        out.sort();
        out
    }

    fn expected(from: i64, to: i64) -> usize {
        ((to - from) / 60_000) as usize * 20
    }

    fn images(dir: &Path) -> Vec<u64> {
        image::list_images(&dir.join("chunks_head")).unwrap()
    }

    fn damage(path: &Path) {
        let mut b = std::fs::read(path).unwrap();
        let n = b.len();
        b[n / 2] ^= 0x40;
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn restart_loads_the_image_and_replays_only_the_wal_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = TsdbMetrics::default();
        let db = open(dir.path(), &m);
        fill(&db, 0, H);
        db.close().unwrap();
        drop(db);
        assert_eq!(
            images(dir.path()).len(),
            1,
            "clean shutdown writes an image"
        );
        let db = open(dir.path(), &m);
        assert_eq!(
            m.wal_replay_records.get(),
            0,
            "nothing after the shutdown image"
        );
        let before = samples(&db);
        assert_eq!(before.len(), expected(0, H));
        // More, then a crash (no close): the image and the WAL tail.
        fill(&db, H, 2 * H);
        let index = db.inner().log().applied_index();
        drop(db);
        let m2 = TsdbMetrics::default();
        let db = open(dir.path(), &m2);
        assert_eq!(m2.wal_replay_records.get(), 60, "only the tail replayed");
        assert_eq!(samples(&db).len(), expected(0, 2 * H));
        assert_eq!(
            db.inner().log().applied_index(),
            index,
            "the log index carries on"
        );
    }

    #[test]
    fn a_damaged_newest_image_falls_back_to_the_one_before_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = TsdbMetrics::default();
        let db = open(dir.path(), &m);
        fill(&db, 0, H);
        db.close().unwrap();
        drop(db);
        let db = open(dir.path(), &m);
        fill(&db, H, 2 * H);
        db.close().unwrap();
        drop(db);
        let kept = images(dir.path());
        assert_eq!(kept.len(), 2, "the newest and its fallback");
        let newest = dir
            .path()
            .join("chunks_head")
            .join(image::image_name(kept[1]));
        damage(&newest);
        let m = TsdbMetrics::default();
        let db = open(dir.path(), &m);
        assert_eq!(m.head_image_failures.get(), 1);
        assert_eq!(samples(&db).len(), expected(0, 2 * H));
        assert!(
            dir.path()
                .join("chunks_head")
                .join(format!("{}.damaged", image::image_name(kept[1])))
                .exists()
        );
        // And it goes on from there.
        fill(&db, 2 * H, 3 * H);
        drop(db);
        let db = open(dir.path(), &TsdbMetrics::default());
        assert_eq!(samples(&db).len(), expected(0, 3 * H));
    }

    #[test]
    fn a_damaged_only_image_falls_back_to_the_whole_wal() {
        for torn in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = open(dir.path(), &TsdbMetrics::default());
            fill(&db, 0, H);
            db.close().unwrap();
            drop(db);
            let kept = images(dir.path());
            assert_eq!(kept.len(), 1);
            let path = dir
                .path()
                .join("chunks_head")
                .join(image::image_name(kept[0]));
            if torn {
                let b = std::fs::read(&path).unwrap();
                std::fs::write(&path, &b[..b.len() / 3]).unwrap();
            } else {
                damage(&path);
            }
            let m = TsdbMetrics::default();
            let db = open(dir.path(), &m);
            assert_eq!(m.head_image_failures.get(), 1, "torn: {torn}");
            assert_eq!(samples(&db).len(), expected(0, H), "torn: {torn}");
        }
    }

    #[test]
    fn chunk_files_the_fallback_image_names_survive_the_head_cut() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), &TsdbMetrics::default());
        fill(&db, 0, 3 * H);
        db.close().unwrap();
        drop(db);
        let db = open(dir.path(), &TsdbMetrics::default());
        fill(&db, 3 * H, 4 * H);
        // Cuts 0-2 h into a block: truncation retires the chunk files of that range,
        // and an image is taken; the image loaded at start still names them.
        db.compact().unwrap();
        assert_eq!(db.blocks().len(), 1);
        let kept = images(dir.path());
        assert_eq!(kept.len(), 2);
        drop(db);
        damage(
            &dir.path()
                .join("chunks_head")
                .join(image::image_name(kept[1])),
        );
        let m = TsdbMetrics::default();
        let db = open(dir.path(), &m);
        assert_eq!(m.head_image_failures.get(), 1);
        assert_eq!(samples(&db).len(), expected(0, 4 * H));
        // Two more images: now the retired files go.
        let files = || {
            std::fs::read_dir(dir.path().join("chunks_head"))
                .unwrap()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .unwrap()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        };
        fill(&db, 4 * H, 6 * H);
        db.compact().unwrap();
        let _m = db.inner().maintenance.lock();
        take_image(db.inner(), "test").unwrap();
        take_image(db.inner(), "test").unwrap();
        drop(_m);
        let after = files();
        assert!(after >= 1);
        assert_eq!(samples(&db).len(), expected(0, 6 * H));
        drop(db);
        let db = open(dir.path(), &TsdbMetrics::default());
        assert_eq!(samples(&db).len(), expected(0, 6 * H));
    }

    #[test]
    fn a_data_dir_with_an_old_wal_checkpoint_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), &TsdbMetrics::default());
        fill(&db, 0, H);
        drop(db);
        // What the previous version did at a head cut: a checkpoint of the WAL.
        {
            use crate::log::wal::{Wal, WalOptions};
            let wal = Wal::open(dir.path().join("wal"), WalOptions::default()).unwrap();
            let writer = wal.start(|(): ()| ());
            let seg = writer.cut_segment().unwrap();
            let stats = writer.checkpoint(seg, |r| Some(r.to_vec())).unwrap();
            assert!(stats.checkpoint.is_some());
            writer.close().unwrap();
        }
        let db = open(dir.path(), &TsdbMetrics::default());
        fill(&db, H, 2 * H);
        // A crash: no shutdown image, and the previous version left no image.
        drop(db);
        assert!(images(dir.path()).is_empty());
        let m = TsdbMetrics::default();
        let db = open(dir.path(), &m);
        assert_eq!(samples(&db).len(), expected(0, 2 * H));
        // The first image keeps the checkpoint (the only fallback); the second
        // removes it.
        db.close().unwrap();
        drop(db);
        let cps = || {
            std::fs::read_dir(dir.path().join("wal"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_str().unwrap().starts_with("checkpoint."))
                .count()
        };
        assert_eq!(cps(), 1);
        let db = open(dir.path(), &TsdbMetrics::default());
        db.close().unwrap();
        drop(db);
        assert_eq!(cps(), 0);
        let db = open(dir.path(), &TsdbMetrics::default());
        assert_eq!(samples(&db).len(), expected(0, 2 * H));
    }

    #[test]
    fn the_writer_pause_is_measured_and_a_cut_takes_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let m = TsdbMetrics::default();
        let db = open(dir.path(), &m);
        fill(&db, 0, 4 * H);
        db.compact().unwrap();
        assert_eq!(m.head_images.get(), 1);
        assert!(m.head_image_pause_us.get() >= 0);
        assert_eq!(samples(&db).len(), expected(0, 4 * H));
    }
}
