//! LogQL written back from its syntax tree: one canonical line (single spaces,
//! double-quoted strings, durations in Prometheus's units, binary operands in
//! parentheses), which parses to the same tree. `/loki/api/v1/format_query`
//! answers with it.

use std::fmt::Write;

use super::ast::*;
use crate::model::Matcher;

/// The query as one canonical line.
pub fn format(expr: &Expr) -> String {
    let mut out = String::new();
    match expr {
        Expr::Log(l) => log_expr(&mut out, l),
        Expr::Metric(m) => metric(&mut out, m),
    }
    out
}

/// A string as LogQL reads one back: double quotes, Go's escapes.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn matcher(out: &mut String, m: &Matcher) {
    out.push_str(&m.name);
    out.push_str(m.kind.as_str());
    quote(out, &m.value);
}

fn selector(out: &mut String, matchers: &[Matcher]) {
    out.push('{');
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        matcher(out, m);
    }
    out.push('}');
}

fn log_expr(out: &mut String, l: &LogExpr) {
    selector(out, &l.selector);
    for stage in &l.pipeline {
        out.push(' ');
        self::stage(out, stage);
    }
}

fn number(out: &mut String, v: f64) {
    let _ = write!(out, "{v}");
}

fn pairs(out: &mut String, items: &[(String, String)]) {
    for (i, (name, value)) in items.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(name);
        out.push('=');
        quote(out, value);
    }
}

fn names_or_matchers(out: &mut String, items: &[NameOrMatcher]) {
    for (i, item) in items.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        match item {
            NameOrMatcher::Name(n) => out.push_str(n),
            NameOrMatcher::Matcher(m) => matcher(out, m),
        }
    }
}

fn stage(out: &mut String, stage: &Stage) {
    match stage {
        Stage::LineFilter { op, values } => {
            out.push_str(match op {
                LineFilterOp::Contains => "|=",
                LineFilterOp::NotContains => "!=",
                LineFilterOp::Matches => "|~",
                LineFilterOp::NotMatches => "!~",
                LineFilterOp::Pattern => "|>",
                LineFilterOp::NotPattern => "!>",
            });
            for (i, v) in values.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { " or " });
                match v {
                    LineFilterValue::Text(t) => quote(out, t),
                    LineFilterValue::Ip(p) => {
                        out.push_str("ip(");
                        quote(out, p);
                        out.push(')');
                    }
                }
            }
        }
        Stage::Json(params) => {
            out.push_str("| json");
            pairs(out, params);
        }
        Stage::Logfmt {
            strict,
            keep_empty,
            params,
        } => {
            out.push_str("| logfmt");
            if *strict {
                out.push_str(" --strict");
            }
            if *keep_empty {
                out.push_str(" --keep-empty");
            }
            pairs(out, params);
        }
        Stage::Regexp(re) => {
            out.push_str("| regexp ");
            quote(out, re);
        }
        Stage::Pattern(p) => {
            out.push_str("| pattern ");
            quote(out, p);
        }
        Stage::Unpack => out.push_str("| unpack"),
        Stage::LabelFilter(f) => {
            out.push_str("| ");
            label_filter(out, f, false);
        }
        Stage::LineFormat(t) => {
            out.push_str("| line_format ");
            quote(out, t);
        }
        Stage::LabelFormat(items) => {
            out.push_str("| label_format");
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                match item {
                    LabelFormat::Rename { dst, src } => {
                        let _ = write!(out, "{dst}={src}");
                    }
                    LabelFormat::Template { dst, template } => {
                        out.push_str(dst);
                        out.push('=');
                        quote(out, template);
                    }
                }
            }
        }
        Stage::Drop(items) => {
            out.push_str("| drop");
            names_or_matchers(out, items);
        }
        Stage::Keep(items) => {
            out.push_str("| keep");
            names_or_matchers(out, items);
        }
        Stage::Decolorize => out.push_str("| decolorize"),
    }
}

/// A label filter; `in_and`: an `or` there needs parentheses.
fn label_filter(out: &mut String, f: &LabelFilter, in_and: bool) {
    match f {
        LabelFilter::Or(a, b) => {
            if in_and {
                out.push('(');
            }
            label_filter(out, a, false);
            out.push_str(" or ");
            label_filter(out, b, false);
            if in_and {
                out.push(')');
            }
        }
        LabelFilter::And(a, b) => {
            label_filter(out, a, true);
            out.push_str(" and ");
            label_filter(out, b, true);
        }
        LabelFilter::String(m) => matcher(out, m),
        LabelFilter::Compare { name, op, value } => {
            out.push_str(name);
            out.push_str(match op {
                CompareOp::Eq => " == ",
                CompareOp::Ne => " != ",
                CompareOp::Gt => " > ",
                CompareOp::Ge => " >= ",
                CompareOp::Lt => " < ",
                CompareOp::Le => " <= ",
            });
            match value {
                CompareValue::Number(n) => number(out, *n),
                CompareValue::Duration(secs) => {
                    number(out, *secs);
                    out.push('s');
                }
                CompareValue::Bytes(b) => {
                    let _ = write!(out, "{b}B");
                }
            }
        }
        LabelFilter::Ip {
            name,
            negated,
            pattern,
        } => {
            out.push_str(name);
            out.push_str(if *negated { " != ip(" } else { " = ip(" });
            quote(out, pattern);
            out.push(')');
        }
    }
}

fn duration(out: &mut String, ms: i64) {
    out.push_str(&crate::model::format_duration_ms(ms));
}

fn grouping(out: &mut String, g: &Grouping) {
    let (word, names) = match g {
        Grouping::By(n) => ("by", n),
        Grouping::Without(n) => ("without", n),
    };
    let _ = write!(out, "{word} ({})", names.join(", "));
}

fn range_op_name(op: RangeOp) -> &'static str {
    match op {
        RangeOp::Rate => "rate",
        RangeOp::RateCounter => "rate_counter",
        RangeOp::CountOverTime => "count_over_time",
        RangeOp::BytesRate => "bytes_rate",
        RangeOp::BytesOverTime => "bytes_over_time",
        RangeOp::AbsentOverTime => "absent_over_time",
        RangeOp::SumOverTime => "sum_over_time",
        RangeOp::AvgOverTime => "avg_over_time",
        RangeOp::MaxOverTime => "max_over_time",
        RangeOp::MinOverTime => "min_over_time",
        RangeOp::FirstOverTime => "first_over_time",
        RangeOp::LastOverTime => "last_over_time",
        RangeOp::StdvarOverTime => "stdvar_over_time",
        RangeOp::StddevOverTime => "stddev_over_time",
        RangeOp::QuantileOverTime => "quantile_over_time",
    }
}

fn vector_op_name(op: VectorOp) -> &'static str {
    match op {
        VectorOp::Sum => "sum",
        VectorOp::Avg => "avg",
        VectorOp::Min => "min",
        VectorOp::Max => "max",
        VectorOp::Count => "count",
        VectorOp::Stddev => "stddev",
        VectorOp::Stdvar => "stdvar",
        VectorOp::Topk => "topk",
        VectorOp::Bottomk => "bottomk",
        VectorOp::Sort => "sort",
        VectorOp::SortDesc => "sort_desc",
    }
}

fn binary_op_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Or => "or",
        BinaryOp::And => "and",
        BinaryOp::Unless => "unless",
        BinaryOp::Eq => "==",
        BinaryOp::Ne => "!=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Mod => "%",
        BinaryOp::Pow => "^",
    }
}

fn unwrap(out: &mut String, u: &Unwrap) {
    out.push_str(" | unwrap ");
    match u.conversion {
        Conversion::Number => out.push_str(&u.label),
        Conversion::Duration => {
            let _ = write!(out, "duration({})", u.label);
        }
        Conversion::DurationSeconds => {
            let _ = write!(out, "duration_seconds({})", u.label);
        }
        Conversion::Bytes => {
            let _ = write!(out, "bytes({})", u.label);
        }
    }
    for f in &u.post_filters {
        out.push_str(" | ");
        label_filter(out, f, false);
    }
}

/// A binary operand: in parentheses when it is itself a binary operation.
fn operand(out: &mut String, m: &MetricExpr) {
    if matches!(m, MetricExpr::Binary { .. }) {
        out.push('(');
        metric(out, m);
        out.push(')');
    } else {
        metric(out, m);
    }
}

fn metric(out: &mut String, m: &MetricExpr) {
    match m {
        MetricExpr::Range {
            op,
            param,
            range,
            grouping: g,
        } => {
            out.push_str(range_op_name(*op));
            out.push('(');
            if let Some(p) = param {
                number(out, *p);
                out.push_str(", ");
            }
            log_expr(out, &range.log);
            if let Some(u) = &range.unwrap {
                unwrap(out, u);
            }
            out.push_str(" [");
            duration(out, range.range_ms);
            out.push(']');
            if range.offset_ms != 0 {
                out.push_str(" offset ");
                duration(out, range.offset_ms);
            }
            out.push(')');
            if let Some(g) = g {
                out.push(' ');
                grouping(out, g);
            }
        }
        MetricExpr::Vector {
            op,
            param,
            grouping: g,
            expr,
        } => {
            out.push_str(vector_op_name(*op));
            if let Some(g) = g {
                out.push(' ');
                grouping(out, g);
                out.push(' ');
            }
            out.push('(');
            if let Some(p) = param {
                number(out, *p);
                out.push_str(", ");
            }
            metric(out, expr);
            out.push(')');
        }
        MetricExpr::Binary {
            op,
            return_bool,
            matching,
            lhs,
            rhs,
        } => {
            operand(out, lhs);
            out.push(' ');
            out.push_str(binary_op_name(*op));
            if *return_bool {
                out.push_str(" bool");
            }
            if let Some((on, names)) = &matching.on {
                let _ = write!(
                    out,
                    " {} ({})",
                    if *on { "on" } else { "ignoring" },
                    names.join(", ")
                );
            }
            if let Some((left, names)) = &matching.group {
                let _ = write!(out, " {}", if *left { "group_left" } else { "group_right" });
                if !names.is_empty() {
                    let _ = write!(out, " ({})", names.join(", "));
                }
            }
            out.push(' ');
            operand(out, rhs);
        }
        MetricExpr::Literal(v) => number(out, *v),
        MetricExpr::Vector1(v) => {
            out.push_str("vector(");
            number(out, *v);
            out.push(')');
        }
        MetricExpr::LabelReplace {
            expr,
            dst,
            replacement,
            src,
            regex,
        } => {
            out.push_str("label_replace(");
            metric(out, expr);
            for s in [dst, replacement, src, regex] {
                out.push_str(", ");
                quote(out, s);
            }
            out.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::logql::parse;

    /// Every query of the golden cases and the fuzz seeds formats to a line that
    /// parses to the same tree, and formatting that line changes nothing.
    #[test]
    fn formatting_round_trips_every_known_query() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut queries: Vec<String> = Vec::new();
        for file in [
            "tests/logql/log_queries.txt",
            "tests/logql/metric_queries.txt",
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            for line in text.lines() {
                let q = if let Some(mut q) = line.strip_prefix("log ") {
                    // Past the direction and the limit.
                    while let Some((w, rest)) = q.split_once(' ')
                        && (w == "forward" || w == "backward" || w.starts_with("limit="))
                    {
                        q = rest;
                    }
                    q
                } else if let Some(q) = line.strip_prefix("instant ") {
                    q.split_once(' ').map_or("", |(_, r)| r)
                } else if let Some(q) = line.strip_prefix("range ") {
                    q.splitn(4, ' ').nth(3).unwrap_or("")
                } else {
                    continue;
                };
                queries.push(q.to_string());
            }
        }
        for e in std::fs::read_dir(root.join("fuzz/seeds/logql_parse")).unwrap() {
            queries.push(
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .trim()
                    .to_string(),
            );
        }
        assert!(queries.len() > 80, "{}", queries.len());
        for q in queries {
            let Ok(tree) = parse(&q) else { continue };
            let line = format(&tree);
            let again = parse(&line).unwrap_or_else(|e| panic!("{q}\n  → {line}\n  {e}"));
            assert_eq!(again, tree, "{q}\n  → {line}");
            assert_eq!(format(&again), line);
        }
    }

    #[test]
    fn a_query_is_written_canonically() {
        let f = |q: &str| format(&parse(q).unwrap());
        assert_eq!(
            f("sum   by(app)(rate({app=\"a\",env=~`p.*`}|=\"x\"|json|  status>=500 [5m]))"),
            r#"sum by (app) (rate({app="a", env=~"p.*"} |= "x" | json | status >= 500 [5m]))"#
        );
        assert_eq!(f("1+2*3"), "1 + (2 * 3)");
        assert_eq!(
            f("{a=\"b\"} | line_format \"{{.x}}\\n\" | label_format y=z"),
            "{a=\"b\"} | line_format \"{{.x}}\\n\" | label_format y=z"
        );
    }
}
