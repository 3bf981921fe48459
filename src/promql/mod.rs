//! PromQL: Prometheus 2.42's query language, evaluated over the `storage` seam.
//!
//! promql-parser gives the syntax tree; everything after it is ODIN's own:
//!
//! * [`Engine`] runs instant and range queries under the limits of Prometheus's
//!   `--query.*` flags (samples, timeout) and stops when the caller cancels;
//! * `eval` walks the tree once per step over series preloaded for the whole query
//!   (one storage select per selector, not one per step);
//! * `binary`, `aggregate` and `call` hold the operator, aggregation and function
//!   semantics; `functions` the numeric core of the functions;
//! * [`value`] is what a query returns; [`testlang`] reads Prometheus's PromQL test
//!   files, so ODIN's own cases run in the same language.

mod aggregate;
mod binary;
mod call;
mod eval;
pub mod functions;
mod selected;
pub mod testlang;
pub mod value;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::storage::{Queryable, StorageError, Warnings};

pub use eval::selector_matchers;
pub use value::{Element, SeriesPoints, Value};

/// The limits of Prometheus's `--query.*` flags.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `--query.max-samples`: samples a query may hold in memory at once.
    pub max_samples: usize,
    /// `--query.timeout`.
    pub timeout: Duration,
    /// `--query.lookback-delta`: how far back an instant selector looks for a sample.
    pub lookback_delta_ms: i64,
    /// The step of a subquery without one (Prometheus uses the global
    /// `evaluation_interval`, 1m by default).
    pub default_subquery_step_ms: i64,
    /// A query whose selected samples would pass this many is evaluated streaming
    /// (chunks decoded as the steps reach them, samples behind dropped) instead of
    /// with every sample loaded first: loading is faster for the queries dashboards
    /// send, streaming bounds what a large query holds.
    pub stream_above_samples: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            lookback_delta_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            // 20M samples: 320 MB decoded.
            stream_above_samples: 20_000_000,
        }
    }
}

/// Why a query failed, by Prometheus's `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text or its parameters are wrong (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// The query text does not parse, or cannot be run as asked (a range query of a
    /// range vector): Prometheus's `invalid parameter "query": …` (`bad_data`, 400).
    #[error("{0}")]
    InvalidQuery(String),
    /// Evaluation failed (`execution`, 422): duplicate series, too many samples…
    #[error("{0}")]
    Execution(String),
    /// `timeout` (503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The caller went away (`canceled`).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QueryError {
    pub(crate) fn too_many_samples() -> Self {
        QueryError::Execution(
            "query processing would load too many samples into memory in query execution".into(),
        )
    }
}

/// Set by the caller to stop a running query (the client disconnected).
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cancels the flag when dropped: held by a request handler, so that a client
/// going away (the handler's future dropped) stops the evaluation behind it.
pub struct CancelOnDrop(pub CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Evaluates PromQL over a [`Queryable`].
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// The time span a query asks for.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: i64,
    end: i64,
    /// 0 for an instant query.
    step: i64,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// An instant query at `t` (Unix ms).
    pub fn instant(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: i64,
        cancel: &CancelFlag,
    ) -> Result<Value, QueryError> {
        self.instant_with_warnings(storage, query, t, cancel, &Warnings::default())
    }

    /// [`instant`](Self::instant), with what the storage warned about (a bucket that
    /// could not be read) pushed to `warnings`.
    pub fn instant_with_warnings(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: i64,
        cancel: &CancelFlag,
        warnings: &Warnings,
    ) -> Result<Value, QueryError> {
        let expr = parse(query)?;
        let span = Span {
            start: t,
            end: t,
            step: 0,
        };
        eval::run(
            &self.opts,
            storage,
            &expr,
            span,
            cancel,
            self.deadline(),
            warnings,
        )
    }

    /// A range query from `start` to `end` every `step` milliseconds.
    pub fn range(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        cancel: &CancelFlag,
    ) -> Result<Value, QueryError> {
        self.range_with_warnings(
            storage,
            query,
            start,
            end,
            step,
            cancel,
            &Warnings::default(),
        )
    }

    /// [`range`](Self::range), with the storage's warnings pushed to `warnings`.
    #[allow(clippy::too_many_arguments)]
    pub fn range_with_warnings(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        cancel: &CancelFlag,
        warnings: &Warnings,
    ) -> Result<Value, QueryError> {
        let expr = parse(query)?;
        use promql_parser::parser::value::ValueType;
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                return Err(QueryError::InvalidQuery(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_name(other)
                )));
            }
        }
        if step <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if end < start {
            return Err(QueryError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        let span = Span { start, end, step };
        eval::run(
            &self.opts,
            storage,
            &expr,
            span,
            cancel,
            self.deadline(),
            warnings,
        )
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.opts.timeout
    }
}

fn type_name(t: promql_parser::parser::value::ValueType) -> &'static str {
    use promql_parser::parser::value::ValueType;
    match t {
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
    }
}

/// Parses a query and refuses what Prometheus 2.42 does not know: functions added
/// after it and `or` inside selectors.
///
/// Errors are [`QueryError::InvalidQuery`], what the parser refuses written as
/// Prometheus writes it (`parse error: …`, without its `line:column`).
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    register_2_42_functions();
    fn invalid(prefix: &'static str) -> impl Fn(QueryError) -> QueryError {
        move |e| match e {
            QueryError::BadData(m) => QueryError::InvalidQuery(format!("{prefix}{m}")),
            e => e,
        }
    }
    check_nesting(query).map_err(invalid(""))?;
    let query = raw_strings_as_quoted(query);
    let expr =
        parse_expr(&query).map_err(|e| QueryError::InvalidQuery(format!("parse error: {e}")))?;
    check_2_42(&expr).map_err(invalid("parse error: "))?;
    Ok(expr)
}

/// promql-parser's `parse`, with its panics turned into errors: some inputs make it
/// panic (a duration of 10^40 seconds overflows `Duration::from_secs_f64`, found by
/// the `promql_parse` fuzz target), and a query is the client's text, so whatever
/// it holds is a bad query (400), not a failure of the server.
pub fn parse_expr(query: &str) -> Result<promql_parser::parser::Expr, String> {
    match std::panic::catch_unwind(|| promql_parser::parser::parse(query)) {
        Ok(parsed) => parsed,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the parser gave up".to_string());
            Err(format!("invalid query: {why}"))
        }
    }
}

#[cfg(test)]
mod parse_tests {
    /// Inputs the fuzzer found that made promql-parser panic are bad queries.
    #[test]
    fn parser_panics_are_bad_queries() {
        for q in [
            "rate(x[4444444444444444444444444444444444444440])",
            "x offset 1e300",
            "x[5m:4444444444444444444444444444444444444440]",
        ] {
            match super::parse(q) {
                Err(super::QueryError::InvalidQuery(e)) => {
                    assert!(e.starts_with("parse error: "), "{q}: {e}")
                }
                other => panic!("{q}: {other:?}"),
            }
        }
    }
}

/// The deepest syntax tree a query may have. The parser and the evaluator recurse
/// once per level; query threads have [`QUERY_STACK_BYTES`] of stack, which this
/// bounds with a wide margin. Parsing is not interruptible and grows quadratically
/// with depth for some forms: in a release build (shared 2-core machine, loaded)
/// `sum(sum(…))` 4,000 deep parsed in 0.40 s, 10,000 deep in 3.7 s; `1 or 1 or …`
/// 0.21 s and 2.2 s. (Prometheus has no such limit, but answers a 3,000-term `or`
/// chain, and so must ODIN.)
pub const MAX_NESTING: usize = 4_000;

/// The deepest query `/api/v1/format_query` prettifies. promql-parser's prettifier
/// re-renders every subtree at every level (faster than cubic growth, output
/// quadratic): `abs(abs(…))` 256 deep took 26 ms, 1,000 deep 1.2 s, 3,200 deep 50 s
/// (release build, measured as for [`MAX_NESTING`]).
pub const PRETTIFY_MAX_NESTING: usize = 256;

/// Refuses to prettify a query deeper than [`PRETTIFY_MAX_NESTING`].
pub fn check_prettify_nesting(query: &str) -> Result<(), QueryError> {
    if nesting_bound(query) > PRETTIFY_MAX_NESTING {
        return Err(QueryError::BadData(format!(
            "query too deeply nested to format: more than {PRETTIFY_MAX_NESTING} levels of parentheses and operators"
        )));
    }
    Ok(())
}

/// Stack for threads that parse and evaluate queries.
pub const QUERY_STACK_BYTES: usize = 256 << 20;

/// The nesting bound (see [`check_nesting`]) up to which a query is *shallow*: it
/// parses and evaluates within [`SHALLOW_QUERY_STACK_BYTES`], so it may run on the
/// thread at hand instead of a thread of its own. Dashboard queries are far below it
/// (`sum by (i) (rate(m{a="b"}[5m])) / 2` counts 6).
pub const SHALLOW_NESTING: usize = 64;

/// Stack a shallow query needs at most, with room to spare: a debug build takes up to
/// ~18 KiB per level (a chain of `label_replace` calls), 64 levels ~1.2 MiB; the test
/// `shallow_queries_fit_their_stack` runs the deepest such queries on a thread this
/// size. tokio's worker threads have 2 MiB.
pub const SHALLOW_QUERY_STACK_BYTES: usize = 1536 << 10;

/// Whether `query` is shallow: see [`SHALLOW_NESTING`].
pub fn is_shallow(query: &str) -> bool {
    nesting_bound(query) <= SHALLOW_NESTING
}

/// Refuses a query whose tree could be deeper than [`MAX_NESTING`], judged before
/// parsing from [`nesting_bound`].
fn check_nesting(query: &str) -> Result<(), QueryError> {
    if nesting_bound(query) > MAX_NESTING {
        return Err(QueryError::BadData(format!(
            "query too deeply nested: more than {MAX_NESTING} levels of parentheses and operators"
        )));
    }
    Ok(())
}

/// An upper bound on the depth of `query`'s syntax tree: the deepest parenthesis plus
/// every operator outside strings (a chain of binary operators nests one level per
/// operator).
fn nesting_bound(query: &str) -> usize {
    let (mut depth, mut max_depth, mut operators) = (0usize, 0usize, 0usize);
    // Inside a selector's braces, `!=` and `=~` are matchers, not operators: a
    // selector of 2,000 matchers is flat. (Should the braces not close, what was
    // in them counts after all.)
    let mut braces = 0usize;
    let mut operators_in_braces = 0usize;
    let mut chars = query.chars().peekable();
    let mut word = String::new();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if braces == 0 && matches!(word.as_str(), "and" | "or" | "unless" | "atan2") {
            operators += 1;
        }
        word.clear();
        match c {
            // A comment runs to the end of its line; what is in it is not PromQL.
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '(' | '{' | '[' => {
                depth += 1;
                max_depth = max_depth.max(depth);
                braces += usize::from(c == '{');
            }
            ')' | '}' | ']' => {
                depth = depth.saturating_sub(1);
                if c == '}' {
                    braces = braces.saturating_sub(1);
                }
            }
            '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' => {
                if braces == 0 {
                    operators += 1;
                } else {
                    operators_in_braces += 1;
                }
            }
            _ => {}
        }
    }
    if braces > 0 {
        operators += operators_in_braces;
    }
    max_depth + operators
}

/// Rewrites PromQL's raw strings (`` `…` ``, where a backslash is just a backslash)
/// as double-quoted ones: promql-parser 0.11 applies escape rules inside backticks and
/// refuses a regex like `` `\d+` `` that Prometheus accepts.
fn raw_strings_as_quoted(q: &str) -> std::borrow::Cow<'_, str> {
    if !q.contains('`') {
        return std::borrow::Cow::Borrowed(q);
    }
    let mut out = String::with_capacity(q.len() + 8);
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                // A quoted string: copied as it is, escapes included.
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                // A comment runs to the end of the line.
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '`' => {
                out.push('"');
                for d in chars.by_ref() {
                    match d {
                        '`' => break,
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        _ => out.push(d),
                    }
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Teaches the parser the 2.42 functions it no longer knows: `holt_winters` (renamed
/// `double_exponential_smoothing` after 2.42).
fn register_2_42_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::Function;
        use promql_parser::parser::value::ValueType;
        let holt_winters = Function {
            name: "holt_winters",
            arg_types: vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            variadic: 0,
            return_type: ValueType::Vector,
            experimental: false,
        };
        if let Err(e) = promql_parser::parser::register_extra_functions(vec![holt_winters]) {
            tracing::error!(error = %e, "cannot register holt_winters with the PromQL parser");
        }
    });
}

/// The functions of Prometheus 2.42.
const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

fn check_2_42(expr: &promql_parser::parser::Expr) -> Result<(), QueryError> {
    use promql_parser::parser::Expr;
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !aggregate::is_supported(&op) {
                return Err(QueryError::BadData(format!(
                    "unknown aggregation operator {op:?}"
                )));
            }
            check_2_42(&a.expr)?;
            if let Some(p) = &a.param {
                check_2_42(p)?;
            }
            Ok(())
        }
        Expr::Unary(u) => check_2_42(&u.expr),
        Expr::Binary(b) => {
            check_2_42(&b.lhs)?;
            check_2_42(&b.rhs)
        }
        Expr::Paren(p) => check_2_42(&p.expr),
        Expr::Subquery(s) => check_2_42(&s.expr),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::Call(c) => {
            if !FUNCTIONS_2_42.contains(&c.func.name) {
                return Err(QueryError::BadData(format!(
                    "unknown function with name {:?}",
                    c.func.name
                )));
            }
            c.args.args.iter().try_for_each(|a| check_2_42(a))
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(QueryError::BadData("unsupported expression".into())),
    }
}

fn check_selector(vs: &promql_parser::parser::VectorSelector) -> Result<(), QueryError> {
    if vs.matchers.or_matchers.is_empty() {
        Ok(())
    } else {
        Err(QueryError::BadData(
            "\"or\" inside a vector selector is not supported".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::storage::Appendable;
    use crate::storage::memory::MemoryStorage;

    fn storage(series: usize, samples: i64) -> MemoryStorage {
        let s = MemoryStorage::new();
        let mut app = s.appender();
        for i in 0..series {
            let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]);
            for t in 0..samples {
                app.append(&l, t * 15_000, t as f64).unwrap();
            }
        }
        app.commit().unwrap();
        s
    }

    #[test]
    fn raw_strings_keep_their_backslashes() {
        assert_eq!(
            raw_strings_as_quoted(r#"a{b=~`\d+"`}"#),
            r#"a{b=~"\\d+\""}"#
        );
        // Backticks inside quoted strings and comments are left alone.
        assert_eq!(raw_strings_as_quoted(r#"a{b="`x`"}"#), r#"a{b="`x`"}"#);
        assert!(parse(r#"label_replace(m, "x", "$1", "i", `(\d)`)"#).is_ok());
    }

    #[test]
    fn only_prometheus_2_42_functions_parse() {
        assert!(parse("holt_winters(m[5m], 0.5, 0.5)").is_ok());
        let err = parse("mad_over_time(m[5m])").unwrap_err();
        assert!(err.to_string().contains("unknown function"), "{err}");
        assert!(
            matches!(parse("sum("), Err(QueryError::InvalidQuery(m)) if m.starts_with("parse error: "))
        );
    }

    #[test]
    fn range_queries_refuse_range_vectors_and_bad_steps() {
        let s = storage(1, 10);
        let e = Engine::default();
        let c = CancelFlag::default();
        let err = e.range(&s, "m[5m]", 0, 60_000, 15_000, &c).unwrap_err();
        assert!(err.to_string().contains("range vector"), "{err}");
        assert!(e.range(&s, "m", 0, 60_000, 0, &c).is_err());
        let Value::Matrix(m) = e.range(&s, "m", 0, 60_000, 15_000, &c).unwrap() else {
            panic!("not a matrix")
        };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].points.len(), 5);
    }

    /// The deepest shallow queries of the forms that take the most stack per level
    /// (function calls, aggregations, binary operators, subqueries) parse and evaluate
    /// on a thread of [`SHALLOW_QUERY_STACK_BYTES`]. Too little stack aborts the test
    /// binary, which fails the suite.
    #[test]
    fn shallow_queries_fit_their_stack() {
        let s = storage(3, 60);
        let nest = |open: &str, close: &str, levels: usize| {
            format!("{}m{}", open.repeat(levels), close.repeat(levels))
        };
        let forms: [(&str, &str); 8] = [
            ("label_replace(", r#","a","$1","i","(.*)")"#),
            ("label_join(", r#","a",",","i","i")"#),
            ("abs(", ")"),
            ("vector(scalar(", "))"),
            ("sum by (i) (", ")"),
            ("m * on(i) (", ")"),
            ("max_over_time((", ")[30s:1m])"),
            ("-(", ")"),
        ];
        let mut queries: Vec<String> = forms
            .iter()
            .map(|(open, close)| {
                let levels = (0..)
                    .take_while(|&n| is_shallow(&nest(open, close, n + 1)))
                    .last()
                    .map_or(0, |n| n + 1);
                nest(open, close, levels)
            })
            .collect();
        queries.push(vec!["m"; SHALLOW_NESTING + 1].join(" or "));
        for q in &queries {
            assert!(is_shallow(q), "{q}");
            assert!(nesting_bound(q) > SHALLOW_NESTING - 4, "{q}");
        }
        assert!(!is_shallow(&nest("abs(", ")", SHALLOW_NESTING + 1)));
        let answers = std::thread::Builder::new()
            .stack_size(SHALLOW_QUERY_STACK_BYTES)
            .spawn(move || {
                let e = Engine::default();
                let c = CancelFlag::default();
                queries
                    .iter()
                    .map(|q| (q.clone(), e.instant(&s, q, 600_000, &c).map(|_| ())))
                    .collect::<Vec<_>>()
            })
            .unwrap()
            .join()
            .unwrap();
        for (q, answer) in answers {
            assert!(answer.is_ok(), "{q}: {answer:?}");
        }
    }

    /// Runs `f` on a thread and fails the test if it takes more than `secs`: a
    /// regression here is a loop that never ends.
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .stack_size(QUERY_STACK_BYTES)
            .spawn(move || {
                let _ = tx.send(f());
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(secs))
            .expect("the query did not finish: a step loop runs on")
    }

    /// Issue 14: `query_range` with `end` at i64::MAX ms and a step of 1e15 s never
    /// answered: the step loop wrapped past i64::MAX and went on from the far past.
    /// Every step loop (the query's, selectors', range functions', subqueries') now
    /// ends at the last step that fits.
    #[test]
    fn steps_near_the_end_of_time_end_instead_of_wrapping() {
        let answers = within(20, || {
            let s = storage(3, 200);
            let e = Engine::default();
            let c = CancelFlag::default();
            let mut answers = Vec::new();
            for step in [
                1_000_000_000_000_000_000i64,
                1_152_921_504_606_846_976,
                i64::MAX,
            ] {
                for q in [
                    "m",
                    "rate(m[5m])",
                    "max_over_time(m[10m:1m])",
                    "max_over_time(m[10m:100000y])",
                    "m offset -100y",
                    "m offset 100y",
                    "sum_over_time(m[100000y])",
                    "m @ 100",
                ] {
                    for (start, end) in [(1_000_000, i64::MAX), (i64::MIN, i64::MAX)] {
                        let r = e.range(&s, q, start, end, step, &c);
                        answers.push((format!("{q} {start}..{end} step {step}"), r));
                    }
                }
            }
            answers
        });
        for (what, answer) in answers {
            let Ok(Value::Matrix(m)) = answer else {
                panic!("{what}: {answer:?}");
            };
            // 2^64 ms in steps of at least 1e18 ms.
            assert!(m.iter().all(|s| s.points.len() <= 19), "{what}: {m:?}");
        }
    }

    /// Offsets, `@` times and ranges at the ends of the timeline select nothing
    /// instead of wrapping around to select something else.
    #[test]
    fn offsets_near_the_ends_of_time_select_nothing() {
        let answers = within(20, || {
            let s = storage(2, 100);
            let e = Engine::default();
            let c = CancelFlag::default();
            [
                "m offset 100000y",
                "m offset -100000y",
                "rate(m[5m] offset 100000y)",
                "max_over_time(m[5m:1m] offset -100000y)",
                "count_over_time(m[1m] offset -100000y)",
            ]
            .map(|q| {
                (
                    q,
                    [i64::MIN + 1, -1, 600_000, i64::MAX].map(|t| e.instant(&s, q, t, &c)),
                )
            })
        });
        for (q, results) in answers {
            for r in results {
                match r {
                    Ok(Value::Vector(v)) => assert!(v.is_empty(), "{q}: {v:?}"),
                    other => panic!("{q}: {other:?}"),
                }
            }
        }
    }

    /// Prettifying is bounded by depth before it starts; parsing by [`MAX_NESTING`].
    #[test]
    fn deep_queries_are_refused_before_the_costly_work() {
        let nest = |n: usize| format!("{}m{}", "abs(".repeat(n), ")".repeat(n));
        assert!(check_prettify_nesting(&nest(PRETTIFY_MAX_NESTING - 1)).is_ok());
        let err = check_prettify_nesting(&nest(PRETTIFY_MAX_NESTING + 1)).unwrap_err();
        assert!(
            err.to_string().contains("too deeply nested to format"),
            "{err}"
        );
        let parens = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        // The issue's 10,000 levels.
        let err = parse(&parens(10_000)).unwrap_err();
        assert!(err.to_string().contains("too deeply nested"), "{err}");
        let err = parse(&vec!["m"; MAX_NESTING + 2].join(" or ")).unwrap_err();
        assert!(err.to_string().contains("too deeply nested"), "{err}");
        // A comment hides nothing from the bound: not a brace that would stop the
        // operators after it counting, nor a quote that would swallow them.
        for comment in ["# {\n", "# \"\n", "# `\n"] {
            let q = format!("{comment}1{}", "+1".repeat(50_000));
            let err = parse(&q).unwrap_err();
            assert!(
                err.to_string().contains("too deeply nested"),
                "{comment:?}: {err}"
            );
        }
        // Unclosed braces: their operators count.
        let q = format!("m{{{}", "+1".repeat(50_000));
        assert!(
            parse(&q)
                .unwrap_err()
                .to_string()
                .contains("too deeply nested")
        );
        // A selector's matchers are not operators: 5,000 of them are flat.
        let matchers: Vec<String> = (0..5_000).map(|i| format!("l{i}!=\"x\"")).collect();
        assert!(parse(&format!("m{{{}}}", matchers.join(","))).is_ok());
    }

    #[test]
    fn limits_and_cancellation_stop_a_query() {
        let s = storage(10, 100);
        let c = CancelFlag::default();
        let small = Engine::new(EngineOptions {
            max_samples: 50,
            ..EngineOptions::default()
        });
        let err = small
            .instant(&s, "sum(rate(m[20m]))", 1_500_000, &c)
            .unwrap_err();
        assert!(err.to_string().contains("too many samples"), "{err}");
        c.cancel();
        let err = Engine::default()
            .range(&s, "m", 0, 1_500_000, 15_000, &c)
            .unwrap_err();
        assert!(matches!(err, QueryError::Canceled(_)), "{err}");
        let expired = Engine::new(EngineOptions {
            timeout: Duration::ZERO,
            ..EngineOptions::default()
        });
        let err = expired
            .range(&s, "m", 0, 1_500_000, 15_000, &CancelFlag::default())
            .unwrap_err();
        assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    }

    /// A range query is its expression evaluated as an instant query at each step,
    /// however the engine shares work between steps (range functions computed for
    /// blocks of steps ahead, positional memos), with counter resets, gaps,
    /// staleness markers, series that start and end, `offset`, `@` and subqueries.
    #[test]
    fn range_results_are_instant_results_at_every_step() {
        let s = MemoryStorage::new();
        let mut app = s.appender();
        for i in 0..40i64 {
            let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]);
            let (first, last) = (i * 7, 400 - (i % 5) * 30);
            for k in first..last {
                if k % (i + 3) == 0 {
                    continue; // a gap
                }
                let v = if k % 97 == 42 {
                    f64::from_bits(crate::model::STALE_NAN_BITS)
                } else {
                    ((k * (i + 1)) % 500) as f64 // resets now and then
                };
                app.append(&l, k * 15_000, v).unwrap();
            }
        }
        app.commit().unwrap();
        let engine = Engine::new(EngineOptions::default());
        let c = CancelFlag::default();
        let key = |l: &Labels, t: i64| format!("{l} @{t}");
        for q in [
            "rate(m[1m])",
            "increase(m[2m] offset 1m)",
            "delta(m[1m])",
            "irate(m[1m])",
            "idelta(m[1m])",
            "changes(m[3m])",
            "resets(m[3m])",
            "deriv(m[2m])",
            "avg_over_time(m[1m])",
            "min_over_time(m[1m])",
            "max_over_time(m[1m])",
            "sum_over_time(m[1m])",
            "count_over_time(m[1m])",
            "stddev_over_time(m[1m])",
            "stdvar_over_time(m[1m])",
            "present_over_time(m[1m])",
            "last_over_time(m[1m])",
            "rate(m[1m] @ 3000)",
            "sum by (i) (rate(m[2m])) / on (i) count_over_time(m[2m])",
            "max_over_time(rate(m[1m])[5m:30s])",
            "histogram_quantile(0.5, sum by (le) (label_replace(rate(m[1m]), \"le\", \"$1\", \"i\", \"(.*)\")))",
        ] {
            let (start, end, step) = (60_000, 6_000_000, 30_000);
            let Value::Matrix(range) = engine.range(&s, q, start, end, step, &c).unwrap() else {
                panic!("{q}: not a matrix");
            };
            let mut got = std::collections::BTreeMap::new();
            for sp in &range {
                for p in &sp.points {
                    got.insert(key(&sp.labels, p.t), p.v.to_bits());
                }
            }
            let mut want = std::collections::BTreeMap::new();
            let mut t = start;
            while t <= end {
                let Value::Vector(els) = engine.instant(&s, q, t, &c).unwrap() else {
                    panic!("{q}: not a vector");
                };
                for e in els {
                    want.insert(key(&e.labels, t), e.v.to_bits());
                }
                t += step;
            }
            assert!(!want.is_empty(), "{q}: no data");
            assert_eq!(got, want, "{q}");
        }
    }

    #[test]
    fn streaming_over_tsdb_blocks_and_head_equals_loading() {
        use crate::storage::Appendable;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::tsdb::Db::open_for_tests(
            dir.path(),
            crate::tsdb::DbOptions::default(),
            &Default::default(),
        );
        let mut app = db.appender();
        let sets: [(&str, &str, f64, f64); 4] = [
            ("1", "production", 20.0, 30.0),
            ("0", "production", 10.0, 30.0),
            ("0", "canary", 30.0, 80.0),
            ("1", "canary", 40.0, 40.0),
        ];
        for (inst, group, a, b) in sets {
            let l = crate::model::Labels::from_pairs([
                ("__name__", "http_requests"),
                ("job", "api-server"),
                ("instance", inst),
                ("group", group),
            ]);
            for i in 0..=2000i64 {
                let v = if i <= 1000 {
                    a * i as f64
                } else {
                    a * 1000.0 + b * (i - 1000) as f64
                };
                app.append(&l, i * 10_000, v).unwrap();
            }
        }
        app.commit().unwrap();
        for _ in 0..3 {
            db.compact().unwrap();
        }
        assert!(
            !db.blocks().is_empty(),
            "the data spans blocks and the head"
        );
        let c = CancelFlag::default();
        let loaded = Engine::new(EngineOptions {
            stream_above_samples: usize::MAX,
            ..EngineOptions::default()
        });
        let streamed = Engine::new(EngineOptions {
            stream_above_samples: 0,
            ..EngineOptions::default()
        });
        struct Streaming<'a>(&'a crate::tsdb::Db);
        impl crate::storage::Queryable for Streaming<'_> {
            fn querier(
                &self,
                a: i64,
                b: i64,
            ) -> crate::storage::Result<Box<dyn crate::storage::Querier>> {
                self.0.querier(a, b)
            }
            fn as_chunk_queryable(&self) -> Option<&dyn crate::storage::ChunkQueryable> {
                Some(self.0)
            }
        }
        for q in [
            "rate(http_requests{group=~\"pro.*\"}[1m])",
            "http_requests",
            "rate(http_requests[5m])",
        ] {
            for t in [7_000_000i64, 8_000_000, 12_000_000] {
                let a = loaded
                    .range(&db, q, t - 600_000, t + 600_000, 60_000, &c)
                    .unwrap();
                let b = streamed
                    .range(&Streaming(&db), q, t - 600_000, t + 600_000, 60_000, &c)
                    .unwrap();
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{q} at {t}");
            }
        }
    }
}
