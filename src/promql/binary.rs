//! Binary operators: arithmetic, comparison (filtering or `bool`), the set operators
//! `and`/`or`/`unless`, and vector matching with `on`/`ignoring` and
//! `group_left`/`group_right`, with Prometheus 2.42's label and error rules.

use hashbrown::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::QueryError;
use super::eval::{Evaluator, StepVal, check_unique_labels};
use super::value::Element;
use crate::model::{Labels, METRIC_NAME, hash_label_pairs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Prometheus 2.42's `shouldDropMetricName`: the arithmetic operators, which make
    /// a value that is no longer the metric's (`atan2` is not among them in 2.42).
    fn drops_metric_name(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow
        )
    }

    /// The value and, for comparisons, whether the pair passes (`vectorElemBinop`).
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (super::functions::pow(l, r), true),
            Op::Atan2 => (super::functions::atan2(l, r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (f64::NAN, false),
        }
    }
}

/// How two vectors are matched.
struct Matching<'a> {
    /// The operator's node, which keys the evaluator's memos.
    node: usize,
    /// `on(...)`: match on these labels only; otherwise on all but these and the name.
    on: bool,
    labels: &'a [String],
    card: Card,
    /// Labels `group_left`/`group_right` copy from the "one" side.
    include: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Matching<'_> {
    /// The match-group signatures of the elements of one operand (`side` 0 and 1
    /// tell the two apart), each computed once per label set and query.
    fn signatures(&self, ev: &Evaluator<'_>, side: u8, els: &[Element]) -> Vec<u64> {
        ev.node_hashes(self.node, side, els, |l| self.compute_signature(l))
    }

    fn compute_signature(&self, labels: &Labels) -> u64 {
        let pairs = labels.iter().filter(|l| {
            if self.on {
                self.labels.iter().any(|n| *n == *l.name)
            } else {
                &*l.name != METRIC_NAME && !self.labels.iter().any(|n| *n == *l.name)
            }
        });
        hash_label_pairs(pairs.map(|l| (&*l.name, &*l.value)))
    }

    /// The labels of an output element (`resultMetric`).
    fn result_labels(&self, many: &Labels, one: &Labels, op: Op, return_bool: bool) -> Labels {
        let mut b = many.to_builder();
        if op.drops_metric_name() || return_bool {
            b.delete(METRIC_NAME);
        }
        if self.card == Card::OneToOne {
            if self.on {
                let drop: Vec<String> = many
                    .iter()
                    .filter(|l| !self.labels.iter().any(|n| *n == *l.name))
                    .map(|l| l.name.to_string())
                    .collect();
                for n in &drop {
                    b.delete(n);
                }
            } else {
                for n in self.labels {
                    b.delete(n);
                }
            }
        }
        for n in self.include {
            match one.get(n) {
                Some(v) => {
                    b.set(n.as_str(), v);
                }
                None => {
                    b.delete(n);
                }
            }
        }
        b.build()
    }
}

pub(super) fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, ts: i64) -> Result<StepVal, QueryError> {
    let op_name = b.op.to_string();
    let op = Op::parse(&op_name)
        .ok_or_else(|| QueryError::BadData(format!("unknown binary operator {op_name:?}")))?;
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    match (lhs, rhs) {
        (StepVal::Scalar(l), StepVal::Scalar(r)) => {
            let (v, keep) = op.apply(l, r);
            Ok(StepVal::Scalar(if op.is_comparison() {
                if keep { 1.0 } else { 0.0 }
            } else {
                v
            }))
        }
        (StepVal::Vector(l), StepVal::Scalar(r)) => {
            let out = vector_scalar(ev, l, r, op, return_bool, false, ts)?;
            checked_after_name_drop(ev, b, op, return_bool, out)
        }
        (StepVal::Scalar(l), StepVal::Vector(r)) => {
            let out = vector_scalar(ev, r, l, op, return_bool, true, ts)?;
            checked_after_name_drop(ev, b, op, return_bool, out)
        }
        (StepVal::Vector(l), StepVal::Vector(r)) => {
            let (on, labels): (bool, &[String]) =
                match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(ls)) => (true, &ls.labels),
                    Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
                    None => (false, &[]),
                };
            let (card, include): (Card, &[String]) = match b.modifier.as_ref().map(|m| &m.card) {
                Some(VectorMatchCardinality::ManyToOne(ls)) => (Card::ManyToOne, &ls.labels),
                Some(VectorMatchCardinality::OneToMany(ls)) => (Card::OneToMany, &ls.labels),
                _ => (Card::OneToOne, &[]),
            };
            let m = Matching {
                node: b as *const BinaryExpr as usize,
                on,
                labels,
                card,
                include,
            };
            let out = match op {
                Op::And => set_filter(ev, l, r, &m, true),
                Op::Or => set_or(ev, l, r, &m),
                Op::Unless => set_filter(ev, l, r, &m, false),
                _ => vector_vector(ev, l, r, op, return_bool, &m)?,
            };
            let mut out = out;
            for e in &mut out {
                e.t = ts;
            }
            check_unique_labels(ev, m.node, &out)?;
            Ok(StepVal::Vector(out))
        }
        (l, r) => Err(QueryError::Execution(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.kind(),
            r.kind()
        ))),
    }
}

/// A vector-scalar result, refused as Prometheus refuses it when dropping the
/// metric name made two of its elements the same (`{__name__=~"a|b"} + 1` over
/// `a{x="1"}` and `b{x="1"}`). Kept names leave the selector's unique sets.
fn checked_after_name_drop(
    ev: &Evaluator<'_>,
    b: &BinaryExpr,
    op: Op,
    return_bool: bool,
    out: Vec<Element>,
) -> Result<StepVal, QueryError> {
    if op.drops_metric_name() || return_bool {
        check_unique_labels(ev, b as *const BinaryExpr as usize, &out)?;
    }
    Ok(StepVal::Vector(out))
}

/// A vector against a scalar; `swapped` when the scalar is on the left.
fn vector_scalar(
    ev: &Evaluator<'_>,
    v: Vec<Element>,
    s: f64,
    op: Op,
    return_bool: bool,
    swapped: bool,
    ts: i64,
) -> Result<Vec<Element>, QueryError> {
    if matches!(op, Op::And | Op::Or | Op::Unless) {
        return Err(QueryError::Execution(
            "set operator not allowed in binary scalar expression".into(),
        ));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let (l, r) = if swapped { (s, e.v) } else { (e.v, s) };
        let (mut value, mut keep) = op.apply(l, r);
        // A comparison keeps the vector's value even when the scalar is on the left.
        if op.is_comparison() && swapped {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            if op.drops_metric_name() || return_bool {
                e.labels = ev.drop_name(&e.labels);
            }
            e.v = value;
            e.t = ts;
            out.push(e);
        }
    }
    Ok(out)
}

/// Arithmetic and comparison between two vectors (`VectorBinop`).
fn vector_vector(
    ev: &Evaluator<'_>,
    lhs: Vec<Element>,
    rhs: Vec<Element>,
    op: Op,
    return_bool: bool,
    m: &Matching<'_>,
) -> Result<Vec<Element>, QueryError> {
    // With group_right the right side is the "many" side: swap, and swap values back
    // when applying the operator.
    let (many, one) = if m.card == Card::OneToMany {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    let one_sigs = m.signatures(ev, 1, &one);
    let many_sigs = m.signatures(ev, 0, &many);
    let mut one_by_sig: HashMap<u64, &Element> = HashMap::with_capacity(one.len());
    for (e, &sig) in one.iter().zip(&one_sigs) {
        if let Some(prev) = one_by_sig.insert(sig, e) {
            let side = if m.card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                group_string(&e.labels, m),
                labels_string(&e.labels),
                labels_string(&prev.labels),
            )));
        }
    }
    let mut matched_one_to_one: HashSet<u64> = HashSet::new();
    let mut matched_groups: HashMap<u64, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for (e, &sig) in many.iter().zip(&many_sigs) {
        let Some(o) = one_by_sig.get(&sig) else {
            continue;
        };
        let (l, r) = if m.card == Card::OneToMany {
            (o.v, e.v)
        } else {
            (e.v, o.v)
        };
        let (mut value, keep) = op.apply(l, r);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let labels = ev.match_result(m.node, &e.labels, &o.labels, || {
            m.result_labels(&e.labels, &o.labels, op, return_bool)
        });
        if m.card == Card::OneToOne {
            if !matched_one_to_one.insert(sig) {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
        } else if !matched_groups
            .entry(sig)
            .or_default()
            .insert(labels.clone())
        {
            return Err(QueryError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Element {
            labels,
            t: e.t,
            v: value,
        });
    }
    Ok(out)
}

/// `and` (`keep_matched`) and `unless`: the left side's elements whose match group
/// the right side has (or has not).
fn set_filter(
    ev: &Evaluator<'_>,
    lhs: Vec<Element>,
    rhs: Vec<Element>,
    m: &Matching<'_>,
    keep_matched: bool,
) -> Vec<Element> {
    let right: HashSet<u64> = m.signatures(ev, 1, &rhs).into_iter().collect();
    let left = m.signatures(ev, 0, &lhs);
    lhs.into_iter()
        .zip(left)
        .filter(|(_, sig)| right.contains(sig) == keep_matched)
        .map(|(e, _)| e)
        .collect()
}

fn set_or(
    ev: &Evaluator<'_>,
    lhs: Vec<Element>,
    rhs: Vec<Element>,
    m: &Matching<'_>,
) -> Vec<Element> {
    let left: HashSet<u64> = m.signatures(ev, 0, &lhs).into_iter().collect();
    let right = m.signatures(ev, 1, &rhs);
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .zip(right)
            .filter(|(_, sig)| !left.contains(sig))
            .map(|(e, _)| e),
    );
    out
}

/// `{a="b", c="d"}` as Prometheus prints a label set in messages.
fn labels_string(labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, &*l.value))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// The match group of `labels`, for the duplicate-series message.
fn group_string(labels: &Labels, m: &Matching<'_>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .filter(|l| {
            if m.on {
                m.labels.iter().any(|n| *n == *l.name)
            } else {
                &*l.name != METRIC_NAME && !m.labels.iter().any(|n| *n == *l.name)
            }
        })
        .map(|l| format!("{}={:?}", l.name, &*l.value))
        .collect();
    format!("{{{}}}", inner.join(", "))
}
