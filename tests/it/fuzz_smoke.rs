//! The fuzz smoke (issue 16): every fuzz target of `odin::fuzzing::TARGETS` over its
//! seeds in `fuzz/seeds/<target>/` and then, for a moment, over mutations of them,
//! on stable Rust with no libFuzzer. The long runs are cargo-fuzz's (README,
//! "Fuzzing"); this catches a decoder change that breaks on the seeds or their
//! neighbours in every test run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use odin::fuzzing::TARGETS;

/// How long each target gets mutated inputs.
const MUTATING_FOR: Duration = Duration::from_millis(400);

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(seeds_dir(target))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    std::fs::read(e.path()).ok().map(|b| (name, b))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// xorshift64*: the same mutations in every run, so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One of libFuzzer's simpler mutations of `seed`, or a splice with `other`.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = [0, 0xff, 0x7f, 0x80, b'\n', b'"', b'{'][rng.below(7)];
            }
            2 => b.insert(at, rng.next() as u8),
            3 if at < b.len() => {
                let n = rng.below(b.len() - at + 1).min(16);
                b.drain(at..at + n);
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = rng.below(other.len() - from + 1).min(64);
                let piece = other[from..from + n].to_vec();
                b.splice(at..at, piece);
            }
            5 if at < b.len() => b.truncate(at),
            _ => {
                // A copy of a piece of itself elsewhere (repeated structures).
                if !b.is_empty() {
                    let from = rng.below(b.len());
                    let n = rng.below(b.len() - from + 1).min(32);
                    let piece = b[from..from + n].to_vec();
                    b.splice(at.min(b.len())..at.min(b.len()), piece);
                }
            }
        }
    }
    b
}

fn run_one(target: &str, run: fn(&[u8]), input: &[u8]) {
    if std::panic::catch_unwind(|| run(input)).is_err() {
        let kept = std::env::temp_dir().join(format!("fuzz-smoke-crash-{target}"));
        let _ = std::fs::write(&kept, input);
        panic!(
            "fuzz target {target} panicked on an input of {} bytes, kept in {}: {:?}",
            input.len(),
            kept.display(),
            String::from_utf8_lossy(&input[..input.len().min(400)])
        );
    }
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_their_mutations() {
    for &(target, run) in TARGETS {
        let seeds = seeds(target);
        assert!(
            !seeds.is_empty(),
            "fuzz target {target} has no seeds in {}",
            seeds_dir(target).display()
        );
        for (_, seed) in &seeds {
            run_one(target, run, seed);
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
        let started = Instant::now();
        let mut tried = 0;
        while started.elapsed() < MUTATING_FOR {
            let seed = &seeds[rng.below(seeds.len())].1;
            let other = &seeds[rng.below(seeds.len())].1;
            run_one(target, run, &mutate(&mut rng, seed, other));
            tried += 1;
        }
        assert!(tried > 0, "{target}: no mutation tried");
    }
}

/// Writes the seeds of the targets whose inputs are made by ODIN itself (a real
/// block, StoreAPI requests as Thanos sends them, signed tokens, log records):
/// `cargo test --test it regenerate_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand after a format change"]
fn regenerate_fuzz_seeds() {
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = seeds_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    block_seeds(&put);
    storeapi_seeds(&put);
    jwt_seeds(&put);
    log_record_seeds(&put);
    loki_push_seeds(&put);
}

/// A JSON push and a Promtail-style protobuf push (its raw message: the target
/// compresses it), each selected by the first byte.
fn loki_push_seeds(put: &dyn Fn(&str, &str, &[u8])) {
    let mut json = vec![0u8];
    json.extend_from_slice(
        br#"{"streams":[{"stream":{"job":"varlogs","app":"x"},"values":[["1700000000000000000","level=error msg="disk full""],["1700000000000000001","ok",{"trace_id":"abc"}]]}]}"#,
    );
    put("loki_push", "json", &json);
    // PushRequest{streams: [{labels: `{job="varlogs"}`, entries: [{timestamp: {seconds,
    // nanos}, line, structuredMetadata: [{name, value}]}]}]}, written by hand.
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push(number << 3 | 2);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    let ts = [0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06, 0x10, 0x05];
    let mut meta = Vec::new();
    field(&mut meta, 1, b"trace_id");
    field(&mut meta, 2, b"abc");
    let mut entry = Vec::new();
    field(&mut entry, 1, &ts);
    field(&mut entry, 2, b"kernel: NVRM: Xid 79");
    field(&mut entry, 3, &meta);
    let mut stream = Vec::new();
    field(&mut stream, 1, br#"{job="varlogs"}"#);
    field(&mut stream, 2, &entry);
    let mut request = vec![0b101u8];
    field(&mut request, 1, &stream);
    put("loki_push", "protobuf", &request);
}

fn block_seeds(put: &dyn Fn(&str, &str, &[u8])) {
    use odin::model::{Labels, Sample};
    let dir = tempfile::tempdir().unwrap();
    let mut series: Vec<(Labels, Vec<Sample>)> = (0..3)
        .map(|gpu| {
            let labels = Labels::from_pairs([
                ("__name__", "DCGM_FI_DEV_GPU_UTIL"),
                ("gpu", ["0", "1", "2"][gpu]),
                ("instance", "node-1:9400"),
            ]);
            let samples = (0..150)
                .map(|i| Sample {
                    t: i * 15_000,
                    v: ((i as usize * (gpu + 1)) % 100) as f64,
                })
                .collect();
            (labels, samples)
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let block =
        odin::bucketstore::fixture::write_local_block(dir.path(), 0, 7_200_000, &series).unwrap();
    put(
        "block_index",
        "three_series",
        &std::fs::read(block.join("index")).unwrap(),
    );
    put(
        "block_chunks",
        "three_series",
        &std::fs::read(block.join("chunks/000001")).unwrap(),
    );
    let mut meta = vec![0u8];
    meta.extend(std::fs::read(block.join("meta.json")).unwrap());
    put("block_meta", "meta_json", &meta);
    // Tombstones as ODIN writes them.
    let stones = odin::tsdb::block::Tombstones::from([
        (1, vec![odin::model::Interval::new(0, 60_000)]),
        (2, vec![odin::model::Interval::new(30_000, 90_000)]),
    ]);
    odin::tsdb::block::write_tombstones(&block, &stones).unwrap();
    let mut t = vec![1u8];
    t.extend(std::fs::read(block.join("tombstones")).unwrap());
    put("block_meta", "tombstones", &t);
}

fn storeapi_seeds(put: &dyn Fn(&str, &str, &[u8])) {
    use odin::storeapi::proto::thanos::{
        LabelMatcher, LabelNamesRequest, LabelValuesRequest, SeriesRequest, label_matcher,
    };
    use prost::Message;
    let m = |t: label_matcher::Type, name: &str, value: &str| LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    };
    let series = SeriesRequest {
        min_time: 0,
        max_time: 200_000,
        matchers: vec![
            m(label_matcher::Type::Eq, "__name__", "DCGM_FI_DEV_GPU_UTIL"),
            m(label_matcher::Type::Re, "gpu", "0|2"),
            m(label_matcher::Type::Neq, "replica", "b"),
        ],
        ..Default::default()
    };
    let mut b = vec![0u8];
    b.extend(series.encode_to_vec());
    put("storeapi_request", "series", &b);
    let names = LabelNamesRequest {
        start: 0,
        end: 100_000,
        matchers: vec![m(label_matcher::Type::Nre, "instance", "x.*")],
        ..Default::default()
    };
    let mut b = vec![1u8];
    b.extend(names.encode_to_vec());
    put("storeapi_request", "label_names", &b);
    let values = LabelValuesRequest {
        label: "gpu".into(),
        start: 0,
        end: 100_000,
        matchers: vec![m(
            label_matcher::Type::Eq,
            "__name__",
            "DCGM_FI_DEV_FB_USED",
        )],
        ..Default::default()
    };
    let mut b = vec![2u8];
    b.extend(values.encode_to_vec());
    put("storeapi_request", "label_values", &b);
}

fn jwt_seeds(put: &dyn Fn(&str, &str, &[u8])) {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use odin::fuzzing::{JWT_TEST_AUDIENCE, JWT_TEST_ISSUER, JWT_TEST_KEY_PEM, JWT_TEST_KID};
    let key = EncodingKey::from_ec_pem(JWT_TEST_KEY_PEM.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(JWT_TEST_KID.into());
    // Valid until 2100, so the seed keeps reaching the claims.
    let valid = serde_json::json!({
        "iss": JWT_TEST_ISSUER, "aud": JWT_TEST_AUDIENCE, "sub": "u-1",
        "preferred_username": "ada", "groups": ["read", "write"], "exp": 4_102_444_800u64,
        "nbf": 1_700_000_000u64,
    });
    put(
        "jwt",
        "valid",
        jsonwebtoken::encode(&header, &valid, &key)
            .unwrap()
            .as_bytes(),
    );
    let mut nested = valid.clone();
    nested["aud"] = serde_json::json!(["grafana", JWT_TEST_AUDIENCE]);
    nested["groups"] = serde_json::json!("read admin");
    put(
        "jwt",
        "audience_list",
        jsonwebtoken::encode(&header, &nested, &key)
            .unwrap()
            .as_bytes(),
    );
    let mut expired = valid;
    expired["exp"] = serde_json::json!(1_000_000_000u64);
    put(
        "jwt",
        "expired",
        jsonwebtoken::encode(&header, &expired, &key)
            .unwrap()
            .as_bytes(),
    );
}

fn log_record_seeds(put: &dyn Fn(&str, &str, &[u8])) {
    use odin::log::record::{
        Batch, Deletion, HeadCut, encode_batch, encode_deletion, encode_head_cut,
    };
    use odin::model::{Labels, MatchType, Matcher, Sample};
    let mut batch = Batch::default();
    for gpu in ["0", "1"] {
        batch.push_series(
            Labels::from_pairs([("__name__", "up"), ("gpu", gpu)]),
            &[
                Sample { t: 1000, v: 1.0 },
                Sample {
                    t: 16_000,
                    v: f64::from_bits(0x7ff0_0000_0000_0002),
                },
            ],
        );
    }
    let mut b = Vec::new();
    encode_batch(&batch, &mut b);
    put("log_record", "batch", &b);
    // A cluster leader's entry: one series defined, one named by its id, after a reset.
    let mut by_ref = Vec::new();
    assert!(odin::log::record::encode_batch_by_ref(
        &batch,
        &[None, Some(7)],
        Some(42),
        &mut by_ref
    ));
    put("log_record", "batch_by_ref", &by_ref);
    let mut lines = Vec::new();
    assert!(odin::log::record::encode_log_batch(
        &odin::log::record::LogBatch {
            tenant: "fake".into(),
            streams: vec![odin::log::record::LogStream {
                labels: Labels::from_pairs([("job", "varlogs")]),
                lines: vec![odin::log::record::LogLine {
                    ts_ns: 1_700_000_000_000_000_000,
                    text: "level=error msg=\"disk full\"".into(),
                    metadata: vec![("trace_id".into(), "abc".into())],
                }],
            }],
            positions: vec![("local/file:/var/log/syslog".into(), "2049:131:4096".into())],
        },
        &mut lines
    ));
    put("log_record", "log_lines", &lines);
    let mut d = Vec::new();
    encode_deletion(
        &Deletion {
            matchers: vec![Matcher::new(MatchType::Regex, "gpu", "0|1").unwrap()],
            min_t: 0,
            max_t: 10_000,
        },
        &mut d,
    );
    put("log_record", "deletion", &d);
    let mut c = Vec::new();
    encode_head_cut(&HeadCut { end: 7_200_000 }, &mut c);
    put("log_record", "head_cut", &c);
}

/// The generated seeds are what they stand for: a fuzzer starting from them reaches
/// past the first checks of each reader.
#[test]
fn the_block_and_token_seeds_are_valid_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    std::fs::write(&index, &seeds("block_index")[0].1).unwrap();
    let reader = odin::tsdb::index::IndexReader::open(&index).unwrap();
    assert_eq!(reader.all_postings().unwrap().len(), 3);
    let chunks = dir.path().join("chunks");
    std::fs::create_dir(&chunks).unwrap();
    std::fs::write(chunks.join("000001"), &seeds("block_chunks")[0].1).unwrap();
    let chunk_reader = odin::tsdb::block::ChunkReader::open(&chunks).unwrap();
    let (_, first) = chunk_reader.chunk(8).unwrap();
    assert_eq!(odin::tsdb::chunkenc::XorIterator::new(first).count(), 120);
    let (_, valid) = seeds("jwt")
        .into_iter()
        .find(|(n, _)| n == "valid")
        .unwrap();
    assert!(odin::fuzzing::jwt_accepted(
        std::str::from_utf8(&valid).unwrap()
    ));
}
