//! Head images: the whole head at one exact log position, written to disk so that a
//! restart loads it and replays only the WAL after it (what Prometheus's chunk
//! snapshot and a Raft snapshot are).
//!
//! An image is taken in two steps. [`Head::capture_image`] runs on the WAL writer
//! thread between two commit groups (`WalWriter::cut_and_run`), right after the
//! segment was cut: every record in segments before the position is applied, none
//! after. It only copies: a label set is an `Arc` clone, a closed chunk in a head
//! chunk file is its [`DiskChunkRef`], and an open chunk is its slot reference and the
//! few bytes still on the heap. [`HeadImage::write`] then runs on the maintenance
//! thread: it fsyncs the chunk files the image names, encodes the image and writes
//! it durably (temporary file, fsync, rename, fsync of the directory).
//!
//! The chunk files an image names stay on disk while it may be loaded: truncation
//! only retires them (see `chunk_files`).
//!
//! # On-disk format
//!
//! `<data>/chunks_head/snapshot.SSSSSSSS`, `S` (eight or more decimal digits) being the
//! first WAL segment after the image; `snapshot.SSSSSSSS.tmp` while being written.
//! Integers are little-endian; `uvarint` and `varint` (zigzag) as in protobuf.
//!
//! ```text
//! magic "ODINHIMG" | version u8 (1)
//! segment u64 | log_index u64 | min_valid_time i64 | chunk_range_ms i64
//! uvarint #symbols, each: uvarint len, UTF-8 bytes
//! uvarint #series, each:
//!   uvarint #labels, each: uvarint name symbol, uvarint value symbol (sorted by name)
//!   varint next_at
//!   uvarint #closed chunks, oldest first, each:
//!     varint min_t, uvarint max_t - min_t, u8 kind:
//!       0 (in a chunk file): uvarint file, uvarint offset, uvarint len
//!       1 (inline):          uvarint len, chunk bytes
//!   u8 open chunk: 0 none, 1 inline, 2 in a slot; unless 0:
//!     varint min_t
//!     if 2: uvarint file, uvarint offset, uvarint len, uvarint capacity
//!     uvarint len, bytes: the whole chunk (1), or its header and the stream bytes
//!     after the slot's (2); the slot holds a header and the stream's first bytes
//! crc32c u32 of everything before it
//! ```
//!
//! `log_index` counts the records applied up to the position since the log began
//! (the WAL writer's counter; a Raft log's index). The open chunk's encoder is
//! rebuilt by decoding it (`XorChunk::from_bytes`), so appends after a restart write
//! the same bytes as a head that never stopped.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arcstr::ArcStr;
use parking_lot::Mutex;

use crate::log::wal::LogPosition;
use crate::model::{Label, Labels};
use crate::tsdb::chunkenc::{HEADER_LEN, XorChunk};

use super::Head;
use super::chunk_files::{ChunkSlot, DiskChunkRef, HeadChunkFiles, sync_dir};
use super::series::{
    ClosedChunk, ClosedData, MemSeries, OPEN_CHUNK_CAPACITY, OpenChunk, SeriesState,
};

const MAGIC: &[u8; 8] = b"ODINHIMG";
const VERSION: u8 = 1;
const PREFIX: &str = "snapshot.";
const TMP_SUFFIX: &str = ".tmp";

/// Why an image could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("damaged head image: {0}")]
    Damaged(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

fn damaged(what: &str) -> ImageError {
    ImageError::Damaged(what.to_string())
}

/// The file name of the image whose WAL resumes at `segment`.
pub fn image_name(segment: u64) -> String {
    format!("{PREFIX}{segment:08}")
}

/// The images in `dir`, by segment, oldest first; leftover temporary files are removed.
pub fn list_images(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if rest.ends_with(TMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            continue;
        }
        if rest.len() >= 8 && rest.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(seq) = rest.parse() {
                out.push(seq);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A copy of the head at one log position (see the module documentation).
pub struct HeadImage {
    pub position: LogPosition,
    pub min_valid_time: i64,
    pub chunk_range_ms: i64,
    /// The chunk files' capture number (see `HeadChunkFiles::begin_capture`).
    pub capture: Option<u64>,
    series: Vec<SeriesImage>,
    closed: Vec<ClosedImage>,
    /// Open chunks' heap bytes and inline closed chunks, back to back.
    arena: Vec<u8>,
}

struct SeriesImage {
    labels: Labels,
    next_at: i64,
    /// Its closed chunks in `HeadImage::closed`.
    closed: std::ops::Range<usize>,
    open: Option<OpenImage>,
}

struct ClosedImage {
    min_t: i64,
    max_t: i64,
    data: ImageData,
}

enum ImageData {
    File(DiskChunkRef),
    /// A range of `HeadImage::arena`.
    Inline(std::ops::Range<usize>),
}

struct OpenImage {
    min_t: i64,
    /// The slot and its capacity.
    slot: Option<(DiskChunkRef, u32)>,
    bytes: std::ops::Range<usize>,
}

/// What loading an image gave.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub position: LogPosition,
    /// The head's out-of-bounds boundary when the image was taken. Not applied by
    /// [`load`]: start-up takes the boundary from the blocks it trusts, as it did
    /// before images, so that a block moved aside as damaged or dated in the future
    /// never limits the head.
    pub min_valid_time: i64,
    pub series: u64,
    /// The chunk files the image names.
    pub files: HashSet<u32>,
}

impl Head {
    /// Copies the head (see the module documentation). Call it with nothing applied
    /// concurrently (on the WAL writer thread, between commit groups); it takes the
    /// apply lock so that truncation waits too.
    pub fn capture_image(&self, position: LogPosition) -> HeadImage {
        let _apply = self.apply_lock.lock();
        let capture = self.files.as_ref().map(HeadChunkFiles::begin_capture);
        let table = self.by_ref.read();
        let n = self.num_series() as usize;
        let mut img = HeadImage {
            position,
            min_valid_time: self.min_valid_time(),
            chunk_range_ms: self.chunk_range_ms,
            capture,
            series: Vec::with_capacity(n),
            closed: Vec::with_capacity(n),
            arena: Vec::with_capacity(n * 24),
        };
        for (_, s) in table.iter() {
            let st = s.state.lock();
            if st.is_empty() {
                continue;
            }
            let start = img.closed.len();
            for c in st.closed.iter() {
                let data = match &c.data {
                    ClosedData::File(r) => ImageData::File(*r),
                    ClosedData::Heap(b) => ImageData::Inline(push(&mut img.arena, b)),
                };
                img.closed.push(ClosedImage {
                    min_t: c.min_t,
                    max_t: c.max_t,
                    data,
                });
            }
            let open = st.open.as_ref().map(|o| OpenImage {
                min_t: o.min_t,
                slot: o.slot.as_ref().map(ChunkSlot::image_ref),
                bytes: push(&mut img.arena, o.chunk.bytes()),
            });
            img.series.push(SeriesImage {
                labels: s.labels.clone(),
                next_at: st.next_at,
                closed: start..img.closed.len(),
                open,
            });
        }
        img
    }
}

fn push(arena: &mut Vec<u8>, bytes: &[u8]) -> std::ops::Range<usize> {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    start..arena.len()
}

impl HeadImage {
    /// Series in the image.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// The chunk files the image names.
    pub fn files(&self) -> HashSet<u32> {
        let mut out = HashSet::new();
        for c in &self.closed {
            if let ImageData::File(r) = c.data {
                out.insert(r.file);
            }
        }
        for s in &self.series {
            if let Some((r, _)) = s.open.as_ref().and_then(|o| o.slot) {
                out.insert(r.file);
            }
        }
        out
    }

    /// Makes the chunk files the image names durable, then writes the image into
    /// `dir` durably. Returns its path and size.
    pub fn write(
        &self,
        dir: &Path,
        files: Option<&HeadChunkFiles>,
    ) -> Result<(PathBuf, u64), ImageError> {
        if let Some(files) = files {
            files
                .sync(&self.files())
                .map_err(io("sync head chunk files"))?;
        }
        let name = image_name(self.position.segment);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
        let file = File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        let mut out = CrcWriter {
            file,
            buf: Vec::with_capacity(1 << 20),
            crc: 0,
            len: 0,
        };
        let written = self.encode(&mut out).and_then(|()| out.finish());
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e).map_err(io(format!("write {}", tmp.display())));
            }
        };
        fs::rename(&tmp, &path).map_err(io(format!("rename {}", tmp.display())))?;
        sync_dir(dir).map_err(io(format!("sync {}", dir.display())))?;
        Ok((path, len))
    }

    fn encode(&self, out: &mut CrcWriter) -> std::io::Result<()> {
        out.put(MAGIC)?;
        out.put(&[VERSION])?;
        out.put(&self.position.segment.to_le_bytes())?;
        out.put(&self.position.index.to_le_bytes())?;
        out.put(&self.min_valid_time.to_le_bytes())?;
        out.put(&self.chunk_range_ms.to_le_bytes())?;
        // Symbols: the head interns its strings, so one allocation is one string.
        let mut ids: HashMap<usize, u32> = HashMap::new();
        let mut symbols: Vec<&str> = Vec::new();
        let mut label_ids: Vec<u32> = Vec::with_capacity(self.series.len() * 8);
        for s in &self.series {
            for l in s.labels.iter() {
                for part in [&l.name, &l.value] {
                    let id = *ids.entry(part.as_ptr() as usize).or_insert_with(|| {
                        symbols.push(part.as_str());
                        (symbols.len() - 1) as u32
                    });
                    label_ids.push(id);
                }
            }
        }
        out.uvarint(symbols.len() as u64)?;
        for sym in &symbols {
            out.uvarint(sym.len() as u64)?;
            out.put(sym.as_bytes())?;
        }
        out.uvarint(self.series.len() as u64)?;
        let mut ids = label_ids.iter();
        for s in &self.series {
            out.uvarint(s.labels.len() as u64)?;
            for _ in 0..s.labels.len() * 2 {
                out.uvarint(u64::from(ids.next().copied().unwrap_or_default()))?;
            }
            out.varint(s.next_at)?;
            let closed = self.closed.get(s.closed.clone()).unwrap_or_default();
            out.uvarint(closed.len() as u64)?;
            for c in closed {
                out.varint(c.min_t)?;
                out.uvarint(c.max_t.wrapping_sub(c.min_t) as u64)?;
                match &c.data {
                    ImageData::File(r) => {
                        out.put(&[0])?;
                        out.chunk_ref(*r)?;
                    }
                    ImageData::Inline(range) => {
                        out.put(&[1])?;
                        out.bytes(self.arena.get(range.clone()).unwrap_or_default())?;
                    }
                }
            }
            match &s.open {
                None => out.put(&[0])?,
                Some(o) => {
                    out.put(&[if o.slot.is_some() { 2 } else { 1 }])?;
                    out.varint(o.min_t)?;
                    if let Some((r, cap)) = o.slot {
                        out.chunk_ref(r)?;
                        out.uvarint(u64::from(cap))?;
                    }
                    out.bytes(self.arena.get(o.bytes.clone()).unwrap_or_default())?;
                }
            }
        }
        Ok(())
    }
}

/// Buffers what is written and keeps the CRC-32C of it.
struct CrcWriter {
    file: File,
    buf: Vec<u8>,
    crc: u32,
    len: u64,
}

impl CrcWriter {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.file.write_all(&self.buf)?;
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn uvarint(&mut self, mut v: u64) -> std::io::Result<()> {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        Ok(())
    }

    fn varint(&mut self, v: i64) -> std::io::Result<()> {
        self.uvarint(((v << 1) ^ (v >> 63)) as u64)
    }

    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.uvarint(b.len() as u64)?;
        self.put(b)
    }

    fn chunk_ref(&mut self, r: DiskChunkRef) -> std::io::Result<()> {
        self.uvarint(u64::from(r.file))?;
        self.uvarint(u64::from(r.offset))?;
        self.uvarint(u64::from(r.len))
    }

    /// Writes the CRC, fsyncs; returns the file's length.
    fn finish(mut self) -> std::io::Result<u64> {
        self.flush()?;
        let crc = self.crc;
        self.file.write_all(&crc.to_le_bytes())?;
        self.file.sync_all()?;
        Ok(self.len + 4)
    }
}

/// Reads an image's fields; every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImageError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| damaged("unexpected end"))?;
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, ImageError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| damaged("u64"))?,
        ))
    }

    fn uvarint(&mut self) -> Result<u64, ImageError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(damaged("varint overflows 64 bits"))
    }

    fn varint(&mut self) -> Result<i64, ImageError> {
        let u = self.uvarint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn u32(&mut self) -> Result<u32, ImageError> {
        u32::try_from(self.uvarint()?).map_err(|_| damaged("value out of range"))
    }

    fn len(&mut self) -> Result<usize, ImageError> {
        let n = usize::try_from(self.uvarint()?).map_err(|_| damaged("length"))?;
        if n > self.buf.len() {
            return Err(damaged("length past the end"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ImageError> {
        let n = self.len()?;
        self.take(n)
    }

    fn chunk_ref(&mut self) -> Result<DiskChunkRef, ImageError> {
        Ok(DiskChunkRef {
            file: self.u32()?,
            offset: self.u32()?,
            len: self.u32()?,
        })
    }
}

/// Loads the image at `path` into `head`, which must be empty, with its chunk files
/// opened by `HeadChunkFiles::open_existing`. On an error the head holds part of the
/// image and must be dropped.
pub fn load(head: &Head, path: &Path) -> Result<LoadedImage, ImageError> {
    let buf = fs::read(path).map_err(io(format!("read {}", path.display())))?;
    let (content, crc) = buf
        .split_last_chunk::<4>()
        .ok_or_else(|| damaged("shorter than its checksum"))?;
    if crc32c::crc32c(content) != u32::from_le_bytes(*crc) {
        return Err(damaged("checksum mismatch"));
    }
    let mut r = Reader { buf: content };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(damaged("not a head image (magic)"));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(ImageError::Damaged(format!("unknown version {version}")));
    }
    let segment = r.u64()?;
    let index = r.u64()?;
    let min_valid_time = r.u64()? as i64;
    let chunk_range_ms = r.u64()? as i64;
    if chunk_range_ms != head.chunk_range_ms {
        tracing::warn!(
            image = chunk_range_ms,
            now = head.chunk_range_ms,
            "head image was taken with another chunk range; its open chunks keep their cut times"
        );
    }
    let n = r.len()?;
    let mut symbols: Vec<ArcStr> = Vec::with_capacity(n);
    {
        let mut interned = head.symbols.lock();
        for _ in 0..n {
            let s = std::str::from_utf8(r.bytes()?).map_err(|_| damaged("symbol not UTF-8"))?;
            symbols.push(super::intern_in(&mut interned, s));
        }
    }
    let symbol = |i: u32| -> Result<ArcStr, ImageError> {
        symbols
            .get(i as usize)
            .cloned()
            .ok_or_else(|| damaged("symbol out of range"))
    };
    let files = head.files.as_ref();
    let mut referenced = HashSet::new();
    let num_series = r.uvarint()?;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut table = head.by_ref.write();
    let mut postings = head.postings.write();
    for _ in 0..num_series {
        let n = r.len()?;
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            labels.push(Label {
                name: symbol(r.u32()?)?,
                value: symbol(r.u32()?)?,
            });
        }
        if labels.is_empty() {
            return Err(damaged("series without labels"));
        }
        Labels::check_sorted_unique(&labels).map_err(ImageError::Damaged)?;
        let labels = Labels::from_sorted(labels);
        let next_at = r.varint()?;
        let n = r.len()?;
        let mut closed = Vec::with_capacity(n);
        for _ in 0..n {
            let min_t = r.varint()?;
            let max_t = min_t.wrapping_add(r.uvarint()? as i64);
            let data = match r.u8()? {
                0 => {
                    let c = r.chunk_ref()?;
                    let files = files.ok_or_else(|| damaged("chunk in a file, none open"))?;
                    if !files.contains(c) {
                        return Err(ImageError::Damaged(format!(
                            "chunk {c:?} lies outside the head chunk files"
                        )));
                    }
                    files.note_max_t(c.file, max_t);
                    referenced.insert(c.file);
                    ClosedData::File(c)
                }
                1 => ClosedData::Heap(r.bytes()?.into()),
                k => return Err(ImageError::Damaged(format!("closed chunk kind {k}"))),
            };
            closed.push(ClosedChunk { min_t, max_t, data });
        }
        let open = match r.u8()? {
            0 => None,
            kind @ (1 | 2) => {
                let min_t = r.varint()?;
                let slot = if kind == 2 {
                    let c = r.chunk_ref()?;
                    let cap = r.u32()?;
                    Some((c, cap))
                } else {
                    None
                };
                let bytes = r.bytes()?;
                Some(open_chunk(files, min_t, slot, bytes, &mut referenced)?)
            }
            k => return Err(ImageError::Damaged(format!("open chunk kind {k}"))),
        };
        let state = SeriesState {
            closed: closed.into_boxed_slice(),
            open,
            next_at,
        };
        if let (Some(a), Some(b)) = (state.min_time(), state.max_time()) {
            lo = lo.min(a);
            hi = hi.max(b);
        } else {
            return Err(damaged("series without chunks"));
        }
        let h = labels.stable_hash();
        let series = Arc::new(MemSeries {
            labels,
            state: Mutex::new(state),
        });
        {
            let mut shard = head.by_hash[Head::hash_shard(h)].write();
            if shard.find(h, |s| s.labels == series.labels).is_some() {
                return Err(damaged("a series twice"));
            }
            shard.insert_unique(h, series.clone(), |s| s.labels.stable_hash());
        }
        let sref = head.next_ref.fetch_add(1, Ordering::Relaxed);
        postings.add(sref, &series.labels);
        table.insert(sref, series);
    }
    if !r.buf.is_empty() {
        return Err(damaged("trailing bytes"));
    }
    head.num_series.store(num_series, Ordering::Relaxed);
    if num_series > 0 {
        head.min_t.store(lo, Ordering::Release);
        head.max_t.store(hi, Ordering::Release);
    }
    Ok(LoadedImage {
        position: LogPosition { segment, index },
        min_valid_time,
        series: num_series,
        files: referenced,
    })
}

/// Rebuilds an open chunk: the encoder from the whole chunk, the slot as it was.
fn open_chunk(
    files: Option<&HeadChunkFiles>,
    min_t: i64,
    slot: Option<(DiskChunkRef, u32)>,
    bytes: &[u8],
    referenced: &mut HashSet<u32>,
) -> Result<OpenChunk, ImageError> {
    let bad =
        |e: crate::tsdb::chunkenc::ChunkError| ImageError::Damaged(format!("open chunk: {e}"));
    let (chunk, slot) = match (slot, files) {
        (Some((r, cap)), Some(files)) => {
            let (header, rest) = bytes
                .split_at_checked(HEADER_LEN)
                .ok_or_else(|| damaged("open chunk shorter than its header"))?;
            let in_slot = files
                .read(r)
                .filter(|_| files.contains(r))
                .ok_or_else(|| damaged("open chunk slot outside the head chunk files"))?;
            let drained = in_slot
                .len()
                .checked_sub(HEADER_LEN)
                .ok_or_else(|| damaged("open chunk slot shorter than a header"))?;
            let mut whole = in_slot;
            whole
                .get_mut(..HEADER_LEN)
                .unwrap_or_default()
                .copy_from_slice(header);
            whole.extend_from_slice(rest);
            let chunk =
                XorChunk::from_bytes_drained(whole, drained, OPEN_CHUNK_CAPACITY).map_err(bad)?;
            let slot = ChunkSlot::restore(r, cap)
                .ok_or_else(|| damaged("open chunk slot larger than its capacity"))?;
            referenced.insert(r.file);
            (chunk, Some(slot))
        }
        (Some(_), None) => return Err(damaged("open chunk in a slot, no chunk files open")),
        (None, Some(_)) => (
            XorChunk::from_bytes_drained(bytes.to_vec(), 0, OPEN_CHUNK_CAPACITY).map_err(bad)?,
            None,
        ),
        (None, None) => (XorChunk::from_bytes(bytes.to_vec()).map_err(bad)?, None),
    };
    if chunk.num_samples() == 0 {
        return Err(damaged("empty open chunk"));
    }
    Ok(OpenChunk { min_t, chunk, slot })
}

#[cfg(test)]
mod tests;
