//! The TSDB as a replicated state machine: its head images are the cluster's Raft
//! snapshots, and a forwarded write's answer travels as bytes.
//!
//! A snapshot travels as an archive: the head image with every chunk in it (the
//! receiver knows nothing of the sender's head chunk files), then every file of
//! every block. The receiver checks the whole archive, then replaces its state with
//! it: the blocks it lacks are written, the ones the sender no longer has go, and the
//! head is emptied and loaded from the image, which is kept as its own newest image.
//!
//! The log store's sealed segments travel the same way, after the blocks.
//!
//! ```text
//! magic "ODINSNAP" | version u8 (2)
//! entries, each: u8 kind
//!   1 (head image): u64 len, the image (`head::image` format, chunks inline)
//!   2 (block file): u16 len, name "<ULID>/<path in the block>", u64 len, bytes
//!   3 (log segment file): u16 len, name "<tenant>/<ULID>/<path in the segment>",
//!     u64 len, bytes
//! u8 0 | crc32c u32 of every byte before it
//! ```
//! (little-endian)

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::log::LogIndex;
use crate::replication::machine::Replicated;
use crate::storage::AppendSummary;
use crate::tsdb::head::image::{image_name, portable};
use crate::tsdb::machine::{DbEntry, DbMachine};

const MAGIC: &[u8; 8] = b"ODINSNAP";
const VERSION: u8 = 2;
const HEAD_IMAGE: u8 = 1;
const BLOCK_FILE: u8 = 2;
const LOG_SEGMENT_FILE: u8 = 3;
const END: u8 = 0;

/// An image of the TSDB as Raft hands it around.
#[derive(Debug, Clone)]
pub enum DbImage {
    /// A head image this node keeps durable (`chunks_head/snapshot.<index>`; in a
    /// cluster images are named by their Raft index), with the blocks of the data
    /// directory it lies in.
    Local { path: PathBuf },
    /// An archive a peer sent, checked, in a file of its own.
    Received { archive: PathBuf },
}

/// What installing a snapshot needs of the database beyond the state machine: its
/// blocks and its image bookkeeping. Set once the database is open.
pub(crate) type Installer = Box<dyn Fn(LogIndex, &Path) -> io::Result<()> + Send + Sync>;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The data directory an image in `<data>/chunks_head/` belongs to.
fn data_dir_of(image: &Path) -> io::Result<(&Path, &Path)> {
    let chunks = image
        .parent()
        .ok_or_else(|| io::Error::other("a head image outside a directory"))?;
    let data = chunks
        .parent()
        .ok_or_else(|| io::Error::other("a head image outside a data directory"))?;
    Ok((data, chunks))
}

/// Every file of every block in `data_dir`: (archive name, path, length).
fn block_files(data_dir: &Path) -> io::Result<Vec<(String, PathBuf, u64)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(data_dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if ulid::Ulid::from_string(&name).is_err()
            || !e.path().is_dir()
            || !e.path().join("meta.json").exists()
        {
            continue;
        }
        files_under(&e.path(), &name, &mut out)?;
    }
    // meta.json last in each block: a block is complete once its meta arrives.
    out.sort_by(|a, b| {
        let key = |n: &str| {
            let (block, rel) = n.split_once('/').unwrap_or((n, ""));
            (block.to_string(), rel == "meta.json", rel.to_string())
        };
        key(&a.0).cmp(&key(&b.0))
    });
    Ok(out)
}

/// Every file under `root`, recursively, as (`<prefix>/<path under root>`, path,
/// length).
fn files_under(root: &Path, prefix: &str, out: &mut Vec<(String, PathBuf, u64)>) -> io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for f in fs::read_dir(&dir)? {
            let f = f?;
            let path = f.path();
            if f.file_type()?.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .map_err(io::Error::other)?
                .to_string_lossy()
                .to_string();
            out.push((format!("{prefix}/{rel}"), path, f.metadata()?.len()));
        }
    }
    Ok(())
}

/// Every file of every sealed log segment under `logs_dir` (`<tenant>/<ULID>/…`):
/// (archive name, path, length), each segment's `meta.json` last.
fn log_segment_files(logs_dir: &Path) -> io::Result<Vec<(String, PathBuf, u64)>> {
    let mut out = Vec::new();
    let Ok(tenants) = fs::read_dir(logs_dir) else {
        return Ok(out);
    };
    for tenant in tenants {
        let tenant = tenant?;
        if !tenant.file_type()?.is_dir() {
            continue;
        }
        let tenant_name = tenant.file_name().to_string_lossy().to_string();
        for seg in fs::read_dir(tenant.path())? {
            let seg = seg?;
            let name = seg.file_name().to_string_lossy().to_string();
            if ulid::Ulid::from_string(&name).is_err() || !seg.path().join("meta.json").exists() {
                continue;
            }
            files_under(&seg.path(), &format!("{tenant_name}/{name}"), &mut out)?;
        }
    }
    out.sort_by(|a, b| {
        let key = |n: &str| {
            let mut it = n.splitn(3, '/');
            let (t, u, rel) = (
                it.next().unwrap_or(""),
                it.next().unwrap_or(""),
                it.next().unwrap_or(""),
            );
            (
                t.to_string(),
                u.to_string(),
                rel == "meta.json",
                rel.to_string(),
            )
        };
        key(&a.0).cmp(&key(&b.0))
    });
    Ok(out)
}

/// A log segment file's name in an archive, checked: `<tenant>/<ULID>/<path>` with
/// a valid tenant and plain path components.
fn check_log_name(name: &str) -> io::Result<(&str, ulid::Ulid, &str)> {
    let mut it = name.splitn(3, '/');
    let (Some(tenant), Some(seg), Some(rel)) = (it.next(), it.next(), it.next()) else {
        return Err(invalid(format!(
            "log segment file {name:?} without a segment"
        )));
    };
    crate::logs::tenant::check_tenant_id(tenant)
        .map_err(|e| invalid(format!("log segment file {name:?}: {e}")))?;
    let ulid = ulid::Ulid::from_string(seg)
        .map_err(|_| invalid(format!("log segment file {name:?}: not a ULID")))?;
    if !plain_path(rel) {
        return Err(invalid(format!(
            "log segment file {name:?}: not a plain path"
        )));
    }
    Ok((tenant, ulid, rel))
}

/// A part of an archive being sent.
enum Part {
    Bytes(Vec<u8>),
    File(PathBuf, u64),
}

/// Reads an archive's parts in turn, keeping the checksum of what it gave, and ends
/// with the checksum.
struct ArchiveReader {
    parts: VecDeque<Part>,
    current: Option<Box<dyn Read + Send>>,
    crc: u32,
    trailer: Option<io::Cursor<Vec<u8>>>,
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(t) = &mut self.trailer {
                return t.read(buf);
            }
            if let Some(r) = &mut self.current {
                let n = r.read(buf)?;
                if n > 0 {
                    self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
                    return Ok(n);
                }
                self.current = None;
            }
            match self.parts.pop_front() {
                Some(Part::Bytes(b)) => self.current = Some(Box::new(io::Cursor::new(b))),
                Some(Part::File(path, len)) => {
                    let f = File::open(&path).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                    // Exactly the announced length: a file that shrank since is an
                    // error the receiver sees as a bad archive.
                    self.current = Some(Box::new(ExactRead {
                        inner: f.take(len),
                        left: len,
                        path,
                    }));
                }
                None => {
                    let mut t = vec![END];
                    let crc = crc32c::crc32c_append(self.crc, &t);
                    t.extend_from_slice(&crc.to_le_bytes());
                    self.trailer = Some(io::Cursor::new(t));
                }
            }
        }
    }
}

/// A reader that fails when its source ends before `left` bytes.
struct ExactRead<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for ExactRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being sent", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The archive of the image at `path` and the blocks beside it, as a reader, and its
/// length.
fn archive(path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
    let (data, chunks) = data_dir_of(path)?;
    let head = portable(path, chunks).map_err(io::Error::other)?;
    let mut parts = VecDeque::new();
    let mut first = Vec::with_capacity(32);
    first.extend_from_slice(MAGIC);
    first.push(VERSION);
    first.push(HEAD_IMAGE);
    first.extend_from_slice(&(head.len() as u64).to_le_bytes());
    let mut len = first.len() as u64 + head.len() as u64;
    parts.push_back(Part::Bytes(first));
    parts.push_back(Part::Bytes(head));
    for (name, path, size) in block_files(data)? {
        let mut h = vec![BLOCK_FILE];
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(&size.to_le_bytes());
        len += h.len() as u64 + size;
        parts.push_back(Part::Bytes(h));
        parts.push_back(Part::File(path, size));
    }
    for (name, path, size) in log_segment_files(&data.join("logs"))? {
        let mut h = vec![LOG_SEGMENT_FILE];
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(&size.to_le_bytes());
        len += h.len() as u64 + size;
        parts.push_back(Part::Bytes(h));
        parts.push_back(Part::File(path, size));
    }
    len += 5;
    let reader = ArchiveReader {
        parts,
        current: None,
        crc: 0,
        trailer: None,
    };
    Ok((Box::new(reader), len))
}

/// A path of at most two plain components (letters, digits, `_`, `-`, `.`; never
/// `.` or `..`): nothing it names lies outside its block or segment.
fn plain_path(rel: &str) -> bool {
    let plain = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    };
    rel.split('/').all(plain) && rel.split('/').count() <= 2
}

/// A block file's name in an archive, checked: `<ULID>/<path>` with plain path
/// components, so that nothing is written outside the block.
fn check_name(name: &str) -> io::Result<(ulid::Ulid, &str)> {
    let (block, rel) = name
        .split_once('/')
        .ok_or_else(|| invalid(format!("block file {name:?} without a block")))?;
    let ulid = ulid::Ulid::from_string(block)
        .map_err(|_| invalid(format!("block file {name:?}: not a ULID")))?;
    if !plain_path(rel) {
        return Err(invalid(format!("block file {name:?}: not a plain path")));
    }
    Ok((ulid, rel))
}

/// Walks an archive: `head` gets the head image's length and reader, `file` each
/// block file's name, length and reader (each must read exactly its part). The
/// checksum is checked at the end: a caller writes to staging places only.
fn walk(
    path: &Path,
    head: &mut dyn FnMut(u64, &mut dyn Read) -> io::Result<()>,
    file: &mut dyn FnMut(&str, u64, &mut dyn Read) -> io::Result<()>,
    log_file: &mut dyn FnMut(&str, u64, &mut dyn Read) -> io::Result<()>,
) -> io::Result<()> {
    struct Crc<R> {
        inner: R,
        crc: u32,
    }
    impl<R: Read> Read for Crc<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
            Ok(n)
        }
    }
    let f = File::open(path)?;
    let mut r = Crc {
        inner: BufReader::with_capacity(1 << 20, f),
        crc: 0,
    };
    let exact = |r: &mut dyn Read, n: usize| -> io::Result<Vec<u8>> {
        let mut b = vec![0; n];
        r.read_exact(&mut b)
            .map_err(|_| invalid("the snapshot archive is cut short"))?;
        Ok(b)
    };
    if exact(&mut r, 9)? != [&MAGIC[..], &[VERSION]].concat() {
        return Err(invalid("not a snapshot archive of this version"));
    }
    let mut seen_head = false;
    loop {
        match exact(&mut r, 1)?[0] {
            HEAD_IMAGE if !seen_head => {
                let len = u64::from_le_bytes(exact(&mut r, 8)?.try_into().unwrap_or_default());
                let mut part = (&mut r).take(len);
                head(len, &mut part)?;
                if part.limit() != 0 {
                    return Err(invalid("the head image part was not read whole"));
                }
                seen_head = true;
            }
            kind @ (BLOCK_FILE | LOG_SEGMENT_FILE) if seen_head => {
                let block = kind == BLOCK_FILE;
                let what = if block {
                    "block file"
                } else {
                    "log segment file"
                };
                let n = u16::from_le_bytes(exact(&mut r, 2)?.try_into().unwrap_or_default());
                let name = String::from_utf8(exact(&mut r, n as usize)?)
                    .map_err(|_| invalid(format!("a {what} name that is not UTF-8")))?;
                if block {
                    check_name(&name)?;
                } else {
                    check_log_name(&name)?;
                }
                let len = u64::from_le_bytes(exact(&mut r, 8)?.try_into().unwrap_or_default());
                let mut part = (&mut r).take(len);
                if block {
                    file(&name, len, &mut part)?;
                } else {
                    log_file(&name, len, &mut part)?;
                }
                if part.limit() != 0 {
                    return Err(invalid(format!("a {what} part was not read whole")));
                }
            }
            END if seen_head => {
                let want = r.crc;
                let crc =
                    u32::from_le_bytes(exact(&mut r.inner, 4)?.try_into().unwrap_or_default());
                if crc != want {
                    return Err(invalid("the snapshot archive's checksum does not match"));
                }
                let mut rest = [0u8; 1];
                if r.inner.read(&mut rest)? != 0 {
                    return Err(invalid("bytes after the snapshot archive's end"));
                }
                return Ok(());
            }
            k => {
                return Err(invalid(format!(
                    "snapshot archive entry kind {k} out of place"
                )));
            }
        }
    }
}

/// Checks a received archive whole (structure, names, checksum) without writing.
fn check_archive(path: &Path) -> io::Result<()> {
    let mut sink = |_: u64, r: &mut dyn Read| io::copy(r, &mut io::sink()).map(|_| ());
    let mut files = |_: &str, _: u64, r: &mut dyn Read| io::copy(r, &mut io::sink()).map(|_| ());
    let mut logs = |_: &str, _: u64, r: &mut dyn Read| io::copy(r, &mut io::sink()).map(|_| ());
    walk(path, &mut sink, &mut files, &mut logs)
}

/// Writes `bytes` of `r` to `path` durably.
fn write_file(path: &Path, r: &mut dyn Read) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut f = File::create(path)?;
    io::copy(r, &mut f)?;
    f.flush()?;
    f.sync_all()
}

/// What an archive unpacked into: the head image (in its place among the images)
/// and the staged blocks, by ULID.
pub(crate) struct Unpacked {
    pub image: PathBuf,
    pub blocks: BTreeMap<ulid::Ulid, PathBuf>,
    /// Staged log segments: (tenant, ULID) → `logs/<tenant>/<ULID>.tmp-for-creation`.
    pub log_segments: BTreeMap<(String, ulid::Ulid), PathBuf>,
}

/// Unpacks the archive at `archive` for installing at `index`: the head image as
/// `chunks_dir/snapshot.<index>`, each block under `data_dir/<ULID>.tmp-for-creation`
/// (where start-up removes leftovers).
pub(crate) fn unpack(
    archive: &Path,
    index: LogIndex,
    data_dir: &Path,
    chunks_dir: &Path,
) -> io::Result<Unpacked> {
    let image = chunks_dir.join(image_name(index));
    let staged_image = chunks_dir.join(format!("{}.tmp", image_name(index)));
    let mut blocks: BTreeMap<ulid::Ulid, PathBuf> = BTreeMap::new();
    let mut head = |_: u64, r: &mut dyn Read| write_file(&staged_image, r);
    let mut file = |name: &str, _: u64, r: &mut dyn Read| {
        let (ulid, rel) = check_name(name)?;
        let dir = blocks
            .entry(ulid)
            .or_insert_with(|| data_dir.join(format!("{ulid}.tmp-for-creation")));
        write_file(&dir.join(rel), r)
    };
    let mut log_segments: BTreeMap<(String, ulid::Ulid), PathBuf> = BTreeMap::new();
    let mut log_file = |name: &str, _: u64, r: &mut dyn Read| {
        let (tenant, ulid, rel) = check_log_name(name)?;
        let dir = log_segments
            .entry((tenant.to_string(), ulid))
            .or_insert_with(|| {
                data_dir
                    .join("logs")
                    .join(tenant)
                    .join(format!("{ulid}.tmp-for-creation"))
            });
        write_file(&dir.join(rel), r)
    };
    walk(archive, &mut head, &mut file, &mut log_file)?;
    fs::rename(&staged_image, &image)?;
    for dir in blocks.values().chain(log_segments.values()) {
        if let Ok(d) = File::open(dir) {
            d.sync_all()?;
        }
    }
    File::open(chunks_dir)?.sync_all()?;
    Ok(Unpacked {
        image,
        blocks,
        log_segments,
    })
}

impl Replicated for DbMachine {
    type Image = DbImage;

    fn durable_image(&self, index: LogIndex) -> io::Result<DbImage> {
        let dir = self.images_dir.as_ref().ok_or_else(|| {
            io::Error::other("this database keeps no head images (no chunk directory)")
        })?;
        let path = dir.join(image_name(index));
        if !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no head image {}", path.display()),
            ));
        }
        Ok(DbImage::Local { path })
    }

    fn restore(&self, index: LogIndex, image: &DbImage) -> io::Result<()> {
        let DbImage::Received { archive } = image else {
            // This node's own image: nothing to replace.
            return Ok(());
        };
        let installed = match self.installer.get() {
            Some(install) => install(index, archive),
            None => Err(io::Error::other(
                "a snapshot arrived before the database finished opening",
            )),
        };
        let _ = fs::remove_file(archive);
        installed
    }

    fn encode_image(image: &DbImage) -> io::Result<(Box<dyn Read + Send>, u64)> {
        match image {
            DbImage::Local { path } => archive(path),
            DbImage::Received { archive } => {
                let f = File::open(archive)?;
                let len = f.metadata()?.len();
                Ok((Box::new(f), len))
            }
        }
    }

    fn incoming_image_path(&self) -> PathBuf {
        let base = self
            .images_dir
            .as_ref()
            .and_then(|d| d.parent())
            .map_or_else(std::env::temp_dir, |d| d.join("raft").join("incoming"));
        let _ = fs::create_dir_all(&base);
        base.join(format!("snapshot-{:016x}", rand::random::<u64>()))
    }

    fn decode_image(&self, path: &Path) -> io::Result<DbImage> {
        check_archive(path)?;
        Ok(DbImage::Received {
            archive: path.to_path_buf(),
        })
    }

    /// Six little-endian u64 counters.
    fn encode_output(s: &AppendSummary) -> Vec<u8> {
        [
            s.accepted,
            s.unchanged,
            s.out_of_order,
            s.out_of_bounds,
            s.duplicate,
            s.too_far_in_future,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }

    fn decode_output(bytes: &[u8]) -> io::Result<AppendSummary> {
        if bytes.len() != 48 {
            return Err(io::Error::other("an append summary is 48 bytes"));
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Ok(AppendSummary {
            accepted: field(0),
            unchanged: field(1),
            out_of_order: field(2),
            out_of_bounds: field(3),
            duplicate: field(4),
            too_far_in_future: field(5),
        })
    }

    /// The node that took the write checked its samples against its own clock; the
    /// leader checks again with its own, so that one node with a clock far ahead
    /// cannot put every replica's head out of reach of the others' writes.
    fn admit_forwarded(
        &self,
        bytes: Vec<u8>,
        entry: DbEntry,
    ) -> (Vec<u8>, DbEntry, Option<AppendSummary>) {
        let window = self.too_far_in_future_ms;
        let DbEntry::Batch(batch, hints) = entry else {
            return (bytes, entry, None);
        };
        if window <= 0 {
            return (bytes, DbEntry::Batch(batch, hints), None);
        }
        let limit = crate::model::now_ms().saturating_add(window);
        let mut refused = AppendSummary::default();
        let (batch, hints) = crate::tsdb::db::drop_samples_after(batch, hints, limit, &mut refused);
        let entry = DbEntry::Batch(batch, hints);
        if refused.too_far_in_future == 0 {
            return (bytes, entry, None);
        }
        // An emptied batch still goes through the log: the answer waits for it like
        // any other, and applying nothing is harmless.
        let bytes = entry.encode(None);
        (bytes, entry, Some(refused))
    }

    fn add_refused(output: &mut AppendSummary, refused: AppendSummary) {
        output.merge(&refused);
    }

    fn encode_proposal(
        &self,
        entry: DbEntry,
        leadership: (u64, bool),
    ) -> (Option<Vec<u8>>, DbEntry) {
        self.encode_by_reference(entry, leadership)
    }

    fn proposal_refused(&self, entry: &DbEntry) {
        DbMachine::proposal_refused(self, entry);
    }

    /// Head cuts are the leader's maintenance's own; writes and deletions come from
    /// clients of any node. A batch by reference is the leader's own too: its ids
    /// hold only against the dictionary where the leader put it in the log, so a
    /// forwarded one (no follower writes one) could stop every replica.
    fn may_forward(entry: &DbEntry) -> bool {
        !matches!(entry, DbEntry::HeadCut(_) | DbEntry::ByReference(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_summary_round_trips_and_short_bytes_are_refused() {
        let s = AppendSummary {
            accepted: 1,
            unchanged: 2,
            out_of_order: 3,
            out_of_bounds: 4,
            duplicate: 5,
            too_far_in_future: 6,
        };
        let bytes = DbMachine::encode_output(&s);
        assert_eq!(DbMachine::decode_output(&bytes).unwrap(), s);
        assert!(DbMachine::decode_output(&bytes[..47]).is_err());
        assert!(DbMachine::decode_output(&[]).is_err());
    }

    /// A data directory with a head image at index 5 (closed chunks in files) and
    /// one block of two files; returns the image's path.
    fn data_dir_with_an_image(dir: &Path) -> PathBuf {
        use crate::log::record::Batch;
        use crate::model::{Labels, Sample};
        let chunks = dir.join("chunks_head");
        let head = crate::tsdb::head::Head::with_chunk_files(7_200_000, &chunks).unwrap();
        for t in 0..400i64 {
            let mut b = Batch::default();
            for s in 0..5 {
                let v = s.to_string();
                b.push_series(
                    Labels::from_pairs([("__name__", "m"), ("s", v.as_str())]),
                    &[Sample::new(t * 15_000, (t * s) as f64)],
                );
            }
            head.apply_batch(&b);
        }
        let pos = crate::log::LogPosition {
            index: 5,
            segment: 5,
        };
        let (path, _) = head
            .capture_image(pos)
            .write(&chunks, head.chunk_files())
            .unwrap();
        let block = dir.join("01HZZZZZZZZZZZZZZZZZZZZZZZ");
        fs::create_dir_all(block.join("chunks")).unwrap();
        fs::write(block.join("meta.json"), b"{\"ulid\": \"x\"}").unwrap();
        fs::write(block.join("chunks").join("000001"), vec![7u8; 3000]).unwrap();
        // A sealed log segment beside the blocks.
        let logs = crate::logs::store::LogStore::open(&dir.join("logs")).unwrap();
        let t0 = 1_700_000_000_000_000_000i64 / crate::logs::store::WINDOW_NS
            * crate::logs::store::WINDOW_NS;
        for (ts, text) in [
            (t0, "sealed line"),
            (t0 + 3 * 3_600_000_000_000, "open line"),
        ] {
            logs.apply(crate::log::record::LogBatch {
                tenant: "team-a".into(),
                positions: Vec::new(),
                streams: vec![crate::log::record::LogStream {
                    labels: Labels::from_pairs([("job", "x")]),
                    lines: vec![crate::log::record::LogLine {
                        ts_ns: ts,
                        text: text.into(),
                        metadata: Vec::new(),
                    }],
                }],
            });
        }
        assert_eq!(logs.maintain(i64::MIN).unwrap().segments_written, 1);
        path
    }

    #[test]
    fn an_archive_unpacks_to_the_same_files_and_damage_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
        let image = data_dir_with_an_image(&from);
        let (mut reader, len) = archive(&image).unwrap();
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, len);
        let file = tmp.path().join("archive");
        fs::write(&file, &bytes).unwrap();
        check_archive(&file).unwrap();

        fs::create_dir_all(to.join("chunks_head")).unwrap();
        // The receiver's store is open (start-up removes staged leftovers).
        let receiver = crate::logs::store::LogStore::open(&to.join("logs")).unwrap();
        let unpacked = unpack(&file, 5, &to, &to.join("chunks_head")).unwrap();
        assert_eq!(unpacked.image, to.join("chunks_head").join(image_name(5)));
        let staged =
            &unpacked.blocks[&ulid::Ulid::from_string("01HZZZZZZZZZZZZZZZZZZZZZZZ").unwrap()];
        assert_eq!(
            fs::read(staged.join("chunks").join("000001")).unwrap(),
            vec![7u8; 3000]
        );
        // The log segment arrives whole and opens where the receiver keeps them.
        assert_eq!(unpacked.log_segments.len(), 1);
        receiver.install_segments(&unpacked.log_segments).unwrap();
        let found = receiver
            .select("team-a", &[], i64::MIN, i64::MAX, &["sealed".into()])
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&*found[0].chunks[0][0].text, "sealed line");
        // The head image that arrives loads into a head without the sender's files.
        let head = crate::tsdb::head::Head::new(7_200_000);
        let loaded = crate::tsdb::head::image::load(&head, &unpacked.image).unwrap();
        assert_eq!(loaded.series, 5);

        // Any damage: a flipped byte, a cut, bytes after the end.
        for at in [3, 40, bytes.len() / 2, bytes.len() - 2] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5a;
            fs::write(&file, &bad).unwrap();
            assert!(check_archive(&file).is_err(), "flipped at {at}");
        }
        for cut in [0, 5, 20, bytes.len() - 1] {
            fs::write(&file, &bytes[..cut]).unwrap();
            assert!(check_archive(&file).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        fs::write(&file, &longer).unwrap();
        assert!(check_archive(&file).is_err());
    }

    #[test]
    fn the_leader_refuses_forwarded_samples_too_far_ahead_of_its_clock() {
        use crate::log::StateMachine;
        use crate::log::record::Batch;
        use crate::model::{Labels, Sample};
        let head = std::sync::Arc::new(crate::tsdb::head::Head::new(7_200_000));
        let off = DbMachine::new(head.clone(), None, 0);
        let machine = DbMachine::new(head, None, 600_000);
        let now = crate::model::now_ms();
        let mut b = Batch::default();
        b.push_series(
            Labels::from_pairs([("__name__", "m")]),
            &[Sample::new(now, 1.0), Sample::new(now + 86_400_000, 2.0)],
        );
        let entry = DbEntry::Batch(b, vec![None]);
        let bytes = entry.encode(None);
        // Off: as it came.
        let (same, entry, refused) = off.admit_forwarded(bytes.clone(), entry);
        assert_eq!(same, bytes);
        assert!(refused.is_none());
        // On: the day-ahead sample goes, the bytes say so, the answer counts it.
        let (bytes, entry, refused) = machine.admit_forwarded(bytes, entry);
        assert_eq!(refused.unwrap().too_far_in_future, 1);
        let DbEntry::Batch(kept, _) = &entry else {
            panic!("not a batch")
        };
        assert_eq!(kept.num_samples(), 1);
        let DbEntry::Batch(decoded, _) = machine.decode(&bytes, false).unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(decoded.num_samples(), 1);
        let mut out = AppendSummary::default();
        DbMachine::add_refused(&mut out, refused.unwrap());
        assert_eq!(out.too_far_in_future, 1);
        // Nothing left: an empty batch, which decodes and applies as nothing.
        let mut b = Batch::default();
        b.push_series(
            Labels::from_pairs([("__name__", "m")]),
            &[Sample::new(now + 86_400_000, 3.0)],
        );
        let entry = DbEntry::Batch(b, vec![None]);
        let (bytes, _, refused) = machine.admit_forwarded(entry.encode(None), entry);
        assert_eq!(refused.unwrap().too_far_in_future, 1);
        let decoded = machine.decode(&bytes, false).unwrap();
        assert_eq!(machine.apply(1, decoded), AppendSummary::default());
    }

    #[test]
    fn log_segment_file_names_stay_inside_their_segment() {
        assert!(check_log_name("team-a/01HZZZZZZZZZZZZZZZZZZZZZZZ/index/meta.json").is_ok());
        for bad in [
            "team-a/01HZZZZZZZZZZZZZZZZZZZZZZZ/../x",
            "../01HZZZZZZZZZZZZZZZZZZZZZZZ/lines",
            "team a/01HZZZZZZZZZZZZZZZZZZZZZZZ/lines",
            "team-a/nope/lines",
            "team-a/01HZZZZZZZZZZZZZZZZZZZZZZZ",
            "team-a/01HZZZZZZZZZZZZZZZZZZZZZZZ/a/b/c",
        ] {
            assert!(check_log_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn block_file_names_stay_inside_their_block() {
        let u = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
        assert!(check_name(&format!("{u}/meta.json")).is_ok());
        assert!(check_name(&format!("{u}/chunks/000001")).is_ok());
        for bad in [
            format!("{u}/../x"),
            format!("{u}//x"),
            format!("{u}/chunks/../../x"),
            "notaulid/meta.json".to_string(),
            u.to_string(),
            format!("{u}/a/b/c"),
            format!("{u}/./x"),
        ] {
            assert!(check_name(&bad).is_err(), "{bad}");
        }
    }
}
