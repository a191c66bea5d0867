//! The SQLite side of a store copy ([`crate::store::copy`]).

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::copy::{Table, Tables, Value};

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn value(v: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        ValueRef::Real(r) => return Err(StoreError::Corrupt(format!("unexpected real {r}"))),
    })
}

impl Tables for SqliteStore {
    fn has(&self, table: &Table) -> bool {
        !table.fleet_only
    }

    fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        let n: i64 =
            self.conn
                .query_row(&format!("SELECT COUNT(*) FROM {}", table.name), [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn read(
        &mut self,
        table: &Table,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let (name, cols) = (table.name, table.columns.join(", "));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt;
        let mut rows = match (table.key, after) {
            (Some(k), Some(after)) => {
                stmt = self.conn.prepare(&format!(
                    "SELECT {cols} FROM {name} WHERE {k} > ?1 ORDER BY {k} LIMIT ?2"
                ))?;
                stmt.query(rusqlite::params![after, limit])?
            }
            (Some(k), None) => {
                stmt = self
                    .conn
                    .prepare(&format!("SELECT {cols} FROM {name} ORDER BY {k} LIMIT ?1"))?;
                stmt.query([limit])?
            }
            (None, _) => {
                stmt = self.conn.prepare(&format!("SELECT {cols} FROM {name}"))?;
                stmt.query([])?
            }
        };
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(
                (0..table.columns.len())
                    .map(|i| value(r.get_ref(i)?))
                    .collect::<Result<Vec<_>, StoreError>>()?,
            );
        }
        Ok(out)
    }

    fn begin_load(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn write(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<(), StoreError> {
        let marks: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            table.columns.join(", "),
            marks.join(", ")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        for row in rows {
            stmt.execute(rusqlite::params_from_iter(row.iter()))?;
        }
        Ok(())
    }

    fn end_load(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }
}
