//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, … with `by` or
//! `without`), grouping and arithmetic as Prometheus 2.42's `aggregation()`.

use hashbrown::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::QueryError;
use super::eval::{Evaluator, StepVal};
use super::functions::{AvgAcc, MaxAcc, MinAcc, StdAcc, SumAcc, quantile};
use super::value::Element;
use crate::model::{Labels, LabelsBuilder, METRIC_NAME, hash_label_pairs};

const OPERATORS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
];

/// Whether Prometheus 2.42 has the aggregation operator `op`.
pub(super) fn is_supported(op: &str) -> bool {
    OPERATORS.contains(&op)
}

/// Which labels make a group.
struct Grouping<'a> {
    without: bool,
    labels: &'a [String],
}

impl Grouping<'_> {
    fn keeps(&self, name: &str) -> bool {
        if self.without {
            name != METRIC_NAME && !self.labels.iter().any(|n| n == name)
        } else {
            self.labels.iter().any(|n| n == name)
        }
    }

    fn key(&self, labels: &Labels) -> u64 {
        hash_label_pairs(
            labels
                .iter()
                .filter(|l| self.keeps(&l.name))
                .map(|l| (&*l.name, &*l.value)),
        )
    }

    fn group_labels(&self, labels: &Labels) -> Labels {
        let mut b = LabelsBuilder::default();
        for l in labels.iter().filter(|l| self.keeps(&l.name)) {
            b.set(l.name.clone(), l.value.clone());
        }
        b.build()
    }
}

/// One group's running state.
enum Acc {
    Sum(SumAcc),
    Avg(AvgAcc),
    Count(f64),
    Group,
    Min(MinAcc),
    Max(MaxAcc),
    Std(StdAcc),
    /// topk/bottomk: the group's elements, selected at the end.
    Elements(Vec<Element>),
    /// quantile: the group's values.
    Values(Vec<f64>),
}

struct Group {
    labels: Labels,
    acc: Acc,
}

pub(super) fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<StepVal, QueryError> {
    let op = a.op.to_string();
    let node = a as *const AggregateExpr as usize;
    let (without, names): (bool, &[String]) = match &a.modifier {
        Some(LabelModifier::Include(ls)) => (false, &ls.labels),
        Some(LabelModifier::Exclude(ls)) => (true, &ls.labels),
        None => (false, &[]),
    };
    let mut names: Vec<String> = names.to_vec();
    let mut input = ev.eval_vector(&a.expr, ts)?;

    let mut k = 0usize;
    let mut q = 0.0;
    match op.as_str() {
        "topk" | "bottomk" => {
            let p = param_scalar(ev, a, ts)?;
            // Prometheus's `convertibleToInt64`: the largest float below 2^63 (2^63
            // itself, `i64::MAX as f64`, does not fit).
            if !(-9_223_372_036_854_775_808.0..=9_223_372_036_854_774_784.0).contains(&p) {
                return Err(QueryError::Execution(format!(
                    "Scalar value {} overflows int64",
                    crate::promql::value::format_float(p)
                )));
            }
            let p = p as i64;
            if p < 1 {
                return Ok(StepVal::Vector(Vec::new()));
            }
            k = usize::try_from(p).unwrap_or(usize::MAX);
        }
        "quantile" => q = param_scalar(ev, a, ts)?,
        "count_values" => {
            let label = match a.param.as_deref() {
                Some(Expr::StringLiteral(s)) => s.val.clone(),
                Some(other) => match ev.eval(other, ts)? {
                    StepVal::String(s) => s,
                    v => {
                        return Err(QueryError::Execution(format!(
                            "expected string parameter for count_values, got {}",
                            v.kind()
                        )));
                    }
                },
                None => {
                    return Err(QueryError::BadData(
                        "count_values needs a label name".into(),
                    ));
                }
            };
            if !crate::model::is_valid_label_name(&label) {
                return Err(QueryError::Execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            // The value becomes a label, and (with `by`) part of the group.
            for e in &mut input {
                let mut b = e.labels.to_builder();
                b.set(label.as_str(), crate::promql::value::format_plain(e.v));
                e.labels = b.build();
            }
            if !without {
                names.push(label);
            }
        }
        _ => {}
    }
    let grouping = Grouping {
        without,
        labels: &names,
    };

    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let keys = ev.node_hashes(node, 0, &input, |l| grouping.key(l));
    for (e, key) in input.into_iter().zip(keys) {
        let gi = match index.get(&key) {
            Some(i) => *i,
            None => {
                let acc = match op.as_str() {
                    "sum" => Acc::Sum(SumAcc::new(e.v)),
                    "avg" => Acc::Avg(AvgAcc::new(e.v)),
                    "count" | "count_values" => Acc::Count(1.0),
                    "group" => Acc::Group,
                    "min" => Acc::Min(MinAcc::new(e.v)),
                    "max" => Acc::Max(MaxAcc::new(e.v)),
                    "stddev" | "stdvar" => Acc::Std(StdAcc::new(e.v)),
                    "topk" | "bottomk" => Acc::Elements(Vec::new()),
                    "quantile" => Acc::Values(Vec::new()),
                    other => {
                        return Err(QueryError::BadData(format!(
                            "unknown aggregation operator {other:?}"
                        )));
                    }
                };
                groups.push(Group {
                    labels: ev.group_labels(key, || grouping.group_labels(&e.labels)),
                    acc,
                });
                index.insert(key, groups.len() - 1);
                let Some(g) = groups.last_mut() else { continue };
                match &mut g.acc {
                    Acc::Elements(v) => v.push(e),
                    Acc::Values(v) => v.push(e.v),
                    _ => {}
                }
                continue;
            }
        };
        let Some(g) = groups.get_mut(gi) else {
            continue;
        };
        match &mut g.acc {
            Acc::Sum(s) => s.add(e.v),
            Acc::Avg(s) => s.add(e.v),
            Acc::Count(n) => *n += 1.0,
            Acc::Group => {}
            Acc::Min(s) => s.add(e.v),
            Acc::Max(s) => s.add(e.v),
            Acc::Std(s) => s.add(e.v),
            Acc::Elements(v) => v.push(e),
            Acc::Values(v) => v.push(e.v),
        }
    }

    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let v = match g.acc {
            Acc::Sum(s) => s.value(),
            Acc::Avg(s) => s.value(),
            Acc::Count(n) => n,
            Acc::Group => 1.0,
            Acc::Min(s) => s.value(),
            Acc::Max(s) => s.value(),
            Acc::Std(s) if op == "stddev" => s.stddev(),
            Acc::Std(s) => s.stdvar(),
            Acc::Values(mut vs) => quantile(q, &mut vs),
            Acc::Elements(els) => {
                out.extend(select_k(els, k, op == "topk").into_iter().map(|mut e| {
                    e.t = ts;
                    e
                }));
                continue;
            }
        };
        out.push(Element {
            labels: g.labels,
            t: ts,
            v,
        });
    }
    Ok(StepVal::Vector(out))
}

fn param_scalar(ev: &Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<f64, QueryError> {
    match a.param.as_deref() {
        Some(p) => ev.eval_scalar(p, ts),
        None => Err(QueryError::BadData(format!("{} needs a parameter", a.op))),
    }
}

/// The `k` largest (`top`) or smallest elements, in that order. NaN ranks below every
/// number for topk and above every number for bottomk, so it is chosen last.
fn select_k(mut els: Vec<Element>, k: usize, top: bool) -> Vec<Element> {
    els.sort_by(|a, b| {
        use std::cmp::Ordering;
        match (a.v.is_nan(), b.v.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) if top => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
            (false, false) => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
        }
    });
    els.truncate(k);
    els
}
