//! A block's chunk segment file: every chunk entry read and its samples decoded
//! (`odin::fuzzing::block_chunks`).
//!
//! ```text
//! mkdir -p fuzz/corpus/block_chunks
//! cargo +nightly fuzz run block_chunks fuzz/corpus/block_chunks fuzz/seeds/block_chunks -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::block_chunks(data));
