//! The access history ("storico accessi") as the running proxy writes it.
//!
//! - `retention`: old history, events and notices deleted in the background, in batches.
//! - [`history`]: a writer thread that group-commits access records: every login waits
//!   until its record is durable, but concurrent logins share one transaction (one
//!   fsync), so durability does not serialise the login path.
//! - [`journal`]: `history_sync = "journal"`: a login's record appended to a file with one
//!   write and answered; the writer takes the file's records into the store in batches
//!   (and what a crash left there at start).

pub mod history;
pub mod journal;
pub(crate) mod retention;
