//! Log segments that live only in the bucket stay queryable.
//!
//! The shipper puts each window segment under `logs/<tenant>/<ULID>/` (meta.json
//! last, with the external labels). [`BucketLogs`] lists that folder at start and
//! every sync, and keeps the segments whose meta.json carries this ODIN's external
//! labels. A segment is opened on first use, as the Thanos store gateway opens a
//! block: its meta, stream table and tantivy index are downloaded into
//! `<data>/bucket-cache/logs/` (bounded, least recently used first out), and its
//! `lines` are read by range GETs, only the frames a query wants.
//!
//! [`LongTermLogs`] puts the local store and the bucket behind the `LogStorage`
//! seam: per tenant, the bucket answers only for the time before the oldest line
//! held locally (what local retention dropped), so no line is read twice. A bucket
//! that fails fails the query with a 503-class error, never a silent partial answer.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;

use crate::bucketstore::block::wait_on;
use crate::bucketstore::error::{BucketStoreError, Result};
use crate::log::record::LogBatch;
use crate::logs::LogStorage;
use crate::logs::segment::{LINES_FILE, LinesSource, META_FILE, Segment, SegmentMeta};
use crate::logs::store::{MAX_LINES_PER_QUERY, Selected};
use crate::model::{Labels, Matcher};
use crate::shipper::LOGS_PREFIX;
use crate::storage::StorageError;

/// One segment of the bucket: its meta from the listing, opened on first use.
struct BucketSegment {
    meta: SegmentMeta,
    prefix: ObjectPath,
    opened: Mutex<Option<Arc<Segment>>>,
    /// Bytes its downloaded files take in the cache (0 while not opened).
    cached_bytes: AtomicU64,
    /// A use counter's value at its last use (for eviction).
    last_used: AtomicU64,
}

/// The log segments of the bucket that belong to this ODIN.
pub struct BucketLogs {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    cache_dir: PathBuf,
    cache_bytes: u64,
    external_labels: BTreeMap<String, String>,
    /// By tenant, then window start.
    segments: RwLock<BTreeMap<String, BTreeMap<i64, Arc<BucketSegment>>>>,
    /// Segment folders found to be another's (other external labels) or unreadable:
    /// segments never change, so they are not read again.
    skipped: Mutex<HashSet<String>>,
    uses: AtomicU64,
}

/// What one listing found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSyncSummary {
    pub segments: usize,
    pub added: usize,
    pub dropped: usize,
    pub skipped: usize,
}

/// A bucket segment's `lines`, read by range.
struct BucketLines {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    path: ObjectPath,
}

impl LinesSource for BucketLines {
    fn read(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let (store, path, ranges) = (self.store.clone(), self.path.clone(), ranges.to_vec());
        let got = wait_on(&self.handle, async move {
            store.get_ranges(&path, &ranges).await
        })
        .map_err(std::io::Error::other)?;
        got.map_err(|e| std::io::Error::other(format!("read {}: {e}", self.path)))
    }
}

fn store_error(context: impl Into<String>) -> impl FnOnce(object_store::Error) -> BucketStoreError {
    let context = context.into();
    move |e| BucketStoreError::store(context, e)
}

impl BucketLogs {
    /// Reads `store`'s log segments shipped with `external_labels`; downloads go to
    /// `cache_dir` (emptied now: what a previous run left is fetched again when
    /// needed), at most `cache_bytes` of them.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        handle: Handle,
        cache_dir: &Path,
        cache_bytes: u64,
        external_labels: BTreeMap<String, String>,
    ) -> std::io::Result<Arc<Self>> {
        if cache_dir.exists() {
            std::fs::remove_dir_all(cache_dir)?;
        }
        std::fs::create_dir_all(cache_dir)?;
        Ok(Arc::new(Self {
            store,
            handle,
            cache_dir: cache_dir.to_path_buf(),
            cache_bytes,
            external_labels,
            segments: RwLock::new(BTreeMap::new()),
            skipped: Mutex::new(HashSet::new()),
            uses: AtomicU64::new(0),
        }))
    }

    /// Lists `logs/` and takes in new segments, drops vanished ones. A segment
    /// without meta.json is an upload in progress; one with other external labels
    /// or an unknown version is another's, skipped.
    pub async fn sync(&self) -> Result<LogSyncSummary> {
        let root = ObjectPath::from(LOGS_PREFIX);
        let tenants = self
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(store_error("list logs/"))?;
        let known: BTreeMap<String, Arc<BucketSegment>> = self
            .segments
            .read()
            .values()
            .flat_map(|s| s.values())
            .map(|s| (s.prefix.to_string(), s.clone()))
            .collect();
        let mut summary = LogSyncSummary::default();
        let mut next: BTreeMap<String, BTreeMap<i64, Arc<BucketSegment>>> = BTreeMap::new();
        for tenant_prefix in &tenants.common_prefixes {
            let listed = self
                .store
                .list_with_delimiter(Some(tenant_prefix))
                .await
                .map_err(store_error(format!("list {tenant_prefix}")))?;
            for prefix in listed.common_prefixes {
                if self.skipped.lock().contains(prefix.as_ref()) {
                    summary.skipped += 1;
                    continue;
                }
                let seg = match known.get(prefix.as_ref()) {
                    Some(s) => s.clone(),
                    None => match self.read_meta(&prefix).await? {
                        Some(meta) => {
                            summary.added += 1;
                            Arc::new(BucketSegment {
                                meta,
                                prefix,
                                opened: Mutex::new(None),
                                cached_bytes: AtomicU64::new(0),
                                last_used: AtomicU64::new(0),
                            })
                        }
                        None => {
                            summary.skipped += 1;
                            continue;
                        }
                    },
                };
                summary.segments += 1;
                next.entry(seg.meta.tenant.clone())
                    .or_default()
                    .insert(seg.meta.window_start, seg);
            }
        }
        let kept: HashSet<String> = next
            .values()
            .flat_map(|s| s.values())
            .map(|s| s.prefix.to_string())
            .collect();
        for (prefix, seg) in &known {
            if !kept.contains(prefix) {
                summary.dropped += 1;
                self.evict(seg);
            }
        }
        *self.segments.write() = next;
        Ok(summary)
    }

    /// The meta.json of the segment under `prefix`, when it is one of ours.
    async fn read_meta(&self, prefix: &ObjectPath) -> Result<Option<SegmentMeta>> {
        let path = prefix.clone().join(META_FILE);
        let got = match self.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(BucketStoreError::store(format!("read {path}"), e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(store_error(format!("read {path}")))?;
        let meta: SegmentMeta = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(segment = %prefix, error = %e, "bucket log segment's meta.json unreadable; skipped");
                self.skipped.lock().insert(prefix.to_string());
                return Ok(None);
            }
        };
        let ours = meta.external_labels == self.external_labels
            && prefix.as_ref().ends_with(&meta.ulid)
            && crate::logs::tenant::check_tenant_id(&meta.tenant).is_ok();
        if !ours {
            self.skipped.lock().insert(prefix.to_string());
        }
        Ok(ours.then_some(meta))
    }

    /// The bucket's segments of `tenant` overlapping `[start_ns, end_ns)`.
    fn overlapping(&self, tenant: &str, start_ns: i64, end_ns: i64) -> Vec<Arc<BucketSegment>> {
        self.segments
            .read()
            .get(tenant)
            .map(|s| {
                s.values()
                    .filter(|s| s.meta.max_time >= start_ns && s.meta.min_time < end_ns)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The oldest line of `tenant` in the bucket.
    pub fn oldest_ns(&self, tenant: &str) -> Option<i64> {
        self.segments
            .read()
            .get(tenant)
            .and_then(|s| s.values().map(|s| s.meta.min_time).min())
    }

    /// Segments listed, over every tenant.
    pub fn num_segments(&self) -> usize {
        self.segments.read().values().map(|s| s.len()).sum()
    }

    /// [`LogStore::select_within`](crate::logs::store::LogStore::select_within)
    /// over the bucket's segments. Blocks the calling thread on the bucket: call it
    /// from a query thread, never from an async task.
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        needles: &[String],
        budget: &mut usize,
    ) -> std::io::Result<Vec<Selected>> {
        let mut out = Vec::new();
        for seg in self.overlapping(tenant, start_ns, end_ns) {
            let opened = self.open(&seg)?;
            out.extend(opened.select(matchers, start_ns, end_ns, needles, budget)?);
        }
        Ok(out)
    }

    /// The label sets of `tenant`'s streams in the bucket with lines in
    /// `[start_ns, end_ns)` (from the stream tables: segments are opened).
    pub fn streams(
        &self,
        tenant: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> std::io::Result<Vec<Labels>> {
        let mut out = Vec::new();
        for seg in self.overlapping(tenant, start_ns, end_ns) {
            out.extend(self.open(&seg)?.stream_labels().cloned());
        }
        Ok(out)
    }

    /// The segment opened: from the cache, or downloaded (meta, stream table,
    /// index) into it, evicting the least recently used beyond the cache's bound.
    fn open(&self, seg: &Arc<BucketSegment>) -> std::io::Result<Arc<Segment>> {
        seg.last_used
            .store(self.uses.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        let mut opened = seg.opened.lock();
        if let Some(s) = &*opened {
            return Ok(s.clone());
        }
        let dir = self.cache_dir.join(&seg.meta.tenant).join(&seg.meta.ulid);
        let bytes = self.download(seg, &dir)?;
        let lines = Arc::new(BucketLines {
            store: self.store.clone(),
            handle: self.handle.clone(),
            path: seg.prefix.clone().join(LINES_FILE),
        });
        let segment = match Segment::open_with_lines(&dir, lines) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(std::io::Error::other(format!(
                    "bucket log segment {}: {e}",
                    seg.prefix
                )));
            }
        };
        seg.cached_bytes.store(bytes, Ordering::Relaxed);
        *opened = Some(segment.clone());
        drop(opened);
        self.shrink_cache(seg);
        Ok(segment)
    }

    /// Downloads every file of the segment but `lines` into `dir`; returns the bytes.
    fn download(&self, seg: &BucketSegment, dir: &Path) -> std::io::Result<u64> {
        let staged = dir.with_extension("download");
        let (store, prefix, to) = (self.store.clone(), seg.prefix.clone(), staged.clone());
        let fetched = wait_on(&self.handle, async move {
            let mut listed = store.list(Some(&prefix));
            let mut objects = Vec::new();
            while let Some(o) = futures_util::StreamExt::next(&mut listed).await {
                objects.push(o.map_err(|e| std::io::Error::other(format!("list {prefix}: {e}")))?);
            }
            let mut total = 0u64;
            for o in objects {
                let Some(rel) = o.location.prefix_match(&prefix) else {
                    continue;
                };
                let rel: Vec<String> = rel.map(|p| p.as_ref().to_string()).collect();
                if rel.len() > 2 || rel.first().map(String::as_str) == Some(LINES_FILE) {
                    continue;
                }
                let got = store
                    .get(&o.location)
                    .await
                    .map_err(|e| std::io::Error::other(format!("read {}: {e}", o.location)))?;
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| std::io::Error::other(format!("read {}: {e}", o.location)))?;
                let path = rel.iter().fold(to.clone(), |p, part| p.join(part));
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::write(&path, &bytes).await?;
                total += bytes.len() as u64;
            }
            Ok::<u64, std::io::Error>(total)
        });
        let result = fetched
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .and_then(|total| {
                if dir.exists() {
                    std::fs::remove_dir_all(dir)?;
                }
                std::fs::rename(&staged, dir)?;
                Ok(total)
            });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
        result
    }

    /// Evicts the least recently used opened segments (never `keep`) while the
    /// cache holds more than its bound.
    fn shrink_cache(&self, keep: &Arc<BucketSegment>) {
        let all: Vec<Arc<BucketSegment>> = self
            .segments
            .read()
            .values()
            .flat_map(|s| s.values().cloned())
            .collect();
        let mut total: u64 = all
            .iter()
            .map(|s| s.cached_bytes.load(Ordering::Relaxed))
            .sum();
        if total <= self.cache_bytes {
            return;
        }
        let mut by_age: Vec<&Arc<BucketSegment>> = all
            .iter()
            .filter(|s| !Arc::ptr_eq(s, keep) && s.cached_bytes.load(Ordering::Relaxed) > 0)
            .collect();
        by_age.sort_by_key(|s| s.last_used.load(Ordering::Relaxed));
        for s in by_age {
            if total <= self.cache_bytes {
                break;
            }
            total = total.saturating_sub(s.cached_bytes.load(Ordering::Relaxed));
            self.evict(s);
        }
    }

    /// Closes a segment and removes its downloaded files (a query still reading it
    /// keeps its open files).
    fn evict(&self, seg: &BucketSegment) {
        // Under the lock: a query opening the segment again waits until the old
        // files are gone before it downloads into the same place.
        let mut opened = seg.opened.lock();
        seg.cached_bytes.store(0, Ordering::Relaxed);
        if let Some(s) = opened.take()
            && let Err(e) = std::fs::remove_dir_all(&s.dir)
        {
            tracing::warn!(dir = %s.dir.display(), error = %e, "cannot remove a cached bucket log segment");
        }
    }
}

/// The local log store and the bucket behind one [`LogStorage`].
pub struct LongTermLogs {
    local: Arc<dyn LogStorage>,
    bucket: Arc<BucketLogs>,
}

impl LongTermLogs {
    pub fn new(local: Arc<dyn LogStorage>, bucket: Arc<BucketLogs>) -> Self {
        Self { local, bucket }
    }

    /// Where the bucket stops answering for `tenant`: its oldest local line.
    fn cut(&self, tenant: &str) -> i64 {
        self.local.oldest_ns(tenant).unwrap_or(i64::MAX)
    }
}

fn bucket_error(e: std::io::Error) -> StorageError {
    match e.kind() {
        std::io::ErrorKind::InvalidInput => StorageError::BadData(e.to_string()),
        _ => StorageError::Unavailable(format!("read log segments from the bucket: {e}")),
    }
}

impl LogStorage for LongTermLogs {
    fn push(&self, batch: LogBatch) -> crate::logs::Pushed {
        self.local.push(batch)
    }

    fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        needles: &[String],
    ) -> crate::storage::Result<Vec<Selected>> {
        // The cut read before and after the local read: retention deleting the
        // oldest local segment in between would move it and have its lines come from
        // both sides. Read again then.
        let mut tries = 0;
        let (mut found, cut) = loop {
            let before = self.cut(tenant);
            let found = self
                .local
                .select(tenant, matchers, start_ns, end_ns, needles)?;
            let after = self.cut(tenant);
            tries += 1;
            // An earlier cut (older lines applied meanwhile) duplicates nothing.
            if after <= before || tries == 3 {
                break (found, before.min(after));
            }
        };
        if start_ns >= cut {
            return Ok(found);
        }
        let held: usize = found
            .iter()
            .flat_map(|s| s.chunks.iter())
            .map(|c| c.len())
            .sum();
        let mut budget = MAX_LINES_PER_QUERY.saturating_sub(held);
        let older = self
            .bucket
            .select(
                tenant,
                matchers,
                start_ns,
                end_ns.min(cut),
                needles,
                &mut budget,
            )
            .map_err(bucket_error)?;
        let mut by_labels: BTreeMap<Labels, Vec<Arc<[crate::log::record::LogLine]>>> =
            found.drain(..).map(|s| (s.labels, s.chunks)).collect();
        // Frames may hold lines past the cut, which the local store answers.
        for sel in older {
            let chunks = by_labels.entry(sel.labels).or_default();
            for chunk in sel.chunks {
                if chunk.iter().all(|l| l.ts_ns < cut) {
                    chunks.push(chunk);
                } else {
                    let kept: Vec<_> = chunk.iter().filter(|l| l.ts_ns < cut).cloned().collect();
                    if !kept.is_empty() {
                        chunks.push(kept.into());
                    }
                }
            }
        }
        Ok(by_labels
            .into_iter()
            .filter(|(_, chunks)| !chunks.is_empty())
            .map(|(labels, chunks)| Selected { labels, chunks })
            .collect())
    }

    fn streams(
        &self,
        tenant: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> crate::storage::Result<Vec<Labels>> {
        let mut out = self.local.streams(tenant, start_ns, end_ns)?;
        let cut = self.cut(tenant);
        if start_ns < cut {
            out.extend(
                self.bucket
                    .streams(tenant, start_ns, end_ns.min(cut))
                    .map_err(bucket_error)?,
            );
            out.sort();
            out.dedup();
        }
        Ok(out)
    }

    fn active_streams(&self, tenant: &str) -> usize {
        self.local.active_streams(tenant)
    }

    fn is_active_stream(&self, tenant: &str, labels: &Labels) -> bool {
        self.local.is_active_stream(tenant, labels)
    }

    fn positions(&self, prefix: &str) -> BTreeMap<String, String> {
        self.local.positions(prefix)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LogBatch>> {
        self.local.subscribe()
    }

    fn oldest_ns(&self, tenant: &str) -> Option<i64> {
        let local = self.local.oldest_ns(tenant);
        let bucket = self.bucket.oldest_ns(tenant);
        local.into_iter().chain(bucket).min()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::log::record::{LogLine, LogStream};
    use crate::logs::store::WINDOW_NS;
    use crate::shipper::config::FilesystemConfig;
    use crate::shipper::{
        ClientTuning, ObjectStoreConfig, Shipper, ShipperMetrics, ShipperOptions,
    };
    use crate::tsdb::{Db, DbOptions};

    const S: i64 = 1_000_000_000;

    fn batch(tenant: &str, lines: impl IntoIterator<Item = (i64, String)>) -> LogBatch {
        LogBatch {
            tenant: tenant.into(),
            positions: Vec::new(),
            streams: vec![LogStream {
                labels: Labels::from_pairs([("app", "a")]),
                lines: lines
                    .into_iter()
                    .map(|(ts_ns, text)| LogLine {
                        ts_ns,
                        text,
                        metadata: Vec::new(),
                    })
                    .collect(),
            }],
        }
    }

    use crate::logs::store::texts_by_time as texts;

    #[test]
    fn segments_gone_from_local_disk_are_read_from_the_bucket() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, bucket) = (tmp.path().join("data"), tmp.path().join("bucket"));
        std::fs::create_dir_all(&bucket).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = ObjectStoreConfig::Filesystem(FilesystemConfig {
            directory: bucket.display().to_string(),
        })
        .build(ClientTuning::default())
        .unwrap();
        let labels = BTreeMap::from([("replica".to_string(), "a".to_string())]);
        let shipper = Shipper::new(
            &data,
            store.clone(),
            labels.clone(),
            ShipperOptions::default(),
            ShipperMetrics::default(),
        )
        .unwrap();
        let opts = DbOptions {
            logs_retention_ms: Some(24 * 3_600_000),
            shipping: Some(shipper.hook()),
            ..DbOptions::default()
        };
        let db = Db::open_for_tests(&data, opts, &Default::default());
        // Lines of 2023: past retention as soon as they are written out.
        let t0 = 1_700_000_000 * S / WINDOW_NS * WINDOW_NS;
        let written: Vec<(i64, String)> = (0..500)
            .map(|i| {
                let text = if i == 321 {
                    "GPU 0: Xid 48 double bit ECC error".to_string()
                } else {
                    format!("line {i} {}", "y".repeat(30))
                };
                (t0 + i * S, text)
            })
            .collect();
        rt.block_on(db.push(batch("t", written.clone()))).unwrap();
        let later = t0 + 3 * 3600 * S;
        rt.block_on(db.push(batch("t", [(later, "later".to_string())])))
            .unwrap();
        // Written out; not deleted while it has not shipped.
        db.compact().unwrap();
        assert_eq!(db.log_segments().len(), 1);
        db.compact().unwrap();
        assert_eq!(db.log_segments().len(), 1, "retention waits for the upload");
        assert_eq!(rt.block_on(shipper.sync(&db)).unwrap(), 1);
        let ulid = db.log_segments()[0].meta.ulid.clone();
        let meta: SegmentMeta = serde_json::from_slice(
            &std::fs::read(bucket.join("logs/t").join(&ulid).join("meta.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta.external_labels, labels);
        // Shipped and past retention: gone from local disk.
        db.compact().unwrap();
        assert!(db.log_segments().is_empty());
        assert_eq!(
            texts(&LogStorage::select(&db, "t", &[], i64::MIN, i64::MAX, &[]).unwrap()),
            ["later"]
        );

        let cache = tmp.path().join("cache");
        let from_bucket =
            BucketLogs::new(store.clone(), rt.handle().clone(), &cache, 1 << 30, labels).unwrap();
        let synced = rt.block_on(from_bucket.sync()).unwrap();
        assert_eq!((synced.segments, synced.added), (1, 1));
        let long = LongTermLogs::new(Arc::new(db.clone()), from_bucket.clone());
        let mut want: Vec<String> = written.iter().map(|(_, t)| t.clone()).collect();
        want.push("later".into());
        assert_eq!(
            texts(&long.select("t", &[], i64::MIN, i64::MAX, &[]).unwrap()),
            want
        );
        assert_eq!(long.oldest_ns("t"), Some(t0));
        assert_eq!(long.streams("t", i64::MIN, i64::MAX).unwrap().len(), 1);
        // The index is downloaded and narrows; only the frames wanted are read.
        let hit = long
            .select("t", &[], i64::MIN, i64::MAX, &["Xid 48".to_string()])
            .unwrap();
        assert_eq!(
            texts(&hit)
                .into_iter()
                .filter(|t| t.contains("Xid 48"))
                .count(),
            1
        );
        assert!(texts(&hit).len() < 10, "{}", texts(&hit).len());
        // Another tenant sees none of it.
        assert!(
            long.select("u", &[], i64::MIN, i64::MAX, &[])
                .unwrap()
                .is_empty()
        );
        // Another ODIN's bucket segments are not this one's history.
        let other = BucketLogs::new(
            store.clone(),
            rt.handle().clone(),
            &tmp.path().join("cache2"),
            1 << 30,
            BTreeMap::from([("replica".to_string(), "b".to_string())]),
        )
        .unwrap();
        assert_eq!(rt.block_on(other.sync()).unwrap().skipped, 1);
        // The bucket losing the lines fails the query, it does not shrink it.
        std::fs::remove_file(bucket.join("logs/t").join(&ulid).join("lines")).unwrap();
        let err = long
            .select("t", &[], i64::MIN, i64::MAX, &[])
            .err()
            .unwrap();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        // A segment gone from the bucket is dropped, with its cached files.
        std::fs::remove_dir_all(bucket.join("logs/t").join(&ulid)).unwrap();
        let synced = rt.block_on(from_bucket.sync()).unwrap();
        assert_eq!((synced.segments, synced.dropped), (0, 1));
        assert!(!cache.join("t").join(&ulid).exists());
        assert_eq!(
            texts(&long.select("t", &[], i64::MIN, i64::MAX, &[]).unwrap()),
            ["later"]
        );
    }
}
