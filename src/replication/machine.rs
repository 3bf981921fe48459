//! [`ClusterMachine`]: a `log::StateMachine` as openraft's state machine.
//!
//! Entries arrive as [`Proposal`]s: the bytes of one `log::record` entry, tagged with
//! the node that proposed it. The proposer keeps its own decoded entry (with its
//! shortcuts: the head series it already resolved) in [`Proposals`] and finds it there
//! when the entry applies; every other replica decodes the bytes. Either way the same
//! entry applies at the same index everywhere.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::TryStreamExt;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::types::{Applied, LogId, OdinRaft, Proposal};
use crate::log::StateMachine;

/// What a state machine adds to be replicated: an image of its whole state, for a
/// replica too far behind for the log, and its outputs as bytes, for entries a
/// follower forwards to the leader.
pub trait Replicated: StateMachine {
    /// The image, as it travels to a replica.
    type Image: Clone + Send + Sync + 'static;

    /// An image of the state after every entry applied so far. Called between two
    /// applies, never during one.
    fn capture(&self) -> io::Result<Self::Image>;

    /// Replaces the whole state with `image`'s.
    fn restore(&self, image: &Self::Image) -> io::Result<()>;

    /// An image as bytes, to send to a peer.
    fn encode_image(image: &Self::Image) -> io::Result<Vec<u8>>;

    /// An image from a peer's bytes.
    fn decode_image(bytes: &[u8]) -> io::Result<Self::Image>;

    /// An output as bytes, to answer a forwarded entry.
    fn encode_output(output: &Self::Output) -> Vec<u8>;

    /// An output from the leader's answer.
    fn decode_output(bytes: &[u8]) -> io::Result<Self::Output>;

    /// Whether a peer may hand the leader this entry to propose: writes, yes;
    /// entries only the leader's own maintenance proposes (a head cut), never.
    fn may_forward(entry: &Self::Entry) -> bool;
}

/// A proposed entry, decoded, and the sender of its outcome.
type Waiting<S> = (
    <S as StateMachine>::Entry,
    oneshot::Sender<<S as StateMachine>::Output>,
);

/// The entries this node proposed that have not applied yet, by number: each with its
/// decoded form and whoever waits for the outcome.
pub struct Proposals<S: StateMachine> {
    node: u64,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting<S>>>,
}

impl<S: StateMachine> Proposals<S> {
    pub fn new(node: u64) -> Self {
        // Numbers start at a random point of a random 2^32 block, so that an entry
        // this node proposed before a restart, applied after it, never matches a new
        // proposal's number.
        let start = u64::from(rand::random::<u32>()) << 32;
        Proposals {
            node,
            next: AtomicU64::new(start),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a proposal; the receiver gets the outcome once it applies here.
    pub fn register(
        &self,
        bytes: Vec<u8>,
        entry: S::Entry,
    ) -> (Proposal, oneshot::Receiver<S::Output>) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(seq, (entry, tx));
        let proposal = Proposal {
            origin: self.node,
            seq,
            bytes,
        };
        (proposal, rx)
    }

    /// Forgets a proposal Raft refused; if it applies after all, it is decoded.
    pub fn withdraw(&self, seq: u64) {
        self.waiting.lock().remove(&seq);
    }

    fn take(&self, p: &Proposal) -> Option<Waiting<S>> {
        if p.origin != self.node {
            return None;
        }
        self.waiting.lock().remove(&p.seq)
    }
}

struct Progress<I: Send + 'static> {
    last_applied: Option<LogId>,
    membership: StoredMembershipOf<OdinRaft>,
    current: Option<SnapshotOf<OdinRaft, I>>,
}

/// openraft's view of a [`StateMachine`]; cheap to clone.
pub struct ClusterMachine<S: Replicated> {
    machine: Arc<S>,
    proposals: Arc<Proposals<S>>,
    progress: Arc<Mutex<Progress<S::Image>>>,
}

impl<S: Replicated> Clone for ClusterMachine<S> {
    fn clone(&self) -> Self {
        ClusterMachine {
            machine: self.machine.clone(),
            proposals: self.proposals.clone(),
            progress: self.progress.clone(),
        }
    }
}

impl<S: Replicated> ClusterMachine<S> {
    pub fn new(machine: Arc<S>, proposals: Arc<Proposals<S>>) -> Self {
        ClusterMachine {
            machine,
            proposals,
            progress: Arc::new(Mutex::new(Progress {
                last_applied: None,
                membership: StoredMembership::default(),
                current: None,
            })),
        }
    }

    /// The index of the newest entry applied (0: none).
    pub fn last_applied_index(&self) -> u64 {
        self.progress.lock().last_applied.map_or(0, |l| l.index)
    }

    fn apply_proposal(&self, index: u64, p: Proposal) -> io::Result<()> {
        match self.proposals.take(&p) {
            Some((entry, reply)) => {
                let _ = reply.send(self.machine.apply(index, entry));
            }
            None => {
                // The proposer's bytes are the entry; a replica that cannot decode
                // them cannot stay identical to the others, so it stops here.
                let entry = self.machine.decode(&p.bytes, false).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("entry {index} does not decode: {e}"),
                    )
                })?;
                self.machine.apply(index, entry);
            }
        }
        Ok(())
    }
}

impl<S: Replicated> RaftSnapshotBuilder<OdinRaft> for ClusterMachine<S> {
    type SnapshotData = S::Image;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<OdinRaft, S::Image>, io::Error> {
        // openraft builds snapshots on the task that applies, so nothing applies while
        // the image is captured.
        let image = self.machine.capture()?;
        let mut progress = self.progress.lock();
        let snapshot = SnapshotOf::<OdinRaft, S::Image> {
            meta: SnapshotMetaOf::<OdinRaft> {
                last_log_id: progress.last_applied,
                last_membership: progress.membership.clone(),
            },
            snapshot: image,
        };
        progress.current = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl<S: Replicated> RaftStateMachine<OdinRaft> for ClusterMachine<S> {
    type SnapshotData = S::Image;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<OdinRaft>), io::Error> {
        let p = self.progress.lock();
        Ok((p.last_applied, p.membership.clone()))
    }

    async fn apply<St>(&mut self, mut entries: St) -> Result<(), io::Error>
    where
        St: futures_util::Stream<Item = Result<EntryResponder<OdinRaft>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(p) => self.apply_proposal(index, p)?,
                EntryPayload::Membership(m) => {
                    self.progress.lock().membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            self.progress.lock().last_applied = Some(entry.log_id);
            if let Some(r) = responder {
                r.send(Applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<OdinRaft>,
        image: S::Image,
    ) -> Result<(), io::Error> {
        self.machine.restore(&image)?;
        let mut p = self.progress.lock();
        p.last_applied = meta.last_log_id;
        p.membership = meta.last_membership.clone();
        p.current = Some(SnapshotOf::<OdinRaft, S::Image> {
            meta: meta.clone(),
            snapshot: image,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<OdinRaft, S::Image>>, io::Error> {
        Ok(self.progress.lock().current.clone())
    }
}
