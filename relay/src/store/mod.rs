//! Everything the relay keeps: tenants, shops, agents, signing keys, events with their history,
//! pushes, what goes to the shops, leases. Two backends:
//!
//! - [`sqlite::SqliteStore`]: embedded, one file, WAL with one writer thread and group commit;
//!   the default, for one relay process.
//! - [`pg::PgStore`]: PostgreSQL, for several relay instances on one database
//!   (`LISTEN/NOTIFY` between them, leases, `FOR UPDATE SKIP LOCKED`).
//!
//! Layout:
//! - [`AnyStore`] (`any.rs`): the one store type the relay holds, chosen by
//!   `RELAY_DATABASE_URL`, and the list of the store's operations with their documentation.
//! - `queue.rs`: the queue's rules (picking deliveries, what each outcome does, what may be
//!   replayed), pure and unit-tested, which both backends apply; each keeps only its SQL and
//!   its transactions.
//! - `state.rs`: the typed values at the boundary (states, leases, due times, timestamps) and
//!   their stored text; `types.rs`: the records; `error.rs`: [`StoreError`].
//!
//! Why an enum and no `Store` trait: the relay runs on one backend picked at start-up, so it
//! needs one concrete type, not a type parameter threaded through its state and every task.
//! A trait whose methods return `impl Future` cannot be a `dyn` object, so a trait would still
//! need the enum (or boxing) beside it, and with both, every operation was declared by a macro
//! that neither the reader nor the editor could follow to its definition. The enum's methods
//! are plain code: each names its operation once, and the compiler checks that both backends
//! have it with the same signature. The conformance suite (`tests/e2e/store.rs`) opens an
//! [`AnyStore`] of each kind and runs the same tests on both.

mod accounts;
pub mod agent_sessions;
mod alerts;
mod any;
mod console;
mod error;
pub mod failures;
pub mod pg;
mod queue;
pub mod received;
pub mod sqlite;
mod state;
mod types;

use std::path::PathBuf;

pub use accounts::{AuditEntry, MAX_AUDIT, NewAudit, SessionRecord, UserRecord, UserView};
pub use agent_sessions::AgentSessionRecord;
pub use alerts::{AgentPresence, AlertFacts, AlertRecord, DigestCounts, ShopRefusal};
pub use any::AnyStore;
pub use console::{
    DeliveryTime, EventBody, HourCount, MAX_LATENCY_SAMPLE, MAX_SEARCH_RESULTS, MAX_TENANTS,
    MAX_TIMELINE_ROWS, OrderHistoryEntry, OrderHit, OrderQuery, OrderRecord, QueueStats,
    ShopActivity,
};
pub use error::{Result, StoreError};
pub use received::{ReceivedHeaders, ReceivedWebhook};
pub use state::{DispatchState, Due, EventState, HistoryState, Lease};
pub(crate) use state::{now, parse_time, timestamp};
pub use types::{
    AgentRecord, DispatchItem, DispatchSummary, Enriched, EventPayload, EventSummary,
    Failure as DispatchFailure, FetchJob, HistoryEntry, Ingested, NewEvent, Notice, Purged,
    PushSummary, QueuedEvent, ShopRecord, SigningKey, TenantRecord,
};

/// Where the store lives, parsed from a database URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A `postgres://` URL, which may carry a password: `Debug` does not print it.
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreLocation::Postgres(_) => f.write_str("Postgres(***)"),
        }
    }
}

impl StoreLocation {
    /// `sqlite://relative/path.sqlite`, `sqlite:///absolute/path.sqlite`, or
    /// `postgres://user:password@host:port/database` (with libpq's `sslmode` and `sslrootcert`:
    /// [`pg::tls`]).
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// URL has no path".into());
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            pg::tls::PgUrl::parse(url)?;
            return Ok(StoreLocation::Postgres(url.to_owned()));
        }
        Err("expected a sqlite:// or postgres:// URL".into())
    }
}
