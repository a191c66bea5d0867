//! Brute-force throttling, checked before any hashing.
//!
//! Failures are counted per client network (an IPv4 address, or an IPv6 /64: one host
//! usually owns the whole /64) and per login name. Only *distinct* wrong secrets count:
//! a mail client retrying the same stale password every minute is one failure, not
//! hundreds. Past a threshold the key is blocked, for `block`, doubling with each further
//! distinct failure, up to a maximum. Per-name blocks are capped short
//! (`name_max_block`): an attack on a name must not lock its real owner out for long; the
//! attacker's own address is what gets blocked for long. A success clears the address's
//! and the name's counts. Counts older than `window` are forgotten.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::secret::Secret;
use crate::store::ThrottleCount;

/// Throttle settings (see `[throttle]` in config.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Distinct failures from one address before it is blocked.
    pub address_failures: u32,
    /// Distinct failures for one name before it is blocked.
    pub name_failures: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// The first block; doubles with each further failure.
    pub block: Duration,
    /// Longest block of an address.
    pub address_max_block: Duration,
    /// Longest block of a name.
    pub name_max_block: Duration,
}

/// Entries kept per map before stale ones are pruned.
const PRUNE_AT: usize = 100_000;
/// Recent distinct wrong secrets remembered per key.
const RECENT: usize = 8;

#[derive(Debug)]
struct Counter {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
    recent: [u64; RECENT],
    next: usize,
}

impl Counter {
    fn new(now: Instant) -> Self {
        Counter {
            failures: 0,
            last: now,
            blocked_until: None,
            recent: [0; RECENT],
            next: 0,
        }
    }

    /// Counts a failure with secret fingerprint `fp`; returns the length of the block it
    /// started, if it started one.
    fn fail(
        &mut self,
        fp: u64,
        now: Instant,
        threshold: u32,
        s: &ThrottleSettings,
        max: Duration,
    ) -> Option<Duration> {
        if now.duration_since(self.last) > s.window && self.blocked_until.is_none_or(|b| b <= now) {
            *self = Counter::new(now);
        }
        self.last = now;
        if self.recent.contains(&fp) {
            return None;
        }
        self.recent[self.next] = fp;
        self.next = (self.next + 1) % RECENT;
        self.failures = self.failures.saturating_add(1);
        if let Some(block) = block_for(self.failures, threshold, s, max) {
            let was_blocked = self.blocked(now).is_some();
            self.blocked_until = Some(now + block);
            // Extending a block is not news; starting one is.
            return (!was_blocked).then_some(block);
        }
        None
    }

    fn blocked(&self, now: Instant) -> Option<Duration> {
        self.blocked_until.filter(|b| *b > now).map(|b| b - now)
    }

    /// Takes in what the fleet counted for this key: at least its distinct failures, and
    /// its block for what is left of it.
    fn absorb(
        &mut self,
        fleet: &ThrottleCount,
        threshold: u32,
        s: &ThrottleSettings,
        max: Duration,
        now: Instant,
        now_ms: i64,
    ) {
        self.failures = self.failures.max(fleet.distinct);
        self.last = now;
        if let Some(block) = block_for(fleet.distinct, threshold, s, max) {
            let end_ms = fleet.last_ms.saturating_add(block.as_millis() as i64);
            if end_ms > now_ms {
                let until = now + Duration::from_millis((end_ms - now_ms) as u64);
                self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
            }
        }
    }
}

/// The block `failures` distinct failures earn (`None` below the threshold): `block`,
/// doubling with each failure past the threshold, up to `max`.
fn block_for(
    failures: u32,
    threshold: u32,
    s: &ThrottleSettings,
    max: Duration,
) -> Option<Duration> {
    (failures >= threshold).then(|| {
        let doublings = (failures - threshold).min(20);
        s.block.saturating_mul(1 << doublings).min(max)
    })
}

/// The throttle.
pub struct Throttle {
    /// Replaced whole by a reload; counters and blocks already there stay.
    settings: arc_swap::ArcSwap<ThrottleSettings>,
    by_address: DashMap<u128, Counter>,
    by_name: DashMap<String, Counter>,
    key: [u8; 32],
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The network a client address is counted under: IPv4 as is, IPv6 by its /64.
pub fn network(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn describe(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            format!("{}/64", std::net::Ipv6Addr::from(network(ip)))
        }
        other => other.to_string(),
    }
}

impl Throttle {
    /// A throttle with `settings`, fingerprinting wrong secrets with a key of its own.
    pub fn new(settings: ThrottleSettings) -> Self {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        Throttle::with_key(settings, key)
    }

    /// A throttle fingerprinting wrong secrets with `key` (a fleet's: the same wrong
    /// secret is then the same fingerprint on every node).
    pub fn with_key(settings: ThrottleSettings, key: [u8; 32]) -> Self {
        Throttle {
            settings: arc_swap::ArcSwap::from_pointee(settings),
            by_address: DashMap::new(),
            by_name: DashMap::new(),
            key,
        }
    }

    /// New limits from now on (a reload): counters and blocks already running stay.
    pub fn set_settings(&self, settings: ThrottleSettings) {
        self.settings.store(std::sync::Arc::new(settings));
    }

    /// `Err(reason)` if the client or the name is blocked now.
    pub fn check(&self, ip: IpAddr, name: &str, now: Instant) -> Result<(), String> {
        if let Some(left) = self
            .by_address
            .get(&network(ip))
            .and_then(|c| c.blocked(now))
        {
            return Err(format!(
                "client {} blocked for {}s more after repeated failed logins",
                describe(ip),
                ceil_secs(left)
            ));
        }
        if let Some(left) = self.by_name.get(name).and_then(|c| c.blocked(now)) {
            return Err(format!(
                "login name blocked for {}s more after repeated failed logins",
                ceil_secs(left)
            ));
        }
        Ok(())
    }

    /// Records a failed login (for names that exist or not). Returns a description of the
    /// block it started, if it started one (for the access history).
    pub fn failure(&self, ip: IpAddr, name: &str, secret: &Secret, now: Instant) -> Option<String> {
        self.failure_fp(ip, name, self.fingerprint(name, secret), now)
    }

    /// A wrong secret's keyed fingerprint (never the secret itself).
    pub fn fingerprint(&self, name: &str, secret: &Secret) -> u64 {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(secret.expose().as_bytes());
        let b = h.finalize();
        u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([0; 8]))
    }

    /// The keys a fleet counts this client and name under: `a:NETWORK`, `n:NAME`.
    pub fn fleet_keys(ip: IpAddr, name: &str) -> [String; 2] {
        [format!("a:{:032x}", network(ip)), format!("n:{name}")]
    }

    /// Takes in what the fleet counted for this client and name (`counts` of
    /// [`Throttle::fleet_keys`]): a key the fleet has blocked is blocked here too, for
    /// what is left of its block.
    pub fn absorb(
        &self,
        ip: IpAddr,
        name: &str,
        counts: &[ThrottleCount],
        now: Instant,
        now_ms: i64,
    ) {
        let s = &**self.settings.load();
        let [address_key, name_key] = Throttle::fleet_keys(ip, name);
        for c in counts {
            if c.key == address_key {
                self.by_address
                    .entry(network(ip))
                    .or_insert_with(|| Counter::new(now))
                    .absorb(c, s.address_failures, s, s.address_max_block, now, now_ms);
            } else if c.key == name_key {
                self.by_name
                    .entry(name.to_owned())
                    .or_insert_with(|| Counter::new(now))
                    .absorb(c, s.name_failures, s, s.name_max_block, now, now_ms);
            }
        }
    }

    /// How far back the fleet's failures count.
    pub fn window(&self) -> Duration {
        self.settings.load().window
    }

    /// [`Throttle::failure`] with the fingerprint already made.
    pub fn failure_fp(&self, ip: IpAddr, name: &str, fp: u64, now: Instant) -> Option<String> {
        let s = &**self.settings.load();
        let mut blocks = Vec::new();
        let address_block = self
            .by_address
            .entry(network(ip))
            .or_insert_with(|| Counter::new(now))
            .fail(fp, now, s.address_failures, s, s.address_max_block);
        if let Some(d) = address_block {
            blocks.push(format!(
                "client {} blocked for {}s",
                describe(ip),
                ceil_secs(d)
            ));
        }
        if self.by_name.len() < PRUNE_AT || self.by_name.contains_key(name) {
            let name_block = self
                .by_name
                .entry(name.to_owned())
                .or_insert_with(|| Counter::new(now))
                .fail(fp, now, s.name_failures, s, s.name_max_block);
            if let Some(d) = name_block {
                blocks.push(format!("login name blocked for {}s", ceil_secs(d)));
            }
        }
        if self.by_address.len() > PRUNE_AT || self.by_name.len() >= PRUNE_AT {
            self.prune(now);
        }
        (!blocks.is_empty()).then(|| blocks.join("; "))
    }

    /// Whether the client's address is blocked now (checked at accept time: a blocked
    /// client does not even get a TLS handshake).
    pub fn address_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_address
            .get(&network(ip))
            .is_some_and(|c| c.blocked(now).is_some())
    }

    /// A successful login clears the address's and the name's counts; returns whether
    /// there were any.
    pub fn success(&self, ip: IpAddr, name: &str) -> bool {
        let a = self.by_address.remove(&network(ip)).is_some();
        let n = self.by_name.remove(name).is_some();
        a || n
    }

    /// Forgets counters that are neither recent nor blocking.
    pub fn prune(&self, now: Instant) {
        let window = self.settings.load().window;
        let stale = |c: &Counter| now.duration_since(c.last) > window && c.blocked(now).is_none();
        self.by_address.retain(|_, c| !stale(c));
        self.by_name.retain(|_, c| !stale(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            address_failures: 5,
            name_failures: 3,
            window: Duration::from_secs(900),
            block: Duration::from_secs(10),
            address_max_block: Duration::from_secs(3600),
            name_max_block: Duration::from_secs(60),
        }
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s.into())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn distinct_failures_block_an_address_with_growing_blocks() {
        let t = Throttle::new(settings());
        let now = Instant::now();
        for i in 0..4 {
            t.failure(
                ip("203.0.113.9"),
                &format!("user{i}"),
                &secret(&format!("pw{i}")),
                now,
            );
        }
        assert!(t.check(ip("203.0.113.9"), "x", now).is_ok(), "4 < 5");
        let started = t.failure(ip("203.0.113.9"), "user4", &secret("pw4"), now);
        assert_eq!(
            started.as_deref(),
            Some("client 203.0.113.9 blocked for 10s")
        );
        assert!(t.address_blocked(ip("203.0.113.9"), now));
        assert!(!t.address_blocked(ip("203.0.113.10"), now));
        let err = t.check(ip("203.0.113.9"), "x", now).unwrap_err();
        assert!(err.contains("203.0.113.9") && err.contains("10s"), "{err}");
        assert!(
            t.check(ip("203.0.113.9"), "x", now + Duration::from_secs(11))
                .is_ok(),
            "block over"
        );
        // The next failure doubles the block.
        t.failure(
            ip("203.0.113.9"),
            "user5",
            &secret("pw5"),
            now + Duration::from_secs(11),
        );
        assert!(
            t.check(ip("203.0.113.9"), "x", now + Duration::from_secs(25))
                .is_err()
        );
        assert!(
            t.check(ip("203.0.113.9"), "x", now + Duration::from_secs(32))
                .is_ok()
        );
    }

    #[test]
    fn the_same_wrong_password_counts_once() {
        let t = Throttle::new(settings());
        let now = Instant::now();
        for _ in 0..100 {
            t.failure(ip("198.51.100.1"), "mario", &secret("old-password"), now);
        }
        assert!(t.check(ip("198.51.100.1"), "mario", now).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let t = Throttle::new(settings());
        let now = Instant::now();
        for i in 0..5 {
            t.failure(
                ip(&format!("2001:db8:1:2::{i}")),
                &format!("n{i}"),
                &secret(&format!("p{i}")),
                now,
            );
        }
        let err = t.check(ip("2001:db8:1:2:ffff::1"), "z", now).unwrap_err();
        assert!(err.contains("2001:db8:1:2::/64"), "{err}");
        assert!(
            t.check(ip("2001:db8:1:3::1"), "z", now).is_ok(),
            "another /64"
        );
        assert_eq!(network(ip("::ffff:192.0.2.1")), network(ip("192.0.2.1")));
    }

    #[test]
    fn an_attack_on_a_name_blocks_the_owner_only_briefly() {
        let t = Throttle::new(settings());
        let now = Instant::now();
        // Attackers from many addresses, many distinct passwords.
        for i in 0..50u32 {
            let later = now + Duration::from_secs(u64::from(i));
            t.failure(
                ip(&format!("192.0.2.{i}")),
                "mario",
                &secret(&format!("guess{i}")),
                later,
            );
        }
        let at = now + Duration::from_secs(49);
        let err = t.check(ip("198.51.100.7"), "mario", at).unwrap_err();
        assert!(err.contains("login name"), "{err}");
        // Never longer than name_max_block after the last failure.
        assert!(
            t.check(ip("198.51.100.7"), "mario", at + Duration::from_secs(61))
                .is_ok()
        );
    }

    #[test]
    fn success_clears_and_old_failures_are_forgotten() {
        let t = Throttle::new(settings());
        let now = Instant::now();
        for i in 0..4 {
            t.failure(ip("203.0.113.1"), "a", &secret(&format!("x{i}")), now);
        }
        t.success(ip("203.0.113.1"), "a");
        t.failure(ip("203.0.113.1"), "a", &secret("y"), now);
        assert!(
            t.check(ip("203.0.113.1"), "b", now).is_ok(),
            "count restarted after success"
        );
        let t = Throttle::new(settings());
        for i in 0..4 {
            t.failure(
                ip("203.0.113.2"),
                &format!("u{i}"),
                &secret(&format!("x{i}")),
                now,
            );
        }
        let much_later = now + Duration::from_secs(1000);
        t.failure(ip("203.0.113.2"), "u9", &secret("x9"), much_later);
        assert!(
            t.check(ip("203.0.113.2"), "b", much_later).is_ok(),
            "the window forgot the first four"
        );
        t.prune(much_later + Duration::from_secs(1000));
        assert_eq!(t.by_address.len(), 0);
    }
}
