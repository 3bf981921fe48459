//! Sealed log segments: one tenant's lines of one two-hour window, on disk.
//!
//! ```text
//! <data>/logs/<tenant>/<ULID>/
//!   meta.json  what the segment holds (version, tenant, window, times, counts)
//!   lines      frames, each zstd-compressed: up to FRAME_BYTES of one stream's
//!              lines in time order
//!   streams    the stream table: each stream's labels and frames (offset, length,
//!              times, lines, ordinal of its first line), then a CRC32C
//!   index/     a tantivy index with one document per line: the text as trigrams,
//!              the stream's labels as `name=value` terms, the line's time and
//!              its ordinal as fast fields
//! ```
//!
//! Streams are chosen by the table (a selector matches labels exactly, as Loki's
//! index does); a `|=` filter of three characters or more is answered by the index
//! first (with the selector's equality matchers and the query's time range): only
//! lines holding every trigram of the needle are read, and the filter itself still
//! runs on them. The ULID is derived from the tenant and the window,
//! so every replica writes the same segment under the same name, and a window
//! written out before a crash is recognised when its lines are replayed.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::log::record::LogLine;
use crate::logs::bytes::ByteReader;
use crate::logs::store::{Selected, WINDOW_NS, Window};
use crate::model::{Labels, Matcher};

/// Uncompressed bytes of lines per frame.
const FRAME_BYTES: usize = 64 * 1024;
/// Frames read at once while merging (each at most a few hundred KiB compressed).
const MERGE_READ_FRAMES: usize = 16;
/// The most a frame may decompress to: a frame closes at [`FRAME_BYTES`], so it
/// holds at most that plus one line (and its metadata), which push limits bound
/// far below this.
const MAX_FRAME_RAW_BYTES: usize = 64 << 20;
/// 2: the index holds the stream labels and the line times too.
const VERSION: u32 = 2;
/// The oldest version still read.
const OLDEST_VERSION: u32 = 1;
const META: &str = "meta.json";
const LINES: &str = "lines";
const STREAMS: &str = "streams";
const INDEX: &str = "index";
/// The tantivy tokenizer of the line field.
const TRIGRAMS: &str = "odin_trigram";
/// The indexer's memory budget (tantivy wants at least 15 MB per thread).
const INDEX_BUDGET_BYTES: usize = 32 << 20;

/// What a segment holds (`meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMeta {
    pub version: u32,
    pub ulid: String,
    pub tenant: String,
    /// The window, `[start, end)`, in Unix nanoseconds.
    pub window_start: i64,
    pub window_end: i64,
    /// The oldest and newest line.
    pub min_time: i64,
    pub max_time: i64,
    pub streams: u64,
    pub lines: u64,
    /// Bytes of line text.
    pub bytes: u64,
    /// Set on a segment merged from others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<SegmentCompaction>,
    /// Set in the bucket's copy only: the external labels of the ODIN that shipped
    /// it (a shared bucket's other segments are not this one's history).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub external_labels: std::collections::BTreeMap<String, String>,
}

/// Where a merged segment comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentCompaction {
    /// 1 for a window written out, one more than its highest source when merged.
    pub level: u32,
    /// The ULIDs of the window segments (level 1) it holds.
    pub sources: Vec<String>,
}

impl SegmentMeta {
    /// The window segments (level 1) this segment holds: itself, or its sources.
    pub fn level1(&self) -> Vec<&str> {
        match &self.compaction {
            Some(c) => c.sources.iter().map(String::as_str).collect(),
            None => vec![self.ulid.as_str()],
        }
    }
}

/// One stream's frames in the `lines` file.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    offset: u64,
    len: u32,
    min_ns: i64,
    max_ns: i64,
    lines: u32,
    /// The ordinal (document) of the frame's first line.
    first: u32,
}

impl Frame {
    /// Where the frame's compressed bytes lie in the `lines` file.
    fn bytes(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + u64::from(self.len)
    }

    /// The frame's lines from its compressed bytes.
    fn decode(&self, compressed: &[u8]) -> std::io::Result<Vec<LogLine>> {
        // Bounded: a damaged (or hostile) frame must not inflate without limit. The
        // writer records each frame's size in its header.
        let size = zstd::zstd_safe::get_frame_content_size(compressed)
            .ok()
            .flatten()
            .filter(|&n| n <= MAX_FRAME_RAW_BYTES as u64)
            .ok_or_else(|| io("segment lines", "a frame without a size, or too large"))?;
        let raw = zstd::bulk::decompress(compressed, size as usize)
            .map_err(|e| io("segment lines", e))?;
        // A frame's lines are in time order: the first is its base.
        decode_frame(&raw, self.min_ns, self.lines as usize).map_err(|e| io("segment lines", e))
    }
}

#[derive(Debug, Clone)]
struct StreamEntry {
    labels: Labels,
    frames: Vec<Frame>,
}

/// The segment of `tenant`'s window starting at `start_ns`: its name.
pub fn segment_ulid(tenant: &str, start_ns: i64) -> ulid::Ulid {
    let digest = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"odin log segment\0");
        h.update(tenant.as_bytes());
        h.update([0]);
        h.update(start_ns.to_be_bytes());
        h.finalize()
    };
    let mut random = [0u8; 16];
    random.copy_from_slice(&digest[..16]);
    let ms = u64::try_from(start_ns / 1_000_000).unwrap_or(0);
    ulid::Ulid::from_parts(ms, u128::from_be_bytes(random))
}

/// The segment merging `tenant`'s windows in `[start_ns, end_ns)`: its name, the
/// same on every replica.
pub fn compacted_ulid(tenant: &str, start_ns: i64, end_ns: i64) -> ulid::Ulid {
    let digest = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"odin compacted log segment\0");
        h.update(tenant.as_bytes());
        h.update([0]);
        h.update(start_ns.to_be_bytes());
        h.update(end_ns.to_be_bytes());
        h.finalize()
    };
    let mut random = [0u8; 16];
    random.copy_from_slice(&digest[..16]);
    let ms = u64::try_from(start_ns / 1_000_000).unwrap_or(0);
    ulid::Ulid::from_parts(ms, u128::from_be_bytes(random))
}

fn io(context: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{context}: {e}"))
}

/// The index's fields.
#[derive(Clone, Copy)]
struct Fields {
    /// The line's text, as character trigrams.
    line: tantivy::schema::Field,
    /// The line's ordinal in the segment (fast): what ties a document to its frame.
    ordinal: tantivy::schema::Field,
    /// The stream's labels, one `name=value` term each (version 2 on).
    labels: Option<tantivy::schema::Field>,
    /// The line's time, Unix nanoseconds (fast; version 2 on).
    ts: Option<tantivy::schema::Field>,
}

fn schema() -> (tantivy::schema::Schema, Fields) {
    use tantivy::schema::{FAST, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TRIGRAMS)
            .set_index_option(IndexRecordOption::Basic),
    );
    let line = b.add_text_field("line", text);
    let ordinal = b.add_u64_field("ordinal", FAST);
    let raw = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::Basic),
    );
    let labels = b.add_text_field("labels", raw);
    let ts = b.add_i64_field("ts", FAST);
    (
        b.build(),
        Fields {
            line,
            ordinal,
            labels: Some(labels),
            ts: Some(ts),
        },
    )
}

impl Fields {
    /// The fields of an opened index (a version 1 index has no labels or times).
    fn of(schema: &tantivy::schema::Schema) -> std::io::Result<Fields> {
        Ok(Fields {
            line: schema.get_field("line").map_err(|e| io("line index", e))?,
            ordinal: schema
                .get_field("ordinal")
                .map_err(|e| io("line index", e))?,
            labels: schema.get_field("labels").ok(),
            ts: schema.get_field("ts").ok(),
        })
    }
}

fn register_tokenizer(index: &tantivy::Index) -> std::io::Result<()> {
    let trigrams = tantivy::tokenizer::NgramTokenizer::new(3, 3, false)
        .map_err(|e| io("trigram tokenizer", e))?;
    index
        .tokenizers()
        .register(TRIGRAMS, tantivy::tokenizer::TextAnalyzer::from(trigrams));
    Ok(())
}

/// A label's term in the index's `labels` field.
fn label_term(name: &str, value: &str) -> String {
    format!("{name}={value}")
}

/// The trigrams of `needle`, as the index's tokenizer cuts a line.
fn trigrams(needle: &str) -> Vec<String> {
    let chars: Vec<char> = needle.chars().collect();
    let mut out: Vec<String> = chars.windows(3).map(|w| w.iter().collect()).collect();
    out.sort();
    out.dedup();
    out
}

/// Appends one line to a frame's bytes.
fn put_line(out: &mut Vec<u8>, base_ns: i64, line: &LogLine) {
    use crate::log::varint::{put_uvarint, put_varint};
    put_varint(out, line.ts_ns.wrapping_sub(base_ns));
    put_uvarint(out, line.text.len() as u64);
    out.extend_from_slice(line.text.as_bytes());
    put_uvarint(out, line.metadata.len() as u64);
    for (k, v) in &line.metadata {
        put_uvarint(out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        put_uvarint(out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
}

/// Writes `window` of `tenant` as a segment under `tenant_dir`, unless it exists.
/// Written under `<ULID>.tmp-for-creation` and renamed, so a segment is either
/// whole or absent.
pub fn write(
    tenant_dir: &Path,
    tenant: &str,
    start_ns: i64,
    window: &Window,
) -> std::io::Result<PathBuf> {
    let ulid = segment_ulid(tenant, start_ns);
    let Some(mut b) = Builder::create(tenant_dir, ulid)? else {
        return Ok(tenant_dir.join(ulid.to_string()));
    };
    for (labels, lines) in window.sorted_streams() {
        b.stream(labels);
        for group in frame_groups(&lines) {
            let base = group[0].ts_ns;
            let mut raw = Vec::with_capacity(FRAME_BYTES + 1024);
            for line in group {
                put_line(&mut raw, base, line);
            }
            let compressed = zstd::bulk::compress(&raw, 3).map_err(|e| io("compress lines", e))?;
            b.frame(&compressed, group)?;
        }
    }
    b.finish(tenant, start_ns, start_ns + WINDOW_NS, None)
}

/// Merges `sources` (segments of one tenant, of disjoint windows within `[start_ns,
/// end_ns)`) into one segment under `tenant_dir`, unless it exists. Frames are
/// copied as they are (each stream's frames in window order, so its lines stay in
/// time order); only the index is built again, for the new ordinals.
pub fn compact(
    tenant_dir: &Path,
    tenant: &str,
    start_ns: i64,
    end_ns: i64,
    sources: &[Arc<Segment>],
) -> std::io::Result<PathBuf> {
    let ulid = compacted_ulid(tenant, start_ns, end_ns);
    let Some(mut b) = Builder::create(tenant_dir, ulid)? else {
        return Ok(tenant_dir.join(ulid.to_string()));
    };
    let mut sources: Vec<&Arc<Segment>> = sources.iter().collect();
    sources.sort_by_key(|s| s.meta.window_start);
    let mut labels: Vec<&Labels> = sources.iter().flat_map(|s| s.stream_labels()).collect();
    labels.sort();
    labels.dedup();
    let mut level = 1;
    let mut names = Vec::new();
    for s in &sources {
        let c = s.meta.compaction.as_ref();
        level = level.max(c.map_or(1, |c| c.level) + 1);
        match c {
            Some(c) => names.extend(c.sources.iter().cloned()),
            None => names.push(s.meta.ulid.clone()),
        }
    }
    // Each source's streams by labels: one lookup per stream and source.
    let tables: Vec<std::collections::HashMap<&Labels, &StreamEntry>> = sources
        .iter()
        .map(|s| s.streams.iter().map(|e| (&e.labels, e)).collect())
        .collect();
    for l in labels {
        b.stream(l.clone());
        for (s, table) in sources.iter().zip(&tables) {
            let Some(entry) = table.get(l) else {
                continue;
            };
            // A few frames at a time: a busy stream's window may be large.
            for batch in entry.frames.chunks(MERGE_READ_FRAMES) {
                let ranges: Vec<std::ops::Range<u64>> = batch.iter().map(|f| f.bytes()).collect();
                let raws = s.lines.read(&ranges)?;
                for (f, compressed) in batch.iter().zip(raws) {
                    let lines = f.decode(&compressed)?;
                    b.frame(&compressed, &lines)?;
                }
            }
        }
    }
    names.sort();
    names.dedup();
    b.finish(
        tenant,
        start_ns,
        end_ns,
        Some(SegmentCompaction {
            level,
            sources: names,
        }),
    )
}

/// A segment being written: frames go to `lines` and their lines to the index as
/// they come, the stream table and meta.json at the end.
struct Builder {
    tenant_dir: PathBuf,
    ulid: ulid::Ulid,
    staged: PathBuf,
    writer: tantivy::IndexWriter,
    fields: Fields,
    /// The current stream's `name=value` terms.
    label_terms: Vec<String>,
    lines_file: std::io::BufWriter<File>,
    offset: u64,
    ordinal: u32,
    table: Vec<StreamEntry>,
    min_time: i64,
    max_time: i64,
    total_bytes: u64,
}

impl Builder {
    /// `None`: the segment exists already.
    fn create(tenant_dir: &Path, ulid: ulid::Ulid) -> std::io::Result<Option<Builder>> {
        let place = tenant_dir.join(ulid.to_string());
        if place.join(META).exists() {
            return Ok(None);
        }
        fs::create_dir_all(tenant_dir)?;
        let staged = tenant_dir.join(format!("{ulid}.tmp-for-creation"));
        if staged.exists() {
            fs::remove_dir_all(&staged)?;
        }
        fs::create_dir_all(staged.join(INDEX))?;
        let (schema, fields) = schema();
        let index = tantivy::Index::create_in_dir(staged.join(INDEX), schema)
            .map_err(|e| io("create the line index", e))?;
        register_tokenizer(&index)?;
        let writer: tantivy::IndexWriter = index
            .writer_with_num_threads(1, INDEX_BUDGET_BYTES)
            .map_err(|e| io("line index writer", e))?;
        let lines_file = std::io::BufWriter::new(File::create(staged.join(LINES))?);
        Ok(Some(Builder {
            tenant_dir: tenant_dir.to_path_buf(),
            ulid,
            staged,
            writer,
            fields,
            label_terms: Vec::new(),
            lines_file,
            offset: 0,
            ordinal: 0,
            table: Vec::new(),
            min_time: i64::MAX,
            max_time: i64::MIN,
            total_bytes: 0,
        }))
    }

    /// Starts the next stream (streams come in label order).
    fn stream(&mut self, labels: Labels) {
        self.label_terms = labels
            .iter()
            .map(|l| label_term(&l.name, &l.value))
            .collect();
        self.table.push(StreamEntry {
            labels,
            frames: Vec::new(),
        });
    }

    /// Appends one frame of the current stream: `compressed` holds `lines`.
    fn frame(&mut self, compressed: &[u8], lines: &[LogLine]) -> std::io::Result<()> {
        let (Some(first), Some(entry)) = (lines.first(), self.table.last_mut()) else {
            return Ok(());
        };
        let n = u32::try_from(lines.len())
            .ok()
            .and_then(|n| self.ordinal.checked_add(n).map(|_| n))
            .ok_or_else(|| io("segment", "more than 2^32 lines"))?;
        for (i, line) in lines.iter().enumerate() {
            let mut doc = tantivy::TantivyDocument::default();
            doc.add_text(self.fields.line, &line.text);
            doc.add_u64(self.fields.ordinal, u64::from(self.ordinal) + i as u64);
            if let Some(f) = self.fields.labels {
                for t in &self.label_terms {
                    doc.add_text(f, t);
                }
            }
            if let Some(f) = self.fields.ts {
                doc.add_i64(f, line.ts_ns);
            }
            self.writer
                .add_document(doc)
                .map_err(|e| io("index a line", e))?;
            self.total_bytes += line.text.len() as u64;
        }
        self.lines_file.write_all(compressed)?;
        let len = u32::try_from(compressed.len()).map_err(|e| io("segment frame", e))?;
        let frame = Frame {
            offset: self.offset,
            len,
            // A frame's lines are in time order: the first is its base.
            min_ns: first.ts_ns,
            max_ns: lines.iter().map(|l| l.ts_ns).max().unwrap_or(first.ts_ns),
            lines: n,
            first: self.ordinal,
        };
        self.min_time = self.min_time.min(frame.min_ns);
        self.max_time = self.max_time.max(frame.max_ns);
        self.offset += u64::from(len);
        self.ordinal += n;
        entry.frames.push(frame);
        Ok(())
    }

    /// Commits the index, writes the table and meta.json, and moves the segment
    /// into place.
    fn finish(
        mut self,
        tenant: &str,
        window_start: i64,
        window_end: i64,
        compaction: Option<SegmentCompaction>,
    ) -> std::io::Result<PathBuf> {
        self.writer
            .commit()
            .map_err(|e| io("commit the line index", e))?;
        self.writer
            .wait_merging_threads()
            .map_err(|e| io("finish the line index", e))?;
        let lines_file = self.lines_file.into_inner().map_err(|e| e.into_error())?;
        lines_file.sync_all()?;
        let staged = self.staged;
        let mut table_bytes = Vec::new();
        encode_table(&self.table, &mut table_bytes);
        let mut f = File::create(staged.join(STREAMS))?;
        f.write_all(&table_bytes)?;
        f.sync_all()?;
        let meta = SegmentMeta {
            version: VERSION,
            ulid: self.ulid.to_string(),
            tenant: tenant.to_string(),
            window_start,
            window_end,
            min_time: self.min_time,
            max_time: self.max_time,
            streams: self.table.len() as u64,
            lines: u64::from(self.ordinal),
            bytes: self.total_bytes,
            compaction,
            external_labels: Default::default(),
        };
        let mut f = File::create(staged.join(META))?;
        f.write_all(&serde_json::to_vec_pretty(&meta).map_err(|e| io("segment meta", e))?)?;
        f.sync_all()?;
        for dir in [staged.join(INDEX), staged.clone()] {
            File::open(&dir)?.sync_all()?;
        }
        let place = self.tenant_dir.join(self.ulid.to_string());
        fs::rename(&staged, &place)?;
        File::open(&self.tenant_dir)?.sync_all()?;
        Ok(place)
    }
}

/// A stream's lines cut into frames of about [`FRAME_BYTES`].
fn frame_groups(lines: &[LogLine]) -> Vec<&[LogLine]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, l) in lines.iter().enumerate() {
        bytes += l.text.len() + 16;
        if bytes >= FRAME_BYTES {
            out.push(&lines[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < lines.len() {
        out.push(&lines[start..]);
    }
    out
}

/// ```text
/// u32 #streams, each: u32 #labels, (str name, str value)…, u32 #frames,
///   each: u64 offset, u32 len, i64 min_ns, i64 max_ns, u32 lines, u32 first
/// u32 crc32c of everything before        (str: u32 len, UTF-8; little-endian)
/// ```
fn encode_table(table: &[StreamEntry], out: &mut Vec<u8>) {
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for s in table {
        out.extend_from_slice(&(s.labels.len() as u32).to_le_bytes());
        for l in s.labels.iter() {
            put_str(out, &l.name);
            put_str(out, &l.value);
        }
        out.extend_from_slice(&(s.frames.len() as u32).to_le_bytes());
        for f in &s.frames {
            out.extend_from_slice(&f.offset.to_le_bytes());
            out.extend_from_slice(&f.len.to_le_bytes());
            out.extend_from_slice(&f.min_ns.to_le_bytes());
            out.extend_from_slice(&f.max_ns.to_le_bytes());
            out.extend_from_slice(&f.lines.to_le_bytes());
            out.extend_from_slice(&f.first.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn decode_table(bytes: &[u8]) -> Result<Vec<StreamEntry>, String> {
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or("stream table truncated")?;
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err("stream table checksum mismatch".into());
    }
    let mut r = ByteReader::new(body, "stream table");
    let mut out = Vec::new();
    for _ in 0..r.count(8)? {
        let labels = r.labels()?;
        let mut frames = Vec::new();
        for _ in 0..r.count(36)? {
            let f = Frame {
                offset: r.u64()?,
                len: r.u32()?,
                min_ns: r.i64()?,
                max_ns: r.i64()?,
                lines: r.u32()?,
                first: r.u32()?,
            };
            // The table may come from a damaged disk or a bucket: what it says is
            // bounded here, so reading it later neither overflows nor allocates
            // without limit.
            if f.offset.checked_add(u64::from(f.len)).is_none()
                || f.len as usize > MAX_FRAME_RAW_BYTES
                || f.first.checked_add(f.lines).is_none()
            {
                return Err("stream table: a frame out of range".into());
            }
            frames.push(f);
        }
        out.push(StreamEntry { labels, frames });
    }
    if !r.buf.is_empty() {
        return Err("stream table: trailing bytes".into());
    }
    Ok(out)
}

/// A frame's lines back.
fn decode_frame(raw: &[u8], base_ns: i64, n: usize) -> Result<Vec<LogLine>, String> {
    use crate::log::varint::{take_uvarint, unzigzag};
    let take_varint = |b: &mut &[u8]| take_uvarint(b).map(unzigzag);
    let mut buf = raw;
    // `n` comes from disk: it sizes nothing beyond what the bytes can hold.
    let mut out = Vec::with_capacity(n.min(raw.len() / 2));
    let str_of = |buf: &mut &[u8]| -> Result<String, String> {
        let len = take_uvarint(buf).ok_or("frame truncated")? as usize;
        let (s, rest) = buf.split_at_checked(len).ok_or("frame truncated")?;
        *buf = rest;
        String::from_utf8(s.to_vec()).map_err(|_| "frame: invalid UTF-8".to_string())
    };
    for _ in 0..n {
        let ts_ns = base_ns.wrapping_add(take_varint(&mut buf).ok_or("frame truncated")?);
        let text = str_of(&mut buf)?;
        let n_meta = take_uvarint(&mut buf).ok_or("frame truncated")? as usize;
        let mut metadata = Vec::with_capacity(n_meta.min(128));
        for _ in 0..n_meta {
            let k = str_of(&mut buf)?;
            let v = str_of(&mut buf)?;
            metadata.push((k, v));
        }
        out.push(LogLine {
            ts_ns,
            text,
            metadata,
        });
    }
    if !buf.is_empty() {
        return Err("frame: trailing bytes".into());
    }
    Ok(out)
}

/// The error of a query that would read more lines than it may.
pub fn too_many_lines() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "the query would read more than {} log lines; narrow its selector or its time range",
            crate::logs::store::MAX_LINES_PER_QUERY
        ),
    )
}

/// Where a segment's `lines` file is read: the local file, or the bucket's object.
pub trait LinesSource: Send + Sync {
    /// The bytes of each range, in order.
    fn read(&self, ranges: &[std::ops::Range<u64>]) -> std::io::Result<Vec<bytes::Bytes>>;
}

/// The `lines` file of a segment on local disk, read with positioned reads.
struct LocalLines(File);

impl LinesSource for LocalLines {
    fn read(&self, ranges: &[std::ops::Range<u64>]) -> std::io::Result<Vec<bytes::Bytes>> {
        use std::os::unix::fs::FileExt;
        ranges
            .iter()
            .map(|r| {
                let len = usize::try_from(r.end.saturating_sub(r.start))
                    .map_err(|e| io("segment lines", e))?;
                let mut buf = vec![0u8; len];
                self.0.read_exact_at(&mut buf, r.start)?;
                Ok(buf.into())
            })
            .collect()
    }
}

/// A segment opened for queries.
pub struct Segment {
    pub dir: PathBuf,
    pub meta: SegmentMeta,
    streams: Vec<StreamEntry>,
    /// Opened once: the index never changes, so no reload (and no watcher thread),
    /// and a query holds its files even when the segment is deleted meanwhile.
    reader: tantivy::IndexReader,
    fields: Fields,
    lines: Arc<dyn LinesSource>,
}

/// The files of a segment other than `lines` (which a bucket segment reads by
/// range): what must be at hand to open it.
pub fn files_to_open(index_files: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = vec![META.to_string(), STREAMS.to_string()];
    out.extend(index_files.into_iter().map(|f| format!("{INDEX}/{f}")));
    out
}

/// The name of a segment's lines file.
pub const LINES_FILE: &str = LINES;
/// The name of a segment's meta file.
pub const META_FILE: &str = META;

impl Segment {
    /// Opens the segment in `dir`, its lines read from the local file.
    pub fn open(dir: &Path) -> std::io::Result<Segment> {
        let lines = File::open(dir.join(LINES))?;
        Self::open_with_lines(dir, Arc::new(LocalLines(lines)))
    }

    /// Opens the segment whose meta, stream table and index are in `dir`, its lines
    /// read from `lines`.
    pub fn open_with_lines(dir: &Path, lines: Arc<dyn LinesSource>) -> std::io::Result<Segment> {
        let meta: SegmentMeta = serde_json::from_slice(&fs::read(dir.join(META))?)
            .map_err(|e| io("segment meta", e))?;
        if !(OLDEST_VERSION..=VERSION).contains(&meta.version) {
            return Err(io(
                "segment meta",
                format!("version {} unknown", meta.version),
            ));
        }
        let streams = decode_table(&fs::read(dir.join(STREAMS))?).map_err(|e| io("segment", e))?;
        let index =
            tantivy::Index::open_in_dir(dir.join(INDEX)).map_err(|e| io("line index", e))?;
        register_tokenizer(&index)?;
        let fields = Fields::of(&index.schema())?;
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| io("line index", e))?;
        Ok(Segment {
            dir: dir.to_path_buf(),
            meta,
            streams,
            reader,
            fields,
            lines,
        })
    }

    /// The label sets of the segment's streams.
    pub fn stream_labels(&self) -> impl Iterator<Item = &Labels> {
        self.streams.iter().map(|s| &s.labels)
    }

    /// The ordinals of the lines holding every trigram of every needle, of a
    /// stream with the selector's exact labels, in `[start_ns, end_ns)` (`None`: no
    /// needle long enough to narrow anything; the stream table and the frames'
    /// times answer the rest).
    fn candidates(
        &self,
        needles: &[String],
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> std::io::Result<Option<HashSet<u32>>> {
        use std::ops::Bound;
        use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
        use tantivy::schema::IndexRecordOption;
        let grams: Vec<String> = needles.iter().flat_map(|n| trigrams(n)).collect();
        if grams.is_empty() {
            return Ok(None);
        }
        let term_query = |field, text: &str| -> (Occur, Box<dyn Query>) {
            let term = tantivy::Term::from_field_text(field, text);
            (
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            )
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = grams
            .iter()
            .map(|g| term_query(self.fields.line, g))
            .collect();
        if let Some(f) = self.fields.labels {
            clauses.extend(
                matchers
                    .iter()
                    .filter(|m| m.kind == crate::model::MatchType::Equal && !m.value.is_empty())
                    .map(|m| term_query(f, &label_term(&m.name, &m.value))),
            );
        }
        if let Some(f) = self.fields.ts
            && (start_ns > self.meta.min_time || end_ns <= self.meta.max_time)
        {
            let range = RangeQuery::new(
                Bound::Included(tantivy::Term::from_field_i64(f, start_ns)),
                Bound::Excluded(tantivy::Term::from_field_i64(f, end_ns)),
            );
            clauses.push((Occur::Must, Box::new(range)));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let docs = searcher
            .search(&query, &tantivy::collector::DocSetCollector)
            .map_err(|e| io("line index search", e))?;
        let mut out = HashSet::with_capacity(docs.len());
        let mut columns = Vec::new();
        for seg in searcher.segment_readers() {
            let col = seg
                .fast_fields()
                .u64("ordinal")
                .map_err(|e| io("line index ordinals", e))?;
            columns.push(col);
        }
        for addr in docs {
            if let Some(ord) = columns[addr.segment_ord as usize].first(addr.doc_id) {
                out.insert(ord as u32);
            }
        }
        Ok(Some(out))
    }

    /// The streams matching `matchers` with their lines in `[start_ns, end_ns)`;
    /// where `needles` narrow it, only lines that may hold all of them.
    /// `budget` is what is left of the lines a query may read: each frame read
    /// takes its lines from it, and a frame beyond it is an `InvalidInput` error.
    /// Only the frames wanted are read, in one call to the lines source.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        needles: &[String],
        budget: &mut usize,
    ) -> std::io::Result<Vec<Selected>> {
        if self.meta.max_time < start_ns || self.meta.min_time >= end_ns {
            return Ok(Vec::new());
        }
        let wanted: Vec<&StreamEntry> = self
            .streams
            .iter()
            .filter(|s| {
                matchers
                    .iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = self.candidates(needles, matchers, start_ns, end_ns)?;
        // (stream, frame) of every frame to read.
        let mut plan: Vec<(usize, &Frame)> = Vec::new();
        for (i, s) in wanted.iter().enumerate() {
            for f in &s.frames {
                if f.max_ns < start_ns || f.min_ns >= end_ns {
                    continue;
                }
                if let Some(c) = &candidates
                    && !(f.first..f.first + f.lines).any(|o| c.contains(&o))
                {
                    continue;
                }
                *budget = budget
                    .checked_sub(f.lines as usize)
                    .ok_or_else(too_many_lines)?;
                plan.push((i, f));
            }
        }
        let ranges: Vec<std::ops::Range<u64>> = plan.iter().map(|(_, f)| f.bytes()).collect();
        let raws = self.lines.read(&ranges)?;
        let mut chunks: Vec<Vec<Arc<[LogLine]>>> = vec![Vec::new(); wanted.len()];
        for ((i, f), compressed) in plan.into_iter().zip(raws) {
            let mut decoded = f.decode(&compressed)?;
            if let Some(c) = &candidates {
                let mut ord = f.first;
                decoded.retain(|_| {
                    let keep = c.contains(&ord);
                    ord += 1;
                    keep
                });
            }
            chunks[i].push(Arc::from(decoded));
        }
        Ok(wanted
            .into_iter()
            .zip(chunks)
            .filter(|(_, c)| !c.is_empty())
            .map(|(s, chunks)| Selected {
                labels: s.labels.clone(),
                chunks,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::{LogBatch, LogStream};
    use crate::logs::store::LogStore;

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_700_000_000 * S / WINDOW_NS * WINDOW_NS;

    fn batch(app: &str, lines: impl IntoIterator<Item = (i64, String)>) -> LogBatch {
        LogBatch {
            tenant: "t".into(),
            positions: Vec::new(),
            streams: vec![LogStream {
                labels: Labels::from_pairs([("app", app)]),
                lines: lines
                    .into_iter()
                    .map(|(ts_ns, text)| LogLine {
                        ts_ns,
                        metadata: if text.contains("trace") {
                            vec![("trace_id".into(), "42".into())]
                        } else {
                            Vec::new()
                        },
                        text,
                    })
                    .collect(),
            }],
        }
    }

    use crate::logs::store::texts_by_time as texts;

    /// A store with a sealed window of two streams (several frames for `a`), and
    /// the lines it holds.
    fn sealed_store(dir: &Path) -> (LogStore, Vec<Selected>) {
        let store = LogStore::open(dir).unwrap();
        // Enough text for several frames; one needle line among them.
        store.apply(batch(
            "a",
            (0..3000).map(|i| {
                let text = if i == 1234 {
                    "GPU 3: Xid 79 fallen off the bus trace".to_string()
                } else {
                    format!("request {i} served in {}ms {}", i % 97, "x".repeat(40))
                };
                (T0 + i * S, text)
            }),
        ));
        store.apply(batch("b", [(T0 + 5 * S, "b line".to_string())]));
        let before = store.select("t", &[], i64::MIN, i64::MAX, &[]).unwrap();
        // An hour past the window: it seals.
        store.apply(batch("c", [(T0 + 3 * 3600 * S, "later".to_string())]));
        assert_eq!(store.sealing().len(), 1);
        (store, before)
    }

    #[test]
    fn a_sealed_window_is_written_read_back_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let (store, before) = sealed_store(dir.path());
        let done = store.maintain(i64::MIN).unwrap();
        assert_eq!(done.segments_written, 1);
        assert!(store.sealing().is_empty());
        assert_eq!(store.num_segments(), 1);
        let sel = store
            .select("t", &[Matcher::equal("app", "a")], i64::MIN, i64::MAX, &[])
            .unwrap();
        let want: Vec<Selected> = before
            .into_iter()
            .filter(|s| s.labels.get("app") == Some("a"))
            .collect();
        assert_eq!(texts(&sel), texts(&want));
        // Metadata survives.
        let meta: Vec<_> = sel
            .iter()
            .flat_map(|s| s.chunks.iter().flat_map(|c| c.iter()))
            .filter(|l| !l.metadata.is_empty())
            .map(|l| l.metadata.clone())
            .collect();
        assert_eq!(meta, [vec![("trace_id".to_string(), "42".to_string())]]);
        // A needle: the index narrows the lines to those holding its trigrams.
        // (Lines in memory are not narrowed: the range leaves the open window out.)
        let hit = store
            .select("t", &[], i64::MIN, T0 + WINDOW_NS, &["Xid 79".to_string()])
            .unwrap();
        assert_eq!(texts(&hit), ["GPU 3: Xid 79 fallen off the bus trace"]);
        assert!(
            store
                .select("t", &[], i64::MIN, T0 + WINDOW_NS, &["Xid 80".into()])
                .unwrap()
                .iter()
                .all(|s| s.chunks.iter().all(|c| c.is_empty()))
        );
        // A query may read only so many lines, from segments and memory alike.
        let err = store
            .select_within("t", &[], i64::MIN, i64::MAX, &[], 100)
            .err()
            .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("narrow its selector"), "{err}");
        // A time range inside the window.
        let ranged = store
            .select(
                "t",
                &[Matcher::equal("app", "a")],
                T0 + 10 * S,
                T0 + 12 * S,
                &[],
            )
            .unwrap();
        let in_range: Vec<String> = texts(&ranged)
            .into_iter()
            .filter(|t| t.starts_with("request 1"))
            .collect();
        assert!(in_range.iter().any(|t| t.starts_with("request 10 ")));
        // Labels of sealed streams are still listed.
        let labels = store.streams("t", i64::MIN, i64::MAX);
        assert_eq!(labels.len(), 3);
        // Reopened, the segment is found; past retention it goes.
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.num_segments(), 1);
        let done = store.maintain(T0 + WINDOW_NS).unwrap();
        assert_eq!(done.segments_deleted, 1);
        assert_eq!(store.num_segments(), 0);
        assert!(
            store
                .select("t", &[], i64::MIN, i64::MAX, &[])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_index_narrows_by_needle_stream_labels_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = sealed_store(dir.path());
        store.maintain(i64::MIN).unwrap();
        let seg = store.segments().remove(0);
        let needle = ["Xid 79".to_string()];
        let a = [Matcher::equal("app", "a")];
        let b = [Matcher::equal("app", "b")];
        let hits = |m: &[Matcher], from: i64, to: i64| {
            seg.candidates(&needle, m, from, to).unwrap().unwrap().len()
        };
        // The needle line is app="a"'s 1234th, at T0 + 1234 s.
        assert_eq!(hits(&[], i64::MIN, i64::MAX), 1);
        assert_eq!(hits(&a, i64::MIN, i64::MAX), 1);
        assert_eq!(hits(&b, i64::MIN, i64::MAX), 0);
        assert_eq!(hits(&a, T0 + 1234 * S, T0 + 1235 * S), 1);
        assert_eq!(hits(&a, T0, T0 + 1234 * S), 0);
        assert_eq!(hits(&a, T0 + 1235 * S, i64::MAX), 0);
        // Short needles do not narrow.
        assert!(
            seg.candidates(&["Xi".into()], &a, T0, T0 + S)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_stream_table_with_frames_out_of_range_is_refused() {
        let frame = |offset: u64, len: u32, lines: u32, first: u32| Frame {
            offset,
            len,
            min_ns: 0,
            max_ns: 0,
            lines,
            first,
        };
        let table = |f: Frame| {
            let mut out = Vec::new();
            encode_table(
                &[StreamEntry {
                    labels: Labels::from_pairs([("app", "a")]),
                    frames: vec![f],
                }],
                &mut out,
            );
            out
        };
        assert!(decode_table(&table(frame(0, 10, 1, 0))).is_ok());
        for bad in [
            frame(u64::MAX, 10, 1, 0),
            frame(0, u32::MAX, 1, 0),
            frame(0, 10, u32::MAX, 1),
        ] {
            let err = decode_table(&table(bad)).err().unwrap();
            assert!(err.contains("out of range"), "{err}");
        }
    }

    #[test]
    fn a_frame_that_would_inflate_beyond_its_bound_is_refused() {
        let frame = Frame {
            offset: 0,
            len: 0,
            min_ns: 0,
            max_ns: 0,
            lines: 1,
            first: 0,
        };
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_FRAME_RAW_BYTES + 1], 3).unwrap();
        assert!(bomb.len() < 64 << 10);
        let err = frame.decode(&bomb).err().unwrap();
        assert!(err.to_string().contains("too large"), "{err}");
        // A frame whose header does not say its size is not one ODIN wrote.
        let unsized_frame = zstd::stream::encode_all(&b"abc"[..], 3).unwrap();
        if zstd::zstd_safe::get_frame_content_size(&unsized_frame)
            .ok()
            .flatten()
            .is_none()
        {
            assert!(frame.decode(&unsized_frame).is_err());
        }
    }

    #[test]
    fn a_window_replayed_after_its_segment_was_written_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = sealed_store(dir.path());
        // The image before the segment was written: the window is still sealing.
        let image = store.capture().encode().unwrap();
        store.maintain(i64::MIN).unwrap();
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        store.restore(crate::logs::store::StoreImage::decode(&image).unwrap());
        let n = |s: &LogStore| {
            texts(
                &s.select("t", &[Matcher::equal("app", "b")], i64::MIN, i64::MAX, &[])
                    .unwrap(),
            )
            .len()
        };
        assert_eq!(n(&store), 1);
        assert_eq!(store.maintain(i64::MIN).unwrap().segments_written, 1);
        assert!(store.sealing().is_empty());
        assert_eq!(n(&store), 1);
    }

    /// Lines of `app` in the first three windows of a day, one needle among them,
    /// then a line of the next day that closes it.
    fn three_windows_and_the_next_day(store: &LogStore) -> (i64, Vec<String>) {
        use crate::logs::store::MERGED_NS;
        let d0 = T0.div_euclid(MERGED_NS) * MERGED_NS;
        for w in 0..3 {
            store.apply(batch(
                "a",
                (0..200).map(|i| {
                    let text = if w == 1 && i == 7 {
                        "Xid 79 fallen off the bus".to_string()
                    } else {
                        format!("window {w} line {i}")
                    };
                    (d0 + w * WINDOW_NS + i * S, text)
                }),
            ));
        }
        store.apply(batch("b", [(d0 + WINDOW_NS + 3 * S, "b".to_string())]));
        let before = texts(&store.select("t", &[], d0, d0 + MERGED_NS, &[]).unwrap());
        store.apply(batch(
            "a",
            [(d0 + MERGED_NS + 2 * 3600 * S, "next day".into())],
        ));
        (d0, before)
    }

    #[test]
    fn a_closed_day_s_window_segments_merge_into_one_once_shipped() {
        use crate::logs::store::MERGED_NS;
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let (d0, before) = three_windows_and_the_next_day(&store);
        // Not shipped: written out, neither merged nor deleted by retention.
        let done = store.maintain_shipped(i64::MAX, &|_| false).unwrap();
        assert_eq!(
            (
                done.segments_written,
                done.segments_merged,
                done.segments_deleted
            ),
            (3, 0, 0)
        );
        assert_eq!(store.num_segments(), 3);
        let sources: Vec<String> = store
            .segments()
            .iter()
            .map(|s| s.meta.ulid.clone())
            .collect();
        // Shipped: the day's three segments become one.
        let done = store.maintain(i64::MIN).unwrap();
        assert_eq!(done.segments_merged, 3);
        assert_eq!(store.num_segments(), 1);
        let merged = store.segments().remove(0);
        assert_eq!(
            (merged.meta.window_start, merged.meta.window_end),
            (d0, d0 + MERGED_NS)
        );
        let c = merged.meta.compaction.clone().unwrap();
        assert_eq!(c.level, 2);
        let mut want = sources.clone();
        want.sort();
        assert_eq!(c.sources, want);
        assert_eq!(
            merged.meta.level1(),
            want.iter().map(String::as_str).collect::<Vec<_>>()
        );
        for u in &sources {
            assert!(!dir.path().join("t").join(u).exists(), "source {u} left");
        }
        // The same lines, and the index (built again for the new ordinals) narrows.
        let after = texts(&store.select("t", &[], d0, d0 + MERGED_NS, &[]).unwrap());
        assert_eq!(after, before);
        let hit = store
            .select("t", &[], d0, d0 + MERGED_NS, &["Xid 79".to_string()])
            .unwrap();
        assert_eq!(texts(&hit), ["Xid 79 fallen off the bus"]);
        // A crash between the merge and the deletion of its sources: on open, the
        // merged segment wins and the leftover goes.
        drop(store);
        let leftover = dir.path().join("t").join(&sources[0]);
        std::fs::create_dir_all(&leftover).unwrap();
        let copy = |f: &str| std::fs::copy(merged.dir.join(f), leftover.join(f)).unwrap();
        copy(STREAMS);
        copy(LINES);
        let mut meta = merged.meta.clone();
        meta.ulid = sources[0].clone();
        meta.compaction = None;
        std::fs::write(leftover.join(META), serde_json::to_vec(&meta).unwrap()).unwrap();
        copy_dir(&merged.dir.join(INDEX), &leftover.join(INDEX));
        let store = LogStore::open(dir.path()).unwrap();
        assert!(!leftover.exists());
        assert_eq!(store.num_segments(), 1);
        assert_eq!(
            texts(&store.select("t", &[], d0, d0 + MERGED_NS, &[]).unwrap()),
            before
        );
        // Retention drops the merged day as a whole.
        let done = store.maintain(d0 + MERGED_NS).unwrap();
        assert_eq!(done.segments_deleted, 1);
        assert_eq!(store.num_segments(), 0);
    }

    /// Copies a flat directory (a segment's index).
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    #[test]
    fn a_day_still_open_or_not_written_whole_is_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        // Two windows sealed, the day still open (its third window takes lines).
        let d0 = T0.div_euclid(crate::logs::store::MERGED_NS) * crate::logs::store::MERGED_NS;
        for w in 0..3 {
            store.apply(batch("a", [(d0 + w * WINDOW_NS + S, format!("w{w}"))]));
        }
        store.apply(batch("a", [(d0 + 2 * WINDOW_NS + 3700 * S, "late".into())]));
        let done = store.maintain(i64::MIN).unwrap();
        assert_eq!((done.segments_written, done.segments_merged), (2, 0));
        assert_eq!(store.num_segments(), 2);
    }

    #[test]
    fn a_damaged_segment_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let (store, _) = sealed_store(&logs);
        store.maintain(i64::MIN).unwrap();
        drop(store);
        let seg = logs.join("t").join(segment_ulid("t", T0).to_string());
        let mut table = fs::read(seg.join(STREAMS)).unwrap();
        table[5] ^= 0xff;
        fs::write(seg.join(STREAMS), table).unwrap();
        let store = LogStore::open(&logs).unwrap();
        assert_eq!(store.num_segments(), 0);
        assert!(
            dir.path()
                .join("corrupted/logs/t")
                .join(segment_ulid("t", T0).to_string())
                .exists()
        );
        assert!(decode_table(&[1, 2, 3]).is_err());
    }
}
