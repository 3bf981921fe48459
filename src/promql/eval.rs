//! The evaluator: series for every selector are loaded once for the whole query, then
//! the tree is evaluated step by step over them, as Prometheus's engine does.
//!
//! Selection follows Prometheus 2.x exactly: an instant selector at reference time `r`
//! takes the newest sample in `[r - lookback, r]` unless it is a staleness marker; a
//! range selector takes the samples in `[r - range, r]` without staleness markers;
//! `r` is the step time (or the `@` time) minus the `offset`.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, UnaryExpr, VectorSelector};

use super::selected::{SampleBudget, SelectedSeries, seek};
use super::value::{Element, SeriesPoints, Value};
use super::{CancelFlag, EngineOptions, QueryError, Span};
use crate::model::{Labels, MatchType, Matcher, MatcherError, Sample, is_stale_nan};
use crate::storage::{Queryable, SelectHints, Warnings};

/// What one node evaluates to at one step.
#[derive(Debug, Clone)]
pub(super) enum StepVal {
    Scalar(f64),
    String(String),
    /// Elements carry the step time, except straight out of a selector, where they
    /// carry their sample's own time (which `timestamp()` reports).
    Vector(Vec<Element>),
    /// A range vector and its window `[start, end]` (for rate extrapolation).
    Matrix {
        series: Vec<SeriesPoints>,
        start: i64,
        end: i64,
    },
}

impl StepVal {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            StepVal::Scalar(_) => "scalar",
            StepVal::String(_) => "string",
            StepVal::Vector(_) => "instant vector",
            StepVal::Matrix { .. } => "range vector",
        }
    }
}

/// Evaluates `expr` over `span` and shapes the result as Prometheus's API does.
pub(super) fn run(
    opts: &EngineOptions,
    storage: &dyn Queryable,
    expr: &Expr,
    span: Span,
    cancel: &CancelFlag,
    deadline: Instant,
    warnings: &Warnings,
) -> Result<Value, QueryError> {
    let mut ev = Evaluator {
        opts,
        span,
        data: HashMap::new(),
        budget: SampleBudget::new(opts.max_samples),
        cancel,
        deadline,
        without_name: RefCell::new(HashMap::new()),
        memo: RefCell::new(Memo::default()),
        subquery_depth: Cell::new(0),
        step_blocks: RefCell::new(HashMap::new()),
    };
    ev.load(storage, expr, warnings)?;
    if span.step == 0 {
        let t = span.start;
        return Ok(match ev.eval(expr, t)? {
            StepVal::Scalar(v) => Value::Scalar { t, v },
            StepVal::String(v) => Value::String { t, v },
            StepVal::Vector(mut els) => {
                for e in &mut els {
                    e.t = t;
                }
                Value::Vector(els)
            }
            StepVal::Matrix { series, .. } => Value::Matrix(series),
        });
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    // Most steps hand back the very same label sets (a selector's series, or their
    // memoised name-less copies): found by identity first, without hashing strings.
    // The sets are kept alive here, so an identity is never reused by another set.
    let mut by_identity: HashMap<usize, (Labels, usize)> = HashMap::new();
    let mut out: Vec<SeriesPoints> = Vec::new();
    let mut total = 0usize;
    for t in step_times(span.start, span.end, span.step) {
        ev.check("query evaluation")?;
        let els = match ev.eval(expr, t)? {
            StepVal::Scalar(v) => vec![Element {
                labels: Labels::empty(),
                t,
                v,
            }],
            StepVal::Vector(els) => els,
            other => {
                return Err(QueryError::BadData(format!(
                    "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                    other.kind()
                )));
            }
        };
        total += els.len();
        if total > opts.max_samples {
            return Err(QueryError::too_many_samples());
        }
        for e in els {
            let id = e.labels.identity();
            let i = match by_identity.get(&id) {
                Some((_, i)) => *i,
                None => {
                    let i = match index.entry(e.labels.clone()) {
                        Entry::Occupied(o) => *o.get(),
                        Entry::Vacant(v) => {
                            out.push(SeriesPoints {
                                labels: v.key().clone(),
                                points: Vec::new(),
                            });
                            *v.insert(out.len() - 1)
                        }
                    };
                    by_identity.insert(id, (e.labels, i));
                    i
                }
            };
            if let Some(s) = out.get_mut(i) {
                s.points.push(Sample { t, v: e.v });
            }
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(out))
}

pub(super) struct Evaluator<'a> {
    pub(super) opts: &'a EngineOptions,
    pub(super) span: Span,
    /// Series of each selector, by the selector node's address.
    data: HashMap<usize, RefCell<Vec<SelectedSeries>>>,
    /// Decoded samples held, against `--query.max-samples`.
    budget: SampleBudget,
    cancel: &'a CancelFlag,
    deadline: Instant,
    /// Label sets without `__name__`, by the identity of the set they came from (kept
    /// alive here, so that the identity is not reused): functions and operators drop
    /// the name of the same selector series at every step.
    without_name: RefCell<HashMap<usize, (Labels, Labels)>>,
    memo: RefCell<Memo>,
    /// How many subqueries the evaluation is inside: their inner steps are not the
    /// query's.
    subquery_depth: Cell<u32>,
    /// Results computed ahead for the query's next steps, by node.
    step_blocks: RefCell<HashMap<usize, StepBlock>>,
}

/// Counts the evaluation as inside one more subquery while it lives.
struct InSubquery<'a>(&'a Cell<u32>);

impl<'a> InSubquery<'a> {
    fn enter(depth: &'a Cell<u32>) -> Self {
        depth.set(depth.get() + 1);
        Self(depth)
    }
}

impl Drop for InSubquery<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// A node's results at the query's coming steps, oldest first.
#[derive(Default)]
pub(super) struct StepBlock(VecDeque<(i64, Vec<Element>)>);

impl StepBlock {
    pub(super) fn new(results: impl IntoIterator<Item = (i64, Vec<Element>)>) -> Self {
        Self(results.into_iter().collect())
    }

    /// The result at step `ts`, if computed; results for earlier steps are dropped.
    fn take(&mut self, ts: i64) -> Option<Vec<Element>> {
        while let Some((t, _)) = self.0.front() {
            if *t >= ts {
                break;
            }
            self.0.pop_front();
        }
        match self.0.front() {
            Some((t, _)) if *t == ts => self.0.pop_front().map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Label work that would otherwise repeat at every step, keyed so that the same
/// inputs give back the very same label set (which the range result then finds by
/// identity). Inputs are kept alive with their entries, so an identity is never reused.
#[derive(Default)]
struct Memo {
    /// Aggregation group labels by the hash of their pairs.
    groups: HashMap<u64, Labels>,
    /// Hashes of label sets by (node, input set): vector-matching signatures and
    /// aggregation group keys under their operator's node, content hashes under 0.
    hashes: HashMap<(usize, usize), (Labels, u64)>,
    /// Vector-matching result labels by (operator node, many side, one side).
    results: HashMap<(usize, usize, usize), (Labels, Labels, Labels)>,
    /// The input label sets of the last step and their hashes, by (node, operand):
    /// from one step to the next an operand mostly hands back the same sets in the
    /// same order, which is then a walk along this list, with no hash lookup.
    last_hashes: HashMap<(usize, u8), Vec<(Labels, u64)>>,
    /// The output label sets last found unique at each function or operator node:
    /// the same sets in the same order at the next step need no check.
    last_unique: HashMap<usize, Vec<Labels>>,
}

/// A selector's series as [`Evaluator::for_each_window`] hands it out.
pub(super) struct WindowSeries<'s> {
    pub labels: &'s Labels,
    without_name: &'s OnceCell<Labels>,
}

impl<'s> WindowSeries<'s> {
    pub fn new(labels: &'s Labels, without_name: &'s OnceCell<Labels>) -> Self {
        Self {
            labels,
            without_name,
        }
    }

    /// The labels without `__name__`: the same set at every step.
    pub fn without_name(&self) -> &Labels {
        self.without_name
            .get_or_init(|| drop_metric_name(self.labels))
    }
}

/// What one selector reads: samples in `[start, end]`; for an instant selector
/// evaluated at known times, those times as `(first, last, step)` (reference times,
/// offset applied; `step` 0 for a single time).
struct Need<'e> {
    vs: &'e VectorSelector,
    start: i64,
    end: i64,
    steps: Option<(i64, i64, i64)>,
    /// Evaluated at forward-moving times only (not inside a subquery).
    streamable: bool,
}

/// The samples an instant selector picks at reference times `first, first + step, …,
/// last`: the newest at or before each. Nothing else can be selected (the lookback
/// check and staleness apply to these same samples), so with a 60 s step over 15 s
/// scrapes a range query holds a quarter of the samples, an instant query one per
/// series.
fn picked_at_steps(samples: &[Sample], (first, last, step): (i64, i64, i64)) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    let mut i = 0usize;
    for t in step_times(first, last, step) {
        i = seek(samples, i, |x| x.t <= t);
        if let Some(x) = i.checked_sub(1).and_then(|j| samples.get(j))
            && out.last().is_none_or(|p| p.t != x.t)
        {
            out.push(*x);
        }
        // Past the newest sample every later step picks it again.
        if i == samples.len() {
            break;
        }
    }
    out
}

/// The times `start, start + step, …` up to `end` (only `start` when `step` is not
/// positive; none when `start > end`). Every loop over steps — the query's, a
/// subquery's, a selector's — iterates through this: the next time is computed
/// checked, so a step that would pass `i64::MAX` ends the iteration instead of
/// wrapping around to the far past and going on for ever.
pub(super) fn step_times(start: i64, end: i64, step: i64) -> impl Iterator<Item = i64> {
    let mut next = (start <= end).then_some(start);
    std::iter::from_fn(move || {
        let t = next?;
        next = (step > 0)
            .then(|| t.checked_add(step))
            .flatten()
            .filter(|n| *n <= end);
        Some(t)
    })
}

/// A duration from the query text in ms, saturating (promql-parser accepts
/// durations longer than an i64 of milliseconds).
pub(super) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The reference time of a selector or subquery: the step time (or `@` time) moved
/// back by the offset, saturating at the ends of the timeline (where nothing is
/// stored, so a saturated time selects what a wrapped one must not: nothing).
pub(super) fn reference_time(t: i64, offset: &Option<Offset>) -> i64 {
    match offset {
        None => t,
        Some(Offset::Pos(d)) => t.saturating_sub(duration_ms(*d)),
        Some(Offset::Neg(d)) => t.saturating_add(duration_ms(*d)),
    }
}

fn node_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(d),
        Err(e) => duration_ms(e.duration()).saturating_neg(),
    }
}

impl Evaluator<'_> {
    /// Fails once the query is canceled or past its deadline.
    pub(super) fn check(&self, stage: &'static str) -> Result<(), QueryError> {
        if self.cancel.is_canceled() {
            return Err(QueryError::Canceled(stage));
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(stage));
        }
        Ok(())
    }

    /// The time an `@` modifier pins a selector or subquery to.
    pub(super) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.span.start),
            Some(AtModifier::End) => Some(self.span.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
        }
    }

    /// Loads the series of every selector in `expr`, each over the time it can need.
    /// What the storage reports as warnings goes to `warnings`.
    fn load(
        &mut self,
        storage: &dyn Queryable,
        expr: &Expr,
        warnings: &Warnings,
    ) -> Result<(), QueryError> {
        let mut needs: Vec<Need<'_>> = Vec::new();
        self.collect(expr, self.span.start, self.span.end, false, &mut needs);
        let (Some(lo), Some(hi)) = (
            needs.iter().map(|n| n.start).min(),
            needs.iter().map(|n| n.end).max(),
        ) else {
            return Ok(());
        };
        let querier = storage.querier(lo, hi)?;
        let chunks = storage
            .as_chunk_queryable()
            .filter(|_| needs.iter().any(|n| n.streamable));
        let mut chunk_querier = None;
        let loaded = self.load_from(querier.as_ref(), chunks, &mut chunk_querier, &needs, lo, hi);
        for w in querier.warnings() {
            warnings.push(w);
        }
        if let Some(cq) = chunk_querier {
            for w in cq.warnings() {
                warnings.push(w);
            }
        }
        loaded
    }

    fn load_from(
        &mut self,
        querier: &dyn crate::storage::Querier,
        chunks: Option<&dyn crate::storage::ChunkQueryable>,
        chunk_querier: &mut Option<Box<dyn crate::storage::ChunkQuerier>>,
        needs: &[Need<'_>],
        lo: i64,
        hi: i64,
    ) -> Result<(), QueryError> {
        // Loading every selected sample first is the fastest way for the queries
        // dashboards send; a query that would hold more than `stream_above_samples`
        // starts again streaming, when the storage has chunks.
        let stream_above = match chunks {
            Some(_) => self.opts.stream_above_samples.min(self.opts.max_samples),
            None => usize::MAX,
        };
        if self.load_decoded(querier, needs, stream_above, false)? {
            return Ok(());
        }
        let Some(cq) = chunks else {
            return Ok(());
        };
        self.data.clear();
        self.budget = SampleBudget::new(self.opts.max_samples);
        let cq = chunk_querier.insert(cq.chunk_querier(lo, hi)?);
        for need in needs.iter().filter(|n| n.streamable) {
            self.check("query preparation")?;
            let matchers =
                selector_matchers(need.vs).map_err(|e| QueryError::BadData(e.to_string()))?;
            let mut series = Vec::new();
            for s in cq.select_chunks(&matchers)? {
                // Reading a large selection takes long: the deadline holds here too.
                self.check("query preparation")?;
                let s = s?;
                let mut cs = s.chunks;
                cs.retain(|c| c.max_t >= need.start && c.min_t <= need.end);
                if !cs.is_empty() {
                    series.push(SelectedSeries::streamed(
                        s.labels,
                        cs,
                        (need.start, need.end),
                    ));
                }
            }
            self.data.insert(node_key(need.vs), RefCell::new(series));
        }
        // Selectors inside subqueries are read at times that go back: loaded.
        self.load_decoded(querier, needs, usize::MAX, true)?;
        Ok(())
    }

    /// Loads the samples of `needs` (only the non-streamable ones with
    /// `only_unstreamable`). Returns false, having stopped, once more than
    /// `give_up_above` samples would be held.
    fn load_decoded(
        &mut self,
        querier: &dyn crate::storage::Querier,
        needs: &[Need<'_>],
        give_up_above: usize,
        only_unstreamable: bool,
    ) -> Result<bool, QueryError> {
        for need in needs
            .iter()
            .filter(|n| !(only_unstreamable && n.streamable))
        {
            self.check("query preparation")?;
            let matchers =
                selector_matchers(need.vs).map_err(|e| QueryError::BadData(e.to_string()))?;
            let hints = SelectHints {
                start_ms: need.start,
                end_ms: need.end,
                series_only: false,
                sorted: false,
            };
            let mut series = Vec::new();
            for s in querier.select(&hints, &matchers)? {
                // Reading and decoding a large selection takes long: the deadline
                // holds here too.
                self.check("query preparation")?;
                let mut s = s?;
                s.samples.retain(|x| x.t >= need.start && x.t <= need.end);
                if let Some(steps) = need.steps {
                    s.samples = picked_at_steps(&s.samples, steps);
                }
                if s.samples.is_empty() {
                    continue;
                }
                if self.budget.held() + s.samples.len() > give_up_above {
                    return Ok(false);
                }
                series.push(SelectedSeries::decoded(s.labels, s.samples, &self.budget)?);
            }
            self.data.insert(node_key(need.vs), RefCell::new(series));
        }
        Ok(true)
    }

    /// Records, for every selector, the sample times it may read when `expr` is
    /// evaluated at times in `[lo, hi]` (inside a subquery: at its own steps).
    fn collect<'e>(
        &self,
        expr: &'e Expr,
        lo: i64,
        hi: i64,
        in_subquery: bool,
        out: &mut Vec<Need<'e>>,
    ) {
        let refs = |at: &Option<AtModifier>, off: &Option<Offset>| {
            let (a, b) = self.at_ms(at).map_or((lo, hi), |t| (t, t));
            (reference_time(a, off), reference_time(b, off))
        };
        match expr {
            Expr::VectorSelector(vs) => {
                let (a, b) = refs(&vs.at, &vs.offset);
                // Evaluated only at the query's steps (or at one `@` time), an instant
                // selector can pick one sample per step; a subquery's steps are its own.
                let steps = (!in_subquery).then(|| {
                    let step = if vs.at.is_some() { 0 } else { self.span.step };
                    (a, b, step)
                });
                out.push(Need {
                    vs,
                    start: a.saturating_sub(self.opts.lookback_delta_ms),
                    end: b,
                    steps,
                    streamable: !in_subquery,
                });
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = refs(&ms.vs.at, &ms.vs.offset);
                out.push(Need {
                    vs: &ms.vs,
                    start: a.saturating_sub(duration_ms(ms.range)),
                    end: b,
                    steps: None,
                    streamable: !in_subquery,
                });
            }
            Expr::Subquery(sq) => {
                let (a, b) = refs(&sq.at, &sq.offset);
                let from = a.saturating_sub(duration_ms(sq.range));
                self.collect(&sq.expr, from, b, true, out);
            }
            Expr::Aggregate(a) => {
                self.collect(&a.expr, lo, hi, in_subquery, out);
                if let Some(p) = &a.param {
                    self.collect(p, lo, hi, in_subquery, out);
                }
            }
            Expr::Unary(u) => self.collect(&u.expr, lo, hi, in_subquery, out),
            Expr::Binary(b) => {
                self.collect(&b.lhs, lo, hi, in_subquery, out);
                self.collect(&b.rhs, lo, hi, in_subquery, out);
            }
            Expr::Paren(p) => self.collect(&p.expr, lo, hi, in_subquery, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.collect(a, lo, hi, in_subquery, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    /// `labels` without `__name__`, computed once per label set and query.
    pub(super) fn drop_name(&self, labels: &Labels) -> Labels {
        let mut memo = self.without_name.borrow_mut();
        memo.entry(labels.identity())
            .or_insert_with(|| (labels.clone(), drop_metric_name(labels)))
            .1
            .clone()
    }

    /// The labels of the aggregation group whose pairs hash to `key`.
    pub(super) fn group_labels(&self, key: u64, make: impl FnOnce() -> Labels) -> Labels {
        self.memo
            .borrow_mut()
            .groups
            .entry(key)
            .or_insert_with(make)
            .clone()
    }

    /// A hash of `labels` computed once per query for `node` (an operator's or
    /// aggregation's address): its match signature or group key.
    pub(super) fn node_hash(
        &self,
        node: usize,
        labels: &Labels,
        make: impl FnOnce() -> u64,
    ) -> u64 {
        self.memo
            .borrow_mut()
            .hashes
            .entry((node, labels.identity()))
            .or_insert_with(|| (labels.clone(), make()))
            .1
    }

    /// [`node_hash`](Self::node_hash) of every element's labels, for the operand
    /// `side` of `node`; what matches the last step position by position is read
    /// from it.
    pub(super) fn node_hashes(
        &self,
        node: usize,
        side: u8,
        els: &[Element],
        make: impl Fn(&Labels) -> u64,
    ) -> Vec<u64> {
        let last = self
            .memo
            .borrow_mut()
            .last_hashes
            .remove(&(node, side))
            .unwrap_or_default();
        let mut same = last.len() == els.len();
        let mut out = Vec::with_capacity(els.len());
        for (i, e) in els.iter().enumerate() {
            match last.get(i) {
                // `last` keeps its sets alive: an equal identity is the same set.
                Some((l, h)) if l.identity() == e.labels.identity() => out.push(*h),
                _ => {
                    same = false;
                    out.push(self.node_hash(node, &e.labels, || make(&e.labels)));
                }
            }
        }
        let last = if same {
            last
        } else {
            els.iter()
                .zip(&out)
                .map(|(e, h)| (e.labels.clone(), *h))
                .collect()
        };
        self.memo
            .borrow_mut()
            .last_hashes
            .insert((node, side), last);
        out
    }

    /// A hash of the label set's contents (node 0: no operator has that address).
    pub(super) fn content_hash(&self, labels: &Labels) -> u64 {
        self.node_hash(0, labels, || labels.stable_hash())
    }

    /// The result labels of matching `many` with `one` at `node`.
    pub(super) fn match_result(
        &self,
        node: usize,
        many: &Labels,
        one: &Labels,
        make: impl FnOnce() -> Labels,
    ) -> Labels {
        self.memo
            .borrow_mut()
            .results
            .entry((node, many.identity(), one.identity()))
            .or_insert_with(|| (many.clone(), one.clone(), make()))
            .2
            .clone()
    }

    /// Evaluates `expr` at time `ts`.
    pub(super) fn eval(&self, expr: &Expr, ts: i64) -> Result<StepVal, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(StepVal::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(StepVal::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                StepVal::Scalar(v) => Ok(StepVal::Scalar(-v)),
                StepVal::Vector(mut els) => {
                    for e in &mut els {
                        e.v = -e.v;
                        e.t = ts;
                        e.labels = self.drop_name(&e.labels);
                    }
                    // Without their names, two series may be one (Prometheus refuses).
                    check_unique_labels(self, u as *const UnaryExpr as usize, &els)?;
                    Ok(StepVal::Vector(els))
                }
                other => Err(QueryError::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                    other.kind()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(StepVal::Vector(self.select_vector(vs, ts)?)),
            Expr::MatrixSelector(ms) => {
                let r = reference_time(self.at_ms(&ms.vs.at).unwrap_or(ts), &ms.vs.offset);
                let start = r.saturating_sub(duration_ms(ms.range));
                let mut series = Vec::new();
                let mut count = 0usize;
                self.for_each_window(&ms.vs, start, r, |ws, points| {
                    count += points.len();
                    series.push(SeriesPoints {
                        labels: ws.labels.clone(),
                        points: points.to_vec(),
                    });
                })?;
                if count > self.opts.max_samples {
                    return Err(QueryError::too_many_samples());
                }
                Ok(StepVal::Matrix {
                    series,
                    start,
                    end: r,
                })
            }
            Expr::Subquery(sq) => self.eval_subquery(sq, ts),
            Expr::Call(c) => super::call::eval(self, c, ts),
            Expr::Aggregate(a) => super::aggregate::eval(self, a, ts),
            Expr::Binary(b) => super::binary::eval(self, b, ts),
            Expr::Extension(_) => Err(QueryError::BadData("unsupported expression".into())),
        }
    }

    /// Evaluates `expr`, which the parser has typed as an instant vector.
    pub(super) fn eval_vector(&self, expr: &Expr, ts: i64) -> Result<Vec<Element>, QueryError> {
        match self.eval(expr, ts)? {
            StepVal::Vector(v) => Ok(v),
            other => Err(QueryError::Execution(format!(
                "expected instant vector, got {}",
                other.kind()
            ))),
        }
    }

    /// Evaluates `expr`, which the parser has typed as a scalar.
    pub(super) fn eval_scalar(&self, expr: &Expr, ts: i64) -> Result<f64, QueryError> {
        match self.eval(expr, ts)? {
            StepVal::Scalar(v) => Ok(v),
            other => Err(QueryError::Execution(format!(
                "expected scalar, got {}",
                other.kind()
            ))),
        }
    }

    /// The instant selector at `ts`: each series' newest sample in the lookback window.
    fn select_vector(&self, vs: &VectorSelector, ts: i64) -> Result<Vec<Element>, QueryError> {
        let r = reference_time(self.at_ms(&vs.at).unwrap_or(ts), &vs.offset);
        let from = r.saturating_sub(self.opts.lookback_delta_ms);
        let Some(series) = self.data.get(&node_key(vs)) else {
            return Ok(Vec::new());
        };
        let mut series = series.borrow_mut();
        let mut out = Vec::new();
        for s in series.iter_mut() {
            let window = s.samples.window(from, r, &self.budget)?;
            if let Some(x) = window.last()
                && !is_stale_nan(x.v)
            {
                out.push(Element {
                    labels: s.labels.clone(),
                    t: x.t,
                    v: x.v,
                });
            }
        }
        Ok(out)
    }

    /// Calls `f` with each series of the selector that has samples in `[start, end]`,
    /// staleness markers left out.
    pub(super) fn for_each_window(
        &self,
        vs: &VectorSelector,
        start: i64,
        end: i64,
        mut f: impl FnMut(&WindowSeries<'_>, &[Sample]),
    ) -> Result<(), QueryError> {
        self.for_each_series_windows(vs, &[(start, end)], |ws, _, samples| f(ws, samples))
    }

    /// Whether `ts` is one of the query's own steps, evaluated as such (a range
    /// query's, outside any subquery): then every node is evaluated at the steps
    /// that follow, in order, and may compute their results ahead.
    pub(super) fn at_query_step(&self, ts: i64) -> bool {
        let Span { start, end, step } = self.span;
        step > 0
            && self.subquery_depth.get() == 0
            && (start..=end).contains(&ts)
            // Widened: the span of two times may not fit an i64.
            && (i128::from(ts) - i128::from(start)) % i128::from(step) == 0
    }

    /// The query's steps from `ts` on (`ts` included), at most `n`.
    pub(super) fn steps_from(&self, ts: i64, n: usize) -> Vec<i64> {
        step_times(ts, self.span.end, self.span.step.max(1))
            .take(n)
            .collect()
    }

    /// The result of `node` at step `ts` if it was computed ahead.
    pub(super) fn take_step_result(&self, node: usize, ts: i64) -> Option<Vec<Element>> {
        self.step_blocks.borrow_mut().get_mut(&node)?.take(ts)
    }

    /// Keeps results of `node` for coming steps.
    pub(super) fn keep_step_results(&self, node: usize, block: StepBlock) {
        self.step_blocks.borrow_mut().insert(node, block);
    }

    /// How many series the selector `vs` read.
    pub(super) fn selected_series(&self, vs: &VectorSelector) -> usize {
        self.data.get(&node_key(vs)).map_or(0, |s| s.borrow().len())
    }

    /// Calls `f(series, j, samples)` for each series of the selector and each of the
    /// `windows` (`[start, end]`, moving forward) in which it has samples, staleness
    /// markers left out. Series by series: a series' samples are read while they
    /// are in cache, not once per window across all series.
    pub(super) fn for_each_series_windows(
        &self,
        vs: &VectorSelector,
        windows: &[(i64, i64)],
        mut f: impl FnMut(&WindowSeries<'_>, usize, &[Sample]),
    ) -> Result<(), QueryError> {
        let Some(series) = self.data.get(&node_key(vs)) else {
            return Ok(());
        };
        let mut series = series.borrow_mut();
        let mut scratch: Vec<Sample> = Vec::new();
        for s in series.iter_mut() {
            for (j, &(start, end)) in windows.iter().enumerate() {
                let window = s.samples.window(start, end, &self.budget)?;
                if window.is_empty() {
                    continue;
                }
                let ws = WindowSeries {
                    labels: &s.labels,
                    without_name: &s.without_name,
                };
                if window.iter().any(|x| is_stale_nan(x.v)) {
                    scratch.clear();
                    scratch.extend(window.iter().filter(|x| !is_stale_nan(x.v)));
                    if !scratch.is_empty() {
                        f(&ws, j, &scratch);
                    }
                } else {
                    f(&ws, j, window);
                }
            }
        }
        Ok(())
    }

    /// `expr[range:step]` at `ts`: the inner expression at every multiple of the step
    /// in `[ref - range, ref]`, as a range vector.
    fn eval_subquery(&self, sq: &SubqueryExpr, ts: i64) -> Result<StepVal, QueryError> {
        let step = sq
            .step
            .map(duration_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_subquery_step_ms);
        let r = reference_time(self.at_ms(&sq.at).unwrap_or(ts), &sq.offset);
        let start = r.saturating_sub(duration_ms(sq.range));
        // Prometheus aligns the first step to a multiple of the step at or after the
        // range's start (Go's truncating remainder, which Rust's `%` matches).
        let mut first = Some(start - start % step);
        if first.is_some_and(|t| t < start) {
            first = first.and_then(|t| t.checked_add(step));
        }
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut series: Vec<SeriesPoints> = Vec::new();
        let mut count = 0usize;
        let _inside = InSubquery::enter(&self.subquery_depth);
        for t in first.map(|t| step_times(t, r, step)).into_iter().flatten() {
            self.check("subquery evaluation")?;
            let els = match self.eval(&sq.expr, t)? {
                StepVal::Vector(v) => v,
                StepVal::Scalar(v) => vec![Element {
                    labels: Labels::empty(),
                    t,
                    v,
                }],
                other => {
                    return Err(QueryError::Execution(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.kind()
                    )));
                }
            };
            count += els.len();
            if count > self.opts.max_samples {
                return Err(QueryError::too_many_samples());
            }
            for e in els {
                let i = match index.entry(e.labels) {
                    Entry::Occupied(o) => *o.get(),
                    Entry::Vacant(v) => {
                        series.push(SeriesPoints {
                            labels: v.key().clone(),
                            points: Vec::new(),
                        });
                        *v.insert(series.len() - 1)
                    }
                };
                if let Some(s) = series.get_mut(i) {
                    s.points.push(Sample { t, v: e.v });
                }
            }
        }
        Ok(StepVal::Matrix {
            series,
            start,
            end: r,
        })
    }
}

/// The matchers of a selector, the metric name included.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, MatcherError> {
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name
        && !vs.matchers.matchers.iter().any(|m| m.name == "__name__")
    {
        out.push(Matcher::equal("__name__", name.clone()));
    }
    for m in &vs.matchers.matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        out.push(Matcher::new(kind, m.name.clone(), m.value.clone())?);
    }
    Ok(out)
}

/// `labels` without `__name__`.
pub(super) fn drop_metric_name(labels: &Labels) -> Labels {
    if labels.get(crate::model::METRIC_NAME).is_none() {
        return labels.clone();
    }
    let mut b = labels.to_builder();
    b.delete(crate::model::METRIC_NAME);
    b.build()
}

/// Prometheus's check after every function and operator: no two output elements
/// may have the same labels.
pub(super) fn check_unique_labels(
    ev: &Evaluator<'_>,
    node: usize,
    els: &[Element],
) -> Result<(), QueryError> {
    if els.len() < 2 {
        return Ok(());
    }
    // The very sets found unique at the last step (kept alive in the memo, so equal
    // identities are the same sets) are unique still.
    if let Some(last) = ev.memo.borrow().last_unique.get(&node)
        && last.len() == els.len()
        && last
            .iter()
            .zip(els)
            .all(|(l, e)| l.identity() == e.labels.identity())
    {
        return Ok(());
    }
    // By content hash (memoised per label set); equal hashes are compared in full.
    let mut seen: HashMap<u64, &Labels> = HashMap::with_capacity(els.len());
    for e in els {
        let h = ev.content_hash(&e.labels);
        if let Some(prev) = seen.insert(h, &e.labels)
            && *prev == e.labels
        {
            return Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    ev.memo
        .borrow_mut()
        .last_unique
        .insert(node, els.iter().map(|e| e.labels.clone()).collect());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn step_times_end_where_the_next_step_would_overflow() {
        let all = |a, b, s| step_times(a, b, s).collect::<Vec<i64>>();
        assert_eq!(all(0, 10, 5), [0, 5, 10]);
        assert_eq!(all(0, 9, 5), [0, 5]);
        assert_eq!(all(3, 3, 5), [3]);
        assert_eq!(all(3, 2, 5), Vec::<i64>::new());
        assert_eq!(all(3, 100, 0), [3]);
        assert_eq!(all(i64::MAX - 1, i64::MAX, i64::MAX), [i64::MAX - 1]);
        assert_eq!(
            all(i64::MIN, i64::MAX, i64::MAX),
            [i64::MIN, -1, i64::MAX - 1]
        );
        assert_eq!(all(1_000, i64::MAX, 1 << 62).len(), 2);
        let picked = picked_at_steps(
            &[Sample::new(5, 1.0), Sample::new(i64::MAX, 2.0)],
            (0, i64::MAX, 1_152_921_504_606_846_976),
        );
        assert_eq!(picked, [Sample::new(5, 1.0)]);
    }

    proptest! {
        #[test]
        fn the_samples_picked_at_steps_are_those_selection_reads(
            ts in prop::collection::btree_set(0i64..1000, 0..60),
            first in -50i64..1000,
            len in 0i64..1000,
            step in 0i64..100,
        ) {
            let samples: Vec<Sample> = ts.iter().map(|&t| Sample::new(t, t as f64)).collect();
            let last = first + len;
            let picked = picked_at_steps(&samples, (first, last, step));
            let mut want: Vec<Sample> = Vec::new();
            let mut t = first;
            loop {
                if let Some(x) = samples.iter().rev().find(|x| x.t <= t)
                    && want.last().is_none_or(|p| p.t != x.t)
                {
                    want.push(*x);
                }
                t += step;
                if step <= 0 || t > last {
                    break;
                }
            }
            prop_assert_eq!(picked, want);
        }

        #[test]
        fn seek_finds_the_partition_point_from_any_hint(
            n in 0usize..200,
            hint in 0usize..250,
            bound in -10i64..2100,
        ) {
            let samples: Vec<Sample> = (0..n as i64).map(|i| Sample::new(i * 10, 0.0)).collect();
            let want = samples.partition_point(|x| x.t < bound);
            prop_assert_eq!(seek(&samples, hint, |x| x.t < bound), want);
        }
    }
}
