//! Memory-mapped index reader.
//!
//! At open the header, TOC, symbol table and postings offset table are validated
//! (checksums included) and the symbols and the postings offset table are decoded
//! into memory; series entries and postings lists are decoded, and their checksums
//! verified, on each access. A corrupt or truncated file yields
//! [`IndexError::Corrupt`], never a panic.

use arcstr::ArcStr;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::encoding::{Decbuf, DecodeError, crc32, read_uvarint};
use super::{
    ChunkMeta, INDEX_FORMAT_V2, INDEX_HEADER_LEN, INDEX_TOC_LEN, IndexError, MAGIC_INDEX,
    SERIES_ALIGNMENT,
};
use crate::model::{Label, Labels};

/// Reads an index file written by ODIN or Prometheus (format version 2).
pub struct IndexReader {
    path: PathBuf,
    map: Mmap,
    /// Decoded symbol table; label sets returned by [`IndexReader::series`] share
    /// these strings.
    symbols: Vec<ArcStr>,
    /// Label name -> (value, postings list offset), values sorted. Excludes the
    /// empty name that holds the all-series list.
    postings: BTreeMap<ArcStr, Vec<(ArcStr, u64)>>,
    /// Offset of the all-series postings list, when the index has one.
    all_postings: Option<u64>,
}

impl std::fmt::Debug for IndexReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader")
            .field("path", &self.path)
            .field("size", &self.map.len())
            .field("symbols", &self.symbols.len())
            .field("label_names", &self.postings.len())
            .finish()
    }
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt(format!("{}: {what}", path.display()))
}

/// The bytes of a `len <4b> | body | crc <4b>` section at `off`, checksum verified.
pub(crate) fn section_at<'a>(
    path: &Path,
    b: &'a [u8],
    off: u64,
    what: &str,
) -> Result<&'a [u8], IndexError> {
    let start = usize::try_from(off)
        .map_err(|_| corrupt(path, format!("{what} offset {off} out of range")))?;
    let len_bytes = b.get(start..).and_then(|s| s.get(..4)).ok_or_else(|| {
        corrupt(
            path,
            format!("{what} at offset {off}: length beyond end of file"),
        )
    })?;
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    let body_start = start + 4;
    let body = body_start
        .checked_add(len)
        .and_then(|end| Some((b.get(body_start..end)?, b.get(end..end.checked_add(4)?)?)));
    let (body, crc) = body.ok_or_else(|| {
        corrupt(
            path,
            format!("{what} at offset {off}: {len} bytes run past end of file"),
        )
    })?;
    check_crc(path, body, crc, what, off)?;
    Ok(body)
}

pub(crate) fn check_crc(
    path: &Path,
    body: &[u8],
    crc: &[u8],
    what: &str,
    off: u64,
) -> Result<(), IndexError> {
    let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let got = crc32(body);
    if got != want {
        return Err(corrupt(
            path,
            format!(
                "{what} at offset {off}: checksum mismatch (stored {want:08x}, computed {got:08x})"
            ),
        ));
    }
    Ok(())
}

impl IndexReader {
    /// Maps the index at `path` and validates its header, TOC, symbol table and
    /// postings offset table.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let file = File::open(path)
            .map_err(|e| IndexError::io(format!("open index {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| IndexError::io(format!("stat index {}", path.display()), e))?
            .len();
        if len < (INDEX_HEADER_LEN + INDEX_TOC_LEN) as u64 {
            return Err(corrupt(
                path,
                format!("file of {len} bytes is too short for an index"),
            ));
        }
        // SAFETY: the index is immutable once written (blocks are never modified in
        // place, only replaced by new directories), so the mapping does not change
        // under us.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| IndexError::io(format!("mmap index {}", path.display()), e))?;
        let b: &[u8] = &map;
        if b.len() < INDEX_HEADER_LEN + INDEX_TOC_LEN {
            return Err(corrupt(path, "file is too short for an index"));
        }

        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != MAGIC_INDEX {
            return Err(corrupt(path, format!("invalid magic number {magic:08x}")));
        }
        if b[4] != INDEX_FORMAT_V2 {
            return Err(corrupt(
                path,
                format!("unsupported index format version {}", b[4]),
            ));
        }

        let toc = parse_toc(
            path,
            &b[b.len() - INDEX_TOC_LEN..],
            (b.len() - INDEX_TOC_LEN) as u64,
        )?;
        // A zero offset is a section the writer left out.
        let symbols = match toc[0] {
            0 => Vec::new(),
            off => Self::read_symbols(path, b, off)?,
        };
        let (postings, all_postings) = match toc[5] {
            0 => (BTreeMap::new(), None),
            off => Self::read_postings_table(path, b, off, &symbols)?,
        };

        Ok(IndexReader {
            path: path.to_path_buf(),
            map,
            symbols,
            postings,
            all_postings,
        })
    }

    /// Decodes the symbol table whose section starts at `off` in `b` (the whole file,
    /// or a buffer fetched from a bucket with `off` rebased into it).
    pub(crate) fn read_symbols(path: &Path, b: &[u8], off: u64) -> Result<Vec<ArcStr>, IndexError> {
        let body = section_at(path, b, off, "symbol table")?;
        let err = |e: DecodeError| corrupt(path, format!("symbol table: {e}"));
        let mut d = Decbuf::new(body);
        let count = d.be32().map_err(err)? as usize;
        // Each symbol takes at least one byte, which bounds the allocation.
        let mut symbols: Vec<ArcStr> = Vec::with_capacity(count.min(d.len()));
        for _ in 0..count {
            let s = d.uvarint_str().map_err(err)?;
            symbols.push(ArcStr::from(s));
        }
        Ok(symbols)
    }

    /// The symbol equal to `s`, shared, if there is one; a fresh string otherwise.
    fn intern(symbols: &[ArcStr], s: &str) -> ArcStr {
        match symbols.binary_search_by(|x| (**x).cmp(s)) {
            Ok(i) => symbols[i].clone(),
            Err(_) => ArcStr::from(s),
        }
    }

    /// Decodes the postings offset table at `off` in `b` (as [`Self::read_symbols`]).
    #[allow(clippy::type_complexity)]
    pub(crate) fn read_postings_table(
        path: &Path,
        b: &[u8],
        off: u64,
        symbols: &[ArcStr],
    ) -> Result<(BTreeMap<ArcStr, Vec<(ArcStr, u64)>>, Option<u64>), IndexError> {
        let mut map: BTreeMap<ArcStr, Vec<(ArcStr, u64)>> = BTreeMap::new();
        let body = section_at(path, b, off, "postings offset table")?;
        let err = |e: DecodeError| corrupt(path, format!("postings offset table: {e}"));
        let mut d = Decbuf::new(body);
        let count = d.be32().map_err(err)?;
        let mut all = None;
        let mut last: Option<(&str, &str)> = None;
        for _ in 0..count {
            let keys = d.uvarint().map_err(err)?;
            if keys != 2 {
                return Err(corrupt(
                    path,
                    format!("postings offset table: entry with {keys} keys, expected 2"),
                ));
            }
            let name = d.uvarint_str().map_err(err)?;
            let value = d.uvarint_str().map_err(err)?;
            let offset = d.uvarint().map_err(err)?;
            if let Some(prev) = last.filter(|prev| (name, value) <= *prev) {
                return Err(corrupt(
                    path,
                    format!(
                        "postings offset table: entry {name:?}={value:?} is not sorted after {:?}={:?}",
                        prev.0, prev.1
                    ),
                ));
            }
            last = Some((name, value));
            if name.is_empty() {
                if value.is_empty() {
                    all = Some(offset);
                }
                continue;
            }
            match map.get_mut(name) {
                Some(values) => values.push((Self::intern(symbols, value), offset)),
                None => {
                    map.insert(
                        Self::intern(symbols, name),
                        vec![(Self::intern(symbols, value), offset)],
                    );
                }
            }
        }
        Ok((map, all))
    }

    /// The labels and chunk metas of series `id` (as returned by the writer or found
    /// in postings).
    pub fn series(&self, id: u64) -> Result<(Labels, Vec<ChunkMeta>), IndexError> {
        let b: &[u8] = &self.map;
        let off = id
            .checked_mul(SERIES_ALIGNMENT)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o >= INDEX_HEADER_LEN && o < b.len())
            .ok_or_else(|| {
                corrupt(
                    &self.path,
                    format!("series {id}: offset beyond end of file"),
                )
            })?;
        decode_series(&self.path, &self.symbols, id, b, off)
    }

    /// Decodes the postings list at `off`.
    fn read_postings(&self, off: u64) -> Result<Vec<u64>, IndexError> {
        decode_postings(&self.path, &self.map, off, off)
    }

    /// IDs of the series with label `name` = `value`, ascending; empty when the pair
    /// does not occur.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>, IndexError> {
        let Some(values) = self.postings.get(name) else {
            return Ok(Vec::new());
        };
        match values.binary_search_by(|(v, _)| (**v).cmp(value)) {
            Ok(i) => self.read_postings(values[i].1),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// IDs of all series, ascending.
    pub fn all_postings(&self) -> Result<Vec<u64>, IndexError> {
        match self.all_postings {
            Some(off) => self.read_postings(off),
            None => Ok(Vec::new()),
        }
    }

    /// IDs of the series whose label `name` has a value for which `keep` is true:
    /// the sorted union of those postings lists.
    pub fn postings_for_values(
        &self,
        name: &str,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<Vec<u64>, IndexError> {
        let Some(values) = self.postings.get(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut lists = 0;
        for (v, off) in values {
            if keep(v) {
                out.extend(self.read_postings(*off)?);
                lists += 1;
            }
        }
        if lists > 1 {
            // A series has one value per name, so the lists are disjoint; sorting
            // restores ID order.
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.postings.keys().map(|k| k.to_string()).collect()
    }

    /// All values of label `name`, sorted; empty for an unknown name.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .get(name)
            .map(|vs| vs.iter().map(|(v, _)| v.to_string()).collect())
            .unwrap_or_default()
    }

    /// Values of label `name` as shared strings, sorted, without copying.
    pub fn label_values_shared(&self, name: &str) -> Vec<ArcStr> {
        self.postings
            .get(name)
            .map(|vs| vs.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default()
    }

    /// Number of entries in the symbol table.
    pub fn symbols_count(&self) -> usize {
        self.symbols.len()
    }

    /// The symbol table, sorted.
    pub fn symbols(&self) -> &[ArcStr] {
        &self.symbols
    }

    /// Size of the index file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Decodes the series entry of series `id` that starts at `off` in `b` (the whole
/// file, or a buffer fetched from a bucket with the entry's offset rebased into it),
/// resolving label references through `symbols`.
pub(crate) fn decode_series(
    path: &Path,
    symbols: &[ArcStr],
    id: u64,
    b: &[u8],
    off: usize,
) -> Result<(Labels, Vec<ChunkMeta>), IndexError> {
    let what = || format!("series {id}");
    let lookup = |r: u32| {
        symbols.get(r as usize).ok_or_else(|| {
            corrupt(
                path,
                format!("symbol reference {r} beyond the {} symbols", symbols.len()),
            )
        })
    };
    let rest = b
        .get(off..)
        .ok_or_else(|| corrupt(path, format!("{}: offset beyond end of buffer", what())))?;
    let (len, n) =
        read_uvarint(rest).map_err(|e| corrupt(path, format!("{}: length: {e}", what())))?;
    let start = off + n;
    let entry = usize::try_from(len).ok().and_then(|len| {
        let end = start.checked_add(len)?;
        Some((b.get(start..end)?, b.get(end..end.checked_add(4)?)?))
    });
    let (body, crc) = entry.ok_or_else(|| {
        corrupt(
            path,
            format!("{}: {len} bytes run past end of file", what()),
        )
    })?;
    check_crc(path, body, crc, &what(), off as u64)?;

    let err = |e: DecodeError| corrupt(path, format!("{}: {e}", what()));
    let mut d = Decbuf::new(body);
    let nlabels = d.uvarint().map_err(err)?;
    let mut labels = Vec::with_capacity((nlabels as usize).min(d.len() / 2));
    for _ in 0..nlabels {
        let name = d.uvarint32().map_err(err)?;
        let value = d.uvarint32().map_err(err)?;
        labels.push(Label {
            name: lookup(name)?.clone(),
            value: lookup(value)?.clone(),
        });
    }
    Labels::check_sorted_unique(&labels).map_err(|e| corrupt(path, format!("{}: {e}", what())))?;

    let nchunks = d.uvarint().map_err(err)?;
    let mut chunks = Vec::with_capacity((nchunks as usize).min(d.len() / 3));
    if nchunks > 0 {
        let min_t = d.varint().map_err(err)?;
        let max_t = min_t.wrapping_add(d.uvarint().map_err(err)? as i64);
        let chunk_ref = d.uvarint().map_err(err)?;
        chunks.push(ChunkMeta {
            min_t,
            max_t,
            chunk_ref,
        });
        let (mut t0, mut ref0) = (max_t, chunk_ref);
        for _ in 1..nchunks {
            let min_t = t0.wrapping_add(d.uvarint().map_err(err)? as i64);
            let max_t = min_t.wrapping_add(d.uvarint().map_err(err)? as i64);
            let chunk_ref = ref0.wrapping_add(d.varint().map_err(err)? as u64);
            chunks.push(ChunkMeta {
                min_t,
                max_t,
                chunk_ref,
            });
            t0 = max_t;
            ref0 = chunk_ref;
        }
    }
    Ok((Labels::from_sorted(labels), chunks))
}

/// Decodes the postings list whose section starts at `off` in `b` (the whole file, or
/// a fetched buffer with the offset rebased); `file_off` is its offset in the file,
/// for messages.
pub(crate) fn decode_postings(
    path: &Path,
    b: &[u8],
    off: u64,
    file_off: u64,
) -> Result<Vec<u64>, IndexError> {
    let body = section_at(path, b, off, "postings list")?;
    let mut d = Decbuf::new(body);
    let n = d
        .be32()
        .map_err(|e| corrupt(path, format!("postings list at offset {file_off}: {e}")))?;
    if d.len() != n as usize * 4 {
        return Err(corrupt(
            path,
            format!(
                "postings list at offset {file_off}: {} bytes for {n} entries",
                d.len()
            ),
        ));
    }
    Ok(d.rest()
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect())
}

/// Decodes the table of contents (the last [`INDEX_TOC_LEN`] bytes of an index, at
/// file offset `off`): symbols, series, label indices, label offset table, postings
/// and postings offset table offsets. Only the first and last are needed to serve
/// reads.
pub(crate) fn parse_toc(path: &Path, toc_bytes: &[u8], off: u64) -> Result<[u64; 6], IndexError> {
    if toc_bytes.len() != INDEX_TOC_LEN {
        return Err(corrupt(path, "table of contents: wrong length"));
    }
    let (toc_body, toc_crc) = toc_bytes.split_at(INDEX_TOC_LEN - 4);
    check_crc(path, toc_body, toc_crc, "table of contents", off)?;
    let mut toc = [0u64; 6];
    let mut d = Decbuf::new(toc_body);
    for v in &mut toc {
        *v = d
            .be64()
            .map_err(|e| corrupt(path, format!("table of contents: {e}")))?;
    }
    Ok(toc)
}
