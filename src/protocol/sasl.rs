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
