//! The access history ("storico accessi") as the running proxy writes it.
//!
//! - `retention`: old history, events and notices deleted in the background, in batches.
//! - [`history`]: a writer thread that group-commits access records: every login waits
//!   until its record is durable, but concurrent logins share one transaction (one
//!   fsync), so durability does not serialise the login path.

pub mod history;
pub(crate) mod retention;
