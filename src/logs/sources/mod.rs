//! Built-in log sources: files (globs, rotation, truncation, multi-line joining)
//! and Kubernetes pod logs (`/var/log/pods`, CRI format), each only when the
//! configuration's `collectors:` section names it.
//!
//! A source reads on its own schedule and submits what it read as one log entry
//! per round and tenant, with where each file stands after those lines
//! ([`tail::FilePosition`] in `LogBatch::positions`). The store applies the
//! positions with the lines, so after a crash or a restart a source resumes at
//! exactly what is durable: nothing lost, nothing repeated. Source names carry the
//! node's origin (`local`, or `node-<id>` in a cluster), so the nodes of a
//! cluster, which each tail their own files, keep their positions apart.

pub mod cri;
pub mod journald;
pub mod tail;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;
use serde::Deserialize;

use crate::config::DurationMs;
use crate::log::record::{LogBatch, LogLine, LogStream};
use crate::logs::LogStorage;
use crate::model::Labels;
use tail::{FilePosition, Tail};

/// How often the sources look for new lines.
pub const POLL: Duration = Duration::from_secs(1);

/// `collectors.files[]`: files to follow.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns (`/var/log/*.log`), looked up again every round.
    pub paths: Vec<String>,
    /// Labels of every stream (besides `filename`, the file's path).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Joins lines into one entry until a line matches `firstline`.
    pub multiline: Option<MultilineConfig>,
    /// The tenant the lines belong to (default `fake`).
    pub tenant: Option<String>,
}

/// Promtail's `multiline` stage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A regular expression matching the first line of an entry.
    pub firstline: String,
    /// How long an entry waits for more lines (default 3s).
    pub max_wait_time: Option<DurationMs>,
    /// The most lines an entry joins (default 128).
    pub max_lines: Option<usize>,
}

/// `collectors.pods:`: the containers' logs of the Kubernetes node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSourceConfig {
    /// Where the kubelet keeps them (default `/var/log/pods`).
    pub path: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub tenant: Option<String>,
}

/// The log sources of a configuration, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourcesConfig {
    pub files: Vec<FileSourceConfig>,
    pub pods: Option<PodSourceConfig>,
}

impl SourcesConfig {
    /// Checks patterns, labels, tenants and regular expressions.
    pub fn validate(&self) -> Result<(), String> {
        for (i, f) in self.files.iter().enumerate() {
            if f.paths.is_empty() {
                return Err(format!("files[{i}]: paths must not be empty"));
            }
            for p in &f.paths {
                glob::Pattern::new(p).map_err(|e| format!("files[{i}]: path {p:?}: {e}"))?;
            }
            check_labels(&f.labels).map_err(|e| format!("files[{i}]: {e}"))?;
            if let Some(t) = &f.tenant {
                crate::logs::tenant::check_tenant_id(t)
                    .map_err(|e| format!("files[{i}]: tenant: {e}"))?;
            }
            if let Some(m) = &f.multiline {
                Regex::new(&m.firstline)
                    .map_err(|e| format!("files[{i}]: multiline.firstline: {e}"))?;
                if m.max_lines == Some(0) {
                    return Err(format!("files[{i}]: multiline.max_lines must be positive"));
                }
            }
        }
        if let Some(p) = &self.pods {
            check_labels(&p.labels).map_err(|e| format!("pods: {e}"))?;
            if let Some(t) = &p.tenant {
                crate::logs::tenant::check_tenant_id(t)
                    .map_err(|e| format!("pods: tenant: {e}"))?;
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.pods.is_none()
    }
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for name in labels.keys() {
        if !crate::model::is_valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
    }
    Ok(())
}

/// Joins lines into entries (Promtail's `multiline`): a line matching `firstline`
/// starts an entry; others are added to the open one.
struct Joiner {
    firstline: Regex,
    max_wait: Duration,
    max_lines: usize,
    /// The open entry: text, lines, time of its first line, when it last grew, and
    /// where the file stands after it.
    open: Option<(String, usize, i64, Instant, FilePosition)>,
}

/// An entry ready to go: its time, text and where its file stands after it.
type Entry = (i64, String, FilePosition);

impl Joiner {
    fn push(&mut self, ts: i64, text: String, after: FilePosition, out: &mut Vec<Entry>) {
        let starts = self.firstline.is_match(&text);
        match &mut self.open {
            Some((joined, n, _, last, end)) if !starts && *n < self.max_lines => {
                joined.push('\n');
                joined.push_str(&text);
                *n += 1;
                *last = Instant::now();
                *end = after;
            }
            _ => {
                if let Some((joined, _, t, _, end)) = self.open.take() {
                    out.push((t, joined, end));
                }
                self.open = Some((text, 1, ts, Instant::now(), after));
            }
        }
    }

    /// The open entry, if it waited long enough (or `force`).
    fn flush(&mut self, force: bool, out: &mut Vec<Entry>) {
        if let Some((_, _, _, last, _)) = &self.open
            && (force || last.elapsed() >= self.max_wait)
            && let Some((joined, _, t, _, end)) = self.open.take()
        {
            out.push((t, joined, end));
        }
    }
}

/// One followed file and how its lines become entries.
struct Followed {
    tail: Tail,
    labels: Labels,
    tenant: String,
    kind: Kind,
    joiner: Option<Joiner>,
    /// Where the file stood after the last entry handed out this round.
    handed: Option<FilePosition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Cri,
}

/// Every file the configuration's sources follow, and the positions they resume
/// from.
pub struct LogSources {
    origin: String,
    config: SourcesConfig,
    followed: BTreeMap<String, Followed>,
    /// Partial CRI lines per file and stream.
    cri: BTreeMap<String, cri::Partials>,
    /// Monotonic read times: a round's lines keep their order.
    last_ts: i64,
}

impl LogSources {
    /// Sources of `origin` (`local`, or `node-<id>`), per `config`.
    pub fn new(origin: &str, config: SourcesConfig) -> LogSources {
        LogSources {
            origin: origin.to_string(),
            config,
            followed: BTreeMap::new(),
            cri: BTreeMap::new(),
            last_ts: 0,
        }
    }

    /// A new configuration: files no longer named are let go at the next round.
    pub fn reconfigure(&mut self, config: SourcesConfig) {
        if config != self.config {
            self.config = config;
            self.followed.clear();
            self.cri.clear();
        }
    }

    fn source_name(&self, path: &str) -> String {
        format!("{}/file:{path}", self.origin)
    }

    /// The files the configuration names now: path → (labels, tenant, kind, joiner).
    fn wanted(&self) -> BTreeMap<String, (Labels, String, Kind, Option<MultilineConfig>)> {
        let mut out = BTreeMap::new();
        for f in &self.config.files {
            let tenant = f.tenant.clone().unwrap_or_else(|| "fake".into());
            for pattern in &f.paths {
                for path in glob::glob(pattern).into_iter().flatten().flatten() {
                    if !path.is_file() {
                        continue;
                    }
                    let p = path.to_string_lossy().to_string();
                    let mut labels = f.labels.clone();
                    labels.insert("filename".into(), p.clone());
                    out.insert(
                        p,
                        (
                            Labels::from_pairs(
                                labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                            ),
                            tenant.clone(),
                            Kind::Plain,
                            f.multiline.clone(),
                        ),
                    );
                }
            }
        }
        if let Some(pods) = &self.config.pods {
            let root = pods.path.clone().unwrap_or_else(|| "/var/log/pods".into());
            let tenant = pods.tenant.clone().unwrap_or_else(|| "fake".into());
            let pattern = format!("{}/*/*/*.log", glob::Pattern::escape(&root));
            for path in glob::glob(&pattern).into_iter().flatten().flatten() {
                let Some(from_path) = cri::labels_of_path(&path) else {
                    continue;
                };
                let mut labels = pods.labels.clone();
                labels.extend(from_path);
                let p = path.to_string_lossy().to_string();
                out.insert(
                    p,
                    (
                        Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                        tenant.clone(),
                        Kind::Cri,
                        None,
                    ),
                );
            }
        }
        out
    }

    /// One round: reads every followed file and returns the entries to submit, one
    /// per tenant, each with the positions of its files. `positions` are the
    /// positions the store has applied (where a file seen for the first time since
    /// start resumes).
    pub fn read_round(&mut self, positions: &BTreeMap<String, String>) -> Vec<LogBatch> {
        let wanted = self.wanted();
        self.followed.retain(|p, _| wanted.contains_key(p));
        let mut by_tenant: BTreeMap<String, LogBatch> = BTreeMap::new();
        for (path, (labels, tenant, kind, multiline)) in wanted {
            let source = self.source_name(&path);
            let followed = self.followed.entry(path.clone()).or_insert_with(|| {
                let committed = positions.get(&source).and_then(|p| FilePosition::decode(p));
                Followed {
                    tail: Tail::new(path.clone().into(), committed),
                    labels,
                    tenant,
                    kind,
                    joiner: multiline.and_then(|m| {
                        Some(Joiner {
                            firstline: Regex::new(&m.firstline).ok()?,
                            max_wait: Duration::from_millis(
                                m.max_wait_time.map_or(3000, |d| d.0.max(0) as u64),
                            ),
                            max_lines: m.max_lines.unwrap_or(128),
                            open: None,
                        })
                    }),
                    handed: None,
                }
            });
            let read = match followed.tail.read() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(file = path, error = %e, "cannot read a followed log file");
                    continue;
                }
            };
            let now = crate::model::now_ms().saturating_mul(1_000_000);
            let mut entries: Vec<Entry> = Vec::new();
            for line in read {
                match followed.kind {
                    Kind::Plain => {
                        let ts = now.max(self.last_ts + 1);
                        self.last_ts = ts;
                        match &mut followed.joiner {
                            Some(j) => j.push(ts, line.text, line.after, &mut entries),
                            None => entries.push((ts, line.text, line.after)),
                        }
                    }
                    Kind::Cri => {
                        let partials = self.cri.entry(path.clone()).or_default();
                        if let Some((ts, text)) = partials.push(&line.text) {
                            entries.push((ts, text, line.after));
                        }
                    }
                }
            }
            if let Some(j) = &mut followed.joiner {
                j.flush(false, &mut entries);
            }
            // The file's position after what was read, dropped entries included.
            let handed = entries.last().map(|e| e.2);
            admit(&path, now, &mut entries);
            let stream_lines: Vec<LogLine> = entries
                .into_iter()
                .map(|(ts_ns, text, _)| LogLine {
                    ts_ns,
                    text,
                    metadata: Vec::new(),
                })
                .collect();
            let Some(handed) = handed else {
                continue;
            };
            followed.handed = Some(handed);
            let batch = by_tenant
                .entry(followed.tenant.clone())
                .or_insert_with(|| LogBatch {
                    tenant: followed.tenant.clone(),
                    ..LogBatch::default()
                });
            if !stream_lines.is_empty() {
                // CRI lines carry their stream as a label.
                if followed.kind == Kind::Cri {
                    push_cri_streams(batch, &followed.labels, stream_lines);
                } else {
                    batch.streams.push(LogStream {
                        labels: followed.labels.clone(),
                        lines: stream_lines,
                    });
                }
            }
            batch.positions.push((source, handed.encode()));
        }
        by_tenant.into_values().collect()
    }

    /// The round's entries were made durable: the files' positions advance.
    pub fn committed(&mut self) {
        for f in self.followed.values_mut() {
            if let Some(h) = f.handed.take() {
                f.tail.commit(h);
            }
        }
    }

    /// The round's entries failed: every file is read again from its committed
    /// position (joined and partial lines with it).
    pub fn failed(&mut self) {
        for f in self.followed.values_mut() {
            f.handed = None;
            f.tail.rewind();
            if let Some(j) = &mut f.joiner {
                j.open = None;
            }
        }
        self.cri.clear();
    }
}

/// Holds what a source read to the limits a push is held to (Loki's defaults, see
/// `logs::push::PushLimits`): entries older than a week or more than ten minutes
/// ahead are dropped, longer lines cut. Their file position still advances: the
/// file is not read again for them. Each drop is logged.
fn admit(path: &str, now_ns: i64, entries: &mut Vec<Entry>) {
    let limits = crate::logs::push::PushLimits::default();
    let oldest = now_ns.saturating_sub(limits.reject_old_samples_max_age_ns);
    let newest = now_ns.saturating_add(limits.creation_grace_period_ns);
    let before = entries.len();
    entries.retain(|(ts, _, _)| *ts >= oldest && *ts <= newest);
    if entries.len() < before {
        tracing::warn!(
            file = path,
            dropped = before - entries.len(),
            "log lines dropped: their times are older than a week or more than 10 minutes ahead"
        );
    }
    for (_, text, _) in entries.iter_mut() {
        if text.len() > limits.max_line_size {
            let mut cut = limits.max_line_size;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            tracing::warn!(
                file = path,
                max = limits.max_line_size,
                "a log line was cut to the line size limit"
            );
        }
    }
}

/// CRI lines go to a stream per `stream` (stdout/stderr), which `cri::Partials`
/// puts at the front of the text as `stdout\t…`.
fn push_cri_streams(batch: &mut LogBatch, labels: &Labels, lines: Vec<LogLine>) {
    let mut by_stream: BTreeMap<String, Vec<LogLine>> = BTreeMap::new();
    for mut l in lines {
        let (stream, text) = match l.text.split_once('\t') {
            Some((s, t)) => (s.to_string(), t.to_string()),
            None => (String::new(), std::mem::take(&mut l.text)),
        };
        l.text = text;
        by_stream.entry(stream).or_default().push(l);
    }
    for (stream, lines) in by_stream {
        let mut b = labels.to_builder();
        b.set("stream", stream);
        batch.streams.push(LogStream {
            labels: b.build(),
            lines,
        });
    }
}

/// Runs the sources until `shutdown`: a round every [`POLL`], each round's entries
/// submitted through `storage` (the commit seam) before the next.
pub async fn run(
    storage: Arc<dyn LogStorage>,
    sources: Arc<parking_lot::Mutex<LogSources>>,
    positions: impl Fn() -> BTreeMap<String, String> + Send + 'static,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let mut failures = 0u32;
    loop {
        // Nothing configured (the usual case): no round, no thread taken.
        if sources.lock().config.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(POLL) => continue,
            }
        }
        let committed = positions();
        let round_sources = sources.clone();
        let batches =
            tokio::task::spawn_blocking(move || round_sources.lock().read_round(&committed))
                .await
                .map_err(|e| format!("a log source round failed: {e}"))?;
        let mut ok = true;
        for batch in batches {
            if let Err(e) = storage.push(batch).await {
                failures += 1;
                tracing::warn!(error = %e, failures, "log source lines not committed; reading them again");
                ok = false;
                break;
            }
        }
        if ok {
            failures = 0;
            sources.lock().committed();
        } else {
            sources.lock().failed();
        }
        let wait = if ok { POLL } else { POLL * failures.min(10) };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
