//! Prometheus's rule file format (`rulefmt`), read and checked as Prometheus 2.42
//! and `promtool check rules` check it:
//!
//! ```yaml
//! groups:
//!   - name: node
//!     interval: 30s          # else the global evaluation_interval
//!     limit: 0               # series a rule may produce (0: no limit)
//!     query_offset: 1m       # evaluate this far in the past (Prometheus 2.53)
//!     rules:
//!       - record: instance:node_cpu_utilisation:rate5m
//!         expr: 1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
//!       - alert: HighCPU
//!         expr: instance:node_cpu_utilisation:rate5m > 0.9
//!         for: 10m
//!         keep_firing_for: 5m
//!         labels: {severity: warning}
//!         annotations: {summary: "CPU busy on {{ $labels.instance }}"}
//! ```
//!
//! Unknown keys are errors (Go's strict unmarshalling). A rule's error names where
//! it is as promtool does: `FILE: LINE:COL: group "NAME", rule N, "RULE": WHAT`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::{is_valid_label_name, is_valid_metric_name, parse_duration_ms};
use crate::template::prometheus::AlertTemplate;

/// A rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// One group: rules evaluated in order, at one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    /// `None`: the global `evaluation_interval`.
    pub interval_ms: Option<i64>,
    pub limit: usize,
    pub query_offset_ms: Option<i64>,
    pub rules: Vec<Rule>,
}

/// A recording or an alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kind: RuleKind,
    /// The record's or the alert's name.
    pub name: String,
    pub expr: String,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Recording,
    Alerting,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    #[serde(default)]
    groups: Vec<GroupNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupNode {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    rules: Vec<Spanned<RuleNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleNode {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<ExprText>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// An `expr`: YAML may give a number (`expr: 1`), which Prometheus reads as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExprText {
    Text(String),
    Int(i64),
    Float(f64),
}

impl ExprText {
    fn into_string(self) -> String {
        match self {
            ExprText::Text(s) => s,
            ExprText::Int(i) => i.to_string(),
            ExprText::Float(f) => f.to_string(),
        }
    }
}

/// Parses and checks a rule file's text; `Err` holds every problem found, each a
/// line as promtool prints it (the file name first).
pub fn parse(text: &str, file: &str) -> Result<RuleFile, Vec<String>> {
    let node: FileNode = if text.trim().is_empty() {
        FileNode { groups: Vec::new() }
    } else {
        serde_saphyr::from_str(text).map_err(|e| vec![format!("{file}: {e}")])?
    };
    let mut errors = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut groups = Vec::new();
    for g in node.groups {
        if g.name.is_empty() {
            errors.push(format!("{file}: Groupname must not be empty"));
        } else if !names.insert(g.name.clone()) {
            errors.push(format!(
                "{file}: groupname: \"{}\" is repeated in the same file",
                g.name
            ));
        }
        let duration = |what: &str, v: &Option<String>, errors: &mut Vec<String>| {
            v.as_deref().and_then(|s| match parse_duration_ms(s) {
                Ok(ms) => Some(ms),
                Err(e) => {
                    errors.push(format!("{file}: group \"{}\": {what}: {e}", g.name));
                    None
                }
            })
        };
        // 0 is "not set", as in Prometheus: the global interval applies.
        let interval_ms = duration("interval", &g.interval, &mut errors).filter(|&ms| ms > 0);
        let query_offset_ms = duration("query_offset", &g.query_offset, &mut errors);
        let mut rules = Vec::new();
        for (i, spanned) in g.rules.into_iter().enumerate() {
            let at = (spanned.referenced.line(), spanned.referenced.column());
            let r = spanned.value;
            // Prometheus names a rule by its alert, else its record.
            let shown = r
                .alert
                .clone()
                .filter(|a| !a.is_empty())
                .or(r.record.clone())
                .unwrap_or_default();
            let mut fail = |p: Problem| {
                // rulefmt places the errors it found at a node; template errors
                // have none.
                let place = if p.at_node {
                    format!("{}:{}: ", at.0, at.1)
                } else {
                    String::new()
                };
                errors.push(format!(
                    "{file}: {place}group \"{}\", rule {}, \"{shown}\": {}",
                    g.name,
                    i + 1,
                    p.text
                ));
            };
            match check_rule(r) {
                Ok(rule) => rules.push(rule),
                Err(problems) => problems.into_iter().for_each(&mut fail),
            }
        }
        groups.push(RuleGroup {
            name: g.name,
            interval_ms,
            limit: g.limit,
            query_offset_ms,
            rules,
        });
    }
    if errors.is_empty() {
        Ok(RuleFile { groups })
    } else {
        Err(errors)
    }
}

/// A problem with a rule, and whether rulefmt reports it at the rule's position.
struct Problem {
    text: String,
    at_node: bool,
}

/// Prometheus's `RuleNode.Validate`, in its order and words.
fn check_rule(r: RuleNode) -> Result<Rule, Vec<Problem>> {
    let mut errors = Vec::new();
    let record = r.record.clone().unwrap_or_default();
    let alert = r.alert.clone().unwrap_or_default();
    let (kind, name) = match (record.is_empty(), alert.is_empty()) {
        (false, false) => {
            errors.push("only one of 'record' and 'alert' must be set".to_string());
            (RuleKind::Alerting, alert)
        }
        (false, true) => (RuleKind::Recording, record),
        (true, false) => (RuleKind::Alerting, alert),
        (true, true) => {
            errors.push("one of 'record' or 'alert' must be set".to_string());
            (RuleKind::Alerting, String::new())
        }
    };
    let expr = r.expr.map(ExprText::into_string).unwrap_or_default();
    if expr.trim().is_empty() {
        errors.push("field 'expr' must be set in rule".to_string());
    } else if let Err(e) = crate::promql::parse_expr(&expr) {
        errors.push(format!("could not parse expression: {e}"));
    }
    let duration = |what: &str, v: &Option<String>, errors: &mut Vec<String>| -> i64 {
        match v.as_deref().map(parse_duration_ms) {
            None => 0,
            Some(Ok(ms)) => ms,
            Some(Err(e)) => {
                errors.push(format!("{what}: {e}"));
                0
            }
        }
    };
    let for_ms = duration("for", &r.for_, &mut errors);
    let keep_firing_for_ms = duration("keep_firing_for", &r.keep_firing_for, &mut errors);
    if kind == RuleKind::Recording {
        if !r.annotations.is_empty() {
            errors.push("invalid field 'annotations' in recording rule".to_string());
        }
        if for_ms != 0 {
            errors.push("invalid field 'for' in recording rule".to_string());
        }
        if keep_firing_for_ms != 0 {
            errors.push("invalid field 'keep_firing_for' in recording rule".to_string());
        }
        if !is_valid_metric_name(&name) {
            errors.push(format!("invalid recording rule name: {name}"));
        }
    }
    for k in r.labels.keys() {
        if !is_valid_label_name(k) || k == "__name__" {
            errors.push(format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !is_valid_label_name(k) {
            errors.push(format!("invalid annotation name: {k}"));
        }
    }
    let mut problems: Vec<Problem> = errors
        .into_iter()
        .map(|text| Problem {
            text,
            at_node: true,
        })
        .collect();
    if kind == RuleKind::Alerting {
        // Templates must parse (rulefmt's `testTemplateParsing`).
        for (what, list) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, text) in list {
                if let Err(e) = AlertTemplate::parse(&name, text).check() {
                    problems.push(Problem {
                        text: format!("{what} {k:?}: {e}"),
                        at_node: false,
                    });
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Rule {
        kind,
        name,
        expr,
        for_ms,
        keep_firing_for_ms,
        labels: r.labels,
        annotations: r.annotations,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
groups:
  - name: node
    interval: 30s
    query_offset: 1m
    rules:
      - record: instance:up:sum
        expr: sum by (instance) (up)
        labels: {source: odin}
      - alert: Down
        expr: instance:up:sum == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.instance }} is down"
  - name: empty
    rules: []
"#;

    #[test]
    fn a_prometheus_rule_file_reads() {
        let f = parse(GOOD, "good.yml").unwrap();
        assert_eq!(f.groups.len(), 2);
        let g = &f.groups[0];
        assert_eq!(
            (g.name.as_str(), g.interval_ms, g.query_offset_ms, g.limit),
            ("node", Some(30_000), Some(60_000), 0)
        );
        assert_eq!(g.rules[0].kind, RuleKind::Recording);
        assert_eq!(g.rules[0].name, "instance:up:sum");
        assert_eq!(g.rules[1].kind, RuleKind::Alerting);
        assert_eq!(
            (g.rules[1].for_ms, g.rules[1].keep_firing_for_ms),
            (300_000, 60_000)
        );
        assert_eq!(g.rules[1].labels["severity"], "critical");
        assert_eq!(f.groups[1].interval_ms, None);
        assert_eq!(parse("", "empty.yml").unwrap().groups, Vec::new());
    }

    #[test]
    fn problems_are_named_as_promtool_names_them() {
        let bad = r#"groups:
  - name: g
    rules:
      - record: "not a name"
        expr: up
        for: 1m
      - alert: A
        record: b
        expr: up
      - alert: B
        expr: sum(
        labels: {__name__: x, "0bad": y}
  - name: g
    rules:
      - alert: C
"#;
        let errors = parse(bad, "bad.yml").unwrap_err();
        let want = [
            "bad.yml: 4:9: group \"g\", rule 1, \"not a name\": invalid field 'for' in recording rule",
            "bad.yml: 4:9: group \"g\", rule 1, \"not a name\": invalid recording rule name: not a name",
            "bad.yml: 7:9: group \"g\", rule 2, \"A\": only one of 'record' and 'alert' must be set",
            "bad.yml: groupname: \"g\" is repeated in the same file",
            "bad.yml: 15:9: group \"g\", rule 1, \"C\": field 'expr' must be set in rule",
        ];
        for w in want {
            assert!(
                errors.iter().any(|e| e == w),
                "missing {w:?} in {errors:#?}"
            );
        }
        let b: Vec<&String> = errors
            .iter()
            .filter(|e| e.contains("rule 3, \"B\""))
            .collect();
        assert!(
            b.iter().any(|e| e.contains("could not parse expression")),
            "{b:?}"
        );
        assert!(
            b.iter()
                .any(|e| e.ends_with("invalid label name: __name__")),
            "{b:?}"
        );
        assert!(
            b.iter().any(|e| e.ends_with("invalid label name: 0bad")),
            "{b:?}"
        );
        // Unknown keys and broken YAML are errors too.
        assert!(parse("groups:\n  - name: x\n    rulez: []\n", "u.yml").is_err());
        assert!(parse("groups: [", "y.yml").is_err());
        // `interval: 0s` means "the global one", as in Prometheus.
        let zero = parse("groups:\n  - name: x\n    interval: 0s\n", "i.yml").unwrap();
        assert_eq!(zero.groups[0].interval_ms, None);
    }
}
