//! A zero-copy decoder for remote-write requests.
//!
//! Ingestion is dominated by allocation when every label name and value becomes its own
//! `String` (what a generated protobuf decoder does). This decoder borrows every string
//! from the decompressed buffer and lays series, labels and samples out in three flat
//! vectors, so a request of thousands of series costs a handful of allocations. Field
//! numbers follow `proto/prometheus/remote.proto`; unknown fields (exemplars, native
//! histograms, metadata) are skipped as protobuf requires.

use std::ops::Range;

use crate::model::Sample;

/// One decoded request, borrowing from the buffer it was decoded from.
#[derive(Debug, Default)]
pub struct RawWriteRequest<'a> {
    pub series: Vec<RawSeries>,
    /// Label pairs of all series, in request order.
    pub labels: Vec<(&'a str, &'a str)>,
    pub samples: Vec<Sample>,
}

/// Where one series' labels and samples lie in the request's flat vectors.
#[derive(Debug, Clone)]
pub struct RawSeries {
    pub labels: Range<usize>,
    pub samples: Range<usize>,
}

impl<'a> RawWriteRequest<'a> {
    pub fn labels_of(&self, s: &RawSeries) -> &[(&'a str, &'a str)] {
        &self.labels[s.labels.clone()]
    }

    pub fn samples_of(&self, s: &RawSeries) -> &[Sample] {
        &self.samples[s.samples.clone()]
    }

    pub fn num_samples(&self) -> usize {
        self.samples.len()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated message")]
    Truncated,
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    #[error("invalid wire type {0} for field {1}")]
    WireType(u8, u32),
    #[error("invalid UTF-8 in a label")]
    Utf8,
    #[error("field number 0")]
    FieldZero,
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(DecodeError::VarintOverflow);
                }
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        if self.buf.len() >= 10 {
            Err(DecodeError::VarintOverflow)
        } else {
            Err(DecodeError::Truncated)
        }
    }

    fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let k = self.varint()?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(DecodeError::FieldZero);
        }
        Ok((field, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
        let (head, rest) = self.buf.split_at_checked(n).ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(head)
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let (head, rest) = self.buf.split_at_checked(8).ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        let mut b = [0u8; 8];
        b.copy_from_slice(head);
        Ok(u64::from_le_bytes(b))
    }

    fn skip(&mut self, wire: u8, field: u32) -> Result<(), DecodeError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => {
                let rest = self.buf.get(4..).ok_or(DecodeError::Truncated)?;
                self.buf = rest;
                Ok(())
            }
            w => Err(DecodeError::WireType(w, field)),
        }
    }
}

fn utf8(b: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| DecodeError::Utf8)
}

/// Decodes a (decompressed) `WriteRequest`.
pub fn decode_raw(buf: &[u8]) -> Result<RawWriteRequest<'_>, DecodeError> {
    let mut req = RawWriteRequest::default();
    let mut r = Reader { buf };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, LEN) => decode_series(r.bytes()?, &mut req)?,
            (1, w) => return Err(DecodeError::WireType(w, field)),
            _ => r.skip(wire, field)?,
        }
    }
    Ok(req)
}

fn decode_series<'a>(buf: &'a [u8], req: &mut RawWriteRequest<'a>) -> Result<(), DecodeError> {
    let (l0, s0) = (req.labels.len(), req.samples.len());
    let mut r = Reader { buf };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, LEN) => req.labels.push(decode_label(r.bytes()?)?),
            (2, LEN) => req.samples.push(decode_sample(r.bytes()?)?),
            (1 | 2, w) => return Err(DecodeError::WireType(w, field)),
            _ => r.skip(wire, field)?,
        }
    }
    req.series.push(RawSeries {
        labels: l0..req.labels.len(),
        samples: s0..req.samples.len(),
    });
    Ok(())
}

fn decode_label(buf: &[u8]) -> Result<(&str, &str), DecodeError> {
    let (mut name, mut value) = ("", "");
    let mut r = Reader { buf };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, LEN) => name = utf8(r.bytes()?)?,
            (2, LEN) => value = utf8(r.bytes()?)?,
            (1 | 2, w) => return Err(DecodeError::WireType(w, field)),
            _ => r.skip(wire, field)?,
        }
    }
    Ok((name, value))
}

fn decode_sample(buf: &[u8]) -> Result<Sample, DecodeError> {
    let mut s = Sample { t: 0, v: 0.0 };
    let mut r = Reader { buf };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, FIXED64) => s.v = f64::from_bits(r.fixed64()?),
            (2, VARINT) => s.t = r.varint()? as i64,
            (1 | 2, w) => return Err(DecodeError::WireType(w, field)),
            _ => r.skip(wire, field)?,
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::prompb;
    use proptest::prelude::*;
    use prost::Message;

    fn sample_request() -> prompb::WriteRequest {
        prompb::WriteRequest {
            timeseries: vec![
                prompb::TimeSeries {
                    labels: vec![
                        prompb::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        prompb::Label {
                            name: "job".into(),
                            value: "ñode".into(),
                        },
                    ],
                    samples: vec![
                        prompb::Sample {
                            value: 1.5,
                            timestamp: -3,
                        },
                        prompb::Sample {
                            value: f64::from_bits(0x7ff0_0000_0000_0002),
                            timestamp: 7,
                        },
                    ],
                },
                prompb::TimeSeries {
                    labels: vec![],
                    samples: vec![],
                },
            ],
        }
    }

    #[test]
    fn agrees_with_prost() {
        let want = sample_request();
        let bytes = want.encode_to_vec();
        let got = decode_raw(&bytes).unwrap();
        assert_eq!(got.series.len(), 2);
        let s0 = &got.series[0];
        assert_eq!(got.labels_of(s0), &[("__name__", "up"), ("job", "ñode")]);
        let samples = got.samples_of(s0);
        assert_eq!((samples[0].t, samples[0].v), (-3, 1.5));
        assert_eq!(samples[1].v.to_bits(), 0x7ff0_0000_0000_0002);
        assert!(got.labels_of(&got.series[1]).is_empty());
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = sample_request().encode_to_vec();
        // Field 3 (metadata in remote write), length-delimited, 2 bytes.
        bytes.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01]);
        assert_eq!(decode_raw(&bytes).unwrap().series.len(), 2);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample_request().encode_to_vec();
        for n in 1..bytes.len() {
            // A prefix may end exactly between two series; that is a valid message.
            if let Ok(r) = decode_raw(&bytes[..n]) {
                assert!(r.series.len() <= 2);
            }
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_raw(&bytes);
        }
    }
}
