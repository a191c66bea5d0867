//! Credentials and their verification.
//!
//! - `authenticator`: the login decision for every protocol (store, argon2id off the
//!   reactor, policy) and the access history.
//! - `credentials`: what a client presented, marked if it can never be accepted.
//! - `hash`: argon2id hashing and verification with the configured cost.
//! - `cache`: successful verifications, under a keyed hash, invalidated by version.
//! - `pool`: the bounded argon2id worker pool.
//! - `principals`: the login names in use, looked up on demand, in a bounded cache kept
//!   fresh per mailbox by the change feed.
//! - `sessions`: the relayed sessions by mailbox, ended when a change refuses their login.
//! - `throttle`: brute-force blocking per address (/64) and per name.

pub(crate) mod authenticator;
pub(crate) mod cache;
pub(crate) mod credentials;
pub(crate) mod hash;
pub(crate) mod pool;
pub(crate) mod principals;
pub(crate) mod sessions;
pub(crate) mod throttle;

pub use authenticator::{
    AuthSettings, Authenticator, LoginContext, LoginResult, OwnerCheck, SNAPSHOT_POLL,
    UpstreamAnswer, Verdict, WEB_LISTENER, now,
};
pub use credentials::{Credentials, Mechanism};
pub use hash::{HashCost, PasswordHasher};
pub use throttle::ThrottleSettings;
