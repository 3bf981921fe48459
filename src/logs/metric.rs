//! LogQL metric queries: samples made from log lines over a range (`rate`,
//! `count_over_time`, `bytes_*`, `absent_over_time`, and the `unwrap`ped
//! `*_over_time`), then PromQL-like vector aggregations, binary operations and
//! `label_replace`, evaluated at every step of a query.
//!
//! Semantics as Loki's:
//! * a range aggregation at `t` reads the lines in `(t - offset - range, t - offset]`;
//! * samples are labelled by the line's labels after the pipeline (parsed labels
//!   and structured metadata among them); an `unwrap`ped label leaves the labels;
//! * a sample still carrying `__error__` fails the query, naming the error and how
//!   to skip it (a label filter on `__error__`);
//! * `by`/`without` on a range aggregation groups its samples before the function.

use std::collections::BTreeMap;

use regex::Regex;

use crate::log::record::LogLine;
use crate::logs::logql::ast::{
    BinaryOp, Conversion, Grouping, LogRange, MetricExpr, RangeOp, Stage, VectorMatching, VectorOp,
};
use crate::logs::logql::parser::{parse_bytes, parse_label_duration};
use crate::logs::logql::pipeline::Pipeline;
use crate::logs::query::{LabelPairs, needles, time_order};
use crate::logs::store::Selected;
use crate::model::{MatchType, Matcher};

/// The points a range query may return per series, as Loki (and Prometheus).
pub const MAX_POINTS: i64 = 11_000;

/// The times a query is evaluated at: `start`, `start + step`, … up to `end`.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub start_ns: i64,
    pub end_ns: i64,
    pub step_ns: i64,
}

impl Steps {
    /// One evaluation, at `t_ns`.
    pub fn instant(t_ns: i64) -> Steps {
        Steps {
            start_ns: t_ns,
            end_ns: t_ns,
            step_ns: 1,
        }
    }

    pub fn len(&self) -> usize {
        (self.end_ns.saturating_sub(self.start_ns) / self.step_ns.max(1))
            .saturating_add(1)
            .max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn at(&self, i: usize) -> i64 {
        self.start_ns
            .saturating_add((i as i64).saturating_mul(self.step_ns))
    }
}

/// Why a metric query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// The query cannot be evaluated as written (Loki answers 400).
    #[error("{0}")]
    BadQuery(String),
    /// Reading lines failed, or the request's limits stopped it.
    #[error("{0}")]
    Failed(String),
}

type Result<T> = std::result::Result<T, MetricError>;

fn bad(msg: impl Into<String>) -> MetricError {
    MetricError::BadQuery(msg.into())
}

/// A series evaluated at every step (`None` where it has no value).
#[derive(Debug, Clone, PartialEq)]
pub struct StepSeries {
    pub labels: LabelPairs,
    pub points: Vec<Option<f64>>,
}

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluated {
    Vector(Vec<StepSeries>),
    Scalar(f64),
}

/// Selects streams: matchers, `[start_ns, end_ns)`, needles.
pub type SelectFn<'a> =
    dyn Fn(&[Matcher], i64, i64, &[String]) -> std::result::Result<Vec<Selected>, String> + 'a;

/// What evaluation reads lines from and answers to.
pub struct Context<'a> {
    /// The streams matching a selector with lines in `[start, end)`, narrowed by
    /// needles (see `LogStorage::select`).
    pub select: &'a SelectFn<'a>,
    /// Asked now and then whether to go on (deadline, cancellation).
    pub keep_going: &'a dyn Fn() -> std::result::Result<(), String>,
    /// Points (series × steps) a query may hold: `--query.max-samples`.
    pub max_points: usize,
    /// Lines and bytes read, for the answer's statistics.
    pub processed: std::cell::Cell<(u64, u64)>,
}

/// Evaluates `expr` at every step.
pub fn evaluate(expr: &MetricExpr, steps: &Steps, ctx: &Context<'_>) -> Result<Evaluated> {
    match expr {
        MetricExpr::Literal(v) => Ok(Evaluated::Scalar(*v)),
        MetricExpr::Vector1(v) => Ok(Evaluated::Vector(vec![StepSeries {
            labels: Vec::new(),
            points: vec![Some(*v); steps.len()],
        }])),
        MetricExpr::Range {
            op,
            param,
            range,
            grouping,
        } => range_aggregation(*op, *param, range, grouping.as_ref(), steps, ctx)
            .map(Evaluated::Vector),
        MetricExpr::Vector {
            op,
            param,
            grouping,
            expr,
        } => {
            let Evaluated::Vector(inner) = evaluate(expr, steps, ctx)? else {
                return Err(bad("a vector aggregation needs a vector, not a scalar"));
            };
            vector_aggregation(*op, *param, grouping.as_ref(), inner, steps).map(Evaluated::Vector)
        }
        MetricExpr::Binary {
            op,
            return_bool,
            matching,
            lhs,
            rhs,
        } => {
            let l = evaluate(lhs, steps, ctx)?;
            let r = evaluate(rhs, steps, ctx)?;
            binary(*op, *return_bool, matching, l, r)
        }
        MetricExpr::LabelReplace {
            expr,
            dst,
            replacement,
            src,
            regex,
        } => {
            let Evaluated::Vector(inner) = evaluate(expr, steps, ctx)? else {
                return Err(bad("label_replace needs a vector, not a scalar"));
            };
            label_replace(inner, dst, replacement, src, regex).map(Evaluated::Vector)
        }
    }
}

/// Labels reduced by a grouping: `by` keeps the listed, `without` drops them.
fn group_key(labels: &LabelPairs, grouping: Option<&Grouping>) -> LabelPairs {
    match grouping {
        None => Vec::new(),
        Some(Grouping::By(names)) => labels
            .iter()
            .filter(|(k, _)| names.contains(k))
            .cloned()
            .collect(),
        Some(Grouping::Without(names)) => labels
            .iter()
            .filter(|(k, _)| !names.contains(k))
            .cloned()
            .collect(),
    }
}

/// The samples of a range aggregation's lines, by series, in time order.
fn samples(
    op: RangeOp,
    range: &LogRange,
    grouping: Option<&Grouping>,
    steps: &Steps,
    ctx: &Context<'_>,
) -> Result<BTreeMap<LabelPairs, Vec<(i64, f64)>>> {
    let pipeline = Pipeline::new(&range.log.pipeline).map_err(bad)?;
    let post = match &range.unwrap {
        Some(u) if !u.post_filters.is_empty() => {
            let stages: Vec<Stage> = u
                .post_filters
                .iter()
                .cloned()
                .map(Stage::LabelFilter)
                .collect();
            Some(Pipeline::new(&stages).map_err(bad)?)
        }
        _ => None,
    };
    let range_ns = range.range_ms.saturating_mul(1_000_000);
    let offset_ns = range.offset_ms.saturating_mul(1_000_000);
    // Every window is (t - offset - range, t - offset]: selected as [lo, hi).
    // Saturating: a range or offset of centuries reaches the ends of time, not past.
    let lo = steps
        .start_ns
        .saturating_sub(offset_ns)
        .saturating_sub(range_ns)
        .saturating_add(1);
    let hi = steps.end_ns.saturating_sub(offset_ns).saturating_add(1);
    let selected = (ctx.select)(&range.log.selector, lo, hi, &needles(&range.log.pipeline))
        .map_err(MetricError::Failed)?;
    let mut out: BTreeMap<LabelPairs, Vec<(i64, f64)>> = BTreeMap::new();
    let mut seen = 0usize;
    let mut label_bytes = 0usize;
    // Line filters only and no unwrap: a kept line without metadata has its
    // stream's labels, so its series is worked out once per stream (by the full
    // path, on the first such line) and the other lines only pass the filters.
    let plain = pipeline.only_filters_lines() && range.unwrap.is_none();
    for s in selected {
        let stream: LabelPairs = s
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        let mut plain_key: Option<LabelPairs> = None;
        for (c, i) in time_order(&s.chunks, lo, hi) {
            let line = &s.chunks[c as usize][i as usize];
            seen += 1;
            let (lines, bytes) = ctx.processed.get();
            ctx.processed
                .set((lines + 1, bytes + line.text.len() as u64));
            if seen % 4096 == 0 {
                (ctx.keep_going)().map_err(MetricError::Failed)?;
            }
            if plain
                && line.metadata.is_empty()
                && let Some(key) = &plain_key
            {
                if pipeline.keeps_line(&line.text) {
                    let value = match op {
                        RangeOp::BytesRate | RangeOp::BytesOverTime => line.text.len() as f64,
                        _ => 1.0,
                    };
                    match out.get_mut(key) {
                        Some(points) => points.push((line.ts_ns, value)),
                        None => {
                            out.insert(key.clone(), vec![(line.ts_ns, value)]);
                        }
                    }
                }
                continue;
            }
            let Some((labels, text)) =
                pipeline.process(line.ts_ns, &stream, &line.metadata, &line.text)
            else {
                continue;
            };
            let Some((labels, value)) = sample_of(op, range, post.as_ref(), labels, &text, line)
            else {
                continue;
            };
            if let Some((_, e)) = labels
                .iter()
                .find(|(k, v)| k == "__error__" && !v.is_empty())
            {
                return Err(bad(pipeline_error(e, &labels)));
            }
            let key = match grouping {
                Some(_) => group_key(&labels, grouping),
                None => labels,
            };
            if plain && line.metadata.is_empty() {
                plain_key = Some(key.clone());
            }
            match out.get_mut(&key) {
                Some(points) => points.push((line.ts_ns, value)),
                None => {
                    // `label_format` may make every line a series of megabytes.
                    label_bytes += crate::logs::query::pairs_bytes(&key);
                    if label_bytes > crate::logs::query::MAX_ANSWER_BYTES {
                        return Err(bad(crate::logs::query::AnswerTooLarge.to_string()));
                    }
                    out.insert(key, vec![(line.ts_ns, value)]);
                }
            }
        }
    }
    for points in out.values_mut() {
        points.sort_by_key(|p| p.0);
    }
    Ok(out)
}

/// One line's sample: its labels and value, or `None` when a post-unwrap filter
/// drops it.
fn sample_of(
    op: RangeOp,
    range: &LogRange,
    post: Option<&Pipeline>,
    mut labels: LabelPairs,
    text: &str,
    line: &LogLine,
) -> Option<(LabelPairs, f64)> {
    let Some(u) = &range.unwrap else {
        let value = match op {
            RangeOp::BytesRate | RangeOp::BytesOverTime => text.len() as f64,
            _ => 1.0,
        };
        return Some((labels, value));
    };
    let raw = labels
        .iter()
        .position(|(k, _)| *k == u.label)
        .map(|i| labels.remove(i).1)
        .unwrap_or_default();
    // A line without the label (or with it empty) has no sample; it is not an
    // error (Loki since 2.7, grafana/loki#6713).
    if raw.is_empty() {
        return None;
    }
    // Read as Loki reads it: untrimmed, with Go's parsers and their errors.
    let converted = match u.conversion {
        Conversion::Number => crate::gostrconv::parse_float_or_go_error(&raw),
        Conversion::Duration | Conversion::DurationSeconds => parse_label_duration(&raw),
        Conversion::Bytes => parse_bytes(&raw).map(|b| b as f64),
    };
    let value = match converted {
        Ok(v) => v,
        Err(details) => {
            set_label(&mut labels, "__error__", "SampleExtractionErr");
            set_label(&mut labels, "__error_details__", &details);
            0.0
        }
    };
    match post {
        None => Some((labels, value)),
        Some(p) => p
            .process(line.ts_ns, &labels, &[], "")
            .map(|(l, _)| (l, value)),
    }
}

fn set_label(labels: &mut LabelPairs, name: &str, value: &str) {
    match labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
        Ok(i) => labels[i].1 = value.to_string(),
        Err(i) => labels.insert(i, (name.to_string(), value.to_string())),
    }
}

/// Loki's message for samples that still carry a pipeline error.
fn pipeline_error(error: &str, labels: &LabelPairs) -> String {
    format!(
        "pipeline error: '{error}' for series: '{}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{error}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )",
        labels_text(labels)
    )
}

fn labels_text(labels: &LabelPairs) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn range_aggregation(
    op: RangeOp,
    param: Option<f64>,
    range: &LogRange,
    grouping: Option<&Grouping>,
    steps: &Steps,
    ctx: &Context<'_>,
) -> Result<Vec<StepSeries>> {
    let by_series = samples(op, range, grouping, steps, ctx)?;
    let range_ns = range.range_ms.saturating_mul(1_000_000);
    let offset_ns = range.offset_ms.saturating_mul(1_000_000);
    let n = steps.len();
    if by_series.len().saturating_mul(n) > ctx.max_points {
        return Err(MetricError::Failed(
            "query processing would load too many samples into memory in query execution".into(),
        ));
    }
    if op == RangeOp::AbsentOverTime {
        let mut points = vec![Some(1.0); n];
        for samples in by_series.values() {
            for (i, p) in points.iter_mut().enumerate() {
                let t = steps.at(i).saturating_sub(offset_ns);
                if !window(samples, t.saturating_sub(range_ns), t).is_empty() {
                    *p = None;
                }
            }
        }
        if points.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        // The labels of the selector's equality matchers, as Prometheus's absent.
        let mut labels: LabelPairs = range
            .log
            .selector
            .iter()
            .filter(|m| m.kind == MatchType::Equal)
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        return Ok(vec![StepSeries { labels, points }]);
    }
    let range_s = range_ns as f64 / 1e9;
    let mut out = Vec::with_capacity(by_series.len());
    for (labels, samples) in by_series {
        let mut points = vec![None; n];
        let mut any = false;
        for (i, p) in points.iter_mut().enumerate() {
            let t = steps.at(i).saturating_sub(offset_ns);
            let from = t.saturating_sub(range_ns);
            let w = window(&samples, from, t);
            if w.is_empty() {
                continue;
            }
            *p = range_function(op, param, w, range_s, from, t);
            any |= p.is_some();
        }
        if any {
            out.push(StepSeries { labels, points });
        }
    }
    Ok(out)
}

/// The samples in `(from, to]`.
fn window(samples: &[(i64, f64)], from: i64, to: i64) -> &[(i64, f64)] {
    let a = samples.partition_point(|s| s.0 <= from);
    let b = samples.partition_point(|s| s.0 <= to);
    &samples[a..b.max(a)]
}

fn range_function(
    op: RangeOp,
    param: Option<f64>,
    w: &[(i64, f64)],
    range_s: f64,
    from_ns: i64,
    to_ns: i64,
) -> Option<f64> {
    let values = || w.iter().map(|s| s.1);
    let sum = || values().sum::<f64>();
    let count = w.len() as f64;
    Some(match op {
        RangeOp::CountOverTime => count,
        RangeOp::Rate => sum() / range_s,
        RangeOp::BytesOverTime => sum(),
        RangeOp::BytesRate => sum() / range_s,
        RangeOp::SumOverTime => sum(),
        RangeOp::AvgOverTime => sum() / count,
        RangeOp::MaxOverTime => values().fold(f64::NEG_INFINITY, f64::max),
        RangeOp::MinOverTime => values().fold(f64::INFINITY, f64::min),
        RangeOp::FirstOverTime => w.first()?.1,
        RangeOp::LastOverTime => w.last()?.1,
        RangeOp::StdvarOverTime | RangeOp::StddevOverTime => {
            let mean = sum() / count;
            let var = values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
            if op == RangeOp::StddevOverTime {
                var.sqrt()
            } else {
                var
            }
        }
        RangeOp::QuantileOverTime => {
            let mut v: Vec<f64> = values().collect();
            quantile(param.unwrap_or(f64::NAN), &mut v)
        }
        RangeOp::RateCounter => counter_rate(w, from_ns, to_ns)?,
        RangeOp::AbsentOverTime => 1.0,
    })
}

/// Prometheus's quantile: interpolated between the closest ranks.
fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// `rate_counter`: the per-second increase of a counter over the window, with
/// resets and Prometheus's extrapolation to the window's edges.
fn counter_rate(w: &[(i64, f64)], from_ns: i64, to_ns: i64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let mut increase = w[w.len() - 1].1 - w[0].1;
    for pair in w.windows(2) {
        if pair[1].1 < pair[0].1 {
            increase += pair[0].1;
        }
    }
    let secs = |ns: i64| ns as f64 / 1e9;
    let sampled = secs(w[w.len() - 1].0 - w[0].0);
    let mut to_start = secs(w[0].0 - from_ns);
    let to_end = secs(to_ns - w[w.len() - 1].0);
    let average_gap = sampled / (w.len() - 1) as f64;
    if increase > 0.0 && w[0].1 >= 0.0 {
        let to_zero = sampled * (w[0].1 / increase);
        to_start = to_start.min(to_zero);
    }
    let threshold = average_gap * 1.1;
    let mut extrapolated = sampled;
    extrapolated += if to_start < threshold {
        to_start
    } else {
        average_gap / 2.0
    };
    extrapolated += if to_end < threshold {
        to_end
    } else {
        average_gap / 2.0
    };
    let range = secs(to_ns - from_ns);
    Some(increase * (extrapolated / sampled) / range)
}

fn vector_aggregation(
    op: VectorOp,
    param: Option<f64>,
    grouping: Option<&Grouping>,
    inner: Vec<StepSeries>,
    steps: &Steps,
) -> Result<Vec<StepSeries>> {
    let n = steps.len();
    match op {
        VectorOp::Sort | VectorOp::SortDesc => return Ok(inner),
        VectorOp::Topk | VectorOp::Bottomk => {
            let k = param.unwrap_or(0.0);
            if k.is_nan() || k < 1.0 {
                return Err(bad(format!("parameter {k} must be a positive integer")));
            }
            let k = k as usize;
            let keys: Vec<LabelPairs> = inner
                .iter()
                .map(|s| group_key(&s.labels, grouping))
                .collect();
            let mut out: Vec<StepSeries> = inner
                .iter()
                .map(|s| StepSeries {
                    labels: s.labels.clone(),
                    points: vec![None; n],
                })
                .collect();
            for i in 0..n {
                let mut groups: BTreeMap<&LabelPairs, Vec<(f64, usize)>> = BTreeMap::new();
                for (j, s) in inner.iter().enumerate() {
                    if let Some(v) = s.points[i] {
                        groups.entry(&keys[j]).or_default().push((v, j));
                    }
                }
                for mut members in groups.into_values() {
                    members.sort_by(|a, b| {
                        let o = a.0.total_cmp(&b.0);
                        if op == VectorOp::Topk { o.reverse() } else { o }
                    });
                    for (v, j) in members.into_iter().take(k) {
                        out[j].points[i] = Some(v);
                    }
                }
            }
            out.retain(|s| s.points.iter().any(Option::is_some));
            return Ok(out);
        }
        _ => {}
    }
    let mut groups: BTreeMap<LabelPairs, Vec<usize>> = BTreeMap::new();
    for (j, s) in inner.iter().enumerate() {
        groups
            .entry(group_key(&s.labels, grouping))
            .or_default()
            .push(j);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (labels, members) in groups {
        let mut points = vec![None; n];
        for (i, p) in points.iter_mut().enumerate() {
            let values: Vec<f64> = members.iter().filter_map(|&j| inner[j].points[i]).collect();
            if values.is_empty() {
                continue;
            }
            let count = values.len() as f64;
            let sum: f64 = values.iter().sum();
            *p = Some(match op {
                VectorOp::Sum => sum,
                VectorOp::Avg => sum / count,
                VectorOp::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                VectorOp::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                VectorOp::Count => count,
                VectorOp::Stdvar | VectorOp::Stddev => {
                    let mean = sum / count;
                    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
                    if op == VectorOp::Stddev {
                        var.sqrt()
                    } else {
                        var
                    }
                }
                // Answered above, series by series.
                VectorOp::Topk | VectorOp::Bottomk | VectorOp::Sort | VectorOp::SortDesc => {
                    continue;
                }
            });
        }
        if points.iter().any(Option::is_some) {
            out.push(StepSeries { labels, points });
        }
    }
    Ok(out)
}

fn arithmetic(op: BinaryOp, a: f64, b: f64) -> Option<f64> {
    Some(match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Mod => a % b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Eq => f64::from(u8::from(a == b)),
        BinaryOp::Ne => f64::from(u8::from(a != b)),
        BinaryOp::Gt => f64::from(u8::from(a > b)),
        BinaryOp::Ge => f64::from(u8::from(a >= b)),
        BinaryOp::Lt => f64::from(u8::from(a < b)),
        BinaryOp::Le => f64::from(u8::from(a <= b)),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Unless => return None,
    })
}

/// The value a comparison or arithmetic leaves at one point: `None` when a
/// comparison without `bool` drops it. `keep` is the value a true comparison keeps.
fn point(op: BinaryOp, return_bool: bool, a: f64, b: f64, keep: f64) -> Option<f64> {
    let v = arithmetic(op, a, b)?;
    if op.is_comparison() && !return_bool {
        return (v == 1.0).then_some(keep);
    }
    Some(v)
}

fn binary(
    op: BinaryOp,
    return_bool: bool,
    matching: &VectorMatching,
    l: Evaluated,
    r: Evaluated,
) -> Result<Evaluated> {
    match (l, r) {
        (Evaluated::Scalar(a), Evaluated::Scalar(b)) => {
            if op.is_comparison() && !return_bool {
                return Err(bad("comparisons between scalars must use BOOL modifier"));
            }
            arithmetic(op, a, b).map(Evaluated::Scalar).ok_or_else(|| {
                bad(format!(
                    "set operator {op:?} not allowed in binary scalar expression"
                ))
            })
        }
        (Evaluated::Vector(v), Evaluated::Scalar(b)) => {
            scalar_side(op, return_bool, v, |a| (a, b)).map(Evaluated::Vector)
        }
        (Evaluated::Scalar(a), Evaluated::Vector(v)) => {
            scalar_side(op, return_bool, v, |b| (a, b)).map(Evaluated::Vector)
        }
        (Evaluated::Vector(l), Evaluated::Vector(r)) => {
            vectors(op, return_bool, matching, l, r).map(Evaluated::Vector)
        }
    }
}

fn scalar_side(
    op: BinaryOp,
    return_bool: bool,
    v: Vec<StepSeries>,
    operands: impl Fn(f64) -> (f64, f64),
) -> Result<Vec<StepSeries>> {
    if matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless) {
        return Err(bad("set operations are only allowed between vectors"));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        for p in s.points.iter_mut() {
            if let Some(x) = *p {
                let (a, b) = operands(x);
                // A comparison keeps the vector's value, on either side.
                *p = point(op, return_bool, a, b, x);
            }
        }
        if s.points.iter().any(Option::is_some) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The labels vector matching compares.
fn signature(labels: &LabelPairs, matching: &VectorMatching) -> LabelPairs {
    match &matching.on {
        Some((true, names)) => labels
            .iter()
            .filter(|(k, _)| names.contains(k))
            .cloned()
            .collect(),
        Some((false, names)) => labels
            .iter()
            .filter(|(k, _)| !names.contains(k))
            .cloned()
            .collect(),
        None => labels.clone(),
    }
}

fn vectors(
    op: BinaryOp,
    return_bool: bool,
    matching: &VectorMatching,
    l: Vec<StepSeries>,
    r: Vec<StepSeries>,
) -> Result<Vec<StepSeries>> {
    let n = l.first().or(r.first()).map_or(0, |s| s.points.len());
    let lsig: Vec<LabelPairs> = l.iter().map(|s| signature(&s.labels, matching)).collect();
    let rsig: Vec<LabelPairs> = r.iter().map(|s| signature(&s.labels, matching)).collect();
    if matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless) {
        let mut out: Vec<StepSeries> = l
            .iter()
            .chain(if op == BinaryOp::Or {
                r.iter()
            } else {
                [].iter()
            })
            .map(|s| StepSeries {
                labels: s.labels.clone(),
                points: vec![None; n],
            })
            .collect();
        for i in 0..n {
            let present = |sigs: &[LabelPairs],
                           side: &[StepSeries]|
             -> std::collections::HashSet<LabelPairs> {
                side.iter()
                    .zip(sigs)
                    .filter(|(s, _)| s.points[i].is_some())
                    .map(|(_, sig)| sig.clone())
                    .collect()
            };
            let right = present(&rsig, &r);
            for (j, s) in l.iter().enumerate() {
                let Some(v) = s.points[i] else { continue };
                let keep = match op {
                    BinaryOp::And => right.contains(&lsig[j]),
                    BinaryOp::Unless => !right.contains(&lsig[j]),
                    _ => true,
                };
                if keep {
                    out[j].points[i] = Some(v);
                }
            }
            if op == BinaryOp::Or {
                let left = present(&lsig, &l);
                for (j, s) in r.iter().enumerate() {
                    if let Some(v) = s.points[i]
                        && !left.contains(&rsig[j])
                    {
                        out[l.len() + j].points[i] = Some(v);
                    }
                }
            }
        }
        return Ok(merge_same_labels(out));
    }
    // `group_right` is `group_left` with the sides swapped.
    let (many, one, many_sig, one_sig, swapped, include) = match &matching.group {
        Some((false, include)) => (&r, &l, &rsig, &lsig, true, include.clone()),
        Some((true, include)) => (&l, &r, &lsig, &rsig, false, include.clone()),
        None => (&l, &r, &lsig, &rsig, false, Vec::new()),
    };
    let grouped = matching.group.is_some();
    let mut out: BTreeMap<LabelPairs, Vec<Option<f64>>> = BTreeMap::new();
    for i in 0..n {
        let mut one_by_sig: BTreeMap<&LabelPairs, usize> = BTreeMap::new();
        for (j, s) in one.iter().enumerate() {
            if s.points[i].is_none() {
                continue;
            }
            if one_by_sig.insert(&one_sig[j], j).is_some() {
                return Err(bad(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side",
                    labels_text(&one_sig[j]),
                    if swapped { "left" } else { "right" }
                )));
            }
        }
        let mut seen_one_to_one: BTreeMap<&LabelPairs, ()> = BTreeMap::new();
        for (j, s) in many.iter().enumerate() {
            let Some(mv) = s.points[i] else { continue };
            let Some(&k) = one_by_sig.get(&many_sig[j]) else {
                continue;
            };
            if !grouped && seen_one_to_one.insert(&many_sig[j], ()).is_some() {
                return Err(bad(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            let Some(ov) = one[k].points[i] else { continue };
            let (a, b) = if swapped { (ov, mv) } else { (mv, ov) };
            let Some(v) = point(op, return_bool, a, b, a) else {
                continue;
            };
            let labels = result_labels(&s.labels, &one[k].labels, matching, grouped, &include);
            let points = out.entry(labels).or_insert_with(|| vec![None; n]);
            if points[i].is_some() {
                return Err(bad("vector cannot contain metrics with the same labelset"));
            }
            points[i] = Some(v);
        }
    }
    Ok(out
        .into_iter()
        .map(|(labels, points)| StepSeries { labels, points })
        .collect())
}

/// Prometheus's result labels: one-to-one keeps the `on` labels (or drops the
/// ignored ones); a grouped match keeps the many side's labels and copies the
/// included ones from the one side.
fn result_labels(
    many: &LabelPairs,
    one: &LabelPairs,
    matching: &VectorMatching,
    grouped: bool,
    include: &[String],
) -> LabelPairs {
    let mut labels = if grouped {
        many.clone()
    } else {
        signature(many, matching)
    };
    for name in include {
        labels.retain(|(k, _)| k != name);
        if let Some(pair) = one.iter().find(|(k, _)| k == name) {
            labels.push(pair.clone());
        }
    }
    labels.sort();
    labels
}

/// Series of a set operation that ended up with the same labels, merged (each
/// step has at most one value among them: they came from one side, or from
/// disjoint signatures).
fn merge_same_labels(series: Vec<StepSeries>) -> Vec<StepSeries> {
    let mut by: BTreeMap<LabelPairs, Vec<Option<f64>>> = BTreeMap::new();
    for s in series {
        match by.get_mut(&s.labels) {
            Some(points) => {
                for (p, q) in points.iter_mut().zip(s.points) {
                    if p.is_none() {
                        *p = q;
                    }
                }
            }
            None => {
                by.insert(s.labels, s.points);
            }
        }
    }
    by.into_iter()
        .filter(|(_, p)| p.iter().any(Option::is_some))
        .map(|(labels, points)| StepSeries { labels, points })
        .collect()
}

fn label_replace(
    inner: Vec<StepSeries>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<StepSeries>> {
    let re = Regex::new(&format!("^(?s:{regex})$")).map_err(|e| {
        bad(format!(
            "invalid regular expression in label_replace(): {regex}: {e}"
        ))
    })?;
    if !crate::model::is_valid_label_name(dst) {
        return Err(bad(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out: BTreeMap<LabelPairs, Vec<Option<f64>>> = BTreeMap::new();
    for s in inner {
        let value = s
            .labels
            .iter()
            .find(|(k, _)| k == src)
            .map_or("", |(_, v)| v.as_str());
        let mut labels = s.labels.clone();
        if let Some(caps) = re.captures(value) {
            let mut replaced = String::new();
            caps.expand(replacement, &mut replaced);
            labels.retain(|(k, _)| k != dst);
            if !replaced.is_empty() {
                labels.push((dst.to_string(), replaced));
                labels.sort();
            }
        }
        if out.insert(labels, s.points).is_some() {
            return Err(bad("vector cannot contain metrics with the same labelset"));
        }
    }
    Ok(out
        .into_iter()
        .map(|(labels, points)| StepSeries { labels, points })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::logql::ast::Expr;
    use crate::logs::logql::parser::parse;
    use crate::model::Labels;
    use std::sync::Arc;

    const S: i64 = 1_000_000_000;

    /// Two streams: `app=a` logs every second for a minute (latency in ms, every
    /// tenth line an error), `app=b` every ten seconds.
    fn streams() -> Vec<Selected> {
        let line = |ts: i64, text: String| LogLine {
            ts_ns: ts,
            text,
            metadata: Vec::new(),
        };
        let a: Vec<LogLine> = (1..=60)
            .map(|i| {
                let level = if i % 10 == 0 { "error" } else { "info" };
                line(i * S, format!("level={level} latency={}ms", i * 10))
            })
            .collect();
        let b: Vec<LogLine> = (1..=6)
            .map(|i| line(i * 10 * S, "level=info latency=1s".into()))
            .collect();
        vec![
            Selected {
                labels: Labels::from_pairs([("app", "a")]),
                chunks: vec![Arc::from(a)],
            },
            Selected {
                labels: Labels::from_pairs([("app", "b")]),
                chunks: vec![Arc::from(b)],
            },
        ]
    }

    fn eval(q: &str, steps: Steps) -> Result<Evaluated> {
        let Expr::Metric(expr) = parse(q).unwrap() else {
            panic!("{q} is not a metric query")
        };
        let data = streams();
        let select = |m: &[Matcher], lo: i64, hi: i64, _: &[String]| {
            Ok(data
                .iter()
                .filter(|s| {
                    m.iter()
                        .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
                })
                .map(|s| Selected {
                    labels: s.labels.clone(),
                    chunks: vec![
                        s.chunks[0]
                            .iter()
                            .filter(|l| l.ts_ns >= lo && l.ts_ns < hi)
                            .cloned()
                            .collect::<Vec<_>>()
                            .into(),
                    ],
                })
                .collect())
        };
        let ctx = Context {
            select: &select,
            keep_going: &|| Ok(()),
            max_points: 1_000_000,
            processed: Default::default(),
        };
        evaluate(&expr, &steps, &ctx)
    }

    fn at(t_s: i64) -> Steps {
        Steps::instant(t_s * S)
    }

    /// (labels as `k=v,…`, value) of an instant vector.
    fn vector(e: Evaluated) -> Vec<(String, f64)> {
        let Evaluated::Vector(v) = e else {
            panic!("a scalar")
        };
        v.into_iter()
            .filter_map(|s| {
                let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.points[0].map(|p| (l.join(","), p))
            })
            .collect()
    }

    #[test]
    fn line_filter_only_pipelines_take_the_per_stream_path_with_the_same_answer() {
        // `| drop nosuch` changes nothing but sends every line down the full path.
        for q in [
            r#"count_over_time({app=~".+"} |= "error" [30s])"#,
            r#"sum by (app) (bytes_over_time({app=~".+"} != "error" [1m]))"#,
            r#"rate({app="a"} |~ "latency=[0-9]+0ms" [20s])"#,
            r#"count_over_time({app=~".+"}[15s])"#,
        ] {
            let at_range = q.rfind('[').unwrap();
            let full = format!("{}| drop nosuch {}", &q[..at_range], &q[at_range..]);
            for t in [20, 45, 60] {
                assert_eq!(
                    vector(eval(q, at(t)).unwrap()),
                    vector(eval(&full, at(t)).unwrap()),
                    "{q} at {t}"
                );
            }
        }
    }

    #[test]
    fn range_aggregations_count_lines_bytes_and_unwrapped_values() {
        // (30 s, 60 s]: lines 31..=60 of a, 40/50/60 of b.
        assert_eq!(
            vector(eval("count_over_time({app=~\".+\"}[30s])", at(60)).unwrap()),
            [("app=a".into(), 30.0), ("app=b".into(), 3.0)]
        );
        assert_eq!(
            vector(eval("rate({app=\"a\"}[30s])", at(60)).unwrap()),
            [("app=a".into(), 1.0)]
        );
        let bytes: f64 = (31..=60)
            .map(|i: i64| format!("level=info latency={}ms", i * 10).len() as f64)
            .sum::<f64>()
            - 3.0 * ("info".len() as f64 - "error".len() as f64);
        assert_eq!(
            vector(eval("bytes_over_time({app=\"a\"}[30s])", at(60)).unwrap()),
            [("app=a".into(), bytes)]
        );
        // The parsed labels split the series; unwrap takes the label out.
        let r = vector(
            eval(
                "sum by (level) (count_over_time({app=\"a\"} | logfmt [30s]))",
                at(60),
            )
            .unwrap(),
        );
        assert_eq!(
            r,
            [("level=error".into(), 3.0), ("level=info".into(), 27.0)]
        );
        let r = vector(
            eval(
                "max_over_time({app=\"a\"} | logfmt | unwrap duration(latency) [30s]) by (app)",
                at(60),
            )
            .unwrap(),
        );
        assert_eq!(r, [("app=a".into(), 0.6)]);
        let r = vector(eval("quantile_over_time(0.5, {app=\"b\"} | logfmt | unwrap duration(latency) [1m]) by (app)", at(60)).unwrap());
        assert_eq!(r, [("app=b".into(), 1.0)]);
        // Offset: the window moves back.
        assert_eq!(
            vector(eval("count_over_time({app=\"a\"}[10s] offset 30s)", at(60)).unwrap()),
            [("app=a".into(), 10.0)]
        );
        // Absent: nothing in the window gives 1 with the selector's labels.
        assert!(vector(eval("absent_over_time({app=\"a\"}[10s])", at(60)).unwrap()).is_empty());
        assert_eq!(
            vector(eval("absent_over_time({app=\"zz\"}[10s])", at(60)).unwrap()),
            [("app=zz".into(), 1.0)]
        );
    }

    #[test]
    fn an_unwrap_error_fails_the_query_unless_filtered() {
        let err = eval(
            "sum(sum_over_time({app=\"a\"} | logfmt | unwrap level [1m]))",
            at(60),
        )
        .unwrap_err();
        assert!(
            matches!(&err, MetricError::BadQuery(m) if m.starts_with("pipeline error: 'SampleExtractionErr'")),
            "{err}"
        );
        let ok = eval(
            "sum(sum_over_time({app=\"a\"} | logfmt | unwrap level | __error__=\"\" [1m]))",
            at(60),
        )
        .unwrap();
        assert!(vector(ok).is_empty());
    }

    #[test]
    fn the_deepest_chains_the_parser_takes_evaluate() {
        // The parser's bound keeps evaluation's recursion within a thread's stack
        // (a debug build's frames are the larger).
        let q = vec!["vector(1)"; 99].join(" + ");
        assert_eq!(vector(eval(&q, at(60)).unwrap()), [(String::new(), 99.0)]);
        let filters = vec!["latency!=\"x\""; 98].join(" and ");
        let q = format!("sum(count_over_time({{app=\"b\"}} | logfmt | {filters} [1m]))");
        assert_eq!(vector(eval(&q, at(60)).unwrap()), [(String::new(), 6.0)]);
    }

    #[test]
    fn series_labels_past_the_answer_bound_are_refused() {
        // Every line of app=a a series with a 15 MB label: refused at about 100 MB.
        let q = r#"sum by (x) (count_over_time({app="a"} | label_format x="{{ repeat 600000 __line__ }}" [1m]))"#;
        let err = eval(q, at(60)).unwrap_err();
        assert!(
            err.to_string()
                .contains("the answer is larger than 100 MiB"),
            "{err}"
        );
    }

    #[test]
    fn unwrap_reads_values_as_loki_does() {
        // A line without the label has no sample, and is no error.
        let r = eval(
            "sum(sum_over_time({app=~\".+\"} | logfmt | unwrap missing [1m]))",
            at(60),
        )
        .unwrap();
        assert!(vector(r).is_empty());
        // The error's details name what Go's parser refused.
        let details = |q: &str| match eval(q, at(60)) {
            Err(MetricError::BadQuery(m)) => m,
            other => panic!("{q}: {other:?}"),
        };
        // Values are not trimmed: Go's ParseFloat refuses " 5".
        let m = details("sum(sum_over_time({app=\"b\"} | label_format v=\" 5\" | unwrap v [1m]))");
        assert!(
            m.contains(r#"__error_details__="strconv.ParseFloat: parsing \" 5\": invalid syntax""#),
            "{m}"
        );
        // Durations are Go's: `1s` is one second; `1d` is no Go duration.
        let r = eval(
            "sum(sum_over_time({app=\"b\"} | logfmt | unwrap duration(latency) [1m]))",
            at(60),
        )
        .unwrap();
        assert_eq!(vector(r), [(String::new(), 6.0)]);
        let m = details(
            "sum(sum_over_time({app=\"b\"} | label_format d=\"1d\" | unwrap duration(d) [1m]))",
        );
        assert!(
            m.contains(r#"time: unknown unit \"d\" in duration \"1d\"""#),
            "{m}"
        );
    }

    #[test]
    fn vector_aggregations_and_binary_operations() {
        let steps = Steps {
            start_ns: 30 * S,
            end_ns: 60 * S,
            step_ns: 30 * S,
        };
        let Evaluated::Vector(v) = eval("sum(count_over_time({app=~\".+\"}[30s]))", steps).unwrap()
        else {
            panic!()
        };
        assert_eq!(v[0].points, [Some(33.0), Some(33.0)]);
        assert_eq!(
            vector(eval("topk(1, count_over_time({app=~\".+\"}[30s]))", at(60)).unwrap()),
            [("app=a".into(), 30.0)]
        );
        assert_eq!(
            vector(eval("count_over_time({app=~\".+\"}[30s]) > 5", at(60)).unwrap()),
            [("app=a".into(), 30.0)]
        );
        assert_eq!(
            vector(eval("count_over_time({app=~\".+\"}[30s]) > bool 5", at(60)).unwrap()),
            [("app=a".into(), 1.0), ("app=b".into(), 0.0)]
        );
        assert_eq!(
            vector(
                eval(
                    "count_over_time({app=\"a\"}[30s]) / on() count_over_time({app=\"b\"}[30s])",
                    at(60)
                )
                .unwrap()
            ),
            [(String::new(), 10.0)]
        );
        assert_eq!(
            vector(
                eval(
                    "count_over_time({app=~\".+\"}[30s]) and count_over_time({app=\"b\"}[30s])",
                    at(60)
                )
                .unwrap()
            ),
            [("app=b".into(), 3.0)]
        );
        assert_eq!(
            vector(eval("label_replace(count_over_time({app=\"a\"}[30s]), \"svc\", \"$1-x\", \"app\", \"(.*)\")", at(60)).unwrap()),
            [("app=a,svc=a-x".into(), 30.0)]
        );
        assert_eq!(
            vector(eval("vector(2) * 3", at(60)).unwrap()),
            [(String::new(), 6.0)]
        );
        assert_eq!(eval("1 + 2", at(60)).unwrap(), Evaluated::Scalar(3.0));
        assert!(eval("1 > 2", at(60)).is_err());
    }

    #[test]
    fn counter_rate_extrapolates_as_prometheus() {
        // A counter rising 1/s sampled every second over a 10 s window.
        let w: Vec<(i64, f64)> = (1..=10).map(|i| (i * S, i as f64)).collect();
        let r = counter_rate(&w, 0, 10 * S).unwrap();
        assert!((r - 1.0).abs() < 1e-9, "{r}");
    }
}
