//! Sans-I/O protocol front ends: bytes in, actions out. No sockets here — the session
//! driver in [`crate::proxy`] does the I/O — so each front end is tested from transcripts
//! and fuzzed without a network.
//!
//! - [`imap`]: IMAP4rev1 before authentication (RFC 3501 / 9051), framing by imap-codec's
//!   Fragmentizer.
//! - [`sasl`]: SASL PLAIN and LOGIN decoding, shared by every protocol.

pub mod imap;
pub mod sasl;
