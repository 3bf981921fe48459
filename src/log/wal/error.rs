//! Error type of the write-ahead log.

use std::io;
use std::sync::Arc;

/// Errors returned by the WAL.
///
/// The type is `Clone` because one failed write + fsync is reported to every
/// committer of the group that shared it; the underlying `io::Error` is
/// therefore kept behind an `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A real I/O failure. `context` names the operation and file, e.g.
    /// "sync segment 00000003".
    #[error("{context}: {cause}")]
    Io {
        /// What was being done, with the file involved.
        context: String,
        /// The OS error (the source, so that a full disk can be told apart).
        #[source]
        cause: Arc<io::Error>,
    },
    /// The writer was closed (explicitly or because every handle was dropped).
    #[error("wal is closed")]
    Closed,
    /// The writer thread is gone without a close: it could not be spawned or
    /// the `apply` callback panicked.
    #[error("wal writer thread stopped unexpectedly")]
    WriterStopped,
    /// The record is larger than [`MAX_RECORD_LEN`](super::MAX_RECORD_LEN).
    #[error("record of {len} bytes exceeds the wal limit of {max} bytes")]
    RecordTooLarge {
        /// Length of the rejected record.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Empty records are rejected: a zero length on disk marks a zero-filled
    /// (torn) tail, so it can never be a valid record.
    #[error("empty records cannot be written to the wal")]
    EmptyRecord,
    /// `checkpoint(before_segment)` was asked to cover a segment that is still
    /// being written.
    #[error(
        "checkpoint before segment {before:08}: segment {active:08} is still being written; cut it first"
    )]
    SegmentNotImmutable {
        /// The requested `before_segment`.
        before: u64,
        /// The segment currently written by the writer thread.
        active: u64,
    },
}

impl WalError {
    /// Wraps an OS error with context describing the operation.
    pub(crate) fn io(context: impl Into<String>, cause: io::Error) -> Self {
        WalError::Io {
            context: context.into(),
            cause: Arc::new(cause),
        }
    }

    /// The OS error kind, for callers that react to e.g. `StorageFull`.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            WalError::Io { cause, .. } => Some(cause.kind()),
            _ => None,
        }
    }
}

/// Result alias of the WAL.
pub type Result<T> = std::result::Result<T, WalError>;
