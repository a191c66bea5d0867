//! The verification cache: a successful argon2id verification, remembered under a keyed
//! BLAKE3 hash of (mailbox id, mailbox version, login name, presented secret).
//!
//! - The key is a random per-process 256-bit key: entries cannot be precomputed, and the
//!   secret is never stored, only this 256-bit PRF output.
//! - The mailbox version is in the hash, so any change that bumps it (regenerate,
//!   deactivate, 2FA off, password, protocols, plan) makes old entries unreachable.
//! - Only successes are inserted: a wrong password is never cached as valid.
//! - A hit says only *which* stored secret matched; the caller re-applies the current
//!   policy (expiry to the second, protocol, plan, 2FA) before accepting.
//!
//! Storage is a fixed array of slots indexed by the hash (direct-mapped): bounded memory,
//! O(1) lookups, eviction by overwrite, one small lock per slot.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::policy::login::Matched;

/// A cache key: the keyed hash. Compared in constant time (blake3::Hash's `==`).
pub type CacheKey = blake3::Hash;

struct Slot {
    key: CacheKey,
    matched: Matched,
    at: Instant,
}

/// Bounded cache of successful verifications.
pub struct VerificationCache {
    key: [u8; 32],
    slots: Box<[Mutex<Option<Slot>>]>,
    /// The time to live in nanoseconds (a reload may change it).
    ttl: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for VerificationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VerificationCache({} slots, ttl {:?})",
            self.slots.len(),
            self.ttl()
        )
    }
}

impl VerificationCache {
    /// A cache with `entries` slots (at least 1) whose entries live `ttl`.
    pub fn new(entries: usize, ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        // A failing OS random source leaves the key all-zero only if getrandom fails, which
        // it does not on Linux; the process would have failed earlier (dummy hash salt).
        let _ = getrandom::fill(&mut key);
        let slots = (0..entries.max(1))
            .map(|_| Mutex::new(None))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let cache = VerificationCache {
            key,
            slots,
            ttl: std::sync::atomic::AtomicU64::new(0),
        };
        cache.set_ttl(ttl);
        cache
    }

    /// How long an entry is served from now on (a reload; entries already there count
    /// from when they were made).
    pub fn set_ttl(&self, ttl: Duration) {
        let nanos = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        self.ttl.store(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    fn ttl(&self) -> Duration {
        Duration::from_nanos(self.ttl.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The key for one presented credential.
    pub fn key(&self, mailbox_id: i64, version: i64, login: &str, secret: &[u8]) -> CacheKey {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&mailbox_id.to_le_bytes());
        h.update(&version.to_le_bytes());
        h.update(&(login.len() as u64).to_le_bytes());
        h.update(login.as_bytes());
        h.update(secret);
        h.finalize()
    }

    fn slot(&self, key: &CacheKey) -> &Mutex<Option<Slot>> {
        let b = key.as_bytes();
        let index = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        &self.slots[(index % self.slots.len() as u64) as usize]
    }

    /// What the secret matched, if this exact credential was verified within the TTL.
    pub fn get(&self, key: &CacheKey) -> Option<Matched> {
        let slot = self.slot(key).lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(s) if s.key == *key && s.at.elapsed() < self.ttl() => Some(s.matched),
            _ => None,
        }
    }

    /// Remembers a successful verification (never call it for a failure).
    pub fn insert(&self, key: CacheKey, matched: Matched) {
        let mut slot = self.slot(&key).lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Slot {
            key,
            matched,
            at: Instant::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_only_for_the_same_credential_and_version() {
        let c = VerificationCache::new(1024, Duration::from_secs(60));
        let k = c.key(1, 7, "mario", b"secret");
        assert_eq!(c.get(&k), None);
        c.insert(k, Matched::App(7));
        assert_eq!(c.get(&k), Some(Matched::App(7)));
        assert_eq!(
            c.get(&c.key(1, 8, "mario", b"secret")),
            None,
            "a version bump misses"
        );
        assert_eq!(c.get(&c.key(1, 7, "mario", b"secreT")), None);
        assert_eq!(c.get(&c.key(2, 7, "mario", b"secret")), None);
        assert_eq!(
            c.get(&c.key(1, 7, "mari", b"osecret")),
            None,
            "length-prefixed: no ambiguity"
        );
    }

    #[test]
    fn keys_differ_between_processes() {
        let a = VerificationCache::new(1, Duration::from_secs(1));
        let b = VerificationCache::new(1, Duration::from_secs(1));
        assert_ne!(a.key(1, 1, "x", b"y"), b.key(1, 1, "x", b"y"));
    }

    #[test]
    fn entries_expire_and_are_bounded() {
        let c = VerificationCache::new(4, Duration::from_millis(0));
        let k = c.key(1, 1, "a", b"b");
        c.insert(k, Matched::Main);
        assert_eq!(c.get(&k), None, "ttl 0: never served");
        let c = VerificationCache::new(1, Duration::from_secs(60));
        let (k1, k2) = (c.key(1, 1, "a", b"1"), c.key(1, 1, "a", b"2"));
        c.insert(k1, Matched::Main);
        c.insert(k2, Matched::Main);
        assert_eq!(
            c.get(&k1),
            None,
            "one slot: the newer entry evicted the older"
        );
        assert_eq!(c.get(&k2), Some(Matched::Main));
    }
}
