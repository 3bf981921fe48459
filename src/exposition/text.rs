//! The Prometheus text format 0.0.4, read as Prometheus 2.42's `PromParser` reads it.
//!
//! One entry per line: `# HELP name text`, `# TYPE name kind`, any other `#` line (a
//! comment), blank lines (skipped), and samples `name{label="value",...} value [ms]`.
//! Spaces and tabs may stand between any two tokens and at either end of a line; a
//! label value may even hold a raw newline. The last line needs no newline.
//!
//! Where ODIN is stricter than Prometheus, on input no exporter writes: the whole body
//! must be UTF-8 (Prometheus only checks label values and help texts); label pairs
//! must be separated by commas (Prometheus also takes `{a="1" b="2"}`); the metric
//! name in a HELP or TYPE line must be followed by whitespace or the end of the line
//! (Prometheus reads `# HELP a-b x` as help `b x` for `a`); and a NUL byte is an
//! ordinary character, not the end of the body.

use std::borrow::Cow;

use super::error::ParseError;
use super::family::MetricType;
use super::format::{Entry, SeriesEntry};
use super::lex::{
    Cursor, check_labels, check_utf8, is_metric_name_start, label_set, parse_float, skip_label_set,
};

/// A pull parser over one text-format body; see the module documentation.
#[derive(Debug)]
pub struct TextParser<'a> {
    cur: Cursor<'a>,
    /// The current series' labels, reused from line to line.
    labels: Vec<(&'a str, Cow<'a, str>)>,
    /// Scratch space for the duplicate-label check.
    scratch: Vec<&'a str>,
    /// Set once parsing has failed: the error every later call returns.
    failed: Option<ParseError>,
    /// Label sets are read only when [`labels`](Self::labels) asks for them.
    defer_labels: bool,
    /// The current series' label set while it is unread: where its line starts,
    /// where the set starts (`{`), and the series name.
    unread: Option<(usize, usize, &'a str)>,
}

impl<'a> TextParser<'a> {
    /// A parser of `body`. A body that is not UTF-8 fails on the first `next`.
    pub fn new(body: &'a [u8]) -> Self {
        let (src, failed) = match check_utf8(body) {
            Ok(src) => (src, None),
            Err(err) => ("", Some(err)),
        };
        Self {
            cur: Cursor::new(src),
            labels: Vec::new(),
            scratch: Vec::new(),
            failed,
            defer_labels: false,
            unread: None,
        }
    }

    /// From now on, series come back with their label sets unread (empty `labels`),
    /// for [`labels`](Self::labels) to read when the caller needs them. A scraper
    /// that already knows a series by its text (`SeriesEntry::series`) never reads
    /// its labels again; the first read of a set checks it as `next` would have.
    pub fn defer_labels(&mut self) {
        self.defer_labels = true;
    }

    /// The whole body.
    pub fn source(&self) -> &'a str {
        self.cur.src()
    }

    /// The labels of the series `next` returned last, read now if they were deferred.
    pub fn labels(&mut self) -> Result<&[(&'a str, Cow<'a, str>)], ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if let Err(err) = self.read_unread_labels() {
            self.failed = Some(err.clone());
            return Err(err);
        }
        Ok(&self.labels)
    }

    /// Reads the current series' label set if it was skipped.
    fn read_unread_labels(&mut self) -> Result<(), ParseError> {
        let Some((line, open, name)) = self.unread.take() else {
            return Ok(());
        };
        self.labels.clear();
        let mut cur = self.cur.at(open);
        label_set(&mut cur, &mut self.labels, true)?;
        check_labels(&cur, line, name, &self.labels, &mut self.scratch)
    }

    /// The next entry, `Ok(None)` at the end of the body. After an error every call
    /// returns that error again.
    #[allow(clippy::should_implement_trait)] // entries borrow the parser: a lending iterator
    pub fn next(&mut self) -> Result<Option<Entry<'_>>, ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.advance() {
            Ok(Some(Entry::Series(s))) => Ok(Some(Entry::Series(SeriesEntry {
                labels: &self.labels,
                ..s
            }))),
            Ok(other) => Ok(other),
            Err(err) => {
                // A label set was skipped, and what follows it failed: the set is read
                // first, so that the error is the one reading in order finds.
                let err = self.read_unread_labels().err().unwrap_or(err);
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Reads the next entry; a series comes back with empty labels, which `next` fills
    /// in from `self.labels` (returning them from here would keep `self` borrowed).
    fn advance(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            self.cur.skip_blanks();
            match self.cur.peek() {
                None => return Ok(None),
                Some(b'\n') => self.cur.bump(),
                Some(b'#') => return self.comment_or_metadata().map(Some),
                Some(b) if is_metric_name_start(b) => return self.series().map(Some),
                Some(_) => {
                    return Err(self.cur.error(format!(
                        "expected a metric name or '#', got {}",
                        self.cur.got()
                    )));
                }
            }
        }
    }

    /// A line starting with `#`: HELP and TYPE when `#`, whitespace, the keyword and
    /// whitespace follow; anything else is a comment.
    fn comment_or_metadata(&mut self) -> Result<Entry<'a>, ParseError> {
        let start = self.cur.pos();
        self.cur.bump();
        if matches!(self.cur.peek(), Some(b' ' | b'\t')) {
            self.cur.skip_blanks();
            let keyword_ends = matches!(self.cur.peek_at(4), Some(b' ' | b'\t'));
            if keyword_ends && self.cur.eat_str("HELP") {
                return self.metadata(start, true);
            }
            if keyword_ends && self.cur.eat_str("TYPE") {
                return self.metadata(start, false);
            }
        }
        self.cur.rest_of_line();
        let text = self.cur.slice(start, self.cur.pos());
        self.cur.eat(b'\n');
        Ok(Entry::Comment(text))
    }

    /// The rest of a HELP (`help`) or TYPE line, after the keyword.
    fn metadata(&mut self, start: usize, help: bool) -> Result<Entry<'a>, ParseError> {
        let keyword = if help { "HELP" } else { "TYPE" };
        self.cur.skip_blanks();
        let name = self.cur.metric_name();
        if name.is_empty() {
            return Err(self.cur.error(format!(
                "expected metric name after {keyword}, got {}",
                self.cur.got()
            )));
        }
        // One space or tab separates the name from the text; any more belong to the
        // text, as in Prometheus.
        let text = match self.cur.peek() {
            None | Some(b'\n') => "",
            Some(b' ' | b'\t') => {
                self.cur.bump();
                self.cur.rest_of_line()
            }
            Some(_) => {
                return Err(self.cur.error(format!(
                    "expected whitespace after metric name {name:?} in {keyword}, got {}",
                    self.cur.got()
                )));
            }
        };
        self.cur.eat(b'\n');
        if help {
            return Ok(Entry::Help {
                name,
                help: super::lex::unescape(text, false),
            });
        }
        let kind = match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            _ => {
                return Err(self
                    .cur
                    .error_at(start, format!("invalid metric type {text:?} for {name:?}")));
            }
        };
        Ok(Entry::Type { name, kind })
    }

    /// A sample line, from its metric name.
    fn series(&mut self) -> Result<Entry<'a>, ParseError> {
        let start = self.cur.pos();
        let name = self.cur.metric_name();
        self.labels.clear();
        self.unread = None;
        let mut series_end = self.cur.pos();
        self.cur.skip_blanks();
        if self.cur.peek() == Some(b'{') {
            let open = self.cur.pos();
            if self.defer_labels && skip_label_set(&mut self.cur) {
                self.unread = Some((start, open, name));
            } else {
                label_set(&mut self.cur, &mut self.labels, true)?;
                check_labels(&self.cur, start, name, &self.labels, &mut self.scratch)?;
            }
            series_end = self.cur.pos();
            self.cur.skip_blanks();
        }
        let value_pos = self.cur.pos();
        let value_text = self.cur.token(b'{');
        if value_text.is_empty() {
            return Err(self.cur.error(format!(
                "expected value after {name:?}, got {}",
                self.cur.got()
            )));
        }
        let value = parse_float(value_text).ok_or_else(|| {
            self.cur.error_at(
                value_pos,
                format!("invalid value {value_text:?} for {name:?}"),
            )
        })?;
        self.cur.skip_blanks();
        let timestamp_ms = match self.cur.peek() {
            None | Some(b'\n') => None,
            Some(b) if b.is_ascii_digit() => {
                let ts_pos = self.cur.pos();
                let ts_text = self.cur.token(b'{');
                let ts = ts_text
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| ts_text.parse::<i64>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        self.cur.error_at(
                            ts_pos,
                            format!("invalid timestamp {ts_text:?} for {name:?} (integer milliseconds expected)"),
                        )
                    })?;
                self.cur.skip_blanks();
                if !matches!(self.cur.peek(), None | Some(b'\n')) {
                    return Err(self.cur.error(format!(
                        "expected end of line after timestamp, got {}",
                        self.cur.got()
                    )));
                }
                Some(ts)
            }
            Some(_) => {
                return Err(self.cur.error(format!(
                    "expected timestamp or end of line after value, got {}",
                    self.cur.got()
                )));
            }
        };
        self.cur.eat(b'\n');
        Ok(Entry::Series(SeriesEntry {
            name,
            labels: &[],
            value,
            timestamp_ms,
            series: start..series_end,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::lex::NORMAL_NAN_BITS;
    use super::*;

    /// A comparable rendering of every entry, or the error's text. Every body is
    /// also read with labels deferred (each set read after its line, as a scrape of
    /// unknown series does), which must give the same entries and errors.
    fn render(body: &[u8]) -> Result<Vec<String>, String> {
        let eager = render_with(body, false);
        assert_eq!(eager, render_with(body, true), "deferred labels differ");
        eager
    }

    fn render_with(body: &[u8], defer: bool) -> Result<Vec<String>, String> {
        let mut p = TextParser::new(body);
        if defer {
            p.defer_labels();
        }
        let src = p.source();
        let mut out = Vec::new();
        loop {
            let (line, name, value, timestamp_ms, series) = match p.next() {
                Ok(None) => return Ok(out),
                Ok(Some(Entry::Series(s))) => (
                    render_entry(&Entry::Series(s.clone())),
                    s.name.to_string(),
                    s.value,
                    s.timestamp_ms,
                    s.series,
                ),
                Ok(Some(e)) => {
                    out.push(render_entry(&e));
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            let text = src.get(series.clone()).unwrap();
            assert!(text.starts_with(&name), "{text:?} starts with {name:?}");
            if !defer {
                out.push(line);
                continue;
            }
            let labels = match p.labels() {
                Ok(ls) => ls.to_vec(),
                Err(e) => return Err(e.to_string()),
            };
            out.push(render_entry(&Entry::Series(SeriesEntry {
                name: &name,
                labels: &labels,
                value,
                timestamp_ms,
                series,
            })));
        }
    }

    fn render_entry(e: &Entry<'_>) -> String {
        match e {
            Entry::Help { name, help } => format!("help {name} {help:?}"),
            Entry::Type { name, kind } => format!("type {name} {}", kind.as_str()),
            Entry::Unit { name, unit } => format!("unit {name} {unit}"),
            Entry::Comment(c) => format!("comment {c:?}"),
            Entry::Series(s) => {
                let labels: Vec<String> =
                    s.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
                let ts = s.timestamp_ms.map(|t| format!(" @{t}")).unwrap_or_default();
                let v = if s.value.is_nan() {
                    format!("NaN(0x{:x})", s.value.to_bits())
                } else {
                    format!("{}", s.value)
                };
                format!("{}{{{}}} {v}{ts}", s.name, labels.join(","))
            }
        }
    }

    fn ok(body: &str) -> Vec<String> {
        render(body.as_bytes()).unwrap()
    }

    fn err(body: &str) -> String {
        render(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_a_node_exporter_page() {
        let body = "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n\
# TYPE node_cpu_seconds_total counter\n\
node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12345.67\n\
node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 1.5e+06\n\
# HELP go_gc_duration_seconds A summary of the pause duration.\n\
# TYPE go_gc_duration_seconds summary\n\
go_gc_duration_seconds{quantile=\"0.5\"} 4.9351e-05\n\
go_gc_duration_seconds_sum 0.5\n\
go_gc_duration_seconds_count 99\n";
        assert_eq!(
            ok(body),
            [
                "help node_cpu_seconds_total \"Seconds the CPUs spent in each mode.\"",
                "type node_cpu_seconds_total counter",
                "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12345.67",
                "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 1500000",
                "help go_gc_duration_seconds \"A summary of the pause duration.\"",
                "type go_gc_duration_seconds summary",
                "go_gc_duration_seconds{quantile=\"0.5\"} 0.000049351",
                "go_gc_duration_seconds_sum{} 0.5",
                "go_gc_duration_seconds_count{} 99",
            ]
        );
    }

    #[test]
    fn special_and_go_floats_are_values() {
        let body = "a NaN\nb +Inf\nc -Inf\nd inf\ne -1.5e-3\nf .5\ng 1.\nh 0007\ni 1E3\n";
        assert_eq!(
            ok(body),
            [
                format!("a{{}} NaN(0x{NORMAL_NAN_BITS:x})"),
                "b{} inf".to_owned(),
                "c{} -inf".to_owned(),
                "d{} inf".to_owned(),
                "e{} -0.0015".to_owned(),
                "f{} 0.5".to_owned(),
                "g{} 1".to_owned(),
                "h{} 7".to_owned(),
                "i{} 1000".to_owned(),
            ]
        );
        for bad in [
            "a 0x10\n",
            "a 1_000\n",
            "a 0x1p3\n",
            "a 1e999\n",
            "a -nan\n",
            "a one\n",
        ] {
            assert!(err(bad).starts_with("line 1: invalid value"), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_integer_milliseconds() {
        assert_eq!(ok("a 1 1700000000123\n"), ["a{} 1 @1700000000123"]);
        assert_eq!(ok("a 1 0\n"), ["a{} 1 @0"]);
        assert_eq!(
            err("a 1 -5\n"),
            "line 1: expected timestamp or end of line after value, got \"-5\""
        );
        assert!(err("a 1 1.5\n").starts_with("line 1: invalid timestamp \"1.5\""));
        assert!(err("a 1 99999999999999999999\n").starts_with("line 1: invalid timestamp"));
        assert_eq!(
            err("a 1 2 3\n"),
            "line 1: expected end of line after timestamp, got \"3\""
        );
    }

    #[test]
    fn label_value_escapes_are_undone() {
        let body = r#"a{p="C:\\dir",q="say \"hi\"",n="two\nlines",o="keep \x"} 1"#;
        let mut p = TextParser::new(body.as_bytes());
        let Some(Entry::Series(s)) = p.next().unwrap() else {
            panic!("want a series")
        };
        let labels: Vec<(&str, &str)> = s.labels.iter().map(|(n, v)| (*n, v.as_ref())).collect();
        assert_eq!(
            labels,
            [
                ("p", "C:\\dir"),
                ("q", "say \"hi\""),
                ("n", "two\nlines"),
                ("o", "keep \\x"),
            ]
        );
        assert!(matches!(s.labels[0].1, Cow::Owned(_)));
        let mut p = TextParser::new(b"a{p=\"plain\"} 1");
        let Some(Entry::Series(s)) = p.next().unwrap() else {
            panic!("want a series")
        };
        assert!(matches!(s.labels[0].1, Cow::Borrowed("plain")));
    }

    #[test]
    fn help_escapes_are_only_backslash_and_newline() {
        assert_eq!(
            ok("# HELP a x\\\\y\\nz \\\" \\q\n"),
            ["help a \"x\\\\y\\nz \\\\\\\" \\\\q\""]
        );
        assert_eq!(ok("# HELP a\n# HELP b \n"), ["help a \"\"", "help b \"\""]);
        // One separator; more whitespace belongs to the text.
        assert_eq!(ok("# HELP a  two\n"), ["help a \" two\""]);
    }

    #[test]
    fn blank_lines_whitespace_and_comments() {
        let body = "\n  \n# a comment\n#no space\n#\n  # indented\n# HELPER not help\n\
#\tTYPE a gauge\n \t a { x = \"1\" , } \t 2 \t 3 \t\n";
        assert_eq!(
            ok(body),
            [
                "comment \"# a comment\"",
                "comment \"#no space\"",
                "comment \"#\"",
                "comment \"# indented\"",
                "comment \"# HELPER not help\"",
                "type a gauge",
                "a{x=\"1\"} 2 @3",
            ]
        );
        assert_eq!(ok("a{x=\"1\"}2"), ["a{x=\"1\"} 2"]);
        assert_eq!(ok("a\t1"), ["a{} 1"]);
        assert!(ok("").is_empty());
    }

    #[test]
    fn every_type_and_untyped() {
        let body = "# TYPE a counter\n# TYPE b gauge\n# TYPE c histogram\n# TYPE d summary\n# TYPE e untyped\n";
        assert_eq!(
            ok(body),
            [
                "type a counter",
                "type b gauge",
                "type c histogram",
                "type d summary",
                "type e unknown",
            ]
        );
        assert_eq!(
            err("a 1\n# TYPE x info\n"),
            "line 2: invalid metric type \"info\" for \"x\""
        );
        assert_eq!(
            err("# TYPE x Counter\n"),
            "line 1: invalid metric type \"Counter\" for \"x\""
        );
        assert_eq!(
            err("# TYPE x counter \n"),
            "line 1: invalid metric type \"counter \" for \"x\""
        );
        assert_eq!(
            err("# TYPE x\n"),
            "line 1: invalid metric type \"\" for \"x\""
        );
    }

    #[test]
    fn duplicate_metadata_is_passed_on() {
        // Prometheus does not reject repeated HELP or TYPE lines; the last one wins in
        // its metadata cache. The parser hands each one out.
        let body = "# HELP a one\n# HELP a two\n# TYPE a gauge\n# TYPE a counter\na 1\n";
        assert_eq!(
            ok(body),
            [
                "help a \"one\"",
                "help a \"two\"",
                "type a gauge",
                "type a counter",
                "a{} 1",
            ]
        );
    }

    #[test]
    fn label_sets_empty_and_trailing_comma() {
        assert_eq!(ok("a{} 1\n"), ["a{} 1"]);
        assert_eq!(ok("a{b=\"c\",} 1\n"), ["a{b=\"c\"} 1"]);
        assert_eq!(ok("a{b=\"\"} 1\n"), ["a{b=\"\"} 1"]);
        assert_eq!(ok("a{_b1=\"c\"} 1\n"), ["a{_b1=\"c\"} 1"]);
        assert_eq!(
            err("a{b=\"c\",,} 1\n"),
            "line 1: expected label name or '}', got \",}\""
        );
        assert_eq!(
            err("a{,} 1\n"),
            "line 1: expected label name or '}', got \",}\""
        );
        assert_eq!(
            err("a{b=\"c\" d=\"e\"} 1\n"),
            "line 1: expected ',' or '}' after the value of label \"b\", got \"d=\\\"e\\\"}\""
        );
    }

    #[test]
    fn label_names_must_be_valid_and_unique() {
        assert_eq!(
            err("a{1b=\"c\"} 1\n"),
            "line 1: expected label name or '}', got \"1b=\\\"c\\\"}\""
        );
        assert_eq!(
            err("a{b:c=\"d\"} 1\n"),
            "line 1: expected '=' after label name \"b\", got \":c=\\\"d\\\"}\""
        );
        assert_eq!(
            err("ok 1\n\na{b=\"1\",b=\"2\"} 1\n"),
            "line 3: duplicate label name \"b\" in series \"a\""
        );
        assert_eq!(
            err("a{__name__=\"b\"} 1\n"),
            "line 1: label name \"__name__\" repeats the metric name of \"a\""
        );
        assert_eq!(
            err("a{b=c} 1\n"),
            "line 1: expected '\"' to open the value of label \"b\", got \"c}\""
        );
    }

    #[test]
    fn raw_newlines_inside_label_values_count_as_lines() {
        assert_eq!(ok("a{b=\"x\ny\"} 1\n"), ["a{b=\"x\\ny\"} 1"]);
        assert_eq!(
            err("a{b=\"x\ny\"} 1\nc{ 2\n"),
            "line 3: expected label name or '}', got \"2\""
        );
        assert_eq!(
            err("a 1\nb{c=\"never closed} 1\n"),
            "line 2: unterminated value of label \"c\""
        );
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        assert_eq!(
            err("a 1\nb\n"),
            "line 2: expected value after \"b\", got end of line"
        );
        assert_eq!(
            err("a 1\nb"),
            "line 2: expected value after \"b\", got end of input"
        );
        assert_eq!(
            err("a 1\n{b=\"c\"} 1\n"),
            "line 2: expected a metric name or '#', got \"{b=\\\"c\\\"}\""
        );
        assert_eq!(
            err("1a 1\n"),
            "line 1: expected a metric name or '#', got \"1a\""
        );
        assert_eq!(ok("# HELP\n"), ["comment \"# HELP\""]);
        assert_eq!(
            err("# HELP \n"),
            "line 1: expected metric name after HELP, got end of line"
        );
        assert_eq!(
            err("# TYPE 9a gauge\n"),
            "line 1: expected metric name after TYPE, got \"9a\""
        );
        assert_eq!(
            err("# HELP a-b x\n"),
            "line 1: expected whitespace after metric name \"a\" in HELP, got \"-b\""
        );
        assert_eq!(
            err("a{b=\"c\"} {\n"),
            "line 1: expected value after \"a\", got \"{\""
        );
        assert_eq!(
            err("a 1 {\n"),
            "line 1: expected timestamp or end of line after value, got \"{\""
        );
        assert_eq!(
            err("a 1 # comment\n"),
            "line 1: expected timestamp or end of line after value, got \"#\""
        );
    }

    #[test]
    fn an_error_is_sticky() {
        let mut p = TextParser::new(b"a 1\nb x\nc 2\n");
        assert!(p.next().unwrap().is_some());
        let first = p.next().unwrap_err();
        assert_eq!(first.line, 2);
        assert_eq!(p.next().unwrap_err(), first);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = TextParser::new(b"a 1\nb{c=\"\xc3\x28\"} 1\n");
        let e = p.next().unwrap_err();
        assert_eq!(e.to_string(), "line 2: invalid UTF-8");
        let mut p = TextParser::new("a{c=\"é\"} 1\n# HELP a ü\n".as_bytes());
        assert!(p.next().unwrap().is_some());
        assert!(p.next().unwrap().is_some());
    }

    #[test]
    fn carriage_returns_are_not_line_ends() {
        // As in Prometheus, "1\r" is not a number.
        assert!(err("a 1\r\n").starts_with("line 1: invalid value \"1\\r\""));
    }
}
