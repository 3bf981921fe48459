//! `odin test rules FILE…`: promtool's rule unit tests (`promtool test rules`), read
//! in its format and run on ODIN's engine, so existing rule tests run unchanged:
//!
//! ```yaml
//! rule_files: [rules.yml]          # relative to the test file
//! evaluation_interval: 1m
//! group_eval_order: [g1, g2]       # optional
//! tests:
//!   - interval: 1m                 # of the input series (default: evaluation_interval)
//!     input_series:
//!       - series: 'up{job="node"}'
//!         values: '1 1 0 0'        # the `load` notation: 1+1x10, _, stale …
//!     promql_expr_test:
//!       - expr: job:up:sum
//!         eval_time: 3m
//!         exp_samples:
//!           - labels: 'job:up:sum{job="node"}'
//!             value: 0
//! ```
//!
//! As promtool does, every group is evaluated at every `evaluation_interval` from 0
//! to the latest `eval_time`; the firing alerts of an `alert_rule_test` are compared
//! (labels and expanded annotations) after the evaluation at or just before its
//! `eval_time`; then each expression is queried at its time and its samples
//! compared, sorted by labels, value for value. A rule that fails to evaluate fails
//! the test. Alerting rules count as restored, so `ALERTS` is written from the
//! first evaluation (as promtool marks them).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::model::{Labels, format_duration_ms, parse_duration_ms};
use crate::promql::{CancelFlag, Engine, EngineOptions, Value};
use crate::rules::alerting::AlertState;
use crate::rules::{AlertSettings, Evaluator, Group, Health};
use crate::storage::Appendable;
use crate::storage::memory::MemoryStorage;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    /// `$externalLabels` and `$externalURL` in alert templates.
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

/// An alert as an `alert_rule_test` compares it: labels and annotations.
type LabelsAndAnnotations = (Labels, BTreeMap<String, String>);

/// promtool's `labelsAndAnnotations.String()`, each entry indented under its index.
fn show_alerts(list: &[LabelsAndAnnotations]) -> String {
    if list.is_empty() {
        return "[]".to_string();
    }
    let mut out = String::from("[");
    for (i, (labels, annotations)) in list.iter().enumerate() {
        let annotations =
            Labels::from_pairs(annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "\n{i}:\n  Labels:{labels}\n  Annotations:{annotations}"
        ));
    }
    out.push_str("\n]");
    out
}

/// promtool's `indentLines`: every line but the first indented.
fn indent_lines(text: &str, indent: &str) -> String {
    text.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`, as promtool prints sample values:
/// `8E+01`, `7.5E-01`, `0E+00`, `+Inf`, `NaN`.
pub(crate) fn go_format_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:E}");
    let Some((mantissa, exp)) = s.split_once('E') else {
        return s;
    };
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}E{sign}{digits:0>2}")
}

fn duration(what: &str, text: &str) -> Result<i64, String> {
    parse_duration_ms(text).map_err(|e| format!("{what}: {e}"))
}

/// Runs the tests of one file, printing as promtool does; `Ok(true)` when all pass.
pub fn run_file(path: &Path) -> Result<bool, String> {
    let name = path.display().to_string();
    println!("Unit Testing:  {name}");
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {name}: {e}"))?;
    let file: TestFile = serde_saphyr::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let eval_interval = match &file.evaluation_interval {
        Some(s) => duration("evaluation_interval", s)?,
        None => 60_000,
    };
    if eval_interval <= 0 {
        return Err(format!("{name}: evaluation_interval must be above 0"));
    }
    let rule_files = crate::rules::load_files(&file.rule_files, base)?;
    let mut errors = Vec::new();
    for test in &file.tests {
        errors.extend(run_test(test, &file, &rule_files, eval_interval)?);
    }
    if errors.is_empty() {
        println!("  SUCCESS");
        println!();
        Ok(true)
    } else {
        println!("  FAILED:");
        for e in &errors {
            println!("{e}");
        }
        println!();
        Ok(false)
    }
}

/// One test group; returns its failures, each as promtool words it.
fn run_test(
    test: &TestGroup,
    file: &TestFile,
    rule_files: &[(String, crate::rules::file::RuleFile)],
    eval_interval: i64,
) -> Result<Vec<String>, String> {
    let prefix = test
        .name
        .as_deref()
        .map(|n| format!("    name: {n},\n"))
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut alert_tests = Vec::new();
    for a in &test.alert_rule_test {
        if a.alertname.is_empty() {
            let in_group = test
                .name
                .as_deref()
                .map(|n| format!(" (in TestGroup {n})"))
                .unwrap_or_default();
            return Ok(vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                a.eval_time
            )]);
        }
        alert_tests.push((duration("eval_time", &a.eval_time)?, a));
    }
    let mut alert_times: Vec<i64> = alert_tests.iter().map(|(t, _)| *t).collect();
    alert_times.sort_unstable();
    alert_times.dedup();
    let interval = match &test.interval {
        Some(s) => duration("interval", s)?,
        None => eval_interval,
    };
    // The input series, at step i × interval from Unix time 0.
    let storage = MemoryStorage::new();
    let mut app = storage.appender();
    for s in &test.input_series {
        let (labels, values) =
            crate::promql::testlang::parse_series(&format!("{} {}", s.series, s.values))
                .map_err(|e| format!("input_series {:?}: {e}", s.series))?;
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                app.append(&labels, (i as i64).saturating_mul(interval), *v)
                    .map_err(|e| format!("input_series {:?}: {e}", s.series))?;
            }
        }
    }
    app.commit().map_err(|e| e.to_string())?;
    let engine = Arc::new(Engine::new(EngineOptions {
        default_subquery_step_ms: eval_interval,
        ..EngineOptions::default()
    }));
    let ev = Evaluator {
        engine: engine.clone(),
        queryable: Arc::new(storage.clone()),
        appendable: Arc::new(storage.clone()),
        alerting: AlertSettings {
            external_labels: Arc::new(test.external_labels.clone()),
            external_url: Arc::from(test.external_url.as_deref().unwrap_or("")),
            ..AlertSettings::default()
        },
    };
    // The groups, in group_eval_order when given, else as the files list them.
    let mut groups: Vec<Group> = rule_files
        .iter()
        .flat_map(|(f, rf)| {
            rf.groups
                .iter()
                .map(|g| Group::new(f.clone(), g.clone(), eval_interval))
        })
        .collect();
    // As promtool: the groups named first, in that order, then the others as
    // listed; names of no group are ignored, a name given twice is an error.
    let mut named = std::collections::HashSet::new();
    for n in &file.group_eval_order {
        if !named.insert(n) {
            return Err(format!("group_eval_order: group {n:?} is listed twice"));
        }
    }
    let place = |g: &Group| {
        file.group_eval_order
            .iter()
            .position(|n| *n == g.spec.name)
            .unwrap_or(usize::MAX)
    };
    groups.sort_by_key(|g| place(g));
    let mut tests = Vec::new();
    for t in &test.promql_expr_test {
        tests.push((duration("eval_time", &t.eval_time)?, t));
    }
    let max = tests
        .iter()
        .map(|(t, _)| *t)
        .chain(alert_times.iter().copied())
        .max()
        .unwrap_or(0);
    let mut next_alert_time = 0;
    let mut ts = 0;
    while ts <= max {
        let mut eval_errors = Vec::new();
        for g in &groups {
            g.evaluate(&ev, ts, g.spec.query_offset_ms.unwrap_or(0));
            let state = g.state();
            for (rule, rs) in g.spec.rules.iter().zip(&state.rules) {
                if rs.health == Health::Err {
                    eval_errors.push(format!(
                        "{prefix}    rule: {}, time: {}, err: {}",
                        rule.name,
                        format_duration_ms(ts),
                        rs.last_error.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        // promtool stops at the first evaluation time with evaluation errors (not
        // at failed alert tests).
        if !eval_errors.is_empty() {
            errors.extend(eval_errors);
            return Ok(errors);
        }
        // The alert tests whose time falls in [ts, ts + interval) see this
        // evaluation's firing alerts.
        while let Some(&t) = alert_times.get(next_alert_time) {
            if !(ts <= t && t < ts + eval_interval) {
                break;
            }
            for (_, case) in alert_tests.iter().filter(|(at, _)| *at == t) {
                errors.extend(check_alerts(&prefix, &groups, t, case));
            }
            next_alert_time += 1;
        }
        ts += eval_interval;
    }
    for (at, t) in tests {
        let got = match engine.instant(&*ev.queryable, &t.expr, at, &CancelFlag::default()) {
            Ok(Value::Vector(v)) => v.into_iter().map(|e| (e.labels, e.v)).collect(),
            Ok(Value::Scalar { v, .. }) => vec![(Labels::default(), v)],
            Ok(other) => {
                errors.push(format!(
                    "{prefix}    expr: {:?}, time: {}, err: unexpected result type {}",
                    t.expr,
                    format_duration_ms(at),
                    other.type_name()
                ));
                continue;
            }
            Err(e) => {
                errors.push(format!(
                    "{prefix}    expr: {:?}, time: {}, err: {e}",
                    t.expr,
                    format_duration_ms(at)
                ));
                continue;
            }
        };
        let mut want = Vec::new();
        for s in &t.exp_samples {
            let (labels, _) = crate::promql::testlang::parse_series(&s.labels)
                .map_err(|e| format!("exp_samples labels {:?}: {e}", s.labels))?;
            want.push((labels, s.value));
        }
        let mut got: Vec<(Labels, f64)> = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(g, w)| g.0 == w.0 && (g.1 == w.1 || g.1.to_bits() == w.1.to_bits()));
        if !same {
            // promtool's `parsedSamplesString`: `nil` for none.
            let show = |s: &[(Labels, f64)]| -> String {
                if s.is_empty() {
                    return "nil".to_string();
                }
                s.iter()
                    .map(|(l, v)| format!("{l} {}", go_format_e(*v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            errors.push(format!(
                "{prefix}    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                t.expr,
                format_duration_ms(at),
                show(&want),
                show(&got)
            ));
        }
    }
    Ok(errors)
}

/// One `alert_rule_test` case against the groups' firing alerts now.
fn check_alerts(prefix: &str, groups: &[Group], t: i64, case: &AlertTest) -> Option<String> {
    let mut got: Vec<LabelsAndAnnotations> = Vec::new();
    for g in groups {
        let state = g.state();
        for (rule, rs) in g.spec.rules.iter().zip(&state.rules) {
            if rule.name != case.alertname {
                continue;
            }
            got.extend(
                rs.alerts
                    .current()
                    .into_iter()
                    .filter(|a| a.state == AlertState::Firing)
                    .map(|a| (a.labels.clone(), a.annotations.clone())),
            );
        }
    }
    let mut want: Vec<LabelsAndAnnotations> = case
        .exp_alerts
        .iter()
        .map(|a| {
            let mut labels = a.exp_labels.clone();
            labels.insert("alertname".to_string(), case.alertname.clone());
            (
                Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                a.exp_annotations.clone(),
            )
        })
        .collect();
    got.sort();
    want.sort();
    if got == want {
        return None;
    }
    let pad = " ".repeat(12);
    Some(format!(
        "{prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        case.alertname,
        format_duration_ms(t),
        indent_lines(&show_alerts(&want), &pad),
        indent_lines(&show_alerts(&got), &pad)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_go_prints_them_in_e_notation() {
        assert_eq!(go_format_e(80.0), "8E+01");
        assert_eq!(go_format_e(75.0), "7.5E+01");
        assert_eq!(go_format_e(0.25), "2.5E-01");
        assert_eq!(go_format_e(0.0), "0E+00");
        assert_eq!(go_format_e(-1e-300), "-1E-300");
        assert_eq!(go_format_e(f64::INFINITY), "+Inf");
    }
}
