//! Decoding and validating a remote-write request, and appending it.
//!
//! Everything a client can send is checked before anything is stored: the snappy
//! frame's declared length against the limit (before decompressing), the protobuf,
//! and every series' labels. A request with one bad series is refused whole with a
//! message that names the series, so the client sees exactly what to fix.

use std::sync::Arc;

use prost::Message;

use super::prompb::WriteRequest;
use crate::model::{Label, Labels, METRIC_NAME};
use crate::storage::{AppendSummary, Appendable};

/// Bounds on one request.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    /// Largest compressed body accepted.
    pub max_body_bytes: usize,
    /// Largest decompressed message accepted (checked from the snappy header before
    /// any decompression).
    pub max_decoded_bytes: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 256 << 20,
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
    #[error("protobuf: {0}")]
    Protobuf(String),
    #[error("series {index}: {message}")]
    InvalidSeries { index: usize, message: String },
    #[error("{0}")]
    Storage(String),
}

/// What a stored request did.
pub type WriteOutcome = AppendSummary;

/// Decompresses and decodes a remote-write body.
pub fn decode_write_request(body: &[u8], limits: WriteLimits) -> Result<WriteRequest, WriteError> {
    if body.len() > limits.max_body_bytes {
        return Err(WriteError::BodyTooLarge(body.len(), limits.max_body_bytes));
    }
    let len = snap::raw::decompress_len(body).map_err(|e| WriteError::Snappy(e.to_string()))?;
    if len > limits.max_decoded_bytes {
        return Err(WriteError::DecodedTooLarge(len, limits.max_decoded_bytes));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WriteError::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| WriteError::Protobuf(e.to_string()))
}

/// Validates every series and turns them into label sets, in request order.
fn validated_labels(req: &WriteRequest) -> Result<Vec<Labels>, WriteError> {
    let mut out = Vec::with_capacity(req.timeseries.len());
    for (index, ts) in req.timeseries.iter().enumerate() {
        let bad = |message: String| WriteError::InvalidSeries { index, message };
        if ts.labels.is_empty() {
            return Err(bad("empty label set".into()));
        }
        let mut labels: Vec<Label> = Vec::with_capacity(ts.labels.len());
        for l in &ts.labels {
            if !is_valid_label_name(&l.name) {
                return Err(bad(format!("invalid label name {:?}", l.name)));
            }
            if l.name == METRIC_NAME && l.value.is_empty() {
                return Err(bad("empty metric name".into()));
            }
            if l.value.is_empty() {
                // An empty value means the label is absent, as in Prometheus.
                continue;
            }
            labels.push(Label {
                name: Arc::from(l.name.as_str()),
                value: Arc::from(l.value.as_str()),
            });
        }
        Labels::check_sorted_unique(&labels).map_err(|m| {
            let shown: Vec<String> = ts
                .labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            bad(format!("{m} in {{{}}}", shown.join(", ")))
        })?;
        if labels.is_empty() {
            return Err(bad("empty label set".into()));
        }
        out.push(Labels::from_sorted(labels));
    }
    Ok(out)
}

/// Label names as Prometheus 2.42 allows them: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validates the request and appends every sample through `storage`; blocks until the
/// batch is durable.
pub fn to_appends(
    storage: &dyn Appendable,
    req: &WriteRequest,
) -> Result<WriteOutcome, WriteError> {
    let labels = validated_labels(req)?;
    let mut app = storage.appender();
    for (ts, labels) in req.timeseries.iter().zip(&labels) {
        for s in &ts.samples {
            if let Err(e) = app.append(labels, s.timestamp, s.value) {
                app.rollback();
                return Err(WriteError::Storage(e.to_string()));
            }
        }
    }
    app.commit().map_err(|e| WriteError::Storage(e.to_string()))
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
    fn invalid_label_sets_are_named() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[("b", "1"), ("a", "1")], "not sorted"),
            (&[("a", "1"), ("a", "2")], "duplicate label name"),
            (&[("__name__", ""), ("a", "1")], "empty metric name"),
            (&[("0a", "1")], "invalid label name"),
        ];
        for (labels, want) in cases {
            let err = validated_labels(&req(labels)).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
