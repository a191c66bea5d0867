//! Credentials and their verification.
//!
//! - `authenticator`: the mail login decision (principal, cache, abuse model, argon2id
//!   off the reactor, policy) — the hot path.
//! - `verdict`: what a check says (context, result, the history's facts).
//! - `records`: the access history's rows of the mail logins, and their alerts.
//! - `alerts`: how alerts are given, and the one place they are made (a refusal, a
//!   breach, a password used from a new place with its "Non sono stato io" link).
//! - `pass_through`: a login the upstream decides (`main_password = "upstream"`).
//! - `secrets`: the mailbox's sealed upstream secret, opened for its upstream login.
//! - `credentials`: what a client presented, marked if it can never be accepted.
//! - `hash`: argon2id hashing and verification with the configured cost.
//! - `breach`: the lists of stolen passwords a proven main password is checked against.
//! - `cache`: successful verifications, under a keyed hash, invalidated by version.
//! - `pool`: the bounded argon2id worker pool.
//! - `principal`: one login name as the login path holds it (a leaf).
//! - `principals`: the login names in use, looked up on demand, in a bounded cache kept
//!   fresh per mailbox by the change feed.
//! - `sessions`: the relayed sessions by mailbox, ended when a change refuses their login.
//! - `guard`: the abuse model's counters (rules in `policy::abuse`): failures per
//!   address (/64), name, account password and mailbox code; every door records its
//!   failures and successes through the authenticator's `failed` / `succeeded`.
//! - `owner`: the owner's page login (password step, code step) and the ration of codes
//!   for every place a code is asked.

pub(crate) mod alerts;
pub(crate) mod authenticator;
pub(crate) mod breach;
pub(crate) mod cache;
pub(crate) mod credentials;
pub(crate) mod guard;
pub(crate) mod hash;
pub(crate) mod owner;
pub(crate) mod pass_through;
pub(crate) mod pool;
pub(crate) mod principal;
pub(crate) mod principals;
pub(crate) mod records;
pub(crate) mod secrets;
pub(crate) mod sessions;
pub(crate) mod verdict;

pub use crate::policy::abuse::Limits as ThrottleSettings;
pub use authenticator::{AuthSettings, Authenticator, SNAPSHOT_POLL};
pub use credentials::{Credentials, Mechanism};
pub use hash::{HashCost, PasswordHasher};
pub use owner::{CodeAnswer, CodeDoor, CodeStep, CodeUse, PasswordStep, WEB_LISTENER};
pub use verdict::{LoginContext, LoginResult, UpstreamAnswer, Verdict};
