//! Completed head chunks, moved out of the heap into files under
//! `<data>/chunks_head/`, as Prometheus's m-mapped head chunks are.
//!
//! Once a chunk is cut, nothing is appended to it again; keeping it on the heap would
//! make resident memory grow with the head's time span. Here it is written with
//! `write(2)` and read back through a read-only memory map, so it costs page cache
//! (which the kernel can drop) rather than resident heap, and a query pays no
//! syscall per chunk.
//!
//! The files are not a durable record: the WAL is. At start-up the directory is
//! emptied and WAL replay writes the chunks again. A file is deleted once every chunk
//! in it is older than the head's minimum time.
//!
//! File layout: raw chunk bytes back to back; a [`DiskChunkRef`] names the file, the
//! offset and the length.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};
use parking_lot::{Mutex, RwLock};

/// The largest file; a new one is started past it. Each file is mapped at this size
/// up front (mapping beyond the end of a file is allowed; only written bytes are read).
const FILE_BYTES: u64 = 128 << 20;

/// Where a chunk's bytes lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskChunkRef {
    pub file: u32,
    pub offset: u32,
    pub len: u32,
}

struct MappedFile {
    map: Mmap,
    /// Bytes written so far; reads beyond are refused.
    written: u64,
    /// Newest sample time of any chunk in the file.
    max_t: i64,
}

struct Writer {
    file: Option<(u32, File)>,
    size: u64,
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
                file: None,
                size: 0,
                next_seq: 1,
            }),
            files: RwLock::new(BTreeMap::new()),
        })
    }

    /// Writes a completed chunk whose newest sample is at `max_t`.
    pub fn write(&self, bytes: &[u8], max_t: i64) -> std::io::Result<DiskChunkRef> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| std::io::Error::other("chunk larger than 4 GiB"))?;
        let mut w = self.writer.lock();
        if w.file.is_none() || w.size + u64::from(len) > self.file_bytes {
            let seq = w.next_seq;
            let path = self.dir.join(format!("{seq:06}"));
            let file = fs::OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)?;
            // SAFETY: the file is private to this process (under the locked data
            // directory) and never truncated while mapped; only bytes already written
            // are ever read through the map.
            let map = unsafe {
                MmapOptions::new()
                    .len(self.file_bytes.max(u64::from(len)) as usize)
                    .map(&file)?
            };
            self.files.write().insert(
                seq,
                MappedFile {
                    map,
                    written: 0,
                    max_t: i64::MIN,
                },
            );
            w.file = Some((seq, file));
            w.size = 0;
            w.next_seq += 1;
        }
        let offset = w.size;
        let Some((seq, file)) = w.file.as_mut() else {
            return Err(std::io::Error::other("no head chunk file open"));
        };
        let seq = *seq;
        file.write_all(bytes)?;
        w.size += u64::from(len);
        if let Some(f) = self.files.write().get_mut(&seq) {
            f.written = w.size;
            f.max_t = f.max_t.max(max_t);
        }
        Ok(DiskChunkRef {
            file: seq,
            offset: offset as u32,
            len,
        })
    }

    /// Copies a chunk's bytes out of its file.
    pub fn read(&self, r: DiskChunkRef) -> Option<Vec<u8>> {
        let files = self.files.read();
        let f = files.get(&r.file)?;
        let start = r.offset as usize;
        let end = start.checked_add(r.len as usize)?;
        if end as u64 > f.written {
            return None;
        }
        f.map.get(start..end).map(<[u8]>::to_vec)
    }

    /// Deletes every file whose chunks all end before `min_t`, except the one being
    /// written.
    pub fn truncate_before(&self, min_t: i64) {
        let current = self.writer.lock().file.as_ref().map(|(s, _)| *s);
        let mut files = self.files.write();
        let doomed: Vec<u32> = files
            .iter()
            .filter(|(seq, f)| Some(**seq) != current && f.max_t < min_t)
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

    /// Bytes in files, for metrics.
    pub fn size_bytes(&self) -> u64 {
        self.files.read().values().map(|f| f.written).sum()
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
        files.truncate_before(100);
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
        files.truncate_before(150);
        // Files holding chunks ending at 0 and 100 go; 200 and 300 stay.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        assert!(files.read(refs[0]).is_none());
        assert!(files.read(refs[1]).is_none());
        assert_eq!(files.read(refs[2]).unwrap(), vec![2u8; 10]);
        assert_eq!(files.read(refs[3]).unwrap(), vec![3u8; 10]);
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
