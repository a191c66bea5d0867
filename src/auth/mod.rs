//! Credentials and their verification.
//!
//! - [`secret`]: the [`Secret`] newtype every password travels in.
//! - [`authenticator`]: the login decision for every protocol (store, argon2id off the
//!   reactor, policy) and the access history.
//! - [`credentials`]: what a client presented, marked if it can never be accepted.
//! - [`hash`]: argon2id hashing and verification with the configured cost.
//!
//! The verification cache, bounded hashing pool and throttle come with the hot-path work.

pub mod authenticator;
pub mod credentials;
pub mod hash;
pub mod secret;

pub use authenticator::{Authenticator, LoginContext, Verdict};
pub use credentials::Credentials;
pub use hash::PasswordHasher;
pub use secret::Secret;
