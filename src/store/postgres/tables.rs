//! The PostgreSQL side of a store copy ([`crate::store::copy`]): one connection for the
//! whole copy, its load transaction, and its identities moved past the copied ids.

use std::sync::Arc;

use deadpool_postgres::Object;

use super::conn::PgConn;
use super::{Backend, PgLocation, wait};
use crate::store::StoreError;
use crate::store::copy::{Table, Tables};
use crate::store::sql::Conn;

/// A copy's connection.
pub struct PgTables {
    _backend: Arc<Backend>,
    client: Object,
}

impl PgTables {
    /// One connection to `location` (its schema brought up to date).
    pub fn open(location: &PgLocation) -> Result<PgTables, StoreError> {
        let backend = Backend::get(location)?;
        let client = backend.client()?;
        Ok(PgTables {
            _backend: backend,
            client,
        })
    }
}

impl Tables for PgTables {
    fn has(&self, _: &Table) -> bool {
        true
    }

    fn with(
        &mut self,
        f: &mut dyn FnMut(&dyn Conn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        f(&PgConn(&self.client))
    }

    fn begin_load(&mut self) -> Result<(), StoreError> {
        Ok(wait(self.client.batch_execute("BEGIN"))?)
    }

    fn end_load(&mut self) -> Result<(), StoreError> {
        for t in crate::store::copy::TABLES.iter().filter(|t| t.identity) {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'id'), COALESCE((SELECT MAX(id) FROM {0}), 0) + 1, false)",
                t.name
            );
            wait(self.client.query_one(&sql, &[]))?;
        }
        Ok(wait(self.client.batch_execute("COMMIT"))?)
    }
}
