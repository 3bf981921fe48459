//! File naming, directory listing, record framing and the record reader that
//! is shared by open-time repair, replay and checkpointing.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::error::{Result, WalError};

/// Bytes of framing in front of every payload: `u32` length + `u32` CRC-32C.
pub(crate) const HEADER_LEN: usize = 8;

/// Largest payload accepted on write and believed on read. The read side uses
/// it so that a garbage length can never trigger a huge allocation.
pub const MAX_RECORD_LEN: usize = 256 << 20;

/// Read buffer size; large enough that replay does few syscalls.
const READ_BUF: usize = 1 << 20;

const CHECKPOINT_PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";

/// `00000003`
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:08}")
}

/// `checkpoint.00000003`
pub(crate) fn checkpoint_name(seq: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{seq:08}")
}

/// `checkpoint.00000003.tmp`: a checkpoint being written; never trusted.
pub(crate) fn checkpoint_tmp_name(seq: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{seq:08}{TMP_SUFFIX}")
}

/// Sequence numbers are at least 8 decimal digits (more only past 99,999,999).
fn parse_seq(s: &str) -> Option<u64> {
    if s.len() < 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What a WAL directory contains, sorted by number. Unknown names are ignored
/// so that operators can leave notes or backups next to the WAL.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub segments: Vec<u64>,
    pub checkpoints: Vec<u64>,
    /// Leftover temporary checkpoints (files or directories) and repairs.
    pub temps: Vec<PathBuf>,
}

pub(crate) fn list_dir(dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let entries =
        fs::read_dir(dir).map_err(|e| WalError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if name.strip_suffix(super::REPAIR_SUFFIX).is_some_and(|base| {
            parse_seq(base).is_some()
                || base
                    .strip_prefix(CHECKPOINT_PREFIX)
                    .and_then(parse_seq)
                    .is_some()
        }) {
            // A repair interrupted by a crash: the original is still in place.
            listing.temps.push(entry.path());
        } else if let Some(seq) = parse_seq(name) {
            if is_dir {
                tracing::warn!(name, "ignoring directory with a wal segment name");
            } else {
                listing.segments.push(seq);
            }
        } else if let Some(rest) = name.strip_prefix(CHECKPOINT_PREFIX) {
            if let Some(seq) = parse_seq(rest) {
                if is_dir {
                    // Not ours (e.g. a Prometheus checkpoint): never read or
                    // delete it.
                    tracing::warn!(name, "ignoring foreign checkpoint directory in the wal");
                } else {
                    listing.checkpoints.push(seq);
                }
            } else if rest.strip_suffix(TMP_SUFFIX).and_then(parse_seq).is_some() {
                listing.temps.push(entry.path());
            }
        }
    }
    listing.segments.sort_unstable();
    listing.checkpoints.sort_unstable();
    listing.temps.sort();
    Ok(listing)
}

/// Appends the framing of `payload` (whose CRC-32C is `crc`) and the payload.
pub(crate) fn encode_record(buf: &mut Vec<u8>, payload: &[u8], crc: u32) {
    // Callers reject payloads over MAX_RECORD_LEN, so the length fits in u32.
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Checks that `record` may be written and returns its CRC-32C. Done by the
/// committing thread so CRC work is spread over producers, not the writer.
pub(crate) fn check_record(record: &[u8]) -> Result<u32> {
    if record.is_empty() {
        return Err(WalError::EmptyRecord);
    }
    if record.len() > MAX_RECORD_LEN {
        return Err(WalError::RecordTooLarge {
            len: record.len(),
            max: MAX_RECORD_LEN,
        });
    }
    Ok(crc32c::crc32c(record))
}

/// fsyncs a directory so that creations, renames and deletions in it are
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(format!("sync directory {}", dir.display()), e))
}

/// Removes a file (or a directory tree, for foreign checkpoint layouts);
/// already-gone is fine.
pub(crate) fn remove_path(path: &Path) -> Result<()> {
    let res = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::io(format!("remove {}", path.display()), e)),
    }
}

/// Cuts `path` to `len` bytes and makes that durable.
pub(crate) fn truncate_file(path: &Path, len: u64) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_len(len)?;
            f.sync_all()
        })
        .map_err(|e| WalError::io(format!("truncate {} to {len} bytes", path.display()), e))
}

/// Why a file stops being readable at some offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// Fewer than 8 bytes left for a header.
    TornHeader { available: u64 },
    /// Length field is zero: a zero-filled tail (or zeroed block).
    ZeroLength,
    /// Length field beyond `MAX_RECORD_LEN`.
    LengthTooLarge { len: u64 },
    /// The payload runs past the end of the file.
    TornPayload { len: u64, available: u64 },
    /// Payload does not match its checksum.
    CrcMismatch { stored: u32, computed: u32 },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::TornHeader { available } => {
                write!(f, "torn record header ({available} of {HEADER_LEN} bytes)")
            }
            Corruption::ZeroLength => write!(f, "zero record length (zero-filled tail)"),
            Corruption::LengthTooLarge { len } => {
                write!(f, "impossible record length {len} (max {MAX_RECORD_LEN})")
            }
            Corruption::TornPayload { len, available } => {
                write!(f, "torn record: {len} byte payload, {available} bytes left")
            }
            Corruption::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "crc mismatch: stored {stored:08x}, computed {computed:08x}"
                )
            }
        }
    }
}

/// One step of [`RecordReader::next_record`].
#[derive(Debug)]
pub(crate) enum Next<'a> {
    Record(&'a [u8]),
    End,
    /// The file is unreadable from [`RecordReader::offset`] on.
    Corrupt(Corruption),
}

/// Sequential reader of a record file. It reads big chunks into its own buffer
/// and hands out payloads as slices of it, so replay copies each byte once.
pub(crate) struct RecordReader {
    file: File,
    path: PathBuf,
    file_len: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`: the start of the next record.
    offset: u64,
    eof: bool,
}

impl RecordReader {
    pub fn open(path: &Path) -> Result<Self> {
        let ctx = || format!("open {}", path.display());
        let file = File::open(path).map_err(|e| WalError::io(ctx(), e))?;
        let file_len = file.metadata().map_err(|e| WalError::io(ctx(), e))?.len();
        let cap = usize::try_from(file_len)
            .unwrap_or(READ_BUF)
            .clamp(HEADER_LEN, READ_BUF);
        Ok(RecordReader {
            file,
            path: path.to_path_buf(),
            file_len,
            buf: vec![0; cap],
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
        })
    }

    /// Offset of the next record, i.e. the length of the valid prefix so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes at least `need` bytes available at `buf[start..]`; false on EOF.
    fn fill(&mut self, need: usize) -> Result<bool> {
        while self.end - self.start < need {
            if self.eof {
                return Ok(false);
            }
            if self.start + need > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < need {
                    self.buf.resize(need, 0);
                }
            }
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(WalError::io(format!("read {}", self.path.display()), e));
                }
            }
        }
        Ok(true)
    }

    /// Next record, clean end of file, or the corruption that stops reading.
    /// After `Corrupt` the reader must not be used again.
    pub fn next_record(&mut self) -> Result<Next<'_>> {
        if !self.fill(HEADER_LEN)? {
            let available = (self.end - self.start) as u64;
            return Ok(if available == 0 {
                Next::End
            } else {
                Next::Corrupt(Corruption::TornHeader { available })
            });
        }
        let h = &self.buf[self.start..self.start + HEADER_LEN];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let stored = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let len64 = u64::from(len);
        if len == 0 {
            return Ok(Next::Corrupt(Corruption::ZeroLength));
        }
        if len64 > MAX_RECORD_LEN as u64 {
            return Ok(Next::Corrupt(Corruption::LengthTooLarge { len: len64 }));
        }
        // Check against the file size before growing the buffer, so a torn
        // length never allocates more than the file holds.
        let available = self
            .file_len
            .saturating_sub(self.offset + HEADER_LEN as u64);
        if len64 > available {
            return Ok(Next::Corrupt(Corruption::TornPayload {
                len: len64,
                available,
            }));
        }
        let framed = HEADER_LEN + len as usize;
        if !self.fill(framed)? {
            // The file shrank while we read it.
            let available = (self.end - self.start).saturating_sub(HEADER_LEN) as u64;
            return Ok(Next::Corrupt(Corruption::TornPayload {
                len: len64,
                available,
            }));
        }
        let payload = self.start + HEADER_LEN..self.start + framed;
        let computed = crc32c::crc32c(&self.buf[payload.clone()]);
        if computed != stored {
            return Ok(Next::Corrupt(Corruption::CrcMismatch { stored, computed }));
        }
        self.start += framed;
        self.offset += framed as u64;
        Ok(Next::Record(&self.buf[payload]))
    }
}

/// Result of validating a whole file.
#[derive(Debug)]
pub(crate) struct Scan {
    pub records: u64,
    pub corruption: Option<Corruption>,
}

/// Reads `path` to the end or to the first corruption.
pub(crate) fn scan_file(path: &Path) -> Result<Scan> {
    let mut reader = RecordReader::open(path)?;
    let mut records = 0;
    let corruption = loop {
        match reader.next_record()? {
            Next::Record(_) => records += 1,
            Next::End => break None,
            Next::Corrupt(c) => break Some(c),
        }
    };
    Ok(Scan {
        records,
        corruption,
    })
}

/// The framed length of the valid record at `buf[off..]`, or why there is none.
/// The same checks as [`RecordReader::next_record`], on bytes in memory.
pub(crate) fn record_at(buf: &[u8], off: usize) -> std::result::Result<usize, Corruption> {
    let rest = buf.get(off..).unwrap_or(&[]);
    let Some(h) = rest.get(..HEADER_LEN) else {
        return Err(Corruption::TornHeader {
            available: rest.len() as u64,
        });
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let stored = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let len64 = u64::from(len);
    if len == 0 {
        return Err(Corruption::ZeroLength);
    }
    if len64 > MAX_RECORD_LEN as u64 {
        return Err(Corruption::LengthTooLarge { len: len64 });
    }
    let available = (rest.len() - HEADER_LEN) as u64;
    let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len as usize) else {
        return Err(Corruption::TornPayload {
            len: len64,
            available,
        });
    };
    let computed = crc32c::crc32c(payload);
    if computed != stored {
        return Err(Corruption::CrcMismatch { stored, computed });
    }
    Ok(HEADER_LEN + len as usize)
}

/// Payload bytes a resynchronisation may checksum while looking for the next valid
/// record after damage: a few hundred milliseconds of CRC work at most, whatever
/// the damaged bytes claim as lengths.
const RESYNC_CRC_BUDGET: u64 = 256 << 20;

/// Where reading can resume after the damage at `off`: the start of the next valid
/// record, `buf.len()` when the damaged record was exactly the last one, or `None`
/// when nothing valid follows (a torn or zero-filled tail).
///
/// A flipped payload bit leaves the length intact: the next record then starts
/// right after the damaged one, which is tried first. Otherwise every later offset
/// is tried as a record header; a false match needs a CRC-32C collision as well as
/// a plausible length.
pub(crate) fn resync(buf: &[u8], off: usize, corruption: &Corruption) -> Option<usize> {
    if let Corruption::CrcMismatch { .. } = corruption {
        let len = buf
            .get(off..off + 4)
            .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)?;
        let next = off + HEADER_LEN + len;
        if next == buf.len() || (next < buf.len() && record_at(buf, next).is_ok()) {
            return Some(next);
        }
    }
    let mut budget = RESYNC_CRC_BUDGET;
    let mut p = off + 1;
    while p + HEADER_LEN <= buf.len() {
        let Some(&[a, b, c, d]) = buf.get(p..p + 4) else {
            break;
        };
        let len = u32::from_le_bytes([a, b, c, d]) as usize;
        if len > 0 && len <= MAX_RECORD_LEN && p + HEADER_LEN + len <= buf.len() {
            budget = budget.checked_sub(len as u64)?;
            if record_at(buf, p).is_ok() {
                return Some(p);
            }
        }
        p += 1;
    }
    None
}

/// A damaged byte range of a record file: `[start, end)`, with what was found at
/// `start`. `end` is the file's length when nothing valid follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub start: u64,
    pub end: u64,
    pub corruption: String,
    /// Every damaged byte is zero (a zero-filled tail holds nothing to inspect).
    pub zeroed: bool,
}

/// A record file read to its end, skipping over damage.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub records: u64,
    pub damage: Vec<Damage>,
}

/// Reads every record of `buf`, resynchronising after each damaged range.
pub(crate) fn analyze(buf: &[u8]) -> Analysis {
    let mut out = Analysis::default();
    let mut off = 0;
    while off < buf.len() {
        match record_at(buf, off) {
            Ok(n) => {
                out.records += 1;
                off += n;
            }
            Err(c) => {
                let end = resync(buf, off, &c).unwrap_or(buf.len());
                out.damage.push(Damage {
                    start: off as u64,
                    end: end as u64,
                    corruption: c.to_string(),
                    zeroed: buf.get(off..end).is_some_and(|d| d.iter().all(|&b| b == 0)),
                });
                off = end;
            }
        }
    }
    out
}
