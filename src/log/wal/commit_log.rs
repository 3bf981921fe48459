//! [`WalLog`]: the WAL as one node's [`CommitLog`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Wal, WalError, WalOptions, WalWriter};
use crate::log::{
    CommitLog, LogError, LogIndex, LogPosition, LogStats, LogStore, Recovery, StateMachine,
};
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
        from: Option<LogPosition>,
    ) -> Result<(Arc<dyn CommitLog<S::Entry, S::Output>>, Recovery), LogError> {
        let mut wal = Wal::open(&self.dir, self.opts)?;
        let base = match from {
            Some(position) => {
                wal.resume_at(position.segment, position.index);
                position.index
            }
            None => 0,
        };
        let repair = wal.repair_report().clone();
        let (applied, undecodable, stats) = replay(&wal, &*machine, base, RESOLVE_AT_BACKLOG)?;
        let recovery = Recovery {
            entries: applied,
            undecodable,
            corruptions: repair.corruptions + stats.corrupt_files,
            corrupt_bytes: repair.bytes_truncated,
            missing: repair.segments_missing,
        };
        // The writer counts on from the records replay read, in step with this
        // closure.
        let mut index = base + stats.records;
        let encoder = machine.clone();
        let writer = wal.start(move |entry: S::Entry| {
            index += 1;
            machine.apply(index, entry)
        });
        let encode = Box::new(move |entry: &S::Entry| encoder.encode(entry));
        Ok((Arc::new(WalCommitLog { writer, encode }), recovery))
    }
}

/// The running WAL behind [`CommitLog`]. Its indices count the entries applied since
/// the oldest one the WAL held when it was first written (an image carries the count
/// on across restarts).
struct WalCommitLog<E, O> {
    writer: WalWriter<E, O>,
    /// Encodes an entry submitted without its bytes (on the submitter's thread).
    encode: Encoder<E>,
}

/// The state machine's [`StateMachine::encode`], without its type.
type Encoder<E> = Box<dyn Fn(&E) -> Vec<u8> + Send + Sync>;

impl<E: Send + 'static, O: Send + 'static> CommitLog<E, O> for WalCommitLog<E, O> {
    fn submit(&self, bytes: Option<Vec<u8>>, entry: E, urgency: Urgency) -> Result<O, LogError> {
        let bytes = bytes.unwrap_or_else(|| (self.encode)(&entry));
        Ok(match urgency {
            Urgency::Now => self.writer.commit(bytes, entry)?,
            Urgency::Patient => self.writer.commit_patient(bytes, entry)?,
        })
    }

    fn submit_async(&self, bytes: Option<Vec<u8>>, entry: E, urgency: Urgency) -> Submitted<O> {
        let bytes = bytes.unwrap_or_else(|| (self.encode)(&entry));
        let writer = self.writer.clone();
        Box::pin(async move {
            Ok(match urgency {
                Urgency::Now => writer.commit_async(bytes, entry).await?,
                Urgency::Patient => writer.commit_patient_async(bytes, entry).await?,
            })
        })
    }

    fn applied_index(&self) -> LogIndex {
        self.writer.log_index()
    }

    /// Cuts the segment first, so that the position is a segment boundary: the WAL
    /// after it is whole segments, and the ones before it can be deleted whole.
    fn at_position(&self, f: Box<dyn FnOnce(LogPosition) + Send>) -> Result<(), LogError> {
        Ok(self.writer.cut_and_run(f)?)
    }

    fn release_before(&self, position: LogPosition) -> Result<(), LogError> {
        let deleted = self.writer.remove_before(position.segment)?;
        tracing::debug!(
            deleted,
            segment = position.segment,
            "wal files before a head image deleted"
        );
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
/// decodes entries, a second applies them in log order, the first at index `base + 1`.
/// Returns the entries applied, those skipped as undecodable, and what the WAL read.
///
/// Some work (for the TSDB: finding a batch's series in the head, a cache-missing
/// probe that is most of the cost) can happen in either stage, so it goes where there
/// is time: while the applier has [`RESOLVE_AT_BACKLOG`] entries queued, the decoder
/// is told the applier is busy. With 1M series × 30 min on two cores this took replay
/// from 121 s to 58 s.
pub(crate) fn replay<S: StateMachine>(
    wal: &Wal,
    machine: &S,
    base: LogIndex,
    resolve_at_backlog: usize,
) -> Result<(u64, u64, super::ReplayStats), LogError> {
    let mut undecodable = 0u64;
    let mut index = base;
    let (tx, rx) = std::sync::mpsc::sync_channel::<(LogIndex, S::Entry)>(64);
    let queued = AtomicUsize::new(0);
    let queued = &queued;
    std::thread::scope(|scope| {
        let applier = scope.spawn(move || {
            let mut applied = 0;
            for (index, entry) in rx {
                queued.fetch_sub(1, Ordering::Relaxed);
                applied += 1;
                machine.apply(index, entry);
            }
            applied
        });
        let stats = wal.replay(|bytes| {
            // Every record is a place in the log, an undecodable one too.
            index += 1;
            let busy = queued.load(Ordering::Relaxed) >= resolve_at_backlog;
            match machine.decode(bytes, busy) {
                Ok(entry) => {
                    queued.fetch_add(1, Ordering::Relaxed);
                    // The applier only stops early by panicking; surfaced below.
                    let _ = tx.send((index, entry));
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
