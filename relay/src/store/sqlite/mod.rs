//! The embedded store: SQLite in WAL mode, one writer thread with group commit.
//!
//! - [`db`]: the connection thread and group commit.
//! - [`schema`]: versioned migrations.
//! - [`tenants`]: tenants, shops, agents and signing keys.
//! - [`events`]: the per-tenant event queue, its history, and pushes.
//! - [`dispatch`]: what goes to each shop, coalesced.
//! - [`leases`]: leases and retention (one instance, so leases are plain rows).

mod db;
mod dispatch;
mod events;
mod leases;
mod schema;
mod tenants;

use std::path::Path;

pub use schema::SCHEMA_VERSION;

use super::StoreError;

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    db: db::Db,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: db::Db::open(path)?,
        })
    }
}
