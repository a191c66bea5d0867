//! The IMAP front end before authentication, as a sans-I/O state machine.
//!
//! It answers CAPABILITY, NOOP, LOGOUT, STARTTLS, ID, LOGIN and AUTHENTICATE (PLAIN,
//! LOGIN; SASL-IR; `*` cancel) itself and hands every credential to the driver as an
//! [`Action::Authenticate`]. Framing — lines, synchronizing and non-synchronizing
//! literals — is imap-codec's `Fragmentizer`, so literal bytes are never mistaken for
//! commands; decoding is imap-codec's `CommandCodec`.
//!
//! Bounds: a message (line plus literals) longer than `max_line` is refused — as soon as
//! the part received so far is longer, not only once its line ends — except an ID
//! command, which may be as long as RFC 2971 allows ([`ID_COMMAND_MAX`]); a client that
//! sends more than `preauth_bytes` before logging in, or fails `max_failed_logins` times,
//! is disconnected.
//!
//! STARTTLS: RFC 3501 section 6.2.1 — the client "MUST NOT issue further commands until a
//! server response is seen and the TLS negotiation is complete". Bytes that arrive after
//! the STARTTLS command and before the handshake are thrown away, never executed
//! (the CVE-2011-0411 / CVE-2021-33515 class of bug).

use imap_codec::fragmentizer::{
    DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement,
};
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::{AuthenticateDataCodec, CommandCodec};
use zeroize::Zeroizing;

use super::Event;
use super::sasl::{self, LOGIN_PASSWORD_CHALLENGE, LOGIN_USERNAME_CHALLENGE};
pub use super::{Action, Settings};
use crate::auth::Credentials;
use crate::auth::credentials::Mechanism;

/// RFC 5530 / SPEC: the one text for every refused login.
pub const AUTH_FAILED: &str = "NO [AUTHENTICATIONFAILED] Authentication failed";
/// RFC 5530 / SPEC: the text for a temporary failure (upstream down).
pub const UNAVAILABLE: &str = "NO [UNAVAILABLE] Service temporarily unavailable, try again later";

/// RFC 2971 section 3.3: "Field strings MUST NOT be longer than 30 octets.  Value
/// strings MUST NOT be longer than 1024 octets.  Implementations MUST NOT send more than
/// 30 field-value pairs."
const ID_MAX_PAIRS: usize = 30;
const ID_MAX_FIELD: usize = 30;
const ID_MAX_VALUE: usize = 1024;
/// The longest tag an ID command may carry and still get [`ID_COMMAND_MAX`].
const ID_MAX_TAG: usize = 64;

/// The longest encoding of an `n`-octet string without escapes: a non-synchronizing
/// literal, `{n+}` CRLF and the octets (a quoted string, `n` + 2, is shorter).
const fn id_string_max(n: usize) -> usize {
    let mut digits = 1;
    let mut rest = n / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    "{+}\r\n".len() + digits + n
}

/// The longest ID command RFC 2971 allows (32,231 bytes): a tag of up to 64 bytes, then
/// `SP "ID" SP "(" string SP nstring *(SP string SP nstring) ")" CRLF` with 30 pairs at
/// their longest. An ID command may be this long whatever `max_line` says, so
/// the shipped `max_line` (8 KiB) can stay well below it for every other command while
/// any conforming client's ID — sent before login — still passes. A value quoted with
/// many escapes (`\"`, `\\`) can be longer; a client can send it as a literal.
pub const ID_COMMAND_MAX: u32 = (ID_MAX_TAG
    + " ID (".len()
    + ID_MAX_PAIRS * (id_string_max(ID_MAX_FIELD) + 1 + id_string_max(ID_MAX_VALUE))
    + (ID_MAX_PAIRS - 1)
    + ")\r\n".len()) as u32;

/// Whether `message` (the start of one) is an ID command: `tag SP "ID" SP`, the tag at
/// most [`ID_MAX_TAG`] bytes. Only its first `max_line` bytes are looked at, so the answer
/// is the same however the bytes arrive.
fn is_id_command(message: &[u8], max_line: u32) -> bool {
    let head = &message[..message.len().min(max_line as usize)];
    let Some(sp) = head.iter().take(ID_MAX_TAG + 1).position(|b| *b == b' ') else {
        return false;
    };
    sp > 0
        && head
            .get(sp + 1..sp + 4)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"ID "))
}

/// A framer holding at most the longest message [`ImapFrontend::message_limit`] allows.
fn framer(settings: Settings) -> Fragmentizer {
    Fragmentizer::new(settings.max_line.max(ID_COMMAND_MAX))
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Ready,
    /// AUTHENTICATE PLAIN, waiting for the client's response line.
    SaslPlain { tag: String },
    /// AUTHENTICATE LOGIN, waiting for the user name.
    SaslLoginUser { tag: String },
    /// AUTHENTICATE LOGIN, waiting for the password.
    SaslLoginPass {
        tag: String,
        user: Zeroizing<Vec<u8>>,
    },
    /// Credentials handed to the driver; input is buffered, not processed.
    Deciding { tag: String },
    /// STARTTLS answered; waiting for the handshake.
    Handshaking,
    /// Logged in: the front end is done.
    LoggedIn,
    /// Closing.
    Closed,
}

/// The IMAP front end for one connection.
pub struct ImapFrontend {
    settings: Settings,
    state: State,
    framer: Fragmentizer,
    /// Bytes given to the framer that are not yet part of a finished message: after an
    /// accepted login these are the commands the client pipelined, relayed upstream.
    unconsumed: Vec<u8>,
    bytes_seen: u64,
    failed_logins: u32,
    bad: super::BadCommands,
    /// The program the client named in `ID` ("name version").
    software: Option<String>,
}

impl std::fmt::Debug for ImapFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapFrontend")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn line(s: impl AsRef<str>) -> Vec<u8> {
    let mut v = s.as_ref().as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

impl ImapFrontend {
    /// A front end for a new connection.
    pub fn new(settings: Settings) -> Self {
        ImapFrontend {
            settings,
            state: State::Ready,
            framer: framer(settings),
            unconsumed: Vec::new(),
            bytes_seen: 0,
            failed_logins: 0,
            bad: super::BadCommands::default(),
            software: None,
        }
    }

    /// Whether login is allowed yet (TLS active).
    fn login_allowed(&self) -> bool {
        self.settings.tls_active
    }

    /// The capabilities offered before login.
    pub fn capabilities(&self) -> &'static str {
        if self.settings.tls_active {
            "IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN"
        } else if self.settings.starttls {
            "IMAP4rev1 SASL-IR LITERAL+ ID STARTTLS LOGINDISABLED"
        } else {
            "IMAP4rev1 SASL-IR LITERAL+ ID LOGINDISABLED"
        }
    }

    /// The greeting to send first.
    pub fn greeting(&self) -> Vec<u8> {
        line(format!(
            "* OK [CAPABILITY {}] Sentinella ready.",
            self.capabilities()
        ))
    }

    /// Whether the front end is finished (logged in or closed).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::LoggedIn | State::Closed)
    }

    /// Feeds bytes from the client; returns what to do. Stops early at an
    /// `Authenticate` or `StartTls` action: the rest stays buffered until the driver
    /// reports back.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.state, State::Closed | State::LoggedIn) {
            return out;
        }
        if matches!(self.state, State::Handshaking) {
            // Plaintext injected after STARTTLS: discard, never execute.
            return out;
        }
        self.bytes_seen = self.bytes_seen.saturating_add(data.len() as u64);
        if self.bytes_seen > self.settings.preauth_bytes {
            return self.close_with(out, "* BYE Too much data before login");
        }
        self.framer.enqueue_bytes(data);
        self.unconsumed.extend_from_slice(data);
        self.process(&mut out);
        out
    }

    fn close_with(&mut self, mut out: Vec<Action>, bye: &str) -> Vec<Action> {
        out.push(Action::Reply(line(bye)));
        out.push(Action::Close);
        self.state = State::Closed;
        out
    }

    /// Runs the framer until it needs more bytes or an action must wait for the driver.
    fn process(&mut self, out: &mut Vec<Action>) {
        while matches!(
            self.state,
            State::Ready
                | State::SaslPlain { .. }
                | State::SaslLoginUser { .. }
                | State::SaslLoginPass { .. }
        ) {
            let fragment = self.framer.progress();
            // The message so far, complete or not: an unterminated line is cut as soon as
            // it is too long, not when its CRLF (or the byte cap) finally comes.
            if self.framer.is_max_message_size_exceeded()
                || self.framer.message_bytes().len() as u64 > self.message_limit()
            {
                let done = self.close_with(Vec::new(), "* BYE Line too long");
                out.extend(done);
                return;
            }
            let Some(fragment) = fragment else {
                return;
            };
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                end,
                ..
            } = fragment
            {
                let fits = u64::from(length) + end as u64 <= self.message_limit();
                let in_command = matches!(self.state, State::Ready);
                match (mode, fits && in_command) {
                    (LiteralMode::Sync, true) => {
                        out.push(Action::Reply(line("+ Ready for literal data")))
                    }
                    (LiteralMode::NonSync, true) => {}
                    (LiteralMode::Sync, false) => {
                        // RFC 3501 7.5: refuse with a tagged BAD; the client will not send
                        // the literal, so the message can be skipped safely.
                        let tag = self.tag_or_star();
                        out.push(Action::Reply(line(format!(
                            "{tag} BAD Literal too large or not allowed here"
                        ))));
                        self.consume(end);
                        self.framer.skip_message();
                        self.reset_sasl();
                    }
                    (LiteralMode::NonSync, false) => {
                        // The client sends the bytes regardless: we cannot resynchronise.
                        let done = self.close_with(Vec::new(), "* BYE Literal too large");
                        out.extend(done);
                        return;
                    }
                }
                continue;
            }
            if !self.framer.is_message_complete() {
                continue;
            }
            let len = self.framer.message_bytes().len();
            let actions = self.handle_message();
            self.consume(len);
            let max = self.settings.max_bad_commands;
            // A tagged (or untagged) BAD: a command the proxy could not accept.
            if self.bad.too_many(&actions, max, |r| {
                r.split(|b| *b == b' ').nth(1) == Some(b"BAD".as_slice())
            }) {
                out.extend(actions);
                out.push(Action::Report(Event::TooManyBadCommands));
                let done = self.close_with(Vec::new(), "* BYE Too many invalid commands");
                out.extend(done);
                return;
            }
            out.extend(actions);
        }
    }

    /// The longest the message being received may be: `max_line`, or for an ID command
    /// at least [`ID_COMMAND_MAX`]. The one place for this rule.
    fn message_limit(&self) -> u64 {
        let max_line = self.settings.max_line;
        let id = matches!(self.state, State::Ready)
            && is_id_command(self.framer.message_bytes(), max_line);
        u64::from(if id {
            max_line.max(ID_COMMAND_MAX)
        } else {
            max_line
        })
    }

    fn consume(&mut self, n: usize) {
        self.unconsumed.drain(..n.min(self.unconsumed.len()));
    }

    fn tag_or_star(&self) -> String {
        self.framer
            .decode_tag()
            .map(|t| t.as_ref().to_owned())
            .unwrap_or_else(|| "*".into())
    }

    fn reset_sasl(&mut self) {
        if !matches!(self.state, State::Ready) {
            self.state = State::Ready;
        }
    }

    /// One complete message, according to the state.
    fn handle_message(&mut self) -> Vec<Action> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Ready => self.handle_command(),
            State::SaslPlain { tag } => match self.sasl_line(&tag) {
                Ok(bytes) => match sasl::decode_plain(&bytes) {
                    Ok(creds) => self.authenticate(tag, creds),
                    Err(_) => vec![Action::Reply(line(format!(
                        "{tag} BAD Malformed PLAIN response"
                    )))],
                },
                Err(actions) => actions,
            },
            State::SaslLoginUser { tag } => match self.sasl_line(&tag) {
                Ok(user) => {
                    let reply = line(format!("+ {LOGIN_PASSWORD_CHALLENGE}"));
                    self.state = State::SaslLoginPass { tag, user };
                    vec![Action::Reply(reply)]
                }
                Err(actions) => actions,
            },
            State::SaslLoginPass { tag, user } => match self.sasl_line(&tag) {
                Ok(pass) => {
                    let creds = Credentials::from_wire(&user, &pass, None, Mechanism::Login);
                    self.authenticate(tag, creds)
                }
                Err(actions) => actions,
            },
            other => {
                self.state = other;
                Vec::new()
            }
        }
    }

    /// Decodes a SASL response line; `*` cancels (RFC 3501 6.2.2: tagged BAD).
    fn sasl_line(&self, tag: &str) -> Result<Zeroizing<Vec<u8>>, Vec<Action>> {
        match self
            .framer
            .decode_message(&AuthenticateDataCodec::default())
        {
            Ok(AuthenticateData::Continue(data)) => Ok(Zeroizing::new(data.declassify().to_vec())),
            Ok(AuthenticateData::Cancel) => Err(vec![Action::Reply(line(format!(
                "{tag} BAD Authentication cancelled"
            )))]),
            Err(_) => Err(vec![Action::Reply(line(format!(
                "{tag} BAD Invalid base64 in SASL response"
            )))]),
        }
    }

    fn authenticate(&mut self, tag: String, creds: Credentials) -> Vec<Action> {
        self.state = State::Deciding { tag };
        vec![Action::Authenticate(creds)]
    }

    fn handle_command(&mut self) -> Vec<Action> {
        let cmd = match self.framer.decode_message(&CommandCodec::default()) {
            Ok(cmd) => cmd,
            Err(DecodeMessageError::DecodingRemainder { message, .. }) => {
                return vec![Action::Reply(line(format!(
                    "{} BAD Unexpected data after command",
                    message.tag.as_ref()
                )))];
            }
            Err(_) => {
                let tag = self.tag_or_star();
                return vec![Action::Reply(line(format!("{tag} BAD Syntax error")))];
            }
        };
        let tag = cmd.tag.as_ref().to_owned();
        let reply = |s: String| vec![Action::Reply(line(s))];
        let privacy = || {
            line(format!(
                "{tag} NO [PRIVACYREQUIRED] Login is only allowed after STARTTLS"
            ))
        };
        match cmd.body {
            CommandBody::Capability => reply(format!(
                "* CAPABILITY {}\r\n{tag} OK CAPABILITY completed",
                self.capabilities()
            )),
            CommandBody::Noop => reply(format!("{tag} OK NOOP completed")),
            CommandBody::Logout => {
                self.state = State::Closed;
                vec![
                    Action::Reply(line(format!(
                        "* BYE Logging out\r\n{tag} OK LOGOUT completed"
                    ))),
                    Action::Close,
                ]
            }
            CommandBody::Id { parameters } => {
                if let Some(fields) = &parameters {
                    self.software = crate::policy::usage::imap_software(
                        fields
                            .iter()
                            .map(|(k, v)| (k.as_ref(), v.0.as_ref().map(|v| v.as_ref()))),
                    );
                }
                reply(format!(
                    "* ID (\"name\" \"Sentinella\")\r\n{tag} OK ID completed"
                ))
            }
            CommandBody::StartTLS => {
                if self.settings.tls_active || !self.settings.starttls {
                    return reply(format!("{tag} BAD STARTTLS is not available here"));
                }
                // Discard everything the client pipelined after STARTTLS.
                self.state = State::Handshaking;
                self.framer = framer(self.settings);
                self.unconsumed.clear();
                vec![
                    Action::Reply(line(format!("{tag} OK Begin TLS negotiation now"))),
                    Action::StartTls,
                ]
            }
            CommandBody::Login { username, password } => {
                if !self.login_allowed() {
                    return vec![Action::Reply(privacy())];
                }
                let creds = Credentials::from_wire(
                    username.as_ref(),
                    password.declassify().as_ref(),
                    None,
                    Mechanism::ImapLogin,
                );
                self.authenticate(tag, creds)
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !self.login_allowed() {
                    return vec![Action::Reply(privacy())];
                }
                let ir = initial_response.map(|r| Zeroizing::new(r.declassify().to_vec()));
                match (mechanism, ir) {
                    (AuthMechanism::Plain, Some(ir)) => match sasl::decode_plain(&ir) {
                        Ok(creds) => self.authenticate(tag, creds),
                        Err(_) => reply(format!("{tag} BAD Malformed PLAIN response")),
                    },
                    (AuthMechanism::Plain, None) => {
                        self.state = State::SaslPlain { tag };
                        vec![Action::Reply(line("+ "))]
                    }
                    (AuthMechanism::Login, Some(user)) => {
                        self.state = State::SaslLoginPass { tag, user };
                        vec![Action::Reply(line(format!("+ {LOGIN_PASSWORD_CHALLENGE}")))]
                    }
                    (AuthMechanism::Login, None) => {
                        self.state = State::SaslLoginUser { tag };
                        vec![Action::Reply(line(format!("+ {LOGIN_USERNAME_CHALLENGE}")))]
                    }
                    _ => reply(format!("{tag} NO Unsupported authentication mechanism")),
                }
            }
            _ => reply(format!("{tag} BAD Command not allowed before login")),
        }
    }

    fn deciding_tag(&mut self) -> Option<String> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Deciding { tag } => Some(tag),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The login was refused: the one failure text; after too many, the connection closes.
    /// Commands pipelined meanwhile are processed now.
    pub fn login_refused(&mut self) -> Vec<Action> {
        let Some(tag) = self.deciding_tag() else {
            return Vec::new();
        };
        self.failed_logins += 1;
        let mut out = vec![Action::Reply(line(format!("{tag} {AUTH_FAILED}")))];
        if self.failed_logins >= self.settings.max_failed_logins {
            return self.close_with(out, "* BYE Too many failed logins");
        }
        self.process(&mut out);
        out
    }

    /// The upstream could not be reached or refused us: a temporary failure.
    pub fn login_unavailable(&mut self) -> Vec<Action> {
        let Some(tag) = self.deciding_tag() else {
            return Vec::new();
        };
        let mut out = vec![Action::Reply(line(format!("{tag} {UNAVAILABLE}")))];
        self.process(&mut out);
        out
    }

    /// Logged in upstream: returns the tagged OK carrying the upstream's capabilities, and
    /// the bytes the client pipelined after its login command (to relay upstream).
    pub fn login_accepted(&mut self, upstream_capabilities: &str) -> (Vec<u8>, Vec<u8>) {
        let tag = self.deciding_tag().unwrap_or_else(|| "*".into());
        self.state = State::LoggedIn;
        let ok = line(format!(
            "{tag} OK [CAPABILITY {upstream_capabilities}] Logged in"
        ));
        (ok, std::mem::take(&mut self.unconsumed))
    }

    /// The STARTTLS handshake completed: log in is now allowed.
    pub fn tls_started(&mut self) {
        if matches!(self.state, State::Handshaking) {
            self.settings.tls_active = true;
            self.state = State::Ready;
        }
    }
}

impl super::Frontend for ImapFrontend {
    fn greeting(&self) -> Vec<u8> {
        ImapFrontend::greeting(self)
    }
    fn feed(&mut self, data: &[u8]) -> Vec<Action> {
        ImapFrontend::feed(self, data)
    }
    fn tls_started(&mut self) {
        ImapFrontend::tls_started(self)
    }
    fn login_refused(&mut self) -> Vec<Action> {
        ImapFrontend::login_refused(self)
    }
    fn login_unavailable(&mut self) -> Vec<Action> {
        ImapFrontend::login_unavailable(self)
    }
    fn login_accepted(&mut self, upstream_capabilities: &str) -> (Vec<u8>, Vec<u8>) {
        ImapFrontend::login_accepted(self, upstream_capabilities)
    }
    fn timeout_message(&self) -> &'static [u8] {
        b"* BYE Autologout: too slow to log in\r\n"
    }
    fn software(&self) -> Option<String> {
        self.software.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{self, render};

    fn settings(tls: bool) -> Settings {
        Settings {
            tls_active: tls,
            starttls: !tls,
            max_line: 1024,
            preauth_bytes: 8192,
            max_failed_logins: 3,
            max_bad_commands: 10,
        }
    }

    fn run(fe: &mut ImapFrontend, input: &str) -> String {
        render(&fe.feed(input.as_bytes()))
    }

    fn every_split(input: &str, tls: bool) -> String {
        testing::every_split(|| ImapFrontend::new(settings(tls)), input)
    }

    #[test]
    fn greeting_and_capabilities_depend_on_tls() {
        let fe = ImapFrontend::new(settings(true));
        let g = String::from_utf8(fe.greeting()).unwrap();
        assert!(
            g.starts_with("* OK [CAPABILITY IMAP4rev1 ")
                && g.contains("AUTH=PLAIN")
                && g.ends_with("\r\n")
        );
        let fe = ImapFrontend::new(settings(false));
        let g = String::from_utf8(fe.greeting()).unwrap();
        assert!(g.contains("STARTTLS") && g.contains("LOGINDISABLED") && !g.contains("AUTH="));
    }

    #[test]
    fn capability_noop_id_logout() {
        let out = every_split("a CAPABILITY\r\nb NOOP\r\nc ID NIL\r\nd LOGOUT\r\n", true);
        assert_eq!(
            out,
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN\r\na OK CAPABILITY completed\r\n\
             b OK NOOP completed\r\n* ID (\"name\" \"Sentinella\")\r\nc OK ID completed\r\n\
             * BYE Logging out\r\nd OK LOGOUT completed\r\n<CLOSE>"
        );
    }

    #[test]
    fn the_program_named_in_id_is_kept_for_the_history() {
        use crate::protocol::Frontend;
        let mut fe = ImapFrontend::new(settings(true));
        assert_eq!(Frontend::software(&fe), None);
        fe.feed(b"a ID (\"name\" \"Thunderbird\" \"version\" \"128.3\" \"os\" \"Linux\")\r\n");
        assert_eq!(
            Frontend::software(&fe).as_deref(),
            Some("Thunderbird 128.3")
        );
        // A later ID without a name forgets it; NIL keeps what was said.
        fe.feed(b"b ID NIL\r\n");
        assert_eq!(
            Frontend::software(&fe).as_deref(),
            Some("Thunderbird 128.3")
        );
        fe.feed(b"c ID (\"vendor\" \"x\")\r\n");
        assert_eq!(Frontend::software(&fe), None);
    }

    #[test]
    fn login_with_quoted_strings() {
        let out = every_split("a1 LOGIN \"mario@x.it\" \"p w\\\"q\"\r\n", true);
        assert_eq!(out, "<AUTH mario@x.it:p w\"q:None>");
    }

    #[test]
    fn login_with_synchronizing_literal() {
        // RFC 3501 section 8 style: the server sends "+" before each literal.
        let out = every_split("a1 LOGIN {9}\r\nmario@x.i {3}\r\npwd\r\n", true);
        assert_eq!(
            out,
            "+ Ready for literal data\r\n+ Ready for literal data\r\n<AUTH mario@x.i:pwd:None>"
        );
    }

    #[test]
    fn login_with_literal_plus() {
        let out = every_split("a1 LOGIN {9+}\r\nmario@x.i {3+}\r\npwd\r\n", true);
        assert_eq!(out, "<AUTH mario@x.i:pwd:None>");
    }

    #[test]
    fn authenticate_plain_with_and_without_initial_response() {
        // base64("\0mario\0secret") = AG1hcmlvAHNlY3JldA==
        let out = every_split("a AUTHENTICATE PLAIN AG1hcmlvAHNlY3JldA==\r\n", true);
        assert_eq!(out, "<AUTH mario:secret:None>");
        let out = every_split("a AUTHENTICATE PLAIN\r\nAG1hcmlvAHNlY3JldA==\r\n", true);
        assert_eq!(out, "+ \r\n<AUTH mario:secret:None>");
    }

    #[test]
    fn authenticate_login_with_and_without_initial_response() {
        // base64("mario") = bWFyaW8=, base64("secret") = c2VjcmV0
        let out = every_split("a AUTHENTICATE LOGIN\r\nbWFyaW8=\r\nc2VjcmV0\r\n", true);
        assert_eq!(
            out,
            "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n<AUTH mario:secret:None>"
        );
        let out = every_split("a AUTHENTICATE LOGIN bWFyaW8=\r\nc2VjcmV0\r\n", true);
        assert_eq!(out, "+ UGFzc3dvcmQ6\r\n<AUTH mario:secret:None>");
    }

    #[test]
    fn authenticate_cancel_and_garbage() {
        let out = every_split("a AUTHENTICATE PLAIN\r\n*\r\nb NOOP\r\n", true);
        assert_eq!(
            out,
            "+ \r\na BAD Authentication cancelled\r\nb OK NOOP completed\r\n"
        );
        let out = every_split("a AUTHENTICATE PLAIN\r\n!!!\r\n", true);
        assert_eq!(out, "+ \r\na BAD Invalid base64 in SASL response\r\n");
        let out = every_split("a AUTHENTICATE CRAM-MD5\r\n", true);
        assert_eq!(out, "a NO Unsupported authentication mechanism\r\n");
    }

    #[test]
    fn plain_with_other_authzid_or_bad_nuls() {
        // base64("admin\0mario\0secret")
        let out = every_split("a AUTHENTICATE PLAIN YWRtaW4AbWFyaW8Ac2VjcmV0\r\n", true);
        assert_eq!(
            out,
            "<AUTH mario:secret:Some(\"authorization identity differs from the login name\")>"
        );
        // base64("mario\0secret") (one NUL)
        let out = every_split("a AUTHENTICATE PLAIN bWFyaW8Ac2VjcmV0\r\n", true);
        assert_eq!(out, "a BAD Malformed PLAIN response\r\n");
    }

    #[test]
    fn login_names_with_control_characters_are_marked() {
        // A literal can carry control characters (CHAR8 = %x01-ff)...
        let out = every_split("a LOGIN {3+}\r\na\x01b pw\r\n", true);
        assert_eq!(
            out,
            "<AUTH a\x01b:pw:Some(\"login name contains NUL or control characters\")>"
        );
        // ...but not NUL: that is a syntax error before any authentication.
        let out = every_split("a LOGIN {3+}\r\na\0b pw\r\n", true);
        assert_eq!(out, "a BAD Syntax error\r\n");
    }

    #[test]
    fn no_login_before_starttls() {
        let out = every_split(
            "a LOGIN mario secret\r\nb AUTHENTICATE PLAIN AG1hcmlvAHNlY3JldA==\r\n",
            false,
        );
        assert_eq!(
            out,
            "a NO [PRIVACYREQUIRED] Login is only allowed after STARTTLS\r\n\
             b NO [PRIVACYREQUIRED] Login is only allowed after STARTTLS\r\n"
        );
    }

    #[test]
    fn starttls_discards_pipelined_commands() {
        let mut fe = ImapFrontend::new(settings(false));
        let out = run(
            &mut fe,
            "a STARTTLS\r\nb LOGIN mario secret\r\nc CAPABILITY\r\n",
        );
        assert_eq!(out, "a OK Begin TLS negotiation now\r\n<STARTTLS>");
        // More plaintext before the handshake finishes: also discarded.
        assert_eq!(run(&mut fe, "d LOGIN x y\r\n"), "");
        fe.tls_started();
        assert_eq!(run(&mut fe, "e NOOP\r\n"), "e OK NOOP completed\r\n");
        let caps = run(&mut fe, "f CAPABILITY\r\n");
        assert!(
            caps.contains("AUTH=PLAIN") && !caps.contains("STARTTLS"),
            "{caps}"
        );
    }

    #[test]
    fn starttls_not_offered_when_tls_is_active() {
        let out = every_split("a STARTTLS\r\n", true);
        assert_eq!(out, "a BAD STARTTLS is not available here\r\n");
    }

    #[test]
    fn other_commands_and_syntax_errors() {
        let out = every_split("a SELECT INBOX\r\nb FROB\r\n\r\nc LOGIN\r\n", true);
        assert_eq!(
            out,
            "a BAD Command not allowed before login\r\nb BAD Syntax error\r\n* BAD Syntax error\r\nc BAD Syntax error\r\n"
        );
    }

    #[test]
    fn refused_logins_then_disconnect() {
        let mut fe = ImapFrontend::new(settings(true));
        for (i, tag) in ["a", "b", "c"].iter().enumerate() {
            let out = run(&mut fe, &format!("{tag} LOGIN mario wrong\r\n"));
            assert_eq!(out, "<AUTH mario:wrong:None>");
            let out = render(&fe.login_refused());
            if i < 2 {
                assert_eq!(
                    out,
                    format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
                );
            } else {
                assert_eq!(
                    out,
                    "c NO [AUTHENTICATIONFAILED] Authentication failed\r\n* BYE Too many failed logins\r\n<CLOSE>"
                );
            }
        }
        assert!(fe.is_done());
    }

    #[test]
    fn commands_pipelined_during_a_decision_wait_their_turn() {
        let mut fe = ImapFrontend::new(settings(true));
        let out = run(&mut fe, "a LOGIN mario wrong\r\nb NOOP\r\n");
        assert_eq!(out, "<AUTH mario:wrong:None>");
        let out = render(&fe.login_unavailable());
        assert_eq!(
            out,
            "a NO [UNAVAILABLE] Service temporarily unavailable, try again later\r\nb OK NOOP completed\r\n"
        );
    }

    #[test]
    fn accepted_login_hands_over_pipelined_bytes() {
        let mut fe = ImapFrontend::new(settings(true));
        let out = run(
            &mut fe,
            "a LOGIN mario pw\r\nb SELECT INBOX\r\nc FETCH 1 (FLAGS)\r\n",
        );
        assert_eq!(out, "<AUTH mario:pw:None>");
        let (ok, rest) = fe.login_accepted("IMAP4rev1 IDLE");
        assert_eq!(ok, b"a OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
        assert_eq!(rest, b"b SELECT INBOX\r\nc FETCH 1 (FLAGS)\r\n");
        assert!(fe.is_done());
        assert!(fe.feed(b"d NOOP\r\n").is_empty());
    }

    #[test]
    fn oversized_literals_and_lines() {
        let out = every_split("a LOGIN {5000}\r\nb NOOP\r\n", true);
        assert_eq!(
            out,
            "a BAD Literal too large or not allowed here\r\nb OK NOOP completed\r\n"
        );
        let out = every_split("a LOGIN {5000+}\r\n", true);
        assert_eq!(out, "* BYE Literal too large\r\n<CLOSE>");
        let long = format!("a NOOP {}\r\n", "x".repeat(2000));
        let out = every_split(&long, true);
        assert_eq!(out, "* BYE Line too long\r\n<CLOSE>");
        // Literal lengths past u32 are a framing error, not a huge allocation.
        let out = run(
            &mut ImapFrontend::new(settings(true)),
            "a LOGIN {99999999999999999999}\r\n",
        );
        assert!(!out.contains("Ready"), "{out}");
    }

    /// The limits a shipped `config.toml` (and the integration tests' rig) gives.
    fn shipped(tls: bool) -> Settings {
        let l = crate::proxy::settings::Limits::default();
        Settings {
            tls_active: tls,
            starttls: !tls,
            max_line: l.max_line,
            preauth_bytes: l.preauth_bytes,
            max_failed_logins: l.failed_logins_per_connection,
            max_bad_commands: l.bad_commands_before_login,
        }
    }

    /// Feeds `input` in `chunk`-byte pieces until the front end closes; returns how many
    /// bytes it had been fed by then (None: never closed) and everything it said.
    fn fed_until_close(
        fe: &mut ImapFrontend,
        input: &[u8],
        chunk: usize,
    ) -> (Option<usize>, String) {
        let mut out = String::new();
        let mut fed = 0;
        for piece in input.chunks(chunk) {
            fed += piece.len();
            out.push_str(&render(&fe.feed(piece)));
            if fe.is_done() {
                return (Some(fed), out);
            }
        }
        (None, out)
    }

    #[test]
    fn an_unterminated_line_is_cut_as_soon_as_it_is_too_long() {
        // max_line 1024, fed 256 bytes at a time: cut with the chunk that passes 1024.
        let mut fe = ImapFrontend::new(settings(true));
        let endless = format!("a NOOP {}", "x".repeat(4096));
        let (fed, out) = fed_until_close(&mut fe, endless.as_bytes(), 256);
        assert_eq!(out, "* BYE Line too long\r\n<CLOSE>");
        assert_eq!(fed, Some(1280));
        // The shipped limits (8 KiB): a 20 KiB line is cut after 9 KiB, not at the byte cap.
        let mut fe = ImapFrontend::new(shipped(true));
        let endless = format!("a LOGIN mario {}", "x".repeat(20 * 1024));
        let (fed, out) = fed_until_close(&mut fe, endless.as_bytes(), 1024);
        assert_eq!(out, "* BYE Line too long\r\n<CLOSE>");
        assert_eq!(fed, Some(9 * 1024));
        // Whatever the chunking, a line of exactly max_line bytes (CRLF included) passes
        // and one byte more does not.
        let at_limit = format!("a LOGIN mario {}\r\n", "p".repeat(1024 - 16));
        assert_eq!(at_limit.len(), 1024);
        assert_eq!(
            every_split(&at_limit, true),
            format!("<AUTH mario:{}:None>", "p".repeat(1008))
        );
        let over = format!("a LOGIN mario {}\r\n", "p".repeat(1024 - 15));
        assert_eq!(every_split(&over, true), "* BYE Line too long\r\n<CLOSE>");
    }

    #[test]
    fn an_unterminated_line_is_cut_in_a_sasl_exchange_and_after_a_literal() {
        let mut fe = ImapFrontend::new(settings(true));
        assert_eq!(run(&mut fe, "a AUTHENTICATE PLAIN\r\n"), "+ \r\n");
        let (fed, out) = fed_until_close(&mut fe, "A".repeat(4096).as_bytes(), 256);
        assert_eq!(out, "* BYE Line too long\r\n<CLOSE>");
        assert_eq!(fed, Some(1280));
        // A literal is part of the message: the line after it is cut once line, literal
        // and what follows pass 1024 bytes together (16 + 500 + 508).
        let mut fe = ImapFrontend::new(settings(true));
        let input = format!(
            "a LOGIN {{500+}}\r\n{}{}",
            "u".repeat(500),
            "p".repeat(4096)
        );
        let (fed, out) = fed_until_close(&mut fe, input.as_bytes(), 64);
        assert_eq!(out, "* BYE Line too long\r\n<CLOSE>");
        assert_eq!(fed, Some(1088));
    }

    /// `a ID ("f01…" "vvv…" …)`: RFC 2971's 30 pairs, 30-octet fields, 1024-octet values.
    fn maximal_id(tag: &str, literals: bool) -> String {
        let string = |s: String| {
            if literals {
                format!("{{{}+}}\r\n{s}", s.len())
            } else {
                format!("\"{s}\"")
            }
        };
        let pairs: Vec<String> = (0..30)
            .map(|i| {
                let field = format!("{i:0>30}");
                let value = format!("{i:v>1024}");
                format!("{} {}", string(field), string(value))
            })
            .collect();
        format!("{tag} ID ({})\r\n", pairs.join(" "))
    }

    #[test]
    fn a_maximal_id_command_is_answered_under_the_shipped_limits() {
        let answer = "* ID (\"name\" \"Sentinella\")\r\na OK ID completed\r\n";
        let quoted = maximal_id("a", false);
        assert!(quoted.len() > 31_000, "{}", quoted.len());
        let fe = || ImapFrontend::new(shipped(true));
        assert_eq!(testing::every_split(fe, &quoted), answer);
        // As literals with a 64-byte tag it is exactly the bound, which holds for any
        // max_line (here the smallest config allows, 1024).
        let tag = "a".repeat(64);
        let literals = maximal_id(&tag, true);
        assert_eq!(literals.len(), ID_COMMAND_MAX as usize);
        assert_eq!(
            ID_COMMAND_MAX, 32_231,
            "the figure README and config.toml give"
        );
        let small = || {
            ImapFrontend::new(Settings {
                preauth_bytes: 65536,
                ..settings(false)
            })
        };
        assert_eq!(
            testing::every_split(small, &literals),
            answer.replacen("a OK", &format!("{tag} OK"), 1)
        );
        assert_eq!(testing::every_split(small, &quoted), answer);
        // Pipelined after it, an ordinary command still has the ordinary limit.
        let after = format!("{quoted}b NOOP {}\r\n", "x".repeat(2000));
        assert_eq!(
            testing::every_split(small, &after),
            format!("{answer}* BYE Line too long\r\n<CLOSE>")
        );
    }

    #[test]
    fn only_an_id_command_gets_the_id_limit() {
        // Past the ID bound, an ID command is cut too, as soon as it gets there.
        let mut fe = ImapFrontend::new(shipped(true));
        let endless = format!("a ID (\"x\" \"{}", "v".repeat(64 * 1024));
        let (fed, out) = fed_until_close(&mut fe, endless.as_bytes(), 1024);
        assert_eq!(out, "* BYE Line too long\r\n<CLOSE>");
        assert_eq!(fed, Some(32 * 1024));
        // Not ID: a longer tag than the bound counts, another command, "ID" in the tag.
        for prefix in [
            format!("{} ID ", "t".repeat(65)),
            "a IDX ".into(),
            "ID NOOP ".into(),
        ] {
            let line = format!("{prefix}{}\r\n", "x".repeat(9000));
            let out = testing::every_split(|| ImapFrontend::new(shipped(true)), &line);
            assert_eq!(out, "* BYE Line too long\r\n<CLOSE>", "{prefix}");
        }
    }

    #[test]
    fn preauth_byte_cap() {
        let mut fe = ImapFrontend::new(settings(true));
        let mut out = String::new();
        for _ in 0..2000 {
            out.push_str(&run(&mut fe, "a NOOP\r\n"));
            if fe.is_done() {
                break;
            }
        }
        assert!(
            out.ends_with("* BYE Too much data before login\r\n<CLOSE>"),
            "{}",
            &out[out.len() - 60..]
        );
    }

    #[test]
    fn ten_bad_commands_close_the_connection() {
        let mut fe = ImapFrontend::new(settings(true));
        let mut out = String::new();
        for i in 0..9 {
            out.push_str(&run(&mut fe, &format!("a{i} SELECT INBOX\r\n")));
        }
        assert!(
            !out.contains("<CLOSE>") && out.matches(" BAD ").count() == 9,
            "{out}"
        );
        // Good commands do not count.
        assert!(run(&mut fe, "n1 NOOP\r\n").starts_with("n1 OK"));
        let last = run(&mut fe, "x garbage(\r\n");
        assert!(
            last.ends_with("* BYE Too many invalid commands\r\n<CLOSE>"),
            "{last}"
        );
    }
}
