//! The log store: the state machine's side for log lines (record type 8).
//!
//! Lines are kept per tenant, in windows of two hours aligned as the TSDB's blocks
//! are, and within a window per stream, in the order they were applied. A window is
//! *open* while it may still take lines, then *sealed*: from then on a line for it
//! is refused (as a sample below the head's bound is), and maintenance writes it out
//! as a segment (`logs::segment`) and drops it from memory.
//!
//! What happens on apply depends only on the entries, never on a clock, so every
//! replica holds the same lines and seals the same windows at the same place in the
//! log:
//! * a line older than its stream's newest by more than [`OUT_OF_ORDER_WINDOW_NS`]
//!   is refused (Loki's `unordered_writes`: half of `max_chunk_age`, 1 h);
//! * a line equal to its stream's last (time and text) is dropped silently, as
//!   Loki's ingester drops it;
//! * a window seals once the tenant's newest line is [`OUT_OF_ORDER_WINDOW_NS`] past
//!   its end, or a head cut (`log::record::HeadCut`) passes its end.
//!
//! Memory: a stream's lines are frozen in shared chunks of [`CHUNK_LINES`], so that
//! an image or a query copies only the unfrozen tail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::log::record::{self, LogBatch, LogLine, LogStream, Record};
use crate::logs::bytes::ByteReader;
use crate::logs::segment::{self, Segment, SegmentMeta};
use crate::model::{Labels, Matcher};
use crate::storage::AppendSummary;

/// A window's length: the TSDB's block range (2 h), in nanoseconds.
pub const WINDOW_NS: i64 = 2 * 3_600 * 1_000_000_000;

/// How far behind its stream's newest line a line may be (Loki: half of
/// `max_chunk_age`).
pub const OUT_OF_ORDER_WINDOW_NS: i64 = 3_600 * 1_000_000_000;

/// The most lines one query may read (from memory and segments together): a
/// query over more fails with a clear error instead of exhausting memory.
pub const MAX_LINES_PER_QUERY: usize = 5_000_000;

/// Lines per frozen chunk of a stream.
pub const CHUNK_LINES: usize = 128;

/// The span window segments are merged into once closed: a day, aligned.
pub const MERGED_NS: i64 = 12 * WINDOW_NS;

/// The start of the window holding `ts_ns`.
pub fn window_start(ts_ns: i64) -> i64 {
    ts_ns.div_euclid(WINDOW_NS) * WINDOW_NS
}

/// One stream's lines in one window.
#[derive(Clone)]
struct WindowStream {
    labels: Labels,
    frozen: Vec<Arc<[LogLine]>>,
    tail: Vec<LogLine>,
    min_ns: i64,
    max_ns: i64,
}

impl WindowStream {
    fn new(labels: Labels) -> Self {
        WindowStream {
            labels,
            frozen: Vec::new(),
            tail: Vec::new(),
            min_ns: i64::MAX,
            max_ns: i64::MIN,
        }
    }

    fn push(&mut self, line: LogLine) {
        self.min_ns = self.min_ns.min(line.ts_ns);
        self.max_ns = self.max_ns.max(line.ts_ns);
        self.tail.push(line);
        if self.tail.len() >= CHUNK_LINES {
            let chunk: Arc<[LogLine]> = std::mem::take(&mut self.tail).into();
            self.frozen.push(chunk);
        }
    }

    /// Every line, as shared chunks (the tail copied into one).
    fn chunks(&self) -> Vec<Arc<[LogLine]>> {
        let mut out = self.frozen.clone();
        if !self.tail.is_empty() {
            out.push(self.tail.clone().into());
        }
        out
    }

    fn num_lines(&self) -> usize {
        self.frozen.iter().map(|c| c.len()).sum::<usize>() + self.tail.len()
    }
}

/// A window's lines, stream by stream.
#[derive(Clone, Default)]
pub struct Window {
    streams: Vec<WindowStream>,
    by_labels: HashMap<Labels, usize>,
}

impl Window {
    fn stream_mut(&mut self, labels: &Labels) -> &mut WindowStream {
        let i = match self.by_labels.get(labels) {
            Some(&i) => i,
            None => {
                self.streams.push(WindowStream::new(labels.clone()));
                self.by_labels
                    .insert(labels.clone(), self.streams.len() - 1);
                self.streams.len() - 1
            }
        };
        &mut self.streams[i]
    }

    /// The window's streams and their lines, each stream's lines in time order
    /// (lines of equal time in the order they were applied).
    pub fn sorted_streams(&self) -> Vec<(Labels, Vec<LogLine>)> {
        let mut out: Vec<(Labels, Vec<LogLine>)> = self
            .streams
            .iter()
            .map(|s| {
                let mut lines: Vec<LogLine> =
                    s.chunks().iter().flat_map(|c| c.iter().cloned()).collect();
                lines.sort_by_key(|l| l.ts_ns);
                (s.labels.clone(), lines)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn num_lines(&self) -> usize {
        self.streams.iter().map(|s| s.num_lines()).sum()
    }
}

/// What the store remembers of a stream between windows: where its lines stand.
#[derive(Clone, Debug, PartialEq)]
struct StreamHead {
    newest_ns: i64,
    last_ts_ns: i64,
    last_text: String,
}

/// One tenant's lines not yet written out.
#[derive(Clone)]
struct Tenant {
    /// Open windows by start.
    open: BTreeMap<i64, Window>,
    /// Sealed windows waiting to be written out, by start.
    sealing: BTreeMap<i64, Arc<Window>>,
    heads: HashMap<Labels, StreamHead>,
    /// Lines before this are refused: their windows are sealed.
    sealed_before_ns: i64,
    newest_ns: i64,
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant {
            open: BTreeMap::new(),
            sealing: BTreeMap::new(),
            heads: HashMap::new(),
            sealed_before_ns: i64::MIN,
            newest_ns: i64::MIN,
        }
    }
}

impl Tenant {
    /// Seals the open windows that end at or before `end_ns`.
    fn seal_before(&mut self, end_ns: i64) {
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            if start.saturating_add(WINDOW_NS) > end_ns {
                break;
            }
            let window = entry.remove();
            self.sealed_before_ns = self.sealed_before_ns.max(start + WINDOW_NS);
            self.sealing.insert(start, Arc::new(window));
        }
        // A window with no lines seals too: nothing may enter before the bound.
        let bound = window_start(end_ns);
        if bound > self.sealed_before_ns {
            self.sealed_before_ns = bound;
        }
        // Stream heads older than every open window can no longer refuse anything
        // the bound does not.
        let floor = self.sealed_before_ns;
        self.heads.retain(|_, h| h.newest_ns >= floor);
    }
}

/// A sealed window for maintenance to write out.
pub struct SealedWindow {
    pub tenant: String,
    pub start_ns: i64,
    pub window: Arc<Window>,
}

/// The log store's state as a query sees it: per stream, its lines in shared chunks.
pub struct Selected {
    pub labels: Labels,
    /// The lines of every window, each chunk in the order its lines were applied.
    pub chunks: Vec<Arc<[LogLine]>>,
}

/// For tests: the texts of the selected lines, by time.
#[cfg(test)]
pub fn texts_by_time(sel: &[Selected]) -> Vec<String> {
    let mut out: Vec<(i64, String)> = sel
        .iter()
        .flat_map(|s| s.chunks.iter().flat_map(|c| c.iter()))
        .map(|l| (l.ts_ns, l.text.clone()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, t)| t).collect()
}

/// The lines of every tenant: those not yet written out, the bookkeeping that
/// decides what a new line may do, and the sealed segments on disk.
#[derive(Default)]
pub struct LogStore {
    tenants: RwLock<BTreeMap<String, Tenant>>,
    /// `<data>/logs`; `None`: nothing is written out (tests of the apply rules).
    dir: Option<PathBuf>,
    /// Sealed segments by tenant and window start.
    segments: RwLock<BTreeMap<String, BTreeMap<i64, Arc<Segment>>>>,
    /// The lines of every applied entry that stored any, for live tails (only
    /// while someone listens).
    tail: Tail,
    /// Where each built-in source stands (see `LogBatch::positions`), as applied.
    positions: RwLock<BTreeMap<String, String>>,
}

/// Applied lines, broadcast to the tails listening.
pub struct Tail(tokio::sync::broadcast::Sender<Arc<LogBatch>>);

/// Applied entries a slow tail may fall behind by before it loses lines.
const TAIL_BACKLOG: usize = 1024;

impl Default for Tail {
    fn default() -> Self {
        Tail(tokio::sync::broadcast::channel(TAIL_BACKLOG).0)
    }
}

/// What one round of [`LogStore::maintain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Maintained {
    pub segments_written: usize,
    /// Window segments merged into day segments.
    pub segments_merged: usize,
    pub segments_deleted: usize,
}

impl LogStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store of a data directory: the segments under `dir` opened, what a crash
    /// left half-written or half-deleted removed. A segment that cannot be opened is
    /// moved aside to `<data>/corrupted/logs/`, as a damaged block is.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let mut segments: BTreeMap<String, BTreeMap<i64, Arc<Segment>>> = BTreeMap::new();
        for tenant in std::fs::read_dir(dir)? {
            let tenant = tenant?;
            if !tenant.file_type()?.is_dir() {
                continue;
            }
            let tenant_name = tenant.file_name().to_string_lossy().to_string();
            let mut found = Vec::new();
            for e in std::fs::read_dir(tenant.path())? {
                let path = e?.path();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion") {
                    std::fs::remove_dir_all(&path)?;
                    continue;
                }
                match Segment::open(&path) {
                    Ok(seg) if seg.meta.tenant == tenant_name => found.push(seg),
                    Ok(_) | Err(_) => {
                        let aside = dir
                            .parent()
                            .unwrap_or(dir)
                            .join("corrupted")
                            .join("logs")
                            .join(&tenant_name);
                        std::fs::create_dir_all(&aside)?;
                        tracing::error!(segment = %path.display(), moved_to = %aside.display(), "log segment unreadable; moved aside");
                        std::fs::rename(&path, aside.join(&name))?;
                    }
                }
            }
            // A crash between a merge and the deletion of what it merged leaves
            // both: the merged segment holds the lines, its sources go.
            let merged: HashSet<String> = found
                .iter()
                .filter_map(|s| s.meta.compaction.as_ref())
                .flat_map(|c| c.sources.iter().cloned())
                .collect();
            for seg in found {
                if seg.meta.compaction.is_none() && merged.contains(&seg.meta.ulid) {
                    delete_segment(&seg.dir)?;
                    continue;
                }
                segments
                    .entry(tenant_name.clone())
                    .or_default()
                    .insert(seg.meta.window_start, Arc::new(seg));
            }
        }
        Ok(LogStore {
            tenants: RwLock::default(),
            dir: Some(dir.to_path_buf()),
            segments: RwLock::new(segments),
            tail: Tail::default(),
            positions: RwLock::default(),
        })
    }

    /// [`maintain_shipped`](Self::maintain_shipped) with every segment counted as
    /// shipped (no object storage).
    pub fn maintain(&self, retain_after_ns: i64) -> std::io::Result<Maintained> {
        self.maintain_shipped(retain_after_ns, &|_| true)
    }

    /// One round of maintenance: writes out the sealed windows (each becomes a
    /// segment and leaves memory), merges the window segments of each closed day
    /// into one, and deletes the segments whose window ended before
    /// `retain_after_ns`. With object storage, `shipped` says whether a segment's
    /// lines are in the bucket: only those are merged or deleted. A window that
    /// fails to be written stays in memory for the next round.
    pub fn maintain_shipped(
        &self,
        retain_after_ns: i64,
        shipped: &dyn Fn(&SegmentMeta) -> bool,
    ) -> std::io::Result<Maintained> {
        let Some(dir) = &self.dir else {
            return Ok(Maintained::default());
        };
        let mut done = Maintained::default();
        let mut failure = None;
        for sealed in self.sealing() {
            // A window an older image brought back after its day was merged is in
            // the merged segment already.
            let covered = self.segments.read().get(&sealed.tenant).is_some_and(|s| {
                s.values().any(|seg| {
                    seg.meta.compaction.is_some()
                        && seg.meta.window_start <= sealed.start_ns
                        && sealed.start_ns < seg.meta.window_end
                })
            });
            if covered {
                self.written_out(&sealed.tenant, sealed.start_ns);
                continue;
            }
            let tenant_dir = dir.join(&sealed.tenant);
            let written =
                segment::write(&tenant_dir, &sealed.tenant, sealed.start_ns, &sealed.window)
                    .and_then(|path| Segment::open(&path));
            match written {
                Ok(seg) => {
                    self.segments
                        .write()
                        .entry(sealed.tenant.clone())
                        .or_default()
                        .insert(sealed.start_ns, Arc::new(seg));
                    self.written_out(&sealed.tenant, sealed.start_ns);
                    done.segments_written += 1;
                }
                Err(e) => {
                    tracing::error!(tenant = sealed.tenant, window_start_ns = sealed.start_ns, error = %e, "log segment not written; its lines stay in memory");
                    failure.get_or_insert(e);
                }
            }
        }
        for (tenant, start, sources) in self.mergeable(shipped) {
            let end = start + MERGED_NS;
            let merged = segment::compact(&dir.join(&tenant), &tenant, start, end, &sources)
                .and_then(|path| Segment::open(&path));
            match merged {
                Ok(seg) => {
                    {
                        let mut segments = self.segments.write();
                        let per_tenant = segments.entry(tenant.clone()).or_default();
                        for s in &sources {
                            per_tenant.remove(&s.meta.window_start);
                        }
                        per_tenant.insert(start, Arc::new(seg));
                    }
                    done.segments_merged += sources.len();
                    for s in &sources {
                        if let Err(e) = delete_segment(&s.dir) {
                            tracing::warn!(segment = %s.dir.display(), error = %e, "cannot delete a merged log segment");
                            failure.get_or_insert(e);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(tenant, day_start_ns = start, error = %e, "log segments not merged");
                    failure.get_or_insert(e);
                }
            }
        }
        let expired: Vec<Arc<Segment>> = {
            let mut segments = self.segments.write();
            let mut out = Vec::new();
            for per_tenant in segments.values_mut() {
                let keys: Vec<i64> = per_tenant
                    .iter()
                    .filter(|(_, s)| s.meta.window_end <= retain_after_ns && shipped(&s.meta))
                    .map(|(k, _)| *k)
                    .collect();
                for k in keys {
                    out.extend(per_tenant.remove(&k));
                }
            }
            out
        };
        for seg in expired {
            match delete_segment(&seg.dir) {
                Ok(()) => done.segments_deleted += 1,
                Err(e) => {
                    tracing::warn!(segment = %seg.dir.display(), error = %e, "cannot delete an expired log segment");
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// The days whose window segments may be merged: closed (no line may enter
    /// them any more), written out whole, at least two segments, none merged yet,
    /// every one shipped.
    fn mergeable(
        &self,
        shipped: &dyn Fn(&SegmentMeta) -> bool,
    ) -> Vec<(String, i64, Vec<Arc<Segment>>)> {
        let tenants = self.tenants.read();
        let segments = self.segments.read();
        let mut out = Vec::new();
        for (tenant, per_tenant) in segments.iter() {
            let state = tenants.get(tenant);
            let closed_before = per_tenant
                .values()
                .map(|s| s.meta.window_end)
                .chain(state.map(|t| t.sealed_before_ns))
                .max()
                .unwrap_or(i64::MIN);
            let mut days: BTreeMap<i64, Vec<Arc<Segment>>> = BTreeMap::new();
            for seg in per_tenant.values() {
                days.entry(
                    seg.meta
                        .window_start
                        .div_euclid(MERGED_NS)
                        .saturating_mul(MERGED_NS),
                )
                .or_default()
                .push(seg.clone());
            }
            for (day, segs) in days {
                let pending = state.is_some_and(|t| {
                    t.sealing
                        .keys()
                        .any(|&w| w >= day && w < day.saturating_add(MERGED_NS))
                });
                if day.saturating_add(MERGED_NS) > closed_before
                    || pending
                    || segs.len() < 2
                    || segs
                        .iter()
                        .any(|s| s.meta.compaction.is_some() || !shipped(&s.meta))
                    || segs.iter().map(|s| s.meta.lines).sum::<u64>() > u64::from(u32::MAX)
                {
                    continue;
                }
                out.push((tenant.clone(), day, segs));
            }
        }
        out
    }

    /// Replaces the sealed segments with a snapshot's (staged by tenant and ULID):
    /// each is moved into place and opened; the segments the snapshot lacks go.
    pub fn install_segments(
        &self,
        staged: &BTreeMap<(String, ulid::Ulid), PathBuf>,
    ) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut installed: BTreeMap<String, BTreeMap<i64, Arc<Segment>>> = BTreeMap::new();
        for ((tenant, ulid), from) in staged {
            let place = dir.join(tenant).join(ulid.to_string());
            if place.exists() {
                std::fs::remove_dir_all(&place)?;
            }
            std::fs::rename(from, &place)?;
            let seg = Segment::open(&place)?;
            installed
                .entry(tenant.clone())
                .or_default()
                .insert(seg.meta.window_start, Arc::new(seg));
        }
        let old = std::mem::replace(&mut *self.segments.write(), installed);
        for seg in old.values().flat_map(|s| s.values()) {
            let kept = staged
                .keys()
                .any(|(t, u)| *t == seg.meta.tenant && u.to_string() == seg.meta.ulid);
            if !kept && let Err(e) = std::fs::remove_dir_all(&seg.dir) {
                tracing::warn!(segment = %seg.dir.display(), error = %e, "cannot remove a log segment the snapshot no longer has");
            }
        }
        Ok(())
    }

    /// The positions of the sources whose names start with `prefix`.
    pub fn positions(&self, prefix: &str) -> BTreeMap<String, String> {
        self.positions
            .read()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every entry's stored lines from now on (see [`Tail`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LogBatch>> {
        self.tail.0.subscribe()
    }

    /// Segments on disk, over every tenant.
    pub fn num_segments(&self) -> usize {
        self.segments.read().values().map(|s| s.len()).sum()
    }

    /// Applies a log entry: every line stored, except those refused (counted as out
    /// of order: too far behind their stream; out of bounds: their window is sealed)
    /// or dropped as repeats (counted unchanged).
    pub fn apply(&self, batch: LogBatch) -> AppendSummary {
        let mut summary = AppendSummary::default();
        let tailing = self.tail.0.receiver_count() > 0;
        let mut tailed = LogBatch {
            tenant: if tailing {
                batch.tenant.clone()
            } else {
                String::new()
            },
            streams: Vec::new(),
            positions: Vec::new(),
        };
        if !batch.positions.is_empty() {
            self.positions.write().extend(batch.positions);
        }
        let mut tenants = self.tenants.write();
        let tenant = tenants.entry(batch.tenant).or_default();
        for stream in batch.streams {
            let LogStream { labels, lines } = stream;
            if tailing {
                tailed.streams.push(LogStream {
                    labels: labels.clone(),
                    lines: Vec::new(),
                });
            }
            for line in lines {
                let ts = line.ts_ns;
                if ts < tenant.sealed_before_ns {
                    summary.out_of_bounds += 1;
                    continue;
                }
                let head = tenant.heads.get_mut(&labels);
                if let Some(h) = &head {
                    if ts < h.newest_ns.saturating_sub(OUT_OF_ORDER_WINDOW_NS) {
                        summary.out_of_order += 1;
                        continue;
                    }
                    if ts == h.last_ts_ns && line.text == h.last_text {
                        summary.unchanged += 1;
                        continue;
                    }
                }
                match head {
                    Some(h) => {
                        h.newest_ns = h.newest_ns.max(ts);
                        h.last_ts_ns = ts;
                        h.last_text.clone_from(&line.text);
                    }
                    None => {
                        tenant.heads.insert(
                            labels.clone(),
                            StreamHead {
                                newest_ns: ts,
                                last_ts_ns: ts,
                                last_text: line.text.clone(),
                            },
                        );
                    }
                }
                tenant.newest_ns = tenant.newest_ns.max(ts);
                if let Some(s) = tailed.streams.last_mut() {
                    s.lines.push(line.clone());
                }
                tenant
                    .open
                    .entry(window_start(ts))
                    .or_default()
                    .stream_mut(&labels)
                    .push(line);
                summary.accepted += 1;
            }
        }
        if tailing && summary.accepted > 0 {
            tailed.streams.retain(|s| !s.lines.is_empty());
            // A send fails only when every listener left meanwhile.
            let _ = self.tail.0.send(Arc::new(tailed));
        }
        let due = tenant.newest_ns.saturating_sub(OUT_OF_ORDER_WINDOW_NS);
        if tenant
            .open
            .first_key_value()
            .is_some_and(|(start, _)| start + WINDOW_NS <= due)
        {
            tenant.seal_before(due);
        }
        summary
    }

    /// A head cut up to `end_ms` was applied: every tenant's windows that end by
    /// then seal, so that the lines and the samples of a time range leave memory
    /// together.
    pub fn apply_head_cut(&self, end_ms: i64) {
        let end_ns = end_ms.saturating_mul(1_000_000);
        for tenant in self.tenants.write().values_mut() {
            tenant.seal_before(end_ns);
        }
    }

    /// Whether a sealed window waits to be written out.
    pub fn has_sealing(&self) -> bool {
        self.tenants.read().values().any(|t| !t.sealing.is_empty())
    }

    /// The sealed windows waiting to be written out, oldest first per tenant.
    pub fn sealing(&self) -> Vec<SealedWindow> {
        let tenants = self.tenants.read();
        let mut out = Vec::new();
        for (name, t) in tenants.iter() {
            for (&start, w) in &t.sealing {
                out.push(SealedWindow {
                    tenant: name.clone(),
                    start_ns: start,
                    window: w.clone(),
                });
            }
        }
        out
    }

    /// A sealed window was written out (or found written): it leaves memory.
    pub fn written_out(&self, tenant: &str, start_ns: i64) {
        if let Some(t) = self.tenants.write().get_mut(tenant) {
            t.sealing.remove(&start_ns);
        }
    }

    /// The streams of `tenant` matching `matchers` with lines in `[start_ns,
    /// end_ns)`, from the segments and the windows in memory, at most
    /// [`MAX_LINES_PER_QUERY`] lines (more: an `InvalidInput` error).
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        needles: &[String],
    ) -> std::io::Result<Vec<Selected>> {
        self.select_within(
            tenant,
            matchers,
            start_ns,
            end_ns,
            needles,
            MAX_LINES_PER_QUERY,
        )
    }

    /// [`select`](Self::select) with a budget of `max_lines`.
    pub fn select_within(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        needles: &[String],
        max_lines: usize,
    ) -> std::io::Result<Vec<Selected>> {
        let mut by_labels: BTreeMap<Labels, Vec<Arc<[LogLine]>>> = BTreeMap::new();
        let on_disk: Vec<Arc<Segment>> = self
            .segments
            .read()
            .get(tenant)
            .map(|s| {
                s.values()
                    .filter(|s| s.meta.window_start < end_ns && s.meta.window_end > start_ns)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let written: Vec<(i64, i64)> = on_disk
            .iter()
            .map(|s| (s.meta.window_start, s.meta.window_end))
            .collect();
        let mut budget = max_lines;
        for seg in &on_disk {
            for sel in seg.select(matchers, start_ns, end_ns, needles, &mut budget)? {
                by_labels.entry(sel.labels).or_default().extend(sel.chunks);
            }
        }
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else {
            return Ok(collect_selected(by_labels));
        };
        let windows = t
            .sealing
            .iter()
            .map(|(s, w)| (*s, &**w))
            .chain(t.open.iter().map(|(s, w)| (*s, w)))
            // A sealed window replayed after its segment was written is read there.
            .filter(|(s, _)| !written.iter().any(|(from, to)| from <= s && s < to));
        for (start, window) in windows {
            if start >= end_ns || start.saturating_add(WINDOW_NS) <= start_ns {
                continue;
            }
            for s in &window.streams {
                if s.max_ns < start_ns || s.min_ns >= end_ns || !matches(&s.labels, matchers) {
                    continue;
                }
                budget = budget
                    .checked_sub(s.num_lines())
                    .ok_or_else(crate::logs::segment::too_many_lines)?;
                by_labels
                    .entry(s.labels.clone())
                    .or_default()
                    .extend(s.chunks());
            }
        }
        Ok(collect_selected(by_labels))
    }

    /// The label sets of `tenant`'s streams in memory with lines in `[start_ns,
    /// end_ns)`.
    pub fn streams(&self, tenant: &str, start_ns: i64, end_ns: i64) -> Vec<Labels> {
        let mut out: Vec<Labels> = Vec::new();
        if let Some(segs) = self.segments.read().get(tenant) {
            for seg in segs.values() {
                if seg.meta.max_time >= start_ns && seg.meta.min_time < end_ns {
                    out.extend(seg.stream_labels().cloned());
                }
            }
        }
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else {
            out.sort();
            out.dedup();
            return out;
        };
        out.extend(
            t.sealing
                .iter()
                .map(|(s, w)| (*s, &**w))
                .chain(t.open.iter().map(|(s, w)| (*s, w)))
                .flat_map(|(_, w)| w.streams.iter())
                .filter(|s| s.max_ns >= start_ns && s.min_ns < end_ns)
                .map(|s| s.labels.clone()),
        );
        out.sort();
        out.dedup();
        out
    }

    /// The streams of `tenant` that may still take lines (Loki's active streams, for
    /// `max_global_streams_per_user`).
    pub fn active_streams(&self, tenant: &str) -> usize {
        self.tenants.read().get(tenant).map_or(0, |t| t.heads.len())
    }

    /// The time of `tenant`'s oldest line held here (segments and memory): before
    /// it, the bucket answers.
    pub fn oldest_ns(&self, tenant: &str) -> Option<i64> {
        let on_disk = self
            .segments
            .read()
            .get(tenant)
            .and_then(|s| s.values().map(|s| s.meta.min_time).min());
        let tenants = self.tenants.read();
        let in_memory = tenants.get(tenant).and_then(|t| {
            t.sealing
                .values()
                .map(|w| &**w)
                .chain(t.open.values())
                .flat_map(|w| w.streams.iter().map(|s| s.min_ns))
                .min()
        });
        on_disk.into_iter().chain(in_memory).min()
    }

    /// The segments on disk, every tenant's (for the shipper).
    pub fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .values()
            .flat_map(|s| s.values().cloned())
            .collect()
    }

    /// Whether the stream is one of `tenant`'s active streams.
    pub fn is_active_stream(&self, tenant: &str, labels: &Labels) -> bool {
        self.tenants
            .read()
            .get(tenant)
            .is_some_and(|t| t.heads.contains_key(labels))
    }

    /// Lines in memory, over every tenant (for the self metrics).
    pub fn lines_in_memory(&self) -> usize {
        let tenants = self.tenants.read();
        tenants
            .values()
            .flat_map(|t| t.open.values().chain(t.sealing.values().map(|w| &**w)))
            .map(|w| w.num_lines())
            .sum()
    }

    /// A copy of the state, cheap enough to take between two entries: shared chunks
    /// and the unfrozen tails.
    pub fn capture(&self) -> StoreImage {
        StoreImage {
            tenants: self.tenants.read().clone(),
            positions: self.positions.read().clone(),
        }
    }

    /// Replaces the state with an image's.
    pub fn restore(&self, image: StoreImage) {
        *self.tenants.write() = image.tenants;
        *self.positions.write() = image.positions;
    }
}

/// Removes a segment's directory: renamed first, so a crash leaves no half of it
/// under its own name.
fn delete_segment(dir: &Path) -> std::io::Result<()> {
    let deleting = dir.with_extension("tmp-for-deletion");
    std::fs::rename(dir, &deleting)?;
    std::fs::remove_dir_all(&deleting)
}

fn collect_selected(by_labels: BTreeMap<Labels, Vec<Arc<[LogLine]>>>) -> Vec<Selected> {
    by_labels
        .into_iter()
        .map(|(labels, chunks)| Selected { labels, chunks })
        .collect()
}

fn matches(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

/// The log store's state at one position of the log, stored with the head image
/// there (the `MachineState` section of `tsdb::machine`).
#[derive(Default)]
pub struct StoreImage {
    tenants: BTreeMap<String, Tenant>,
    positions: BTreeMap<String, String>,
}

/// The image's format version (1: without the sources' positions).
const IMAGE_VERSION: u8 = 2;

impl StoreImage {
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty() && self.positions.is_empty()
    }

    /// The image as bytes; lines go as log records (type 8: snappy-compressed), one
    /// per chunk of a stream.
    ///
    /// ```text
    /// u8 version (2), u32 #positions, each: str source, str position
    /// u32 #tenants, each:
    ///   str tenant, i64 sealed_before_ns, i64 newest_ns,
    ///   u32 #stream heads, each: labels, i64 newest_ns, i64 last_ts_ns, str last_text
    ///   u32 #windows, each: i64 start_ns, u8 sealing (0|1),
    ///     u32 #chunks, each: u32 len, a type-8 record of one stream
    /// labels: u32 #pairs, each: str name, str value;  str: u32 len, UTF-8
    /// ```
    /// (little-endian)
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = vec![IMAGE_VERSION];
        put_u32(&mut out, self.positions.len())?;
        for (source, position) in &self.positions {
            put_str(&mut out, source)?;
            put_str(&mut out, position)?;
        }
        put_u32(&mut out, self.tenants.len())?;
        for (name, t) in &self.tenants {
            put_str(&mut out, name)?;
            out.extend_from_slice(&t.sealed_before_ns.to_le_bytes());
            out.extend_from_slice(&t.newest_ns.to_le_bytes());
            put_u32(&mut out, t.heads.len())?;
            // Sorted: the same state gives the same bytes.
            let mut heads: Vec<_> = t.heads.iter().collect();
            heads.sort_by(|a, b| a.0.cmp(b.0));
            for (labels, h) in heads {
                put_labels(&mut out, labels)?;
                out.extend_from_slice(&h.newest_ns.to_le_bytes());
                out.extend_from_slice(&h.last_ts_ns.to_le_bytes());
                put_str(&mut out, &h.last_text)?;
            }
            let windows: Vec<(i64, bool, &Window)> = t
                .sealing
                .iter()
                .map(|(s, w)| (*s, true, &**w))
                .chain(t.open.iter().map(|(s, w)| (*s, false, w)))
                .collect();
            put_u32(&mut out, windows.len())?;
            for (start, sealing, w) in windows {
                out.extend_from_slice(&start.to_le_bytes());
                out.push(u8::from(sealing));
                let chunks: Vec<(&Labels, Arc<[LogLine]>)> = w
                    .streams
                    .iter()
                    .flat_map(|s| s.chunks().into_iter().map(move |c| (&s.labels, c)))
                    .collect();
                put_u32(&mut out, chunks.len())?;
                for (labels, chunk) in chunks {
                    let batch = LogBatch {
                        tenant: String::new(),
                        positions: Vec::new(),
                        streams: vec![LogStream {
                            labels: labels.clone(),
                            lines: chunk.to_vec(),
                        }],
                    };
                    let mut rec = Vec::new();
                    if !record::encode_log_batch(&batch, &mut rec) {
                        return Err("a chunk of log lines too large to encode".into());
                    }
                    put_u32(&mut out, rec.len())?;
                    out.extend_from_slice(&rec);
                }
            }
        }
        Ok(out)
    }

    /// [`encode`](Self::encode)'s bytes back.
    pub fn decode(bytes: &[u8]) -> Result<StoreImage, String> {
        let mut r = ByteReader::new(bytes, "log store image");
        let version = r.u8()?;
        if version != 1 && version != IMAGE_VERSION {
            return Err(format!("log store image version {version} unknown"));
        }
        let mut positions = BTreeMap::new();
        if version >= 2 {
            for _ in 0..r.count(8)? {
                positions.insert(r.str()?.to_string(), r.str()?.to_string());
            }
        }
        let mut tenants = BTreeMap::new();
        for _ in 0..r.count(20)? {
            let name = r.str()?.to_string();
            let mut t = Tenant {
                sealed_before_ns: r.i64()?,
                newest_ns: r.i64()?,
                ..Tenant::default()
            };
            for _ in 0..r.count(24)? {
                let labels = r.labels()?;
                let head = StreamHead {
                    newest_ns: r.i64()?,
                    last_ts_ns: r.i64()?,
                    last_text: r.str()?.to_string(),
                };
                t.heads.insert(labels, head);
            }
            for _ in 0..r.count(13)? {
                let start = r.i64()?;
                let sealing = match r.u8()? {
                    0 => false,
                    1 => true,
                    k => return Err(format!("log store image: window state {k}")),
                };
                let mut window = Window::default();
                for _ in 0..r.count(4)? {
                    let rec = r.bytes()?;
                    let batch = match record::decode(rec, &mut |s| s.into()) {
                        Ok(Record::LogLines(b)) => b,
                        Ok(_) => return Err("log store image: a chunk is not log lines".into()),
                        Err(e) => return Err(format!("log store image: {e}")),
                    };
                    for stream in batch.streams {
                        let s = window.stream_mut(&stream.labels);
                        for line in &stream.lines {
                            s.min_ns = s.min_ns.min(line.ts_ns);
                            s.max_ns = s.max_ns.max(line.ts_ns);
                        }
                        // Restored chunks stay whole, frozen as they were.
                        s.frozen.push(stream.lines.into());
                    }
                }
                if sealing {
                    t.sealing.insert(start, Arc::new(window));
                } else {
                    t.open.insert(start, window);
                }
            }
            tenants.insert(name, t);
        }
        if !r.buf.is_empty() {
            return Err("log store image: trailing bytes".into());
        }
        Ok(StoreImage { tenants, positions })
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), String> {
    let n = u32::try_from(n).map_err(|_| format!("log store image: count {n} too large"))?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), String> {
    put_u32(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) -> Result<(), String> {
    put_u32(out, labels.len())?;
    for l in labels.iter() {
        put_str(out, &l.name)?;
        put_str(out, &l.value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_700_000_000 * S / WINDOW_NS * WINDOW_NS;

    fn line(ts_ns: i64, text: &str) -> LogLine {
        LogLine {
            ts_ns,
            text: text.into(),
            metadata: Vec::new(),
        }
    }

    fn batch(tenant: &str, labels: &[(&str, &str)], lines: Vec<LogLine>) -> LogBatch {
        LogBatch {
            tenant: tenant.into(),
            positions: Vec::new(),
            streams: vec![LogStream {
                labels: Labels::from_pairs(labels.iter().copied()),
                lines,
            }],
        }
    }

    fn texts(store: &LogStore, tenant: &str) -> Vec<String> {
        texts_by_time(&store.select(tenant, &[], i64::MIN, i64::MAX, &[]).unwrap())
    }

    #[test]
    fn lines_are_kept_per_tenant_and_repeats_and_stragglers_refused() {
        let store = LogStore::new();
        let app = [("app", "a")];
        let s = store.apply(batch(
            "t1",
            &app,
            vec![
                line(T0 + 2 * 3600 * S, "x"),
                line(T0 + 2 * 3600 * S, "x"),
                line(T0 + 2 * 3600 * S, "y"),
            ],
        ));
        assert_eq!((s.accepted, s.unchanged), (2, 1));
        // Within the hour behind the stream's newest: taken; beyond: refused.
        let s = store.apply(batch(
            "t1",
            &app,
            vec![
                line(T0 + 3600 * S + 1, "late"),
                line(T0 + 3600 * S - 1, "too late"),
            ],
        ));
        assert_eq!((s.accepted, s.out_of_order), (1, 1));
        // Another stream has no newest yet: an old line is fine.
        let s = store.apply(batch("t1", &[("app", "b")], vec![line(T0, "b")]));
        assert_eq!(s.accepted, 1);
        assert_eq!(texts(&store, "t1"), ["b", "late", "x", "y"]);
        assert!(texts(&store, "t2").is_empty());
        assert!(store.sealing().is_empty());
    }

    #[test]
    fn windows_seal_by_the_newest_line_and_by_head_cuts() {
        let store = LogStore::new();
        store.apply(batch("t", &[("a", "1")], vec![line(T0 + S, "first")]));
        // One hour past the first window's end: it seals.
        let s = store.apply(batch(
            "t",
            &[("a", "2")],
            vec![line(T0 + 3 * 3600 * S, "later")],
        ));
        assert_eq!(s.accepted, 1);
        let sealed = store.sealing();
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].start_ns, T0);
        assert_eq!(sealed[0].window.num_lines(), 1);
        // Its lines are still readable until written out, and it takes no more.
        let s = store.apply(batch("t", &[("a", "3")], vec![line(T0 + 2 * S, "refused")]));
        assert_eq!(s.out_of_bounds, 1);
        assert_eq!(texts(&store, "t"), ["first", "later"]);
        store.written_out("t", T0);
        assert_eq!(texts(&store, "t"), ["later"]);
        // A head cut seals the windows ending by its end, for every tenant.
        store.apply(batch(
            "u",
            &[("a", "1")],
            vec![line(T0 + 3 * 3600 * S, "u")],
        ));
        store.apply_head_cut((T0 + 4 * 3600 * S) / 1_000_000);
        let sealed: Vec<_> = store
            .sealing()
            .iter()
            .map(|w| (w.tenant.clone(), w.start_ns))
            .collect();
        assert_eq!(
            sealed,
            [
                ("t".to_string(), T0 + WINDOW_NS),
                ("u".to_string(), T0 + WINDOW_NS)
            ]
        );
    }

    #[test]
    fn an_image_round_trips_and_damage_is_refused() {
        let store = LogStore::new();
        let mut lines: Vec<LogLine> = (0..300)
            .map(|i| line(T0 + i * S, &format!("line {i}")))
            .collect();
        lines[5].metadata = vec![("trace_id".into(), "abc".into())];
        store.apply(batch("t", &[("app", "a")], lines));
        store.apply(batch(
            "u",
            &[("app", "b")],
            vec![line(T0 + 5 * 3600 * S, "u")],
        ));
        store.apply(batch(
            "u",
            &[("app", "b")],
            vec![line(T0 + 3 * 3600 * S + 1, "u2")],
        ));
        let bytes = store.capture().encode().unwrap();
        let back = LogStore::new();
        back.restore(StoreImage::decode(&bytes).unwrap());
        assert_eq!(texts(&back, "t"), texts(&store, "t"));
        assert_eq!(texts(&back, "u"), texts(&store, "u"));
        assert_eq!(back.capture().encode().unwrap(), bytes);
        // The restored store refuses and accepts as the original would.
        let late = batch(
            "u",
            &[("app", "b")],
            vec![line(T0 + 3 * 3600 * S, "x"), line(T0 + 5 * 3600 * S, "u")],
        );
        assert_eq!(back.apply(late.clone()), store.apply(late));
        for cut in 0..bytes.len() {
            assert!(StoreImage::decode(&bytes[..cut]).is_err(), "{cut}");
        }
    }
}
