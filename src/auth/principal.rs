//! One login name as the login path holds it: the mailbox it opens and its own main
//! password. A leaf of `auth`: the cache (`principals`), the decision and the sessions'
//! watch all read it, and it reads none of them.

use std::sync::Arc;

use crate::policy::Mailbox;
use crate::store::LoginEntry;

/// One login name.
#[derive(Debug)]
pub struct Principal {
    /// The mailbox it opens.
    pub mailbox: Arc<Mailbox>,
    /// Its own main password hash.
    pub hash: String,
    /// Its password serial (moves when the password is set, not when re-hashed).
    pub serial: i64,
}

impl Principal {
    /// The principal of a login entry read from the store.
    pub(super) fn of(entry: LoginEntry) -> Arc<Principal> {
        Arc::new(Principal {
            mailbox: Arc::new(entry.mailbox),
            hash: entry.password_hash,
            serial: entry.password_serial,
        })
    }
}
