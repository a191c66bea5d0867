//! The one place every mail login is decided, for every protocol and listener — the hot
//! path. (The owner's page login is `owner.rs`, on the same counters and history.)
//!
//! In order, for each attempt:
//! 1. malformed credentials are refused (no hashing needed);
//! 2. the principal comes from the bounded cache of [`Principals`], or one indexed read
//!    of the store off the reactor (a name not cached, or while the change feed cannot be
//!    followed);
//! 3. the verification cache: a hit skips argon2id, and the current policy decides — a
//!    hit proves knowledge of the current secret, so it is not throttled (an attack on a
//!    name never locks out the owner's already-verified clients);
//! 4. the abuse model ([`Guard`]): a blocked client address or name is refused before any
//!    hashing; a blocked account's right main password is refused, its app passwords not;
//! 5. otherwise argon2id runs on the bounded [`HashPool`] — if it is saturated the client
//!    gets a temporary failure at once;
//! 6. the policy's decision table; a success is cached and clears what it proved, a
//!    failure is counted (`failed` / `succeeded`, the only ways to the counters).
//!
//! Equal cost: a verification does the same number of argon2id computations for a given
//! shape of secret — one, plus one if it has the shape of an app password — whether the
//! login exists, has 2FA on, or not, using a dummy hash where there is nothing real.
//!
//! `record` writes the attempt to the access history through the group-committing
//! [`HistoryWriter`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::alerts::AlertSettings;
use super::cache::{CacheKey, VerificationCache};
use super::guard::{Guard, Started, Who, started_reason};
use super::pool::HashPool;
use super::principal::Principal;
use super::principals::Principals;
use super::sessions::{SessionWatch, Sessions};
use super::verdict::{LoginContext, LoginResult, Verdict};
use super::{Credentials, PasswordHasher, ThrottleSettings};
use crate::audit::history::HistoryWriter;
use crate::clock::now;
use crate::policy::Mailbox;
use crate::policy::Period;
use crate::policy::abuse::{Proof, Subject};
use crate::policy::app_password;
use crate::policy::login::{Attempt, CredentialKind, Decision, Matched, Outcome, Reason, decide};
use crate::policy::names::normalize_login;
use crate::policy::notice::Said;
use crate::secret::Secret;
use crate::store::sealed::SealKey;
use crate::store::{
    Breach, Rehash, SealedSecrets, SharedThrottle, StoreError, StoreLocation, ThrottleFailure,
};
use crate::wording::Language;

/// How often the principals' thread looks for store changes.
pub const SNAPSHOT_POLL: Duration = Duration::from_millis(100);

/// The hot path's settings.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// The provider's time zone, for the dates the access history names.
    pub zone: jiff::tz::TimeZone,
    /// At most one "main password used under 2FA" alert per mailbox per this period.
    pub main_password_alert_every: Period,
    /// Whether notices are e-mailed (to the mailbox's contact).
    pub email: bool,
    /// The language alerts are written in.
    pub language: Language,
    /// How long a cached verification is reused.
    pub cache_ttl: Duration,
    /// Cached verifications kept at most.
    pub cache_entries: usize,
    /// Login names kept in memory at most.
    pub principal_entries: usize,
    /// argon2id workers (0: one per core).
    pub hash_workers: usize,
    /// Verifications waiting at most.
    pub hash_queue: usize,
    /// Throttling.
    pub throttle: ThrottleSettings,
    /// The lists of stolen passwords main passwords are checked against (a sorted
    /// file or a prefix folder), if any.
    pub breached_passwords: Option<std::path::PathBuf>,
    /// Whether the mail protocols refuse a main password found there.
    pub refuse_breached: bool,
    /// How the access history's commits reach the disk.
    pub history_sync: crate::store::HistorySync,
}

/// Why the authenticator could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dummy hash could not be computed.
    #[error(transparent)]
    Hash(#[from] super::hash::HashError),
    /// The lists of stolen passwords cannot be read.
    #[error("{0}")]
    Breach(String),
}

/// Decides logins.
pub struct Authenticator {
    pub(super) principals: Arc<Principals>,
    sessions: Arc<Sessions>,
    cache: VerificationCache,
    /// The abuse model's counters: touched only by [`Authenticator::failed`] and
    /// [`Authenticator::succeeded`].
    pub(super) guard: Guard,
    pub(super) pool: HashPool,
    pub(super) hasher: PasswordHasher,
    pub(super) dummy_hash: String,
    pub(super) history: HistoryWriter,
    /// The fleet's throttle counts (a shared store): read before a verification, so an
    /// attack spread over the nodes meets the limits of one.
    fleet: Option<Mutex<Box<dyn SharedThrottle>>>,
    pub(super) secrets: Option<(Mutex<Box<dyn SealedSecrets>>, SealKey)>,
    pub(super) zone: jiff::tz::TimeZone,
    /// The alert settings, replaced whole by a reload.
    pub(super) alerts: Arc<arc_swap::ArcSwap<AlertSettings>>,
    /// The breach check, replaced whole by a reload.
    pub(super) breach: arc_swap::ArcSwap<BreachSettings>,
}

/// How main passwords are checked against lists of stolen passwords.
#[derive(Debug, Default)]
pub(super) struct BreachSettings {
    /// The lists; none: no check, at no cost.
    pub(super) list: Option<super::breach::BreachList>,
    /// Whether the mail protocols refuse a main password found there.
    pub(super) refuse: bool,
}

impl BreachSettings {
    fn of(settings: &AuthSettings) -> Result<Self, AuthError> {
        Ok(BreachSettings {
            list: settings
                .breached_passwords
                .as_deref()
                .map(super::breach::BreachList::open)
                .transpose()
                .map_err(AuthError::Breach)?,
            refuse: settings.refuse_breached,
        })
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("principals", &self.principals)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// A login name safe to print: control characters escaped, at most 254 characters.
pub(super) fn printable(login: &str) -> String {
    login
        .chars()
        .take(254)
        .flat_map(char::escape_debug)
        .collect::<String>()
}

/// The first part of a check, which needs no hashing. Returned by value once per login
/// and matched at once: boxing the verdict would cost an allocation on the hot path.
#[allow(clippy::large_enum_variant)]
enum Front {
    /// Decided already.
    Done(Verdict),
    /// argon2id is needed.
    Verify {
        name: String,
        principal: Option<Arc<Principal>>,
        key: Option<CacheKey>,
    },
}

/// The history journal beside the SQLite store at `path`, locked, with the store's mark
/// read once the lock is held (a process that had it has committed all it will). A store
/// that has never taken a journal's records gets the mark before the journal's start,
/// so a journal found holding records then belongs to another store and is refused.
fn open_journal(
    log: &mut dyn crate::store::AccessLog,
    path: &std::path::Path,
    sync: crate::store::HistorySync,
) -> Result<crate::audit::history::WithJournal, crate::store::StoreError> {
    use crate::audit::journal;
    let dir = journal::dir_of(path);
    let fail = |e: std::io::Error| {
        crate::store::StoreError::permanent(format!("the history journal {}: {e}", dir.display()))
    };
    let locked = journal::Journal::lock(&dir).map_err(fail)?;
    let mark = match log.journal_mark()? {
        Some(mark) => mark,
        None if locked.holds_records().map_err(fail)? => {
            return Err(crate::store::StoreError::permanent(format!(
                "the history journal {} holds records but this store has never taken any: \
                 it belongs to another store; move it away",
                dir.display()
            )));
        }
        None => {
            let first = crate::store::JournalMark::default();
            log.append(&crate::store::HistoryBatch {
                journal: Some(first),
                ..crate::store::HistoryBatch::default()
            })?;
            first
        }
    };
    Ok(crate::audit::history::WithJournal {
        journal: locked.start(Some(mark)).map_err(fail)?,
        mark: Some(mark),
        keep: sync == crate::store::HistorySync::Journal,
    })
}

impl Authenticator {
    /// An authenticator over the store at `store` (its own connections: principals,
    /// history writer, and — with `seal_key` — upstream secrets). Computes one dummy hash
    /// with the configured cost, for unknown logins to be compared against. Blocking: call
    /// it off the reactor.
    pub fn new(
        store: &StoreLocation,
        hasher: PasswordHasher,
        seal_key: Option<SealKey>,
        settings: AuthSettings,
    ) -> Result<Self, AuthError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| super::hash::HashError::Hash(e.to_string()))?;
        let dummy = Secret::new(random.iter().map(|b| format!("{b:02x}")).collect());
        let dummy_hash = hasher.hash(&dummy)?;
        let sessions = Sessions::new(settings.zone.clone());
        let principals = Principals::start(
            store.open_principals()?,
            store.open_principals()?,
            settings.principal_entries,
            SNAPSHOT_POLL,
            Arc::clone(&sessions),
        )?;
        let alerts = Arc::new(arc_swap::ArcSwap::from_pointee(AlertSettings {
            every: settings.main_password_alert_every,
            email: settings.email,
            language: settings.language,
        }));
        let mut log = store.open_access_log(settings.history_sync)?;
        let journal = match (settings.history_sync, store) {
            (sync, crate::store::StoreLocation::Sqlite(path))
                if sync == crate::store::HistorySync::Journal
                    || crate::audit::journal::dir_of(path).exists() =>
            {
                Some(open_journal(log.as_mut(), path, sync)?)
            }
            (crate::store::HistorySync::Journal, _) => {
                return Err(crate::store::StoreError::permanent(
                    "the history journal (history_sync = \"journal\") is for SQLite only",
                )
                .into());
            }
            _ => None,
        };
        let history = HistoryWriter::start(
            log,
            super::alerts::ask_owner(
                Arc::clone(&principals),
                Arc::clone(&alerts),
                settings.zone.clone(),
            ),
            journal,
        )?;
        let mut fleet = store.open_shared_throttle()?;
        let key = match fleet.as_mut() {
            Some(f) => f.fleet_key()?,
            None => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|e| super::hash::HashError::Hash(e.to_string()))?;
                key
            }
        };
        let guard = Guard::new(settings.throttle, key);
        let secrets = match seal_key {
            Some(key) => Some((Mutex::new(store.open_secrets()?), key)),
            None => None,
        };
        Ok(Authenticator {
            principals,
            sessions,
            cache: VerificationCache::new(settings.cache_entries, settings.cache_ttl),
            guard,
            fleet: fleet.map(Mutex::new),
            pool: HashPool::new(settings.hash_workers, settings.hash_queue),
            hasher,
            dummy_hash,
            history,
            secrets,
            breach: arc_swap::ArcSwap::from_pointee(BreachSettings::of(&settings)?),
            zone: settings.zone,
            alerts,
        })
    }

    /// Takes the settings a reload may change (SIGHUP): the throttle's limits, the
    /// verification cache's time to live, and how alerts are given. The cache size, the
    /// hashing pool and the time zone are fixed for the process's life.
    pub fn reconfigure(&self, settings: &AuthSettings) {
        self.guard.set_limits(settings.throttle);
        self.cache.set_ttl(settings.cache_ttl);
        self.alerts.store(Arc::new(AlertSettings {
            every: settings.main_password_alert_every,
            email: settings.email,
            language: settings.language,
        }));
        match BreachSettings::of(settings) {
            Ok(b) => self.breach.store(Arc::new(b)),
            Err(e) => tracing::error!(error = %e, "reload: the breach check keeps its lists"),
        }
    }

    /// Whether the main password just proven for `p` is in the lists of stolen passwords
    /// (never when there are none, or it is known already). Reads the lists: call it on a
    /// hashing worker, never on the reactor.
    pub(super) fn breached(&self, p: &Principal, secret: &Secret) -> bool {
        if p.mailbox.main_breached.is_some() {
            return false;
        }
        let Some(list) = self.breach.load().list.clone() else {
            return false;
        };
        list.contains(secret).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the lists of stolen passwords cannot be read");
            false
        })
    }

    /// The main password of `p` (proven over `channel`) is in the lists: the mailbox is
    /// marked (carried to every login path by the change feed) and its owner alerted,
    /// once. Returns the mailbox as marked, for the decision at hand.
    pub(super) fn report_breach(&self, p: &Principal, channel: &str, now: Timestamp) -> Mailbox {
        let refused = self.breach.load().refuse;
        let said = Said::MainPasswordBreached {
            at: now,
            protocol: channel.to_owned(),
            refused,
        };
        // The store writes the alert only with a new mark: never quieted by kind.
        let alert = self.alert_of(&p.mailbox, said, now, Timestamp::MAX);
        self.history.breached(Breach {
            mailbox_id: p.mailbox.id,
            hash: p.hash.clone(),
            at: now,
            alert,
        });
        Mailbox {
            main_breached: Some(now),
            ..(*p.mailbox).clone()
        }
    }

    /// Follows the store's changes now if it changed (the background thread does this
    /// every [`SNAPSHOT_POLL`]; tests and benchmarks call it to not wait).
    pub fn refresh(&self) -> Result<bool, StoreError> {
        self.principals.refresh()
    }

    /// Follows the store's changes first if it changed, off the reactor.
    pub(super) async fn follow(self: &Arc<Self>) {
        if self.principals.stale() {
            let this = Arc::clone(self);
            // A failure is logged once by refresh, which then sets the cache aside.
            let _ = tokio::task::spawn_blocking(move || this.principals.refresh()).await;
        }
    }

    /// The principal for a login name as given by a client: from the cache, or one
    /// indexed read off the reactor. `Ok(None)` for a name that is not a login (or not a
    /// valid name at all); `Err` when the store cannot say.
    pub(super) async fn principal(
        self: &Arc<Self>,
        login: &str,
    ) -> Result<Option<Arc<Principal>>, StoreError> {
        let Ok(name) = normalize_login(login) else {
            return Ok(None);
        };
        if let Some(hit) = self.principals.cached(&name) {
            return Ok(hit);
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.principals.get(&name))
            .await
            .map_err(|e| StoreError::permanent(e.to_string()))?
    }

    /// The principal of `login` (normalised) as the login path sees it now: the cache,
    /// or a read of the store (blocking).
    pub(super) fn principal_now(&self, login: &str) -> Option<Arc<Principal>> {
        self.principals.get(login).ok().flatten()
    }

    /// Decides one login.
    pub async fn check(self: &Arc<Self>, ctx: &LoginContext, creds: Credentials) -> Verdict {
        self.follow().await;
        let found = if creds.malformed.is_none() {
            self.principal(&creds.login).await
        } else {
            Ok(None)
        };
        let now = now();
        let (name, principal, key) = match self.front(ctx, &creds, |_| found, now, Instant::now()) {
            Front::Done(v) => return self.with_upstream_secret(ctx, v).await,
            Front::Verify {
                name,
                principal,
                key,
            } => (name, principal, key),
        };
        let who = Who::new(ctx.peer, &name, principal.as_ref().map(|p| p.mailbox.id));
        if self.fleet.is_some() {
            self.absorb_fleet(&who, &Subject::ALL[..3]).await;
            if let Some(v) = self.throttled(ctx, &creds, &who, principal.as_ref(), now) {
                return self.with_upstream_secret(ctx, v).await;
            }
        }
        let login = printable(&creds.login);
        // The account's password is blocked: the right main password is refused too (an
        // attacker learns nothing from it), but an app password — the owner's mail
        // clients — still gets in.
        let password_blocked = self
            .guard
            .check(&who, &[Subject::Password], Instant::now())
            .err();
        let pass_through = ctx.pass_through
            && principal
                .as_ref()
                .is_none_or(|p| !p.mailbox.two_factor_on());
        if let Some(b) = &password_blocked
            && (pass_through || app_password::canonical(creds.secret.expose()).is_none())
        {
            let v = self.refuse_blocked(ctx, &creds, &who, principal.as_ref(), b, now);
            return self.with_upstream_secret(ctx, v).await;
        }
        if pass_through {
            // The upstream checks main passwords: no hash here, the client's own
            // credentials go on (the guard has let them).
            let credential = if principal.is_some() {
                CredentialKind::Main
            } else {
                CredentialKind::Unknown
            };
            return Verdict {
                login,
                credential,
                app_password: None,
                result: LoginResult::PassThrough {
                    user: creds.login.clone(),
                    secret: creds.secret.clone(),
                    principal,
                },
                grant: None,
                rehash: None,
                unresolved: None,
            };
        }
        let mailbox = principal.as_ref().map(|p| Arc::clone(&p.mailbox));
        let name_for_rehash = name.clone();
        let this = Arc::clone(self);
        let p = principal.clone();
        let secret = creds.secret.clone();
        let Ok((matched, rehash, breached)) = self
            .pool
            .run(move || {
                let matched = this.verify(p.as_deref(), &secret);
                let breached = matches!(matched, Matched::Main)
                    && p.as_deref().is_some_and(|p| this.breached(p, &secret));
                // The main password proved against a hash that is not argon2id at the
                // configured cost (imported from another server): re-hashed now, on the
                // same worker, once.
                let rehash = match (&p, matched) {
                    (Some(p), Matched::Main) if !this.hasher.is_current(&p.hash) => {
                        this.hasher.hash(&secret).ok().map(|new| Rehash {
                            login: name_for_rehash,
                            old: p.hash.clone(),
                            new,
                        })
                    }
                    _ => None,
                };
                (matched, rehash, breached)
            })
            .await
        else {
            let overloaded = Decision {
                outcome: Outcome::TemporaryFailure(Reason::Overloaded),
                credential: CredentialKind::Unknown,
            };
            return Verdict::of(overloaded, login, mailbox, None, Matched::Neither);
        };
        if let (Some(b), Matched::Main) = (&password_blocked, matched) {
            // Right, but while blocked: refused like any other attempt in the block.
            let v = self.refuse_blocked(ctx, &creds, &who, principal.as_ref(), b, now);
            return self.with_upstream_secret(ctx, v).await;
        }
        let marked = match (&principal, breached) {
            (Some(p), true) => Some(self.report_breach(p, ctx.protocol.as_str(), now)),
            _ => None,
        };
        let decision = self.decide(ctx, marked.as_ref().or(mailbox.as_deref()), matched, now);
        let mut block = None;
        if decision.is_accepted() {
            if let Some(key) = key {
                self.cache.insert(key, matched);
            }
            self.succeeded(&who, proof_of(matched));
        } else {
            block = self.count_failure(&who, &creds.secret, &decision, matched);
        }
        let mut v = Verdict::of(decision, login, mailbox, block, matched);
        v.rehash = rehash;
        if let Some(p) = &principal {
            v = v.granted(ctx, &name, p, matched);
        }
        self.with_upstream_secret(ctx, v).await
    }

    /// The check as far as it goes without argon2id: `Some` when decided (malformed,
    /// throttled, or a verification-cache hit re-checked against the current policy),
    /// `None` when a hash verification is needed. This is the path a warm cache serves.
    pub fn check_cached(
        &self,
        ctx: &LoginContext,
        creds: &Credentials,
        now: Timestamp,
    ) -> Option<Verdict> {
        let lookup = |name: &str| self.principals.get(name);
        match self.front(ctx, creds, lookup, now, Instant::now()) {
            Front::Done(v) => Some(v),
            Front::Verify { .. } => None,
        }
    }

    fn front(
        &self,
        ctx: &LoginContext,
        creds: &Credentials,
        lookup: impl FnOnce(&str) -> Result<Option<Arc<Principal>>, StoreError>,
        now: Timestamp,
        _instant: Instant,
    ) -> Front {
        let login = printable(&creds.login);
        let refuse = |reason| Decision::refuse(reason, CredentialKind::Unknown);
        let garbage = |reason| {
            let who = Who::new(ctx.peer, &login, None);
            let started = self.failed(&who, &[Subject::Address, Subject::Name], &creds.secret);
            let block = started_reason(&started, ctx.peer);
            Verdict::of(refuse(reason), login.clone(), None, block, Matched::Neither)
        };
        if let Some(why) = creds.malformed {
            return Front::Done(garbage(Reason::Malformed(why.into())));
        }
        let Ok(name) = normalize_login(&creds.login) else {
            return Front::Done(garbage(Reason::Malformed("invalid login name".into())));
        };
        let principal = match lookup(&name) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the login name's mailbox");
                let decision = Decision {
                    outcome: Outcome::TemporaryFailure(Reason::StoreUnavailable(e.to_string())),
                    credential: CredentialKind::Unknown,
                };
                // Which mailbox the name opens is for the history writer to find out
                // when the store answers again, so the owner's history shows the try.
                let mut verdict = Verdict::of(decision, login, None, None, Matched::Neither);
                verdict.unresolved = Some(name);
                return Front::Done(verdict);
            }
        };
        let key = principal.as_ref().map(|p| {
            self.cache.key(
                p.mailbox.id,
                p.mailbox.version,
                &name,
                creds.secret.expose().as_bytes(),
            )
        });
        // A cache hit proves the client knows the current secret and costs no hashing, so
        // it is not throttled: an attack on a name (or from a shared address) never locks
        // out the owner's already-verified mail clients.
        // Under pass-through the upstream, not a cached local check, decides a main
        // password.
        if let (Some(p), Some(k)) = (&principal, &key)
            && let Some(matched) = self
                .cache
                .get(k)
                .filter(|m| !(ctx.pass_through && *m == Matched::Main))
        {
            crate::metrics::METRICS
                .cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let decision = self.decide(ctx, Some(&p.mailbox), matched, now);
            if decision.is_accepted() {
                self.succeeded(
                    &Who::new(ctx.peer, &name, Some(p.mailbox.id)),
                    proof_of(matched),
                );
            }
            let mailbox = Some(Arc::clone(&p.mailbox));
            let v = Verdict::of(decision, login, mailbox, None, matched)
                .granted(ctx, &name, p, matched);
            return Front::Done(v);
        }
        // Everything else would cost argon2id: the guard decides first.
        let who = Who::new(ctx.peer, &name, principal.as_ref().map(|p| p.mailbox.id));
        if let Some(v) = self.throttled(ctx, creds, &who, principal.as_ref(), now) {
            return Front::Done(v);
        }
        crate::metrics::METRICS
            .cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Front::Verify {
            name,
            principal,
            key,
        }
    }

    /// The guard's refusal, if the client's address or the name is blocked now.
    /// Hammering a block still counts (the block grows, and the client's address ends up
    /// refused at accept time, before TLS).
    fn throttled(
        &self,
        ctx: &LoginContext,
        creds: &Credentials,
        who: &Who<'_>,
        principal: Option<&Arc<Principal>>,
        now: Timestamp,
    ) -> Option<Verdict> {
        let blocked = self
            .guard
            .check(who, &[Subject::Address, Subject::Name], Instant::now())
            .err()?;
        Some(self.refuse_blocked(ctx, creds, who, principal, &blocked, now))
    }

    /// The refusal of an attempt a block stops, counted like a wrong password.
    fn refuse_blocked(
        &self,
        ctx: &LoginContext,
        creds: &Credentials,
        who: &Who<'_>,
        principal: Option<&Arc<Principal>>,
        blocked: &super::guard::Blocked,
        now: Timestamp,
    ) -> Verdict {
        crate::metrics::METRICS.refused_by_block(blocked.subject.as_str());
        let note = blocked.note();
        let decision = decide(&Attempt {
            mailbox: None,
            protocol: ctx.protocol,
            listener: ctx.kind,
            throttled: Some(&note),
            matched: Matched::Neither,
            client: Some(ctx.peer),
            refuse_breached: false,
            now,
            zone: &self.zone,
        });
        let block = self.count_failure(who, &creds.secret, &decision, Matched::Neither);
        let mailbox = principal.map(|p| Arc::clone(&p.mailbox));
        Verdict::of(
            decision,
            printable(&creds.login),
            mailbox,
            block,
            Matched::Neither,
        )
    }

    /// The one way a failure is recorded, for every door: counted against `subjects`
    /// (usually [`Subject::counted`]), and in a fleet written for the other nodes with
    /// the access history. Returns the blocks it started.
    pub(super) fn failed(
        &self,
        who: &Who<'_>,
        subjects: &[Subject],
        secret: &Secret,
    ) -> Vec<Started> {
        let fp = self.guard.fingerprint(who.name, secret);
        if self.fleet.is_some() {
            let at_ms = Timestamp::now().as_millisecond();
            for (_, key) in Guard::fleet_keys(who, subjects) {
                self.history.throttle_failure(ThrottleFailure {
                    key,
                    fingerprint: fp as i64,
                    at_ms,
                });
            }
        }
        let started = self.guard.failure(who, subjects, fp, Instant::now());
        for b in &started {
            crate::metrics::METRICS.block_started(b.subject.as_str());
        }
        started
    }

    /// The one way a success is recorded, for every door: clears what `proof` proves,
    /// here and (in a fleet, if there was anything) for the other nodes.
    pub(super) fn succeeded(&self, who: &Who<'_>, proof: Proof) {
        let cleared = self.guard.success(who, proof);
        if self.fleet.is_some() && !cleared.is_empty() {
            let at_ms = Timestamp::now().as_millisecond();
            for (_, key) in Guard::fleet_keys(who, &cleared) {
                self.history.throttle_clear(key, at_ms);
            }
        }
    }

    /// In a fleet, before a decision: what the other nodes counted for `who`'s
    /// `subjects`, taken into this node's guard. One indexed read, only on paths that
    /// cost argon2id or a code check anyway; when it fails, this node's own counts
    /// decide (logged once a minute, counted in the metrics).
    pub(super) async fn absorb_fleet(self: &Arc<Self>, who: &Who<'_>, subjects: &[Subject]) {
        if self.fleet.is_none() {
            return;
        }
        let this = Arc::clone(self);
        let keys = Guard::fleet_keys(who, subjects);
        let wanted: Vec<String> = keys.iter().map(|(_, k)| k.clone()).collect();
        let since = Timestamp::now().as_millisecond()
            - i64::try_from(self.guard.limits().window.as_millis()).unwrap_or(i64::MAX);
        let counts = tokio::task::spawn_blocking(move || {
            let fleet = this.fleet.as_ref()?;
            let store = fleet.lock().unwrap_or_else(|p| p.into_inner());
            Some(store.counts(&wanted, since))
        })
        .await;
        match counts {
            Ok(Some(Ok(counts))) => {
                self.guard.absorb(
                    who,
                    &keys,
                    &counts,
                    Instant::now(),
                    Timestamp::now().as_millisecond(),
                );
            }
            other => {
                crate::metrics::METRICS
                    .fleet_throttle_unavailable
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
                let now = Timestamp::now().as_second();
                if now - LAST.swap(now, std::sync::atomic::Ordering::Relaxed) >= 60 {
                    let error = match other {
                        Ok(Some(Err(e))) => e.to_string(),
                        _ => "the read did not finish".to_owned(),
                    };
                    tracing::warn!(%error, "cannot read the fleet's throttle counts; this node's own counts decide");
                }
            }
        }
    }

    pub(super) fn decide(
        &self,
        ctx: &LoginContext,
        mailbox: Option<&Mailbox>,
        matched: Matched,
        now: Timestamp,
    ) -> Decision {
        decide(&Attempt {
            mailbox,
            protocol: ctx.protocol,
            listener: ctx.kind,
            throttled: None,
            matched,
            client: Some(ctx.peer),
            refuse_breached: self.breach.load().refuse,
            now,
            zone: &self.zone,
        })
    }

    /// argon2id verifications done so far (equal-cost checks, metrics).
    pub fn verifications(&self) -> u64 {
        self.hasher.verifications()
    }

    /// Whether connections from `ip` are refused before TLS (its address is blocked).
    pub fn address_blocked(&self, ip: IpAddr) -> bool {
        self.guard.address_blocked(ip, Instant::now())
    }

    /// A refusal counted by the abuse model: a secret that matched nothing counts against
    /// the address, the name and the account's password; a right secret refused by a
    /// rule that says something of the client (the main password under 2FA, an expired
    /// app password) against the address and the name only; refusals of a right
    /// password by the mailbox's settings (protocol, plan) not at all. Returns the
    /// blocks this started, as the history says them.
    pub(super) fn count_failure(
        &self,
        who: &Who<'_>,
        secret: &Secret,
        decision: &Decision,
        matched: Matched,
    ) -> Option<Reason> {
        let subjects: &[Subject] = match (&decision.outcome, matched) {
            (Outcome::Refused(Reason::ProtocolDisabled(_) | Reason::ArchiveNotInPlan), _) => {
                return None;
            }
            (Outcome::Refused(_), Matched::Neither) => {
                Subject::counted(crate::policy::abuse::Factor::Password)
            }
            (Outcome::Refused(_), _) => &[Subject::Address, Subject::Name],
            _ => return None,
        };
        let started = self.failed(who, subjects, secret);
        started_reason(&started, who.peer)
    }

    /// argon2id: which stored secret the presented one matches (runs on the pool). An
    /// app-password-shaped secret is verified against the one record its selector names
    /// (or the mailbox's password from before selectors, or the dummy): one verification
    /// whatever the number of app passwords.
    fn verify(&self, principal: Option<&Principal>, secret: &Secret) -> Matched {
        let own_hash = principal.map_or(self.dummy_hash.as_str(), |p| p.hash.as_str());
        let main_ok = self.hasher.verify(own_hash, secret);
        let app = app_password::canonical(secret.expose()).and_then(|canon| {
            let selector = app_password::selector(&canon);
            let candidate = principal.and_then(|p| {
                let all = &p.mailbox.app_passwords;
                all.iter()
                    .find(|a| a.selector.as_deref() == Some(selector.as_str()))
                    .or_else(|| all.iter().find(|a| a.selector.is_none()))
            });
            let hash = candidate.map_or(self.dummy_hash.as_str(), |a| a.hash.as_str());
            let ok = self.hasher.verify(hash, &canon);
            candidate.filter(|_| ok).map(|a| a.id)
        });
        let two_factor = principal.is_some_and(|p| p.mailbox.two_factor_on());
        match (principal.is_some(), app.filter(|_| two_factor), main_ok) {
            (false, _, _) => Matched::Neither,
            (true, Some(id), _) => Matched::App(id),
            (true, None, true) => Matched::Main,
            _ => Matched::Neither,
        }
    }

    /// Watches the session an accepted `verdict` opens: it ends when a change to its
    /// mailbox would refuse the same login, or when its app password expires. `None` for
    /// a verdict that accepted nothing.
    pub fn watch(&self, verdict: &Verdict) -> Option<SessionWatch> {
        let grant = verdict.grant.clone()?;
        Some(self.sessions.open(
            grant,
            |login| self.principals.get(login).ok().flatten(),
            now(),
        ))
    }
}

/// What an accepted login proved.
fn proof_of(matched: Matched) -> Proof {
    match matched {
        Matched::App(_) => Proof::AppPassword,
        _ => Proof::MainPassword,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::HashCost;
    use crate::auth::credentials::Mechanism;
    use crate::manage::app_password::Wanted;
    use crate::manage::testing::{self, yes};
    use crate::manage::{Actor, Manager};
    use crate::policy::login::ListenerKind;
    use crate::policy::{Period, Plan, Protocol};

    const ADDR: &str = "mario@pec.example.it";

    /// A store that never took a journal's records starts one with a mark; a journal
    /// that holds records such a store never took belongs to another store (this file
    /// deleted and made again beside it) and is refused, not replayed into this one.
    #[test]
    fn a_journal_left_by_another_store_is_refused() {
        use crate::store::{AccessLog, JournalMark, sqlite::SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = SqliteStore::open(&db).unwrap();
        let w = open_journal(&mut store, &db, crate::store::HistorySync::Journal).unwrap();
        assert_eq!(store.journal_mark().unwrap(), Some(JournalMark::default()));
        w.journal.append(b"{}\n", |_| {}).unwrap();
        drop(w);
        drop(store);
        for f in ["s.db", "s.db-wal", "s.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        let mut fresh = SqliteStore::open(&db).unwrap();
        let e = open_journal(&mut fresh, &db, crate::store::HistorySync::Normal)
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to another store"), "{e}");
        assert_eq!(fresh.journal_mark().unwrap(), None, "nothing taken");
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        manager: Manager,
        auth: Arc<Authenticator>,
        app_password: Secret,
    }

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(HashCost::CHEAP).unwrap()
    }

    fn settings() -> AuthSettings {
        AuthSettings {
            zone: jiff::tz::TimeZone::UTC,
            main_password_alert_every: crate::policy::Period::days(1),
            email: false,
            language: Language::En,
            cache_ttl: Duration::from_secs(3600),
            cache_entries: 1024,
            principal_entries: 1024,
            hash_workers: 2,
            hash_queue: 16,
            throttle: ThrottleSettings {
                address_failures: 1000,
                name_failures: 1000,
                password_failures: 1000,
                code_failures: 1000,
                window: Duration::from_secs(900),
                block: Duration::from_secs(30),
                address_max_block: Duration::from_secs(3600),
                name_max_block: Duration::from_secs(60),
                max_block: Duration::from_secs(3600),
            },
            breached_passwords: None,
            refuse_breached: false,
            history_sync: Default::default(),
        }
    }

    /// A mailbox (main "main-password"), a multi-user account "ufficio" ("user-password"),
    /// and, if `two_factor`, 2FA on with an app password — made through the management
    /// layer, as an operator would.
    fn fixture_with(two_factor: bool, plan: Plan, s: AuthSettings) -> Fixture {
        let (dir, mut manager, location) = testing::manager();
        let t = now();
        let actor = Actor::System;
        manager
            .add_mailbox(&actor, ADDR, plan, None, &mut yes("main-password"), t)
            .unwrap();
        manager
            .add_user(&actor, ADDR, "ufficio", &mut yes("user-password"), t)
            .unwrap();
        let mut app_password = Secret::new(String::new());
        if two_factor {
            testing::turn_on_2fa(&mut manager, ADDR, t);
            app_password = manager
                .generate_app_password(&actor, ADDR, Wanted::default(), false, t)
                .unwrap()
                .password;
        }
        let auth = Arc::new(Authenticator::new(&location, hasher(), None, s).unwrap());
        Fixture {
            _dir: dir,
            manager,
            auth,
            app_password,
        }
    }

    fn fixture(two_factor: bool, plan: Plan) -> Fixture {
        fixture_with(two_factor, plan, settings())
    }

    fn ctx(kind: ListenerKind) -> LoginContext {
        LoginContext {
            software: None,
            listener: "imaps".into(),
            kind,
            protocol: Protocol::Imap,
            peer: "127.0.0.1".parse().unwrap(),
            needs_upstream_secret: false,
            pass_through: false,
        }
    }

    fn creds(login: &str, secret: &str) -> Credentials {
        Credentials::from_wire(
            login.as_bytes(),
            secret.as_bytes(),
            None,
            Mechanism::ImapLogin,
        )
    }

    async fn check(f: &Fixture, login: &str, secret: &str) -> Verdict {
        f.auth
            .check(&ctx(ListenerKind::Mailbox), creds(login, secret))
            .await
    }

    fn refused(v: &Verdict) -> Reason {
        match v.outcome() {
            Outcome::Refused(r) => r,
            o => panic!("expected refusal, got {o:?}"),
        }
    }

    #[tokio::test]
    async fn two_factor_off_main_password() {
        let f = fixture(false, Plan::Standard);
        let v = check(&f, "Mario@PEC.example.it", "main-password").await;
        assert!(v.is_accepted());
        assert_eq!(v.mailbox().unwrap().address, ADDR);
        assert_eq!(
            refused(&check(&f, ADDR, "wrong").await),
            Reason::WrongPassword
        );
    }

    #[tokio::test]
    async fn two_factor_on_main_password_refused_app_password_accepted() {
        let f = fixture(true, Plan::Standard);
        assert_eq!(
            refused(&check(&f, ADDR, "main-password").await),
            Reason::MainPasswordUnder2fa
        );
        let pw = f.app_password.expose().to_owned();
        let v = check(&f, ADDR, &pw).await;
        assert!(v.is_accepted());
        assert_eq!(v.credential, CredentialKind::App);
        assert!(check(&f, ADDR, &pw.replace('-', "")).await.is_accepted());
        assert!(
            check(&f, ADDR, &pw.replace('-', " ").to_uppercase())
                .await
                .is_accepted()
        );
        let wrong = app_password::generate().unwrap();
        assert_eq!(
            refused(&check(&f, ADDR, wrong.expose()).await),
            Reason::WrongAppPassword
        );
    }

    #[tokio::test]
    async fn multi_user_accounts() {
        let f = fixture(false, Plan::Standard);
        let v = check(&f, "ufficio", "user-password").await;
        assert!(v.is_accepted());
        assert_eq!(
            (v.login.as_str(), v.mailbox().unwrap().address.as_str()),
            ("ufficio", ADDR)
        );
        assert_eq!(
            refused(&check(&f, "ufficio", "main-password").await),
            Reason::WrongPassword
        );
        let f = fixture(true, Plan::Standard);
        let pw = f.app_password.expose().to_owned();
        assert!(
            check(&f, "ufficio", &pw).await.is_accepted(),
            "the mailbox's app password works for it"
        );
        assert_eq!(
            refused(&check(&f, "ufficio", "user-password").await),
            Reason::MainPasswordUnder2fa
        );
    }

    #[tokio::test]
    async fn unknown_and_malformed_logins() {
        let f = fixture(false, Plan::Standard);
        assert_eq!(
            refused(&check(&f, "nobody@pec.example.it", "main-password").await),
            Reason::UnknownLogin
        );
        assert_eq!(
            refused(&check(&f, "a b", "x").await),
            Reason::Malformed("invalid login name".into())
        );
        let c = Credentials::from_wire(
            ADDR.as_bytes(),
            b"main-password",
            Some(b"admin"),
            Mechanism::Plain,
        );
        let v = f.auth.check(&ctx(ListenerKind::Mailbox), c).await;
        assert!(
            matches!(refused(&v), Reason::Malformed(_)),
            "right password, other authzid: refused"
        );
    }

    #[tokio::test]
    async fn archive_needs_pro_or_premium() {
        let f = fixture(false, Plan::Standard);
        let v = f
            .auth
            .check(&ctx(ListenerKind::Archive), creds(ADDR, "main-password"))
            .await;
        assert_eq!(refused(&v), Reason::ArchiveNotInPlan);
        let f = fixture(false, Plan::Pro);
        let v = f
            .auth
            .check(&ctx(ListenerKind::Archive), creds(ADDR, "main-password"))
            .await;
        assert!(v.is_accepted());
    }

    #[tokio::test]
    async fn a_cache_hit_is_rechecked_against_the_policy_to_the_second() {
        let f = fixture(true, Plan::Standard);
        let pw = f.app_password.expose().to_owned();
        let c = ctx(ListenerKind::Mailbox);
        assert!(
            f.auth.check_cached(&c, &creds(ADDR, &pw), now()).is_none(),
            "cold cache: hashing needed"
        );
        assert!(check(&f, ADDR, &pw).await.is_accepted());
        let hit = f
            .auth
            .check_cached(&c, &creds(ADDR, &pw), now())
            .expect("warm cache: no hashing");
        assert!(hit.is_accepted());
        // The same cached entry, four months later: expired, refused.
        let later = Period::months(4).after(now(), &jiff::tz::TimeZone::UTC);
        let v = f.auth.check_cached(&c, &creds(ADDR, &pw), later).unwrap();
        assert!(matches!(refused(&v), Reason::AppPasswordExpired(_)));
        // A wrong password is never served from the cache.
        assert!(
            f.auth
                .check_cached(&c, &creds(ADDR, "main-password"), now())
                .is_none()
        );
        let _ = check(&f, ADDR, "main-password").await;
        assert!(
            f.auth
                .check_cached(&c, &creds(ADDR, "main-password"), now())
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_version_bump_kills_cached_verifications_at_once() {
        let f = fixture(true, Plan::Standard);
        let pw = f.app_password.expose().to_owned();
        assert!(check(&f, ADDR, &pw).await.is_accepted());
        let mut f = f;
        f.manager
            .deactivate_app_password(&Actor::System, ADDR, None, false, &mut yes(""), now())
            .unwrap();
        assert!(f.auth.refresh().unwrap(), "the change is followed");
        let c = ctx(ListenerKind::Mailbox);
        assert!(
            f.auth.check_cached(&c, &creds(ADDR, &pw), now()).is_none(),
            "old entry unreachable"
        );
        assert_eq!(
            refused(&check(&f, ADDR, &pw).await),
            Reason::NoActiveAppPassword
        );
    }

    #[tokio::test]
    async fn the_store_is_followed_by_itself() {
        let mut f = fixture(false, Plan::Standard);
        f.manager
            .set_password(&Actor::System, ADDR, None, &mut yes("new-password"), now())
            .unwrap();
        // Within a few poll intervals, without calling refresh().
        let mut accepted = false;
        for _ in 0..20 {
            tokio::time::sleep(SNAPSHOT_POLL).await;
            if check(&f, ADDR, "new-password").await.is_accepted() {
                accepted = true;
                break;
            }
        }
        assert!(accepted, "the new password never took effect");
    }

    #[tokio::test]
    async fn a_saturated_pool_is_a_temporary_failure() {
        let mut s = settings();
        s.hash_workers = 1;
        s.hash_queue = 1;
        let f = fixture_with(false, Plan::Standard, s);
        let checks: Vec<_> = (0..16)
            .map(|i| {
                let auth = Arc::clone(&f.auth);
                tokio::spawn(async move {
                    auth.check(
                        &ctx(ListenerKind::Mailbox),
                        creds(ADDR, &format!("wrong-{i}")),
                    )
                    .await
                })
            })
            .collect();
        let mut overloaded = 0;
        for c in checks {
            if c.await.unwrap().outcome() == Outcome::TemporaryFailure(Reason::Overloaded) {
                overloaded += 1;
            }
        }
        assert!(
            overloaded > 0,
            "16 at once on 1 worker + 1 queue slot: some must be turned away"
        );
    }

    #[tokio::test]
    async fn throttled_before_hashing_and_recorded_with_the_reason() {
        let mut s = settings();
        s.throttle.address_failures = 3;
        let f = fixture_with(false, Plan::Standard, s);
        for i in 0..3 {
            assert_eq!(
                refused(&check(&f, ADDR, &format!("guess-{i}")).await),
                Reason::WrongPassword
            );
        }
        // Even the right password is refused now, without hashing.
        let c = ctx(ListenerKind::Mailbox);
        let v = f
            .auth
            .check_cached(&c, &creds(ADDR, "main-password"), now())
            .expect("decided before hashing");
        let reason = refused(&v);
        assert!(
            matches!(&reason, Reason::Throttled(b) if b.network == "127.0.0.1"),
            "{reason:?}"
        );
        f.auth.record(&c, &v).await;
        let history = f.manager.history(ADDR, 10).unwrap().history;
        assert!(
            history.iter().any(|r| r
                .reason
                .as_ref()
                .is_some_and(|x| x.to_string().starts_with("throttled: client 127.0.0.1"))),
            "{history:?}"
        );
        assert!(f.auth.address_blocked("127.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn unknown_login_wrong_password_and_main_password_under_2fa_cost_the_same_hashing() {
        let f = fixture(true, Plan::Standard);
        let cost = |login: &'static str, secret: String| {
            let auth = Arc::clone(&f.auth);
            async move {
                let before = auth.verifications();
                let v = auth
                    .check(&ctx(ListenerKind::Mailbox), creds(login, &secret))
                    .await;
                assert!(!v.is_accepted());
                auth.verifications() - before
            }
        };
        let plain = [
            cost("nobody@pec.example.it", "main-password".into()).await,
            cost(ADDR, "wrong-password".into()).await,
            cost(ADDR, "main-password".into()).await,
            cost("ufficio", "wrong-password".into()).await,
        ];
        assert_eq!(
            plain,
            [1, 1, 1, 1],
            "one verification each, whoever the login is"
        );
        // App-password-shaped secrets cost one more, for everybody alike.
        let shaped = || app_password::generate().unwrap().expose().to_owned();
        let app_shaped = [
            cost("nobody@pec.example.it", shaped()).await,
            cost(ADDR, shaped()).await,
        ];
        assert_eq!(app_shaped, [2, 2]);
        let f2 = fixture(false, Plan::Standard);
        let before = f2.auth.verifications();
        let _ = f2
            .auth
            .check(&ctx(ListenerKind::Mailbox), creds(ADDR, &shaped()))
            .await;
        assert_eq!(
            f2.auth.verifications() - before,
            2,
            "2FA off: the same cost as 2FA on"
        );
    }

    #[tokio::test]
    async fn an_attack_on_the_name_does_not_lock_out_a_verified_client() {
        let mut s = settings();
        s.throttle.name_failures = 2;
        let f = fixture_with(true, Plan::Standard, s);
        let pw = f.app_password.expose().to_owned();
        let owner = ctx(ListenerKind::Mailbox);
        assert!(f.auth.check(&owner, creds(ADDR, &pw)).await.is_accepted());
        // Attackers elsewhere guess at the name until it is blocked.
        for i in 0..5 {
            let mut attacker = ctx(ListenerKind::Mailbox);
            attacker.peer = format!("192.0.2.{i}").parse().unwrap();
            let _ = f
                .auth
                .check(&attacker, creds(ADDR, &format!("guess-{i}")))
                .await;
        }
        let mut attacker = ctx(ListenerKind::Mailbox);
        attacker.peer = "192.0.2.99".parse().unwrap();
        let blocked = f.auth.check(&attacker, creds(ADDR, "guess-x")).await;
        assert!(
            matches!(refused(&blocked), Reason::Throttled(_)),
            "the name is blocked for guesses"
        );
        // The owner's mail client, whose password is verified and cached, still gets in.
        assert!(f.auth.check(&owner, creds(ADDR, &pw)).await.is_accepted());
    }

    /// Attempts from `n` addresses, one wrong (not app-shaped) password each.
    async fn guesses(f: &Fixture, n: u8, tag: &str) {
        for i in 0..n {
            let mut attacker = ctx(ListenerKind::Mailbox);
            attacker.peer = format!("192.0.2.{i}").parse().unwrap();
            let _ = f
                .auth
                .check(&attacker, creds(ADDR, &format!("guess-{tag}-{i}")))
                .await;
        }
    }

    #[tokio::test]
    async fn a_blocked_account_refuses_its_right_main_password_but_lets_app_passwords_in() {
        let mut s = settings();
        s.throttle.password_failures = 3;
        // With 2FA off: the main password is the credential, and it is blocked.
        let f = fixture_with(false, Plan::Standard, s.clone());
        guesses(&f, 3, "a").await;
        let mut owner = ctx(ListenerKind::Mailbox);
        owner.peer = "198.51.100.7".parse().unwrap();
        let v = f.auth.check(&owner, creds(ADDR, "main-password")).await;
        assert!(
            matches!(refused(&v), Reason::Throttled(ref b) if b.subject == Subject::Password),
            "{v:?}"
        );
        // The multi-user account opens the same mailbox: the same account, blocked too.
        let v = f
            .auth
            .check(&owner, creds("ufficio", "user-password"))
            .await;
        assert!(matches!(refused(&v), Reason::Throttled(_)), "{v:?}");
        // With 2FA on: an app password (never verified before) still gets in.
        let f = fixture_with(true, Plan::Standard, s);
        guesses(&f, 3, "b").await;
        let pw = f.app_password.expose().to_owned();
        assert!(f.auth.check(&owner, creds(ADDR, &pw)).await.is_accepted());
        let v = f.auth.check(&owner, creds(ADDR, "main-password")).await;
        assert!(matches!(refused(&v), Reason::Throttled(_)), "{v:?}");
    }

    #[tokio::test]
    async fn an_app_password_success_clears_nothing_of_the_main_password_count() {
        let mut s = settings();
        s.throttle.password_failures = 3;
        let f = fixture_with(true, Plan::Standard, s);
        let pw = f.app_password.expose().to_owned();
        let owner = ctx(ListenerKind::Mailbox);
        guesses(&f, 2, "a").await;
        assert!(f.auth.check(&owner, creds(ADDR, &pw)).await.is_accepted());
        guesses(&f, 1, "b").await;
        let v = f.auth.check(&owner, creds(ADDR, "main-password")).await;
        assert!(
            matches!(refused(&v), Reason::Throttled(ref b) if b.subject == Subject::Password),
            "2 + 1 wrong passwords, whatever the app password proved between: {v:?}"
        );
    }

    #[tokio::test]
    async fn the_main_password_under_2fa_alerts_the_owner_once_a_period() {
        let f = fixture(true, Plan::Standard);
        let c = ctx(ListenerKind::Mailbox);
        for _ in 0..3 {
            let v = check(&f, ADDR, "main-password").await;
            assert_eq!(refused(&v), Reason::MainPasswordUnder2fa);
            f.auth.record(&c, &v).await;
        }
        // A wrong password, or a right app password, raises nothing.
        let v = check(&f, ADDR, "wrong-password").await;
        f.auth.record(&c, &v).await;
        let v = check(&f, ADDR, f.app_password.expose()).await;
        f.auth.record(&c, &v).await;
        let alerts: Vec<_> = f
            .manager
            .notices(ADDR)
            .unwrap()
            .notices
            .into_iter()
            .filter(|n| n.kind == crate::store::NoticeKind::MainPasswordUsed)
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let text = &alerts[0].message;
        assert!(
            text.contains("127.0.0.1") && text.contains("imap"),
            "{text}"
        );
        assert!(!text.contains("main-password"), "never the secret: {text}");
    }

    #[tokio::test]
    async fn history_is_durable_when_record_returns() {
        let f = fixture(false, Plan::Standard);
        let c = ctx(ListenerKind::Mailbox);
        let v = check(&f, ADDR, "main-password").await;
        f.auth.record(&c, &v).await;
        let rows = f.manager.history(ADDR, 10).unwrap().history;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].result.as_str(), rows[0].credential.as_str()),
            ("accepted", "main")
        );
    }

    mod several_app_passwords {
        //! Several app passwords on one mailbox: the selector finds the one to verify.

        use super::super::*;
        use super::{hasher, settings};
        use crate::auth::credentials::Mechanism;
        use crate::manage::Actor;
        use crate::manage::app_password::Wanted;
        use crate::manage::testing::{self, ADDR};
        use crate::policy::login::ListenerKind;
        use crate::policy::{Plan, PolicySettings, Protocol, ProtocolSet};
        use crate::store::sqlite::schema;

        fn ctx(protocol: Protocol) -> LoginContext {
            LoginContext {
                software: None,
                listener: "test".into(),
                kind: ListenerKind::Mailbox,
                protocol,
                peer: "127.0.0.1".parse().unwrap(),
                needs_upstream_secret: false,
                pass_through: false,
            }
        }

        async fn check(auth: &Arc<Authenticator>, protocol: Protocol, secret: &str) -> Verdict {
            let creds = Credentials::from_wire(
                ADDR.as_bytes(),
                secret.as_bytes(),
                None,
                Mechanism::ImapLogin,
            );
            auth.check(&ctx(protocol), creds).await
        }

        #[tokio::test]
        async fn each_password_costs_one_verification_and_keeps_its_scope() {
            let t = now();
            let policy = PolicySettings {
                max_app_passwords: 10,
                ..PolicySettings::default()
            };
            let (_dir, mut m, location) =
                testing::with_mailbox_under(policy, Plan::Standard, None, t);
            testing::turn_on_2fa(&mut m, ADDR, t);
            let mut smtp = ProtocolSet::NONE;
            smtp.insert(Protocol::Smtp);
            let mut passwords = Vec::new();
            for i in 0..8 {
                let wanted = Wanted {
                    name: Some(&format!("program {i}")),
                    scope: (i == 0).then_some(smtp),
                };
                let p = m
                    .generate_app_password(&Actor::System, ADDR, wanted, false, t)
                    .unwrap();
                passwords.push(p.password.expose().to_owned());
            }
            let auth = Arc::new(Authenticator::new(&location, hasher(), None, settings()).unwrap());
            for (i, pw) in passwords.iter().enumerate().rev() {
                let before = auth.verifications();
                let v = check(&auth, Protocol::Smtp, pw).await;
                assert_eq!(
                    auth.verifications() - before,
                    2,
                    "main + one app password, whichever of eight"
                );
                assert!(v.is_accepted(), "password {i}");
                assert_eq!(
                    v.app_password.as_ref().map(|a| a.name.as_str()),
                    Some(format!("program {i}").as_str())
                );
            }
            // A wrong app-password-shaped secret costs the same.
            let before = auth.verifications();
            let wrong = app_password::generate().unwrap();
            assert!(
                !check(&auth, Protocol::Smtp, wrong.expose())
                    .await
                    .is_accepted()
            );
            assert_eq!(auth.verifications() - before, 2);
            // Outside its scope: refused, with its own reason.
            let v = check(&auth, Protocol::Imap, &passwords[0]).await;
            assert_eq!(
                v.outcome(),
                Outcome::Refused(Reason::OutOfScope {
                    name: "program 0".into(),
                    scope: smtp
                })
            );
            assert!(
                check(&auth, Protocol::Imap, &passwords[1])
                    .await
                    .is_accepted()
            );
        }

        #[tokio::test]
        async fn the_password_of_a_store_from_before_selectors_still_works() {
            // A store made by the previous version: schema 3, the app password in the
            // mailbox row.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.db");
            let h = hasher();
            // One reading of the clock: the row's dates and the check agree to the second.
            let t0 = now().as_second();
            let old = app_password::generate().unwrap();
            let old_hash = h
                .hash(&app_password::canonical(old.expose()).unwrap())
                .unwrap();
            let main_hash = h.hash(&Secret::new("main-password".into())).unwrap();
            let device = crate::policy::totp::DeviceSecret::generate().unwrap();
            {
                let conn = rusqlite::Connection::open(&path).unwrap();
                for sql in &schema::MIGRATIONS[..3] {
                    conn.execute_batch(sql).unwrap();
                }
                conn.pragma_update(None, "user_version", 3).unwrap();
                conn.execute(
                "INSERT INTO mailboxes (id, address, plan, protocols, version, created_at, updated_at, \
                 device_secret, device_since, app_hash, app_created_at, app_expires_at, app_postponed) \
                 VALUES (1, ?1, 'standard', 7, 3, 0, 0, ?2, 0, ?3, ?4, ?5, 1)",
                rusqlite::params![
                    ADDR,
                    device.as_bytes(),
                    old_hash,
                    t0 - 60,
                    t0 + 86_400
                ],
            )
            .unwrap();
                conn.execute(
                "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) VALUES (?1, 1, 'mailbox', ?2, 0)",
                rusqlite::params![ADDR, main_hash],
            )
            .unwrap();
            }
            let location = StoreLocation::Sqlite(path);
            let store = location.open_manage().unwrap();
            let m = store.mailbox(ADDR).unwrap().unwrap();
            assert_eq!(m.app_passwords.len(), 1);
            let ap = &m.app_passwords[0];
            assert_eq!(
                (ap.name.as_str(), ap.selector.as_deref(), ap.scope),
                ("default", None, None)
            );
            assert_eq!((ap.hash.as_str(), ap.postponed), (old_hash.as_str(), 1));
            assert_eq!(ap.expires_at.as_second(), t0 + 86_400);
            drop(store);
            let auth = Arc::new(Authenticator::new(&location, hasher(), None, settings()).unwrap());
            for p in Protocol::ALL {
                assert!(check(&auth, p, old.expose()).await.is_accepted(), "{p}");
            }
            let before = auth.verifications();
            let wrong = app_password::generate().unwrap();
            assert!(
                !check(&auth, Protocol::Imap, wrong.expose())
                    .await
                    .is_accepted()
            );
            assert_eq!(
                auth.verifications() - before,
                2,
                "still one app verification"
            );
        }
    }
}
