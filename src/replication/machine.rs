//! [`ClusterMachine`]: a `log::StateMachine` as openraft's state machine.
//!
//! Entries arrive as [`Proposal`]s: the bytes of one `log::record` entry, tagged with
//! the node that proposed it. The proposer keeps its own decoded entry (with its
//! shortcuts: the head series it already resolved) in [`Proposals`] and finds it there
//! when the entry applies; every other replica decodes the bytes. Either way the same
//! entry applies at the same index everywhere.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::TryStreamExt;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::types::{Applied, LogId, OdinRaft, Proposal};
use crate::log::{LogIndex, StateMachine};

/// What a state machine adds to be replicated: images of its whole state, for a
/// restart and for a replica too far behind for the log, and its outputs as bytes,
/// for entries a follower forwards to the leader.
///
/// Images are the state machine's own: it takes them on its schedule through
/// `CommitLog::at_position` and tells the log once one is durable
/// (`CommitLog::release_before`). Raft's snapshot is then the newest such image, so
/// the log behind it can be purged.
pub trait Replicated: StateMachine {
    /// An image, as Raft hands it around: a handle to a durable one on this node, or
    /// one received from a peer.
    type Image: Clone + Send + Sync + 'static;

    /// The durable image this node took at `index`.
    fn durable_image(&self, index: LogIndex) -> io::Result<Self::Image>;

    /// An image of the state now, after the entry at `index`, for a machine that
    /// can take one on demand; `None` for one that takes images on its own schedule
    /// only (the TSDB).
    fn image_now(&self, _index: LogIndex) -> Option<io::Result<Self::Image>> {
        None
    }

    /// Replaces the whole state with `image`'s, taken at `index`, and keeps it
    /// durable.
    fn restore(&self, index: LogIndex, image: &Self::Image) -> io::Result<()>;

    /// An image as the bytes a peer receives (read as they are sent, so that an image
    /// larger than memory can travel), and their length.
    fn encode_image(image: &Self::Image) -> io::Result<(Box<dyn io::Read + Send>, u64)>;

    /// A file to write an image arriving from a peer into, before it is decoded.
    fn incoming_image_path(&self) -> PathBuf;

    /// The image a peer sent, whose bytes are in the file at `path` (the machine
    /// owns the file from now on).
    fn decode_image(&self, path: &Path) -> io::Result<Self::Image>;

    /// An output as bytes, to answer a forwarded entry.
    fn encode_output(output: &Self::Output) -> Vec<u8>;

    /// An output from the leader's answer.
    fn decode_output(bytes: &[u8]) -> io::Result<Self::Output>;

    /// A write a peer forwarded, as the leader proposes it: what the leader's own
    /// checks refuse (samples too far in the future by its clock) taken out, the
    /// bytes re-encoded where that changed them, and the refusals as an output to
    /// add to the answer.
    fn admit_forwarded(
        &self,
        bytes: Vec<u8>,
        entry: Self::Entry,
    ) -> (Vec<u8>, Self::Entry, Option<Self::Output>) {
        (bytes, entry, None)
    }

    /// Adds `refused` (from [`admit_forwarded`](Self::admit_forwarded)) to `output`.
    fn add_refused(_output: &mut Self::Output, _refused: Self::Output) {}

    /// An entry this node proposes as the leader, encoded for the log right before
    /// it goes in. Entries reach the log in the order they are encoded here, and
    /// only in the term they were encoded in: `leadership` is that term, and
    /// whether the last entry applied here is of it (every entry of earlier terms
    /// applied). So an entry may name what the state machine has applied, by a
    /// shorter name than the entry would carry on its own (the TSDB's series
    /// dictionary). Returns the bytes to propose (`None`: those the entry came
    /// with) and the entry as it then applies.
    fn encode_proposal(
        &self,
        entry: Self::Entry,
        _leadership: (u64, bool),
    ) -> (Option<Vec<u8>>, Self::Entry) {
        (None, entry)
    }

    /// An entry from [`encode_proposal`](Self::encode_proposal) was refused: it is
    /// not in the log and never applies.
    fn proposal_refused(&self, _entry: &Self::Entry) {}

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

    /// Forgets a proposal whose submitter gave up; if it applies after all, it is
    /// decoded. Returns its entry, where it was still waiting.
    pub fn withdraw(&self, seq: u64) -> Option<S::Entry> {
        self.waiting.lock().remove(&seq).map(|(entry, _)| entry)
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
    /// Raft's snapshot: the newest image the state machine reported durable.
    current: Option<SnapshotOf<OdinRaft, I>>,
}

/// What Raft must know of an image besides the state machine's content: the log id
/// and membership at its position. Written next to the Raft log when an image is
/// taken (`<dir>/<index>.json`), read back at a restart from the image's position.
struct Positions {
    dir: PathBuf,
}

impl Positions {
    fn path(&self, index: LogIndex) -> PathBuf {
        self.dir.join(format!("{index:020}.json"))
    }

    fn record(&self, meta: &SnapshotMetaOf<OdinRaft>) -> io::Result<()> {
        let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
        let path = self.path(index);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(meta)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn load(&self, index: LogIndex) -> io::Result<SnapshotMetaOf<OdinRaft>> {
        let path = self.path(index);
        let bytes = std::fs::read(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{} (the Raft position of the image at {index}): {e}",
                    path.display()
                ),
            )
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Forgets the positions before `index`: no image there is kept any more.
    fn forget_before(&self, index: LogIndex) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if stem.parse::<u64>().is_ok_and(|i| i < index)
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an old Raft position");
            }
        }
    }
}

/// openraft's view of a [`StateMachine`]; cheap to clone.
pub struct ClusterMachine<S: Replicated> {
    machine: Arc<S>,
    proposals: Arc<Proposals<S>>,
    progress: Arc<Mutex<Progress<S::Image>>>,
    positions: Arc<Positions>,
}

impl<S: Replicated> Clone for ClusterMachine<S> {
    fn clone(&self) -> Self {
        ClusterMachine {
            machine: self.machine.clone(),
            proposals: self.proposals.clone(),
            progress: self.progress.clone(),
            positions: self.positions.clone(),
        }
    }
}

impl<S: Replicated> ClusterMachine<S> {
    /// The machine, with the Raft positions of its images kept in `positions_dir`.
    pub fn new(
        machine: Arc<S>,
        proposals: Arc<Proposals<S>>,
        positions_dir: &Path,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(positions_dir)?;
        Ok(ClusterMachine {
            machine,
            proposals,
            progress: Arc::new(Mutex::new(Progress {
                last_applied: None,
                membership: StoredMembership::default(),
                current: None,
            })),
            positions: Arc::new(Positions {
                dir: positions_dir.to_path_buf(),
            }),
        })
    }

    /// Starts from the image the state machine was restored from, taken at `index`:
    /// Raft applies only what follows it, and offers it as its snapshot.
    pub fn resume_from(&self, index: LogIndex) -> io::Result<()> {
        let meta = self.positions.load(index)?;
        let image = self.machine.durable_image(index)?;
        let mut p = self.progress.lock();
        p.last_applied = meta.last_log_id;
        p.membership = meta.last_membership.clone();
        p.current = Some(SnapshotOf::<OdinRaft, S::Image> {
            meta,
            snapshot: image,
        });
        Ok(())
    }

    pub fn machine(&self) -> &Arc<S> {
        &self.machine
    }

    /// The id of the newest entry applied.
    pub(crate) fn last_applied(&self) -> Option<LogId> {
        self.progress.lock().last_applied
    }

    /// The index of the newest entry applied (0: none).
    pub fn last_applied_index(&self) -> u64 {
        self.progress.lock().last_applied.map_or(0, |l| l.index)
    }

    /// Records Raft's side of an image about to be taken here, between two applies;
    /// returns its index.
    pub(crate) fn record_position(&self) -> io::Result<LogIndex> {
        let meta = {
            let p = self.progress.lock();
            SnapshotMetaOf::<OdinRaft> {
                last_log_id: p.last_applied,
                last_membership: p.membership.clone(),
            }
        };
        self.positions.record(&meta)?;
        Ok(meta.last_log_id.map_or(0, |l| l.index))
    }

    /// The image taken at `index` is durable: it becomes Raft's snapshot, and the
    /// positions of older ones are forgotten.
    pub(crate) fn image_durable(&self, index: LogIndex) -> io::Result<()> {
        let meta = self.positions.load(index)?;
        let image = self.machine.durable_image(index)?;
        self.progress.lock().current = Some(SnapshotOf::<OdinRaft, S::Image> {
            meta,
            snapshot: image,
        });
        self.positions.forget_before(index);
        Ok(())
    }

    fn apply_proposal(&self, index: u64, p: Proposal) -> io::Result<()> {
        match self.proposals.take(&p) {
            Some((entry, reply)) => {
                let _ = reply.send(self.machine.apply(index, entry));
            }
            None => {
                // The proposer's bytes are the entry; a replica that cannot decode
                // them cannot stay identical to the others, so it stops here.
                // Decoding and applying share this task: the decoder finds the
                // series it already holds as it reads them (`applier_busy`), which
                // spares building their labels only to look them up again.
                let entry = self.machine.decode(&p.bytes, true).map_err(|e| {
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

    /// The newest durable image: the state machine takes images on its own schedule
    /// (they are its restart images too), so building one is only picking it.
    async fn build_snapshot(&mut self) -> Result<SnapshotOf<OdinRaft, S::Image>, io::Error> {
        self.progress
            .lock()
            .current
            .clone()
            .ok_or_else(|| io::Error::other("no durable image yet"))
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

    /// The newest durable image; before there is one, nothing to offer, and Raft
    /// keeps the whole log. Forced, an image is taken now where the machine can take
    /// one on demand.
    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self> {
        let has_current = self.progress.lock().current.is_some();
        if !force {
            return has_current.then(|| self.clone());
        }
        let meta = {
            let p = self.progress.lock();
            SnapshotMetaOf::<OdinRaft> {
                last_log_id: p.last_applied,
                last_membership: p.membership.clone(),
            }
        };
        let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
        let image = match self.machine.image_now(index) {
            None => return has_current.then(|| self.clone()),
            Some(Ok(image)) => image,
            Some(Err(e)) => {
                tracing::error!(error = %e, index, "raft: cannot take an image on demand");
                return has_current.then(|| self.clone());
            }
        };
        if let Err(e) = self.positions.record(&meta) {
            tracing::error!(error = %e, index, "raft: cannot record an image's position");
            return None;
        }
        self.progress.lock().current = Some(SnapshotOf::<OdinRaft, S::Image> {
            meta,
            snapshot: image,
        });
        Some(self.clone())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<OdinRaft>,
        image: S::Image,
    ) -> Result<(), io::Error> {
        let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
        // The position first: once the state machine keeps the image durable, a
        // restart loads it and looks its position up.
        self.positions.record(meta)?;
        self.machine.restore(index, &image)?;
        // From now on the machine keeps the image as its own.
        let kept = self.machine.durable_image(index)?;
        let mut p = self.progress.lock();
        p.last_applied = meta.last_log_id;
        p.membership = meta.last_membership.clone();
        p.current = Some(SnapshotOf::<OdinRaft, S::Image> {
            meta: meta.clone(),
            snapshot: kept,
        });
        drop(p);
        self.positions.forget_before(index);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<OdinRaft, S::Image>>, io::Error> {
        Ok(self.progress.lock().current.clone())
    }
}
