//! What a login check says: where the attempt came from ([`LoginContext`]), how it ended
//! ([`LoginResult`]) and what the access history records of it ([`Verdict`]).

use std::net::IpAddr;
use std::sync::Arc;

use super::principal::Principal;
use super::sessions::Grant;
use crate::policy::login::{CredentialKind, Decision, ListenerKind, Matched, Outcome, Reason};
use crate::policy::{Mailbox, Protocol};
use crate::secret::Secret;
use crate::store::{AppPasswordUse, Rehash};

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
    /// The program the client said it is, when it said (set before the check).
    pub software: Option<String>,
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
        /// The blocks this attempt started (their own line in the access history).
        block: Option<Reason>,
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
    /// The (normalised) login name, when the store could not say which mailbox it opens
    /// (an outage): the history row carries it, resolved when it is written.
    pub(crate) unresolved: Option<String>,
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
    pub(super) fn of(
        decision: Decision,
        login: String,
        mailbox: Option<Arc<Mailbox>>,
        block: Option<Reason>,
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
            unresolved: None,
        }
    }

    /// An acceptance of `name` (normalised) with `principal`: remembers what it logged in
    /// with, for [`Authenticator::watch`].
    pub(super) fn granted(
        mut self,
        ctx: &LoginContext,
        name: &str,
        p: &Principal,
        matched: Matched,
    ) -> Self {
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
                client: Some(ctx.peer),
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
