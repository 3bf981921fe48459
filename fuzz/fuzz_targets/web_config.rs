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
use odin::security::auth::Authenticator;
use odin::security::web_config::WebConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = WebConfig::parse(text, "fuzz.yml", std::path::Path::new("/nonexistent")) {
        let _ = Authenticator::new(&cfg).required();
        let _ = cfg.cluster_tls();
    }
});
