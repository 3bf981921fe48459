//! Running a LogQL log query: the selected streams' lines in the query's range, in
//! the query's direction, through the pipeline, up to its limit, then grouped into
//! streams by the labels the pipeline left them (Loki's `streams` result).
//!
//! Order, as Loki: `forward` oldest first, `backward` newest first; lines of one
//! stream with the same time keep the order they were pushed in (reversed going
//! backward); lines of different streams with the same time go by the streams'
//! labels. The limit counts lines that passed the pipeline, across all streams.
//!
//! A line pushed twice (the same time and text in one stream, as a client's retry
//! of a whole batch sends it) is read once, here and by metric queries
//! ([`time_order`]), as Loki's queriers merge its entries.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::sync::Arc;

use crate::log::record::LogLine;
use crate::logs::logql::ast::{LineFilterOp, LineFilterValue, Stage};
use crate::logs::logql::pipeline::Pipeline;
use crate::logs::store::Selected;

/// A line's labels after the pipeline, sorted by name.
pub type LabelPairs = Vec<(String, String)>;

/// Which end of the range a query reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A log query's range and limit.
#[derive(Debug, Clone, Copy)]
pub struct LogRange {
    /// Inclusive.
    pub start_ns: i64,
    /// Exclusive.
    pub end_ns: i64,
    pub limit: usize,
    pub direction: Direction,
}

/// One stream of the answer: its labels after the pipeline, its lines in the
/// query's direction.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamResult {
    pub labels: LabelPairs,
    pub entries: Vec<(i64, String)>,
}

/// What a query read, for the answer's statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadStats {
    pub lines_processed: u64,
    pub bytes_processed: u64,
    pub structured_metadata_bytes: u64,
    pub lines_returned: u64,
}

/// A stream's lines in the range, sorted for the direction.
struct Cursor {
    stream: Vec<(String, String)>,
    lines: Vec<Arc<[LogLine]>>,
    /// (chunk, line) of each line in the range, in reading order.
    order: Vec<(u32, u32)>,
    next: usize,
}

impl Cursor {
    fn new(selected: Selected, range: &LogRange) -> Cursor {
        let mut order = time_order(&selected.chunks, range.start_ns, range.end_ns);
        let lines = selected.chunks;
        if range.direction == Direction::Backward {
            order.reverse();
        }
        Cursor {
            stream: selected
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            lines,
            order,
            next: 0,
        }
    }

    fn peek(&self) -> Option<&LogLine> {
        let &(c, i) = self.order.get(self.next)?;
        Some(&self.lines[c as usize][i as usize])
    }

    /// Moves past the lines the pipeline's leading line filters drop, counting them
    /// as read: only lines that may be returned enter the merge.
    fn skip_filtered(&mut self, pipeline: &Pipeline, stats: &mut ReadStats) {
        while let Some(line) = self.peek() {
            if pipeline.keeps_line(&line.text) {
                return;
            }
            stats.count(line);
            self.next += 1;
        }
    }
}

/// The (chunk, line) positions of a stream's lines in `[lo, hi)`, oldest first;
/// lines of equal time in the order they were applied, each time and text once
/// (a retried push's copies dropped).
pub fn time_order(chunks: &[Arc<[LogLine]>], lo: i64, hi: i64) -> Vec<(u32, u32)> {
    let at = |&(c, i): &(u32, u32)| &chunks[c as usize][i as usize];
    let mut order = Vec::new();
    for (c, chunk) in chunks.iter().enumerate() {
        for (i, line) in chunk.iter().enumerate() {
            if line.ts_ns >= lo && line.ts_ns < hi {
                order.push((c as u32, i as u32));
            }
        }
    }
    // Stable, and nearly free on the usual in-order stream.
    if !order.is_sorted_by_key(|p| at(p).ts_ns) {
        order.sort_by_key(|p| at(p).ts_ns);
    }
    // Copies share a time: compare within each run of equal times, which is one
    // line long on most streams (a set for a long one).
    let mut unique = Vec::with_capacity(order.len());
    let mut run_start = 0;
    let mut long_run: Option<HashSet<&str>> = None;
    for p in order {
        let line = at(&p);
        if unique
            .get(run_start)
            .is_none_or(|q| at(q).ts_ns != line.ts_ns)
        {
            run_start = unique.len();
            long_run = None;
        }
        let run = &unique[run_start..];
        let copy = match &mut long_run {
            Some(seen) => !seen.insert(line.text.as_str()),
            None if run.len() < 16 => run.iter().any(|q| at(q).text == line.text),
            None => {
                let mut seen: HashSet<&str> = run.iter().map(|q| at(q).text.as_str()).collect();
                let copy = !seen.insert(line.text.as_str());
                long_run = Some(seen);
                copy
            }
        };
        if !copy {
            unique.push(p);
        }
    }
    unique
}

impl ReadStats {
    /// One line read.
    fn count(&mut self, line: &LogLine) {
        self.lines_processed += 1;
        self.bytes_processed += line.text.len() as u64;
        self.structured_metadata_bytes += pairs_bytes(&line.metadata) as u64;
    }
}

/// Runs `pipeline` over `selected` (the streams a query's selector chose, sorted by
/// labels) within `range`. `keep_going` is asked now and then whether to go on (a
/// deadline, a canceled request); its error ends the query.
/// With `interval_ns` above 0, a line is returned only `interval_ns` or more after
/// (before, going backward) the last one returned, as Loki's `interval`.
pub fn run<E: From<AnswerTooLarge>>(
    pipeline: &Pipeline,
    selected: Vec<Selected>,
    range: &LogRange,
    interval_ns: i64,
    mut keep_going: impl FnMut() -> Result<(), E>,
) -> Result<(Vec<StreamResult>, ReadStats), E> {
    let mut cursors: Vec<Cursor> = selected
        .into_iter()
        .map(|s| Cursor::new(s, range))
        .filter(|c| !c.order.is_empty())
        .collect();
    let mut stats = ReadStats::default();
    // The next line of every stream that passes the line filters, ordered for the
    // direction; ties by stream (the streams came sorted by labels).
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        c.skip_filtered(pipeline, &mut stats);
        keep_going()?;
        if let Some(l) = c.peek() {
            heap.push(Reverse((order_key(range.direction, l.ts_ns), i)));
        }
    }
    let mut out: BTreeMap<LabelPairs, Vec<(i64, String)>> = BTreeMap::new();
    let mut returned = 0usize;
    let mut answer_bytes = 0usize;
    let mut last_returned: Option<i64> = None;
    while returned < range.limit {
        let Some(Reverse((_, i))) = heap.pop() else {
            break;
        };
        let cursor = &mut cursors[i];
        let Some(line) = cursor.peek() else {
            continue;
        };
        stats.count(line);
        if stats.lines_processed % 4096 == 0 {
            keep_going()?;
        }
        let thinned = interval_ns > 0
            && last_returned.is_some_and(|last: i64| match range.direction {
                Direction::Forward => line.ts_ns < last.saturating_add(interval_ns),
                Direction::Backward => line.ts_ns > last.saturating_sub(interval_ns),
            });
        if !thinned
            && let Some((labels, text)) =
                pipeline.process(line.ts_ns, &cursor.stream, &line.metadata, &line.text)
        {
            // `line_format` and `label_format` may make each line megabytes long.
            answer_bytes += text.len();
            let entries = match out.get_mut(&labels) {
                Some(entries) => entries,
                None => {
                    answer_bytes += pairs_bytes(&labels);
                    out.entry(labels).or_default()
                }
            };
            if answer_bytes > MAX_ANSWER_BYTES {
                return Err(E::from(AnswerTooLarge));
            }
            entries.push((line.ts_ns, text));
            returned += 1;
            last_returned = Some(line.ts_ns);
        }
        cursor.next += 1;
        let before = stats.lines_processed;
        cursor.skip_filtered(pipeline, &mut stats);
        // A long run of dropped lines still lets the deadline be checked.
        if stats.lines_processed / 4096 != before / 4096 {
            keep_going()?;
        }
        if let Some(l) = cursor.peek() {
            heap.push(Reverse((order_key(range.direction, l.ts_ns), i)));
        }
    }
    stats.lines_returned = returned as u64;
    let streams = out
        .into_iter()
        .map(|(labels, entries)| StreamResult { labels, entries })
        .collect();
    Ok((streams, stats))
}

/// The bytes of names and values of label pairs (or structured metadata).
pub fn pairs_bytes(pairs: &[(String, String)]) -> usize {
    pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Bytes of text and labels one log query's answer may hold, as Loki's queriers
/// refuse an answer past their gRPC message size (100 MB). Lines are at most
/// 256 KiB when pushed, but `line_format` and `label_format` can make each of a
/// query's 5,000 lines 16 MiB.
pub const MAX_ANSWER_BYTES: usize = 100 << 20;

/// A log query's answer would pass [`MAX_ANSWER_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the answer is larger than {} MiB: lower the limit, narrow the query, or shorten what line_format and label_format build", MAX_ANSWER_BYTES >> 20)]
pub struct AnswerTooLarge;

/// For callers that only want lines, and none past the bound.
impl From<AnswerTooLarge> for () {
    fn from(_: AnswerTooLarge) {}
}

/// Substrings every line a pipeline lets through contains: the texts of its `|=`
/// filters (those without `or`) before any stage that rewrites the line. Storage may
/// use them to skip lines (the segments' index); the pipeline still filters.
pub fn needles(stages: &[Stage]) -> Vec<String> {
    let mut out = Vec::new();
    for stage in stages {
        match stage {
            Stage::LineFilter {
                op: LineFilterOp::Contains,
                values,
            } => {
                if let [LineFilterValue::Text(t)] = values.as_slice() {
                    out.push(t.clone());
                }
            }
            Stage::LineFormat(_) | Stage::Decolorize => break,
            _ => {}
        }
    }
    out
}

/// A line's place in reading order: ascending going forward, descending going
/// backward.
fn order_key(direction: Direction, ts_ns: i64) -> i64 {
    match direction {
        Direction::Forward => ts_ns,
        // `!ts` reverses the order without overflow at i64::MIN.
        Direction::Backward => !ts_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::logql::ast::Expr;
    use crate::logs::logql::parser::parse;
    use crate::model::Labels;

    fn selected(labels: &[(&str, &str)], lines: &[(i64, &str)]) -> Selected {
        let lines: Vec<LogLine> = lines
            .iter()
            .map(|&(ts_ns, t)| LogLine {
                ts_ns,
                text: t.into(),
                metadata: Vec::new(),
            })
            .collect();
        Selected {
            labels: Labels::from_pairs(labels.iter().copied()),
            // Two chunks, the second holding earlier lines: the order comes from the
            // times, not the chunks.
            chunks: vec![lines[1..].to_vec().into(), lines[..1].to_vec().into()],
        }
    }

    fn query(q: &str, direction: Direction, limit: usize) -> Vec<StreamResult> {
        let Expr::Log(expr) = parse(q).unwrap() else {
            panic!("not a log query")
        };
        let sel = vec![
            selected(
                &[("app", "a")],
                &[(30, "a3 err"), (10, "a1"), (20, "a2 err"), (20, "a2b")],
            ),
            selected(&[("app", "b")], &[(20, "b2 err"), (40, "b4")]),
        ]
        .into_iter()
        .filter(|s| {
            expr.selector
                .iter()
                .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
        })
        .collect();
        let range = LogRange {
            start_ns: 10,
            end_ns: 40,
            limit,
            direction,
        };
        let pipeline = Pipeline::new(&expr.pipeline).unwrap();
        run::<()>(&pipeline, sel, &range, 0, || Ok(())).unwrap().0
    }

    fn flat(r: &[StreamResult]) -> Vec<(String, i64, String)> {
        let mut out: Vec<_> = r
            .iter()
            .flat_map(|s| {
                s.entries
                    .iter()
                    .map(|(t, l)| (s.labels[0].1.clone(), *t, l.clone()))
            })
            .collect();
        out.sort_by_key(|e| e.1);
        out
    }

    #[test]
    fn lines_come_in_the_direction_up_to_the_limit() {
        // Forward: the oldest three; the end is exclusive (b4 at 40 is out).
        let r = query("{app=~\".+\"}", Direction::Forward, 3);
        // At 20 both streams have lines: a's (labels first) come first.
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].entries,
            [
                (10, "a1".to_string()),
                (20, "a2 err".to_string()),
                (20, "a2b".to_string())
            ]
        );
        // Backward: the newest first, a stream's equal times reversed.
        let r = query("{app=~\".+\"}", Direction::Backward, 3);
        assert_eq!(
            r[0].entries,
            [
                (30, "a3 err".to_string()),
                (20, "a2b".to_string()),
                (20, "a2 err".to_string())
            ]
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_limit_counts_lines_that_pass_the_pipeline() {
        let r = query("{app=~\".+\"} |= \"err\"", Direction::Forward, 2);
        assert_eq!(
            flat(&r),
            [
                ("a".into(), 20, "a2 err".into()),
                ("b".into(), 20, "b2 err".into())
            ]
        );
        // A parser's labels make streams of their own.
        let r = query(
            "{app=\"a\"} | regexp \"(?P<n>a\\\\d)\"",
            Direction::Forward,
            10,
        );
        let names: Vec<_> = r.iter().map(|s| s.labels[1].1.clone()).collect();
        assert_eq!(names, ["a1", "a2", "a3"]);
    }

    #[test]
    fn a_line_pushed_twice_is_read_once() {
        let line = |ts_ns: i64, text: &str| LogLine {
            ts_ns,
            text: text.into(),
            metadata: Vec::new(),
        };
        // A batch (1, 2, 3 with two lines at 3), then the same batch again, in a
        // later chunk; lines of equal time but other text stay.
        let batch = [line(1, "a"), line(2, "b"), line(3, "c"), line(3, "d")];
        let chunks: Vec<Arc<[LogLine]>> = vec![
            batch.to_vec().into(),
            [batch.to_vec(), vec![line(3, "e"), line(4, "a")]]
                .concat()
                .into(),
        ];
        let texts = |order: Vec<(u32, u32)>| -> Vec<(i64, String)> {
            order
                .into_iter()
                .map(|(c, i)| {
                    let l = &chunks[c as usize][i as usize];
                    (l.ts_ns, l.text.clone())
                })
                .collect()
        };
        assert_eq!(
            texts(time_order(&chunks, 0, 10)),
            [
                (1, "a".to_string()),
                (2, "b".into()),
                (3, "c".into()),
                (3, "d".into()),
                (3, "e".into()),
                (4, "a".into())
            ]
        );
        assert_eq!(
            texts(time_order(&chunks, 2, 4)),
            [
                (2, "b".to_string()),
                (3, "c".into()),
                (3, "d".into()),
                (3, "e".into())
            ]
        );
        // A long run of one time (past the pairwise check) keeps each text once,
        // in the order applied.
        let run: Vec<LogLine> = (0..100).map(|i| line(7, &format!("{}", i % 40))).collect();
        let chunks: Vec<Arc<[LogLine]>> = vec![run.into()];
        let order = time_order(&chunks, 0, 10);
        let kept: Vec<String> = order
            .iter()
            .map(|&(c, i)| chunks[c as usize][i as usize].text.clone())
            .collect();
        assert_eq!(kept, (0..40).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn an_answer_past_its_bound_is_refused() {
        let texts: Vec<String> = (0..8).map(|i| format!("x{i}")).collect();
        let lines: Vec<(i64, &str)> = (0..8)
            .map(|i| (10 + i, texts[i as usize].as_str()))
            .collect();
        let range = LogRange {
            start_ns: 0,
            end_ns: 100,
            limit: 100,
            direction: Direction::Forward,
        };
        let run_query = |q: &str| {
            let Expr::Log(expr) = parse(q).unwrap() else {
                panic!("not a log query")
            };
            let pipeline = Pipeline::new(&expr.pipeline).unwrap();
            let sel = vec![selected(&[("app", "a")], &lines)];
            run::<AnswerTooLarge>(&pipeline, sel, &range, 0, || Ok(()))
        };
        // 8 lines of 14 MB: 112 MB, as text or as 8 label sets.
        let big = run_query(r#"{app="a"} | line_format "{{ repeat 7000000 __line__ }}""#);
        assert!(matches!(big, Err(AnswerTooLarge)));
        let big = run_query(r#"{app="a"} | label_format x="{{ repeat 7000000 __line__ }}""#);
        assert!(matches!(big, Err(AnswerTooLarge)));
        let fine = run_query(r#"{app="a"} | line_format "{{ repeat 1000 __line__ }}""#);
        assert!(matches!(fine, Ok((r, _)) if r[0].entries.len() == 8));
    }
}
