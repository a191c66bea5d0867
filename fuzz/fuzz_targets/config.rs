//! config.toml parsing and validation on arbitrary text: an error naming the problem, or
//! a configuration — never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = sentinella::config::Config::parse(text, Path::new("fuzz.toml")) {
            assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
        }
    }
});
