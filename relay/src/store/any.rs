//! [`AnyStore`], the one store type the relay holds: an enum over the two backends, chosen at
//! start-up by the database URL. Every operation is written out once here with its
//! documentation and passed on to the backend's method of the same name; where a rule of the
//! queue decides what is written (an ack, a retry, a dead letter), the rule runs here
//! ([`super::queue`]) and the backend only applies its outcome.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use shared::domain::Change;
use shared::{AgentId, ShopId, TenantId};

use super::Result;
use super::types::{
    AgentRecord, DispatchItem, DispatchSummary, Enriched, EventPayload, EventState, EventSummary,
    Failure as DispatchFailure, FetchJob, HistoryEntry, Ingested, NewEvent, Notice, Purged,
    PushSummary, QueuedEvent, ShopRecord, SigningKey, TenantRecord,
};
use super::{DispatchState, Due, Lease, StoreLocation, pg, queue, sqlite};

/// Runs the same call on whichever backend `self` is. The console's areas (`accounts.rs`,
/// `console.rs`, `alerts.rs`) add their operations in `impl AnyStore` blocks of their own
/// with it.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            $crate::store::AnyStore::Sqlite($s) => $call.await,
            $crate::store::AnyStore::Postgres($s) => $call.await,
        }
    };
}
pub(super) use each;

/// The store the relay runs on. Cheap to clone.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(sqlite::SqliteStore),
    Postgres(pg::PgStore),
}

impl AnyStore {
    pub async fn open(location: &StoreLocation) -> Result<Self> {
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

    /// Creates a tenant; `Conflict` when the id is taken.
    pub async fn create_tenant(&self, id: TenantId, name: String) -> Result<TenantRecord> {
        each!(self, s => s.create_tenant(id, name))
    }

    pub async fn tenant_exists(&self, id: TenantId) -> Result<bool> {
        each!(self, s => s.tenant_exists(id))
    }

    /// Adds a shop to its tenant; `NotFound` without the tenant, `Conflict` when taken.
    pub async fn add_shop(&self, shop: ShopRecord) -> Result<()> {
        each!(self, s => s.add_shop(shop))
    }

    /// Replaces everything about a shop but its id and tenant.
    pub async fn update_shop(&self, shop: ShopRecord) -> Result<()> {
        each!(self, s => s.update_shop(shop))
    }

    pub async fn shop(&self, shop_id: ShopId) -> Result<Option<ShopRecord>> {
        each!(self, s => s.shop(shop_id))
    }

    /// Every shop, of one tenant or of all, by shop id.
    pub async fn shops(&self, tenant: Option<TenantId>) -> Result<Vec<ShopRecord>> {
        each!(self, s => s.shops(tenant))
    }

    pub async fn create_agent(&self, tenant: TenantId, name: String) -> Result<AgentRecord> {
        each!(self, s => s.create_agent(tenant, name))
    }

    pub async fn agent(&self, id: AgentId) -> Result<Option<AgentRecord>> {
        each!(self, s => s.agent(id))
    }

    pub async fn revoke_agent(&self, id: AgentId) -> Result<()> {
        each!(self, s => s.revoke_agent(id))
    }

    /// The newest signing key, created if there is none yet.
    pub async fn current_signing_key(&self) -> Result<SigningKey> {
        each!(self, s => s.current_signing_key())
    }

    pub async fn signing_key(&self, kid: String) -> Result<Option<SigningKey>> {
        each!(self, s => s.signing_key(kid))
    }

    /// Stores a webhook once per (shop, webhook id).
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested> {
        each!(self, s => s.ingest(event))
    }

    /// The event a webhook was stored as, if it was.
    pub async fn find_webhook(&self, shop: ShopId, webhook_id: String) -> Result<Option<Ingested>> {
        each!(self, s => s.find_webhook(shop, webhook_id))
    }

    /// A tenant's events, newest first.
    pub async fn list_events(
        &self,
        tenant: TenantId,
        state: Option<EventState>,
        limit: u32,
    ) -> Result<Vec<EventSummary>> {
        each!(self, s => s.list_events(tenant, state, limit))
    }

    pub async fn event(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<(EventSummary, Vec<HistoryEntry>)>> {
        each!(self, s => s.event(tenant, id))
    }

    /// Up to `want` pending events for delivery, oldest first, one per shop order, none of an
    /// order in `blocked_orders` or behind an event still fetching; counts an attempt on each.
    /// One whose stored row does not read back is dead-lettered instead, saying why.
    pub async fn next_deliveries(
        &self,
        tenant: TenantId,
        exclude: HashSet<i64>,
        blocked_orders: HashSet<(String, String)>,
        want: usize,
    ) -> Result<Vec<QueuedEvent>> {
        each!(self, s => s.next_deliveries(tenant, exclude, blocked_orders, want))
    }

    /// The agent applied the event; false when it was not pending.
    pub async fn ack(
        &self,
        tenant: TenantId,
        id: i64,
        mamut_ref: Option<String>,
        already_applied: bool,
    ) -> Result<bool> {
        let change = queue::acked(mamut_ref, already_applied);
        each!(self, s => s.transition(tenant, id, change))
    }

    /// A retryable failure: the event stays pending.
    pub async fn record_failure(&self, tenant: TenantId, id: i64, reason: String) -> Result<()> {
        let change = queue::retried(reason);
        each!(self, s => s.transition(tenant, id, change)).map(drop)
    }

    /// A permanent failure: the event moves to the dead-letter list.
    pub async fn dead_letter(&self, tenant: TenantId, id: i64, reason: String) -> Result<()> {
        let change = queue::dead_lettered(reason);
        each!(self, s => s.transition(tenant, id, change)).map(drop)
    }

    /// Puts a dead or held event back in the queue (a thin webhook back to fetching its
    /// order). Whether a held order is sound by now is the caller's to check.
    pub async fn replay(&self, tenant: TenantId, id: i64) -> Result<()> {
        each!(self, s => s.replay(tenant, id))
    }

    /// An event's stored body, and the one received if it was edited.
    pub async fn event_payload(&self, tenant: TenantId, id: i64) -> Result<Option<EventPayload>> {
        each!(self, s => s.event_payload(tenant, id))
    }

    /// Replaces the body of a dead or held event (an operator's correction), keeping the one
    /// received; `note` goes into its history.
    pub async fn edit_event(
        &self,
        tenant: TenantId,
        id: i64,
        payload: String,
        order_status: String,
        note: String,
    ) -> Result<()> {
        each!(self, s => s.edit_event(tenant, id, payload, order_status, note))
    }

    /// Claims thin webhooks whose order is due to be fetched (others skip them for a while).
    /// One whose stored row does not read back is dead-lettered instead, saying why.
    pub async fn due_fetches(&self, limit: usize) -> Result<Vec<FetchJob>> {
        each!(self, s => s.due_fetches(limit))
    }

    /// When the earliest waiting fetch is due, if one waits.
    pub async fn next_fetch_at(&self) -> Result<Option<Due>> {
        each!(self, s => s.next_fetch_at())
    }

    /// The order was fetched: the event holds the full webhook and joins the queue, or is
    /// ignored (its status by now is not a trigger) or held (the order is invalid).
    pub async fn enriched(&self, id: i64, payload: String, outcome: Enriched) -> Result<bool> {
        each!(self, s => s.enriched(id, payload, outcome))
    }

    /// Fetching the order failed: tried again at `retry_at`, or, without one, given up (the
    /// event is dead and holds back nothing; a replay fetches it again).
    pub async fn fetch_failed(
        &self,
        id: i64,
        reason: String,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        each!(self, s => s.fetch_failed(id, reason, retry_at))
    }

    /// Stores a push once per (tenant, push id) and fans it out; returns the shops with work.
    pub async fn insert_push(
        &self,
        tenant: TenantId,
        agent: AgentId,
        push_id: String,
        change: Change,
    ) -> Result<Vec<ShopId>> {
        let pushes = vec![(push_id, change)];
        each!(self, s => s.insert_pushes(tenant, agent, pushes))
    }

    /// [`Self::insert_push`] for several pushes in one transaction.
    pub async fn insert_pushes(
        &self,
        tenant: TenantId,
        agent: AgentId,
        pushes: Vec<(String, Change)>,
    ) -> Result<Vec<ShopId>> {
        each!(self, s => s.insert_pushes(tenant, agent, pushes))
    }

    pub async fn list_pushes(&self, tenant: TenantId, limit: u32) -> Result<Vec<PushSummary>> {
        each!(self, s => s.list_pushes(tenant, limit))
    }

    /// Claims a shop's pending rows that are due, oldest first.
    pub async fn due_dispatch(&self, shop: ShopId, limit: usize) -> Result<Vec<DispatchItem>> {
        each!(self, s => s.due_dispatch(shop, limit))
    }

    /// When the earliest pending row of `shop` that may go is due (perhaps already).
    pub async fn next_dispatch_at(&self, shop: ShopId) -> Result<Option<DateTime<Utc>>> {
        each!(self, s => s.next_dispatch_at(shop))
    }

    pub async fn dispatch_done(&self, sent: Vec<(i64, i64)>) -> Result<()> {
        each!(self, s => s.dispatch_done(sent))
    }

    pub async fn dispatch_failed(
        &self,
        sent: Vec<(i64, i64)>,
        failure: DispatchFailure,
        max_attempts: u32,
    ) -> Result<()> {
        each!(self, s => s.dispatch_failed(sent, failure, max_attempts))
    }

    pub async fn list_dispatch(
        &self,
        tenant: TenantId,
        state: Option<DispatchState>,
        limit: u32,
    ) -> Result<Vec<DispatchSummary>> {
        each!(self, s => s.list_dispatch(tenant, state, limit))
    }

    pub async fn replay_dispatch(&self, tenant: TenantId, id: i64) -> Result<ShopId> {
        each!(self, s => s.replay_dispatch(tenant, id))
    }

    /// The shops with pending dispatch rows; a stored shop id that does not read back is left
    /// out (and logged), so that the others still go.
    pub async fn shops_with_pending_dispatch(&self) -> Result<Vec<ShopId>> {
        each!(self, s => s.shops_with_pending_dispatch())
    }

    /// Takes (or renews) `lease` for `holder` for `ttl_ms`; `take_over` takes it even
    /// from another live holder. Returns whether `holder` holds it now.
    pub async fn acquire_lease(
        &self,
        lease: Lease,
        holder: String,
        ttl_ms: u64,
        take_over: bool,
    ) -> Result<bool> {
        each!(self, s => s.acquire_lease(lease, holder, ttl_ms, take_over))
    }

    pub async fn release_lease(&self, lease: Lease, holder: String) -> Result<()> {
        each!(self, s => s.release_lease(lease, holder))
    }

    /// Renews every lease whose holder starts with `prefix` (one instance's); returns the
    /// leases renewed, as (name, holder).
    pub async fn renew_leases(&self, prefix: String, ttl_ms: u64) -> Result<Vec<(Lease, String)>> {
        each!(self, s => s.renew_leases(prefix, ttl_ms))
    }

    /// Who holds `lease` now, if anyone does.
    pub async fn lease_holder(&self, lease: Lease) -> Result<Option<String>> {
        each!(self, s => s.lease_holder(lease))
    }

    /// How many of a tenant's events wait: for delivery, for their order to be fetched, or
    /// (held) for an operator.
    pub async fn queued_count(&self, tenant: TenantId) -> Result<u64> {
        each!(self, s => s.queued_count(tenant))
    }

    /// Which of `tenants` have events waiting for delivery.
    pub async fn pending_tenants(&self, tenants: Vec<TenantId>) -> Result<Vec<TenantId>> {
        each!(self, s => s.pending_tenants(tenants))
    }

    /// Deletes finished events (with their history), pushes and sent dispatch rows older than
    /// `before`, at most `limit` of each per call (call again while a count reaches `limit`).
    pub async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged> {
        each!(self, s => s.purge(before, limit))
    }

    /// Tells the other relay instances (a no-op on SQLite: there are none).
    pub async fn notify(&self, notice: Notice) -> Result<()> {
        each!(self, s => s.notify(notice))
    }
}
