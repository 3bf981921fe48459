//! Runs the remote-read request decoder over arbitrary bytes. A first byte of 0 wraps
//! the rest in a literal-only snappy frame, so the fuzzer reaches the protobuf and the
//! wire-count checks without learning snappy; otherwise the bytes go in as the body.
//! It must never panic, and what it accepts must stay within the request bounds.
//!
//! ```text
//! mkdir -p fuzz/corpus/remote_read_request
//! cargo +nightly fuzz run remote_read_request fuzz/corpus/remote_read_request \
//!     fuzz/seeds/remote_read_request -- -max_total_time=600
//! ```

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use odin::remote::read::{MAX_MATCHERS_PER_READ, MAX_QUERIES_PER_READ, decode_read_request};

/// `raw` as a snappy frame of literals (60 bytes each, the short literal form).
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

fuzz_target!(|data: &[u8]| {
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
});
