//! What a client presented to log in, exactly as it arrived, ready for the authenticator.

use crate::secret::Secret;

/// How the credentials were presented (for logs and the access history).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// IMAP `LOGIN user pass`.
    ImapLogin,
    /// POP3 `USER` / `PASS`.
    Pop3User,
    /// SASL PLAIN (RFC 4616).
    Plain,
    /// SASL LOGIN (draft-murchison-sasl-login).
    Login,
}

impl Mechanism {
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::ImapLogin => "LOGIN command",
            Mechanism::Pop3User => "USER/PASS",
            Mechanism::Plain => "SASL PLAIN",
            Mechanism::Login => "SASL LOGIN",
        }
    }
}

/// A login name and secret from the wire. Bytes that cannot be a login (not UTF-8, NUL or
/// control characters, an authorization identity other than the login) are not refused
/// here: they are marked `malformed`, so the authenticator refuses them like any other
/// failure — same wire text, same cost, and a line in the access history.
pub struct Credentials {
    /// The login name as presented (lossily decoded if it was not UTF-8).
    pub login: String,
    /// The secret.
    pub secret: Secret,
    /// How it was presented.
    pub mechanism: Mechanism,
    /// Why these credentials can never be accepted, if they cannot.
    pub malformed: Option<&'static str>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("secret", &self.secret)
            .field("mechanism", &self.mechanism)
            .field("malformed", &self.malformed)
            .finish()
    }
}

impl Credentials {
    /// Builds credentials from raw bytes; `authzid` is SASL's authorization identity.
    pub fn from_wire(
        login: &[u8],
        secret: &[u8],
        authzid: Option<&[u8]>,
        mechanism: Mechanism,
    ) -> Self {
        let mut malformed = None;
        let login_text = match std::str::from_utf8(login) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                malformed = Some("login name is not UTF-8");
                String::from_utf8_lossy(login).into_owned()
            }
        };
        if malformed.is_none() && login_text.chars().any(char::is_control) {
            malformed = Some("login name contains NUL or control characters");
        }
        let secret_text = match std::str::from_utf8(secret) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                malformed = malformed.or(Some("password is not UTF-8"));
                String::new()
            }
        };
        // RFC 4616: an authorization identity different from the authentication identity
        // asks to act as someone else; we never allow that (CVE-2019-3814 territory).
        if let Some(z) = authzid
            && !z.is_empty()
            && z != login
        {
            malformed = malformed.or(Some("authorization identity differs from the login name"));
        }
        Credentials {
            login: login_text,
            secret: Secret::new(secret_text),
            mechanism,
            malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed() {
        let c = Credentials::from_wire(b"mario@x.it", b"pw", Some(b"mario@x.it"), Mechanism::Plain);
        assert!(c.malformed.is_none());
        assert_eq!(c.secret.expose(), "pw");
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn malformed_inputs_are_marked() {
        type Case<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);
        let cases: [Case; 5] = [
            (b"a\0b", b"pw", None),
            (b"a\x01b", b"pw", None),
            (b"\xff\xfe", b"pw", None),
            (b"mario", b"\xff", None),
            (b"mario", b"pw", Some(b"admin")),
        ];
        for (login, secret, authzid) in cases {
            let c = Credentials::from_wire(login, secret, authzid, Mechanism::Plain);
            assert!(c.malformed.is_some(), "{login:?} {authzid:?}");
        }
    }
}
