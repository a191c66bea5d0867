//! Fuzz target `config`: the property is `sentinella::fuzzing::config` (also replayed over the
//! committed corpus by every test run).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sentinella::fuzzing::config(data));
