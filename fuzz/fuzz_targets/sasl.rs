//! Fuzz target `sasl`: the property is `sentinella::fuzzing::sasl` (also replayed over the
//! committed corpus by every test run).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sentinella::fuzzing::sasl(data));
