//! The SMTP submission front end before authentication (RFC 6409, 5321, 4954 AUTH,
//! 3207 STARTTLS, 8314), as a sans-I/O state machine.
//!
//! EHLO answers with the upstream's extensions (learned from its own EHLO by the driver)
//! plus AUTH and STARTTLS, which the proxy handles itself. No AUTH before TLS (`530 5.7.0`);
//! MAIL, RCPT, DATA and friends before AUTH get `530 5.7.0 Authentication required`.
//! After STARTTLS the client starts over with EHLO (RFC 3207 4.2) and whatever it sent
//! before the handshake is discarded.

use zeroize::Zeroizing;

use super::sasl::{SaslExchange, SaslStep};
use super::{Action, Event, Frontend, LineBuffer, Settings};
use crate::auth::Credentials;

/// RFC 4954 / SPEC: the one text for every refused login.
pub const AUTH_FAILED: &str = "535 5.7.8 Authentication failed";
/// RFC 4954 / SPEC: the text for a temporary failure.
pub const UNAVAILABLE: &str = "454 4.7.0 Temporary authentication failure, try again later";

/// Extensions the proxy handles itself, or that the upstream offers the proxy only (a
/// trusted host may say who the client is), and so never copies from the upstream.
const OWN_EXTENSIONS: [&str; 4] = ["AUTH", "STARTTLS", "XCLIENT", "XFORWARD"];

#[derive(Debug)]
enum State {
    /// Before EHLO / HELO (or again after STARTTLS).
    Fresh,
    /// After EHLO (`ehlo`) or HELO.
    Greeted { ehlo: bool },
    /// In an AUTH exchange.
    Sasl(SaslExchange),
    /// Credentials handed to the driver.
    Deciding,
    /// STARTTLS answered; waiting for the handshake.
    Handshaking,
    /// Logged in.
    LoggedIn,
    /// Closing.
    Closed,
}

/// The SMTP submission front end for one connection.
#[derive(Debug)]
pub struct SmtpFrontend {
    settings: Settings,
    hostname: String,
    extensions: Vec<String>,
    state: State,
    lines: LineBuffer,
    client_name: Option<String>,
    bytes_seen: u64,
    failed_logins: u32,
    bad: super::BadCommands,
}

fn line(s: impl AsRef<str>) -> Vec<u8> {
    let mut v = s.as_ref().as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

impl SmtpFrontend {
    /// A front end for a new connection; `upstream_extensions` are the EHLO keywords (with
    /// parameters) the upstream announced.
    pub fn new(settings: Settings, hostname: &str, upstream_extensions: &[String]) -> Self {
        let extensions = upstream_extensions
            .iter()
            .filter(|e| {
                let kw = e
                    .split([' ', '='])
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                !OWN_EXTENSIONS.contains(&kw.as_str())
            })
            .cloned()
            .collect();
        SmtpFrontend {
            settings,
            hostname: hostname.to_owned(),
            extensions,
            state: State::Fresh,
            lines: LineBuffer::new(settings.max_line as usize),
            client_name: None,
            bytes_seen: 0,
            failed_logins: 0,
            bad: super::BadCommands::default(),
        }
    }

    fn close_with(&mut self, mut out: Vec<Action>, text: &str) -> Vec<Action> {
        out.push(Action::Reply(line(text)));
        out.push(Action::Close);
        self.state = State::Closed;
        out
    }

    fn ehlo_reply(&self, domain: &str) -> String {
        let mut lines = vec![format!("{} Hello {domain}", self.hostname)];
        lines.extend(self.extensions.iter().cloned());
        if self.settings.tls_active {
            lines.push("AUTH PLAIN LOGIN".into());
        } else if self.settings.starttls {
            lines.push("STARTTLS".into());
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    fn process(&mut self, out: &mut Vec<Action>) {
        while matches!(
            self.state,
            State::Fresh | State::Greeted { .. } | State::Sasl(_)
        ) {
            let l = match self.lines.next_line() {
                Ok(Some(l)) => Zeroizing::new(l),
                Ok(None) => return,
                Err(_) => {
                    let done =
                        self.close_with(Vec::new(), "500 5.5.6 Line too long, closing connection");
                    out.extend(done);
                    return;
                }
            };
            let actions = match std::mem::replace(&mut self.state, State::Fresh) {
                State::Sasl(exchange) => {
                    // An abandoned exchange returns to the greeted state.
                    self.state = State::Greeted { ehlo: true };
                    self.sasl(exchange.step(&l))
                }
                State::Fresh => self.command(&l, None),
                State::Greeted { ehlo } => self.command(&l, Some(ehlo)),
                other => {
                    self.state = other;
                    Vec::new()
                }
            };
            let max = self.settings.max_bad_commands;
            // A 5xx that is not AUTH's own answer (535 counts as a failed login).
            if self.bad.too_many(&actions, max, |r| {
                r.first() == Some(&b'5') && !r.starts_with(b"535")
            }) {
                out.extend(actions);
                out.push(Action::Report(Event::TooManyBadCommands));
                let done = self.close_with(
                    Vec::new(),
                    "421 4.7.0 Too many invalid commands, closing connection",
                );
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
                vec![Action::Reply(line(format!("334 {text}")))]
            }
            SaslStep::Done(creds) => self.authenticate(creds),
            SaslStep::Cancelled => vec![Action::Reply(line("501 5.0.0 Authentication cancelled"))],
            SaslStep::Malformed(_) => {
                vec![Action::Reply(line("501 5.5.2 Malformed SASL response"))]
            }
        }
    }

    fn authenticate(&mut self, creds: Credentials) -> Vec<Action> {
        self.state = State::Deciding;
        vec![Action::Authenticate(creds)]
    }

    /// One command; `greeted` is `None` before EHLO/HELO, else whether it was EHLO.
    fn command(&mut self, l: &[u8], greeted: Option<bool>) -> Vec<Action> {
        let (keyword, arg) = match l.iter().position(|b| *b == b' ') {
            Some(i) => (&l[..i], Some(&l[i + 1..])),
            None => (l, None),
        };
        let keyword = String::from_utf8_lossy(keyword).to_ascii_uppercase();
        // Unless a command changes it, the state stays as it was.
        self.state = match greeted {
            None => State::Fresh,
            Some(ehlo) => State::Greeted { ehlo },
        };
        let reply = |s: &str| vec![Action::Reply(line(s))];
        let domain = || {
            arg.map(|a| String::from_utf8_lossy(a).trim().to_owned())
                .filter(|d| {
                    !d.is_empty() && !d.chars().any(|c| c.is_control() || c.is_whitespace())
                })
        };
        match keyword.as_str() {
            "EHLO" | "HELO" => {
                let Some(name) = domain() else {
                    return reply("501 5.5.4 Syntax: EHLO domain");
                };
                let ehlo = keyword == "EHLO";
                let text = if ehlo {
                    self.ehlo_reply(&name)
                } else {
                    format!("250 {}", self.hostname)
                };
                self.client_name = Some(name);
                self.state = State::Greeted { ehlo };
                reply(&text)
            }
            "STARTTLS" => {
                if self.settings.tls_active {
                    return reply("503 5.5.1 TLS is already active");
                }
                if !self.settings.starttls {
                    return reply("502 5.5.1 STARTTLS is not available here");
                }
                if arg.is_some() {
                    return reply("501 5.5.4 Syntax: STARTTLS");
                }
                self.lines.clear();
                self.client_name = None;
                self.state = State::Handshaking;
                vec![
                    Action::Reply(line("220 2.0.0 Ready to start TLS")),
                    Action::StartTls,
                ]
            }
            "AUTH" => {
                if !self.settings.tls_active {
                    return reply("530 5.7.0 Must issue a STARTTLS command first");
                }
                if greeted != Some(true) {
                    return reply("503 5.5.1 Send EHLO first");
                }
                let arg = arg.unwrap_or_default();
                let mut parts = arg.splitn(2, |b| *b == b' ');
                let mechanism =
                    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                match SaslExchange::start(&mechanism, parts.next()) {
                    Ok(step) => self.sasl(step),
                    Err(_) => reply("504 5.5.4 Unrecognized authentication type"),
                }
            }
            "MAIL" | "RCPT" | "DATA" | "BDAT" | "VRFY" | "EXPN" | "ETRN" | "BURL" => {
                reply("530 5.7.0 Authentication required")
            }
            "NOOP" => reply("250 2.0.0 OK"),
            "RSET" => reply("250 2.0.0 OK"),
            "HELP" => reply("214 2.0.0 Log in with AUTH, then send mail"),
            "QUIT" => self.close_with(Vec::new(), "221 2.0.0 Bye"),
            _ => reply("500 5.5.2 Command unrecognized"),
        }
    }
}

impl Frontend for SmtpFrontend {
    fn greeting(&self) -> Vec<u8> {
        line(format!("220 {} ESMTP Sentinella ready", self.hostname))
    }

    fn feed(&mut self, data: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(
            self.state,
            State::Fresh | State::Greeted { .. } | State::Sasl(_) | State::Deciding
        ) {
            return out;
        }
        self.bytes_seen = self.bytes_seen.saturating_add(data.len() as u64);
        if self.bytes_seen > self.settings.preauth_bytes {
            return self.close_with(
                out,
                "421 4.7.0 Too much data before authentication, closing connection",
            );
        }
        self.lines.push(data);
        self.process(&mut out);
        out
    }

    fn tls_started(&mut self) {
        if matches!(self.state, State::Handshaking) {
            self.settings.tls_active = true;
            self.state = State::Fresh;
        }
    }

    fn login_refused(&mut self) -> Vec<Action> {
        if !matches!(self.state, State::Deciding) {
            return Vec::new();
        }
        self.failed_logins += 1;
        self.state = State::Greeted { ehlo: true };
        let mut out = vec![Action::Reply(line(AUTH_FAILED))];
        if self.failed_logins >= self.settings.max_failed_logins {
            return self.close_with(
                out,
                "421 4.7.0 Too many failed authentications, closing connection",
            );
        }
        self.process(&mut out);
        out
    }

    fn login_unavailable(&mut self) -> Vec<Action> {
        if !matches!(self.state, State::Deciding) {
            return Vec::new();
        }
        self.state = State::Greeted { ehlo: true };
        let mut out = vec![Action::Reply(line(UNAVAILABLE))];
        self.process(&mut out);
        out
    }

    fn login_accepted(&mut self, _upstream_capabilities: &str) -> (Vec<u8>, Vec<u8>) {
        self.state = State::LoggedIn;
        (
            line("235 2.7.0 Authentication successful"),
            self.lines.take_rest(),
        )
    }

    fn timeout_message(&self) -> &'static [u8] {
        b"421 4.4.2 Timeout before authentication, closing connection\r\n"
    }

    fn client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    fn software(&self) -> Option<String> {
        self.client_name
            .as_deref()
            .and_then(crate::policy::usage::smtp_software)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{self, render};

    fn every_split(input: &str, tls: bool) -> String {
        testing::every_split(|| fe(tls), input)
    }

    fn settings(tls: bool) -> Settings {
        Settings {
            tls_active: tls,
            starttls: !tls,
            max_line: 512,
            preauth_bytes: 8192,
            max_failed_logins: 3,
            max_bad_commands: 10,
        }
    }

    fn exts() -> Vec<String> {
        [
            "PIPELINING",
            "SIZE 40960000",
            "AUTH PLAIN",
            "8BITMIME",
            "STARTTLS",
            "SMTPUTF8",
            "CHUNKING",
            "AUTH=LOGIN",
        ]
        .map(String::from)
        .to_vec()
    }

    fn fe(tls: bool) -> SmtpFrontend {
        SmtpFrontend::new(settings(tls), "mx.example.it", &exts())
    }

    #[test]
    fn ehlo_carries_upstream_extensions_and_our_auth() {
        let out = every_split("EHLO client.example\r\n", true);
        assert_eq!(
            out,
            "250-mx.example.it Hello client.example\r\n250-PIPELINING\r\n250-SIZE 40960000\r\n250-8BITMIME\r\n\
             250-SMTPUTF8\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n"
        );
        let out = every_split("EHLO client.example\r\n", false);
        assert!(
            out.ends_with("250 STARTTLS\r\n") && !out.contains("AUTH"),
            "{out}"
        );
    }

    #[test]
    fn auth_before_tls_and_before_ehlo() {
        assert_eq!(
            every_split("EHLO c\r\nAUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n", false)
                .lines()
                .last()
                .unwrap(),
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        assert_eq!(
            every_split("AUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n", true),
            "503 5.5.1 Send EHLO first\r\n"
        );
        assert!(
            every_split("HELO c\r\nAUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n", true)
                .ends_with("503 5.5.1 Send EHLO first\r\n")
        );
    }

    #[test]
    fn auth_plain_login_initial_response_and_empty() {
        let pre = "EHLO c\r\n";
        let strip = |s: String| {
            s.split_once("250 AUTH PLAIN LOGIN\r\n")
                .unwrap()
                .1
                .to_owned()
        };
        assert_eq!(
            strip(every_split(
                &format!("{pre}AUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n"),
                true
            )),
            "<AUTH mario:secret:None>"
        );
        assert_eq!(
            strip(every_split(
                &format!("{pre}AUTH PLAIN\r\nAG1hcmlvAHNlY3JldA==\r\n"),
                true
            )),
            "334 \r\n<AUTH mario:secret:None>"
        );
        assert_eq!(
            strip(every_split(
                &format!("{pre}auth login\r\nbWFyaW8=\r\nc2VjcmV0\r\n"),
                true
            )),
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n<AUTH mario:secret:None>"
        );
        // "=" is an empty initial response (RFC 4954): for LOGIN, an empty user name.
        assert_eq!(
            strip(every_split(
                &format!("{pre}AUTH LOGIN =\r\nc2VjcmV0\r\n"),
                true
            )),
            "334 UGFzc3dvcmQ6\r\n<AUTH :secret:None>"
        );
    }

    #[test]
    fn auth_cancel_garbage_unknown() {
        let out = every_split("EHLO c\r\nAUTH PLAIN\r\n*\r\nNOOP\r\n", true);
        assert!(
            out.ends_with("334 \r\n501 5.0.0 Authentication cancelled\r\n250 2.0.0 OK\r\n"),
            "{out}"
        );
        let out = every_split("EHLO c\r\nAUTH PLAIN @@@\r\n", true);
        assert!(
            out.ends_with("501 5.5.2 Malformed SASL response\r\n"),
            "{out}"
        );
        let out = every_split("EHLO c\r\nAUTH GSSAPI\r\n", true);
        assert!(
            out.ends_with("504 5.5.4 Unrecognized authentication type\r\n"),
            "{out}"
        );
    }

    #[test]
    fn mail_before_auth_is_refused() {
        let out = every_split(
            "EHLO c\r\nMAIL FROM:<a@b.it>\r\nRCPT TO:<c@d.it>\r\nDATA\r\nRSET\r\nQUIT\r\n",
            true,
        );
        let tail: Vec<&str> = out.lines().skip(7).collect();
        assert_eq!(
            tail,
            [
                "530 5.7.0 Authentication required",
                "530 5.7.0 Authentication required",
                "530 5.7.0 Authentication required",
                "250 2.0.0 OK",
                "221 2.0.0 Bye",
                "<CLOSE>"
            ]
        );
    }

    #[test]
    fn starttls_discards_injection_and_requires_a_new_ehlo() {
        let mut f = fe(false);
        let out = render(&f.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n"));
        assert!(
            out.ends_with("220 2.0.0 Ready to start TLS\r\n<STARTTLS>"),
            "{out}"
        );
        assert_eq!(render(&f.feed(b"RCPT TO:<x@y>\r\n")), "");
        f.tls_started();
        assert_eq!(
            render(&f.feed(b"AUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n")),
            "503 5.5.1 Send EHLO first\r\n"
        );
        assert!(render(&f.feed(b"EHLO c\r\n")).contains("AUTH PLAIN LOGIN"));
        assert_eq!(
            render(&f.feed(b"STARTTLS\r\n")),
            "503 5.5.1 TLS is already active\r\n"
        );
    }

    #[test]
    fn results_and_pipelining() {
        let mut f = fe(true);
        f.feed(b"EHLO c\r\nAUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n");
        assert_eq!(f.client_name(), Some("c"));
        assert_eq!(
            render(&f.login_unavailable()),
            "454 4.7.0 Temporary authentication failure, try again later\r\n"
        );
        for i in 0..3 {
            f.feed(b"AUTH PLAIN AG1hcmlvAHNlY3JldA==\r\n");
            let out = render(&f.login_refused());
            if i < 2 {
                assert_eq!(out, "535 5.7.8 Authentication failed\r\n");
            } else {
                assert!(out.ends_with(
                    "421 4.7.0 Too many failed authentications, closing connection\r\n<CLOSE>"
                ));
            }
        }
        let mut f = fe(true);
        f.feed(b"EHLO c\r\nAUTH PLAIN AG1hcmlvAHNlY3JldA==\r\nMAIL FROM:<a@b.it>\r\n");
        let (ok, rest) = f.login_accepted("");
        assert_eq!(ok, b"235 2.7.0 Authentication successful\r\n");
        assert_eq!(rest, b"MAIL FROM:<a@b.it>\r\n");
    }

    #[test]
    fn bad_ehlo_unknown_and_long_lines() {
        assert_eq!(
            every_split("EHLO\r\n", true),
            "501 5.5.4 Syntax: EHLO domain\r\n"
        );
        assert_eq!(
            every_split("FROB\r\n", true),
            "500 5.5.2 Command unrecognized\r\n"
        );
        let long = format!("EHLO {}\r\n", "a".repeat(600));
        assert_eq!(
            every_split(&long, true),
            "500 5.5.6 Line too long, closing connection\r\n<CLOSE>"
        );
    }

    #[test]
    fn ten_bad_commands_close_the_connection_but_failed_auths_do_not_count() {
        let mut f = fe(true);
        let mut out = render(&f.feed(b"EHLO client\r\n"));
        for _ in 0..9 {
            out.push_str(&render(&f.feed(b"MAIL FROM:<a@b.it>\r\n")));
        }
        assert!(!out.contains("<CLOSE>"), "{out}");
        let last = render(&f.feed(b"VRFY x\r\n"));
        assert!(
            last.ends_with("421 4.7.0 Too many invalid commands, closing connection\r\n<CLOSE>"),
            "{last}"
        );
    }
}
