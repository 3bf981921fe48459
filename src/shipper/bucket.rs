//! Reading a Thanos-layout bucket: what `odin tools bucket ls | inspect | verify` do.
//! Read-only; nothing here writes to the bucket.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::shipper::error::{Result, ShipperError};
use crate::shipper::thanos::{ThanosMeta, thanos_of};
use crate::tsdb::block::meta::META_FILENAME;
use crate::tsdb::block::{Block, BlockMeta};

/// One `<ULID>/` directory of the bucket.
#[derive(Debug, Clone)]
pub struct BucketBlock {
    pub ulid: String,
    /// The parsed meta.json; `None` when it is missing (an upload in progress or an
    /// interrupted one) or does not parse (see `meta_error`).
    pub meta: Option<BlockMeta>,
    pub meta_error: Option<String>,
    /// Objects under the directory, by path relative to it, with their sizes.
    pub objects: BTreeMap<String, u64>,
}

impl BucketBlock {
    pub fn size_bytes(&self) -> u64 {
        self.objects.values().sum()
    }

    pub fn thanos(&self) -> Option<ThanosMeta> {
        self.meta.as_ref().and_then(thanos_of)
    }
}

/// The names of the bucket's block directories (top-level names that are ULIDs),
/// oldest first.
pub async fn list_block_ids(
    store: &Arc<dyn ObjectStore>,
) -> std::result::Result<Vec<String>, object_store::Error> {
    let top = store.list_with_delimiter(None).await?;
    let mut ids: Vec<String> = top
        .common_prefixes
        .iter()
        .filter_map(|p| p.parts().next_back().map(|s| s.as_ref().to_string()))
        .filter(|s| ulid::Ulid::from_string(s).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// One log segment under `logs/<tenant>/<ULID>/`.
#[derive(Debug, Clone)]
pub struct BucketLogSegment {
    /// `<tenant>/<ULID>` as listed.
    pub name: String,
    /// The parsed meta.json; `None` when missing or unreadable (see `meta_error`).
    pub meta: Option<crate::logs::segment::SegmentMeta>,
    pub meta_error: Option<String>,
    pub size_bytes: u64,
}

/// Every log segment of the bucket, by tenant and ULID.
pub async fn list_log_segments(store: &Arc<dyn ObjectStore>) -> Result<Vec<BucketLogSegment>> {
    let root = ObjectPath::from(crate::shipper::LOGS_PREFIX);
    // By `<tenant>/<ULID>`: the segment's folder as listed, and its bytes.
    let mut found: BTreeMap<String, (ObjectPath, u64)> = BTreeMap::new();
    let mut listed = store.list(Some(&root));
    while let Some(o) = listed.next().await {
        let o = o.map_err(|e| ShipperError::store("list logs/", e))?;
        let parts: Vec<String> = o
            .location
            .prefix_match(&root)
            .map(|p| p.map(|part| part.as_ref().to_string()).collect())
            .unwrap_or_default();
        if let [tenant, ulid, _, ..] = parts.as_slice() {
            // The folder from the listed parts themselves (already encoded).
            let folder: ObjectPath = o.location.parts().take(3).collect();
            found
                .entry(format!("{tenant}/{ulid}"))
                .or_insert((folder, 0))
                .1 += o.size;
        }
    }
    let mut out = Vec::with_capacity(found.len());
    for (name, (folder, size_bytes)) in found {
        let path = folder.join(META_FILENAME);
        let (meta, meta_error) = match store.get(&path).await {
            Ok(got) => match got.bytes().await {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(m) => (Some(m), None),
                    Err(e) => (None, Some(format!("meta.json: {e}"))),
                },
                Err(e) => (None, Some(format!("meta.json: {e}"))),
            },
            Err(object_store::Error::NotFound { .. }) => {
                (None, Some("incomplete: no meta.json".to_string()))
            }
            Err(e) => return Err(ShipperError::store(format!("read {path}"), e)),
        };
        out.push(BucketLogSegment {
            name,
            meta,
            meta_error,
            size_bytes,
        });
    }
    Ok(out)
}

/// Every block directory of the bucket (top-level names that are ULIDs), oldest
/// first by ULID.
pub async fn list_blocks(store: &Arc<dyn ObjectStore>) -> Result<Vec<BucketBlock>> {
    let ids = list_block_ids(store)
        .await
        .map_err(|e| ShipperError::store("list bucket", e))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(read_block(store, &id).await?);
    }
    Ok(out)
}

/// One block directory: its objects and meta.json.
pub async fn read_block(store: &Arc<dyn ObjectStore>, id: &str) -> Result<BucketBlock> {
    let prefix = ObjectPath::from(id);
    let mut objects = BTreeMap::new();
    let mut listing = store.list(Some(&prefix));
    while let Some(o) = listing.next().await {
        let o = o.map_err(|e| ShipperError::store(format!("list {id}/"), e))?;
        let rel: Vec<String> = o
            .location
            .prefix_match(&prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
            .unwrap_or_default();
        objects.insert(rel.join("/"), o.size);
    }
    let (mut meta, mut meta_error) = (None, None);
    if objects.contains_key(META_FILENAME) {
        let path = ObjectPath::from(format!("{id}/{META_FILENAME}"));
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| ShipperError::store(format!("get {path}"), e))?
            .bytes()
            .await
            .map_err(|e| ShipperError::store(format!("read {path}"), e))?;
        match serde_json::from_slice::<BlockMeta>(&bytes) {
            Ok(m) => meta = Some(m),
            Err(e) => meta_error = Some(format!("meta.json does not parse: {e}")),
        }
    }
    Ok(BucketBlock {
        ulid: id.to_string(),
        meta,
        meta_error,
        objects,
    })
}

/// Downloads the block's files into `dir/<ULID>` (meta.json as stored).
pub async fn download_block(
    store: &Arc<dyn ObjectStore>,
    block: &BucketBlock,
    dir: &Path,
) -> Result<std::path::PathBuf> {
    let root = dir.join(&block.ulid);
    for rel in block.objects.keys() {
        let path = ObjectPath::from(format!("{}/{rel}", block.ulid));
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| ShipperError::store(format!("get {path}"), e))?
            .bytes()
            .await
            .map_err(|e| ShipperError::store(format!("read {path}"), e))?;
        let to = root.join(rel);
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ShipperError::io(format!("create {}", parent.display()), e))?;
        }
        tokio::fs::write(&to, &bytes)
            .await
            .map_err(|e| ShipperError::io(format!("write {}", to.display()), e))?;
    }
    Ok(root)
}

/// Checks one block: meta.json present and parsing, with a `thanos` section; every
/// file it lists present with its size; the block opens (index and chunk headers)
/// and every series and chunk in its index reads. Returns the problems found.
pub async fn verify_block(
    store: &Arc<dyn ObjectStore>,
    block: &BucketBlock,
    scratch: &Path,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let Some(meta) = &block.meta else {
        problems.push(block.meta_error.clone().unwrap_or_else(|| {
            "incomplete: no meta.json (upload in progress or interrupted)".into()
        }));
        return Ok(problems);
    };
    if meta.ulid.to_string() != block.ulid {
        problems.push(format!("meta.json names block {}", meta.ulid));
    }
    match block.thanos() {
        None => problems.push("meta.json has no thanos section".into()),
        Some(t) => {
            if t.files.is_empty() {
                problems.push("thanos.files is empty".into());
            }
            for f in &t.files {
                match block.objects.get(&f.rel_path) {
                    None => problems.push(format!("{} is missing", f.rel_path)),
                    Some(&size) if f.size_bytes > 0 && size != f.size_bytes as u64 => problems
                        .push(format!(
                            "{} has {size} bytes, meta.json says {}",
                            f.rel_path, f.size_bytes
                        )),
                    Some(_) => {}
                }
            }
        }
    }
    if !block.objects.contains_key("index") {
        problems.push("index is missing".into());
        return Ok(problems);
    }
    let dir = download_block(store, block, scratch).await?;
    let read = tokio::task::spawn_blocking(move || read_all(&dir))
        .await
        .map_err(|e| ShipperError::Corrupt(format!("verify task: {e}")))?;
    if let Err(e) = read {
        problems.push(e);
    }
    Ok(problems)
}

/// Opens a downloaded block and reads every series and chunk its index names.
fn read_all(dir: &Path) -> std::result::Result<(u64, u64), String> {
    let block = Block::open(dir).map_err(|e| format!("block does not open: {e}"))?;
    let refs = block
        .index()
        .all_postings()
        .map_err(|e| format!("index postings: {e}"))?;
    let (mut series, mut chunks) = (0u64, 0u64);
    for r in refs {
        let (_labels, metas) = block
            .index()
            .series(r)
            .map_err(|e| format!("index series {r}: {e}"))?;
        for c in metas {
            block
                .chunks()
                .chunk(c.chunk_ref)
                .map_err(|e| format!("chunk {} of series {r}: {e}", c.chunk_ref))?;
            chunks += 1;
        }
        series += 1;
    }
    Ok((series, chunks))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn partial_block_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        store
            .put(
                &ObjectPath::from("01H8XGJWBWBA1RCK2ZQFWTR3ZR/index"),
                vec![1u8, 2, 3].into(),
            )
            .await
            .unwrap();
        store
            .put(&ObjectPath::from("not-a-block/x"), vec![1u8].into())
            .await
            .unwrap();
        let blocks = list_blocks(&store).await.unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].objects.get("index"), Some(&3));
        let scratch = tempfile::tempdir().unwrap();
        let problems = verify_block(&store, &blocks[0], scratch.path())
            .await
            .unwrap();
        assert!(problems[0].contains("no meta.json"), "{problems:?}");
    }
}
