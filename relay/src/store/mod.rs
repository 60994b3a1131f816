//! Everything the relay keeps: tenants, shops, agents, signing keys, events with their history,
//! pushes, what goes to the shops, leases. One [`Store`] trait, two implementations:
//!
//! - [`sqlite::SqliteStore`]: embedded, one file, WAL with one writer thread and group commit;
//!   the default, for one relay process.
//! - [`pg::PgStore`]: PostgreSQL, for several relay instances on one database
//!   (`LISTEN/NOTIFY` between them, leases, `FOR UPDATE SKIP LOCKED`).
//!
//! [`AnyStore`] is the one the relay holds, chosen by `RELAY_DATABASE_URL`. The same
//! conformance suite (`tests/store/main.rs`) runs against both.

pub mod pg;
pub mod sqlite;
mod types;

use std::future::Future;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use shared::domain::Change;
use shared::{AgentId, ShopId, TenantId};

pub use types::{
    AgentRecord, DispatchItem, DispatchSummary, Enriched, EventPayload, EventState, EventSummary,
    Failure as DispatchFailure, FetchJob, HistoryEntry, Ingested, NewEvent, Notice, Purged,
    PushSummary, QueuedEvent, ShopRecord, SigningKey, TenantRecord,
};

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
    /// Two transactions got in each other's way (a deadlock victim); trying again works.
    #[error("database contention: {0}")]
    Contention(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

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

/// Declares the store's operations once: the [`Store`] trait, its implementation for both
/// stores (each by its inherent method of the same name), and [`AnyStore`]'s dispatch.
macro_rules! store_api {
    ($(
        $(#[$meta:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {
        /// The relay's storage operations; see the module documentation.
        pub trait Store: Send + Sync {
            $(
                $(#[$meta])*
                fn $name(&self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$ret, StoreError>> + Send;
            )*
        }

        impl Store for sqlite::SqliteStore {
            $(
                fn $name(&self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$ret, StoreError>> + Send {
                    sqlite::SqliteStore::$name(self $(, $arg)*)
                }
            )*
        }

        impl Store for pg::PgStore {
            $(
                fn $name(&self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$ret, StoreError>> + Send {
                    pg::PgStore::$name(self $(, $arg)*)
                }
            )*
        }

        impl AnyStore {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    match self {
                        AnyStore::Sqlite(s) => s.$name($($arg),*).await,
                        AnyStore::Postgres(p) => p.$name($($arg),*).await,
                    }
                }
            )*
        }

        impl Store for AnyStore {
            $(
                fn $name(&self $(, $arg: $ty)*)
                    -> impl Future<Output = Result<$ret, StoreError>> + Send {
                    AnyStore::$name(self $(, $arg)*)
                }
            )*
        }
    };
}

store_api! {
    /// Creates a tenant; `Conflict` when the id is taken.
    fn create_tenant(&self, id: TenantId, name: String) -> TenantRecord;
    fn tenant_exists(&self, id: TenantId) -> bool;
    /// Adds a shop to its tenant; `NotFound` without the tenant, `Conflict` when taken.
    fn add_shop(&self, shop: ShopRecord) -> ();
    /// Replaces everything about a shop but its id and tenant.
    fn update_shop(&self, shop: ShopRecord) -> ();
    fn shop(&self, shop_id: ShopId) -> Option<ShopRecord>;
    /// Every shop, of one tenant or of all, by shop id.
    fn shops(&self, tenant: Option<TenantId>) -> Vec<ShopRecord>;
    fn create_agent(&self, tenant: TenantId, name: String) -> AgentRecord;
    fn agent(&self, id: AgentId) -> Option<AgentRecord>;
    fn revoke_agent(&self, id: AgentId) -> ();
    /// The newest signing key, created if there is none yet.
    fn current_signing_key(&self) -> SigningKey;
    fn signing_key(&self, kid: String) -> Option<SigningKey>;

    /// Stores a webhook once per (shop, webhook id).
    fn ingest(&self, event: NewEvent) -> Ingested;
    /// The event a webhook was stored as, if it was.
    fn find_webhook(&self, shop: ShopId, webhook_id: String) -> Option<Ingested>;
    /// A tenant's events, newest first.
    fn list_events(&self, tenant: TenantId, state: Option<EventState>, limit: u32) -> Vec<EventSummary>;
    fn event(&self, tenant: TenantId, id: i64) -> Option<(EventSummary, Vec<HistoryEntry>)>;
    /// Up to `want` pending events for delivery, oldest first, one per shop order, none of an
    /// order in `blocked_orders` or behind an event still fetching; counts an attempt on each.
    fn next_deliveries(
        &self,
        tenant: TenantId,
        exclude: std::collections::HashSet<i64>,
        blocked_orders: std::collections::HashSet<(String, String)>,
        want: usize,
    ) -> Vec<QueuedEvent>;
    /// The agent applied the event; false when it was not pending.
    fn ack(&self, tenant: TenantId, id: i64, mamut_ref: Option<String>, already_applied: bool) -> bool;
    /// A retryable failure: the event stays pending.
    fn record_failure(&self, tenant: TenantId, id: i64, reason: String) -> ();
    /// A permanent failure: the event moves to the dead-letter list.
    fn dead_letter(&self, tenant: TenantId, id: i64, reason: String) -> ();
    /// Puts a dead or held event back in the queue (a thin webhook back to fetching its
    /// order). Whether a held order is sound by now is the caller's to check.
    fn replay(&self, tenant: TenantId, id: i64) -> ();
    /// An event's stored body, and the one received if it was edited.
    fn event_payload(&self, tenant: TenantId, id: i64) -> Option<EventPayload>;
    /// Replaces the body of a dead or held event (an operator's correction), keeping the one
    /// received; `note` goes into its history.
    fn edit_event(&self, tenant: TenantId, id: i64, payload: String, order_status: String, note: String) -> ();
    /// Claims thin webhooks whose order is due to be fetched (others skip them for a while).
    fn due_fetches(&self, limit: usize) -> Vec<FetchJob>;
    /// When the earliest waiting fetch is due (`Some("")`: now).
    fn next_fetch_at(&self) -> Option<String>;
    /// The order was fetched: the event holds the full webhook and joins the queue, or is
    /// ignored (its status by now is not a trigger) or held (the order is invalid).
    fn enriched(&self, id: i64, payload: String, outcome: Enriched) -> bool;
    /// Fetching the order failed: tried again at `retry_at`, or, without one, given up (the
    /// event is dead and holds back nothing; a replay fetches it again).
    fn fetch_failed(&self, id: i64, reason: String, retry_at: Option<String>) -> ();
    /// Stores a push once per (tenant, push id) and fans it out; returns the shops with work.
    fn insert_push(&self, tenant: TenantId, agent: AgentId, push_id: String, change: Change) -> Vec<ShopId>;
    /// [`Store::insert_push`] for several pushes in one transaction.
    fn insert_pushes(&self, tenant: TenantId, agent: AgentId, pushes: Vec<(String, Change)>) -> Vec<ShopId>;
    fn list_pushes(&self, tenant: TenantId, limit: u32) -> Vec<PushSummary>;

    /// Claims a shop's pending rows that are due, oldest first.
    fn due_dispatch(&self, shop: ShopId, limit: usize) -> Vec<DispatchItem>;
    fn next_dispatch_at(&self, shop: ShopId) -> Option<String>;
    fn dispatch_done(&self, sent: Vec<(i64, i64)>) -> ();
    fn dispatch_failed(&self, sent: Vec<(i64, i64)>, failure: DispatchFailure, max_attempts: u32) -> ();
    fn list_dispatch(&self, tenant: TenantId, state: Option<String>, limit: u32) -> Vec<DispatchSummary>;
    fn replay_dispatch(&self, tenant: TenantId, id: i64) -> ShopId;
    fn shops_with_pending_dispatch(&self) -> Vec<ShopId>;

    /// Takes (or renews) the lease `name` for `holder` for `ttl_ms`; `take_over` takes it even
    /// from another live holder. Returns whether `holder` holds it now.
    fn acquire_lease(&self, name: String, holder: String, ttl_ms: u64, take_over: bool) -> bool;
    fn release_lease(&self, name: String, holder: String) -> ();
    /// Renews every lease whose holder starts with `prefix` (one instance's); returns the
    /// leases renewed, as (name, holder).
    fn renew_leases(&self, prefix: String, ttl_ms: u64) -> Vec<(String, String)>;
    /// Who holds the lease `name` now, if anyone does.
    fn lease_holder(&self, name: String) -> Option<String>;
    /// How many of a tenant's events wait: for delivery, for their order to be fetched, or
    /// (held) for an operator.
    fn queued_count(&self, tenant: TenantId) -> u64;
    /// Which of `tenants` have events waiting for delivery.
    fn pending_tenants(&self, tenants: Vec<TenantId>) -> Vec<TenantId>;
    /// Deletes finished events (with their history), pushes and sent dispatch rows older than
    /// `before`, at most `limit` of each per call (call again while a count reaches `limit`).
    fn purge(&self, before: DateTime<Utc>, limit: u32) -> Purged;
    /// Tells the other relay instances (a no-op on SQLite: there are none).
    fn notify(&self, notice: Notice) -> ();
}

/// The store the relay runs on. Cheap to clone.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(sqlite::SqliteStore),
    Postgres(pg::PgStore),
}

impl AnyStore {
    pub async fn open(location: &StoreLocation) -> Result<Self, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(AnyStore::Sqlite(sqlite::SqliteStore::open(path)?)),
            StoreLocation::Postgres(url) => {
                Ok(AnyStore::Postgres(pg::PgStore::connect(url).await?))
            }
        }
    }

    /// Notices from the other instances; `None` on SQLite (one instance).
    pub fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        match self {
            AnyStore::Sqlite(_) => None,
            AnyStore::Postgres(p) => Some(p.notices()),
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
