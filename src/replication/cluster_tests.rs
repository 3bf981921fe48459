//! Raft nodes in one process, wired through an in-memory router, around a state
//! machine that records what it applied: the seam's cluster side, before the peer
//! network exists. (Cluster tests of real processes come with the network.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Config, OptionalSend, SnapshotPolicy};
use parking_lot::Mutex;

use super::commit_log::{Raft, RaftCommitLog};
use super::log_store::RaftLogStore;
use super::machine::{ClusterMachine, Proposals, Replicated};
use super::network::{ClusterService, PeerNetwork, PeerNetworkFor};
use super::test_machine::Tally;
use super::types::{OdinRaft, Peer, Vote};
use crate::log::{CommitLog, LogError, LogIndex, Urgency};

type TallyRaft = Raft<Tally>;

/// Delivers calls between the nodes of one process; `cut` nodes reach nobody and
/// nobody reaches them.
#[derive(Default)]
struct Router {
    nodes: Mutex<HashMap<u64, TallyRaft>>,
    cut: Mutex<HashSet<u64>>,
}

impl Router {
    fn target(&self, from: u64, to: u64) -> Result<TallyRaft, Unreachable<OdinRaft>> {
        let cut = self.cut.lock();
        if cut.contains(&from) || cut.contains(&to) {
            return Err(Unreachable::new(&io::Error::other("partitioned")));
        }
        self.nodes
            .lock()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&io::Error::other("no such node")))
    }
}

struct Network {
    from: u64,
    router: Arc<Router>,
}

struct Connection {
    from: u64,
    to: u64,
    router: Arc<Router>,
}

impl RaftNetworkFactory<OdinRaft> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &Peer) -> Connection {
        Connection {
            from: self.from,
            to: target,
            router: self.router.clone(),
        }
    }
}

impl RaftNetworkV2<OdinRaft> for Connection {
    type SnapshotData = <Tally as Replicated>::Image;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<OdinRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<OdinRaft>, RPCError<OdinRaft>> {
        let raft = self.router.target(self.from, self.to)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<OdinRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<OdinRaft>, RPCError<OdinRaft>> {
        let raft = self.router.target(self.from, self.to)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<OdinRaft, Self::SnapshotData>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<OdinRaft>, StreamingError<OdinRaft>> {
        let raft = self.router.target(self.from, self.to)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}

struct Node {
    tally: Arc<Tally>,
    log: RaftCommitLog<Tally>,
    _dir: tempfile::TempDir,
}

async fn start(id: u64, router: &Arc<Router>) -> Node {
    let network = Network {
        from: id,
        router: router.clone(),
    };
    let node = start_with(id, network, None).await;
    router.nodes.lock().insert(id, node.log.raft().clone());
    node
}

async fn start_with<N>(id: u64, network: N, peers: Option<PeerNetwork>) -> Node
where
    N: RaftNetworkFactory<OdinRaft>,
    N::Network:
        openraft::network::NetSnapshot<OdinRaft, SnapshotData = <Tally as Replicated>::Image>,
{
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    }
    .validate()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = RaftLogStore::open(&dir.path().join("log")).unwrap();
    let tally = Arc::new(Tally::default());
    let proposals = Arc::new(Proposals::new(id));
    let machine = ClusterMachine::new(
        tally.clone(),
        proposals.clone(),
        &dir.path().join("positions"),
    )
    .unwrap();
    let raft = TallyRaft::new(id, Arc::new(config), network, store, machine.clone())
        .await
        .unwrap();
    let log = RaftCommitLog::new(
        raft,
        machine,
        proposals,
        peers,
        Duration::from_secs(2),
        Default::default(),
        None,
    );
    Node {
        tally,
        log,
        _dir: dir,
    }
}

/// Submits `entry` to the first of `to` that takes it, retrying while none leads (as
/// a remote-write client retries against other nodes); returns who took it and the
/// index it applied at.
async fn write(nodes: &[Node], to: &[u64], entry: Vec<u8>) -> (u64, LogIndex) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for &id in to {
            let node = &nodes[(id - 1) as usize];
            let submitted = node
                .log
                .submit_async(Some(entry.clone()), entry.clone(), Urgency::Now);
            match submitted.await {
                Ok(index) => return (id, index),
                // What a remote-write client sees as 503: it tries again.
                Err(LogError::NotLeader { .. } | LogError::Cluster(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader took the entry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes an image of the node's state as the TSDB does (a copy at a position, then
/// "durable"), and waits until Raft made it its snapshot and purged the log before it.
async fn take_image(n: &Node) {
    let (log, tally) = (n.log.clone(), n.tally.clone());
    let index = tokio::task::spawn_blocking(move || {
        let at: Arc<Mutex<Option<crate::log::LogPosition>>> = Arc::default();
        let slot = at.clone();
        let copy = tally.clone();
        log.at_position(Box::new(move |pos| {
            let applied = copy.applied.lock().clone();
            copy.images.lock().insert(pos.index, applied);
            *slot.lock() = Some(pos);
        }))
        .unwrap();
        let pos = at.lock().take().unwrap();
        log.release_before(pos).unwrap();
        pos.index
    })
    .await
    .unwrap();
    let raft = n.log.raft().clone();
    until(
        "the image is Raft's snapshot",
        Duration::from_secs(10),
        || {
            let m = raft.metrics().borrow_watched().clone();
            m.snapshot.is_some_and(|s| s.index >= index) && m.purged.is_some_and(|p| p.index > 0)
        },
    )
    .await;
}

fn installed_a_snapshot(n: &Node) -> bool {
    n.tally.restored.load(std::sync::atomic::Ordering::Relaxed) > 0
}

fn entries(n: &Node) -> Vec<Vec<u8>> {
    n.tally
        .applied
        .lock()
        .iter()
        .map(|(_, e)| e.clone())
        .collect()
}

/// Entries submitted on the leader apply on every node in one order, each answered
/// with the index it applied at; a follower refuses and names the leader; after the
/// leader is cut off the others elect one and go on; a node that joins after the log
/// was purged catches up from a snapshot.
#[test]
fn three_nodes_replicate_fail_over_and_catch_up_by_snapshot() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let router = Arc::new(Router::default());
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(start(id, &router).await);
        }
        let members: BTreeMap<u64, Peer> = (1..=3).map(|id| (id, Peer::default())).collect();
        nodes[0].log.raft().initialize(members).await.unwrap();
        let at = |id: u64| &nodes[(id - 1) as usize];

        let mut indices = Vec::new();
        let mut leader = 0;
        for i in 0..30u8 {
            let (by, index) = write(&nodes, &[1, 2, 3], vec![i]).await;
            leader = by;
            indices.push(index);
        }
        assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
        let expected: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i]).collect();
        for n in &nodes {
            until("all apply", Duration::from_secs(10), || {
                entries(n) == expected
            })
            .await;
        }

        let follower = (1..=3).find(|&id| id != leader).unwrap();
        let refused = at(follower)
            .log
            .submit_async(Some(vec![99]), vec![99], Urgency::Now)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, LogError::NotLeader { leader: Some(l) } if l == leader),
            "{refused}"
        );

        // The leader is cut off: the other two elect one of them and go on. A writer
        // retries against the nodes it can reach until one takes the entry.
        router.cut.lock().insert(leader);
        // The old leader cannot reach a quorum: it refuses within the write
        // timeout, and never answers success.
        let started = tokio::time::Instant::now();
        let alone = at(leader)
            .log
            .submit_async(Some(vec![101]), vec![101], Urgency::Now)
            .await;
        assert!(
            alone.is_err(),
            "a leader without a quorum acknowledged a write"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let rest: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        let (new_leader, _) = write(&nodes, &rest, vec![100]).await;
        assert_ne!(new_leader, leader);

        // A fourth node joins once the log it would need is purged.
        take_image(at(new_leader)).await;
        let fourth = start(4, &router).await;
        at(new_leader)
            .log
            .raft()
            .add_learner(4, Peer::default(), true)
            .await
            .unwrap();
        let mut want = expected.clone();
        want.push(vec![100]);
        until("the learner catches up", Duration::from_secs(10), || {
            entries(&fourth) == want
        })
        .await;
        assert!(
            installed_a_snapshot(&fourth),
            "caught up from the log, not a snapshot"
        );

        for n in nodes.iter().chain([&fourth]) {
            let _ = n.log.raft().shutdown().await;
        }
    });
}

/// A node on its own cluster port: a gRPC server on a loopback port, peers reached
/// through [`PeerNetwork`].
async fn start_on_grpc(id: u64) -> (Node, Peer, tokio::task::JoinHandle<()>) {
    let peers = PeerNetwork::default();
    let node = start_with(id, PeerNetworkFor::<Tally>::new(peers.clone()), Some(peers)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = Peer {
        address: listener.local_addr().unwrap().to_string(),
    };
    let service = ClusterService::server(node.log.clone(), Default::default());
    let server = tokio::spawn(async move {
        let incoming = tokio_stream_listener(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (node, peer, server)
}

fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let accepted = l.accept().await.map(|(s, _)| s);
        Some((accepted, l))
    })
}

/// The same over gRPC on loopback ports: three nodes replicate, a late learner
/// catches up by a snapshot sent in chunks, and a node that is down is only a
/// peer the others cannot reach.
#[test]
fn three_nodes_replicate_over_grpc_and_a_learner_gets_a_snapshot() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut nodes = Vec::new();
        let mut peers = BTreeMap::new();
        let mut servers = Vec::new();
        for id in 1..=3 {
            let (node, peer, server) = start_on_grpc(id).await;
            nodes.push(node);
            peers.insert(id, peer);
            servers.push(server);
        }
        nodes[0].log.raft().initialize(peers.clone()).await.unwrap();
        let mut leader = 0;
        for i in 0..25u8 {
            leader = write(&nodes, &[1, 2, 3], vec![i]).await.0;
        }
        let at = |id: u64| &nodes[(id - 1) as usize];
        // Twenty at once: they go out pipelined on each follower's append stream.
        let burst = (25..45u8).map(|i| {
            at(leader)
                .log
                .submit_async(Some(vec![i]), vec![i], Urgency::Now)
        });
        for r in futures_util::future::join_all(burst).await {
            r.unwrap();
        }
        let sorted = |n: &Node| {
            let mut got = entries(n);
            got.sort();
            got
        };
        let all: Vec<Vec<u8>> = (0..45u8).map(|i| vec![i]).collect();
        for n in &nodes {
            until("all apply", Duration::from_secs(10), || sorted(n) == all).await;
        }
        // The burst's order is the log's, the same on every node.
        let expected = entries(at(leader));
        for n in &nodes {
            assert_eq!(entries(n), expected);
        }

        // A follower forwards to the leader and answers once it applied there.
        let follower = (1..=3).find(|&id| id != leader).unwrap();
        let index = at(follower)
            .log
            .submit_async(Some(vec![45]), vec![45], Urgency::Now)
            .await
            .unwrap();
        assert!(at(leader).tally.applied.lock().contains(&(index, vec![45])));
        let mut expected = expected;
        expected.push(vec![45]);

        // What only a leader proposes is not forwarded: the follower names the
        // leader, and a peer that forwards one anyway is refused; neither applies.
        let refused = at(follower)
            .log
            .submit_async(Some(vec![0xff]), vec![0xff], Urgency::Now)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, LogError::NotLeader { leader: Some(l) } if l == leader),
            "{refused}"
        );
        let refused = PeerNetwork::default()
            .forward(
                leader,
                &peers[&leader].address,
                vec![0xff],
                Duration::from_secs(2),
            )
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("only self-contained writes are forwarded"),
            "{refused}"
        );
        for n in &nodes {
            until("all apply", Duration::from_secs(10), || {
                entries(n) == expected
            })
            .await;
        }

        take_image(at(leader)).await;
        let (fourth, peer, server) = start_on_grpc(4).await;
        servers.push(server);
        at(leader)
            .log
            .raft()
            .add_learner(4, peer, true)
            .await
            .unwrap();
        until("the learner catches up", Duration::from_secs(10), || {
            entries(&fourth) == expected
        })
        .await;
        assert!(
            installed_a_snapshot(&fourth),
            "caught up from the log, not a snapshot"
        );

        // Every node tells who leads; the leader knows when each member last
        // answered, and the learner is not a voter.
        let status = super::status::cluster_status(at(leader).log.raft());
        assert_eq!((status.node_id, status.role), (leader, "leader"));
        assert_eq!(status.leader_id, Some(leader));
        assert!(status.applied_index >= Some(index));
        let by_id: BTreeMap<u64, &super::status::Member> =
            status.members.iter().map(|m| (m.id, m)).collect();
        assert_eq!(by_id.len(), 4);
        assert!(!by_id[&4].voter && by_id[&1].voter);
        assert!(
            by_id
                .values()
                .all(|m| m.last_contact_seconds.is_some_and(|s| s < 5.0))
        );
        let seen = super::status::cluster_status(at(follower).log.raft());
        assert_eq!((seen.role, seen.leader_id), ("follower", Some(leader)));
        assert_eq!(seen.members[0].address, peers[&1].address);
        let json = serde_json::to_value(&seen).unwrap();
        for key in [
            "nodeId",
            "role",
            "leaderId",
            "term",
            "commitIndex",
            "appliedIndex",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert!(json["members"][0].get("lastContactSeconds").is_some());

        // Garbage on a follower's cluster port (an append stream whose requests do
        // not decode, an append with bad JSON) is refused or ends its stream, a
        // forward to a node that does not lead is refused, and the cluster goes on.
        {
            use super::network::proto;
            use super::network::proto::cluster_client::ClusterClient;
            let address = format!("http://{}", peers[&follower].address);
            let mut client = ClusterClient::connect(address).await.unwrap();
            let junk = proto::AppendEntriesRequest {
                json: b"{not json".to_vec().into(),
                entries: vec![b"\x00\x01".to_vec().into()],
            };
            let answers = client
                .stream_append(futures_util::stream::iter(vec![junk.clone(), junk.clone()]))
                .await;
            if let Ok(answers) = answers {
                let mut answers = answers.into_inner();
                use futures_util::StreamExt;
                while let Some(Ok(_)) = answers.next().await {}
            }
            let refused = client.append_entries(junk).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
            let refused = client
                .forward(proto::ForwardRequest {
                    entry: b"no entry".to_vec().into(),
                })
                .await;
            assert!(
                refused.is_err() || !refused.unwrap().into_inner().error.is_empty(),
                "a follower took a forwarded entry"
            );
        }
        write(&nodes, &[1, 2, 3], vec![150]).await;

        // A follower's server stops: the other two still commit.
        servers[(follower - 1) as usize].abort();
        let _ = at(follower).log.raft().shutdown().await;
        let rest: Vec<u64> = (1..=3).filter(|&id| id != follower).collect();
        write(&nodes, &rest, vec![200]).await;

        for n in nodes.iter().chain([&fourth]) {
            let _ = n.log.raft().shutdown().await;
        }
        for s in servers {
            s.abort();
        }
    });
}
