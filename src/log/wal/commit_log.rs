//! [`WalLog`]: the WAL as one node's [`CommitLog`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{Wal, WalError, WalOptions, WalWriter};
use crate::log::{CommitLog, LogError, LogIndex, LogStats, LogStore, Recovery, StateMachine};
use crate::log::{Submitted, Urgency};

/// A WAL directory that a state machine has not started yet: it is opened and
/// repaired when the state machine starts it (after the data directory is locked).
pub struct WalLog {
    dir: PathBuf,
    opts: WalOptions,
}

impl WalLog {
    pub fn new(dir: impl Into<PathBuf>, opts: WalOptions) -> WalLog {
        WalLog {
            dir: dir.into(),
            opts,
        }
    }

    /// The WAL of a data directory, `<data_dir>/wal`, with default options.
    pub fn in_data_dir(data_dir: &Path) -> WalLog {
        WalLog::new(data_dir.join("wal"), WalOptions::default())
    }

    /// Starts a new segment past `bytes` (tests use tiny segments).
    pub fn segment_size(mut self, bytes: u64) -> WalLog {
        self.opts.segment_size = bytes;
        self
    }
}

impl<S: StateMachine> LogStore<S> for WalLog {
    fn start(
        self: Box<Self>,
        machine: Arc<S>,
    ) -> Result<(Arc<dyn CommitLog<S::Entry, S::Output>>, Recovery), LogError> {
        let wal = Wal::open(&self.dir, self.opts)?;
        let repair = wal.repair_report().clone();
        let (applied, undecodable, stats) = replay(&wal, &*machine, RESOLVE_AT_BACKLOG)?;
        let recovery = Recovery {
            entries: applied,
            undecodable,
            corruptions: repair.corruptions + stats.corrupt_files,
            corrupt_bytes: repair.bytes_truncated,
            missing: repair.segments_missing,
        };
        let index = Arc::new(AtomicU64::new(applied));
        let applied_index = index.clone();
        let writer = wal.start(move |entry: S::Entry| {
            let i = applied_index.load(Ordering::Relaxed) + 1;
            let out = machine.apply(i, entry);
            applied_index.store(i, Ordering::Release);
            out
        });
        Ok((Arc::new(WalCommitLog { writer, index }), recovery))
    }
}

/// The running WAL behind [`CommitLog`]. Its indices count the entries applied since
/// the oldest one the WAL still holds: a node's own log has no use for more.
struct WalCommitLog<E, O> {
    writer: WalWriter<E, O>,
    index: Arc<AtomicU64>,
}

impl<E: Send + 'static, O: Send + 'static> CommitLog<E, O> for WalCommitLog<E, O> {
    fn submit(&self, bytes: Vec<u8>, entry: E, urgency: Urgency) -> Result<O, LogError> {
        Ok(match urgency {
            Urgency::Now => self.writer.commit(bytes, entry)?,
            Urgency::Patient => self.writer.commit_patient(bytes, entry)?,
        })
    }

    fn submit_async(&self, bytes: Vec<u8>, entry: E, urgency: Urgency) -> Submitted<O> {
        let writer = self.writer.clone();
        Box::pin(async move {
            Ok(match urgency {
                Urgency::Now => writer.commit_async(bytes, entry).await?,
                Urgency::Patient => writer.commit_patient_async(bytes, entry).await?,
            })
        })
    }

    fn applied_index(&self) -> LogIndex {
        self.index.load(Ordering::Acquire)
    }

    fn compact(&self, keep: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>) -> Result<(), LogError> {
        let seg = self.writer.cut_segment()?;
        let stats = self.writer.checkpoint(seg, keep)?;
        tracing::debug!(?stats, "wal checkpoint written");
        Ok(())
    }

    fn stats(&self) -> LogStats {
        let s = self.writer.stats();
        LogStats {
            entries_written: s.records_written(),
            bytes_written: s.bytes_written(),
            fsyncs: s.fsyncs(),
            fsync_seconds: s.fsync_duration_seconds_total(),
            write_errors: s.commit_errors(),
            segment: s.segments_current(),
        }
    }

    fn failure(&self) -> Option<String> {
        self.writer
            .has_stopped_unexpectedly()
            .then(|| "the wal writer thread stopped unexpectedly".to_string())
    }

    fn close(&self) -> Result<(), LogError> {
        Ok(self.writer.close()?)
    }
}

/// Entries the applier must have queued before the decoder takes on more of the
/// work (see [`replay`]); 2 to 8 came out best, 4 in the middle.
const RESOLVE_AT_BACKLOG: usize = 4;

/// Replays the WAL into `machine` in two stages on two threads: this thread reads and
/// decodes entries, a second applies them in log order. Returns the entries applied,
/// those skipped as undecodable, and what the WAL read.
///
/// Some work (for the TSDB: finding a batch's series in the head, a cache-missing
/// probe that is most of the cost) can happen in either stage, so it goes where there
/// is time: while the applier has [`RESOLVE_AT_BACKLOG`] entries queued, the decoder
/// is told the applier is busy. With 1M series × 30 min on two cores this took replay
/// from 121 s to 58 s.
pub(crate) fn replay<S: StateMachine>(
    wal: &Wal,
    machine: &S,
    resolve_at_backlog: usize,
) -> Result<(u64, u64, super::ReplayStats), LogError> {
    let mut undecodable = 0u64;
    let (tx, rx) = std::sync::mpsc::sync_channel::<S::Entry>(64);
    let queued = AtomicUsize::new(0);
    let queued = &queued;
    std::thread::scope(|scope| {
        let applier = scope.spawn(move || {
            let mut index: LogIndex = 0;
            for entry in rx {
                queued.fetch_sub(1, Ordering::Relaxed);
                index += 1;
                machine.apply(index, entry);
            }
            index
        });
        let stats = wal.replay(|bytes| {
            let busy = queued.load(Ordering::Relaxed) >= resolve_at_backlog;
            match machine.decode(bytes, busy) {
                Ok(entry) => {
                    queued.fetch_add(1, Ordering::Relaxed);
                    // The applier only stops early by panicking; surfaced below.
                    let _ = tx.send(entry);
                }
                Err(e) => {
                    undecodable += 1;
                    tracing::warn!(error = %e, "skipping undecodable wal record");
                }
            }
            Ok::<(), WalError>(())
        });
        drop(tx);
        let applied = applier.join().map_err(|_| LogError::RecoveryPanicked)?;
        Ok((applied, undecodable, stats?))
    })
}
