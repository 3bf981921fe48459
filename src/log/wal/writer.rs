//! The group-commit writer: one dedicated thread owns the active segment;
//! committers enqueue records into a bounded queue and wait for the thread to
//! make them durable.
//!
//! Each round the thread drains everything queued (up to `max_batch_bytes`),
//! writes it with one `write` per segment touched, calls `fdatasync` once per
//! segment touched, then runs `apply` for every record in log order and
//! answers each committer. Concurrent committers therefore share one fsync, and
//! `apply` order is exactly replay order.
//!
//! A *patient* commit ([`WalWriter::commit_patient`]) is one nobody is waiting on
//! (a scrape's): when only patient commits are queued, the thread waits up to
//! `patience` after the oldest for more to share the fsync. A thousand targets
//! commit about 70 times a second, each alone; a tenth of a second of patience makes
//! that a handful of fsyncs. Any other commit ends the wait at once.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::{Notify, oneshot};

use super::checkpoint::{CheckpointStats, create_checkpoint, remove_before};
use super::error::{Result, WalError};
use super::segment::{HEADER_LEN, check_record, encode_record, segment_name, sync_dir};
use super::stats::WalStats;

/// Where an answer goes: a blocking committer or an awaiting one.
enum Reply<V> {
    Blocking(mpsc::SyncSender<Result<V>>),
    Async(oneshot::Sender<Result<V>>),
}

impl<V> Reply<V> {
    fn send(self, value: Result<V>) {
        // A committer that gave up (dropped future) no longer needs the answer.
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(value);
            }
            Reply::Async(tx) => {
                let _ = tx.send(value);
            }
        }
    }
}

struct CommitOp<T, R> {
    record: Vec<u8>,
    crc: u32,
    payload: T,
    reply: Reply<R>,
    /// When a patient commit was queued; `None` for one that is waited on.
    patient_since: Option<Instant>,
}

enum Op<T, R> {
    Commit(CommitOp<T, R>),
    /// A cut followed by a closure run on the writer thread, between two commit
    /// groups (see [`WalWriter::cut_and_run`]); in the queue so that it is ordered
    /// with commits.
    CutThen(CutThen),
}

/// The closure of a [`WalWriter::cut_and_run`], given the position it runs at (or
/// why the cut failed).
type CutThen = Box<dyn FnOnce(Result<LogPosition>) + Send>;

pub use crate::log::LogPosition;

struct Queue<T, R> {
    ops: VecDeque<Op<T, R>>,
    /// Queued commits and their payload bytes, for back-pressure.
    commits: usize,
    bytes: usize,
    close_requested: bool,
    /// The writer thread has exited (or never started).
    stopped: bool,
}

struct Shared<T, R> {
    queue: Mutex<Queue<T, R>>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes blocking committers waiting for queue space.
    space: Condvar,
    /// Wakes async committers waiting for queue space.
    space_async: Notify,
    max_queue_records: usize,
    max_queue_bytes: usize,
    /// The writer's group size, past which patient commits stop waiting.
    max_batch_bytes: usize,
}

impl<T, R> Shared<T, R> {
    fn has_space(&self, q: &Queue<T, R>, len: usize) -> bool {
        // An empty queue always admits one record, however large, so that a
        // record bigger than the byte bound cannot wait forever.
        q.commits == 0
            || (q.commits < self.max_queue_records && q.bytes + len <= self.max_queue_bytes)
    }

    fn refuse(q: &Queue<T, R>) -> Option<WalError> {
        if q.close_requested {
            Some(WalError::Closed)
        } else if q.stopped {
            Some(WalError::WriterStopped)
        } else {
            None
        }
    }

    /// Enqueues `op` if there is room; `Ok(false)` means full.
    fn try_push(&self, op: &mut Option<Op<T, R>>) -> Result<bool> {
        let mut q = self.queue.lock();
        if let Some(e) = Self::refuse(&q) {
            return Err(e);
        }
        let len = match op {
            Some(Op::Commit(c)) => c.record.len(),
            _ => 0,
        };
        if !self.has_space(&q, len) {
            return Ok(false);
        }
        let wake = op.take().is_some_and(|op| self.enqueue(&mut q, op));
        drop(q);
        if wake {
            self.work.notify_one();
        }
        Ok(true)
    }

    /// Queues `op`; returns whether the writer thread must be woken for it. It need
    /// not be for a patient commit joining other patient ones: the writer is then
    /// waiting for the oldest one's deadline, which this one does not move (unless it
    /// fills the group). With scrapes committing 70 times a second, waking the writer
    /// for each only to have it wait again cost two context switches a commit.
    fn enqueue(&self, q: &mut Queue<T, R>, op: Op<T, R>) -> bool {
        let was_empty = q.ops.is_empty();
        let patient = match &op {
            Op::Commit(c) => {
                q.commits += 1;
                q.bytes += c.record.len();
                c.patient_since.is_some()
            }
            Op::CutThen(_) => false,
        };
        q.ops.push_back(op);
        was_empty || !patient || q.bytes >= self.max_batch_bytes
    }

    /// Enqueues `op`, blocking while the queue is full (back-pressure).
    fn push_blocking(&self, op: Op<T, R>) -> Result<()> {
        let mut op = Some(op);
        let mut q = self.queue.lock();
        loop {
            if let Some(e) = Self::refuse(&q) {
                return Err(e);
            }
            let len = match &op {
                Some(Op::Commit(c)) => c.record.len(),
                _ => 0,
            };
            let is_commit = matches!(op, Some(Op::Commit(_)));
            if !is_commit || self.has_space(&q, len) {
                let wake = op.take().is_some_and(|op| self.enqueue(&mut q, op));
                drop(q);
                if wake {
                    self.work.notify_one();
                }
                return Ok(());
            }
            self.space.wait(&mut q);
        }
    }

    fn request_close(&self) {
        self.queue.lock().close_requested = true;
        self.wake_all();
    }

    fn wake_all(&self) {
        self.work.notify_all();
        self.space.notify_all();
        self.space_async.notify_waiters();
    }
}

/// Marks the queue stopped when the writer thread exits, normally or by a
/// panic in `apply`, and fails whatever is still queued so nobody waits
/// forever.
struct StopGuard<'a, T, R>(&'a Shared<T, R>);

impl<T, R> Drop for StopGuard<'_, T, R> {
    fn drop(&mut self) {
        let leftover: Vec<Op<T, R>> = {
            let mut q = self.0.queue.lock();
            q.stopped = true;
            q.commits = 0;
            q.bytes = 0;
            q.ops.drain(..).collect()
        };
        self.0.wake_all();
        for op in leftover {
            match op {
                Op::Commit(c) => c.reply.send(Err(WalError::WriterStopped)),
                Op::CutThen(f) => f(Err(WalError::WriterStopped)),
            }
        }
    }
}

/// The active segment, owned by the writer thread.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    /// Number of the segment being written (or to be created next).
    seq: u64,
    file: Option<File>,
    /// Durable length of `file`: everything up to here was fsynced.
    len: u64,
    /// A write or fsync failed: the segment may hold garbage past `len`. It
    /// must be truncated back to `len` before anything else is written, and
    /// is then abandoned for a fresh segment, so an acknowledged record never
    /// follows garbage (which open-time repair would cut off).
    poisoned: bool,
    segment_size: u64,
    buf: Vec<u8>,
    stats: Arc<WalStats>,
}

impl SegmentWriter {
    pub(crate) fn new(dir: PathBuf, seq: u64, segment_size: u64, stats: Arc<WalStats>) -> Self {
        stats.segments_current.store(seq, Ordering::Relaxed);
        SegmentWriter {
            dir,
            seq,
            file: None,
            len: 0,
            poisoned: false,
            segment_size,
            buf: Vec::new(),
            stats,
        }
    }

    fn name(&self) -> String {
        segment_name(self.seq)
    }

    /// Repairs a poisoned segment and opens the segment to write into.
    fn ensure_ready(&mut self) -> Result<()> {
        if self.poisoned {
            if let Some(file) = &self.file {
                file.set_len(self.len)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| {
                        WalError::io(
                            format!("repair segment {} after failed write", self.name()),
                            e,
                        )
                    })?;
            }
            tracing::warn!(
                segment = %self.name(),
                len = self.len,
                "wal segment truncated after a failed write; continuing in a new segment"
            );
            self.poisoned = false;
            self.finish_segment();
        }
        if self.file.is_none() {
            let path = self.dir.join(self.name());
            // Numbers at or above `seq` belong to this writer alone, so a file
            // of that name can only be our own failed earlier attempt.
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| WalError::io(format!("create segment {}", self.name()), e))?;
            // The new name must be durable before records in it are acknowledged.
            sync_dir(&self.dir)?;
            self.file = Some(file);
            self.len = 0;
        }
        Ok(())
    }

    /// Closes the current segment; the next write opens the following one.
    fn finish_segment(&mut self) {
        self.file = None;
        self.seq += 1;
        self.len = 0;
        self.stats
            .segments_current
            .store(self.seq, Ordering::Relaxed);
    }

    /// Writes `self.buf` at the end of the segment and fsyncs it.
    fn write_and_sync(&mut self) -> Result<()> {
        let name = segment_name(self.seq);
        let Some(file) = self.file.as_mut() else {
            return Err(WalError::io(
                format!("write segment {name}"),
                io::Error::other("segment is not open"),
            ));
        };
        #[cfg(test)]
        if self.stats.inject_write_failures.load(Ordering::Relaxed) > 0 {
            self.stats
                .inject_write_failures
                .fetch_sub(1, Ordering::Relaxed);
            let _ = file.write_all(&self.buf[..self.buf.len() / 2]);
            self.poisoned = true;
            return Err(WalError::io(
                format!("write segment {name}"),
                io::Error::other("injected failure"),
            ));
        }
        if let Err(e) = file.write_all(&self.buf) {
            self.poisoned = true;
            return Err(WalError::io(format!("write segment {name}"), e));
        }
        let started = Instant::now();
        let synced = file.sync_data();
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        WalStats::add(&self.stats.fsyncs, 1);
        WalStats::add(&self.stats.fsync_nanos_total, nanos);
        if let Err(e) = synced {
            // After a failed fsync the kernel may have dropped the dirty
            // pages; nothing past `len` can be trusted.
            self.poisoned = true;
            return Err(WalError::io(format!("sync segment {name}"), e));
        }
        self.len += self.buf.len() as u64;
        WalStats::add(&self.stats.bytes_written, self.buf.len() as u64);
        Ok(())
    }

    /// Makes `ops` durable in order. Returns how many (a prefix) are durable
    /// and, if not all, the error that stopped the rest.
    fn write_group<T, R>(&mut self, ops: &[CommitOp<T, R>]) -> (usize, Option<WalError>) {
        let mut i = 0;
        while i < ops.len() {
            if let Err(e) = self.ensure_ready() {
                return (i, Some(e));
            }
            self.buf.clear();
            let first = i;
            while let Some(op) = ops.get(i) {
                let used = self.len + self.buf.len() as u64;
                let framed = (HEADER_LEN + op.record.len()) as u64;
                // A record never spans segments; an oversized one gets a
                // segment of its own.
                if used > 0 && used + framed > self.segment_size {
                    break;
                }
                encode_record(&mut self.buf, &op.record, op.crc);
                i += 1;
            }
            if i > first {
                if let Err(e) = self.write_and_sync() {
                    return (first, Some(e));
                }
                WalStats::add(&self.stats.records_written, (i - first) as u64);
            }
            if i < ops.len() {
                self.finish_segment();
            }
        }
        (i, None)
    }

    /// Starts a new segment unless the current one is still empty; returns its
    /// number.
    fn cut(&mut self) -> Result<u64> {
        if self.file.is_some() && !self.poisoned && self.len > 0 {
            self.finish_segment();
        }
        self.ensure_ready()?;
        Ok(self.seq)
    }

    /// Final flush at shutdown.
    fn close(&mut self) -> Result<()> {
        if self.poisoned {
            return self.ensure_ready();
        }
        if let Some(file) = &self.file {
            file.sync_data()
                .map_err(|e| WalError::io(format!("sync segment {}", self.name()), e))?;
            WalStats::add(&self.stats.fsyncs, 1);
        }
        Ok(())
    }
}

/// Writer-thread tuning, taken from [`WalOptions`](super::WalOptions).
pub(crate) struct WriterConfig {
    pub dir: PathBuf,
    pub next_segment: u64,
    pub segment_size: u64,
    pub max_batch_bytes: usize,
    pub patience: std::time::Duration,
    pub max_queue_records: usize,
    pub max_queue_bytes: usize,
    /// Records applied before the writer starts (what replay applied).
    pub first_index: u64,
}

fn run<T, R>(
    shared: &Shared<T, R>,
    mut seg: SegmentWriter,
    mut apply: impl FnMut(T) -> R,
    max_batch_bytes: usize,
    patience: std::time::Duration,
    first_index: u64,
) -> Result<()> {
    let _guard = StopGuard(shared);
    let mut index = first_index;
    seg.stats.log_index.store(index, Ordering::Relaxed);
    // Create the first segment eagerly so problems show up early; a failure
    // is retried (and reported to committers) at the first write.
    if let Err(e) = seg.ensure_ready() {
        tracing::warn!(error = %e, "wal: cannot create the first segment yet");
    }
    let mut batch: Vec<CommitOp<T, R>> = Vec::new();
    loop {
        let cut = {
            let mut q = shared.queue.lock();
            while q.ops.is_empty() && !q.close_requested {
                shared.work.wait(&mut q);
            }
            if q.ops.is_empty() {
                break; // closing and fully drained
            }
            // Only patient commits queued: wait for company, up to `patience` after
            // the oldest, unless the batch is full already.
            while !q.close_requested && q.bytes < max_batch_bytes {
                let Some(deadline) = patient_deadline(&q.ops, patience) else {
                    break;
                };
                if shared.work.wait_until(&mut q, deadline).timed_out() {
                    break;
                }
            }
            let mut cut = None;
            let mut bytes = 0usize;
            while let Some(op) = q.ops.pop_front() {
                match op {
                    Op::CutThen(f) if batch.is_empty() => {
                        cut = Some(f);
                        break;
                    }
                    Op::Commit(c)
                        if batch.is_empty() || bytes + c.record.len() <= max_batch_bytes =>
                    {
                        bytes += c.record.len();
                        q.commits -= 1;
                        q.bytes -= c.record.len();
                        batch.push(c);
                    }
                    other => {
                        q.ops.push_front(other);
                        break;
                    }
                }
            }
            cut
        };
        shared.space.notify_all();
        shared.space_async.notify_waiters();

        if let Some(f) = cut {
            f(seg.cut().map(|segment| LogPosition { segment, index }));
            continue;
        }
        let (durable, err) = seg.write_group(&batch);
        let failed = batch.len() - durable;
        for (i, op) in batch.drain(..).enumerate() {
            match &err {
                Some(e) if i >= durable => {
                    WalStats::add(&seg.stats.commit_errors, 1);
                    op.reply.send(Err(e.clone()));
                }
                _ => {
                    let out = apply(op.payload);
                    index += 1;
                    seg.stats.log_index.store(index, Ordering::Relaxed);
                    WalStats::add(&seg.stats.commits, 1);
                    op.reply.send(Ok(out));
                }
            }
        }
        if let Some(e) = &err {
            tracing::error!(error = %e, failed, "wal group commit failed");
        }
    }
    seg.close()
}

/// When the queued commits stop waiting for company: `patience` after the oldest, or
/// `None` when any queued operation is waited on (or the queue is empty).
fn patient_deadline<T, R>(
    ops: &VecDeque<Op<T, R>>,
    patience: std::time::Duration,
) -> Option<Instant> {
    let mut oldest: Option<Instant> = None;
    for op in ops {
        let Op::Commit(CommitOp {
            patient_since: Some(since),
            ..
        }) = op
        else {
            return None;
        };
        oldest = Some(oldest.map_or(*since, |o| o.min(*since)));
    }
    oldest.map(|o| o + patience)
}

struct Inner<T, R> {
    shared: Arc<Shared<T, R>>,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
    /// Id of the writer thread, to detect `close` called from `apply`.
    writer_thread: Option<std::thread::ThreadId>,
    stats: Arc<WalStats>,
    dir: PathBuf,
    /// Serializes checkpoints; they read and delete the same files.
    checkpoint_lock: Mutex<()>,
}

impl<T, R> Inner<T, R> {
    fn close(&self) -> Result<()> {
        self.shared.request_close();
        if self.writer_thread == Some(std::thread::current().id()) {
            // Called from `apply`: joining ourselves would deadlock. The
            // thread exits once it has drained the queue.
            return Ok(());
        }
        // Held while joining so that concurrent closers return only after
        // the thread is gone.
        let mut thread = self.thread.lock();
        let Some(handle) = thread.take() else {
            return Ok(());
        };
        handle.join().unwrap_or(Err(WalError::WriterStopped))
    }
}

impl<T, R> Drop for Inner<T, R> {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "wal close on drop failed");
        }
    }
}

/// Cheap, cloneable handle to the WAL writer thread. The thread stops when
/// [`close`](Self::close) is called or the last handle is dropped.
pub struct WalWriter<T, R> {
    inner: Arc<Inner<T, R>>,
}

impl<T, R> Clone for WalWriter<T, R> {
    fn clone(&self) -> Self {
        WalWriter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> WalWriter<T, R> {
    pub(crate) fn spawn(
        cfg: WriterConfig,
        stats: Arc<WalStats>,
        apply: impl FnMut(T) -> R + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                ops: VecDeque::new(),
                commits: 0,
                bytes: 0,
                close_requested: false,
                stopped: false,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            space_async: Notify::new(),
            max_queue_records: cfg.max_queue_records.max(1),
            max_queue_bytes: cfg.max_queue_bytes,
            max_batch_bytes: cfg.max_batch_bytes,
        });
        let seg = SegmentWriter::new(
            cfg.dir.clone(),
            cfg.next_segment,
            cfg.segment_size,
            Arc::clone(&stats),
        );
        let thread_shared = Arc::clone(&shared);
        let max_batch = cfg.max_batch_bytes;
        let patience = cfg.patience;
        let first_index = cfg.first_index;
        stats.log_index.store(first_index, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("odin-wal".to_owned())
            .spawn(move || run(&thread_shared, seg, apply, max_batch, patience, first_index));
        let thread = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                // `start` is infallible by design; every commit reports it.
                tracing::error!(error = %e, "cannot spawn the wal writer thread");
                shared.queue.lock().stopped = true;
                None
            }
        };
        WalWriter {
            inner: Arc::new(Inner {
                shared,
                writer_thread: thread.as_ref().map(|h| h.thread().id()),
                thread: Mutex::new(thread),
                stats,
                dir: cfg.dir,
                checkpoint_lock: Mutex::new(()),
            }),
        }
    }
}

impl<T, R> WalWriter<T, R> {
    /// Appends `record`; returns once it is fsynced, with `apply(payload)`'s
    /// result. Concurrent committers share one write + fsync, and `apply` runs
    /// on the writer thread in log order. Blocks while the queue is full.
    /// On a write/fsync failure every record of the failed group gets the
    /// error and its payload is not applied.
    pub fn commit(&self, record: Vec<u8>, payload: T) -> Result<R> {
        self.commit_blocking(record, payload, None)
    }

    /// Like [`commit`](Self::commit), for a commit nobody is waiting on: the writer
    /// may hold it back up to the configured patience to share an fsync with others.
    pub fn commit_patient(&self, record: Vec<u8>, payload: T) -> Result<R> {
        self.commit_blocking(record, payload, Some(Instant::now()))
    }

    fn commit_blocking(
        &self,
        record: Vec<u8>,
        payload: T,
        patient_since: Option<Instant>,
    ) -> Result<R> {
        let crc = check_record(&record)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner.shared.push_blocking(Op::Commit(CommitOp {
            record,
            crc,
            payload,
            reply: Reply::Blocking(tx),
            patient_since,
        }))?;
        rx.recv().map_err(|_| WalError::WriterStopped)?
    }

    /// Like [`commit`](Self::commit) but awaits instead of blocking, both for
    /// queue space and for durability. If the future is dropped after the
    /// record was queued, the record is still written and applied.
    pub async fn commit_async(&self, record: Vec<u8>, payload: T) -> Result<R> {
        self.commit_awaiting(record, payload, None).await
    }

    /// [`commit_patient`](Self::commit_patient), awaiting instead of blocking: a
    /// scrape's commit waits out the writer's patience without holding a thread.
    pub async fn commit_patient_async(&self, record: Vec<u8>, payload: T) -> Result<R> {
        self.commit_awaiting(record, payload, Some(Instant::now()))
            .await
    }

    async fn commit_awaiting(
        &self,
        record: Vec<u8>,
        payload: T,
        patient_since: Option<Instant>,
    ) -> Result<R> {
        let crc = check_record(&record)?;
        let (tx, rx) = oneshot::channel();
        let mut op = Some(Op::Commit(CommitOp {
            record,
            crc,
            payload,
            reply: Reply::Async(tx),
            patient_since,
        }));
        let shared = &self.inner.shared;
        loop {
            let notified = shared.space_async.notified();
            let mut notified = std::pin::pin!(notified);
            // Register before checking so a wake-up between check and await
            // is not lost.
            notified.as_mut().enable();
            if shared.try_push(&mut op)? {
                break;
            }
            notified.await;
        }
        rx.await.map_err(|_| WalError::WriterStopped)?
    }

    /// Closes the current segment and starts a new one; returns the number of
    /// the new segment. All lower-numbered segments are then immutable (the
    /// precondition of [`checkpoint`](Self::checkpoint)). If the current
    /// segment holds no record yet it is kept and its number returned.
    pub fn cut_segment(&self) -> Result<u64> {
        self.cut_and_run(|pos| pos.segment)
    }

    /// Cuts the segment, as [`cut_segment`](Self::cut_segment), and then runs `f` on
    /// the writer thread before the next commit group: every record committed before
    /// this call was made is applied, none queued after it is, and all of them lie in
    /// segments below the returned position's. Returns `f`'s result.
    ///
    /// `f` stops all commits while it runs: keep it to copying state. It must not
    /// commit, cut or close (that would wait on itself).
    pub fn cut_and_run<V: Send + 'static>(
        &self,
        f: impl FnOnce(LogPosition) -> V + Send + 'static,
    ) -> Result<V> {
        let (tx, rx) = mpsc::sync_channel(1);
        let then: CutThen = Box::new(move |pos: Result<LogPosition>| {
            let _ = tx.send(pos.map(f));
        });
        self.inner.shared.push_blocking(Op::CutThen(then))?;
        rx.recv().map_err(|_| WalError::WriterStopped)?
    }

    /// Records applied so far (the index of the last one; see [`LogPosition`]).
    pub fn log_index(&self) -> u64 {
        self.inner.stats.log_index.load(Ordering::Relaxed)
    }

    /// Rewrites the newest checkpoint and all segments numbered below
    /// `before_segment` through `keep` into `checkpoint.<before_segment-1>`,
    /// then deletes those segments and older checkpoints. `keep` returns the
    /// record to carry over (possibly rewritten) or `None` to drop it; an
    /// empty record counts as `None`. Runs on the calling thread, concurrently
    /// with commits, because those segments are immutable.
    pub fn checkpoint(
        &self,
        before_segment: u64,
        mut keep: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<CheckpointStats> {
        self.check_sealed(before_segment)?;
        let _serial = self.inner.checkpoint_lock.lock();
        create_checkpoint(
            &self.inner.dir,
            before_segment,
            &mut keep,
            &self.inner.stats,
        )
    }

    /// Deletes every checkpoint and every segment numbered below `segment`, once a
    /// head image holds what they hold. `segment` must not be past the active one.
    /// Returns the files deleted.
    pub fn remove_before(&self, segment: u64) -> Result<u64> {
        self.check_sealed(segment)?;
        let _serial = self.inner.checkpoint_lock.lock();
        remove_before(&self.inner.dir, segment)
    }

    /// Fails unless every segment below `before` is sealed (the active one is not).
    fn check_sealed(&self, before: u64) -> Result<()> {
        let active = self.inner.stats.segments_current.load(Ordering::Relaxed);
        if before > active {
            return Err(WalError::SegmentNotImmutable { before, active });
        }
        Ok(())
    }

    /// Stops accepting commits, lets every queued commit complete normally,
    /// fsyncs and stops the writer thread. Idempotent; later commits fail with
    /// [`WalError::Closed`]. Must not be called from `apply` (it then only
    /// requests the stop).
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }

    /// Whether [`close`](Self::close) was requested.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.queue.lock().close_requested
    }

    /// Whether the writer thread is gone although nobody closed it (it could not
    /// start, or `apply` panicked): every commit fails from then on.
    pub fn has_stopped_unexpectedly(&self) -> bool {
        let q = self.inner.shared.queue.lock();
        q.stopped && !q.close_requested
    }

    /// Commits waiting in the queue (not yet taken by the writer thread).
    pub fn pending_commits(&self) -> usize {
        self.inner.shared.queue.lock().commits
    }

    /// Live counters.
    pub fn stats(&self) -> &WalStats {
        &self.inner.stats
    }
}
