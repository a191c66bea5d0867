//! Fuzz target `pop3`: the property is `sentinella::fuzzing::pop3` (also replayed over the
//! committed corpus by every test run).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sentinella::fuzzing::pop3(data));
