//! A recursive-descent parser for LogQL (Loki's grammar, `pkg/logql/syntax`), with
//! Loki's error shape: `parse error at line 1, col 17: syntax error: …`.

use super::ast::*;
use crate::model::{MatchType, Matcher};

/// A query that does not parse: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parses a LogQL query.
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        src: query,
        at: 0,
        depth: 0,
    };
    p.space();
    let expr = if p.peek() == Some(b'{') {
        let log = p.log_expr(false)?;
        Expr::Log(log.0)
    } else {
        Expr::Metric(p.metric(0)?)
    };
    p.space();
    if p.at < p.src.len() {
        return Err(p.error_here(format!("syntax error: unexpected {}", p.describe())));
    }
    Ok(expr)
}

struct Parser<'a> {
    src: &'a str,
    at: usize,
    /// How deeply the expression being parsed nests (parentheses, operators):
    /// bounded, so that a crafted query cannot overflow the stack here or in the
    /// evaluation that walks the tree.
    depth: usize,
}

/// The deepest nesting a query may have.
pub const MAX_DEPTH: usize = 100;

/// What a stage of a pipeline may be, past the plain log stages.
type Pipeline = (Vec<Stage>, Option<Unwrap>);

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.at).copied()
    }

    fn rest(&self) -> &'a str {
        &self.src[self.at..]
    }

    fn error_at(&self, at: usize, message: String) -> ParseError {
        let before = &self.src[..at.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
            + 1;
        ParseError { line, col, message }
    }

    fn error_here(&self, message: String) -> ParseError {
        self.error_at(self.at, message)
    }

    fn describe(&self) -> String {
        match self.rest().chars().next() {
            None => "end of input".into(),
            Some(c) => {
                let word: String = self
                    .rest()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if word.is_empty() {
                    format!("{c:?}")
                } else {
                    format!("{word:?}")
                }
            }
        }
    }

    fn space(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            // `#` starts a comment to the end of the line.
            if self.peek() == Some(b'#') {
                self.at += self.rest().find('\n').unwrap_or(self.rest().len());
            } else {
                return;
            }
        }
    }

    /// Consumes `token` (after blanks) if it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), ParseError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error_here(format!(
                "syntax error: unexpected {}, expecting {token:?}",
                self.describe()
            )))
        }
    }

    /// The next identifier, without consuming it.
    fn peek_ident(&mut self) -> Option<&'a str> {
        self.space();
        let rest = self.rest();
        let first = rest.chars().next()?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return None;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// Consumes the keyword `word` (not a prefix of a longer identifier).
    fn eat_word(&mut self, word: &str) -> bool {
        if self.peek_ident() == Some(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match self.peek_ident() {
            Some(id) => {
                let id = id.to_string();
                self.at += id.len();
                Ok(id)
            }
            None => Err(self.error_here(format!(
                "syntax error: unexpected {}, expecting IDENTIFIER",
                self.describe()
            ))),
        }
    }

    /// A quoted string: `"…"` with Go's escapes, or a raw `` `…` ``.
    fn string(&mut self) -> Result<String, ParseError> {
        self.space();
        let start = self.at;
        let quote = match self.peek() {
            Some(q @ (b'"' | b'`')) => q,
            _ => {
                return Err(self.error_here(format!(
                    "syntax error: unexpected {}, expecting STRING",
                    self.describe()
                )));
            }
        };
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.rest().chars().next() else {
                return Err(self.error_at(start, "syntax error: unterminated string".into()));
            };
            self.at += c.len_utf8();
            if c as u32 == u32::from(quote) {
                return Ok(out);
            }
            if c == '\\' && quote == b'"' {
                let Some(e) = self.rest().chars().next() else {
                    return Err(self.error_at(start, "syntax error: unterminated string".into()));
                };
                self.at += e.len_utf8();
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'v' => '\u{b}',
                    'u' | 'x' => {
                        let n = if e == 'u' { 4 } else { 2 };
                        let digits = self.rest().get(..n).unwrap_or("");
                        let v = u32::from_str_radix(digits, 16)
                            .ok()
                            .filter(|_| digits.len() == n)
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                self.error_here("syntax error: invalid escape in string".into())
                            })?;
                        self.at += n;
                        v
                    }
                    _ => {
                        return Err(
                            self.error_here(format!("syntax error: unknown escape sequence \\{e}"))
                        );
                    }
                });
            } else {
                out.push(c);
            }
        }
    }

    /// A number, with its unit if one follows at once (`5m`, `20MB`).
    fn number_token(&mut self) -> Option<(f64, &'a str)> {
        self.space();
        let rest = self.rest();
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        let unit_end = rest[digits..]
            .find(|c: char| !(c.is_alphanumeric() || c == 'µ' || c == '.'))
            .map_or(rest.len(), |i| digits + i);
        let token = &rest[..unit_end];
        self.at += unit_end;
        Some((value, &token[digits..]))
    }

    /// A duration (`5m`, `1h30m`, `500ms`), in milliseconds.
    fn duration_ms(&mut self) -> Result<i64, ParseError> {
        self.space();
        let start = self.at;
        let text = self.rest();
        let end = text
            .find(|c: char| !(c.is_alphanumeric() || c == 'µ' || c == '.'))
            .unwrap_or(text.len());
        let seconds = parse_duration(&text[..end]).ok_or_else(|| {
            self.error_at(
                start,
                format!("syntax error: invalid duration {:?}", &text[..end]),
            )
        })?;
        self.at += end;
        Ok((seconds * 1000.0).round() as i64)
    }

    // ---- log queries ----

    /// `{selector} pipeline`; with `metric`, also `| unwrap …`.
    fn log_expr(&mut self, metric: bool) -> Result<(LogExpr, Option<Unwrap>), ParseError> {
        let selector = self.selector()?;
        let (pipeline, unwrap) = self.pipeline(metric)?;
        Ok((LogExpr { selector, pipeline }, unwrap))
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let start = self.at;
        self.expect("{")?;
        let mut matchers = Vec::new();
        loop {
            if self.eat("}") {
                break;
            }
            let name = self.ident()?;
            let kind = self.match_op()?.ok_or_else(|| {
                self.error_here(format!(
                    "syntax error: unexpected {}, expecting = or != or =~ or !~",
                    self.describe()
                ))
            })?;
            let value = self.string()?;
            matchers.push(self.matcher(kind, name, value)?);
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        if matchers.is_empty() || matchers.iter().all(Matcher::matches_empty) {
            return Err(self.error_at(
                start,
                "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into(),
            ));
        }
        Ok(matchers)
    }

    fn match_op(&mut self) -> Result<Option<MatchType>, ParseError> {
        self.space();
        for (token, kind) in [
            ("=~", MatchType::Regex),
            ("!~", MatchType::NotRegex),
            ("!=", MatchType::NotEqual),
            ("=", MatchType::Equal),
        ] {
            if self.rest().starts_with(token) && !self.rest().starts_with("==") {
                self.at += token.len();
                return Ok(Some(kind));
            }
        }
        Ok(None)
    }

    fn matcher(&self, kind: MatchType, name: String, value: String) -> Result<Matcher, ParseError> {
        Matcher::new(kind, name, value).map_err(|e| self.error_here(e.to_string()))
    }

    fn pipeline(&mut self, metric: bool) -> Result<Pipeline, ParseError> {
        let mut stages = Vec::new();
        loop {
            self.space();
            let line_filter = [
                ("|=", LineFilterOp::Contains),
                ("!=", LineFilterOp::NotContains),
                ("|~", LineFilterOp::Matches),
                ("!~", LineFilterOp::NotMatches),
                ("|>", LineFilterOp::Pattern),
                ("!>", LineFilterOp::NotPattern),
            ]
            .into_iter()
            .find(|(t, _)| self.rest().starts_with(t));
            if let Some((token, op)) = line_filter {
                self.at += token.len();
                let mut values = vec![self.line_filter_value(op)?];
                while self.eat_word("or") {
                    values.push(self.line_filter_value(op)?);
                }
                stages.push(Stage::LineFilter { op, values });
                continue;
            }
            if !self.rest().starts_with('|') {
                return Ok((stages, None));
            }
            self.at += 1;
            let stage_start = self.at;
            match self.peek_ident() {
                Some("json") => {
                    self.at += 4;
                    stages.push(Stage::Json(self.extraction_params()?));
                }
                Some("logfmt") => {
                    self.at += 6;
                    let (mut strict, mut keep_empty) = (false, false);
                    loop {
                        if self.eat("--strict") {
                            strict = true;
                        } else if self.eat("--keep-empty") {
                            keep_empty = true;
                        } else {
                            break;
                        }
                    }
                    let params = self.extraction_params()?;
                    stages.push(Stage::Logfmt {
                        strict,
                        keep_empty,
                        params,
                    });
                }
                Some("regexp") => {
                    self.at += 6;
                    let re = self.string()?;
                    regex::Regex::new(&re).map_err(|e| {
                        self.error_at(stage_start, format!("invalid regexp {re:?}: {e}"))
                    })?;
                    stages.push(Stage::Regexp(re));
                }
                Some("pattern") => {
                    self.at += 7;
                    stages.push(Stage::Pattern(self.string()?));
                }
                Some("unpack") => {
                    self.at += 6;
                    stages.push(Stage::Unpack);
                }
                Some("decolorize") => {
                    self.at += 10;
                    stages.push(Stage::Decolorize);
                }
                Some("line_format") => {
                    self.at += 11;
                    stages.push(Stage::LineFormat(self.string()?));
                }
                Some("label_format") => {
                    self.at += 12;
                    stages.push(Stage::LabelFormat(self.label_formats()?));
                }
                Some("drop") => {
                    self.at += 4;
                    stages.push(Stage::Drop(self.names_or_matchers()?));
                }
                Some("keep") => {
                    self.at += 4;
                    stages.push(Stage::Keep(self.names_or_matchers()?));
                }
                Some("unwrap") if metric => {
                    self.at += 6;
                    let unwrap = self.unwrap()?;
                    return Ok((stages, Some(unwrap)));
                }
                Some("unwrap") => {
                    return Err(self.error_at(
                        stage_start,
                        "syntax error: unwrap is only allowed in a range aggregation".into(),
                    ));
                }
                Some(_) | None
                    if self.peek_ident().is_some() || self.rest().trim_start().starts_with('(') =>
                {
                    stages.push(Stage::LabelFilter(self.label_filter_or()?));
                }
                _ => {
                    return Err(
                        self.error_here(format!("syntax error: unexpected {}", self.describe()))
                    );
                }
            }
        }
    }

    fn line_filter_value(&mut self, op: LineFilterOp) -> Result<LineFilterValue, ParseError> {
        if self.eat_word("ip") {
            self.expect("(")?;
            let ip = self.string()?;
            self.expect(")")?;
            if !matches!(op, LineFilterOp::Contains | LineFilterOp::NotContains) {
                return Err(self.error_here("syntax error: ip() goes with |= and != only".into()));
            }
            return Ok(LineFilterValue::Ip(ip));
        }
        let start = self.at;
        let value = self.string()?;
        if matches!(op, LineFilterOp::Matches | LineFilterOp::NotMatches) {
            regex::Regex::new(&value)
                .map_err(|e| self.error_at(start, format!("invalid regexp {value:?}: {e}")))?;
        }
        Ok(LineFilterValue::Text(value))
    }

    /// `name="path"` or a bare `name` (its own path), comma-separated, after `json`
    /// or `logfmt`; or nothing. (Nothing else can follow those stages directly.)
    fn extraction_params(&mut self) -> Result<Vec<(String, String)>, ParseError> {
        let mut params = Vec::new();
        while let Some(name) = self.peek_ident().map(str::to_string) {
            self.at += name.len();
            let path = if self.eat("=") {
                self.string()?
            } else {
                name.clone()
            };
            params.push((name, path));
            if !self.eat(",") {
                break;
            }
        }
        Ok(params)
    }

    fn peek_string_start(&mut self) -> bool {
        self.space();
        matches!(self.peek(), Some(b'"' | b'`'))
    }

    fn label_formats(&mut self) -> Result<Vec<LabelFormat>, ParseError> {
        let mut out = Vec::new();
        loop {
            let dst = self.ident()?;
            self.expect("=")?;
            if self.peek_string_start() {
                out.push(LabelFormat::Template {
                    dst,
                    template: self.string()?,
                });
            } else {
                out.push(LabelFormat::Rename {
                    dst,
                    src: self.ident()?,
                });
            }
            if !self.eat(",") {
                return Ok(out);
            }
        }
    }

    fn names_or_matchers(&mut self) -> Result<Vec<NameOrMatcher>, ParseError> {
        let mut out = Vec::new();
        loop {
            let name = self.ident()?;
            match self.match_op()? {
                Some(kind) => {
                    let value = self.string()?;
                    out.push(NameOrMatcher::Matcher(self.matcher(kind, name, value)?));
                }
                None => out.push(NameOrMatcher::Name(name)),
            }
            if !self.eat(",") {
                return Ok(out);
            }
        }
    }

    fn unwrap(&mut self) -> Result<Unwrap, ParseError> {
        let first = self.ident()?;
        let conversion = match first.as_str() {
            "duration" => Some(Conversion::Duration),
            "duration_seconds" => Some(Conversion::DurationSeconds),
            "bytes" => Some(Conversion::Bytes),
            _ => None,
        };
        let (label, conversion) = match conversion {
            Some(c) if self.eat("(") => {
                let label = self.ident()?;
                self.expect(")")?;
                (label, c)
            }
            _ => (first, Conversion::Number),
        };
        let mut post_filters = Vec::new();
        loop {
            self.space();
            if self.rest().starts_with('|')
                && !self.rest().starts_with("|=")
                && !self.rest().starts_with("|~")
            {
                self.at += 1;
                post_filters.push(self.label_filter_or()?);
            } else {
                break;
            }
        }
        Ok(Unwrap {
            label,
            conversion,
            post_filters,
        })
    }

    /// A chain of `or`: each term is a level of the (left-deep) tree, counted
    /// against [`MAX_DEPTH`] as nesting is, since the tree is walked recursively.
    fn label_filter_or(&mut self) -> Result<LabelFilter, ParseError> {
        let depth = self.depth;
        let mut lhs = self.label_filter_and()?;
        while self.eat_word("or") {
            self.enter()?;
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        self.depth = depth;
        Ok(lhs)
    }

    /// A chain of `and` (or `,`, or a space), its terms counted as `or`'s are.
    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let depth = self.depth;
        let mut lhs = self.label_filter_primary()?;
        loop {
            let joined = self.eat_word("and") || self.eat(",") || {
                // A space also joins, when another filter follows.
                let id = self.peek_ident();
                id.is_some_and(|w| w != "or" && w != "offset" && w != "by" && w != "without")
                    && self.filter_follows()
            };
            if !joined {
                self.depth = depth;
                return Ok(lhs);
            }
            self.enter()?;
            let rhs = self.label_filter_primary()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
    }

    /// Whether the identifier ahead starts a label filter (`name op`).
    fn filter_follows(&mut self) -> bool {
        let save = self.at;
        let ok = self.ident().is_ok() && {
            self.space();
            ["=", "!=", ">", "<"]
                .iter()
                .any(|t| self.rest().starts_with(t))
        };
        self.at = save;
        ok
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if self.eat("(") {
            self.enter()?;
            let inner = self.label_filter_or()?;
            self.depth -= 1;
            self.expect(")")?;
            return Ok(inner);
        }
        let name = self.ident()?;
        self.space();
        let op_start = self.at;
        let op = [
            ("==", Some(CompareOp::Eq)),
            ("=~", None),
            ("!~", None),
            ("!=", Some(CompareOp::Ne)),
            (">=", Some(CompareOp::Ge)),
            ("<=", Some(CompareOp::Le)),
            (">", Some(CompareOp::Gt)),
            ("<", Some(CompareOp::Lt)),
            ("=", Some(CompareOp::Eq)),
        ]
        .into_iter()
        .find(|(t, _)| self.rest().starts_with(t))
        .ok_or_else(|| {
            self.error_here(format!(
                "syntax error: unexpected {}, expecting a comparison",
                self.describe()
            ))
        })?;
        self.at += op.0.len();
        let token = op.0;
        // A string: a matcher (only `=`, `!=`, `=~`, `!~`).
        if self.peek_string_start() {
            let kind = match token {
                "=" => MatchType::Equal,
                "!=" => MatchType::NotEqual,
                "=~" => MatchType::Regex,
                "!~" => MatchType::NotRegex,
                _ => {
                    return Err(self.error_at(
                        op_start,
                        format!("syntax error: {token} does not compare strings"),
                    ));
                }
            };
            let value = self.string()?;
            return Ok(LabelFilter::String(self.matcher(kind, name, value)?));
        }
        if self.eat_word("ip") {
            self.expect("(")?;
            let pattern = self.string()?;
            self.expect(")")?;
            let negated = match token {
                "=" => false,
                "!=" => true,
                _ => {
                    return Err(self.error_at(
                        op_start,
                        "syntax error: ip() goes with = and != only".into(),
                    ));
                }
            };
            return Ok(LabelFilter::Ip {
                name,
                negated,
                pattern,
            });
        }
        let Some(op) = op.1 else {
            return Err(self.error_at(op_start, format!("syntax error: {token} needs a string")));
        };
        let value_start = self.at;
        let negative = self.eat("-");
        let Some((number, unit)) = self.number_token() else {
            return Err(self.error_here(format!(
                "syntax error: unexpected {}, expecting a number, a duration or a byte size",
                self.describe()
            )));
        };
        let sign = if negative { -1.0 } else { 1.0 };
        let value = if unit.is_empty() {
            CompareValue::Number(sign * number)
        } else {
            let text = &self.src[value_start..self.at];
            let text = text.trim_start_matches('-').trim();
            if let Some(s) = parse_duration(text) {
                CompareValue::Duration(sign * s)
            } else if let (Ok(b), false) = (parse_bytes(text), negative) {
                CompareValue::Bytes(b)
            } else {
                return Err(
                    self.error_at(value_start, format!("syntax error: invalid value {text:?}"))
                );
            }
        };
        Ok(LabelFilter::Compare { name, op, value })
    }

    // ---- metric queries ----

    /// One level deeper, or an error past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!(
                "expression nested too deeply (more than {MAX_DEPTH} levels)"
            )));
        }
        Ok(())
    }

    fn metric(&mut self, min_precedence: u8) -> Result<MetricExpr, ParseError> {
        self.enter()?;
        let parsed = self.metric_inner(min_precedence);
        self.depth -= 1;
        parsed
    }

    /// A unary expression, then a chain of binary operators: each operator is a
    /// level of the (left-deep) tree, counted against [`MAX_DEPTH`] as nesting is,
    /// since evaluation walks the tree recursively (`1+1+…` 3,000 times deep
    /// overflowed a worker's stack).
    fn metric_inner(&mut self, min_precedence: u8) -> Result<MetricExpr, ParseError> {
        let depth = self.depth;
        let mut lhs = self.metric_unary()?;
        loop {
            let save = self.at;
            let Some(op) = self.binary_op() else {
                self.depth = depth;
                return Ok(lhs);
            };
            if op.precedence() < min_precedence {
                self.at = save;
                self.depth = depth;
                return Ok(lhs);
            }
            self.enter()?;
            let return_bool = self.eat_word("bool");
            if return_bool && !op.is_comparison() {
                return Err(self
                    .error_here("bool modifier can only be used on comparison operators".into()));
            }
            let matching = self.vector_matching()?;
            // `^` binds to the right; the others to the left.
            let next = if op == BinaryOp::Pow {
                op.precedence()
            } else {
                op.precedence() + 1
            };
            let rhs = self.metric(next)?;
            lhs = MetricExpr::Binary {
                op,
                return_bool,
                matching,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    fn binary_op(&mut self) -> Option<BinaryOp> {
        self.space();
        for (token, op) in [
            ("==", BinaryOp::Eq),
            ("!=", BinaryOp::Ne),
            (">=", BinaryOp::Ge),
            ("<=", BinaryOp::Le),
            (">", BinaryOp::Gt),
            ("<", BinaryOp::Lt),
            ("+", BinaryOp::Add),
            ("-", BinaryOp::Sub),
            ("*", BinaryOp::Mul),
            ("/", BinaryOp::Div),
            ("%", BinaryOp::Mod),
            ("^", BinaryOp::Pow),
        ] {
            if self.rest().starts_with(token) {
                self.at += token.len();
                return Some(op);
            }
        }
        for (word, op) in [
            ("or", BinaryOp::Or),
            ("and", BinaryOp::And),
            ("unless", BinaryOp::Unless),
        ] {
            if self.eat_word(word) {
                return Some(op);
            }
        }
        None
    }

    fn vector_matching(&mut self) -> Result<VectorMatching, ParseError> {
        let mut m = VectorMatching::default();
        if self.eat_word("on") {
            m.on = Some((true, self.label_list()?));
        } else if self.eat_word("ignoring") {
            m.on = Some((false, self.label_list()?));
        }
        for (word, left) in [("group_left", true), ("group_right", false)] {
            if self.eat_word(word) {
                let labels = if self.rest().trim_start().starts_with('(') {
                    self.label_list()?
                } else {
                    Vec::new()
                };
                m.group = Some((left, labels));
            }
        }
        Ok(m)
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect("(")?;
        let mut labels = Vec::new();
        if self.eat(")") {
            return Ok(labels);
        }
        loop {
            labels.push(self.ident()?);
            if self.eat(")") {
                return Ok(labels);
            }
            self.expect(",")?;
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.eat_word("by") {
            Ok(Some(Grouping::By(self.label_list()?)))
        } else if self.eat_word("without") {
            Ok(Some(Grouping::Without(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    fn signed_number(&mut self) -> Result<f64, ParseError> {
        let negative = self.eat("-");
        let _ = !negative && self.eat("+");
        let start = self.at;
        match self.number_token() {
            Some((n, "")) => Ok(if negative { -n } else { n }),
            _ => {
                self.at = start;
                Err(self.error_here(format!(
                    "syntax error: unexpected {}, expecting NUMBER",
                    self.describe()
                )))
            }
        }
    }

    fn metric_unary(&mut self) -> Result<MetricExpr, ParseError> {
        self.space();
        if self.eat("(") {
            let inner = self.metric(0)?;
            self.expect(")")?;
            return Ok(inner);
        }
        if matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+' | b'.')) {
            return Ok(MetricExpr::Literal(self.signed_number()?));
        }
        let start = self.at;
        let name = self.ident()?;
        if let Some(op) = range_op(&name) {
            self.expect("(")?;
            let param = if op == RangeOp::QuantileOverTime {
                let phi = self.signed_number()?;
                self.expect(",")?;
                Some(phi)
            } else {
                None
            };
            let range = self.log_range()?;
            self.expect(")")?;
            let unwrapped = range.unwrap.is_some();
            if unwrapped && !op.allows_unwrap() {
                return Err(self.error_at(start, format!("invalid aggregation {name} with unwrap")));
            }
            if !unwrapped && !op.allows_lines() {
                return Err(
                    self.error_at(start, format!("invalid aggregation {name} without unwrap"))
                );
            }
            let grouping = self.grouping()?;
            if grouping.is_some() && !op.allows_grouping() {
                return Err(self.error_at(
                    start,
                    format!("grouping not allowed for {name} aggregation"),
                ));
            }
            return Ok(MetricExpr::Range {
                op,
                param,
                range,
                grouping,
            });
        }
        if let Some(op) = vector_op(&name) {
            let mut grouping = self.grouping()?;
            self.expect("(")?;
            let param = if matches!(op, VectorOp::Topk | VectorOp::Bottomk) {
                let k = self.signed_number()?;
                self.expect(",")?;
                Some(k)
            } else {
                None
            };
            let expr = self.metric(0)?;
            self.expect(")")?;
            if grouping.is_none() {
                grouping = self.grouping()?;
            }
            return Ok(MetricExpr::Vector {
                op,
                param,
                grouping,
                expr: Box::new(expr),
            });
        }
        match name.as_str() {
            "vector" => {
                self.expect("(")?;
                let v = self.signed_number()?;
                self.expect(")")?;
                Ok(MetricExpr::Vector1(v))
            }
            "label_replace" => {
                self.expect("(")?;
                let expr = self.metric(0)?;
                self.expect(",")?;
                let dst = self.string()?;
                self.expect(",")?;
                let replacement = self.string()?;
                self.expect(",")?;
                let src = self.string()?;
                self.expect(",")?;
                let regex_start = self.at;
                let regex = self.string()?;
                regex::Regex::new(&format!("^(?s:{regex})$")).map_err(|e| {
                    self.error_at(
                        regex_start,
                        format!("invalid regular expression in label_replace(): {e}"),
                    )
                })?;
                self.expect(")")?;
                Ok(MetricExpr::LabelReplace {
                    expr: Box::new(expr),
                    dst,
                    replacement,
                    src,
                    regex,
                })
            }
            _ => Err(self.error_at(
                start,
                format!("syntax error: unexpected IDENTIFIER {name:?}"),
            )),
        }
    }

    /// `{…} pipeline [range]`, `{…}[range] pipeline` or `({…} pipeline)[range]`, then
    /// `offset d`.
    fn log_range(&mut self) -> Result<LogRange, ParseError> {
        let (log, unwrap, range_ms) = if self.eat("(") {
            let (log, unwrap) = self.log_expr(true)?;
            self.expect(")")?;
            (log, unwrap, self.range()?)
        } else {
            let selector = self.selector()?;
            self.space();
            if self.peek() == Some(b'[') {
                let range = self.range()?;
                let (pipeline, unwrap) = self.pipeline(true)?;
                (LogExpr { selector, pipeline }, unwrap, range)
            } else {
                let (pipeline, unwrap) = self.pipeline(true)?;
                let range = self.range()?;
                (LogExpr { selector, pipeline }, unwrap, range)
            }
        };
        let offset_ms = if self.eat_word("offset") {
            self.duration_ms()?
        } else {
            0
        };
        Ok(LogRange {
            log,
            unwrap,
            range_ms,
            offset_ms,
        })
    }

    fn range(&mut self) -> Result<i64, ParseError> {
        self.expect("[")?;
        let ms = self.duration_ms()?;
        self.expect("]")?;
        if ms <= 0 {
            return Err(self.error_here("syntax error: a range must be positive".into()));
        }
        Ok(ms)
    }
}

fn range_op(name: &str) -> Option<RangeOp> {
    Some(match name {
        "rate" => RangeOp::Rate,
        "rate_counter" => RangeOp::RateCounter,
        "count_over_time" => RangeOp::CountOverTime,
        "bytes_rate" => RangeOp::BytesRate,
        "bytes_over_time" => RangeOp::BytesOverTime,
        "absent_over_time" => RangeOp::AbsentOverTime,
        "sum_over_time" => RangeOp::SumOverTime,
        "avg_over_time" => RangeOp::AvgOverTime,
        "max_over_time" => RangeOp::MaxOverTime,
        "min_over_time" => RangeOp::MinOverTime,
        "first_over_time" => RangeOp::FirstOverTime,
        "last_over_time" => RangeOp::LastOverTime,
        "stdvar_over_time" => RangeOp::StdvarOverTime,
        "stddev_over_time" => RangeOp::StddevOverTime,
        "quantile_over_time" => RangeOp::QuantileOverTime,
        _ => return None,
    })
}

fn vector_op(name: &str) -> Option<VectorOp> {
    Some(match name {
        "sum" => VectorOp::Sum,
        "avg" => VectorOp::Avg,
        "min" => VectorOp::Min,
        "max" => VectorOp::Max,
        "count" => VectorOp::Count,
        "stddev" => VectorOp::Stddev,
        "stdvar" => VectorOp::Stdvar,
        "topk" => VectorOp::Topk,
        "bottomk" => VectorOp::Bottomk,
        "sort" => VectorOp::Sort,
        "sort_desc" => VectorOp::SortDesc,
        _ => return None,
    })
}

/// A duration as Go's `time.ParseDuration` reads one (`1h30m`, `1.5s`, `300ms`,
/// `2µs`), plus Prometheus's `d`, `w` and `y`: seconds, or `None`. (Not
/// `model::parse_duration_ms`: Prometheus's form has no fractions and no units
/// below milliseconds, and LogQL's label filters take Go's.)
pub fn parse_duration(text: &str) -> Option<f64> {
    if text.is_empty() {
        return None;
    }
    if text == "0" {
        return Some(0.0);
    }
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Some(total)
}

/// A label value as `unwrap duration(…)` reads it: Go's `time.ParseDuration`, in
/// seconds as `Duration.Seconds` gives them. (Duration filters compare the
/// nanoseconds themselves.)
pub fn parse_label_duration(text: &str) -> Result<f64, String> {
    crate::gostrconv::parse_duration(text).map(crate::gostrconv::duration_seconds)
}

/// A byte size as Loki reads one, for `unwrap bytes(…)`, byte-size filters and
/// their literals: go-humanize's `ParseBytes`. (Not `model::parse_bytes`,
/// Prometheus's retention sizes, where `MB` is 2^20.)
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    crate::gostrconv::parse_humanize_bytes(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(q: &str) -> LogExpr {
        match parse(q) {
            Ok(Expr::Log(l)) => l,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn metric(q: &str) -> MetricExpr {
        match parse(q) {
            Ok(Expr::Metric(m)) => m,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn eq(name: &str, value: &str) -> Matcher {
        Matcher::equal(name, value)
    }

    #[test]
    fn selectors_and_line_filters() {
        let l = log(
            r#"{app="api", env=~"prod|stag", team!="x", k!~"a.*"} |= "error" != `timeout` |~ "5\\d\\d" !~ "(?i)debug" |> "<_> GET <_>" |= "a" or "b" |= ip("10.0.0.0/8")"#,
        );
        assert_eq!(l.selector.len(), 4);
        assert_eq!(l.selector[0], eq("app", "api"));
        assert_eq!(l.selector[1].kind, MatchType::Regex);
        let ops: Vec<LineFilterOp> = l
            .pipeline
            .iter()
            .map(|s| match s {
                Stage::LineFilter { op, .. } => *op,
                other => panic!("{other:?}"),
            })
            .collect();
        use LineFilterOp::*;
        assert_eq!(
            ops,
            [
                Contains,
                NotContains,
                Matches,
                NotMatches,
                Pattern,
                Contains,
                Contains
            ]
        );
        assert_eq!(
            l.pipeline[5],
            Stage::LineFilter {
                op: Contains,
                values: vec![
                    LineFilterValue::Text("a".into()),
                    LineFilterValue::Text("b".into())
                ]
            }
        );
        assert_eq!(
            l.pipeline[6],
            Stage::LineFilter {
                op: Contains,
                values: vec![LineFilterValue::Ip("10.0.0.0/8".into())]
            }
        );
        assert_eq!(
            l.pipeline[2],
            Stage::LineFilter {
                op: Matches,
                values: vec![LineFilterValue::Text("5\\d\\d".into())]
            }
        );
    }

    #[test]
    fn parsers_formats_and_label_stages() {
        let l = log(
            r#"{job="x"} | json | json a="b.c", d="e[0]" | logfmt --strict --keep-empty | logfmt | regexp "(?P<ip>\\S+)" | pattern "<ip> - <_>" | unpack | decolorize | line_format "{{.msg}}" | label_format dst=src, t="{{.a}}" | drop a, b="v" | keep c"#,
        );
        let p = &l.pipeline;
        assert_eq!(p[0], Stage::Json(vec![]));
        assert_eq!(
            p[1],
            Stage::Json(vec![
                ("a".into(), "b.c".into()),
                ("d".into(), "e[0]".into())
            ])
        );
        assert_eq!(
            p[2],
            Stage::Logfmt {
                strict: true,
                keep_empty: true,
                params: vec![]
            }
        );
        assert_eq!(p[4], Stage::Regexp("(?P<ip>\\S+)".into()));
        assert_eq!(p[5], Stage::Pattern("<ip> - <_>".into()));
        assert_eq!(p[6], Stage::Unpack);
        assert_eq!(p[7], Stage::Decolorize);
        assert_eq!(p[8], Stage::LineFormat("{{.msg}}".into()));
        assert_eq!(
            p[9],
            Stage::LabelFormat(vec![
                LabelFormat::Rename {
                    dst: "dst".into(),
                    src: "src".into()
                },
                LabelFormat::Template {
                    dst: "t".into(),
                    template: "{{.a}}".into()
                }
            ])
        );
        assert_eq!(
            p[10],
            Stage::Drop(vec![
                NameOrMatcher::Name("a".into()),
                NameOrMatcher::Matcher(eq("b", "v"))
            ])
        );
        assert_eq!(p[11], Stage::Keep(vec![NameOrMatcher::Name("c".into())]));
    }

    #[test]
    fn label_filters_with_numbers_durations_bytes_and_logic() {
        let l = log(
            r#"{job="x"} | logfmt | status >= 500 and duration > 1.5s or size <= 20MB | level="error", method!~"GET|HEAD" | latency < 250ms level=~"warn.*" | addr = ip("192.168.0.0/16") | __error__="" | (a > 1 or b < 2) and c == 3"#,
        );
        let f = |i: usize| match &l.pipeline[i] {
            Stage::LabelFilter(f) => f.clone(),
            other => panic!("{other:?}"),
        };
        let cmp = |name: &str, op, value| LabelFilter::Compare {
            name: name.into(),
            op,
            value,
        };
        assert_eq!(
            f(1),
            LabelFilter::Or(
                Box::new(LabelFilter::And(
                    Box::new(cmp("status", CompareOp::Ge, CompareValue::Number(500.0))),
                    Box::new(cmp("duration", CompareOp::Gt, CompareValue::Duration(1.5)))
                )),
                Box::new(cmp("size", CompareOp::Le, CompareValue::Bytes(20_000_000)))
            )
        );
        assert!(matches!(f(2), LabelFilter::And(_, _)));
        assert_eq!(
            f(3),
            LabelFilter::And(
                Box::new(cmp("latency", CompareOp::Lt, CompareValue::Duration(0.25))),
                Box::new(LabelFilter::String(
                    Matcher::new(MatchType::Regex, "level", "warn.*").unwrap()
                ))
            )
        );
        assert_eq!(
            f(4),
            LabelFilter::Ip {
                name: "addr".into(),
                negated: false,
                pattern: "192.168.0.0/16".into()
            }
        );
        assert_eq!(f(5), LabelFilter::String(eq("__error__", "")));
        assert!(matches!(f(6), LabelFilter::And(a, _) if matches!(*a, LabelFilter::Or(_, _))));
    }

    #[test]
    fn range_and_vector_aggregations() {
        let m = metric(r#"sum by (level) (count_over_time({job=~".+"} | json [1m]))"#);
        let MetricExpr::Vector {
            op: VectorOp::Sum,
            grouping: Some(Grouping::By(by)),
            expr,
            ..
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(by, ["level"]);
        let MetricExpr::Range { op, range, .. } = *expr else {
            panic!()
        };
        assert_eq!(op, RangeOp::CountOverTime);
        assert_eq!(range.range_ms, 60_000);
        assert_eq!(range.log.pipeline, [Stage::Json(vec![])]);

        // The range before the pipeline, in parentheses, and an offset.
        for q in [
            r#"rate({app="a"}[5m] |= "x")"#,
            r#"rate({app="a"} |= "x" [5m])"#,
            r#"rate(({app="a"} |= "x")[5m])"#,
        ] {
            let MetricExpr::Range { range, .. } = metric(q) else {
                panic!("{q}")
            };
            assert_eq!(
                (range.range_ms, range.log.pipeline.len()),
                (300_000, 1),
                "{q}"
            );
        }
        let MetricExpr::Range { range, .. } = metric(r#"bytes_rate({a="b"}[1h30m] offset 2h)"#)
        else {
            panic!()
        };
        assert_eq!((range.range_ms, range.offset_ms), (5_400_000, 7_200_000));

        // Unwrap with conversions and post filters; grouping after the call.
        let m = metric(
            r#"quantile_over_time(0.99, {app="a"} | logfmt | unwrap duration(latency) | __error__="" [5m]) by (path)"#,
        );
        let MetricExpr::Range {
            op: RangeOp::QuantileOverTime,
            param: Some(phi),
            range,
            grouping: Some(Grouping::By(path)),
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(
            (phi, path.as_slice()),
            (0.99, ["path".to_string()].as_slice())
        );
        let unwrap = range.unwrap.unwrap();
        assert_eq!(
            (
                unwrap.label.as_str(),
                unwrap.conversion,
                unwrap.post_filters.len()
            ),
            ("latency", Conversion::Duration, 1)
        );
        let MetricExpr::Range { range, .. } =
            metric(r#"sum_over_time({a="b"} | unwrap bytes(size) [1m])"#)
        else {
            panic!()
        };
        assert_eq!(range.unwrap.unwrap().conversion, Conversion::Bytes);

        // topk with its parameter and grouping after.
        let m = metric(r#"topk(3, sum(rate({a="b"}[1m])) by (host))"#);
        assert!(
            matches!(m, MetricExpr::Vector { op: VectorOp::Topk, param: Some(k), .. } if k == 3.0)
        );
        let m = metric(r#"sum(rate({a="b"}[1m])) without (pod)"#);
        assert!(matches!(
            m,
            MetricExpr::Vector {
                grouping: Some(Grouping::Without(_)),
                ..
            }
        ));
    }

    #[test]
    fn binary_operations_bind_as_promql() {
        let m =
            metric(r#"sum(rate({a="b"} |= "error" [1m])) / sum(rate({a="b"}[1m])) * 100 > bool 5"#);
        // ((x / y) * 100) > bool 5
        let MetricExpr::Binary {
            op: BinaryOp::Gt,
            return_bool: true,
            lhs,
            rhs,
            ..
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(*rhs, MetricExpr::Literal(5.0));
        assert!(matches!(
            *lhs,
            MetricExpr::Binary {
                op: BinaryOp::Mul,
                ..
            }
        ));
        // 2 ^ 3 ^ 2 is 2 ^ (3 ^ 2).
        let m = metric("2 ^ 3 ^ 2");
        assert!(
            matches!(m, MetricExpr::Binary { op: BinaryOp::Pow, rhs, .. } if matches!(*rhs, MetricExpr::Binary { .. }))
        );
        let m = metric(
            r#"rate({a="b"}[1m]) / on (host) group_left (zone) rate({a="c"}[1m]) or vector(0)"#,
        );
        let MetricExpr::Binary {
            op: BinaryOp::Or,
            lhs,
            ..
        } = m
        else {
            panic!()
        };
        let MetricExpr::Binary { matching, .. } = *lhs else {
            panic!()
        };
        assert_eq!(matching.on, Some((true, vec!["host".to_string()])));
        assert_eq!(matching.group, Some((true, vec!["zone".to_string()])));
        assert!(matches!(
            metric(r#"label_replace(rate({a="b"}[1m]), "dst", "$1", "src", "(.*)")"#),
            MetricExpr::LabelReplace { .. }
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}vector(1){}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{e}");
        let pow = format!("vector(1){}", "^1".repeat(100_000));
        assert!(
            parse(&pow)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
        let filters = format!(
            "{{a=\"b\"}} | {}x=\"1\"{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(
            parse(&filters)
                .unwrap_err()
                .message
                .contains("nested too deeply")
        );
        // Chains of operators and of label filters are as deep as they are long.
        for chain in [
            vec!["vector(1)"; 3000].join(" + "),
            vec!["vector(1)"; 3000].join(" or "),
            format!(
                "{{a=\"b\"}} | json | {}",
                vec!["x=\"1\""; 20_000].join(" and ")
            ),
            format!(
                "{{a=\"b\"}} | json | {}",
                vec!["x=\"1\""; 20_000].join(" or ")
            ),
            format!(
                "{{a=\"b\"}} | json | {}",
                vec!["x=\"1\""; 20_000].join(", ")
            ),
        ] {
            let e = parse(&chain).unwrap_err();
            assert!(e.message.contains("nested too deeply"), "{e}");
        }
        // Within the bound, parsed as usual.
        let ok = format!("{}vector(1){}", "(".repeat(50), ")".repeat(50));
        assert!(parse(&ok).is_ok());
        assert!(parse(&vec!["vector(1)"; 99].join(" + ")).is_ok());
        assert!(parse(&vec!["vector(1)"; 50].join(" * 2 + ")).is_ok());
        let filters = vec!["x=\"1\""; 99].join(" and ");
        assert!(parse(&format!("{{a=\"b\"}} | json | {filters}")).is_ok());
        // Depth is given back after a chain: many chains in a row are fine.
        let stages = vec!["| x=\"1\" and y=\"2\" or z=\"3\""; 200].join(" ");
        assert!(parse(&format!("{{a=\"b\"}} {stages}")).is_ok());
    }

    #[test]
    fn errors_say_where() {
        let err = |q: &str| parse(q).unwrap_err();
        let e = err(r#"{app="a"} |= "x" | json | "#);
        assert_eq!((e.line, e.col), (1, 27), "{e}");
        let e = err(r#"{app="a"} |= "x" | status >> 5"#);
        assert_eq!(e.col, 28, "{e}");
        assert!(
            e.to_string()
                .starts_with("parse error at line 1, col 28: syntax error")
        );
        let e = err("{app=~\".*\"}");
        assert!(
            e.message
                .contains("at least one regexp or equality matcher"),
            "{e}"
        );
        assert!(err("{}").message.contains("at least one"));
        let e = err("count_over_time({a=\"b\"} | unwrap x [1m])");
        assert_eq!(e.message, "invalid aggregation count_over_time with unwrap");
        let e = err("sum_over_time({a=\"b\"} | unwrap x [1m]) by (a)");
        assert_eq!(
            e.message,
            "grouping not allowed for sum_over_time aggregation"
        );
        assert!(parse("rate({a=\"b\"} | unwrap x [1m])").is_ok());
        let e = err("sum_over_time({a=\"b\"}[1m])");
        assert_eq!(
            e.message,
            "invalid aggregation sum_over_time without unwrap"
        );
        assert!(
            err("{a=\"b\"} | unwrap x")
                .message
                .contains("only allowed in a range")
        );
        let e = err("{a=\"b\"}\n  |~ \"(\"");
        assert_eq!((e.line, e.col), (2, 6), "{e}");
        assert!(err("rate({a=\"b\"}[0s])").message.contains("positive"));
        assert!(
            err("count_over_time({a=\"b\"}[5x])")
                .message
                .contains("invalid duration")
        );
        assert!(err("foo(1)").message.contains("unexpected IDENTIFIER"));
        assert!(err("{a=\"b\"} |= \"x").message.contains("unterminated"));
        assert!(err("1 + bool 2").message.contains("bool modifier"));
    }

    #[test]
    fn durations_and_byte_sizes() {
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("1.5s"), Some(1.5));
        assert_eq!(parse_duration("300ms"), Some(0.3));
        assert_eq!(parse_duration("2µs"), Some(2e-6));
        assert_eq!(parse_duration("1d"), Some(86_400.0));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        for (text, bytes) in [
            ("20MB", 20_000_000),
            ("1.5 KiB", 1536),
            ("42", 42),
            ("3gb", 3_000_000_000),
            ("1,000kb", 1_000_000),
            (".5k", 500),
            ("7 b ", 7),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for (text, error) in [
            ("1 parsec", "unhandled size name: parsec"),
            (" 5KB", r#"strconv.ParseFloat: parsing "": invalid syntax"#),
            ("-5", r#"strconv.ParseFloat: parsing "": invalid syntax"#),
            (
                "1.2.3",
                r#"strconv.ParseFloat: parsing "1.2.3": invalid syntax"#,
            ),
            ("20EiB", "too large: 20EiB"),
        ] {
            assert_eq!(parse_bytes(text), Err(error.to_string()), "{text}");
        }
        assert_eq!(parse_label_duration("1m30.5s"), Ok(90.5));
        assert_eq!(parse_label_duration("-250ms"), Ok(-0.25));
        assert!(parse_label_duration("1d").is_err());
    }

    #[test]
    fn the_fuzz_seeds_are_valid_queries() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/logql_parse");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let query = std::fs::read_to_string(&path).unwrap();
            assert!(
                parse(&query).is_ok(),
                "{}: {:?}",
                path.display(),
                parse(&query)
            );
            n += 1;
        }
        assert!(n >= 5);
    }
}
