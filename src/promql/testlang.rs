//! Prometheus's PromQL test language, as read by `promql/test.go` of Prometheus
//! v2.42.0, so that Prometheus's own `promql/testdata/*.test` files (and ODIN's cases
//! written the same way) can run against ODIN's engine.
//!
//! This module only reads files and compares results; it does not evaluate
//! anything. A runner walks [`TestFile::commands`] in order, loads samples into a
//! fresh storage, evaluates each [`Eval`] with the engine and hands the result to
//! [`check`] (and, to mirror test.go fully, the result of the same query run as a
//! range query to [`check_range_mode`]).
//!
//! # The language
//!
//! A file is a sequence of lines. Every line is trimmed of surrounding whitespace, and
//! a line that then starts with `#` is a comment. Comments count as **blank lines**,
//! and a blank line is what ends a `load` or `eval` block, so a comment inside a block
//! ends it (as in test.go). Outside blocks blank lines are skipped. A command is
//! recognised by its first word, compared case-insensitively, but the rest of a
//! `load` or `eval` line is case-sensitive (`LOAD 5m` is an error, as in test.go):
//!
//! * `clear` (anything after the word is ignored) wipes the storage.
//! * `load <step>` is followed by one line per series until the next blank line:
//!
//!   ```text
//!   load 5m
//!       http_requests{job="api", instance="0"}  0+10x10 _ stale 1e3
//!       up                                      1 1 _x3 Inf -Inf NaN
//!   ```
//!
//!   Each series line is a *series description*: a metric name and/or a label set
//!   `{name="value", …}` (only `=`; values are double-, single- or back-quoted PromQL
//!   strings with Go escapes), one or more spaces, then space-separated value items.
//!   Value number i (counting from 0) lands at `i * step` milliseconds after Unix
//!   time 0. Items:
//!
//!   | item | expands to |
//!   | --- | --- |
//!   | `7`, `-7`, `+7`, `1.5`, `.5`, `2.`, `1e3`, `1E-3` | one value |
//!   | `Inf`, `-Inf`, `NaN` (any case) | one value |
//!   | `stale` | the staleness marker (bits `0x7ff0000000000002`) |
//!   | `_` | nothing at this step (the step still advances) |
//!   | `_xN` | N skipped steps |
//!   | `vxN` | N+1 copies of `v` |
//!   | `a+bxN`, `a-bxN` | N+1 values `a`, `a±b`, … (added up step by step, as Go does) |
//!
//!   Numbers are read as Go's `strconv.ParseInt(s, 0, 64)` first and
//!   `strconv.ParseFloat` second, which gives Prometheus's quirks: `010` is octal
//!   (8). Hexadecimal is not recognised inside value sequences, so `0x10` there reads
//!   as `0` repeated eleven times. A series defined twice in one `load` keeps the
//!   later definition. Labels with empty values are dropped, as Prometheus's storage
//!   does when appending.
//! * `eval instant at <time> <expr>`, `eval_ordered instant at …` and
//!   `eval_fail instant at …` evaluate `<expr>` as an instant query at `<time>`
//!   after Unix time 0 (`at <time>` is required; the expression is the rest of the
//!   line). The lines after it, up to the next blank line, are the
//!   expected result: either one bare number (a scalar result; read with
//!   `ParseInt(s, 0, 64)` then `ParseFloat`, so `0x1f`, `1_000`, `+Inf`, `NaN` and
//!   hexadecimal floats such as `0x1p-2` work; the block ends right after it), or one
//!   series description with exactly one value per expected series, e.g.
//!   `{job="a"} 3` or `http_requests{job="a"} 3`. No expectation lines means "no
//!   result" (an empty vector). `eval_ordered` also checks the order of the series;
//!   `eval_fail` expects the query to fail and ignores any expectation lines.
//!
//! Durations (`load` steps, eval times) follow Prometheus's `model.ParseDuration`:
//! integer amounts of `y` (365d), `w`, `d`, `h`, `m`, `s`, `ms`, each unit at most
//! once and in that order (`1h30m`, `90s`, `5m`), or a bare `0`.
//!
//! # Deliberate differences from test.go
//!
//! test.go parses each eval's expression with Prometheus's parser while reading the
//! file; this module keeps the expression as text and leaves parsing to the engine,
//! so it does not depend on it. Some lines that test.go would accept but that could
//! never pass are rejected here with a clear error instead: an expected series with
//! no value, `_` as an expected value, a bare number after expected series, an
//! expected label with an empty value, and duplicate label names. In a `load`, a
//! series line without values (test.go silently loads nothing: usually a command
//! missing the blank line before it) and a series without labels (which
//! Prometheus's storage refuses) are rejected too.
//!
//! # Comparing results
//!
//! [`check`] follows test.go's `compareResult`: an instant vector must hold exactly
//! the expected series (matched by their full label sets, `__name__` included), each
//! value equal to the expected one within a relative error of 1e-6 (test.go's
//! `almostEqual`; any NaN equals any NaN, the staleness marker included); an
//! `eval_ordered` result must also list them in the file's order. A scalar result
//! is compared with the bare number. A range vector (matrix) result, for instance of
//! `eval instant at 1m foo[5m]`, always fails with "received range result on
//! instant evaluation", exactly as in test.go; so does a string result (test.go
//! panics on one).
//!
//! test.go additionally re-runs every non-failing eval as a range query from
//! `time - 1m` to `time + 1m` with a 1m step and compares the middle step; see
//! [`check_range_mode`]. It also re-runs each query with `@ <time>` added to every
//! selector and subquery at a few other evaluation times (its `atModifierTestCases`);
//! that needs an expression rewriter and is left to the runner.

use std::collections::{HashMap, HashSet};

use crate::model::{Labels, Sample, is_stale_nan, stale_nan};
use crate::promql::value::{Element, Value};

/// A whole test file: its commands in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestFile {
    /// The commands, in the order they appear and must run.
    pub commands: Vec<Command>,
}

/// One command of a test file.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `load <step>`: append these samples to the storage.
    Load {
        /// The step between consecutive values of a series line, in milliseconds.
        step_ms: i64,
        /// Each series with its samples (time in milliseconds since Unix time 0,
        /// oldest first). Values are exactly as written: the staleness marker keeps
        /// its bits, `NaN` has Go's `math.NaN()` bits. Series appear in the order of
        /// their first definition; a later definition of the same labels replaced
        /// the earlier samples.
        series: Vec<(Labels, Vec<Sample>)>,
    },
    /// `clear`: drop all stored samples.
    Clear,
    /// `eval…`: run an instant query and compare its result.
    Eval(Eval),
}

/// An `eval instant at <time> <expr>` command and its expected result.
#[derive(Debug, Clone, PartialEq)]
pub struct Eval {
    /// The 1-based line number of the `eval` line, for messages.
    pub line: usize,
    /// The PromQL expression, exactly as written (not parsed here).
    pub expr: String,
    /// The evaluation time in milliseconds since Unix time 0.
    pub at_ms: i64,
    /// `eval_ordered`: the result's series must come in the listed order.
    pub ordered: bool,
    /// `eval_fail`: the query must fail; [`Eval::expected`] is not checked.
    pub expect_fail: bool,
    /// What the query must return.
    pub expected: Expected,
}

/// The expected result of an [`Eval`].
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A bare number: the query returns a scalar with this value.
    Scalar(f64),
    /// Series with their values, in file order (the order `eval_ordered` checks).
    /// Empty when the eval lists nothing: the result must be an empty vector. Should
    /// a label set be listed twice, the later line wins, as in test.go.
    Series(Vec<(Labels, f64)>),
}

/// A malformed test file: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TestParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with that line.
    pub message: String,
}

/// Relative error allowed between an expected and an actual value (test.go's
/// `epsilon`).
const EPSILON: f64 = 0.000001;

/// The most values one series line may expand to; a guard against a typo such as
/// `1x1000000000` exhausting memory (Prometheus's own files stay below 10 000).
const MAX_VALUES_PER_SERIES: u64 = 10_000_000;

/// Keywords of Prometheus 2.42's lexer that its grammar does not accept as a metric
/// name in a series description (`sum`, `by`, `offset`… are accepted).
const NON_METRIC_KEYWORDS: [&str; 6] = [
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "atan2",
];

/// Parses a test file. The error names the first malformed line (1-based).
pub fn parse(text: &str) -> Result<TestFile, TestParseError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.is_empty() {
            i += 1;
            continue;
        }
        let word = line
            .split([' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_lowercase();
        if word == "clear" {
            commands.push(Command::Clear);
            i += 1;
        } else if word == "load" {
            let (cmd, next) = parse_load(&lines, i)?;
            commands.push(cmd);
            i = next;
        } else if word.starts_with("eval") {
            let (eval, next) = parse_eval(&lines, i)?;
            commands.push(Command::Eval(eval));
            i = next;
        } else {
            return Err(err(
                i,
                format!("invalid command {line:?}: expected `load`, `clear` or `eval`"),
            ));
        }
    }
    Ok(TestFile { commands })
}

/// Compares the successful result of an eval's query with its expectation, the way
/// test.go's `compareResult` does (see the module documentation). `Err` describes
/// the first difference found.
///
/// For an `eval_fail` command any successful result is an error; when the engine
/// returns an error instead, the runner must count that as a pass for `eval_fail`
/// and as a failure otherwise, without calling this.
pub fn check(eval: &Eval, got: &Value) -> Result<(), String> {
    if eval.expect_fail {
        return Err(format!(
            "expected an error evaluating {:?} (line {}) but got a {} result",
            eval.expr,
            eval.line,
            got.type_name()
        ));
    }
    compare(eval, got)
}

/// test.go's second check of an eval: the same expression run as a range query from
/// `at_ms - 60_000` to `at_ms + 60_000` with a 60 000 ms step must give, at its
/// middle step, the instant result. `instant` is the instant query's (successful)
/// result, `range` the range query's.
///
/// Does nothing for `eval_fail` (test.go does not run the range query then) and for
/// `eval_ordered` (ordering is not defined for range queries). Otherwise each series
/// of the matrix contributes its point at exactly `at_ms`, if it has one, and the
/// resulting vector is compared as [`check`] does; when the instant result was a
/// scalar, the first such point is compared as a scalar.
pub fn check_range_mode(eval: &Eval, instant: &Value, range: &Value) -> Result<(), String> {
    if eval.expect_fail || eval.ordered {
        return Ok(());
    }
    let Value::Matrix(series) = range else {
        return Err(format!(
            "range mode: the range query returned a {} instead of a matrix",
            range.type_name()
        ));
    };
    let middle: Vec<Element> = series
        .iter()
        .filter_map(|s| {
            s.points
                .iter()
                .find(|p| p.t == eval.at_ms)
                .map(|p| Element {
                    labels: s.labels.clone(),
                    t: p.t,
                    v: p.v,
                })
        })
        .collect();
    let got = if matches!(instant, Value::Scalar { .. }) {
        let Some(first) = middle.first() else {
            return Err(format!(
                "range mode: the range query has no point at {} ms for the scalar result",
                eval.at_ms
            ));
        };
        Value::Scalar {
            t: first.t,
            v: first.v,
        }
    } else {
        Value::Vector(middle)
    };
    compare(eval, &got).map_err(|e| format!("range mode: {e}"))
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// Builds an error for the 0-based line index `i`.
fn err(i: usize, message: impl Into<String>) -> TestParseError {
    TestParseError {
        line: i + 1,
        message: message.into(),
    }
}

/// Whitespace as Go's regexp `\s` sees it.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Strips a non-empty run of `\s` from the front of `s`, or `None` when there is none.
fn skip_re_space(s: &str) -> Option<&str> {
    let rest = s.trim_start_matches(is_re_space);
    (rest.len() < s.len()).then_some(rest)
}

/// Parses a `load` block starting at line index `i`; returns the command and the
/// index of the first line after the block.
fn parse_load(lines: &[&str], i: usize) -> Result<(Command, usize), TestParseError> {
    let header = lines[i];
    let step = header
        .strip_prefix("load")
        .and_then(skip_re_space)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err(i, "invalid load command, expected `load <step:duration>`"))?;
    let step_ms = parse_duration(step)
        .map_err(|e| err(i, format!("invalid step definition {step:?}: {e}")))?;

    let mut series: Vec<(Labels, Vec<Sample>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let desc = parse_series_desc(lines[j]).map_err(|e| err(j, e))?;
        let labels = desc.labels(false).map_err(|e| err(j, e))?;
        if desc.values.is_empty() {
            return Err(err(
                j,
                format!(
                    "series {labels} has no values (is this meant to be a command? end the load block with a blank line)"
                ),
            ));
        }
        if labels.is_empty() {
            return Err(err(
                j,
                "a loaded series needs at least one label with a non-empty value",
            ));
        }
        let mut samples = Vec::with_capacity(desc.values.len());
        for (k, v) in desc.values.iter().enumerate() {
            let Some(v) = v else { continue };
            let t = i64::try_from(k)
                .ok()
                .and_then(|k| k.checked_mul(step_ms))
                .ok_or_else(|| err(j, "sample timestamp overflows"))?;
            samples.push(Sample { t, v: *v });
        }
        match index.get(&labels) {
            Some(&at) => series[at].1 = samples,
            None => {
                index.insert(labels.clone(), series.len());
                series.push((labels, samples));
            }
        }
        j += 1;
    }
    Ok((Command::Load { step_ms, series }, j))
}

/// Parses an `eval` block starting at line index `i`; returns it and the index of
/// the first line after the block.
fn parse_eval(lines: &[&str], i: usize) -> Result<(Eval, usize), TestParseError> {
    const USAGE: &str = "invalid evaluation command, expected `eval[_fail|_ordered] instant at <time:duration> <query>`";
    let header = lines[i];
    let rest = header.strip_prefix("eval").ok_or_else(|| err(i, USAGE))?;
    let (ordered, expect_fail, rest) = if let Some(r) = rest.strip_prefix("_ordered") {
        (true, false, r)
    } else if let Some(r) = rest.strip_prefix("_fail") {
        (false, true, r)
    } else {
        (false, false, rest)
    };
    let rest = skip_re_space(rest)
        .and_then(|r| r.strip_prefix("instant"))
        .and_then(skip_re_space)
        .and_then(|r| r.strip_prefix("at"))
        .and_then(skip_re_space)
        .ok_or_else(|| err(i, USAGE))?;
    let split = rest.find(is_re_space).ok_or_else(|| err(i, USAGE))?;
    let (at, expr) = (
        &rest[..split],
        rest[split..].trim_start_matches(is_re_space),
    );
    if expr.is_empty() {
        return Err(err(i, USAGE));
    }
    let at_ms =
        parse_duration(at).map_err(|e| err(i, format!("invalid evaluation time {at:?}: {e}")))?;

    let mut series: Vec<(Labels, f64)> = Vec::new();
    let mut scalar = None;
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let line = lines[j];
        j += 1;
        if let Some(v) = go_parse_number(line) {
            if !series.is_empty() {
                return Err(err(
                    j - 1,
                    "a bare number (scalar result) cannot follow expected series",
                ));
            }
            // test.go stops reading expectations after a scalar.
            scalar = Some(v);
            break;
        }
        let desc = parse_series_desc(line).map_err(|e| err(j - 1, e))?;
        let labels = desc.labels(true).map_err(|e| err(j - 1, e))?;
        let value = match desc.values.as_slice() {
            [Some(v)] => *v,
            [] => {
                return Err(err(
                    j - 1,
                    format!(
                        "expected series {labels} has no value (or is this meant to be a command? end the eval block with a blank line)"
                    ),
                ));
            }
            [None] => {
                return Err(err(j - 1, "an expected value cannot be omitted (`_`)"));
            }
            _ => {
                return Err(err(
                    j - 1,
                    "expecting multiple values in instant evaluation not allowed",
                ));
            }
        };
        series.push((labels, value));
    }
    let expected = match scalar {
        Some(v) => Expected::Scalar(v),
        None => Expected::Series(series),
    };
    let eval = Eval {
        line: i + 1,
        expr: expr.to_string(),
        at_ms,
        ordered,
        expect_fail,
        expected,
    };
    Ok((eval, j))
}

/// Parses a duration as Prometheus's `model.ParseDuration`; milliseconds. On top of
/// ODIN's duration syntax, Prometheus refuses durations that overflow nanoseconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let ms = crate::model::parse_duration_ms(s)?;
    if ms.checked_mul(1_000_000).is_none() {
        return Err("duration out of range".into());
    }
    Ok(ms)
}

// ---------------------------------------------------------------------------
// Series descriptions
// ---------------------------------------------------------------------------

/// A parsed series description: `metric{labels} values…`.
struct SeriesDesc {
    /// The metric name, when one precedes the label set.
    name: Option<String>,
    /// The label pairs in the braces, as written.
    pairs: Vec<(String, String)>,
    /// One entry per step: `None` where the value is omitted (`_`).
    values: Vec<Option<f64>>,
}

impl SeriesDesc {
    /// The label set, with the metric name as `__name__` (overriding a `__name__` in
    /// the braces, as Prometheus does). Duplicate names are refused. Empty values are
    /// refused for expectations (`strict`: Prometheus would keep them, so no result
    /// could ever match) and dropped otherwise (Prometheus's storage drops them).
    fn labels(&self, strict: bool) -> Result<Labels, String> {
        let mut seen = HashSet::new();
        for (n, v) in &self.pairs {
            if !seen.insert(n.as_str()) {
                return Err(format!("duplicate label name {n:?}"));
            }
            if strict && v.is_empty() {
                return Err(format!(
                    "label {n:?} has an empty value; no result series can match it"
                ));
            }
        }
        let mut pairs: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .filter(|(n, _)| self.name.is_none() || n != "__name__")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Some(name) = &self.name {
            pairs.push(("__name__", name.as_str()));
        }
        Ok(Labels::from_pairs(pairs))
    }
}

/// A character cursor over one line, for error positions.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The character at the cursor.
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    /// The character after the one at the cursor.
    fn peek2(&self) -> Option<char> {
        self.s[self.pos..].chars().nth(1)
    }

    /// Consumes and returns the character at the cursor.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Consumes `c` if it is at the cursor.
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Consumes characters while `f` holds; returns them.
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    /// The 1-based character column of the cursor.
    fn col(&self) -> usize {
        self.s[..self.pos].chars().count() + 1
    }

    /// An error message pointing at the cursor.
    fn error(&self, what: impl std::fmt::Display) -> String {
        format!("column {}: {what}", self.col())
    }

    /// Describes the character at the cursor for messages.
    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "end of line".into(),
        }
    }
}

/// The PromQL lexer's space characters.
fn is_lex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The PromQL lexer's letters (underscore included).
fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

/// The PromQL lexer's letters and digits.
fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

/// A series and its values as a `load` line gives them (promtool's `input_series`
/// is read the same way): the labels (name included, empty values dropped) and one
/// entry per step, `None` where a step is skipped.
pub fn parse_series(description: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let d = parse_series_desc(description)?;
    let mut pairs = d.pairs;
    if let Some(name) = d.name {
        pairs.push(("__name__".to_string(), name));
    }
    Ok((
        Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        d.values,
    ))
}

/// Parses a series description as Prometheus 2.42's `parser.ParseSeriesDesc`.
fn parse_series_desc(line: &str) -> Result<SeriesDesc, String> {
    let mut cur = Cursor { s: line, pos: 0 };
    let name = match cur.peek() {
        Some(c) if is_alpha(c) || c == ':' => {
            let word = cur.take_while(|c| is_alnum(c) || c == ':');
            let lower = word.to_lowercase();
            if lower == "inf" || lower == "nan" {
                return Err(format!(
                    "column 1: expected a metric name or \"{{\", found the number {word:?}"
                ));
            }
            if NON_METRIC_KEYWORDS.contains(&lower.as_str()) {
                return Err(format!(
                    "column 1: the keyword {word:?} cannot be used as a metric name here"
                ));
            }
            Some(word.to_string())
        }
        Some('{') => None,
        _ => {
            return Err(cur.error(format_args!(
                "expected a metric name or \"{{\", found {}",
                cur.found()
            )));
        }
    };
    let pairs = if cur.peek() == Some('{') {
        parse_label_set(&mut cur)?
    } else {
        Vec::new()
    };
    let mut values = Vec::new();
    loop {
        if cur.peek().is_none() {
            break;
        }
        if cur.take_while(is_lex_space).is_empty() {
            return Err(cur.error(format_args!(
                "expected a space before the series values, found {}",
                cur.found()
            )));
        }
        if cur.peek().is_none() {
            break;
        }
        parse_series_item(&mut cur, &mut values)?;
        if values.len() as u64 > MAX_VALUES_PER_SERIES {
            return Err(format!(
                "series expands to more than {MAX_VALUES_PER_SERIES} values"
            ));
        }
    }
    Ok(SeriesDesc {
        name,
        pairs,
        values,
    })
}

/// Parses `{name="value", …}` (the cursor is on the `{`).
fn parse_label_set(cur: &mut Cursor<'_>) -> Result<Vec<(String, String)>, String> {
    cur.bump();
    let mut pairs = Vec::new();
    cur.take_while(is_lex_space);
    if cur.eat('}') {
        return Ok(pairs);
    }
    loop {
        cur.take_while(is_lex_space);
        if !cur.peek().is_some_and(is_alpha) {
            return Err(cur.error(format_args!(
                "expected a label name or \"}}\" in the label set, found {}",
                cur.found()
            )));
        }
        let name = cur.take_while(is_alnum).to_string();
        cur.take_while(is_lex_space);
        if !cur.eat('=') {
            return Err(cur.error(format_args!(
                "expected \"=\" after label name {name:?}, found {}",
                cur.found()
            )));
        }
        if cur.peek() == Some('~') {
            return Err(cur.error("a label set only takes \"=\", not \"=~\""));
        }
        cur.take_while(is_lex_space);
        let value = parse_string(cur)?;
        pairs.push((name, value));
        cur.take_while(is_lex_space);
        if cur.eat('}') {
            return Ok(pairs);
        }
        if !cur.eat(',') {
            return Err(cur.error(format_args!(
                "expected \",\" or \"}}\" in the label set, found {}",
                cur.found()
            )));
        }
        cur.take_while(is_lex_space);
        if cur.eat('}') {
            return Ok(pairs);
        }
    }
}

/// Parses a quoted PromQL string and unquotes it as Prometheus's `strutil.Unquote`:
/// `"…"` and `'…'` take Go escapes (`\n`, `\\`, the own quote, `\x41`, `\101`,
/// `\u00e9`, `\U0001F600`…), `` `…` `` is raw.
fn parse_string(cur: &mut Cursor<'_>) -> Result<String, String> {
    let start_col = cur.col();
    let quote = match cur.peek() {
        Some(q @ ('"' | '\'' | '`')) => q,
        _ => {
            return Err(cur.error(format_args!(
                "expected a quoted label value, found {}",
                cur.found()
            )));
        }
    };
    cur.bump();
    let unterminated = || format!("column {start_col}: unterminated quoted string");
    let mut out: Vec<u8> = Vec::new();
    loop {
        let c = cur.bump().ok_or_else(unterminated)?;
        if c == '\u{FFFD}' {
            // Go's lexer sees the replacement character as an invalid UTF-8 rune.
            return Err(cur.error("invalid UTF-8 rune in string"));
        }
        if c == quote {
            break;
        }
        if c != '\\' || quote == '`' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = cur.bump().ok_or_else(unterminated)?;
        match e {
            'a' => out.push(0x07),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(0x0b),
            '\\' => out.push(b'\\'),
            q if q == quote => out.push(q as u8),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or_default();
                for _ in 0..2 {
                    let d = cur
                        .bump()
                        .and_then(|c| c.to_digit(8))
                        .ok_or_else(|| cur.error("illegal character in octal escape sequence"))?;
                    v = v * 8 + d;
                }
                let byte = u8::try_from(v)
                    .map_err(|_| cur.error("octal escape sequence is above \\377"))?;
                out.push(byte);
            }
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v: u32 = 0;
                for _ in 0..n {
                    let d = cur.bump().and_then(|c| c.to_digit(16)).ok_or_else(|| {
                        cur.error("illegal character in hexadecimal escape sequence")
                    })?;
                    v = v * 16 + d;
                }
                if e == 'x' {
                    out.push(u8::try_from(v).unwrap_or_default());
                } else {
                    let c = char::from_u32(v).ok_or_else(|| {
                        cur.error("escape sequence is an invalid Unicode code point")
                    })?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            other => {
                return Err(cur.error(format_args!("unknown escape sequence \\{other}")));
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| format!("column {start_col}: string is not valid UTF-8 once unescaped"))
}

/// A token of a value item (Prometheus's `lexValueSequence`).
#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `x`, before a repetition count.
    Times,
    /// `_`, an omitted value.
    Blank,
    /// Digits with optional fraction and exponent, or `inf`/`nan` in any case.
    Number(&'a str),
    /// Any other word; only `stale` is a valid value.
    Ident(&'a str),
}

/// Parses one space-free value item and appends what it expands to.
fn parse_series_item(cur: &mut Cursor<'_>, values: &mut Vec<Option<f64>>) -> Result<(), String> {
    let start_col = cur.col();
    let start = cur.pos;
    let mut toks = Vec::new();
    while let Some(c) = cur.peek() {
        if is_lex_space(c) {
            break;
        }
        let tok = match c {
            '+' => {
                cur.bump();
                Tok::Add
            }
            '-' => {
                cur.bump();
                Tok::Sub
            }
            'x' => {
                cur.bump();
                Tok::Times
            }
            '_' => {
                cur.bump();
                Tok::Blank
            }
            c if c.is_ascii_digit()
                || (c == '.' && cur.peek2().is_some_and(|d| d.is_ascii_digit())) =>
            {
                Tok::Number(scan_number(cur)?)
            }
            c if is_alpha(c) => {
                let word = cur.take_while(|c| is_alnum(c) || c == ':');
                match word.to_lowercase().as_str() {
                    "inf" | "nan" => Tok::Number(word),
                    _ => Tok::Ident(word),
                }
            }
            _ => {
                return Err(cur.error(format_args!("unexpected character in series values: {c:?}")));
            }
        };
        toks.push(tok);
    }
    let item = &cur.s[start..cur.pos];
    let bad = |why: &str| format!("column {start_col}: invalid series value {item:?}: {why}");

    let repetitions = |t: &Tok<'_>| -> Result<u64, String> {
        match t {
            Tok::Number(n) => n
                .parse::<u64>()
                .map_err(|_| bad("the repetition count after \"x\" must be a whole number")),
            _ => Err(bad("expected a repetition count after \"x\"")),
        }
    };
    let check_count = |n: u64| -> Result<(), String> {
        if n >= MAX_VALUES_PER_SERIES {
            Err(format!(
                "column {start_col}: repetition count {n} is too large (the limit is {MAX_VALUES_PER_SERIES} values)"
            ))
        } else {
            Ok(())
        }
    };

    if toks.first() == Some(&Tok::Blank) {
        match &toks[1..] {
            [] => values.push(None),
            [Tok::Times, n] => {
                let n = repetitions(n)?;
                check_count(n)?;
                values.extend((0..n).map(|_| None));
            }
            _ => return Err(bad("expected \"_\" or \"_x<count>\"")),
        }
        return Ok(());
    }

    let number = |t: &str| go_parse_number(t).ok_or_else(|| bad("error parsing number"));
    let (first, used) = match toks.as_slice() {
        [Tok::Ident(w), ..] if *w == "stale" => (stale_nan(), 1),
        [Tok::Ident(w), ..] => {
            return Err(bad(&format!("expected a number or \"stale\", found {w:?}")));
        }
        [Tok::Number(n), ..] => (number(n)?, 1),
        [Tok::Add, Tok::Number(n), ..] => (number(n)?, 2),
        [Tok::Sub, Tok::Number(n), ..] => (-number(n)?, 2),
        _ => return Err(bad("expected a number or \"stale\"")),
    };
    match &toks[used..] {
        [] => values.push(Some(first)),
        [Tok::Times, n] => {
            let n = repetitions(n)?;
            check_count(n)?;
            values.extend((0..=n).map(|_| Some(first)));
        }
        [
            sign @ (Tok::Add | Tok::Sub),
            Tok::Number(step),
            Tok::Times,
            n,
        ] => {
            let step = number(step)?;
            let step = if *sign == Tok::Sub { -step } else { step };
            let n = repetitions(n)?;
            check_count(n)?;
            let mut v = first;
            for _ in 0..=n {
                values.push(Some(v));
                v += step;
            }
        }
        _ => {
            return Err(bad(
                "expected <value>, <value>x<count> or <value>+<step>x<count>",
            ));
        }
    }
    Ok(())
}

/// Scans a number token as Prometheus 2.42's lexer does inside a series
/// description: digits, an optional fraction, an optional exponent; no hexadecimal.
/// It may be followed only by `x` or a non-alphanumeric character.
fn scan_number<'a>(cur: &mut Cursor<'a>) -> Result<&'a str, String> {
    let start = cur.pos;
    let col = cur.col();
    cur.take_while(|c| c.is_ascii_digit());
    if cur.eat('.') {
        cur.take_while(|c| c.is_ascii_digit());
    }
    if cur.eat('e') || cur.eat('E') {
        if !cur.eat('+') {
            cur.eat('-');
        }
        cur.take_while(|c| c.is_ascii_digit());
    }
    match cur.peek() {
        Some(c) if c != 'x' && is_alnum(c) => Err(format!(
            "column {col}: bad number syntax: {:?}",
            format!("{}{c}", &cur.s[start..cur.pos])
        )),
        _ => Ok(&cur.s[start..cur.pos]),
    }
}

// ---------------------------------------------------------------------------
// Go number parsing
// ---------------------------------------------------------------------------

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `strconv.ParseFloat(s, 64)`:
/// how test.go reads a bare expected number and how Prometheus's parser reads a
/// number token. `None` where both fail (including a float out of range).
fn go_parse_number(s: &str) -> Option<f64> {
    match crate::gostrconv::parse_int(s) {
        Some(n) => Some(n as f64),
        None => crate::gostrconv::parse_float(s),
    }
}

// ---------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------

/// test.go's `almostEqual`.
fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < f64::MIN_POSITIVE {
        return diff < EPSILON * f64::MIN_POSITIVE;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

/// Formats a value for messages.
fn fmt_value(v: f64) -> String {
    if is_stale_nan(v) {
        "NaN (stale marker)".into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

/// Lists (at most ten) series of a result for messages.
fn describe_result(elems: &[Element]) -> String {
    const SHOWN: usize = 10;
    let mut out = match elems.len() {
        0 => return "the result is empty".into(),
        1 => "the result has 1 series:".to_string(),
        n => format!("the result has {n} series:"),
    };
    for e in elems.iter().take(SHOWN) {
        out.push_str(&format!("\n    {} {}", e.labels, fmt_value(e.v)));
    }
    if elems.len() > SHOWN {
        out.push_str(&format!("\n    … and {} more", elems.len() - SHOWN));
    }
    out
}

/// test.go's `compareResult`.
fn compare(eval: &Eval, got: &Value) -> Result<(), String> {
    match (got, &eval.expected) {
        (Value::Matrix(_), _) => Err("received range result on instant evaluation".into()),
        (Value::String { .. }, _) => Err("unexpected result type string".into()),
        (Value::Scalar { v, .. }, Expected::Scalar(want)) => {
            if almost_equal(*want, *v) {
                Ok(())
            } else {
                Err(format!(
                    "expected scalar {} but got {}",
                    fmt_value(*want),
                    fmt_value(*v)
                ))
            }
        }
        (Value::Scalar { v, .. }, Expected::Series(want)) => Err(format!(
            "expected an instant vector of {} series but got scalar {}",
            want.len(),
            fmt_value(*v)
        )),
        (Value::Vector(elems), Expected::Scalar(want)) => Err(format!(
            "expected scalar {} but got an instant vector; {}",
            fmt_value(*want),
            describe_result(elems)
        )),
        (Value::Vector(elems), Expected::Series(want)) => compare_vector(eval.ordered, want, elems),
    }
}

/// Compares an instant vector with expected series.
fn compare_vector(ordered: bool, want: &[(Labels, f64)], elems: &[Element]) -> Result<(), String> {
    // Later lines for the same labels win, with their position, as in test.go's map.
    let mut expected: HashMap<&Labels, (usize, f64)> = HashMap::new();
    for (i, (labels, v)) in want.iter().enumerate() {
        expected.insert(labels, (i + 1, *v));
    }
    let mut seen: HashSet<&Labels> = HashSet::new();
    for (i, e) in elems.iter().enumerate() {
        let Some(&(pos, v)) = expected.get(&e.labels) else {
            return Err(format!(
                "unexpected series {} {} in result",
                e.labels,
                fmt_value(e.v)
            ));
        };
        if ordered && pos != i + 1 {
            return Err(format!(
                "expected series {} with {} at position {pos} but it was at {}",
                e.labels,
                fmt_value(v),
                i + 1
            ));
        }
        if !almost_equal(v, e.v) {
            return Err(format!(
                "expected {} for {} but got {}",
                fmt_value(v),
                e.labels,
                fmt_value(e.v)
            ));
        }
        seen.insert(&e.labels);
    }
    for (labels, _) in want {
        if !seen.contains(labels) {
            let v = expected.get(labels).map_or(f64::NAN, |&(_, v)| v);
            return Err(format!(
                "expected series {labels} with {} not found; {}",
                fmt_value(v),
                describe_result(elems)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gostrconv::GO_NAN_BITS;
    use crate::model::STALE_NAN_BITS;
    use crate::promql::value::SeriesPoints;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn only_eval(text: &str) -> Eval {
        let file = parse(text).unwrap();
        let evals: Vec<Eval> = file
            .commands
            .into_iter()
            .filter_map(|c| match c {
                Command::Eval(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(evals.len(), 1);
        evals.into_iter().next().unwrap()
    }

    fn values(item: &str) -> Vec<Option<f64>> {
        parse_series_desc(&format!("m {item}")).unwrap().values
    }

    fn vector(elems: &[(&[(&str, &str)], f64)]) -> Value {
        Value::Vector(
            elems
                .iter()
                .map(|(l, v)| Element {
                    labels: labels(l),
                    t: 0,
                    v: *v,
                })
                .collect(),
        )
    }

    #[test]
    fn load_expands_values_at_steps() {
        let file = parse(
            "load 5m\n  http_requests{job=\"api\", instance=\"0\"} 0+10x3 _ 7 _x2 stale -1-1x1\n",
        )
        .unwrap();
        let [Command::Load { step_ms, series }] = file.commands.as_slice() else {
            panic!("{file:?}")
        };
        assert_eq!(*step_ms, 300_000);
        assert_eq!(series.len(), 1);
        let (l, samples) = &series[0];
        assert_eq!(
            *l,
            labels(&[
                ("__name__", "http_requests"),
                ("job", "api"),
                ("instance", "0")
            ])
        );
        let got: Vec<(i64, u64)> = samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
        let want: Vec<(i64, u64)> = [
            (0, 0.0),
            (1, 10.0),
            (2, 20.0),
            (3, 30.0),
            (5, 7.0),
            (8, stale_nan()),
            (9, -1.0),
            (10, -2.0),
        ]
        .iter()
        .map(|&(step, v)| (step * 300_000, f64::to_bits(v)))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn value_items() {
        assert_eq!(values("1x3"), vec![Some(1.0); 4]);
        assert_eq!(values("_x3"), vec![None; 3]);
        assert_eq!(values("_"), vec![None]);
        assert_eq!(values("5-2x2"), vec![Some(5.0), Some(3.0), Some(1.0)]);
        assert_eq!(values("+5 -5"), vec![Some(5.0), Some(-5.0)]);
        assert_eq!(
            values("1e3 1E-3 .5 2. 1.5e+2"),
            vec![Some(1000.0), Some(0.001), Some(0.5), Some(2.0), Some(150.0)]
        );
        // A leading zero means octal, as Go's ParseInt(s, 0, 64) reads it.
        assert_eq!(values("010 08"), vec![Some(8.0), Some(8.0)]);
        // No hexadecimal in series values: "0x10" is 0 repeated 11 times.
        assert_eq!(values("0x10"), vec![Some(0.0); 11]);
        let v = values("Inf -Inf inF NaN nan +Inf stale");
        assert_eq!(v[0], Some(f64::INFINITY));
        assert_eq!(v[1], Some(f64::NEG_INFINITY));
        assert_eq!(v[2], Some(f64::INFINITY));
        assert_eq!(v[3].unwrap().to_bits(), GO_NAN_BITS);
        assert!(v[4].unwrap().is_nan());
        assert_eq!(v[5], Some(f64::INFINITY));
        assert!(is_stale_nan(v[6].unwrap()));
        // Sequences add the step up, as Go does (not a + i*b).
        let v = values("0+0.1x3");
        let mut acc = 0.0;
        for x in v {
            assert_eq!(x.unwrap().to_bits(), f64::to_bits(acc));
            acc += 0.1;
        }
        assert_eq!(values("1  2\t3"), vec![Some(1.0), Some(2.0), Some(3.0)]);
        assert_eq!(values(""), Vec::<Option<f64>>::new());
    }

    #[test]
    fn bad_value_items() {
        for bad in [
            "1+2", "x3", "1x", "1x2.5", "1xInf", "5m", "1e", "foo", "stalex2", "+-1", "1x2x3",
            "_1", "0x1f", "1.2.3", "#1", "1,2", "-stale", "1e400",
        ] {
            assert!(
                parse_series_desc(&format!("m {bad}")).is_err(),
                "{bad:?} should not parse"
            );
        }
        assert!(parse_series_desc("m{a=\"b\"}1").is_err());
    }

    #[test]
    fn label_sets() {
        let l = |s: &str| parse_series_desc(s).unwrap().labels(true).unwrap();
        assert_eq!(l("{a=\"b\"} 1"), labels(&[("a", "b")]));
        assert_eq!(
            l("{ a = 'b' , c=`d\\n`, } 1"),
            labels(&[("a", "b"), ("c", "d\\n")])
        );
        assert_eq!(l("{} 1"), Labels::empty());
        assert_eq!(
            l(r#"{a="q\"\\\n\t\x41\101\u00e9\U0001F600"} 1"#),
            labels(&[("a", "q\"\\\n\tAAé😀")])
        );
        assert_eq!(l(r"{a='it\'s'} 1"), labels(&[("a", "it's")]));
        assert_eq!(
            l("node_namespace_pod:kube_pod_info:{a=\"b\"} 1"),
            labels(&[
                ("__name__", "node_namespace_pod:kube_pod_info:"),
                ("a", "b")
            ])
        );
        // The metric name overrides a __name__ label; keywords can be metric names.
        assert_eq!(l("sum{__name__=\"x\"} 1"), labels(&[("__name__", "sum")]));
        assert_eq!(l("stale 1"), labels(&[("__name__", "stale")]));
        for bad in [
            r#"{a="b" 1"#,
            r#"{a=~"b"} 1"#,
            r#"{a!="b"} 1"#,
            r#"{a="b",,} 1"#,
            r#"{a:b="c"} 1"#,
            r#"{a="\'"} 1"#,
            r#"{a="\q"} 1"#,
            r#"{a="\400"} 1"#,
            r#"{a="\uD800"} 1"#,
            r#"{a="\xff"} 1"#,
            r#"{a="b} 1"#,
            r#"{a=b} 1"#,
            "on 1",
            "bool{a=\"b\"} 1",
            "NaN 1",
            "1 2",
            "foo(1) 2",
        ] {
            assert!(
                parse_series_desc(bad).and_then(|d| d.labels(true)).is_err(),
                "{bad:?} should not parse"
            );
        }
        // Duplicates are refused; empty values only in expectations.
        assert!(
            parse_series_desc("{a=\"1\",a=\"2\"} 1")
                .unwrap()
                .labels(false)
                .is_err()
        );
        let d = parse_series_desc("m{a=\"\"} 1").unwrap();
        assert!(d.labels(true).is_err());
        assert_eq!(d.labels(false).unwrap(), labels(&[("__name__", "m")]));
    }

    #[test]
    fn durations() {
        for (s, ms) in [
            ("0", 0),
            ("0s", 0),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("10s", 10_000),
            ("100ms", 100),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("1m1s1ms", 61_001),
            ("8000s", 8_000_000),
        ] {
            assert_eq!(parse_duration(s), Ok(ms), "{s}");
        }
        for bad in [
            "", "5", "1.5h", "30m1h", "5mm", "1s1s", "-5m", "5 m", "1000y", "m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_numbers() {
        for (s, v) in [
            ("12340000", 12_340_000.0),
            ("0.00001234", 0.00001234),
            ("-0.0000002", -0.0000002),
            ("0x1f", 31.0),
            ("0X1F", 31.0),
            ("010", 8.0),
            ("0o17", 15.0),
            ("0b101", 5.0),
            ("1_000", 1000.0),
            ("1_000.5", 1000.5),
            ("+Inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("Infinity", f64::INFINITY),
            ("0x1p-2", 0.25),
            ("0x1.8p1", 3.0),
            ("-0x10", -16.0),
            ("9223372036854775807", 9_223_372_036_854_775_807.0),
            ("-9223372036854775808", -9_223_372_036_854_775_808.0),
            ("99999999999999999999", 1e20),
            ("1e308", 1e308),
            ("2.", 2.0),
            (".5", 0.5),
            ("1E+2", 100.0),
            ("1.e5", 1e5),
            ("1_23.50_0_0e+1_2", 1.235e14),
        ] {
            assert_eq!(go_parse_number(s), Some(v), "{s}");
        }
        assert!(go_parse_number("NaN").unwrap().is_nan());
        for bad in [
            "", "+", "1e400", "0x", "0x1.8", "1__0", "_1", "1_", "1e", "+NaN", "inf1", "1 2",
            "--1", "0x1p", "1.2.3", "{}", "infin",
        ] {
            assert_eq!(go_parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn eval_headers() {
        let e = only_eval("eval instant at 50m sum(foo) by (a)\n  {a=\"1\"} 3\n");
        assert_eq!(e.line, 1);
        assert_eq!(e.expr, "sum(foo) by (a)");
        assert_eq!(e.at_ms, 3_000_000);
        assert!(!e.ordered && !e.expect_fail);
        assert_eq!(
            e.expected,
            Expected::Series(vec![(labels(&[("a", "1")]), 3.0)])
        );

        let e = only_eval("\n\neval_ordered   instant   at  1h30m   topk(1, x)\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.at_ms, 5_400_000);
        assert_eq!(e.expr, "topk(1, x)");
        assert!(e.ordered);
        assert_eq!(e.expected, Expected::Series(vec![]));

        let e = only_eval("eval_fail instant at 0m ceil({__name__=~'a|b'})\n");
        assert!(e.expect_fail);
        assert_eq!(e.at_ms, 0);

        let e = only_eval("eval instant at 50m 1 - -1\n\t2\n");
        assert_eq!(e.expr, "1 - -1");
        assert_eq!(e.expected, Expected::Scalar(2.0));

        for bad in [
            "eval instant 5m foo",
            "eval instant at 5m",
            "eval instant at foo",
            "eval range at 5m foo",
            "eval_foo instant at 5m foo",
            "EVAL instant at 5m foo",
            "evaluate instant at 5m foo",
            "eval instant at 5x foo",
            "evalinstant at 5m foo",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.line, 1, "{bad}");
        }
    }

    #[test]
    fn commands_and_errors() {
        let file = parse(
            "# comment\nLOAD 1m\n", // word is case-insensitive but `load` is not
        );
        assert_eq!(file.unwrap_err().line, 2);

        let file = parse("clear\nCLEAR now\n\nload 10s\n  a 1 2\n  b{x=\"y\"} 3\n").unwrap();
        assert_eq!(file.commands.len(), 3);
        assert_eq!(file.commands[0], Command::Clear);
        assert_eq!(file.commands[1], Command::Clear);

        let e = parse("load 5m\n  a 1\n  b{ 2\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("line 3: "), "{e}");

        assert_eq!(parse("foo\n").unwrap_err().line, 1);
        assert_eq!(parse("load\n").unwrap_err().line, 1);
        assert_eq!(parse("load 5\n").unwrap_err().line, 1);
        assert_eq!(parse("load 5m\n  {} 1\n").unwrap_err().line, 2);
        assert_eq!(parse("load 5m\n  a 1\nclear\n").unwrap_err().line, 3);

        // A comment ends a block; what follows must be a command.
        let e = parse("eval instant at 0 a\n  {} 1\n  # c\n  {} 2\n").unwrap_err();
        assert_eq!(e.line, 4);
        // After a scalar the block ends at once.
        assert_eq!(
            parse("eval instant at 0 1\n  1\n  2\n").unwrap_err().line,
            3
        );
        // Expectation errors.
        for (text, line) in [
            ("eval instant at 0 a\n  {} 1 2\n", 2),
            ("eval instant at 0 a\n  {}\n", 2),
            ("eval instant at 0 a\n  clear\n", 2),
            ("eval instant at 0 a\n  {} _\n", 2),
            ("eval instant at 0 a\n  {} 1\n  3\n", 3),
            ("eval instant at 0 a\n  {a=\"\"} 1\n", 2),
        ] {
            assert_eq!(parse(text).unwrap_err().line, line, "{text}");
        }
        // Windows line endings are fine.
        let file = parse("load 1m\r\n  a 1\r\n\r\neval instant at 0 a\r\n  a 1\r\n").unwrap();
        assert_eq!(file.commands.len(), 2);
    }

    #[test]
    fn duplicate_series_in_load_keep_the_last() {
        let file = parse("load 1m\n  a{x=\"1\"} 1 2\n  b 5\n  a{x=\"1\"} 3\n").unwrap();
        let [Command::Load { series, .. }] = file.commands.as_slice() else {
            panic!()
        };
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].1, vec![Sample::new(0, 3.0)]);
        assert_eq!(series[1].1, vec![Sample::new(0, 5.0)]);
    }

    #[test]
    fn check_vectors() {
        let e = only_eval("eval instant at 0 x\n  {a=\"1\"} 1\n  {a=\"2\"} 2\n");
        assert_eq!(
            check(&e, &vector(&[(&[("a", "2")], 2.0), (&[("a", "1")], 1.0)])),
            Ok(())
        );
        // Within the relative tolerance.
        assert_eq!(
            check(
                &e,
                &vector(&[(&[("a", "1")], 1.0000001), (&[("a", "2")], 2.0)])
            ),
            Ok(())
        );
        let msg = check(
            &e,
            &vector(&[(&[("a", "1")], 1.00001), (&[("a", "2")], 2.0)]),
        )
        .unwrap_err();
        assert!(
            msg.contains("expected 1.0 for {a=\"1\"} but got 1.00001"),
            "{msg}"
        );
        let msg = check(&e, &vector(&[(&[("a", "1")], 1.0)])).unwrap_err();
        assert!(
            msg.contains("expected series {a=\"2\"} with 2.0 not found"),
            "{msg}"
        );
        let msg = check(
            &e,
            &vector(&[
                (&[("a", "1")], 1.0),
                (&[("a", "2")], 2.0),
                (&[("a", "3")], 3.0),
            ]),
        )
        .unwrap_err();
        assert!(msg.contains("unexpected series {a=\"3\"}"), "{msg}");
        assert!(check(&e, &Value::Scalar { t: 0, v: 1.0 }).is_err());
        // The metric name is part of the identity.
        assert!(
            check(
                &e,
                &vector(&[
                    (&[("__name__", "x"), ("a", "1")], 1.0),
                    (&[("a", "2")], 2.0)
                ])
            )
            .is_err()
        );

        let empty = only_eval("eval instant at 0 x\n");
        assert_eq!(check(&empty, &Value::Vector(vec![])), Ok(()));
        assert!(check(&empty, &vector(&[(&[("a", "1")], 1.0)])).is_err());
    }

    #[test]
    fn check_ordered_nan_and_zero() {
        let e = only_eval("eval_ordered instant at 0 x\n  {a=\"1\"} NaN\n  {a=\"2\"} 0\n");
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert_eq!(
            check(&e, &vector(&[(&[("a", "1")], stale), (&[("a", "2")], 0.0)])),
            Ok(())
        );
        let msg = check(
            &e,
            &vector(&[(&[("a", "2")], 0.0), (&[("a", "1")], f64::NAN)]),
        )
        .unwrap_err();
        assert!(msg.contains("at position 2 but it was at 1"), "{msg}");
        // Near zero only (almost) exact equality counts.
        assert!(
            check(
                &e,
                &vector(&[(&[("a", "1")], f64::NAN), (&[("a", "2")], 1e-300)])
            )
            .is_err()
        );
        assert!(almost_equal(0.0, -0.0));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!almost_equal(f64::NAN, 1.0));
    }

    #[test]
    fn check_scalars_matrices_and_failures() {
        let e = only_eval("eval instant at 50m 12.34e6\n\t12340000\n");
        assert_eq!(
            check(
                &e,
                &Value::Scalar {
                    t: 3_000_000,
                    v: 12.34e6
                }
            ),
            Ok(())
        );
        let msg = check(&e, &Value::Scalar { t: 0, v: 1.0 }).unwrap_err();
        assert_eq!(msg, "expected scalar 12340000.0 but got 1.0");
        assert!(check(&e, &vector(&[(&[], 12.34e6)])).is_err());
        assert!(
            check(
                &e,
                &Value::String {
                    t: 0,
                    v: "x".into()
                }
            )
            .is_err()
        );

        let m = only_eval("eval instant at 1m foo[5m]\n");
        let matrix = Value::Matrix(vec![SeriesPoints {
            labels: labels(&[("__name__", "foo")]),
            points: vec![Sample::new(0, 1.0)],
        }]);
        assert_eq!(
            check(&m, &matrix),
            Err("received range result on instant evaluation".into())
        );

        let f = only_eval("eval_fail instant at 0m ceil(x)\n");
        assert!(check(&f, &Value::Vector(vec![])).is_err());
    }

    #[test]
    fn range_mode() {
        let e = only_eval("eval instant at 2m x\n  {a=\"1\"} 1\n");
        let series = |pts: &[(i64, f64)]| SeriesPoints {
            labels: labels(&[("a", "1")]),
            points: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        };
        let instant = vector(&[(&[("a", "1")], 1.0)]);
        let range = Value::Matrix(vec![series(&[
            (60_000, 0.0),
            (120_000, 1.0),
            (180_000, 2.0),
        ])]);
        assert_eq!(check_range_mode(&e, &instant, &range), Ok(()));
        let range = Value::Matrix(vec![series(&[(60_000, 1.0), (180_000, 1.0)])]);
        assert!(
            check_range_mode(&e, &instant, &range)
                .unwrap_err()
                .starts_with("range mode: ")
        );
        assert!(check_range_mode(&e, &instant, &instant).is_err());

        let s = only_eval("eval instant at 1m 1+1\n  2\n");
        let scalar = Value::Scalar { t: 60_000, v: 2.0 };
        let range = Value::Matrix(vec![SeriesPoints {
            labels: Labels::empty(),
            points: vec![
                Sample::new(0, 2.0),
                Sample::new(60_000, 2.0),
                Sample::new(120_000, 2.0),
            ],
        }]);
        assert_eq!(check_range_mode(&s, &scalar, &range), Ok(()));
        assert!(check_range_mode(&s, &scalar, &Value::Matrix(vec![])).is_err());

        let o = only_eval("eval_ordered instant at 0 x\n");
        assert_eq!(
            check_range_mode(&o, &Value::Vector(vec![]), &Value::Vector(vec![])),
            Ok(())
        );
    }
}
