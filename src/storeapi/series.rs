//! From StoreAPI requests to storage reads and back: matcher conversion, the external
//! labels, and the series frames of a `Series` answer. Nothing here knows about tonic
//! or async; `service.rs` runs it on a blocking thread.
//!
//! External labels are handled as the Thanos sidecar does: a matcher on an external
//! label is checked against the external value and then dropped (a mismatch means the
//! answer is empty), and every series goes out with the external labels set, an
//! external label overriding a stored label of the same name. (Remote read does the
//! opposite, as Prometheus does: there the stored label wins.)

use std::collections::BTreeMap;

use crate::model::{Labels, MatchType, Matcher};
use crate::storage::{ChunkQueryable, Queryable};
use crate::storeapi::error::{Result, StoreApiError};
use crate::storeapi::proto::thanos::{
    AggrChunk, Chunk, Label, LabelMatcher, Series, SeriesRequest, SeriesResponse, chunk,
    label_matcher, series_response,
};

/// Chunk bytes one `SeriesResponse` frame carries at most (a series with more goes out
/// in several frames, one after the other, as the StoreAPI allows); one chunk larger
/// than this still goes out whole, alone in its frame.
pub const MAX_CHUNK_BYTES_IN_FRAME: usize = 1 << 20;

/// Series a `Series` answer may hold in memory when stored series carry an external
/// label's name and so must be re-sorted after the override (normally series stream
/// straight from storage and nothing is held).
pub const MAX_RESORTED_SERIES: usize = 1_000_000;

/// External labels, sorted by name.
pub type ExternalLabels = BTreeMap<String, String>;

/// Matchers of a request, with those on external labels checked and removed.
#[derive(Debug)]
pub struct Selection {
    /// The matchers to hand to storage.
    pub matchers: Vec<Matcher>,
    /// False when a matcher on an external label does not match its value: the
    /// answer is empty whatever storage holds.
    pub can_match: bool,
}

/// Converts StoreAPI matchers (EQ, NEQ, RE, NRE) into ODIN's and applies those on
/// external labels.
pub fn convert_matchers(matchers: &[LabelMatcher], external: &ExternalLabels) -> Result<Selection> {
    let mut out = Vec::with_capacity(matchers.len());
    let mut can_match = true;
    for m in matchers {
        let kind = match label_matcher::Type::try_from(m.r#type) {
            Ok(label_matcher::Type::Eq) => MatchType::Equal,
            Ok(label_matcher::Type::Neq) => MatchType::NotEqual,
            Ok(label_matcher::Type::Re) => MatchType::Regex,
            Ok(label_matcher::Type::Nre) => MatchType::NotRegex,
            Err(_) => {
                return Err(StoreApiError::BadRequest(format!(
                    "unknown matcher type {} for label {:?}",
                    m.r#type, m.name
                )));
            }
        };
        let matcher = Matcher::new(kind, m.name.as_str(), m.value.as_str())
            .map_err(|e| StoreApiError::BadRequest(e.to_string()))?;
        match external.get(&matcher.name) {
            Some(v) => can_match &= matcher.matches(v),
            None => out.push(matcher),
        }
    }
    Ok(Selection {
        matchers: out,
        can_match,
    })
}

/// Refuses a range whose start is after its end.
pub fn check_time_range(min_t: i64, max_t: i64) -> Result<()> {
    if min_t > max_t {
        return Err(StoreApiError::BadRequest(format!(
            "min time {min_t} is after max time {max_t}"
        )));
    }
    Ok(())
}

/// The range of a label request: Thanos sends `start`/`end`; both zero (an old
/// client, or none given) means all time.
pub fn label_range(start: i64, end: i64) -> Result<(i64, i64)> {
    if start == 0 && end == 0 {
        return Ok((i64::MIN, i64::MAX));
    }
    check_time_range(start, end)?;
    Ok((start, end))
}

/// The series' labels with the external labels set (overriding), sorted by name.
pub fn with_external(labels: &Labels, external: &ExternalLabels) -> Vec<Label> {
    let mut out: Vec<Label> = labels
        .iter()
        .filter(|l| !external.contains_key(&*l.name))
        .map(|l| Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect();
    out.extend(external.iter().map(|(n, v)| Label {
        name: n.clone(),
        value: v.clone(),
    }));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A validated `Series` request.
#[derive(Debug)]
pub struct SeriesPlan {
    pub min_t: i64,
    pub max_t: i64,
    pub selection: Selection,
    pub skip_chunks: bool,
}

impl SeriesPlan {
    pub fn new(req: &SeriesRequest, external: &ExternalLabels) -> Result<SeriesPlan> {
        check_time_range(req.min_time, req.max_time)?;
        let selection = convert_matchers(&req.matchers, external)?;
        // As Thanos's sidecar: a mismatch on an external label answers nothing
        // before the remaining matchers are looked at.
        if selection.can_match && selection.matchers.iter().all(Matcher::matches_empty) {
            return Err(StoreApiError::BadRequest(
                "at least one matcher (other than on external labels) must not match the empty string"
                    .into(),
            ));
        }
        Ok(SeriesPlan {
            min_t: req.min_time,
            max_t: req.max_time,
            selection,
            skip_chunks: req.skip_chunks,
        })
    }
}

/// Reads the series of `plan` and hands them to `emit` as `SeriesResponse` frames,
/// sorted by their labels (external labels included). `emit` returns false when the
/// client has gone away; reading then stops.
pub fn produce_series(
    queryable: &dyn Queryable,
    chunks: &dyn ChunkQueryable,
    plan: &SeriesPlan,
    external: &ExternalLabels,
    emit: &mut dyn FnMut(SeriesResponse) -> bool,
) -> Result<()> {
    let mut producer = SeriesProducer::open(queryable, chunks, plan, external)?;
    loop {
        let frames = producer.next_frames(64)?;
        if frames.is_empty() {
            return Ok(());
        }
        for f in frames {
            if !emit(f) {
                return Ok(());
            }
        }
    }
}

/// Held series of an answer that is sorted in memory.
type HeldSeries = std::iter::Peekable<std::vec::IntoIter<(Vec<Label>, Vec<AggrChunk>)>>;

/// The frames of one `Series` answer, produced a few at a time: the caller takes a
/// batch on a blocking thread, then sends it from async code, so that no thread ever
/// waits on a client (a client that does not read held one of tokio's blocking
/// threads for good; ~530 of them starved every other blocking task).
pub struct SeriesProducer {
    source: Source,
    min_t: i64,
    max_t: i64,
    skip_chunks: bool,
    external: ExternalLabels,
}

enum Source {
    /// Series straight from storage, already in the answer's order.
    Streaming(crate::storage::ChunkSeriesSet),
    /// Series read whole and sorted (an external label's name is stored).
    Held(HeldSeries),
    Done,
}

impl SeriesProducer {
    /// Opens the storage read of `plan` (and, when series must be re-sorted, reads
    /// them all, up to [`MAX_RESORTED_SERIES`]).
    pub fn open(
        queryable: &dyn Queryable,
        chunks: &dyn ChunkQueryable,
        plan: &SeriesPlan,
        external: &ExternalLabels,
    ) -> Result<SeriesProducer> {
        let mut producer = SeriesProducer {
            source: Source::Done,
            min_t: plan.min_t,
            max_t: plan.max_t,
            skip_chunks: plan.skip_chunks,
            external: external.clone(),
        };
        if !plan.selection.can_match {
            return Ok(producer);
        }
        let matchers = &plan.selection.matchers;
        // Setting the same labels on every series keeps storage's order, unless a
        // stored series carries an external label's name: then the override can
        // reorder (or merge) series, and the answer is sorted in memory first.
        let resort = !external.is_empty() && {
            let querier = queryable
                .querier(plan.min_t, plan.max_t)
                .map_err(|e| StoreApiError::storage("open querier", e))?;
            let carried = |matchers: &[Matcher]| -> Result<bool> {
                let names = querier
                    .label_names(matchers)
                    .map_err(|e| StoreApiError::storage("read label names", e))?;
                Ok(names.iter().any(|n| external.contains_key(n)))
            };
            // All names first (read from the indexes' name tables, cheap); the
            // matching series only when some series carries an external label's name.
            carried(&[])? && carried(matchers)?
        };
        let querier = chunks
            .chunk_querier(plan.min_t, plan.max_t)
            .map_err(|e| StoreApiError::storage("open chunk querier", e))?;
        let set = querier
            .select_chunks(matchers)
            .map_err(|e| StoreApiError::storage("select series", e))?;
        producer.source = Source::Streaming(set);
        if resort {
            let mut held: Vec<(Vec<Label>, Vec<AggrChunk>)> = Vec::new();
            while let Some(series) = producer.next_series()? {
                if held.len() >= MAX_RESORTED_SERIES {
                    return Err(StoreApiError::BadRequest(format!(
                        "more than {MAX_RESORTED_SERIES} series match and stored series carry an external label's name; narrow the matchers"
                    )));
                }
                held.push(series);
            }
            held.sort_by(|a, b| compare_labels(&a.0, &b.0));
            producer.source = Source::Held(held.into_iter().peekable());
        }
        Ok(producer)
    }

    /// The next series from storage with its chunks in range (series without any
    /// are skipped).
    fn next_series(&mut self) -> Result<Option<(Vec<Label>, Vec<AggrChunk>)>> {
        let Source::Streaming(set) = &mut self.source else {
            return Ok(None);
        };
        for s in set.by_ref() {
            let s = s.map_err(|e| StoreApiError::storage("read series", e))?;
            let aggr: Vec<AggrChunk> = s
                .chunks
                .iter()
                .filter(|c| c.max_t >= self.min_t && c.min_t <= self.max_t)
                .map(|c| AggrChunk {
                    min_time: c.min_t,
                    max_time: c.max_t,
                    raw: (!self.skip_chunks).then(|| Chunk {
                        r#type: chunk::Encoding::Xor as i32,
                        data: c.bytes.clone(),
                    }),
                    ..AggrChunk::default()
                })
                .collect();
            if aggr.is_empty() {
                continue;
            }
            return Ok(Some((with_external(&s.labels, &self.external), aggr)));
        }
        self.source = Source::Done;
        Ok(None)
    }

    /// The next frames of the answer: at least `max_frames` unless the answer ends
    /// (a series split into several frames finishes its batch, so a batch may hold
    /// a few more). Empty once the answer is complete.
    pub fn next_frames(&mut self, max_frames: usize) -> Result<Vec<SeriesResponse>> {
        let mut out = Vec::new();
        let skip_chunks = self.skip_chunks;
        while out.len() < max_frames.max(1) {
            let series = match &mut self.source {
                Source::Done => break,
                Source::Streaming(_) => self.next_series()?,
                Source::Held(it) => match it.next() {
                    Some((labels, mut aggr)) => {
                        // Stored series that differ only in an overridden label
                        // become one.
                        while let Some((next, _)) = it.peek() {
                            if compare_labels(next, &labels) != std::cmp::Ordering::Equal {
                                break;
                            }
                            if let Some((_, more)) = it.next() {
                                aggr.extend(more);
                            }
                        }
                        aggr.sort_by_key(|c| (c.min_time, c.max_time));
                        Some((labels, aggr))
                    }
                    None => {
                        self.source = Source::Done;
                        None
                    }
                },
            };
            let Some((labels, aggr)) = series else {
                break;
            };
            emit_series(labels, aggr, skip_chunks, &mut |f| {
                out.push(f);
                true
            });
        }
        Ok(out)
    }
}

/// Label sets in Prometheus's order: pair by pair, name then value; a prefix first.
fn compare_labels(a: &[Label], b: &[Label]) -> std::cmp::Ordering {
    a.iter()
        .map(|l| (&l.name, &l.value))
        .cmp(b.iter().map(|l| (&l.name, &l.value)))
}

/// Sends one series in as many frames as its chunk bytes need. With `skip_chunks`
/// the series goes out once, labels only.
fn emit_series(
    labels: Vec<Label>,
    aggr: Vec<AggrChunk>,
    skip_chunks: bool,
    emit: &mut dyn FnMut(SeriesResponse) -> bool,
) -> bool {
    let frame = |labels: Vec<Label>, chunks: Vec<AggrChunk>| SeriesResponse {
        result: Some(series_response::Result::Series(Series { labels, chunks })),
    };
    if skip_chunks {
        return emit(frame(labels, Vec::new()));
    }
    let mut chunks = Vec::new();
    let mut size = 0usize;
    for c in aggr {
        let len = c.raw.as_ref().map_or(0, |r| r.data.len());
        if !chunks.is_empty() && size + len > MAX_CHUNK_BYTES_IN_FRAME {
            if !emit(frame(labels.clone(), std::mem::take(&mut chunks))) {
                return false;
            }
            size = 0;
        }
        size += len;
        chunks.push(c);
    }
    chunks.is_empty() || emit(frame(labels, chunks))
}

/// Sorted unique label names over the series matching `selection` in range, with the
/// external label names added when any series matches (as Thanos's sidecar answers).
pub fn label_names(
    queryable: &dyn Queryable,
    min_t: i64,
    max_t: i64,
    selection: &Selection,
    external: &ExternalLabels,
) -> Result<Vec<String>> {
    if !selection.can_match {
        return Ok(Vec::new());
    }
    let mut names = queryable
        .querier(min_t, max_t)
        .and_then(|q| q.label_names(&selection.matchers))
        .map_err(|e| StoreApiError::storage("read label names", e))?;
    if !names.is_empty() {
        names.extend(external.keys().cloned());
        names.sort();
        names.dedup();
    }
    Ok(names)
}

/// Sorted unique values of `name` over the series matching `selection` in range; an
/// external label has its one value.
pub fn label_values(
    queryable: &dyn Queryable,
    name: &str,
    min_t: i64,
    max_t: i64,
    selection: &Selection,
    external: &ExternalLabels,
) -> Result<Vec<String>> {
    if name.is_empty() {
        return Err(StoreApiError::BadRequest("label name is empty".into()));
    }
    if !selection.can_match {
        return Ok(Vec::new());
    }
    if let Some(v) = external.get(name) {
        return Ok(vec![v.clone()]);
    }
    queryable
        .querier(min_t, max_t)
        .and_then(|q| q.label_values(name, &selection.matchers))
        .map_err(|e| StoreApiError::storage("read label values", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use crate::storage::Appendable;
    use crate::tsdb::chunkenc::XorIterator;
    use crate::tsdb::{Db, DbOptions};

    fn m(t: label_matcher::Type, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    fn ext(pairs: &[(&str, &str)]) -> ExternalLabels {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn names(labels: &[Label]) -> Vec<String> {
        labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect()
    }

    #[test]
    fn matcher_types_convert_to_odin_matchers() {
        use label_matcher::Type;
        let sel = convert_matchers(
            &[
                m(Type::Eq, "__name__", "up"),
                m(Type::Neq, "job", "a"),
                m(Type::Re, "instance", "h.*"),
                m(Type::Nre, "zone", "eu|us"),
            ],
            &ExternalLabels::new(),
        )
        .unwrap();
        assert!(sel.can_match);
        let kinds: Vec<MatchType> = sel.matchers.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MatchType::Equal,
                MatchType::NotEqual,
                MatchType::Regex,
                MatchType::NotRegex
            ]
        );
        // Regexes are anchored, as in Prometheus and Thanos.
        assert!(sel.matchers[2].matches("host") && !sel.matchers[2].matches("xhost"));
        assert!(!sel.matchers[3].matches("eu") && sel.matchers[3].matches("eux"));
    }

    #[test]
    fn matchers_on_external_labels_are_checked_and_dropped() {
        use label_matcher::Type;
        let external = ext(&[("cluster", "eu"), ("replica", "a")]);
        let sel = convert_matchers(
            &[
                m(Type::Eq, "__name__", "up"),
                m(Type::Re, "cluster", "eu|us"),
            ],
            &external,
        )
        .unwrap();
        assert!(sel.can_match);
        assert_eq!(sel.matchers.len(), 1);
        assert_eq!(sel.matchers[0].name, "__name__");
        for bad in [
            m(Type::Eq, "cluster", "us"),
            m(Type::Neq, "replica", "a"),
            m(Type::Nre, "cluster", "e.*"),
        ] {
            let sel =
                convert_matchers(&[m(Type::Eq, "__name__", "up"), bad.clone()], &external).unwrap();
            assert!(!sel.can_match, "{bad:?} matched");
        }
    }

    #[test]
    fn invalid_regex_and_unknown_type_are_bad_requests() {
        let err = convert_matchers(
            &[m(label_matcher::Type::Re, "job", "(unclosed")],
            &ExternalLabels::new(),
        )
        .unwrap_err();
        assert!(matches!(err, StoreApiError::BadRequest(_)));
        assert!(err.to_string().contains("invalid regex"), "{err}");
        let bad_type = LabelMatcher {
            r#type: 9,
            name: "job".into(),
            value: "a".into(),
        };
        let err = convert_matchers(&[bad_type], &ExternalLabels::new()).unwrap_err();
        assert!(err.to_string().contains("unknown matcher type 9"), "{err}");
    }

    #[test]
    fn inverted_time_range_and_empty_matching_selectors_are_refused() {
        let req = SeriesRequest {
            min_time: 10,
            max_time: 5,
            matchers: vec![m(label_matcher::Type::Eq, "__name__", "up")],
            ..Default::default()
        };
        let err = SeriesPlan::new(&req, &ExternalLabels::new()).unwrap_err();
        assert!(err.to_string().contains("min time 10 is after max time 5"));
        let req = SeriesRequest {
            min_time: 0,
            max_time: 5,
            matchers: vec![m(label_matcher::Type::Re, "job", ".*")],
            ..Default::default()
        };
        assert!(matches!(
            SeriesPlan::new(&req, &ExternalLabels::new()),
            Err(StoreApiError::BadRequest(_))
        ));
        // Only an external-label matcher that cannot match: nothing, not an error.
        let req = SeriesRequest {
            min_time: 0,
            max_time: 5,
            matchers: vec![m(label_matcher::Type::Eq, "cluster", "us")],
            ..Default::default()
        };
        let plan = SeriesPlan::new(&req, &ext(&[("cluster", "eu")])).unwrap();
        assert!(!plan.selection.can_match);
        assert!(label_range(0, 0).unwrap() == (i64::MIN, i64::MAX));
        assert!(label_range(5, 1).is_err());
    }

    #[test]
    fn external_labels_are_added_sorted_and_override_stored_ones() {
        let stored = Labels::from_pairs([("__name__", "up"), ("cluster", "x"), ("zone", "a")]);
        let got = with_external(&stored, &ext(&[("cluster", "eu"), ("replica", "r1")]));
        assert_eq!(
            names(&got),
            ["__name__=up", "cluster=eu", "replica=r1", "zone=a"]
        );
        let got = with_external(&stored, &ExternalLabels::new());
        assert_eq!(names(&got), ["__name__=up", "cluster=x", "zone=a"]);
    }

    fn db_with(series: &[(Labels, Vec<Sample>)]) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_for_tests(dir.path(), DbOptions::default(), &Default::default());
        let mut app = db.appender();
        for (l, samples) in series {
            for s in samples {
                app.append(l, s.t, s.v).unwrap();
            }
        }
        app.commit().unwrap();
        (dir, db)
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn samples(n: i64) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                t: i * 1000,
                v: i as f64,
            })
            .collect()
    }

    fn collect(db: &Db, plan: &SeriesPlan, external: &ExternalLabels) -> Vec<Series> {
        let mut out = Vec::new();
        produce_series(db, db, plan, external, &mut |r| {
            if let Some(series_response::Result::Series(s)) = r.result {
                out.push(s);
            }
            true
        })
        .unwrap();
        out
    }

    fn plan(req: SeriesRequest, external: &ExternalLabels) -> SeriesPlan {
        SeriesPlan::new(&req, external).unwrap()
    }

    #[test]
    fn series_go_out_sorted_with_external_labels_and_raw_xor_chunks() {
        let (_dir, db) = db_with(&[
            (l(&[("__name__", "m"), ("job", "b")]), samples(30)),
            (l(&[("__name__", "m"), ("job", "a")]), samples(30)),
            (l(&[("__name__", "other")]), samples(3)),
        ]);
        let external = ext(&[("cluster", "eu")]);
        let req = SeriesRequest {
            min_time: 0,
            max_time: 10_000,
            matchers: vec![m(label_matcher::Type::Eq, "__name__", "m")],
            ..Default::default()
        };
        let got = collect(&db, &plan(req.clone(), &external), &external);
        assert_eq!(got.len(), 2);
        assert_eq!(names(&got[0].labels), ["__name__=m", "cluster=eu", "job=a"]);
        assert_eq!(names(&got[1].labels)[2], "job=b");
        let raw = got[0].chunks[0].raw.as_ref().unwrap();
        assert_eq!(raw.r#type, chunk::Encoding::Xor as i32);
        let decoded: Vec<(i64, f64)> = got[0]
            .chunks
            .iter()
            .flat_map(|c| XorIterator::new(&c.raw.as_ref().unwrap().data).collect::<Vec<_>>())
            .collect();
        // Whole chunks go out: the samples past max_time too.
        assert_eq!(decoded.len(), 30);
        assert_eq!(decoded[29], (29_000, 29.0));

        let got = collect(
            &db,
            &plan(
                SeriesRequest {
                    skip_chunks: true,
                    ..req.clone()
                },
                &external,
            ),
            &external,
        );
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| s.chunks.is_empty()));

        // Out of range: nothing.
        let got = collect(
            &db,
            &plan(
                SeriesRequest {
                    min_time: 100_000,
                    max_time: 200_000,
                    ..req
                },
                &external,
            ),
            &external,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn override_of_a_stored_label_resorts_and_merges() {
        // Stored order: {cluster=a, job=z} < {cluster=b, job=y}; with cluster=eu
        // set on both the order flips to job=y, job=z.
        let (_dir, db) = db_with(&[
            (
                l(&[("__name__", "m"), ("cluster", "a"), ("job", "z")]),
                samples(2),
            ),
            (
                l(&[("__name__", "m"), ("cluster", "b"), ("job", "y")]),
                samples(2),
            ),
            (
                l(&[("__name__", "m"), ("cluster", "c"), ("job", "y")]),
                samples(2),
            ),
        ]);
        let external = ext(&[("cluster", "eu")]);
        let req = SeriesRequest {
            min_time: 0,
            max_time: 10_000,
            matchers: vec![m(label_matcher::Type::Eq, "__name__", "m")],
            ..Default::default()
        };
        let got = collect(&db, &plan(req, &external), &external);
        let jobs: Vec<String> = got.iter().map(|s| names(&s.labels)[2].clone()).collect();
        assert_eq!(jobs, ["job=y", "job=z"]);
        assert_eq!(got[0].chunks.len(), 2, "two stored series became one");
    }

    #[test]
    fn a_gone_client_stops_the_read() {
        let input: Vec<(Labels, Vec<Sample>)> = (0..50)
            .map(|i| {
                let i = format!("{i:03}");
                (l(&[("__name__", "m"), ("i", &i)]), samples(2))
            })
            .collect();
        let (_dir, db) = db_with(&input);
        let req = SeriesRequest {
            min_time: 0,
            max_time: 10_000,
            matchers: vec![m(label_matcher::Type::Eq, "__name__", "m")],
            ..Default::default()
        };
        let mut calls = 0;
        produce_series(
            &db,
            &db,
            &plan(req, &ExternalLabels::new()),
            &ExternalLabels::new(),
            &mut |_| {
                calls += 1;
                calls < 3
            },
        )
        .unwrap();
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_series_larger_than_a_frame_is_split_in_order() {
        let c = |t: i64, len: usize| AggrChunk {
            min_time: t,
            max_time: t + 1,
            raw: Some(Chunk {
                r#type: 0,
                data: bytes::Bytes::from(vec![0u8; len]),
            }),
            ..AggrChunk::default()
        };
        let half = MAX_CHUNK_BYTES_IN_FRAME / 2 + 1;
        let labels = vec![Label {
            name: "a".into(),
            value: "1".into(),
        }];
        let mut frames = Vec::new();
        assert!(emit_series(
            labels,
            vec![c(0, half), c(10, half), c(20, 10)],
            false,
            &mut |r| {
                frames.push(r);
                true
            }
        ));
        let mins: Vec<Vec<i64>> = frames
            .iter()
            .map(|f| match &f.result {
                Some(series_response::Result::Series(s)) => {
                    s.chunks.iter().map(|c| c.min_time).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(mins, [vec![0], vec![10, 20]]);
    }

    #[test]
    fn label_names_and_values_include_external_labels() {
        let (_dir, db) = db_with(&[
            (l(&[("__name__", "m"), ("job", "a")]), samples(2)),
            (l(&[("__name__", "n"), ("zone", "z")]), samples(2)),
        ]);
        let external = ext(&[("cluster", "eu")]);
        let all = convert_matchers(&[], &external).unwrap();
        let got = label_names(&db, i64::MIN, i64::MAX, &all, &external).unwrap();
        assert_eq!(got, ["__name__", "cluster", "job", "zone"]);
        let only_m =
            convert_matchers(&[m(label_matcher::Type::Eq, "__name__", "m")], &external).unwrap();
        let got = label_names(&db, i64::MIN, i64::MAX, &only_m, &external).unwrap();
        assert_eq!(got, ["__name__", "cluster", "job"]);
        let got = label_values(&db, "__name__", i64::MIN, i64::MAX, &all, &external).unwrap();
        assert_eq!(got, ["m", "n"]);
        let got = label_values(&db, "cluster", i64::MIN, i64::MAX, &all, &external).unwrap();
        assert_eq!(got, ["eu"]);
        let elsewhere =
            convert_matchers(&[m(label_matcher::Type::Eq, "cluster", "us")], &external).unwrap();
        assert!(
            label_names(&db, i64::MIN, i64::MAX, &elsewhere, &external)
                .unwrap()
                .is_empty()
        );
        assert!(
            label_values(&db, "job", i64::MIN, i64::MAX, &elsewhere, &external)
                .unwrap()
                .is_empty()
        );
        assert!(label_values(&db, "", i64::MIN, i64::MAX, &all, &external).is_err());
    }
}
