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
use odin::log::record::{Record, decode, encode_batch};

fuzz_target!(|data: &[u8]| {
    let Ok(record) = decode(data, &mut |s| s.into()) else {
        return;
    };
    if let Record::Samples(batch) = record {
        let mut again = Vec::new();
        encode_batch(&batch, &mut again);
        // Compared by bits: a NaN (a stale marker among them) is a value too.
        let bits = |b: &odin::log::record::Batch| -> Vec<(i64, u64)> {
            b.samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
        };
        match decode(&again, &mut |s| s.into()) {
            Ok(Record::Samples(b)) => {
                assert_eq!(b.series, batch.series);
                assert_eq!(bits(&b), bits(&batch));
            }
            other => panic!("re-encoded batch did not decode: {other:?}"),
        }
    }
});
