//! The associated 2FA device: an authenticator app speaking TOTP (RFC 6238).
//!
//! RFC 6238 section 5.2: "the verifier MUST NOT accept the second attempt of the same OTP
//! after the successful validation has been issued for the first OTP". Every accepted code
//! therefore records its time step, and a code from that step or an earlier one is refused.

use jiff::Timestamp;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use super::PolicyError;

/// Length of a device secret: 160 bits, the size RFC 4226 section 4 recommends.
pub const SECRET_LEN: usize = 20;
/// Seconds per time step (RFC 6238 default, what every authenticator app uses).
pub const STEP_SECONDS: u64 = 30;
/// Steps of clock skew accepted either side of now (RFC 6238 section 5.2 recommends one).
pub const SKEW_STEPS: u16 = 1;

/// A TOTP shared secret. Never printed by `Debug`; zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceSecret([redacted])")
    }
}

impl DeviceSecret {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, PolicyError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        getrandom::fill(&mut bytes).map_err(|e| PolicyError::Random(e.to_string()))?;
        Ok(DeviceSecret(bytes))
    }

    /// Rebuilds a stored secret.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        DeviceSecret(Zeroizing::new(bytes))
    }

    /// The raw bytes, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, account: &str, issuer: &str) -> Result<Totp, PolicyError> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(SKEW_STEPS)
            .with_step_duration(STEP_SECONDS)
            .with_secret(self.0.to_vec())
            .with_account_name(account.replace(':', "_"))
            .with_issuer(Some(issuer.replace(':', "_")))
            .build()
            .map_err(|e| PolicyError::Totp(e.to_string()))
    }

    /// The `otpauth://totp/…` URI an authenticator app scans. It contains the secret: it is
    /// shown once, when the device is being associated.
    pub fn otpauth_uri(&self, account: &str, issuer: &str) -> Result<String, PolicyError> {
        self.totp(account, issuer)?
            .to_url()
            .map_err(|e| PolicyError::Totp(e.to_string()))
    }

    /// The code the device shows at `at` (used by tests and by nothing on the login path).
    pub fn code_at(&self, at: Timestamp) -> Result<String, PolicyError> {
        let t = u64::try_from(at.as_second()).unwrap_or(0);
        Ok(self.totp("x", "x")?.generate(t).to_string())
    }

    /// Checks `code` at `now`. Returns the matched time step, which must be stored as the
    /// new `last_step`; a step at or before `last_step` is a replay and is refused.
    pub fn verify(
        &self,
        code: &str,
        now: Timestamp,
        last_step: Option<u64>,
    ) -> Result<u64, PolicyError> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PolicyError::InvalidCode);
        }
        let t = u64::try_from(now.as_second()).map_err(|_| PolicyError::InvalidCode)?;
        let totp = self.totp("x", "x")?;
        // Look at every step in the window, not just the first match, so a code is judged
        // against the newest step it could belong to.
        let origin = t / STEP_SECONDS;
        let window = origin.saturating_sub(u64::from(SKEW_STEPS))..=origin + u64::from(SKEW_STEPS);
        let mut matched = None;
        for step in window {
            if totp.generate(step * STEP_SECONDS).to_string() == code {
                matched = Some(step);
            }
        }
        match (matched, last_step) {
            (None, _) => Err(PolicyError::InvalidCode),
            (Some(step), Some(last)) if step <= last => Err(PolicyError::CodeReused),
            (Some(step), _) => Ok(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn rfc6238_sha1_test_vector() {
        // RFC 6238 Appendix B, SHA1, T = 59: 94287082 (8 digits); 6 digits are the last 6.
        let secret = DeviceSecret::from_bytes(b"12345678901234567890".to_vec());
        assert_eq!(
            secret.code_at(Timestamp::from_second(59).unwrap()).unwrap(),
            "287082"
        );
        assert_eq!(
            secret
                .code_at(Timestamp::from_second(1_111_111_109).unwrap())
                .unwrap(),
            "081804"
        );
    }

    #[test]
    fn current_and_adjacent_steps_are_accepted() {
        let secret = DeviceSecret::generate().unwrap();
        let now = at("2024-05-01T10:00:15Z");
        let code = secret.code_at(now).unwrap();
        assert!(secret.verify(&code, now, None).is_ok());
        assert!(
            secret
                .verify(&code, at("2024-05-01T10:00:45Z"), None)
                .is_ok()
        );
        assert!(
            secret
                .verify(&code, at("2024-05-01T09:59:45Z"), None)
                .is_ok()
        );
        assert_eq!(
            secret.verify(&code, at("2024-05-01T10:01:45Z"), None),
            Err(PolicyError::InvalidCode)
        );
    }

    #[test]
    fn a_code_cannot_be_used_twice() {
        let secret = DeviceSecret::generate().unwrap();
        let now = at("2024-05-01T10:00:15Z");
        let code = secret.code_at(now).unwrap();
        let step = secret.verify(&code, now, None).unwrap();
        assert_eq!(
            secret.verify(&code, now, Some(step)),
            Err(PolicyError::CodeReused)
        );
        // An older code (previous step) is refused after a newer one was accepted.
        let old = secret.code_at(at("2024-05-01T09:59:50Z")).unwrap();
        assert_eq!(
            secret.verify(&old, now, Some(step)),
            Err(PolicyError::CodeReused)
        );
        // The next step's code is fine.
        let later = at("2024-05-01T10:00:35Z");
        let next = secret.code_at(later).unwrap();
        assert!(secret.verify(&next, later, Some(step)).is_ok());
    }

    #[test]
    fn malformed_codes_are_invalid() {
        let secret = DeviceSecret::generate().unwrap();
        let now = at("2024-05-01T10:00:15Z");
        for bad in ["", "12345", "1234567", "abcdef", "12 34 5x"] {
            assert_eq!(
                secret.verify(bad, now, None),
                Err(PolicyError::InvalidCode),
                "{bad:?}"
            );
        }
        // Spaces inside a code, as some apps display it, are fine.
        let code = secret.code_at(now).unwrap();
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(secret.verify(&spaced, now, None).is_ok());
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let secret = DeviceSecret::generate().unwrap();
        let uri = secret
            .otpauth_uri("mario@pec.example.it", "Sentinella")
            .unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Sentinella:mario%40pec.example.it?"),
            "{uri}"
        );
        assert!(uri.contains("issuer=Sentinella"));
        assert!(uri.contains("secret="));
        assert!(!format!("{secret:?}").contains(&uri[uri.find("secret=").unwrap() + 7..][..8]));
    }
}
