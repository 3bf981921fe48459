//! Runs ODIN's PromQL parsing (promql-parser plus ODIN's own checks) over arbitrary
//! text: a query or an error for whoever sent it; never a panic.
//!
//! ```text
//! mkdir -p fuzz/corpus/promql_parse
//! cargo +nightly fuzz run promql_parse fuzz/corpus/promql_parse fuzz/seeds/promql_parse -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::promql_parse(data));
