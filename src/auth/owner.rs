//! The owner's login on the page ("Gestione account"), decided here, not in the web
//! handlers: the password step (the main password — an app password never opens the
//! page), then, with 2FA on, the code step; and the same ration of codes for every other
//! place a code is asked (confirming, turning off, replacing the device).
//!
//! Both steps go through the abuse model's two functions (`failed`, `succeeded`) like
//! every mail login, so page guesses count on every node of a fleet, and a right main
//! password never clears the mailbox's code count: after `throttle.code_failures` wrong
//! codes in the window the code step of that mailbox is blocked — the right code too —
//! whatever the session, the address or the node, and the owner is alerted once a
//! window. Every attempt is written to the access history (channel `web`) with its
//! factor (`main`, or `code` for the second step).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::authenticator::{Authenticator, printable};
use super::guard::{Who, started_reason};
use crate::clock::now;
use crate::policy::Mailbox;
pub use crate::policy::abuse::CodeUse;
use crate::policy::abuse::{Factor, Proof, Subject};
use crate::policy::login::{AccessResult, CredentialKind, Reason};
use crate::policy::names::normalize_login;
use crate::secret::Secret;
use crate::store::{AccessRecord, Alert};
use crate::wording::Said;

/// The listener name web logins are recorded under.
pub const WEB_LISTENER: &str = "web";

/// How the password step ended.
#[derive(Debug)]
pub enum PasswordStep {
    /// 2FA is off: the owner is logged in.
    LoggedIn {
        /// The mailbox.
        mailbox: Arc<Mailbox>,
        /// The login name, normalised (the address or a multi-user account's name).
        login: String,
    },
    /// The main password is right and 2FA is on: a code is due. Nothing may be done
    /// with this alone.
    CodeDue {
        /// The mailbox.
        mailbox: Arc<Mailbox>,
        /// The login name, normalised.
        login: String,
    },
    /// Wrong credentials, or blocked: the page says only "wrong credentials" (a block of
    /// the password step would tell which names exist); the history says why.
    Refused,
    /// The check could not be made now (the hashing queue is full, the store is down).
    Unavailable,
}

/// Who asks for a code, and so what a wrong one counts against.
#[derive(Clone, Copy, Debug)]
pub enum CodeDoor<'a> {
    /// The owner on the page: a session that proved the main password of `login`.
    /// Counted against the mailbox, the name and the client's address.
    Page {
        /// The client.
        peer: IpAddr,
        /// The login name the session proved.
        login: &'a str,
    },
    /// An operator's API call on the owner's behalf (a provider's portal): counted
    /// against the mailbox only, so one portal serving many owners is not blocked as an
    /// address.
    Api {
        /// The caller.
        peer: IpAddr,
        /// The operator (`api:TOKEN-NAME`).
        operator: &'a str,
    },
}

/// The listener name API code checks are recorded under.
pub const API_LISTENER: &str = "api";

/// What checking a code said, as the caller's action reports it.
#[derive(Debug)]
pub enum CodeAnswer<T, E> {
    /// The code was right and the action done.
    Right(T),
    /// The code was wrong (or already used).
    Wrong {
        /// Already used (a replay), rather than wrong.
        reused: bool,
        /// The action's refusal, for a front door that shows it.
        error: E,
    },
    /// The action failed for another reason (not counted).
    Other(E),
}

/// How a code step ended.
#[derive(Debug)]
pub enum CodeStep<T, E> {
    /// Right: the action's result.
    Done(T),
    /// Wrong or reused: counted. The action's refusal.
    Wrong(E),
    /// The mailbox's code step is blocked: not even looked at. The owner may be told
    /// when to retry (past the password step this tells an attacker nothing new).
    Blocked {
        /// Seconds until it may be tried again.
        retry_after: u64,
    },
    /// The action failed for another reason.
    Other(E),
}

/// One attempt of an owner's (or an operator's on the owner's behalf) for the history.
struct Attempted<'a> {
    who: &'a Who<'a>,
    listener: &'static str,
    address: Option<String>,
    credential: CredentialKind,
    result: AccessResult,
    reason: Option<Reason>,
    alert: Option<Alert>,
}

impl Authenticator {
    /// The password step of the owner's login: a login name and its **main** password.
    /// One argon2id verification whatever the name (unknown names are compared with the
    /// dummy hash). Counted by the abuse model as a password attempt; written to the
    /// access history when it is refused or completes the login.
    pub async fn owner_password(
        self: &Arc<Self>,
        peer: IpAddr,
        login: &str,
        password: Secret,
    ) -> PasswordStep {
        let Ok(name) = normalize_login(login) else {
            let shown = printable(login);
            let who = Who::new(peer, &shown, None);
            let started = self.failed(&who, &[Subject::Address, Subject::Name], &password);
            let why = Reason::Malformed("invalid login name".into());
            self.web_refused(&who, None, CredentialKind::Unknown, why, &started, None)
                .await;
            crate::metrics::METRICS.web_login("password", "refused", "malformed");
            return PasswordStep::Refused;
        };
        self.follow().await;
        let Ok(principal) = self.principal(&name).await else {
            crate::metrics::METRICS.web_login("password", "temporary_failure", "store_unavailable");
            return PasswordStep::Unavailable;
        };
        let who = Who::new(peer, &name, principal.as_ref().map(|p| p.mailbox.id));
        let address = principal.as_ref().map(|p| p.mailbox.address.clone());
        self.absorb_fleet(&who, &Subject::ALL[..3]).await;
        let counted = Subject::counted(Factor::Password);
        if let Err(blocked) = self.guard.check(&who, counted, Instant::now()) {
            crate::metrics::METRICS.refused_by_block(blocked.subject.as_str());
            let started = self.failed(&who, counted, &password);
            let why = Reason::Throttled(blocked.note());
            self.web_refused(&who, address, CredentialKind::Unknown, why, &started, None)
                .await;
            crate::metrics::METRICS.web_login("password", "refused", "throttled");
            return PasswordStep::Refused;
        }
        let this = Arc::clone(self);
        let p = principal.clone();
        let secret = password.clone();
        let Ok((ok, breached)) = self
            .pool
            .run(move || {
                let hash = p
                    .as_ref()
                    .map_or(this.dummy_hash.as_str(), |p| p.hash.as_str());
                let ok = this.hasher.verify(hash, &secret);
                let breached = ok && p.as_deref().is_some_and(|p| this.breached(p, &secret));
                (ok, breached)
            })
            .await
        else {
            crate::metrics::METRICS.web_login("password", "temporary_failure", "overloaded");
            return PasswordStep::Unavailable;
        };
        match principal {
            Some(p) if ok => {
                self.succeeded(&who, Proof::MainPassword);
                if breached {
                    self.report_breach(&p, "web", crate::clock::now());
                }
                let mailbox = Arc::clone(&p.mailbox);
                if mailbox.two_factor_on() {
                    crate::metrics::METRICS.web_login("password", "code_due", "none");
                    PasswordStep::CodeDue {
                        mailbox,
                        login: name,
                    }
                } else {
                    self.record_attempt(Attempted {
                        who: &who,
                        listener: WEB_LISTENER,
                        address: Some(mailbox.address.clone()),
                        credential: CredentialKind::Main,
                        result: AccessResult::Accepted,
                        reason: None,
                        alert: None,
                    })
                    .await;
                    crate::metrics::METRICS.web_login("password", "accepted", "none");
                    PasswordStep::LoggedIn {
                        mailbox,
                        login: name,
                    }
                }
            }
            found => {
                let started = self.failed(&who, counted, &password);
                let reason = if found.is_some() {
                    Reason::WrongPassword
                } else {
                    Reason::UnknownLogin
                };
                crate::metrics::METRICS.web_login("password", "refused", reason.kind());
                self.web_refused(
                    &who,
                    address,
                    CredentialKind::Unknown,
                    reason,
                    &started,
                    None,
                )
                .await;
                PasswordStep::Refused
            }
        }
    }

    /// A code from `mailbox`'s device, asked through `door` for `purpose`: refused
    /// unseen while the mailbox's code step is blocked; otherwise `check` runs (the
    /// management action that checks and spends the code) and its answer is counted — a
    /// wrong code against the mailbox (and, on the page, the name and the address); a
    /// right one clears the mailbox's code count. Crossing the limit alerts the owner
    /// (once a window).
    pub async fn owner_code<T, E, F, Fut>(
        self: &Arc<Self>,
        door: CodeDoor<'_>,
        mailbox: &Mailbox,
        purpose: CodeUse,
        code: &str,
        check: F,
    ) -> CodeStep<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = CodeAnswer<T, E>>,
    {
        let (who, counted, checked, listener): (Who<'_>, &[Subject], &[Subject], &'static str) =
            match door {
                CodeDoor::Page { peer, login } => (
                    Who::new(peer, login, Some(mailbox.id)),
                    Subject::counted(Factor::SecondFactor),
                    &[Subject::Address, Subject::SecondFactor],
                    WEB_LISTENER,
                ),
                CodeDoor::Api { peer, operator } => (
                    Who::new(peer, operator, Some(mailbox.id)),
                    &[Subject::SecondFactor],
                    &[Subject::SecondFactor],
                    API_LISTENER,
                ),
            };
        // An empty code guesses nothing (a form sent before the code was typed, or one
        // that only asks for a confirmation first): the action answers, nothing counts.
        if code.trim().is_empty() {
            return match check().await {
                CodeAnswer::Right(t) => CodeStep::Done(t),
                CodeAnswer::Wrong { error, .. } => CodeStep::Wrong(error),
                CodeAnswer::Other(e) => CodeStep::Other(e),
            };
        }
        let secret = Secret::new(code.trim().to_owned());
        self.absorb_fleet(&who, counted).await;
        if let Err(blocked) = self.guard.check(&who, checked, Instant::now()) {
            crate::metrics::METRICS.refused_by_block(blocked.subject.as_str());
            crate::metrics::METRICS.code_check(purpose.as_str(), "blocked");
            // Attempts during the block still count: the block grows while they go on.
            let why = Reason::CodeBlocked {
                purpose,
                block: blocked.note(),
            };
            self.wrong_code(&who, listener, counted, &secret, mailbox, why)
                .await;
            // What is left now: this attempt may have made the block longer.
            let left = self
                .guard
                .check(&who, checked, Instant::now())
                .err()
                .unwrap_or(blocked);
            return CodeStep::Blocked {
                retry_after: left.seconds().max(1),
            };
        }
        match check().await {
            CodeAnswer::Right(t) => {
                self.succeeded(&who, Proof::SecondFactor);
                crate::metrics::METRICS.code_check(purpose.as_str(), "right");
                if purpose == CodeUse::Login {
                    crate::metrics::METRICS.web_login("code", "accepted", "none");
                    self.record_attempt(Attempted {
                        who: &who,
                        listener,
                        address: Some(mailbox.address.clone()),
                        credential: CredentialKind::Code,
                        result: AccessResult::Accepted,
                        // Which kind of device proved it: the history says so.
                        reason: Some(match mailbox.device.as_ref().and_then(|d| d.passkey()) {
                            Some(_) => Reason::PasskeyAccepted,
                            None => Reason::CodeAccepted,
                        }),
                        alert: None,
                    })
                    .await;
                }
                CodeStep::Done(t)
            }
            CodeAnswer::Wrong { reused, error } => {
                crate::metrics::METRICS.code_check(purpose.as_str(), "wrong");
                if purpose == CodeUse::Login {
                    crate::metrics::METRICS.web_login(
                        "code",
                        "refused",
                        if reused { "code_reused" } else { "wrong_code" },
                    );
                }
                let why = Reason::WrongCode { purpose, reused };
                self.wrong_code(&who, listener, counted, &secret, mailbox, why)
                    .await;
                CodeStep::Wrong(error)
            }
            CodeAnswer::Other(e) => CodeStep::Other(e),
        }
    }

    /// A wrong code (or one tried during a block): counted, the owner alerted if it
    /// started a block of the code step, and written to the history.
    async fn wrong_code(
        &self,
        who: &Who<'_>,
        listener: &'static str,
        counted: &[Subject],
        secret: &Secret,
        mailbox: &Mailbox,
        why: Reason,
    ) {
        let started = self.failed(who, counted, secret);
        let alert = self.codes_alert(who, mailbox, &started);
        let attempt = Attempted {
            who,
            listener,
            address: Some(mailbox.address.clone()),
            credential: CredentialKind::Code,
            result: AccessResult::Refused,
            reason: Some(why),
            alert,
        };
        self.refused(attempt, &started).await;
    }

    /// The owner's alert when wrong codes started a block of the code step: someone who
    /// knows the main password is trying codes. At most one a window (the store keeps
    /// the count across nodes and restarts).
    fn codes_alert(
        &self,
        who: &Who<'_>,
        mailbox: &Mailbox,
        started: &[super::guard::Started],
    ) -> Option<Alert> {
        let b = started
            .iter()
            .find(|b| b.subject == Subject::SecondFactor)?;
        let at = now();
        let said = Said::CodesGuessed {
            at,
            client: who.peer.to_string(),
            tries: b.failures,
            blocked_seconds: b.block.as_secs().max(1),
        };
        let window = jiff::SignedDuration::try_from(self.guard.limits().window)
            .unwrap_or(jiff::SignedDuration::from_secs(900));
        Some(self.alert_of(mailbox, said, at, at.checked_sub(window).unwrap_or(at)))
    }

    /// A refused attempt in the history, and a line of its own for each block it
    /// started (as the mail logins have).
    async fn refused(&self, attempt: Attempted<'_>, started: &[super::guard::Started]) {
        let (who, listener, address) = (attempt.who, attempt.listener, attempt.address.clone());
        if let Some(why) = &attempt.reason {
            tracing::info!(client = %who.peer, login = %who.name.escape_debug(), reason = %why, listener, "owner attempt refused");
        }
        self.record_attempt(attempt).await;
        if let Some(b) = started_reason(started, who.peer) {
            tracing::warn!(client = %who.peer, login = %who.name.escape_debug(), reason = %b, "throttling");
            self.record_attempt(Attempted {
                who,
                listener,
                address,
                credential: CredentialKind::Unknown,
                result: AccessResult::Refused,
                reason: Some(b),
                alert: None,
            })
            .await;
        }
    }

    /// A refused attempt of the page's password step.
    async fn web_refused(
        &self,
        who: &Who<'_>,
        address: Option<String>,
        credential: CredentialKind,
        reason: Reason,
        started: &[super::guard::Started],
        alert: Option<Alert>,
    ) {
        let attempt = Attempted {
            who,
            listener: WEB_LISTENER,
            address,
            credential,
            result: AccessResult::Refused,
            reason: Some(reason),
            alert,
        };
        self.refused(attempt, started).await;
    }

    /// A configuration profile carrying the app password `name` of `address` was taken by
    /// `peer` — downloaded from the page by `login`, or by its one-time link: an accepted
    /// row in the mailbox's history, saying which password and how.
    pub async fn profile_taken(
        &self,
        peer: IpAddr,
        login: &str,
        address: &str,
        name: &str,
        by_link: bool,
    ) {
        let who = Who::new(peer, login, None);
        self.record_attempt(Attempted {
            who: &who,
            listener: WEB_LISTENER,
            address: Some(address.to_owned()),
            credential: CredentialKind::App,
            result: AccessResult::Accepted,
            reason: Some(Reason::ProfileDownloaded {
                name: name.to_owned(),
                by_link,
            }),
            alert: None,
        })
        .await;
    }

    /// Writes an owner's attempt to the access history (channel `web`, listener `web`
    /// or `api`); returns once it is durable.
    async fn record_attempt(&self, a: Attempted<'_>) {
        let rec = AccessRecord {
            at: now(),
            listener: a.listener.into(),
            protocol: crate::policy::names::Channel::Web,
            client: a.who.peer.to_string(),
            login: printable(a.who.name),
            address: a.address,
            unresolved: None,
            // The page's logins are not places a mail password is used from.
            mailbox_id: None,
            software: None,
            credential: a.credential,
            app_password: None,
            result: a.result,
            reason: a.reason,
        };
        self.history.record(rec, a.alert, None).await;
    }

    /// The mailbox `login` belongs to now, as the login path sees it (the web page checks
    /// on every request that its session's credentials still hold).
    pub fn owner_mailbox(&self, login: &str) -> Option<Arc<Mailbox>> {
        self.principal_now(login).map(|p| Arc::clone(&p.mailbox))
    }

    /// The stamp of the credentials `login` opens the page with: it changes when the
    /// main password or the 2FA device does, which ends the page's sessions.
    pub fn owner_stamp(&self, login: &str) -> Option<[u8; 32]> {
        self.principal_now(login).map(|p| stamp(&p))
    }

    /// [`Authenticator::owner_stamp`] after the page itself changed the device: read from
    /// the store now (and cached), so the session that made the change carries the new
    /// stamp even before the change feed reaches this node's cache (blocking).
    pub fn owner_stamp_reloaded(&self, login: &str) -> Option<[u8; 32]> {
        self.principals.reload(login).ok()?.map(|p| stamp(&p))
    }

    /// A key the page signs its login form's CSRF cookie with: the same on every node of
    /// a fleet (derived from the fleet's key), so a form served by one node posts to
    /// another.
    pub fn web_form_key(&self) -> [u8; 32] {
        self.guard.derive_key("sentinella 2026 web login form csrf")
    }
}

/// The stamp of a principal's page credentials: its mailbox, its password's serial (not
/// its hash: a re-hash of the same password ends no page session) and its device.
fn stamp(p: &super::principal::Principal) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&p.mailbox.id.to_le_bytes());
    h.update(&p.serial.to_le_bytes());
    if let Some(d) = &p.mailbox.device {
        h.update(d.associated_at.as_second().to_string().as_bytes());
    }
    *h.finalize().as_bytes()
}
