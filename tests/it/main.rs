//! The integration tests, one binary: each module drives the built `sentinella` against
//! real servers and clients (Dovecot, an SMTP sink, PostgreSQL, HAProxy, Chromium) that
//! `common` starts on loopback and stops by PID. One binary links the crate once.

mod abuse;
mod admin;
mod adopt;
mod api;
mod app_passwords;
mod balancer;
mod cli;
mod common;
mod concurrent_cli;
mod fleet;
mod fuzz_corpus;
mod imap;
mod logs;
mod mail_setup;
mod notices;
mod origin;
mod passkeys;
mod pg_store;
mod pop3;
mod reload;
mod revocation;
mod security;
mod smtp;
mod usage;
mod web;
