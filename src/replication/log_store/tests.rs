use futures_util::TryStreamExt;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::{RaftSnapshotBuilder, StorageError, StoredMembership};

use super::*;
use crate::replication::types::{Applied, Proposal};

/// A state machine that only remembers what it applied: the suite exercises the
/// log store through a state machine, and this one has nothing of its own to get
/// wrong.
#[derive(Clone, Default)]
struct Recorder {
    inner: Arc<Mutex<RecorderState>>,
}

#[derive(Default, Clone)]
struct RecorderState {
    last_applied: Option<LogId>,
    membership: StoredMembershipOf<OdinRaft>,
    applied: Vec<Vec<u8>>,
    current: Option<(SnapshotMetaOf<OdinRaft>, Vec<Vec<u8>>)>,
}

impl RaftSnapshotBuilder<OdinRaft> for Recorder {
    type SnapshotData = Vec<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<OdinRaft, Vec<Vec<u8>>>, io::Error> {
        let mut s = self.inner.lock();
        let meta = SnapshotMetaOf::<OdinRaft> {
            last_log_id: s.last_applied,
            last_membership: s.membership.clone(),
        };
        let data = s.applied.clone();
        s.current = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<OdinRaft, _> {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<OdinRaft> for Recorder {
    type SnapshotData = Vec<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<OdinRaft>), io::Error> {
        let s = self.inner.lock();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures_util::Stream<Item = Result<EntryResponder<OdinRaft>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            {
                let mut s = self.inner.lock();
                s.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(p) => s.applied.push(p.bytes),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembership::new(Some(entry.log_id), m);
                    }
                }
            }
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
        snapshot: Vec<Vec<u8>>,
    ) -> Result<(), io::Error> {
        let mut s = self.inner.lock();
        s.applied = snapshot.clone();
        s.last_applied = meta.last_log_id;
        s.membership = meta.last_membership.clone();
        s.current = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<OdinRaft, Vec<Vec<u8>>>>, io::Error> {
        let s = self.inner.lock();
        Ok(s.current
            .clone()
            .map(|(meta, snapshot)| SnapshotOf::<OdinRaft, _> { meta, snapshot }))
    }
}

/// Small segments, so the suite crosses segment boundaries too.
struct Builder;

impl StoreBuilder<OdinRaft, RaftLogStore, Recorder, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, RaftLogStore, Recorder), StorageError<OdinRaft>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RaftLogStore::open_with_segment_bytes(dir.path(), 300).expect("open log");
        Ok((dir, store, Recorder::default()))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    OdinRaft::run(async {
        Suite::test_all(Builder).await.unwrap();
    });
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 },
        index,
    )
}

fn entry(term: u64, index: u64, bytes: &[u8]) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Proposal {
            origin: 1,
            seq: index,
            bytes: bytes.to_vec(),
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

async fn append(store: &mut RaftLogStore, entries: Vec<Entry>) {
    let (tx, rx) = OdinRaft::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

async fn indices(store: &mut RaftLogStore) -> Vec<(u64, Vec<u8>)> {
    store
        .try_get_log_entries(..)
        .await
        .unwrap()
        .into_iter()
        .map(|e| match e.payload {
            EntryPayload::Normal(p) => (e.log_id.index, p.bytes),
            _ => (e.log_id.index, Vec::new()),
        })
        .collect()
}

/// What was reported flushed is there after a reopen, across segments; a
/// truncation and a purge are too; the vote survives.
#[test]
fn entries_truncation_purge_and_vote_survive_a_reopen() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RaftLogStore::open_with_segment_bytes(dir.path(), 200).unwrap();
        let batch: Vec<Entry> = (1..=20).map(|i| entry(1, i, &[i as u8; 40])).collect();
        append(&mut store, batch).await;
        store.truncate_after(Some(log_id(1, 15))).await.unwrap();
        append(
            &mut store,
            vec![entry(2, 16, b"new"), entry(2, 17, b"newer")],
        )
        .await;
        store.purge(log_id(1, 5)).await.unwrap();
        let vote = Vote::new(2, 3);
        store.save_vote(&vote).await.unwrap();
        let before = indices(&mut store).await;
        drop(store);
        assert!(
            segment::list_dir(dir.path()).unwrap().segments.len() > 3,
            "several segments"
        );

        let mut store = RaftLogStore::open_with_segment_bytes(dir.path(), 200).unwrap();
        let after = indices(&mut store).await;
        assert_eq!(after, before);
        assert_eq!(after.first().map(|e| e.0), Some(6));
        assert_eq!(after.last().map(|e| e.1.clone()), Some(b"newer".to_vec()));
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
        assert_eq!(state.last_log_id, Some(log_id(2, 17)));
    });
}

/// A torn last record (a crash during a write, before its fsync returned and the
/// append was reported) ends the log there; the next start and appends work.
#[test]
fn a_torn_tail_ends_the_log_and_appends_go_on_after_it() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RaftLogStore::open(dir.path()).unwrap();
        append(&mut store, (1..=3).map(|i| entry(1, i, b"abc")).collect()).await;
        drop(store);
        let seg = dir.path().join(segment::segment_name(0));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 2)
            .unwrap();

        let mut store = RaftLogStore::open(dir.path()).unwrap();
        assert_eq!(
            indices(&mut store)
                .await
                .iter()
                .map(|e| e.0)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        append(&mut store, vec![entry(1, 3, b"again")]).await;
        drop(store);
        let mut store = RaftLogStore::open(dir.path()).unwrap();
        assert_eq!(
            indices(&mut store).await.last().unwrap().1,
            b"again".to_vec()
        );
    });
}

/// An append out of sequence is refused, and the log refuses writes after it
/// rather than guess what reached the disk.
#[test]
fn an_append_out_of_sequence_is_refused() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RaftLogStore::open(dir.path()).unwrap();
        append(&mut store, vec![entry(1, 1, b"a")]).await;
        let (tx, _rx) = OdinRaft::oneshot();
        let err = store
            .append(vec![entry(1, 3, b"c")], IOFlushed::signal(tx))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("where 2 was expected"), "{err}");
        assert_eq!(indices(&mut store).await.len(), 1);
    });
}

/// A torn commit hint (written without fsync) does not keep the log from opening.
#[test]
fn a_torn_commit_hint_is_ignored() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RaftLogStore::open(dir.path()).unwrap();
        append(&mut store, vec![entry(1, 1, b"a")]).await;
        store.save_committed(Some(log_id(1, 1))).await.unwrap();
        drop(store);
        fs::write(dir.path().join("committed"), b"{\"leader_id").unwrap();
        let mut store = RaftLogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
        assert_eq!(indices(&mut store).await.len(), 1);
    });
}
