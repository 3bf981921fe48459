//! Long-term queries: blocks that live only in the bucket stay queryable.
//!
//! [`BucketStore`] lists the bucket at start and every `sync_interval`, and opens the
//! blocks worth reading: those with a meta.json (a block without one is an upload in
//! progress or an interrupted one), a `thanos` section whose external labels are this
//! ODIN's (another cluster's blocks in a shared bucket are not its history), raw
//! resolution (downsampled blocks hold aggregates, not samples), and no
//! `deletion-mark.json` (the compactor has replaced them). Compactor output (any
//! level) is read like any block; overlaps are merged by the storage merge, which
//! keeps one sample per timestamp.
//!
//! A block is read as a Thanos store gateway reads it ([`block`]): an in-memory
//! index-header, postings, series and chunks by range GETs, cached in a size-bounded
//! LRU ([`cache`]) shared by all queries (`--store.cache-size`).
//!
//! [`LongTermQueryable`] puts local storage and the bucket behind the `storage`
//! seams: the bucket answers only for the time before the oldest local sample, and a
//! failing bucket turns into warnings, never into a failed query.
//!
//! Threading: queriers are called from query threads and the blocking pool; reads
//! run on the runtime whose handle the store was built with, the calling thread
//! waits on a channel ([`block::wait_on`]). Queriers must not be used from inside an
//! async task (they block the calling thread).
//!
//! Not read: tombstones (the shipper does not upload them; Thanos blocks carry
//! deletions as rewritten blocks), non-XOR chunks.
//!
//! Depends on `storage`, `tsdb` (the index and chunk formats) and `shipper` (the
//! bucket layout); nothing imports it except `app/`, benches and tests.

pub mod block;
pub mod cache;
mod error;
pub mod fixture;
pub mod logs;
mod querier;
#[cfg(test)]
mod tests;

pub use block::BucketBlockReader;
pub use cache::{CacheStats, RangeCache};
pub use error::{BucketStoreError, Result};
pub use querier::{BucketQuerier, LongTermQueryable};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::shipper::bucket::read_block;
use crate::shipper::thanos::thanos_of;
use crate::supervise::Supervisor;

/// Marker the Thanos compactor puts in a block it has replaced.
const DELETION_MARK: &str = "deletion-mark.json";

/// How the bucket store reads.
#[derive(Debug, Clone)]
pub struct BucketStoreOptions {
    /// Bound of the cache of postings, series and chunks read from the bucket.
    pub cache_bytes: u64,
    /// How often the bucket is listed for new and removed blocks.
    pub sync_interval: Duration,
    /// This ODIN's external labels: only blocks shipped with these are read.
    pub external_labels: BTreeMap<String, String>,
}

impl Default for BucketStoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 1 << 30,
            sync_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSummary {
    pub blocks: usize,
    pub opened: usize,
    pub dropped: usize,
    pub skipped: usize,
}

/// The blocks of the bucket that can be queried, and the cache their reads share.
pub struct BucketStore {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    cache: Arc<RangeCache>,
    opts: BucketStoreOptions,
    /// Open blocks, by ULID order (= time order for blocks cut in order).
    blocks: RwLock<Vec<Arc<BucketBlockReader>>>,
    last_sync_error: Mutex<Option<String>>,
    /// The log segments of the same bucket, listed with the blocks.
    logs: std::sync::OnceLock<Arc<logs::BucketLogs>>,
}

impl BucketStore {
    /// A store reading `store`; its reads run on `handle`'s runtime. Nothing is read
    /// before the first [`sync`](Self::sync).
    pub fn new(store: Arc<dyn ObjectStore>, handle: Handle, opts: BucketStoreOptions) -> Arc<Self> {
        Arc::new(Self {
            store,
            handle,
            cache: Arc::new(RangeCache::new(opts.cache_bytes)),
            opts,
            blocks: RwLock::new(Vec::new()),
            last_sync_error: Mutex::new(None),
            logs: std::sync::OnceLock::new(),
        })
    }

    /// The bucket's log segments, read with downloads cached under `cache_dir`;
    /// listed at every sync from now on.
    pub fn logs(&self, cache_dir: &std::path::Path) -> std::io::Result<Arc<logs::BucketLogs>> {
        if let Some(l) = self.logs.get() {
            return Ok(l.clone());
        }
        let l = logs::BucketLogs::new(
            self.store.clone(),
            self.handle.clone(),
            cache_dir,
            self.opts.cache_bytes,
            self.opts.external_labels.clone(),
        )?;
        Ok(self.logs.get_or_init(|| l).clone())
    }

    /// The open blocks.
    pub fn blocks(&self) -> Vec<Arc<BucketBlockReader>> {
        self.blocks.read().clone()
    }

    pub fn cache(&self) -> &RangeCache {
        &self.cache
    }

    /// The oldest time of any open block.
    pub fn min_time(&self) -> Option<i64> {
        self.blocks.read().iter().map(|b| b.meta().min_time).min()
    }

    /// Why the last listing failed, while it is the latest outcome.
    pub fn last_sync_error(&self) -> Option<String> {
        self.last_sync_error.lock().clone()
    }

    /// Lists the bucket, opens new blocks and drops vanished ones. A block that fails
    /// to open is skipped and tried again next time.
    pub async fn sync(&self) -> Result<SyncSummary> {
        let outcome = self.sync_inner().await;
        *self.last_sync_error.lock() = outcome.as_ref().err().map(|e| e.to_string());
        outcome
    }

    async fn sync_inner(&self) -> Result<SyncSummary> {
        let ids = crate::shipper::bucket::list_block_ids(&self.store)
            .await
            .map_err(|e| BucketStoreError::store("list bucket", e))?;
        let open: HashMap<String, Arc<BucketBlockReader>> = self
            .blocks()
            .into_iter()
            .map(|b| (b.meta().ulid.to_string(), b))
            .collect();
        let mut summary = SyncSummary::default();
        let mut next = Vec::new();
        for id in &ids {
            // A block is immutable: once open, only a deletion mark changes it, and
            // the compactor deletes marked blocks after a delay, which the next
            // listing sees.
            if let Some(b) = open.get(id) {
                next.push(b.clone());
                continue;
            }
            let listed = read_block(&self.store, id)
                .await
                .map_err(|e| BucketStoreError::Corrupt(format!("read block {id}: {e}")));
            let listed = match listed {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(block = %id, error = %e, "cannot list bucket block; skipped");
                    summary.skipped += 1;
                    continue;
                }
            };
            let Some(meta) = listed.meta.clone() else {
                summary.skipped += 1;
                continue;
            };
            let Some(thanos) = thanos_of(&meta) else {
                summary.skipped += 1;
                continue;
            };
            if thanos.downsample.resolution != 0
                || thanos.labels != self.opts.external_labels
                || listed.objects.contains_key(DELETION_MARK)
            {
                summary.skipped += 1;
                continue;
            }
            match BucketBlockReader::open(
                self.store.clone(),
                self.handle.clone(),
                self.cache.clone(),
                meta,
                &listed.objects,
            )
            .await
            {
                Ok(b) => {
                    summary.opened += 1;
                    next.push(Arc::new(b));
                }
                Err(e) => {
                    tracing::warn!(block = %id, error = %e, "cannot open bucket block; skipped");
                    summary.skipped += 1;
                }
            }
        }
        summary.dropped = open.len() + summary.opened - next.len();
        summary.blocks = next.len();
        *self.blocks.write() = next;
        Ok(summary)
    }

    /// Syncs now and then every `sync_interval` until `supervisor` shuts down; a
    /// loop that panics is counted and started again.
    pub fn spawn(self: &Arc<Self>, supervisor: &Supervisor) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let shutdown = supervisor.shutdown().clone();
        supervisor.spawn("bucket_sync", move || {
            let (store, shutdown) = (store.clone(), shutdown.clone());
            async move {
                store.sync_until(shutdown).await;
                Ok(())
            }
        })
    }

    async fn sync_until(&self, shutdown: CancellationToken) {
        loop {
            match self.sync().await {
                Ok(s) => tracing::debug!(
                    blocks = s.blocks,
                    opened = s.opened,
                    dropped = s.dropped,
                    skipped = s.skipped,
                    "bucket store synced"
                ),
                Err(e) => tracing::warn!(error = %e, "bucket store sync failed"),
            }
            if let Some(logs) = self.logs.get() {
                match logs.sync().await {
                    Ok(s) => tracing::debug!(
                        segments = s.segments,
                        added = s.added,
                        dropped = s.dropped,
                        skipped = s.skipped,
                        "bucket log segments synced"
                    ),
                    Err(e) => tracing::warn!(error = %e, "bucket log segments sync failed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.opts.sync_interval) => {}
            }
        }
    }
}
