//! Sentinella: an IMAP / POP3 / SMTP-submission authentication proxy that brings two-step
//! verification and expiring app passwords to mail protocols.
//!
//! Two paths run through the crate (`ARCHITECTURE.md` names the file of every step):
//! one login — listener → session → front end → authenticator → upstream → relay — and
//! one management action — front door → [`manage`] → [`store`].
//!
//! - [`config`]: `config.toml` — serde model with `deny_unknown_fields`, defaults,
//!   validation whose errors name the file and the key, and the conversion into each
//!   layer's settings (one direction: no layer below reads the config).
//! - `serve`: start-up — each part started from its settings, once; SIGHUP reloads,
//!   SIGINT / SIGTERM shutdown. Below it nothing reads [`config`].
//! - [`policy`]: SPEC.md's rules as pure code with the clock passed in — periods in
//!   calendar months, 2FA devices (TOTP), app passwords, mailbox actions, the login
//!   decision table, the abuse model's rules, where each password is used (networks,
//!   programs, when a new one asks the owner); the record vocabularies (`named_enum!`).
//! - [`manage`]: one function per management action, the same for every front door:
//!   an actor in, a typed outcome or a classified error out.
//! - [`store`]: the traits the state is reached through (management transactions, the
//!   login path's principals, the access log, sealed secrets), the SQL both backends
//!   speak written once (`store::sql`), and each backend's dialect (SQLite, PostgreSQL).
//! - [`auth`]: every door's login — the authenticator (the mail hot path), the owner's
//!   page login (password step, code step), argon2id hashing on a bounded pool, the
//!   verification cache, the in-memory principals, the abuse model's counters (the one
//!   place failures and successes are recorded).
//! - `audit`: the group-committed access-history writer and its journal.
//! - [`protocol`]: sans-I/O front ends (IMAP, POP3, SMTP submission) and SASL decoding;
//!   public so the fuzz targets can drive them.
//! - `proxy`: its settings (limits, listeners, upstreams), the session threads (a
//!   runtime per core, each listener bound once per thread), accept loops, TLS,
//!   sessions, upstream login, relay.
//! - `admission`: what every listener (mail and HTTP) does before serving a connection:
//!   accept with back-off, connections counted per client network.
//! - `service`: the service manager's notify protocol (READY / RELOADING / STOPPING).
//! - `notify`: the notice jobs — expiry reminders on a schedule, the e-mail outbox.
//! - [`cli`]: the `sentinella` command line, a front door over [`manage`].
//! - `web`: "Gestione account", the owner's web page — another front door over
//!   [`manage`], served by `serve` (axum, askama, rustls).
//! - [`live`]: settings a reload (SIGHUP) replaces while the proxy runs.
//! - [`clock`]: the crate's one clock (policy time, whole seconds), read at the edges
//!   and passed in to the rules.
//! - [`cms`]: CMS SignedData over a certificate and its key (signed configuration
//!   profiles) — a leaf.
//! - [`net`]: network values (a CIDR network, a TLS mode) and the lingering close every
//!   listener ends a connection with after its last word — a leaf.
//! - [`fuzzing`]: the fuzz targets' properties, also replayed over the corpora by tests.
//! - [`secret`] and `files`: leaves — the redacted, zeroized [`secret::Secret`], and
//!   owner-only files.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admission;
pub mod api;
mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cms;
pub mod config;
mod files;
pub mod fuzzing;
pub mod live;
pub mod manage;
mod metrics;
pub mod net;
mod notify;
pub mod policy;
pub mod protocol;
mod proxy;
pub mod secret;
mod serve;
mod service;
pub mod store;
mod web;
pub mod wording;
