//! Turning one scrape body into samples: target labels merged as Prometheus merges
//! them, `metric_relabel_configs`, limits, staleness markers, and the synthetic series
//! (`up`, `scrape_duration_seconds`, …). Pure with respect to the network: the loop in
//! [`super::scrape_loop`] fetches, this appends.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use arcstr::ArcStr;

use crate::exposition::family::MetricType;
use crate::exposition::format::{Entry, Format, Parser};
use crate::model::{Labels, stale_nan};
use crate::scrape::relabel::{RelabelConfig, process_labels};
use crate::scrape::table::KeyedTable;
use crate::storage::{Appender, CommitMemo, SeriesRef};

/// The limits of one job; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
}

/// What a scrape's samples are combined with.
#[derive(Debug, Clone, Copy)]
pub struct AppendContext<'a> {
    /// The target's labels that every sample carries (`job`, `instance`, …).
    pub target_labels: &'a Labels,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: &'a [RelabelConfig],
    pub limits: Limits,
}

/// A family's metadata, as `HELP`, `TYPE` and `UNIT` lines gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// A series the target exposes, keyed by its text as exposed (name and label set as
/// written).
struct CacheEntry {
    /// The series' labels after merging and relabeling; `None` when relabeling
    /// dropped it.
    labels: Option<Labels>,
    /// The storage's reference for the series, once it has one.
    series: Option<SeriesRef>,
    /// The last successful scrape that exposed it.
    seen: u64,
    /// Exposed with its own timestamp: never marked stale (as Prometheus).
    explicit_timestamp: bool,
}

/// What a target's loop remembers between scrapes: the labels each exposed series
/// resolved to (so a series is merged and relabeled once, not every scrape), which
/// series the last scrape saw (for staleness markers), and the metadata.
#[derive(Default)]
pub struct ScrapeCache {
    /// The series the target exposes, by their text as exposed (name and label set,
    /// as Prometheus keys its cache): a known series is found without reading its
    /// labels.
    entries: KeyedTable<CacheEntry>,
    /// Counts successful scrapes; entries seen in the current one carry it.
    iteration: u64,
    /// Metadata as the scrapes go, updated in place (a target's HELP texts rarely
    /// change, and rebuilding the map every scrape was a tenth of the scrape cost).
    meta: KeyedTable<MetaEntry>,
    /// The metadata of the last successful scrape, rebuilt only when it changed.
    metadata: HashMap<String, Metadata>,
    metadata_version: u64,
    /// The families' HELP texts, back to back in page order: every scrape compares
    /// each HELP line with the text it had last time, and reading them front to back
    /// keeps that from being a cache miss per family. A changed text is appended;
    /// the old one stays until the texts are rewritten (see `compact_help_text`).
    help_text: String,
    /// What the storage keeps between this target's commits (see
    /// [`Appender::commit_patient_async`]).
    commit_memo: CommitMemo,
    /// The report series (`up`, …), once the first scrape has made them.
    report: Option<ReportSeries>,
}

/// A family's metadata, keyed by the family's name.
struct MetaEntry {
    kind: MetricType,
    /// Where the HELP text lies in [`ScrapeCache::help_text`].
    help: Range<usize>,
    unit: String,
    /// The last scrape that had a metadata line for the family.
    seen: u64,
}

/// Counts of one successful scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    /// Samples in the body (`scrape_samples_scraped`).
    pub scraped: u64,
    /// Samples kept by `metric_relabel_configs` (`scrape_samples_post_metric_relabeling`).
    pub post_relabel: u64,
    /// Series not seen before (`scrape_series_added`).
    pub added: u64,
}

/// Why a scrape's samples were refused as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    #[error("{0}")]
    Parse(String),
    #[error("sample limit exceeded: {limit}")]
    SampleLimit { limit: u64 },
    #[error("label_limit exceeded (metric: {metric}, number of labels: {count}, limit: {limit})")]
    LabelLimit {
        metric: String,
        count: usize,
        limit: u64,
    },
    #[error(
        "label_name_length_limit exceeded (metric: {metric}, label name: {name}, length: {len}, limit: {limit})"
    )]
    LabelNameLength {
        metric: String,
        name: String,
        len: usize,
        limit: u64,
    },
    #[error(
        "label_value_length_limit exceeded (metric: {metric}, label name: {name}, value: {value:?}, length: {len}, limit: {limit})"
    )]
    LabelValueLength {
        metric: String,
        name: String,
        value: String,
        len: usize,
        limit: u64,
    },
    #[error("invalid series {series}: {message}")]
    InvalidSeries { series: String, message: String },
}

impl ScrapeCache {
    /// The metadata of the last successful scrape, by family name.
    pub fn metadata(&self) -> &HashMap<String, Metadata> {
        &self.metadata
    }

    /// What the storage keeps between this target's commits.
    pub fn commit_memo(&mut self) -> &mut CommitMemo {
        &mut self.commit_memo
    }

    /// Changes whenever [`ScrapeCache::metadata`] does.
    pub fn metadata_version(&self) -> u64 {
        self.metadata_version
    }

    /// Appends the samples of `body` at scrape time `t_ms`, then stale markers for
    /// the series the previous scrape had and this one lacks. On error nothing of the
    /// body should be committed: the caller rolls the appender back and reports the
    /// failure with [`ScrapeCache::append_failure`].
    pub fn append_body(
        &mut self,
        ctx: &AppendContext<'_>,
        format: Format,
        body: &[u8],
        t_ms: i64,
        app: &mut dyn Appender,
    ) -> Result<ScrapeCounts, AppendError> {
        let previous = self.iteration;
        let current = previous + 1;
        let mut counts = ScrapeCounts::default();
        let mut meta_changed = false;
        self.entries.begin();
        self.meta.begin();
        app.reserve(self.entries.len() + REPORT_SERIES.len());
        let mut parser = Parser::new(format, body);
        parser.defer_labels();
        let src = parser.source();
        loop {
            let entry = match parser.next() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err(AppendError::Parse(e.to_string())),
            };
            let (key, name_len, value, timestamp_ms) = match entry {
                Entry::Series(s) => (
                    src.get(s.series.clone()).unwrap_or_default(),
                    s.name.len(),
                    s.value,
                    s.timestamp_ms,
                ),
                Entry::Help { name, help } => {
                    let m = meta_entry(&mut self.meta, name, current, &mut meta_changed);
                    if self.help_text.get(m.help.clone()) != Some(&*help) {
                        let start = self.help_text.len();
                        self.help_text.push_str(&help);
                        m.help = start..self.help_text.len();
                        meta_changed = true;
                    }
                    continue;
                }
                Entry::Type { name, kind } => {
                    let m = meta_entry(&mut self.meta, name, current, &mut meta_changed);
                    if m.kind != kind {
                        m.kind = kind;
                        meta_changed = true;
                    }
                    continue;
                }
                Entry::Unit { name, unit } => {
                    let m = meta_entry(&mut self.meta, name, current, &mut meta_changed);
                    if m.unit != unit {
                        m.unit = unit.to_string();
                        meta_changed = true;
                    }
                    continue;
                }
                Entry::Comment(_) => continue,
            };
            counts.scraped += 1;
            let explicit = timestamp_ms.is_some() && ctx.honor_timestamps;
            let t = if explicit {
                timestamp_ms.unwrap_or(t_ms)
            } else {
                t_ms
            };
            if let Some(e) = self
                .entries
                .find(key)
                .and_then(|at| self.entries.get_mut(at))
            {
                if e.seen != previous {
                    // Missed the last scrape: the storage may have dropped the series
                    // since (a target down for hours); find it by its labels again.
                    e.series = None;
                }
                e.seen = current;
                e.explicit_timestamp = explicit;
                let Some(labels) = &e.labels else {
                    continue;
                };
                counts.post_relabel += 1;
                if ctx.limits.sample_limit > 0 && counts.post_relabel > ctx.limits.sample_limit {
                    return Err(AppendError::SampleLimit {
                        limit: ctx.limits.sample_limit,
                    });
                }
                app.append_ref(&mut e.series, labels, t, value)
                    .map_err(|err| AppendError::InvalidSeries {
                        series: labels.to_string(),
                        message: err.to_string(),
                    })?;
                continue;
            }
            // A series not seen before: its labels are read (and checked) now.
            let name = key.get(..name_len).unwrap_or_default();
            let exposed = parser
                .labels()
                .map_err(|e| AppendError::Parse(e.to_string()))?;
            let labels = sample_labels(ctx, name, exposed)?;
            if let Some(l) = &labels {
                check_limits(l, &ctx.limits)?;
                counts.added += 1;
            }
            self.entries.insert(
                key,
                CacheEntry {
                    labels: labels.clone(),
                    series: None,
                    seen: current,
                    explicit_timestamp: explicit,
                },
            );
            let Some(labels) = labels else {
                continue;
            };
            counts.post_relabel += 1;
            if ctx.limits.sample_limit > 0 && counts.post_relabel > ctx.limits.sample_limit {
                return Err(AppendError::SampleLimit {
                    limit: ctx.limits.sample_limit,
                });
            }
            app.append(&labels, t, value)
                .map_err(|e| AppendError::InvalidSeries {
                    series: labels.to_string(),
                    message: e.to_string(),
                })?;
        }
        self.mark_stale(previous, t_ms, app);
        self.iteration = current;
        // Series unseen for a while are forgotten; one missed scrape keeps them, so
        // a series that flaps does not count as added every other scrape.
        self.entries.finish(|e| e.seen + 1 >= current);
        let families = self.meta.len();
        self.meta.finish(|e| e.seen == current);
        if meta_changed || self.meta.len() != families {
            self.compact_help_text();
            let help_text = &self.help_text;
            self.metadata = self
                .meta
                .iter()
                .map(|(name, e)| {
                    let meta = Metadata {
                        kind: e.kind,
                        help: help_text
                            .get(e.help.clone())
                            .unwrap_or_default()
                            .to_string(),
                        unit: e.unit.clone(),
                    };
                    (name.to_string(), meta)
                })
                .collect();
            self.metadata_version += 1;
        }
        Ok(counts)
    }

    /// Rewrites the HELP texts without the replaced ones once those are most of it.
    fn compact_help_text(&mut self) {
        let live: usize = self.meta.values().map(|e| e.help.len()).sum();
        if self.help_text.len() <= 2 * live + 4096 {
            return;
        }
        let old = std::mem::take(&mut self.help_text);
        for e in self.meta.values_mut() {
            let start = self.help_text.len();
            self.help_text
                .push_str(old.get(e.help.clone()).unwrap_or_default());
            e.help = start..self.help_text.len();
        }
    }

    /// A failed scrape, or a target that goes away: every series the last successful
    /// scrape exposed goes stale.
    pub fn append_failure(&mut self, t_ms: i64, app: &mut dyn Appender) {
        self.mark_stale(self.iteration, t_ms, app);
        // A new iteration that exposes nothing: the next success finds no previous
        // series to mark again.
        self.iteration += 1;
    }

    fn mark_stale(&self, iteration: u64, t_ms: i64, app: &mut dyn Appender) {
        for e in self.entries.values() {
            if e.seen != iteration || e.explicit_timestamp {
                continue;
            }
            if let Some(labels) = &e.labels {
                // The labels were accepted before; a refusal now cannot happen.
                let _ = app.append(labels, t_ms, stale_nan());
            }
        }
    }
}

/// The family's metadata entry, marked seen in scrape `current`; a new one (untyped,
/// no help) counts as a change.
fn meta_entry<'m>(
    meta: &'m mut KeyedTable<MetaEntry>,
    name: &str,
    current: u64,
    changed: &mut bool,
) -> &'m mut MetaEntry {
    let (e, added) = meta.find_or_insert(name, || MetaEntry {
        kind: MetricType::Untyped,
        help: 0..0,
        unit: String::new(),
        seen: current,
    });
    *changed |= added;
    e.seen = current;
    e
}

/// The labels a scraped sample is stored with: the exposed ones merged with the
/// target's (`honor_labels` deciding conflicts, as Prometheus's
/// `mutateSampleLabels`), then `metric_relabel_configs`. `None` when relabeling
/// drops the series.
fn sample_labels(
    ctx: &AppendContext<'_>,
    name: &str,
    exposed: &[(&str, Cow<'_, str>)],
) -> Result<Option<Labels>, AppendError> {
    let mut pairs: Vec<(ArcStr, ArcStr)> = Vec::with_capacity(exposed.len() + 1 + 4);
    pairs.push((ArcStr::from("__name__"), ArcStr::from(name)));
    for (n, v) in exposed {
        pairs.push((ArcStr::from(*n), ArcStr::from(v.as_ref())));
    }
    let has =
        |pairs: &[(ArcStr, ArcStr)], n: &str| pairs.iter().any(|(k, v)| k == n && !v.is_empty());
    if ctx.honor_labels {
        for l in ctx.target_labels.iter() {
            if !has(&pairs, &l.name) {
                pairs.retain(|(k, _)| k != &l.name);
                pairs.push((l.name.clone(), l.value.clone()));
            }
        }
    } else {
        // Exposed labels that clash with target labels are kept as `exported_<name>`
        // (shortest names first, prefixing again while the name is taken).
        let mut conflicting: Vec<(String, ArcStr)> = Vec::new();
        for l in ctx.target_labels.iter() {
            if let Some(i) = pairs.iter().position(|(k, _)| k == &l.name) {
                let (_, v) = pairs.remove(i);
                if !v.is_empty() {
                    conflicting.push((l.name.to_string(), v));
                }
            }
        }
        conflicting.sort_by_key(|(n, _)| n.len());
        let mut renamed: Vec<String> = Vec::new();
        for (n, v) in conflicting {
            let mut new_name = n;
            loop {
                new_name = format!("exported_{new_name}");
                let taken = exposed.iter().any(|(k, _)| *k == new_name)
                    || ctx.target_labels.get(&new_name).is_some()
                    || renamed.contains(&new_name);
                if !taken {
                    break;
                }
            }
            renamed.push(new_name.clone());
            pairs.push((ArcStr::from(new_name), v));
        }
        for l in ctx.target_labels.iter() {
            pairs.push((l.name.clone(), l.value.clone()));
        }
    }
    let labels = Labels::from_pairs(pairs);
    let labels = if ctx.metric_relabel.is_empty() {
        Some(labels)
    } else {
        process_labels(&labels, ctx.metric_relabel).filter(|l| l.metric_name().is_some())
    };
    // The parsers only produce valid names, but relabelling can write any value into
    // `__name__` (`replace` with a regex group); as Prometheus's scrape loop, such a
    // series fails the scrape instead of being stored.
    if let Some(l) = &labels {
        l.validate().map_err(|e| AppendError::InvalidSeries {
            series: l.to_string(),
            message: format!("invalid metric name or label names: {e}"),
        })?;
    }
    Ok(labels)
}

fn check_limits(labels: &Labels, limits: &Limits) -> Result<(), AppendError> {
    let metric = || labels.metric_name().unwrap_or("").to_string();
    if limits.label_limit > 0 && labels.len() as u64 > limits.label_limit {
        return Err(AppendError::LabelLimit {
            metric: metric(),
            count: labels.len(),
            limit: limits.label_limit,
        });
    }
    for l in labels.iter() {
        if limits.label_name_length_limit > 0
            && l.name.len() as u64 > limits.label_name_length_limit
        {
            return Err(AppendError::LabelNameLength {
                metric: metric(),
                name: l.name.to_string(),
                len: l.name.len(),
                limit: limits.label_name_length_limit,
            });
        }
        if limits.label_value_length_limit > 0
            && l.value.len() as u64 > limits.label_value_length_limit
        {
            return Err(AppendError::LabelValueLength {
                metric: metric(),
                name: l.name.to_string(),
                value: l.value.to_string(),
                len: l.value.len(),
                limit: limits.label_value_length_limit,
            });
        }
    }
    Ok(())
}

/// The synthetic series of one scrape, as Prometheus reports them.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub up: bool,
    pub duration_seconds: f64,
    pub counts: ScrapeCounts,
}

pub const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// A target's report series: their labels, built once, and the storage's references.
struct ReportSeries {
    target_labels: Labels,
    series: Vec<(Labels, Option<SeriesRef>)>,
}

impl ScrapeCache {
    /// Appends the report series with the target's labels.
    pub fn append_report(
        &mut self,
        target_labels: &Labels,
        report: &Report,
        t_ms: i64,
        app: &mut dyn Appender,
    ) {
        let values = [
            if report.up { 1.0 } else { 0.0 },
            report.duration_seconds,
            report.counts.scraped as f64,
            report.counts.post_relabel as f64,
            report.counts.added as f64,
        ];
        let fresh = match &self.report {
            Some(r) => !r.target_labels.ptr_eq(target_labels) && r.target_labels != *target_labels,
            None => true,
        };
        if fresh {
            self.report = Some(ReportSeries {
                target_labels: target_labels.clone(),
                series: REPORT_SERIES
                    .iter()
                    .map(|name| (report_labels(target_labels, name), None))
                    .collect(),
            });
        }
        let Some(r) = self.report.as_mut() else {
            return;
        };
        for ((labels, series), v) in r.series.iter_mut().zip(values) {
            // Report series are written every scrape, so their references never go
            // stale; their labels are never invalid.
            let _ = app.append_ref(series, labels, t_ms, v);
        }
    }
}

/// Stale markers for the report series of a target that goes away.
pub fn append_report_stale(target_labels: &Labels, t_ms: i64, app: &mut dyn Appender) {
    for name in REPORT_SERIES {
        let _ = app.append(&report_labels(target_labels, name), t_ms, stale_nan());
    }
}

fn report_labels(target_labels: &Labels, name: &str) -> Labels {
    let mut b = target_labels.to_builder();
    b.set("__name__", name);
    b.build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::is_stale_nan;
    use crate::storage::Appendable;
    use crate::storage::memory::MemoryStorage;

    fn target() -> Labels {
        Labels::from_pairs([("job", "node"), ("instance", "h:9100")])
    }

    fn ctx<'a>(target: &'a Labels, relabel: &'a [RelabelConfig]) -> AppendContext<'a> {
        AppendContext {
            target_labels: target,
            honor_labels: false,
            honor_timestamps: true,
            metric_relabel: relabel,
            limits: Limits::default(),
        }
    }

    /// Every stored sample as `labels t v`.
    fn dump(db: &MemoryStorage) -> Vec<String> {
        let mut out = Vec::new();
        for s in db.dump() {
            for x in &s.samples {
                let v = if is_stale_nan(x.v) {
                    "stale".to_string()
                } else {
                    x.v.to_string()
                };
                out.push(format!("{} {} {}", s.labels, x.t, v));
            }
        }
        out
    }

    fn scrape(
        db: &MemoryStorage,
        cache: &mut ScrapeCache,
        c: &AppendContext<'_>,
        body: &str,
        t: i64,
    ) -> Result<ScrapeCounts, AppendError> {
        let mut app = db.appender();
        let r = cache.append_body(c, Format::Text, body.as_bytes(), t, app.as_mut());
        match r {
            Ok(_) => {
                app.commit().unwrap();
            }
            Err(_) => app.rollback(),
        }
        r
    }

    #[test]
    fn target_labels_win_and_clashing_ones_are_exported() {
        let db = MemoryStorage::new();
        let t = target();
        let mut cache = ScrapeCache::default();
        let counts = scrape(
            &db,
            &mut cache,
            &ctx(&t, &[]),
            "# TYPE a gauge\n# HELP a An a.\na{job=\"other\",x=\"1\"} 3\nb 4 1000\n",
            5000,
        )
        .unwrap();
        assert_eq!(
            counts,
            ScrapeCounts {
                scraped: 2,
                post_relabel: 2,
                added: 2
            }
        );
        assert_eq!(
            dump(&db),
            [
                r#"{__name__="a", exported_job="other", instance="h:9100", job="node", x="1"} 5000 3"#,
                r#"{__name__="b", instance="h:9100", job="node"} 1000 4"#,
            ]
        );
        let m = cache.metadata().get("a").unwrap();
        assert_eq!((m.kind, m.help.as_str()), (MetricType::Gauge, "An a."));
    }

    #[test]
    fn metadata_follows_the_latest_scrape() {
        let db = MemoryStorage::new();
        let t = target();
        let c = ctx(&t, &[]);
        let mut cache = ScrapeCache::default();
        scrape(
            &db,
            &mut cache,
            &c,
            "# HELP a One.\n# TYPE a gauge\na 1\n# HELP b B.\nb 1\n",
            1000,
        )
        .unwrap();
        let v1 = cache.metadata_version();
        scrape(
            &db,
            &mut cache,
            &c,
            "# HELP a One.\n# TYPE a gauge\na 1\n# HELP b B.\nb 1\n",
            2000,
        )
        .unwrap();
        assert_eq!(
            cache.metadata_version(),
            v1,
            "unchanged metadata is not rebuilt"
        );
        scrape(
            &db,
            &mut cache,
            &c,
            "# HELP a Two.\n# TYPE a counter\na 1\n",
            3000,
        )
        .unwrap();
        assert_ne!(cache.metadata_version(), v1);
        let m = cache.metadata();
        assert_eq!(m.len(), 1, "b's metadata went with its lines");
        let a = m.get("a").unwrap();
        assert_eq!((a.kind, a.help.as_str()), (MetricType::Counter, "Two."));
    }

    #[test]
    fn help_texts_that_change_every_scrape_do_not_pile_up() {
        let db = MemoryStorage::new();
        let t = target();
        let c = ctx(&t, &[]);
        let mut cache = ScrapeCache::default();
        let steady = "x".repeat(100);
        for i in 0..500 {
            let page = format!("# HELP a {steady}\na 1\n# HELP b Scrape {i}.\nb 1\n");
            scrape(&db, &mut cache, &c, &page, 1000 * (i + 1)).unwrap();
            let m = cache.metadata();
            assert_eq!(m.get("a").unwrap().help, steady);
            assert_eq!(m.get("b").unwrap().help, format!("Scrape {i}."));
        }
        assert!(
            cache.help_text.len() <= 2 * (100 + 12) + 4096 + 12,
            "{} bytes of HELP text kept",
            cache.help_text.len()
        );
    }

    #[test]
    fn honor_labels_keeps_exposed_values() {
        let db = MemoryStorage::new();
        let t = target();
        let mut c = ctx(&t, &[]);
        c.honor_labels = true;
        c.honor_timestamps = false;
        let mut cache = ScrapeCache::default();
        scrape(&db, &mut cache, &c, "a{job=\"other\"} 3 1000\n", 5000).unwrap();
        assert_eq!(
            dump(&db),
            [r#"{__name__="a", instance="h:9100", job="other"} 5000 3"#]
        );
    }

    #[test]
    fn vanished_series_and_failed_scrapes_get_stale_markers() {
        let db = MemoryStorage::new();
        let t = target();
        let c = ctx(&t, &[]);
        let mut cache = ScrapeCache::default();
        scrape(&db, &mut cache, &c, "a 1\nb 1\nc 1 500\n", 1000).unwrap();
        let counts = scrape(&db, &mut cache, &c, "a 2\nc 2 1500\n", 2000).unwrap();
        assert_eq!(counts.added, 0);
        let mut app = db.appender();
        cache.append_failure(3000, app.as_mut());
        app.commit().unwrap();
        let got = dump(&db);
        assert!(
            got.contains(
                &r#"{__name__="b", instance="h:9100", job="node"} 2000 stale"#.to_string()
            )
        );
        assert!(
            got.contains(
                &r#"{__name__="a", instance="h:9100", job="node"} 3000 stale"#.to_string()
            )
        );
        // Explicit timestamps opt out of staleness.
        assert!(
            !got.iter()
                .any(|l| l.contains("\"c\"") && l.contains("stale"))
        );
        // Nothing is marked twice.
        let mut app = db.appender();
        cache.append_failure(4000, app.as_mut());
        app.commit().unwrap();
        assert_eq!(dump(&db).len(), got.len());
    }

    /// Pages that reorder, drop and bring back series (the table's positional path,
    /// its hash path, and the compaction when entries are forgotten) store every
    /// sample under the right series, and count as added only series it forgot.
    #[test]
    fn reordered_and_returning_series_keep_their_samples() {
        let db = MemoryStorage::new();
        let t = target();
        let c = ctx(&t, &[]);
        let mut cache = ScrapeCache::default();
        let pages = [
            ("a 1\nb{x=\"1\"} 1\nc 1\n", 3),
            ("c 2\nb{x=\"1\"} 2\na 2\n", 0),
            ("a 3\n", 0),
            ("a 4\n", 0),
            // b and c were forgotten after two scrapes without them.
            ("b{x=\"1\"} 5\nd 5\na 5\nc 5\n", 3),
            ("b{x=\"1\"}  6\nd 6\na 6\nc 6\n", 0),
            // The same series written differently is a new text, not a new series
            // for the storage.
            ("b{ x=\"1\" } 7\nd 7\na 7\nc 7\n", 1),
        ];
        for (i, (page, added)) in pages.iter().enumerate() {
            let t = 1000 * (i as i64 + 1);
            let counts = scrape(&db, &mut cache, &c, page, t).unwrap();
            assert_eq!(counts.added, *added, "page {i}: {page:?}");
            assert_eq!(counts.scraped, page.lines().count() as u64);
        }
        let got = dump(&db);
        let values = |name: &str| -> Vec<String> {
            got.iter()
                .filter(|l| l.starts_with(&format!("{{__name__=\"{name}\"")))
                .map(|l| l.rsplit(' ').take(2).collect::<Vec<_>>().join("@"))
                .collect()
        };
        assert_eq!(
            values("a"),
            [
                "1@1000", "2@2000", "3@3000", "4@4000", "5@5000", "6@6000", "7@7000"
            ]
        );
        assert_eq!(
            values("b"),
            [
                "1@1000",
                "2@2000",
                "stale@3000",
                "5@5000",
                "6@6000",
                "7@7000"
            ]
        );
        assert_eq!(
            values("c"),
            [
                "1@1000",
                "2@2000",
                "stale@3000",
                "5@5000",
                "6@6000",
                "7@7000"
            ]
        );
        assert_eq!(values("d"), ["5@5000", "6@6000", "7@7000"]);
    }

    /// Relabelling can write anything into `__name__`; such a series fails the
    /// scrape (Prometheus's "invalid metric name or label names") and nothing of it
    /// is stored, whether the value comes from metric relabelling or from a target
    /// label.
    #[test]
    fn relabelled_invalid_metric_names_fail_the_scrape() {
        let db = MemoryStorage::new();
        let t = target();
        for replacement in [
            "bad name",
            "up\ninjected_metric{job=\"victim\"} 12345",
            "9lives",
        ] {
            let yaml = format!(
                "- source_labels: [__name__]\n  target_label: __name__\n  replacement: {replacement:?}\n"
            );
            let relabel: Vec<RelabelConfig> = serde_saphyr::from_str(&yaml).unwrap();
            let c = ctx(&t, &relabel);
            let err = scrape(&db, &mut ScrapeCache::default(), &c, "ok 1\n", 1000);
            assert!(
                matches!(&err, Err(AppendError::InvalidSeries { message, .. })
                    if message.contains("invalid metric name or label names")),
                "{replacement:?}: {err:?}"
            );
        }
        let bad_target = Labels::from_pairs([("__name__", "a b"), ("job", "j")]);
        let c = ctx(&bad_target, &[]);
        let err = scrape(&db, &mut ScrapeCache::default(), &c, "ok 1\n", 1000);
        assert!(
            matches!(err, Err(AppendError::InvalidSeries { .. })),
            "{err:?}"
        );
        assert!(dump(&db).is_empty(), "{:?}", dump(&db));
        // A valid rename still goes in.
        let relabel: Vec<RelabelConfig> = serde_saphyr::from_str(
            "- source_labels: [__name__]\n  target_label: __name__\n  replacement: renamed:total\n",
        )
        .unwrap();
        scrape(
            &db,
            &mut ScrapeCache::default(),
            &ctx(&t, &relabel),
            "ok 1\n",
            1000,
        )
        .unwrap();
        assert!(
            dump(&db).iter().any(|l| l.contains("renamed:total")),
            "{:?}",
            dump(&db)
        );
    }

    #[test]
    fn metric_relabeling_drops_and_limits_fail_the_scrape() {
        let db = MemoryStorage::new();
        let t = target();
        let relabel: Vec<RelabelConfig> = serde_saphyr::from_str(
            "- source_labels: [__name__]\n  regex: drop_.*\n  action: drop\n",
        )
        .unwrap();
        let mut c = ctx(&t, &relabel);
        let mut cache = ScrapeCache::default();
        let counts = scrape(&db, &mut cache, &c, "drop_me 1\nkeep 1\n", 1000).unwrap();
        assert_eq!((counts.scraped, counts.post_relabel), (2, 1));
        c.limits.sample_limit = 1;
        let mut cache = ScrapeCache::default();
        assert_eq!(
            scrape(&db, &mut cache, &c, "a 1\nb 1\n", 2000),
            Err(AppendError::SampleLimit { limit: 1 })
        );
        c.limits = Limits {
            label_limit: 3,
            ..Limits::default()
        };
        let err = scrape(
            &db,
            &mut ScrapeCache::default(),
            &c,
            "a{x=\"1\",y=\"2\"} 1\n",
            2000,
        );
        assert!(
            matches!(err, Err(AppendError::LabelLimit { count: 5, .. })),
            "{err:?}"
        );
        let err = scrape(&db, &mut ScrapeCache::default(), &c, "a{x=\"1\" 1\n", 2000);
        assert!(
            matches!(&err, Err(AppendError::Parse(m)) if m.contains("line 1")),
            "{err:?}"
        );
    }

    #[test]
    fn later_scrapes_reach_the_tsdb_series_by_reference() {
        use crate::storage::Queryable;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::tsdb::Db::open_for_tests(
            dir.path(),
            crate::tsdb::DbOptions::default(),
            &Default::default(),
        );
        let t = target();
        let c = ctx(&t, &[]);
        let mut cache = ScrapeCache::default();
        for (i, ts) in [1000, 2000, 3000].into_iter().enumerate() {
            let mut app = db.appender();
            cache
                .append_body(
                    &c,
                    Format::Text,
                    format!("a {i}\n").as_bytes(),
                    ts,
                    app.as_mut(),
                )
                .unwrap();
            app.commit().unwrap();
        }
        // The second scrape found the series by its labels and kept the reference;
        // the third used it.
        assert!(cache.entries.values().all(|e| e.series.is_some()));
        let q = db.querier(0, 10_000).unwrap();
        let got: Vec<(i64, f64)> = q
            .select(
                &Default::default(),
                &[crate::model::Matcher::equal("__name__", "a")],
            )
            .unwrap()
            .flat_map(|s| s.unwrap().samples)
            .map(|x| (x.t, x.v))
            .collect();
        assert_eq!(got, [(1000, 0.0), (2000, 1.0), (3000, 2.0)]);
    }

    #[test]
    fn report_series_carry_target_labels() {
        let db = MemoryStorage::new();
        let t = target();
        let mut app = db.appender();
        ScrapeCache::default().append_report(
            &t,
            &Report {
                up: true,
                duration_seconds: 0.5,
                counts: ScrapeCounts {
                    scraped: 3,
                    post_relabel: 2,
                    added: 1,
                },
            },
            1000,
            app.as_mut(),
        );
        app.commit().unwrap();
        let got = dump(&db);
        assert!(
            got.contains(&r#"{__name__="up", instance="h:9100", job="node"} 1000 1"#.to_string())
        );
        assert!(got.contains(
            &r#"{__name__="scrape_samples_post_metric_relabeling", instance="h:9100", job="node"} 1000 2"#
                .to_string()
        ));
    }
}
