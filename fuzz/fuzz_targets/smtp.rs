//! The SMTP front end before login, fed arbitrary bytes: it must not panic, must keep
//! its memory bounded (the settings' caps), and must give the same outcome however the
//! input is chunked. The first byte picks the listener's TLS state and the chunk sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinella::protocol::Settings;
use sentinella::protocol::smtp::SmtpFrontend;
use sentinella::protocol::testing::{chunked, drive};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let settings = Settings {
        tls_active: control & 1 == 1,
        starttls: control & 2 == 2,
        max_line: 1024,
        preauth_bytes: 16 * 1024,
        max_failed_logins: 3,
    };
    let whole = drive(
        &mut SmtpFrontend::new(
            settings,
            "mx.example.it",
            &["PIPELINING".into(), "SIZE 1000".into(), "AUTH PLAIN".into()],
        ),
        &[input],
    );
    let sizes = [control >> 2, control.rotate_left(3), 1, 7];
    let pieces = chunked(input, &sizes);
    let split = drive(
        &mut SmtpFrontend::new(
            settings,
            "mx.example.it",
            &["PIPELINING".into(), "SIZE 1000".into(), "AUTH PLAIN".into()],
        ),
        &pieces,
    );
    assert_eq!(whole, split, "chunking changed the outcome");
});
