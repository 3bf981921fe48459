//! The remote-write receiver: bad input is answered 400 with a clear message and the
//! server keeps serving; refused samples are counted per reason and the rest is kept.

use odin::remote::prompb::{Label, TimeSeries, WriteRequest};
use prost::Message;

use crate::common::{Odin, TestSeries, odin_dump};

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

fn raw_series(labels: &[(&str, &str)]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![odin::remote::prompb::Sample {
                value: 1.0,
                timestamp: 1000,
            }],
        }],
    };
    snappy(&req.encode_to_vec())
}

#[test]
fn bad_input_gets_400_with_a_reason_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let valid = raw_series(&[("__name__", "ok"), ("job", "x")]);
    let proto = {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "x".into(),
                }],
                samples: vec![],
            }],
        };
        req.encode_to_vec()
    };
    let huge_len = {
        let mut b = Vec::new();
        let mut n: u64 = 1 << 30;
        while n >= 0x80 {
            b.push((n as u8) | 0x80);
            n >>= 7;
        }
        b.push(n as u8);
        b.extend_from_slice(&[0u8; 16]);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated protobuf",
            snappy(&proto[..proto.len() - 2]),
            "protobuf",
        ),
        (
            "garbage protobuf",
            snappy(b"\xff\xfe\xfd\xfc\xfb"),
            "protobuf",
        ),
        ("bad snappy", b"\x10\x00\x01\x02garbage".to_vec(), "snappy"),
        ("huge declared length", huge_len, "exceeds the limit"),
        (
            "unsorted labels",
            raw_series(&[("job", "x"), ("__name__", "m")]),
            "not sorted",
        ),
        (
            "duplicate labels",
            raw_series(&[("__name__", "m"), ("a", "1"), ("a", "2")]),
            "duplicate label name",
        ),
        (
            "empty metric name",
            raw_series(&[("__name__", ""), ("job", "x")]),
            "empty metric name",
        ),
        (
            "invalid label name",
            raw_series(&[("__name__", "m"), ("1a", "x")]),
            "invalid label name",
        ),
    ];
    for (what, body, want) in cases {
        let (code, msg) = odin.write_raw(&body).unwrap();
        assert_eq!(code, 400, "{what}: {msg}");
        assert!(
            msg.contains(want),
            "{what}: {msg:?} should mention {want:?}"
        );
        assert_eq!(odin.get("/-/healthy").0, 200, "after {what}");
    }
    let (code, msg) = odin.write_raw(&valid).unwrap();
    assert_eq!(code, 204, "{msg}");
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_tsdb_head_samples_appended_total 1"),
        "{metrics}"
    );
}

#[test]
fn refused_samples_are_counted_and_the_rest_of_the_batch_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let a = TestSeries::new(&[("__name__", "a")], vec![(10_000, 1.0), (20_000, 2.0)]);
    assert_eq!(odin.write(&[a]).0, 204);
    let mixed = vec![
        // Out of order, duplicate with another value, and an exact resend (accepted).
        TestSeries::new(
            &[("__name__", "a")],
            vec![(5_000, 1.0), (20_000, 9.0), (20_000, 2.0), (30_000, 3.0)],
        ),
        TestSeries::new(&[("__name__", "b")], vec![(30_000, 1.0)]),
    ];
    let (code, msg) = odin.write(&mixed);
    assert_eq!(code, 400, "{msg}");
    assert!(
        msg.contains("1 out_of_order") && msg.contains("1 duplicate"),
        "{msg}"
    );
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains(r#"odin_tsdb_rejected_samples_total{reason="out_of_order"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"odin_tsdb_rejected_samples_total{reason="duplicate"} 1"#),
        "{metrics}"
    );
    assert_eq!(odin.stop().code(), Some(0));
    let lines = odin_dump(dir.path());
    assert_eq!(
        lines,
        [
            r#"{__name__="a"} 1 10000"#,
            r#"{__name__="a"} 2 20000"#,
            r#"{__name__="a"} 3 30000"#,
            r#"{__name__="b"} 1 30000"#,
        ]
    );
}

#[test]
fn wrong_content_encoding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let (code, msg) = odin.post("/api/v1/write", "application/x-protobuf", b"\xff\xff\xff");
    // Without Content-Encoding the body is still taken as snappy, and this one is not.
    assert_eq!(code, 400, "{msg}");
    let agent = crate::common::agent();
    let r = agent
        .post(&odin.url("/api/v1/write"))
        .header("Content-Encoding", "gzip")
        .send(&b"x"[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
}
