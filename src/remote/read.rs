//! Remote read (`POST /api/v1/read`), as Prometheus 2.42 serves it: a snappy-compressed
//! `ReadRequest`; the answer either one snappy-compressed `ReadResponse` of samples,
//! or — when the client accepts it, as Prometheus does — `STREAMED_XOR_CHUNKS`: a
//! stream of frames, each `uvarint(length) | CRC-32C (big-endian) | ChunkedReadResponse`,
//! carrying the chunks still encoded.
//!
//! External labels are handled as Prometheus does: matchers on them are checked
//! against the external value (and dropped), and every returned series carries them
//! unless it has the label itself.

use std::collections::BTreeMap;

use prost::Message;

use crate::model::{Labels, MatchType, Matcher};
use crate::remote::prompb::{
    self, CHUNK_XOR, ChunkedReadResponse, ChunkedSeries, MatcherType, QueryResult, ReadRequest,
    ReadResponse, ResponseType,
};
use crate::remote::write::{WriteError, WriteLimits, decompress_into};
use crate::storage::{ChunkQueryable, Queryable, SelectHints};

/// Largest frame of a streamed response (Prometheus's `--storage.remote.read-max-bytes-in-frame`).
pub const MAX_BYTES_IN_FRAME: usize = 1 << 20;

/// Samples one sampled (non-streamed) request may return (Prometheus's
/// `--storage.remote.read-sample-limit`).
pub const SAMPLE_LIMIT: usize = 50_000_000;

pub const SAMPLES_CONTENT_TYPE: &str = "application/x-protobuf";
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The request is malformed: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The read's deadline passed or its client went away (the reason says which).
    #[error("{0}")]
    Stopped(String),
    /// Storage failed or a limit was hit: 500, as Prometheus answers.
    #[error("{0}")]
    Internal(String),
}

impl From<WriteError> for ReadError {
    fn from(e: WriteError) -> Self {
        ReadError::BadRequest(e.to_string())
    }
}

/// One query of a request, ready to run.
pub struct ReadQuery {
    pub start_ms: i64,
    pub end_ms: i64,
    pub matchers: Vec<Matcher>,
    /// False when a matcher on an external label cannot match: the answer is empty.
    pub can_match: bool,
}

/// The decoded request: its queries and whether the answer is to be streamed.
pub struct DecodedRead {
    pub queries: Vec<ReadQuery>,
    pub streamed: bool,
}

/// Largest decompressed request. A request is queries of matchers and times: a
/// Prometheus sends one query per request, so 4 MiB leaves room for the longest
/// regex anyone writes while keeping a hostile body small.
pub const MAX_DECODED_READ_BYTES: usize = 4 << 20;

/// Queries one request may hold. Prometheus and Thanos send one.
pub const MAX_QUERIES_PER_READ: usize = 100;

/// Label matchers, and grouping labels of hints, one request may hold in all.
pub const MAX_MATCHERS_PER_READ: usize = 1000;

/// Accepted response types one request may list (there are two).
const MAX_RESPONSE_TYPES: usize = 16;

/// Counts the repeated fields of a `ReadRequest` on the wire before anything is
/// decoded into messages: a generated decoder allocates a whole `Query` (about 130
/// bytes) for each 2-byte empty one, so a 16 MiB body of them cost 1 GB before its
/// 400.
fn check_read_request_shape(raw: &[u8]) -> Result<(), ReadError> {
    use crate::remote::decode::{LEN, Reader, VARINT};
    let bad = |e: crate::remote::decode::DecodeError| {
        ReadError::BadRequest(format!("decode read request: {e}"))
    };
    let too_many = |what: &str, limit: usize| {
        ReadError::BadRequest(format!(
            "read request holds more than {limit} {what}, the most ODIN accepts"
        ))
    };
    let (mut queries, mut matchers, mut types) = (0usize, 0usize, 0usize);
    let mut r = Reader { buf: raw };
    while !r.done() {
        let (field, wire) = r.key().map_err(bad)?;
        match (field, wire) {
            (1, LEN) => {
                queries += 1;
                if queries > MAX_QUERIES_PER_READ {
                    return Err(too_many("queries", MAX_QUERIES_PER_READ));
                }
                let mut q = Reader {
                    buf: r.bytes().map_err(bad)?,
                };
                while !q.done() {
                    let (field, wire) = q.key().map_err(bad)?;
                    match (field, wire) {
                        (3, LEN) => {
                            matchers += 1;
                            q.skip(wire, field).map_err(bad)?;
                        }
                        (4, LEN) => {
                            // Hints: only the grouping labels (field 5) repeat.
                            let mut h = Reader {
                                buf: q.bytes().map_err(bad)?,
                            };
                            while !h.done() {
                                let (field, wire) = h.key().map_err(bad)?;
                                matchers += usize::from(field == 5);
                                h.skip(wire, field).map_err(bad)?;
                            }
                        }
                        _ => q.skip(wire, field).map_err(bad)?,
                    }
                    if matchers > MAX_MATCHERS_PER_READ {
                        return Err(too_many("matchers", MAX_MATCHERS_PER_READ));
                    }
                }
            }
            (2, VARINT) => {
                types += 1;
                r.varint().map_err(bad)?;
            }
            (2, LEN) => {
                // Packed: one varint per value (a byte each at least).
                let mut p = Reader {
                    buf: r.bytes().map_err(bad)?,
                };
                while !p.done() {
                    types += 1;
                    if types > MAX_RESPONSE_TYPES {
                        break;
                    }
                    p.varint().map_err(bad)?;
                }
            }
            _ => r.skip(wire, field).map_err(bad)?,
        }
        if types > MAX_RESPONSE_TYPES {
            return Err(too_many("accepted response types", MAX_RESPONSE_TYPES));
        }
    }
    Ok(())
}

/// Decompresses and decodes a request body, bounding what it may allocate: the
/// decompressed size ([`MAX_DECODED_READ_BYTES`], checked from the snappy header
/// before decompressing) and the count of queries and matchers (checked on the wire
/// before decoding).
pub fn decode_read_request(
    body: &[u8],
    external_labels: &BTreeMap<String, String>,
) -> Result<DecodedRead, ReadError> {
    let limits = WriteLimits {
        max_decoded_bytes: MAX_DECODED_READ_BYTES,
        ..WriteLimits::default()
    };
    let mut raw = Vec::new();
    decompress_into(body, limits, &mut raw)?;
    check_read_request_shape(&raw)?;
    let req = ReadRequest::decode(raw.as_slice())
        .map_err(|e| ReadError::BadRequest(format!("decode read request: {e}")))?;
    // The first accepted type ODIN serves wins; none listed means samples; none
    // served is refused (Prometheus's `NegotiateResponseType`).
    let chosen = req
        .accepted_response_types
        .iter()
        .find_map(|t| ResponseType::try_from(*t).ok());
    if chosen.is_none() && !req.accepted_response_types.is_empty() {
        return Err(ReadError::BadRequest(format!(
            "server does not support any of the requested response types: {:?}; supported: [SAMPLES STREAMED_XOR_CHUNKS]",
            req.accepted_response_types
        )));
    }
    let streamed = chosen == Some(ResponseType::StreamedXorChunks);
    let mut queries = Vec::with_capacity(req.queries.len());
    for q in req.queries {
        let mut matchers = Vec::with_capacity(q.matchers.len());
        let mut can_match = true;
        for m in q.matchers {
            let kind = match MatcherType::try_from(m.r#type) {
                Ok(MatcherType::Eq) => MatchType::Equal,
                Ok(MatcherType::Neq) => MatchType::NotEqual,
                Ok(MatcherType::Re) => MatchType::Regex,
                Ok(MatcherType::Nre) => MatchType::NotRegex,
                Err(_) => {
                    return Err(ReadError::BadRequest(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )));
                }
            };
            let matcher = Matcher::new(kind, m.name, m.value)
                .map_err(|e| ReadError::BadRequest(e.to_string()))?;
            match external_labels.get(&matcher.name) {
                Some(v) => can_match &= matcher.matches(v),
                None => matchers.push(matcher),
            }
        }
        if matchers.iter().all(Matcher::matches_empty) {
            // Prometheus refuses a selection that would read every series.
            return Err(ReadError::BadRequest(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        queries.push(ReadQuery {
            start_ms: q.start_timestamp_ms,
            end_ms: q.end_timestamp_ms,
            matchers,
            can_match,
        });
    }
    Ok(DecodedRead { queries, streamed })
}

/// The series' labels with the external labels it lacks.
fn with_external(labels: &Labels, external: &BTreeMap<String, String>) -> Vec<prompb::Label> {
    let mut b = labels.to_builder();
    for (n, v) in external {
        if labels.get(n).is_none() {
            b.set(n.as_str(), v.as_str());
        }
    }
    b.build()
        .iter()
        .map(|l| prompb::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

/// The sampled answer: one snappy-compressed `ReadResponse`.
/// What one read may use, checked between series: the caller's deadline and
/// cancellation, and the samples an answer may hold.
pub struct ReadBudget<'a> {
    /// Fails, saying why, once the read must stop.
    pub check: &'a dyn Fn() -> Result<(), String>,
    /// Samples a sampled answer may hold (`--query.max-samples`, at most
    /// [`SAMPLE_LIMIT`]).
    pub max_samples: usize,
}

fn no_stop() -> Result<(), String> {
    Ok(())
}

impl ReadBudget<'static> {
    /// No deadline; [`SAMPLE_LIMIT`] samples.
    pub fn unbounded() -> Self {
        ReadBudget {
            check: &no_stop,
            max_samples: SAMPLE_LIMIT,
        }
    }
}

impl ReadBudget<'_> {
    fn check(&self) -> Result<(), ReadError> {
        (self.check)().map_err(ReadError::Stopped)
    }
}

pub fn sampled_response(
    storage: &dyn Queryable,
    queries: &[ReadQuery],
    external: &BTreeMap<String, String>,
    budget: &ReadBudget<'_>,
) -> Result<Vec<u8>, ReadError> {
    let mut resp = ReadResponse::default();
    let mut samples = 0usize;
    let limit = budget.max_samples.min(SAMPLE_LIMIT);
    for q in queries {
        let mut result = QueryResult::default();
        if q.can_match {
            let querier = storage
                .querier(q.start_ms, q.end_ms)
                .map_err(|e| ReadError::Internal(e.to_string()))?;
            let hints = SelectHints {
                start_ms: q.start_ms,
                end_ms: q.end_ms,
                series_only: false,
                sorted: true,
            };
            for s in querier
                .select(&hints, &q.matchers)
                .map_err(|e| ReadError::Internal(e.to_string()))?
            {
                budget.check()?;
                let s = s.map_err(|e| ReadError::Internal(e.to_string()))?;
                let points: Vec<prompb::Sample> = s
                    .samples
                    .iter()
                    .filter(|x| x.t >= q.start_ms && x.t <= q.end_ms)
                    .map(|x| prompb::Sample {
                        value: x.v,
                        timestamp: x.t,
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                samples += points.len();
                if samples > limit {
                    return Err(ReadError::Internal(format!(
                        "exceeded sample limit ({limit})"
                    )));
                }
                result.timeseries.push(prompb::TimeSeries {
                    labels: with_external(&s.labels, external),
                    samples: points,
                });
            }
        }
        resp.results.push(result);
    }
    snap::raw::Encoder::new()
        .compress_vec(&resp.encode_to_vec())
        .map_err(|e| ReadError::Internal(format!("snappy: {e}")))
}

/// Produces the frames of a streamed answer, one at a time, through `emit` (which
/// returns false when the client has gone away). Series go out in label order, each
/// frame holding as many whole chunks as fit in [`MAX_BYTES_IN_FRAME`].
pub fn stream_chunks(
    storage: &dyn ChunkQueryable,
    queries: &[ReadQuery],
    external: &BTreeMap<String, String>,
    budget: &ReadBudget<'_>,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<(), ReadError> {
    for (index, q) in queries.iter().enumerate() {
        if !q.can_match {
            continue;
        }
        let querier = storage
            .chunk_querier(q.start_ms, q.end_ms)
            .map_err(|e| ReadError::Internal(e.to_string()))?;
        for s in querier
            .select_chunks(&q.matchers)
            .map_err(|e| ReadError::Internal(e.to_string()))?
        {
            budget.check()?;
            let s = s.map_err(|e| ReadError::Internal(e.to_string()))?;
            let labels = with_external(&s.labels, external);
            let mut frame = ChunkedSeries {
                labels: labels.clone(),
                chunks: Vec::new(),
            };
            let mut size = 0usize;
            for c in s
                .chunks
                .iter()
                .filter(|c| c.max_t >= q.start_ms && c.min_t <= q.end_ms)
            {
                if !frame.chunks.is_empty() && size + c.bytes.len() > MAX_BYTES_IN_FRAME {
                    let full = std::mem::replace(
                        &mut frame,
                        ChunkedSeries {
                            labels: labels.clone(),
                            chunks: Vec::new(),
                        },
                    );
                    if !emit(encode_frame(full, index)) {
                        return Ok(());
                    }
                    size = 0;
                }
                size += c.bytes.len();
                frame.chunks.push(prompb::Chunk {
                    min_time_ms: c.min_t,
                    max_time_ms: c.max_t,
                    r#type: CHUNK_XOR,
                    data: c.bytes.to_vec(),
                });
            }
            if !frame.chunks.is_empty() && !emit(encode_frame(frame, index)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `uvarint(len) | CRC-32C(message) big-endian | message`.
fn encode_frame(series: ChunkedSeries, query_index: usize) -> Vec<u8> {
    let msg = ChunkedReadResponse {
        chunked_series: vec![series],
        query_index: query_index as i64,
    }
    .encode_to_vec();
    let mut out = Vec::with_capacity(msg.len() + 14);
    prost::encoding::encode_varint(msg.len() as u64, &mut out);
    out.extend_from_slice(&crc32c::crc32c(&msg).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

/// Splits a streamed body back into messages, checking each frame's checksum (for
/// tests and tools).
pub fn decode_frames(mut body: &[u8]) -> Result<Vec<ChunkedReadResponse>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = prost::encoding::decode_varint(&mut body).map_err(|e| e.to_string())? as usize;
        let (crc, rest) = body
            .split_first_chunk::<4>()
            .ok_or("frame shorter than its checksum")?;
        let msg = rest.get(..len).ok_or("frame shorter than its length")?;
        if crc32c::crc32c(msg) != u32::from_be_bytes(*crc) {
            return Err("frame checksum mismatch".into());
        }
        out.push(ChunkedReadResponse::decode(msg).map_err(|e| e.to_string())?);
        body = rest.get(len..).unwrap_or(&[]);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use crate::storage::Appendable;
    use crate::tsdb::{Db, DbOptions};

    fn request(matchers: Vec<prompb::LabelMatcher>, streamed: bool) -> Vec<u8> {
        let req = ReadRequest {
            queries: vec![prompb::Query {
                start_timestamp_ms: 0,
                end_timestamp_ms: 10_000,
                matchers,
                hints: None,
            }],
            accepted_response_types: if streamed { vec![1, 0] } else { vec![] },
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    fn eq(name: &str, value: &str) -> prompb::LabelMatcher {
        prompb::LabelMatcher {
            r#type: 0,
            name: name.into(),
            value: value.into(),
        }
    }

    /// A read stops at its deadline (or when its client goes away) between series,
    /// and a sampled answer holds at most its budget of samples.
    #[test]
    fn reads_stop_when_their_budget_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_for_tests(dir.path(), DbOptions::default(), &Default::default());
        let mut app = db.appender();
        for s in 0..3 {
            let labels = Labels::from_pairs([("__name__", "up".to_string()), ("s", s.to_string())]);
            for i in 0..10 {
                app.append(&labels, i * 1000, i as f64).unwrap();
            }
        }
        app.commit().unwrap();
        let external = BTreeMap::new();
        for streamed in [false, true] {
            let read =
                decode_read_request(&request(vec![eq("__name__", "up")], streamed), &external)
                    .unwrap();
            let stop = || Err("query timed out in remote read".to_string());
            let stopped = ReadBudget {
                check: &stop,
                max_samples: usize::MAX,
            };
            let outcome = if streamed {
                stream_chunks(&db, &read.queries, &external, &stopped, &mut |_| true)
            } else {
                sampled_response(&db, &read.queries, &external, &stopped).map(drop)
            };
            assert!(matches!(outcome, Err(ReadError::Stopped(_))), "{outcome:?}");
        }
        let read =
            decode_read_request(&request(vec![eq("__name__", "up")], false), &external).unwrap();
        let small = ReadBudget {
            max_samples: 25,
            ..ReadBudget::unbounded()
        };
        let over = sampled_response(&db, &read.queries, &external, &small);
        assert!(
            matches!(over, Err(ReadError::Internal(ref m)) if m.contains("25")),
            "{over:?}"
        );
        let enough = ReadBudget {
            max_samples: 30,
            ..ReadBudget::unbounded()
        };
        assert!(sampled_response(&db, &read.queries, &external, &enough).is_ok());
    }

    #[test]
    fn samples_and_streamed_chunks_carry_the_same_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_for_tests(dir.path(), DbOptions::default(), &Default::default());
        let mut app = db.appender();
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        for i in 0..20 {
            app.append(&labels, i * 1000, i as f64).unwrap();
        }
        app.append(&Labels::from_pairs([("__name__", "other")]), 0, 1.0)
            .unwrap();
        app.commit().unwrap();
        let external = BTreeMap::from([("cluster".to_string(), "eu".to_string())]);

        let read =
            decode_read_request(&request(vec![eq("__name__", "up")], false), &external).unwrap();
        assert!(!read.streamed);
        let body =
            sampled_response(&db, &read.queries, &external, &ReadBudget::unbounded()).unwrap();
        let resp = ReadResponse::decode(
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        let ts = &resp.results[0].timeseries;
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].samples.len(), 11, "samples in [0, 10000]");
        let names: Vec<&str> = ts[0].labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "cluster", "job"]);

        let read = decode_read_request(
            &request(vec![eq("__name__", "up"), eq("cluster", "eu")], true),
            &external,
        )
        .unwrap();
        assert!(read.streamed);
        let mut body = Vec::new();
        stream_chunks(
            &db,
            &read.queries,
            &external,
            &ReadBudget::unbounded(),
            &mut |f| {
                body.extend(f);
                true
            },
        )
        .unwrap();
        let frames = decode_frames(&body).unwrap();
        assert_eq!(frames.len(), 1);
        let series = &frames[0].chunked_series[0];
        let decoded: Vec<Sample> = series
            .chunks
            .iter()
            .flat_map(|c| crate::tsdb::chunkenc::XorIterator::new(&c.data).collect::<Vec<_>>())
            .map(|(t, v)| Sample { t, v })
            .collect();
        assert_eq!(decoded.len(), 20, "whole chunks go out");
        assert_eq!(series.chunks[0].r#type, CHUNK_XOR);

        // A matcher on an external label with another value matches nothing.
        let read = decode_read_request(
            &request(vec![eq("__name__", "up"), eq("cluster", "us")], false),
            &external,
        )
        .unwrap();
        let body =
            sampled_response(&db, &read.queries, &external, &ReadBudget::unbounded()).unwrap();
        let resp = ReadResponse::decode(
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert!(resp.results[0].timeseries.is_empty());
    }

    fn compress(raw: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(raw).unwrap()
    }

    fn bad_request(body: &[u8]) -> String {
        match decode_read_request(body, &BTreeMap::new()) {
            Err(ReadError::BadRequest(m)) => m,
            Err(e @ (ReadError::Internal(_) | ReadError::Stopped(_))) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    /// The body: 16 MiB of repeated empty `Query` messages (768 KB on the
    /// wire) cost 1.04 GB before its 400. Now the decompressed length alone refuses
    /// it, and a body within that length is refused by its count of queries before
    /// any `Query` is allocated.
    #[test]
    fn repeated_empty_queries_are_refused_before_decoding() {
        let empty_queries = |bytes: usize| [0x0a, 0x00].repeat(bytes / 2);
        let m = bad_request(&compress(&empty_queries(16 << 20)));
        assert!(m.contains("decompressed length"), "{m}");
        for bytes in [MAX_DECODED_READ_BYTES, 2 * (MAX_QUERIES_PER_READ + 1)] {
            let m = bad_request(&compress(&empty_queries(bytes)));
            assert!(m.contains("more than 100 queries"), "{bytes}: {m}");
        }
    }

    /// Other repeated fields of the same request: matchers in one query, matchers
    /// spread over queries, grouping labels in hints, packed response types.
    #[test]
    fn every_repeated_field_is_counted() {
        let query = |matchers: usize, grouping: usize| prompb::Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: 1,
            matchers: vec![eq("__name__", "up"); matchers],
            hints: (grouping > 0).then(|| prompb::ReadHints {
                grouping: vec!["job".into(); grouping],
                ..Default::default()
            }),
        };
        let cases = [
            (
                vec![query(MAX_MATCHERS_PER_READ + 1, 0)],
                vec![],
                "matchers",
            ),
            (
                vec![query(MAX_MATCHERS_PER_READ / 2 + 1, 0); 2],
                vec![],
                "matchers",
            ),
            (vec![query(1, MAX_MATCHERS_PER_READ)], vec![], "matchers"),
            (vec![query(1, 0)], vec![1; 17], "accepted response types"),
        ];
        for (queries, types, want) in cases {
            let req = ReadRequest {
                queries,
                accepted_response_types: types,
            };
            let m = bad_request(&compress(&req.encode_to_vec()));
            assert!(m.contains(want), "{m} should name {want}");
        }
        // A response type ODIN does not serve, alone: refused; beside one it
        // serves, that one is used.
        let req = ReadRequest {
            queries: vec![query(1, 0)],
            accepted_response_types: vec![7],
        };
        let m = bad_request(&compress(&req.encode_to_vec()));
        assert!(
            m.contains("does not support any of the requested response types"),
            "{m}"
        );
        let req = ReadRequest {
            queries: vec![query(1, 0)],
            accepted_response_types: vec![7, 1],
        };
        let read = decode_read_request(&compress(&req.encode_to_vec()), &BTreeMap::new()).unwrap();
        assert!(read.streamed);
        // At the limits: accepted.
        let req = ReadRequest {
            queries: vec![query(MAX_MATCHERS_PER_READ / 2, 0); 2],
            accepted_response_types: vec![1, 0],
        };
        let read = decode_read_request(&compress(&req.encode_to_vec()), &BTreeMap::new()).unwrap();
        assert_eq!(read.queries.len(), 2);
        assert!(read.streamed);
    }

    #[test]
    fn bad_requests_are_refused() {
        let external = BTreeMap::new();
        assert!(matches!(
            decode_read_request(b"not snappy", &external),
            Err(ReadError::BadRequest(_))
        ));
        let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 16]).unwrap();
        assert!(matches!(
            decode_read_request(&garbage, &external),
            Err(ReadError::BadRequest(_))
        ));
        // Only matchers that match everything: refused, as Prometheus does.
        assert!(matches!(
            decode_read_request(&request(vec![eq("job", "")], false), &external),
            Err(ReadError::BadRequest(_))
        ));
    }
}
