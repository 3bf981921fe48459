use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;

use super::*;
use crate::replication::machine::{ClusterMachine, Proposals};
use crate::replication::test_machine::Tally;
use crate::replication::types::Proposal;

/// Small segments, so the suite crosses segment boundaries too; the state machine is
/// the adapter ODIN uses, around one that only remembers what it applied.
struct Builder;

type Machine = ClusterMachine<Tally>;

impl StoreBuilder<OdinRaft, RaftLogStore, Machine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, RaftLogStore, Machine), StorageError<OdinRaft>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            RaftLogStore::open_with_segment_bytes(&dir.path().join("log"), 300).expect("open log");
        let machine = ClusterMachine::new(
            Arc::default(),
            Arc::new(Proposals::new(1)),
            &dir.path().join("positions"),
        )
        .expect("positions");
        Ok((dir, store, machine))
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
