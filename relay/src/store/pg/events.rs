//! The per-tenant event queue on PostgreSQL: selection for delivery, ack, nack, dead letters,
//! replay and edits, each state change recorded in `event_history`. The rules are
//! [`crate::store::queue`]'s; this file holds their SQL. Storing webhooks is [`super::ingest`]'s,
//! fetching thin webhooks' orders [`super::fetch`]'s.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use shared::{ShopId, TenantId};

use super::{PgStore, col, parsed, stored_id};
use crate::store::queue::{self, DeliveryPicker, StoredEvent, Transition, Unreadable};
use crate::store::types::{EventPayload, EventSummary, HistoryEntry, Ingested, QueuedEvent};
use crate::store::{EventState, HistoryState, Result};

pub(super) const FIND_WEBHOOK: &str =
    "SELECT id, state FROM events WHERE shop_id = $1 AND webhook_id = $2";

/// `(id, state)` of a stored webhook, as an [`Ingested`] duplicate.
pub(super) fn ingested(r: &tokio_postgres::Row) -> Result<Ingested> {
    Ok(Ingested {
        event_id: col(r, 0)?,
        state: parsed(r, 1, EventState::stored)?,
        duplicate: true,
    })
}

pub(super) const SUMMARY_COLUMNS: &str = "id, shop_id, webhook_id, order_id, order_status, state, attempts, \
                               mamut_ref, last_error, received_at, updated_at";

pub(super) fn summary(r: &tokio_postgres::Row) -> Result<EventSummary> {
    Ok(EventSummary {
        id: col(r, 0)?,
        shop_id: parsed(r, 1, stored_id(ShopId::new, "shop id"))?,
        webhook_id: col(r, 2)?,
        order_id: col(r, 3)?,
        order_status: col(r, 4)?,
        state: parsed(r, 5, EventState::stored)?,
        attempts: col(r, 6)?,
        mamut_ref: col(r, 7)?,
        last_error: col(r, 8)?,
        received_at: col(r, 9)?,
        updated_at: col(r, 10)?,
    })
}

/// The state and body of a tenant's event, if it has one of that id, locked until the
/// transaction ends.
async fn locked_state(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<(EventState, String)>> {
    tx.query_opt(
        "SELECT state, payload FROM events WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        &[&id, &tenant.as_str()],
    )
    .await?
    .map(|r| Ok((parsed(&r, 0, EventState::stored)?, col(&r, 1)?)))
    .transpose()
}

pub(super) async fn record(
    client: &impl GenericClient,
    event_id: i64,
    state: HistoryState,
    detail: &str,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO event_history (event_id, at, state, detail) VALUES ($1, now(), $2, $3)",
            &[&event_id, &state.as_str(), &detail],
        )
        .await?;
    Ok(())
}

/// Applies `change` to a tenant's event (any tenant's with `tenant` `None`) and records it;
/// whether the event was in `change.from`.
pub(super) async fn transition(
    client: &impl GenericClient,
    tenant: Option<&TenantId>,
    id: i64,
    change: &Transition,
) -> Result<bool> {
    let changed = client
        .execute(
            "UPDATE events SET state = $3, last_error = $4,
                    mamut_ref = CASE WHEN $5 THEN $6 ELSE mamut_ref END, updated_at = now()
             WHERE id = $1 AND ($2::TEXT IS NULL OR tenant_id = $2) AND state = $7",
            &[
                &id,
                &tenant.map(TenantId::as_str),
                &change.to.as_str(),
                &change.last_error,
                &change.mamut_ref.is_some(),
                &change.mamut_ref.clone().flatten(),
                &change.from.as_str(),
            ],
        )
        .await?;
    if changed == 1 {
        record(client, id, change.history, &change.detail).await?;
    }
    Ok(changed == 1)
}

impl PgStore {
    pub async fn find_webhook(&self, shop: ShopId, webhook_id: String) -> Result<Option<Ingested>> {
        let row = self
            .client()
            .await?
            .query_opt(FIND_WEBHOOK, &[&shop.as_str(), &webhook_id])
            .await?;
        row.map(|r| ingested(&r)).transpose()
    }

    pub async fn list_events(
        &self,
        tenant: TenantId,
        state: Option<EventState>,
        limit: u32,
    ) -> Result<Vec<EventSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM events WHERE tenant_id = $1
             AND ($2::TEXT IS NULL OR state = $2) ORDER BY id DESC LIMIT $3"
        );
        let state = state.map(EventState::as_str);
        let rows = self
            .client()
            .await?
            .query(&sql, &[&tenant.as_str(), &state, &i64::from(limit)])
            .await?;
        rows.iter().map(summary).collect()
    }

    pub async fn event(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<(EventSummary, Vec<HistoryEntry>)>> {
        let client = self.client().await?;
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM events WHERE tenant_id = $1 AND id = $2");
        let Some(row) = client.query_opt(&sql, &[&tenant.as_str(), &id]).await? else {
            return Ok(None);
        };
        let history = client
            .query(
                "SELECT at, state, detail FROM event_history WHERE event_id = $1 ORDER BY id",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(HistoryEntry {
                    at: col(r, 0)?,
                    state: parsed(r, 1, HistoryState::stored)?,
                    detail: col(r, 2)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some((summary(&row)?, history)))
    }

    pub async fn next_deliveries(
        &self,
        tenant: TenantId,
        exclude: HashSet<i64>,
        blocked_orders: HashSet<(String, String)>,
        want: usize,
    ) -> Result<Vec<QueuedEvent>> {
        let mut client = self.client().await?;
        let mut picker = DeliveryPicker::new(exclude, blocked_orders, want);
        while let Some(after) = picker.next_page() {
            let page = client
                .query(
                    "SELECT id, shop_id, order_id, document_type, payload, attempts FROM events
                     WHERE tenant_id = $1 AND state = 'pending' AND id > $2
                       AND NOT EXISTS (SELECT 1 FROM events earlier
                                       WHERE earlier.shop_id = events.shop_id
                                         AND earlier.order_id = events.order_id
                                         AND earlier.state = 'fetching'
                                         AND earlier.id < events.id)
                     ORDER BY id LIMIT $3",
                    &[&tenant.as_str(), &after, &queue::PAGE],
                )
                .await?;
            let page = page
                .iter()
                .map(|r| {
                    Ok(StoredEvent {
                        id: col(r, 0)?,
                        shop_id: col(r, 1)?,
                        order_id: col(r, 2)?,
                        document_type: col(r, 3)?,
                        payload: col(r, 4)?,
                        attempts: col(r, 5)?,
                    })
                })
                .collect::<Result<_>>()?;
            picker.offer(page);
        }
        let (selected, unreadable) = picker.picked();
        if !unreadable.is_empty() {
            let tx = client.transaction().await?;
            for Unreadable { id, change } in unreadable {
                transition(&tx, Some(&tenant), id, &change).await?;
            }
            tx.commit().await?;
        }
        if !selected.is_empty() {
            let ids: Vec<i64> = selected.iter().map(|e| e.id).collect();
            client
                .execute(
                    "UPDATE events SET attempts = attempts + 1, updated_at = now()
                     WHERE id = ANY($1)",
                    &[&ids],
                )
                .await?;
        }
        Ok(selected)
    }

    /// Applies an outcome to a tenant's event, in a transaction of its own; whether it was in
    /// `change.from`.
    pub(crate) async fn transition(
        &self,
        tenant: TenantId,
        id: i64,
        change: Transition,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = transition(&tx, Some(&tenant), id, &change).await?;
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn replay(&self, tenant: TenantId, id: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let state = queue::replay(id, locked_state(&tx, &tenant, id).await?)?;
        tx.execute(
            "UPDATE events SET state = $2, next_attempt_at = NULL, updated_at = now()
             WHERE id = $1",
            &[&id, &state.as_str()],
        )
        .await?;
        record(&tx, id, state.into(), "replayed by an operator").await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn event_payload(&self, tenant: TenantId, id: i64) -> Result<Option<EventPayload>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT payload, original_payload FROM events WHERE id = $1 AND tenant_id = $2",
                &[&id, &tenant.as_str()],
            )
            .await?;
        row.map(|r| {
            Ok(EventPayload {
                payload: col(&r, 0)?,
                original: col(&r, 1)?,
            })
        })
        .transpose()
    }

    pub async fn edit_event(
        &self,
        tenant: TenantId,
        id: i64,
        payload: String,
        order_status: String,
        note: String,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let found = locked_state(&tx, &tenant, id).await?;
        queue::operator_may(id, found.map(|(state, _)| state), "edited")?;
        tx.execute(
            "UPDATE events SET original_payload = COALESCE(original_payload, payload),
                    payload = $2, order_status = $3, updated_at = now()
             WHERE id = $1",
            &[&id, &payload, &order_status],
        )
        .await?;
        record(&tx, id, HistoryState::Edited, &note).await?;
        tx.commit().await?;
        Ok(())
    }
}
