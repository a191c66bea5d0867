//! SASL PLAIN (RFC 4616) and LOGIN decoding, shared by the IMAP, POP3 and SMTP front ends.

use zeroize::Zeroizing;

use crate::auth::Credentials;
use crate::auth::credentials::Mechanism;

/// The LOGIN mechanism's challenges: base64 of "Username:" and "Password:".
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// See [`LOGIN_USERNAME_CHALLENGE`].
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// Why a SASL message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not base64.
    #[error("invalid base64")]
    BadBase64,
    /// PLAIN without exactly two NUL separators, or an empty name or password.
    #[error("malformed PLAIN message")]
    BadPlain,
}

/// Decodes a base64 line (`=` stands for an empty response, RFC 4954).
pub fn decode_base64(line: &[u8]) -> Result<Zeroizing<Vec<u8>>, SaslError> {
    use base64::Engine;
    let line = line.trim_ascii();
    if line == b"=" {
        return Ok(Zeroizing::new(Vec::new()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map(Zeroizing::new)
        .map_err(|_| SaslError::BadBase64)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, with exactly two NULs, a non-empty
/// authcid and a non-empty password.
pub fn decode_plain(message: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::BadPlain);
    };
    if authcid.is_empty() || passwd.is_empty() {
        return Err(SaslError::BadPlain);
    }
    Ok(Credentials::from_wire(
        authcid,
        passwd,
        Some(authzid),
        Mechanism::Plain,
    ))
}

/// Where a line-based SASL exchange (POP3 `AUTH`, SMTP `AUTH`) stands.
#[derive(Debug)]
pub enum SaslExchange {
    /// PLAIN, waiting for the response to the empty challenge.
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password.
    LoginPass(Zeroizing<Vec<u8>>),
}

/// What a step of a SASL exchange produced.
#[derive(Debug)]
pub enum SaslStep {
    /// Send this (base64) challenge and read one more line.
    Challenge(SaslExchange, &'static str),
    /// The exchange is complete.
    Done(Credentials),
    /// The client sent `*`.
    Cancelled,
    /// The client sent something that is not base64, or a malformed PLAIN message.
    Malformed(SaslError),
}

/// The mechanism named is not PLAIN or LOGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedMechanism;

impl SaslExchange {
    /// Starts `mechanism` (case-insensitive) with the optional initial response (base64,
    /// or `=` for an empty one, RFC 4954 / RFC 5034).
    pub fn start(
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> Result<SaslStep, UnsupportedMechanism> {
        let state = if mechanism.eq_ignore_ascii_case("PLAIN") {
            SaslExchange::Plain
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            SaslExchange::LoginUser
        } else {
            return Err(UnsupportedMechanism);
        };
        Ok(match initial {
            Some(ir) => state.step(ir),
            None => state.challenge(),
        })
    }

    fn challenge(self) -> SaslStep {
        let text = match self {
            SaslExchange::Plain => "",
            SaslExchange::LoginUser => LOGIN_USERNAME_CHALLENGE,
            SaslExchange::LoginPass(_) => LOGIN_PASSWORD_CHALLENGE,
        };
        SaslStep::Challenge(self, text)
    }

    /// Feeds the client's next line (without its line ending).
    pub fn step(self, line: &[u8]) -> SaslStep {
        if line == b"*" {
            return SaslStep::Cancelled;
        }
        let data = match decode_base64(line) {
            Ok(d) => d,
            Err(e) => return SaslStep::Malformed(e),
        };
        match self {
            SaslExchange::Plain => match decode_plain(&data) {
                Ok(c) => SaslStep::Done(c),
                Err(e) => SaslStep::Malformed(e),
            },
            SaslExchange::LoginUser => SaslExchange::LoginPass(data).challenge(),
            SaslExchange::LoginPass(user) => {
                SaslStep::Done(Credentials::from_wire(&user, &data, None, Mechanism::Login))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4616_examples() {
        // RFC 4616 section 4: "\0tim\0tanstaaftanstaaf" and "Ursel\0Kurt\0xipj3plmq".
        let c = decode_plain(b"\0tim\0tanstaaftanstaaf").unwrap();
        assert_eq!(
            (c.login.as_str(), c.secret.expose()),
            ("tim", "tanstaaftanstaaf")
        );
        assert!(c.malformed.is_none());
        let c = decode_plain(b"Ursel\0Kurt\0xipj3plmq").unwrap();
        assert_eq!(
            c.malformed,
            Some("authorization identity differs from the login name")
        );
        let c = decode_plain(b"tim\0tim\0pw").unwrap();
        assert!(c.malformed.is_none());
    }

    /// Fuzz find (regression): a password that is not UTF-8 leaves an empty secret, and
    /// the credentials are marked malformed, so they are refused like any failure.
    #[test]
    fn a_non_utf8_password_is_marked_malformed() {
        let c = decode_plain(b"\0mario\0\xff\xfe").unwrap();
        assert!(c.secret.is_empty());
        assert_eq!(c.malformed, Some("password is not UTF-8"));
    }

    #[test]
    fn wrong_nul_counts_are_refused() {
        for bad in [
            &b""[..],
            b"tim",
            b"\0tim",
            b"\0tim\0",
            b"\0\0pw",
            b"a\0b\0c\0d",
            b"\0tim\0pw\0",
        ] {
            assert_eq!(
                decode_plain(bad).err(),
                Some(SaslError::BadPlain),
                "{bad:?}"
            );
        }
    }

    fn done(step: SaslStep) -> (String, String) {
        match step {
            SaslStep::Done(c) => (c.login, c.secret.expose().to_owned()),
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn exchanges_with_and_without_initial_response() {
        // PLAIN with IR.
        let (u, p) = done(SaslExchange::start("plain", Some(b"AG1hcmlvAHNlY3JldA==")).unwrap());
        assert_eq!((u.as_str(), p.as_str()), ("mario", "secret"));
        // PLAIN without: empty challenge, then the response.
        let SaslStep::Challenge(next, "") = SaslExchange::start("PLAIN", None).unwrap() else {
            panic!()
        };
        assert_eq!(done(next.step(b"AG1hcmlvAHNlY3JldA==")).0, "mario");
        // LOGIN without IR: two challenges.
        let SaslStep::Challenge(next, LOGIN_USERNAME_CHALLENGE) =
            SaslExchange::start("LOGIN", None).unwrap()
        else {
            panic!()
        };
        let SaslStep::Challenge(next, LOGIN_PASSWORD_CHALLENGE) = next.step(b"bWFyaW8=") else {
            panic!()
        };
        assert_eq!(
            done(next.step(b"c2VjcmV0")),
            ("mario".into(), "secret".into())
        );
        // LOGIN with the user name as IR.
        let SaslStep::Challenge(next, LOGIN_PASSWORD_CHALLENGE) =
            SaslExchange::start("login", Some(b"bWFyaW8=")).unwrap()
        else {
            panic!()
        };
        assert_eq!(done(next.step(b"c2VjcmV0")).1, "secret");
    }

    #[test]
    fn cancel_garbage_and_unknown_mechanisms() {
        let SaslStep::Challenge(next, _) = SaslExchange::start("PLAIN", None).unwrap() else {
            panic!()
        };
        assert!(matches!(next.step(b"*"), SaslStep::Cancelled));
        assert!(matches!(
            SaslExchange::start("PLAIN", Some(b"!!")).unwrap(),
            SaslStep::Malformed(SaslError::BadBase64)
        ));
        // "=" is an empty initial response: not a valid PLAIN message.
        assert!(matches!(
            SaslExchange::start("PLAIN", Some(b"=")).unwrap(),
            SaslStep::Malformed(SaslError::BadPlain)
        ));
        assert_eq!(
            SaslExchange::start("CRAM-MD5", None).err(),
            Some(UnsupportedMechanism)
        );
    }

    #[test]
    fn base64_lines() {
        assert_eq!(&*decode_base64(b"dGlt").unwrap(), b"tim");
        assert_eq!(&*decode_base64(b"=").unwrap(), b"");
        assert_eq!(&*decode_base64(b"dGlt\r\n").unwrap(), b"tim");
        assert_eq!(
            decode_base64(b"not base64!").err(),
            Some(SaslError::BadBase64)
        );
        assert_eq!(
            &*decode_base64(LOGIN_USERNAME_CHALLENGE.as_bytes()).unwrap(),
            b"Username:"
        );
        assert_eq!(
            &*decode_base64(LOGIN_PASSWORD_CHALLENGE.as_bytes()).unwrap(),
            b"Password:"
        );
    }
}
