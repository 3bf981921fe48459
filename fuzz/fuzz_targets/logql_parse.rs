//! Runs the LogQL parser over arbitrary text: a tree or an error that points inside
//! the query, never a panic.
//!
//! ```text
//! mkdir -p fuzz/corpus/logql_parse
//! cargo +nightly fuzz run logql_parse fuzz/corpus/logql_parse fuzz/seeds/logql_parse -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::logql_parse(data));
