//! Logs (issue 17): what a Loki push request holds and how it is checked
//! ([`push`]), whose it is and how fast it may come ([`tenant`]), where lines live
//! once applied ([`store`]), and LogQL ([`logql`]).
//!
//! Lines travel as samples do: a push becomes one entry of the commit seam (the
//! WAL, or Raft in a cluster), and the log store beside the TSDB's head applies it.

mod bytes;
pub mod logql;
pub mod metric;
pub mod push;
pub mod query;
pub mod segment;
pub mod sources;
pub mod store;
pub mod tenant;

use std::future::Future;
use std::pin::Pin;

use crate::log::record::LogBatch;
use crate::model::{Labels, Matcher};
use crate::storage::AppendSummary;

/// The answer to a push: what applying the lines did, once they are durable.
pub type Pushed = Pin<Box<dyn Future<Output = crate::storage::Result<AppendSummary>> + Send>>;

/// Where the log API stores and finds lines (the database, in the appliance).
pub trait LogStorage: Send + Sync {
    /// Submits the lines as one entry; the answer comes once it is durable and
    /// applied (refused lines counted: too far behind their stream as out of order,
    /// in a sealed window as out of bounds, repeats as unchanged).
    fn push(&self, batch: LogBatch) -> Pushed;

    /// The streams of `tenant` matching `matchers` with lines in `[start_ns, end_ns)`.
    /// Lines that do not contain every one of `needles` may be left out (the
    /// segments' index answers them); the caller still filters.
    fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        needles: &[String],
    ) -> crate::storage::Result<Vec<store::Selected>>;

    /// The label sets of `tenant`'s streams with lines in `[start_ns, end_ns)`.
    fn streams(
        &self,
        tenant: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> crate::storage::Result<Vec<Labels>>;

    /// How many streams of `tenant` may still take lines.
    fn active_streams(&self, tenant: &str) -> usize;

    /// Whether this stream of `tenant` is one of those.
    fn is_active_stream(&self, tenant: &str, labels: &Labels) -> bool;

    /// Where the built-in sources whose names start with `prefix` stand, as applied.
    fn positions(&self, prefix: &str) -> std::collections::BTreeMap<String, String>;

    /// The lines of every entry applied from now on, all tenants (live tails).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<LogBatch>>;

    /// The time of `tenant`'s oldest line held (`None`: none): what is older is
    /// only in the bucket, if anywhere.
    fn oldest_ns(&self, tenant: &str) -> Option<i64>;
}
