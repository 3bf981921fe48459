//! Decoding and validating a remote-write request, and appending it.
//!
//! Everything a client can send is checked before anything is stored: the snappy
//! frame's declared length against the limit (before decompressing), the protobuf,
//! and every series' labels (see [`super::decode`]: checked as they are read, with
//! nothing allocated). A request with one bad series is refused whole with a message
//! that names the series, so the client sees exactly what to fix.

use prost::Message;

use super::decode::{self, DecodeError};
use super::prompb::WriteRequest;
use crate::model::Sample;
use crate::storage::{AppendSummary, Appendable, Appender};

/// Bounds on one request.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    /// Largest compressed body accepted.
    pub max_body_bytes: usize,
    /// Largest decompressed message accepted (checked from the snappy header before
    /// any decompression).
    pub max_decoded_bytes: usize,
    /// Requests decoded and appended at once; more wait their turn, so that a burst
    /// of senders cannot hold one decompressed buffer each.
    pub max_concurrent: usize,
    /// Most series one request may hold: each new one costs the head about 800
    /// bytes for good, and ~64k of them in one request raised RSS by 85 MiB. Senders
    /// send far fewer (a Prometheus request holds at most 2,000; vmagent 10,000).
    pub max_series: usize,
    /// Most samples one request may hold. Appending holds about 18 bytes a sample
    /// until the commit, and a sample can take 2 bytes on the wire: this keeps what
    /// one request costs near its decoded size, whatever its shape. Senders batch far
    /// fewer (Prometheus: 2,000 a request by default).
    pub max_samples: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            // The body, its decoded form, the label sets and the WAL record built
            // from it stay within the 64 MiB one request may cost (issue 14): a
            // label value is held once by each, so 10 MiB of them cost ~50 MiB.
            // Real batches are far smaller (Prometheus sends 2,000 samples a
            // request; the OpenTelemetry exporter at most 3 MB; vmagent 8 MB).
            max_body_bytes: 10 << 20,
            max_decoded_bytes: 10 << 20,
            max_concurrent: 8,
            max_series: 40_000,
            max_samples: 500_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("request body of {0} bytes exceeds the limit of {1} bytes")]
    BodyTooLarge(usize, usize),
    #[error("{0}")]
    Snappy(String),
    #[error("decompressed length {0} exceeds the limit of {1} bytes")]
    DecodedTooLarge(usize, usize),
    /// More series or samples than one request may hold.
    #[error("{0}")]
    TooLarge(String),
    #[error("protobuf: {0}")]
    Protobuf(String),
    #[error("series {index}: {message}")]
    InvalidSeries { index: usize, message: String },
    /// Storage failed (the kind says how the API answers: 507 for a full disk, 503,
    /// 500).
    #[error("{message}")]
    Storage {
        kind: crate::storage::ErrorKind,
        message: String,
    },
}

impl From<DecodeError> for WriteError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::InvalidSeries { index, source } => WriteError::InvalidSeries {
                index,
                message: source.to_string(),
            },
            e @ DecodeError::TooMany { .. } => WriteError::TooLarge(e.to_string()),
            e => WriteError::Protobuf(e.to_string()),
        }
    }
}

/// What a stored request did.
pub type WriteOutcome = AppendSummary;

/// Decompresses a remote-write body into `buf` (reused between requests by the
/// caller), checking the declared length before decompressing anything.
pub fn decompress_into(
    body: &[u8],
    limits: WriteLimits,
    buf: &mut Vec<u8>,
) -> Result<(), WriteError> {
    if body.len() > limits.max_body_bytes {
        return Err(WriteError::BodyTooLarge(body.len(), limits.max_body_bytes));
    }
    let len = snap::raw::decompress_len(body).map_err(|e| WriteError::Snappy(e.to_string()))?;
    if len > limits.max_decoded_bytes {
        return Err(WriteError::DecodedTooLarge(len, limits.max_decoded_bytes));
    }
    buf.clear();
    buf.resize(len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(body, buf)
        .map_err(|e| WriteError::Snappy(e.to_string()))?;
    buf.truncate(n);
    Ok(())
}

/// Decompresses, checks and decodes a remote-write body into owned messages (for
/// tools and tests; the receiver itself uses the streaming decoder).
pub fn decode_write_request(body: &[u8], limits: WriteLimits) -> Result<WriteRequest, WriteError> {
    let mut raw = Vec::new();
    decompress_into(body, limits, &mut raw)?;
    decode::validate(&raw)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| WriteError::Protobuf(e.to_string()))
}

/// Checks every series of a decompressed request, then appends them all through
/// `storage` and commits; blocks until the batch is durable. Nothing is stored when
/// any series is invalid. Beyond the buffer, the request costs only what the
/// appender keeps of its samples: the decoder's own scratch is a few KiB.
pub fn write_decoded(
    storage: &dyn Appendable,
    raw: &[u8],
    limits: WriteLimits,
) -> Result<WriteOutcome, WriteError> {
    let mut app = storage.appender();
    let most = decode::RequestShape {
        series: limits.max_series,
        samples: limits.max_samples,
    };
    let mut ahead = LookAhead::default();
    let appended = decode::decode_each_series(raw, most, |labels, samples| {
        ahead.push(app.as_mut(), labels, samples)
    })
    .and_then(|_| ahead.finish(app.as_mut()));
    if let Err(e) = appended {
        app.rollback();
        return Err(e);
    }
    app.commit().map_err(|e| WriteError::Storage {
        kind: e.kind(),
        message: e.to_string(),
    })
}

/// How many series ahead of its append a series is prepared
/// ([`Appender::prepare_pairs`]): enough to cover a cache miss with the work on the
/// series in between.
const LOOKUP_AHEAD: usize = 8;

/// Series decoded but not appended yet: each is prepared when decoded and appended
/// [`LOOKUP_AHEAD`] series later, so that the storage's lookups overlap their waits
/// on memory. Emptied series are reused, so a request allocates only the first few.
#[derive(Default)]
struct LookAhead<'a> {
    queue: std::collections::VecDeque<Decoded<'a>>,
    spare: Vec<Decoded<'a>>,
}

#[derive(Default)]
struct Decoded<'a> {
    key: u64,
    labels: Vec<(&'a str, &'a str)>,
    samples: Vec<Sample>,
}

impl<'a> LookAhead<'a> {
    fn push(
        &mut self,
        app: &mut dyn Appender,
        labels: &[(&'a str, &'a str)],
        samples: &[Sample],
    ) -> Result<(), WriteError> {
        let mut next = self.spare.pop().unwrap_or_default();
        next.key = app.prepare_pairs(labels);
        next.labels.clear();
        next.labels.extend_from_slice(labels);
        next.samples.clear();
        next.samples.extend_from_slice(samples);
        self.queue.push_back(next);
        if self.queue.len() > LOOKUP_AHEAD {
            self.append_oldest(app)?;
        }
        Ok(())
    }

    fn finish(&mut self, app: &mut dyn Appender) -> Result<(), WriteError> {
        while !self.queue.is_empty() {
            self.append_oldest(app)?;
        }
        Ok(())
    }

    fn append_oldest(&mut self, app: &mut dyn Appender) -> Result<(), WriteError> {
        let Some(d) = self.queue.pop_front() else {
            return Ok(());
        };
        let appended = app
            .append_pairs_prepared(d.key, &d.labels, &d.samples)
            .map_err(|e| WriteError::Storage {
                kind: crate::storage::ErrorKind::BadData,
                message: e.to_string(),
            });
        self.spare.push(d);
        appended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::prompb::{Label as PLabel, Sample as PSample, TimeSeries};

    fn req(labels: &[(&str, &str)]) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| PLabel {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: vec![PSample {
                    value: 1.0,
                    timestamp: 1,
                }],
            }],
        }
    }

    fn encode(r: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&r.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn decodes_a_valid_request() {
        let r = req(&[("__name__", "up"), ("job", "x")]);
        let got = decode_write_request(&encode(&r), WriteLimits::default()).unwrap();
        assert_eq!(got, r);
    }

    #[test]
    fn huge_declared_length_is_refused_before_decompressing() {
        // A snappy header claiming 1 GiB followed by nothing.
        let mut body = Vec::new();
        let mut n: u64 = 1 << 30;
        while n >= 0x80 {
            body.push((n as u8) | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        let err = decode_write_request(&body, WriteLimits::default()).unwrap_err();
        assert!(matches!(err, WriteError::DecodedTooLarge(..)), "{err}");
    }

    #[test]
    fn bad_snappy_and_bad_protobuf_are_errors() {
        assert!(matches!(
            decode_write_request(b"\x05garbage", WriteLimits::default()),
            Err(WriteError::Snappy(_))
        ));
        let body = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        assert!(matches!(
            decode_write_request(&body, WriteLimits::default()),
            Err(WriteError::Protobuf(_))
        ));
    }

    #[test]
    fn more_series_than_the_limit_are_refused_and_nothing_is_stored() {
        let mut r = req(&[("__name__", "up")]);
        r.timeseries = (0..4)
            .map(|i| TimeSeries {
                labels: vec![PLabel {
                    name: "__name__".into(),
                    value: format!("m{i}"),
                }],
                samples: vec![PSample {
                    value: 1.0,
                    timestamp: 1,
                }],
            })
            .collect();
        let raw = r.encode_to_vec();
        let storage = crate::storage::memory::MemoryStorage::new();
        let limits = WriteLimits {
            max_series: 3,
            ..WriteLimits::default()
        };
        let err = write_decoded(&storage, &raw, limits).unwrap_err();
        assert!(err.to_string().contains("more than 3 series"), "{err}");
        assert!(storage.dump().is_empty());
        let limits = WriteLimits {
            max_series: 4,
            ..WriteLimits::default()
        };
        assert_eq!(write_decoded(&storage, &raw, limits).unwrap().accepted, 4);
    }

    #[test]
    fn more_samples_than_the_limit_are_refused_before_anything_is_appended() {
        let mut r = req(&[("__name__", "up")]);
        r.timeseries[0].samples = (0..11)
            .map(|t| PSample {
                value: 1.0,
                timestamp: t,
            })
            .collect();
        let raw = r.encode_to_vec();
        let storage = crate::storage::memory::MemoryStorage::new();
        let limits = WriteLimits {
            max_samples: 10,
            ..WriteLimits::default()
        };
        let err = write_decoded(&storage, &raw, limits).unwrap_err();
        assert!(err.to_string().contains("more than 10 samples"), "{err}");
        assert!(storage.dump().is_empty());
        let limits = WriteLimits {
            max_samples: 11,
            ..WriteLimits::default()
        };
        assert_eq!(write_decoded(&storage, &raw, limits).unwrap().accepted, 11);
    }

    #[test]
    fn invalid_label_sets_are_named() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[("__name__", "a\nb")], "invalid metric name"),
            (&[("__name__", "up"), ("", "1")], "invalid label name"),
            (&[("b", "1"), ("a", "1")], "not sorted"),
            (&[("a", "1"), ("a", "2")], "duplicate label name"),
            (&[("__name__", ""), ("a", "1")], "empty metric name"),
            (&[("0a", "1")], "invalid label name"),
            (&[("a", "")], "empty label set"),
        ];
        let storage = crate::storage::memory::MemoryStorage::new();
        for (labels, want) in cases {
            let raw = req(labels).encode_to_vec();
            let err = write_decoded(&storage, &raw, WriteLimits::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
        assert!(
            storage.dump().is_empty(),
            "nothing stored from invalid requests"
        );
        let raw = req(&[("__name__", "up"), ("job", "x")]).encode_to_vec();
        let s = write_decoded(&storage, &raw, WriteLimits::default()).unwrap();
        assert_eq!(s.accepted, 1);
    }

    /// The receiver finds each series a few series after decoding it (see
    /// `LookAhead`): every series of a request larger than that window, new and
    /// known, and one split over several decoder calls, lands whole and in order.
    #[test]
    fn every_series_lands_through_the_look_ahead() {
        use crate::storage::{Queryable, SelectHints};
        let dir = tempfile::tempdir().unwrap();
        let db = crate::tsdb::Db::open_for_tests(
            dir.path(),
            crate::tsdb::DbOptions::default(),
            &Default::default(),
        );
        let now = crate::model::now_ms();
        let request = |round: i64| {
            let mut timeseries: Vec<TimeSeries> = (0..3 * LOOKUP_AHEAD + 1)
                .map(|i| TimeSeries {
                    labels: vec![
                        PLabel {
                            name: "__name__".into(),
                            value: "m".into(),
                        },
                        PLabel {
                            name: "i".into(),
                            value: format!("{i:03}"),
                        },
                    ],
                    samples: vec![PSample {
                        value: i as f64,
                        timestamp: now + round,
                    }],
                })
                .collect();
            // More samples than one decoder call carries.
            let long = decode::SAMPLES_PER_CALL as i64 + 5;
            timeseries[LOOKUP_AHEAD].samples = (0..long)
                .map(|t| PSample {
                    value: t as f64,
                    timestamp: now - 4 * long + 2 * t + 2 * long * round,
                })
                .collect();
            WriteRequest { timeseries }.encode_to_vec()
        };
        let first = write_decoded(&db, &request(0), WriteLimits::default()).unwrap();
        let second = write_decoded(&db, &request(1), WriteLimits::default()).unwrap();
        let per_request = 3 * LOOKUP_AHEAD as u64 + decode::SAMPLES_PER_CALL as u64 + 5;
        assert_eq!(
            (first.accepted, second.accepted),
            (per_request, per_request)
        );
        let q = db.querier(i64::MIN, i64::MAX).unwrap();
        let got: Vec<_> = q
            .select(
                &SelectHints::default(),
                &[crate::model::Matcher::equal("__name__", "m")],
            )
            .unwrap()
            .collect::<crate::storage::Result<_>>()
            .unwrap();
        assert_eq!(got.len(), 3 * LOOKUP_AHEAD + 1);
        for (i, series) in got.iter().enumerate() {
            assert_eq!(series.labels.get("i"), Some(format!("{i:03}").as_str()));
            let values: Vec<f64> = series.samples.iter().map(|s| s.v).collect();
            if i == LOOKUP_AHEAD {
                assert_eq!(values.len(), 2 * (decode::SAMPLES_PER_CALL + 5));
            } else {
                assert_eq!(values, [i as f64, i as f64], "series {i}");
            }
        }
    }
}
