//! Drains the text-format parser over arbitrary bytes. It must end with the body or an
//! error naming a line of it, never a panic; and a body it accepts must survive being
//! written out and parsed again unchanged.
//!
//! Run from the repository root (cargo-fuzz, nightly), growing `fuzz/corpus/text_parser/`
//! from the tracked seeds in `fuzz/seeds/text_parser/`:
//!
//! ```text
//! mkdir -p fuzz/corpus/text_parser
//! cargo +nightly fuzz run text_parser fuzz/corpus/text_parser fuzz/seeds/text_parser -- \
//!     -max_total_time=600 -dict=fuzz/exposition.dict
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::text_parser(data));
