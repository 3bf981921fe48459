//! ODIN's own PromQL cases: every `tests/promql/*.test` file, written in Prometheus's
//! PromQL test language and checked against Prometheus 2.42 when written, is run
//! against ODIN's engine over in-memory storage. Each instant eval also runs as a
//! range query around its time, which must agree with it (as Prometheus's own test
//! runner checks). Every file runs twice: over storage that offers only samples (the
//! engine loads them) and over storage that also offers chunks (the engine streams
//! them), as the TSDB does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use odin::promql::testlang::{self, Command, Eval};
use odin::promql::{CancelFlag, Engine, EngineOptions, Value};
use odin::storage::memory::MemoryStorage;
use odin::storage::{
    Appendable, ChunkData, ChunkQuerier, ChunkQueryable, ChunkSeries, ChunkSeriesSet, Querier,
    Queryable, SelectHints,
};

/// In-memory storage that also answers at chunk level (120 samples a chunk), so the
/// engine streams from it as it does from the TSDB.
struct Chunked {
    inner: MemoryStorage,
    chunks: bool,
}

impl Queryable for Chunked {
    fn querier(&self, min_t: i64, max_t: i64) -> odin::storage::Result<Box<dyn Querier>> {
        self.inner.querier(min_t, max_t)
    }

    fn as_chunk_queryable(&self) -> Option<&dyn ChunkQueryable> {
        self.chunks.then_some(self as &dyn ChunkQueryable)
    }
}

impl ChunkQueryable for Chunked {
    fn chunk_querier(
        &self,
        min_t: i64,
        max_t: i64,
    ) -> odin::storage::Result<Box<dyn ChunkQuerier>> {
        Ok(Box::new(ChunkedQuerier(self.inner.querier(min_t, max_t)?)))
    }
}

struct ChunkedQuerier(Box<dyn Querier>);

impl ChunkQuerier for ChunkedQuerier {
    fn select_chunks(
        &self,
        matchers: &[odin::model::Matcher],
    ) -> odin::storage::Result<ChunkSeriesSet> {
        let hints = SelectHints {
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            series_only: false,
            sorted: true,
        };
        let mut out = Vec::new();
        for s in self.0.select(&hints, matchers)? {
            let s = s?;
            let chunks = odin::tsdb::chunkenc::encode_chunks(&s.samples, 120)
                .into_iter()
                .map(|(min_t, max_t, c)| ChunkData {
                    min_t,
                    max_t,
                    bytes: c.bytes().to_vec().into(),
                })
                .collect();
            out.push(Ok(ChunkSeries {
                labels: s.labels,
                chunks,
            }));
        }
        Ok(Box::new(out.into_iter()))
    }
}

fn run_file(path: &Path, chunks: bool) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let file = testlang::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Over chunks, every query streams (as a large one does over the TSDB).
    let engine = Engine::new(EngineOptions {
        stream_above_samples: if chunks { 0 } else { usize::MAX },
        ..EngineOptions::default()
    });
    let cancel = CancelFlag::default();
    let mut storage = Chunked {
        inner: MemoryStorage::new(),
        chunks,
    };
    let mut evals = 0;
    let mut failures = Vec::new();
    for cmd in &file.commands {
        match cmd {
            Command::Clear => storage.inner = MemoryStorage::new(),
            Command::Load { series, .. } => {
                let mut app = storage.inner.appender();
                for (labels, samples) in series {
                    for s in samples {
                        app.append(labels, s.t, s.v).unwrap();
                    }
                }
                app.commit().unwrap();
            }
            Command::Eval(eval) => {
                evals += 1;
                if let Err(why) = run_eval(&engine, &storage, eval, &cancel) {
                    failures.push(format!(
                        "{}:{} ({}): {}: {why}",
                        path.display(),
                        if chunks { "streamed" } else { "loaded" },
                        eval.line,
                        eval.expr
                    ));
                }
            }
        }
    }
    (evals, failures)
}

fn run_eval(
    engine: &Engine,
    storage: &Chunked,
    eval: &Eval,
    cancel: &CancelFlag,
) -> Result<(), String> {
    let instant = match (
        engine.instant(storage, &eval.expr, eval.at_ms, cancel),
        eval.expect_fail,
    ) {
        (Err(_), true) => return Ok(()),
        (Err(e), false) => return Err(format!("unexpected error: {e}")),
        (Ok(v), _) => v,
    };
    testlang::check(eval, &instant)?;
    // As Prometheus's runner: the same expression as a range query around the eval
    // time must agree at that time (range vectors cannot be range-queried).
    if matches!(instant, Value::Matrix(_)) || refers_to_query_range(&eval.expr) {
        return Ok(());
    }
    let range = engine
        .range(
            storage,
            &eval.expr,
            eval.at_ms - 60_000,
            eval.at_ms + 60_000,
            60_000,
            cancel,
        )
        .map_err(|e| format!("range mode: unexpected error: {e}"))?;
    testlang::check_range_mode(eval, &instant, &range)
}

/// `start()` and `end()` name the query's own range, so a range query around the
/// eval time rightly answers differently (Prometheus's runner skips these too).
fn refers_to_query_range(expr: &str) -> bool {
    expr.contains("start()") || expr.contains("end()")
}

#[test]
fn promql_cases_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test files in {}", dir.display());
    let mut total = 0;
    let mut failures = Vec::new();
    for f in &files {
        for chunks in [false, true] {
            let (n, fails) = run_file(f, chunks);
            total += n;
            failures.extend(fails);
        }
    }
    assert!(total > 0, "no evals found");
    assert!(
        failures.is_empty(),
        "{} of {total} evals failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
