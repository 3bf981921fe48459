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
use odin::exposition::format::{Entry, Format, Parser, parse_families};
use odin::exposition::write::to_text;

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut parser = Parser::new(Format::Text, data);
    loop {
        match parser.next() {
            Ok(Some(Entry::Series(series))) => {
                assert!(!series.name.is_empty());
                assert!(series.labels.iter().all(|(name, _)| *name != "__name__"));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(err) => {
                assert!(err.line >= 1 && err.line <= lines, "{err} in {lines} lines");
                break;
            }
        }
    }

    if let Ok(families) = parse_families(Format::Text, data) {
        let once = to_text(&families);
        let again = match parse_families(Format::Text, once.as_bytes()) {
            Ok(families) => families,
            Err(err) => panic!("written page does not parse: {err}\n{once}"),
        };
        assert_eq!(once, to_text(&again));
    }
});
