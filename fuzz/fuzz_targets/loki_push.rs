//! Runs the Loki push decoders and checks over arbitrary bodies (the first byte
//! picks JSON or snappy protobuf, gzip or not). They must end in streams or an
//! error, never panic, and checking keeps no more lines than came.
//!
//! ```text
//! mkdir -p fuzz/corpus/loki_push
//! cargo +nightly fuzz run loki_push fuzz/corpus/loki_push -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::loki_push(data));
