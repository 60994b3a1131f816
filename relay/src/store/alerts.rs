//! The store's side of alerts ([`crate::alerts`]): each tenant's alert settings (kept as the
//! JSON the alerts module reads), the alerts raised and resolved, the daily digests sent, and
//! the facts the alert conditions and the digest are computed from.
//!
//! Opening an alert is idempotent across instances: at most one alert per tenant and
//! condition is open (a unique index), so of several instances that see the same condition,
//! one `INSERT` wins and only that instance sends it; resolving is an `UPDATE … WHERE
//! resolved_at IS NULL` whose one winner sends the "resolved".

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::{ShopId, TenantId};

use super::any::each;
use super::{AnyStore, Result};

/// One alert raised for a tenant: open while `resolved_at` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRecord {
    pub id: i64,
    pub tenant_id: TenantId,
    /// What raised it: `dead_letters`, `agent_offline`, `queue_age`, `shop_refusing:<shop>`.
    pub condition: String,
    /// What was seen when it opened, in words.
    pub detail: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A tenant's agents as the offline condition sees them (from `agent_sessions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPresence {
    /// Whether any agent of the tenant ever connected (a tenant that never had one is not
    /// alerted).
    pub ever_connected: bool,
    /// The latest `last_seen_at` of the sessions not ended.
    pub open_last_seen: Option<DateTime<Utc>>,
    /// The latest `ended_at`.
    pub last_ended: Option<DateTime<Utc>>,
}

/// A shop that refuses what the relay sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopRefusal {
    pub shop_id: ShopId,
    /// The most failures in a row of one of its pending changes.
    pub failures_in_a_row: u32,
    /// Its changes that went to the dead-letter list since the time asked about.
    pub dead_recently: u64,
}

/// What the alert conditions of one tenant are evaluated from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFacts {
    /// Events in the dead-letter list now.
    pub dead_letters: u64,
    /// When the oldest event waiting for delivery was received.
    pub oldest_pending: Option<DateTime<Utc>>,
    pub agents: AgentPresence,
    /// Shops whose changes failed `failures` times in a row, or went dead since `since`.
    pub refusing_shops: Vec<ShopRefusal>,
}

/// A tenant's failures in a period, for the daily digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DigestCounts {
    /// Events that moved to the dead-letter list in the period (and are still there).
    pub dead_letters: u64,
    /// Orders held as invalid in the period (and still held).
    pub held_orders: u64,
    /// Changes to shops that went dead in the period (and are still dead).
    pub dead_dispatch: u64,
    /// Alerts opened in the period.
    pub alerts_opened: u64,
}

impl DigestCounts {
    /// Whether there is anything to tell.
    pub fn is_empty(&self) -> bool {
        *self == DigestCounts::default()
    }
}

impl AnyStore {
    /// A tenant's alert settings (JSON), if it has any.
    pub async fn alert_settings(&self, tenant: TenantId) -> Result<Option<String>> {
        each!(self, s => s.alert_settings(tenant))
    }

    /// Stores a tenant's alert settings (JSON); `NotFound` without the tenant.
    pub async fn put_alert_settings(&self, tenant: TenantId, settings: String) -> Result<()> {
        each!(self, s => s.put_alert_settings(tenant, settings))
    }

    /// Every tenant with alert settings, with them, by tenant id.
    pub async fn all_alert_settings(&self) -> Result<Vec<(TenantId, String)>> {
        each!(self, s => s.all_alert_settings())
    }

    /// Opens an alert unless one is open for (tenant, condition): the new alert when this
    /// call opened it (its caller sends it), `None` when one was open already.
    pub async fn open_alert(
        &self,
        tenant: TenantId,
        condition: String,
        detail: String,
    ) -> Result<Option<AlertRecord>> {
        each!(self, s => s.open_alert(tenant, condition, detail))
    }

    /// Resolves the open alert of (tenant, condition): the alert when this call resolved it
    /// (its caller sends the "resolved"), `None` when none was open.
    pub async fn resolve_alert(
        &self,
        tenant: TenantId,
        condition: String,
    ) -> Result<Option<AlertRecord>> {
        each!(self, s => s.resolve_alert(tenant, condition))
    }

    /// A tenant's alerts, open or `open_only`, newest first, at most `limit`.
    pub async fn alerts(
        &self,
        tenant: TenantId,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<AlertRecord>> {
        each!(self, s => s.alerts(tenant, open_only, limit))
    }

    /// Claims the digest of (tenant, day): true for the one caller that claimed it.
    pub async fn claim_digest(&self, tenant: TenantId, day: String) -> Result<bool> {
        each!(self, s => s.claim_digest(tenant, day))
    }

    /// Gives back a claimed digest that could not be sent, so that it is tried again.
    pub async fn release_digest(&self, tenant: TenantId, day: String) -> Result<()> {
        each!(self, s => s.release_digest(tenant, day))
    }

    /// What a tenant's alert conditions are evaluated from: shops count as refusing with a
    /// pending change failed `failures` times in a row or a change gone dead since `since`.
    pub async fn alert_facts(
        &self,
        tenant: TenantId,
        failures: u32,
        since: DateTime<Utc>,
    ) -> Result<AlertFacts> {
        each!(self, s => s.alert_facts(tenant, failures, since))
    }

    /// A tenant's failures since `since`, for the daily digest.
    pub async fn digest_counts(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<DigestCounts> {
        each!(self, s => s.digest_counts(tenant, since))
    }
}
