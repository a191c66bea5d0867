//! PostgreSQL as the common SQL layer's connection ([`crate::store::sql::Conn`]): the
//! statement's `?N` written `$N`, prepared once per pooled connection; parameters bound
//! by the type the server asks for; columns read by the type the server gives.

use bytes::BytesMut;
use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::wait;
use crate::store::StoreError;
use crate::store::sql::{Conn, Param, Row, Value};

/// `sql` with its `?N` parameters written `$N` (PostgreSQL's numbering). Statements hold
/// no `?` in a literal.
fn dollar_numbered(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return std::borrow::Cow::Borrowed(sql);
    }
    std::borrow::Cow::Owned(sql.replace('?', "$"))
}

/// A pooled connection, as the layer uses it.
pub(super) struct PgConn<'a>(pub(super) &'a ClientWrapper);

type Failure = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Failure> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Param::Int(i) if *ty == Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
            Param::Int(i) if *ty == Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
            Param::Int(i) if *ty == Type::BOOL => (i != 0).to_sql(ty, out),
            Param::Text(s) => s.to_sql(ty, out),
            Param::Bytes(b) => b.to_sql(ty, out),
            Param::Int(i) => Err(format!("integer {i} for a {ty} parameter").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::BYTEA,
        ]
        .contains(ty)
    }

    to_sql_checked!();
}

struct PgRow<'a>(&'a tokio_postgres::Row);

impl Row for PgRow<'_> {
    fn value(&self, i: usize) -> Result<Value, StoreError> {
        value(self.0, i)
    }
}

/// Column `i` of `row`, by the type the server gives it.
pub(super) fn value(row: &tokio_postgres::Row, i: usize) -> Result<Value, StoreError> {
    let ty = row
        .columns()
        .get(i)
        .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))?
        .type_();
    let int = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
    Ok(if *ty == Type::INT8 {
        int(row.try_get(i)?)
    } else if *ty == Type::INT4 {
        int(row.try_get::<_, Option<i32>>(i)?.map(i64::from))
    } else if *ty == Type::INT2 {
        int(row.try_get::<_, Option<i16>>(i)?.map(i64::from))
    } else if *ty == Type::BOOL {
        int(row.try_get::<_, Option<bool>>(i)?.map(i64::from))
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null, Value::Bytes)
    } else {
        row.try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text)
    })
}

fn bound<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Conn for PgConn<'_> {
    fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, StoreError> {
        let c = self.0;
        let sql = dollar_numbered(sql);
        wait(async {
            let stmt = c.prepare_cached(&sql).await?;
            Ok(c.execute(&stmt, &bound(params)).await?)
        })
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param],
        each: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let c = self.0;
        let sql = dollar_numbered(sql);
        let rows = wait(async {
            let stmt = c.prepare_cached(&sql).await?;
            Ok::<_, StoreError>(c.query(&stmt, &bound(params)).await?)
        })?;
        for r in &rows {
            each(&PgRow(r))?;
        }
        Ok(())
    }
}
