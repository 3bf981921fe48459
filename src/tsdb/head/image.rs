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
//! uvarint len, bytes: the state machine's own state at the position (the TSDB's
//!   pending cuts and tombstones; see `tsdb::machine`)
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
//!     encoder state: uvarint last_t - min_t, u64 last value bits, uvarint last
//!       timestamp delta, u8 leading zeros (0xff: no window yet), u8 trailing zeros,
//!       u8 unused bits of the last byte
//!     uvarint len, bytes: the whole chunk (1), or its header and the stream bytes
//!     after the slot's (2); the slot holds a header and the stream's first bytes
//! uvarint #symbols, each: uvarint len, UTF-8 bytes (numbered from 0 as they appear)
//! u64: offset of the symbols in the file
//! crc32c u32 of everything before it
//! ```
//!
//! `log_index` counts the records applied up to the position since the log began
//! (the WAL writer's counter; a Raft log's index). The open chunk's encoder state is
//! stored rather than recovered by decoding the chunk (`XorChunk::from_bytes`): at
//! 100k series, decoding every open chunk (and reading its slot back) was the largest
//! part of loading an image. Appends after a restart write the same bytes as a head
//! that never stopped (the tests compare them, and the state with what decoding
//! gives).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arcstr::ArcStr;
use parking_lot::Mutex;

use crate::log::LogPosition;
use crate::log::varint::{put_uvarint, put_varint, take_uvarint, unzigzag};
use crate::model::{Label, Labels};
use crate::tsdb::chunkenc::{HEADER_LEN, XorChunk, XorState};

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
    /// State that is not the head's but belongs to the same position (the TSDB's
    /// pending work), stored with the image as it is.
    pub extra: Vec<u8>,
    series: Vec<SeriesImage>,
    /// Each series' closed chunks already in the file's encoding, and the open
    /// chunks' heap bytes, back to back. Encoding the closed chunks during the copy
    /// holds about a third of the bytes a list of them would (a few per series).
    arena: Vec<u8>,
    /// The head chunk files the closed chunks and open slots name.
    files: HashSet<u32>,
}

struct SeriesImage {
    labels: Labels,
    next_at: i64,
    /// Its closed chunks, encoded (count first), in `HeadImage::arena`.
    closed: Span,
    open: Option<OpenImage>,
}

struct OpenImage {
    min_t: i64,
    state: XorState,
    /// The slot and its capacity.
    slot: Option<(DiskChunkRef, u32)>,
    bytes: Span,
}

/// What loading an image gave.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub position: LogPosition,
    /// The head's out-of-bounds boundary when the image was taken, where the log's
    /// head cuts had raised it. Applied by [`load`].
    pub min_valid_time: i64,
    /// [`HeadImage::extra`].
    pub extra: Vec<u8>,
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
        // Sized from the last capture: growing these by doubling made the copy's peak
        // twice its size.
        let hint = *self.image_sizes.lock();
        let hint = if hint == (0, 0) {
            (n * 4, n * 32)
        } else {
            hint
        };
        let mut img = HeadImage {
            position,
            min_valid_time: self.min_valid_time(),
            chunk_range_ms: self.chunk_range_ms,
            capture,
            extra: Vec::new(),
            series: Vec::with_capacity(n),
            arena: Vec::with_capacity(hint.1 + hint.1 / 8),
            files: HashSet::new(),
        };
        let mut last_file = None;
        for (_, s) in table.iter() {
            let st = s.state.lock();
            if st.is_empty() {
                continue;
            }
            let start = img.arena.len();
            let arena = &mut img.arena;
            put_uvarint(arena, st.closed.len() as u64);
            for c in st.closed.iter() {
                put_varint(arena, c.min_t);
                put_uvarint(arena, c.max_t.wrapping_sub(c.min_t) as u64);
                match &c.data {
                    ClosedData::File(r) => {
                        arena.push(0);
                        put_uvarint(arena, u64::from(r.file));
                        put_uvarint(arena, u64::from(r.offset));
                        put_uvarint(arena, u64::from(r.len));
                        // Chunks of a series mostly share one file: skip the set.
                        if last_file != Some(r.file) {
                            img.files.insert(r.file);
                            last_file = Some(r.file);
                        }
                    }
                    ClosedData::Heap(b) => {
                        arena.push(1);
                        put_uvarint(arena, b.len() as u64);
                        arena.extend_from_slice(b);
                    }
                }
            }
            let closed = Span::new(start, img.arena.len() - start);
            if let Some(slot) = st.open.as_ref().and_then(|o| o.slot.as_ref()) {
                img.files.insert(slot.file());
            }
            let open = st.open.as_ref().map(|o| OpenImage {
                min_t: o.min_t,
                state: o.chunk.state(),
                slot: o.slot.as_ref().map(ChunkSlot::image_ref),
                bytes: push(&mut img.arena, o.chunk.bytes()),
            });
            img.series.push(SeriesImage {
                labels: s.labels.clone(),
                next_at: st.next_at,
                closed,
                open,
            });
        }
        *self.image_sizes.lock() = (0, img.arena.len());
        img
    }
}

fn push(arena: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    Span::new(start, bytes.len())
}

/// A range of `HeadImage::arena`, in 8 bytes rather than a
/// `Range<usize>`'s 16: the copy holds several per series. Past 4 GiB (some 80M
/// series) a span is cut short, and the image then fails to load and is replaced by
/// the previous one.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn new(start: usize, len: usize) -> Self {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(len).unwrap_or(0),
        }
    }

    fn of<'a, T>(&self, v: &'a [T]) -> &'a [T] {
        let start = self.start as usize;
        v.get(start..start.saturating_add(self.len as usize))
            .unwrap_or_default()
    }
}

impl HeadImage {
    /// Series in the image.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// The chunk files the image names.
    pub fn files(&self) -> HashSet<u32> {
        self.files.clone()
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
        out.uvarint(self.extra.len() as u64)?;
        out.put(&self.extra)?;
        // Symbols are numbered as they first appear and written after the series:
        // the head interns its strings, so one allocation is one string.
        let mut ids: hashbrown::HashMap<usize, u32> = hashbrown::HashMap::new();
        let mut symbols: Vec<&str> = Vec::new();
        out.uvarint(self.series.len() as u64)?;
        for s in &self.series {
            out.uvarint(s.labels.len() as u64)?;
            for l in s.labels.iter() {
                for part in [&l.name, &l.value] {
                    let id = *ids.entry(part.as_ptr() as usize).or_insert_with(|| {
                        symbols.push(part.as_str());
                        (symbols.len() - 1) as u32
                    });
                    out.uvarint(u64::from(id))?;
                }
            }
            out.varint(s.next_at)?;
            // Encoded during the copy, exactly as the file has them.
            out.put(s.closed.of(&self.arena))?;
            match &s.open {
                None => out.put(&[0])?,
                Some(o) => {
                    out.put(&[if o.slot.is_some() { 2 } else { 1 }])?;
                    out.varint(o.min_t)?;
                    if let Some((r, cap)) = o.slot {
                        out.chunk_ref(r)?;
                        out.uvarint(u64::from(cap))?;
                    }
                    let st = o.state;
                    out.uvarint(st.t.wrapping_sub(o.min_t) as u64)?;
                    out.put(&st.v.to_le_bytes())?;
                    out.uvarint(st.t_delta)?;
                    out.put(&[st.leading, st.trailing, st.free_bits])?;
                    out.bytes(o.bytes.of(&self.arena))?;
                }
            }
        }
        let symbols_at = out.len + out.buf.len() as u64;
        out.uvarint(symbols.len() as u64)?;
        for sym in &symbols {
            out.uvarint(sym.len() as u64)?;
            out.put(sym.as_bytes())?;
        }
        out.put(&symbols_at.to_le_bytes())?;
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

    fn uvarint(&mut self, v: u64) -> std::io::Result<()> {
        put_uvarint(&mut self.buf, v);
        Ok(())
    }

    fn varint(&mut self, v: i64) -> std::io::Result<()> {
        put_varint(&mut self.buf, v);
        Ok(())
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
        take_uvarint(&mut self.buf).ok_or_else(|| damaged("varint cut short or over 64 bits"))
    }

    fn varint(&mut self) -> Result<i64, ImageError> {
        self.uvarint().map(unzigzag)
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

/// The bytes of an image file before its checksum, once the checksum matches.
fn checked_content(buf: &[u8]) -> Result<&[u8], ImageError> {
    let (content, crc) = buf
        .split_last_chunk::<4>()
        .ok_or_else(|| damaged("shorter than its checksum"))?;
    if crc32c::crc32c(content) != u32::from_le_bytes(*crc) {
        return Err(damaged("checksum mismatch"));
    }
    Ok(content)
}

/// Splits what follows an image's header (`rest`, the end of `content`) into the
/// series and the symbol table, whose offset is the content's last 8 bytes.
fn series_and_symbols<'a>(
    content: &[u8],
    rest: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ImageError> {
    let (body, symbols_at) = rest
        .split_last_chunk::<8>()
        .ok_or_else(|| damaged("no symbol table offset"))?;
    let symbols_at = usize::try_from(u64::from_le_bytes(*symbols_at))
        .ok()
        .and_then(|at| at.checked_sub(content.len() - rest.len()))
        .filter(|&at| at <= body.len())
        .ok_or_else(|| damaged("symbol table offset out of range"))?;
    Ok(body.split_at(symbols_at))
}

/// The image at `path` with every chunk in it: closed chunks read out of the head
/// chunk files in `chunks_dir`, open chunks without their slots. Another node loads
/// it into its own head (a Raft snapshot), which knows nothing of this node's chunk
/// files; its chunks then live on the heap until they are cut into a block.
pub fn portable(path: &Path, chunks_dir: &Path) -> Result<Vec<u8>, ImageError> {
    let buf = fs::read(path).map_err(io(format!("read {}", path.display())))?;
    let content = checked_content(&buf)?;
    let mut r = Reader { buf: content };
    let mut out: Vec<u8> = Vec::with_capacity(content.len() * 2);
    // Magic, version, segment, index, min valid time, chunk range: as they are.
    out.extend_from_slice(r.take(MAGIC.len() + 1 + 4 * 8)?);
    if out[..MAGIC.len()] != MAGIC[..] || out[MAGIC.len()] != VERSION {
        return Err(damaged("not a head image of this version"));
    }
    let extra = r.bytes()?;
    put_uvarint(&mut out, extra.len() as u64);
    out.extend_from_slice(extra);
    let (series_part, symbols_part) = series_and_symbols(content, r.buf)?;
    let mut files: std::collections::HashMap<u32, File> = std::collections::HashMap::new();
    let mut read_chunk = |c: DiskChunkRef| -> Result<Vec<u8>, ImageError> {
        use std::os::unix::fs::FileExt;
        let f = match files.entry(c.file) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let path = chunks_dir.join(format!("{:06}", c.file));
                e.insert(File::open(&path).map_err(io(format!("open {}", path.display())))?)
            }
        };
        let mut bytes = vec![0; c.len as usize];
        f.read_exact_at(&mut bytes, u64::from(c.offset))
            .map_err(io(format!("read chunk {c:?}")))?;
        Ok(bytes)
    };
    r.buf = series_part;
    let n = r.uvarint()?;
    put_uvarint(&mut out, n);
    for _ in 0..n {
        let labels = r.len()?;
        put_uvarint(&mut out, labels as u64);
        for _ in 0..labels * 2 {
            put_uvarint(&mut out, r.uvarint()?);
        }
        put_varint(&mut out, r.varint()?);
        let closed = r.len()?;
        put_uvarint(&mut out, closed as u64);
        for _ in 0..closed {
            put_varint(&mut out, r.varint()?);
            put_uvarint(&mut out, r.uvarint()?);
            let bytes = match r.u8()? {
                0 => read_chunk(r.chunk_ref()?)?,
                1 => r.bytes()?.to_vec(),
                k => return Err(ImageError::Damaged(format!("closed chunk kind {k}"))),
            };
            out.push(1);
            put_uvarint(&mut out, bytes.len() as u64);
            out.extend_from_slice(&bytes);
        }
        match r.u8()? {
            0 => out.push(0),
            kind @ (1 | 2) => {
                out.push(1);
                put_varint(&mut out, r.varint()?);
                // In a slot, the chunk's finished bytes are in this node's file: the
                // whole chunk is the image's header, the slot past its header, then
                // the image's bytes past the header (see `OpenChunk::with_bytes`).
                let slot = if kind == 2 {
                    let c = r.chunk_ref()?;
                    r.uvarint()?;
                    Some(read_chunk(c)?)
                } else {
                    None
                };
                put_uvarint(&mut out, r.uvarint()?);
                out.extend_from_slice(r.take(8)?);
                put_uvarint(&mut out, r.uvarint()?);
                out.extend_from_slice(r.take(3)?);
                let bytes = r.bytes()?;
                let whole = match slot {
                    None => bytes.to_vec(),
                    Some(mut whole) => {
                        let (header, rest) = bytes
                            .split_at_checked(HEADER_LEN)
                            .ok_or_else(|| damaged("open chunk shorter than its header"))?;
                        whole
                            .get_mut(..HEADER_LEN)
                            .ok_or_else(|| damaged("open chunk slot shorter than a header"))?
                            .copy_from_slice(header);
                        whole.extend_from_slice(rest);
                        whole
                    }
                };
                put_uvarint(&mut out, whole.len() as u64);
                out.extend_from_slice(&whole);
            }
            k => return Err(ImageError::Damaged(format!("open chunk kind {k}"))),
        }
    }
    if !r.buf.is_empty() {
        return Err(damaged("trailing bytes"));
    }
    let symbols_at = out.len() as u64;
    out.extend_from_slice(symbols_part);
    out.extend_from_slice(&symbols_at.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Loads the image at `path` into `head`, which must be empty, with its chunk files
/// opened by `HeadChunkFiles::open_existing`. On an error the head holds part of the
/// image and must be dropped.
pub fn load(head: &Head, path: &Path) -> Result<LoadedImage, ImageError> {
    let buf = fs::read(path).map_err(io(format!("read {}", path.display())))?;
    let content = checked_content(&buf)?;
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
    let extra = r.bytes()?.to_vec();
    if chunk_range_ms != head.chunk_range_ms {
        tracing::warn!(
            image = chunk_range_ms,
            now = head.chunk_range_ms,
            "head image was taken with another chunk range; its open chunks keep their cut times"
        );
    }
    // The symbols, after the series.
    let (series_part, symbols_part) = series_and_symbols(content, r.buf)?;
    r.buf = symbols_part;
    let n = r.len()?;
    let mut symbols: Vec<ArcStr> = Vec::with_capacity(n);
    {
        let mut interned = head.symbols.lock();
        for _ in 0..n {
            let s = std::str::from_utf8(r.bytes()?).map_err(|_| damaged("symbol not UTF-8"))?;
            symbols.push(super::intern_in(&mut interned, s));
        }
    }
    if !r.buf.is_empty() {
        return Err(damaged("trailing bytes after the symbols"));
    }
    r.buf = series_part;
    let symbol = |i: u32| -> Result<ArcStr, ImageError> {
        symbols
            .get(i as usize)
            .cloned()
            .ok_or_else(|| damaged("symbol out of range"))
    };
    let files = head.files.as_ref();
    let num_series = r.uvarint()?;
    // The hash shards are sized once: growing them rehashes every label set.
    let per_shard = usize::try_from(num_series / super::SHARDS as u64 + 16).unwrap_or(0);
    if num_series <= r.buf.len() as u64 {
        for shard in head.by_hash.iter() {
            shard.write().reserve(per_shard);
        }
    }
    // Two stages on two threads, as WAL replay: this one decodes series and rebuilds
    // their chunks, a second one adds them to the head's tables (the hash-table
    // probes and postings, most of the rest). A third of the time of one thread.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Labels, SeriesState)>>(16);
    let (decoded, inserted) = std::thread::scope(|scope| {
        let inserter = scope.spawn(move || insert_series(head, rx));
        let decoded = decode_series(&mut r, num_series, &symbol, files, tx);
        let inserted = inserter
            .join()
            .unwrap_or_else(|_| Err(damaged("inserting a series panicked")));
        (decoded, inserted)
    });
    let referenced = decoded?;
    let (lo, hi) = inserted?;
    if !r.buf.is_empty() {
        return Err(damaged("trailing bytes"));
    }
    head.num_series.store(num_series, Ordering::Relaxed);
    if num_series > 0 {
        head.min_t.store(lo, Ordering::Release);
        head.max_t.store(hi, Ordering::Release);
    }
    head.set_min_valid_time(min_valid_time);
    Ok(LoadedImage {
        position: LogPosition { segment, index },
        min_valid_time,
        extra,
        series: num_series,
        files: referenced,
    })
}

/// Series handed from the decoding to the inserting stage at a time.
const LOAD_BATCH: usize = 512;

/// Decodes `n` series and sends them on in batches; returns the chunk files named.
fn decode_series(
    r: &mut Reader<'_>,
    n: u64,
    symbol: &dyn Fn(u32) -> Result<ArcStr, ImageError>,
    files: Option<&HeadChunkFiles>,
    tx: std::sync::mpsc::SyncSender<Vec<(Labels, SeriesState)>>,
) -> Result<HashSet<u32>, ImageError> {
    let mut referenced = HashSet::new();
    // Per chunk file (by number: they are few and numbered from 1): its length, and
    // the newest chunk end seen in it.
    let mut file_max: FileMax = Vec::new();
    let mut batch = Vec::with_capacity(LOAD_BATCH);
    for _ in 0..n {
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
                    let len = file_len(files, &mut file_max, c.file)?;
                    if u64::from(c.offset) + u64::from(c.len) > len {
                        return Err(ImageError::Damaged(format!(
                            "chunk {c:?} lies outside its head chunk file"
                        )));
                    }
                    if let Some(Some((_, newest))) = file_max.get_mut(c.file as usize) {
                        *newest = (*newest).max(max_t);
                    }
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
                let state = XorState {
                    t: min_t.wrapping_add(r.uvarint()? as i64),
                    v: r.u64()?,
                    t_delta: r.uvarint()?,
                    leading: r.u8()?,
                    trailing: r.u8()?,
                    free_bits: r.u8()?,
                };
                let bytes = r.bytes()?;
                Some(open_chunk(files, min_t, slot, state, bytes, &mut file_max)?)
            }
            k => return Err(ImageError::Damaged(format!("open chunk kind {k}"))),
        };
        let state = SeriesState {
            closed: closed.into_boxed_slice(),
            open,
            next_at,
        };
        if state.is_empty() {
            return Err(damaged("series without chunks"));
        }
        batch.push((labels, state));
        if batch.len() == LOAD_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(LOAD_BATCH));
            tx.send(full)
                .map_err(|_| damaged("a series twice (or the inserting stage stopped)"))?;
        }
    }
    if !batch.is_empty() {
        tx.send(batch)
            .map_err(|_| damaged("a series twice (or the inserting stage stopped)"))?;
    }
    // Truncation needs each file's newest chunk end.
    if let Some(files) = files {
        for (file, seen) in file_max.iter().enumerate() {
            if let Some((_, newest)) = seen {
                files.note_max_t(file as u32, *newest);
                referenced.insert(file as u32);
            }
        }
    }
    Ok(referenced)
}

/// Adds decoded series to the head's tables; returns their time range.
fn insert_series(
    head: &Head,
    rx: std::sync::mpsc::Receiver<Vec<(Labels, SeriesState)>>,
) -> Result<(i64, i64), ImageError> {
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut table = head.by_ref.write();
    let mut postings = head.postings.write();
    for batch in rx {
        for (labels, state) in batch {
            if let (Some(a), Some(b)) = (state.min_time(), state.max_time()) {
                lo = lo.min(a);
                hi = hi.max(b);
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
                shard.insert_unique(h, series.clone());
            }
            let sref = head.next_ref.fetch_add(1, Ordering::Relaxed);
            postings.add(sref, &series.labels);
            table.insert(sref, series);
        }
    }
    Ok((lo, hi))
}

/// Rebuilds an open chunk from its state and bytes, and its slot as it was.
fn open_chunk(
    files: Option<&HeadChunkFiles>,
    min_t: i64,
    slot: Option<(DiskChunkRef, u32)>,
    state: XorState,
    bytes: &[u8],
    file_max: &mut FileMax,
) -> Result<OpenChunk, ImageError> {
    let bad =
        |e: crate::tsdb::chunkenc::ChunkError| ImageError::Damaged(format!("open chunk: {e}"));
    let capacity = if files.is_some() {
        OPEN_CHUNK_CAPACITY
    } else {
        bytes.len()
    };
    let chunk = XorChunk::from_state(bytes, state, capacity).map_err(bad)?;
    if chunk.num_samples() == 0 {
        return Err(damaged("empty open chunk"));
    }
    let slot = match (slot, files) {
        (Some((r, cap)), Some(files)) => {
            let len = file_len(files, file_max, r.file)?;
            if u64::from(r.offset) + u64::from(cap) > len || r.len < HEADER_LEN as u32 {
                return Err(damaged("open chunk slot outside its head chunk file"));
            }
            Some(
                ChunkSlot::restore(r, cap)
                    .ok_or_else(|| damaged("open chunk slot larger than its capacity"))?,
            )
        }
        (Some(_), None) => return Err(damaged("open chunk in a slot, no chunk files open")),
        (None, _) => None,
    };
    Ok(OpenChunk { min_t, chunk, slot })
}

/// Per chunk file number: its length and the newest chunk end seen in it.
type FileMax = Vec<Option<(u64, i64)>>;

/// The length of chunk file `file`, noted in `file_max` (see `decode_series`).
fn file_len(files: &HeadChunkFiles, file_max: &mut FileMax, file: u32) -> Result<u64, ImageError> {
    if let Some(Some((len, _))) = file_max.get(file as usize) {
        return Ok(*len);
    }
    let missing = || ImageError::Damaged(format!("chunk file {file} is missing"));
    let len = files.reserved_len(file).ok_or_else(missing)?;
    let i = file as usize;
    if i >= file_max.len() {
        file_max.resize(i + 1, None);
    }
    if let Some(slot) = file_max.get_mut(i) {
        *slot = Some((len, i64::MIN));
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
