//! Credentials and their verification.
//!
//! - [`secret`]: the [`Secret`] newtype every password travels in.
//! - [`credentials`]: what a client presented, marked if it can never be accepted.
//! - [`hash`]: argon2id hashing and verification with the configured cost.
//!
//! The login hot path (authenticator, verification cache, bounded hashing pool, throttle)
//! is built on these in the proxy issues.

pub mod credentials;
pub mod hash;
pub mod secret;

pub use credentials::Credentials;
pub use hash::PasswordHasher;
pub use secret::Secret;
