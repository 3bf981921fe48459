//! What each fuzz target does with its input, shared by the cargo-fuzz targets in
//! `fuzz/` (nightly, libFuzzer) and the fuzz smoke test of the normal suite
//! (`tests/it/fuzz_smoke.rs`: every target over its seeds and mutations of them for
//! a moment), so that both exercise the same code.
//!
//! Every target takes untrusted bytes the way ODIN does in production and asserts
//! what must hold for any input: no panic, and the invariants each decoder promises
//! (what it accepts is within its bounds, what it writes reads back the same).
//! A crash any of them finds becomes a regression test next to the code it hit.

// Panicking is how a fuzz target reports a broken invariant to libFuzzer.
#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A fuzz target: runs one input, panics on a broken invariant.
pub type FuzzTarget = fn(&[u8]);

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs` and of
/// `fuzz/seeds/<name>/`).
pub const TARGETS: &[(&str, FuzzTarget)] = &[
    ("text_parser", text_parser),
    ("openmetrics_parser", openmetrics_parser),
    ("remote_write_decoder", remote_write_decoder),
    ("remote_read_request", remote_read_request),
    ("log_record", log_record),
    ("config", config),
    ("web_config", web_config),
    ("promql_parse", promql_parse),
    ("promql_eval", promql_eval),
    ("block_index", block_index),
    ("block_chunks", block_chunks),
    ("block_meta", block_meta),
    ("storeapi_request", storeapi_request),
    ("jwt", jwt),
    ("loki_push", loki_push),
    ("logql_parse", logql_parse),
];

/// Walks a page with the streaming parser: series have names and no `__name__`
/// label, an error names a line of the input and, like the end, repeats.
fn walk_page(format: crate::exposition::format::Format, data: &[u8]) {
    use crate::exposition::format::{Entry, Parser};
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut parser = Parser::new(format, data);
    loop {
        match parser.next() {
            Ok(Some(Entry::Series(series))) => {
                assert!(!series.name.is_empty());
                assert!(series.labels.iter().all(|(name, _)| *name != "__name__"));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                assert!(matches!(parser.next(), Ok(None)));
                break;
            }
            Err(err) => {
                assert!(err.line >= 1 && err.line <= lines, "{err} in {lines} lines");
                assert_eq!(parser.next().err(), Some(err));
                break;
            }
        }
    }
}

/// The exposition text parser (see [`walk_page`]); a page that parses is written
/// back the same way when read again.
pub fn text_parser(data: &[u8]) {
    use crate::exposition::format::{Format, parse_families};
    use crate::exposition::write::to_text;
    walk_page(Format::Text, data);
    if let Ok(families) = parse_families(Format::Text, data) {
        let once = to_text(&families);
        let again = match parse_families(Format::Text, once.as_bytes()) {
            Ok(families) => families,
            Err(err) => panic!("written page does not parse: {err}\n{once}"),
        };
        assert_eq!(once, to_text(&again));
    }
}

/// The OpenMetrics parser (see [`walk_page`]).
pub fn openmetrics_parser(data: &[u8]) {
    walk_page(crate::exposition::format::Format::OpenMetrics, data);
}

/// The remote-write decoder: what validates walks, with valid labels and the
/// validated sample count.
pub fn remote_write_decoder(data: &[u8]) {
    use crate::model::check_label_pairs;
    use crate::remote::decode::{DecodeError, SAMPLES_PER_CALL, for_each_series, validate};
    let Ok(shape) = validate(data) else {
        return;
    };
    let mut samples = 0;
    let walked = for_each_series(data, |labels, s| {
        assert!(
            check_label_pairs(labels.iter().copied()).is_ok(),
            "{labels:?}"
        );
        assert!(!s.is_empty() && s.len() <= SAMPLES_PER_CALL);
        samples += s.len();
        Ok::<(), DecodeError>(())
    });
    assert!(walked.is_ok(), "validated but not walked: {walked:?}");
    assert_eq!(samples, shape.samples);
}

/// `raw` as a snappy frame of literals (60 bytes each, the short literal form), so
/// that a fuzzer reaches what lies behind snappy without learning it.
fn snappy_literals(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 60 + 10);
    let mut n = raw.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    for piece in raw.chunks(60) {
        out.push(((piece.len() - 1) as u8) << 2);
        out.extend_from_slice(piece);
    }
    out
}

/// The remote-read request decoder (a first byte 0 wraps the rest in snappy): what
/// it accepts stays within the request bounds.
pub fn remote_read_request(data: &[u8]) {
    use crate::remote::read::{MAX_MATCHERS_PER_READ, MAX_QUERIES_PER_READ, decode_read_request};
    let body = match data.split_first() {
        Some((0, raw)) => snappy_literals(raw),
        _ => data.to_vec(),
    };
    let external = BTreeMap::from([("cluster".to_string(), "eu".to_string())]);
    if let Ok(read) = decode_read_request(&body, &external) {
        assert!(read.queries.len() <= MAX_QUERIES_PER_READ);
        let matchers: usize = read.queries.iter().map(|q| q.matchers.len()).sum();
        assert!(matchers <= MAX_MATCHERS_PER_READ);
    }
}

/// WAL records and Raft entries: a batch that decodes encodes to bytes that decode
/// to the same batch (values compared by bits: a stale marker is a NaN); so does a
/// batch by reference.
pub fn log_record(data: &[u8]) {
    use crate::log::record::{Batch, Record, decode, encode_batch, encode_batch_by_ref};
    let Ok(record) = decode(data, &mut |s| s.into()) else {
        return;
    };
    if let Record::LogLines(lines) = &record {
        let mut again = Vec::new();
        assert!(crate::log::record::encode_log_batch(lines, &mut again));
        match decode(&again, &mut |s| s.into()) {
            Ok(Record::LogLines(b)) => assert_eq!(&b, lines),
            other => panic!("re-encoded log lines did not decode: {other:?}"),
        }
    }
    if let Record::SamplesById(by_ref) = &record {
        // The same series, samples and references; the labels of the definitions.
        let mut defined = by_ref.defined.iter();
        let mut batch = Batch::default();
        let mut refs = Vec::new();
        for (id, range) in &by_ref.series {
            let labels = match id {
                None => match defined.next() {
                    Some(labels) => labels.clone(),
                    None => panic!("decoded with fewer definitions than series naming one"),
                },
                Some(_) => crate::model::Labels::default(),
            };
            batch.push_series(labels, &by_ref.samples[range.clone()]);
            refs.push(*id);
        }
        let mut again = Vec::new();
        assert!(encode_batch_by_ref(&batch, &refs, by_ref.reset, &mut again));
        match decode(&again, &mut |s| s.into()) {
            Ok(Record::SamplesById(b)) => {
                assert_eq!((&b.reset, &b.defined), (&by_ref.reset, &by_ref.defined));
                let ids = |b: &crate::log::record::IdBatch| -> Vec<Option<u32>> {
                    b.series.iter().map(|(id, _)| *id).collect()
                };
                assert_eq!(ids(&b), ids(by_ref));
                let bits = |s: &[crate::model::Sample]| -> Vec<(i64, u64)> {
                    s.iter().map(|s| (s.t, s.v.to_bits())).collect()
                };
                assert_eq!(bits(&b.samples), bits(&by_ref.samples));
            }
            other => panic!("re-encoded batch by reference did not decode: {other:?}"),
        }
    }
    if let Record::Samples(batch) = record {
        let mut again = Vec::new();
        encode_batch(&batch, &mut again);
        let bits = |b: &Batch| -> Vec<(i64, u64)> {
            b.samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
        };
        match decode(&again, &mut |s| s.into()) {
            Ok(Record::Samples(b)) => {
                assert_eq!(b.series, batch.series);
                assert_eq!(bits(&b), bits(&batch));
            }
            other => panic!("re-encoded batch did not decode: {other:?}"),
        }
    }
}

/// Loki push bodies: the first byte picks the content type and encoding (JSON,
/// snappy protobuf; plain, gzip). Decoding ends in streams or an error, checking
/// keeps no more lines than came, and every dropped stream or entry says why.
pub fn loki_push(data: &[u8]) {
    use crate::logs::push::{PushLimits, check, decode, decompress};
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = if selector & 1 == 0 {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    let encoding = (selector & 2 != 0).then_some("gzip");
    // A protobuf body is snappy-compressed; let the fuzzer write the raw message.
    let framed;
    let body = if selector & 1 == 1 && selector & 4 != 0 {
        framed = snap::raw::Encoder::new()
            .compress_vec(body)
            .unwrap_or_default();
        &framed[..]
    } else {
        body
    };
    let Ok((format, plain)) = decompress(Some(content_type), encoding, body, 1 << 20) else {
        return;
    };
    let Ok(streams) = decode(format, &plain) else {
        return;
    };
    let sent: usize = streams.iter().map(|s| s.entries.len()).sum();
    let with_entries = streams.iter().filter(|s| !s.entries.is_empty()).count();
    let checked = check(streams, &PushLimits::default(), 1_700_000_000_000_000_000);
    assert!(checked.lines <= sent);
    assert!(checked.streams.len() <= with_entries);
    assert!(checked.lines + checked.errors.len() >= sent.min(1) * with_entries.min(1));
    let _ = checked.errors.grouped();
}

/// LogQL queries: parsing ends in a tree or an error that points inside the query;
/// a log query's pipeline, where it compiles, runs on a few lines (JSON, logfmt,
/// colours, garbage) and keeps the stream's labels unless it drops or `keep`s them.
pub fn logql_parse(data: &[u8]) {
    use crate::logs::logql::ast::Expr;
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    match crate::logs::logql::parse(query) {
        Err(e) => {
            let lines = query.matches('\n').count() + 1;
            assert!(e.line >= 1 && e.line <= lines, "{e} for {query:?}");
            assert!(e.col >= 1, "{e}");
        }
        Ok(Expr::Log(log)) => {
            let Ok(pipeline) = crate::logs::logql::pipeline::Pipeline::new(&log.pipeline) else {
                return;
            };
            let stream = [("job".to_string(), "x".to_string())];
            for line in [
                r#"{"level":"error","req":{"status":503,"path":"/a"},"tags":[1,2]}"#,
                r#"level=warn status=404 latency=250ms size=2KB msg="a \"b\"""#,
                "\x1b[31mred\x1b[0m 10.0.0.1 - alice",
                "{\"",
                "",
            ] {
                if let Some((labels, _)) = pipeline.process(0, &stream, &[], line) {
                    assert!(labels.windows(2).all(|w| w[0] < w[1]), "{labels:?}");
                }
            }
        }
        Ok(Expr::Metric(metric)) => evaluate_on_sample_lines(&metric),
    }
}

/// Evaluates a metric query over a minute of a few lines: whatever the query, an
/// answer or an error, never a panic (the points are bounded as a server bounds
/// them).
fn evaluate_on_sample_lines(metric: &crate::logs::logql::ast::MetricExpr) {
    use crate::log::record::LogLine;
    use crate::logs::metric::{Context, Steps, evaluate};
    use crate::logs::store::Selected;
    const S: i64 = 1_000_000_000;
    let lines: Vec<LogLine> = [
        "level=warn status=404 latency=250ms size=2KB",
        r#"{"level":"error","status":503,"latency":"1.5s"}"#,
        "level=info status=200 latency=bad size=x",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| LogLine {
        ts_ns: (i as i64 + 1) * 10 * S,
        text: text.to_string(),
        metadata: vec![("trace_id".into(), "t1".into())],
    })
    .collect();
    let data = [Selected {
        labels: crate::model::Labels::from_pairs([("job", "x")]),
        chunks: vec![lines.into()],
    }];
    let select = |m: &[crate::model::Matcher], _: i64, _: i64, _: &[String]| {
        Ok(data
            .iter()
            .filter(|s| {
                m.iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .map(|s| Selected {
                labels: s.labels.clone(),
                chunks: s.chunks.clone(),
            })
            .collect())
    };
    let ctx = Context {
        select: &select,
        keep_going: &|| Ok(()),
        max_points: 100_000,
        processed: Default::default(),
    };
    let steps = Steps {
        start_ns: 0,
        end_ns: 60 * S,
        step_ns: 10 * S,
    };
    let _ = evaluate(metric, &steps, &ctx);
}

/// The main configuration file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = crate::config::Config::parse(text, "fuzz.yml") {
            let _ = cfg.warnings();
        }
    }
}

/// `--web.config.file`, and the authenticator built from it.
pub fn web_config(data: &[u8]) {
    use crate::security::auth::Authenticator;
    use crate::security::web_config::WebConfig;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = WebConfig::parse(text, "fuzz.yml", Path::new("/nonexistent")) {
        let _ = Authenticator::new(&cfg).required();
        let _ = cfg.cluster_tls();
    }
}

/// PromQL parsing (promql-parser behind ODIN's guard).
///
/// promql-parser panics on some inputs (a duration of 10^40 s); ODIN catches those
/// and answers 400 (`promql::parse_expr`). libFuzzer's panic hook aborts on any
/// panic, caught or not, so it is silenced during the parse: the run goes on past
/// the parser's known panics, and a panic that escapes ODIN's guard still fails the
/// target (re-raised here).
pub fn promql_parse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let parsed = std::panic::catch_unwind(|| crate::promql::parse(text).map(|_| ()));
        std::panic::set_hook(hook);
        if let Err(panic) = parsed {
            std::panic::resume_unwind(panic);
        }
    }
}

/// PromQL evaluation: an instant and a range query over a few GPU series, within
/// small limits (samples, time), on a thread with the stack a deep query gets in
/// production (`QUERY_STACK_BYTES`). Any input is an answer or a clean error.
pub fn promql_eval(data: &[u8]) {
    use crate::promql::{CancelFlag, Engine, EngineOptions};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    static STORE: OnceLock<crate::storage::memory::MemoryStorage> = OnceLock::new();
    let store = STORE.get_or_init(small_store);
    let text = text.to_string();
    let eval = move || {
        let engine = Engine::new(EngineOptions {
            max_samples: 100_000,
            timeout: std::time::Duration::from_millis(200),
            ..EngineOptions::default()
        });
        let cancel = CancelFlag::default();
        let _ = engine.instant(store, &text, 150_000, &cancel);
        let _ = engine.range(store, &text, 0, 150_000, 15_000, &cancel);
    };
    // promql-parser's own panics are answered 400 by ODIN (see `promql_parse`).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(crate::promql::QUERY_STACK_BYTES)
            .spawn_scoped(scope, eval)
            .map(|t| t.join())
    });
    std::panic::set_hook(hook);
    if let Ok(Err(panic)) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A folder of this process for the block targets, which read files as ODIN does.
fn scratch(name: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("odin-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    });
    let dir = root.join(format!("{name}-{:?}", std::thread::current().id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Upper bounds on the work one input may ask of the block targets.
const MAX_LOOKUPS: usize = 256;

/// A block's `index` file (blocks come from other nodes and the bucket: untrusted):
/// opened, then every label, postings list and series it names read, each answer
/// or a clean error.
pub fn block_index(data: &[u8]) {
    use crate::tsdb::index::IndexReader;
    let dir = scratch("index");
    let path = dir.join("index");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(index) = IndexReader::open(&path) else {
        return;
    };
    let _ = index.symbols_count();
    let mut lookups = 0;
    for name in index.label_names().into_iter().take(MAX_LOOKUPS) {
        for value in index.label_values(&name).into_iter().take(MAX_LOOKUPS) {
            lookups += 1;
            if lookups > MAX_LOOKUPS {
                break;
            }
            if let Ok(ids) = index.postings(&name, &value) {
                for id in ids.into_iter().take(8) {
                    let _ = index.series(id);
                }
            }
        }
    }
    if let Ok(all) = index.all_postings() {
        assert!(all.windows(2).all(|w| w[0] < w[1]), "postings not sorted");
        for id in all.into_iter().take(MAX_LOOKUPS) {
            if let Ok((labels, chunks)) = index.series(id) {
                assert!(labels.iter().all(|l| !l.name.is_empty()));
                let _ = chunks.len();
            }
        }
    }
}

/// A block's chunk segment: every chunk entry in it read (checksums checked) and
/// its XOR samples decoded to the end.
pub fn block_chunks(data: &[u8]) {
    use crate::tsdb::block::chunks::ChunkReader;
    use crate::tsdb::chunkenc::XorIterator;
    let dir = scratch("chunks").join("chunks");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() || std::fs::write(dir.join("000001"), data).is_err() {
        return;
    }
    let Ok(reader) = ChunkReader::open(&dir) else {
        return;
    };
    // Entries back to back after the 8-byte segment header; past a bad one, every
    // later offset is tried as the bucket store tries any reference it is given.
    let mut off = 8u64;
    for _ in 0..MAX_LOOKUPS {
        if off >= data.len() as u64 {
            break;
        }
        match reader.chunk(off) {
            Ok((_encoding, bytes)) => {
                let mut it = XorIterator::new(bytes);
                let mut n = 0usize;
                while it.next().is_some() {
                    n += 1;
                    assert!(
                        n <= 1 << 20,
                        "a chunk of {} bytes gave {n} samples",
                        bytes.len()
                    );
                }
                let len_bytes = crate::tsdb::index::encoding::uvarint_len(bytes.len() as u64);
                off += (len_bytes + 1 + bytes.len() + 4) as u64;
            }
            Err(_) => off += 1,
        }
    }
}

/// A block's `meta.json` (first byte even) or `tombstones` (odd).
pub fn block_meta(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let dir = scratch("meta");
    let (name, read): (&str, fn(&Path)) = if kind % 2 == 0 {
        ("meta.json", |d| {
            let _ = crate::tsdb::block::meta::read_meta(d);
        })
    } else {
        ("tombstones", |d| {
            if let Ok(t) = crate::tsdb::block::tombstones::read_tombstones(d) {
                assert!(
                    t.values()
                        .all(|list| list.windows(2).all(|w| w[0].max_t < w[1].min_t))
                );
            }
        })
    };
    if std::fs::write(dir.join(name), body).is_ok() {
        read(&dir);
    }
}

/// StoreAPI requests (`Series`, `LabelNames`, `LabelValues`, by the first byte) as
/// the gRPC service decodes and checks them, then answered from a small store.
pub fn storeapi_request(data: &[u8]) {
    use crate::storage::{Queryable, SelectHints};
    use crate::storeapi::proto::thanos::{LabelNamesRequest, LabelValuesRequest, SeriesRequest};
    use crate::storeapi::series;
    use prost::Message;
    static STORE: OnceLock<crate::storage::memory::MemoryStorage> = OnceLock::new();
    let store = STORE.get_or_init(small_store);
    let external = BTreeMap::from([("replica".to_string(), "a".to_string())]);
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            let Ok(req) = SeriesRequest::decode(body) else {
                return;
            };
            let Ok(plan) = series::SeriesPlan::new(&req, &external) else {
                return;
            };
            if !plan.selection.can_match {
                return;
            }
            if let Ok(q) = store.querier(plan.min_t, plan.max_t) {
                let hints = SelectHints {
                    start_ms: plan.min_t,
                    end_ms: plan.max_t,
                    ..Default::default()
                };
                if let Ok(set) = q.select(&hints, &plan.selection.matchers) {
                    for s in set.flatten() {
                        assert!(
                            plan.selection
                                .matchers
                                .iter()
                                .all(|m| m.matches(s.labels.get(&m.name).unwrap_or_default()))
                        );
                    }
                }
            }
        }
        1 => {
            let Ok(req) = LabelNamesRequest::decode(body) else {
                return;
            };
            let Ok((min_t, max_t)) = series::label_range(req.start, req.end) else {
                return;
            };
            if let Ok(sel) = series::convert_matchers(&req.matchers, &external) {
                let _ = series::label_names(store, min_t, max_t, &sel, &external);
            }
        }
        _ => {
            let Ok(req) = LabelValuesRequest::decode(body) else {
                return;
            };
            let Ok((min_t, max_t)) = series::label_range(req.start, req.end) else {
                return;
            };
            if let Ok(sel) = series::convert_matchers(&req.matchers, &external) {
                let _ = series::label_values(store, &req.label, min_t, max_t, &sel, &external);
            }
        }
    }
}

/// A few GPU-like series for the StoreAPI target to answer from.
fn small_store() -> crate::storage::memory::MemoryStorage {
    use crate::model::Labels;
    use crate::storage::Appendable;
    let store = crate::storage::memory::MemoryStorage::new();
    let mut app = store.appender();
    for gpu in 0..4i32 {
        for metric in ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"] {
            let gpu_label = gpu.to_string();
            let labels = Labels::from_pairs([
                ("__name__", metric),
                ("gpu", gpu_label.as_str()),
                ("instance", "node-1:9400"),
            ]);
            for t in 0..10i32 {
                let _ = app.append(&labels, i64::from(t) * 15_000, f64::from(gpu * t));
            }
        }
    }
    let _ = app.commit();
    store
}

/// A P-256 key for the JWT target's identity provider (a test key, made for this
/// and used nowhere else), so that seeds can carry valid signatures and the fuzzer
/// reaches the claims.
pub const JWT_TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQVfCGCr5X+PPip+m
TJPlJn1fmOJBXSA6OkbhHK90vp+hRANCAASV0itlJJFuDY50mSEjbDWaePUTy7IC
ck2ETnp7moSS8MkPEWyppadi1O/mvkiFSEzv9ltf0JMdHr3TtJIhMsmk
-----END PRIVATE KEY-----
";

/// The issuer, audience and key id the JWT target's verifier expects.
pub const JWT_TEST_ISSUER: &str = "https://idp.fuzz";
pub const JWT_TEST_AUDIENCE: &str = "odin";
pub const JWT_TEST_KID: &str = "fuzz-1";

/// OpenID Connect bearer tokens, against a verifier that publishes
/// [`JWT_TEST_KEY_PEM`]'s public key: any input is refused or gives a principal,
/// and one with a role came with the test key's signature.
pub fn jwt(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        jwt_accepted(token);
    }
}

/// Whether the JWT target's verifier takes `token`.
pub fn jwt_accepted(token: &str) -> bool {
    use crate::security::oidc::Oidc;
    static VERIFIER: OnceLock<Option<Oidc>> = OnceLock::new();
    let Some(oidc) = VERIFIER.get_or_init(jwt_verifier) else {
        return false;
    };
    match oidc.verify(token) {
        Ok((name, _roles)) => {
            assert!(!name.is_empty());
            true
        }
        Err(_) => false,
    }
}

fn jwt_verifier() -> Option<crate::security::oidc::Oidc> {
    use jsonwebtoken::{Algorithm, EncodingKey, jwk::Jwk};
    let key = EncodingKey::from_ec_pem(JWT_TEST_KEY_PEM.as_bytes()).ok()?;
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).ok()?;
    jwk.common.key_id = Some(JWT_TEST_KID.into());
    let dir = scratch("jwt");
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).ok()?;
    let text = format!(
        "issuer: {JWT_TEST_ISSUER}\naudience: {JWT_TEST_AUDIENCE}\njwks_file: {}\nroles_claim: groups\n",
        jwks.display()
    );
    let mut section: crate::security::oidc::OidcSection = serde_saphyr::from_str(&text).ok()?;
    section.validate(&dir).ok()?;
    Some(crate::security::oidc::Oidc::new(&section, None))
}
