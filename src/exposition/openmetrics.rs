//! OpenMetrics 1.0 text, read as Prometheus 2.42's `OpenMetricsParser` reads it.
//!
//! Stricter than the text format: tokens are separated by exactly one space, there are
//! no blank lines and no comments other than `# HELP`, `# TYPE`, `# UNIT` and the
//! final `# EOF` (which must be there, with nothing after it but one newline), every
//! other line ends with a newline, label values hold no raw newline, and timestamps
//! are float seconds. A sample may carry an exemplar, `# {labels} value [timestamp]`;
//! it is checked and then dropped.
//!
//! Like Prometheus 2.42, the parser does not check that series names carry the suffix
//! their family's type calls for (`_total`, `_bucket`, `_gcount`, `_info`, ...), nor
//! that families are contiguous, nor that metadata is not repeated: such pages are
//! ingested as Prometheus ingests them. [`super::format::series_in_family`] knows the
//! suffixes for whoever needs to group series into families. `_created` series are
//! ordinary series, as in Prometheus 2.42. One trailing comma in a label set is
//! accepted, as Prometheus accepts it. The whole body must be UTF-8.

use std::borrow::Cow;

use super::error::ParseError;
use super::family::MetricType;
use super::format::{Entry, SeriesEntry};
use super::lex::{
    Cursor, check_labels, check_utf8, is_metric_name_start, label_set, parse_float, unescape,
};

/// The message for a body that ends before `# EOF`.
const NO_EOF: &str = "data does not end with # EOF";

/// The exemplar marker after a sample's value or timestamp.
const EXEMPLAR_START: &str = " # {";

/// A pull parser over one OpenMetrics body; see the module documentation.
#[derive(Debug)]
pub struct OpenMetricsParser<'a> {
    cur: Cursor<'a>,
    /// The current series' labels, reused from line to line.
    labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The current exemplar's labels: parsed for validation, then dropped.
    exemplar_labels: Vec<(&'a str, Cow<'a, str>)>,
    /// Scratch space for the duplicate-label check.
    scratch: Vec<&'a str>,
    /// Set once parsing has failed: the error every later call returns.
    failed: Option<ParseError>,
    /// `# EOF` has been read.
    done: bool,
}

impl<'a> OpenMetricsParser<'a> {
    /// A parser of `body`. A body that is not UTF-8 fails on the first `next`.
    pub fn new(body: &'a [u8]) -> Self {
        let (src, failed) = match check_utf8(body) {
            Ok(src) => (src, None),
            Err(err) => ("", Some(err)),
        };
        Self {
            cur: Cursor::new(src),
            labels: Vec::new(),
            exemplar_labels: Vec::new(),
            scratch: Vec::new(),
            failed,
            done: false,
        }
    }

    /// The whole body.
    pub fn source(&self) -> &'a str {
        self.cur.src()
    }

    /// The labels of the series `next` returned last (read with the line: OpenMetrics
    /// has no deferred reading).
    pub fn labels(&self) -> Result<&[(&'a str, Cow<'a, str>)], ParseError> {
        match &self.failed {
            Some(err) => Err(err.clone()),
            None => Ok(&self.labels),
        }
    }

    /// The next entry, `Ok(None)` once `# EOF` has been read. After an error every call
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
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Reads the next entry; a series comes back with empty labels, which `next` fills
    /// in from `self.labels`.
    fn advance(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        if self.done {
            return Ok(None);
        }
        match self.cur.peek() {
            None => Err(self.cur.error(NO_EOF)),
            Some(b'#') => self.hash_line(),
            Some(b) if is_metric_name_start(b) => self.series().map(Some),
            Some(b'\n') => Err(self.cur.error("blank lines are not allowed in OpenMetrics")),
            Some(_) => Err(self.cur.error(format!(
                "expected a metric name or '#', got {}",
                self.cur.got()
            ))),
        }
    }

    /// `# HELP`, `# TYPE`, `# UNIT` or `# EOF`.
    fn hash_line(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        let start = self.cur.pos();
        if !self.cur.eat_str("# ") {
            return Err(self.cur.error(
                "expected '# ' and HELP, TYPE, UNIT or EOF: OpenMetrics has no other comments",
            ));
        }
        if self.cur.eat_str("EOF") {
            self.cur.eat(b'\n');
            if !self.cur.at_end() {
                return Err(self.cur.error("unexpected data after # EOF"));
            }
            self.done = true;
            return Ok(None);
        }
        let keyword = if self.cur.eat_str("HELP ") {
            "HELP"
        } else if self.cur.eat_str("TYPE ") {
            "TYPE"
        } else if self.cur.eat_str("UNIT ") {
            "UNIT"
        } else {
            return Err(self.cur.error(format!(
                "expected HELP, TYPE, UNIT or EOF after '# ', got {} \
                 (OpenMetrics has no other comments)",
                self.cur.got()
            )));
        };
        let name = self.cur.metric_name();
        if name.is_empty() {
            return Err(self.cur.error(format!(
                "expected metric name after {keyword}, got {}",
                self.cur.got()
            )));
        }
        if !self.cur.eat(b' ') {
            return Err(self.cur.error(format!(
                "expected ' ' and text after metric name {name:?} in {keyword}, got {}",
                self.cur.got()
            )));
        }
        let text = self.cur.rest_of_line();
        if !self.cur.eat(b'\n') {
            return Err(self
                .cur
                .error(format!("{keyword} line does not end with a newline")));
        }
        let entry = match keyword {
            "HELP" => Entry::Help {
                name,
                help: unescape(text, true),
            },
            "TYPE" => Entry::Type {
                name,
                kind: type_from_name(text).ok_or_else(|| {
                    self.cur
                        .error_at(start, format!("invalid metric type {text:?} for {name:?}"))
                })?,
            },
            _ => {
                // Prometheus only asks that a unit be a `_`-separated suffix of the name.
                let is_suffix = text.is_empty()
                    || name
                        .strip_suffix(text)
                        .is_some_and(|stem| stem.ends_with('_'));
                if !is_suffix {
                    return Err(self.cur.error_at(
                        start,
                        format!("unit {text:?} is not a suffix of metric {name:?}"),
                    ));
                }
                Entry::Unit { name, unit: text }
            }
        };
        Ok(Some(entry))
    }

    /// A sample line, from its metric name.
    fn series(&mut self) -> Result<Entry<'a>, ParseError> {
        let start = self.cur.pos();
        let name = self.cur.metric_name();
        self.labels.clear();
        if self.cur.peek() == Some(b'{') {
            label_set(&mut self.cur, &mut self.labels, false)?;
            check_labels(&self.cur, start, name, &self.labels, &mut self.scratch)?;
        }
        let series = start..self.cur.pos();
        let value = self.number(name, "value")?;
        let mut timestamp_ms = None;
        if self.at_line_end()? {
            return Ok(self.sample(name, value, timestamp_ms, series));
        }
        if !self.cur.looking_at(EXEMPLAR_START) {
            let ts = self.number(name, "timestamp")?;
            timestamp_ms = Some(self.seconds_to_ms(ts, "timestamp")?);
            if self.at_line_end()? {
                return Ok(self.sample(name, value, timestamp_ms, series));
            }
            if !self.cur.looking_at(EXEMPLAR_START) {
                return Err(self.cur.error(format!(
                    "expected end of line or exemplar after timestamp, got {}",
                    self.cur.got()
                )));
            }
        }
        self.exemplar(name)?;
        Ok(self.sample(name, value, timestamp_ms, series))
    }

    fn sample(
        &self,
        name: &'a str,
        value: f64,
        timestamp_ms: Option<i64>,
        series: std::ops::Range<usize>,
    ) -> Entry<'a> {
        Entry::Series(SeriesEntry {
            name,
            labels: &[],
            value,
            timestamp_ms,
            series,
        })
    }

    /// ` # {labels} value [timestamp]` and the newline, from the leading space.
    fn exemplar(&mut self, name: &str) -> Result<(), ParseError> {
        // " # " then the label set from its '{'.
        self.cur.eat_str(" # ");
        self.exemplar_labels.clear();
        label_set(&mut self.cur, &mut self.exemplar_labels, false)?;
        let _value = self.number(name, "exemplar value")?;
        if self.at_line_end()? {
            return Ok(());
        }
        let ts = self.number(name, "exemplar timestamp")?;
        self.seconds_to_ms(ts, "exemplar timestamp")?;
        if self.at_line_end()? {
            return Ok(());
        }
        Err(self.cur.error(format!(
            "expected end of line after exemplar timestamp, got {}",
            self.cur.got()
        )))
    }

    /// ` number`: one space, then a float token.
    fn number(&mut self, name: &str, what: &str) -> Result<f64, ParseError> {
        if !self.cur.eat(b' ') {
            return Err(self.cur.error(format!(
                "expected ' ' and a {what} for {name:?}, got {}",
                self.cur.got()
            )));
        }
        let pos = self.cur.pos();
        let text = self.cur.take_while(|b| b != b' ' && b != b'\n');
        if text.is_empty() {
            return Err(self.cur.error(format!(
                "expected a {what} for {name:?}, got {}",
                self.cur.got()
            )));
        }
        parse_float(text).ok_or_else(|| {
            self.cur
                .error_at(pos, format!("invalid {what} {text:?} for {name:?}"))
        })
    }

    /// Float seconds to integer milliseconds, truncated toward zero as Go's
    /// `int64(ts * 1000)` does (saturating where Go's result is undefined).
    fn seconds_to_ms(&self, seconds: f64, what: &str) -> Result<i64, ParseError> {
        if !seconds.is_finite() {
            return Err(self.cur.error(format!("invalid {what} {seconds}")));
        }
        Ok((seconds * 1000.0) as i64)
    }

    /// Consumes the newline if the line ends here. The body ending instead is an error
    /// (it must end with `# EOF`); anything else is left for the caller.
    fn at_line_end(&mut self) -> Result<bool, ParseError> {
        match self.cur.peek() {
            Some(b'\n') => {
                self.cur.bump();
                Ok(true)
            }
            None => Err(self.cur.error(NO_EOF)),
            Some(_) => Ok(false),
        }
    }
}

/// OpenMetrics's type names; `unknown` is [`MetricType::Untyped`].
fn type_from_name(name: &str) -> Option<MetricType> {
    Some(match name {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        "unknown" => MetricType::Untyped,
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::lex::NORMAL_NAN_BITS;
    use super::*;

    fn render(body: &[u8]) -> Result<Vec<String>, String> {
        let mut p = OpenMetricsParser::new(body);
        let mut out = Vec::new();
        loop {
            match p.next() {
                Ok(None) => return Ok(out),
                Ok(Some(e)) => out.push(render_entry(&e)),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn render_entry(e: &Entry<'_>) -> String {
        match e {
            Entry::Help { name, help } => format!("help {name} {help:?}"),
            Entry::Type { name, kind } => format!("type {name} {}", kind.as_str()),
            Entry::Unit { name, unit } => format!("unit {name} {unit:?}"),
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
    fn parses_every_type() {
        let body = "# HELP rpc_seconds RPC latency.\n\
# TYPE rpc_seconds summary\n\
# UNIT rpc_seconds seconds\n\
rpc_seconds{quantile=\"0.5\"} 4.9351e-05\n\
rpc_seconds_sum 1.5\n\
rpc_seconds_count 3\n\
rpc_seconds_created 1520430000.123\n\
# TYPE req counter\n\
req_total{code=\"200\"} 10 # {trace_id=\"abc\"} 1 1520879607.789\n\
req_created{code=\"200\"} 1520430000\n\
# TYPE lat histogram\n\
lat_bucket{le=\"0.1\"} 1 # {} 0.05\n\
lat_bucket{le=\"+Inf\"} 2\n\
lat_count 2\n\
lat_sum 0.3\n\
# TYPE q gaugehistogram\n\
q_bucket{le=\"+Inf\"} 5\n\
q_gcount 5\n\
q_gsum 12\n\
# TYPE build info\n\
build_info{version=\"1.2\"} 1\n\
# TYPE feature stateset\n\
feature{feature=\"a\"} 1\n\
feature{feature=\"b\"} 0\n\
# TYPE other unknown\n\
other 7\n\
# TYPE temp gauge\n\
temp -3.5 1520879607.7894\n\
# EOF\n";
        assert_eq!(
            ok(body),
            [
                "help rpc_seconds \"RPC latency.\"",
                "type rpc_seconds summary",
                "unit rpc_seconds \"seconds\"",
                "rpc_seconds{quantile=\"0.5\"} 0.000049351",
                "rpc_seconds_sum{} 1.5",
                "rpc_seconds_count{} 3",
                "rpc_seconds_created{} 1520430000.123",
                "type req counter",
                "req_total{code=\"200\"} 10",
                "req_created{code=\"200\"} 1520430000",
                "type lat histogram",
                "lat_bucket{le=\"0.1\"} 1",
                "lat_bucket{le=\"+Inf\"} 2",
                "lat_count{} 2",
                "lat_sum{} 0.3",
                "type q gaugehistogram",
                "q_bucket{le=\"+Inf\"} 5",
                "q_gcount{} 5",
                "q_gsum{} 12",
                "type build info",
                "build_info{version=\"1.2\"} 1",
                "type feature stateset",
                "feature{feature=\"a\"} 1",
                "feature{feature=\"b\"} 0",
                "type other unknown",
                "other{} 7",
                "type temp gauge",
                "temp{} -3.5 @1520879607789",
            ]
        );
    }

    #[test]
    fn eof_is_required_and_final() {
        assert_eq!(ok("# EOF\n"), Vec::<String>::new());
        assert_eq!(ok("a 1\n# EOF"), ["a{} 1"]);
        assert_eq!(err(""), "line 1: data does not end with # EOF");
        assert_eq!(err("a 1\n"), "line 2: data does not end with # EOF");
        assert_eq!(err("a 1"), "line 1: data does not end with # EOF");
        assert_eq!(err("a 1 2"), "line 1: data does not end with # EOF");
        assert_eq!(err("# EOF\n\n"), "line 2: unexpected data after # EOF");
        assert_eq!(err("# EOF\na 1\n"), "line 2: unexpected data after # EOF");
        assert_eq!(err("# EOF "), "line 1: unexpected data after # EOF");
        assert_eq!(err("# EOFX\n"), "line 1: unexpected data after # EOF");
        let mut p = OpenMetricsParser::new(b"# EOF\n");
        assert_eq!(p.next().unwrap(), None);
        assert_eq!(p.next().unwrap(), None);
    }

    #[test]
    fn no_blank_lines_and_no_plain_comments() {
        assert_eq!(
            err("a 1\n\nb 1\n# EOF\n"),
            "line 2: blank lines are not allowed in OpenMetrics"
        );
        assert!(
            err("# a comment\n# EOF\n")
                .starts_with("line 1: expected HELP, TYPE, UNIT or EOF after '# ', got \"a\"")
        );
        assert!(err("#HELP a b\n# EOF\n").starts_with("line 1: expected '# '"));
        assert!(err("#\n# EOF\n").starts_with("line 1: expected '# '"));
        assert!(err(" a 1\n# EOF\n").starts_with("line 1: expected a metric name or '#'"));
    }

    #[test]
    fn single_spaces_only() {
        assert_eq!(
            err("a  1\n# EOF\n"),
            "line 1: expected a value for \"a\", got ' '"
        );
        assert_eq!(
            err("a\t1\n# EOF\n"),
            "line 1: expected ' ' and a value for \"a\", got '\\t'"
        );
        assert_eq!(
            err("a 1 \n# EOF\n"),
            "line 1: expected a timestamp for \"a\", got end of line"
        );
        assert_eq!(
            err("a{b = \"c\"} 1\n# EOF\n"),
            "line 1: expected '=' after label name \"b\", got ' '"
        );
        assert_eq!(
            err("a 1 2 3\n# EOF\n"),
            "line 1: expected end of line or exemplar after timestamp, got ' '"
        );
    }

    #[test]
    fn timestamps_are_float_seconds() {
        assert_eq!(ok("a 1 1.5\n# EOF\n"), ["a{} 1 @1500"]);
        assert_eq!(ok("a 1 -1.5\n# EOF\n"), ["a{} 1 @-1500"]);
        assert_eq!(ok("a 1 1520879607.789\n# EOF\n"), ["a{} 1 @1520879607789"]);
        assert_eq!(ok("a 1 0.0019\n# EOF\n"), ["a{} 1 @1"]);
        assert_eq!(err("a 1 NaN\n# EOF\n"), "line 1: invalid timestamp NaN");
        assert_eq!(err("a 1 +Inf\n# EOF\n"), "line 1: invalid timestamp inf");
        assert_eq!(
            err("a 1 x\n# EOF\n"),
            "line 1: invalid timestamp \"x\" for \"a\""
        );
    }

    #[test]
    fn values_are_go_floats() {
        let got = ok("a NaN\nb +Inf\nc -Inf\nd 1e-3\n# EOF\n");
        assert_eq!(got[0], format!("a{{}} NaN(0x{NORMAL_NAN_BITS:x})"));
        assert_eq!(got[1..], ["b{} inf", "c{} -inf", "d{} 0.001"]);
        assert_eq!(
            err("a 0x1p3\n# EOF\n"),
            "line 1: invalid value \"0x1p3\" for \"a\""
        );
    }

    #[test]
    fn exemplars_are_checked_then_dropped() {
        assert_eq!(
            ok("a_total 1 # {id=\"x\",span=\"y\"} 0.5 123.456\nb 2 1 # {} 3\n# EOF\n"),
            ["a_total{} 1", "b{} 2 @1000"]
        );
        assert_eq!(
            err("a 1 # {id=\"x\"}\n# EOF\n"),
            "line 1: expected ' ' and a exemplar value for \"a\", got end of line"
        );
        assert_eq!(
            err("a 1 # {id=\"x\"} v\n# EOF\n"),
            "line 1: invalid exemplar value \"v\" for \"a\""
        );
        assert_eq!(
            err("a 1 # {id=\"x\"} 1 NaN\n# EOF\n"),
            "line 1: invalid exemplar timestamp NaN"
        );
        assert_eq!(
            err("a 1 # {id=\"x\"} 1 2 3\n# EOF\n"),
            "line 1: expected end of line after exemplar timestamp, got ' '"
        );
        assert_eq!(
            err("a 1 # {id=x} 1\n# EOF\n"),
            "line 1: expected '\"' to open the value of label \"id\", got \"x}\""
        );
        assert_eq!(
            err("a 1 # {id=\"x\"} 1"),
            "line 1: data does not end with # EOF"
        );
        // " #" not followed by " {" is read as a timestamp, as in Prometheus.
        assert_eq!(
            err("a 1 # x\n# EOF\n"),
            "line 1: invalid timestamp \"#\" for \"a\""
        );
    }

    #[test]
    fn metadata_lines() {
        assert_eq!(
            ok(
                "# HELP a \\\"q\\\" \\\\ \\n \\x\n# HELP b \n# UNIT c_bytes bytes\n# UNIT d \n# UNIT _s s\n# EOF\n"
            ),
            [
                "help a \"\\\"q\\\" \\\\ \\n \\\\x\"",
                "help b \"\"",
                "unit c_bytes \"bytes\"",
                "unit d \"\"",
                "unit _s \"s\"",
            ]
        );
        assert_eq!(
            err("# HELP a\n# EOF\n"),
            "line 1: expected ' ' and text after metric name \"a\" in HELP, got end of line"
        );
        assert_eq!(
            err("# HELP a b"),
            "line 1: HELP line does not end with a newline"
        );
        assert_eq!(
            err("# UNIT a_seconds bytes\n# EOF\n"),
            "line 1: unit \"bytes\" is not a suffix of metric \"a_seconds\""
        );
        assert_eq!(
            err("# UNIT abytes bytes\n# EOF\n"),
            "line 1: unit \"bytes\" is not a suffix of metric \"abytes\""
        );
        assert_eq!(
            err("# TYPE a untyped\n# EOF\n"),
            "line 1: invalid metric type \"untyped\" for \"a\""
        );
        assert_eq!(
            err("# TYPE a \n# EOF\n"),
            "line 1: invalid metric type \"\" for \"a\""
        );
        assert_eq!(
            err("# TYPE 1a gauge\n# EOF\n"),
            "line 1: expected metric name after TYPE, got \"1a\""
        );
        assert!(err("# FOO a b\n# EOF\n").starts_with("line 1: expected HELP, TYPE, UNIT or EOF"));
        // Repeated metadata is handed on, as Prometheus does.
        assert_eq!(
            ok("# TYPE a gauge\n# TYPE a counter\n# EOF\n"),
            ["type a gauge", "type a counter"]
        );
    }

    #[test]
    fn label_sets() {
        assert_eq!(ok("a{} 1\n# EOF\n"), ["a{} 1"]);
        assert_eq!(ok("a{b=\"c\",} 1\n# EOF\n"), ["a{b=\"c\"} 1"]);
        assert_eq!(
            ok("a{b=\"\\\\ \\\" \\n\"} 1\n# EOF\n"),
            ["a{b=\"\\\\ \\\" \\n\"} 1"]
        );
        assert_eq!(
            err("a{b=\"x\ny\"} 1\n# EOF\n"),
            "line 1: raw newline in the value of label \"b\" (it must be written as \\n)"
        );
        assert_eq!(
            err("a{b=\"1\",b=\"2\"} 1\n# EOF\n"),
            "line 1: duplicate label name \"b\" in series \"a\""
        );
        assert_eq!(
            err("a{b=\"1\"c=\"2\"} 1\n# EOF\n"),
            "line 1: expected ',' or '}' after the value of label \"b\", got \"c=\\\"2\\\"}\""
        );
        assert_eq!(
            err("x 1\na{b=\"1\",,} 1\n# EOF\n"),
            "line 2: expected label name or '}', got \",}\""
        );
    }

    #[test]
    fn error_lines_count_from_one() {
        let body = "# TYPE a gauge\na 1\na{x=\"1\"} 2\na{x=\"2\"} z\n# EOF\n";
        let mut p = OpenMetricsParser::new(body.as_bytes());
        for _ in 0..3 {
            assert!(p.next().unwrap().is_some());
        }
        let e = p.next().unwrap_err();
        assert_eq!(e.line, 4);
        assert_eq!(e.message, "invalid value \"z\" for \"a\"");
        assert_eq!(p.next().unwrap_err(), e);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            render(b"a 1\n# HELP a \xff\n# EOF\n").unwrap_err(),
            "line 2: invalid UTF-8"
        );
    }
}
