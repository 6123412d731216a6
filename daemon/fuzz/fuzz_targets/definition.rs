//! Any text handed to `strackt check`: no panic, an answer within a second.

#![no_main]

use std::path::Path;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The definition is read as UTF-8 text; other bytes never reach the parser.
    if let Ok(text) = std::str::from_utf8(data) {
        let start = Instant::now();
        let _ = strackt::definition::parse(text, Path::new("fuzz.yaml"));
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "took {took:?} for {} bytes",
            text.len()
        );
    }
});
