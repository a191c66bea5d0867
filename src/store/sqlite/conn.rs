//! SQLite as the common SQL layer's connection ([`crate::store::sql::Conn`]): statements
//! prepared once per connection and kept, parameters bound as they are, columns read as
//! they are stored.

use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::store::StoreError;
use crate::store::sql::{Conn, Param, Row, Value};

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

struct SqliteRow<'a, 'b>(&'a rusqlite::Row<'b>);

impl Row for SqliteRow<'_, '_> {
    fn value(&self, i: usize) -> Result<Value, StoreError> {
        Ok(match self.0.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Text(t) => Value::Text(
                String::from_utf8(t.to_vec())
                    .map_err(|_| StoreError::Corrupt("text that is not UTF-8".into()))?,
            ),
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            ValueRef::Real(r) => return Err(StoreError::Corrupt(format!("a real number {r}"))),
        })
    }
}

impl Conn for rusqlite::Connection {
    fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, StoreError> {
        let n = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(n as u64)
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param],
        each: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            each(&SqliteRow(row))?;
        }
        Ok(())
    }
}
