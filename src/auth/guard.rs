//! The abuse model's counters (the rules are [`crate::policy::abuse`]): every failure
//! and every success of every door (IMAP, POP3, SMTP, the page, the API) reaches them
//! through the authenticator's two functions, `failed` and `succeeded`; nothing else
//! touches them.
//!
//! Counts live in memory, per client network and per subject (the login name, the
//! account's password, the mailbox's second factor). In a fleet the authenticator also
//! writes each failure for the other nodes and takes in theirs before deciding
//! ([`Guard::absorb`]).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::policy::abuse::{BlockNote, Count, Limits, Proof, Subject, describe_network, network};
use crate::policy::login::Reason;
use crate::secret::Secret;
use crate::store::ThrottleCount;

/// Counts kept per map before stale ones are pruned; past it (after pruning) no new
/// name-like subject is counted (the address still is), so attacker-chosen names cannot
/// grow memory without bound.
const PRUNE_AT: usize = 100_000;

/// One attempt as the abuse model sees it.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// The client.
    pub peer: IpAddr,
    /// The login name (normalised when it is valid, else printable).
    pub name: &'a str,
    /// The mailbox the name opens, if any. Whose password the name tries is that
    /// mailbox's — or, for a name that opens none, the name's own, so an unknown name is
    /// counted and blocked exactly like a known one (blocks tell nothing of which names
    /// exist).
    pub mailbox: Option<i64>,
}

impl<'a> Who<'a> {
    /// `name` from `peer`, opening `mailbox` (if any).
    pub fn new(peer: IpAddr, name: &'a str, mailbox: Option<i64>) -> Self {
        Who {
            peer,
            name,
            mailbox,
        }
    }
}

/// A count's key in memory. Names are kept as a keyed 64-bit hash (the process's own
/// random key): no allocation on the login path, and nothing an attacker can aim at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Name(u64),
    Password(Account),
    Code(i64),
}

/// Whose password: a mailbox, or an unknown name (hashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Account {
    Mailbox(i64),
    Unknown(u64),
}

/// A block that refuses an attempt now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// Which count blocks.
    pub subject: Subject,
    /// For how much longer.
    pub left: Duration,
    /// The client's network as written (for the history).
    pub network: String,
}

impl Blocked {
    /// Whole seconds left, rounded up (what a person is told to wait).
    pub fn seconds(&self) -> u64 {
        ceil_secs(self.left)
    }

    /// The block as the history records it.
    pub fn note(&self) -> BlockNote {
        BlockNote {
            subject: self.subject,
            seconds: self.seconds(),
            network: self.network.clone(),
            failures: None,
        }
    }
}

/// A block an attempt started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// Which count.
    pub subject: Subject,
    /// How long.
    pub block: Duration,
    /// Distinct failures counted.
    pub failures: u32,
}

/// The blocks an attempt started, as the access history records them (a row of their
/// own), if it started any.
pub fn started_reason(started: &[Started], peer: IpAddr) -> Option<Reason> {
    let notes: Vec<BlockNote> = started
        .iter()
        .map(|b| BlockNote {
            subject: b.subject,
            seconds: ceil_secs(b.block),
            network: describe_network(peer),
            failures: Some(b.failures),
        })
        .collect();
    (!notes.is_empty()).then_some(Reason::BlocksStarted(notes))
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The counters.
pub struct Guard {
    /// Replaced whole by a reload; counts and blocks already there stay.
    limits: arc_swap::ArcSwap<Limits>,
    by_address: DashMap<u128, Count>,
    by_subject: DashMap<Key, Count>,
    key: [u8; 32],
    names: std::hash::RandomState,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// Counters under `limits`, fingerprinting wrong secrets with `key` (a fleet's: the
    /// same wrong secret is then the same fingerprint on every node).
    pub fn new(limits: Limits, key: [u8; 32]) -> Self {
        Guard {
            limits: arc_swap::ArcSwap::from_pointee(limits),
            by_address: DashMap::new(),
            by_subject: DashMap::new(),
            key,
            names: std::hash::RandomState::new(),
        }
    }

    /// New limits from now on (a reload): counts and blocks already running stay.
    pub fn set_limits(&self, limits: Limits) {
        self.limits.store(std::sync::Arc::new(limits));
    }

    /// The limits now.
    pub fn limits(&self) -> Limits {
        **self.limits.load()
    }

    /// A key for something else that must be the same on every node of a fleet, derived
    /// from the guard's (never the guard's key itself).
    pub fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.key)
    }

    fn key_of(&self, who: &Who<'_>, subject: Subject) -> Option<Key> {
        use std::hash::BuildHasher;
        let name = || self.names.hash_one(who.name);
        match subject {
            Subject::Address => None,
            Subject::Name => Some(Key::Name(name())),
            Subject::Password => Some(Key::Password(match who.mailbox {
                Some(id) => Account::Mailbox(id),
                None => Account::Unknown(name()),
            })),
            Subject::SecondFactor => who.mailbox.map(Key::Code),
        }
    }

    fn blocked_by(&self, who: &Who<'_>, subject: Subject, now: Instant) -> Option<Duration> {
        match self.key_of(who, subject) {
            None if subject == Subject::Address => self
                .by_address
                .get(&network(who.peer))
                .and_then(|c| c.blocked(now)),
            None => None,
            Some(k) => self.by_subject.get(&k).and_then(|c| c.blocked(now)),
        }
    }

    /// The first of `subjects` that blocks `who` now.
    pub fn check(&self, who: &Who<'_>, subjects: &[Subject], now: Instant) -> Result<(), Blocked> {
        for &subject in subjects {
            if let Some(left) = self.blocked_by(who, subject, now) {
                return Err(Blocked {
                    subject,
                    left,
                    network: describe_network(who.peer),
                });
            }
        }
        Ok(())
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

    /// Counts a failure (fingerprint `fp`) against `subjects` (usually
    /// [`Subject::counted`]); returns the blocks it started. Called only by the
    /// authenticator's `failed`.
    pub(super) fn failure(
        &self,
        who: &Who<'_>,
        subjects: &[Subject],
        fp: u64,
        now: Instant,
    ) -> Vec<Started> {
        let l = self.limits();
        let mut started = Vec::new();
        for &subject in subjects {
            let (threshold, max) = subject.limits(&l);
            let result = match self.key_of(who, subject) {
                None if subject == Subject::Address => {
                    let mut c = self
                        .by_address
                        .entry(network(who.peer))
                        .or_insert_with(|| Count::new(now));
                    c.fail(fp, now, threshold, &l, max)
                        .map(|b| (b, c.failures()))
                }
                None => None,
                Some(k) => {
                    if self.by_subject.len() >= PRUNE_AT && !self.by_subject.contains_key(&k) {
                        continue;
                    }
                    let mut c = self.by_subject.entry(k).or_insert_with(|| Count::new(now));
                    c.fail(fp, now, threshold, &l, max)
                        .map(|b| (b, c.failures()))
                }
            };
            if let Some((block, failures)) = result {
                started.push(Started {
                    subject,
                    block,
                    failures,
                });
            }
        }
        if self.by_address.len() > PRUNE_AT || self.by_subject.len() >= PRUNE_AT {
            self.prune(now);
        }
        started
    }

    /// A success of `who` proving `proof`: clears the counts it proves wrong
    /// ([`Subject::cleared`]) — never the address's, never the other factor's, and never
    /// a running block of the proved factor (a right code during its block was refused
    /// before it got here). Returns the subjects it cleared. Called only by the
    /// authenticator's `succeeded`.
    pub(super) fn success(&self, who: &Who<'_>, proof: Proof) -> Vec<Subject> {
        let now = Instant::now();
        let mut cleared = Vec::new();
        for &subject in Subject::cleared(proof) {
            if let Some(k) = self.key_of(who, subject)
                && self
                    .by_subject
                    .remove_if(&k, |_, c| {
                        c.blocked(now).is_none() || subject == Subject::Name
                    })
                    .is_some()
            {
                cleared.push(subject);
            }
        }
        cleared
    }

    /// The keys a fleet counts `who`'s `subjects` under: `a:NETWORK`, `n:NAME`,
    /// `p:m:ID` / `p:n:NAME`, `c:ID`.
    pub fn fleet_keys(who: &Who<'_>, subjects: &[Subject]) -> Vec<(Subject, String)> {
        subjects
            .iter()
            .filter_map(|&s| {
                let key = match (s, who.mailbox) {
                    (Subject::Address, _) => format!("a:{:032x}", network(who.peer)),
                    (Subject::Name, _) => format!("n:{}", who.name),
                    (Subject::Password, Some(id)) => format!("p:m:{id}"),
                    (Subject::Password, None) => format!("p:n:{}", who.name),
                    (Subject::SecondFactor, Some(id)) => format!("c:{id}"),
                    (Subject::SecondFactor, None) => return None,
                };
                Some((s, key))
            })
            .collect()
    }

    /// Takes in what the fleet counted for `who` (`counts` of [`Guard::fleet_keys`]): a
    /// subject the fleet has blocked is blocked here too, for what is left of its block.
    pub fn absorb(
        &self,
        who: &Who<'_>,
        keys: &[(Subject, String)],
        counts: &[ThrottleCount],
        now: Instant,
        now_ms: i64,
    ) {
        let l = self.limits();
        for c in counts {
            let Some((subject, _)) = keys.iter().find(|(_, k)| *k == c.key) else {
                continue;
            };
            let (threshold, max) = subject.limits(&l);
            let absorb = |count: &mut Count| {
                count.absorb(c.distinct, c.last_ms, threshold, &l, max, now, now_ms);
            };
            match self.key_of(who, *subject) {
                None if *subject == Subject::Address => absorb(
                    &mut self
                        .by_address
                        .entry(network(who.peer))
                        .or_insert_with(|| Count::new(now)),
                ),
                None => {}
                Some(k) => absorb(&mut self.by_subject.entry(k).or_insert_with(|| Count::new(now))),
            }
        }
    }

    /// Whether the client's address is blocked now (checked at accept time: a blocked
    /// client does not even get a TLS handshake).
    pub fn address_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_address
            .get(&network(ip))
            .is_some_and(|c| c.blocked(now).is_some())
    }

    /// Forgets counts that are neither recent nor blocking.
    pub fn prune(&self, now: Instant) {
        let window = self.limits().window;
        self.by_address.retain(|_, c| !c.stale(now, window));
        self.by_subject.retain(|_, c| !c.stale(now, window));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_address.len() + self.by_subject.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::abuse::Factor;

    fn limits() -> Limits {
        Limits {
            address_failures: 10,
            name_failures: 5,
            password_failures: 5,
            code_failures: 5,
            window: Duration::from_secs(900),
            block: Duration::from_secs(10),
            address_max_block: Duration::from_secs(3600),
            name_max_block: Duration::from_secs(60),
            max_block: Duration::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guard() -> Guard {
        Guard::new(limits(), [7; 32])
    }

    fn fail(g: &Guard, who: &Who<'_>, factor: Factor, secret: &str, now: Instant) -> Vec<Started> {
        let fp = g.fingerprint(who.name, &Secret::new(secret.into()));
        g.failure(who, Subject::counted(factor), fp, now)
    }

    #[test]
    fn a_right_password_does_not_clear_wrong_codes() {
        let g = guard();
        let now = Instant::now();
        for round in 0..5 {
            let who = Who::new(ip(&format!("192.0.2.{round}")), "mario", Some(1));
            // The attacker knows the password: each round proves it again…
            g.success(&who, Proof::MainPassword);
            // …then guesses a code.
            let started = fail(&g, &who, Factor::SecondFactor, &format!("{round:06}"), now);
            if round == 4 {
                assert!(started.iter().any(|b| b.subject == Subject::SecondFactor));
            }
        }
        let who = Who::new(ip("198.51.100.1"), "mario", Some(1));
        let blocked = g.check(&who, &[Subject::SecondFactor], now).unwrap_err();
        assert_eq!(blocked.subject, Subject::SecondFactor);
        // A right code during the block is refused before it is counted, so it cannot
        // clear the block either.
        g.success(&who, Proof::SecondFactor);
        assert!(g.check(&who, &[Subject::SecondFactor], now).is_err());
        // After the block, a right code clears the count.
        let later = now + Duration::from_secs(11);
        assert!(g.check(&who, &[Subject::SecondFactor], later).is_ok());
    }

    #[test]
    fn another_names_success_never_clears_the_address() {
        let g = guard();
        let now = Instant::now();
        let peer = ip("203.0.113.9");
        let mut blocked_at = None;
        for round in 0..3 {
            for i in 0..9 {
                let name = format!("victim{round}-{i}");
                let who = Who::new(peer, &name, None);
                fail(&g, &who, Factor::Password, "Password1", now);
                if g.address_blocked(peer, now) && blocked_at.is_none() {
                    blocked_at = Some((round, i));
                }
            }
            g.success(&Who::new(peer, "sprayer", Some(99)), Proof::MainPassword);
        }
        assert_eq!(
            blocked_at,
            Some((1, 0)),
            "the 10th failure blocks the address"
        );
    }

    #[test]
    fn unknown_names_are_counted_like_known_ones() {
        let g = guard();
        let now = Instant::now();
        for (name, mailbox) in [("ghost", None), ("mario", Some(1))] {
            let who = Who::new(ip("192.0.2.1"), name, mailbox);
            for i in 0..5 {
                fail(&g, &who, Factor::Password, &format!("guess{i}"), now);
            }
            let b = g.check(&who, &[Subject::Password], now).unwrap_err();
            assert_eq!(b.subject, Subject::Password, "{name}");
        }
    }

    #[test]
    fn a_name_block_is_short_an_account_block_grows() {
        let g = guard();
        let now = Instant::now();
        for i in 0..12u32 {
            let who = Who::new(ip(&format!("192.0.2.{i}")), "mario", Some(1));
            fail(&g, &who, Factor::Password, &format!("guess{i}"), now);
        }
        let owner = Who::new(ip("198.51.100.7"), "mario", Some(1));
        let at = now + Duration::from_secs(61);
        assert!(
            g.check(&owner, &[Subject::Name], at).is_ok(),
            "name: 60 s at most"
        );
        assert!(
            g.check(&owner, &[Subject::Password], at).is_err(),
            "account: doubling"
        );
    }

    #[test]
    fn fleet_keys_name_each_subject() {
        let who = Who::new(ip("192.0.2.1"), "mario", Some(42));
        let keys = Guard::fleet_keys(&who, &Subject::ALL);
        let keys: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(keys[1..], ["n:mario", "p:m:42", "c:42"]);
        assert!(keys[0].starts_with("a:"));
        let ghost = Who::new(ip("192.0.2.1"), "ghost", None);
        assert_eq!(
            Guard::fleet_keys(&ghost, &[Subject::Password])[0].1,
            "p:n:ghost"
        );
        assert!(Guard::fleet_keys(&ghost, &[Subject::SecondFactor]).is_empty());
    }

    #[test]
    fn absorbed_fleet_counts_block_here() {
        let g = guard();
        let now = Instant::now();
        let who = Who::new(ip("192.0.2.1"), "mario", Some(42));
        let keys = Guard::fleet_keys(&who, &[Subject::SecondFactor]);
        let counts = [ThrottleCount {
            key: "c:42".into(),
            distinct: 5,
            last_ms: 1_000_000,
        }];
        g.absorb(&who, &keys, &counts, now, 1_001_000);
        let b = g.check(&who, &[Subject::SecondFactor], now).unwrap_err();
        assert_eq!(b.seconds(), 9, "10 s block, 1 s of it gone");
    }

    #[test]
    fn stale_counts_are_pruned() {
        let g = guard();
        let now = Instant::now();
        fail(
            &g,
            &Who::new(ip("192.0.2.1"), "a", None),
            Factor::Password,
            "x",
            now,
        );
        assert_eq!(g.len(), 3);
        g.prune(now + Duration::from_secs(1000));
        assert_eq!(g.len(), 0);
    }
}
