//! The Raft type configuration of an ODIN cluster.

use std::fmt;

/// What one Raft entry carries: one entry of the TSDB's log (a batch, a deletion, a
/// head cut), in the bytes of [`crate::log::record`]. The proposer's shortcuts (series
/// it already resolved) never travel: every replica decodes the same bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    /// The node that proposed it, and its number there: the proposer finds its own
    /// decoded entry (and whoever waits for the outcome) by them when it applies.
    pub origin: u64,
    pub seq: u64,
    pub bytes: Vec<u8>,
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {} of node {}, {} bytes",
            self.seq,
            self.origin,
            self.bytes.len()
        )
    }
}

/// The answer Raft carries back from applying an entry. What applying produced (an
/// append summary) stays on the node that applied it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied;

/// A member of the cluster, as the others reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Peer {
    /// `host:port` of its cluster (gRPC) listener.
    pub address: String,
}

openraft::declare_raft_types!(
    /// ODIN's Raft types.
    pub OdinRaft:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = Peer,
);

pub type LogId = openraft::alias::LogIdOf<OdinRaft>;
pub type Vote = openraft::alias::VoteOf<OdinRaft>;
pub type Entry = openraft::alias::EntryOf<OdinRaft>;
