//! Drains the OpenMetrics parser over arbitrary bytes. It must end at `# EOF` or with an
//! error naming a line of the body, never a panic, and must stay ended.
//!
//! Run from the repository root (cargo-fuzz, nightly), growing `fuzz/corpus/openmetrics_parser/`
//! from the tracked seeds in `fuzz/seeds/openmetrics_parser/`:
//!
//! ```text
//! mkdir -p fuzz/corpus/openmetrics_parser
//! cargo +nightly fuzz run openmetrics_parser fuzz/corpus/openmetrics_parser fuzz/seeds/openmetrics_parser -- \
//!     -max_total_time=600 -dict=fuzz/exposition.dict
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::openmetrics_parser(data));
