//! The durable, ordered log that every change to stored content passes through.
//!
//! * [`record`]: the entry codec: sample batches that carry their labels, deletions
//!   and head cuts. An entry is self-contained (no node-local series references), so
//!   the same bytes apply identically on every replica.
//! * [`wal`]: the single-node log, a write-ahead log with group commit.
//!
//! The backends (`tsdb`) are state machines that *receive* their log and apply its
//! entries in order; they never build one.

pub mod record;
pub mod wal;
