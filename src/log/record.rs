//! The log's record format: sample batches, log lines, deletions and head cuts.
//!
//! No record holds a node-local series reference, so the same bytes are the payload
//! of a Raft log entry and apply identically on every replica. All but type 7 are
//! self-contained; type 7 names series by a dictionary that every replica builds
//! alike from the entries before it.
//!
//! ```text
//! record      := type:u8 body
//! type 5      := samples batch, labels and samples in two sections (what ODIN writes)
//!   body      := base_t:varint labels_len:uvarint snappy(labels)[labels_len] snappy(samples)
//!   labels    := n_strings:uvarint str* n_series:uvarint (n_labels:uvarint (name:uvarint value:uvarint)*)*
//!   samples   := (n_samples:uvarint (dt:varint v:u64le)*)*      one per series, in order
//! type 3      := samples batch, interleaved (written only for a batch over 4 GiB)
//!   body      := base_t:varint n_strings:uvarint str* n_series:uvarint series*
//!   series    := n_labels:uvarint (name:uvarint value:uvarint)* n_samples:uvarint (dt:varint v:u64le)*
//! type 4      := type 3's body, snappy-compressed (written before type 5; still read)
//! type 2      := deletion (tombstone for the head)
//!   body      := n_matchers:uvarint (kind:u8 name:str value:str)* min_t:varint max_t:varint
//! type 6      := head cut: the head's samples before `end` become a block
//!   body      := end:varint
//! type 7      := samples batch naming its series by the log's series dictionary
//!   body      := flags:u8 [token:u64le] base_t:varint defs_len:uvarint snappy(defs)[defs_len] snappy(by_ref)
//!   flags     := bit 0: reset: the dictionary is emptied before this entry's definitions
//!                are added (token: the reset's number, by which its proposer sees it applied)
//!   defs      := type 5's labels: the label sets this entry adds to the dictionary's end
//!                (absent when defs_len is 0)
//!   by_ref    := n_series:uvarint (ref:uvarint n_samples:uvarint (dt:varint v:u64le)*)*
//!   ref       := 0: the entry's next definition (each used once, in order);
//!                k > 0: the dictionary's series prev + 1 + unzigzag(k - 1), prev being the
//!                id the last such ref named (-1 before the first)
//! type 8      := log lines of one tenant
//!   body      := tenant:str base_ns:varint snappy(streams)
//!   streams   := n_streams:uvarint (n_labels:uvarint (name:str value:str)* n_lines:uvarint line*)*
//!   line      := dt_ns:varint text:str n_meta:uvarint (name:str value:str)*
//! str         := len:uvarint bytes (UTF-8)
//! ```
//!
//! A samples batch carries its label strings once, in a table at the front; series
//! refer to them by index (a remote-write request of 2,000 series repeats the same few
//! dozen names and values thousands of times, so this keeps the WAL about seven times
//! smaller than spelling every label out). Timestamps are deltas from the batch's
//! first one. Values are stored as raw bits so NaN payloads (the stale marker)
//! survive.
//!
//! Type 7 is written to a replicated log only (see `tsdb::dictionary`): every
//! replica applies the same entries, so it can keep the same dictionary of label
//! sets, and an entry names a series the dictionary holds by its id alone. Such an
//! entry is not self-contained: it decodes only against the dictionary that the
//! entries before it built.
//!
//! Labels and samples lie in separate sections so that a writer committing the same
//! series again and again (a scrape target, every interval) can reuse the compressed
//! label section of its previous record ([`LabelSectionMemo`]): encoding and
//! compressing every series' labels every scrape was most of what a record cost.

use arcstr::ArcStr;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use crate::log::varint::{put_uvarint, put_varint, take_uvarint, unzigzag, zigzag};
use crate::model::{Label, Labels, MatchType, Matcher, Sample};

const RECORD_DELETION: u8 = 2;
const RECORD_SAMPLES: u8 = 3;
const RECORD_SAMPLES_SNAPPY: u8 = 4;
const RECORD_SAMPLES_SPLIT: u8 = 5;
const RECORD_HEAD_CUT: u8 = 6;
const RECORD_SAMPLES_BY_REF: u8 = 7;
const RECORD_LOG_LINES: u8 = 8;
/// Type 7's flag: the dictionary starts anew.
const FLAG_RESET: u8 = 1;
/// Largest decompressed samples body accepted when decoding.
const MAX_BODY_BYTES: usize = 256 << 20;

/// One series' part of a batch: its labels and where its samples lie in
/// [`Batch::samples`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSeries {
    pub labels: Labels,
    pub samples: Range<usize>,
}

/// A committed unit of writes: what one appender's commit made durable. Samples of all
/// series live in one vector, so building a batch of thousands of series does not
/// allocate per series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub series: Vec<BatchSeries>,
    pub samples: Vec<Sample>,
}

impl Batch {
    pub fn num_samples(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Adds a series with its samples.
    pub fn push_series(&mut self, labels: Labels, samples: &[Sample]) {
        let start = self.samples.len();
        self.samples.extend_from_slice(samples);
        self.series.push(BatchSeries {
            labels,
            samples: start..self.samples.len(),
        });
    }

    /// Adds one sample, to the last series if it has the same labels.
    pub fn push_sample(&mut self, labels: &Labels, sample: Sample) {
        self.samples.push(sample);
        let end = self.samples.len();
        match self.series.last_mut() {
            Some(last) if last.samples.end == end - 1 && &last.labels == labels => {
                last.samples.end = end;
            }
            _ => self.series.push(BatchSeries {
                labels: labels.clone(),
                samples: end - 1..end,
            }),
        }
    }

    /// Samples of one of this batch's series.
    pub fn samples_of(&self, s: &BatchSeries) -> &[Sample] {
        self.samples.get(s.samples.clone()).unwrap_or(&[])
    }

    /// (labels, samples) per series.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, &[Sample])> {
        self.series.iter().map(|s| (&s.labels, self.samples_of(s)))
    }

    /// A copy holding only the samples `keep` accepts; series left empty are dropped.
    pub fn filtered(&self, mut keep: impl FnMut(&Sample) -> bool) -> Batch {
        let mut out = Batch::default();
        for (labels, samples) in self.iter() {
            let start = out.samples.len();
            out.samples
                .extend(samples.iter().filter(|s| keep(s)).copied());
            if out.samples.len() > start {
                out.series.push(BatchSeries {
                    labels: labels.clone(),
                    samples: start..out.samples.len(),
                });
            }
        }
        out
    }
}

/// A deletion of samples in `[min_t, max_t]` of the series matching `matchers`.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub matchers: Vec<Matcher>,
    pub min_t: i64,
    pub max_t: i64,
}

/// Cutting the head: from this entry on, samples before `end` are out of bounds, and
/// what the head holds before `end` is written as a block. An entry of its own, so
/// that every replica draws the line at the same place in the sequence of batches
/// and cuts the same block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadCut {
    pub end: i64,
}

/// A samples batch naming its series by the log's series dictionary (type 7).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdBatch {
    /// The dictionary is emptied before this entry's definitions: the reset's
    /// number.
    pub reset: Option<u64>,
    /// The label sets this entry adds to the dictionary's end.
    pub defined: Vec<Labels>,
    /// Per series: the dictionary id it names (`None`: the entry's next
    /// definition), and where its samples lie in `samples`.
    pub series: Vec<(Option<u32>, Range<usize>)>,
    pub samples: Vec<Sample>,
}

/// Log lines of one tenant: what one push (or one tailer's read) made durable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogBatch {
    pub tenant: String,
    pub streams: Vec<LogStream>,
    /// Where the built-in sources that read these lines stand after them: (source,
    /// position), opaque to the log. Applied with the lines, so a source resumes
    /// exactly after what is durable: nothing lost, nothing read twice.
    pub positions: Vec<(String, String)>,
}

/// The lines of one stream, in the order they came.
#[derive(Debug, Clone, PartialEq)]
pub struct LogStream {
    pub labels: Labels,
    pub lines: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Unix nanoseconds.
    pub ts_ns: i64,
    pub text: String,
    /// Structured metadata: (name, value).
    pub metadata: Vec<(String, String)>,
}

/// A decoded log entry.
#[derive(Debug, Clone)]
pub enum Record {
    LogLines(LogBatch),
    Samples(Batch),
    /// Handles [`decode_resolving`] returns with it are those of `defined`.
    SamplesById(IdBatch),
    Deletion(Deletion),
    HeadCut(HeadCut),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("invalid utf-8 in label")]
    Utf8,
    #[error("invalid matcher in deletion record: {0}")]
    Matcher(String),
    #[error("implausible count {0} in record")]
    Count(u64),
    #[error("string reference {0} outside the record's table")]
    StringRef(u64),
    #[error("corrupt snappy body")]
    Snappy,
    #[error("invalid series dictionary reference: {0}")]
    Dictionary(String),
}

pub fn encode_batch(batch: &Batch, out: &mut Vec<u8>) {
    encode_batch_reusing(batch, None, out);
}

/// The label section of the last record one writer made, kept by that writer (a
/// scrape loop) between its commits: a target exposes the same series in the same
/// order scrape after scrape, so its records' label sections are byte for byte the
/// same and need not be encoded and compressed again. The record stays
/// self-contained; only the work of writing it is saved.
#[derive(Default)]
pub struct LabelSectionMemo {
    /// The label sets the section was encoded from, in order.
    series: Vec<Labels>,
    /// The section as it lies in the record: snappy-compressed.
    section: Vec<u8>,
}

impl LabelSectionMemo {
    /// Whether `batch` has exactly the series the section was made from. A pointer
    /// comparison for label sets the head handed out (every known series'); equal
    /// values count too (a series' first scrape carries the scraper's label set, later
    /// ones the head's; the report series are built anew each scrape). A label set
    /// found equal by value is adopted, so that the next comparison of a series the
    /// head knows is a pointer comparison again.
    fn matches(&mut self, batch: &Batch) -> bool {
        // An empty section was never filled (a compressed one is never empty).
        if self.section.is_empty() || self.series.len() != batch.series.len() {
            return false;
        }
        for (kept, s) in self.series.iter_mut().zip(&batch.series) {
            if kept.ptr_eq(&s.labels) {
                continue;
            }
            if *kept != s.labels {
                return false;
            }
            *kept = s.labels.clone();
        }
        true
    }
}

/// [`encode_batch`], reusing `memo`'s label section when the batch has the same
/// series as the last batch encoded with it (and otherwise leaving this batch's
/// section there for the next one).
pub fn encode_batch_reusing(batch: &Batch, memo: Option<&mut LabelSectionMemo>, out: &mut Vec<u8>) {
    let base_t = batch.samples.first().map(|s| s.t).unwrap_or(0);
    let start = out.len();
    out.push(RECORD_SAMPLES_SPLIT);
    put_varint(out, base_t);
    let written = SCRATCH.with_borrow_mut(|body| {
        let labels_ok = match memo {
            Some(memo) => {
                let reusable = memo.matches(batch) || {
                    memo.section.clear();
                    memo.series.clear();
                    let ok = compressed_label_section(batch, body, &mut memo.section);
                    if ok {
                        memo.series
                            .extend(batch.series.iter().map(|s| s.labels.clone()));
                        // Kept for as long as the target is scraped, by every
                        // target: not at snappy's worst-case size.
                        memo.section.shrink_to_fit();
                    }
                    ok
                };
                reusable && put_section(out, &memo.section)
            }
            None => {
                let mut section = Vec::new();
                compressed_label_section(batch, body, &mut section) && put_section(out, &section)
            }
        };
        body.clear();
        encode_sample_section(batch, base_t, body);
        let ok = labels_ok && compress_into(body, out);
        if body.capacity() > 16 << 20 {
            *body = Vec::new();
        }
        ok
    });
    if !written {
        // Only sections over 4 GiB fail to compress; such a batch is written in the
        // uncompressed interleaved form.
        out.truncate(start);
        out.push(RECORD_SAMPLES);
        let (table, refs) = string_table(batch.series.iter().map(|s| &s.labels));
        encode_samples_body(batch, base_t, &table, refs, out);
    }
}

/// The batch's label section, compressed into `out` (`scratch` holds it before);
/// false when it is too large for snappy.
fn compressed_label_section(batch: &Batch, scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    scratch.clear();
    encode_label_section(batch.series.iter().map(|s| &s.labels), scratch);
    compress_into(scratch, out)
}

/// Appends a length-prefixed section; true, so that it can end a chain of steps.
fn put_section(out: &mut Vec<u8>, section: &[u8]) -> bool {
    put_uvarint(out, section.len() as u64);
    out.extend_from_slice(section);
    true
}

/// Appends `body` snappy-compressed to `out`; false (and `out` as it was) when the
/// body is too large for snappy.
fn compress_into(body: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.resize(start + snap::raw::max_compress_len(body.len()), 0);
    match snap::raw::Encoder::new().compress(body, &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            true
        }
        Err(_) => {
            out.truncate(start);
            false
        }
    }
}

/// The batch's label strings, each once, and each series' labels as indexes into them
/// (name, value, name, value, …, series after series).
#[inline]
fn string_table<'a>(sets: impl Iterator<Item = &'a Labels>) -> (Vec<&'a str>, Vec<u32>) {
    // The string table is keyed by the strings' addresses: label sets of the head share
    // interned strings, so equal strings are almost always the same allocation, and an
    // address is far cheaper to hash than the text. A string that is equal but not
    // shared just appears twice in the table.
    //
    // A scrape batch looks up a thousand series' labels, a dozen strings each, among
    // a few hundred distinct ones: a small direct-mapped cache of address → id answers
    // nearly all of them; the map holds the rest.
    let mut ids: HashMap<usize, u32, BuildHasherDefault<AddrHasher>> =
        HashMap::with_capacity_and_hasher(256, BuildHasherDefault::default());
    let mut table: Vec<&str> = Vec::with_capacity(256);
    let mut refs: Vec<u32> = Vec::with_capacity(sets.size_hint().0 * 16);
    let mut direct = [(0usize, 0u32); DIRECT_SLOTS];
    for labels in sets {
        for l in labels.iter() {
            for s in [&*l.name, &*l.value] {
                let addr = s.as_ptr() as usize;
                let slot = &mut direct[direct_slot(addr)];
                if slot.0 == addr {
                    refs.push(slot.1);
                    continue;
                }
                let id = *ids.entry(addr).or_insert_with(|| {
                    table.push(s);
                    (table.len() - 1) as u32
                });
                *slot = (addr, id);
                refs.push(id);
            }
        }
    }
    (table, refs)
}

/// Slots of the direct-mapped string cache in [`string_table`] (12 KiB on the stack).
const DIRECT_SLOTS: usize = 1024;

/// The slot of a string address: its bits above the allocator's alignment, folded.
fn direct_slot(addr: usize) -> usize {
    ((addr >> 4) ^ (addr >> 14)) & (DIRECT_SLOTS - 1)
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Type 5's label section (before compression): the string table, then each label
/// set as references into it.
#[inline]
pub(crate) fn encode_label_section<'a>(
    sets: impl Iterator<Item = &'a Labels> + Clone,
    out: &mut Vec<u8>,
) {
    let (table, refs) = string_table(sets.clone());
    put_uvarint(out, table.len() as u64);
    for s in &table {
        put_str(out, s);
    }
    put_uvarint(out, sets.clone().count() as u64);
    let mut refs = refs.into_iter();
    for labels in sets {
        put_uvarint(out, labels.len() as u64);
        for _ in 0..labels.len() * 2 {
            put_uvarint(out, u64::from(refs.next().unwrap_or(0)));
        }
    }
}

/// Type 5's sample section (before compression): each series' samples, in the order
/// of the label section.
fn encode_sample_section(batch: &Batch, base_t: i64, out: &mut Vec<u8>) {
    for (_, samples) in batch.iter() {
        put_samples(out, samples, base_t);
    }
}

fn put_samples(out: &mut Vec<u8>, samples: &[Sample], base_t: i64) {
    put_uvarint(out, samples.len() as u64);
    for sample in samples {
        put_varint(out, sample.t.wrapping_sub(base_t));
        out.extend_from_slice(&sample.v.to_bits().to_le_bytes());
    }
}

/// Type 3's body: labels and samples interleaved, series after series.
fn encode_samples_body(
    batch: &Batch,
    base_t: i64,
    table: &[&str],
    refs: Vec<u32>,
    out: &mut Vec<u8>,
) {
    put_varint(out, base_t);
    put_uvarint(out, table.len() as u64);
    for s in table {
        put_str(out, s);
    }
    put_uvarint(out, batch.series.len() as u64);
    let mut refs = refs.into_iter();
    for (labels, samples) in batch.iter() {
        put_uvarint(out, labels.len() as u64);
        for _ in 0..labels.len() * 2 {
            put_uvarint(out, u64::from(refs.next().unwrap_or(0)));
        }
        put_samples(out, samples, base_t);
    }
}

/// Hashes an address: multiply by a large odd constant (addresses are already
/// unique; this only spreads their aligned low bits).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, v: usize) {
        self.0 = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Encodes `batch` as a type-7 entry: its series `i` names dictionary id `refs[i]`,
/// or, where that is `None`, is defined by the entry (with its labels, in batch
/// order); `reset` empties the dictionary first. False (and `out` as it was) when a
/// section is too large for snappy.
pub fn encode_batch_by_ref(
    batch: &Batch,
    refs: &[Option<u32>],
    reset: Option<u64>,
    out: &mut Vec<u8>,
) -> bool {
    let start = out.len();
    let base_t = batch.samples.first().map(|s| s.t).unwrap_or(0);
    out.push(RECORD_SAMPLES_BY_REF);
    match reset {
        Some(token) => {
            out.push(FLAG_RESET);
            out.extend_from_slice(&token.to_le_bytes());
        }
        None => out.push(0),
    }
    put_varint(out, base_t);
    let defined = batch
        .series
        .iter()
        .zip(refs)
        .filter(|(_, r)| r.is_none())
        .map(|(s, _)| &s.labels);
    let written = SCRATCH.with_borrow_mut(|body| {
        let defs_ok = if defined.clone().next().is_none() {
            put_uvarint(out, 0);
            true
        } else {
            let mut section = Vec::new();
            compressed_sets(defined, body, &mut section) && put_section(out, &section)
        };
        body.clear();
        put_uvarint(body, batch.series.len() as u64);
        let mut prev: i64 = -1;
        for ((_, samples), r) in batch.iter().zip(refs) {
            match r {
                None => put_uvarint(body, 0),
                Some(id) => {
                    let gap = i64::from(*id) - (prev + 1);
                    put_uvarint(body, zigzag(gap) + 1);
                    prev = i64::from(*id);
                }
            }
            put_samples(body, samples, base_t);
        }
        let ok = defs_ok && compress_into(body, out);
        if body.capacity() > 16 << 20 {
            *body = Vec::new();
        }
        ok
    });
    if !written {
        out.truncate(start);
    }
    written
}

/// Label sets as type 5's label section, compressed into `out` (`scratch` holds it
/// before); false when it is too large for snappy.
fn compressed_sets<'a>(
    sets: impl Iterator<Item = &'a Labels> + Clone,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> bool {
    scratch.clear();
    encode_label_section(sets, scratch);
    compress_into(scratch, out)
}

/// Label sets from [`encode_label_section`]'s bytes (uncompressed), their strings
/// interned.
pub(crate) fn decode_label_section(
    bytes: &[u8],
    intern: &mut impl FnMut(&str) -> ArcStr,
) -> Result<Vec<Labels>, RecordError> {
    let no_lookup = &mut |_: &[(&str, &str)]| None::<(Labels, ())>;
    let (batch, _) = decode_series(
        0,
        Decoder { buf: bytes },
        SampleSource::Absent,
        intern,
        no_lookup,
    )?;
    Ok(batch.series.into_iter().map(|s| s.labels).collect())
}

/// Type 7's body after its type byte.
fn decode_by_ref<K: SeriesLookup>(
    mut d: Decoder<'_>,
    intern: &mut impl FnMut(&str) -> ArcStr,
    known: &mut K,
) -> Result<Resolved<K::Handle>, RecordError> {
    let flags = d.u8()?;
    if flags & !FLAG_RESET != 0 {
        return Err(RecordError::Dictionary(format!("unknown flags {flags:#x}")));
    }
    let reset = if flags & FLAG_RESET != 0 {
        Some(d.u64_le()?)
    } else {
        None
    };
    let base_t = d.varint()?;
    let defs_len = d.uvarint()?;
    let (defs, by_ref) = usize::try_from(defs_len)
        .ok()
        .and_then(|n| d.buf.split_at_checked(n))
        .ok_or(RecordError::Truncated)?;
    let (defined, handles) = if defs.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let body = decompress(defs)?;
        let (b, handles) = decode_series(
            0,
            Decoder { buf: &body },
            SampleSource::Absent,
            intern,
            known,
        )?;
        (
            b.series.into_iter().map(|s| s.labels).collect::<Vec<_>>(),
            handles,
        )
    };
    let body = decompress(by_ref)?;
    let mut d = Decoder { buf: &body };
    // A series takes at least its ref and its sample count.
    let n_series = d.count(2)?;
    let mut batch = IdBatch {
        reset,
        defined,
        series: Vec::with_capacity(n_series),
        samples: Vec::new(),
    };
    let mut prev: i64 = -1;
    let mut definitions = 0;
    for _ in 0..n_series {
        let id = match d.uvarint()? {
            0 => {
                definitions += 1;
                None
            }
            k => {
                let id = (prev + 1)
                    .checked_add(unzigzag(k - 1))
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| RecordError::Dictionary("an id out of range".into()))?;
                prev = i64::from(id);
                Some(id)
            }
        };
        let start = batch.samples.len();
        take_samples(&mut d, base_t, &mut batch.samples)?;
        batch.series.push((id, start..batch.samples.len()));
    }
    if definitions != batch.defined.len() {
        return Err(RecordError::Dictionary(format!(
            "{} definitions, {definitions} series naming one",
            batch.defined.len()
        )));
    }
    Ok((Record::SamplesById(batch), handles))
}

pub fn encode_deletion(d: &Deletion, out: &mut Vec<u8>) {
    out.push(RECORD_DELETION);
    put_uvarint(out, d.matchers.len() as u64);
    for m in &d.matchers {
        out.push(match m.kind {
            MatchType::Equal => 0,
            MatchType::NotEqual => 1,
            MatchType::Regex => 2,
            MatchType::NotRegex => 3,
        });
        put_str(out, &m.name);
        put_str(out, &m.value);
    }
    put_varint(out, d.min_t);
    put_varint(out, d.max_t);
}

/// Encodes log lines (type 8). False (and `out` as it was) when the streams are too
/// large for one snappy block.
pub fn encode_log_batch(batch: &LogBatch, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let base_ns = batch
        .streams
        .iter()
        .flat_map(|s| s.lines.first())
        .map(|l| l.ts_ns)
        .min()
        .unwrap_or(0);
    out.push(RECORD_LOG_LINES);
    put_str(out, &batch.tenant);
    put_varint(out, base_ns);
    let mut body = Vec::with_capacity(
        batch
            .streams
            .iter()
            .flat_map(|s| &s.lines)
            .map(|l| l.text.len() + 8)
            .sum::<usize>()
            + 64,
    );
    put_uvarint(&mut body, batch.streams.len() as u64);
    for s in &batch.streams {
        put_uvarint(&mut body, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_str(&mut body, &l.name);
            put_str(&mut body, &l.value);
        }
        put_uvarint(&mut body, s.lines.len() as u64);
        for line in &s.lines {
            put_varint(&mut body, line.ts_ns.wrapping_sub(base_ns));
            put_str(&mut body, &line.text);
            put_uvarint(&mut body, line.metadata.len() as u64);
            for (name, value) in &line.metadata {
                put_str(&mut body, name);
                put_str(&mut body, value);
            }
        }
    }
    // Written only when there are any, so a push's record is as it always was.
    if !batch.positions.is_empty() {
        put_uvarint(&mut body, batch.positions.len() as u64);
        for (source, position) in &batch.positions {
            put_str(&mut body, source);
            put_str(&mut body, position);
        }
    }
    if !compress_into(&body, out) {
        out.truncate(start);
        return false;
    }
    true
}

/// Type 8's body after its type byte.
fn decode_log_batch(mut d: Decoder<'_>) -> Result<LogBatch, RecordError> {
    let tenant = d.str()?.to_string();
    let base_ns = d.varint()?;
    let body = decompress(d.buf)?;
    let mut d = Decoder { buf: &body };
    // A stream takes at least its label count and its line count; a line its time,
    // its text's length and its metadata count.
    let n_streams = d.count(2)?;
    let mut batch = LogBatch {
        tenant,
        streams: Vec::with_capacity(n_streams),
        positions: Vec::new(),
    };
    for _ in 0..n_streams {
        let n_labels = d.count(2)?;
        let mut labels = Vec::with_capacity(n_labels);
        for _ in 0..n_labels {
            let name = d.str()?;
            let value = d.str()?;
            labels.push(Label {
                name: name.into(),
                value: value.into(),
            });
        }
        // Sorted and unique when written; made so for a hand-made record.
        labels.sort();
        labels.dedup_by(|a, b| a.name == b.name);
        let n_lines = d.count(3)?;
        let mut lines = Vec::with_capacity(n_lines);
        for _ in 0..n_lines {
            let ts_ns = base_ns.wrapping_add(d.varint()?);
            let text = d.str()?.to_string();
            let n_meta = d.count(2)?;
            let mut metadata = Vec::with_capacity(n_meta);
            for _ in 0..n_meta {
                metadata.push((d.str()?.to_string(), d.str()?.to_string()));
            }
            lines.push(LogLine {
                ts_ns,
                text,
                metadata,
            });
        }
        batch.streams.push(LogStream {
            labels: Labels::from_sorted(labels),
            lines,
        });
    }
    if !d.buf.is_empty() {
        for _ in 0..d.count(2)? {
            batch
                .positions
                .push((d.str()?.to_string(), d.str()?.to_string()));
        }
    }
    if !d.buf.is_empty() {
        return Err(RecordError::Count(d.buf.len() as u64));
    }
    Ok(batch)
}

pub fn encode_head_cut(c: &HeadCut, out: &mut Vec<u8>) {
    out.push(RECORD_HEAD_CUT);
    put_varint(out, c.end);
}

/// Decodes a record. `intern` maps label strings to shared strings, so that replaying
/// millions of records does not allocate a string per label.
pub fn decode(
    bytes: &[u8],
    intern: &mut impl FnMut(&str) -> ArcStr,
) -> Result<Record, RecordError> {
    let (record, _) =
        decode_resolving(
            bytes,
            intern,
            &mut |_: &[(&str, &str)]| None::<(Labels, ())>,
        )?;
    Ok(record)
}

/// How [`decode_resolving`] asks its caller about the series of a samples batch.
pub trait SeriesLookup {
    /// What the caller hands back for a series it has.
    type Handle;

    /// Called for each series (with its label pairs, sorted and unique) a few series
    /// before [`SeriesLookup::find`]: a lookup that waits on memory starts fetching
    /// it here, so that the waits of several series overlap. Returns the key `find`
    /// gets with the same pairs (a hash, say).
    fn prepare(&mut self, _pairs: &[(&str, &str)]) -> u64 {
        0
    }

    /// For a series the caller already has, its [`Labels`] and a handle.
    fn find(&mut self, key: u64, pairs: &[(&str, &str)]) -> Option<(Labels, Self::Handle)>;
}

impl<S, F> SeriesLookup for F
where
    F: FnMut(&[(&str, &str)]) -> Option<(Labels, S)>,
{
    type Handle = S;

    fn find(&mut self, _key: u64, pairs: &[(&str, &str)]) -> Option<(Labels, S)> {
        self(pairs)
    }
}

/// A decoded record and, per series of a samples batch, the caller's handle for it.
pub type Resolved<H> = (Record, Vec<Option<H>>);

/// A batch's (or a section of label sets') series and the caller's handle for each.
type ResolvedBatch<H> = (Batch, Vec<Option<H>>);

/// How many series ahead of its lookup [`decode_resolving`] prepares one: enough
/// to cover a cache miss's latency with the work on the series in between.
const LOOKUP_AHEAD: usize = 8;

/// [`decode`], asking `known` about each series of a samples batch first, with its
/// label pairs (sorted, unique) as they lie in the record: for a series the caller
/// already has, `known` returns its [`Labels`] and a handle, and the series'
/// labels are not built again. Returns the handles, one per series of the batch
/// (`None` for series `known` did not know; empty for a deletion).
///
/// WAL replay finds nearly every series already in the head; building each one's
/// label set only to look it up and drop it was a fifth of the replay's work.
pub fn decode_resolving<K: SeriesLookup>(
    bytes: &[u8],
    intern: &mut impl FnMut(&str) -> ArcStr,
    known: &mut K,
) -> Result<Resolved<K::Handle>, RecordError> {
    let mut d = Decoder { buf: bytes };
    match d.u8()? {
        RECORD_SAMPLES => {
            let base_t = d.varint()?;
            decode_series(base_t, d, SampleSource::Interleaved, intern, known).map(samples_record)
        }
        RECORD_SAMPLES_SNAPPY => {
            let body = decompress(d.buf)?;
            let mut d = Decoder { buf: &body };
            let base_t = d.varint()?;
            decode_series(base_t, d, SampleSource::Interleaved, intern, known).map(samples_record)
        }
        RECORD_SAMPLES_SPLIT => {
            let base_t = d.varint()?;
            let labels_len = d.uvarint()?;
            let (labels, samples) = usize::try_from(labels_len)
                .ok()
                .and_then(|n| d.buf.split_at_checked(n))
                .ok_or(RecordError::Truncated)?;
            let labels = decompress(labels)?;
            let samples = decompress(samples)?;
            decode_series(
                base_t,
                Decoder { buf: &labels },
                SampleSource::Apart(Decoder { buf: &samples }),
                intern,
                known,
            )
            .map(samples_record)
        }
        RECORD_DELETION => {
            let n = d.count(3)?;
            let mut matchers = Vec::with_capacity(n);
            for _ in 0..n {
                let kind = match d.u8()? {
                    0 => MatchType::Equal,
                    1 => MatchType::NotEqual,
                    2 => MatchType::Regex,
                    3 => MatchType::NotRegex,
                    k => return Err(RecordError::Matcher(format!("unknown kind {k}"))),
                };
                let name = d.str()?.to_string();
                let value = d.str()?.to_string();
                matchers.push(
                    Matcher::new(kind, name, value)
                        .map_err(|e| RecordError::Matcher(e.to_string()))?,
                );
            }
            let min_t = d.varint()?;
            let max_t = d.varint()?;
            let deletion = Deletion {
                matchers,
                min_t,
                max_t,
            };
            Ok((Record::Deletion(deletion), Vec::new()))
        }
        RECORD_HEAD_CUT => {
            let end = d.varint()?;
            Ok((Record::HeadCut(HeadCut { end }), Vec::new()))
        }
        RECORD_SAMPLES_BY_REF => decode_by_ref(d, intern, known),
        RECORD_LOG_LINES => Ok((Record::LogLines(decode_log_batch(d)?), Vec::new())),
        t => Err(RecordError::UnknownType(t)),
    }
}

/// Decompresses one snappy block of a record.
fn decompress(compressed: &[u8]) -> Result<Vec<u8>, RecordError> {
    let n = snap::raw::decompress_len(compressed).map_err(|_| RecordError::Snappy)?;
    if n > MAX_BODY_BYTES {
        return Err(RecordError::Count(n as u64));
    }
    snap::raw::Decoder::new()
        .decompress_vec(compressed)
        .map_err(|_| RecordError::Snappy)
}

/// Where [`decode_series`] finds each series' samples.
enum SampleSource<'a> {
    /// Right after the series' labels (types 3 and 4).
    Interleaved,
    /// In a section of their own, series after series (type 5).
    Apart(Decoder<'a>),
    /// Nowhere: a section of label sets only (type 7's definitions).
    Absent,
}

/// One series' samples: a count, then (time delta from `base_t`, value bits) each.
fn take_samples(
    d: &mut Decoder<'_>,
    base_t: i64,
    out: &mut Vec<Sample>,
) -> Result<(), RecordError> {
    let n_samples = d.count(9)?;
    out.reserve(n_samples);
    for _ in 0..n_samples {
        let t = base_t.wrapping_add(d.varint()?);
        let v = f64::from_bits(d.u64_le()?);
        out.push(Sample { t, v });
    }
    Ok(())
}

/// Decodes a batch's string table and series from `d`, each series' samples from
/// where `samples` says.
fn decode_series<'a, K: SeriesLookup>(
    base_t: i64,
    mut d: Decoder<'a>,
    mut samples: SampleSource<'a>,
    intern: &mut impl FnMut(&str) -> ArcStr,
    known: &mut K,
) -> Result<ResolvedBatch<K::Handle>, RecordError> {
    let n_strings = d.count(1)?;
    let mut table: Vec<ArcStr> = Vec::with_capacity(n_strings);
    for _ in 0..n_strings {
        table.push(intern(d.str()?));
    }
    // A series takes at least its label count in a type-5 label section, and a
    // label count and a sample count when the two are interleaved.
    let n_series = d.count(match samples {
        SampleSource::Interleaved => 2,
        SampleSource::Apart(_) | SampleSource::Absent => 1,
    })?;
    let mut batch = Batch {
        series: Vec::with_capacity(n_series),
        samples: Vec::new(),
    };
    let string = |d: &mut Decoder<'_>| -> Result<&ArcStr, RecordError> {
        let i = d.uvarint()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| table.get(i))
            .ok_or(RecordError::StringRef(i))
    };
    // First every series' labels as they lie in the table (and its samples), then
    // the lookups: each prepared `LOOKUP_AHEAD` series before it is made.
    let mut refs: Vec<(&ArcStr, &ArcStr)> = Vec::new();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    // Per series: its labels in `refs` and `pairs`, whether they are sorted and
    // unique, and its samples in the batch.
    type Decoded = (std::ops::Range<usize>, bool, std::ops::Range<usize>);
    let mut decoded: Vec<Decoded> = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        let n_labels = d.count(2)?;
        let first = refs.len();
        for _ in 0..n_labels {
            let name = string(&mut d)?;
            let value = string(&mut d)?;
            refs.push((name, value));
            pairs.push((name.as_str(), value.as_str()));
        }
        let start = batch.samples.len();
        let ds = match &mut samples {
            SampleSource::Apart(ds) => Some(ds),
            SampleSource::Interleaved => Some(&mut d),
            SampleSource::Absent => None,
        };
        if let Some(ds) = ds {
            take_samples(ds, base_t, &mut batch.samples)?;
        }
        let labels = first..refs.len();
        let sorted_unique = pairs[labels.clone()].windows(2).all(|w| w[0].0 < w[1].0);
        decoded.push((labels, sorted_unique, start..batch.samples.len()));
    }
    let mut handles = Vec::with_capacity(n_series);
    let mut keys = std::collections::VecDeque::with_capacity(LOOKUP_AHEAD + 1);
    let prepare = |known: &mut K, i: usize| {
        let (labels, sorted_unique, _) = &decoded[i];
        sorted_unique.then(|| known.prepare(&pairs[labels.clone()]))
    };
    for i in 0..n_series.min(LOOKUP_AHEAD) {
        keys.push_back(prepare(known, i));
    }
    for (i, (labels, sorted_unique, samples)) in decoded.iter().enumerate() {
        if i + LOOKUP_AHEAD < n_series {
            keys.push_back(prepare(known, i + LOOKUP_AHEAD));
        }
        let key = keys.pop_front().flatten();
        let resolved = key.and_then(|key| known.find(key, &pairs[labels.clone()]));
        let labels = match resolved {
            Some((labels, handle)) => {
                handles.push(Some(handle));
                labels
            }
            None => {
                handles.push(None);
                let mut labels: Vec<Label> = refs[labels.clone()]
                    .iter()
                    .map(|&(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect();
                // Labels were sorted and unique when encoded; sort defensively anyway
                // so a hand-made record cannot break the head's invariants.
                if !sorted_unique {
                    labels.sort();
                    labels.dedup_by(|a, b| a.name == b.name);
                }
                Labels::from_sorted(labels)
            }
        };
        batch.series.push(BatchSeries {
            labels,
            samples: samples.clone(),
        });
    }
    Ok((batch, handles))
}

/// A samples batch and its handles as a record.
fn samples_record<H>((batch, handles): ResolvedBatch<H>) -> Resolved<H> {
    (Record::Samples(batch), handles)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn u8(&mut self) -> Result<u8, RecordError> {
        let (&b, rest) = self.buf.split_first().ok_or(RecordError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }

    fn uvarint(&mut self) -> Result<u64, RecordError> {
        take_uvarint(&mut self.buf).ok_or(RecordError::Truncated)
    }

    fn varint(&mut self) -> Result<i64, RecordError> {
        self.uvarint().map(unzigzag)
    }

    /// A count of items that each take at least `min_item_bytes`: bounded by what is
    /// left, so a corrupt count cannot make us allocate gigabytes.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, RecordError> {
        let n = self.uvarint()?;
        if n > (self.buf.len() / min_item_bytes.max(1)) as u64 {
            return Err(RecordError::Count(n));
        }
        Ok(n as usize)
    }

    fn u64_le(&mut self) -> Result<u64, RecordError> {
        let (head, rest) = self.buf.split_at_checked(8).ok_or(RecordError::Truncated)?;
        self.buf = rest;
        let mut b = [0u8; 8];
        b.copy_from_slice(head);
        Ok(u64::from_le_bytes(b))
    }

    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| RecordError::Truncated)?;
        let (head, rest) = self.buf.split_at_checked(n).ok_or(RecordError::Truncated)?;
        self.buf = rest;
        std::str::from_utf8(head).map_err(|_| RecordError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;
    use proptest::prelude::*;

    fn no_intern(s: &str) -> ArcStr {
        ArcStr::from(s)
    }

    proptest! {
        #[test]
        fn batch_round_trips(
            series in proptest::collection::vec(
                (
                    proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{1,12}", 0..6),
                    proptest::collection::vec((any::<i64>(), any::<u64>()), 0..20),
                ),
                0..10,
            )
        ) {
            let mut batch = Batch::default();
            for (labels, samples) in series {
                let samples: Vec<Sample> = samples.into_iter().map(|(t, v)| Sample::new(t, f64::from_bits(v))).collect();
                batch.push_series(Labels::from_pairs(labels), &samples);
            }
            let mut buf = Vec::new();
            encode_batch(&batch, &mut buf);
            let Record::Samples(got) = decode(&buf, &mut no_intern).unwrap() else { panic!("wrong type") };
            prop_assert_eq!(got.series.len(), batch.series.len());
            for ((gl, gs), (wl, ws)) in got.iter().zip(batch.iter()) {
                prop_assert_eq!(gl, wl);
                prop_assert_eq!(gs.len(), ws.len());
                prop_assert!(gs.iter().zip(ws).all(|(a, b)| a.bit_eq(b)));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, &mut no_intern);
        }
    }

    fn batch_of(series: &[&Labels], t: i64, v: f64) -> Batch {
        let mut b = Batch::default();
        for (i, l) in series.iter().enumerate() {
            b.push_series((*l).clone(), &[Sample::new(t + i as i64, v + i as f64)]);
        }
        b
    }

    fn decoded(buf: &[u8]) -> Batch {
        let Record::Samples(got) = decode(buf, &mut no_intern).unwrap() else {
            panic!("wrong type")
        };
        got
    }

    #[test]
    fn a_memo_reuses_the_label_section_only_for_the_same_series() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        let c = Labels::from_pairs([("__name__", "down"), ("job", "c")]);
        let mut memo = LabelSectionMemo::default();
        let mut buf = Vec::new();
        let first = batch_of(&[&a, &b], 1_000, 1.0);
        encode_batch_reusing(&first, Some(&mut memo), &mut buf);
        assert_eq!(decoded(&buf), first);

        // The same series with other samples: the section is reused. Shown by
        // planting another batch's section in the memo: it is what comes out.
        let mut planted = Vec::new();
        encode_label_section([&c, &c].into_iter(), &mut planted);
        let kept = std::mem::take(&mut memo.section);
        assert!(compress_into(&planted, &mut memo.section));
        let second = batch_of(&[&a, &b], 16_000, 2.0);
        buf.clear();
        encode_batch_reusing(&second, Some(&mut memo), &mut buf);
        let got = decoded(&buf);
        assert_eq!(got.series[0].labels, c);
        assert_eq!(got.samples, second.samples);
        memo.section = kept;

        // Equal label sets that are other allocations match too.
        let a2 = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert!(!a2.ptr_eq(&a));
        let third = batch_of(&[&a2, &b], 31_000, 3.0);
        buf.clear();
        encode_batch_reusing(&third, Some(&mut memo), &mut buf);
        assert_eq!(decoded(&buf), third);
        // …and are adopted: next time they are one pointer comparison.
        assert!(memo.series[0].ptr_eq(&a2));

        // Another series, one fewer, one more, another order: encoded afresh, and
        // remembered for the next batch.
        for series in [vec![&a, &c], vec![&a], vec![&a, &b, &c], vec![&b, &a]] {
            let batch = batch_of(&series, 46_000, 4.0);
            buf.clear();
            encode_batch_reusing(&batch, Some(&mut memo), &mut buf);
            assert_eq!(decoded(&buf), batch);
            assert!(memo.matches(&batch));
        }
    }

    proptest! {
        #[test]
        fn batches_encoded_with_a_memo_round_trip(
            picks in proptest::collection::vec(
                proptest::collection::vec((0usize..4, any::<u64>()), 0..6),
                1..8,
            )
        ) {
            let pool = [
                Labels::from_pairs([("__name__", "a")]),
                Labels::from_pairs([("__name__", "b"), ("x", "1")]),
                Labels::from_pairs([("__name__", "b"), ("x", "2")]),
                Labels::from_pairs([("__name__", "c"), ("x", "1"), ("y", "")]),
            ];
            let mut memo = LabelSectionMemo::default();
            for (round, batch_picks) in picks.iter().enumerate() {
                let mut batch = Batch::default();
                for (i, (which, bits)) in batch_picks.iter().enumerate() {
                    let t = (round * 100 + i) as i64;
                    batch.push_series(pool[*which].clone(), &[Sample::new(t, f64::from_bits(*bits))]);
                }
                let mut buf = Vec::new();
                encode_batch_reusing(&batch, Some(&mut memo), &mut buf);
                let got = decoded(&buf);
                prop_assert_eq!(got.series.len(), batch.series.len());
                for ((gl, gs), (wl, ws)) in got.iter().zip(batch.iter()) {
                    prop_assert_eq!(gl, wl);
                    prop_assert!(gs.iter().zip(ws).all(|(a, b)| a.bit_eq(b)));
                }
            }
        }
    }

    #[test]
    fn older_record_types_still_decode() {
        let mut batch = Batch::default();
        batch.push_series(
            Labels::from_pairs([("__name__", "up")]),
            &[Sample::new(5, 1.0)],
        );
        batch.push_series(
            Labels::from_pairs([("job", "x")]),
            &[Sample::new(6, stale_nan())],
        );
        let (table, refs) = string_table(batch.series.iter().map(|s| &s.labels));
        let mut body = Vec::new();
        encode_samples_body(&batch, 5, &table, refs, &mut body);
        let mut plain = vec![RECORD_SAMPLES];
        plain.extend_from_slice(&body);
        let mut snappy = vec![RECORD_SAMPLES_SNAPPY];
        assert!(compress_into(&body, &mut snappy));
        for rec in [plain, snappy] {
            let got = decoded(&rec);
            assert_eq!(got.series.len(), 2);
            assert_eq!(got.series[0].labels, batch.series[0].labels);
            assert!(
                got.samples
                    .iter()
                    .zip(&batch.samples)
                    .all(|(a, b)| a.bit_eq(b))
            );
        }
    }

    #[test]
    fn shared_label_strings_are_written_once() {
        let job: ArcStr = ArcStr::from("node");
        let name: ArcStr = ArcStr::from("job");
        let mut batch = Batch::default();
        for i in 0..1000 {
            let labels = Labels::from_sorted(vec![
                Label::new("__name__", format!("metric_{}", i % 10)),
                Label {
                    name: name.clone(),
                    value: job.clone(),
                },
            ]);
            batch.push_series(labels, &[Sample::new(1_700_000_000_000 + i, 1.0)]);
        }
        let mut buf = Vec::new();
        encode_batch(&batch, &mut buf);
        // Per series: 1 byte label count, 4 string refs of 1-2 bytes, 1 byte sample
        // count, a 1-2 byte time delta and 8 value bytes.
        assert!(buf.len() < 1000 * 18 + 20_000, "{} bytes", buf.len());
        let Record::Samples(got) = decode(&buf, &mut no_intern).unwrap() else {
            panic!("wrong type")
        };
        assert_eq!(got, batch);
    }

    /// Each lookup gets the key its own series was prepared with, every series is
    /// prepared exactly once, ahead of its lookup, and the handles come back in order.
    #[test]
    fn lookups_are_prepared_ahead_with_their_own_keys() {
        struct Recorder {
            prepared: Vec<u64>,
            found: Vec<u64>,
        }
        fn key(pairs: &[(&str, &str)]) -> u64 {
            crate::model::hash_label_pairs(pairs.iter().copied())
        }
        impl SeriesLookup for Recorder {
            type Handle = u64;
            fn prepare(&mut self, pairs: &[(&str, &str)]) -> u64 {
                self.prepared.push(key(pairs));
                key(pairs)
            }
            fn find(&mut self, k: u64, pairs: &[(&str, &str)]) -> Option<(Labels, u64)> {
                assert_eq!(k, key(pairs), "a lookup got another series' key");
                assert!(self.prepared.contains(&k), "looked up before prepared");
                self.found.push(k);
                (k % 2 == 0).then(|| (Labels::from_pairs(pairs.iter().copied()), k))
            }
        }
        let mut batch = Batch::default();
        let n = 3 * LOOKUP_AHEAD + 2;
        for i in 0..n {
            let labels = Labels::from_pairs([("__name__", "m"), ("i", &*i.to_string())]);
            batch.push_series(labels, &[Sample::new(i as i64, 1.0)]);
        }
        let mut buf = Vec::new();
        encode_batch(&batch, &mut buf);
        let mut lookup = Recorder {
            prepared: Vec::new(),
            found: Vec::new(),
        };
        let (record, handles) = decode_resolving(&buf, &mut no_intern, &mut lookup).unwrap();
        assert_eq!(lookup.prepared, lookup.found);
        assert_eq!(lookup.found.len(), n);
        let want: Vec<Option<u64>> = lookup
            .found
            .iter()
            .map(|&k| (k % 2 == 0).then_some(k))
            .collect();
        assert_eq!(handles, want);
        let Record::Samples(got) = record else {
            panic!("wrong type")
        };
        assert_eq!(got, batch);
    }

    #[test]
    fn known_series_keep_the_callers_labels() {
        let stored = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let mut batch = Batch::default();
        batch.push_series(stored.clone(), &[Sample::new(1, 1.0)]);
        batch.push_series(Labels::from_pairs([("job", "b")]), &[Sample::new(2, 2.0)]);
        batch.push_series(stored.clone(), &[Sample::new(3, 3.0)]);
        let mut buf = Vec::new();
        encode_batch(&batch, &mut buf);
        let mut asked = Vec::new();
        let (record, handles) =
            decode_resolving(&buf, &mut no_intern, &mut |pairs: &[(&str, &str)]| {
                asked.push(
                    pairs
                        .iter()
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect::<Vec<_>>(),
                );
                stored.eq_pairs(pairs).then(|| (stored.clone(), 7))
            })
            .unwrap();
        assert_eq!(handles, [Some(7), None, Some(7)]);
        assert_eq!(asked[0], ["__name__=up", "job=a"]);
        assert_eq!(asked[1], ["job=b"]);
        let Record::Samples(got) = record else {
            panic!("wrong type")
        };
        assert_eq!(got, batch);

        // Labels out of order (a hand-made record) are never offered, and come out
        // sorted. Strings "b", "a"; one series {b="a", a="b"}, no samples.
        let rec = [RECORD_SAMPLES, 0, 2, 1, b'b', 1, b'a', 1, 2, 0, 1, 1, 0, 0];
        let (record, handles) =
            decode_resolving(
                &rec,
                &mut no_intern,
                &mut |_: &[(&str, &str)]| -> Option<(Labels, ())> {
                    panic!("asked about unsorted labels")
                },
            )
            .unwrap();
        assert_eq!(handles, [None]);
        let Record::Samples(got) = record else {
            panic!("wrong type")
        };
        assert_eq!(
            got.series[0].labels,
            Labels::from_pairs([("a", "b"), ("b", "a")])
        );
    }

    #[test]
    fn string_refs_outside_the_table_are_errors() {
        // base_t 0, one string "a", one series with a label pointing at string 5.
        let rec = [RECORD_SAMPLES, 0, 1, 1, b'a', 1, 1, 0, 5, 0];
        assert!(matches!(
            decode(&rec, &mut no_intern),
            Err(RecordError::StringRef(5))
        ));
    }

    #[test]
    fn deletion_round_trips() {
        let d = Deletion {
            matchers: vec![Matcher::new(MatchType::Regex, "job", "n.*").unwrap()],
            min_t: -5,
            max_t: 10,
        };
        let mut buf = Vec::new();
        encode_deletion(&d, &mut buf);
        let Record::Deletion(got) = decode(&buf, &mut no_intern).unwrap() else {
            panic!("wrong type")
        };
        assert_eq!(got.matchers[0].to_string(), "job=~\"n.*\"");
        assert_eq!((got.min_t, got.max_t), (-5, 10));
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut batch = Batch::default();
        batch.push_series(Labels::from_pairs([("a", "b")]), &[Sample::new(1, 2.0)]);
        let mut buf = Vec::new();
        encode_batch(&batch, &mut buf);
        for n in 0..buf.len() {
            assert!(decode(&buf[..n], &mut no_intern).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn batches_by_reference_round_trip() {
        let mut batch = Batch::default();
        let sets: Vec<Labels> = (0..5)
            .map(|i| Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]))
            .collect();
        for (i, l) in sets.iter().enumerate() {
            batch.push_series(
                l.clone(),
                &[
                    Sample::new(1_000 + i as i64, i as f64),
                    Sample::new(2_000, stale_nan()),
                ],
            );
        }
        let refs = [None, Some(5), Some(6), None, Some(2)];
        for reset in [None, Some(77)] {
            let mut buf = Vec::new();
            assert!(encode_batch_by_ref(&batch, &refs, reset, &mut buf));
            let Record::SamplesById(b) = decode(&buf, &mut no_intern).unwrap() else {
                panic!("not a batch by reference")
            };
            assert_eq!(b.reset, reset);
            assert_eq!(b.defined, vec![sets[0].clone(), sets[3].clone()]);
            assert_eq!(
                b.series.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                refs.to_vec()
            );
            for ((_, range), s) in b.series.iter().zip(&batch.series) {
                let got = &b.samples[range.clone()];
                let want = batch.samples_of(s);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(want) {
                    assert_eq!((g.t, g.v.to_bits()), (w.t, w.v.to_bits()));
                }
            }
            for n in 0..buf.len() {
                assert!(decode(&buf[..n], &mut no_intern).is_err(), "prefix {n}");
            }
        }
        // Unknown flags, and definitions no series uses, are refused.
        let mut buf = Vec::new();
        assert!(encode_batch_by_ref(&batch, &refs, None, &mut buf));
        let mut bad = buf.clone();
        bad[1] = 0x80;
        assert!(decode(&bad, &mut no_intern).is_err());
        let mut one = Batch::default();
        one.push_series(sets[0].clone(), &[Sample::new(1, 1.0)]);
        let mut unused = Vec::new();
        assert!(encode_batch_by_ref(&one, &[None], None, &mut unused));
        let mut by_id = Vec::new();
        assert!(encode_batch_by_ref(&one, &[Some(0)], None, &mut by_id));
        // The definitions of the first with the series of the second: type, flags,
        // base time and the definitions' length take a byte each here.
        assert!(unused[3] < 0x80 && by_id[3] == 0);
        let defs_end = 4 + unused[3] as usize;
        let ids_start = 4;
        let mut mixed = unused[..defs_end].to_vec();
        mixed.extend_from_slice(&by_id[ids_start..]);
        let err = decode(&mixed, &mut no_intern).unwrap_err();
        assert!(err.to_string().contains("definitions"), "{err}");
    }

    #[test]
    fn log_batches_round_trip() {
        let batch = LogBatch {
            tenant: "team-a".into(),
            positions: Vec::new(),
            streams: vec![
                LogStream {
                    labels: Labels::from_pairs([("app", "api"), ("level", "error")]),
                    lines: vec![
                        LogLine {
                            ts_ns: 1_700_000_000_000_000_005,
                            text: "{\"msg\":\"disk full\"}".into(),
                            metadata: vec![("trace_id".into(), "abc".into())],
                        },
                        LogLine {
                            ts_ns: 1_700_000_000_000_000_001,
                            text: String::new(),
                            metadata: vec![],
                        },
                    ],
                },
                LogStream {
                    labels: Labels::from_pairs([("job", "kernel")]),
                    lines: vec![LogLine {
                        ts_ns: -5,
                        text: "NVRM: Xid 79 é".into(),
                        metadata: vec![],
                    }],
                },
            ],
        };
        let mut buf = Vec::new();
        assert!(encode_log_batch(&batch, &mut buf));
        match decode(&buf, &mut no_intern).unwrap() {
            Record::LogLines(b) => assert_eq!(b, batch),
            other => panic!("not log lines: {other:?}"),
        }
        for n in 0..buf.len() {
            assert!(decode(&buf[..n], &mut no_intern).is_err(), "prefix {n}");
        }
        let empty = LogBatch::default();
        let mut buf = Vec::new();
        assert!(encode_log_batch(&empty, &mut buf));
        assert!(matches!(decode(&buf, &mut no_intern), Ok(Record::LogLines(b)) if b == empty));
        // A tailer's entry carries where its sources stand.
        let positioned = LogBatch {
            positions: vec![
                ("local/file:/var/log/syslog".into(), "2049:131:4096".into()),
                ("local/journald".into(), "s=abc;i=1".into()),
            ],
            ..batch
        };
        let mut buf = Vec::new();
        assert!(encode_log_batch(&positioned, &mut buf));
        match decode(&buf, &mut no_intern).unwrap() {
            Record::LogLines(b) => assert_eq!(b, positioned),
            other => panic!("not log lines: {other:?}"),
        }
    }
}
