//! A block's `meta.json` (first byte even) or `tombstones` file (odd)
//! (`odin::fuzzing::block_meta`).
//!
//! ```text
//! mkdir -p fuzz/corpus/block_meta
//! cargo +nightly fuzz run block_meta fuzz/corpus/block_meta fuzz/seeds/block_meta -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::block_meta(data));
