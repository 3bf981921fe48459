//! Completed head chunks, moved out of the heap into files under
//! `<data>/chunks_head/`, as Prometheus's m-mapped head chunks are; and the finished
//! part of each open chunk, so that the heap holds only the few bytes still changing.
//!
//! Once a chunk is cut, nothing is appended to it again; keeping it on the heap would
//! make resident memory grow with the head's time span. Here it is written with
//! `pwrite(2)` and read back through a read-only memory map, so it costs page cache
//! (which the kernel can drop) rather than resident heap, and a query pays no
//! syscall per chunk.
//!
//! An open chunk gets a [`ChunkSlot`]: space reserved in a file, sized for the whole
//! chunk, into which its finished bytes are written as they accumulate. When the
//! chunk is cut, its last bytes and its final header go into the slot, which then *is*
//! the closed chunk: nothing is copied. With a million series, the open chunks are
//! most of the head's data; this keeps them off the heap.
//!
//! The files outlive the process: a head image (see `image`) names the chunks and
//! open-chunk slots it holds by [`DiskChunkRef`], and start-up keeps the files the
//! image it loads refers to ([`HeadChunkFiles::open_existing`]) and removes the rest.
//! Without an image the directory is emptied and WAL replay writes the chunks again.
//! New chunks always go to a new file, numbered after every file found.
//!
//! A file leaves the head once every chunk in it is older than the head's minimum time
//! and no open chunk has a slot in it ([`HeadChunkFiles::truncate_before`]), but it is
//! only *retired* then: images taken before that still refer to it, so it is deleted
//! from disk only once no image that start-up may load was taken before it was retired
//! ([`HeadChunkFiles::delete_retired`]).
//!
//! File layout: `chunks_head/NNNNNN` (six or more decimal digits), raw chunk bytes back
//! to back (slots leave their unused tail as zeros); a [`DiskChunkRef`] names the file,
//! the offset and the length. Other names in the directory (the images) are left alone.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::num::NonZeroU32;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use memmap2::{Mmap, MmapOptions};
use parking_lot::{Mutex, RwLock};

/// The largest file; a new one is started past it. Each file is mapped at this size
/// up front (mapping beyond the end of a file is allowed; only reserved bytes, which
/// the file's length always covers, are read).
const FILE_BYTES: u64 = 128 << 20;

/// Files are lengthened in steps of this size as space in them is reserved.
const GROW_STEP: u64 = 1 << 20;

/// Where a chunk's bytes lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskChunkRef {
    pub file: u32,
    pub offset: u32,
    pub len: u32,
}

/// Space reserved in a head chunk file for an open chunk, filled front to back.
/// Truncation is told which files hold open slots (see
/// [`HeadChunkFiles::truncate_before`]) rather than each slot counting itself in its
/// file: a slot is part of every series, and 16 bytes is all it needs.
#[derive(Debug)]
pub struct ChunkSlot {
    file: u32,
    offset: u32,
    /// Never zero, which lets `Option<ChunkSlot>` use it as its tag.
    cap: NonZeroU32,
    /// Bytes written so far.
    len: u32,
}

impl ChunkSlot {
    /// Bytes written into the slot so far.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file the slot lies in.
    pub fn file(&self) -> u32 {
        self.file
    }

    /// What a head image keeps of the slot: its bytes so far, and its capacity.
    pub fn image_ref(&self) -> (DiskChunkRef, u32) {
        (
            DiskChunkRef {
                file: self.file,
                offset: self.offset,
                len: self.len,
            },
            self.cap.get(),
        )
    }

    /// The slot a head image kept (see [`ChunkSlot::image_ref`]); appends go on
    /// after its bytes. `None` when they do not fit its capacity.
    pub fn restore(r: DiskChunkRef, cap: u32) -> Option<ChunkSlot> {
        let cap = NonZeroU32::new(cap)?;
        (r.len <= cap.get()).then_some(ChunkSlot {
            file: r.file,
            offset: r.offset,
            cap,
            len: r.len,
        })
    }
}

struct MappedFile {
    file: File,
    map: Mmap,
    /// Bytes reserved so far; reads beyond are refused. The file is at least this long.
    reserved: AtomicU64,
    /// Newest sample time of any closed chunk in the file.
    max_t: AtomicI64,
}

struct Writer {
    /// The file space is reserved in, its reserved size and its length on disk.
    current: Option<u32>,
    size: u64,
    file_len: u64,
    next_seq: u32,
}

pub struct HeadChunkFiles {
    dir: PathBuf,
    /// Size at which a new file is started ([`FILE_BYTES`] outside tests).
    file_bytes: u64,
    writer: Mutex<Writer>,
    files: RwLock<BTreeMap<u32, MappedFile>>,
    /// Files truncation took out of the head but left on disk, each with the number
    /// of image captures begun before it was retired.
    retired: Mutex<Vec<(u32, u64)>>,
    /// Image captures begun (see [`HeadChunkFiles::begin_capture`]).
    captures: AtomicU64,
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The file number of a chunk file name (`NNNNNN`), `None` for other names.
fn file_seq(name: &str) -> Option<u32> {
    (name.len() >= 6 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

impl HeadChunkFiles {
    /// Opens `dir`, removing the chunk files a previous run left there.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::open_with_file_bytes(dir, FILE_BYTES)
    }

    fn open_with_file_bytes(dir: &Path, file_bytes: u64) -> std::io::Result<Self> {
        let files = Self::open_existing_with_file_bytes(dir, file_bytes)?;
        files.retain_only(&std::collections::HashSet::new())?;
        Ok(files)
    }

    /// Opens `dir` keeping the chunk files found there, readable through the
    /// references an image holds; new chunks go to a file numbered after them.
    /// [`HeadChunkFiles::retain_only`] then removes those the image does not name.
    pub fn open_existing(dir: &Path) -> std::io::Result<Self> {
        Self::open_existing_with_file_bytes(dir, FILE_BYTES)
    }

    fn open_existing_with_file_bytes(dir: &Path, file_bytes: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let Some(seq) = entry.file_name().to_str().and_then(file_seq) else {
                continue;
            };
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())?;
            let len = file.metadata()?.len();
            // SAFETY: as in `reserve`: private to this process, never shortened while
            // mapped, and only bytes within its length (`reserved`) are read.
            let map = unsafe {
                MmapOptions::new()
                    .len(file_bytes.max(len) as usize)
                    .map(&file)?
            };
            files.insert(
                seq,
                MappedFile {
                    file,
                    map,
                    reserved: AtomicU64::new(len),
                    max_t: AtomicI64::new(i64::MIN),
                },
            );
        }
        let next_seq = files.keys().next_back().map_or(1, |s| s + 1);
        Ok(Self {
            dir: dir.to_path_buf(),
            file_bytes,
            writer: Mutex::new(Writer {
                current: None,
                size: 0,
                file_len: 0,
                next_seq,
            }),
            files: RwLock::new(files),
            retired: Mutex::new(Vec::new()),
            captures: AtomicU64::new(0),
        })
    }

    /// Removes every chunk file not in `keep` (from the head and from disk).
    pub fn retain_only(&self, keep: &std::collections::HashSet<u32>) -> std::io::Result<()> {
        let mut files = self.files.write();
        let doomed: Vec<u32> = files
            .keys()
            .filter(|s| !keep.contains(s))
            .copied()
            .collect();
        for seq in &doomed {
            files.remove(seq);
            fs::remove_file(self.path(*seq))?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, seq: u32) -> PathBuf {
        self.dir.join(format!("{seq:06}"))
    }

    /// Records that a chunk ending at `max_t` lies in `file` (for truncation, when
    /// an image brings chunks back).
    pub fn note_max_t(&self, file: u32, max_t: i64) {
        if let Some(f) = self.files.read().get(&file) {
            f.max_t.fetch_max(max_t, Ordering::AcqRel);
        }
    }

    /// The bytes of `file` that references may point into.
    pub fn reserved_len(&self, file: u32) -> Option<u64> {
        self.files
            .read()
            .get(&file)
            .map(|f| f.reserved.load(Ordering::Acquire))
    }

    /// Whether `r` lies within a file of the head: the check an image's reference
    /// must pass before a chunk is rebuilt from it.
    pub fn contains(&self, r: DiskChunkRef) -> bool {
        let end = u64::from(r.offset) + u64::from(r.len);
        self.files
            .read()
            .get(&r.file)
            .is_some_and(|f| end <= f.reserved.load(Ordering::Acquire))
    }

    /// Begins an image capture and returns its number: files retired from now on
    /// may still be named by that image. Called with the head's writers held off.
    pub fn begin_capture(&self) -> u64 {
        self.captures.fetch_add(1, Ordering::AcqRel)
    }

    /// Deletes the retired files that no image from capture `capture` on can name
    /// (those retired before it began); returns how many.
    pub fn delete_retired(&self, capture: u64) -> usize {
        let doomed: Vec<u32> = {
            let mut retired = self.retired.lock();
            let (gone, kept): (Vec<_>, Vec<_>) = retired.drain(..).partition(|r| r.1 <= capture);
            *retired = kept;
            gone.into_iter().map(|r| r.0).collect()
        };
        for &seq in &doomed {
            let path = self.path(seq);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove head chunk file");
            }
        }
        doomed.len()
    }

    /// Makes the files in `seqs` durable (before an image naming them is written).
    pub fn sync(&self, seqs: &std::collections::HashSet<u32>) -> std::io::Result<()> {
        let files = self.files.read();
        for seq in seqs {
            match files.get(seq) {
                Some(f) => f.file.sync_data()?,
                None => File::open(self.path(*seq))?.sync_data()?,
            }
        }
        drop(files);
        sync_dir(&self.dir)
    }

    /// Reserves `len` bytes at the end of the current file (starting a new file when
    /// they do not fit) and returns the file and offset.
    fn reserve(&self, len: u32) -> std::io::Result<(u32, u64)> {
        let mut w = self.writer.lock();
        let need = u64::from(len);
        if w.current.is_none() || w.size + need > self.file_bytes {
            let seq = w.next_seq;
            let path = self.dir.join(format!("{seq:06}"));
            let file = fs::OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)?;
            // SAFETY: the file is private to this process (under the locked data
            // directory) and never shortened while mapped; only reserved bytes, which
            // lie within the file's length, are ever read through the map.
            let map = unsafe {
                MmapOptions::new()
                    .len(self.file_bytes.max(need) as usize)
                    .map(&file)?
            };
            self.files.write().insert(
                seq,
                MappedFile {
                    file,
                    map,
                    reserved: AtomicU64::new(0),
                    max_t: AtomicI64::new(i64::MIN),
                },
            );
            w.current = Some(seq);
            w.size = 0;
            w.file_len = 0;
            w.next_seq += 1;
        }
        let seq = w.current.unwrap_or_default();
        let offset = w.size;
        let end = offset + need;
        let files = self.files.read();
        let f = files
            .get(&seq)
            .ok_or_else(|| std::io::Error::other("head chunk file vanished"))?;
        if end > w.file_len {
            // Lengthen ahead of the writes so that every reserved byte is inside the
            // file: reading a mapped page past the end of a file is a SIGBUS.
            let new_len = end
                .next_multiple_of(GROW_STEP)
                .min(self.file_bytes.max(end));
            f.file.set_len(new_len)?;
            w.file_len = new_len;
        }
        w.size = end;
        f.reserved.store(end, Ordering::Release);
        Ok((seq, offset))
    }

    /// Writes a completed chunk whose newest sample is at `max_t`.
    pub fn write(&self, bytes: &[u8], max_t: i64) -> std::io::Result<DiskChunkRef> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| std::io::Error::other("chunk larger than 4 GiB"))?;
        let (file, offset) = self.reserve(len)?;
        let files = self.files.read();
        let f = files
            .get(&file)
            .ok_or_else(|| std::io::Error::other("head chunk file vanished"))?;
        f.file.write_all_at(bytes, offset)?;
        f.max_t.fetch_max(max_t, Ordering::AcqRel);
        Ok(DiskChunkRef {
            file,
            offset: offset as u32,
            len,
        })
    }

    /// Reserves a slot of `cap` bytes for an open chunk.
    pub fn reserve_slot(&self, cap: usize) -> std::io::Result<ChunkSlot> {
        let cap = u32::try_from(cap)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| std::io::Error::other("slot size out of range"))?;
        let (file, offset) = self.reserve(cap.get())?;
        Ok(ChunkSlot {
            file,
            offset: offset as u32,
            cap,
            len: 0,
        })
    }

    /// Appends `bytes` to the slot. A slot that is too small moves to a new one twice
    /// its size (or more), taking what it held along.
    pub fn append_to_slot(&self, slot: &mut ChunkSlot, bytes: &[u8]) -> std::io::Result<()> {
        let n = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("too large"))?;
        if slot.len + n > slot.cap.get() {
            let held = self
                .read_slot(slot)
                .ok_or_else(|| std::io::Error::other("head chunk slot unreadable"))?;
            let want = (slot.cap.get().saturating_mul(2))
                .max(slot.len + n)
                .next_multiple_of(64);
            let mut moved = self.reserve_slot(want as usize)?;
            self.append_to_slot(&mut moved, &held)?;
            *slot = moved;
        }
        let files = self.files.read();
        let f = files
            .get(&slot.file)
            .ok_or_else(|| std::io::Error::other("head chunk file vanished"))?;
        f.file
            .write_all_at(bytes, u64::from(slot.offset) + u64::from(slot.len))?;
        slot.len += n;
        Ok(())
    }

    /// Overwrites the slot's first bytes with `head` (the chunk's final header),
    /// appends `tail`, and makes the slot's bytes a closed chunk whose newest sample is
    /// at `max_t`. The slot itself can then be dropped.
    pub fn close_slot(
        &self,
        slot: &mut ChunkSlot,
        head: &[u8],
        tail: &[u8],
        max_t: i64,
    ) -> std::io::Result<DiskChunkRef> {
        if head.len() > slot.len() {
            return Err(std::io::Error::other("slot shorter than the chunk header"));
        }
        // The header first: if appending the tail fails, the slot's length is
        // unchanged and its bytes can still be read as they were.
        self.files
            .read()
            .get(&slot.file)
            .ok_or_else(|| std::io::Error::other("head chunk file vanished"))?
            .file
            .write_all_at(head, u64::from(slot.offset))?;
        self.append_to_slot(slot, tail)?;
        if let Some(f) = self.files.read().get(&slot.file) {
            f.max_t.fetch_max(max_t, Ordering::AcqRel);
        }
        Ok(DiskChunkRef {
            file: slot.file,
            offset: slot.offset,
            len: slot.len,
        })
    }

    /// Copies what a slot holds so far.
    pub fn read_slot(&self, slot: &ChunkSlot) -> Option<Vec<u8>> {
        self.read(DiskChunkRef {
            file: slot.file,
            offset: slot.offset,
            len: slot.len,
        })
    }

    /// Copies a chunk's bytes out of its file.
    pub fn read(&self, r: DiskChunkRef) -> Option<Vec<u8>> {
        let files = self.files.read();
        let f = files.get(&r.file)?;
        let start = r.offset as usize;
        let end = start.checked_add(r.len as usize)?;
        if end as u64 > f.reserved.load(Ordering::Acquire) {
            return None;
        }
        f.map.get(start..end).map(<[u8]>::to_vec)
    }

    /// Retires every file whose chunks all end before `min_t`, except the one space is
    /// reserved in and those for which `holds_open_slot` says an open chunk's slot lies
    /// there: it leaves the head at once and the disk once no image needs it (see
    /// [`HeadChunkFiles::delete_retired`]). The caller must keep new slots from being reserved meanwhile (they would
    /// only go to the current file, which is kept anyway).
    pub fn truncate_before(&self, min_t: i64, holds_open_slot: impl Fn(u32) -> bool) {
        let current = self.writer.lock().current;
        let mut files = self.files.write();
        let doomed: Vec<u32> = files
            .iter()
            .filter(|(seq, f)| {
                Some(**seq) != current
                    && f.max_t.load(Ordering::Acquire) < min_t
                    && !holds_open_slot(**seq)
            })
            .map(|(seq, _)| *seq)
            .collect();
        let generation = self.captures.load(Ordering::Acquire);
        let mut retired = self.retired.lock();
        for seq in doomed {
            files.remove(&seq);
            retired.push((seq, generation));
        }
    }

    /// Bytes reserved in files, for metrics.
    pub fn size_bytes(&self) -> u64 {
        self.files
            .read()
            .values()
            .map(|f| f.reserved.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(&dir.path().join("chunks_head")).unwrap();
        let a = files.write(b"first chunk", 10).unwrap();
        let b = files.write(b"second", 20).unwrap();
        assert_eq!(files.read(a).unwrap(), b"first chunk");
        assert_eq!(files.read(b).unwrap(), b"second");
        assert!(
            files
                .read(DiskChunkRef {
                    file: a.file,
                    offset: 100,
                    len: 5
                })
                .is_none()
        );
        // The file being written is never deleted.
        files.truncate_before(100, |_| false);
        assert_eq!(files.read(a).unwrap(), b"first chunk");
    }

    #[test]
    fn truncation_deletes_files_whose_chunks_are_all_older() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open_with_file_bytes(dir.path(), 16).unwrap();
        // 10 bytes per chunk, 16-byte files: one chunk per file.
        let refs: Vec<DiskChunkRef> = (0..4)
            .map(|i| files.write(&[i as u8; 10], i * 100).unwrap())
            .collect();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
        files.truncate_before(150, |_| false);
        // Files holding chunks ending at 0 and 100 leave the head at once, and the
        // disk once no image can name them; 200 and 300 stay.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
        let capture = files.begin_capture();
        assert_eq!(files.delete_retired(capture), 2);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        assert!(files.read(refs[0]).is_none());
        assert!(files.read(refs[1]).is_none());
        assert_eq!(files.read(refs[2]).unwrap(), vec![2u8; 10]);
        assert_eq!(files.read(refs[3]).unwrap(), vec![3u8; 10]);
    }

    #[test]
    fn slots_fill_grow_and_close_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open(dir.path()).unwrap();
        let mut slot = files.reserve_slot(8).unwrap();
        files.append_to_slot(&mut slot, b"hd1234").unwrap();
        assert_eq!(files.read_slot(&slot).unwrap(), b"hd1234");
        // A chunk written meanwhile lands after the slot's reserved space.
        let other = files.write(b"other", 5).unwrap();
        // Outgrowing the slot moves it, with what it held.
        files.append_to_slot(&mut slot, b"5678").unwrap();
        assert_eq!(files.read_slot(&slot).unwrap(), b"hd12345678");
        let r = files.close_slot(&mut slot, b"HD", b"9", 50).unwrap();
        assert_eq!(files.read(r).unwrap(), b"HD123456789");
        assert_eq!(files.read(other).unwrap(), b"other");
    }

    #[test]
    fn a_file_holding_an_open_slot_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open_with_file_bytes(dir.path(), 16).unwrap();
        let mut slot = files.reserve_slot(16).unwrap();
        files.append_to_slot(&mut slot, b"open").unwrap();
        // A second file becomes current; the first holds only the open slot.
        files.write(&[1; 10], 1000).unwrap();
        files.truncate_before(100, |f| f == slot.file());
        assert_eq!(files.read_slot(&slot).unwrap(), b"open");
        files.truncate_before(100, |_| false);
        files.delete_retired(files.begin_capture());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_retired_file_stays_while_an_image_taken_before_may_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open_with_file_bytes(dir.path(), 16).unwrap();
        let old = files.write(&[1; 10], 100).unwrap();
        files.write(&[2; 10], 1000).unwrap();
        // Image A is captured while the old chunk is in the head; then the head is
        // truncated past it, and image B is captured.
        let a = files.begin_capture();
        files.truncate_before(500, |_| false);
        assert!(files.read(old).is_none(), "out of the head at once");
        let b = files.begin_capture();
        // B is durable; A is kept as the fallback and still names the file.
        assert_eq!(files.delete_retired(a), 0);
        assert!(dir.path().join(format!("{:06}", old.file)).exists());
        // C is durable; B is the fallback now, and B was taken after the retirement.
        files.begin_capture();
        assert_eq!(files.delete_retired(b), 1);
        assert!(!dir.path().join(format!("{:06}", old.file)).exists());
    }

    #[test]
    fn open_existing_keeps_files_and_numbers_new_ones_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = HeadChunkFiles::open_with_file_bytes(dir.path(), 16).unwrap();
        let a = files.write(b"kept chunk", 10).unwrap();
        let b = files.write(b"dropped", 20).unwrap();
        fs::write(dir.path().join("snapshot.00000001"), b"not a chunk file").unwrap();
        drop(files);
        let files = HeadChunkFiles::open_existing_with_file_bytes(dir.path(), 16).unwrap();
        assert_eq!(files.read(a).unwrap(), b"kept chunk");
        files
            .retain_only(&std::collections::HashSet::from([a.file]))
            .unwrap();
        assert!(files.read(b).is_none());
        assert!(dir.path().join("snapshot.00000001").exists());
        let c = files.write(b"new", 30).unwrap();
        assert!(c.file > b.file, "new chunks go to a new file");
        assert_eq!(files.read(a).unwrap(), b"kept chunk");
    }

    #[test]
    fn reopening_clears_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks_head");
        let files = HeadChunkFiles::open(&path).unwrap();
        files.write(b"x", 1).unwrap();
        drop(files);
        let _files = HeadChunkFiles::open(&path).unwrap();
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
    }
}
