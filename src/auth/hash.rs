//! Password hashing. New hashes are always argon2id. A mailbox imported from an existing
//! server (`sentinella mailbox import`) may arrive with the hash that server kept —
//! Dovecot's `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{BLF-CRYPT}` (bcrypt), `{PBKDF2}`
//! (PBKDF2-HMAC-SHA1), or argon2i — which [`PasswordHasher::verify`] accepts until the
//! first login that proves the password re-hashes it to argon2id
//! ([`PasswordHasher::is_current`]).

use std::cell::RefCell;

use argon2::password_hash::PasswordHasher as _;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::secret::Secret;

/// Why a hash could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The configured parameters are outside what argon2 accepts.
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    /// Hashing failed (random salt unavailable, or similar).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The argon2id cost of new hashes (verification always uses the cost recorded in the
/// stored hash itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl HashCost {
    /// The cheapest cost argon2 accepts: for tests, where the hashing is not the point.
    #[cfg(test)]
    pub(crate) const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

/// The largest argon2 memory a stored hash may ask for (4 GiB), so a bad hash in the
/// store cannot make a verification allocate without bound.
const MAX_VERIFY_BLOCKS: usize = 4 * 1024 * 1024;

/// Hashes new passwords with the configured argon2id cost and verifies stored ones (each
/// with the parameters recorded in its own PHC string, so a cost change applies to new
/// hashes without breaking old ones).
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// Verifications done by this hasher and its clones (to prove equal cost in tests).
    verifications: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHasher(argon2id)")
    }
}

impl PasswordHasher {
    /// A hasher with the configured memory (KiB), iterations and parallelism.
    pub fn new(cfg: HashCost) -> Result<Self, HashError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(PasswordHasher {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            verifications: Default::default(),
        })
    }

    /// How many verifications this hasher (and its clones) has done.
    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The argon2id PHC string (`$argon2id$v=19$m=…`) of `secret`, with a random salt.
    /// Slow by design (tens of milliseconds): never call it on an async reactor thread.
    pub fn hash(&self, secret: &Secret) -> Result<String, HashError> {
        self.argon2
            .hash_password(secret.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashError::Hash(e.to_string()))
    }

    /// Whether `secret` matches the stored PHC string. A malformed or non-argon2id hash
    /// never matches. Slow by design, like [`PasswordHasher::hash`].
    ///
    /// The argon2 working memory (m KiB, 19 MiB by default) is one buffer per thread,
    /// reused for every verification: the few hashing threads hold it for good instead of
    /// allocating and freeing it each time — which glibc would keep around anyway, in a
    /// retained arena per thread.
    pub fn verify(&self, phc: &str, secret: &Secret) -> bool {
        if !phc.starts_with("$argon2id$") {
            self.verifications
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return foreign::verify(phc, secret.expose().as_bytes());
        }
        thread_local! {
            static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
        }
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        if parsed.algorithm.as_str() != "argon2id" {
            return false;
        }
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let blocks = params.block_count();
        if blocks > MAX_VERIFY_BLOCKS {
            return false;
        }
        let salt: &[u8] = salt;
        let expected: &[u8] = expected.as_ref();
        let mut computed = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
        let ok = MEMORY.with(|memory| {
            let mut memory = memory.borrow_mut();
            if memory.len() < blocks {
                memory.resize(blocks, Block::default());
            }
            Argon2::new(Algorithm::Argon2id, version, params)
                .hash_password_into_with_memory(
                    secret.expose().as_bytes(),
                    salt,
                    &mut computed,
                    &mut memory[..blocks],
                )
                .is_ok()
        });
        // Constant time: every byte is compared whatever the first difference.
        ok && computed
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl PasswordHasher {
    /// Whether `stored` is what this hasher would make now: argon2id at the configured
    /// cost. Anything else — a hash imported from another server, or argon2id at another
    /// cost — is re-hashed after the next login that proves the password.
    pub fn is_current(&self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        let params = self.argon2.params();
        parsed.algorithm.as_str() == "argon2id"
            && Params::try_from(&parsed).is_ok_and(|p| {
                p.m_cost() == params.m_cost()
                    && p.t_cost() == params.t_cost()
                    && p.p_cost() == params.p_cost()
            })
    }
}

/// Hashes from other servers: checking their form when they are imported, and verifying
/// a password against them.
pub mod foreign {
    use argon2::password_hash::PasswordVerifier as _;
    use argon2::password_hash::phc::PasswordHash;

    /// The schemes accepted, as Dovecot names them.
    pub const SCHEMES: [&str; 6] = [
        "ARGON2ID",
        "ARGON2I",
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "BLF-CRYPT",
        "PBKDF2",
    ];

    /// The form in which an imported `{SCHEME}hash` is stored: argon2 as its PHC string,
    /// the others as Dovecot writes them (`{SCHEME}` kept, so the scheme is never
    /// guessed). Refuses an unknown scheme or a hash that does not parse, saying why.
    pub fn stored_form(text: &str) -> Result<String, String> {
        let Some(rest) = text.strip_prefix('{') else {
            // A bare PHC or crypt string: argon2 only (others must say their scheme).
            return argon2_form(text, None);
        };
        let Some((scheme, hash)) = rest.split_once('}') else {
            return Err("a hash must start with {SCHEME}".into());
        };
        let scheme = scheme.to_ascii_uppercase();
        match scheme.as_str() {
            "ARGON2ID" => argon2_form(hash, Some("argon2id")),
            "ARGON2I" => argon2_form(hash, Some("argon2i")),
            "SHA512-CRYPT" | "SHA256-CRYPT" => {
                let id = if scheme == "SHA512-CRYPT" {
                    "$6$"
                } else {
                    "$5$"
                };
                if !hash.starts_with(id) {
                    return Err(format!("not a {scheme} hash ({id}…)"));
                }
                if sha_crypt::PasswordHashRef::new(hash).is_err() {
                    return Err(format!("malformed {scheme} hash"));
                }
                // Verify against nothing to prove every field decodes (a wrong password
                // is the only acceptable failure).
                match sha_crypt::ShaCrypt::default().verify_password(b"", hash) {
                    Ok(()) | Err(sha_crypt::password_hash::Error::PasswordInvalid) => {
                        Ok(format!("{{{scheme}}}{hash}"))
                    }
                    Err(e) => Err(format!("malformed {scheme} hash: {e}")),
                }
            }
            "BLF-CRYPT" => match bcrypt::verify(b"", hash) {
                Ok(_) => Ok(format!("{{BLF-CRYPT}}{hash}")),
                Err(e) => Err(format!("malformed BLF-CRYPT hash: {e}")),
            },
            "PBKDF2" => {
                pbkdf2_fields(hash)?;
                Ok(format!("{{PBKDF2}}{hash}"))
            }
            other => Err(format!(
                "the scheme {{{other}}} is not supported (supported: {})",
                SCHEMES.join(", ")
            )),
        }
    }

    fn argon2_form(hash: &str, want: Option<&str>) -> Result<String, String> {
        let parsed = PasswordHash::new(hash).map_err(|e| format!("malformed argon2 hash: {e}"))?;
        let algorithm = parsed.algorithm.as_str();
        if want.is_some_and(|w| w != algorithm) || !matches!(algorithm, "argon2id" | "argon2i") {
            return Err(format!("not an argon2id / argon2i hash ({algorithm})"));
        }
        if argon2::Params::try_from(&parsed).is_err() || parsed.hash.is_none() {
            return Err("malformed argon2 hash: its parameters or output".into());
        }
        Ok(hash.to_owned())
    }

    /// Dovecot's `$1$SALT$ROUNDS$HEX`: PBKDF2-HMAC-SHA1 over the salt as written.
    fn pbkdf2_fields(hash: &str) -> Result<(&str, u32, Vec<u8>), String> {
        let bad = || "malformed PBKDF2 hash: Dovecot writes $1$SALT$ROUNDS$HEX".to_owned();
        let mut parts = hash.split('$');
        let (Some(""), Some("1"), Some(salt), Some(rounds), Some(hex), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let rounds: u32 = rounds.parse().map_err(|_| bad())?;
        if rounds == 0 || rounds > 10_000_000 || hex.len() != 40 {
            return Err(bad());
        }
        let expected = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        Ok((salt, rounds, expected))
    }

    /// Whether `password` matches a stored non-argon2id hash (never panics; a hash that
    /// does not parse never matches).
    pub(super) fn verify(stored: &str, password: &[u8]) -> bool {
        if stored.starts_with("$argon2i$") {
            return PasswordHash::new(stored).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(password, &h)
                    .is_ok()
            });
        }
        let Some((scheme, hash)) = stored.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            return false;
        };
        match scheme {
            "SHA512-CRYPT" | "SHA256-CRYPT" => sha_crypt::ShaCrypt::default()
                .verify_password(password, hash)
                .is_ok(),
            "BLF-CRYPT" => bcrypt::verify(password, hash).unwrap_or(false),
            "PBKDF2" => pbkdf2_fields(hash).is_ok_and(|(salt, rounds, expected)| {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt.as_bytes(), rounds, &mut out);
                out.iter()
                    .zip(&expected)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Dovecot 2.3's `doveadm pw -s SCHEME -p Segreto-2026`.
    const DOVEADM: [&str; 6] = [
        "{PBKDF2}$1$2zJrfY6ZEdxyT4Kf$5000$a17511249d89f38b6bae3fc05442a99aea45c4ee",
        "{SHA512-CRYPT}$6$IoEYtWYVs5Xxxt68$tJIPdN.VNj60Tcj82EkBmZy9E7WhVEj1U4UUBiIZr.7yWOJpvLdZrz/4jZKN9ihIRa3fWr485voM4.wOSB3YH1",
        "{SHA256-CRYPT}$5$rGRAv6bnPHlTDvQb$IqJuwGBkbWjLcpcdj2pXsxAIy7vOhpYY9OLUTQMY8G8",
        "{BLF-CRYPT}$2y$05$sd9cktnm9PzixrcU5vUJKe3LYaTprw/sfcuZIV4UMFq.V5r0I2HVa",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$5DH3EYqHLY7oh0tU4ItUTA$8218K+ULsOnc+4pW0vzc9C2qwTO7giWHXaagjM5Yk+g",
        "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$SiJvsq5SHd3s3FezA//ZZQ$w5R3p1VSq8ZzMgIudJdtPGamv+wf5q44ue0z+ybDoHk",
    ];

    #[test]
    fn every_imported_scheme_verifies_the_right_password_only() {
        let h = cheap();
        for text in DOVEADM {
            let stored = foreign::stored_form(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                h.verify(&stored, &Secret::new("Segreto-2026".into())),
                "{text}"
            );
            assert!(
                !h.verify(&stored, &Secret::new("Segreto-2027".into())),
                "{text}"
            );
            assert!(!h.is_current(&stored), "{text} is not current");
        }
        let ours = h.hash(&Secret::new("x".into())).unwrap();
        assert!(h.is_current(&ours));
        assert!(
            !PasswordHasher::new(HashCost {
                memory_kib: 128,
                ..HashCost::CHEAP
            })
            .unwrap()
            .is_current(&ours),
            "another cost is re-hashed"
        );
    }

    #[test]
    fn malformed_and_unsupported_hashes_are_refused_at_import() {
        for (text, why) in [
            ("{MD5-CRYPT}$1$abc$def", "not supported"),
            ("{PLAIN}secret", "not supported"),
            ("{SHA512-CRYPT}$5$abc$def", "not a SHA512-CRYPT"),
            ("{SHA512-CRYPT}$6$salt$!!!", "malformed"),
            ("{BLF-CRYPT}$2y$05$short", "malformed"),
            ("{PBKDF2}$1$salt$notanumber$00", "malformed PBKDF2"),
            ("{PBKDF2}$1$salt$5000$abcd", "malformed PBKDF2"),
            (
                "{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$SiJvsq5SHd3s3FezA//ZZQ$w5R3p1VSq8ZzMgIudJdtPGamv+wf5q44ue0z+ybDoHk",
                "not an argon2id",
            ),
            ("$6$salt$hash", "malformed argon2"),
            ("{SHA512-CRYPT", "must start with"),
        ] {
            let e = foreign::stored_form(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(HashCost::CHEAP).unwrap()
    }

    #[test]
    fn hash_is_argon2id_and_verifies() {
        let h = cheap();
        let phc = h.hash(&Secret::new("correct horse".into())).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(h.verify(&phc, &Secret::new("correct horse".into())));
        assert!(!h.verify(&phc, &Secret::new("correct horsE".into())));
    }

    #[test]
    fn salts_differ() {
        let h = cheap();
        let s = Secret::new("same".into());
        assert_ne!(h.hash(&s).unwrap(), h.hash(&s).unwrap());
    }

    #[test]
    fn verifies_with_the_hash_own_parameters() {
        let old = cheap().hash(&Secret::new("pw".into())).unwrap();
        let stronger = PasswordHasher::new(HashCost {
            memory_kib: 128,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        assert!(stronger.verify(&old, &Secret::new("pw".into())));
    }

    #[test]
    fn garbage_and_other_algorithms_never_match() {
        let h = cheap();
        assert!(!h.verify("", &Secret::new(String::new())));
        assert!(!h.verify("plaintext", &Secret::new("plaintext".into())));
        let argon2i = cheap()
            .hash(&Secret::new("pw".into()))
            .unwrap()
            .replace("argon2id", "argon2i");
        assert!(!h.verify(&argon2i, &Secret::new("pw".into())));
    }

    #[test]
    fn bad_parameters_are_reported() {
        assert!(
            PasswordHasher::new(HashCost {
                memory_kib: 1,
                iterations: 1,
                parallelism: 1
            })
            .is_err()
        );
    }
}
