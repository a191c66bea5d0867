//! The page's sessions and the login form's CSRF token.
//!
//! **The login form keeps nothing on the server.** Its CSRF token is a signed
//! double-submit pair ([`LoginCsrf`]): a cookie `<nonce>.<expiry>.<mac>` (the nonce 128
//! random bits in hex, the expiry in Unix seconds, the mac a keyed BLAKE3 hash of both)
//! and the same nonce in the form. Any node holding the key checks it, so a form served
//! by one node of a fleet posts fine to another; nobody can fill the session table by
//! asking for the login form.
//!
//! **A session exists only after the password step** ([`Sessions`]): waiting for the
//! device's code ([`Stage::NeedsCode`], "pending") or logged in ([`Stage::In`], bound to
//! the credentials it logged in with: a stamp of the main password and the device; when
//! they change, it ends). A random 128-bit id in a `Secure; HttpOnly; SameSite=Strict`
//! cookie, a CSRF token per session, an idle timeout and an absolute lifetime (a pending
//! one lasts [`LOGIN_LIFETIME`] at most).
//!
//! **Bounds.** At most `per_mailbox` sessions per mailbox: one more ends that mailbox's
//! oldest (an expired one first, else its oldest pending one, else its oldest). At most
//! `overall` sessions in all: one more evicts the oldest pending session of any mailbox;
//! when there is none (the table is full of logged-in owners), the new session is refused
//! ([`Full`]: "not available, try again later") — a logged-in owner is never evicted to
//! make room.
//!
//! **Cost.** One mutex over one table:
//! - lookup by id: a `HashMap` — O(1);
//! - the mailbox bound: a `VecDeque` of ids per mailbox, exact and at most `per_mailbox`
//!   long — O(`per_mailbox`), a constant; `end_others` — O(sessions of that mailbox);
//! - the overall bound: a `VecDeque` of pending ids in creation order; ids since ended or
//!   promoted stay in it and are skipped when met — O(1) amortised;
//! - expiry: checked on every lookup (lazily), and an incremental sweep examines
//!   [`SWEEP_STEP`] ids of a ring of every id per operation (dropping the expired, moving
//!   the live to the back) — O(1); never a scan of the whole table per request. The ring
//!   and the pending queue are compacted when more than half of them is ids since gone —
//!   O(1) amortised.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::secret::Secret;
use crate::wording::Language;

/// The login form's token, and a session waiting for its code, last at most this long.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Sessions kept at most per mailbox, by default.
pub const PER_MAILBOX: usize = 10;
/// Sessions kept at most in all, by default.
pub const MAX_SESSIONS: usize = 100_000;
/// Ids the incremental sweep examines per operation.
const SWEEP_STEP: usize = 4;
/// Ids a full table's sweep examines more before refusing a new session.
const FULL_SWEEP: usize = 64;
/// Stale ids tolerated in the ring or the pending queue beyond their live ones.
const SLACK: usize = 32;

// ---- the login form's CSRF token ------------------------------------------------------

/// The login form's CSRF token, with no server state: a signed double-submit cookie.
pub struct LoginCsrf {
    key: [u8; 32],
    lifetime: Duration,
}

impl std::fmt::Debug for LoginCsrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCsrf").finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl LoginCsrf {
    /// Tokens signed with `key` (the same on every node that must accept them), valid
    /// [`LOGIN_LIFETIME`].
    pub fn new(key: [u8; 32]) -> Self {
        LoginCsrf {
            key,
            lifetime: LOGIN_LIFETIME,
        }
    }

    /// How long a token is valid (the cookie's `Max-Age`).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new pair: (the cookie's value, the form's token).
    pub fn issue(&self) -> (String, String) {
        self.issue_at(unix_now())
    }

    fn issue_at(&self, now: u64) -> (String, String) {
        let nonce = random_token();
        let expiry = now.saturating_add(self.lifetime.as_secs());
        let mac = self.mac(&nonce, expiry);
        (format!("{nonce}.{expiry}.{}", mac.to_hex()), nonce)
    }

    /// Whether `cookie` is one of ours, unexpired, and `form` its token.
    pub fn check(&self, cookie: &str, form: &str) -> bool {
        self.check_at(cookie, form, unix_now())
    }

    fn check_at(&self, cookie: &str, form: &str, now: u64) -> bool {
        self.open(cookie, now)
            .is_some_and(|(nonce, _)| same(nonce.as_bytes(), form.as_bytes()))
    }

    /// The form's token of `cookie` when it is one of ours with at least half its
    /// lifetime left (a form served again keeps the token of the one served before: two
    /// tabs both post); else `None` (issue a new pair).
    pub fn reuse(&self, cookie: &str) -> Option<String> {
        self.reuse_at(cookie, unix_now())
    }

    fn reuse_at(&self, cookie: &str, now: u64) -> Option<String> {
        let (nonce, expiry) = self.open(cookie, now)?;
        (expiry.saturating_sub(now) >= self.lifetime.as_secs() / 2).then(|| nonce.to_owned())
    }

    /// The nonce and expiry of `cookie`, if its mac is ours and it has not expired.
    fn open<'a>(&self, cookie: &'a str, now: u64) -> Option<(&'a str, u64)> {
        let mut parts = cookie.split('.');
        let (nonce, expiry, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || !lower_hex(nonce, 32)
            || expiry.is_empty()
            || expiry.len() > 20
            || !expiry.bytes().all(|b| b.is_ascii_digit())
            || !lower_hex(mac, 64)
        {
            return None;
        }
        let expiry: u64 = expiry.parse().ok()?;
        let mac = blake3::Hash::from_hex(mac).ok()?;
        // blake3::Hash's `==` is constant time.
        if mac != self.mac(nonce, expiry) || expiry <= now {
            return None;
        }
        Some((nonce, expiry))
    }

    fn mac(&self, nonce: &str, expiry: u64) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"sentinella login form\0");
        h.update(nonce.as_bytes());
        h.update(b".");
        h.update(expiry.to_string().as_bytes());
        h.finalize()
    }
}

// ---- sessions -----------------------------------------------------------------------

/// Where a session stands.
#[derive(Clone, Debug)]
pub enum Stage {
    /// The main password was right; a code from the device is due ("pending").
    NeedsCode {
        /// The login name.
        login: String,
        /// The mailbox.
        address: String,
    },
    /// Logged in.
    In {
        /// The login name (the address, or a multi-user account's name): who acts.
        login: String,
        /// The mailbox managed.
        address: String,
        /// The credentials' stamp at login.
        stamp: [u8; 32],
    },
}

impl Stage {
    /// The mailbox.
    pub fn address(&self) -> &str {
        match self {
            Stage::NeedsCode { address, .. } | Stage::In { address, .. } => address,
        }
    }

    fn pending(&self) -> bool {
        matches!(self, Stage::NeedsCode { .. })
    }
}

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The CSRF token of its forms.
    pub csrf: String,
    /// Its language.
    pub language: Language,
    /// A message for the next page (after a redirect).
    pub flash: Option<Flash>,
    /// A new app password, shown once by the next page that takes it.
    pub reveal: Option<Revealed>,
    /// The token of the configuration profile this session made, waiting to be taken.
    pub profile: Option<String>,
    /// New recovery codes, shown once by the next page that takes them.
    pub recovery: Option<Vec<crate::secret::Secret>>,
    /// The challenge of this session's next passkey ceremony (taken by its answer).
    pub challenge: Option<Vec<u8>>,
    stage: Stage,
    created: Instant,
    last: Instant,
}

impl Session {
    /// Where it stands (changed only by [`Sessions::promote`], under a new id).
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// A logged-in session's new credentials' stamp (after a change it made itself).
    pub fn restamp(&mut self, new: [u8; 32]) {
        if let Stage::In { stamp, .. } = &mut self.stage {
            *stamp = new;
        }
    }
}

/// A message shown once.
#[derive(Clone, Debug)]
pub struct Flash {
    /// Whether it tells of an error.
    pub error: bool,
    /// The text.
    pub text: String,
}

/// A new app password waiting to be shown once.
#[derive(Debug)]
pub struct Revealed {
    /// Its name.
    pub name: String,
    /// The password.
    pub password: Secret,
    /// Its expiry, as the page shows it.
    pub expires: String,
    /// Its protocols.
    pub scope: String,
    /// Its protocols, as a set.
    pub protocols: crate::policy::ProtocolSet,
}

/// No room for a new session: the table is full of logged-in owners (none evicted for
/// it). The page says "not available right now, try again shortly".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many sessions")
    }
}

impl std::error::Error for Full {}

/// A session's id inside the table (its 32 hex digits outside).
type Key = u128;

fn new_key() -> Key {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the system's random source");
    u128::from_be_bytes(b)
}

fn hex(key: Key) -> String {
    format!("{key:032x}")
}

fn parse(id: &str) -> Option<Key> {
    if !lower_hex(id, 32) {
        return None;
    }
    u128::from_str_radix(id, 16).ok()
}

/// 128 random bits, in hex.
pub fn random_token() -> String {
    hex(new_key())
}

#[derive(Default)]
struct Table {
    /// Every session, by id.
    by_id: HashMap<Key, Session>,
    /// Each mailbox's ids, oldest first; exact (no id since gone), never empty.
    by_address: HashMap<String, VecDeque<Key>>,
    /// Pending ids, oldest first; may hold ids since gone (skipped when met).
    pending: VecDeque<Key>,
    /// Pending sessions in `by_id`.
    pending_live: usize,
    /// Every id, for the incremental sweep; may hold ids since gone.
    ring: VecDeque<Key>,
    /// Ids examined beyond the one asked for (the sweep, evictions, compactions): the
    /// tests' measure of work.
    examined: u64,
}

/// Every session.
pub struct Sessions {
    table: Mutex<Table>,
    idle: Duration,
    lifetime: Duration,
    per_mailbox: usize,
    overall: usize,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("per_mailbox", &self.per_mailbox)
            .field("overall", &self.overall)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions ending after `idle` unused, or `lifetime` after login; the default
    /// bounds ([`PER_MAILBOX`], [`MAX_SESSIONS`]).
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Self::bounded(idle, lifetime, PER_MAILBOX, MAX_SESSIONS)
    }

    /// As [`Sessions::new`], with at most `per_mailbox` sessions per mailbox and
    /// `overall` in all (each at least 1).
    pub fn bounded(idle: Duration, lifetime: Duration, per_mailbox: usize, overall: usize) -> Self {
        Sessions {
            table: Mutex::new(Table::default()),
            idle,
            lifetime,
            per_mailbox: per_mailbox.max(1),
            overall: overall.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        let lifetime = if s.stage.pending() {
            LOGIN_LIFETIME.min(self.lifetime)
        } else {
            self.lifetime
        };
        now.saturating_duration_since(s.last) < self.idle
            && now.saturating_duration_since(s.created) < lifetime
    }

    /// A new session at `stage` (after the password step); returns its id, or [`Full`]
    /// when the table is full of logged-in sessions.
    pub fn create(&self, stage: Stage, language: Language) -> Result<String, Full> {
        self.create_at(stage, language, Instant::now())
    }

    fn create_at(&self, stage: Stage, language: Language, now: Instant) -> Result<String, Full> {
        let key = new_key();
        let session = Session {
            csrf: random_token(),
            language,
            stage,
            flash: None,
            reveal: None,
            profile: None,
            recovery: None,
            challenge: None,
            created: now,
            last: now,
        };
        let mut t = self.lock();
        self.sweep(&mut t, now, SWEEP_STEP);
        self.insert(&mut t, key, session, now)?;
        Ok(hex(key))
    }

    /// Runs `f` on session `id` if it is alive (and marks it used); an expired one is
    /// dropped.
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        self.with_at(id, Instant::now(), f)
    }

    fn with_at<T>(&self, id: &str, now: Instant, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let key = parse(id)?;
        let mut t = self.lock();
        self.sweep(&mut t, now, SWEEP_STEP);
        if !t.by_id.get(&key).is_some_and(|s| self.alive(s, now)) {
            Self::remove(&mut t, key);
            return None;
        }
        let s = t.by_id.get_mut(&key)?;
        s.last = now;
        Some(f(s))
    }

    /// Moves session `id` to `stage` under a new id and a new CSRF token (no session
    /// fixation: the id known before the code is not the one after); a session logging
    /// in starts its lifetime. Returns the new id, or `None` if `id` is not alive.
    pub fn promote(&self, id: &str, stage: Stage) -> Option<String> {
        self.promote_at(id, stage, Instant::now())
    }

    fn promote_at(&self, id: &str, stage: Stage, now: Instant) -> Option<String> {
        let key = parse(id)?;
        let mut t = self.lock();
        self.sweep(&mut t, now, SWEEP_STEP);
        let mut s = Self::remove(&mut t, key)?;
        if !self.alive(&s, now) {
            return None;
        }
        if !stage.pending() {
            s.created = now;
        }
        s.stage = stage;
        s.last = now;
        s.csrf = random_token();
        let new = new_key();
        // One left, one comes: never full.
        self.insert(&mut t, new, s, now).ok()?;
        Some(hex(new))
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        if let Some(key) = parse(id) {
            let mut t = self.lock();
            Self::remove(&mut t, key);
            Self::compact(&mut t);
        }
    }

    /// Ends every session of `address` (logged in or pending) but `keep`: O(sessions of
    /// that mailbox).
    pub fn end_others(&self, address: &str, keep: &str) {
        let keep = parse(keep);
        let mut t = self.lock();
        let others: Vec<Key> = t
            .by_address
            .get(address)
            .map(|q| q.iter().copied().filter(|k| Some(*k) != keep).collect())
            .unwrap_or_default();
        for k in others {
            Self::remove(&mut t, k);
        }
        Self::compact(&mut t);
    }

    /// Takes `key` out of the table and its mailbox's queue (the pending queue and the
    /// ring skip it later).
    fn remove(t: &mut Table, key: Key) -> Option<Session> {
        let s = t.by_id.remove(&key)?;
        if s.stage.pending() {
            t.pending_live -= 1;
        }
        let address = s.stage.address();
        if let Some(q) = t.by_address.get_mut(address) {
            if let Some(i) = q.iter().position(|k| *k == key) {
                q.remove(i);
            }
            if q.is_empty() {
                t.by_address.remove(address);
            }
        }
        Some(s)
    }

    /// Adds `s` under `key` within the bounds: the mailbox's oldest ends if it is full;
    /// the oldest pending session goes if the table is full; none there, [`Full`].
    fn insert(&self, t: &mut Table, key: Key, s: Session, now: Instant) -> Result<(), Full> {
        let address = s.stage.address().to_owned();
        while let Some(q) = t.by_address.get(&address)
            && q.len() >= self.per_mailbox
        {
            // An expired one first, else the oldest pending one, else the oldest.
            let state = |k: &Key| {
                t.by_id
                    .get(k)
                    .map(|x| (self.alive(x, now), x.stage.pending()))
            };
            let victim = q
                .iter()
                .find(|k| matches!(state(k), Some((false, _)) | None))
                .or_else(|| q.iter().find(|k| matches!(state(k), Some((_, true)))))
                .or(q.front())
                .copied();
            t.examined += q.len() as u64;
            match victim {
                Some(v) => {
                    if Self::remove(t, v).is_none() {
                        // Not in the table (cannot happen): drop it from the queue.
                        if let Some(q) = t.by_address.get_mut(&address) {
                            q.retain(|k| *k != v);
                        }
                    }
                }
                None => break,
            }
        }
        if t.by_id.len() >= self.overall {
            self.make_room(t, now)?;
        }
        if s.stage.pending() {
            t.pending.push_back(key);
            t.pending_live += 1;
        }
        t.by_address.entry(address).or_default().push_back(key);
        t.ring.push_back(key);
        t.by_id.insert(key, s);
        Self::compact(t);
        Ok(())
    }

    /// One free place in a full table: the oldest pending session goes; none pending,
    /// an expired session found by a short sweep; else [`Full`].
    fn make_room(&self, t: &mut Table, now: Instant) -> Result<(), Full> {
        while let Some(k) = t.pending.pop_front() {
            t.examined += 1;
            if t.by_id.get(&k).is_some_and(|s| s.stage.pending()) {
                Self::remove(t, k);
                return Ok(());
            }
        }
        self.sweep(t, now, FULL_SWEEP);
        if t.by_id.len() < self.overall {
            Ok(())
        } else {
            Err(Full)
        }
    }

    /// Examines the next `n` ids of the ring: drops those gone or expired, moves the
    /// live ones to the back. Drops the ids since gone at the pending queue's front.
    fn sweep(&self, t: &mut Table, now: Instant, n: usize) {
        for _ in 0..n {
            let Some(k) = t.ring.pop_front() else { break };
            t.examined += 1;
            match t.by_id.get(&k) {
                None => {}
                Some(s) if !self.alive(s, now) => {
                    Self::remove(t, k);
                }
                Some(_) => t.ring.push_back(k),
            }
        }
        while let Some(k) = t.pending.front()
            && !t.by_id.contains_key(k)
        {
            t.pending.pop_front();
            t.examined += 1;
        }
    }

    /// Drops the ids since gone from the ring and the pending queue once they are more
    /// than half of it: O(1) amortised (each id is pushed once, and a compaction's cost
    /// is at most twice the ids gone since the last one).
    fn compact(t: &mut Table) {
        if t.ring.len() > 2 * t.by_id.len() + SLACK {
            t.examined += t.ring.len() as u64;
            let by_id = &t.by_id;
            t.ring.retain(|k| by_id.contains_key(k));
        }
        if t.pending.len() > 2 * t.pending_live + SLACK {
            t.examined += t.pending.len() as u64;
            let by_id = &t.by_id;
            t.pending
                .retain(|k| by_id.get(k).is_some_and(|s| s.stage.pending()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn pending(address: &str) -> Stage {
        Stage::NeedsCode {
            login: address.into(),
            address: address.into(),
        }
    }

    fn logged_in(address: &str) -> Stage {
        Stage::In {
            login: address.into(),
            address: address.into(),
            stamp: [0; 32],
        }
    }

    fn alive(s: &Sessions, id: &str) -> bool {
        s.with(id, |_| ()).is_some()
    }

    impl Sessions {
        fn count(&self) -> usize {
            self.lock().by_id.len()
        }
        fn examined(&self) -> u64 {
            self.lock().examined
        }
    }

    #[test]
    fn ids_are_random_and_the_code_moves_a_session_to_a_new_id() {
        let s = Sessions::new(MIN, 10 * MIN);
        let a = s.create(pending("m@x.it"), Language::It).unwrap();
        let b = s.create(pending("m@x.it"), Language::It).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32, "128 bits in hex");
        let csrf = s.with(&a, |x| x.csrf.clone()).unwrap();
        let c = s.promote(&a, logged_in("m@x.it")).unwrap();
        assert_ne!(c, a);
        assert!(!alive(&s, &a), "the old id is gone");
        let (new_csrf, stage) = s.with(&c, |x| (x.csrf.clone(), x.stage().clone())).unwrap();
        assert_ne!(new_csrf, csrf, "a new CSRF token");
        assert!(matches!(stage, Stage::In { .. }));
        assert!(
            s.promote(&a, logged_in("m@x.it")).is_none(),
            "no second use"
        );
        s.end(&c);
        assert!(!alive(&s, &c));
        assert!(!alive(&s, "not an id"));
        assert!(!alive(&s, &a.to_uppercase()));
    }

    #[test]
    fn an_idle_session_ends() {
        let s = Sessions::new(Duration::from_millis(0), 10 * MIN);
        let a = s.create(logged_in("m@x.it"), Language::En).unwrap();
        assert!(!alive(&s, &a));
        assert_eq!(s.count(), 0, "dropped, not only refused");
    }

    #[test]
    fn a_pending_session_lasts_ten_minutes_a_logged_in_one_its_lifetime() {
        let s = Sessions::new(60 * MIN, 120 * MIN);
        let t0 = Instant::now();
        let p = s.create_at(pending("a@x.it"), Language::It, t0).unwrap();
        let i = s.create_at(logged_in("b@x.it"), Language::It, t0).unwrap();
        let later = t0 + LOGIN_LIFETIME + Duration::from_secs(1);
        assert!(s.with_at(&p, later, |_| ()).is_none());
        assert!(s.with_at(&i, later, |_| ()).is_some());
        assert!(s.with_at(&i, t0 + 121 * MIN, |_| ()).is_none());
    }

    #[test]
    fn the_sweep_drops_sessions_nobody_asks_for_again() {
        let s = Sessions::new(MIN, 10 * MIN);
        let t0 = Instant::now();
        for i in 0..100 {
            s.create_at(logged_in(&format!("{i}@x.it")), Language::It, t0)
                .unwrap();
        }
        let later = t0 + 2 * MIN;
        for i in 0..30 {
            s.create_at(logged_in(&format!("new{i}@x.it")), Language::It, later)
                .unwrap();
        }
        // 30 operations, 4 ids each: the 100 idle ones are gone.
        assert_eq!(s.count(), 30);
    }

    #[test]
    fn other_sessions_of_a_mailbox_end() {
        let s = Sessions::new(MIN, 10 * MIN);
        let a = s.create(logged_in("m@x.it"), Language::It).unwrap();
        let b = s.create(logged_in("m@x.it"), Language::It).unwrap();
        let c = s.create(pending("m@x.it"), Language::It).unwrap();
        let other = s.create(logged_in("o@x.it"), Language::It).unwrap();
        s.end_others("m@x.it", &a);
        assert!(alive(&s, &a));
        assert!(!alive(&s, &b));
        assert!(!alive(&s, &c));
        assert!(alive(&s, &other), "another mailbox's sessions stay");
    }

    #[test]
    fn a_mailbox_at_its_bound_ends_its_own_oldest_only() {
        let s = Sessions::bounded(MIN, 10 * MIN, 3, 100);
        let other = s.create(logged_in("o@x.it"), Language::It).unwrap();
        let mine: Vec<String> = (0..3)
            .map(|_| s.create(logged_in("m@x.it"), Language::It).unwrap())
            .collect();
        let fourth = s.create(logged_in("m@x.it"), Language::It).unwrap();
        assert!(!alive(&s, &mine[0]), "the oldest of the mailbox ended");
        assert!(alive(&s, &mine[1]) && alive(&s, &mine[2]) && alive(&s, &fourth));
        assert!(alive(&s, &other), "another mailbox untouched");
        assert_eq!(s.count(), 4);
    }

    #[test]
    fn a_mailbox_at_its_bound_ends_a_pending_session_before_a_logged_in_one() {
        let s = Sessions::bounded(MIN, 10 * MIN, 3, 100);
        let owner = s.create(logged_in("m@x.it"), Language::It).unwrap();
        let p1 = s.create(pending("m@x.it"), Language::It).unwrap();
        let p2 = s.create(pending("m@x.it"), Language::It).unwrap();
        let p3 = s.create(pending("m@x.it"), Language::It).unwrap();
        assert!(
            alive(&s, &owner),
            "the password alone does not log the owner out"
        );
        assert!(!alive(&s, &p1));
        assert!(alive(&s, &p2) && alive(&s, &p3));
    }

    #[test]
    fn a_full_table_evicts_pending_sessions_never_a_logged_in_one() {
        let s = Sessions::bounded(MIN, 10 * MIN, 10, 5);
        let owner = s.create(logged_in("owner@x.it"), Language::It).unwrap();
        let p: Vec<String> = (0..4)
            .map(|i| {
                s.create(pending(&format!("p{i}@x.it")), Language::It)
                    .unwrap()
            })
            .collect();
        assert_eq!(s.count(), 5);
        // Full: the oldest pending session goes.
        let q = s.create(pending("q@x.it"), Language::It).unwrap();
        assert!(!alive(&s, &p[0]));
        assert!(alive(&s, &owner) && alive(&s, &q));
        let r = s.create(logged_in("r@x.it"), Language::It).unwrap();
        assert!(!alive(&s, &p[1]));
        // The pending ones log in: the table is full of logged-in owners.
        let mut logged = vec![owner, r];
        for id in [&p[2], &p[3], &q] {
            let address = s.with(id, |x| x.stage().address().to_owned()).unwrap();
            logged.push(s.promote(id, logged_in(&address)).unwrap());
        }
        assert_eq!(s.count(), 5);
        assert_eq!(s.create(pending("new@x.it"), Language::It), Err(Full));
        assert_eq!(s.create(logged_in("new@x.it"), Language::It), Err(Full));
        for id in &logged {
            assert!(alive(&s, id), "no logged-in owner evicted");
        }
        // One logs out: room again.
        s.end(&logged[0]);
        assert!(s.create(pending("new@x.it"), Language::It).is_ok());
    }

    #[test]
    fn a_full_table_reuses_the_place_of_an_expired_session() {
        let s = Sessions::bounded(MIN, 10 * MIN, 10, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            s.create_at(logged_in(&format!("{i}@x.it")), Language::It, t0)
                .unwrap();
        }
        let later = t0 + 2 * MIN;
        assert!(
            s.create_at(logged_in("n@x.it"), Language::It, later)
                .is_ok()
        );
    }

    #[test]
    fn creations_and_evictions_do_not_scan_the_table() {
        // Work is counted as ids examined beyond the one asked for; a scan per request
        // would be about the table's size (2,000) per operation. Logged-in sessions of
        // 150 mailboxes (at most 1,500, ten each), pending ones of 5,000: the table is
        // full, both bounds evict all along.
        let s = Sessions::bounded(MIN, 10 * MIN, 10, 2_000);
        let mut ops = 0u64;
        let mut ids = Vec::new();
        for i in 0..40_000usize {
            let (address, stage) = match i % 4 {
                0 => {
                    let a = format!("{}@in.it", i % 150);
                    (a.clone(), logged_in(&a))
                }
                1 => {
                    let a = format!("{}@in.it", i % 150);
                    (a.clone(), pending(&a))
                }
                _ => {
                    let a = format!("{}@pending.it", i % 5_000);
                    (a.clone(), pending(&a))
                }
            };
            let id = s
                .create(stage, Language::It)
                .expect("a pending one to evict");
            ops += 1;
            if i % 4 == 1 {
                // It logs in (its old id stays in the pending queue, skipped later).
                ids.push(s.promote(&id, logged_in(&address)).unwrap());
                ops += 1;
            } else {
                ids.push(id);
            }
            if i % 5 == 0 {
                s.with(&ids[i / 2], |_| ());
                ops += 1;
            }
        }
        assert_eq!(s.count(), 2_000);
        let per_op = s.examined() as f64 / ops as f64;
        assert!(per_op < 20.0, "{per_op} ids examined per operation");
        let t = s.lock();
        assert!(t.ring.len() <= 2 * t.by_id.len() + SLACK);
        assert!(t.pending.len() <= 2 * t.pending_live + SLACK);
        for (address, q) in &t.by_address {
            assert!(q.len() <= 10, "{address}");
        }
        let logged_in = t.by_id.values().filter(|x| !x.stage().pending()).count();
        assert_eq!(logged_in, 1_500, "none evicted by the overall bound");
    }

    #[test]
    fn a_full_table_of_logged_in_owners_refuses_in_constant_time() {
        let s = Sessions::bounded(MIN, 10 * MIN, 1, 1_000);
        for i in 0..1_000 {
            s.create(logged_in(&format!("{i}@x.it")), Language::It)
                .unwrap();
        }
        let before = s.examined();
        for _ in 0..1_000 {
            assert_eq!(s.create(pending("new@x.it"), Language::It), Err(Full));
        }
        let per_op = (s.examined() - before) / 1_000;
        assert!(per_op <= (SWEEP_STEP + FULL_SWEEP) as u64, "{per_op}");
    }

    // ---- the login form's token ----

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_login_token_pair_is_accepted() {
        let c = LoginCsrf::new(KEY);
        let (cookie, form) = c.issue();
        assert_eq!(form.len(), 32);
        assert!(cookie.starts_with(&format!("{form}.")));
        assert!(c.check(&cookie, &form));
        let (other_cookie, other_form) = c.issue();
        assert_ne!(form, other_form, "random");
        assert!(!c.check(&cookie, &other_form), "another form's token");
        assert!(!c.check(&other_cookie, &form));
        assert!(!c.check(&cookie, ""));
    }

    #[test]
    fn a_tampered_login_cookie_is_refused() {
        let c = LoginCsrf::new(KEY);
        let (cookie, form) = c.issue();
        let parts: Vec<&str> = cookie.split('.').collect();
        let (nonce, expiry, mac) = (parts[0], parts[1], parts[2]);
        let flip = |s: &str| {
            let mut b = s.as_bytes().to_vec();
            b[0] = if b[0] == b'0' { b'1' } else { b'0' };
            String::from_utf8(b).unwrap()
        };
        let later = (expiry.parse::<u64>().unwrap() + 3600).to_string();
        // Another nonce (and the form's token with it).
        let n = flip(nonce);
        assert!(!c.check(&format!("{n}.{expiry}.{mac}"), &n));
        // A longer life.
        assert!(!c.check(&format!("{nonce}.{later}.{mac}"), &form));
        // Another mac.
        assert!(!c.check(&format!("{nonce}.{expiry}.{}", flip(mac)), &form));
        // Shapes.
        for bad in [
            String::new(),
            format!("{nonce}.{expiry}"),
            format!("{nonce}.{expiry}.{mac}.x"),
            format!("{nonce}.+{expiry}.{mac}"),
            format!("{}.{expiry}.{mac}", nonce.to_uppercase()),
            format!("{nonce}.{expiry}.{}", mac.to_uppercase()),
        ] {
            assert!(!c.check(&bad, &form), "{bad}");
        }
        // Another key.
        assert!(!LoginCsrf::new([8; 32]).check(&cookie, &form));
    }

    #[test]
    fn an_expired_login_token_is_refused_and_a_fresh_one_reused() {
        let c = LoginCsrf::new(KEY);
        let now = unix_now();
        let (cookie, form) = c.issue_at(now);
        let life = LOGIN_LIFETIME.as_secs();
        assert!(c.check_at(&cookie, &form, now + life - 1));
        assert!(!c.check_at(&cookie, &form, now + life));
        assert_eq!(c.reuse_at(&cookie, now + 1).as_deref(), Some(form.as_str()));
        assert_eq!(c.reuse_at(&cookie, now + life / 2 + 1), None, "half spent");
        assert_eq!(c.reuse_at(&format!("{cookie}0"), now), None);
        // Another node with the same key accepts it.
        assert!(LoginCsrf::new(KEY).check_at(&cookie, &form, now + 1));
    }
}
