//! Sans-I/O protocol front ends: bytes in, actions out. No sockets here — the session
//! driver in `crate::proxy` does the I/O — so each front end is tested from transcripts
//! and fuzzed without a network.
//!
//! - [`imap`]: IMAP4rev1 before authentication (RFC 3501 / 9051), framing by imap-codec's
//!   Fragmentizer.
//! - [`pop3`]: POP3 before authentication (RFC 1939, 2449, 5034, 2595).
//! - [`smtp`]: SMTP submission before authentication (RFC 6409, 4954, 3207).
//! - [`proxy_header`]: the PROXY protocol header (v1, v2) a load balancer sends first.
//! - [`sasl`]: SASL PLAIN and LOGIN decoding, shared by every protocol.
//! - [`LineBuffer`]: CRLF line framing with a length cap, for POP3 and SMTP.
//!
//! Every front end implements [`Frontend`], the contract the session driver relies on.
//! [`testing`] drives any of them from a transcript, for the tests and the fuzz targets.

pub mod imap;
pub mod pop3;
pub mod proxy_header;
pub mod sasl;
pub mod smtp;
pub mod testing;

use crate::auth::Credentials;

/// Limits and the listener's TLS situation, for every front end.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// TLS is already active (implicit-TLS listener).
    pub tls_active: bool,
    /// STARTTLS / STLS may be offered (STARTTLS listener, before TLS).
    pub starttls: bool,
    /// Longest command line (IMAP: message with literals), in bytes.
    pub max_line: u32,
    /// All bytes a client may send before logging in.
    pub preauth_bytes: u64,
    /// Failed logins before the connection is closed.
    pub max_failed_logins: u32,
    /// Bad or unknown commands before login after which the connection is closed (as
    /// Dovecot and Postfix do, not only at the byte cap).
    pub max_bad_commands: u32,
}

/// Pre-login command discipline: counts the replies that refuse a command as bad or
/// unknown (each front end says which of its replies those are) and says when the
/// client has had enough of them.
#[derive(Debug, Default)]
pub(crate) struct BadCommands {
    seen: u32,
}

impl BadCommands {
    /// Counts the bad replies among `actions`; true once `max` is reached.
    pub(crate) fn too_many(
        &mut self,
        actions: &[Action],
        max: u32,
        is_bad: impl Fn(&[u8]) -> bool,
    ) -> bool {
        let bad = actions
            .iter()
            .filter(|a| matches!(a, Action::Reply(r) if is_bad(r)))
            .count();
        self.seen = self
            .seen
            .saturating_add(u32::try_from(bad).unwrap_or(u32::MAX));
        self.seen >= max.max(1)
    }
}

/// What happened in a front end that is worth counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Too many bad commands before login: the front end closes the connection.
    TooManyBadCommands,
}

/// What the driver must do.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes to the client.
    Reply(Vec<u8>),
    /// Start the TLS handshake now (the go-ahead was queued as a `Reply` before this).
    /// Call [`Frontend::tls_started`] when it is done.
    StartTls,
    /// Check these credentials and call [`Frontend::login_refused`],
    /// [`Frontend::login_unavailable`] or [`Frontend::login_accepted`].
    Authenticate(Credentials),
    /// Close the connection (after sending any queued replies).
    Close,
    /// Something the driver may count or log; nothing to do on the wire. (A front end
    /// has no globals: the session turns these into metrics.)
    Report(Event),
}

/// The protocol's last word to a relayed session whose login is refused now (access
/// revoked, or its app password expired), sent before the connection is closed.
pub fn revoked_message(protocol: crate::policy::Protocol) -> &'static [u8] {
    match protocol {
        crate::policy::Protocol::Imap => {
            b"* BYE [UNAVAILABLE] Access to this mailbox was revoked; log in again\r\n"
        }
        crate::policy::Protocol::Pop3 => b"-ERR [AUTH] Access to this mailbox was revoked\r\n",
        crate::policy::Protocol::Smtp => {
            b"421 4.7.0 Access to this mailbox was revoked, closing connection\r\n"
        }
    }
}

/// The protocol's last word to a relayed client when the proxy stops (at a quiet moment
/// of the session): IMAP's untagged `BYE` (RFC 9051 7.1.5), POP3's `-ERR [SYS/TEMP]`
/// (RFC 2449 8.1.2), SMTP's `421` (RFC 5321 3.8).
pub fn stopping_message(protocol: crate::policy::Protocol) -> &'static [u8] {
    match protocol {
        crate::policy::Protocol::Imap => b"* BYE [UNAVAILABLE] Server shutting down\r\n",
        crate::policy::Protocol::Pop3 => b"-ERR [SYS/TEMP] Server shutting down\r\n",
        crate::policy::Protocol::Smtp => b"421 4.3.2 Service shutting down, closing connection\r\n",
    }
}

/// A protocol front end before authentication, as the session driver sees it.
pub trait Frontend: Send {
    /// The greeting to send first.
    fn greeting(&self) -> Vec<u8>;
    /// Feeds client bytes; returns what to do. Stops at `Authenticate` / `StartTls`.
    fn feed(&mut self, data: &[u8]) -> Vec<Action>;
    /// The TLS handshake after STARTTLS / STLS completed.
    fn tls_started(&mut self);
    /// The login was refused: the protocol's one failure text.
    fn login_refused(&mut self) -> Vec<Action>;
    /// The upstream could not be reached or refused us: the temporary-failure text.
    fn login_unavailable(&mut self) -> Vec<Action>;
    /// Logged in upstream: the success reply for the client (carrying the upstream's
    /// capabilities where the protocol has a place for them) and the bytes the client
    /// pipelined after its login, to relay upstream.
    fn login_accepted(&mut self, upstream_capabilities: &str) -> (Vec<u8>, Vec<u8>);
    /// What to send when the client was too slow to log in.
    fn timeout_message(&self) -> &'static [u8];
    /// The name the client introduced itself with (SMTP EHLO), to greet the upstream with.
    fn client_name(&self) -> Option<&str> {
        None
    }
    /// The program the client said it is (IMAP `ID` name and version, the SMTP `EHLO`
    /// name), as the owner is shown it.
    fn software(&self) -> Option<String> {
        None
    }
}

/// Why a line could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// The line is longer than the cap.
    TooLong,
}

/// CRLF (or bare LF) line framing with a length cap. Keeps the bytes after the last line
/// taken, which after a login are the commands the client pipelined.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    max: usize,
}

impl LineBuffer {
    /// A buffer refusing lines longer than `max` bytes (terminator included).
    pub fn new(max: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            max,
        }
    }

    /// Appends bytes from the client.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete line without its terminator, `Ok(None)` if more bytes are
    /// needed, or `TooLong` once the cap is passed (with or without a terminator).
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        match self.buf.iter().position(|b| *b == b'\n') {
            Some(pos) if pos + 1 > self.max => Err(LineError::TooLong),
            Some(pos) => {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Ok(Some(line))
            }
            None if self.buf.len() > self.max => Err(LineError::TooLong),
            None => Ok(None),
        }
    }

    /// Drops everything buffered (after STARTTLS: injected plaintext is never executed).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Takes the unprocessed bytes.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_however_the_bytes_arrive() {
        let input = b"USER a\r\nPASS b\nQUIT\r\n";
        for split in 0..input.len() {
            let mut lb = LineBuffer::new(64);
            let mut lines = Vec::new();
            for part in [&input[..split], &input[split..]] {
                lb.push(part);
                while let Some(l) = lb.next_line().unwrap() {
                    lines.push(l);
                }
            }
            assert_eq!(
                lines,
                [b"USER a".to_vec(), b"PASS b".to_vec(), b"QUIT".to_vec()],
                "split at {split}"
            );
        }
    }

    #[test]
    fn overlong_lines_are_errors_with_or_without_terminator() {
        let mut lb = LineBuffer::new(8);
        lb.push(b"123456789");
        assert_eq!(lb.next_line(), Err(LineError::TooLong));
        let mut lb = LineBuffer::new(8);
        lb.push(b"12345678\r\n");
        assert_eq!(lb.next_line(), Err(LineError::TooLong));
        let mut lb = LineBuffer::new(8);
        lb.push(b"123456\r\nrest");
        assert_eq!(lb.next_line().unwrap().unwrap(), b"123456");
        assert_eq!(lb.take_rest(), b"rest");
    }
}
