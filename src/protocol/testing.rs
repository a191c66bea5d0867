//! Driving front ends from transcripts, for the unit tests and the fuzz targets: actions
//! rendered as text, a deterministic stand-in for the session driver, and the check that
//! the outcome does not depend on how the bytes were chunked.

use super::{Action, Frontend};

/// Replies verbatim; other actions as `<STARTTLS>`, `<CLOSE>`, `<AUTH login:secret:malformed>`.
pub fn render(actions: &[Action]) -> String {
    let mut s = String::new();
    for a in actions {
        match a {
            Action::Reply(b) => s.push_str(&String::from_utf8_lossy(b)),
            Action::StartTls => s.push_str("<STARTTLS>"),
            Action::Close => s.push_str("<CLOSE>"),
            Action::Report(_) => {}
            Action::Authenticate(c) => s.push_str(&format!(
                "<AUTH {}:{}:{:?}>",
                c.login,
                c.secret.expose(),
                c.malformed
            )),
        }
    }
    s
}

/// Feeds `input` to a new front end, and again one byte at a time to another; asserts
/// both give the same actions and returns them rendered.
pub fn every_split<F: Frontend>(make: impl Fn() -> F, input: &str) -> String {
    let whole = render(&make().feed(input.as_bytes()));
    let mut fe = make();
    let bytewise: String = input
        .as_bytes()
        .iter()
        .map(|b| render(&fe.feed(&[*b])))
        .collect();
    assert_eq!(whole, bytewise, "chunking changed the outcome");
    whole
}

/// Plays the session driver for `fe` over `chunks`: every `Authenticate` is answered by
/// alternating refusal and temporary failure, and feeding stops at `Close` or
/// `StartTls` — after STARTTLS the rest of the input would be TLS records, a different
/// layer, so it is not fed (and whatever was buffered must have been discarded).
/// Returns everything rendered.
pub fn drive<F: Frontend + ?Sized>(fe: &mut F, chunks: &[&[u8]]) -> String {
    let mut out = String::new();
    let mut answers = 0u32;
    for chunk in chunks {
        let mut pending = fe.feed(chunk);
        while !pending.is_empty() {
            let mut next = Vec::new();
            for action in &pending {
                match action {
                    Action::Authenticate(_) => {
                        answers += 1;
                        next.extend(if answers.is_multiple_of(2) {
                            fe.login_unavailable()
                        } else {
                            fe.login_refused()
                        });
                    }
                    Action::StartTls | Action::Close => {
                        out.push_str(&render(&pending));
                        return out;
                    }
                    Action::Reply(_) | Action::Report(_) => {}
                }
            }
            out.push_str(&render(&pending));
            pending = next;
        }
    }
    out
}

/// The fuzz targets' property for a front end built by `make`: the first byte of `data`
/// picks the listener's TLS state and the chunk sizes, the rest is client input; driving
/// it whole and chunked must not panic and must give the same outcome.
pub fn check_chunking<F: Frontend>(data: &[u8], make: impl Fn(super::Settings) -> F) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let settings = super::Settings {
        tls_active: control & 1 == 1,
        starttls: control & 2 == 2,
        max_line: 1024,
        preauth_bytes: 16 * 1024,
        max_failed_logins: 3,
        max_bad_commands: 10,
    };
    let whole = drive(&mut make(settings), &[input]);
    let sizes = [control >> 2, control.rotate_left(3), 1, 7];
    let split = drive(&mut make(settings), &chunked(input, &sizes));
    assert_eq!(whole, split, "chunking changed the outcome");
}

/// Splits `data` into chunks whose sizes come from `sizes` (cycled; 0 counts as 1).
pub fn chunked<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = usize::from(
            sizes
                .get(i % sizes.len().max(1))
                .copied()
                .unwrap_or(1)
                .max(1),
        )
        .min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Settings;
    use crate::protocol::imap::ImapFrontend;

    /// Fuzz find (regression): bytes after STARTTLS are a different layer; the driver
    /// must stop there, or chunked and whole input disagree about what was "sent after
    /// the handshake".
    #[test]
    fn the_driver_stops_at_starttls_so_chunking_cannot_matter() {
        let settings = Settings {
            tls_active: false,
            starttls: true,
            max_line: 1024,
            preauth_bytes: 16384,
            max_failed_logins: 3,
            max_bad_commands: 10,
        };
        let input = b"a STARTTLS\r\nb LOGIN mario secret\r\nc NOOP\r\n";
        let whole = drive(&mut ImapFrontend::new(settings), &[input]);
        let split = drive(
            &mut ImapFrontend::new(settings),
            &chunked(input, &[0, 16, 1, 7]),
        );
        assert_eq!(whole, "a OK Begin TLS negotiation now\r\n<STARTTLS>");
        assert_eq!(whole, split);
    }

    #[test]
    fn chunks_cover_the_input_in_order() {
        let data = b"abcdefghij";
        let pieces = chunked(data, &[3, 0, 2]);
        assert_eq!(pieces, [&b"abc"[..], b"d", b"ef", b"ghi", b"j"]);
        assert_eq!(chunked(b"", &[1]).len(), 0);
    }
}
