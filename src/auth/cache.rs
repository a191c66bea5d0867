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
//! Storage is a fixed array of sets of four slots, the set chosen by the hash (4-way set
//! associative): bounded memory, O(1) lookups, one small lock per set, and a full set
//! evicts its oldest entry. (Direct-mapped, 10,000 mailboxes in 65,536 slots lost ~7% of
//! their entries to collisions, each then costing an argon2id verification a login.)

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

/// Slots a set holds.
const WAYS: usize = 4;

/// Bounded cache of successful verifications.
pub struct VerificationCache {
    key: [u8; 32],
    sets: Box<[Mutex<[Option<Slot>; WAYS]>]>,
    /// Slots used in each set: `WAYS`, or fewer for a cache smaller than one set.
    ways: usize,
    /// The time to live in nanoseconds (a reload may change it).
    ttl: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for VerificationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VerificationCache({} slots, ttl {:?})",
            self.sets.len() * self.ways,
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
        let entries = entries.max(1);
        let ways = entries.min(WAYS);
        let sets = (0..entries / ways)
            .map(|_| Mutex::new([None, None, None, None]))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let cache = VerificationCache {
            key,
            sets,
            ways,
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

    fn set(&self, key: &CacheKey) -> std::sync::MutexGuard<'_, [Option<Slot>; WAYS]> {
        let b = key.as_bytes();
        let index = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        self.sets[(index % self.sets.len() as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// What the secret matched, if this exact credential was verified within the TTL.
    pub fn get(&self, key: &CacheKey) -> Option<Matched> {
        let ttl = self.ttl();
        let set = self.set(key);
        set[..self.ways]
            .iter()
            .flatten()
            .find_map(|s| (s.key == *key && s.at.elapsed() < ttl).then_some(s.matched))
    }

    /// Remembers a successful verification (never call it for a failure): in the slot
    /// that has this key, or an empty one, or in place of the set's oldest entry.
    pub fn insert(&self, key: CacheKey, matched: Matched) {
        let mut set = self.set(&key);
        let ways = &mut set[..self.ways];
        let i = ways
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.key == key))
            .or_else(|| ways.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                (0..ways.len())
                    .min_by_key(|&i| ways[i].as_ref().map(|s| s.at))
                    .unwrap_or(0)
            });
        ways[i] = Some(Slot {
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
        // A full set evicts its oldest entry, not the one just used.
        let c = VerificationCache::new(4, Duration::from_secs(60));
        let keys: Vec<CacheKey> = (0..5).map(|i| c.key(1, 1, "a", &[i])).collect();
        for k in &keys {
            c.insert(*k, Matched::Main);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(c.get(&keys[0]), None, "the oldest went");
        assert!(keys[1..].iter().all(|k| c.get(k).is_some()));
    }

    #[test]
    fn a_working_set_well_below_the_size_stays_cached() {
        // 1,000 credentials in 4,096 entries: direct-mapped, about 11% would collide
        // away; four ways lose a handful at most.
        let c = VerificationCache::new(4_096, Duration::from_secs(60));
        let keys: Vec<CacheKey> = (0..1_000u32)
            .map(|i| c.key(1, 1, "a", &i.to_le_bytes()))
            .collect();
        for k in &keys {
            c.insert(*k, Matched::Main);
        }
        let kept = keys.iter().filter(|k| c.get(k).is_some()).count();
        assert!(kept >= 980, "only {kept} of 1000 kept");
    }
}
