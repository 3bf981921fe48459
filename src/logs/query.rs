//! Running a LogQL log query: the selected streams' lines in the query's range, in
//! the query's direction, through the pipeline, up to its limit, then grouped into
//! streams by the labels the pipeline left them (Loki's `streams` result).
//!
//! Order, as Loki: `forward` oldest first, `backward` newest first; lines of one
//! stream with the same time keep the order they were pushed in (reversed going
//! backward); lines of different streams with the same time go by the streams'
//! labels. The limit counts lines that passed the pipeline, across all streams.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
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
        let mut order = Vec::new();
        for (c, chunk) in selected.chunks.iter().enumerate() {
            for (i, line) in chunk.iter().enumerate() {
                if line.ts_ns >= range.start_ns && line.ts_ns < range.end_ns {
                    order.push((c as u32, i as u32));
                }
            }
        }
        let lines = selected.chunks;
        // Stable: lines of equal time stay in the order they were applied.
        order.sort_by_key(|&(c, i)| lines[c as usize][i as usize].ts_ns);
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

impl ReadStats {
    /// One line read.
    fn count(&mut self, line: &LogLine) {
        self.lines_processed += 1;
        self.bytes_processed += line.text.len() as u64;
        self.structured_metadata_bytes += line
            .metadata
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum::<u64>();
    }
}

/// Runs `pipeline` over `selected` (the streams a query's selector chose, sorted by
/// labels) within `range`. `keep_going` is asked now and then whether to go on (a
/// deadline, a canceled request); its error ends the query.
/// With `interval_ns` above 0, a line is returned only `interval_ns` or more after
/// (before, going backward) the last one returned, as Loki's `interval`.
pub fn run<E>(
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
            out.entry(labels).or_default().push((line.ts_ns, text));
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
}
