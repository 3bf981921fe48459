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

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::remote_read_request(data));
