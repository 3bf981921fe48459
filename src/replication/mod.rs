//! Replication through Raft (openraft): the cluster's log.
//!
//! * [`types`]: the Raft type configuration: what an entry carries, how peers are
//!   named.
//! * [`log_store`]: ODIN's own durable Raft log: the WAL's record framing, an fsync
//!   before an append is reported written, vote and commit point in small files.
//! * [`machine`]: a `log::StateMachine` as openraft's state machine; the proposer
//!   applies its own decoded entry, every other replica decodes the same bytes.
//! * [`commit_log`]: [`commit_log::RaftCommitLog`], the cluster's `CommitLog`.
//! * [`network`]: openraft's calls between nodes over gRPC, both sides, and write
//!   forwarding to the leader.
//! * [`node`]: a node's settings, and the Raft log as the TSDB's `LogStore`.
//! * [`status`]: what `/api/v1/status/cluster` answers.
//!
//! Every openraft type stays inside this module: openraft is pinned to an alpha whose
//! API changes between releases. Not built yet: sending the TSDB's state to a replica
//! that lags behind the start of the log (the TSDB's images are Raft's snapshots,
//! but they do not travel yet).

pub mod commit_log;
pub mod control;
pub mod log_store;
pub mod machine;
pub mod metrics;
pub mod network;
pub mod node;
pub mod status;
pub mod types;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod test_machine;
