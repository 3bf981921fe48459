//! A block's `index` file (blocks come from peers and the bucket): opened, and every
//! label, postings list and series it names read (`odin::fuzzing::block_index`).
//!
//! ```text
//! mkdir -p fuzz/corpus/block_index
//! cargo +nightly fuzz run block_index fuzz/corpus/block_index fuzz/seeds/block_index -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::block_index(data));
