//! The properties the fuzz targets check, one function per target (`fuzz/fuzz_targets/`
//! calls them under libFuzzer and ASAN, `scripts/fuzz.sh`), so the committed corpora
//! (`fuzz/corpus_seeds/`, and a local `fuzz/corpus/` when there is one) are replayed as
//! ordinary tests in every test run (`tests/it/fuzz_corpus.rs`) with the same checks.
//! Each panics on a violated property; none does I/O.

use std::path::Path;

use crate::protocol::imap::ImapFrontend;
use crate::protocol::pop3::Pop3Frontend;
use crate::protocol::proxy_header::{Step, parse};
use crate::protocol::sasl::{SaslExchange, SaslStep, decode_base64, decode_plain};
use crate::protocol::smtp::SmtpFrontend;
use crate::protocol::testing::check_chunking;

/// A fuzz target's property: panics when `data` breaks it.
pub type Property = fn(&[u8]);

/// The fuzz targets, by name (the folder names under `fuzz/corpus_seeds/`).
pub const TARGETS: [(&str, Property); 6] = [
    ("imap", imap),
    ("pop3", pop3),
    ("smtp", smtp),
    ("sasl", sasl),
    ("config", config),
    ("proxy_header", proxy_header),
];

/// The IMAP front end before login, fed arbitrary bytes: no panic, memory bounded by its
/// caps, and the same outcome however the input is chunked.
pub fn imap(data: &[u8]) {
    check_chunking(data, ImapFrontend::new);
}

/// The POP3 front end, as [`imap`].
pub fn pop3(data: &[u8]) {
    check_chunking(data, Pop3Frontend::new);
}

/// The SMTP front end, as [`imap`].
pub fn smtp(data: &[u8]) {
    check_chunking(data, |s| {
        SmtpFrontend::new(
            s,
            "mx.example.it",
            &["PIPELINING".into(), "SIZE 1000".into(), "AUTH PLAIN".into()],
        )
    });
}

/// SASL decoding (base64 lines, PLAIN messages, PLAIN/LOGIN exchanges): no panic, and a
/// PLAIN message is accepted only with exactly two NULs and non-empty identity and
/// password.
pub fn sasl(data: &[u8]) {
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
}

/// `config.toml` parsing and validation on arbitrary text: an error naming the file, or
/// a configuration — never a panic.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = crate::config::Config::parse(text, Path::new("fuzz.toml"))
    {
        assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
    }
}

/// The PROXY protocol header reader, fed as the listener feeds it (only as many bytes as
/// `parse` asks for): no panic, never a request for zero bytes, and a finished header
/// uses exactly the bytes read — the first byte after it (the TLS handshake) is never
/// taken.
pub fn proxy_header(data: &[u8]) {
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
}
