//! One block that lives in the bucket, read as a Thanos store gateway reads it.
//!
//! At open, the index's table of contents, symbol table and postings offset table
//! are fetched by range GETs and decoded into memory: the "index-header" (Thanos
//! keeps the same parts in its `index-header` file). Everything else is fetched on
//! demand, by range GETs of the `index` and `chunks/NNNNNN` objects:
//!
//! * postings lists: their extent is exact (a list ends where the next one in the
//!   postings offset table starts);
//! * series entries: a series' entry starts at ID × 16; its length is read from the
//!   entry, so a range is first *estimated* ([`SERIES_ESTIMATE_BYTES`]) and, for the
//!   rare entry that is longer, fetched again exactly (as Thanos does);
//! * chunks: the same, with [`CHUNK_ESTIMATE_BYTES`].
//!
//! Entries needed together (the series of one batch, their chunks) are looked up in
//! the [`RangeCache`] first; the misses are sorted, ranges less than
//! [`COALESCE_GAP_BYTES`] apart merged ([`coalesce`]), and the merged ranges fetched
//! concurrently. The decoding is the local reader's own (`decode_series`,
//! `decode_postings`, `decode_chunk` over a slice), so both paths read the format
//! the same way; the local mmap path is unchanged.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use arcstr::ArcStr;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tokio::runtime::Handle;

use super::cache::{CacheKey, Part, RangeCache, coalesce};
use super::error::{BucketStoreError, Result};
use crate::model::Labels;
use crate::tsdb::block::BlockMeta;
use crate::tsdb::block::chunks::{SEGMENT_HEADER_SIZE, decode_chunk};
use crate::tsdb::index::encoding::read_uvarint;
use crate::tsdb::index::{
    ChunkMeta, INDEX_TOC_LEN, IndexReader, SERIES_ALIGNMENT, decode_postings, decode_series,
    parse_toc,
};
use crate::tsdb::matchers::PostingsIndex;

/// First guess of a series entry's length; longer entries are fetched again.
pub const SERIES_ESTIMATE_BYTES: u64 = 4 * 1024;
/// First guess of a chunk's length (an XOR chunk of 120 samples is a few hundred
/// bytes); longer chunks are fetched again.
pub const CHUNK_ESTIMATE_BYTES: u64 = 2 * 1024;
/// Ranges closer than this are read in one GET.
pub const COALESCE_GAP_BYTES: u64 = 512 * 1024;
/// GETs of one batch in flight at once.
const MAX_CONCURRENT_GETS: usize = 16;

/// Runs `fut` on `handle`'s runtime and waits for it on this thread. Callable from
/// any thread that is not driving that runtime's tasks itself (the query threads and
/// the blocking pool): the future runs on the runtime, this thread only waits on a
/// channel, so it never nests a `block_on` inside an async task.
pub(crate) fn wait_on<T: Send + 'static>(
    handle: &Handle,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| BucketStoreError::ShuttingDown)
}

/// One object of the block: its path and size.
#[derive(Debug, Clone)]
struct Object {
    path: ObjectPath,
    size: u64,
}

/// A bucket block opened for reading: the index-header in memory, the rest on demand.
pub struct BucketBlockReader {
    meta: BlockMeta,
    key: u128,
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    cache: Arc<RangeCache>,
    /// For messages: `bucket:<ULID>/index`.
    name: PathBuf,
    index: Object,
    /// `chunks/000001`, … in name order: segment `i` of a chunk ref is `segments[i]`.
    segments: Vec<Object>,
    symbols: Vec<ArcStr>,
    /// Label name -> (value, postings list offset), values sorted.
    postings: BTreeMap<ArcStr, Vec<(ArcStr, u64)>>,
    all_postings: Option<u64>,
    /// Every postings list offset, sorted, and the end of the postings section: a
    /// list ends where the next begins.
    postings_starts: Vec<u64>,
    postings_end: u64,
    /// Where the series section ends (the next section's offset).
    series_end: u64,
    /// Bytes of the index-header fetched at open.
    header_bytes: u64,
}

impl std::fmt::Debug for BucketBlockReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketBlockReader")
            .field("ulid", &self.meta.ulid)
            .field("index_bytes", &self.index.size)
            .field("segments", &self.segments.len())
            .finish()
    }
}

async fn get_range(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    range: Range<u64>,
) -> Result<Bytes> {
    use object_store::ObjectStoreExt;
    store
        .get_range(path, range.clone())
        .await
        .map_err(|e| BucketStoreError::store(format!("get {path} [{range:?})"), e))
}

impl BucketBlockReader {
    /// Opens block `meta` whose objects (paths relative to the block directory, with
    /// sizes) are `objects`: fetches and decodes the index-header.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        handle: Handle,
        cache: Arc<RangeCache>,
        meta: BlockMeta,
        objects: &BTreeMap<String, u64>,
    ) -> Result<Self> {
        let ulid = meta.ulid.to_string();
        let name = PathBuf::from(format!("bucket:{ulid}/index"));
        let corrupt = |what: String| BucketStoreError::Corrupt(format!("{ulid}: {what}"));
        let index_size = *objects
            .get("index")
            .ok_or_else(|| corrupt("no index object".into()))?;
        let index = Object {
            path: ObjectPath::from(format!("{ulid}/index")),
            size: index_size,
        };
        let segments: Vec<Object> = objects
            .iter()
            .filter_map(|(rel, size)| {
                let seg = rel.strip_prefix("chunks/")?;
                (!seg.is_empty() && seg.parse::<u64>().is_ok()).then(|| Object {
                    path: ObjectPath::from(format!("{ulid}/{rel}")),
                    size: *size,
                })
            })
            .collect();
        let toc_len = INDEX_TOC_LEN as u64;
        if index_size < toc_len + 5 {
            return Err(corrupt(format!("index of {index_size} bytes is too short")));
        }
        let toc_off = index_size - toc_len;
        let toc_bytes = get_range(&store, &index.path, toc_off..index_size).await?;
        let toc = parse_toc(&name, &toc_bytes, toc_off)?;
        // A section ends where the next non-empty one starts (the TOC for the last).
        let section_end = |off: u64| {
            toc.iter()
                .copied()
                .filter(|&o| o > off)
                .min()
                .unwrap_or(toc_off)
        };
        let mut header_bytes = toc_len;
        let symbols = if toc[0] == 0 {
            Vec::new()
        } else {
            let b = get_range(&store, &index.path, toc[0]..section_end(toc[0])).await?;
            header_bytes += b.len() as u64;
            IndexReader::read_symbols(&name, &b, 0)?
        };
        let (postings, all_postings) = if toc[5] == 0 {
            (BTreeMap::new(), None)
        } else {
            let b = get_range(&store, &index.path, toc[5]..toc_off).await?;
            header_bytes += b.len() as u64;
            IndexReader::read_postings_table(&name, &b, 0, &symbols)?
        };
        let mut postings_starts: Vec<u64> = postings
            .values()
            .flat_map(|vs| vs.iter().map(|(_, o)| *o))
            .chain(all_postings)
            .collect();
        postings_starts.sort_unstable();
        let postings_end = if toc[5] == 0 { toc_off } else { toc[5] };
        let series_end = section_end(toc[1]);
        Ok(Self {
            key: meta.ulid.0,
            meta,
            store,
            handle,
            cache,
            name,
            index,
            segments,
            symbols,
            postings,
            all_postings,
            postings_starts,
            postings_end,
            series_end,
            header_bytes,
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Bytes of index-header held in memory for this block.
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> BucketStoreError {
        BucketStoreError::Corrupt(format!("{}: {what}", self.meta.ulid))
    }

    /// The entries `(key offset, object, estimated range)` of one part, from the
    /// cache or the bucket, keyed by offset. Misses are coalesced per object and
    /// fetched concurrently; an entry longer than its estimate is fetched again.
    fn entries(
        &self,
        part: Part,
        wanted: &[(u64, usize, Range<u64>)],
    ) -> Result<HashMap<u64, Bytes>> {
        let keys: Vec<CacheKey> = wanted
            .iter()
            .map(|(off, _, _)| CacheKey {
                block: self.key,
                part,
                offset: *off,
            })
            .collect();
        let cached = self.cache.get_many(&keys);
        let mut out: HashMap<u64, Bytes> = HashMap::with_capacity(wanted.len());
        // object -> (key offset, range) of the misses
        let mut misses: BTreeMap<usize, Vec<(u64, Range<u64>)>> = BTreeMap::new();
        for ((off, obj, range), hit) in wanted.iter().zip(cached) {
            match hit {
                Some(b) => {
                    out.insert(*off, b);
                }
                None => misses.entry(*obj).or_default().push((*off, range.clone())),
            }
        }
        if misses.is_empty() {
            return Ok(out);
        }
        // Per object: the misses sorted by start and the merged ranges that cover them.
        let mut gets: Vec<(usize, Range<u64>)> = Vec::new();
        for (obj, list) in misses.iter_mut() {
            list.sort_by_key(|(_, r)| r.start);
            let ranges: Vec<Range<u64>> = list.iter().map(|(_, r)| r.clone()).collect();
            gets.extend(
                coalesce(&ranges, COALESCE_GAP_BYTES)
                    .into_iter()
                    .map(|r| (*obj, r)),
            );
        }
        let fetched = self.fetch(&gets)?;
        let mut to_cache = Vec::new();
        // Gets are in the misses' order (object, then start): walk both together.
        let mut g = 0;
        for (obj, list) in &misses {
            for (off, range) in list {
                while gets
                    .get(g)
                    .is_some_and(|(o, r)| o != obj || r.end <= range.start)
                {
                    g += 1;
                }
                let (Some((_, got_range)), Some(buf)) = (gets.get(g), fetched.get(g)) else {
                    return Err(self.corrupt(format!("no read covers offset {off}")));
                };
                let at = (range.start - got_range.start) as usize;
                let avail = buf.get(at..).unwrap_or(&[]);
                let len = self.entry_len(part, avail, range.start)?;
                let entry = if len as usize <= avail.len() {
                    Bytes::copy_from_slice(&avail[..len as usize])
                } else {
                    // Longer than estimated: fetch exactly.
                    // `len` comes from the object: a corrupt one must not overflow.
                    let exact = range.start..range.start.saturating_add(len);
                    let mut again = self.fetch(&[(*obj, exact)])?;
                    again.pop().unwrap_or_default()
                };
                to_cache.push((
                    CacheKey {
                        block: self.key,
                        part,
                        offset: *off,
                    },
                    entry.clone(),
                ));
                out.insert(*off, entry);
            }
        }
        self.cache.insert_many(to_cache);
        Ok(out)
    }

    /// The full length of the entry of `part` at the start of `b` (file offset
    /// `file_off`), from its length field.
    fn entry_len(&self, part: Part, b: &[u8], file_off: u64) -> Result<u64> {
        let bad = |e: String| self.corrupt(format!("{part:?} at offset {file_off}: {e}"));
        match part {
            Part::Postings => {
                let l = b.get(..4).ok_or_else(|| bad("truncated length".into()))?;
                Ok(4 + u64::from(u32::from_be_bytes([l[0], l[1], l[2], l[3]])) + 4)
            }
            Part::Series => {
                let (len, n) = read_uvarint(b).map_err(|e| bad(e.to_string()))?;
                Ok((n as u64).saturating_add(len).saturating_add(4))
            }
            Part::Chunk => {
                let (len, n) = read_uvarint(b).map_err(|e| bad(e.to_string()))?;
                Ok((n as u64 + 1).saturating_add(len).saturating_add(4))
            }
        }
    }

    /// Range GETs of `(object, range)`, concurrently; results in the same order.
    fn fetch(&self, gets: &[(usize, Range<u64>)]) -> Result<Vec<Bytes>> {
        let mut jobs = Vec::with_capacity(gets.len());
        for (obj, r) in gets {
            let o = if *obj == 0 {
                &self.index
            } else {
                self.segments
                    .get(obj - 1)
                    .ok_or_else(|| self.corrupt(format!("no chunk segment {}", obj - 1)))?
            };
            let end = r.end.min(o.size);
            if r.start >= end {
                return Err(
                    self.corrupt(format!("range {r:?} beyond {} of {} bytes", o.path, o.size))
                );
            }
            jobs.push((o.path.clone(), r.start..end));
        }
        let store = self.store.clone();
        wait_on(&self.handle, async move {
            use futures_util::StreamExt;
            let results: Vec<Result<Bytes>> = futures_util::stream::iter(jobs)
                .map(|(path, r)| {
                    let store = store.clone();
                    async move { get_range(&store, &path, r).await }
                })
                .buffered(MAX_CONCURRENT_GETS)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<Bytes>>>()
        })?
    }

    /// Postings lists at the given offsets, fetched together.
    fn postings_at(&self, offsets: &[u64]) -> Result<Vec<Vec<u64>>> {
        let wanted: Vec<(u64, usize, Range<u64>)> = offsets
            .iter()
            .map(|&off| {
                let i = self.postings_starts.partition_point(|&s| s <= off);
                let end = self
                    .postings_starts
                    .get(i)
                    .copied()
                    .unwrap_or(self.postings_end);
                (off, 0, off..end.max(off + 8))
            })
            .collect();
        let got = self.entries(Part::Postings, &wanted)?;
        offsets
            .iter()
            .map(|off| {
                let b = got
                    .get(off)
                    .ok_or_else(|| self.corrupt(format!("postings at {off} not read")))?;
                Ok(decode_postings(&self.name, b, 0, *off)?)
            })
            .collect()
    }

    /// Labels and chunk metas of series `ids` (sorted), fetched together.
    pub fn series(&self, ids: &[u64]) -> Result<Vec<(Labels, Vec<ChunkMeta>)>> {
        let mut wanted = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            let off = id
                .checked_mul(SERIES_ALIGNMENT)
                .filter(|&o| o < self.series_end)
                .ok_or_else(|| self.corrupt(format!("series {id} beyond the series section")))?;
            // The next requested entry bounds this one's estimate.
            let next = ids
                .get(i + 1)
                .map(|n| n.saturating_mul(SERIES_ALIGNMENT))
                .unwrap_or(u64::MAX);
            let end = (off + SERIES_ESTIMATE_BYTES).min(next).min(self.series_end);
            wanted.push((off, 0, off..end.max(off + 1)));
        }
        let got = self.entries(Part::Series, &wanted)?;
        ids.iter()
            .map(|&id| {
                let off = id * SERIES_ALIGNMENT;
                let b = got
                    .get(&off)
                    .ok_or_else(|| self.corrupt(format!("series {id} not read")))?;
                Ok(decode_series(&self.name, &self.symbols, id, b, 0)?)
            })
            .collect()
    }

    /// The raw entries (length, encoding, data, CRC) of chunks `refs`, fetched
    /// together; decode one with [`chunk_data`].
    pub fn chunks(&self, refs: &[u64]) -> Result<HashMap<u64, Bytes>> {
        let mut sorted: Vec<u64> = refs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut wanted = Vec::with_capacity(sorted.len());
        for (i, &r) in sorted.iter().enumerate() {
            let seg = (r >> 32) as usize;
            let off = r & 0xffff_ffff;
            if off < SEGMENT_HEADER_SIZE {
                return Err(self.corrupt(format!("chunk {r}: offset inside segment header")));
            }
            let next = sorted
                .get(i + 1)
                .filter(|n| (*n >> 32) as usize == seg)
                .map(|n| n & 0xffff_ffff)
                .unwrap_or(u64::MAX);
            let end = (off + CHUNK_ESTIMATE_BYTES).min(next);
            wanted.push((r, seg + 1, off..end.max(off + 1)));
        }
        self.entries(Part::Chunk, &wanted)
    }
}

/// The encoding byte and data of a chunk entry returned by
/// [`BucketBlockReader::chunks`], checksum verified.
pub fn chunk_data(entry: &[u8]) -> std::result::Result<(u8, &[u8]), String> {
    decode_chunk(entry, 0)
}

/// The block's postings through the matcher resolution shared with local blocks.
pub struct BucketIndex<'a>(pub &'a BucketBlockReader);

impl PostingsIndex for BucketIndex<'_> {
    type Error = BucketStoreError;

    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        let Some(values) = self.0.postings.get(name) else {
            return Ok(Vec::new());
        };
        match values.binary_search_by(|(v, _)| (**v).cmp(value)) {
            Ok(i) => Ok(self
                .0
                .postings_at(&[values[i].1])?
                .pop()
                .unwrap_or_default()),
            Err(_) => Ok(Vec::new()),
        }
    }

    fn postings_for_values(
        &self,
        name: &str,
        keep: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Vec<u64>> {
        let Some(values) = self.0.postings.get(name) else {
            return Ok(Vec::new());
        };
        let offsets: Vec<u64> = values
            .iter()
            .filter(|(v, _)| keep(v))
            .map(|(_, o)| *o)
            .collect();
        let lists = self.0.postings_at(&offsets)?;
        let many = lists.len() > 1;
        let mut out: Vec<u64> = lists.into_iter().flatten().collect();
        if many {
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
    }

    fn all_postings(&self) -> Result<Vec<u64>> {
        match self.0.all_postings {
            Some(off) => Ok(self.0.postings_at(&[off])?.pop().unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    }
}

impl BucketBlockReader {
    /// All label names of the block, sorted (from the index-header: no GET).
    pub fn label_names(&self) -> impl Iterator<Item = &ArcStr> {
        self.postings.keys()
    }

    /// All values of `name`, sorted (from the index-header: no GET).
    pub fn label_values(&self, name: &str) -> impl Iterator<Item = &ArcStr> {
        self.postings
            .get(name)
            .into_iter()
            .flat_map(|vs| vs.iter().map(|(v, _)| v))
    }
}
