//! The embedded store: SQLite in WAL mode, one writer thread with group commit.
//!
//! - [`db`]: the connection thread and group commit.
//! - [`schema`]: versioned migrations.
//! - [`tenants`]: tenants, shops, agents and signing keys.
//! - [`events`]: the per-tenant event queue and its history; [`fetch`]: thin webhooks whose
//!   order is fetched from the shop; [`pushes`]: what agents send.
//! - [`dispatch`]: what goes to each shop, coalesced.
//! - [`leases`]: leases and retention (one instance, so leases are plain rows).

mod accounts;
mod agent_sessions;
mod alerts;
mod console;
mod db;
mod dispatch;
mod events;
mod failures;
mod fetch;
mod leases;
mod pushes;
mod received;
mod schema;
mod tenants;

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;
pub use schema::SCHEMA_VERSION;

use super::{StoreError, parse_time};
use crate::store::Result;

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    db: db::Db,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            db: db::Db::open(path)?,
        })
    }
}

/// Column `i` read as text and parsed by `parse` (a state, an id, a timestamp); text that does
/// not parse fails the query with the reason as its source, which the store reports as
/// [`StoreError::Corrupt`], as on PostgreSQL.
pub(super) fn parsed<T>(
    r: &Row<'_>,
    i: usize,
    parse: impl FnOnce(&str) -> Result<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

/// A stored timestamp.
pub(super) fn time(r: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    parsed(r, i, parse_time)
}

/// A stored timestamp that may be missing.
pub(super) fn time_opt(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = r.get(i)?;
    text.map(|text| {
        parse_time(&text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
    })
    .transpose()
}

/// A value whose stored text must parse, as a [`parsed`] argument:
/// `stored_id(ShopId::new, "shop id")`.
pub(super) fn stored_id<T, E: std::fmt::Display>(
    new: impl FnOnce(String) -> Result<T, E>,
    what: &'static str,
) -> impl FnOnce(&str) -> Result<T> {
    move |text| new(text.to_owned()).map_err(|e| super::error::corrupt(what, e))
}
