//! A log pipeline run on one line at a time, with Loki's semantics
//! (`pkg/logql/log`): line filters, the `json` and `logfmt` parsers, `regexp`, label
//! filters, `drop`, `keep` and `decolorize`.
//!
//! What Loki does, and so this does:
//! - Parsed labels that collide with a stream label (or structured metadata) get the
//!   suffix `_extracted`; within a parser the last value of a key wins.
//! - A parser that fails keeps the line, with `__error__` (`JSONParserErr`,
//!   `LogfmtParserErr`) and `__error_details__`; a label filter that cannot convert
//!   its label keeps the line with `LabelFilterErr` (unless an error is already
//!   set) and counts as passed; a comparison with a missing label fails.
//!   `| __error__=""` drops lines with errors.
//! - `keep` always keeps `__error__` and `__error_details__`.
//!
//! Not built yet (compiling a pipeline with them is an error that says so):
//! `unpack`, `line_format`, `label_format`, `ip()` and pattern (`|>`) line
//! filters, and `json` with parameters.

use std::collections::BTreeMap;

use regex::Regex;

use super::ast::*;
use crate::template::{Fields, Template};

/// Where a label of a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Stream,
    Metadata,
    Parsed,
}

/// A line's labels as the pipeline builds them.
#[derive(Debug, Clone, Default)]
struct LineLabels {
    labels: BTreeMap<String, (String, Origin)>,
    error: Option<String>,
    details: Option<String>,
}

impl LineLabels {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "__error__" => self.error.as_deref(),
            "__error_details__" => self.details.as_deref(),
            _ => self.labels.get(name).map(|(v, _)| v.as_str()),
        }
    }

    /// Sets a parsed label, renamed `<name>_extracted` when it would replace a label
    /// of the stream or the structured metadata.
    fn set_parsed(&mut self, name: String, value: String) {
        let name = match self.labels.get(&name) {
            Some((_, Origin::Stream | Origin::Metadata)) => format!("{name}_extracted"),
            _ => name,
        };
        self.labels.insert(name, (value, Origin::Parsed));
    }

    fn set_error(&mut self, error: &str, details: String) {
        if self.error.is_none() {
            self.error = Some(error.to_string());
            self.details = Some(details);
        }
    }

    fn remove(&mut self, name: &str) {
        match name {
            "__error__" => self.error = None,
            "__error_details__" => self.details = None,
            _ => {
                self.labels.remove(name);
            }
        }
    }

    fn into_pairs(mut self) -> Vec<(String, String)> {
        // A parsed label of the same name gives way to the pipeline's own error.
        if self.error.is_some() {
            self.labels.remove("__error__");
        }
        if self.details.is_some() {
            self.labels.remove("__error_details__");
        }
        let mut out: Vec<(String, String)> =
            self.labels.into_iter().map(|(k, (v, _))| (k, v)).collect();
        if let Some(e) = self.error {
            out.push(("__error__".into(), e));
        }
        if let Some(d) = self.details {
            out.push(("__error_details__".into(), d));
        }
        out.sort();
        out
    }
}

enum Compiled {
    Line(LineFilter),
    Json,
    /// `| json name="path", …`: (label, path).
    JsonParams(Vec<(String, Vec<JsonStep>)>),
    Unpack,
    Logfmt {
        strict: bool,
        keep_empty: bool,
        /// (label, key): only these keys, under these names.
        params: Vec<(String, String)>,
    },
    Regexp(Regex),
    Pattern(Pattern),
    Labels(LabelFilter),
    Drop(Vec<NameOrMatcher>),
    Keep(Vec<NameOrMatcher>),
    Decolorize(Regex),
    LineFormat(Template),
    /// (label, what it becomes), every one computed from the labels before it.
    LabelFormat(Vec<(String, LabelSource)>),
}

/// What `label_format` sets a label to.
enum LabelSource {
    /// `dst=src`: another label's value, which goes.
    Rename(String),
    Template(Template),
}

/// A line filter, its alternatives compiled.
struct LineFilter {
    negated: bool,
    tests: Vec<LineTest>,
}

impl LineFilter {
    /// Whether the line passes: one alternative holds (none, when negated).
    fn keeps(&self, line: &str) -> bool {
        let hit = self.tests.iter().any(|t| match t {
            LineTest::Contains(s) => line.contains(s.as_str()),
            LineTest::Regex(re) => re.is_match(line),
            LineTest::Ip(ip) => ip.in_line(line),
            LineTest::Pattern(p) => p.matches(line),
        });
        hit != self.negated
    }
}

enum LineTest {
    /// `ip("…")`: the line holds an address the pattern matches.
    Ip(IpPattern),
    /// `|> "<_> GET <_>"`: the whole line matches the pattern.
    Pattern(Pattern),
    Contains(String),
    Regex(Regex),
}

/// A pipeline ready to run.
pub struct Pipeline {
    stages: Vec<Compiled>,
}

/// The ANSI escape sequences `decolorize` removes (the pattern Loki uses, from
/// acarl005/stripansi).
const ANSI: &str = r"[\x1B\x{9B}][\[\]()#;?]*(?:(?:(?:[a-zA-Z\d]*(?:;[a-zA-Z\d]*)*)?\x07)|(?:(?:\d{1,4}(?:;\d{0,4})*)?[\dA-PRZcf-ntqry=><~]))";

impl Pipeline {
    /// Compiles `stages`; a stage not built yet is an error naming it.
    pub fn new(stages: &[Stage]) -> Result<Pipeline, String> {
        let mut compiled = Vec::with_capacity(stages.len());
        for stage in stages {
            compiled.push(match stage {
                Stage::LineFilter { op, values } => Compiled::Line(line_filter(*op, values)?),
                Stage::Json(params) if params.is_empty() => Compiled::Json,
                Stage::Json(params) => Compiled::JsonParams(
                    params
                        .iter()
                        .map(|(label, path)| Ok((label.clone(), json_path(path)?)))
                        .collect::<Result<_, String>>()?,
                ),
                Stage::Unpack => Compiled::Unpack,
                Stage::Logfmt {
                    strict,
                    keep_empty,
                    params,
                } => Compiled::Logfmt {
                    strict: *strict,
                    keep_empty: *keep_empty,
                    params: params.clone(),
                },
                Stage::Regexp(re) => {
                    let re = Regex::new(re).map_err(|e| format!("invalid regexp {re:?}: {e}"))?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err("at least one named capture must be supplied".into());
                    }
                    Compiled::Regexp(re)
                }
                Stage::Pattern(p) => Compiled::Pattern(Pattern::new(p)?),
                Stage::LabelFilter(f) => {
                    check_label_filter(f)?;
                    Compiled::Labels(f.clone())
                }
                Stage::Drop(d) => Compiled::Drop(d.clone()),
                Stage::Keep(k) => Compiled::Keep(k.clone()),
                Stage::Decolorize => Compiled::Decolorize(ansi_regex()?),
                Stage::LineFormat(t) => Compiled::LineFormat(Template::parse(t)?),
                Stage::LabelFormat(items) => Compiled::LabelFormat(label_format(items)?),
            });
        }
        Ok(Pipeline { stages: compiled })
    }

    /// How many stages at the start are line filters.
    fn leading_line_filters(&self) -> usize {
        self.stages
            .iter()
            .take_while(|s| matches!(s, Compiled::Line(_)))
            .count()
    }

    /// Whether every stage is a line filter: then a line the pipeline keeps keeps
    /// its text, and its labels are its stream's and its metadata.
    pub fn only_filters_lines(&self) -> bool {
        self.leading_line_filters() == self.stages.len()
    }

    /// Whether `line` passes the pipeline's leading line filters.
    pub fn keeps_line(&self, line: &str) -> bool {
        self.stages[..self.leading_line_filters()]
            .iter()
            .all(|s| match s {
                Compiled::Line(f) => f.keeps(line),
                _ => true,
            })
    }

    /// Runs the pipeline on one line of a stream with `stream` labels and the
    /// entry's structured metadata: the line's labels (sorted, `__error__` and
    /// `__error_details__` among them where set) and its text, or `None` when a
    /// filter dropped it.
    pub fn process(
        &self,
        ts_ns: i64,
        stream: &[(String, String)],
        metadata: &[(String, String)],
        line: &str,
    ) -> Option<(Vec<(String, String)>, String)> {
        // The leading line filters read only the line: most lines a filtered query
        // reads stop there, before any label is copied.
        let leading = self.leading_line_filters();
        if !self.stages[..leading].iter().all(|s| match s {
            Compiled::Line(f) => f.keeps(line),
            _ => true,
        }) {
            return None;
        }
        let mut labels = LineLabels::default();
        for (k, v) in stream {
            // Labels that already carry an error (a pipeline run again on a
            // sample's labels, after `unwrap`) keep it as the error.
            match k.as_str() {
                "__error__" => labels.error = Some(v.clone()),
                "__error_details__" => labels.details = Some(v.clone()),
                _ => {
                    labels.labels.insert(k.clone(), (v.clone(), Origin::Stream));
                }
            }
        }
        // As Loki's `LabelsBuilder.Add`: metadata named as a stream label becomes
        // `<name>_extracted` (it never replaces the stream's), and metadata named as
        // the error labels sets them.
        for (k, v) in metadata {
            let name = if stream.iter().any(|(s, _)| s == k) {
                format!("{k}_extracted")
            } else {
                k.clone()
            };
            match name.as_str() {
                // An empty value is no error (Loki's `HasErr`).
                "__error__" | "__error_details__" if v.is_empty() => {}
                "__error__" => labels.error = Some(v.clone()),
                "__error_details__" => labels.details = Some(v.clone()),
                _ => {
                    labels.labels.insert(name, (v.clone(), Origin::Metadata));
                }
            }
        }
        let mut line = std::borrow::Cow::Borrowed(line);
        for stage in &self.stages[leading..] {
            match stage {
                Compiled::Line(f) => {
                    if !f.keeps(&line) {
                        return None;
                    }
                }
                Compiled::Json => json(&line, &mut labels),
                Compiled::JsonParams(params) => json_params(&line, params, &mut labels),
                Compiled::Unpack => {
                    if let Some(entry) = unpack(&line, &mut labels) {
                        line = std::borrow::Cow::Owned(entry);
                    }
                }
                Compiled::Logfmt {
                    strict,
                    keep_empty,
                    params,
                } => logfmt(&line, *strict, *keep_empty, params, &mut labels),
                Compiled::Regexp(re) => {
                    if let Some(caps) = re.captures(&line) {
                        for name in re.capture_names().flatten() {
                            let value = caps.name(name).map_or("", |m| m.as_str());
                            labels.set_parsed(name.to_string(), value.to_string());
                        }
                    }
                }
                Compiled::Pattern(p) => {
                    for (name, value) in p.captures(&line) {
                        labels.set_parsed(name.to_string(), value.to_string());
                    }
                }
                Compiled::Labels(f) => {
                    if !label_filter(f, &mut labels) {
                        return None;
                    }
                }
                Compiled::Drop(items) => {
                    for item in items {
                        match item {
                            NameOrMatcher::Name(n) => labels.remove(n),
                            NameOrMatcher::Matcher(m) => {
                                if m.matches(labels.get(&m.name).unwrap_or("")) {
                                    labels.remove(&m.name);
                                }
                            }
                        }
                    }
                }
                Compiled::Keep(items) => {
                    if !items.is_empty() {
                        let keep = |name: &str, value: &str| {
                            items.iter().any(|i| match i {
                                NameOrMatcher::Name(n) => n == name,
                                NameOrMatcher::Matcher(m) => m.name == name && m.matches(value),
                            })
                        };
                        labels.labels.retain(|k, (v, _)| keep(k, v));
                    }
                }
                Compiled::Decolorize(ansi) => {
                    if let std::borrow::Cow::Owned(s) = ansi.replace_all(&line, "") {
                        line = std::borrow::Cow::Owned(s);
                    }
                }
                // A template that fails leaves the line as it was and says why.
                Compiled::LineFormat(t) => match t.render(&labels, &line, ts_ns) {
                    Ok(formatted) => line = std::borrow::Cow::Owned(formatted),
                    Err(e) => labels.set_error("TemplateFormatErr", e),
                },
                Compiled::LabelFormat(items) => {
                    let mut set: Vec<(&str, Option<String>)> = Vec::with_capacity(items.len());
                    let mut renamed: Vec<&str> = Vec::new();
                    for (dst, source) in items {
                        match source {
                            LabelSource::Rename(src) => {
                                if let Some(v) = labels.get(src) {
                                    set.push((dst, Some(v.to_string())));
                                    renamed.push(src);
                                }
                            }
                            LabelSource::Template(t) => match t.render(&labels, &line, ts_ns) {
                                Ok(v) => set.push((dst, Some(v))),
                                Err(e) => {
                                    labels.set_error("TemplateFormatErr", e);
                                    set.push((dst, None));
                                }
                            },
                        }
                    }
                    for src in renamed {
                        labels.remove(src);
                    }
                    for (dst, value) in set {
                        match value {
                            Some(v) => {
                                labels.labels.insert(dst.to_string(), (v, Origin::Parsed));
                            }
                            None => labels.remove(dst),
                        }
                    }
                }
            }
        }
        Some((labels.into_pairs(), line.into_owned()))
    }
}

/// A `| pattern` expression: literals and captures (`<name>`, or `<_>` for text
/// to skip), as Loki matches them (`pkg/logql/log/pattern`): a leading literal must
/// start the line; each capture takes the text up to the next occurrence of the
/// literal after it; a capture whose literal is not found, or that ends the
/// pattern, takes the rest of the line, and matching stops there.
struct Pattern {
    parts: Vec<PatternPart>,
}

#[derive(Debug, PartialEq)]
enum PatternPart {
    Literal(String),
    /// `None`: `<_>`.
    Capture(Option<String>),
}

impl Pattern {
    /// The literals and captures of a pattern's text.
    fn parts(text: &str) -> Vec<PatternPart> {
        let mut parts: Vec<PatternPart> = Vec::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let capture = (c == '<')
                .then(|| {
                    let end = rest.find('>')?;
                    let name = &rest[1..end];
                    let first = name.chars().next()?;
                    (first.is_ascii_alphabetic() || first == '_')
                        .then_some(())
                        .filter(|_| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                        .map(|_| (name, end))
                })
                .flatten();
            match capture {
                Some((name, end)) => {
                    parts.push(PatternPart::Capture(
                        (name != "_").then(|| name.to_string()),
                    ));
                    rest = &rest[end + 1..];
                }
                None => {
                    match parts.last_mut() {
                        Some(PatternPart::Literal(l)) => l.push(c),
                        _ => parts.push(PatternPart::Literal(c.to_string())),
                    }
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        parts
    }

    fn new(text: &str) -> Result<Pattern, String> {
        let parts = Pattern::parts(text);
        let names: Vec<&String> = parts
            .iter()
            .filter_map(|p| match p {
                PatternPart::Capture(Some(n)) => Some(n),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err("at least one capture is required".into());
        }
        // Loki checks the parts pairwise from the first (0 and 1, 2 and 3, …).
        for pair in parts.chunks(2) {
            if let [PatternPart::Capture(_), PatternPart::Capture(_)] = pair {
                return Err("found consecutive capture: invalid expression".into());
            }
        }
        let mut seen = std::collections::HashSet::new();
        for n in names {
            if !seen.insert(n) {
                return Err(format!("duplicate capture name ({n}): invalid expression"));
            }
        }
        Ok(Pattern { parts })
    }

    /// A pattern of a `|>` line filter: `<_>` (or named captures, which capture
    /// nothing here) between literals; no capture is required.
    fn for_filter(text: &str) -> Result<Pattern, String> {
        let parts = Pattern::parts(text);
        if parts
            .windows(2)
            .any(|w| matches!(w, [PatternPart::Capture(_), PatternPart::Capture(_)]))
        {
            return Err("found consecutive capture: invalid expression".into());
        }
        Ok(Pattern { parts })
    }

    /// Whether the whole line matches: a leading literal starts it, each later
    /// literal follows in order, and a trailing literal ends it.
    fn matches(&self, line: &str) -> bool {
        let mut rest = line;
        let mut parts = self.parts.as_slice();
        if let Some(PatternPart::Literal(first)) = parts.first() {
            let Some(after) = rest.strip_prefix(first.as_str()) else {
                return false;
            };
            rest = after;
            parts = &parts[1..];
        }
        while let Some(part) = parts.first() {
            match part {
                PatternPart::Capture(_) => parts = &parts[1..],
                PatternPart::Literal(l) if parts.len() == 1 => return rest.ends_with(l.as_str()),
                PatternPart::Literal(l) => match rest.find(l.as_str()) {
                    Some(at) => {
                        rest = &rest[at + l.len()..];
                        parts = &parts[1..];
                    }
                    None => return false,
                },
            }
        }
        // Ends with a capture (which takes the rest), or with a literal met above.
        !matches!(self.parts.last(), Some(PatternPart::Literal(_))) || rest.is_empty()
    }

    /// The named captures `line` gives, in order; none for an empty line or one
    /// that does not start with the pattern's leading literal.
    fn captures<'l>(&self, line: &'l str) -> Vec<(&str, &'l str)> {
        let mut out = Vec::new();
        if line.is_empty() {
            return out;
        }
        let mut parts = self.parts.as_slice();
        let mut rest = line;
        if let Some(PatternPart::Literal(first)) = parts.first() {
            if !rest.starts_with(first.as_str()) {
                return out;
            }
            rest = &rest[first.len()..];
            parts = &parts[1..];
        }
        while let Some(PatternPart::Capture(name)) = parts.first() {
            let Some(PatternPart::Literal(next)) = parts.get(1) else {
                // The pattern ends with this capture: the rest of the line.
                if let Some(n) = name {
                    out.push((n.as_str(), rest));
                }
                return out;
            };
            let Some(at) = rest.find(next.as_str()) else {
                if let Some(n) = name {
                    out.push((n.as_str(), rest));
                }
                return out;
            };
            if let Some(n) = name {
                out.push((n.as_str(), &rest[..at]));
            }
            rest = &rest[at + next.len()..];
            parts = &parts[2..];
        }
        out
    }
}

fn ansi_regex() -> Result<Regex, String> {
    Regex::new(ANSI).map_err(|e| format!("decolorize: {e}"))
}

/// `label_format`'s items compiled; a label named twice is an error, as in Loki.
fn label_format(items: &[LabelFormat]) -> Result<Vec<(String, LabelSource)>, String> {
    let mut out: Vec<(String, LabelSource)> = Vec::with_capacity(items.len());
    for item in items {
        let (dst, source) = match item {
            LabelFormat::Rename { dst, src } => (dst, LabelSource::Rename(src.clone())),
            LabelFormat::Template { dst, template } => {
                (dst, LabelSource::Template(Template::parse(template)?))
            }
        };
        if out.iter().any(|(d, _)| d == dst) {
            return Err(format!(
                "multiple label name '{dst}' not allowed in a single format operation"
            ));
        }
        out.push((dst.clone(), source));
    }
    Ok(out)
}

impl Fields for LineLabels {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

fn line_filter(op: LineFilterOp, values: &[LineFilterValue]) -> Result<LineFilter, String> {
    let negated = matches!(
        op,
        LineFilterOp::NotContains | LineFilterOp::NotMatches | LineFilterOp::NotPattern
    );
    let tests = values
        .iter()
        .map(|v| match (op, v) {
            (LineFilterOp::Contains | LineFilterOp::NotContains, LineFilterValue::Ip(p)) => {
                IpPattern::new(p).map(LineTest::Ip)
            }
            (_, LineFilterValue::Ip(_)) => {
                Err("ip() can only be used with the |= and != line filters".to_string())
            }
            (LineFilterOp::Matches | LineFilterOp::NotMatches, LineFilterValue::Text(t)) => {
                Regex::new(t)
                    .map(LineTest::Regex)
                    .map_err(|e| format!("invalid regexp {t:?}: {e}"))
            }
            (LineFilterOp::Pattern | LineFilterOp::NotPattern, LineFilterValue::Text(t)) => {
                Pattern::for_filter(t).map(LineTest::Pattern)
            }
            (_, LineFilterValue::Text(t)) => Ok(LineTest::Contains(t.clone())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LineFilter { negated, tests })
}

fn check_label_filter(f: &LabelFilter) -> Result<(), String> {
    match f {
        LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
            check_label_filter(a)?;
            check_label_filter(b)
        }
        LabelFilter::Ip { pattern, .. } => IpPattern::new(pattern).map(|_| ()),
        LabelFilter::String(_) | LabelFilter::Compare { .. } => Ok(()),
    }
}

/// Whether the line passes. A comparison with a missing label fails; one whose
/// label does not convert passes, with `LabelFilterErr`.
fn label_filter(f: &LabelFilter, labels: &mut LineLabels) -> bool {
    match f {
        LabelFilter::Or(a, b) => label_filter(a, labels) || label_filter(b, labels),
        LabelFilter::And(a, b) => {
            // Both sides run (a conversion error on either is recorded).
            let left = label_filter(a, labels);
            let right = label_filter(b, labels);
            left && right
        }
        LabelFilter::String(m) => m.matches(labels.get(&m.name).unwrap_or("")),
        LabelFilter::Compare { name, op, value } => {
            let Some(text) = labels.get(name).map(str::to_string) else {
                return false;
            };
            // Read as Loki reads it: untrimmed, with Go's parsers and their errors.
            let compared = match value {
                CompareValue::Number(want) => crate::gostrconv::parse_float_or_go_error(&text)
                    .map(|have| have.partial_cmp(want)),
                // In whole nanoseconds, as Loki compares `time.Duration`s: `700ms`
                // in seconds is 0.7 read from a label and 0.7000000000000001 as the
                // literal's value times its unit.
                CompareValue::Duration(want) => crate::gostrconv::parse_duration(&text)
                    .map(|have| Some(have.cmp(&((want * 1e9).round() as i64)))),
                CompareValue::Bytes(want) => {
                    super::parser::parse_bytes(&text).map(|have| Some(have.cmp(want)))
                }
            };
            let ordering = match compared {
                Ok(ordering) => ordering,
                Err(details) => {
                    labels.set_error("LabelFilterErr", details);
                    return true;
                }
            };
            use std::cmp::Ordering::*;
            match (op, ordering) {
                // NaN: unequal to everything, as in Go.
                (CompareOp::Ne, None) => true,
                (_, None) => false,
                (CompareOp::Eq, Some(o)) => o == Equal,
                (CompareOp::Ne, Some(o)) => o != Equal,
                (CompareOp::Gt, Some(o)) => o == Greater,
                (CompareOp::Ge, Some(o)) => o != Less,
                (CompareOp::Lt, Some(o)) => o == Less,
                (CompareOp::Le, Some(o)) => o != Greater,
            }
        }
        LabelFilter::Ip {
            name,
            negated,
            pattern,
        } => {
            // Checked when the pipeline was compiled.
            let hit = IpPattern::new(pattern)
                .is_ok_and(|p| labels.get(name).is_some_and(|v| p.matches_text(v.trim())));
            hit != *negated
        }
    }
}

/// A key as Loki sanitizes it: every character outside `[a-zA-Z0-9_]` becomes `_`,
/// and a leading digit gets a `_` before it (`lead`: only for the first segment).
fn sanitize_into(key: &str, lead: bool, out: &mut String) {
    let key = key.trim();
    if lead && key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
}

// ---- ip() ----

/// An `ip("…")` pattern: one address, a range `a-b`, or a CIDR block, IPv4 or IPv6.
#[derive(Debug, Clone)]
struct IpPattern {
    low: std::net::IpAddr,
    high: std::net::IpAddr,
}

impl IpPattern {
    fn new(text: &str) -> Result<IpPattern, String> {
        use std::net::IpAddr;
        let bad = || {
            format!("invalid ip pattern {text:?}: a single address, a range (a-b) or a CIDR block")
        };
        let text = text.trim();
        if let Some((addr, bits)) = text.split_once('/') {
            let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
            let bits: u32 = bits.trim().parse().map_err(|_| bad())?;
            return match addr {
                IpAddr::V4(a) if bits <= 32 => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                    let low = u32::from(a) & mask;
                    Ok(IpPattern {
                        low: IpAddr::V4(low.into()),
                        high: IpAddr::V4((low | !mask).into()),
                    })
                }
                IpAddr::V6(a) if bits <= 128 => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u128::MAX << (128 - bits)
                    };
                    let low = u128::from(a) & mask;
                    Ok(IpPattern {
                        low: IpAddr::V6(low.into()),
                        high: IpAddr::V6((low | !mask).into()),
                    })
                }
                _ => Err(bad()),
            };
        }
        if let Some((a, b)) = text.split_once('-') {
            let low: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let high: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if low.is_ipv4() != high.is_ipv4() || low > high {
                return Err(bad());
            }
            return Ok(IpPattern { low, high });
        }
        let one: IpAddr = text.parse().map_err(|_| bad())?;
        Ok(IpPattern {
            low: one,
            high: one,
        })
    }

    fn contains(&self, ip: std::net::IpAddr) -> bool {
        ip.is_ipv4() == self.low.is_ipv4() && self.low <= ip && ip <= self.high
    }

    /// Whether `text` is an address the pattern matches.
    fn matches_text(&self, text: &str) -> bool {
        text.parse().is_ok_and(|ip| self.contains(ip))
    }

    /// Whether the line holds an address the pattern matches: every run of hex
    /// digits, dots and colons is tried as an address.
    fn in_line(&self, line: &str) -> bool {
        line.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
            .filter(|t| t.len() >= 2 && (t.contains('.') || t.contains(':')))
            .any(|t| {
                // An IPv6 address whole, or an IPv4 one beside a port or a full stop.
                self.matches_text(t)
                    || t.split(':')
                        .any(|piece| self.matches_text(piece.trim_matches('.')))
            })
    }
}

// ---- json with parameters, unpack ----

/// One step of a `| json` parameter's path: a field or an array index.
#[derive(Debug, Clone, PartialEq)]
enum JsonStep {
    Field(String),
    Index(usize),
}

/// A `| json` parameter's path as Loki reads one: `a.b`, `a[0]`, `["key with.dot"]`,
/// combined (`servers[0].addr`).
fn json_path(text: &str) -> Result<Vec<JsonStep>, String> {
    let bad = || format!("invalid json path {text:?}");
    let mut steps = Vec::new();
    let mut rest = text.trim();
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(bad)?;
            let inner = after[..end].trim();
            if let Some(q) = inner.strip_prefix('"').and_then(|i| i.strip_suffix('"')) {
                steps.push(JsonStep::Field(q.to_string()));
            } else {
                steps.push(JsonStep::Index(inner.parse().map_err(|_| bad())?));
            }
            rest = &after[end + 1..];
        } else {
            if !first {
                rest = rest.strip_prefix('.').ok_or_else(bad)?;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return Err(bad());
            }
            steps.push(JsonStep::Field(rest[..end].to_string()));
            rest = &rest[end..];
        }
        first = false;
    }
    if steps.is_empty() {
        return Err(bad());
    }
    Ok(steps)
}

/// `| json name="path", …`: each label is the value at its path (a string
/// unquoted, anything else as JSON text), empty where the path leads nowhere.
fn json_params(line: &str, params: &[(String, Vec<JsonStep>)], labels: &mut LineLabels) {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
        labels.set_error("JSONParserErr", "Malformed JSON error".into());
        return;
    };
    for (name, path) in params {
        let mut at = Some(&doc);
        for step in path {
            at = at.and_then(|v| match step {
                JsonStep::Field(f) => v.get(f.as_str()),
                JsonStep::Index(i) => v.get(*i),
            });
        }
        let value = match at {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        labels.set_parsed(name.clone(), value);
    }
}

/// `| unpack`: the string fields of a JSON object (what Promtail's `pack` stage
/// wrote) become labels, and `_entry` becomes the line, which is returned.
fn unpack(line: &str, labels: &mut LineLabels) -> Option<String> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(line)
    else {
        labels.set_error("JSONParserErr", "Malformed JSON error".into());
        return None;
    };
    let mut entry = None;
    for (k, v) in fields {
        let serde_json::Value::String(v) = v else {
            continue;
        };
        if k == "_entry" {
            entry = Some(v);
        } else {
            labels.set_parsed(k, v);
        }
    }
    entry
}

// ---- json ----

/// `| json`: every string, number and boolean of the line's object, nested keys
/// joined with `_`; arrays and nulls skipped.
fn json(line: &str, labels: &mut LineLabels) {
    let mut p = Json {
        s: line.as_bytes(),
        at: 0,
    };
    p.space();
    if p.peek() != Some(b'{') {
        labels.set_error(
            "JSONParserErr",
            "Value looks like object, but can't find closing '}' symbol".into(),
        );
        return;
    }
    let mut found = Vec::new();
    if p.object(&mut String::new(), &mut found).is_none() {
        labels.set_error("JSONParserErr", "Malformed JSON error".into());
    }
    for (k, v) in found {
        labels.set_parsed(k, v);
    }
}

struct Json<'a> {
    s: &'a [u8],
    at: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    /// An object at `at`, its leaves appended to `out` under `prefix`.
    fn object(&mut self, prefix: &mut String, out: &mut Vec<(String, String)>) -> Option<()> {
        self.at += 1; // '{'
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.space();
            let key = self.string()?;
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.space();
            let base = prefix.len();
            if !key.trim().is_empty() {
                if !prefix.is_empty() {
                    prefix.push('_');
                }
                sanitize_into(&key, base == 0, prefix);
            }
            match self.peek()? {
                b'{' => self.object(prefix, out)?,
                b'[' => self.skip_array()?,
                b'"' => {
                    let v = self.string().unwrap_or_default().replace('\u{fffd}', " ");
                    out.push((prefix.clone(), v));
                }
                _ => {
                    let start = self.at;
                    while self.peek().is_some_and(|c| {
                        !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace()
                    }) {
                        self.at += 1;
                    }
                    let raw = std::str::from_utf8(&self.s[start..self.at]).ok()?;
                    match raw {
                        "null" => {}
                        "true" | "false" => out.push((prefix.clone(), raw.to_string())),
                        _ if raw.parse::<f64>().is_ok() => {
                            out.push((prefix.clone(), raw.to_string()))
                        }
                        _ => return None,
                    }
                }
            }
            prefix.truncate(base);
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn skip_array(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
    }

    /// A JSON string at `at`, unescaped.
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        self.at += 1;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        let raw = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        Some(serde_json::from_str::<String>(raw).unwrap_or_default())
    }
}

// ---- logfmt ----

/// `| logfmt`: `key=value` pairs (values bare or quoted with JSON escapes); bare
/// keys and empty values only with `keep_empty`. Non-strict, a malformed pair is
/// skipped to the next blank; strict, the first one stops with `LogfmtParserErr`.
/// With `params` (label, key), only those keys, under those names, and a key the
/// line lacks gives an empty label (unless the name is a stream label's).
fn logfmt(
    line: &str,
    strict: bool,
    keep_empty: bool,
    params: &[(String, String)],
    labels: &mut LineLabels,
) {
    let pairs = logfmt_pairs(line, strict, params.is_empty() && !keep_empty, labels);
    if params.is_empty() {
        for (key, value) in pairs {
            let mut name = String::new();
            sanitize_into(key, true, &mut name);
            if !name.is_empty() {
                labels.set_parsed(name, value.replace('\u{fffd}', " "));
            }
        }
        return;
    }
    for (name, key) in params {
        match pairs.iter().rev().find(|(k, _)| k == key) {
            Some((_, value)) => labels.set_parsed(name.clone(), value.replace('\u{fffd}', "")),
            None if matches!(labels.labels.get(name), Some((_, Origin::Stream))) => {}
            None => labels.set_parsed(name.clone(), String::new()),
        }
    }
}

/// The (raw key, value) pairs of a logfmt line; `skip_empty` leaves out bare keys
/// and empty values. Errors in strict mode are set on `labels`.
fn logfmt_pairs<'l>(
    line: &'l str,
    strict: bool,
    skip_empty: bool,
    labels: &mut LineLabels,
) -> Vec<(&'l str, String)> {
    let s = line.as_bytes();
    let mut at = 0;
    let mut found: Vec<(&str, String)> = Vec::new();
    let error = |pos: usize, msg: &str| format!("logfmt syntax error at pos {} : {msg}", pos + 1);
    'pairs: while at < s.len() {
        while at < s.len() && s[at] <= b' ' {
            at += 1;
        }
        if at >= s.len() {
            break;
        }
        let key_start = at;
        while at < s.len() && s[at] > b' ' && s[at] != b'=' {
            if s[at] == b'"' {
                if strict {
                    labels.set_error("LogfmtParserErr", error(at, "unexpected '\"'"));
                    break 'pairs;
                }
                while at < s.len() && s[at] > b' ' {
                    at += 1;
                }
                continue 'pairs;
            }
            at += 1;
        }
        let key = &line[key_start..at];
        if key.is_empty() {
            // `=value` without a key.
            if strict {
                labels.set_error("LogfmtParserErr", error(at, "unexpected '='"));
                break;
            }
            while at < s.len() && s[at] > b' ' {
                at += 1;
            }
            continue;
        }
        let value: Option<String> = if at < s.len() && s[at] == b'=' {
            at += 1;
            if at < s.len() && s[at] == b'"' {
                let start = at;
                at += 1;
                let mut escaped = false;
                loop {
                    if at >= s.len() {
                        if strict {
                            labels.set_error(
                                "LogfmtParserErr",
                                error(at, "unterminated quoted value"),
                            );
                            break 'pairs;
                        }
                        break 'pairs;
                    }
                    match s[at] {
                        b'\\' => {
                            escaped = true;
                            at += 2;
                        }
                        b'"' => {
                            at += 1;
                            break;
                        }
                        _ => at += 1,
                    }
                }
                let raw = &line[start..at.min(s.len())];
                if escaped {
                    match serde_json::from_str::<String>(raw) {
                        Ok(v) => Some(v),
                        Err(_) => {
                            if strict {
                                labels.set_error(
                                    "LogfmtParserErr",
                                    error(at, "invalid quoted value"),
                                );
                                break 'pairs;
                            }
                            continue;
                        }
                    }
                } else {
                    Some(raw[1..raw.len() - 1].to_string())
                }
            } else {
                let start = at;
                while at < s.len() && s[at] > b' ' {
                    if s[at] == b'=' || s[at] == b'"' {
                        if strict {
                            let what = if s[at] == b'=' {
                                "unexpected '='"
                            } else {
                                "unexpected '\"'"
                            };
                            labels.set_error("LogfmtParserErr", error(at, what));
                            break 'pairs;
                        }
                        while at < s.len() && s[at] > b' ' {
                            at += 1;
                        }
                        continue 'pairs;
                    }
                    at += 1;
                }
                Some(line[start..at].to_string())
            }
        } else {
            None
        };
        let value = value.unwrap_or_default();
        if value.is_empty() && skip_empty {
            continue;
        }
        found.push((key, value));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::logql::parse;

    /// Runs the pipeline of `query` (`{job="x"} …`) on `line` of a stream labelled
    /// `job="x"`.
    fn run(query: &str, line: &str) -> Option<(Vec<(String, String)>, String)> {
        let Ok(Expr::Log(log)) = parse(query) else {
            panic!("{query}")
        };
        let pipeline = Pipeline::new(&log.pipeline).unwrap_or_else(|e| panic!("{query}: {e}"));
        pipeline.process(0, &[("job".into(), "x".into())], &[], line)
    }

    fn labels(query: &str, line: &str) -> Vec<(String, String)> {
        run(query, line)
            .map(|(l, _)| l)
            .unwrap_or_else(|| panic!("{query} dropped {line:?}"))
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = p
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn line_filters() {
        let q = r#"{job="x"} |= "err" != "timeout" |~ "code=5\\d\\d""#;
        assert!(run(q, "err code=503").is_some());
        assert!(run(q, "err timeout code=503").is_none());
        assert!(run(q, "ERR code=503").is_none(), "case-sensitive");
        assert!(run(q, "err code=404").is_none());
        assert!(run(r#"{job="x"} |= "a" or "b""#, "xbx").is_some());
        assert!(run(r#"{job="x"} != "a" or "b""#, "xbx").is_none());
        assert!(run(r#"{job="x"} != "a" or "b""#, "xcx").is_some());
        assert!(run(r#"{job="x"} |= """#, "anything").is_some());
        assert!(run(r#"{job="x"} != """#, "anything").is_none());
        assert!(run(r#"{job="x"} |~ "(?i)warn""#, "a WARNing").is_some());
    }

    #[test]
    fn json_flattens_sanitizes_and_marks_collisions() {
        let line = r#"{"level":"info","job":"y","req":{"method":"GET","1st":1,"x-y":true,"tags":["a"],"n":null,"size":1e3},"1a":{"b":2}," ":{"foo":"bar"},"msg":"a \"q\" \u00e9"}"#;
        assert_eq!(
            labels(r#"{job="x"} | json"#, line),
            pairs(&[
                ("_1a_b", "2"),
                ("foo", "bar"),
                ("job", "x"),
                ("job_extracted", "y"),
                ("level", "info"),
                ("msg", "a \"q\" é"),
                ("req_1st", "1"),
                ("req_method", "GET"),
                ("req_size", "1e3"),
                ("req_x_y", "true"),
            ])
        );
        // A bad line is kept, with Loki's error labels; later stages can drop it.
        assert_eq!(
            labels(r#"{job="x"} | json"#, "not json"),
            pairs(&[
                ("job", "x"),
                ("__error__", "JSONParserErr"),
                (
                    "__error_details__",
                    "Value looks like object, but can't find closing '}' symbol"
                )
            ])
        );
        assert_eq!(
            labels(r#"{job="x"} | json"#, r#"{"a":1,"b":"#)
                .iter()
                .find(|(k, _)| k == "__error_details__")
                .map(|(_, v)| v.as_str()),
            Some("Malformed JSON error")
        );
        assert!(run(r#"{job="x"} | json | __error__="""#, "not json").is_none());
        // The last value of a key wins.
        assert!(
            labels(r#"{job="x"} | json"#, r#"{"a":1,"a":2}"#).contains(&("a".into(), "2".into()))
        );
    }

    #[test]
    fn logfmt_as_loki_reads_it() {
        let line = r#"level=info msg="hello \"world\"" job=y empty= bare dur=1.5s 1x=2 a-b=c"#;
        assert_eq!(
            labels(r#"{job="x"} | logfmt"#, line),
            pairs(&[
                ("_1x", "2"),
                ("a_b", "c"),
                ("dur", "1.5s"),
                ("job", "x"),
                ("job_extracted", "y"),
                ("level", "info"),
                ("msg", "hello \"world\""),
            ])
        );
        let kept = labels(r#"{job="x"} | logfmt --keep-empty"#, "foo bar=buzz e=");
        assert!(kept.contains(&("foo".into(), String::new())));
        assert!(kept.contains(&("e".into(), String::new())));
        // Non-strict skips a malformed pair; strict stops with an error.
        let loose = labels(r#"{job="x"} | logfmt"#, r#"bar=bu=zz foo="foo bar""#);
        assert_eq!(loose, pairs(&[("foo", "foo bar"), ("job", "x")]));
        let strict = labels(
            r#"{job="x"} | logfmt --strict"#,
            r#"bar=bu=zz foo="foo bar""#,
        );
        assert_eq!(
            strict,
            pairs(&[
                ("job", "x"),
                ("__error__", "LogfmtParserErr"),
                (
                    "__error_details__",
                    "logfmt syntax error at pos 7 : unexpected '='"
                )
            ])
        );
    }

    #[test]
    fn logfmt_parameters_pick_keys_and_name_them() {
        let q = r#"{job="x"} | logfmt lvl="level", status, missing, job"#;
        let l = labels(q, "level=warn status=503 msg=hi job=y");
        assert_eq!(
            l,
            pairs(&[
                ("job", "x"),
                ("job_extracted", "y"),
                ("lvl", "warn"),
                ("missing", ""),
                ("status", "503"),
            ])
        );
        // A stream label's name with no key in the line is left alone.
        let l = labels(q, "level=warn");
        assert!(!l.iter().any(|(k, _)| k == "job_extracted"));
        // Bare identifiers parse after json too.
        assert!(parse(r#"{job="x"} | json a, b="c.d" | a="1""#).is_ok());
    }

    #[test]
    fn metadata_never_replaces_a_stream_label() {
        let Ok(Expr::Log(log)) = parse(r#"{job="x"}"#) else {
            panic!()
        };
        let pipeline = Pipeline::new(&log.pipeline).unwrap();
        let meta = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (l, _) = pipeline
            .process(
                0,
                &[("job".into(), "x".into())],
                &meta(&[("job", "zzz"), ("trace", "t1")]),
                "line",
            )
            .unwrap();
        assert_eq!(
            l,
            pairs(&[("job", "x"), ("job_extracted", "zzz"), ("trace", "t1")])
        );
    }

    #[test]
    fn label_filters_compare_convert_and_record_errors() {
        let q = r#"{job="x"} | logfmt | status >= 500 and latency > 250ms or size > 1KB"#;
        assert!(run(q, "status=503 latency=300ms").is_some());
        assert!(run(q, "status=503 latency=200ms").is_none());
        assert!(run(q, "status=200 latency=1s size=2000").is_some());
        assert!(
            run(q, "size=500").is_none(),
            "missing labels fail their comparisons"
        );
        // A label that does not convert passes, with LabelFilterErr.
        let l = labels(r#"{job="x"} | logfmt | status >= 500"#, "status=abc");
        assert!(l.contains(&("__error__".into(), "LabelFilterErr".into())));
        assert!(l.contains(&(
            "__error_details__".into(),
            "strconv.ParseFloat: parsing \"abc\": invalid syntax".into()
        )));
        assert!(
            run(
                r#"{job="x"} | logfmt | status >= 500 | __error__="""#,
                "status=abc"
            )
            .is_none()
        );
        // Values are read as Go reads them: untrimmed, Go's durations, humanize's
        // byte sizes, and NaN unequal to everything.
        for (q, line, details) in [
            (
                r#"{job="x"} | label_format v=" 5" | v > 1"#,
                "x",
                r#"strconv.ParseFloat: parsing " 5": invalid syntax"#,
            ),
            (
                r#"{job="x"} | logfmt | t > 1s"#,
                "t=1d",
                r#"time: unknown unit "d" in duration "1d""#,
            ),
            (
                r#"{job="x"} | logfmt | size > 1KB"#,
                "size=2parsecs",
                "unhandled size name: parsecs",
            ),
        ] {
            let l = labels(q, line);
            assert!(
                l.contains(&("__error_details__".into(), details.into())),
                "{q}: {l:?}"
            );
        }
        assert!(run(r#"{job="x"} | logfmt | t > 1m"#, "t=-1.5h").is_none());
        // Equal durations are equal, whatever their float seconds.
        for (filter, kept) in [
            ("t >= 700ms", true),
            ("t == 700ms", true),
            ("t < 700ms", false),
            ("t > 699999999ns", true),
        ] {
            let q = format!(r#"{{job="x"}} | logfmt | {filter}"#);
            assert_eq!(run(&q, "t=700ms").is_some(), kept, "{filter}");
        }
        assert!(run(r#"{job="x"} | logfmt | t == 9ms"#, "t=9ms").is_some());
        assert!(run(r#"{job="x"} | logfmt | t <= 100us"#, "t=100us").is_some());
        assert!(run(r#"{job="x"} | logfmt | size == 1MB"#, "size=1,000kb").is_some());
        assert!(run(r#"{job="x"} | logfmt | v != 1"#, "v=NaN").is_some());
        assert!(run(r#"{job="x"} | logfmt | v == 1"#, "v=NaN").is_none());
        // String matchers read a missing label as empty.
        assert!(run(r#"{job="x"} | level="""#, "x").is_some());
        assert!(run(r#"{job="x"} | logfmt | level=~"warn|error""#, "level=warn").is_some());
        assert!(run(r#"{job="x"} | logfmt | level!="info""#, "level=info").is_none());
    }

    #[test]
    fn regexp_drop_keep_and_decolorize() {
        let l = labels(
            r#"{job="x"} | regexp "(?P<ip>\\S+) - (?P<user>\\S+)" | drop user"#,
            "10.0.0.1 - alice GET /",
        );
        assert_eq!(l, pairs(&[("ip", "10.0.0.1"), ("job", "x")]));
        let l = labels(
            r#"{job="x"} | logfmt | keep level, status="500""#,
            "level=error status=404 msg=x",
        );
        assert_eq!(l, pairs(&[("level", "error")]), "stream labels go too");
        // keep always keeps the error labels; drop can remove them.
        let l = labels(r#"{job="x"} | json | keep job"#, "oops");
        assert!(l.iter().any(|(k, _)| k == "__error__"));
        let l = labels(
            r#"{job="x"} | json | drop __error__, __error_details__"#,
            "oops",
        );
        assert_eq!(l, pairs(&[("job", "x")]));
        let (_, line) = run(
            r#"{job="x"} | decolorize"#,
            "\x1b[31mred\x1b[0m and \x1b[1;32mgreen\x1b[0m",
        )
        .unwrap();
        assert_eq!(line, "red and green");
    }

    #[test]
    fn pattern_captures_as_loki_matches_them() {
        let q =
            r#"{job="x"} | pattern "<ip> - <_> [<ts>] \"<method> <path> <_>\" <status> <size>""#;
        let l = labels(
            q,
            r#"10.0.0.1 - frank [10/Oct/2000:13:55:36] "GET /a.gif HTTP/1.0" 200 2326"#,
        );
        assert_eq!(
            l,
            pairs(&[
                ("ip", "10.0.0.1"),
                ("job", "x"),
                ("method", "GET"),
                ("path", "/a.gif"),
                ("size", "2326"),
                ("status", "200"),
                ("ts", "10/Oct/2000:13:55:36"),
            ])
        );
        // A literal not found: the capture takes the rest, and matching stops.
        let l = labels(r#"{job="x"} | pattern "<a> <b>,<c>""#, "one two three");
        assert_eq!(l, pairs(&[("a", "one"), ("b", "two three"), ("job", "x")]));
        // A leading literal must start the line.
        let l = labels(r#"{job="x"} | pattern "GET <path>""#, "POST /x GET /y");
        assert_eq!(l, pairs(&[("job", "x")]));
        // Collisions with the stream get `_extracted`; `<1>` is literal text.
        let l = labels(r#"{job="x"} | pattern "<job> <1> <n>""#, "a <1> b");
        assert_eq!(
            l,
            pairs(&[("job", "x"), ("job_extracted", "a"), ("n", "b")])
        );
        for (bad, why) in [
            ("<_> x", "at least one capture"),
            ("<a><b>", "consecutive capture"),
            ("<a> <a>", "duplicate capture name (a)"),
        ] {
            let err = Pattern::new(bad).err().unwrap();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_parsed_error_label_gives_way_to_the_pipeline_s_error() {
        let l = labels(
            r#"{job="x"} | json | n > 1"#,
            r#"{"__error__":"mine","n":"x"}"#,
        );
        assert_eq!(l.iter().filter(|(k, _)| k == "__error__").count(), 1);
        assert!(l.contains(&("__error__".into(), "LabelFilterErr".into())));
    }

    #[test]
    fn ip_filters_match_addresses_ranges_and_blocks() {
        let q = |filter: &str, line: &str| run(&format!("{{job=\"x\"}} {filter}"), line).is_some();
        assert!(q(r#"|= ip("10.0.0.0/8")"#, "conn from 10.1.2.3:443 closed"));
        assert!(!q(r#"|= ip("10.0.0.0/8")"#, "conn from 11.1.2.3 closed"));
        assert!(q(r#"!= ip("10.0.0.0/8")"#, "conn from 11.1.2.3 closed"));
        assert!(q(
            r#"|= ip("192.168.0.1-192.168.0.9")"#,
            "peer=192.168.0.5."
        ));
        assert!(q(r#"|= ip("::1")"#, "bound [::1]:80"));
        assert!(q(r#"| logfmt | addr = ip("10.0.0.0/24")"#, "addr=10.0.0.7"));
        assert!(!q(
            r#"| logfmt | addr != ip("10.0.0.0/24")"#,
            "addr=10.0.0.7"
        ));
        let Ok(Expr::Log(log)) = parse(r#"{job="x"} |= ip("10.0.0.0/99")"#) else {
            panic!()
        };
        assert!(
            Pipeline::new(&log.pipeline)
                .err()
                .unwrap()
                .contains("invalid ip pattern")
        );
    }

    #[test]
    fn pattern_line_filters_match_the_whole_line() {
        let q = |filter: &str, line: &str| run(&format!("{{job=\"x\"}} {filter}"), line).is_some();
        assert!(q(r#"|> "<_> GET <_>""#, "10.0.0.1 GET /index.html"));
        assert!(!q(r#"|> "<_> GET <_>""#, "10.0.0.1 POST /index.html"));
        assert!(q(r#"!> "<_> GET <_>""#, "10.0.0.1 POST /index.html"));
        assert!(q(r#"|> "GET <_>""#, "GET /"));
        assert!(!q(r#"|> "GET <_>""#, "x GET /"));
        assert!(q(r#"|> "<_> done""#, "job 7 done"));
        assert!(!q(r#"|> "<_> done""#, "job 7 done twice"));
        assert!(q(r#"|> "<_> GET <_>" or "<_> PUT <_>""#, "a PUT b"));
    }

    #[test]
    fn json_parameters_and_unpack() {
        let line = r#"{"a":{"b":"x","n":3},"servers":[{"addr":"h1"},{"addr":"h2"}],"dot.key":"d"}"#;
        assert_eq!(
            labels(
                r#"{job="x"} | json b="a.b", n="a.n", s="servers[1].addr", d="[\"dot.key\"]", obj="a", none="zz""#,
                line
            ),
            pairs(&[
                ("b", "x"),
                ("d", "d"),
                ("job", "x"),
                ("n", "3"),
                ("none", ""),
                ("obj", r#"{"b":"x","n":3}"#),
                ("s", "h2")
            ])
        );
        assert_eq!(
            labels(r#"{job="x"} | json b="a.b""#, "not json"),
            pairs(&[
                ("__error__", "JSONParserErr"),
                ("__error_details__", "Malformed JSON error"),
                ("job", "x")
            ])
        );
        let (l, text) = run(
            r#"{job="x"} | unpack"#,
            r#"{"container":"api","_entry":"GET / 200","n":1}"#,
        )
        .unwrap();
        assert_eq!(text, "GET / 200");
        assert_eq!(l, pairs(&[("container", "api"), ("job", "x")]));
        // A label of the stream gets the parsed one beside it.
        let (l, _) = run(r#"{job="x"} | unpack"#, r#"{"job":"y","_entry":"e"}"#).unwrap();
        assert_eq!(l, pairs(&[("job", "x"), ("job_extracted", "y")]));
    }
}
