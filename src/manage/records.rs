//! What happened to a mailbox: the access history, the notices, the events.

use super::outcome::{Events, History, Notices};
use super::{ManageError, Manager};
use crate::policy::names::normalize_address;

impl Manager {
    /// The access history ("storico accessi"), newest first, at most `limit` rows. It
    /// outlives the mailbox, so a removed mailbox's history can still be read.
    pub fn history(&self, address: &str, limit: u32) -> Result<History, ManageError> {
        let address = normalize_address(address)?;
        Ok(History {
            history: self.store.history(&address, limit)?,
            address,
        })
    }

    /// Notices to the owner ("avvisi"), newest first.
    pub fn notices(&self, address: &str) -> Result<Notices, ManageError> {
        let address = normalize_address(address)?;
        Ok(Notices {
            notices: self.store.notices(&address)?,
            address,
        })
    }

    /// Every management action on the mailbox, oldest first, with who did it.
    pub fn events(&self, address: &str) -> Result<Events, ManageError> {
        let address = normalize_address(address)?;
        Ok(Events {
            events: self.store.events(&address)?,
            address,
        })
    }
}
