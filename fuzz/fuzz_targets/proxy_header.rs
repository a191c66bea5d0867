//! Fuzz target `proxy_header`: the property is `sentinella::fuzzing::proxy_header` (also replayed over the
//! committed corpus by every test run).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sentinella::fuzzing::proxy_header(data));
