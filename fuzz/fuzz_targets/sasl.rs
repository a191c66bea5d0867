//! SASL decoding (base64 lines, PLAIN messages, PLAIN/LOGIN exchanges) on arbitrary input:
//! no panic, and a PLAIN message is accepted only with exactly two NULs and non-empty
//! identity and password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinella::protocol::sasl::{SaslExchange, SaslStep, decode_base64, decode_plain};

fuzz_target!(|data: &[u8]| {
    let _ = decode_base64(data);
    if let Ok(c) = decode_plain(data) {
        assert_eq!(data.iter().filter(|b| **b == 0).count(), 2);
        assert!(!c.login.is_empty());
        // A password that is not UTF-8 is dropped, and the credentials marked malformed.
        assert!(!c.secret.is_empty() || c.malformed.is_some());
    }
    let mut lines = data.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    for mechanism in ["PLAIN", "LOGIN", "login"] {
        let Ok(mut step) = SaslExchange::start(mechanism, Some(first)) else {
            continue;
        };
        for line in lines.clone() {
            match step {
                SaslStep::Challenge(next, _) => step = next.step(line),
                _ => break,
            }
        }
    }
});
