//! Fuzz target `smtp`: the property is `sentinella::fuzzing::smtp` (also replayed over the
//! committed corpus by every test run).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sentinella::fuzzing::smtp(data));
