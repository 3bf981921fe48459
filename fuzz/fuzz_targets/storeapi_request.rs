//! StoreAPI `Series`, `LabelNames` and `LabelValues` requests (by the first byte),
//! decoded, checked and answered from a small store (`odin::fuzzing::storeapi_request`).
//!
//! ```text
//! mkdir -p fuzz/corpus/storeapi_request
//! cargo +nightly fuzz run storeapi_request fuzz/corpus/storeapi_request fuzz/seeds/storeapi_request -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::storeapi_request(data));
