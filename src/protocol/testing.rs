//! Helpers for transcript tests of the front ends: actions rendered as text, and the
//! check that feeding a transcript whole or one byte at a time gives the same result.

use super::{Action, Frontend};

/// Replies verbatim; other actions as `<STARTTLS>`, `<CLOSE>`, `<AUTH login:secret:malformed>`.
pub fn render(actions: &[Action]) -> String {
    let mut s = String::new();
    for a in actions {
        match a {
            Action::Reply(b) => s.push_str(&String::from_utf8_lossy(b)),
            Action::StartTls => s.push_str("<STARTTLS>"),
            Action::Close => s.push_str("<CLOSE>"),
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
