//! One node of a cluster: its settings, and the Raft log as the `LogStore` a state
//! machine (the TSDB) is opened with, in place of the single node's WAL.
//!
//! Layout under the data directory: `raft/log/` (the Raft log, `log_store`) and
//! `raft/positions/` (Raft's log id and membership at each kept image, `machine`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};

use super::commit_log::{Raft, RaftCommitLog};
use super::log_store::RaftLogStore;
use super::machine::{ClusterMachine, Proposals, Replicated};
use super::metrics::RaftCounters;
use super::network::{PeerNetwork, PeerNetworkFor};
use super::types::Peer;
use crate::log::{CommitLog, LogError, LogPosition, LogStore, Recovery};

/// How a node takes part in a cluster (`--cluster.*`, or the config's `cluster:`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOptions {
    /// This node's id, unique in the cluster and never reused.
    pub node_id: u64,
    /// Where this node's cluster (gRPC) listener binds.
    pub listen: SocketAddr,
    /// Where the other nodes reach this one: the listen address unless it is not
    /// reachable (a wildcard, a NAT).
    pub advertise: String,
    /// The members a fresh cluster starts with, by id: `host:port` of their cluster
    /// listeners. Restarts take the membership from the log instead.
    pub initial_members: BTreeMap<u64, String>,
    /// Raft's heartbeat; a follower that hears none for an election timeout
    /// (randomised between the two bounds) stands for election.
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    /// How long a write may wait for a quorum before it is refused (503).
    pub write_timeout: Duration,
    /// Entries kept behind the newest image, for followers that lag a little.
    pub log_entries_kept: u64,
}

impl ClusterOptions {
    /// Raft's defaults for a node of `initial_members` with id `node_id`.
    pub fn new(
        node_id: u64,
        listen: SocketAddr,
        advertise: Option<String>,
        initial_members: BTreeMap<u64, String>,
    ) -> Result<ClusterOptions, String> {
        if node_id == 0 {
            return Err("the node id must be greater than 0".into());
        }
        if !initial_members.contains_key(&node_id) {
            return Err(format!(
                "node {node_id} is not among the peers ({})",
                format_peers(&initial_members)
            ));
        }
        let advertise = match advertise {
            Some(a) => a,
            None if listen.ip().is_unspecified() => {
                return Err(format!(
                    "the cluster listen address {listen} is not reachable by peers: \
                     set the advertise address"
                ));
            }
            None => listen.to_string(),
        };
        Ok(ClusterOptions {
            node_id,
            listen,
            advertise,
            initial_members,
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(600), Duration::from_millis(1200)),
            write_timeout: super::commit_log::DEFAULT_WRITE_TIMEOUT,
            log_entries_kept: 10_000,
        })
    }

    fn raft_config(&self) -> Result<Config, String> {
        let ms = |d: Duration| d.as_millis() as u64;
        Config {
            cluster_name: "odin".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            // Images are the TSDB's: it takes them on its own schedule (they are its
            // restart images) and reports each durable one, which then purges the log.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.log_entries_kept,
            max_payload_entries: super::network::MAX_PAYLOAD_ENTRIES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}

/// `1@host1:port1,2@host2:port2` (etcd's `--initial-cluster` idea) as a map.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, address) = item
            .split_once('@')
            .ok_or_else(|| format!("{item:?}: expected ID@HOST:PORT"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("{item:?}: the id {id:?} is not a positive integer"))?;
        if id == 0 {
            return Err(format!("{item:?}: ids start at 1"));
        }
        check_address(address).map_err(|e| format!("{item:?}: {e}"))?;
        if peers.insert(id, address.to_string()).is_some() {
            return Err(format!("node {id} is named twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers".into());
    }
    Ok(peers)
}

/// A `host:port` a peer can dial.
pub fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} has no port (HOST:PORT)"))?;
    if host.is_empty() {
        return Err(format!("{address:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{address:?}: the port {port:?} is not a number below 65536"))?;
    Ok(())
}

fn format_peers(peers: &BTreeMap<u64, String>) -> String {
    peers
        .iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Raft log of a data directory, not started yet: the state machine starts it
/// once it is restored from its newest image.
pub struct ClusterLog<S: Replicated> {
    dir: PathBuf,
    opts: ClusterOptions,
    network: PeerNetwork,
    counters: RaftCounters,
    started: Arc<OnceLock<RaftCommitLog<S>>>,
}

impl<S: Replicated> ClusterLog<S> {
    /// The log under `<data_dir>/raft`; once started, the running log is put into
    /// `started` (for the cluster port's server, the status and the metrics).
    pub fn in_data_dir(
        data_dir: &Path,
        opts: ClusterOptions,
        network: PeerNetwork,
        counters: RaftCounters,
        started: Arc<OnceLock<RaftCommitLog<S>>>,
    ) -> Self {
        ClusterLog {
            dir: data_dir.join("raft"),
            opts,
            network,
            counters,
            started,
        }
    }
}

impl<S: Replicated> LogStore<S> for ClusterLog<S> {
    /// Must run on a thread of the runtime Raft is to run on that may block (the
    /// blocking pool). Raft re-applies the committed entries after `from` before
    /// this returns; entries committed later apply as the leader reports them.
    fn start(
        self: Box<Self>,
        machine: Arc<S>,
        from: Option<LogPosition>,
    ) -> Result<(Arc<dyn CommitLog<S::Entry, S::Output>>, Recovery), LogError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            LogError::Cluster(format!("{what} ({}): {e}", self.dir.display()))
        };
        let opts = &self.opts;
        let config = opts
            .raft_config()
            .map_err(|e| failed("raft settings", &e))?;
        let store = RaftLogStore::open(&self.dir.join("log"))
            .map_err(|e| failed("open the raft log", &e))?;
        let fresh = store.is_fresh();
        let written = store.written();
        // Snapshots that arrived but were not installed before a stop.
        let _ = std::fs::remove_dir_all(self.dir.join("incoming"));
        let proposals = Arc::new(Proposals::new(opts.node_id));
        let cluster = ClusterMachine::new(machine, proposals.clone(), &self.dir.join("positions"))
            .map_err(|e| failed("raft positions", &e))?;
        let from_index = from.map_or(0, |p| p.index);
        if from_index > 0 {
            cluster
                .resume_from(from_index)
                .map_err(|e| failed("resume from the head image", &e))?;
        }
        let runtime = tokio::runtime::Handle::current();
        let raft = runtime
            .block_on(Raft::<S>::new(
                opts.node_id,
                Arc::new(config),
                PeerNetworkFor::<S>::new(self.network.clone()),
                store,
                cluster.clone(),
            ))
            .map_err(|e| failed("start raft", &e))?;
        // A fresh cluster is initialised once, by its lowest node, when that node's
        // log is fresh; every other start rejoins with what its log holds.
        let lowest = opts.initial_members.keys().next().copied();
        if fresh && lowest == Some(opts.node_id) {
            let members: BTreeMap<u64, Peer> = opts
                .initial_members
                .iter()
                .map(|(id, address)| {
                    (
                        *id,
                        Peer {
                            address: address.clone(),
                        },
                    )
                })
                .collect();
            runtime
                .block_on(raft.initialize(members))
                .map_err(|e| failed("initialise the cluster", &e))?;
            tracing::info!(members = %format_peers(&opts.initial_members), "cluster initialised");
        }
        let applied = cluster.last_applied_index();
        let log = RaftCommitLog::new(
            raft,
            cluster,
            proposals,
            Some(self.network.clone()),
            opts.write_timeout,
            self.counters.clone(),
            Some(written),
        );
        let _ = self.started.set(log.clone());
        let recovery = Recovery {
            entries: applied.saturating_sub(from_index),
            ..Recovery::default()
        };
        Ok((Arc::new(log), recovery))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_as_etcd_initial_cluster_and_mistakes_are_named() {
        let p = parse_peers("1@10.0.0.1:9095, 2@node-b:9095,3@[::1]:9095").unwrap();
        assert_eq!(p[&1], "10.0.0.1:9095");
        assert_eq!(p[&2], "node-b:9095");
        assert_eq!(p[&3], "[::1]:9095");
        for (bad, says) in [
            ("", "no peers"),
            ("1@a:1,1@b:2", "named twice"),
            ("x@a:1", "not a positive integer"),
            ("0@a:1", "start at 1"),
            ("1a:1", "ID@HOST:PORT"),
            ("1@a", "no port"),
            ("1@a:99999", "below 65536"),
            ("1@:80", "no host"),
        ] {
            let e = parse_peers(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_node_must_be_a_peer_and_reachable() {
        let peers = parse_peers("1@127.0.0.1:1,2@127.0.0.1:2").unwrap();
        let listen: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let o = ClusterOptions::new(1, listen, None, peers.clone()).unwrap();
        assert_eq!(o.advertise, "127.0.0.1:1");
        o.raft_config().unwrap();
        let e = ClusterOptions::new(3, listen, None, peers.clone()).unwrap_err();
        assert!(e.contains("not among the peers"), "{e}");
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let e = ClusterOptions::new(1, any, None, peers.clone()).unwrap_err();
        assert!(e.contains("advertise"), "{e}");
        let o = ClusterOptions::new(1, any, Some("node-a:1".into()), peers).unwrap();
        assert_eq!(o.advertise, "node-a:1");
    }
}
