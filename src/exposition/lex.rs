//! What the two text parsers share: a cursor over a body already checked to be UTF-8,
//! the name and quoted-string scanners, Go-compatible float parsing, unescaping, and
//! the label checks Prometheus's scrape loop applies.
//!
//! Every position the cursor stops at is either an ASCII byte or an end of the body,
//! so slicing the `&str` between two of them is always on a char boundary.

use std::borrow::Cow;

use super::error::ParseError;

/// The bits Prometheus gives every NaN it reads from a scrape (`value.NormalNaN`). It
/// is not the staleness marker, so a target that exposes `NaN` never ends a series.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Above this many labels the duplicate check sorts instead of comparing pairs.
const PAIRWISE_LABEL_LIMIT: usize = 16;

/// Why a quoted string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotedError {
    /// The body or the line ended before the closing quote.
    Unterminated,
    /// A raw newline inside the quotes where the format forbids one.
    Newline,
}

/// A position in the body and the scanners that move it.
pub(crate) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl std::fmt::Debug for Cursor<'_> {
    // The body can be megabytes: show where the cursor is, not what it reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("pos", &self.pos)
            .field("len", &self.src.len())
            .finish()
    }
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// A cursor over the same text at `pos`.
    pub fn at(&self, pos: usize) -> Self {
        Self { src: self.src, pos }
    }

    /// The whole text.
    pub fn src(&self) -> &'a str {
        self.src
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    pub fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + offset).copied()
    }

    /// Moves past one byte; callers only bump over an ASCII byte they have peeked.
    pub fn bump(&mut self) {
        if self.pos < self.src.len() {
            self.pos += 1;
        }
    }

    /// Consumes `b` if it is next.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `s` (ASCII) if the body continues with it.
    pub fn eat_str(&mut self, s: &str) -> bool {
        let rest = self.src.as_bytes().get(self.pos..).unwrap_or_default();
        if rest.starts_with(s.as_bytes()) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// True when the body continues with `s`, without consuming it.
    pub fn looking_at(&self, s: &str) -> bool {
        self.src
            .as_bytes()
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(s.as_bytes()))
    }

    /// The text between two positions the cursor has stood at.
    pub fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src.get(start..end).unwrap_or_default()
    }

    /// Skips spaces and tabs (the text format's whitespace between tokens).
    pub fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Consumes bytes while `keep` holds; returns them.
    pub fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let rest = self.src.as_bytes().get(start..).unwrap_or_default();
        // A scan over the slice (not byte by byte through `peek`): the hot loop of
        // every name, value and line.
        self.pos += rest.iter().position(|&b| !keep(b)).unwrap_or(rest.len());
        self.slice(start, self.pos)
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`, or "" when the next byte cannot start one.
    pub fn metric_name(&mut self) -> &'a str {
        match self.peek() {
            Some(b) if is_metric_name_start(b) => self.take_while(is_metric_name_char),
            _ => "",
        }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`, or "" when the next byte cannot start one.
    pub fn label_name(&mut self) -> &'a str {
        match self.peek() {
            Some(b) if is_label_name_start(b) => self.take_while(is_label_name_char),
            _ => "",
        }
    }

    /// The rest of the line, not including the newline (which is left unconsumed).
    pub fn rest_of_line(&mut self) -> &'a str {
        self.take_while(|b| b != b'\n')
    }

    /// A token for a value or timestamp: everything up to a space, tab, newline or
    /// `stop`.
    pub fn token(&mut self, also_stop: u8) -> &'a str {
        self.take_while(|b| !matches!(b, b' ' | b'\t' | b'\n') && b != also_stop)
    }

    /// A double-quoted string starting at the opening quote (which must be next). Returns
    /// the raw contents, escapes still in, and whether any backslash was seen. A
    /// backslash escapes whatever byte follows it, except a newline.
    pub fn quoted(&mut self, allow_newline: bool) -> Result<(&'a str, bool), QuotedError> {
        self.bump();
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(QuotedError::Unterminated),
                Some(b'"') => {
                    let raw = self.slice(start, self.pos);
                    self.pos += 1;
                    return Ok((raw, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    match self.peek_at(1) {
                        None => return Err(QuotedError::Unterminated),
                        Some(b'\n') => return Err(QuotedError::Newline),
                        // The escaped byte is never a char boundary problem: a
                        // multi-byte char's continuation bytes are neither `"` nor `\`.
                        Some(_) => self.pos += 2,
                    }
                }
                Some(b'\n') if !allow_newline => return Err(QuotedError::Newline),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// 1-based line number of `pos`.
    pub fn line_at(&self, pos: usize) -> usize {
        line_at(self.src, pos)
    }

    pub fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    pub fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError::new(self.line_at(pos), message)
    }

    /// What is at the cursor, for "expected X, got Y" messages.
    pub fn got(&self) -> String {
        match self.peek() {
            None => "end of input".to_owned(),
            Some(b'\n') => "end of line".to_owned(),
            Some(_) => {
                let rest = self.src.get(self.pos..).unwrap_or_default();
                let token: String = rest
                    .chars()
                    .take_while(|c| !matches!(c, ' ' | '\t' | '\n'))
                    .take(24)
                    .collect();
                if token.is_empty() {
                    // A space or tab: show it rather than nothing.
                    format!("{:?}", rest.chars().next().unwrap_or(' '))
                } else {
                    format!("{token:?}")
                }
            }
        }
    }
}

/// Reads a label set starting at its `{` into `labels`, values unescaped.
///
/// `text` selects the Prometheus text rules: spaces and tabs may surround every token
/// and a label value may hold a raw newline. OpenMetrics allows neither. Both accept
/// one trailing comma, as Prometheus 2.42 does for both formats.
pub(crate) fn label_set<'a>(
    cur: &mut Cursor<'a>,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
    text: bool,
) -> Result<(), ParseError> {
    cur.bump();
    loop {
        if text {
            cur.skip_blanks();
        }
        if cur.eat(b'}') {
            return Ok(());
        }
        let name = cur.label_name();
        if name.is_empty() {
            return Err(cur.error(format!("expected label name or '}}', got {}", cur.got())));
        }
        if text {
            cur.skip_blanks();
        }
        if !cur.eat(b'=') {
            return Err(cur.error(format!(
                "expected '=' after label name {name:?}, got {}",
                cur.got()
            )));
        }
        if text {
            cur.skip_blanks();
        }
        if cur.peek() != Some(b'"') {
            return Err(cur.error(format!(
                "expected '\"' to open the value of label {name:?}, got {}",
                cur.got()
            )));
        }
        let open = cur.pos();
        let (raw, escaped) = match cur.quoted(text) {
            Ok(v) => v,
            Err(QuotedError::Unterminated) => {
                return Err(cur.error_at(open, format!("unterminated value of label {name:?}")));
            }
            Err(QuotedError::Newline) => {
                return Err(cur.error(format!(
                    "raw newline in the value of label {name:?} (it must be written as \\n)"
                )));
            }
        };
        let value = if escaped {
            unescape(raw, true)
        } else {
            Cow::Borrowed(raw)
        };
        labels.push((name, value));
        if text {
            cur.skip_blanks();
        }
        if cur.eat(b',') {
            continue;
        }
        if cur.eat(b'}') {
            return Ok(());
        }
        return Err(cur.error(format!(
            "expected ',' or '}}' after the value of label {name:?}, got {}",
            cur.got()
        )));
    }
}

/// Moves past a text-format label set from its `{` without reading it, to just after
/// the `}` that closes it (quotes and escapes respected). False when the set does not
/// close as [`label_set`] would find it: reading it with `label_set` then gives the
/// error. A set that skips may still be malformed inside (`label_set` finds that).
pub(crate) fn skip_label_set(cur: &mut Cursor<'_>) -> bool {
    let bytes = cur.src.as_bytes();
    let mut i = cur.pos + 1;
    let mut quoted = false;
    while let Some(&b) = bytes.get(i) {
        match (quoted, b) {
            (true, b'\\') => {
                if matches!(bytes.get(i + 1), None | Some(b'\n')) {
                    return false;
                }
                i += 2;
                continue;
            }
            (true, b'"') => quoted = false,
            (false, b'"') => quoted = true,
            (false, b'}') => {
                cur.pos = i + 1;
                return true;
            }
            (false, b'\n') => return false,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Fails with a clear message when a label name repeats (see [`duplicate_label`]).
pub(crate) fn check_labels<'a>(
    cur: &Cursor<'a>,
    line_pos: usize,
    name: &str,
    labels: &[(&'a str, Cow<'a, str>)],
    scratch: &mut Vec<&'a str>,
) -> Result<(), ParseError> {
    match duplicate_label(labels, scratch) {
        None => Ok(()),
        Some("__name__") => Err(cur.error_at(
            line_pos,
            format!("label name \"__name__\" repeats the metric name of {name:?}"),
        )),
        Some(dup) => Err(cur.error_at(
            line_pos,
            format!("duplicate label name {dup:?} in series {name:?}"),
        )),
    }
}

/// 1-based line number of byte `pos` of `src`. Only called on the error path.
pub(crate) fn line_at(src: &str, pos: usize) -> usize {
    let before = src.as_bytes().get(..pos).unwrap_or(src.as_bytes());
    1 + before.iter().filter(|&&b| b == b'\n').count()
}

/// Checks that the body is UTF-8 and gives it back as a `str`. Prometheus checks label
/// values and help texts; ODIN checks the whole body once, which is one fast pass
/// rather than many small ones (a comment line with bad bytes is rejected too).
pub(crate) fn check_utf8(body: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(body).map_err(|e| {
        let valid = body.get(..e.valid_up_to()).unwrap_or_default();
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        ParseError::new(line, "invalid UTF-8")
    })
}

pub(crate) fn is_metric_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

pub(crate) fn is_metric_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

pub(crate) fn is_label_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub(crate) fn is_label_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Parses a float as Prometheus 2.42 does: Go's `strconv.ParseFloat` minus the Go 1.13
/// additions (hex mantissas with `p` exponents, `_` separators). So: decimal numbers
/// with an optional sign and exponent, `Inf`/`Infinity` with an optional sign and
/// `NaN` without one, all case-insensitive. A finite number too large for an f64 is an
/// error (Go's `ErrRange`); one too small becomes 0, as in Go. NaN comes back with
/// Prometheus's [`NORMAL_NAN_BITS`].
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let bytes = s.as_bytes();
    // Most values on a page are small non-negative integers: skip the general parser.
    // Fifteen digits stay below 2^53, so the conversion is exact.
    if !bytes.is_empty() && bytes.len() <= 15 && bytes.iter().all(u8::is_ascii_digit) {
        let n = bytes
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        return Some(n as f64);
    }
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::from_bits(NORMAL_NAN_BITS));
    }
    // Rust's grammar for decimal floats is Go's; it also takes a signed NaN, which the
    // character check below rules out along with hex and `_`.
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() {
        return None;
    }
    Some(v)
}

/// Undoes the exposition escapes: `\\` and `\n` always, `\"` when `quote` is set (label
/// values, and OpenMetrics help texts). A backslash before anything else stays as it
/// is, as Prometheus's replacer leaves it. Borrows when there is nothing to undo.
pub(crate) fn unescape(raw: &str, quote: bool) -> Cow<'_, str> {
    if !raw.as_bytes().contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + 1..).unwrap_or_default();
        let replacement = match after.as_bytes().first() {
            Some(b'\\') => Some('\\'),
            Some(b'n') => Some('\n'),
            Some(b'"') if quote => Some('"'),
            _ => None,
        };
        match replacement {
            Some(c) => {
                out.push(c);
                // The escaped byte is ASCII, so 1 is a char boundary.
                rest = after.get(1..).unwrap_or_default();
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The first label name that appears twice, counting the metric name as `__name__`.
/// Prometheus's scrape loop fails a scrape on such a series; the parsers do the same.
pub(crate) fn duplicate_label<'a>(
    labels: &[(&'a str, Cow<'a, str>)],
    scratch: &mut Vec<&'a str>,
) -> Option<&'a str> {
    if labels.len() <= PAIRWISE_LABEL_LIMIT {
        for (i, (name, _)) in labels.iter().enumerate() {
            if *name == "__name__" {
                return Some(name);
            }
            if labels
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .any(|(other, _)| other == name)
            {
                return Some(name);
            }
        }
        return None;
    }
    scratch.clear();
    scratch.extend(labels.iter().map(|(name, _)| *name));
    scratch.push("__name__");
    scratch.sort_unstable();
    scratch.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn floats_follow_go_parse_float() {
        for (s, want) in [
            ("0", 0.0),
            ("1", 1.0),
            ("007", 7.0),
            ("-1.5", -1.5),
            ("+1.5", 1.5),
            (".5", 0.5),
            ("1.", 1.0),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("2.5e-3", 0.0025),
            ("1.7976931348623157e308", f64::MAX),
            ("1e-400", 0.0),
            ("123456789012345678901234567890", 1.2345678901234568e29),
            ("+Inf", f64::INFINITY),
            ("inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("-infinity", f64::NEG_INFINITY),
            ("INFINITY", f64::INFINITY),
        ] {
            assert_eq!(parse_float(s), Some(want), "{s}");
        }
        for s in ["NaN", "nan", "NAN"] {
            assert_eq!(parse_float(s).unwrap().to_bits(), NORMAL_NAN_BITS, "{s}");
        }
        for s in [
            "", "+", "-", ".", "e5", "1e", "1e+", "1.2.3", "+-1", "--1", "0x10", "0x1p-2", "1_000",
            "1e400", "-1e400", "+NaN", "-nan", "infin", "Infinit", "abc", "1 ", " 1", "1,5",
        ] {
            assert_eq!(parse_float(s), None, "{s:?}");
        }
    }

    #[test]
    fn unescape_undoes_only_the_known_escapes() {
        assert!(matches!(unescape("plain", true), Cow::Borrowed("plain")));
        assert_eq!(unescape(r#"a\\b\nc\"d"#, true), "a\\b\nc\"d");
        assert_eq!(unescape(r#"a\"d"#, false), r#"a\"d"#);
        assert_eq!(unescape(r"x\q\", true), r"x\q\");
        assert_eq!(unescape(r"\\n", true), r"\n");
        assert_eq!(unescape(r"é\né", true), "é\né");
    }

    #[test]
    fn duplicate_labels_are_found_small_and_large() {
        let mut scratch = Vec::new();
        let small = [("a", Cow::Borrowed("1")), ("b", Cow::Borrowed("2"))];
        assert_eq!(duplicate_label(&small, &mut scratch), None);
        let dup = [("a", Cow::Borrowed("1")), ("a", Cow::Borrowed("2"))];
        assert_eq!(duplicate_label(&dup, &mut scratch), Some("a"));
        let name = [("__name__", Cow::Borrowed("x"))];
        assert_eq!(duplicate_label(&name, &mut scratch), Some("__name__"));

        let names: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
        let mut many: Vec<(&str, Cow<str>)> = names
            .iter()
            .map(|n| (n.as_str(), Cow::Borrowed("v")))
            .collect();
        assert_eq!(duplicate_label(&many, &mut scratch), None);
        many.push(("l7", Cow::Borrowed("w")));
        assert_eq!(duplicate_label(&many, &mut scratch), Some("l7"));
        many.pop();
        many.push(("__name__", Cow::Borrowed("w")));
        assert_eq!(duplicate_label(&many, &mut scratch), Some("__name__"));
    }

    #[test]
    fn invalid_utf8_reports_its_line() {
        let err = check_utf8(b"a 1\nb 2\nc{x=\"\xff\"} 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.to_string(), "line 3: invalid UTF-8");
    }
}
