//! The one place every login is decided, for every protocol and listener — the hot path.
//!
//! In order, for each attempt:
//! 1. malformed credentials are refused (no hashing needed);
//! 2. the principal comes from the in-memory [`LiveSnapshot`] (no store read);
//! 3. the verification cache: a hit skips argon2id, and the current policy decides — a
//!    hit proves knowledge of the current secret, so it is not throttled (an attack on a
//!    name never locks out the owner's already-verified clients);
//! 4. the throttle: a blocked client address or name is refused before any hashing;
//! 5. otherwise argon2id runs on the bounded [`HashPool`] — if it is saturated the client
//!    gets a temporary failure at once;
//! 6. the policy's decision table; a success is cached, a failure counted by the throttle.
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

use super::cache::{CacheKey, VerificationCache};
use super::pool::HashPool;
use super::principals::{Principal, Principals};
use super::sessions::{Grant, SessionWatch, Sessions};
use super::throttle::{Throttle, ThrottleSettings};
use super::{Credentials, PasswordHasher};
use crate::audit::history::HistoryWriter;
use crate::policy::Period;
use crate::policy::app_password;
use crate::policy::login::{
    AccessResult, Attempt, CredentialKind, Decision, ListenerKind, Matched, Outcome,
    PASSED_ACCEPTED, Reason, decide,
};
use crate::policy::names::normalize_login;
use crate::policy::{Mailbox, Protocol};
use crate::secret::Secret;
use crate::store::sealed::SealKey;
use crate::store::{
    AccessRecord, Alert, AppPasswordUse, Notice, Rehash, SealedSecrets, SharedThrottle, StoreError,
    StoreLocation, ThrottleFailure,
};
use crate::wording::{Language, Locale, Said};

/// How often the principals' thread looks for store changes.
pub const SNAPSHOT_POLL: Duration = Duration::from_millis(100);

/// Where a login attempt came from.
#[derive(Clone, Debug)]
pub struct LoginContext {
    /// Listener name.
    pub listener: String,
    /// Mailbox or archive listener.
    pub kind: ListenerKind,
    /// Protocol.
    pub protocol: Protocol,
    /// Client address.
    pub peer: IpAddr,
    /// Whether the upstream login needs the mailbox's stored upstream secret.
    pub needs_upstream_secret: bool,
    /// Whether the upstream checks main passwords (`main_password = "upstream"`).
    pub pass_through: bool,
}

/// How a check ended. Only [`LoginResult::Accepted`] lets a session go upstream, and it
/// always names the mailbox to log in as.
pub enum LoginResult {
    /// The client may proceed to the upstream login.
    Accepted {
        /// The mailbox the login opens.
        mailbox: Arc<Mailbox>,
        /// Its upstream secret, if the listener's upstream logs in with it.
        upstream_secret: Option<Secret>,
    },
    /// The protocol's one "authentication failed".
    Refused {
        /// Why (for the history, never the wire).
        reason: Reason,
        /// The mailbox the name opens, if it is known.
        mailbox: Option<Arc<Mailbox>>,
        /// A throttle block this attempt started (its own line in the access history).
        block: Option<String>,
    },
    /// A temporary failure (overloaded, upstream or store unavailable).
    TemporaryFailure {
        /// Why.
        reason: Reason,
        /// The mailbox the name opens, if it is known.
        mailbox: Option<Arc<Mailbox>>,
    },
    /// The upstream decides (`main_password = "upstream"`, a name without a mailbox here
    /// or a mailbox with 2FA off): the session logs in upstream with the client's own
    /// name and password, then settles the verdict with the answer
    /// ([`Authenticator::settle_pass_through`]). Throttling has already been applied.
    PassThrough {
        /// The name as the client gave it.
        user: String,
        /// The client's password.
        secret: Secret,
        /// The login's record here, if any (2FA off).
        principal: Option<Arc<Principal>>,
    },
    /// The upstream accepted a passed-through login (and the mailbox's rules, if it has
    /// one here, allow it): the session relays the connection it opened.
    Passed {
        /// The mailbox, if Sentinella holds one for the name.
        mailbox: Option<Arc<Mailbox>>,
    },
}

/// What the upstream answered to a passed-through login.
#[derive(Debug)]
pub enum UpstreamAnswer {
    /// It logged the client in.
    Accepted,
    /// It refused the credentials.
    Refused,
    /// It could not be asked (down, timed out, broke the protocol).
    Unavailable(String),
}

/// The result of a check, with what the access history records.
pub struct Verdict {
    /// The login name as presented, made printable, for the history.
    pub login: String,
    /// The credential kind presented.
    pub credential: CredentialKind,
    /// The app password it matched, if one did (accepted or not).
    pub app_password: Option<AppPasswordUse>,
    /// How it ended.
    pub result: LoginResult,
    /// For an acceptance: what the session logs in with, to be watched for revocation.
    pub(crate) grant: Option<Grant>,
    /// The main password proved against a hash that is not current (imported, or another
    /// cost): its re-hash, written with the history row.
    pub(crate) rehash: Option<Rehash>,
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verdict")
            .field("login", &self.login)
            .field("outcome", &self.outcome())
            .field("mailbox", &self.mailbox().map(|m| &m.address))
            .finish_non_exhaustive()
    }
}

impl Verdict {
    /// The verdict of a policy decision about the mailbox the login opens (if known).
    /// An acceptance without a mailbox cannot be expressed; should a decision claim one,
    /// it is refused as an unknown login.
    fn of(
        decision: Decision,
        login: String,
        mailbox: Option<Arc<Mailbox>>,
        block: Option<String>,
        matched: Matched,
    ) -> Self {
        let app_password = match (matched, &mailbox) {
            (Matched::App(id), Some(m)) => {
                m.app_passwords
                    .iter()
                    .find(|a| a.id == id)
                    .map(|a| AppPasswordUse {
                        id,
                        name: a.name.clone(),
                    })
            }
            _ => None,
        };
        let result = match (decision.outcome, mailbox) {
            (Outcome::Accepted, Some(mailbox)) => LoginResult::Accepted {
                mailbox,
                upstream_secret: None,
            },
            (Outcome::Accepted, None) => LoginResult::Refused {
                reason: Reason::UnknownLogin,
                mailbox: None,
                block,
            },
            (Outcome::Refused(reason), mailbox) => LoginResult::Refused {
                reason,
                mailbox,
                block,
            },
            (Outcome::TemporaryFailure(reason), mailbox) => {
                LoginResult::TemporaryFailure { reason, mailbox }
            }
        };
        Verdict {
            login,
            credential: decision.credential,
            app_password,
            result,
            grant: None,
            rehash: None,
        }
    }

    /// An acceptance of `name` (normalised) with `principal`: remembers what it logged in
    /// with, for [`Authenticator::watch`].
    fn granted(mut self, ctx: &LoginContext, name: &str, p: &Principal, matched: Matched) -> Self {
        if self.is_accepted() {
            let hash = match matched {
                Matched::App(id) => p.mailbox.app_passwords.iter().find(|a| a.id == id),
                _ => None,
            }
            .map_or(&p.hash, |a| &a.hash);
            self.grant = Some(Grant {
                mailbox_id: p.mailbox.id,
                login: name.to_owned(),
                hash: hash.clone(),
                serial: p.serial,
                matched,
                protocol: ctx.protocol,
                listener: ctx.kind,
            });
        }
        self
    }

    /// Whether the client may proceed (to the upstream login, or — passed through — to
    /// the relay).
    pub fn is_accepted(&self) -> bool {
        matches!(
            self.result,
            LoginResult::Accepted { .. } | LoginResult::Passed { .. }
        )
    }

    /// The decision as the policy states it.
    pub fn outcome(&self) -> Outcome {
        match &self.result {
            LoginResult::Accepted { .. } | LoginResult::Passed { .. } => Outcome::Accepted,
            LoginResult::Refused { reason, .. } => Outcome::Refused(reason.clone()),
            LoginResult::TemporaryFailure { reason, .. } => {
                Outcome::TemporaryFailure(reason.clone())
            }
            // Never recorded unsettled; should it be, it reads as what it is.
            LoginResult::PassThrough { .. } => Outcome::TemporaryFailure(
                Reason::UpstreamUnavailable("passed to upstream; no answer".into()),
            ),
        }
    }

    /// The mailbox the login opens, if it is known.
    pub fn mailbox(&self) -> Option<&Arc<Mailbox>> {
        match &self.result {
            LoginResult::Accepted { mailbox, .. } => Some(mailbox),
            LoginResult::Refused { mailbox, .. }
            | LoginResult::TemporaryFailure { mailbox, .. }
            | LoginResult::Passed { mailbox } => mailbox.as_ref(),
            LoginResult::PassThrough { principal, .. } => principal.as_ref().map(|p| &p.mailbox),
        }
    }

    /// The upstream login failed after this verdict: the policy's row "upstream down or
    /// its login failed" turns an acceptance into a temporary failure.
    pub fn upstream_failed(&mut self, why: impl Into<String>) {
        let decision = Decision {
            outcome: self.outcome(),
            credential: self.credential,
        }
        .upstream_failed(why);
        let mailbox = self.mailbox().cloned();
        let block = match &mut self.result {
            LoginResult::Refused { block, .. } => block.take(),
            _ => None,
        };
        let app_password = self.app_password.take();
        *self = Verdict {
            app_password,
            ..Verdict::of(
                decision,
                std::mem::take(&mut self.login),
                mailbox,
                block,
                Matched::Neither,
            )
        };
    }
}

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
}

/// Decides logins.
pub struct Authenticator {
    principals: Arc<Principals>,
    sessions: Arc<Sessions>,
    cache: VerificationCache,
    throttle: Throttle,
    pool: HashPool,
    hasher: PasswordHasher,
    dummy_hash: String,
    history: HistoryWriter,
    /// The fleet's throttle counts (a shared store): read before a verification, so an
    /// attack spread over the nodes meets the limits of one.
    fleet: Option<Mutex<Box<dyn SharedThrottle>>>,
    secrets: Option<(Mutex<Box<dyn SealedSecrets>>, SealKey)>,
    zone: jiff::tz::TimeZone,
    /// The alert settings, replaced whole by a reload.
    alerts: arc_swap::ArcSwap<AlertSettings>,
}

/// How the "main password used under 2FA" alert is given.
#[derive(Debug)]
struct AlertSettings {
    every: Period,
    email: bool,
    language: Language,
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
fn printable(login: &str) -> String {
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
        let history = HistoryWriter::start(store.open_access_log()?);
        let mut fleet = store.open_shared_throttle()?;
        let throttle = match fleet.as_mut() {
            Some(f) => Throttle::with_key(settings.throttle, f.fleet_key()?),
            None => Throttle::new(settings.throttle),
        };
        let secrets = match seal_key {
            Some(key) => Some((Mutex::new(store.open_secrets()?), key)),
            None => None,
        };
        Ok(Authenticator {
            principals,
            sessions,
            cache: VerificationCache::new(settings.cache_entries, settings.cache_ttl),
            throttle,
            fleet: fleet.map(Mutex::new),
            pool: HashPool::new(settings.hash_workers, settings.hash_queue),
            hasher,
            dummy_hash,
            history,
            secrets,
            zone: settings.zone,
            alerts: arc_swap::ArcSwap::from_pointee(AlertSettings {
                every: settings.main_password_alert_every,
                email: settings.email,
                language: settings.language,
            }),
        })
    }

    /// Takes the settings a reload may change (SIGHUP): the throttle's limits, the
    /// verification cache's time to live, and how alerts are given. The cache size, the
    /// hashing pool and the time zone are fixed for the process's life.
    pub fn reconfigure(&self, settings: &AuthSettings) {
        self.throttle.set_settings(settings.throttle);
        self.cache.set_ttl(settings.cache_ttl);
        self.alerts.store(Arc::new(AlertSettings {
            every: settings.main_password_alert_every,
            email: settings.email,
            language: settings.language,
        }));
    }

    /// Follows the store's changes now if it changed (the background thread does this
    /// every [`SNAPSHOT_POLL`]; tests and benchmarks call it to not wait).
    pub fn refresh(&self) -> Result<bool, StoreError> {
        self.principals.refresh()
    }

    /// Follows the store's changes first if it changed, off the reactor.
    async fn follow(self: &Arc<Self>) {
        if self.principals.stale() {
            let this = Arc::clone(self);
            // A failure is logged once by refresh, which then sets the cache aside.
            let _ = tokio::task::spawn_blocking(move || this.principals.refresh()).await;
        }
    }

    /// The principal for a login name as given by a client: from the cache, or one
    /// indexed read off the reactor. `Ok(None)` for a name that is not a login (or not a
    /// valid name at all); `Err` when the store cannot say.
    async fn principal(
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
            .map_err(|e| StoreError::Backend(e.to_string()))?
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
        if self.fleet.is_some() {
            self.absorb_fleet(ctx.peer, &name).await;
            let instant = Instant::now();
            if let Some(v) = self.throttled(ctx, &creds, &name, principal.as_ref(), now, instant) {
                return self.with_upstream_secret(ctx, v).await;
            }
        }
        let login = printable(&creds.login);
        if ctx.pass_through
            && principal
                .as_ref()
                .is_none_or(|p| !p.mailbox.two_factor_on())
        {
            // The upstream checks main passwords: no hash here, the client's own
            // credentials go on (the throttle has let them).
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
            };
        }
        let mailbox = principal.as_ref().map(|p| Arc::clone(&p.mailbox));
        let name_for_rehash = name.clone();
        let this = Arc::clone(self);
        let p = principal.clone();
        let secret = creds.secret.clone();
        let Ok((matched, rehash)) = self
            .pool
            .run(move || {
                let matched = this.verify(p.as_deref(), &secret);
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
                (matched, rehash)
            })
            .await
        else {
            let overloaded = Decision {
                outcome: Outcome::TemporaryFailure(Reason::Overloaded),
                credential: CredentialKind::Unknown,
            };
            return Verdict::of(overloaded, login, mailbox, None, Matched::Neither);
        };
        let decision = self.decide(ctx, mailbox.as_deref(), matched, now);
        let mut block = None;
        if decision.is_accepted() {
            if let Some(key) = key {
                self.cache.insert(key, matched);
            }
            self.note_success(ctx.peer, &name);
        } else {
            block = self.count_failure(ctx, &name, &creds.secret, &decision);
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
        instant: Instant,
    ) -> Front {
        let login = printable(&creds.login);
        let refuse = |reason| Decision::refuse(reason, CredentialKind::Unknown);
        if let Some(why) = creds.malformed {
            self.note_failure(ctx.peer, &login, &creds.secret, instant);
            return Front::Done(Verdict::of(
                refuse(Reason::Malformed(why)),
                login,
                None,
                None,
                Matched::Neither,
            ));
        }
        let Ok(name) = normalize_login(&creds.login) else {
            self.note_failure(ctx.peer, &login, &creds.secret, instant);
            let decision = refuse(Reason::Malformed("invalid login name"));
            return Front::Done(Verdict::of(decision, login, None, None, Matched::Neither));
        };
        let principal = match lookup(&name) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the login name's mailbox");
                let decision = Decision {
                    outcome: Outcome::TemporaryFailure(Reason::StoreUnavailable(e.to_string())),
                    credential: CredentialKind::Unknown,
                };
                return Front::Done(Verdict::of(decision, login, None, None, Matched::Neither));
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
                self.note_success(ctx.peer, &name);
            }
            let mailbox = Some(Arc::clone(&p.mailbox));
            let v = Verdict::of(decision, login, mailbox, None, matched)
                .granted(ctx, &name, p, matched);
            return Front::Done(v);
        }
        // Everything else would cost argon2id: the throttle decides first.
        if let Some(v) = self.throttled(ctx, creds, &name, principal.as_ref(), now, instant) {
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

    /// The throttle's refusal, if the client or the name is blocked now. Hammering a
    /// blocked name still counts against the client's address, so an attacker ends up
    /// refused at accept time, before TLS.
    fn throttled(
        &self,
        ctx: &LoginContext,
        creds: &Credentials,
        name: &str,
        principal: Option<&Arc<Principal>>,
        now: Timestamp,
        instant: Instant,
    ) -> Option<Verdict> {
        let why = self.throttle.check(ctx.peer, name, instant).err()?;
        crate::metrics::METRICS
            .throttle_blocks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let decision = decide(&Attempt {
            mailbox: None,
            protocol: ctx.protocol,
            listener: ctx.kind,
            throttled: Some(&why),
            matched: Matched::Neither,
            now,
            zone: &self.zone,
        });
        let block = self.count_failure(ctx, name, &creds.secret, &decision);
        let mailbox = principal.map(|p| Arc::clone(&p.mailbox));
        Some(Verdict::of(
            decision,
            printable(&creds.login),
            mailbox,
            block,
            Matched::Neither,
        ))
    }

    /// A failed login: counted here, and (in a fleet) written for the other nodes with
    /// the access history. Returns the block it started, if any.
    fn note_failure(
        &self,
        ip: IpAddr,
        name: &str,
        secret: &crate::secret::Secret,
        instant: Instant,
    ) -> Option<String> {
        let fp = self.throttle.fingerprint(name, secret);
        if self.fleet.is_some() {
            let at_ms = Timestamp::now().as_millisecond();
            for key in Throttle::fleet_keys(ip, name) {
                self.history.throttle_failure(ThrottleFailure {
                    key,
                    fingerprint: fp as i64,
                    at_ms,
                });
            }
        }
        self.throttle.failure_fp(ip, name, fp, instant)
    }

    /// A successful login: clears the counts here, and (in a fleet, if there were any)
    /// the fleet's.
    fn note_success(&self, ip: IpAddr, name: &str) {
        if self.throttle.success(ip, name) && self.fleet.is_some() {
            let at_ms = Timestamp::now().as_millisecond();
            for key in Throttle::fleet_keys(ip, name) {
                self.history.throttle_clear(key, at_ms);
            }
        }
    }

    /// In a fleet, before a verification: what the other nodes counted for this client
    /// and name, taken into this node's throttle. One indexed read, only on the path that
    /// costs argon2id anyway; when it fails, this node's own counts decide (logged once a
    /// minute, counted in the metrics).
    async fn absorb_fleet(self: &Arc<Self>, ip: IpAddr, name: &str) {
        if self.fleet.is_none() {
            return;
        }
        let this = Arc::clone(self);
        let keys = Throttle::fleet_keys(ip, name).to_vec();
        let since = Timestamp::now().as_millisecond()
            - i64::try_from(self.throttle.window().as_millis()).unwrap_or(i64::MAX);
        let counts = tokio::task::spawn_blocking(move || {
            let fleet = this.fleet.as_ref()?;
            let store = fleet.lock().unwrap_or_else(|p| p.into_inner());
            Some(store.counts(&keys, since))
        })
        .await;
        match counts {
            Ok(Some(Ok(counts))) => {
                self.throttle.absorb(
                    ip,
                    name,
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

    fn decide(
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
        self.throttle.address_blocked(ip, Instant::now())
    }

    /// Refusals that say something about the credential count towards the throttle;
    /// policy refusals of a right password (protocol, plan) do not. Returns the block this
    /// started, if any.
    fn count_failure(
        &self,
        ctx: &LoginContext,
        name: &str,
        secret: &Secret,
        decision: &Decision,
    ) -> Option<String> {
        match &decision.outcome {
            Outcome::Refused(Reason::ProtocolDisabled(_) | Reason::ArchiveNotInPlan) => None,
            Outcome::Refused(_) => self.note_failure(ctx.peer, name, secret, Instant::now()),
            _ => None,
        }
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

    /// For upstreams that log in with the mailbox's own stored secret: fetch and open it
    /// (off the reactor); without it the login cannot be completed (temporary failure).
    async fn with_upstream_secret(self: &Arc<Self>, ctx: &LoginContext, mut v: Verdict) -> Verdict {
        if !ctx.needs_upstream_secret {
            return v;
        }
        let LoginResult::Accepted { mailbox, .. } = &v.result else {
            return v;
        };
        let address = mailbox.address.clone();
        let this = Arc::clone(self);
        let secret = tokio::task::spawn_blocking(move || this.upstream_secret(&address))
            .await
            .ok()
            .flatten();
        match (secret, &mut v.result) {
            (
                Some(s),
                LoginResult::Accepted {
                    upstream_secret, ..
                },
            ) => *upstream_secret = Some(s),
            _ => v.upstream_failed("no usable upstream secret is set for this mailbox"),
        }
        v
    }

    fn upstream_secret(&self, address: &str) -> Option<Secret> {
        let (store, key) = self.secrets.as_ref()?;
        let sealed = {
            let store = store.lock().unwrap_or_else(|p| p.into_inner());
            store.sealed_upstream_secret(address).ok()??
        };
        match key.open(address, &sealed) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(mailbox = address, error = %e, "cannot open the upstream secret");
                None
            }
        }
    }

    /// Writes the attempt to the access history; returns once it is durable. A failure
    /// to write is logged, never shown to the client.
    pub async fn record(&self, ctx: &LoginContext, verdict: &Verdict) {
        let passed = matches!(verdict.result, LoginResult::Passed { .. });
        let (result, reason) = match verdict.outcome().recorded() {
            (r, None) if passed => (r, Some(PASSED_ACCEPTED.to_owned())),
            other => other,
        };
        let kind = match verdict.outcome() {
            Outcome::Accepted if passed => "passed_to_upstream",
            Outcome::Accepted => "none",
            Outcome::Refused(r) | Outcome::TemporaryFailure(r) => r.kind(),
        };
        crate::metrics::METRICS.login(ctx.protocol.as_str(), &ctx.listener, result.as_str(), kind);
        let rec = access_record(ctx, verdict, result, reason);
        let block = match &verdict.result {
            LoginResult::Refused { block: Some(b), .. } => Some(AccessRecord {
                reason: Some(format!("throttle: {b}")),
                credential: CredentialKind::Unknown,
                app_password: None,
                result: AccessResult::Refused,
                ..rec.clone()
            }),
            _ => None,
        };
        let alert = self.alert(ctx, verdict, rec.at);
        self.history
            .record(rec, alert, verdict.rehash.clone())
            .await;
        if let Some(b) = block {
            tracing::warn!(client = %ctx.peer, login = %verdict.login, reason = b.reason.as_deref().unwrap_or(""), "throttling");
            self.history.record(b, None, None).await;
        }
    }

    /// Settles a [`LoginResult::PassThrough`] verdict with the upstream's answer to the
    /// client's own credentials. Accepted there: accepted here too if the mailbox (when
    /// Sentinella holds one) allows it by its other rules (protocol, plan) — and watched
    /// like a main-password session, so turning 2FA on ends it. Refused there: the one
    /// refusal, counted by the throttle like a wrong password. Unreachable: a temporary
    /// failure.
    pub fn settle_pass_through(
        &self,
        ctx: &LoginContext,
        verdict: &mut Verdict,
        answer: UpstreamAnswer,
    ) {
        let placeholder = LoginResult::Passed { mailbox: None };
        let LoginResult::PassThrough {
            user,
            secret,
            principal,
        } = std::mem::replace(&mut verdict.result, placeholder)
        else {
            return;
        };
        let name = normalize_login(&user).unwrap_or(user);
        let mailbox = principal.as_ref().map(|p| Arc::clone(&p.mailbox));
        verdict.result = match answer {
            UpstreamAnswer::Accepted => {
                let refused = principal.as_ref().and_then(|p| {
                    match self
                        .decide(ctx, Some(&p.mailbox), Matched::Main, now())
                        .outcome
                    {
                        Outcome::Accepted => None,
                        Outcome::Refused(r) | Outcome::TemporaryFailure(r) => Some(r),
                    }
                });
                match refused {
                    Some(reason) => LoginResult::Refused {
                        reason,
                        mailbox,
                        block: None,
                    },
                    None => {
                        self.note_success(ctx.peer, &name);
                        LoginResult::Passed { mailbox }
                    }
                }
            }
            UpstreamAnswer::Refused => {
                let decision = Decision::refuse(Reason::RefusedByUpstream, verdict.credential);
                let block = self.count_failure(ctx, &name, &secret, &decision);
                LoginResult::Refused {
                    reason: Reason::RefusedByUpstream,
                    mailbox,
                    block,
                }
            }
            UpstreamAnswer::Unavailable(why) => LoginResult::TemporaryFailure {
                reason: Reason::UpstreamUnavailable(why),
                mailbox,
            },
        };
        if let (true, Some(p)) = (verdict.is_accepted(), &principal) {
            verdict.grant = Some(Grant {
                mailbox_id: p.mailbox.id,
                login: name,
                hash: p.hash.clone(),
                serial: p.serial,
                matched: Matched::Main,
                protocol: ctx.protocol,
                listener: ctx.kind,
            });
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

    /// Records that a session was ended by a change (or by its app password's expiry):
    /// an access-history row with why.
    pub async fn record_ended(&self, ctx: &LoginContext, verdict: &Verdict, reason: &Reason) {
        crate::metrics::METRICS
            .sessions_revoked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let why = Some(format!("{}{reason}", crate::wording::SESSION_ENDED));
        let rec = AccessRecord {
            app_password: None,
            ..access_record(ctx, verdict, AccessResult::Refused, why)
        };
        self.history.record(rec, None, None).await;
    }

    /// SPEC "Notices and alerts": the owner is told when the main password was used in a
    /// mail program while 2FA is on (someone knows it, or a program was not updated) — at
    /// most once a period, which the store enforces across restarts and processes.
    fn alert(&self, ctx: &LoginContext, verdict: &Verdict, at: Timestamp) -> Option<Alert> {
        let LoginResult::Refused {
            reason: Reason::MainPasswordUnder2fa,
            mailbox: Some(mailbox),
            ..
        } = &verdict.result
        else {
            return None;
        };
        let said = Said::MainPasswordUsed {
            at,
            client: ctx.peer.to_string(),
            protocol: ctx.protocol.to_string(),
            login: verdict.login.clone(),
        };
        let alerts = self.alerts.load();
        let locale = Locale {
            language: alerts.language,
            zone: self.zone.clone(),
        };
        Some(Alert {
            address: mailbox.address.clone(),
            email_to: mailbox.email_to(alerts.email),
            notice: Notice::said(at, said, &locale),
            quiet_since: alerts.every.before(at, &self.zone),
        })
    }
}

/// The owner's web login, first step ([`Authenticator::check_owner`]).
#[derive(Debug)]
pub enum OwnerCheck {
    /// The main password is right. With 2FA on, a code from the device is still due.
    Accepted {
        /// The mailbox the login belongs to.
        mailbox: Arc<Mailbox>,
        /// The login name, normalised (the address or a multi-user account's name).
        login: String,
    },
    /// Wrong credentials, or throttled: the page says only "wrong credentials"; the
    /// reason is for the access history.
    Refused {
        /// Why, in the history's words.
        reason: String,
    },
    /// The check could not be made now (the hashing queue is full).
    Unavailable,
}

/// The listener name web logins are recorded under.
pub const WEB_LISTENER: &str = "web";

impl Authenticator {
    /// The owner's web login, first step: a login name (the mailbox address or a
    /// multi-user account's name) and its **main** password — an app password never
    /// opens the page. One argon2id verification whatever the name (unknown names are
    /// compared with the dummy hash); counted in the same throttle as the mail
    /// listeners, per address and per name. Not recorded: the caller records the
    /// attempt once it is decided ([`Authenticator::record_web`]).
    pub async fn check_owner(
        self: &Arc<Self>,
        peer: IpAddr,
        login: &str,
        password: Secret,
    ) -> OwnerCheck {
        let instant = Instant::now();
        let Ok(name) = normalize_login(login) else {
            self.note_failure(peer, &printable(login), &password, instant);
            return OwnerCheck::Refused {
                reason: "invalid login name".into(),
            };
        };
        self.absorb_fleet(peer, &name).await;
        if let Err(why) = self.throttle.check(peer, &name, instant) {
            self.note_failure(peer, &name, &password, instant);
            return OwnerCheck::Refused {
                reason: format!("throttle: {why}"),
            };
        }
        self.follow().await;
        let Ok(principal) = self.principal(&name).await else {
            return OwnerCheck::Unavailable;
        };
        let this = Arc::clone(self);
        let p = principal.clone();
        let secret = password.clone();
        let Ok(ok) = self
            .pool
            .run(move || {
                let hash = p
                    .as_ref()
                    .map_or(this.dummy_hash.as_str(), |p| p.hash.as_str());
                this.hasher.verify(hash, &secret)
            })
            .await
        else {
            return OwnerCheck::Unavailable;
        };
        match principal {
            Some(p) if ok => {
                self.note_success(peer, &name);
                OwnerCheck::Accepted {
                    mailbox: Arc::clone(&p.mailbox),
                    login: name,
                }
            }
            found => {
                self.throttle
                    .failure(peer, &name, &password, Instant::now());
                OwnerCheck::Refused {
                    reason: if found.is_some() {
                        "wrong password".into()
                    } else {
                        "unknown login".into()
                    },
                }
            }
        }
    }

    /// The owner's second step failed (a wrong or reused code): counted in the throttle
    /// like a wrong password.
    pub fn owner_code_failed(&self, peer: IpAddr, login: &str, code: &str) {
        let code = Secret::new(code.to_owned());
        self.note_failure(peer, login, &code, Instant::now());
    }

    /// Whether `login` from `peer` is throttled now (the second step is refused then
    /// too, before any code is looked at).
    pub fn owner_throttled(&self, peer: IpAddr, login: &str) -> Option<String> {
        self.throttle.check(peer, login, Instant::now()).err()
    }

    /// The mailbox `login` belongs to now, as the login path sees it (the web page checks
    /// on every request that its session's credentials still hold).
    pub fn owner_mailbox(&self, login: &str) -> Option<Arc<Mailbox>> {
        self.principals
            .get(login)
            .ok()
            .flatten()
            .map(|p| Arc::clone(&p.mailbox))
    }

    /// The stamp of the credentials `login` opens the page with: it changes when the
    /// main password or the 2FA device does, which ends the page's sessions.
    pub fn owner_stamp(&self, login: &str) -> Option<[u8; 32]> {
        let p = self.principals.get(login).ok().flatten()?;
        // The password's serial, not its hash: a re-hash of the same password (an
        // imported hash made argon2id) ends no page session.
        let mut h = blake3::Hasher::new();
        h.update(&p.mailbox.id.to_le_bytes());
        h.update(&p.serial.to_le_bytes());
        if let Some(d) = &p.mailbox.device {
            h.update(d.associated_at.as_second().to_string().as_bytes());
        }
        Some(*h.finalize().as_bytes())
    }

    /// Records a web login attempt in the access history (channel `web`); returns once
    /// it is durable.
    pub async fn record_web(
        &self,
        peer: IpAddr,
        login: &str,
        address: Option<&str>,
        accepted: bool,
        reason: Option<String>,
    ) {
        let rec = AccessRecord {
            at: now(),
            listener: WEB_LISTENER.into(),
            protocol: crate::policy::names::Channel::Web,
            client: peer.to_string(),
            login: printable(login),
            address: address.map(str::to_owned),
            credential: if accepted {
                CredentialKind::Main
            } else {
                CredentialKind::Unknown
            },
            app_password: None,
            result: if accepted {
                AccessResult::Accepted
            } else {
                AccessResult::Refused
            },
            reason,
        };
        self.history.record(rec, None, None).await;
    }
}

/// The access-history row of `verdict` in `ctx`, with `result` and `reason`.
fn access_record(
    ctx: &LoginContext,
    verdict: &Verdict,
    result: AccessResult,
    reason: Option<String>,
) -> AccessRecord {
    AccessRecord {
        at: now(),
        listener: ctx.listener.clone(),
        protocol: ctx.protocol.into(),
        client: ctx.peer.to_string(),
        login: verdict.login.clone(),
        address: verdict.mailbox().map(|m| m.address.clone()),
        credential: verdict.credential,
        app_password: verdict.app_password.clone(),
        result,
        reason,
    }
}

/// Now, to the second (policy time).
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::HashCost;
    use crate::auth::credentials::Mechanism;
    use crate::manage::app_password::Wanted;
    use crate::manage::testing::{self, yes};
    use crate::manage::{Actor, Manager};
    use crate::policy::{Period, Plan};

    const ADDR: &str = "mario@pec.example.it";

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
                window: Duration::from_secs(900),
                block: Duration::from_secs(30),
                address_max_block: Duration::from_secs(3600),
                name_max_block: Duration::from_secs(60),
            },
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
            Reason::Malformed("invalid login name")
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
            matches!(&reason, Reason::Throttled(why) if why.contains("127.0.0.1")),
            "{reason:?}"
        );
        f.auth.record(&c, &v).await;
        let history = f.manager.history(ADDR, 10).unwrap().history;
        assert!(
            history.iter().any(|r| r
                .reason
                .as_deref()
                .is_some_and(|x| x.starts_with("throttled: client 127.0.0.1"))),
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
        use crate::policy::{Plan, PolicySettings, ProtocolSet};
        use crate::store::sqlite::schema;

        fn ctx(protocol: Protocol) -> LoginContext {
            LoginContext {
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
