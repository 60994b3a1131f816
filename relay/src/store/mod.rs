//! Everything the relay keeps: tenants, shops, agents, signing keys, events with their
//! history, and pushes. SQLite (WAL, one writer thread with group commit) for now.
//!
//! - [`db`]: the connection thread and group commit.
//! - [`schema`]: versioned migrations.
//! - [`tenants`]: tenants, shops, agents and signing keys.
//! - [`events`]: the per-tenant event queue, its history, and pushes.
//! - [`dispatch`]: what goes to each shop, coalesced.

mod db;
mod dispatch;
mod events;
mod schema;
mod tenants;

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};

pub use dispatch::{DispatchItem, DispatchSummary, Failure as DispatchFailure};
pub use events::{
    EventState, EventSummary, FetchJob, HistoryEntry, Ingested, NewEvent, PushSummary, QueuedEvent,
};
pub use tenants::{AgentRecord, ShopRecord, SigningKey, TenantRecord};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store: {0}")]
    Open(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the store has shut down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Where the store lives, parsed from a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
}

impl StoreLocation {
    /// `sqlite://relative/path.sqlite` or `sqlite:///absolute/path.sqlite`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// URL has no path".into());
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(
                "the PostgreSQL store is not available in this version; use sqlite://".into(),
            );
        }
        Err("expected a sqlite:// URL".into())
    }
}

/// The relay's store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: db::Db,
}

impl Store {
    pub fn open(location: &StoreLocation) -> Result<Self, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(Self {
                db: db::Db::open(path)?,
            }),
        }
    }
}

/// Timestamps are stored as RFC 3339 text in UTC with microseconds.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn now() -> String {
    timestamp(Utc::now())
}
