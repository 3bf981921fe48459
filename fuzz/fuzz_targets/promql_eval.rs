//! PromQL evaluation over a few GPU series, within small limits, on a query-sized
//! stack (`odin::fuzzing::promql_eval`).
//!
//! ```text
//! mkdir -p fuzz/corpus/promql_eval
//! cargo +nightly fuzz run promql_eval fuzz/corpus/promql_eval fuzz/seeds/promql_eval -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::promql_eval(data));
