//! Writes metric families in the Prometheus text format 0.0.4, as client_golang's
//! `expfmt` writes them: `# HELP` (when there is help text), `# TYPE`, then one line
//! per sample, values in Go's `strconv.FormatFloat(v, 'g', -1, 64)` form (`1e+06`,
//! `0.001`, `NaN`, `+Inf`, `-Inf`).
//!
//! The text format knows five types. The three OpenMetrics adds are written as the
//! nearest it has: info and stateset families as `gauge` (their samples are 0/1
//! gauges, which is how exporters expose them in this format), gauge histograms as
//! `untyped`. Units are not written: the format has no UNIT line.
//!
//! This is the one writer of exposition text (the collectors' families and
//! `/federate` both write through it): label values and help texts are escaped here,
//! and a metric or label name that the format cannot carry (a newline in a name
//! would start a line of its own) is never written — its sample is left out, as
//! Prometheus 2.42 could not have stored it in the first place.

use super::family::{MetricFamily, MetricType};
use crate::model::format_go_g;
pub use crate::model::is_valid_metric_name;

/// The `# TYPE` word for `kind` in the text format.
pub fn text_type_name(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge | MetricType::Info | MetricType::StateSet => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Untyped | MetricType::GaugeHistogram => "untyped",
    }
}

/// Appends `families` to `out` in the text format. Returns how many samples were
/// left out for an invalid metric or label name.
pub fn write_text(out: &mut String, families: &[MetricFamily]) -> usize {
    let mut skipped = 0;
    for family in families {
        if !is_valid_metric_name(&family.name) {
            skipped += family.samples.len();
            continue;
        }
        if !family.help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(&family.name);
            out.push(' ');
            push_escaped(out, &family.help, false);
            out.push('\n');
        }
        write_type_line(out, &family.name, text_type_name(family.kind));
        for sample in &family.samples {
            let labels = sample.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()));
            if !write_sample_line(out, &sample.name, labels, sample.value, None) {
                skipped += 1;
            }
        }
    }
    skipped
}

/// Appends `# TYPE <name> <kind>`; `name` must be valid (see [`is_valid_metric_name`]).
pub fn write_type_line(out: &mut String, name: &str, kind: &str) {
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Appends one sample line, `name{label="value",…} value [timestamp_ms]`, label
/// values escaped. Writes nothing and returns false when the metric name or a label
/// name is invalid.
pub fn write_sample_line<'a>(
    out: &mut String,
    name: &str,
    labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    value: f64,
    timestamp_ms: Option<i64>,
) -> bool {
    if !is_valid_metric_name(name)
        || !labels
            .clone()
            .all(|(n, _)| crate::model::is_valid_label_name(n))
    {
        return false;
    }
    out.push_str(name);
    let mut first = true;
    for (n, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        push_escaped(out, v, true);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_go_g(value));
    if let Some(t) = timestamp_ms {
        out.push(' ');
        out.push_str(&t.to_string());
    }
    out.push('\n');
    true
}

/// `families` in the text format, as a new string.
pub fn to_text(families: &[MetricFamily]) -> String {
    let mut out = String::new();
    // Collectors build their families from valid names; nothing is left out here.
    let _left_out = write_text(&mut out, families);
    out
}

/// A label value escaped for the text format, for writers that do not escape
/// themselves: prometheus-client 0.24 writes label values as given, so ODIN's own
/// `/metrics` escapes a value that comes from outside (a job name) with this.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    push_escaped(&mut out, v, true);
    out
}

/// Escapes `\` and newline (help texts), and `"` too for label values.
fn push_escaped(out: &mut String, s: &str, quote: bool) {
    let needs = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !s.contains(needs) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::family::FamilySample;
    use super::super::format::{Format, parse_families};
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A name the format cannot carry is never written (a newline would start a
    /// line of its own); its samples are left out and counted.
    #[test]
    fn invalid_names_are_left_out_not_written() {
        let mut bad = MetricFamily::new("a\nb 1", MetricType::Gauge, "");
        bad.push(vec![], 1.0);
        let mut mixed = MetricFamily::new("good", MetricType::Gauge, "");
        mixed
            .push(labels(&[("x\ny", "1")]), 1.0)
            .push(labels(&[("x", "1\n2")]), 2.0);
        let mut out = String::new();
        assert_eq!(write_text(&mut out, &[bad, mixed]), 2);
        assert_eq!(out, "# TYPE good gauge\ngood{x=\"1\\n2\"} 2\n");
        assert!(is_valid_metric_name("a:b_c9") && !is_valid_metric_name("9a"));
        assert!(!is_valid_metric_name("") && !is_valid_metric_name("a-b"));
    }

    #[test]
    fn writes_help_type_and_samples() {
        let mut cpu = MetricFamily::new(
            "node_cpu_seconds_total",
            MetricType::Counter,
            "Seconds the CPUs spent in each mode.",
        );
        cpu.push(labels(&[("cpu", "0"), ("mode", "idle")]), 1234567.0)
            .push(labels(&[("cpu", "0"), ("mode", "user")]), 0.001);
        let mut lat = MetricFamily::new("lat_seconds", MetricType::Histogram, "");
        lat.push_suffixed("_bucket", labels(&[("le", "0.5")]), 1.0)
            .push_suffixed("_bucket", labels(&[("le", "+Inf")]), 2.0)
            .push_suffixed("_sum", vec![], 1e-7)
            .push_suffixed("_count", vec![], 2.0);
        let mut odd = MetricFamily::new("odd", MetricType::Gauge, "a \\ b\nc \"d\"");
        odd.push(labels(&[("path", "C:\\x\n\"y\"")]), f64::NAN)
            .push(vec![], f64::INFINITY)
            .push(vec![], f64::NEG_INFINITY)
            .push(vec![], 1e6)
            .push(vec![], -0.0);
        assert_eq!(
            to_text(&[cpu, lat, odd]),
            "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n\
# TYPE node_cpu_seconds_total counter\n\
node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1.234567e+06\n\
node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 0.001\n\
# TYPE lat_seconds histogram\n\
lat_seconds_bucket{le=\"0.5\"} 1\n\
lat_seconds_bucket{le=\"+Inf\"} 2\n\
lat_seconds_sum 1e-07\n\
lat_seconds_count 2\n\
# HELP odd a \\\\ b\\nc \"d\"\n\
# TYPE odd gauge\n\
odd{path=\"C:\\\\x\\n\\\"y\\\"\"} NaN\n\
odd +Inf\n\
odd -Inf\n\
odd 1e+06\n\
odd -0\n"
        );
    }

    #[test]
    fn openmetrics_only_types_become_text_types() {
        let fams = [
            MetricFamily::new("i", MetricType::Info, ""),
            MetricFamily::new("s", MetricType::StateSet, ""),
            MetricFamily::new("g", MetricType::GaugeHistogram, ""),
            MetricFamily::new("u", MetricType::Untyped, ""),
        ];
        assert_eq!(
            to_text(&fams),
            "# TYPE i gauge\n# TYPE s gauge\n# TYPE g untyped\n# TYPE u untyped\n"
        );
    }

    #[test]
    fn written_families_parse_back() {
        let mut a = MetricFamily::new("a_total", MetricType::Counter, "with \\ and \n");
        a.push(labels(&[("x", "\"q\"\n\\")]), 3.0);
        let mut s = MetricFamily::new("s", MetricType::Summary, "sum");
        s.push(labels(&[("quantile", "0.99")]), 0.25)
            .push_suffixed("_sum", vec![], 12.5)
            .push_suffixed("_count", vec![], 50.0);
        let empty = MetricFamily::new("empty", MetricType::Gauge, "no samples");
        let fams = vec![a, s, empty];
        let text = to_text(&fams);
        assert_eq!(parse_families(Format::Text, text.as_bytes()).unwrap(), fams);
    }

    /// Families the text format can carry, with names unique across the page.
    fn arb_families() -> impl Strategy<Value = Vec<MetricFamily>> {
        let kind = prop_oneof![
            Just(MetricType::Counter),
            Just(MetricType::Gauge),
            Just(MetricType::Histogram),
            Just(MetricType::Summary),
            Just(MetricType::Untyped),
        ];
        let value = prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            (0u32..1_000_000).prop_map(f64::from),
        ];
        let label = ("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{0,12}|[\\\\\"\n ]{0,4}");
        let sample = (prop::collection::vec(label, 0..4), value, 0usize..4);
        let family = (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            kind,
            "\\PC{0,20}|[\\\\\"\n a]{0,6}",
            prop::collection::vec(sample, 0..5),
        );
        prop::collection::vec(family, 0..6).prop_map(|raw| {
            let mut out: Vec<MetricFamily> = Vec::new();
            for (i, (name, kind, help, samples)) in raw.into_iter().enumerate() {
                // A numbered suffix keeps names unique and never ends in a type suffix.
                let name = format!("{name}_f{i}");
                let mut family = MetricFamily::new(name, kind, help);
                for (mut pairs, value, suffix) in samples {
                    // Label names unique within a series, `__name__` excluded.
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                    pairs.dedup_by(|a, b| a.0 == b.0);
                    pairs.retain(|(n, _)| n != "__name__");
                    let suffixes: &[&str] = match kind {
                        MetricType::Histogram => &["_bucket", "_sum", "_count", "_bucket"],
                        MetricType::Summary => &["", "_sum", "_count", ""],
                        _ => &[""],
                    };
                    let suffix = suffixes.get(suffix % suffixes.len()).copied().unwrap_or("");
                    family.push_suffixed(suffix, pairs, value);
                }
                out.push(family);
            }
            out
        })
    }

    /// Equality with NaN equal to NaN (the writer does not keep a NaN's payload).
    fn same(a: &[MetricFamily], b: &[MetricFamily]) -> bool {
        let norm = |fams: &[MetricFamily]| -> Vec<MetricFamily> {
            fams.iter()
                .map(|f| MetricFamily {
                    samples: f
                        .samples
                        .iter()
                        .map(|s| FamilySample {
                            value: if s.value.is_nan() { 0.5 } else { s.value },
                            ..s.clone()
                        })
                        .collect(),
                    ..f.clone()
                })
                .collect()
        };
        norm(a) == norm(b)
            && a.iter()
                .flat_map(|f| &f.samples)
                .map(|s| s.value.is_nan())
                .eq(b.iter().flat_map(|f| &f.samples).map(|s| s.value.is_nan()))
    }

    proptest! {
        #[test]
        fn any_written_page_parses_back_to_the_same_families(fams in arb_families()) {
            let text = to_text(&fams);
            let parsed = parse_families(Format::Text, text.as_bytes());
            prop_assert!(parsed.is_ok(), "{text}\n{parsed:?}");
            let parsed = parsed.unwrap();
            prop_assert!(same(&fams, &parsed), "{text}\nwant {fams:?}\ngot  {parsed:?}");
        }
    }
}
