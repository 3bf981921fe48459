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
//! The files are not a durable record: the WAL is. At start-up the directory is
//! emptied and WAL replay writes the chunks again. A file is deleted once every chunk
//! in it is older than the head's minimum time and no open chunk has a slot in it.
//!
//! File layout: raw chunk bytes back to back (slots leave their unused tail as zeros);
//! a [`DiskChunkRef`] names the file, the offset and the length.

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
}

impl HeadChunkFiles {
    /// Opens `dir`, removing whatever a previous run left there.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::open_with_file_bytes(dir, FILE_BYTES)
    }

    fn open_with_file_bytes(dir: &Path, file_bytes: u64) -> std::io::Result<Self> {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file_bytes,
            writer: Mutex::new(Writer {
                current: None,
                size: 0,
                file_len: 0,
                next_seq: 1,
            }),
            files: RwLock::new(BTreeMap::new()),
        })
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

    /// Deletes every file whose chunks all end before `min_t`, except the one space is
    /// reserved in and those for which `holds_open_slot` says an open chunk's slot lies
    /// there. The caller must keep new slots from being reserved meanwhile (they would
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
        for seq in doomed {
            files.remove(&seq);
            let path = self.dir.join(format!("{seq:06}"));
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove head chunk file");
            }
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
        // Files holding chunks ending at 0 and 100 go; 200 and 300 stay.
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
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
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
