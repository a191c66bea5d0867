//! The abuse model's pure rules (SPEC "Abuse resistance"): what a failure is counted
//! against, when a count becomes a block, how long the block lasts, and what a success
//! clears. No I/O, the clock passed in; `auth::guard` keeps the counters and is the one
//! place every door records a failure or a success.
//!
//! | factor | subject | limit | then | cleared by |
//! | --- | --- | --- | --- | --- |
//! | password | the account (a mailbox, or an unknown name) | `password_failures` | blocked `block`, doubling, up to `max_block` | a right main password of it |
//! | second factor | the mailbox | `code_failures` | the code step blocked, the right code too | a right code, outside a block |
//! | any | the login name | `name_failures` | blocked, at most `name_max_block` | a completed login of that name |
//! | any | the client address (IPv6 by /64) | `address_failures` | closed at accept, up to `address_max_block` | nothing: it ages out of the window |
//!
//! Only *distinct* wrong secrets count (a mail client retrying a stale password is one
//! failure, not hundreds). A count not added to for `window`, and not blocking, is
//! forgotten.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The limits of the abuse model (`[throttle]` in config.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Distinct failures from one address before it is blocked.
    pub address_failures: u32,
    /// Distinct failures for one login name before it is blocked.
    pub name_failures: u32,
    /// Distinct wrong passwords against one account before its password is blocked.
    pub password_failures: u32,
    /// Distinct wrong second-factor codes of one mailbox before its code step is blocked.
    pub code_failures: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// The first block; doubles with each further failure.
    pub block: Duration,
    /// Longest block of an address.
    pub address_max_block: Duration,
    /// Longest block of a name: how long, at most, an attack on a name keeps its owner
    /// out of a login that is not already verified.
    pub name_max_block: Duration,
    /// Longest block of an account's password or a mailbox's code step.
    pub max_block: Duration,
}

/// What was tried: the thing a failure is evidence of guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Factor {
    /// A password (main or app) for a login name.
    Password,
    /// A second-factor code of a mailbox (login's second step, turning 2FA off,
    /// replacing or confirming the device).
    SecondFactor,
}

impl Factor {
    /// A short, bounded name (metrics labels, fleet keys).
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Password => "password",
            Factor::SecondFactor => "code",
        }
    }
}

/// What a success proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The account's main password.
    MainPassword,
    /// One of the mailbox's app passwords.
    AppPassword,
    /// A code from the mailbox's device.
    SecondFactor,
}

/// Who a count is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// The client's network.
    Address,
    /// The login name as presented.
    Name,
    /// The account's password (a mailbox, or a name that has none).
    Password,
    /// The mailbox's second factor.
    #[serde(rename = "code")]
    SecondFactor,
}

/// A block as the access history records it: which count, for how long, the client's
/// network (an address block names it), and — for a block an attempt started — after how
/// many distinct failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockNote {
    /// Which count blocks.
    pub subject: Subject,
    /// For how many seconds (what is left of it, for a running block).
    pub seconds: u64,
    /// The client's network as written (`203.0.113.9`, `2001:db8::/64`).
    pub network: String,
    /// Distinct failures counted, for a block that an attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
}

/// Where a code from the device is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeUse {
    /// The page login's second step.
    Login,
    /// Confirming a new device (turning 2FA on, or the replacement).
    Confirm,
    /// Turning 2FA off.
    Disable,
    /// Starting a device replacement.
    Replace,
}

impl CodeUse {
    /// A short, bounded name (metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            CodeUse::Login => "login",
            CodeUse::Confirm => "confirm",
            CodeUse::Disable => "disable",
            CodeUse::Replace => "replace",
        }
    }
}

impl Subject {
    /// A short, bounded name (metrics labels, the history's words).
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Address => "address",
            Subject::Name => "name",
            Subject::Password => "password",
            Subject::SecondFactor => "code",
        }
    }

    /// Every subject, in the order they are checked.
    pub const ALL: [Subject; 4] = [
        Subject::Address,
        Subject::Name,
        Subject::Password,
        Subject::SecondFactor,
    ];

    /// The subjects a failure of `factor` counts against.
    pub fn counted(factor: Factor) -> &'static [Subject] {
        match factor {
            Factor::Password => &[Subject::Address, Subject::Name, Subject::Password],
            Factor::SecondFactor => &[Subject::Address, Subject::Name, Subject::SecondFactor],
        }
    }

    /// The subjects a success clears: only what it proves wrong. Never the address (a
    /// success of one name says nothing of the failures on others), never the other
    /// factor (a right main password is no code), and an app password proves nothing of
    /// the main password (the owner's mail clients must not reset an attack's count).
    pub fn cleared(proof: Proof) -> &'static [Subject] {
        match proof {
            Proof::MainPassword => &[Subject::Name, Subject::Password],
            Proof::AppPassword => &[Subject::Name],
            Proof::SecondFactor => &[Subject::Name, Subject::SecondFactor],
        }
    }

    /// Its limit and longest block under `l`.
    pub fn limits(self, l: &Limits) -> (u32, Duration) {
        match self {
            Subject::Address => (l.address_failures, l.address_max_block),
            Subject::Name => (l.name_failures, l.name_max_block),
            Subject::Password => (l.password_failures, l.max_block),
            Subject::SecondFactor => (l.code_failures, l.max_block),
        }
    }
}

/// Recent distinct wrong secrets remembered per count.
const RECENT: usize = 8;

/// The failures of one subject.
#[derive(Clone, Debug)]
pub struct Count {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
    recent: [u64; RECENT],
    next: usize,
}

impl Count {
    /// No failures yet.
    pub fn new(now: Instant) -> Self {
        Count {
            failures: 0,
            last: now,
            blocked_until: None,
            recent: [0; RECENT],
            next: 0,
        }
    }

    /// Distinct failures in the window.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts a failure with secret fingerprint `fp` against a subject with `threshold`
    /// and longest block `max`; returns the block it started, if it started one (a block
    /// extended while it runs is not news).
    pub fn fail(
        &mut self,
        fp: u64,
        now: Instant,
        threshold: u32,
        l: &Limits,
        max: Duration,
    ) -> Option<Duration> {
        if self.stale(now, l.window) {
            *self = Count::new(now);
        }
        self.last = now;
        if self.recent.contains(&fp) {
            return None;
        }
        self.recent[self.next] = fp;
        self.next = (self.next + 1) % RECENT;
        self.failures = self.failures.saturating_add(1);
        let block = block_for(self.failures, threshold, l.block, max)?;
        let was_blocked = self.blocked(now).is_some();
        self.blocked_until = Some(now + block);
        (!was_blocked).then_some(block)
    }

    /// What is left of the block at `now`, if one runs.
    pub fn blocked(&self, now: Instant) -> Option<Duration> {
        self.blocked_until.filter(|b| *b > now).map(|b| b - now)
    }

    /// Neither recent nor blocking: it can be forgotten.
    pub fn stale(&self, now: Instant, window: Duration) -> bool {
        now.duration_since(self.last) > window && self.blocked(now).is_none()
    }

    /// Takes in what a fleet counted for this subject (`distinct` failures, the last at
    /// `last_ms`): at least its failures, and its block for what is left of it.
    #[allow(clippy::too_many_arguments)]
    pub fn absorb(
        &mut self,
        distinct: u32,
        last_ms: i64,
        threshold: u32,
        l: &Limits,
        max: Duration,
        now: Instant,
        now_ms: i64,
    ) {
        self.failures = self.failures.max(distinct);
        self.last = now;
        if let Some(block) = block_for(distinct, threshold, l.block, max) {
            let end_ms =
                last_ms.saturating_add(i64::try_from(block.as_millis()).unwrap_or(i64::MAX));
            if end_ms > now_ms {
                let until = now + Duration::from_millis((end_ms - now_ms) as u64);
                self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
            }
        }
    }
}

/// The block `failures` distinct failures earn (`None` below the threshold): `block`,
/// doubling with each failure past the threshold, up to `max`.
pub fn block_for(
    failures: u32,
    threshold: u32,
    block: Duration,
    max: Duration,
) -> Option<Duration> {
    (failures >= threshold).then(|| {
        let doublings = (failures - threshold).min(20);
        block.saturating_mul(1 << doublings).min(max)
    })
}

/// The network a client address is counted under: IPv4 as is, IPv6 by its /64 (one host
/// usually owns the whole /64).
pub fn network(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

/// The client's network as people write it: an IPv4 address, or an IPv6 /64.
pub fn describe_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            format!("{}/64", std::net::Ipv6Addr::from(network(ip)))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            address_failures: 10,
            name_failures: 5,
            password_failures: 5,
            code_failures: 5,
            window: Duration::from_secs(900),
            block: Duration::from_secs(30),
            address_max_block: Duration::from_secs(3600),
            name_max_block: Duration::from_secs(60),
            max_block: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_right_password_never_clears_the_code_count_nor_the_address() {
        assert!(!Subject::cleared(Proof::MainPassword).contains(&Subject::SecondFactor));
        assert!(!Subject::cleared(Proof::MainPassword).contains(&Subject::Address));
        assert!(!Subject::cleared(Proof::SecondFactor).contains(&Subject::Address));
        assert!(!Subject::cleared(Proof::SecondFactor).contains(&Subject::Password));
        assert!(!Subject::cleared(Proof::AppPassword).contains(&Subject::Password));
        // Every failure counts against the address and the name.
        for f in [Factor::Password, Factor::SecondFactor] {
            assert!(Subject::counted(f).contains(&Subject::Address));
            assert!(Subject::counted(f).contains(&Subject::Name));
        }
        assert!(Subject::counted(Factor::SecondFactor).contains(&Subject::SecondFactor));
    }

    #[test]
    fn blocks_start_at_the_limit_and_double_up_to_the_maximum() {
        let l = limits();
        let b = |n| block_for(n, 5, l.block, l.max_block);
        assert_eq!(b(4), None);
        assert_eq!(b(5), Some(Duration::from_secs(30)));
        assert_eq!(b(6), Some(Duration::from_secs(60)));
        assert_eq!(b(10), Some(Duration::from_secs(960)));
        assert_eq!(b(12), Some(Duration::from_secs(3600)));
        assert_eq!(b(u32::MAX), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn a_count_forgets_after_the_window_unless_it_blocks() {
        let l = limits();
        let now = Instant::now();
        let mut c = Count::new(now);
        for fp in 1..=4 {
            assert_eq!(c.fail(fp, now, 5, &l, l.max_block), None);
        }
        // The same wrong secret again counts nothing.
        assert_eq!(c.fail(4, now, 5, &l, l.max_block), None);
        assert_eq!(c.failures(), 4);
        assert_eq!(
            c.fail(5, now, 5, &l, l.max_block),
            Some(Duration::from_secs(30))
        );
        assert!(c.blocked(now + Duration::from_secs(29)).is_some());
        // A failure during the block extends it (doubling), without news.
        assert_eq!(
            c.fail(6, now + Duration::from_secs(10), 5, &l, l.max_block),
            None
        );
        assert!(c.blocked(now + Duration::from_secs(69)).is_some());
        let later = now + Duration::from_secs(2000);
        assert!(c.stale(later, l.window));
        c.fail(7, later, 5, &l, l.max_block);
        assert_eq!(c.failures(), 1, "the window forgot the rest");
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            network(ip("2001:db8:1:2::1")),
            network(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            network(ip("2001:db8:1:2::1")),
            network(ip("2001:db8:1:3::1"))
        );
        assert_eq!(network(ip("::ffff:192.0.2.1")), network(ip("192.0.2.1")));
        assert_eq!(describe_network(ip("2001:db8:1:2::7")), "2001:db8:1:2::/64");
    }
}
