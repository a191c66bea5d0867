//! The SQLite side of a store copy ([`crate::store::copy`]): its connection and its load
//! transaction.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::copy::{Table, Tables};
use crate::store::sql::Conn;

impl Tables for SqliteStore {
    fn has(&self, table: &Table) -> bool {
        !table.fleet_only
    }

    fn with(
        &mut self,
        f: &mut dyn FnMut(&dyn Conn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        f(&self.conn)
    }

    fn begin_load(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn end_load(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }
}
