//! The peer network: openraft's calls over gRPC (`proto/odin/cluster.proto`).
//!
//! [`PeerNetwork`] is the calling side: one lazily connected channel per peer,
//! shared by every call to it. [`ClusterService`] answers on the cluster port by
//! handing each call to the local Raft node. A peer that cannot be reached is
//! reported `Unreachable`, so openraft backs off instead of hammering it. Both sides
//! take their transport from outside, so that mutual TLS can be added to them.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::commit_log::{Raft, RaftCommitLog};
use super::log_store::{decode_entry, encode_entry};
use super::machine::Replicated;
use super::types::{LogId, OdinRaft, Peer, Vote};
use crate::log::LogError;

pub mod proto {
    tonic::include_proto!("odin.cluster");
}

use proto::cluster_client::ClusterClient;
use proto::cluster_server::{Cluster, ClusterServer};

/// The largest message either side decodes: an append carries batches of at most
/// 10 MiB each (remote write's limit), and at most [`MAX_PAYLOAD_ENTRIES`] of them.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Entries openraft puts in one append at most (its `max_payload_entries`): with
/// batches of at most 10 MiB, an append stays below [`MAX_MESSAGE_BYTES`].
pub const MAX_PAYLOAD_ENTRIES: u64 = 24;

/// Snapshot bytes go in pieces of this size.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Time a snapshot transfer gets per piece, beyond openraft's deadline.
const SNAPSHOT_TIME_PER_CHUNK: Duration = Duration::from_secs(1);

/// The largest snapshot a node takes in (it goes to a file, not to memory): a bound
/// against a peer that never stops sending.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

/// How long connecting to a peer may take before the call counts it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections the cluster port holds at once: a few per peer (each node keeps one
/// channel to each peer), with room for restarts and `odin cluster` calls.
const MAX_PEER_CONNECTIONS: usize = 256;

/// The fields of an append-entries request other than its entries.
#[derive(serde::Serialize, serde::Deserialize)]
struct AppendHead {
    vote: Vote,
    prev_log_id: Option<LogId>,
    leader_commit: Option<LogId>,
}

/// The first chunk's meta of a snapshot transfer.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotHead {
    vote: Vote,
    meta: openraft::alias::SnapshotMetaOf<OdinRaft>,
}

/// Channels to the peers, by address; cheap to clone.
#[derive(Clone, Default)]
pub struct PeerNetwork {
    /// Each with the generation of the client identity it was made with.
    channels: Arc<Mutex<HashMap<String, (u64, Channel)>>>,
    /// Mutual TLS to the peers; `None`: plain gRPC.
    tls: Option<Arc<crate::security::tls::PeerClientTls>>,
}

impl PeerNetwork {
    /// Peers reached over mutual TLS: each must present a certificate from the
    /// cluster's CA for its host, and this node presents its own. When the files
    /// change, calls from then on go over new connections made with the new ones.
    pub fn with_tls(tls: Arc<crate::security::tls::PeerClientTls>) -> PeerNetwork {
        PeerNetwork {
            channels: Arc::default(),
            tls: Some(tls),
        }
    }

    /// Hands `entry` to the leader (node `leader` at `address`) and returns its
    /// output's bytes and its index once the leader applied it.
    pub async fn forward(
        &self,
        leader: u64,
        address: &str,
        entry: Vec<u8>,
        timeout: Duration,
    ) -> Result<(Vec<u8>, u64), LogError> {
        let unreachable =
            |e: String| LogError::Cluster(format!("leader {leader} at {address}: {e}"));
        let channel = self
            .channel(address)
            .map_err(|e| unreachable(e.to_string()))?;
        let mut client = ClusterClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut request = tonic::Request::new(proto::ForwardRequest {
            entry: entry.into(),
        });
        request.set_timeout(timeout);
        let reply = client
            .forward(request)
            .await
            .map_err(|s| unreachable(s.message().to_string()))?
            .into_inner();
        if reply.error.is_empty() {
            return Ok((reply.output.to_vec(), reply.index));
        }
        Err(match reply.leader {
            0 => LogError::Cluster(format!("leader {leader}: {}", reply.error)),
            other => LogError::NotLeader {
                leader: Some(other),
            },
        })
    }

    /// The channel to `address`, made again when the client identity changed since
    /// it was made (connections of the old one close once their calls end).
    fn channel(&self, address: &str) -> Result<Channel, io::Error> {
        let pem = self.tls.as_ref().map(|t| t.current());
        let generation = pem.as_ref().map_or(0, |p| p.generation);
        let mut channels = self.channels.lock();
        if let Some((made_with, c)) = channels.get(address) {
            if *made_with == generation {
                return Ok(c.clone());
            }
        }
        let scheme = if pem.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = &pem {
            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
            // The peer's certificate must name the host it is reached at.
            let host = address
                .rsplit_once(':')
                .map_or(address, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                .domain_name(host);
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), (generation, channel.clone()));
        Ok(channel)
    }
}

/// Calls to one peer.
pub struct PeerConnection<I> {
    target: u64,
    address: String,
    network: PeerNetwork,
    _image: std::marker::PhantomData<fn() -> I>,
}

impl<S: Replicated> RaftNetworkFactory<OdinRaft> for PeerNetworkFor<S> {
    type Network = PeerConnection<S>;

    async fn new_client(&mut self, target: u64, node: &Peer) -> PeerConnection<S> {
        PeerConnection {
            target,
            address: node.address.clone(),
            network: self.network.clone(),
            _image: std::marker::PhantomData,
        }
    }
}

/// [`PeerNetwork`] for the Raft of one state machine type (the network's snapshot
/// type is the machine's image).
pub struct PeerNetworkFor<S> {
    network: PeerNetwork,
    _machine: std::marker::PhantomData<fn() -> S>,
}

impl<S> PeerNetworkFor<S> {
    pub fn new(network: PeerNetwork) -> Self {
        PeerNetworkFor {
            network,
            _machine: std::marker::PhantomData,
        }
    }
}

fn unreachable(e: impl std::error::Error + 'static) -> Unreachable<OdinRaft> {
    Unreachable::new(&e)
}

/// What a failed call means to openraft: a peer that is down or not listening is
/// unreachable (openraft backs off); anything else is a network error.
fn call_failed(status: tonic::Status) -> RPCError<OdinRaft> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(unreachable(status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn bad_reply(e: impl std::error::Error + 'static) -> RPCError<OdinRaft> {
    RPCError::Network(NetworkError::new(&e))
}

/// openraft's answer in a reply, or the remote node's error.
fn reply_json<T: serde::de::DeserializeOwned>(reply: proto::RaftReply) -> Result<T, io::Error> {
    if !reply.error.is_empty() {
        return Err(io::Error::other(format!("peer: {}", reply.error)));
    }
    serde_json::from_slice(&reply.json).map_err(io::Error::other)
}

impl<S: Replicated> PeerConnection<S> {
    /// A client on the peer's current channel (see [`PeerNetwork::channel`]).
    fn client(&self) -> Result<ClusterClient<Channel>, Unreachable<OdinRaft>> {
        self.network
            .channel(&self.address)
            .map(|c| ClusterClient::new(c).max_decoding_message_size(MAX_MESSAGE_BYTES))
            .map_err(|e| {
                unreachable(io::Error::other(format!(
                    "peer {} at {:?}: {e}",
                    self.target, self.address
                )))
            })
    }
}

/// An append as it travels: its head as JSON, its entries in the log's encoding.
fn encode_append(rpc: &AppendEntriesRequest<OdinRaft>) -> io::Result<proto::AppendEntriesRequest> {
    let head = AppendHead {
        vote: rpc.vote,
        prev_log_id: rpc.prev_log_id,
        leader_commit: rpc.leader_commit,
    };
    let entries = rpc
        .entries
        .iter()
        .map(|e| encode_entry(e).map(Bytes::from))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(proto::AppendEntriesRequest {
        json: serde_json::to_vec(&head)?.into(),
        entries,
    })
}

/// [`encode_append`]'s message back.
fn decode_append(
    request: &proto::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<OdinRaft>, String> {
    let head: AppendHead = serde_json::from_slice(&request.json).map_err(|e| e.to_string())?;
    let entries = request
        .entries
        .iter()
        .map(|e| decode_entry(e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(AppendEntriesRequest {
        vote: head.vote,
        prev_log_id: head.prev_log_id,
        entries,
        leader_commit: head.leader_commit,
    })
}

fn with_deadline<T>(message: T, option: &RPCOption) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(option.hard_ttl());
    request
}

impl<S: Replicated> RaftNetworkV2<OdinRaft> for PeerConnection<S> {
    type SnapshotData = S::Image;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<OdinRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<OdinRaft>, RPCError<OdinRaft>> {
        let request = encode_append(&rpc).map_err(bad_reply)?;
        let reply = self
            .client()?
            .append_entries(with_deadline(request, &option))
            .await
            .map_err(call_failed)?;
        reply_json(reply.into_inner()).map_err(bad_reply)
    }

    /// Pipelined: requests go out as openraft makes them, over one gRPC stream per
    /// follower, and the answers come back in order. Requests carry at most
    /// `MAX_PAYLOAD_ENTRIES` entries of at most 10 MiB each, within the message limit.
    fn stream_append<'s, St>(
        &'s mut self,
        input: St,
        _option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<OdinRaft>, RPCError<OdinRaft>>>,
            RPCError<OdinRaft>,
        >,
    >
    where
        St: futures_util::Stream<Item = AppendEntriesRequest<OdinRaft>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        Box::pin(async move {
            let mut client = self.client()?;
            let target = self.target;
            // A request that cannot be encoded ends the stream: the follower sees it
            // end, and openraft starts a new one.
            let requests = input
                .map(move |rpc| match encode_append(&rpc) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::error!(peer = target, error = %e, "cannot encode an append");
                        None
                    }
                })
                .take_while(|r| std::future::ready(r.is_some()))
                .filter_map(std::future::ready);
            let replies = client
                .stream_append(tonic::Request::new(requests))
                .await
                .map_err(call_failed)?
                .into_inner();
            let answers = replies.map(|reply| match reply {
                Ok(reply) => reply_json::<StreamAppendResult<OdinRaft>>(reply).map_err(bad_reply),
                Err(status) => Err(call_failed(status)),
            });
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<OdinRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<OdinRaft>, RPCError<OdinRaft>> {
        let request = proto::RaftRequest {
            json: serde_json::to_vec(&rpc).map_err(bad_reply)?.into(),
        };
        let reply = self
            .client()?
            .vote(with_deadline(request, &option))
            .await
            .map_err(call_failed)?;
        reply_json(reply.into_inner()).map_err(bad_reply)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<OdinRaft, S::Image>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<OdinRaft>, StreamingError<OdinRaft>> {
        let network = |e: io::Error| StreamingError::Network(NetworkError::new(&e));
        let head = SnapshotHead {
            vote,
            meta: snapshot.meta,
        };
        let head = serde_json::to_vec(&head).map_err(|e| network(e.into()))?;
        let image = snapshot.snapshot;
        let (reader, len) = tokio::task::spawn_blocking(move || S::encode_image(&image))
            .await
            .map_err(|e| network(io::Error::other(e)))?
            .map_err(network)?;
        let pieces = u32::try_from(len.div_ceil(SNAPSHOT_CHUNK as u64).max(1)).unwrap_or(u32::MAX);
        let target = self.target;
        // Pieces are read (on a blocking thread) as they are sent; the meta rides on
        // the first. A read that fails ends the stream early, which the receiver's
        // check refuses.
        let (tx, rx) = tokio::sync::mpsc::channel::<proto::SnapshotChunk>(4);
        tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut head = Some(head);
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                let mut filled = 0;
                while filled < buf.len() {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::error!(peer = target, error = %e, "reading the snapshot to send failed");
                            return;
                        }
                    }
                }
                buf.truncate(filled);
                if buf.is_empty() && head.is_none() {
                    return;
                }
                let chunk = proto::SnapshotChunk {
                    json: head.take().map(Bytes::from).unwrap_or_default(),
                    data: buf.into(),
                };
                if tx.blocking_send(chunk).is_err() || filled < SNAPSHOT_CHUNK {
                    return;
                }
            }
        });
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        // openraft's deadline (`install_snapshot_timeout`, 200 ms by default) is
        // meant per piece; the whole transfer gets it once plus a second per MiB.
        let mut request = tonic::Request::new(chunks);
        request.set_timeout(option.hard_ttl() + SNAPSHOT_TIME_PER_CHUNK * pieces);
        let mut client = self.client().map_err(StreamingError::Unreachable)?;
        let sent = client.install_snapshot(request);
        let reply = tokio::select! {
            r = sent => r.map_err(|s| match call_failed(s) {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                other => StreamingError::Network(NetworkError::new(&io::Error::other(format!("peer {target}: {other}")))),
            })?,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        reply_json(reply.into_inner()).map_err(network)
    }
}

/// Answers peers' calls with the local Raft node.
pub struct ClusterService<S: Replicated> {
    raft: Raft<S>,
    log: RaftCommitLog<S>,
    /// Ends the long-lived append streams, so that a graceful shutdown does not wait
    /// for the leader to close them.
    stop: tokio_util::sync::CancellationToken,
}

impl<S: Replicated> ClusterService<S> {
    /// The tonic service, to add to the cluster port's server; its streams end when
    /// `stop` is cancelled.
    pub fn server(
        log: RaftCommitLog<S>,
        stop: tokio_util::sync::CancellationToken,
    ) -> ClusterServer<ClusterService<S>> {
        let raft = log.raft().clone();
        ClusterServer::new(ClusterService { raft, log, stop })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Serves the cluster port on `listener` until `shutdown`: peers' Raft calls and
/// forwarded writes, answered by `log`'s node.
///
/// With `tls`, only peers presenting a certificate from the cluster's CA connect
/// (mutual TLS; see [`crate::security::tls::cluster_server`]).
pub async fn serve<S: Replicated>(
    listener: tokio::net::TcpListener,
    log: RaftCommitLog<S>,
    tls: Option<Arc<crate::security::tls::ServerTls>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let router = tonic::transport::Server::builder()
        .add_service(ClusterService::server(log, shutdown.clone()));
    let incoming = crate::security::listen::Listener::new(
        listener,
        tls,
        crate::security::listen::ListenOptions {
            max_connections: MAX_PEER_CONNECTIONS,
            first_bytes_timeout: CONNECT_TIMEOUT,
            // Peers talk many times a second (heartbeats); a connection silent this
            // long is not a peer's.
            idle_timeout: Some(Duration::from_secs(300)),
        },
    )
    .incoming(shutdown.clone());
    router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

fn reply<T: serde::Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<tonic::Response<proto::RaftReply>, tonic::Status> {
    let reply = match result {
        Ok(v) => proto::RaftReply {
            json: serde_json::to_vec(&v)
                .map_err(|e| tonic::Status::internal(e.to_string()))?
                .into(),
            error: String::new(),
        },
        Err(e) => proto::RaftReply {
            json: Bytes::new(),
            error: e.to_string(),
        },
    };
    Ok(tonic::Response::new(reply))
}

/// Removes a file when dropped, unless kept.
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl RemoveOnDrop {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn bad_request(what: &str, e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{what}: {e}"))
}

#[tonic::async_trait]
impl<S: Replicated> Cluster for ClusterService<S> {
    async fn append_entries(
        &self,
        request: tonic::Request<proto::AppendEntriesRequest>,
    ) -> Result<tonic::Response<proto::RaftReply>, tonic::Status> {
        let rpc =
            decode_append(&request.into_inner()).map_err(|e| bad_request("append entries", e))?;
        reply(self.raft.append_entries(rpc).await)
    }

    type StreamAppendStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<proto::RaftReply, tonic::Status>> + Send>,
    >;

    async fn stream_append(
        &self,
        request: tonic::Request<tonic::Streaming<proto::AppendEntriesRequest>>,
    ) -> Result<tonic::Response<Self::StreamAppendStream>, tonic::Status> {
        // The first request that fails to arrive or to decode ends the input, and
        // with it the answers: the leader starts a new stream.
        let requests = request
            .into_inner()
            .map(|r| match r.map(|m| decode_append(&m)) {
                Ok(Ok(rpc)) => Some(rpc),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "a peer's append does not decode");
                    None
                }
                Err(_) => None,
            })
            .take_while(|r| std::future::ready(r.is_some()))
            .filter_map(std::future::ready);
        let answers = self
            .raft
            .stream_append(requests)
            .map(|answer| match answer {
                Ok(result) => serde_json::to_vec(&result)
                    .map(|json| proto::RaftReply {
                        json: json.into(),
                        error: String::new(),
                    })
                    .map_err(|e| tonic::Status::internal(e.to_string())),
                Err(fatal) => Err(tonic::Status::unavailable(fatal.to_string())),
            });
        let answers = answers.take_until(self.stop.clone().cancelled_owned());
        Ok(tonic::Response::new(Box::pin(answers)))
    }

    async fn vote(
        &self,
        request: tonic::Request<proto::RaftRequest>,
    ) -> Result<tonic::Response<proto::RaftReply>, tonic::Status> {
        let rpc: VoteRequest<OdinRaft> = serde_json::from_slice(&request.into_inner().json)
            .map_err(|e| bad_request("vote", e))?;
        reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<tonic::Streaming<proto::SnapshotChunk>>,
    ) -> Result<tonic::Response<proto::RaftReply>, tonic::Status> {
        let mut stream = request.into_inner();
        let mut head: Option<SnapshotHead> = None;
        let machine = self.log.machine().clone();
        let path = machine.incoming_image_path();
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| tonic::Status::internal(format!("{}: {e}", path.display())))?;
        let removing = RemoveOnDrop(Some(path.clone()));
        let mut received: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            received += chunk.data.len() as u64;
            if received > MAX_SNAPSHOT_BYTES {
                return Err(tonic::Status::resource_exhausted(format!(
                    "snapshot larger than {MAX_SNAPSHOT_BYTES} bytes"
                )));
            }
            if head.is_none() {
                head = Some(
                    serde_json::from_slice(&chunk.json).map_err(|e| bad_request("snapshot", e))?,
                );
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk.data)
                .await
                .map_err(|e| tonic::Status::internal(format!("{}: {e}", path.display())))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(|e| tonic::Status::internal(format!("{}: {e}", path.display())))?;
        drop(file);
        let head = head.ok_or_else(|| bad_request("snapshot", "no chunks"))?;
        let decoding = path.clone();
        let image = tokio::task::spawn_blocking(move || machine.decode_image(&decoding))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .map_err(|e| bad_request("snapshot", e))?;
        removing.keep();
        let snapshot = openraft::alias::SnapshotOf::<OdinRaft, S::Image> {
            meta: head.meta,
            snapshot: image,
        };
        reply(self.raft.install_full_snapshot(head.vote, snapshot).await)
    }

    async fn forward(
        &self,
        request: tonic::Request<proto::ForwardRequest>,
    ) -> Result<tonic::Response<proto::ForwardReply>, tonic::Status> {
        let bytes = request.into_inner().entry.to_vec();
        let machine = self.log.machine();
        let entry = machine
            .decode(&bytes, true)
            .map_err(|e| bad_request("forwarded entry", e))?;
        if !S::may_forward(&entry) {
            return Err(bad_request(
                "forwarded entry",
                "only self-contained writes are forwarded; this kind of entry is the leader's own",
            ));
        }
        let (bytes, entry, refused) = machine.admit_forwarded(bytes, entry);
        // Proposed here or refused: an entry is forwarded at most once, so a
        // leadership change can never send it round in circles.
        let reply = match self.log.propose(Some(bytes), entry).await {
            Ok((mut output, index)) => {
                if let Some(refused) = refused {
                    S::add_refused(&mut output, refused);
                }
                proto::ForwardReply {
                    output: S::encode_output(&output).into(),
                    error: String::new(),
                    leader: 0,
                    index,
                }
            }
            Err(e) => proto::ForwardReply {
                output: Bytes::new(),
                index: 0,
                leader: match &e {
                    LogError::NotLeader { leader: Some(l) } => *l,
                    _ => 0,
                },
                error: e.to_string(),
            },
        };
        Ok(tonic::Response::new(reply))
    }
}
