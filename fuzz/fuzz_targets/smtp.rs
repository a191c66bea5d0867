//! The SMTP front end before login, fed arbitrary bytes: no panic, memory bounded by
//! its caps, and the same outcome however the input is chunked
//! (`sentinella::protocol::testing::check_chunking`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinella::protocol::smtp::SmtpFrontend;
use sentinella::protocol::testing::check_chunking;

fuzz_target!(|data: &[u8]| check_chunking(data, |s| SmtpFrontend::new(
    s,
    "mx.example.it",
    &["PIPELINING".into(), "SIZE 1000".into(), "AUTH PLAIN".into()]
)));
