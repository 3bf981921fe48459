//! Shipping blocks to object storage in the Thanos bucket layout, as the Thanos
//! sidecar does for Prometheus:
//!
//! ```text
//! <ULID>/chunks/000001 …   uploaded first
//! <ULID>/index
//! <ULID>/meta.json         uploaded last, with the `thanos` section (external labels,
//!                          downsample resolution 0, source, files with sizes)
//! ```
//!
//! A block in the bucket without meta.json is an upload in progress or an interrupted
//! one; Thanos ignores it, and ODIN uploads the whole block again.
//!
//! * [`config`]: `storage.object_store` / `--objstore.config-file` (Thanos's objstore
//!   YAML), building the `object_store` client (filesystem or S3).
//! * [`state`]: `thanos.shipper.json`, the persistent list of uploaded blocks, so that
//!   a restart neither uploads a block twice nor skips one.
//! * [`thanos`]: the meta.json `thanos` section.
//! * [`bucket`]: what `odin tools bucket ls|inspect|verify` do.
//! * [`Shipper`]: the upload task. It is woken after each head cut and every
//!   `interval`, uploads pending blocks oldest first, and after a failure waits with
//!   an exponential back-off with jitter; it never blocks ingestion.
//!
//! Local compaction and retention (in `tsdb/`) ask the shipper through
//! [`ShipTracker`]: a block is shipped when it was uploaded or when every level-1 block
//! it was compacted from was. ODIN keeps compacting locally (queries over long ranges
//! read fewer, larger blocks) but merges only shipped blocks, and ships the level-1
//! blocks cut from the head; merged blocks are not shipped again, because the Thanos
//! Compactor compacts the bucket itself. (The Thanos sidecar instead asks for local
//! compaction to be off; ODIN gets the same bucket without giving it up.) A block
//! that was compacted before shipping was turned on is shipped as it is. Retention
//! never deletes a block that has not shipped.
//!
//! This module must not import `api/`, `app/` or the query engine.

pub mod bucket;
pub mod config;
mod error;
mod metrics;
pub mod state;
pub mod thanos;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

pub use config::{ClientTuning, ObjectStoreConfig};
pub use error::{Result, ShipperError};
pub use metrics::ShipperMetrics;
pub use state::ShipperState;

use crate::logs::segment::{Segment, SegmentMeta};
use crate::supervise::Supervisor;
use crate::tsdb::block::BlockMeta;
use crate::tsdb::block::meta::{META_FILENAME, encode_meta};
use crate::tsdb::{Db, ShipTracker, ShippingHook};

/// How the upload task paces itself.
#[derive(Debug, Clone, Copy)]
pub struct ShipperOptions {
    /// Pending blocks are looked for at least this often (a head cut wakes the task
    /// earlier).
    pub interval: Duration,
    /// First wait after a failed upload; doubled after each further failure …
    pub backoff_min: Duration,
    /// … up to this.
    pub backoff_max: Duration,
}

impl Default for ShipperOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
        }
    }
}

/// Uploads the blocks of one data directory. Create it before opening the database
/// (its [`hook`](Shipper::hook) goes into the database options), then
/// [`spawn`](Shipper::spawn) it with the open database.
#[derive(Clone)]
pub struct Shipper {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    store: Arc<dyn ObjectStore>,
    labels: BTreeMap<String, String>,
    state: Mutex<ShipperState>,
    wake: tokio::sync::Notify,
    metrics: ShipperMetrics,
    opts: ShipperOptions,
    /// Whether this node uploads (a cluster's leader; a single node always). A node
    /// that does not only marks the blocks it finds in the bucket as shipped.
    uploads: std::sync::atomic::AtomicBool,
}

impl ShipTracker for Inner {
    fn is_shipped(&self, meta: &BlockMeta) -> bool {
        is_shipped(&self.state.lock(), meta)
    }

    fn block_written(&self, _meta: &BlockMeta) {
        self.wake.notify_one();
    }

    fn is_log_segment_shipped(&self, meta: &SegmentMeta) -> bool {
        let state = self.state.lock();
        meta.level1()
            .iter()
            .all(|u| Ulid::from_string(u).is_ok_and(|u| state.log_segments.contains(&u)))
    }

    fn segments_written(&self) {
        self.wake.notify_one();
    }
}

fn is_shipped(state: &ShipperState, meta: &BlockMeta) -> bool {
    state.uploaded.contains(&meta.ulid)
        || (!meta.compaction.sources.is_empty()
            && meta
                .compaction
                .sources
                .iter()
                .all(|s| state.uploaded.contains(s)))
}

/// What one upload attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// Every file, then meta.json, went up.
    Uploaded,
    /// The bucket already had the block's meta.json (a restart after the upload but
    /// before the state was written): nothing sent.
    AlreadyThere,
}

impl Shipper {
    /// Loads the shipper state of `data_dir`. `labels` are the external labels put in
    /// every uploaded meta.json; they must not be empty (the configuration refuses it).
    pub fn new(
        data_dir: &Path,
        store: Arc<dyn ObjectStore>,
        labels: BTreeMap<String, String>,
        opts: ShipperOptions,
        metrics: ShipperMetrics,
    ) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ShipperError::io(format!("create {}", data_dir.display()), e))?;
        let state = ShipperState::load(data_dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                store,
                labels,
                state: Mutex::new(state),
                wake: tokio::sync::Notify::new(),
                metrics,
                opts,
                uploads: std::sync::atomic::AtomicBool::new(true),
            }),
        })
    }

    /// In a cluster only the leader uploads: every replica cuts the same blocks
    /// (same names, same bytes), and the bucket is the record of what has shipped.
    /// A node that does not upload looks for its blocks in the bucket and counts those
    /// it finds as shipped (so that its compaction and retention go on); one that
    /// takes over uploads what is not there yet, and never uploads a block twice.
    pub fn set_uploads(&self, on: bool) {
        let was = self
            .inner
            .uploads
            .swap(on, std::sync::atomic::Ordering::AcqRel);
        if was != on {
            tracing::info!(
                uploads = on,
                "block uploads {}",
                if on {
                    "taken over"
                } else {
                    "left to the leader"
                }
            );
            self.inner.wake.notify_one();
        }
    }

    /// What the database asks before compacting or deleting a block.
    pub fn hook(&self) -> ShippingHook {
        ShippingHook(self.inner.clone())
    }

    /// Runs the upload loop under `supervisor` until it shuts down: a loop that
    /// panics is counted and started again. An upload in flight at shutdown is
    /// abandoned; its block has no meta.json in the bucket and goes up again at the
    /// next start.
    pub fn spawn(&self, db: Db, supervisor: &Supervisor) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let shutdown = supervisor.shutdown().clone();
        supervisor.spawn("shipper", move || {
            let (this, db, shutdown) = (this.clone(), db.clone(), shutdown.clone());
            async move {
                this.run(db, shutdown).await;
                Ok(())
            }
        })
    }

    async fn run(&self, db: Db, shutdown: CancellationToken) {
        let opts = self.inner.opts;
        let mut backoff = opts.backoff_min;
        loop {
            let round = tokio::select! {
                r = self.sync(&db) => r,
                _ = shutdown.cancelled() => return,
            };
            let wait = match round {
                Ok(n) => {
                    backoff = opts.backoff_min;
                    if n > 0 {
                        // Compaction and retention may now go ahead with these blocks.
                        db.request_maintenance();
                    }
                    None
                }
                Err(e) => {
                    self.inner.metrics.upload_failures.inc();
                    let wait = jittered(backoff);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64,
                        "block upload failed; retrying");
                    backoff = (backoff * 2).min(opts.backoff_max);
                    Some(wait)
                }
            };
            match wait {
                Some(wait) => tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return,
                },
                None => tokio::select! {
                    _ = self.inner.wake.notified() => {}
                    _ = tokio::time::sleep(opts.interval) => {}
                    _ = shutdown.cancelled() => return,
                },
            }
        }
    }

    /// Uploads every local block that has not shipped, oldest first; stops at the
    /// first failure. Returns how many blocks landed.
    pub async fn sync(&self, db: &Db) -> Result<usize> {
        let pending: Vec<BlockMeta> = {
            let state = self.inner.state.lock();
            let mut p: Vec<BlockMeta> = db
                .blocks()
                .iter()
                .map(|b| b.meta().clone())
                .filter(|m| !is_shipped(&state, m))
                .collect();
            p.sort_by_key(|m| (m.min_time, m.ulid));
            p
        };
        self.inner.metrics.blocks_pending.set(pending.len() as i64);
        let mut landed = 0;
        for meta in &pending {
            let uploads = self
                .inner
                .uploads
                .load(std::sync::atomic::Ordering::Acquire);
            let outcome = if uploads {
                self.upload_block(meta).await?
            } else if self.in_bucket(meta).await? {
                Uploaded::AlreadyThere
            } else {
                // The leader has not uploaded it yet.
                continue;
            };
            self.mark_uploaded(db, meta).await?;
            landed += 1;
            self.inner.metrics.blocks_pending.dec();
            match outcome {
                Uploaded::Uploaded => {
                    self.inner.metrics.uploads.inc();
                    self.inner
                        .metrics
                        .last_success_timestamp_seconds
                        .set(crate::model::now_ms() as f64 / 1000.0);
                    tracing::info!(ulid = %meta.ulid, min_time = meta.min_time,
                        max_time = meta.max_time, "block uploaded");
                }
                Uploaded::AlreadyThere => {
                    tracing::info!(ulid = %meta.ulid, "block already in the bucket; not uploaded again")
                }
            }
        }
        Ok(landed + self.sync_log_segments(db).await?)
    }

    /// Uploads every local window segment that has not shipped, oldest first
    /// (merged segments are not: their sources are in the bucket). Returns how many
    /// landed.
    async fn sync_log_segments(&self, db: &Db) -> Result<usize> {
        let pending: Vec<Arc<Segment>> = {
            let state = self.inner.state.lock();
            let mut p: Vec<Arc<Segment>> = db
                .log_segments()
                .into_iter()
                .filter(|s| s.meta.compaction.is_none())
                .filter(|s| {
                    Ulid::from_string(&s.meta.ulid).is_ok_and(|u| !state.log_segments.contains(&u))
                })
                .collect();
            p.sort_by_key(|s| (s.meta.window_start, s.meta.ulid.clone()));
            p
        };
        let metrics = &self.inner.metrics;
        metrics.log_segments_pending.set(pending.len() as i64);
        let mut landed = 0;
        for seg in &pending {
            let uploads = self
                .inner
                .uploads
                .load(std::sync::atomic::Ordering::Acquire);
            let meta_path = segment_object(&seg.meta, crate::logs::segment::META_FILE);
            let outcome = if uploads {
                self.upload_log_segment(seg).await?
            } else if self.object_exists(&meta_path).await? {
                Uploaded::AlreadyThere
            } else {
                continue;
            };
            self.mark_log_segment_uploaded(db, &seg.meta).await?;
            landed += 1;
            metrics.log_segments_pending.dec();
            if outcome == Uploaded::Uploaded {
                metrics.log_segment_uploads.inc();
                metrics
                    .last_success_timestamp_seconds
                    .set(crate::model::now_ms() as f64 / 1000.0);
                tracing::info!(
                    tenant = seg.meta.tenant,
                    ulid = seg.meta.ulid,
                    window_start_ns = seg.meta.window_start,
                    "log segment uploaded"
                );
            }
        }
        Ok(landed)
    }

    /// Uploads one window segment to `logs/<tenant>/<ULID>/`: lines, stream table
    /// and index, then meta.json (with the external labels). The segment's files
    /// never change, and it is not merged or deleted before it has shipped, so
    /// they are read in place.
    async fn upload_log_segment(&self, seg: &Segment) -> Result<Uploaded> {
        let store = &self.inner.store;
        let meta_path = segment_object(&seg.meta, crate::logs::segment::META_FILE);
        if self.object_exists(&meta_path).await? {
            return Ok(Uploaded::AlreadyThere);
        }
        let dir = seg.dir.clone();
        let files = tokio::task::spawn_blocking(move || relative_files(&dir))
            .await
            .map_err(|e| ShipperError::Corrupt(format!("list segment task: {e}")))??;
        for rel in files
            .iter()
            .filter(|f| f.as_str() != crate::logs::segment::META_FILE)
        {
            upload_file(
                store.clone(),
                &seg.dir.join(rel),
                segment_object(&seg.meta, rel),
            )
            .await?;
        }
        let mut meta = seg.meta.clone();
        meta.external_labels = self.inner.labels.clone();
        let bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|e| ShipperError::Corrupt(format!("encode segment meta: {e}")))?;
        store
            .put(&meta_path, bytes.into())
            .await
            .map_err(|e| ShipperError::store(format!("upload {meta_path}"), e))?;
        Ok(Uploaded::Uploaded)
    }

    /// Records the window segment as uploaded and writes the state; entries no
    /// local segment refers to any more are dropped.
    async fn mark_log_segment_uploaded(&self, db: &Db, meta: &SegmentMeta) -> Result<()> {
        let snapshot = {
            let mut state = self.inner.state.lock();
            if let Ok(u) = Ulid::from_string(&meta.ulid) {
                state.log_segments.insert(u);
            }
            let referenced: BTreeSet<String> = db
                .log_segments()
                .iter()
                .flat_map(|s| s.meta.level1().into_iter().map(str::to_string))
                .collect();
            state
                .log_segments
                .retain(|u| referenced.contains(&u.to_string()));
            state.clone()
        };
        self.save_state(snapshot).await
    }

    async fn save_state(&self, snapshot: ShipperState) -> Result<()> {
        let dir = self.inner.data_dir.clone();
        tokio::task::spawn_blocking(move || snapshot.save(&dir))
            .await
            .map_err(|e| ShipperError::Corrupt(format!("save shipper state task: {e}")))?
    }

    async fn object_exists(&self, path: &ObjectPath) -> Result<bool> {
        match self.inner.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(ShipperError::store(format!("check {path}"), e)),
        }
    }

    /// Records the block (and the level-1 blocks it holds) as uploaded and writes the
    /// state. Entries no live block refers to are dropped: the live list is read
    /// after the insertion, and compaction swaps blocks in it atomically, so a block
    /// merged meanwhile still finds its sources.
    async fn mark_uploaded(&self, db: &Db, meta: &BlockMeta) -> Result<()> {
        let snapshot = {
            let mut state = self.inner.state.lock();
            state.uploaded.insert(meta.ulid);
            state
                .uploaded
                .extend(meta.compaction.sources.iter().copied());
            let mut referenced: BTreeSet<ulid::Ulid> = BTreeSet::new();
            for b in db.blocks() {
                referenced.insert(b.meta().ulid);
                referenced.extend(b.meta().compaction.sources.iter().copied());
            }
            state.uploaded.retain(|u| referenced.contains(u));
            state.clone()
        };
        self.save_state(snapshot).await
    }

    /// Whether the bucket holds the block (its meta.json goes up last).
    async fn in_bucket(&self, meta: &BlockMeta) -> Result<bool> {
        self.object_exists(&ObjectPath::from(format!("{}/{META_FILENAME}", meta.ulid)))
            .await
    }

    /// Uploads one block: chunk segments and index, then meta.json with the `thanos`
    /// section. The files are hard-linked into `<data dir>/thanos/upload/<ULID>`
    /// first, so nothing that happens to the block meanwhile changes what goes up.
    pub async fn upload_block(&self, meta: &BlockMeta) -> Result<Uploaded> {
        let store = &self.inner.store;
        let id = meta.ulid.to_string();
        let meta_path = ObjectPath::from(format!("{id}/{META_FILENAME}"));
        match store.head(&meta_path).await {
            Ok(_) => return Ok(Uploaded::AlreadyThere),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(ShipperError::store(format!("check {meta_path}"), e)),
        }
        let src = self.inner.data_dir.join(&id);
        let staging = self.inner.data_dir.join("thanos").join("upload").join(&id);
        let (files, staged) = {
            let staging = staging.clone();
            tokio::task::spawn_blocking(move || stage(&src, &staging))
                .await
                .map_err(|e| ShipperError::Corrupt(format!("stage block task: {e}")))??
        };
        let result = async {
            for f in files.iter().filter(|f| f.rel_path != META_FILENAME) {
                let to = ObjectPath::from(format!("{id}/{}", f.rel_path));
                upload_file(store.clone(), &staged.join(&f.rel_path), to).await?;
            }
            let thanos = thanos::thanos_section(&self.inner.labels, files.clone());
            let full = thanos::with_thanos(meta, &thanos)?;
            let bytes = encode_meta(&full)?;
            store
                .put(&meta_path, bytes.into())
                .await
                .map_err(|e| ShipperError::store(format!("upload {meta_path}"), e))?;
            Ok(Uploaded::Uploaded)
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        result
    }
}

/// Where a log segment's file lives in the bucket: `logs/<tenant>/<ULID>/<rel>`.
pub fn segment_object(meta: &SegmentMeta, rel: &str) -> ObjectPath {
    ObjectPath::from_iter(
        [LOGS_PREFIX, meta.tenant.as_str(), meta.ulid.as_str()]
            .into_iter()
            .chain(rel.split('/')),
    )
}

/// The bucket's top-level folder of log segments, beside the blocks' ULIDs.
pub const LOGS_PREFIX: &str = "logs";

/// The files under `dir`, as `/`-separated paths relative to it.
fn relative_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| ShipperError::io(format!("list {}", d.display()), e))?;
        for e in entries {
            let e = e.map_err(|e| ShipperError::io(format!("list {}", d.display()), e))?;
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().to_string())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hard-links the block's files into `staging` and lists them (sizes from the links).
fn stage(src: &Path, staging: &Path) -> Result<(Vec<thanos::ThanosFile>, PathBuf)> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .map_err(|e| ShipperError::io(format!("remove {}", staging.display()), e))?;
    }
    let files = thanos::block_files(src)?;
    std::fs::create_dir_all(staging.join("chunks"))
        .map_err(|e| ShipperError::io(format!("create {}", staging.display()), e))?;
    for f in files.iter().filter(|f| f.rel_path != META_FILENAME) {
        let from = src.join(&f.rel_path);
        let to = staging.join(&f.rel_path);
        std::fs::hard_link(&from, &to)
            .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
            .map_err(|e| ShipperError::io(format!("stage {}", from.display()), e))?;
    }
    Ok((files, staging.to_path_buf()))
}

/// Files up to this size go up in one PUT; larger ones as a multipart upload in
/// parts of this size.
const PART_BYTES: usize = 16 << 20;

/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Streams one file to the store: a single PUT when small, a multipart upload
/// above [`PART_BYTES`]. Any failure (the file, or the store refusing a part or the
/// completion) is an error for this attempt, and a multipart upload that failed is
/// aborted so the bucket keeps no parts. Written against `put_multipart` directly:
/// object_store's `BufWriter` panics when aborted after a failed shutdown, which
/// ended the whole shipper task on the first refused PUT.
async fn upload_file(store: Arc<dyn ObjectStore>, from: &Path, to: ObjectPath) -> Result<()> {
    let io = |e: std::io::Error| ShipperError::io(format!("read {}", from.display()), e);
    let mut file = tokio::fs::File::open(from).await.map_err(io)?;
    let len = file.metadata().await.map_err(io)?.len();
    if len <= PART_BYTES as u64 {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf).await.map_err(io)?;
        store
            .put(&to, buf.into())
            .await
            .map_err(|e| ShipperError::store(format!("upload {to}"), e))?;
        return Ok(());
    }
    let upload = store
        .put_multipart(&to)
        .await
        .map_err(|e| ShipperError::store(format!("start multipart upload {to}"), e))?;
    let mut parts = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = parts.abort().await;
                return Err(io(e));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = parts.abort().await;
            return Err(ShipperError::store(format!("upload {to}"), e));
        }
        parts.write(buf.get(..n).unwrap_or_default());
    }
    // `finish` aborts the upload itself when a part or the completion fails.
    parts
        .finish()
        .await
        .map_err(|e| ShipperError::store(format!("upload {to}"), e))?;
    Ok(())
}

/// `d` with equal jitter: between half of it and all of it.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::storage::Appendable;
    use crate::tsdb::DbOptions;

    const H: i64 = 3_600_000;

    /// A database whose head has been cut into three 2 h blocks, with `shipper`'s
    /// hook installed.
    fn db_with_blocks(dir: &Path, shipper: &Shipper) -> Db {
        let opts = DbOptions {
            retention_ms: 0,
            max_block_ms: 2 * H,
            shipping: Some(shipper.hook()),
            ..DbOptions::default()
        };
        let db = Db::open_for_tests(dir, opts, &Default::default());
        let mut t = 0;
        while t < 9 * H {
            let mut app = db.appender();
            app.append(&Labels::from_pairs([("__name__", "x")]), t, 1.0)
                .unwrap();
            app.commit().unwrap();
            t += 60_000;
        }
        db.compact().unwrap();
        assert_eq!(db.blocks().len(), 3);
        db
    }

    fn shipper(data: &Path, bucket: &Path, opts: ShipperOptions) -> Shipper {
        let store = ObjectStoreConfig::Filesystem(config::FilesystemConfig {
            directory: bucket.display().to_string(),
        })
        .build(ClientTuning::default())
        .unwrap();
        let labels = BTreeMap::from([("replica".to_string(), "a".to_string())]);
        Shipper::new(data, store, labels, opts, ShipperMetrics::default()).unwrap()
    }

    fn bucket_blocks(bucket: &Path) -> usize {
        std::fs::read_dir(bucket)
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("meta.json").exists())
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_retry_with_backoff_until_the_store_is_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, bucket) = (tmp.path().join("data"), tmp.path().join("bucket"));
        let opts = ShipperOptions {
            interval: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
        };
        let s = shipper(&data, &bucket, opts);
        // The bucket cannot be written: its directory is a plain file.
        std::fs::remove_dir_all(&bucket).unwrap();
        std::fs::write(&bucket, b"not a directory").unwrap();
        let db = db_with_blocks(&data, &s);
        let stop = CancellationToken::new();
        let supervisor = Supervisor::new(Default::default(), Default::default(), stop.clone());
        let task = s.spawn(db.clone(), &supervisor);
        let m = s.inner.metrics.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while m.upload_failures.get() < 3 {
            assert!(std::time::Instant::now() < deadline, "no retries");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(m.uploads.get(), 0);
        assert_eq!(m.blocks_pending.get(), 3);
        assert!(db.blocks().iter().all(|b| !s.inner.is_shipped(b.meta())));
        // The store comes back: every block lands, without another wake-up.
        std::fs::remove_file(&bucket).unwrap();
        std::fs::create_dir_all(&bucket).unwrap();
        while m.uploads.get() < 3 {
            assert!(std::time::Instant::now() < deadline, "never landed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(bucket_blocks(&bucket), 3);
        assert_eq!(m.blocks_pending.get(), 0);
        assert!(db.blocks().iter().all(|b| s.inner.is_shipped(b.meta())));
        assert!(!data.join("thanos/upload").read_dir().unwrap().any(|_| true));
        let state = ShipperState::load(&data).unwrap();
        assert_eq!(state.uploaded.len(), 3);
    }

    #[tokio::test]
    async fn restart_uploads_nothing_twice_even_without_the_state_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, bucket) = (tmp.path().join("data"), tmp.path().join("bucket"));
        let s = shipper(&data, &bucket, ShipperOptions::default());
        let db = db_with_blocks(&data, &s);
        assert_eq!(s.sync(&db).await.unwrap(), 3);
        assert_eq!(s.inner.metrics.uploads.get(), 3);
        // A new shipper (a restart) reads the state: nothing to do.
        let again = shipper(&data, &bucket, ShipperOptions::default());
        assert_eq!(again.sync(&db).await.unwrap(), 0);
        // State lost after the upload: the bucket's meta.json says the block is there.
        std::fs::remove_file(state::state_path(&data)).unwrap();
        let lost = shipper(&data, &bucket, ShipperOptions::default());
        assert_eq!(lost.sync(&db).await.unwrap(), 3);
        assert_eq!(lost.inner.metrics.uploads.get(), 0, "nothing sent again");
        assert_eq!(ShipperState::load(&data).unwrap().uploaded.len(), 3);
        // An interrupted upload (no meta.json) goes up again whole.
        let first = db.blocks()[0].meta().ulid.to_string();
        std::fs::remove_file(bucket.join(&first).join("meta.json")).unwrap();
        std::fs::remove_file(state::state_path(&data)).unwrap();
        let partial = shipper(&data, &bucket, ShipperOptions::default());
        assert_eq!(partial.sync(&db).await.unwrap(), 3);
        assert_eq!(partial.inner.metrics.uploads.get(), 1);
        assert!(bucket.join(&first).join("meta.json").exists());
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }
}
