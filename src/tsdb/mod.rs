//! ODIN's embedded time-series database, implementing the `storage` seams.
//!
//! * [`Db`] is the state machine that applies the durable log ([`crate::log`]): it
//!   receives its log and never builds one.
//! * [`head`]: recent samples in memory, XOR chunks ([`chunkenc`]), postings.
//! * [`index`] and [`block`]: immutable blocks in the Prometheus on-disk format.
//! * [`compact`]: cutting the head into blocks, merging blocks, retention.
//! * [`ShipTracker`]: what compaction and retention ask the shipper, when shipping is on.
//! * [`check`]: `odin tsdb check`, reporting damage without changing anything.
//! * [`Db`] ties them together and is what `app/` constructs.
//!
//! Nothing above the backends imports this module except `app/`.

pub mod block;
pub mod check;
pub mod chunkenc;
pub mod compact;
mod db;
mod dictionary;
mod error;
pub mod head;
pub mod index;
mod isolation;
mod machine;
pub mod matchers;
mod metrics;
pub mod postings;
mod querier;
mod recovery;
mod replicated;
mod shipping;

pub use db::{CORRUPTED_BLOCKS_DIR, DEFAULT_TOO_FAR_IN_FUTURE_MS, Db, DbOptions};
pub use error::{Result, TsdbError};
pub use machine::{DbEntry, DbMachine};
pub use metrics::TsdbMetrics;
pub use shipping::{ShipTracker, ShippingHook};
