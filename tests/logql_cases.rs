//! LogQL golden cases: every file under `tests/logql/` is run through ODIN's LogQL
//! (parser, pipeline, log query runner, metric evaluator) and every answer compared.
//!
//! The format, one directive per paragraph (paragraphs end at a blank line; `#`
//! starts a comment line):
//!
//! ```text
//! stream {app="api"}          a stream, then its lines: `<seconds> <text>`
//! 10 level=info msg=hi        (`\e` in a text is the ESC character)
//!
//! log [forward|backward] [limit=N] <query>
//! {app="api", level="info"} 10 level=info msg=hi     lines in reading order
//!
//! instant <seconds> <query>
//! {app="api"} 2               the vector (by labels; as answered for sort/sort_desc)
//! scalar 7                    or a scalar
//!
//! range <start> <end> <step> <query>
//! {app="api"} 20:2 30:2 40:1  each series' points
//!
//! error <query> ~ <text>      the query fails, its error containing <text>
//! ```
//! Log queries read all of time (`[0, 10^6)` seconds), an `error` case's metric
//! query is evaluated at 40 s; values compare within 1e-9 relative.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use odin::log::record::LogLine;
use odin::logs::logql::ast::{Expr, VectorOp};
use odin::logs::logql::parse;
use odin::logs::logql::pipeline::Pipeline;
use odin::logs::metric::{Context, Evaluated, Steps, evaluate};
use odin::logs::query::{self, Direction, LogRange};
use odin::logs::store::Selected;
use odin::model::{Labels, Matcher};

const S: i64 = 1_000_000_000;

fn labels_text(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn parse_stream(line: &str) -> Labels {
    let pairs = odin::logs::push::parse_labels(line.trim())
        .unwrap_or_else(|e| panic!("stream {line}: {e}"));
    Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

struct Data {
    streams: Vec<(Labels, Vec<LogLine>)>,
}

impl Data {
    fn select(&self, matchers: &[Matcher], lo: i64, hi: i64) -> Vec<Selected> {
        let mut out: Vec<Selected> = self
            .streams
            .iter()
            .filter(|(l, _)| {
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            })
            .map(|(l, lines)| Selected {
                labels: l.clone(),
                chunks: vec![Arc::from(
                    lines
                        .iter()
                        .filter(|x| x.ts_ns >= lo && x.ts_ns < hi)
                        .cloned()
                        .collect::<Vec<_>>(),
                )],
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// A metric result as the case format writes it.
fn vector_lines(v: &Evaluated, sorting: Option<bool>) -> Vec<(String, f64)> {
    match v {
        Evaluated::Scalar(x) => vec![("scalar".into(), *x)],
        Evaluated::Vector(series) => {
            let mut out: Vec<(String, f64)> = series
                .iter()
                .filter_map(|s| s.points[0].map(|p| (labels_text(&s.labels), p)))
                .collect();
            match sorting {
                Some(false) => out.sort_by(|a, b| a.1.total_cmp(&b.1)),
                Some(true) => out.sort_by(|a, b| b.1.total_cmp(&a.1)),
                None => {}
            }
            out
        }
    }
}

fn run_metric(data: &Data, query: &str, steps: Steps) -> Result<Evaluated, String> {
    let Expr::Metric(expr) = parse(query).map_err(|e| e.to_string())? else {
        return Err("not a metric query".into());
    };
    let select = |m: &[Matcher], lo: i64, hi: i64, _: &[String]| Ok(data.select(m, lo, hi));
    let ctx = Context {
        select: &select,
        keep_going: &|| Ok(()),
        max_points: 10_000_000,
        processed: Default::default(),
    };
    evaluate(&expr, &steps, &ctx).map_err(|e| e.to_string())
}

fn run_log(
    data: &Data,
    query: &str,
    direction: Direction,
    limit: usize,
) -> Result<Vec<String>, String> {
    let Expr::Log(expr) = parse(query).map_err(|e| e.to_string())? else {
        return Err("not a log query".into());
    };
    let pipeline = Pipeline::new(&expr.pipeline)?;
    let range = LogRange {
        start_ns: 0,
        end_ns: 1_000_000 * S,
        limit,
        direction,
    };
    let selected = data.select(&expr.selector, range.start_ns, range.end_ns);
    let (streams, _) =
        query::run::<()>(&pipeline, selected, &range, 0, || Ok(())).map_err(|_| "stopped")?;
    let mut flat: Vec<(i64, String, String)> = streams
        .iter()
        .flat_map(|s| {
            s.entries
                .iter()
                .map(|(t, l)| (*t, labels_text(&s.labels), l.clone()))
        })
        .collect();
    flat.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    if direction == Direction::Backward {
        flat.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    }
    Ok(flat
        .into_iter()
        .map(|(t, l, text)| format!("{l} {} {text}", t / S))
        .collect())
}

fn unescape(text: &str) -> String {
    text.replace("\\e", "\u{1b}")
}

fn run_file(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut data = Data {
        streams: Vec::new(),
    };
    let mut failures = Vec::new();
    let paragraphs: Vec<Vec<&str>> = text
        .split("\n\n")
        .map(|p| {
            p.lines()
                .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    for p in paragraphs {
        let (head, body) = (p[0], &p[1..]);
        let (directive, rest) = head.split_once(' ').unwrap_or((head, ""));
        let case = format!("{}: {head}", path.display());
        match directive {
            "stream" => {
                let labels = parse_stream(rest);
                let lines = body
                    .iter()
                    .map(|l| {
                        let (t, text) = l.split_once(' ').unwrap_or((l, ""));
                        LogLine {
                            ts_ns: t.parse::<i64>().unwrap_or_else(|_| panic!("{case}: {l}")) * S,
                            text: unescape(text),
                            metadata: Vec::new(),
                        }
                    })
                    .collect();
                data.streams.push((labels, lines));
            }
            "log" => {
                let mut words = rest;
                let mut direction = Direction::Forward;
                let mut limit = 1000;
                loop {
                    let (w, r) = words.split_once(' ').unwrap_or((words, ""));
                    match w {
                        "forward" => direction = Direction::Forward,
                        "backward" => direction = Direction::Backward,
                        _ if w.starts_with("limit=") => limit = w[6..].parse().unwrap(),
                        _ => break,
                    }
                    words = r;
                }
                let want: Vec<String> = body.iter().map(|l| unescape(l)).collect();
                match run_log(&data, words, direction, limit) {
                    Ok(got) if got == want => {}
                    Ok(got) => failures.push(format!("{case}\n  want {want:#?}\n  got  {got:#?}")),
                    Err(e) => failures.push(format!("{case}\n  error: {e}")),
                }
            }
            "instant" => {
                let (t, q) = rest.split_once(' ').unwrap();
                let t: i64 = t.parse().unwrap();
                let sorting = match parse(q) {
                    Ok(Expr::Metric(odin::logs::logql::ast::MetricExpr::Vector {
                        op: VectorOp::Sort,
                        ..
                    })) => Some(false),
                    Ok(Expr::Metric(odin::logs::logql::ast::MetricExpr::Vector {
                        op: VectorOp::SortDesc,
                        ..
                    })) => Some(true),
                    _ => None,
                };
                let want: Vec<(String, f64)> = body
                    .iter()
                    .map(|l| {
                        let (labels, v) = l.rsplit_once(' ').unwrap();
                        (
                            labels.to_string(),
                            v.parse().unwrap_or_else(|_| panic!("{case}: {l}")),
                        )
                    })
                    .collect();
                match run_metric(&data, q, Steps::instant(t * S)) {
                    Ok(v) => {
                        let got = vector_lines(&v, sorting);
                        let same = got.len() == want.len()
                            && got
                                .iter()
                                .zip(&want)
                                .all(|(g, w)| g.0 == w.0 && close(g.1, w.1));
                        if !same {
                            failures.push(format!("{case}\n  want {want:?}\n  got  {got:?}"));
                        }
                    }
                    Err(e) => failures.push(format!("{case}\n  error: {e}")),
                }
            }
            "range" => {
                let mut it = rest.splitn(4, ' ');
                let (a, b, c, q) = (
                    it.next().unwrap(),
                    it.next().unwrap(),
                    it.next().unwrap(),
                    it.next().unwrap(),
                );
                let steps = Steps {
                    start_ns: a.parse::<i64>().unwrap() * S,
                    end_ns: b.parse::<i64>().unwrap() * S,
                    step_ns: c.parse::<i64>().unwrap() * S,
                };
                let want: Vec<String> = body.iter().map(|l| l.to_string()).collect();
                match run_metric(&data, q, steps) {
                    Ok(Evaluated::Vector(series)) => {
                        let got: Vec<String> = series
                            .iter()
                            .map(|s| {
                                let points: Vec<String> = s
                                    .points
                                    .iter()
                                    .enumerate()
                                    .filter_map(|(i, p)| {
                                        p.map(|v| format!("{}:{v}", steps.at(i) / S))
                                    })
                                    .collect();
                                format!("{} {}", labels_text(&s.labels), points.join(" "))
                            })
                            .collect();
                        if got != want {
                            failures.push(format!("{case}\n  want {want:#?}\n  got  {got:#?}"));
                        }
                    }
                    Ok(other) => failures.push(format!("{case}\n  not a vector: {other:?}")),
                    Err(e) => failures.push(format!("{case}\n  error: {e}")),
                }
            }
            "error" => {
                let (q, want) = rest.split_once(" ~ ").unwrap_or((rest, ""));
                let outcome = match parse(q) {
                    Err(e) => Err(e.to_string()),
                    Ok(Expr::Log(_)) => run_log(&data, q, Direction::Forward, 100).map(|_| ()),
                    Ok(Expr::Metric(_)) => run_metric(&data, q, Steps::instant(40 * S)).map(|_| ()),
                };
                match outcome {
                    Err(e) if e.contains(want) => {}
                    Err(e) => failures.push(format!("{case}\n  error {e:?} lacks {want:?}")),
                    Ok(()) => failures.push(format!("{case}\n  did not fail")),
                }
            }
            other => failures.push(format!("{case}: unknown directive {other:?}")),
        }
    }
    failures
}

#[test]
fn logql_golden_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/logql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let failures: Vec<String> = files.iter().flat_map(|f| run_file(f)).collect();
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
