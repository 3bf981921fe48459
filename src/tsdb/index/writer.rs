//! Streaming index writer: symbols first, then series in label order, then
//! everything derived from them (label indices, postings, offset tables, TOC).
//!
//! Series go straight to the file as they arrive; only the postings (4 bytes per
//! label of each series, grouped by label pair) and the symbol table lookup are kept
//! in memory until [`IndexWriter::finish`].

use arcstr::ArcStr;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::encoding::{Encbuf, crc32};
use super::{ChunkMeta, INDEX_FORMAT_V2, IndexError, MAGIC_INDEX, SERIES_ALIGNMENT};
use crate::model::Labels;

/// Where each section starts; written as the TOC at the end of the file.
#[derive(Debug, Default, Clone, Copy)]
struct Toc {
    symbols: u64,
    series: u64,
    label_indices: u64,
    label_indices_table: u64,
    postings: u64,
    postings_table: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Only the header is written.
    Header,
    /// The symbol table is written; series may follow.
    Series,
}

/// Writes one index file. See the module docs of [`crate::tsdb::index`] for the
/// format.
pub struct IndexWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes written so far (the file offset of the next byte).
    pos: u64,
    stage: Stage,
    toc: Toc,
    /// Symbols by reference; shares its strings with `symbol_refs`.
    symbols: Vec<ArcStr>,
    symbol_refs: HashMap<ArcStr, u32>,
    last_series: Option<Labels>,
    /// Chunk references must not go backwards across the whole index (Prometheus
    /// checks the same), since chunks are written in series order.
    last_chunk_ref: u64,
    /// Series IDs in order: the "all postings" list.
    all_postings: Vec<u32>,
    /// (name ref, value ref) -> series IDs, each list ascending.
    postings: HashMap<(u32, u32), Vec<u32>>,
    buf: Encbuf,
}

impl IndexWriter {
    /// Creates (or truncates) the index file at `path` and writes its header.
    pub fn create(path: &Path) -> Result<Self, IndexError> {
        let file = File::create(path)
            .map_err(|e| IndexError::io(format!("create index {}", path.display()), e))?;
        let mut w = IndexWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            stage: Stage::Header,
            toc: Toc::default(),
            symbols: Vec::new(),
            symbol_refs: HashMap::new(),
            last_series: None,
            last_chunk_ref: 0,
            all_postings: Vec::new(),
            postings: HashMap::new(),
            buf: Encbuf::with_capacity(1 << 12),
        };
        let mut header = Encbuf::with_capacity(5);
        header.put_be32(MAGIC_INDEX);
        header.put_byte(INDEX_FORMAT_V2);
        w.write(header.get())?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), IndexError> {
        self.out
            .write_all(b)
            .map_err(|e| IndexError::io(format!("write index {}", self.path.display()), e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Writes the internal buffer and clears it.
    fn write_buf(&mut self) -> Result<(), IndexError> {
        let b = std::mem::take(&mut self.buf);
        let r = self.write(b.get());
        self.buf = b;
        self.buf.reset();
        r
    }

    /// Pads with zero bytes until the file offset is a multiple of `align`.
    fn pad(&mut self, align: u64) -> Result<(), IndexError> {
        let rem = self.pos % align;
        if rem != 0 {
            let zeros = [0u8; 16];
            let n = (align - rem) as usize;
            self.write(&zeros[..n])?;
        }
        Ok(())
    }

    /// Writes the symbol table: every label name and value that the series will use,
    /// sorted and unique. Must be called once, before the first series.
    pub fn add_symbols<'a>(
        &mut self,
        sorted_unique: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), IndexError> {
        if self.stage != Stage::Header {
            return Err(IndexError::Invalid(
                "symbols must be added once, before any series".into(),
            ));
        }
        // The table starts with its length and count, so it is assembled in memory;
        // it is small next to the series section and we keep the strings anyway.
        let mut body = Encbuf::with_capacity(1 << 16);
        body.put_be32(0); // Count, filled in below.
        for sym in sorted_unique {
            if let Some(last) = self.symbols.last().filter(|last| sym <= &***last) {
                return Err(IndexError::Invalid(format!(
                    "symbol {sym:?} is not after {last:?}: symbols must be sorted and unique"
                )));
            }
            let r = u32::try_from(self.symbols.len())
                .map_err(|_| IndexError::Invalid("more than 2^32 symbols".into()))?;
            let s: ArcStr = ArcStr::from(sym);
            self.symbols.push(s.clone());
            self.symbol_refs.insert(s, r);
            body.put_uvarint_str(sym);
        }
        let count = self.symbols.len() as u32;
        body.b[..4].copy_from_slice(&count.to_be_bytes());
        let len = u32::try_from(body.len())
            .map_err(|_| IndexError::Invalid("symbol table exceeds 4 GiB".into()))?;

        self.toc.symbols = self.pos;
        let mut head = Encbuf::with_capacity(4);
        head.put_be32(len);
        self.write(head.get())?;
        let crc = crc32(body.get());
        self.write(body.get())?;
        self.write(&crc.to_be_bytes())?;
        self.toc.series = self.pos;
        self.stage = Stage::Series;
        Ok(())
    }

    fn symbol_ref(&self, s: &str) -> Result<u32, IndexError> {
        self.symbol_refs
            .get(s)
            .copied()
            .ok_or_else(|| IndexError::Invalid(format!("symbol {s:?} is not in the symbol table")))
    }

    /// Adds one series with its chunks and returns its ID (offset / 16). Series must
    /// come in strictly increasing label order; chunks in time order, not
    /// overlapping, with chunk references that never decrease.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<u64, IndexError> {
        if self.stage == Stage::Header {
            // No symbols were given: the table is empty (only an empty label set could
            // be written, and that is rejected below).
            self.add_symbols(std::iter::empty())?;
        }
        if labels.is_empty() {
            return Err(IndexError::Invalid("series with an empty label set".into()));
        }
        if let Err(e) = Labels::check_sorted_unique(labels.as_slice()) {
            return Err(IndexError::Invalid(format!("series {labels}: {e}")));
        }
        if let Some(last) = self.last_series.as_ref().filter(|last| labels <= *last) {
            return Err(IndexError::Invalid(format!(
                "out-of-order series {labels}: not after {last}"
            )));
        }

        let mut last_ref = self.last_chunk_ref;
        let mut last_max_t = i64::MIN;
        for (i, c) in chunks.iter().enumerate() {
            if c.chunk_ref < last_ref {
                return Err(IndexError::Invalid(format!(
                    "series {labels}: chunk reference {} is before previous {last_ref}",
                    c.chunk_ref
                )));
            }
            last_ref = c.chunk_ref;
            if i > 0 && c.min_t <= last_max_t {
                return Err(IndexError::Invalid(format!(
                    "series {labels}: chunk min time {} is not after previous chunk max time {last_max_t}",
                    c.min_t
                )));
            }
            if c.max_t < c.min_t {
                return Err(IndexError::Invalid(format!(
                    "series {labels}: chunk max time {} is before its min time {}",
                    c.max_t, c.min_t
                )));
            }
            last_max_t = c.max_t;
        }

        // Encode before padding so an unknown symbol leaves the file untouched.
        let mut refs = Vec::with_capacity(labels.len());
        for l in labels.iter() {
            refs.push((self.symbol_ref(&l.name)?, self.symbol_ref(&l.value)?));
        }
        self.buf.reset();
        let mut body = Encbuf::with_capacity(16 + refs.len() * 4 + chunks.len() * 12);
        body.put_uvarint(refs.len() as u64);
        for &(n, v) in &refs {
            body.put_uvarint(u64::from(n));
            body.put_uvarint(u64::from(v));
        }
        body.put_uvarint(chunks.len() as u64);
        if let Some((first, rest)) = chunks.split_first() {
            body.put_varint(first.min_t);
            body.put_uvarint(first.max_t.wrapping_sub(first.min_t) as u64);
            body.put_uvarint(first.chunk_ref);
            let mut t0 = first.max_t;
            let mut ref0 = first.chunk_ref;
            for c in rest {
                body.put_uvarint(c.min_t.wrapping_sub(t0) as u64);
                body.put_uvarint(c.max_t.wrapping_sub(c.min_t) as u64);
                body.put_varint(c.chunk_ref.wrapping_sub(ref0) as i64);
                t0 = c.max_t;
                ref0 = c.chunk_ref;
            }
        }
        self.buf.put_uvarint(body.len() as u64);
        self.buf.put_bytes(body.get());
        self.buf.put_be32(crc32(body.get()));

        self.pad(SERIES_ALIGNMENT)?;
        let id = self.pos / SERIES_ALIGNMENT;
        let id32 = u32::try_from(id).map_err(|_| {
            IndexError::Invalid("index exceeds 64 GiB: series ID does not fit 4 bytes".into())
        })?;
        self.write_buf()?;

        self.all_postings.push(id32);
        for key in refs {
            self.postings.entry(key).or_default().push(id32);
        }
        self.last_series = Some(labels.clone());
        self.last_chunk_ref = last_ref;
        Ok(id)
    }

    /// Writes a section `len <4b> | body | crc <4b>` from a body assembled in `b`.
    fn write_section(&mut self, b: &Encbuf, what: &str) -> Result<(), IndexError> {
        let len = u32::try_from(b.len())
            .map_err(|_| IndexError::Invalid(format!("{what} exceeds 4 GiB")))?;
        self.write(&len.to_be_bytes())?;
        self.write(b.get())?;
        self.write(&crc32(b.get()).to_be_bytes())
    }

    /// Writes label indices, postings, both offset tables and the TOC, then flushes
    /// and fsyncs the file.
    pub fn finish(mut self) -> Result<(), IndexError> {
        if self.stage == Stage::Header {
            self.add_symbols(std::iter::empty())?;
        }
        self.toc.label_indices = self.pos;

        // Label pairs in (name, value) order: symbol refs order like their strings.
        let mut postings: Vec<((u32, u32), Vec<u32>)> =
            std::mem::take(&mut self.postings).into_iter().collect();
        postings.sort_unstable_by_key(|(k, _)| *k);

        // Label indices: for each name, the refs of its values.
        let mut label_index_offsets: Vec<(u32, u64)> = Vec::new();
        let mut i = 0;
        while i < postings.len() {
            let name = postings[i].0.0;
            let mut j = i;
            while j < postings.len() && postings[j].0.0 == name {
                j += 1;
            }
            self.pad(4)?;
            label_index_offsets.push((name, self.pos));
            let mut b = Encbuf::with_capacity(8 + (j - i) * 4);
            b.put_be32(1);
            b.put_be32((j - i) as u32);
            for p in &postings[i..j] {
                b.put_be32(p.0.1);
            }
            self.write_section(&b, "label index")?;
            i = j;
        }

        // Postings lists, the all-series list first under the empty label pair.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let mut offsets: Vec<u64> = Vec::with_capacity(postings.len() + 1);
        let all = std::mem::take(&mut self.all_postings);
        offsets.push(self.pos);
        self.write_postings_list(&all)?;
        drop(all);
        for (_, ids) in &postings {
            self.pad(4)?;
            offsets.push(self.pos);
            self.write_postings_list(ids)?;
        }

        // Label offset table (legacy; Prometheus 2.x still writes it).
        self.toc.label_indices_table = self.pos;
        let mut b = Encbuf::with_capacity(4 + label_index_offsets.len() * 16);
        b.put_be32(label_index_offsets.len() as u32);
        for &(name, off) in &label_index_offsets {
            b.put_uvarint(1);
            b.put_uvarint_str(&self.symbols[name as usize]);
            b.put_uvarint(off);
        }
        self.write_section(&b, "label offset table")?;

        // Postings offset table, sorted by name and value.
        self.toc.postings_table = self.pos;
        let count = u32::try_from(postings.len() + 1)
            .map_err(|_| IndexError::Invalid("more than 2^32 postings lists".into()))?;
        let mut b = Encbuf::with_capacity(4 + offsets.len() * 24);
        b.put_be32(count);
        b.put_uvarint(2);
        b.put_uvarint_str("");
        b.put_uvarint_str("");
        b.put_uvarint(offsets[0]);
        for (((name, value), _), off) in postings.iter().zip(&offsets[1..]) {
            b.put_uvarint(2);
            b.put_uvarint_str(&self.symbols[*name as usize]);
            b.put_uvarint_str(&self.symbols[*value as usize]);
            b.put_uvarint(*off);
        }
        self.write_section(&b, "postings offset table")?;

        let t = self.toc;
        let mut b = Encbuf::with_capacity(52);
        for v in [
            t.symbols,
            t.series,
            t.label_indices,
            t.label_indices_table,
            t.postings,
            t.postings_table,
        ] {
            b.put_be64(v);
        }
        b.put_crc32_of_contents();
        self.write(b.get())?;

        let path = self.path.clone();
        let file = self.out.into_inner().map_err(|e| {
            IndexError::io(format!("flush index {}", path.display()), e.into_error())
        })?;
        file.sync_all()
            .map_err(|e| IndexError::io(format!("fsync index {}", path.display()), e))?;
        Ok(())
    }

    fn write_postings_list(&mut self, ids: &[u32]) -> Result<(), IndexError> {
        let mut b = Encbuf::with_capacity(4 + ids.len() * 4);
        b.put_be32(ids.len() as u32);
        for &id in ids {
            b.put_be32(id);
        }
        self.write_section(&b, "postings list")
    }
}
