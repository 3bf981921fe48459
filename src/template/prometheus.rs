//! The Prometheus dialect: the data an alerting rule's labels and annotations are
//! expanded over, Prometheus's template functions, and the expansion itself as
//! Prometheus's rule manager runs it (`template.NewTemplateExpander` in 2.42).
//!
//! An alert's template runs as `text/template` named `__alert_<alertname>`, with
//! `missingkey=zero`, over `{Labels, ExternalLabels, ExternalURL, Value}`. Prometheus
//! puts a prefix before the text that declares `$labels`, `$externalLabels`,
//! `$externalURL` and `$value`; so does [`AlertTemplate`], on the same line, so that
//! error positions are the ones Prometheus reports. A template that fails to parse or
//! to run expands to `<error expanding template: …>`, as in Prometheus.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{
    Dialect, F, IntTy, Template, Time, Value, go_quote, parse_go_float, query_escape, sprintf,
    string,
};

/// The prefix Prometheus puts before each alert template.
const DEFINITIONS: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}\
                           {{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Go's name for the type of the data, which errors about its fields give.
pub(super) const ALERT_DATA_TYPE: &str = "struct { Labels map[string]string; ExternalLabels \
                                          map[string]string; ExternalURL string; Value float64 }";

/// One sample of a `query` result: Prometheus's `sample{Labels, Value}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Rc<BTreeMap<String, String>>,
    pub value: f64,
}

/// What an alert's templates read: `.Labels`, `.ExternalLabels`, `.ExternalURL` and
/// `.Value` (also `$labels`, `$externalLabels`, `$externalURL`, `$value`).
#[derive(Clone, Debug)]
pub struct AlertData {
    pub labels: Rc<BTreeMap<String, String>>,
    pub external_labels: Rc<BTreeMap<String, String>>,
    pub external_url: String,
    pub value: f64,
}

/// Runs an instant query at the evaluation's time; the result as a list of samples
/// (a scalar is one sample without labels).
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<Sample>, String>;

/// What a template may reach beyond its data.
pub struct Environment<'a> {
    /// `query`; `None` where no query can run (checking a rule file).
    pub query: Option<QueryFn<'a>>,
    /// `externalURL`; `pathPrefix` is its path.
    pub external_url: &'a str,
}

/// An alert's label or annotation template, parsed once when the rule is loaded.
#[derive(Clone, Debug)]
pub struct AlertTemplate {
    text: String,
    /// `None` for a text without actions, which expands to itself.
    parsed: Option<Result<Template, String>>,
}

impl AlertTemplate {
    pub fn parse(alert_name: &str, text: &str) -> AlertTemplate {
        let parsed = text.contains("{{").then(|| {
            let name = format!("__alert_{alert_name}");
            Template::parse_in(Dialect::Prometheus, &name, &format!("{DEFINITIONS}{text}"))
        });
        AlertTemplate {
            text: text.to_string(),
            parsed,
        }
    }

    /// The parse error, worded as `promtool check rules` words it
    /// (`template: __alert_X:1: function "foo" not defined`).
    pub fn check(&self) -> Result<(), String> {
        match &self.parsed {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The expanded text; an error becomes the text, as Prometheus makes it.
    pub fn expand(&self, data: &AlertData, env: &Environment) -> Result<String, String> {
        let name = match &self.parsed {
            None => return Ok(self.text.clone()),
            Some(Err(e)) => {
                let name = e
                    .strip_prefix("template: ")
                    .and_then(|rest| rest.split(':').next())
                    .unwrap_or("");
                return Err(format!(
                    "<error expanding template: error parsing template {name}: {e}>"
                ));
            }
            Some(Ok(t)) => t,
        };
        let dot = Value::AlertData(Rc::new(data.clone()));
        name.render_over(dot, env).map_err(|e| {
            format!(
                "<error expanding template: error executing template {}: {e}>",
                name.name
            )
        })
    }
}

/// Runs one of Prometheus's functions on its checked arguments.
pub(super) fn call<'a>(
    id: F,
    a: Vec<Value<'a>>,
    env: Option<&Environment>,
) -> Result<Value<'a>, String> {
    let text = |i: usize| match a.get(i) {
        Some(Value::Str(s)) => s.as_ref(),
        _ => "",
    };
    let sample = |i: usize| match a.get(i) {
        Some(Value::Sample(s)) => Ok(Rc::clone(s)),
        _ => Err("invalid memory address or nil pointer dereference".to_string()),
    };
    let number = || a.first().map_or(Ok(0.0), convert_to_float);
    Ok(match id {
        F::Query => {
            let Some(query) = env.and_then(|e| e.query) else {
                return Err("queries cannot run here".to_string());
            };
            let samples = query(text(0))?;
            Value::Samples(Rc::new(samples.into_iter().map(Rc::new).collect()))
        }
        F::First => match a.first() {
            Some(Value::Samples(list)) if !list.is_empty() => Value::Sample(Rc::clone(&list[0])),
            _ => return Err("first() called on vector with no elements".to_string()),
        },
        F::Label => string(sample(1)?.labels.get(text(0)).cloned().unwrap_or_default()),
        F::SampleValue => Value::Float(sample(0)?.value),
        F::StrValue => string(
            sample(0)?
                .labels
                .get("__value__")
                .cloned()
                .unwrap_or_default(),
        ),
        F::SortByLabel => {
            let Some(Value::Samples(list)) = a.get(1) else {
                return Ok(Value::Nil);
            };
            let label = text(0);
            let mut sorted: Vec<Rc<Sample>> = list.as_ref().clone();
            sorted.sort_by(|x, y| x.labels.get(label).cmp(&y.labels.get(label)));
            Value::Samples(Rc::new(sorted))
        }
        F::Args => Value::AnyMap(Rc::new(
            a.iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v.clone()))
                .collect(),
        )),
        F::SafeHtml => string(text(0).to_string()),
        F::GraphLink => string(graph_link(text(0))),
        F::TableLink => string(table_link(text(0))),
        F::Humanize => string(humanize(number()?)),
        F::Humanize1024 => string(humanize_1024(number()?)),
        F::HumanizeDuration => string(humanize_duration(number()?)),
        F::HumanizePercentage => string(format4g(number()? * 100.0, "%")),
        F::HumanizeTimestamp => {
            let v = number()?;
            match float_to_time(v)? {
                Some(t) => string(t.to_go_string()),
                None => string(format4g(v, "")),
            }
        }
        F::ToTime => match float_to_time(number()?)? {
            Some(t) => Value::Time(t),
            None => return Err("value is NaN or Inf".to_string()),
        },
        F::ExternalUrl => string(env.map_or("", |e| e.external_url).to_string()),
        F::PathPrefix => string(url_path(env.map_or("", |e| e.external_url)).to_string()),
        F::StripPort => string(match split_host_port(text(0)) {
            Some((host, _)) => host.to_string(),
            None => text(0).to_string(),
        }),
        F::StripDomain => string(strip_domain(text(0))),
        F::ParseDuration => {
            let ms = crate::model::parse_duration_ms(text(0))?;
            Value::Float(ms as f64 / 1000.0)
        }
        _ => Value::Nil,
    })
}

/// The path of the expression browser's graph of `expr` (`strutil.GraphLinkForExpression`).
pub fn graph_link(expr: &str) -> String {
    format!("/graph?g0.expr={}&g0.tab=0", query_escape(expr))
}

/// The path of the expression browser's table of `expr`: what an alert's
/// `generatorURL` points at, after the external URL.
pub fn table_link(expr: &str) -> String {
    format!("/graph?g0.expr={}&g0.tab=1", query_escape(expr))
}

/// Prometheus's `convertToFloat`: numbers, and strings that parse as Go floats.
fn convert_to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(n, IntTy::Int | IntTy::Int64) => Ok(*n as f64),
        Value::Str(s) => parse_go_float(s).ok_or_else(|| {
            format!(
                "strconv.ParseFloat: parsing {}: invalid syntax",
                go_quote(s)
            )
        }),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// `fmt.Sprintf("%.4g<suffix>", v)`.
fn format4g(v: f64, suffix: &str) -> String {
    let mut s = sprintf("%.4g", &[Value::Float(v)]);
    s.push_str(suffix);
    s
}

const SMALL_PREFIXES: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];

/// Scales `v` (0 < |v| < 1) up by thousands: the value and its prefix.
fn scale_small(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in SMALL_PREFIXES {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format4g(v, "");
    }
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format4g(v, prefix);
    }
    let (v, prefix) = scale_small(v);
    format4g(v, prefix)
}

fn humanize_1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return format4g(v, "");
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format4g(v, prefix)
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return format4g(v, "");
    }
    if v == 0.0 {
        return format4g(v, "s");
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let whole = v as i64;
        let (seconds, minutes) = (whole % 60, (whole / 60) % 60);
        let (hours, days) = ((whole / 3600) % 24, whole / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}", format4g(v, "s"));
    }
    let (v, prefix) = scale_small(v);
    format4g(v, &format!("{prefix}s"))
}

/// Seconds since the epoch as the millisecond-precise time Prometheus makes of them
/// (`model.TimeFromUnixNano`); `None` for NaN and the infinities.
fn float_to_time(v: f64) -> Result<Option<Time>, String> {
    if !v.is_finite() {
        return Ok(None);
    }
    let ns = v * 1e9;
    if ns >= i64::MAX as f64 || ns < i64::MIN as f64 {
        let mut shown = String::new();
        super::print_arg(&mut shown, &super::Flags::default(), &Value::Float(v), 'v');
        return Err(format!(
            "{shown} cannot be represented as a nanoseconds timestamp since it overflows int64"
        ));
    }
    let ms = (ns as i64) / 1_000_000;
    Ok(Some(Time::unix(ms / 1000, (ms % 1000) * 1_000_000)))
}

/// The path of a URL (Go's `url.URL.Path`): what follows the authority, up to the
/// query or fragment.
fn url_path(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            match after.find(['/', '?', '#']) {
                Some(j) => &after[j..],
                None => "",
            }
        }
        None => url,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`; `None` where Go errs.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']')?;
        let port = inner[end + 1..].strip_prefix(':')?;
        let host = &inner[..end];
        return (!port.contains([':', '[', ']'])).then_some((host, port));
    }
    let colon = s.rfind(':')?;
    let (host, port) = (&s[..colon], &s[colon + 1..]);
    (!host.contains([':', '[', ']'])).then_some((host, port))
}

/// Prometheus's `stripDomain`: the host's first label, the port kept; IP
/// addresses stay as they are.
fn strip_domain(s: &str) -> String {
    let (host, port) = match split_host_port(s) {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return s.to_string();
    }
    let first = host.split('.').next().unwrap_or("");
    match port {
        Some(port) if !port.is_empty() => {
            if first.contains(':') {
                format!("[{first}]:{port}")
            } else {
                format!("{first}:{port}")
            }
        }
        _ => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Rc<BTreeMap<String, String>> {
        Rc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn data(value: f64) -> AlertData {
        AlertData {
            labels: labels(&[("instance", "gpu-1:9400"), ("job", "dcgm"), ("gpu", "0")]),
            external_labels: labels(&[("cluster", "lab")]),
            external_url: "https://odin.example.com/prom".to_string(),
            value,
        }
    }

    fn expand_with(text: &str, value: f64, query: Option<QueryFn>) -> String {
        let env = Environment {
            query,
            external_url: "https://odin.example.com/prom",
        };
        match AlertTemplate::parse("HighTemp", text).expand(&data(value), &env) {
            Ok(s) | Err(s) => s,
        }
    }

    fn expand(text: &str, value: f64) -> String {
        expand_with(text, value, None)
    }

    #[test]
    fn variables_and_fields() {
        assert_eq!(
            expand(
                "{{ $labels.instance }} GPU {{ .Labels.gpu }} at {{ $value }}",
                91.5
            ),
            "gpu-1:9400 GPU 0 at 91.5"
        );
        assert_eq!(expand("{{ $externalLabels.cluster }}", 0.0), "lab");
        assert_eq!(
            expand("{{ $externalURL }}|{{ .ExternalURL }}", 0.0).len(),
            59
        );
        assert_eq!(expand("[{{ $labels.missing }}]", 0.0), "[]");
        assert_eq!(expand("{{ index $labels \"job\" }}", 0.0), "dcgm");
        assert_eq!(expand("{{ $value }}", 1e6), "1e+06");
        assert_eq!(expand("no actions at all", 0.0), "no actions at all");
        assert_eq!(
            expand("{{ $labels }}", 0.0),
            "map[gpu:0 instance:gpu-1:9400 job:dcgm]"
        );
    }

    #[test]
    fn humanizing_functions_as_prometheus() {
        let cases: &[(&str, f64, &str)] = &[
            ("humanize", 0.0, "0"),
            ("humanize", 1234567.0, "1.235M"),
            ("humanize", 1000.0, "1k"),
            ("humanize", 0.0012, "1.2m"),
            ("humanize", -0.5, "-500m"),
            ("humanize", f64::NAN, "NaN"),
            ("humanize", f64::INFINITY, "+Inf"),
            ("humanize1024", 1048576.0, "1Mi"),
            ("humanize1024", 1.0, "1"),
            ("humanize1024", 1536.0, "1.5ki"),
            ("humanizeDuration", 899.99, "14m 59s"),
            ("humanizeDuration", 0.0, "0s"),
            ("humanizeDuration", 93784.0, "1d 2h 3m 4s"),
            ("humanizeDuration", 3600.0, "1h 0m 0s"),
            ("humanizeDuration", 1.5, "1.5s"),
            ("humanizeDuration", -61.0, "-1m 1s"),
            ("humanizeDuration", 0.0035, "3.5ms"),
            ("humanizePercentage", 0.1234567, "12.35%"),
            (
                "humanizeTimestamp",
                1435065584.128,
                "2015-06-23 13:19:44.128 +0000 UTC",
            ),
            ("humanizeTimestamp", 0.0, "1970-01-01 00:00:00 +0000 UTC"),
            ("humanizeTimestamp", f64::NAN, "NaN"),
        ];
        for (f, v, want) in cases {
            assert_eq!(
                expand(&format!("{{{{ {f} $value }}}}"), *v),
                *want,
                "{f} {v}"
            );
        }
        // Strings convert, as Prometheus's convertToFloat does.
        assert_eq!(expand("{{ humanize \"2048\" }}", 0.0), "2.048k");
        assert!(
            expand("{{ humanize \"x\" }}", 0.0).contains(
                "error calling humanize: strconv.ParseFloat: parsing \"x\": invalid syntax"
            )
        );
    }

    #[test]
    fn string_functions() {
        assert_eq!(
            expand("{{ toUpper \"gpu\" }}{{ \"A\" | toLower }}", 0.0),
            "GPUa"
        );
        assert_eq!(expand("{{ title \"hot gpu\" }}", 0.0), "Hot Gpu");
        assert_eq!(
            expand(
                "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
                0.0
            ),
            "gpu-1"
        );
        assert_eq!(expand("{{ match \"^gpu\" $labels.instance }}", 0.0), "true");
        assert_eq!(expand("{{ $labels.instance | stripPort }}", 0.0), "gpu-1");
        assert_eq!(expand("{{ stripPort \"[::1]:9100\" }}", 0.0), "::1");
        assert_eq!(expand("{{ stripPort \"host\" }}", 0.0), "host");
        assert_eq!(expand("{{ stripDomain \"a.b.c:80\" }}", 0.0), "a:80");
        assert_eq!(
            expand("{{ stripDomain \"10.0.0.1:80\" }}", 0.0),
            "10.0.0.1:80"
        );
        assert_eq!(expand("{{ safeHtml \"<b>\" }}", 0.0), "<b>");
        assert_eq!(
            expand("{{ graphLink \"up == 0\" }} {{ tableLink \"up\" }}", 0.0),
            "/graph?g0.expr=up+%3D%3D+0&g0.tab=0 /graph?g0.expr=up&g0.tab=1"
        );
        assert_eq!(
            expand("{{ externalURL }} {{ pathPrefix }}", 0.0),
            "https://odin.example.com/prom /prom"
        );
        assert_eq!(expand("{{ parseDuration \"1m30s\" }}", 0.0), "90");
        assert_eq!(
            expand(
                "{{ with args 1 \"x\" }}{{ .arg0 }}-{{ .arg1 }}-{{ .arg2 }}{{ end }}",
                0.0
            ),
            "1-x-<no value>"
        );
        assert_eq!(expand("{{ printf \"%.1f°C\" $value }}", 91.25), "91.2°C");
    }

    #[test]
    fn queries_ranges_and_their_helpers() {
        let query = |q: &str| -> Result<Vec<Sample>, String> {
            match q {
                "up" => Ok(vec![
                    Sample {
                        labels: labels(&[("instance", "b")]),
                        value: 1.0,
                    },
                    Sample {
                        labels: labels(&[("instance", "a")]),
                        value: 0.0,
                    },
                ]),
                "none" => Ok(Vec::new()),
                other => Err(format!("parse error in {other}")),
            }
        };
        let q: QueryFn = &query;
        let run = |text: &str| expand_with(text, 0.0, Some(q));
        assert_eq!(
            run("{{ range query \"up\" }}{{ .Labels.instance }}={{ .Value }};{{ end }}"),
            "b=1;a=0;"
        );
        assert_eq!(
            run(
                "{{ range sortByLabel \"instance\" (query \"up\") }}{{ label \"instance\" . }}{{ end }}"
            ),
            "ab"
        );
        assert_eq!(
            run("{{ with query \"up\" }}{{ . | first | value | humanize }}{{ end }}"),
            "1"
        );
        assert_eq!(
            run("{{ range $i, $s := query \"up\" }}{{ $i }}:{{ $s.Value }} {{ end }}"),
            "0:1 1:0 "
        );
        assert_eq!(
            run("{{ range query \"none\" }}x{{ else }}empty{{ end }}"),
            "empty"
        );
        assert_eq!(
            run(
                "{{ range query \"up\" }}{{ if eq .Value 1.0 }}{{ continue }}{{ end }}{{ .Labels.instance }}{{ break }}{{ end }}"
            ),
            "a"
        );
        assert_eq!(run("{{ len (query \"up\") }}"), "2");
        assert_eq!(run("{{ (index (query \"up\") 1).Labels.instance }}"), "a");
        assert_eq!(
            run("{{ range $k, $v := $labels }}{{ $k }}={{ $v }},{{ end }}"),
            "gpu=0,instance=gpu-1:9400,job=dcgm,"
        );
        assert!(
            run("{{ query \"none\" | first }}")
                .ends_with("error calling first: first() called on vector with no elements>")
        );
        assert!(run("{{ query \"bad(\" }}").contains("error calling query: parse error in bad("));
    }

    #[test]
    fn output_is_bounded() {
        let query = |_: &str| -> Result<Vec<Sample>, String> {
            Ok((0..5000)
                .map(|i| Sample {
                    labels: labels(&[("i", &i.to_string())]),
                    value: 0.0,
                })
                .collect())
        };
        let q: QueryFn = &query;
        let out = expand_with(
            "{{ range query \"a\" }}{{ range query \"b\" }}{{ printf \"%1000s\" \"x\" }}{{ end }}{{ end }}",
            0.0,
            Some(q),
        );
        assert!(
            out.contains("bytes a template may build"),
            "{}",
            &out[..200.min(out.len())]
        );
    }

    #[test]
    fn errors_become_the_text_as_in_prometheus() {
        assert_eq!(
            expand("{{ nosuch }}", 0.0),
            "<error expanding template: error parsing template __alert_HighTemp: \
             template: __alert_HighTemp:1: function \"nosuch\" not defined>"
        );
        let out = expand("{{ $value.Foo }}", 0.0);
        assert!(
            out.starts_with(
                "<error expanding template: error executing template __alert_HighTemp: \
                 template: __alert_HighTemp:1:"
            ),
            "{out}"
        );
        assert!(
            out.contains("can't evaluate field Foo in type float64"),
            "{out}"
        );
        // Column numbers count the definitions Prometheus puts before the text, and
        // point at the field read (as Go's parser places a chain).
        assert!(out.contains(":1:121: executing"), "{out}");
        assert!(
            AlertTemplate::parse("A", "{{ range }}")
                .check()
                .unwrap_err()
                == "template: __alert_A:1: missing value for range"
        );
        assert!(
            AlertTemplate::parse("A", "{{ define \"x\" }}{{ end }}")
                .check()
                .is_err()
        );
        assert!(AlertTemplate::parse("A", "{{ break }}").check().is_err());
        assert!(AlertTemplate::parse("A", "{{ $labels.x }}").check().is_ok());
        // Loki's functions are not Prometheus's.
        assert!(AlertTemplate::parse("A", "{{ __line__ }}").check().is_err());
        assert!(
            AlertTemplate::parse("A", "{{ ToUpper \"x\" }}")
                .check()
                .is_err()
        );
    }
}
