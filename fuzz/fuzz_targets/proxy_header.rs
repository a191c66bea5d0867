//! The PROXY protocol header reader on arbitrary bytes, fed as the listener feeds it
//! (only as many bytes as `parse` asks for): no panic, never a request for zero bytes,
//! and a finished header uses exactly the bytes read — the first byte after it (the TLS
//! handshake) is never taken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinella::protocol::proxy_header::{Step, parse};

fuzz_target!(|data: &[u8]| {
    let mut have = 0;
    loop {
        match parse(&data[..have]) {
            Ok(Step::Need(n)) => {
                assert!(n > 0);
                if have + n > data.len() {
                    return;
                }
                have += n;
            }
            Ok(Step::Done(_)) => {
                // Reading on would be refused, not read as more header.
                if have < data.len() {
                    assert!(parse(&data[..=have]).is_err());
                }
                return;
            }
            Err(_) => return,
        }
    }
});
