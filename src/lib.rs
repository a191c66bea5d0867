//! Sentinella: an IMAP / POP3 / SMTP-submission authentication proxy that brings two-step
//! verification and expiring app passwords to mail protocols.
//!
//! The crate is laid out as `DESIGN.md` describes:
//!
//! - [`config`]: `config.toml` — serde model with `deny_unknown_fields`, defaults, and
//!   validation whose errors name the file and the key.
//! - [`policy`]: SPEC.md's rules as pure code with the clock passed in — periods in
//!   calendar months, 2FA devices (TOTP), app passwords, mailbox actions and the login
//!   decision table.
//! - [`auth`]: credentials in memory ([`auth::Secret`], redacted and zeroized) and argon2id
//!   hashing; the login hot path grows here.
//! - [`audit`]: the group-committed access-history writer.
//! - [`store`]: the embedded SQLite database — schema migrations, one transaction per
//!   management action, the version bump that invalidates cached logins, access history,
//!   notices and management events.
//! - [`protocol`]: sans-I/O protocol front ends (IMAP) and SASL decoding.
//! - [`proxy`]: listeners, TLS, sessions, upstream login, relay, shutdown.
//! - [`cli`]: the `sentinella` command line (human text or `--json`).
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`cli::run`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
pub mod auth;
pub mod cli;
pub mod config;
mod files;
pub mod manage;
pub mod policy;
pub mod protocol;
mod proxy;
pub mod secret;
pub mod store;
