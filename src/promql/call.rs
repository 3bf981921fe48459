//! Function calls: argument handling, output labels and the special cases of
//! Prometheus 2.42's functions; the arithmetic lives in `functions`.

use std::cell::OnceCell;

use hashbrown::HashMap;

use promql_parser::parser::{Call, Expr};

use super::QueryError;
use super::eval::{
    Evaluator, StepBlock, StepVal, WindowSeries, check_unique_labels, drop_metric_name,
    duration_ms, reference_time,
};
use super::functions as f;
use super::value::Element;
use crate::model::{Labels, LabelsBuilder, METRIC_NAME, Sample};

pub(super) fn eval(ev: &Evaluator<'_>, c: &Call, ts: i64) -> Result<StepVal, QueryError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    let arg = |i: usize| {
        args.get(i)
            .copied()
            .ok_or_else(|| QueryError::BadData(format!("missing argument {} of {name}()", i + 1)))
    };
    let node = c as *const Call as usize;
    if let Some((keeps_name, kernel)) = window_kernel(name) {
        let out = window_function(ev, node, arg(0)?, ts, !keeps_name, kernel)?;
        check_unique_labels(ev, node, &out)?;
        return Ok(StepVal::Vector(out));
    }
    let out = match name {
        "time" => return Ok(StepVal::Scalar(ts as f64 / 1000.0)),
        "pi" => return Ok(StepVal::Scalar(std::f64::consts::PI)),
        "scalar" => {
            let v = ev.eval_vector(arg(0)?, ts)?;
            return Ok(StepVal::Scalar(match v.as_slice() {
                [one] => one.v,
                _ => f64::NAN,
            }));
        }
        "vector" => vec![Element {
            labels: Labels::empty(),
            t: ts,
            v: ev.eval_scalar(arg(0)?, ts)?,
        }],

        // Range-vector functions (the parameterless ones are above).
        "predict_linear" => {
            let d = ev.eval_scalar(arg(1)?, ts)?;
            over_matrix(ev, arg(0)?, ts, true, |pts, _, _| {
                Ok(f::predict_linear(pts, ts, d))
            })?
        }
        "holt_winters" => {
            let sf = ev.eval_scalar(arg(1)?, ts)?;
            let tf = ev.eval_scalar(arg(2)?, ts)?;
            over_matrix(ev, arg(0)?, ts, true, |pts, _, _| {
                f::holt_winters(pts, sf, tf).map_err(QueryError::Execution)
            })?
        }
        "quantile_over_time" => {
            let q = ev.eval_scalar(arg(0)?, ts)?;
            over_matrix(ev, arg(1)?, ts, true, |p, _, _| {
                Ok(f::quantile_over_time(q, p))
            })?
        }
        "absent_over_time" => {
            let a = arg(0)?;
            let any = !over_matrix(ev, a, ts, true, |_, _, _| Ok(Some(0.0)))?.is_empty();
            absent(a, any, ts)
        }

        // Instant-vector functions.
        "absent" => {
            let a = arg(0)?;
            let any = !ev.eval_vector(a, ts)?.is_empty();
            absent(a, any, ts)
        }
        "timestamp" => {
            // A selector's elements carry their samples' own times; anything else
            // carries the evaluation time, as in Prometheus.
            let v = ev.eval_vector(arg(0)?, ts)?;
            v.into_iter()
                .map(|e| Element {
                    labels: ev.drop_name(&e.labels),
                    t: ts,
                    v: e.t as f64 / 1000.0,
                })
                .collect()
        }
        "round" => {
            let to = match args.get(1) {
                Some(a) => ev.eval_scalar(a, ts)?,
                None => 1.0,
            };
            map_values(ev, ev.eval_vector(arg(0)?, ts)?, ts, |v| f::round(v, to))
        }
        "clamp" => {
            let (lo, hi) = (ev.eval_scalar(arg(1)?, ts)?, ev.eval_scalar(arg(2)?, ts)?);
            if hi < lo {
                Vec::new()
            } else {
                map_values(ev, ev.eval_vector(arg(0)?, ts)?, ts, |v| {
                    f::clamp(v, lo, hi)
                })
            }
        }
        "clamp_min" => {
            let lo = ev.eval_scalar(arg(1)?, ts)?;
            map_values(ev, ev.eval_vector(arg(0)?, ts)?, ts, |v| {
                f::clamp(v, lo, f64::INFINITY)
            })
        }
        "clamp_max" => {
            let hi = ev.eval_scalar(arg(1)?, ts)?;
            map_values(ev, ev.eval_vector(arg(0)?, ts)?, ts, |v| {
                f::clamp(v, f64::NEG_INFINITY, hi)
            })
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(0)?, ts)?;
            let desc = name == "sort_desc";
            // NaN sorts last either way, as Prometheus 2.42 puts it.
            v.sort_by(|a, b| {
                use std::cmp::Ordering;
                match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if desc => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
                    _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
                }
            });
            for e in &mut v {
                e.t = ts;
            }
            return Ok(StepVal::Vector(v));
        }
        "label_replace" => label_replace(ev, &args, ts)?,
        "label_join" => label_join(ev, &args, ts)?,
        "histogram_quantile" => {
            let q = ev.eval_scalar(arg(0)?, ts)?;
            histogram_quantile(q, ev.eval_vector(arg(1)?, ts)?, ts)
        }
        // Native-histogram functions: ODIN stores float samples only, which these
        // ignore, as Prometheus does.
        "histogram_count" | "histogram_sum" | "histogram_fraction" => {
            for a in &args {
                ev.eval(a, ts)?;
            }
            Vec::new()
        }
        _ => {
            if let Some(g) = f::math_fn(name) {
                map_values(ev, ev.eval_vector(arg(0)?, ts)?, ts, g)
            } else if let Some(g) = f::date_fn(name) {
                match args.first() {
                    Some(a) => map_values(ev, ev.eval_vector(a, ts)?, ts, g),
                    None => vec![Element {
                        labels: Labels::empty(),
                        t: ts,
                        v: g(ts as f64 / 1000.0),
                    }],
                }
            } else {
                return Err(QueryError::BadData(format!(
                    "unknown function with name {name:?}"
                )));
            }
        }
    };
    check_unique_labels(ev, node, &out)?;
    Ok(StepVal::Vector(out))
}

/// Applies `g` to every value, dropping the metric name.
fn map_values(
    ev: &Evaluator<'_>,
    v: Vec<Element>,
    ts: i64,
    g: impl Fn(f64) -> f64,
) -> Vec<Element> {
    v.into_iter()
        .map(|e| Element {
            labels: ev.drop_name(&e.labels),
            t: ts,
            v: g(e.v),
        })
        .collect()
}

/// A range function whose value depends on its window's samples and bounds only.
type WindowKernel = fn(&[f::Point], i64, i64) -> Option<f64>;

/// The range functions without parameters: whether each keeps the metric name
/// (only `last_over_time` does), and its kernel.
fn window_kernel(name: &str) -> Option<(bool, WindowKernel)> {
    let kernel: WindowKernel = match name {
        "rate" => |p, start, end| f::extrapolated_rate(p, start, end, true, true),
        "increase" => |p, start, end| f::extrapolated_rate(p, start, end, true, false),
        "delta" => |p, start, end| f::extrapolated_rate(p, start, end, false, false),
        "irate" => |p, _, _| f::instant_value(p, true),
        "idelta" => |p, _, _| f::instant_value(p, false),
        "changes" => |p, _, _| f::changes(p),
        "resets" => |p, _, _| f::resets(p),
        "deriv" => |p, _, _| f::deriv(p),
        "avg_over_time" => |p, _, _| f::avg_over_time(p),
        "min_over_time" => |p, _, _| f::min_over_time(p),
        "max_over_time" => |p, _, _| f::max_over_time(p),
        "sum_over_time" => |p, _, _| f::sum_over_time(p),
        "count_over_time" => |p, _, _| f::count_over_time(p),
        "stddev_over_time" => |p, _, _| f::stddev_over_time(p),
        "stdvar_over_time" => |p, _, _| f::stdvar_over_time(p),
        "present_over_time" => |p, _, _| f::present_over_time(p),
        "last_over_time" => |p, _, _| f::last_over_time(p),
        _ => return None,
    };
    Some((name == "last_over_time", kernel))
}

/// Elements held at most by one block of steps computed ahead (24 MiB).
const STEP_BLOCK_ELEMENTS: usize = 1 << 20;
/// Steps computed ahead at most.
const STEP_BLOCK_STEPS: usize = 64;

/// A parameterless range function at `ts`. Over a selector at the query's own steps,
/// the results of the coming steps are computed along with this one, series by
/// series (as Prometheus evaluates range functions): stepping across every series
/// once per step reads each series' samples from memory again at every step.
fn window_function(
    ev: &Evaluator<'_>,
    node: usize,
    arg: &Expr,
    ts: i64,
    drop_name: bool,
    kernel: WindowKernel,
) -> Result<Vec<Element>, QueryError> {
    let Expr::MatrixSelector(ms) = unwrap_parens(arg) else {
        return over_matrix(ev, arg, ts, drop_name, |p, start, end| {
            Ok(kernel(p, start, end))
        });
    };
    if !ev.at_query_step(ts) {
        return over_matrix(ev, arg, ts, drop_name, |p, start, end| {
            Ok(kernel(p, start, end))
        });
    }
    if let Some(out) = ev.take_step_result(node, ts) {
        return Ok(out);
    }
    let per_step = STEP_BLOCK_ELEMENTS / ev.selected_series(&ms.vs).max(1);
    let steps = ev.steps_from(ts, per_step.clamp(1, STEP_BLOCK_STEPS));
    let range = duration_ms(ms.range);
    let windows: Vec<(i64, i64)> = steps
        .iter()
        .map(|&t| {
            let r = reference_time(ev.at_ms(&ms.vs.at).unwrap_or(t), &ms.vs.offset);
            (r.saturating_sub(range), r)
        })
        .collect();
    let mut results: Vec<Vec<Element>> = vec![Vec::new(); steps.len()];
    let mut buf: Vec<f::Point> = Vec::new();
    ev.for_each_series_windows(&ms.vs, &windows, |ws, j, pts| {
        buf.clear();
        buf.extend(pts.iter().map(|s| (s.t, s.v)));
        let (Some(&(start, end)), Some(&t), Some(out)) =
            (windows.get(j), steps.get(j), results.get_mut(j))
        else {
            return;
        };
        if let Some(v) = kernel(&buf, start, end) {
            out.push(Element {
                labels: if drop_name {
                    ws.without_name().clone()
                } else {
                    ws.labels.clone()
                },
                t,
                v,
            });
        }
    })?;
    let mut block = steps.into_iter().zip(results);
    let now = block.next().map(|(_, v)| v).unwrap_or_default();
    ev.keep_step_results(node, StepBlock::new(block));
    Ok(now)
}

/// Calls `g` with every series of a range-vector argument (its samples as
/// `(t, v)` pairs and the window's bounds); an element for each `Some`.
fn over_matrix(
    ev: &Evaluator<'_>,
    arg: &Expr,
    ts: i64,
    drop_name: bool,
    mut g: impl FnMut(&[f::Point], i64, i64) -> Result<Option<f64>, QueryError>,
) -> Result<Vec<Element>, QueryError> {
    let mut out = Vec::new();
    let mut buf: Vec<f::Point> = Vec::new();
    let mut err = None;
    let mut emit = |ws: &WindowSeries<'_>, pts: &[Sample], start: i64, end: i64| {
        if err.is_some() {
            return;
        }
        buf.clear();
        buf.extend(pts.iter().map(|s| (s.t, s.v)));
        match g(&buf, start, end) {
            Ok(Some(v)) => out.push(Element {
                labels: if drop_name {
                    ws.without_name().clone()
                } else {
                    ws.labels.clone()
                },
                t: ts,
                v,
            }),
            Ok(None) => {}
            Err(e) => err = Some(e),
        }
    };
    match unwrap_parens(arg) {
        Expr::MatrixSelector(ms) => {
            let r = reference_time(ev.at_ms(&ms.vs.at).unwrap_or(ts), &ms.vs.offset);
            let start = r.saturating_sub(duration_ms(ms.range));
            ev.for_each_window(&ms.vs, start, r, |ws, pts| emit(ws, pts, start, r))?;
        }
        other => match ev.eval(other, ts)? {
            StepVal::Matrix { series, start, end } => {
                for s in &series {
                    if !s.points.is_empty() {
                        // A subquery's series are new at every step: their name-less
                        // copies come from the evaluator's memo.
                        let without_name = OnceCell::new();
                        if drop_name {
                            without_name.get_or_init(|| ev.drop_name(&s.labels));
                        }
                        emit(
                            &WindowSeries::new(&s.labels, &without_name),
                            &s.points,
                            start,
                            end,
                        );
                    }
                }
            }
            v => {
                return Err(QueryError::Execution(format!(
                    "expected range vector, got {}",
                    v.kind()
                )));
            }
        },
    }
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// `absent()` and `absent_over_time()`: nothing when the argument had data, else one
/// element whose labels are the selector's equality matchers (a label matched more
/// than once, or otherwise than by `=`, is left out).
fn absent(arg: &Expr, any: bool, ts: i64) -> Vec<Element> {
    if any {
        return Vec::new();
    }
    let matchers = match arg {
        Expr::VectorSelector(vs) => Some(&vs.matchers.matchers),
        Expr::MatrixSelector(ms) => Some(&ms.vs.matchers.matchers),
        _ => None,
    };
    let mut b = LabelsBuilder::default();
    if let Some(ms) = matchers {
        let mut set: Vec<&str> = Vec::new();
        let mut dropped: Vec<&str> = Vec::new();
        for m in ms.iter().filter(|m| m.name != METRIC_NAME) {
            if matches!(m.op, promql_parser::label::MatchOp::Equal) && !set.contains(&&*m.name) {
                b.set(m.name.as_str(), m.value.as_str());
                set.push(&m.name);
            } else {
                dropped.push(&m.name);
            }
        }
        for n in dropped {
            b.delete(n);
        }
    }
    vec![Element {
        labels: b.build(),
        t: ts,
        v: 1.0,
    }]
}

fn string_arg(ev: &Evaluator<'_>, args: &[&Expr], i: usize, ts: i64) -> Result<String, QueryError> {
    let a = args
        .get(i)
        .ok_or_else(|| QueryError::BadData(format!("missing argument {}", i + 1)))?;
    match ev.eval(a, ts)? {
        StepVal::String(s) => Ok(s),
        v => Err(QueryError::Execution(format!(
            "expected string argument, got {}",
            v.kind()
        ))),
    }
}

/// `label_replace(v, dst, replacement, src, regex)`.
fn label_replace(ev: &Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Vec<Element>, QueryError> {
    let dst = string_arg(ev, args, 1, ts)?;
    let replacement = string_arg(ev, args, 2, ts)?;
    let src = string_arg(ev, args, 3, ts)?;
    let pattern = string_arg(ev, args, 4, ts)?;
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !crate::model::is_valid_label_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let v = ev.eval_vector(
        args.first()
            .copied()
            .ok_or_else(|| QueryError::BadData("missing argument 1 of label_replace()".into()))?,
        ts,
    )?;
    Ok(v.into_iter()
        .map(|e| {
            let value = e.labels.get(&src).unwrap_or("");
            let labels = match re.captures(value) {
                Some(caps) => {
                    let mut res = String::new();
                    caps.expand(&replacement, &mut res);
                    let mut b = e.labels.to_builder();
                    b.delete(&dst);
                    if !res.is_empty() {
                        b.set(dst.as_str(), res);
                    }
                    b.build()
                }
                None => e.labels.clone(),
            };
            Element {
                labels,
                t: ts,
                v: e.v,
            }
        })
        .collect())
}

/// `label_join(v, dst, separator, src...)`.
fn label_join(ev: &Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Vec<Element>, QueryError> {
    let dst = string_arg(ev, args, 1, ts)?;
    let sep = string_arg(ev, args, 2, ts)?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        let s = string_arg(ev, args, i, ts)?;
        if !crate::model::is_valid_label_name(&s) {
            return Err(QueryError::Execution(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !crate::model::is_valid_label_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let v = ev.eval_vector(
        args.first()
            .copied()
            .ok_or_else(|| QueryError::BadData("missing argument 1 of label_join()".into()))?,
        ts,
    )?;
    Ok(v.into_iter()
        .map(|e| {
            let joined: Vec<&str> = srcs.iter().map(|s| e.labels.get(s).unwrap_or("")).collect();
            let joined = joined.join(&sep);
            let mut b = e.labels.to_builder();
            if joined.is_empty() {
                b.delete(&dst);
            } else {
                b.set(dst.as_str(), joined);
            }
            Element {
                labels: b.build(),
                t: ts,
                v: e.v,
            }
        })
        .collect())
}

/// `histogram_quantile(q, buckets)` over classic buckets: series are grouped by their
/// labels without `le`; a bucket whose `le` is missing or not a number is skipped.
fn histogram_quantile(q: f64, v: Vec<Element>, ts: i64) -> Vec<Element> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for e in v {
        let Some(upper) = e.labels.get("le").and_then(crate::gostrconv::parse_float) else {
            continue;
        };
        let mut b = e.labels.to_builder();
        b.delete("le");
        // The group keeps the metric name; the output drops it.
        let key = b.build();
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((drop_metric_name(&key), Vec::new()));
            groups.len() - 1
        });
        if let Some(g) = groups.get_mut(i) {
            g.1.push((upper, e.v));
        }
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| Element {
            labels,
            t: ts,
            v: f::bucket_quantile(q, &mut buckets),
        })
        .collect()
}
