//! The `tombstones` file of a block: deleted time ranges per series.
//!
//! ```text
//! magic 0x0130BA30 <4b> | version 1 <1b>
//! | (series id <uvarint> | mint <varint> | maxt <varint>)...
//! | crc32c <4b>   (over the entries only, not the magic or the version byte)
//! ```
//!
//! An empty file (no entries) is 9 bytes; Prometheus writes one for every block.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use super::{BlockError, fsync_dir};
use crate::model::Interval;
use crate::tsdb::index::encoding::{Decbuf, DecodeError, Encbuf, crc32};

/// Deleted intervals by series ID; each list sorted, non-overlapping and with
/// adjacent intervals merged.
pub type Tombstones = BTreeMap<u64, Vec<Interval>>;

pub const TOMBSTONES_FILENAME: &str = "tombstones";
pub const MAGIC_TOMBSTONE: u32 = 0x0130_BA30;
const TOMBSTONE_FORMAT_V1: u8 = 1;

/// Adds `n` to a sorted interval list, merging it with overlapping or adjacent
/// intervals (timestamps are discrete, so `[1,2]` and `[3,4]` become `[1,4]`), the
/// way Prometheus's `Intervals.Add` does.
pub fn add_interval(list: &mut Vec<Interval>, n: Interval) {
    // First interval that ends at or after n.min_t - 1 may merge.
    let lo = list.partition_point(|iv| iv.max_t.saturating_add(1) < n.min_t);
    // First interval starting after n.max_t + 1 cannot.
    let hi = list.partition_point(|iv| iv.min_t <= n.max_t.saturating_add(1));
    if lo >= hi {
        list.insert(lo, n);
        return;
    }
    let merged = Interval::new(n.min_t.min(list[lo].min_t), n.max_t.max(list[hi - 1].max_t));
    list.splice(lo..hi, [merged]);
}

/// Total number of intervals.
pub fn count(t: &Tombstones) -> u64 {
    t.values().map(|v| v.len() as u64).sum()
}

/// Reads `dir/tombstones`; a missing file means no tombstones (as in Prometheus).
pub fn read_tombstones(dir: &Path) -> Result<Tombstones, BlockError> {
    let path = dir.join(TOMBSTONES_FILENAME);
    let b = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tombstones::new()),
        Err(e) => return Err(BlockError::io(format!("read {}", path.display()), e)),
    };
    let corrupt = |what: String| BlockError::Corrupt(format!("{}: {what}", path.display()));
    if b.len() < 4 + 1 + 4 {
        return Err(corrupt(format!("{} bytes is too short", b.len())));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != MAGIC_TOMBSTONE {
        return Err(corrupt(format!("invalid magic number {magic:08x}")));
    }
    if b[4] != TOMBSTONE_FORMAT_V1 {
        return Err(corrupt(format!(
            "invalid tombstone format version {}",
            b[4]
        )));
    }
    let (body, crc) = b[5..].split_at(b.len() - 9);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32(body) != stored {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut t = Tombstones::new();
    let mut d = Decbuf::new(body);
    while !d.is_empty() {
        let (id, min_t, max_t) =
            decode_entry(&mut d).map_err(|e| corrupt(format!("entry: {e}")))?;
        add_interval(t.entry(id).or_default(), Interval::new(min_t, max_t));
    }
    Ok(t)
}

fn decode_entry(d: &mut Decbuf<'_>) -> Result<(u64, i64, i64), DecodeError> {
    Ok((d.uvarint()?, d.varint()?, d.varint()?))
}

/// Writes `dir/tombstones` atomically (temporary file, fsync, rename, directory
/// fsync) and returns its size in bytes.
pub fn write_tombstones(dir: &Path, t: &Tombstones) -> Result<u64, BlockError> {
    let path = dir.join(TOMBSTONES_FILENAME);
    let tmp = dir.join(format!("{TOMBSTONES_FILENAME}.tmp"));
    let mut body = Encbuf::new();
    for (id, ivs) in t {
        for iv in ivs {
            body.put_uvarint(*id);
            body.put_varint(iv.min_t);
            body.put_varint(iv.max_t);
        }
    }
    let mut out = Encbuf::with_capacity(body.len() + 9);
    out.put_be32(MAGIC_TOMBSTONE);
    out.put_byte(TOMBSTONE_FORMAT_V1);
    out.put_bytes(body.get());
    out.put_be32(crc32(body.get()));

    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(out.get())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(BlockError::io(format!("write {}", path.display()), e));
    }
    fsync_dir(dir)?;
    Ok(out.len() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn iv(a: i64, b: i64) -> Interval {
        Interval::new(a, b)
    }

    #[test]
    fn add_interval_merges_like_prometheus() {
        let mut l = Vec::new();
        add_interval(&mut l, iv(10, 20));
        add_interval(&mut l, iv(30, 40));
        add_interval(&mut l, iv(0, 5));
        assert_eq!(l, vec![iv(0, 5), iv(10, 20), iv(30, 40)]);
        add_interval(&mut l, iv(21, 29)); // Adjacent on both sides.
        assert_eq!(l, vec![iv(0, 5), iv(10, 40)]);
        add_interval(&mut l, iv(7, 8));
        assert_eq!(l, vec![iv(0, 5), iv(7, 8), iv(10, 40)]);
        add_interval(&mut l, iv(i64::MIN, i64::MAX));
        assert_eq!(l, vec![iv(i64::MIN, i64::MAX)]);
        let mut l = vec![iv(0, 10)];
        add_interval(&mut l, iv(2, 3));
        assert_eq!(l, vec![iv(0, 10)]);
    }

    #[test]
    fn round_trip_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_tombstones(dir.path()).unwrap().is_empty(),
            "missing file"
        );

        let size = write_tombstones(dir.path(), &Tombstones::new()).unwrap();
        assert_eq!(size, 9);
        let raw = fs::read(dir.path().join(TOMBSTONES_FILENAME)).unwrap();
        assert_eq!(raw, [0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0]);
        assert!(read_tombstones(dir.path()).unwrap().is_empty());

        let mut t = Tombstones::new();
        t.insert(1, vec![iv(-100, -50), iv(0, 10)]);
        t.insert(1 << 40, vec![iv(i64::MIN, i64::MAX)]);
        let size = write_tombstones(dir.path(), &t).unwrap();
        assert_eq!(
            size,
            fs::metadata(dir.path().join(TOMBSTONES_FILENAME))
                .unwrap()
                .len()
        );
        assert_eq!(read_tombstones(dir.path()).unwrap(), t);
        assert_eq!(count(&t), 3);
        assert!(!dir.path().join("tombstones.tmp").exists());
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tombstones::new();
        t.insert(7, vec![iv(1, 2)]);
        write_tombstones(dir.path(), &t).unwrap();
        let path = dir.path().join(TOMBSTONES_FILENAME);
        let good = fs::read(&path).unwrap();
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(read_tombstones(dir.path()).is_err(), "len {len}");
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x10;
            fs::write(&path, &b).unwrap();
            assert!(read_tombstones(dir.path()).is_err(), "flip {i}");
        }
    }
}
