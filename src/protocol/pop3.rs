//! The POP3 front end before authentication (RFC 1939, 2449 CAPA, 5034 SASL, 2595 STLS,
//! 3206 response codes), as a sans-I/O state machine.
//!
//! USER/PASS and AUTH PLAIN / LOGIN (with or without initial response, `*` cancel) are
//! offered only once TLS is active; on the STLS port the client must say STLS first, and
//! bytes it sent after STLS before the handshake are discarded.

use zeroize::Zeroizing;

use super::sasl::{SaslExchange, SaslStep};
use super::{Action, Event, Frontend, LineBuffer, Settings};
use crate::auth::Credentials;
use crate::auth::credentials::Mechanism;

/// RFC 3206 / SPEC: the one text for every refused login.
pub const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed";
/// RFC 3206 / SPEC: the text for a temporary failure.
pub const UNAVAILABLE: &str = "-ERR [SYS/TEMP] Temporary failure, try again later";

#[derive(Debug)]
enum State {
    /// Reading commands; `user` is the name given by USER.
    Ready { user: Option<Zeroizing<Vec<u8>>> },
    /// In an AUTH exchange.
    Sasl(SaslExchange),
    /// Credentials handed to the driver.
    Deciding,
    /// STLS answered; waiting for the handshake.
    Handshaking,
    /// Logged in.
    LoggedIn,
    /// Closing.
    Closed,
}

/// The POP3 front end for one connection.
#[derive(Debug)]
pub struct Pop3Frontend {
    settings: Settings,
    state: State,
    lines: LineBuffer,
    bytes_seen: u64,
    failed_logins: u32,
    bad: super::BadCommands,
}

fn line(s: impl AsRef<str>) -> Vec<u8> {
    let mut v = s.as_ref().as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

impl Pop3Frontend {
    /// A front end for a new connection.
    pub fn new(settings: Settings) -> Self {
        Pop3Frontend {
            settings,
            state: State::Ready { user: None },
            lines: LineBuffer::new(settings.max_line as usize),
            bytes_seen: 0,
            failed_logins: 0,
            bad: super::BadCommands::default(),
        }
    }

    /// The CAPA list before login (RFC 2449).
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut caps = vec!["CAPA", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if self.settings.tls_active {
            caps.extend(["USER", "SASL PLAIN LOGIN"]);
        } else if self.settings.starttls {
            caps.push("STLS");
        }
        caps.push("IMPLEMENTATION Sentinella");
        caps
    }

    fn close_with(&mut self, mut out: Vec<Action>, text: &str) -> Vec<Action> {
        out.push(Action::Reply(line(text)));
        out.push(Action::Close);
        self.state = State::Closed;
        out
    }

    fn process(&mut self, out: &mut Vec<Action>) {
        while matches!(self.state, State::Ready { .. } | State::Sasl(_)) {
            let l = match self.lines.next_line() {
                Ok(Some(l)) => Zeroizing::new(l),
                Ok(None) => return,
                Err(_) => {
                    let done = self.close_with(Vec::new(), "-ERR Line too long");
                    out.extend(done);
                    return;
                }
            };
            let actions = match std::mem::replace(&mut self.state, State::Ready { user: None }) {
                State::Sasl(exchange) => self.sasl(exchange.step(&l)),
                State::Ready { user } => self.command(&l, user),
                other => {
                    self.state = other;
                    Vec::new()
                }
            };
            let max = self.settings.max_bad_commands;
            // An -ERR that is not a login's own answer (those count as failed logins).
            if self.bad.too_many(&actions, max, |r| {
                r.starts_with(b"-ERR")
                    && !r.starts_with(AUTH_FAILED.as_bytes())
                    && !r.starts_with(UNAVAILABLE.as_bytes())
            }) {
                out.extend(actions);
                out.push(Action::Report(Event::TooManyBadCommands));
                let done = self.close_with(Vec::new(), "-ERR Too many invalid commands");
                out.extend(done);
                return;
            }
            out.extend(actions);
        }
    }

    fn sasl(&mut self, step: SaslStep) -> Vec<Action> {
        match step {
            SaslStep::Challenge(next, text) => {
                self.state = State::Sasl(next);
                vec![Action::Reply(line(format!("+ {text}")))]
            }
            SaslStep::Done(creds) => self.authenticate(creds),
            SaslStep::Cancelled => vec![Action::Reply(line("-ERR Authentication cancelled"))],
            SaslStep::Malformed(_) => vec![Action::Reply(line("-ERR Malformed SASL response"))],
        }
    }

    fn authenticate(&mut self, creds: Credentials) -> Vec<Action> {
        self.state = State::Deciding;
        vec![Action::Authenticate(creds)]
    }

    fn command(&mut self, l: &[u8], user: Option<Zeroizing<Vec<u8>>>) -> Vec<Action> {
        let (keyword, arg) = match l.iter().position(|b| *b == b' ') {
            Some(i) => (&l[..i], Some(&l[i + 1..])),
            None => (l, None),
        };
        let keyword = String::from_utf8_lossy(keyword).to_ascii_uppercase();
        let reply = |s: &str| vec![Action::Reply(line(s))];
        let tls = self.settings.tls_active;
        let not_before_tls = "-ERR [AUTH] Log in only after STLS";
        match keyword.as_str() {
            "CAPA" => {
                let mut text = String::from("+OK Capability list follows\r\n");
                for c in self.capabilities() {
                    text.push_str(c);
                    text.push_str("\r\n");
                }
                text.push('.');
                self.state = State::Ready { user };
                vec![Action::Reply(line(text))]
            }
            "QUIT" => self.close_with(Vec::new(), "+OK Bye"),
            "STLS" => {
                if tls || !self.settings.starttls {
                    self.state = State::Ready { user };
                    return reply("-ERR STLS is not available here");
                }
                // RFC 2595 4: discard what the client sent before the handshake.
                self.lines.clear();
                self.state = State::Handshaking;
                vec![
                    Action::Reply(line("+OK Begin TLS negotiation")),
                    Action::StartTls,
                ]
            }
            "USER" if !tls => reply(not_before_tls),
            "USER" => match arg.filter(|a| !a.is_empty()) {
                Some(name) => {
                    self.state = State::Ready {
                        user: Some(Zeroizing::new(name.to_vec())),
                    };
                    reply("+OK Send your password")
                }
                None => reply("-ERR Missing user name"),
            },
            "PASS" if !tls => reply(not_before_tls),
            "PASS" => match (user, arg) {
                (Some(name), Some(secret)) => {
                    // The whole rest of the line: passwords may contain spaces.
                    self.authenticate(Credentials::from_wire(
                        &name,
                        secret,
                        None,
                        Mechanism::Pop3User,
                    ))
                }
                (None, _) => reply("-ERR USER first"),
                (Some(name), None) => {
                    self.state = State::Ready { user: Some(name) };
                    reply("-ERR Missing password")
                }
            },
            "AUTH" if !tls => reply(not_before_tls),
            "AUTH" => {
                let Some(arg) = arg else {
                    return reply("+OK Supported mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.");
                };
                let mut parts = arg.splitn(2, |b| *b == b' ');
                let mechanism =
                    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                match SaslExchange::start(&mechanism, parts.next()) {
                    Ok(step) => self.sasl(step),
                    Err(_) => reply("-ERR Unsupported authentication mechanism"),
                }
            }
            "APOP" => reply("-ERR APOP is not supported"),
            "STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "TOP" | "UIDL" => {
                self.state = State::Ready { user };
                reply("-ERR Log in first")
            }
            _ => {
                self.state = State::Ready { user };
                reply("-ERR Unknown command")
            }
        }
    }
}

impl Frontend for Pop3Frontend {
    fn greeting(&self) -> Vec<u8> {
        line("+OK Sentinella POP3 ready.")
    }

    fn feed(&mut self, data: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(
            self.state,
            State::Ready { .. } | State::Sasl(_) | State::Deciding
        ) {
            // Closed, logged in, or plaintext injected after STLS: never processed.
            return out;
        }
        self.bytes_seen = self.bytes_seen.saturating_add(data.len() as u64);
        if self.bytes_seen > self.settings.preauth_bytes {
            return self.close_with(out, "-ERR Too much data before login");
        }
        self.lines.push(data);
        self.process(&mut out);
        out
    }

    fn tls_started(&mut self) {
        if matches!(self.state, State::Handshaking) {
            self.settings.tls_active = true;
            self.state = State::Ready { user: None };
        }
    }

    fn login_refused(&mut self) -> Vec<Action> {
        if !matches!(self.state, State::Deciding) {
            return Vec::new();
        }
        self.failed_logins += 1;
        self.state = State::Ready { user: None };
        let mut out = vec![Action::Reply(line(AUTH_FAILED))];
        if self.failed_logins >= self.settings.max_failed_logins {
            out.push(Action::Close);
            self.state = State::Closed;
            return out;
        }
        self.process(&mut out);
        out
    }

    fn login_unavailable(&mut self) -> Vec<Action> {
        if !matches!(self.state, State::Deciding) {
            return Vec::new();
        }
        self.state = State::Ready { user: None };
        let mut out = vec![Action::Reply(line(UNAVAILABLE))];
        self.process(&mut out);
        out
    }

    fn login_accepted(&mut self, _upstream_capabilities: &str) -> (Vec<u8>, Vec<u8>) {
        self.state = State::LoggedIn;
        (line("+OK Logged in."), self.lines.take_rest())
    }

    fn timeout_message(&self) -> &'static [u8] {
        b"-ERR Autologout: too slow to log in\r\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{self, render};

    fn every_split(input: &str, tls: bool) -> String {
        testing::every_split(|| Pop3Frontend::new(settings(tls)), input)
    }

    fn settings(tls: bool) -> Settings {
        Settings {
            tls_active: tls,
            starttls: !tls,
            max_line: 255,
            preauth_bytes: 4096,
            max_failed_logins: 3,
            max_bad_commands: 10,
        }
    }

    #[test]
    fn capa_before_and_after_tls() {
        let out = every_split("CAPA\r\n", true);
        assert!(
            out.starts_with("+OK")
                && out.contains("USER\r\n")
                && out.contains("SASL PLAIN LOGIN\r\n")
        );
        assert!(out.ends_with("\r\n.\r\n") && !out.contains("STLS"));
        let out = every_split("capa\r\n", false);
        assert!(
            out.contains("STLS\r\n") && !out.contains("USER") && !out.contains("SASL"),
            "{out}"
        );
    }

    #[test]
    fn user_pass() {
        let out = every_split("USER mario@x.it\r\nPASS p w\r\n", true);
        assert_eq!(out, "+OK Send your password\r\n<AUTH mario@x.it:p w:None>");
        assert_eq!(every_split("PASS x\r\n", true), "-ERR USER first\r\n");
    }

    #[test]
    fn no_login_before_stls() {
        let out = every_split(
            "USER mario\r\nPASS secret\r\nAUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n",
            false,
        );
        assert_eq!(out, "-ERR [AUTH] Log in only after STLS\r\n".repeat(3));
    }

    #[test]
    fn auth_plain_and_login() {
        assert_eq!(
            every_split("AUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n", true),
            "<AUTH mario:secret:None>"
        );
        assert_eq!(
            every_split("AUTH PLAIN\r\nAG1hcmlvAHNlY3JldA==\r\n", true),
            "+ \r\n<AUTH mario:secret:None>"
        );
        assert_eq!(
            every_split("AUTH LOGIN\r\nbWFyaW8=\r\nc2VjcmV0\r\n", true),
            "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n<AUTH mario:secret:None>"
        );
        assert_eq!(
            every_split("AUTH LOGIN bWFyaW8=\r\nc2VjcmV0\r\n", true),
            "+ UGFzc3dvcmQ6\r\n<AUTH mario:secret:None>"
        );
        assert_eq!(
            every_split("AUTH\r\n", true),
            "+OK Supported mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
        );
    }

    #[test]
    fn auth_cancel_garbage_and_unknown() {
        assert_eq!(
            every_split("AUTH PLAIN\r\n*\r\nQUIT\r\n", true),
            "+ \r\n-ERR Authentication cancelled\r\n+OK Bye\r\n<CLOSE>"
        );
        assert_eq!(
            every_split("AUTH PLAIN !!\r\n", true),
            "-ERR Malformed SASL response\r\n"
        );
        assert_eq!(
            every_split("AUTH CRAM-MD5\r\n", true),
            "-ERR Unsupported authentication mechanism\r\n"
        );
        // authzid != authcid is marked (and so refused by the authenticator).
        assert_eq!(
            every_split("AUTH PLAIN YWRtaW4AbWFyaW8Ac2VjcmV0\r\n", true),
            "<AUTH mario:secret:Some(\"authorization identity differs from the login name\")>"
        );
    }

    #[test]
    fn stls_discards_injected_commands() {
        let mut fe = Pop3Frontend::new(settings(false));
        let out = render(&fe.feed(b"STLS\r\nUSER mario\r\nPASS secret\r\n"));
        assert_eq!(out, "+OK Begin TLS negotiation\r\n<STARTTLS>");
        assert_eq!(render(&fe.feed(b"PASS again\r\n")), "");
        fe.tls_started();
        assert_eq!(render(&fe.feed(b"PASS x\r\n")), "-ERR USER first\r\n");
    }

    #[test]
    fn transaction_commands_before_login() {
        assert_eq!(
            every_split("STAT\r\nRETR 1\r\nXYZZY\r\n", true),
            "-ERR Log in first\r\n-ERR Log in first\r\n-ERR Unknown command\r\n"
        );
    }

    #[test]
    fn refusals_then_close_and_pipelining_after_success() {
        let mut fe = Pop3Frontend::new(settings(true));
        for i in 0..3 {
            assert!(render(&fe.feed(b"USER a\r\nPASS b\r\n")).ends_with("<AUTH a:b:None>"));
            let out = render(&fe.login_refused());
            if i < 2 {
                assert_eq!(out, "-ERR [AUTH] Authentication failed\r\n");
            } else {
                assert_eq!(out, "-ERR [AUTH] Authentication failed\r\n<CLOSE>");
            }
        }
        let mut fe = Pop3Frontend::new(settings(true));
        render(&fe.feed(b"USER a\r\nPASS b\r\nSTAT\r\nLIST\r\n"));
        let (ok, rest) = fe.login_accepted("");
        assert_eq!(
            (ok.as_slice(), rest.as_slice()),
            (&b"+OK Logged in.\r\n"[..], &b"STAT\r\nLIST\r\n"[..])
        );
    }

    #[test]
    fn temporary_failure_text() {
        let mut fe = Pop3Frontend::new(settings(true));
        fe.feed(b"USER a\r\nPASS b\r\n");
        assert_eq!(
            render(&fe.login_unavailable()),
            "-ERR [SYS/TEMP] Temporary failure, try again later\r\n"
        );
    }

    #[test]
    fn long_lines_and_byte_cap() {
        let long = format!("USER {}\r\n", "a".repeat(300));
        assert_eq!(every_split(&long, true), "-ERR Line too long\r\n<CLOSE>");
        let mut fe = Pop3Frontend::new(settings(true));
        let mut out = String::new();
        for _ in 0..10_000 {
            out.push_str(&render(&fe.feed(b"CAPA\r\n")));
        }
        assert!(out.ends_with("-ERR Too much data before login\r\n<CLOSE>"));
    }

    #[test]
    fn ten_bad_commands_close_the_connection_but_failed_logins_do_not_count() {
        let mut fe = Pop3Frontend::new(settings(true));
        // Two failed logins are the throttle's and the failed-login limit's, not this one's.
        fe.feed(b"USER a\r\nPASS b\r\n");
        fe.login_refused();
        let mut out = String::new();
        for _ in 0..9 {
            out.push_str(&render(&fe.feed(b"STAT\r\n")));
        }
        assert!(!out.contains("<CLOSE>"), "{out}");
        let last = render(&fe.feed(b"BOGUS\r\n"));
        assert_eq!(
            last,
            "-ERR Unknown command\r\n-ERR Too many invalid commands\r\n<CLOSE>"
        );
        assert!(fe.feed(b"CAPA\r\n").is_empty(), "nothing after the close");
    }
}
