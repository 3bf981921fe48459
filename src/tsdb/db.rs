//! [`Db`]: the head and the blocks of one data directory, fed by the log it is given
//! (its state machine is [`DbMachine`]), behind the `storage` seams.
//!
//! Directory layout (Prometheus's, so `promtool tsdb` and Prometheus can open it):
//! ```text
//! <dir>/lock                      advisory lock: one process per directory
//! <dir>/wal/…                     WAL segments (checkpoints of earlier versions are read)
//! <dir>/chunks_head/…             head chunk files and head images (see `recovery`)
//! <dir>/<ULID>/                   one block each: meta.json, index, chunks/, tombstones
//! <dir>/<ULID>.tmp-for-creation   a block being written (removed at start-up)
//! <dir>/<ULID>.tmp-for-deletion   a block being deleted (removed at start-up)
//! <dir>/snapshots/<name>/         admin snapshots
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::log::record::{self, Batch, Deletion, HeadCut};
use crate::log::{CommitLog, LogError, LogStore, Urgency};
use crate::model::{Labels, Matcher, Sample};
use crate::storage::{
    AppendError, AppendSummary, Appendable, Appender, ChunkQuerier, ChunkQueryable, Querier,
    Queryable, StorageError,
};
use crate::tsdb::block::Block;
use crate::tsdb::compact;
use crate::tsdb::error::{Result, TsdbError};
use crate::tsdb::head::{Head, MemSeries};
use crate::tsdb::isolation::ReadEpochs;
use crate::tsdb::machine::{DbEntry, DbMachine};
use crate::tsdb::metrics::TsdbMetrics;
use crate::tsdb::querier::DbQuerier;
use crate::tsdb::recovery;
use crate::tsdb::shipping::ShippingHook;

/// Default of [`DbOptions::too_far_in_future_ms`]: 10 minutes, Mimir's
/// `-validation.create-grace-period`.
pub const DEFAULT_TOO_FAR_IN_FUTURE_MS: i64 = 10 * 60_000;

/// How the database behaves; the defaults are Prometheus's.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Blocks older than this (relative to the newest block) are deleted; 0 = never.
    pub retention_ms: i64,
    /// Blocks are deleted, oldest first, while all blocks together exceed this; 0 = no limit.
    pub retention_bytes: u64,
    /// Sealed log segments whose window ended longer ago than this are deleted;
    /// `None`: as `retention_ms`; 0 = never (`--logs.retention.time`).
    pub logs_retention_ms: Option<i64>,
    /// The head's chunk range and the span of a block cut from the head.
    pub min_block_ms: i64,
    /// The largest span compaction builds.
    pub max_block_ms: i64,
    /// Samples newer than the wall clock plus this are refused (`too_far_in_future`),
    /// so that one sample from a wrong clock cannot move the head's window and make
    /// every later write out of bounds; 0 accepts any time, as Prometheus does.
    /// Thanos Receive's `--tsdb.too-far-in-future.time-window`; the default is
    /// Mimir's creation grace period.
    pub too_far_in_future_ms: i64,
    /// Set when blocks ship to object storage: compaction then merges and retention
    /// deletes only blocks whose data has shipped.
    pub shipping: Option<ShippingHook>,
    /// The external labels of the appliance (or cluster): part of every block's
    /// identity, from which its ULID is derived.
    pub external_labels: std::collections::BTreeMap<String, String>,
}

impl Default for DbOptions {
    fn default() -> Self {
        let retention_ms = 7 * 24 * 3_600_000;
        Self {
            retention_ms,
            retention_bytes: 0,
            logs_retention_ms: None,
            min_block_ms: 2 * 3_600_000,
            max_block_ms: retention_ms / 10,
            too_far_in_future_ms: DEFAULT_TOO_FAR_IN_FUTURE_MS,
            shipping: None,
            external_labels: Default::default(),
        }
    }
}

/// A handle to an open database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

pub(crate) struct DbInner {
    pub(crate) dir: PathBuf,
    pub(crate) opts: DbOptions,
    pub(crate) head: Arc<Head>,
    /// The state machine the log applies to; holds the work applied entries left.
    pub(crate) machine: Arc<DbMachine>,
    log: Arc<dyn CommitLog<DbEntry, AppendSummary>>,
    pub(crate) blocks: RwLock<Vec<Arc<Block>>>,
    /// The head images on disk and when the next is due.
    pub(crate) images: recovery::HeadImages,
    /// Open queriers by the block-list epoch they saw; a head cut waits for older ones.
    pub(crate) reads: Arc<ReadEpochs>,
    pub(crate) metrics: TsdbMetrics,
    /// One structural change (cut, compaction, retention, deletion, snapshot) at a time.
    pub(crate) maintenance: Mutex<()>,
    /// Blocks whose merge failed (a damaged chunk): left out of compaction plans from
    /// then on, so one bad block never stops compaction of the others or retention
    /// (Prometheus marks such a block `compaction.failed` in its meta).
    pub(crate) compaction_failed: Mutex<std::collections::HashSet<ulid::Ulid>>,
    closed: AtomicBool,
    _lock: fs::File,
}

impl Db {
    /// Opens (or creates) the database in `dir`: loads the blocks, then starts `log`,
    /// which applies what it holds to the head and from then on every entry
    /// submitted. On one node the log is the WAL (`log::wal::WalLog`); damage to it
    /// loses only the damaged entries. A block that cannot be read or whose meta is
    /// implausible is moved to `corrupted/` with an error log.
    pub fn open(
        dir: &Path,
        opts: DbOptions,
        metrics: TsdbMetrics,
        log: impl LogStore<DbMachine> + 'static,
    ) -> Result<Db> {
        fs::create_dir_all(dir)
            .map_err(|e| TsdbError::io(format!("create {}", dir.display()), e))?;
        let lock = lock_dir(dir)?;
        remove_leftovers(dir)?;

        let blocks = open_blocks(dir, &metrics)?;
        let chunks_dir = dir.join("chunks_head");
        let recovery::OpenedHead {
            head,
            image,
            images,
        } = recovery::open_head(&chunks_dir, opts.min_block_ms, &metrics)?;
        let head = Arc::new(head);
        let started = Instant::now();
        let mut machine = DbMachine::new(
            head.clone(),
            Some(chunks_dir.clone()),
            opts.too_far_in_future_ms,
        );
        let logs_dir = dir.join("logs");
        machine.logs = Arc::new(
            crate::logs::store::LogStore::open(&logs_dir)
                .map_err(|e| TsdbError::io(format!("open {}", logs_dir.display()), e))?,
        );
        let machine = Arc::new(machine);
        // The image (when one loaded) brought the head's bound and the pending work
        // of its position; the log replays what came after. Its cuts raise the bound
        // where they did the first time, so replayed deletions clamp their
        // tombstones as they did then. The blocks' end is a floor set afterwards,
        // for a log that lost its cuts.
        let from = match image {
            Some(image) => {
                let state = crate::tsdb::machine::MachineState::decode(&image.extra, &head)
                    .map_err(|e| TsdbError::Internal(format!("head image's machine state: {e}")))?;
                *machine.pending.lock() = state.pending;
                machine.logs.restore(state.logs);
                machine.dictionary.lock().restore(state.dictionary, &head);
                Some(image.position)
            }
            None => None,
        };
        let (log, recovery) = Box::new(log).start(machine.clone(), from)?;
        if let Some(max) = trusted_blocks_end(&blocks, &opts) {
            head.set_min_valid_time(max);
        }
        metrics.wal_replay_records.inc_by(recovery.entries);
        metrics.wal_corruptions.inc_by(recovery.corruptions);
        metrics.wal_corrupt_bytes.inc_by(recovery.corrupt_bytes);
        metrics.wal_segments_missing.inc_by(recovery.missing);
        metrics.wal_records_undecodable.inc_by(recovery.undecodable);
        tracing::info!(
            entries = recovery.entries,
            undecodable = recovery.undecodable,
            series = head.num_series(),
            blocks = blocks.len(),
            corrupt_bytes_truncated = recovery.corrupt_bytes,
            segments_missing = recovery.missing,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log replayed"
        );

        let stats_log = log.clone();
        metrics.wal.set(Box::new(move || {
            let s = stats_log.stats();
            crate::tsdb::metrics::WalReading {
                records: s.entries_written,
                bytes: s.bytes_written,
                fsyncs: s.fsyncs,
                fsync_seconds: s.fsync_seconds,
                commit_errors: s.write_errors,
                segment: s.segment,
            }
        }));
        let inner = Arc::new(DbInner {
            dir: dir.to_path_buf(),
            opts,
            head,
            machine,
            log,
            blocks: RwLock::new(blocks),
            images,
            reads: Arc::default(),
            metrics,
            maintenance: Mutex::new(()),
            compaction_failed: Mutex::new(Default::default()),
            closed: AtomicBool::new(false),
            _lock: lock,
        });
        inner.refresh_gauges();
        let weak = Arc::downgrade(&inner);
        let _ = inner
            .machine
            .installer
            .set(Box::new(move |index, archive: &Path| {
                match weak.upgrade() {
                    Some(db) => recovery::install_snapshot(&db, index, archive),
                    None => Err(std::io::Error::other("the database is closed")),
                }
            }));
        Ok(Db { inner })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &DbInner {
        &self.inner
    }

    pub fn head(&self) -> &Head {
        &self.inner.head
    }

    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.inner.blocks.read().clone()
    }

    /// Runs one round of maintenance: cuts full head ranges into blocks, compacts
    /// blocks, applies retention. Blocking; call it from a background thread.
    pub fn compact(&self) -> Result<()> {
        compact::run(&self.inner)
    }

    /// Deletes the samples of the series matching `matchers` in `[min_t, max_t]`: an
    /// entry in the log, applied to the head at once and to the blocks as tombstones
    /// before this returns.
    pub fn delete_series(&self, matchers: Vec<Matcher>, min_t: i64, max_t: i64) -> Result<()> {
        let entry = DbEntry::Deletion(Deletion {
            matchers,
            min_t,
            max_t,
        });
        self.inner.log.submit(None, entry, Urgency::Now)?;
        let _m = self.inner.maintenance.lock();
        compact::carry_out_pending(&self.inner)
    }

    /// Rewrites every block that has tombstones without the deleted data.
    pub fn clean_tombstones(&self) -> Result<()> {
        let _m = self.inner.maintenance.lock();
        compact::clean_tombstones(&self.inner)
    }

    /// Writes a snapshot under `<dir>/snapshots/<name>` (blocks hard-linked, the head
    /// written as a block unless `skip_head`) and returns its name.
    pub fn snapshot(&self, skip_head: bool) -> Result<String> {
        let _m = self.inner.maintenance.lock();
        compact::snapshot(&self.inner, skip_head)
    }

    /// Waits until the head has become compactable, `timeout` passes, or the database
    /// is closed. Returns false once closed. The maintenance loop calls this between
    /// rounds of [`Db::compact`].
    pub fn wait_for_maintenance(&self, timeout: std::time::Duration) -> bool {
        let closed = || self.inner.closed.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        // Look at the log every little while (a few atomic reads): nothing wakes the
        // loop when a burst of writes ends, and its head image is due shortly after.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let step = left.min(recovery::IDLE_IMAGE_AFTER / 2);
            let woken = self.inner.machine.signal.wait(step, closed);
            if closed() {
                return false;
            }
            let written = self.inner.log.stats().bytes_written;
            if woken || Instant::now() >= deadline || self.inner.images.image_due(written) {
                return true;
            }
        }
    }

    /// Asks the maintenance loop for a round soon (for example after blocks shipped,
    /// so that compaction and retention can go ahead with them).
    pub fn request_maintenance(&self) {
        self.wake_maintenance();
    }

    fn wake_maintenance(&self) {
        self.inner.machine.signal.wake();
    }

    fn head_compactable(&self) -> bool {
        self.inner.head_cut_due().is_some()
    }

    pub fn stats(&self) -> crate::storage::StorageStats {
        let blocks = self.inner.blocks.read();
        let head = &self.inner.head;
        crate::storage::StorageStats {
            head_series: head.num_series(),
            head_time_range: (!head.is_empty()).then(|| (head.min_time(), head.max_time())),
            blocks: blocks.len(),
            blocks_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
            head_chunks: head.num_chunks(),
            head_labels: head.label_stats(),
            head_label_pairs: head.label_pair_counts(),
        }
    }

    /// Why the database can no longer take writes although nobody closed it: its
    /// WAL writer thread is gone (a panic while applying). The appliance cannot go
    /// on without it; `None` while all is well.
    pub fn write_path_failure(&self) -> Option<String> {
        self.inner.log.failure()
    }

    /// Stops accepting writes, lets in-flight commits finish and closes the WAL.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.wake_maintenance();
        if self.inner.log.failure().is_none() {
            // A failure is logged and counted; the log still holds everything.
            let _m = self.inner.maintenance.lock();
            let _ = recovery::take_image(&self.inner, "shutdown");
        }
        self.inner.log.close()?;
        Ok(())
    }

    /// Takes a head image if the WAL has grown enough since the last one (see
    /// `recovery`). Blocking; the maintenance loop calls it after [`Db::compact`].
    pub fn take_head_image_if_due(&self) -> Result<()> {
        let _m = self.inner.maintenance.lock();
        recovery::take_image_if_due(&self.inner)
    }

    /// Commits a batch, blocking until it is durable; the path of every appender's
    /// blocking commit.
    fn commit_batch(
        &self,
        batch: Batch,
        hints: Vec<Option<Arc<MemSeries>>>,
        patient: bool,
    ) -> crate::storage::Result<AppendSummary> {
        let (prepared, refused) = self.prepare_commit(batch, hints, None)?;
        let Some((bytes, entry)) = prepared else {
            return Ok(self.refused_only(refused));
        };
        let urgency = if patient {
            Urgency::Patient
        } else {
            Urgency::Now
        };
        let committed = self.inner.log.submit(bytes, entry, urgency);
        self.committed(committed, refused)
    }

    /// The outcome of a batch whose every sample was refused before the WAL.
    fn refused_only(&self, refused: AppendSummary) -> AppendSummary {
        if refused.rejected() > 0 {
            self.inner.metrics.observe_commit(&refused);
        }
        refused
    }

    /// The log entry of a batch (`None` for an empty batch), with its bytes where a
    /// `memo` makes them cheap (else the log encodes it if it needs them), and the
    /// samples refused before it reaches the log.
    ///
    /// Samples too far in the future are dropped here, against the wall clock at
    /// append time, and never written: replaying the WAL later (when the clock has
    /// moved on) then rebuilds the same head, which a check in the head's apply
    /// would not.
    #[allow(clippy::type_complexity)]
    fn prepare_commit(
        &self,
        batch: Batch,
        hints: Vec<Option<Arc<MemSeries>>>,
        memo: Option<&mut record::LabelSectionMemo>,
    ) -> crate::storage::Result<(Option<(Option<Vec<u8>>, DbEntry)>, AppendSummary)> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StorageError::Unavailable("database is closed".into()));
        }
        let mut refused = AppendSummary::default();
        let window = self.inner.opts.too_far_in_future_ms;
        let (batch, hints) = if window > 0 {
            let limit = crate::model::now_ms().saturating_add(window);
            drop_samples_after(batch, hints, limit, &mut refused)
        } else {
            (batch, hints)
        };
        if batch.is_empty() {
            return Ok((None, refused));
        }
        let entry = DbEntry::Batch(batch, hints);
        let bytes = memo.map(|memo| entry.encode(Some(memo)));
        Ok((Some((bytes, entry)), refused))
    }

    /// Accounts for a commit's outcome; wakes maintenance when the head is due.
    fn committed(
        &self,
        committed: std::result::Result<AppendSummary, LogError>,
        refused: AppendSummary,
    ) -> crate::storage::Result<AppendSummary> {
        match committed {
            Ok(mut summary) => {
                summary.merge(&refused);
                self.inner.metrics.observe_commit(&summary);
                self.inner
                    .metrics
                    .head_series
                    .set(self.inner.head.num_series() as i64);
                if self.head_compactable()
                    || self.inner.images.due(self.inner.log.stats().bytes_written)
                {
                    self.wake_maintenance();
                }
                Ok(summary)
            }
            Err(e) => Err(self.commit_failed(e)),
        }
    }

    fn commit_failed(&self, e: LogError) -> StorageError {
        self.inner.metrics.commit_failures.inc();
        match e {
            // The cluster could not commit it (no leader, no quorum within the write
            // timeout): the client should try again, here or at another node.
            LogError::NotLeader { .. } | LogError::Cluster(_) => {
                StorageError::Unavailable(format!("not committed: {e}"))
            }
            e => StorageError::internal("commit to the log", e),
        }
    }
}

/// Log lines go through the same log as samples; the log store beside the head
/// applies them (`logs::store`).
impl crate::logs::LogStorage for Db {
    fn push(&self, batch: crate::log::record::LogBatch) -> crate::logs::Pushed {
        let db = self.clone();
        Box::pin(async move {
            let committed = db
                .inner
                .log
                .submit_async(None, DbEntry::Logs(batch), Urgency::Now)
                .await;
            match committed {
                Ok(summary) => {
                    db.inner.metrics.observe_log_push(&summary);
                    if db.inner.images.due(db.inner.log.stats().bytes_written) {
                        db.wake_maintenance();
                    }
                    Ok(summary)
                }
                Err(e) => Err(db.commit_failed(e)),
            }
        })
    }

    fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        needles: &[String],
    ) -> crate::storage::Result<Vec<crate::logs::store::Selected>> {
        self.inner
            .machine
            .logs
            .select(tenant, matchers, start_ns, end_ns, needles)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidInput => StorageError::BadData(e.to_string()),
                _ => StorageError::internal("read log segments", e),
            })
    }

    fn streams(
        &self,
        tenant: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> crate::storage::Result<Vec<Labels>> {
        Ok(self.inner.machine.logs.streams(tenant, start_ns, end_ns))
    }

    fn active_streams(&self, tenant: &str) -> usize {
        self.inner.machine.logs.active_streams(tenant)
    }

    fn is_active_stream(&self, tenant: &str, labels: &Labels) -> bool {
        self.inner.machine.logs.is_active_stream(tenant, labels)
    }

    fn positions(&self, prefix: &str) -> std::collections::BTreeMap<String, String> {
        self.inner.machine.logs.positions(prefix)
    }

    fn subscribe(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<crate::log::record::LogBatch>> {
        self.inner.machine.logs.subscribe()
    }

    fn oldest_ns(&self, tenant: &str) -> Option<i64> {
        self.inner.machine.logs.oldest_ns(tenant)
    }
}

impl Db {
    /// The log segments on disk (for the shipper).
    pub fn log_segments(&self) -> Vec<Arc<crate::logs::segment::Segment>> {
        self.inner.machine.logs.segments()
    }
}

#[cfg(test)]
impl Db {
    /// A database in `dir` on its own WAL, as tests across the crate want one.
    pub(crate) fn open_for_tests(dir: &Path, opts: DbOptions, metrics: &TsdbMetrics) -> Db {
        let log = crate::log::wal::WalLog::in_data_dir(dir);
        Db::open(dir, opts, metrics.clone(), log).expect("open a test database")
    }
}

impl DbInner {
    pub(crate) fn refresh_gauges(&self) {
        let blocks = self.blocks.read();
        self.metrics.blocks_loaded.set(blocks.len() as i64);
        self.metrics
            .blocks_bytes
            .set(blocks.iter().map(|b| b.size_bytes()).sum::<u64>() as i64);
        self.metrics.head_series.set(self.head.num_series() as i64);
        let logs = &self.machine.logs;
        self.metrics
            .log_lines_in_memory
            .set(logs.lines_in_memory() as i64);
        self.metrics.log_segments.set(logs.num_segments() as i64);
        if !self.head.is_empty() {
            self.metrics.head_min_time.set(self.head.min_time());
            self.metrics.head_max_time.set(self.head.max_time());
        }
    }

    pub(crate) fn log(&self) -> &dyn CommitLog<DbEntry, AppendSummary> {
        &*self.log
    }

    /// The end of the next block to cut from the head, once the head spans more than
    /// one and a half chunk ranges (the point at which Prometheus cuts a block).
    pub(crate) fn head_cut_due(&self) -> Option<i64> {
        let h = &self.head;
        // The bound, when a cut is applied but its block not yet carried out.
        let (mint, maxt) = (h.min_time().max(h.min_valid_time()), h.max_time());
        // Saturating: one sample near i64::MIN and one now would wrap to a negative
        // span, and the head would never be cut.
        let due = !h.is_empty()
            && mint != i64::MAX
            && maxt.saturating_sub(mint) > self.opts.min_block_ms / 2 * 3;
        due.then(|| crate::tsdb::head::range_for_timestamp(mint, self.opts.min_block_ms))
    }

    /// Proposes cutting the head at `end`: returns once the cut is applied (the
    /// bound raised, the block pending).
    pub(crate) fn propose_head_cut(&self, end: i64) -> Result<()> {
        let entry = DbEntry::HeadCut(HeadCut { end });
        self.log.submit(None, entry, Urgency::Now)?;
        Ok(())
    }
}

impl Appendable for Db {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(DbAppender {
            db: self.clone(),
            batch: Batch::default(),
            hints: Vec::new(),
        })
    }
}

/// Buffers samples grouped by series until commit.
struct DbAppender {
    db: Db,
    batch: Batch,
    /// The head series for `batch.series[i]` when it was already known at append time.
    hints: Vec<Option<Arc<MemSeries>>>,
}

impl Appender for DbAppender {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> std::result::Result<(), AppendError> {
        if labels.is_empty() {
            return Err(AppendError::InvalidLabels("empty label set".into()));
        }
        self.batch.push_sample(labels, Sample { t, v });
        self.hints.resize(self.batch.series.len(), None);
        Ok(())
    }

    fn reserve(&mut self, series: usize) {
        self.batch.series.reserve(series);
        self.batch.samples.reserve(series);
        self.hints.reserve(series);
    }

    fn append_ref(
        &mut self,
        series: &mut Option<crate::storage::SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> std::result::Result<(), AppendError> {
        let sample = [Sample { t, v }];
        // The common case, every scrape of a known series: the series itself is the
        // hint, and nothing else is read (each read here is a cache miss: a thousand
        // targets' series are touched once every interval). A series that truncation
        // dropped since the reference was taken is found empty by the head, which
        // then looks it up by its labels (`Head::apply_batch_with_hints`); scrapers
        // let go of the references of series that missed a scrape, the way a
        // scraped series comes to be truncated.
        if let Some(s) = series
            .as_ref()
            .and_then(|r| r.0.clone().downcast::<MemSeries>().ok())
        {
            self.batch.push_series(s.labels.clone(), &sample);
            self.hints.push(Some(s));
            return Ok(());
        }
        if labels.is_empty() {
            return Err(AppendError::InvalidLabels("empty label set".into()));
        }
        match self.db.inner.head.get_by_labels(labels) {
            Some(s) => {
                self.batch.push_series(s.labels.clone(), &sample);
                *series = Some(crate::storage::SeriesRef(s.clone()));
                self.hints.push(Some(s));
            }
            None => {
                self.batch.push_series(labels.clone(), &sample);
                *series = None;
                self.hints.push(None);
            }
        }
        Ok(())
    }

    fn append_pairs(
        &mut self,
        labels: &[(&str, &str)],
        samples: &[Sample],
    ) -> std::result::Result<(), AppendError> {
        let key = self.prepare_pairs(labels);
        self.append_pairs_prepared(key, labels, samples)
    }

    fn prepare_pairs(&mut self, labels: &[(&str, &str)]) -> u64 {
        self.db.inner.head.prefetch_pairs(labels)
    }

    fn append_pairs_prepared(
        &mut self,
        key: u64,
        labels: &[(&str, &str)],
        samples: &[Sample],
    ) -> std::result::Result<(), AppendError> {
        if labels.is_empty() {
            return Err(AppendError::InvalidLabels("empty label set".into()));
        }
        let head = &self.db.inner.head;
        match head.get_by_pairs_hashed(key, labels) {
            Some(series) => {
                self.batch.push_series(series.labels.clone(), samples);
                self.hints.push(Some(series));
            }
            None => {
                self.batch.push_series(head.intern_labels(labels), samples);
                self.hints.push(None);
            }
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> crate::storage::Result<AppendSummary> {
        let DbAppender { db, batch, hints } = *self;
        db.commit_batch(batch, hints, false)
    }

    fn commit_patient(self: Box<Self>) -> crate::storage::Result<AppendSummary> {
        let DbAppender { db, batch, hints } = *self;
        db.commit_batch(batch, hints, true)
    }

    fn commit_patient_async(
        self: Box<Self>,
        memo: &mut crate::storage::CommitMemo,
    ) -> crate::storage::CommitFuture {
        let DbAppender { db, batch, hints } = *self;
        let memo = memo
            .0
            .get_or_insert_with(|| Box::new(record::LabelSectionMemo::default()))
            .downcast_mut::<record::LabelSectionMemo>();
        let prepared = db.prepare_commit(batch, hints, memo);
        Box::pin(async move {
            let (prepared, refused) = prepared?;
            let Some((rec, payload)) = prepared else {
                return Ok(db.refused_only(refused));
            };
            let committed = db
                .inner
                .log
                .submit_async(rec, payload, Urgency::Patient)
                .await;
            db.committed(committed, refused)
        })
    }

    fn rollback(self: Box<Self>) {}
}

/// `batch` without its samples newer than `limit` (counted in `refused` as
/// too far in the future), with `hints` kept in step with its series. The batch is
/// returned as it is, without a copy, when no sample is that new: the usual case.
pub(crate) fn drop_samples_after(
    batch: Batch,
    hints: Vec<Option<Arc<MemSeries>>>,
    limit: i64,
    refused: &mut AppendSummary,
) -> (Batch, Vec<Option<Arc<MemSeries>>>) {
    if batch.samples.iter().all(|s| s.t <= limit) {
        return (batch, hints);
    }
    let mut kept = Batch::default();
    let mut kept_hints = Vec::with_capacity(hints.len());
    let mut hints = hints.into_iter();
    for series in &batch.series {
        let hint = hints.next().flatten();
        let samples = batch.samples_of(series);
        let start = kept.samples.len();
        kept.samples
            .extend(samples.iter().filter(|s| s.t <= limit).copied());
        let n = kept.samples.len() - start;
        refused.add_rejected(
            crate::storage::RejectReason::TooFarInFuture,
            (samples.len() - n) as u64,
        );
        if n > 0 {
            kept.series.push(record::BatchSeries {
                labels: series.labels.clone(),
                samples: start..kept.samples.len(),
            });
            kept_hints.push(hint);
        }
    }
    (kept, kept_hints)
}

impl Queryable for Db {
    fn querier(&self, min_t: i64, max_t: i64) -> crate::storage::Result<Box<dyn Querier>> {
        Ok(Box::new(DbQuerier::new(&self.inner, min_t, max_t)))
    }

    fn as_chunk_queryable(&self) -> Option<&dyn ChunkQueryable> {
        Some(self)
    }
}

impl ChunkQueryable for Db {
    fn chunk_querier(
        &self,
        min_t: i64,
        max_t: i64,
    ) -> crate::storage::Result<Box<dyn ChunkQuerier>> {
        Ok(Box::new(DbQuerier::new(&self.inner, min_t, max_t)))
    }

    fn start_time(&self) -> Option<i64> {
        let head = &self.inner.head;
        let head_min = (!head.is_empty() && head.min_time() != i64::MAX).then(|| head.min_time());
        let blocks_min = self
            .inner
            .blocks
            .read()
            .iter()
            .map(|b| b.meta().min_time)
            .min();
        match (blocks_min, head_min) {
            (Some(b), Some(h)) => Some(b.min(h)),
            (b, h) => b.or(h),
        }
    }
}

/// Takes an exclusive advisory lock on `<dir>/lock`, so two processes never share a
/// data directory.
fn lock_dir(dir: &Path) -> Result<fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| TsdbError::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a valid, open file descriptor has no memory-safety conditions.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(TsdbError::Locked(dir.display().to_string()));
    }
    Ok(f)
}

/// Removes blocks that were half written or half deleted when the process stopped.
fn remove_leftovers(dir: &Path) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| TsdbError::io(format!("read {}", dir.display()), e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion") {
            tracing::info!(dir = %name, "removing leftover temporary block directory");
            fs::remove_dir_all(e.path())
                .map_err(|err| TsdbError::io(format!("remove {name}"), err))?;
        }
    }
    Ok(())
}

/// Where block directories that cannot be trusted are moved, under the data
/// directory. A folder of its own rather than a suffix beside the blocks: one place
/// to look and to clean up, and its name is no ULID, so neither ODIN nor
/// Prometheus, Thanos or promtool ever read it as a block.
pub const CORRUPTED_BLOCKS_DIR: &str = "corrupted";

/// The end of the blocks, below which the head refuses samples (Prometheus's rule),
/// counting only blocks that end where this database could have written them: with
/// a future window, no later than the window plus one block span from now. A block
/// claiming a later end is still read, but does not decide what the head accepts:
/// trusting it would refuse every write until the clock got there. It is not moved
/// aside either, since the clock may be the thing that is wrong (an appliance
/// booted before its clock was set).
fn trusted_blocks_end(blocks: &[Arc<Block>], opts: &DbOptions) -> Option<i64> {
    let latest = (opts.too_far_in_future_ms > 0).then(|| {
        crate::model::now_ms()
            .saturating_add(opts.too_far_in_future_ms)
            .saturating_add(opts.max_block_ms.max(opts.min_block_ms))
    });
    let mut end = None;
    for b in blocks {
        let m = b.meta();
        if latest.is_some_and(|l| m.max_time > l) {
            tracing::warn!(
                block = %m.ulid,
                max_time = m.max_time,
                "block ends in the future; it is read, but does not limit what the head accepts"
            );
            continue;
        }
        end = end.max(Some(m.max_time));
    }
    end
}

/// Opens every block directory (a ULID name), oldest first. A block that cannot be
/// trusted is moved to [`CORRUPTED_BLOCKS_DIR`] with an error log and counted:
/// one without meta.json (blocks become visible only complete, so this is damage),
/// and one whose meta.json fails
/// [`validate_meta`](crate::tsdb::block::meta::validate_meta) or whose files do not
/// open. A block that fails with a plain I/O error (permissions, too many open
/// files) is skipped and left in place: nothing says it is damaged.
fn open_blocks(dir: &Path, metrics: &TsdbMetrics) -> Result<Vec<Arc<Block>>> {
    use crate::tsdb::block::BlockError;
    let mut blocks = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| TsdbError::io(format!("read {}", dir.display()), e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if ulid::Ulid::from_string(&name).is_err() || !e.path().is_dir() {
            continue;
        }
        let why = if !e.path().join("meta.json").exists() {
            "no meta.json".to_string()
        } else {
            match Block::open(&e.path()) {
                Ok(b) => {
                    blocks.push(Arc::new(b));
                    continue;
                }
                Err(BlockError::Io { context, source })
                    if source.kind() != std::io::ErrorKind::NotFound =>
                {
                    tracing::error!(block = %name, error = %source, context, "cannot open block; skipping it");
                    continue;
                }
                Err(err) => err.to_string(),
            }
        };
        match quarantine_block(dir, &name) {
            Ok(to) => tracing::error!(
                block = %name,
                reason = %why,
                moved_to = %to.display(),
                "BLOCK CORRUPTION: block moved aside and not used"
            ),
            Err(err) => tracing::error!(
                block = %name,
                reason = %why,
                error = %err,
                "BLOCK CORRUPTION: block not used; moving it aside failed"
            ),
        }
        metrics.blocks_quarantined.inc();
    }
    blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    Ok(blocks)
}

/// Moves `<dir>/<name>` to `<dir>/corrupted/<name>` (`<name>.N` if taken).
fn quarantine_block(dir: &Path, name: &str) -> Result<PathBuf> {
    let aside = dir.join(CORRUPTED_BLOCKS_DIR);
    fs::create_dir_all(&aside)
        .map_err(|e| TsdbError::io(format!("create {}", aside.display()), e))?;
    let to = crate::log::wal::unused_path(&aside, name);
    fs::rename(dir.join(name), &to)
        .map_err(|e| TsdbError::io(format!("move {name} to {}", to.display()), e))?;
    Ok(to)
}

impl crate::storage::StorageAdmin for Db {
    fn delete_series(
        &self,
        matchers: Vec<Matcher>,
        min_t: i64,
        max_t: i64,
    ) -> crate::storage::Result<()> {
        Db::delete_series(self, matchers, min_t, max_t).map_err(Into::into)
    }

    fn clean_tombstones(&self) -> crate::storage::Result<()> {
        Db::clean_tombstones(self).map_err(Into::into)
    }

    fn snapshot(&self, skip_head: bool) -> crate::storage::Result<String> {
        Db::snapshot(self, skip_head).map_err(Into::into)
    }

    fn stats(&self) -> crate::storage::StorageStats {
        Db::stats(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::wal::{Wal, WalLog, WalOptions};
    use crate::storage::{SelectHints, Series};

    const H: i64 = 3_600_000;

    fn open(dir: &Path, opts: DbOptions) -> Db {
        Db::open_for_tests(dir, opts, &Default::default())
    }

    fn opts() -> DbOptions {
        DbOptions {
            retention_ms: 0,
            max_block_ms: 24 * H,
            ..DbOptions::default()
        }
    }

    /// Appends one sample every 10 minutes in `[from, to)` for series a and b.
    fn fill(db: &Db, from: i64, to: i64) {
        let mut t = from;
        while t < to {
            let mut app = db.appender();
            for name in ["a", "b"] {
                app.append(&Labels::from_pairs([("__name__", name)]), t, t as f64)
                    .unwrap();
            }
            let s = app.commit().unwrap();
            assert_eq!(s.accepted, 2, "at {t}");
            t += 600_000;
        }
    }

    fn all(db: &Db) -> Vec<Series> {
        db.querier(i64::MIN, i64::MAX)
            .unwrap()
            .select(&SelectHints::default(), &[Matcher::equal("__name__", "a")])
            .unwrap()
            .collect::<crate::storage::Result<_>>()
            .unwrap()
    }

    fn ranges(db: &Db) -> Vec<(i64, i64, u32)> {
        db.blocks()
            .iter()
            .map(|b| {
                (
                    b.meta().min_time,
                    b.meta().max_time,
                    b.meta().compaction.level,
                )
            })
            .collect()
    }

    /// Whether the WAL decoder or the applier finds a record's series depends on the
    /// applier's backlog; every way must rebuild the same head.
    #[test]
    fn replay_rebuilds_the_same_head_whoever_finds_the_series() {
        use crate::model::STALE_NAN_BITS;
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        for step in 0..300i64 {
            let mut app = db.appender();
            for i in 0..40i64 {
                // Series with gaps, series that start late, one that ends with a
                // stale marker, and a sample refused as out of order.
                if (i + step) % 7 == 0 || (i >= 30 && step < 100) || (i == 5 && step > 200) {
                    continue;
                }
                let labels =
                    Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]);
                let v = if i == 5 && step == 200 {
                    f64::from_bits(STALE_NAN_BITS)
                } else {
                    (step * i) as f64
                };
                app.append(&labels, step * 15_000, v).unwrap();
                if i == 7 && step % 50 == 0 {
                    let _ = app.append(&labels, step * 15_000 - 7_500_000, 1.0);
                }
            }
            app.commit().unwrap();
            if step == 150 {
                db.delete_series(vec![Matcher::equal("i", "3")], 0, 100 * 15_000)
                    .unwrap();
            }
        }
        db.close().unwrap();
        drop(db);

        let wal = Wal::open(dir.path().join("wal"), WalOptions::default()).unwrap();
        let replayed = |resolve_at_backlog| {
            let chunks = tempfile::tempdir().unwrap();
            let head = Arc::new(Head::with_chunk_files(2 * H, chunks.path()).unwrap());
            let machine = DbMachine::new(head.clone(), None, 0);
            crate::log::wal::replay(&wal, &machine, 0, resolve_at_backlog).unwrap();
            let mut series: Vec<(Labels, Vec<(i64, u64)>)> = head
                .series_in_range(i64::MIN, i64::MAX)
                .iter()
                .map(|s| {
                    let samples = s.samples(head.chunk_files(), i64::MIN, i64::MAX);
                    let samples = samples.iter().map(|x| (x.t, x.v.to_bits())).collect();
                    (s.labels.clone(), samples)
                })
                .collect();
            series.sort();
            series
        };
        let by_applier = replayed(usize::MAX);
        assert_eq!(by_applier.len(), 40);
        let three = Labels::from_pairs([("__name__", "m"), ("i", "3")]);
        let deleted = by_applier.iter().find(|(l, _)| *l == three).unwrap();
        assert!(deleted.1.iter().all(|&(t, _)| t > 100 * 15_000));
        for resolve_at_backlog in [0, 1, 4] {
            assert!(
                replayed(resolve_at_backlog) == by_applier,
                "{resolve_at_backlog}"
            );
        }
    }

    fn one(db: &Db, name: &str, t: i64) -> AppendSummary {
        let mut app = db.appender();
        app.append(&Labels::from_pairs([("__name__", name)]), t, 1.0)
            .unwrap();
        app.commit().unwrap()
    }

    /// Issue 14: one remote-written sample at now + 1 day made every later write
    /// out of bounds until the clock caught up.
    #[test]
    fn a_sample_a_day_ahead_is_refused_and_later_writes_still_land() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = TsdbMetrics::default();
        let db = Db::open_for_tests(dir.path(), DbOptions::default(), &metrics);
        let now = crate::model::now_ms();
        let s = one(&db, "a", now + 86_400_000);
        assert_eq!((s.accepted, s.too_far_in_future), (0, 1));
        assert!(db.head().is_empty(), "the refused sample moved nothing");
        // Normal samples, of the same and of new series, are accepted.
        assert_eq!(one(&db, "a", now).accepted, 1);
        assert_eq!(one(&db, "b", now + 1).accepted, 1);
        assert_eq!(db.head().max_time(), now + 1);
        let refused = metrics
            .rejected_samples
            .get_or_create(&vec![("reason".into(), "too_far_in_future".into())])
            .get();
        assert_eq!(refused, 1);
    }

    #[test]
    fn future_samples_are_refused_per_sample_at_any_magnitude() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), DbOptions::default());
        let now = crate::model::now_ms();
        let w = DEFAULT_TOO_FAR_IN_FUTURE_MS;
        let mut app = db.appender();
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        let c = Labels::from_pairs([("__name__", "c")]);
        // Within the window, past it by a minute, at the end of time; a series whose
        // every sample is refused; the rest of the batch is kept.
        app.append(&a, now - 1000, 1.0).unwrap();
        app.append(&a, now + w - 60_000, 2.0).unwrap();
        app.append(&a, now + w + 60_000, 3.0).unwrap();
        app.append(&b, i64::MAX, 1.0).unwrap();
        app.append(&c, now, 1.0).unwrap();
        let s = app.commit().unwrap();
        assert_eq!((s.accepted, s.too_far_in_future), (3, 2));
        assert!(db.head().get_by_labels(&b).is_none(), "no series for b");
        // append_pairs and append_ref go through the same commit.
        let mut app = db.appender();
        app.append_pairs(
            &[("__name__", "d")],
            &[Sample::new(now + 7 * 86_400_000, 1.0)],
        )
        .unwrap();
        let mut r = None;
        app.append_ref(&mut r, &c, now + 365 * 86_400_000, 1.0)
            .unwrap();
        assert_eq!(app.commit().unwrap().too_far_in_future, 2);
        // The accepted future sample replays the same way after a restart.
        db.close().unwrap();
        drop(db);
        let db = open(dir.path(), DbOptions::default());
        assert_eq!(db.head().max_time(), now + w - 60_000);
        assert_eq!(db.head().num_series(), 2);
    }

    #[test]
    fn a_zero_window_accepts_future_samples_as_prometheus_does() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            dir.path(),
            DbOptions {
                too_far_in_future_ms: 0,
                ..DbOptions::default()
            },
        );
        let t = crate::model::now_ms() + 86_400_000;
        assert_eq!(one(&db, "a", t).accepted, 1);
    }

    /// Issue 14: one sample at -2^63+1 in a young head made `maxt - mint` overflow,
    /// so the head was never cut and the WAL grew without bound.
    #[test]
    fn a_head_with_a_sample_at_the_start_of_time_is_still_cut() {
        for extreme in [i64::MIN + 1, i64::MIN, -(1 << 62)] {
            let dir = tempfile::tempdir().unwrap();
            let db = open(dir.path(), opts());
            assert_eq!(one(&db, "old", extreme).accepted, 1, "{extreme}");
            fill(&db, 0, 5 * H);
            assert!(db.head_compactable(), "{extreme}");
            db.compact().unwrap();
            assert!(db.head().min_time() >= 0, "{extreme}: head cut");
            assert_eq!(db.blocks()[0].meta().min_time, extreme);
            assert!(!db.head_compactable());
            // Nothing lost, and a restart reads the same.
            let old = |db: &Db| {
                db.querier(i64::MIN, i64::MAX)
                    .unwrap()
                    .select(
                        &SelectHints::default(),
                        &[Matcher::equal("__name__", "old")],
                    )
                    .unwrap()
                    .collect::<crate::storage::Result<Vec<_>>>()
                    .unwrap()
            };
            assert_eq!(old(&db)[0].samples, vec![Sample::new(extreme, 1.0)]);
            db.close().unwrap();
            drop(db);
            let db = open(dir.path(), opts());
            assert_eq!(old(&db).len(), 1);
            db.compact().unwrap();
        }
    }

    #[test]
    fn a_head_reaching_the_end_of_time_is_cut_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            dir.path(),
            DbOptions {
                too_far_in_future_ms: 0,
                ..opts()
            },
        );
        fill(&db, 0, H);
        assert_eq!(one(&db, "late", i64::MAX - 1).accepted, 1);
        assert_eq!(one(&db, "late", i64::MAX).accepted, 1);
        db.compact().unwrap();
        assert!(db.head().min_time() > 0);
        assert!(!db.head_compactable());
        db.snapshot(false).unwrap();
    }

    /// Issue 14: a flipped byte in the oldest of several WAL segments, or a missing
    /// middle segment, lost every sample after it (0 of 40 replayed).
    #[test]
    fn wal_damage_loses_only_the_damaged_samples() {
        let small_segments = |dir: &Path| WalLog::in_data_dir(dir).segment_size(256);
        for damage in ["flip", "remove"] {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(
                dir.path(),
                opts(),
                TsdbMetrics::default(),
                small_segments(dir.path()),
            )
            .unwrap();
            for i in 0..40 {
                assert_eq!(one(&db, "a", i * 1000).accepted, 1);
            }
            db.close().unwrap();
            drop(db);
            // Without the shutdown's head image, so that the start replays the WAL.
            for image in
                crate::tsdb::head::image::list_images(&dir.path().join("chunks_head")).unwrap()
            {
                let name = crate::tsdb::head::image::image_name(image);
                std::fs::remove_file(dir.path().join("chunks_head").join(name)).unwrap();
            }
            let wal = dir.path().join("wal");
            let segments = crate::log::wal::inspect(&wal).unwrap().segments;
            assert!(segments.len() > 4, "{segments:?}");
            let victim = wal.join(format!(
                "{:08}",
                segments[if damage == "flip" { 0 } else { 2 }]
            ));
            if damage == "flip" {
                let mut b = std::fs::read(&victim).unwrap();
                let n = b.len();
                b[n - 3] ^= 0x20;
                std::fs::write(&victim, b).unwrap();
            } else {
                std::fs::remove_file(&victim).unwrap();
            }
            let metrics = TsdbMetrics::default();
            let db = Db::open(
                dir.path(),
                opts(),
                metrics.clone(),
                small_segments(dir.path()),
            )
            .unwrap();
            let got = all(&db)[0].samples.len();
            assert!((35..40).contains(&got), "{damage}: {got} of 40 replayed");
            assert_eq!(metrics.wal_corruptions.get(), 1, "{damage}");
            let aside = wal.join(crate::log::wal::CORRUPTED_DIR);
            assert_eq!(aside.exists(), damage == "flip", "{damage}");
        }
    }

    /// A database with one block (0-2h) and samples in the head; returns the
    /// block's directory.
    fn one_block(dir: &Path) -> PathBuf {
        let db = open(dir, opts());
        fill(&db, 0, 4 * H);
        db.compact().unwrap();
        let block = db.blocks()[0].dir().to_path_buf();
        db.close().unwrap();
        block
    }

    fn edit_meta(block: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = block.join("meta.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    /// Issue 14: a block whose meta.json says maxTime = i64::MAX made replay keep
    /// no sample and every new write out of bounds; minTime > maxTime was accepted;
    /// a block directory without meta.json was ignored without a word.
    #[test]
    fn untrustworthy_blocks_are_moved_aside_and_never_limit_the_head() {
        type Edit = Box<dyn Fn(&Path)>;
        let meta = |f: fn(&mut serde_json::Value)| -> Edit { Box::new(move |b| edit_meta(b, f)) };
        let cases: Vec<(&str, Edit)> = vec![
            (
                "maxTime = i64::MAX",
                meta(|v| v["maxTime"] = i64::MAX.into()),
            ),
            ("minTime > maxTime", meta(|v| v["minTime"] = (3 * H).into())),
            ("minTime = maxTime", meta(|v| v["minTime"] = (2 * H).into())),
            (
                "minTime = i64::MIN",
                meta(|v| v["minTime"] = i64::MIN.into()),
            ),
            ("version 2", meta(|v| v["version"] = 2.into())),
            ("level 0", meta(|v| v["compaction"]["level"] = 0.into())),
            (
                "level 10^6",
                meta(|v| v["compaction"]["level"] = 1_000_000.into()),
            ),
            (
                "more series than chunks",
                meta(|v| v["stats"]["numSeries"] = 1_000_000.into()),
            ),
            (
                "another ulid",
                meta(|v| v["ulid"] = ulid::Ulid::new().to_string().into()),
            ),
            (
                "no meta.json",
                Box::new(|b| std::fs::remove_file(b.join("meta.json")).unwrap()),
            ),
            (
                "garbage meta.json",
                Box::new(|b| std::fs::write(b.join("meta.json"), b"{\"ul").unwrap()),
            ),
            (
                "no index",
                Box::new(|b| std::fs::remove_file(b.join("index")).unwrap()),
            ),
        ];
        for (what, damage) in cases {
            let dir = tempfile::tempdir().unwrap();
            let block = one_block(dir.path());
            damage(&block);
            let metrics = TsdbMetrics::default();
            let db = Db::open_for_tests(dir.path(), opts(), &metrics);
            assert!(db.blocks().is_empty(), "{what}");
            assert_eq!(metrics.blocks_quarantined.get(), 1, "{what}");
            let name = block.file_name().unwrap();
            assert!(!block.exists(), "{what}");
            assert!(
                dir.path().join(CORRUPTED_BLOCKS_DIR).join(name).is_dir(),
                "{what}"
            );
            // The head was not limited by the block but by the cut the log
            // recorded: the WAL's samples after the cut are there, and writes at the
            // head's time are accepted.
            assert_eq!(db.head().min_valid_time(), 2 * H, "{what}");
            assert_eq!(all(&db)[0].samples.len(), 12, "{what}");
            assert_eq!(one(&db, "a", 4 * H).accepted, 1, "{what}");
            // The next start finds nothing more to move.
            db.close().unwrap();
            drop(db);
            let metrics = TsdbMetrics::default();
            Db::open_for_tests(dir.path(), opts(), &metrics);
            assert_eq!(metrics.blocks_quarantined.get(), 0, "{what}");
        }
    }

    /// A sound block that ends in the future (a wrong clock, here or where it was
    /// written) is read, but does not decide what the head accepts.
    #[test]
    fn a_block_ending_in_the_future_is_read_but_does_not_limit_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let block = one_block(dir.path());
        let day = 86_400_000;
        let future = crate::model::now_ms() + 30 * day;
        edit_meta(&block, |v| {
            v["minTime"] = future.into();
            v["maxTime"] = (future + 2 * H).into();
        });
        let db = open(dir.path(), DbOptions::default());
        assert_eq!(db.blocks().len(), 1);
        // The bound is the cut the log recorded, not the block's claimed end.
        assert_eq!(db.head().min_valid_time(), 2 * H);
        assert_eq!(one(&db, "a", crate::model::now_ms()).accepted, 1);
    }

    fn select(db: &Db, name: &str) -> (Vec<Series>, Vec<String>) {
        let q = db.querier(i64::MIN, i64::MAX).unwrap();
        let set: Vec<Series> = q
            .select(&SelectHints::default(), &[Matcher::equal("__name__", name)])
            .unwrap()
            .collect::<crate::storage::Result<_>>()
            .unwrap();
        (set, q.warnings())
    }

    /// Issue 14: a damaged chunk file failed every query over its block. The
    /// damaged chunks are now skipped, counted and named in the warnings.
    #[test]
    fn a_damaged_chunk_is_skipped_and_reported_not_fatal() {
        use crate::storage::ChunkQueryable;
        type Damager = fn(&mut Vec<u8>);
        let cases: [(&str, Damager); 2] = [
            ("a flipped byte in the first chunk", |b| b[8 + 4] ^= 0xff),
            ("the file cut short", |b| b.truncate(9)),
        ];
        for (what, damage) in cases {
            let dir = tempfile::tempdir().unwrap();
            let metrics = TsdbMetrics::default();
            let db = Db::open_for_tests(dir.path(), opts(), &metrics);
            fill(&db, 0, 4 * H);
            db.compact().unwrap();
            let seg = db.blocks()[0].dir().join("chunks").join("000001");
            db.close().unwrap();
            drop(db);
            let mut bytes = std::fs::read(&seg).unwrap();
            damage(&mut bytes);
            std::fs::write(&seg, bytes).unwrap();

            let db = Db::open_for_tests(dir.path(), opts(), &metrics);
            assert_eq!(db.blocks().len(), 1, "{what}: the block itself still opens");
            // Series a's block chunk is gone; its head samples and (for a flipped
            // byte) series b's block samples are still answered.
            let (a, warnings) = select(&db, "a");
            assert_eq!(a[0].samples.len(), 12, "{what}");
            assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
            assert!(warnings[0].contains("damaged chunks"), "{what}");
            let (b, _) = select(&db, "b");
            let expect_b = if what.contains("flipped") { 24 } else { 12 };
            assert_eq!(b[0].samples.len(), expect_b, "{what}");
            assert!(metrics.corrupt_chunks.get() >= 1, "{what}");
            // The chunk path (remote read, StoreAPI) the same.
            let q = db.chunk_querier(i64::MIN, i64::MAX).unwrap();
            let cs: Vec<_> = q
                .select_chunks(&[Matcher::equal("__name__", "a")])
                .unwrap()
                .collect::<crate::storage::Result<_>>()
                .unwrap();
            assert_eq!(cs.len(), 1, "{what}");
            assert!(!q.warnings().is_empty(), "{what}");
            drop(q);
            // Compaction does not merge the damage away silently.
            fill(&db, 4 * H, 9 * H);
            db.compact().unwrap_or_default();
            assert!(seg.exists() || db.blocks().len() > 1, "{what}");
            // Nor does it stop for good: the group that failed is left out of the
            // next plans, and retention runs whatever compaction did.
            assert!(
                db.compact().is_ok(),
                "{what}: a damaged block stops compaction"
            );
        }
    }

    #[test]
    fn reopen_replays_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        fill(&db, 0, 2 * H);
        db.close().unwrap();
        drop(db);
        let db = open(dir.path(), opts());
        let got = all(&db);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples.len(), 12);
    }

    #[test]
    fn head_is_cut_into_blocks_and_blocks_are_compacted_by_level() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        fill(&db, 0, 9 * H);
        db.compact().unwrap();
        // Cuts 0-2, 2-4, 4-6. As in Prometheus, the newest block is left out of
        // planning and 0-2 + 2-4 neither fill a 6h range nor end before 4-6 starts.
        assert_eq!(
            ranges(&db),
            vec![(0, 2 * H, 1), (2 * H, 4 * H, 1), (4 * H, 6 * H, 1)]
        );
        fill(&db, 9 * H, 11 * H);
        db.compact().unwrap();
        // 6-8 is cut; 0-2, 2-4, 4-6 now fill the 6h range and become one block.
        assert_eq!(ranges(&db), vec![(0, 6 * H, 2), (6 * H, 8 * H, 1)]);
        let samples = &all(&db)[0].samples;
        assert_eq!(
            samples.len(),
            66,
            "every sample readable across blocks and head"
        );
        assert!(samples.windows(2).all(|w| w[0].t < w[1].t));

        // After a restart, blocks and the checkpointed WAL give the same data.
        db.close().unwrap();
        drop(db);
        let db = open(dir.path(), opts());
        assert_eq!(all(&db)[0].samples.len(), 66);
        // Samples older than the newest block are refused as out of bounds.
        let mut app = db.appender();
        app.append(&Labels::from_pairs([("__name__", "a")]), H, 1.0)
            .unwrap();
        assert_eq!(app.commit().unwrap().out_of_bounds, 1);
    }

    #[test]
    fn a_reference_to_a_series_truncation_dropped_still_appends() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        let gone = Labels::from_pairs([("__name__", "gone")]);
        let mut series = None;
        for t in [0, 60_000] {
            let mut app = db.appender();
            app.append_ref(&mut series, &gone, t, 1.0).unwrap();
            assert_eq!(app.commit().unwrap().accepted, 1);
        }
        assert!(series.is_some(), "the second append found the series");
        // The head moves on and is cut: `gone` has no chunk left and is dropped.
        fill(&db, 0, 9 * H);
        db.compact().unwrap();
        let named_gone = || {
            db.querier(9 * H, i64::MAX)
                .unwrap()
                .select(
                    &SelectHints::default(),
                    &[Matcher::equal("__name__", "gone")],
                )
                .unwrap()
                .collect::<crate::storage::Result<Vec<_>>>()
                .unwrap()
        };
        assert!(named_gone().is_empty());
        assert!(db.inner.head.get_by_labels(&gone).is_none(), "dropped");
        // The stale reference still gets the sample into the head, under a series
        // found (here: created) by its labels.
        let mut app = db.appender();
        app.append_ref(&mut series, &gone, 9 * H, 2.0).unwrap();
        assert_eq!(app.commit().unwrap().accepted, 1);
        let found = named_gone();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].samples, vec![Sample::new(9 * H, 2.0)]);
    }

    #[test]
    fn a_querier_open_across_a_head_cut_still_reads_every_sample() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        // 4 h in the head: one cut (0-2 h) is due.
        fill(&db, 0, 4 * H);
        let set = db
            .querier(i64::MIN, i64::MAX)
            .unwrap()
            .select(&SelectHints::default(), &[Matcher::equal("__name__", "a")])
            .unwrap();
        let cutter = {
            let db = db.clone();
            std::thread::spawn(move || db.compact())
        };
        // Until the cut has either truncated the head or stopped to wait for this
        // reader. The head samples are read only now, as a streamed query reads them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while db.head().min_time() < 2 * H && db.inner.reads.cuts_waiting() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the cut never started"
            );
            std::thread::yield_now();
        }
        let series: Vec<Series> = set.collect::<crate::storage::Result<_>>().unwrap();
        assert_eq!(
            series[0].samples.len(),
            24,
            "no sample of the cut range lost"
        );
        cutter.join().unwrap().unwrap();
        assert_eq!(ranges(&db), vec![(0, 2 * H, 1)]);
        assert_eq!(all(&db)[0].samples.len(), 24);
    }

    #[test]
    fn retention_by_time_deletes_old_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            dir.path(),
            DbOptions {
                retention_ms: 4 * H,
                max_block_ms: 2 * H,
                ..DbOptions::default()
            },
        );
        fill(&db, 0, 14 * H);
        db.compact().unwrap();
        // Blocks up to 12h are cut; those ending more than 4h before the newest
        // block's end go.
        assert_eq!(
            ranges(&db),
            vec![(6 * H, 8 * H, 1), (8 * H, 10 * H, 1), (10 * H, 12 * H, 1)]
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn retention_by_size_deletes_oldest_blocks_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            dir.path(),
            DbOptions {
                retention_ms: 0,
                retention_bytes: 1,
                max_block_ms: 2 * H,
                ..DbOptions::default()
            },
        );
        fill(&db, 0, 8 * H);
        db.compact().unwrap();
        assert!(db.blocks().is_empty(), "{:?}", ranges(&db));
        // The head is untouched by retention.
        assert!(!all(&db)[0].samples.is_empty());
    }

    #[test]
    fn deletion_covers_blocks_and_head_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        fill(&db, 0, 5 * H);
        db.compact().unwrap();
        assert_eq!(db.blocks().len(), 1);
        db.delete_series(vec![Matcher::equal("__name__", "a")], H, 3 * H)
            .unwrap();
        let check = |db: &Db| {
            let s = &all(db)[0].samples;
            assert!(s.iter().all(|x| x.t < H || x.t > 3 * H));
            assert_eq!(s.len(), 30 - 13);
        };
        check(&db);
        db.close().unwrap();
        drop(db);
        let db = open(dir.path(), opts());
        check(&db);
        db.clean_tombstones().unwrap();
        assert!(db.blocks().iter().all(|b| b.tombstones().is_empty()));
        check(&db);
    }

    #[test]
    fn overlapping_blocks_are_merged_with_deduplication() {
        let dir = tempfile::tempdir().unwrap();
        // Two databases write overlapping blocks; the second directory then holds both.
        // Their external labels differ: blocks of the same range from one identity
        // would have the same (derived) ULID.
        let a = tempfile::tempdir().unwrap();
        let other = DbOptions {
            external_labels: [("replica".to_string(), "a".to_string())].into(),
            ..opts()
        };
        let db = open(a.path(), other);
        fill(&db, 0, 4 * H);
        db.compact().unwrap();
        let first = db.blocks()[0].dir().to_path_buf();
        db.close().unwrap();
        let db = open(dir.path(), opts());
        fill(&db, H, 5 * H);
        db.compact().unwrap();
        db.close().unwrap();
        drop(db);
        let name = first.file_name().unwrap();
        std::fs::rename(&first, dir.path().join(name)).unwrap();
        let db = open(dir.path(), opts());
        assert_eq!(db.blocks().len(), 2);
        db.compact().unwrap();
        assert_eq!(db.blocks().len(), 1);
        let s = &all(&db)[0].samples;
        assert!(s.windows(2).all(|w| w[0].t < w[1].t));
        assert_eq!(s.first().map(|x| x.t), Some(0));
    }

    /// A shipper that ships only what the test says.
    #[derive(Default)]
    struct FakeShipper {
        shipped: Mutex<std::collections::HashSet<ulid::Ulid>>,
        written: Mutex<Vec<ulid::Ulid>>,
    }

    impl crate::tsdb::ShipTracker for FakeShipper {
        fn is_shipped(&self, meta: &crate::tsdb::block::BlockMeta) -> bool {
            let s = self.shipped.lock();
            s.contains(&meta.ulid) || meta.compaction.sources.iter().all(|u| s.contains(u))
        }
        fn block_written(&self, meta: &crate::tsdb::block::BlockMeta) {
            self.written.lock().push(meta.ulid);
        }
        fn is_log_segment_shipped(&self, _meta: &crate::logs::segment::SegmentMeta) -> bool {
            true
        }
        fn segments_written(&self) {}
    }

    fn with_shipper(opts: DbOptions) -> (DbOptions, Arc<FakeShipper>) {
        let fake = Arc::new(FakeShipper::default());
        let opts = DbOptions {
            shipping: Some(ShippingHook(fake.clone())),
            ..opts
        };
        (opts, fake)
    }

    #[test]
    fn retention_keeps_blocks_that_have_not_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let (o, fake) = with_shipper(DbOptions {
            retention_ms: 4 * H,
            max_block_ms: 2 * H,
            ..DbOptions::default()
        });
        let metrics = TsdbMetrics::default();
        let db = Db::open_for_tests(dir.path(), o, &metrics);
        fill(&db, 0, 14 * H);
        db.compact().unwrap();
        // Six blocks cut, each reported; none shipped, so none deleted.
        assert_eq!(fake.written.lock().len(), 6);
        assert_eq!(db.blocks().len(), 6);
        assert_eq!(metrics.retention_blocked_blocks.get(), 3);
        assert!(metrics.retention_blocked_bytes.get() > 0);
        // The oldest ships: only it goes.
        let oldest = db.blocks()[0].meta().ulid;
        fake.shipped.lock().insert(oldest);
        db.compact().unwrap();
        assert_eq!(ranges(&db)[0], (2 * H, 4 * H, 1));
        assert_eq!(metrics.retention_blocked_blocks.get(), 2);
        // All ship: retention deletes as without shipping.
        for b in db.blocks() {
            fake.shipped.lock().insert(b.meta().ulid);
        }
        db.compact().unwrap();
        assert_eq!(
            ranges(&db),
            vec![(6 * H, 8 * H, 1), (8 * H, 10 * H, 1), (10 * H, 12 * H, 1)]
        );
        assert_eq!(metrics.retention_blocked_blocks.get(), 0);
    }

    #[test]
    fn size_retention_skips_unshipped_blocks_and_deletes_shipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (o, fake) = with_shipper(DbOptions {
            retention_ms: 0,
            retention_bytes: 1,
            max_block_ms: 2 * H,
            ..DbOptions::default()
        });
        let db = open(dir.path(), o);
        fill(&db, 0, 8 * H);
        db.compact().unwrap();
        assert_eq!(db.blocks().len(), 3);
        let second = db.blocks()[1].meta().ulid;
        fake.shipped.lock().insert(second);
        db.compact().unwrap();
        assert_eq!(ranges(&db), vec![(0, 2 * H, 1), (4 * H, 6 * H, 1)]);
    }

    #[test]
    fn compaction_merges_only_shipped_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (o, fake) = with_shipper(opts());
        let db = open(dir.path(), o);
        fill(&db, 0, 11 * H);
        db.compact().unwrap();
        // 0-2, 2-4, 4-6 would merge (see above), but have not shipped.
        assert_eq!(db.blocks().len(), 4);
        assert!(ranges(&db).iter().all(|r| r.2 == 1));
        for b in db.blocks() {
            fake.shipped.lock().insert(b.meta().ulid);
        }
        db.compact().unwrap();
        assert_eq!(ranges(&db), vec![(0, 6 * H, 2), (6 * H, 8 * H, 1)]);
        // The merged block counts as shipped through its sources.
        let merged = db.blocks()[0].meta().clone();
        assert!(crate::tsdb::ShipTracker::is_shipped(&*fake, &merged));
    }

    /// Every file of a block directory, by path relative to it.
    /// Blocks pairwise identical, file by file.
    fn assert_same_block_files(ba: &[Arc<Block>], bb: &[Arc<Block>]) {
        for (x, y) in ba.iter().zip(bb) {
            let (fx, fy) = (block_files(x.dir()), block_files(y.dir()));
            let differ: Vec<_> = fx.keys().filter(|k| fx.get(*k) != fy.get(*k)).collect();
            assert!(
                fx.len() == fy.len() && differ.is_empty(),
                "{}: {differ:?}",
                x.meta().ulid
            );
        }
    }

    /// The first series' samples (time, value bits).
    fn first_series_samples(db: &Db) -> Vec<(i64, u64)> {
        all(db)[0]
            .samples
            .iter()
            .map(|s| (s.t, s.v.to_bits()))
            .collect()
    }

    fn block_files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    todo.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                    out.insert(rel, std::fs::read(e.path()).unwrap());
                }
            }
        }
        out
    }

    fn submit(db: &Db, entry: DbEntry) {
        db.inner.log().submit(None, entry, Urgency::Now).unwrap();
    }

    /// Issue 15: the same entries make the same blocks, whenever maintenance gets to
    /// them. One database carries out each cut and deletion at once (a leader); the
    /// other applies more batches and the deletion before writing anything (a
    /// follower that lags): both write byte-identical blocks under the same names.
    #[test]
    fn the_same_entries_cut_byte_identical_blocks_whenever_maintenance_runs() {
        let deletion = || {
            DbEntry::Deletion(Deletion {
                matchers: vec![Matcher::equal("__name__", "a")],
                min_t: H,
                max_t: 3 * H,
            })
        };
        let prompt = tempfile::tempdir().unwrap();
        let a = open(prompt.path(), opts());
        fill(&a, 0, 4 * H);
        submit(&a, DbEntry::HeadCut(HeadCut { end: 2 * H }));
        a.compact().unwrap();
        submit(&a, deletion());
        a.compact().unwrap();
        fill(&a, 4 * H, 5 * H);
        a.compact().unwrap();

        let lagging = tempfile::tempdir().unwrap();
        let b = open(lagging.path(), opts());
        fill(&b, 0, 4 * H);
        submit(&b, DbEntry::HeadCut(HeadCut { end: 2 * H }));
        submit(&b, deletion());
        fill(&b, 4 * H, 5 * H);
        b.compact().unwrap();

        let (ba, bb) = (a.blocks(), b.blocks());
        assert!(!ba.is_empty());
        let names = |bs: &[Arc<Block>]| bs.iter().map(|b| b.meta().ulid).collect::<Vec<_>>();
        assert_eq!(names(&ba), names(&bb));
        assert_same_block_files(&ba, &bb);
        assert!(
            !ba[0].tombstones().is_empty(),
            "the deletion reached the block"
        );
        assert_eq!(first_series_samples(&a), first_series_samples(&b));
        let kept = all(&a);
        let times: Vec<i64> = kept[0].samples.iter().map(|s| s.t).collect();
        assert!(times.iter().all(|t| *t < H || *t > 3 * H), "{times:?}");
    }

    /// A cut applied but not carried out when the process stopped is carried out
    /// after the restart, into the block a prompt database writes.
    #[test]
    fn a_cut_pending_at_a_restart_is_carried_out_after_it() {
        let prompt = tempfile::tempdir().unwrap();
        let a = open(prompt.path(), opts());
        fill(&a, 0, 4 * H);
        a.compact().unwrap();
        let expected = a.blocks();
        assert_eq!(expected.len(), 1);

        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path(), opts());
        fill(&b, 0, 4 * H);
        submit(&b, DbEntry::HeadCut(HeadCut { end: 2 * H }));
        b.close().unwrap();
        drop(b);
        let b = open(dir.path(), opts());
        assert!(b.blocks().is_empty());
        b.compact().unwrap();
        let got = b.blocks();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].meta().ulid, expected[0].meta().ulid);
        assert!(block_files(got[0].dir()) == block_files(expected[0].dir()));
        // A sample before the cut is refused after the restart as before it.
        assert_eq!(one(&b, "a", H).out_of_bounds, 1);
    }

    /// Derived ULIDs are part of the on-disk and bucket format: the same block must
    /// get the same name from every version.
    #[test]
    fn head_block_ulids_are_derived_from_the_range_and_external_labels() {
        let none = Default::default();
        let u = compact::head_block_ulid(2 * H, &none);
        assert_eq!(u, compact::head_block_ulid(2 * H, &none));
        assert_eq!(u.timestamp_ms(), 2 * H as u64);
        assert_ne!(u, compact::head_block_ulid(4 * H, &none));
        let labels = [("cluster".to_string(), "eu".to_string())].into();
        assert_ne!(u, compact::head_block_ulid(2 * H, &labels));
        assert_eq!(u.to_string(), "000006VQ80Y8JGN2V4JWSRJBKY");
    }

    /// Samples every 15 s with a little jitter: many chunks per range, cut where the
    /// timestamps say.
    fn fill_jitter(db: &Db, from: i64, to: i64) {
        let (mut t, mut i) = (from, 0i64);
        while t < to {
            let mut app = db.appender();
            for name in ["a", "b"] {
                app.append(&Labels::from_pairs([("__name__", name)]), t, t as f64)
                    .unwrap();
            }
            app.commit().unwrap();
            t += 15_000 + (i * 37 % 11) * 97;
            i += 1;
        }
    }

    fn count_in(db: &Db, lo: i64, hi: i64) -> usize {
        all(db).first().map_or(0, |s| {
            s.samples.iter().filter(|x| x.t >= lo && x.t < hi).count()
        })
    }

    /// Two cuts and then a deletion, all applied before maintenance: the deletion's
    /// tombstones reach the second cut's block too (pending work is carried out in
    /// entry order).
    #[test]
    fn a_deletion_after_two_pending_cuts_reaches_both_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        fill(&db, 0, 6 * H);
        submit(&db, DbEntry::HeadCut(HeadCut { end: 2 * H }));
        submit(&db, DbEntry::HeadCut(HeadCut { end: 4 * H }));
        assert!(count_in(&db, 2 * H, 4 * H) > 0);
        submit(
            &db,
            DbEntry::Deletion(Deletion {
                matchers: vec![Matcher::equal("__name__", "a")],
                min_t: H,
                max_t: 5 * H,
            }),
        );
        db.compact().unwrap();
        assert_eq!(count_in(&db, H, 5 * H + 1), 0);
        assert_eq!(db.blocks().len(), 2);
    }

    /// An open-ended deletion stays in the log's checkpoint; replayed after a
    /// restart it must clamp its tombstones where it did the first time, not at the
    /// newest block's end (which ate every sample written after it).
    #[test]
    fn a_deletion_replayed_after_a_restart_spares_what_came_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        fill(&db, 0, 4 * H);
        db.delete_series(
            vec![Matcher::equal("__name__", "a")],
            3 * H + H / 2,
            i64::MAX,
        )
        .unwrap();
        fill(&db, 4 * H, 10 * H);
        db.compact().unwrap();
        let before = count_in(&db, 3 * H, 10 * H);
        assert!(before > 0);
        let mut db = db;
        for _ in 0..2 {
            db.close().unwrap();
            drop(db);
            db = open(dir.path(), opts());
            db.compact().unwrap();
            assert_eq!(count_in(&db, 3 * H, 10 * H), before);
        }
    }

    /// With many chunks per range, a deletion applied while a cut is pending leaves
    /// the cut's block as a prompt database writes it.
    #[test]
    fn a_deletion_while_a_cut_is_pending_leaves_the_block_as_a_prompt_one() {
        let deletion = || {
            DbEntry::Deletion(Deletion {
                matchers: vec![Matcher::equal("__name__", "a")],
                min_t: 3 * H,
                max_t: 3 * H + H / 2,
            })
        };
        let prompt = tempfile::tempdir().unwrap();
        let a = open(prompt.path(), opts());
        fill_jitter(&a, 0, 4 * H);
        submit(&a, DbEntry::HeadCut(HeadCut { end: 2 * H }));
        a.compact().unwrap();
        submit(&a, deletion());
        fill_jitter(&a, 4 * H, 6 * H + H / 2);
        a.compact().unwrap();

        let lagging = tempfile::tempdir().unwrap();
        let b = open(lagging.path(), opts());
        fill_jitter(&b, 0, 4 * H);
        submit(&b, DbEntry::HeadCut(HeadCut { end: 2 * H }));
        submit(&b, deletion());
        fill_jitter(&b, 4 * H, 6 * H + H / 2);
        b.compact().unwrap();

        let (ba, bb) = (a.blocks(), b.blocks());
        assert_eq!(ba.len(), 2);
        assert_eq!(ba.len(), bb.len());
        assert_same_block_files(&ba, &bb);
        assert_eq!(first_series_samples(&a), first_series_samples(&b));
        assert_eq!(count_in(&a, 3 * H, 3 * H + H / 2 + 1), 0);
    }

    /// An admin snapshot taken while a cut is pending holds the cut's range.
    #[test]
    fn a_snapshot_while_a_cut_is_pending_holds_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        fill(&db, 0, 4 * H);
        submit(&db, DbEntry::HeadCut(HeadCut { end: 2 * H }));
        let name = db.snapshot(false).unwrap();
        let copy = open(&dir.path().join("snapshots").join(name), opts());
        assert_eq!(all(&copy)[0].samples.len(), all(&db)[0].samples.len());
    }
}
