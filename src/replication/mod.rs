//! Replication through Raft (openraft): the cluster's log.
//!
//! * [`types`]: the Raft type configuration: what an entry carries, how peers are
//!   named.
//! * [`log_store`]: ODIN's own durable Raft log: the WAL's record framing, an fsync
//!   before an append is reported written, vote and commit point in small files.
//!
//! Every openraft type stays inside this module: openraft is pinned to an alpha whose
//! API changes between releases. Not built yet: the state machine adapter over the
//! TSDB, the peer network (tonic), the `CommitLog` of a cluster and its wiring into
//! `odin run`; until then ODIN runs as a single node on its WAL.

pub mod log_store;
pub mod types;
