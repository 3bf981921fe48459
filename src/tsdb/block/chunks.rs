//! The `chunks/` directory of a block: numbered segment files `000001`, `000002`, …
//! of at most 512 MiB each.
//!
//! ```text
//! segment: magic 0x85BD40DD <4b> | version 1 <1b> | padding <3b> | chunk...
//! chunk:   len(data) <uvarint> | encoding <1b> | data | crc32c(encoding + data) <4b>
//! ```
//!
//! A chunk reference is `segment << 32 | offset`, where `segment` is the 0-based
//! position of the file among the segment files in name order (so `000001` is
//! segment 0) and `offset` is the byte offset of the chunk's length field.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{BlockError, fsync_dir};
use crate::tsdb::index::ChunkMeta;
use crate::tsdb::index::encoding::{Encbuf, crc32, crc32_append, read_uvarint, uvarint_len};

/// Magic number at the start of every chunk segment.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// Chunk segment format version.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Magic, version and padding.
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Largest segment Prometheus writes; offsets must also fit the 32 low bits of a ref.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// The length field is read with at most 5 bytes (a 32-bit uvarint) by Prometheus.
const MAX_CHUNK_LEN_FIELD: u64 = 5;

fn segment_name(seq: usize) -> String {
    format!("{seq:06}")
}

struct Segment {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Appends chunks to segment files, cutting a new segment when the current one
/// would grow past the segment size.
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    /// The segment being written; `None` before the first chunk.
    current: Option<Segment>,
    /// Number of segments created so far (the current one is `segments - 1`).
    segments: usize,
    /// Write offset in the current segment.
    pos: u64,
    /// Bytes in finished segments.
    finished_bytes: u64,
    buf: Encbuf,
}

impl ChunkWriter {
    /// Creates `chunks_dir` (and parents) and a writer with 512 MiB segments.
    pub fn create(chunks_dir: &Path) -> Result<Self, BlockError> {
        Self::with_segment_size(chunks_dir, DEFAULT_SEGMENT_SIZE)
    }

    /// Like [`ChunkWriter::create`] with a smaller segment limit (tests exercise
    /// multi-segment blocks with it).
    pub(crate) fn with_segment_size(
        chunks_dir: &Path,
        segment_size: u64,
    ) -> Result<Self, BlockError> {
        fs::create_dir_all(chunks_dir).map_err(|e| {
            BlockError::io(format!("create chunks dir {}", chunks_dir.display()), e)
        })?;
        Ok(ChunkWriter {
            dir: chunks_dir.to_path_buf(),
            segment_size: segment_size.clamp(SEGMENT_HEADER_SIZE + 1, DEFAULT_SEGMENT_SIZE),
            current: None,
            segments: 0,
            pos: 0,
            finished_bytes: 0,
            buf: Encbuf::with_capacity(256),
        })
    }

    /// Flushes, fsyncs and closes the current segment.
    fn finalize_current(&mut self) -> Result<(), BlockError> {
        if let Some(seg) = self.current.take() {
            let file = seg.out.into_inner().map_err(|e| {
                BlockError::io(
                    format!("flush chunk segment {}", seg.path.display()),
                    e.into_error(),
                )
            })?;
            file.sync_all().map_err(|e| {
                BlockError::io(format!("fsync chunk segment {}", seg.path.display()), e)
            })?;
            self.finished_bytes += self.pos;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), BlockError> {
        self.finalize_current()?;
        let path = self.dir.join(segment_name(self.segments + 1));
        let file = File::create(&path)
            .map_err(|e| BlockError::io(format!("create chunk segment {}", path.display()), e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; SEGMENT_HEADER_SIZE as usize];
        header[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
        header[4] = CHUNKS_FORMAT_V1;
        out.write_all(&header)
            .map_err(|e| BlockError::io(format!("write chunk segment {}", path.display()), e))?;
        self.current = Some(Segment { path, out });
        self.segments += 1;
        self.pos = SEGMENT_HEADER_SIZE;
        Ok(())
    }

    /// Appends one chunk and returns its meta (time range and reference).
    pub fn write_chunk(
        &mut self,
        min_t: i64,
        max_t: i64,
        encoding: u8,
        data: &[u8],
    ) -> Result<ChunkMeta, BlockError> {
        let data_len = u32::try_from(data.len()).map_err(|_| {
            BlockError::Invalid(format!("chunk of {} bytes exceeds 4 GiB", data.len()))
        })?;
        // Sized like Prometheus does, with the longest length field.
        let size = MAX_CHUNK_LEN_FIELD + 1 + u64::from(data_len) + 4;
        let full = self.pos + size > self.segment_size && self.pos > SEGMENT_HEADER_SIZE;
        if self.current.is_none() || full {
            self.cut()?;
        }
        let offset = self.pos;
        if offset > u64::from(u32::MAX) {
            return Err(BlockError::Invalid(format!(
                "chunk offset {offset} does not fit a 32-bit chunk reference"
            )));
        }
        let chunk_ref = ((self.segments as u64 - 1) << 32) | offset;

        self.buf.reset();
        self.buf.put_uvarint(u64::from(data_len));
        self.buf.put_byte(encoding);
        let crc = crc32_append(crc32(&[encoding]), data);
        let Some(seg) = self.current.as_mut() else {
            return Err(BlockError::Invalid("no chunk segment open".into()));
        };
        let werr = |e| BlockError::io(format!("write chunk segment {}", seg.path.display()), e);
        seg.out.write_all(self.buf.get()).map_err(werr)?;
        seg.out.write_all(data).map_err(werr)?;
        seg.out.write_all(&crc.to_be_bytes()).map_err(werr)?;
        self.pos += (uvarint_len(u64::from(data_len)) + 1 + data.len() + 4) as u64;
        Ok(ChunkMeta {
            min_t,
            max_t,
            chunk_ref,
        })
    }

    /// Flushes and fsyncs all segments and the directory; returns the total bytes
    /// written.
    pub fn finish(mut self) -> Result<u64, BlockError> {
        self.finalize_current()?;
        fsync_dir(&self.dir)?;
        Ok(self.finished_bytes)
    }
}

/// Read access to the chunks of a block through memory-mapped segments.
pub struct ChunkReader {
    dir: PathBuf,
    segments: Vec<Mmap>,
    size: u64,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("size", &self.size)
            .finish()
    }
}

impl ChunkReader {
    /// Maps every numbered segment in `chunks_dir` (in name order, as Prometheus
    /// does) and checks its header.
    pub fn open(chunks_dir: &Path) -> Result<Self, BlockError> {
        let rd = fs::read_dir(chunks_dir)
            .map_err(|e| BlockError::io(format!("read chunks dir {}", chunks_dir.display()), e))?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| {
                BlockError::io(format!("read chunks dir {}", chunks_dir.display()), e)
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.is_empty() && name.parse::<u64>().is_ok() {
                names.push(name.to_string());
            }
        }
        names.sort();

        let mut segments = Vec::with_capacity(names.len());
        let mut size = 0;
        for (i, name) in names.iter().enumerate() {
            let path = chunks_dir.join(name);
            let file = File::open(&path)
                .map_err(|e| BlockError::io(format!("open chunk segment {}", path.display()), e))?;
            let len = file
                .metadata()
                .map_err(|e| BlockError::io(format!("stat chunk segment {}", path.display()), e))?
                .len();
            if len < SEGMENT_HEADER_SIZE {
                return Err(BlockError::Corrupt(format!(
                    "chunk segment {} ({i}): {len} bytes is too short for the header",
                    path.display()
                )));
            }
            // SAFETY: segments of a finished block are never modified in place.
            let map = unsafe { Mmap::map(&file) }
                .map_err(|e| BlockError::io(format!("mmap chunk segment {}", path.display()), e))?;
            let b: &[u8] = &map;
            let magic = b
                .get(..4)
                .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]))
                .unwrap_or(0);
            if magic != MAGIC_CHUNKS {
                return Err(BlockError::Corrupt(format!(
                    "chunk segment {}: invalid magic number {magic:08x}",
                    path.display()
                )));
            }
            let version = b.get(4).copied().unwrap_or(0);
            if version != CHUNKS_FORMAT_V1 {
                return Err(BlockError::Corrupt(format!(
                    "chunk segment {}: invalid chunk format version {version}",
                    path.display()
                )));
            }
            size += map.len() as u64;
            segments.push(map);
        }
        Ok(ChunkReader {
            dir: chunks_dir.to_path_buf(),
            segments,
            size,
        })
    }

    /// The encoding byte and data of the chunk at `chunk_ref`, checksum verified.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(u8, &[u8]), BlockError> {
        let seg = (chunk_ref >> 32) as usize;
        let off = (chunk_ref & 0xffff_ffff) as usize;
        let corrupt = |what: String| {
            BlockError::Corrupt(format!(
                "chunk {chunk_ref} (segment {seg}, offset {off}) in {}: {what}",
                self.dir.display()
            ))
        };
        let b: &[u8] = self
            .segments
            .get(seg)
            .ok_or_else(|| corrupt(format!("only {} segments", self.segments.len())))?;
        if (off as u64) < SEGMENT_HEADER_SIZE || off >= b.len() {
            return Err(corrupt(format!(
                "offset outside segment of {} bytes",
                b.len()
            )));
        }
        decode_chunk(b, off).map_err(corrupt)
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }
}

/// The encoding byte and data of the chunk whose length field starts at `off` in
/// `b` (a whole segment, or a range of one fetched from a bucket with the offset
/// rebased), checksum verified. The error says what is wrong, without context.
pub(crate) fn decode_chunk(b: &[u8], off: usize) -> Result<(u8, &[u8]), String> {
    let rest = b
        .get(off..)
        .ok_or_else(|| "offset beyond buffer".to_string())?;
    let (len, n) = read_uvarint(rest).map_err(|e| format!("length: {e}"))?;
    let enc_start = off + n;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| enc_start.checked_add(1)?.checked_add(l))
        .filter(|&data_end| data_end.checked_add(4).is_some_and(|e| e <= b.len()))
        .ok_or_else(|| format!("{len} bytes run past end of segment ({} bytes)", b.len()))?;
    let enc_and_data = &b[enc_start..end];
    let stored = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
    let computed = crc32(enc_and_data);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    Ok((enc_and_data[0], &enc_and_data[1..]))
}
