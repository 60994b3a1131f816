//! The per-tenant event queue on SQLite: ingest, selection for delivery, ack, nack, dead
//! letters, replay and edits, each state change recorded in `event_history`. The rules are
//! [`crate::store::queue`]'s; this file holds their SQL. Fetching thin webhooks' orders is
//! [`super::fetch`]'s.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};
use shared::{ShopId, TenantId};

use super::{SqliteStore, parsed, stored_id, time};
use crate::store::queue::{self, DeliveryPicker, StoredEvent, Transition, Unreadable};
use crate::store::types::{
    EventPayload, EventSummary, HistoryEntry, Ingested, NewEvent, QueuedEvent,
};
use crate::store::{EventState, HistoryState, Result, now};

pub(super) const SUMMARY_COLUMNS: &str = "id, shop_id, webhook_id, order_id, order_status, state, attempts, \
                               mamut_ref, last_error, received_at, updated_at";

pub(super) fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        id: r.get(0)?,
        shop_id: parsed(r, 1, stored_id(ShopId::new, "shop id"))?,
        webhook_id: r.get(2)?,
        order_id: r.get(3)?,
        order_status: r.get(4)?,
        state: parsed(r, 5, EventState::stored)?,
        attempts: r.get(6)?,
        mamut_ref: r.get(7)?,
        last_error: r.get(8)?,
        received_at: time(r, 9)?,
        updated_at: time(r, 10)?,
    })
}

/// `(id, state)` of a stored webhook, as an [`Ingested`] duplicate.
fn ingested(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ingested> {
    Ok(Ingested {
        event_id: r.get(0)?,
        state: parsed(r, 1, EventState::stored)?,
        duplicate: true,
    })
}

const FIND_WEBHOOK: &str = "SELECT id, state FROM events WHERE shop_id = ?1 AND webhook_id = ?2";

pub(super) fn record(
    conn: &Connection,
    event_id: i64,
    state: HistoryState,
    detail: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO event_history (event_id, at, state, detail) VALUES (?1, ?2, ?3, ?4)",
        params![event_id, now(), state.as_str(), detail],
    )?;
    Ok(())
}

/// Applies `change` to a tenant's event (any tenant's with `tenant` `None`) and records it;
/// whether the event was in `change.from`.
pub(super) fn transition(
    conn: &Connection,
    tenant: Option<&TenantId>,
    id: i64,
    change: &Transition,
) -> Result<bool> {
    let changed = conn.execute(
        "UPDATE events SET state = ?3, last_error = ?4,
                mamut_ref = CASE WHEN ?5 THEN ?6 ELSE mamut_ref END, updated_at = ?7
         WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2) AND state = ?8",
        params![
            id,
            tenant.map(TenantId::as_str),
            change.to.as_str(),
            change.last_error,
            change.mamut_ref.is_some(),
            change.mamut_ref.clone().flatten(),
            now(),
            change.from.as_str(),
        ],
    )?;
    if changed == 1 {
        record(conn, id, change.history, &change.detail)?;
    }
    Ok(changed == 1)
}

/// The state and body of a tenant's event, if it has one of that id.
fn state_of(conn: &Connection, tenant: &TenantId, id: i64) -> Result<Option<(EventState, String)>> {
    Ok(conn
        .query_row(
            "SELECT state, payload FROM events WHERE id = ?1 AND tenant_id = ?2",
            params![id, tenant.as_str()],
            |r| Ok((parsed(r, 0, EventState::stored)?, r.get(1)?)),
        )
        .optional()?)
}

impl SqliteStore {
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested> {
        self.db
            .call(move |conn| {
                let at = now();
                let inserted: Option<i64> = conn
                    .query_row(
                        "INSERT INTO events (tenant_id, shop_id, webhook_id, order_id, order_status,
                                             document_type, payload, state, received_at, updated_at,
                                             last_error, received_headers)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)
                         ON CONFLICT (shop_id, webhook_id) DO NOTHING RETURNING id",
                        params![
                            event.tenant_id.as_str(),
                            event.shop_id.as_str(),
                            event.webhook_id,
                            event.order_id,
                            event.order_status,
                            event.document_type.as_str(),
                            event.payload,
                            event.state.as_str(),
                            at,
                            event.hold_reason,
                            event.received_headers
                        ],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(event_id) = inserted else {
                    let params = params![event.shop_id.as_str(), event.webhook_id];
                    return Ok(conn.query_row(FIND_WEBHOOK, params, ingested)?);
                };
                let detail = event.received_detail();
                record(conn, event_id, event.state.into(), &detail)?;
                Ok(Ingested {
                    event_id,
                    state: event.state,
                    duplicate: false,
                })
            })
            .await
    }

    pub async fn find_webhook(&self, shop: ShopId, webhook_id: String) -> Result<Option<Ingested>> {
        self.db
            .call(move |conn| {
                let params = params![shop.as_str(), webhook_id];
                Ok(conn.query_row(FIND_WEBHOOK, params, ingested).optional()?)
            })
            .await
    }

    pub async fn list_events(
        &self,
        tenant: TenantId,
        state: Option<EventState>,
        limit: u32,
    ) -> Result<Vec<EventSummary>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT {SUMMARY_COLUMNS} FROM events WHERE tenant_id = ?1
                     AND (?2 IS NULL OR state = ?2) ORDER BY id DESC LIMIT ?3"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(
                    params![tenant.as_str(), state.map(EventState::as_str), limit],
                    summary,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn event(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<(EventSummary, Vec<HistoryEntry>)>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT {SUMMARY_COLUMNS} FROM events WHERE tenant_id = ?1 AND id = ?2"
                );
                let Some(event) = conn
                    .query_row(&sql, params![tenant.as_str(), id], summary)
                    .optional()?
                else {
                    return Ok(None);
                };
                let mut stmt = conn.prepare_cached(
                    "SELECT at, state, detail FROM event_history WHERE event_id = ?1 ORDER BY id",
                )?;
                let history = stmt
                    .query_map([id], |r| {
                        Ok(HistoryEntry {
                            at: time(r, 0)?,
                            state: parsed(r, 1, HistoryState::stored)?,
                            detail: r.get(2)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some((event, history)))
            })
            .await
    }

    pub async fn next_deliveries(
        &self,
        tenant: TenantId,
        exclude: HashSet<i64>,
        blocked_orders: HashSet<(String, String)>,
        want: usize,
    ) -> Result<Vec<QueuedEvent>> {
        self.db
            .call(move |conn| {
                let mut picker = DeliveryPicker::new(exclude, blocked_orders, want);
                let mut stmt = conn.prepare_cached(
                    "SELECT id, shop_id, order_id, document_type, payload, attempts FROM events
                     WHERE tenant_id = ?1 AND state = 'pending' AND id > ?2
                       AND NOT EXISTS (SELECT 1 FROM events earlier
                                       WHERE earlier.shop_id = events.shop_id
                                         AND earlier.order_id = events.order_id
                                         AND earlier.state = 'fetching'
                                         AND earlier.id < events.id)
                     ORDER BY id LIMIT ?3",
                )?;
                while let Some(after) = picker.next_page() {
                    let page = stmt
                        .query_map(params![tenant.as_str(), after, queue::PAGE], |r| {
                            Ok(StoredEvent {
                                id: r.get(0)?,
                                shop_id: r.get(1)?,
                                order_id: r.get(2)?,
                                document_type: r.get(3)?,
                                payload: r.get(4)?,
                                attempts: r.get(5)?,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    picker.offer(page);
                }
                let (selected, unreadable) = picker.picked();
                for Unreadable { id, change } in unreadable {
                    transition(conn, Some(&tenant), id, &change)?;
                }
                let mut bump = conn.prepare_cached(
                    "UPDATE events SET attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
                )?;
                let at = now();
                for event in &selected {
                    bump.execute(params![event.id, at])?;
                }
                Ok(selected)
            })
            .await
    }

    /// Applies an outcome to a tenant's event; whether it was in `change.from`.
    pub(crate) async fn transition(
        &self,
        tenant: TenantId,
        id: i64,
        change: Transition,
    ) -> Result<bool> {
        self.db
            .call(move |conn| transition(conn, Some(&tenant), id, &change))
            .await
    }

    pub async fn replay(&self, tenant: TenantId, id: i64) -> Result<()> {
        self.db
            .call(move |conn| {
                let state = queue::replay(id, state_of(conn, &tenant, id)?)?;
                conn.execute(
                    "UPDATE events SET state = ?2, next_attempt_at = NULL, updated_at = ?3
                     WHERE id = ?1",
                    params![id, state.as_str(), now()],
                )?;
                record(conn, id, state.into(), "replayed by an operator")
            })
            .await
    }

    pub async fn event_payload(&self, tenant: TenantId, id: i64) -> Result<Option<EventPayload>> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT payload, original_payload FROM events
                         WHERE id = ?1 AND tenant_id = ?2",
                        params![id, tenant.as_str()],
                        |r| {
                            Ok(EventPayload {
                                payload: r.get(0)?,
                                original: r.get(1)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }

    pub async fn edit_event(
        &self,
        tenant: TenantId,
        id: i64,
        payload: String,
        order_status: String,
        note: String,
    ) -> Result<()> {
        self.db
            .call(move |conn| {
                let found = state_of(conn, &tenant, id)?;
                queue::operator_may(id, found.map(|(state, _)| state), "edited")?;
                conn.execute(
                    "UPDATE events SET original_payload = COALESCE(original_payload, payload),
                            payload = ?2, order_status = ?3, updated_at = ?4
                     WHERE id = ?1",
                    params![id, payload, order_status, now()],
                )?;
                record(conn, id, HistoryState::Edited, &note)
            })
            .await
    }
}
