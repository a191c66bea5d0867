//! argon2id password hashing: the only form in which passwords are stored.

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

#[cfg(test)]
mod tests {
    use super::*;

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
