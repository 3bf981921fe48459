//! Runs the web config parser (`--web.config.file`) over arbitrary text. It must end
//! with an error naming what is wrong or a configuration, never panic; a
//! configuration it accepts builds an authenticator without panicking either.
//!
//! ```text
//! mkdir -p fuzz/corpus/web_config
//! cargo +nightly fuzz run web_config fuzz/corpus/web_config fuzz/seeds/web_config -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::web_config(data));
