//! Drains the OpenMetrics parser over arbitrary bytes. It must end at `# EOF` or with an
//! error naming a line of the body, never a panic, and must stay ended.
//!
//! Run from the repository root (cargo-fuzz, nightly), growing `fuzz/corpus/openmetrics_parser/`
//! from the tracked seeds in `fuzz/seeds/openmetrics_parser/`:
//!
//! ```text
//! mkdir -p fuzz/corpus/openmetrics_parser
//! cargo +nightly fuzz run openmetrics_parser fuzz/corpus/openmetrics_parser fuzz/seeds/openmetrics_parser -- \
//!     -max_total_time=600 -dict=fuzz/exposition.dict
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use odin::exposition::format::{Entry, Format, Parser};

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut parser = Parser::new(Format::OpenMetrics, data);
    loop {
        match parser.next() {
            Ok(Some(Entry::Series(series))) => {
                assert!(!series.name.is_empty());
                assert!(series.labels.iter().all(|(name, _)| *name != "__name__"));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                assert!(matches!(parser.next(), Ok(None)));
                break;
            }
            Err(err) => {
                assert!(err.line >= 1 && err.line <= lines, "{err} in {lines} lines");
                assert_eq!(parser.next().err(), Some(err));
                break;
            }
        }
    }
});
