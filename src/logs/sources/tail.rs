//! Following one file as Promtail does: from its start the first time it is seen,
//! through appends, rotation by rename (the old file is read to its end, then the
//! new one from its start) and truncation (read again from the start).
//!
//! What was read is not what is durable: a tail keeps the position the log last
//! made durable (`committed`, applied from a log entry, see
//! `LogBatch::positions`) apart from how far it has read. A push that fails rewinds
//! the tail to `committed`, and the lines are read again; a restart starts from
//! `committed` too. So no line is lost and none is sent twice.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The most a tail reads of a file in one round.
const MAX_READ: u64 = 4 << 20;

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Where a tail stands in its file, as a source position: `dev:ino:offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePosition {
    pub id: FileId,
    pub offset: u64,
}

impl FilePosition {
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.id.dev, self.id.ino, self.offset)
    }

    pub fn decode(text: &str) -> Option<FilePosition> {
        let mut it = text.split(':').map(|p| p.parse::<u64>().ok());
        let (Some(Some(dev)), Some(Some(ino)), Some(Some(offset)), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        Some(FilePosition {
            id: FileId { dev, ino },
            offset,
        })
    }
}

/// A complete line read from a file, and where the file stands after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadLine {
    pub text: String,
    pub after: FilePosition,
}

/// One followed file.
pub struct Tail {
    path: PathBuf,
    /// The open file and its identity; `None` until the file exists.
    open: Option<(File, FileId)>,
    /// Where the log stands: the position the last applied entry names.
    committed: Option<FilePosition>,
    /// How far the open file has been read (complete lines and `partial`).
    read_to: u64,
    /// Bytes after the last complete line.
    partial: Vec<u8>,
}

impl Tail {
    /// A tail of `path`, resuming at `committed` when it names the file found there.
    pub fn new(path: PathBuf, committed: Option<FilePosition>) -> Tail {
        Tail {
            path,
            open: None,
            committed,
            read_to: 0,
            partial: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position the log made durable.
    pub fn committed(&self) -> Option<FilePosition> {
        self.committed
    }

    /// The lines were made durable up to `position`.
    pub fn commit(&mut self, position: FilePosition) {
        self.committed = Some(position);
    }

    /// A push failed: what was read after the committed position is read again.
    pub fn rewind(&mut self) {
        self.open = None;
        self.partial.clear();
        self.read_to = 0;
    }

    /// The complete lines appended since the last read (at most [`MAX_READ`] bytes'
    /// worth), following rotation and truncation.
    pub fn read(&mut self) -> std::io::Result<Vec<ReadLine>> {
        let mut out = Vec::new();
        let found = match std::fs::metadata(&self.path) {
            Ok(m) => Some((
                FileId {
                    dev: m.dev(),
                    ino: m.ino(),
                },
                m.len(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some((_, id)) = &self.open
            && found.is_none_or(|(now, _)| now != *id)
        {
            // Renamed away (or deleted): what the old file still holds comes first.
            let id = *id;
            self.read_open(id, &mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
            self.open = None;
            self.partial.clear();
        }
        let Some((id, len)) = found else {
            return Ok(out);
        };
        if self.open.is_none() {
            let mut file = File::open(&self.path)?;
            let start = match self.committed {
                Some(p) if p.id == id && p.offset <= len => p.offset,
                _ => 0,
            };
            file.seek(SeekFrom::Start(start))?;
            self.open = Some((file, id));
            self.read_to = start;
            self.partial.clear();
        } else if len < self.read_to {
            // Truncated in place: from the start again.
            if let Some((file, _)) = &mut self.open {
                file.seek(SeekFrom::Start(0))?;
            }
            self.read_to = 0;
            self.partial.clear();
        }
        self.read_open(id, &mut out)?;
        Ok(out)
    }

    /// Reads the open file to its end (or [`MAX_READ`]) and cuts complete lines.
    fn read_open(&mut self, id: FileId, out: &mut Vec<ReadLine>) -> std::io::Result<()> {
        let Some((file, _)) = &mut self.open else {
            return Ok(());
        };
        let mut buf = Vec::new();
        file.take(MAX_READ).read_to_end(&mut buf)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.read_to += buf.len() as u64;
        let mut offset = self.read_to - buf.len() as u64 - self.partial.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut rest: &[u8] = &self.partial;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..nl];
            offset += nl as u64 + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.push(ReadLine {
                text: String::from_utf8_lossy(line).into_owned(),
                after: FilePosition { id, offset },
            });
            rest = &rest[nl + 1..];
        }
        let kept = rest.len();
        let cut = self.partial.len() - kept;
        self.partial.drain(..cut);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn texts(lines: &[ReadLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn appends_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut tail = Tail::new(path.clone(), None);
        assert!(tail.read().unwrap().is_empty());
        append(&path, "one\ntwo\r\nthr");
        let got = tail.read().unwrap();
        assert_eq!(texts(&got), ["one", "two"]);
        assert_eq!(got[1].after.offset, 9);
        append(&path, "ee\n");
        assert_eq!(texts(&tail.read().unwrap()), ["three"]);
        // Rotation by rename: the old file's last lines, then the new file's.
        append(&path, "last of old\n");
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        append(&path, "first of new\n");
        assert_eq!(texts(&tail.read().unwrap()), ["last of old"]);
        assert_eq!(texts(&tail.read().unwrap()), ["first of new"]);
        // Truncation: from the start again.
        std::fs::write(&path, "").unwrap();
        assert!(tail.read().unwrap().is_empty());
        append(&path, "after truncation\n");
        assert_eq!(texts(&tail.read().unwrap()), ["after truncation"]);
    }

    #[test]
    fn a_tail_resumes_at_its_committed_position_and_rewinds_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "a\nb\nc\n");
        let mut tail = Tail::new(path.clone(), None);
        let got = tail.read().unwrap();
        tail.commit(got[1].after);
        // The push of `c` failed: it is read again.
        tail.rewind();
        assert_eq!(texts(&tail.read().unwrap()), ["c"]);
        // A new tail from the committed position (a restart) reads only `c`.
        let pos = FilePosition::decode(&got[1].after.encode()).unwrap();
        let mut again = Tail::new(path.clone(), Some(pos));
        assert_eq!(texts(&again.read().unwrap()), ["c"]);
        // A position naming another file (rotated while stopped) starts over.
        std::fs::remove_file(&path).unwrap();
        append(&path, "new\n");
        let mut other = Tail::new(path, Some(pos));
        assert_eq!(texts(&other.read().unwrap()), ["new"]);
        assert!(FilePosition::decode("1:2").is_none());
        assert!(FilePosition::decode("1:2:3:4").is_none());
    }
}
