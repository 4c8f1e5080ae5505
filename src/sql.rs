//! What the SQL adapters (the stores, the built-in directory, the
//! enrolments) share: the pool of the configured backend and the way each
//! backend stores a time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, SqlitePool};

use crate::store::sqlite_direct::DirectSqlite;

/// The configured database's pool. On SQLite also the direct readers that
/// the queries on a turn's path use ([`DirectSqlite`]).
#[derive(Clone)]
pub enum SqlPool {
    Sqlite(SqlitePool, Arc<DirectSqlite>),
    Postgres(PgPool),
}

/// Milliseconds since the epoch, as SQLite stores times.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Run the same query code on whichever pool is configured. In the body,
/// `$pool` is the backend's pool, `$ts(t)` turns a `DateTime<Utc>` into the
/// value that backend stores (Unix milliseconds on SQLite, TIMESTAMPTZ on
/// PostgreSQL) and `$time(&row, "column")` reads an optional time back.
/// The body must evaluate to the same type on both.
#[macro_export]
macro_rules! with_pool {
    ($sql:expr, |$pool:ident, $ts:ident, $time:ident| $body:expr) => {
        match $sql {
            $crate::sql::SqlPool::Sqlite($pool, _) => {
                #[allow(unused_variables)]
                let $ts = $crate::sql::to_millis;
                #[allow(unused_variables)]
                let $time = |row: &sqlx::sqlite::SqliteRow, column: &str| {
                    sqlx::Row::get::<Option<i64>, _>(row, column).map($crate::sql::from_millis)
                };
                $body
            }
            $crate::sql::SqlPool::Postgres($pool) => {
                #[allow(unused_variables)]
                let $ts = |t: chrono::DateTime<chrono::Utc>| t;
                #[allow(unused_variables)]
                let $time = |row: &sqlx::postgres::PgRow, column: &str| {
                    sqlx::Row::get::<Option<chrono::DateTime<chrono::Utc>>, _>(row, column)
                };
                $body
            }
        }
    };
    ($sql:expr, |$pool:ident, $ts:ident| $body:expr) => {
        $crate::with_pool!($sql, |$pool, $ts, _time| $body)
    };
}
