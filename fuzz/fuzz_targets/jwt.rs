//! OpenID Connect bearer tokens against a verifier with a fixed test key; the seeds
//! carry valid signatures so that the claims are reached (`odin::fuzzing::jwt`).
//!
//! ```text
//! mkdir -p fuzz/corpus/jwt
//! cargo +nightly fuzz run jwt fuzz/corpus/jwt fuzz/seeds/jwt -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::jwt(data));
