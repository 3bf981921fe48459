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
use odin::model::check_label_pairs;
use odin::remote::decode::{DecodeError, SAMPLES_PER_CALL, for_each_series, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(shape) = validate(data) else {
        return;
    };
    let mut samples = 0;
    let walked = for_each_series(data, |labels, s| {
        assert!(check_label_pairs(labels.iter().copied()).is_ok(), "{labels:?}");
        assert!(!s.is_empty() && s.len() <= SAMPLES_PER_CALL);
        samples += s.len();
        Ok::<(), DecodeError>(())
    });
    assert!(walked.is_ok(), "validated but not walked: {walked:?}");
    assert_eq!(samples, shape.samples);
});
