//! Runs the log record decoder (WAL records and Raft entries share it) over arbitrary
//! bytes. It must end with an error or a record, never panic; a samples record it
//! accepts must encode again to bytes that decode to the same batch (what a replica
//! applies is what the leader meant).
//!
//! ```text
//! mkdir -p fuzz/corpus/log_record
//! cargo +nightly fuzz run log_record fuzz/corpus/log_record -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| odin::fuzzing::log_record(data));
