//! What can go wrong in the store. A database's own error is kept as the `source` (behind an
//! `Arc`, so that one failed group commit can be handed to every caller in it); the message
//! says what failed in words an operator can act on.

use std::sync::Arc;

/// What the store's operations return.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store: {0}")]
    Open(String),
    /// SQLite refused or failed a statement.
    #[error("database error: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// PostgreSQL refused or failed a statement, or the connection broke.
    #[error("database error: {0}")]
    Postgres(#[source] Arc<tokio_postgres::Error>),
    /// No PostgreSQL connection could be had from the pool.
    #[error("no database connection: {0}")]
    Pool(#[source] Arc<deadpool_postgres::PoolError>),
    /// A stored row that this relay cannot read back: a bug or a hand-edited database.
    #[error("stored {what} is invalid: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// Anything else that kept an operation from its database (a value that cannot be encoded).
    #[error("database error: {0}")]
    Database(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the store has shut down")]
    Closed,
    /// Two transactions got in each other's way (a deadlock victim); trying again works.
    #[error("database contention: {0}")]
    Contention(#[source] Arc<tokio_postgres::Error>),
}

impl From<rusqlite::Error> for StoreError {
    /// A stored value that does not read back (`sqlite::parsed`, which can only hand its
    /// reason to SQLite inside a conversion error) is [`StoreError::Corrupt`] again, as on
    /// PostgreSQL.
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(i, kind, source) => {
                match source.downcast::<StoreError>() {
                    Ok(corrupt) => *corrupt,
                    Err(source) => StoreError::Sqlite(Arc::new(
                        rusqlite::Error::FromSqlConversionFailure(i, kind, source),
                    )),
                }
            }
            e => StoreError::Sqlite(Arc::new(e)),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let contention = e.as_db_error().is_some_and(|db| {
            *db.code() == SqlState::T_R_DEADLOCK_DETECTED
                || *db.code() == SqlState::T_R_SERIALIZATION_FAILURE
        });
        if contention {
            StoreError::Contention(Arc::new(e))
        } else {
            StoreError::Postgres(Arc::new(e))
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Pool(Arc::new(e))
    }
}

/// A stored value of `what` that does not read back.
pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}
