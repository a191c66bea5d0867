//! The PostgreSQL side of a store copy ([`crate::store::copy`]): one connection for the
//! whole copy, rows written many to a statement.

use std::sync::Arc;

use bytes::BytesMut;
use deadpool_postgres::Object;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{Backend, PgLocation, wait};
use crate::store::StoreError;
use crate::store::copy::{Table, Tables, Value};

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Bytes(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Rows per INSERT statement, at most (PostgreSQL takes 65,535 parameters).
const ROWS_PER_STATEMENT: usize = 1_000;

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

fn value(row: &tokio_postgres::Row, i: usize) -> Result<Value, StoreError> {
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Int)
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null, Value::Bytes)
    } else {
        row.try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text)
    })
}

impl Tables for PgTables {
    fn has(&self, _: &Table) -> bool {
        true
    }

    fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*)::bigint FROM {}", table.name);
        let n: i64 = wait(self.client.query_one(&sql, &[]))?.get(0);
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
        let rows = match (table.key, after) {
            (Some(k), Some(after)) => wait(self.client.query(
                &format!("SELECT {cols} FROM {name} WHERE {k} > $1 ORDER BY {k} LIMIT $2"),
                &[after, &limit],
            ))?,
            (Some(k), None) => wait(self.client.query(
                &format!("SELECT {cols} FROM {name} ORDER BY {k} LIMIT $1"),
                &[&limit],
            ))?,
            (None, _) => wait(
                self.client
                    .query(&format!("SELECT {cols} FROM {name}"), &[]),
            )?,
        };
        rows.iter()
            .map(|r| (0..table.columns.len()).map(|i| value(r, i)).collect())
            .collect()
    }

    fn begin_load(&mut self) -> Result<(), StoreError> {
        Ok(wait(self.client.batch_execute("BEGIN"))?)
    }

    fn write(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<(), StoreError> {
        let n = table.columns.len();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let tuples: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let marks: Vec<String> = (1..=n).map(|c| format!("${}", r * n + c)).collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                table.name,
                table.columns.join(", "),
                tuples.join(", ")
            );
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .iter()
                .flat_map(|row| row.iter().map(|v| v as &(dyn ToSql + Sync)))
                .collect();
            wait(self.client.execute(&sql, &params))?;
        }
        Ok(())
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
