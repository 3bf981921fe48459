//! Runs the main configuration parser (`--config.file`, Prometheus's format) over
//! arbitrary text: an error naming the key and line, or a configuration; never a
//! panic.
//!
//! ```text
//! mkdir -p fuzz/corpus/config
//! cargo +nightly fuzz run config fuzz/corpus/config fuzz/seeds/config -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::config(data));
