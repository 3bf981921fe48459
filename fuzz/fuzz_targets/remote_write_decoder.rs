//! Runs the remote-write decoder over arbitrary (decompressed) bytes. It must end with
//! an error or accept, never panic; what it accepts must be handed over whole, each
//! series with a label set that passes the model's check (the check the decoder runs
//! while it reads), with as many samples as the validating pass counted.
//!
//! ```text
//! mkdir -p fuzz/corpus/remote_write_decoder
//! cargo +nightly fuzz run remote_write_decoder fuzz/corpus/remote_write_decoder \
//!     fuzz/seeds/remote_write_decoder -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::remote_write_decoder(data));
