//! The POP3 front end before login, fed arbitrary bytes: no panic, memory bounded by
//! its caps, and the same outcome however the input is chunked
//! (`sentinella::protocol::testing::check_chunking`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinella::protocol::pop3::Pop3Frontend;
use sentinella::protocol::testing::check_chunking;

fuzz_target!(|data: &[u8]| check_chunking(data, Pop3Frontend::new));
