//! The per-tenant event queue: ingest, selection for delivery, ack, nack, dead letters,
//! replay, each state change recorded in `event_history`; and the pushes agents send.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};
use shared::domain::Change;
use shared::{AgentId, ShopId, TenantId};

use super::SqliteStore;
use crate::store::types::{
    Enriched, EventPayload, EventState, EventSummary, FetchJob, HistoryEntry, Ingested, NewEvent,
    PushSummary, QueuedEvent, encode_pushes, operator_may,
};
use crate::store::{StoreError, now, timestamp};

const SUMMARY_COLUMNS: &str = "id, shop_id, webhook_id, order_id, order_status, state, attempts, \
                               mamut_ref, last_error, received_at, updated_at";

fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    let state: String = row.get(5)?;
    Ok(EventSummary {
        id: row.get(0)?,
        shop_id: row.get(1)?,
        webhook_id: row.get(2)?,
        order_id: row.get(3)?,
        order_status: row.get(4)?,
        state: EventState::parse(&state).unwrap_or(EventState::Pending),
        attempts: row.get(6)?,
        mamut_ref: row.get(7)?,
        last_error: row.get(8)?,
        received_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

fn record(
    conn: &Connection,
    event_id: i64,
    state: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO event_history (event_id, at, state, detail) VALUES (?1, ?2, ?3, ?4)",
        params![event_id, now(), state, detail],
    )?;
    Ok(())
}

/// The state of a tenant's event, if it has one of that id.
fn state_of(conn: &Connection, tenant: &TenantId, id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT state FROM events WHERE id = ?1 AND tenant_id = ?2",
            params![id, tenant.as_str()],
            |r| r.get(0),
        )
        .optional()?)
}

impl SqliteStore {
    /// Stores a webhook once per (shop, webhook id).
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        self.db
            .call(move |conn| {
                let at = now();
                let inserted: Option<i64> = conn
                    .query_row(
                        "INSERT INTO events (tenant_id, shop_id, webhook_id, order_id, order_status,
                                             document_type, payload, state, received_at, updated_at,
                                             last_error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)
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
                            event.hold_reason
                        ],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(event_id) = inserted {
                    record(
                        conn,
                        event_id,
                        event.state.as_str(),
                        Some(&event.received_detail()),
                    )?;
                    return Ok(Ingested {
                        event_id,
                        state: event.state,
                        duplicate: false,
                    });
                }
                let (event_id, state): (i64, String) = conn.query_row(
                    "SELECT id, state FROM events WHERE shop_id = ?1 AND webhook_id = ?2",
                    params![event.shop_id.as_str(), event.webhook_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let state = EventState::parse(&state).unwrap_or(EventState::Pending);
                Ok(Ingested {
                    event_id,
                    state,
                    duplicate: true,
                })
            })
            .await
    }

    pub async fn find_webhook(
        &self,
        shop: ShopId,
        webhook_id: String,
    ) -> Result<Option<Ingested>, StoreError> {
        self.db
            .call(move |conn| {
                let found: Option<(i64, String)> = conn
                    .query_row(
                        "SELECT id, state FROM events WHERE shop_id = ?1 AND webhook_id = ?2",
                        params![shop.as_str(), webhook_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                Ok(found.map(|(event_id, state)| Ingested {
                    event_id,
                    state: EventState::parse(&state).unwrap_or(EventState::Pending),
                    duplicate: true,
                }))
            })
            .await
    }

    /// Newest first.
    pub async fn list_events(
        &self,
        tenant: TenantId,
        state: Option<EventState>,
        limit: u32,
    ) -> Result<Vec<EventSummary>, StoreError> {
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
    ) -> Result<Option<(EventSummary, Vec<HistoryEntry>)>, StoreError> {
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
                            at: r.get(0)?,
                            state: r.get(1)?,
                            detail: r.get(2)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some((event, history)))
            })
            .await
    }

    /// Selects up to `want` pending events of `tenant` for delivery, oldest first, at most one
    /// per shop order and none for an order in `blocked_orders` (an earlier event of that
    /// order is still in flight). Events in `exclude` are in flight already. Counts an attempt
    /// on each selected event.
    pub async fn next_deliveries(
        &self,
        tenant: TenantId,
        exclude: HashSet<i64>,
        mut blocked_orders: HashSet<(String, String)>,
        want: usize,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        const PAGE: i64 = 500;
        const MAX_SCAN: usize = 20_000;
        self.db
            .call(move |conn| {
                let mut selected = Vec::new();
                let mut after = 0i64;
                let mut scanned = 0usize;
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
                'pages: while selected.len() < want && scanned < MAX_SCAN {
                    let page = stmt
                        .query_map(params![tenant.as_str(), after, PAGE], |r| {
                            let event = QueuedEvent {
                                id: r.get(0)?,
                                shop_id: r.get(1)?,
                                order_id: r.get(2)?,
                                document_type: r.get(3)?,
                                payload: r.get(4)?,
                                attempt: r.get::<_, i64>(5)? + 1,
                            };
                            Ok(event)
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    let full_page = page.len() as i64 == PAGE;
                    for event in page {
                        scanned += 1;
                        after = event.id;
                        let key = (event.shop_id.clone(), event.order_id.clone());
                        // An event still being fetched holds back the later ones of its order.
                        if !blocked_orders.insert(key) || exclude.contains(&event.id) {
                            continue;
                        }
                        selected.push(event);
                        if selected.len() == want {
                            break 'pages;
                        }
                    }
                    if !full_page {
                        break;
                    }
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

    /// The agent applied the event. Returns false when it was not pending (already acked,
    /// or not this tenant's).
    pub async fn ack(
        &self,
        tenant: TenantId,
        id: i64,
        mamut_ref: Option<String>,
        already_applied: bool,
    ) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE events SET state = 'delivered', mamut_ref = ?3, last_error = NULL,
                            updated_at = ?4
                     WHERE id = ?1 AND tenant_id = ?2 AND state = 'pending'",
                    params![id, tenant.as_str(), mamut_ref, now()],
                )?;
                if changed == 1 {
                    let detail = match (&mamut_ref, already_applied) {
                        (Some(r), false) => format!("applied in Mamut as {r}"),
                        (Some(r), true) => format!("already in Mamut as {r}"),
                        (None, _) => "applied in Mamut".to_owned(),
                    };
                    record(conn, id, "delivered", Some(&detail))?;
                }
                Ok(changed == 1)
            })
            .await
    }

    /// A retryable failure: the event stays pending and is redelivered later.
    pub async fn record_failure(
        &self,
        tenant: TenantId,
        id: i64,
        reason: String,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE events SET last_error = ?3, updated_at = ?4
                     WHERE id = ?1 AND tenant_id = ?2 AND state = 'pending'",
                    params![id, tenant.as_str(), reason, now()],
                )?;
                if changed == 1 {
                    record(conn, id, "retry", Some(&reason))?;
                }
                Ok(())
            })
            .await
    }

    /// A permanent failure: the event moves to the dead-letter list.
    pub async fn dead_letter(
        &self,
        tenant: TenantId,
        id: i64,
        reason: String,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE events SET state = 'dead', last_error = ?3, updated_at = ?4
                     WHERE id = ?1 AND tenant_id = ?2 AND state = 'pending'",
                    params![id, tenant.as_str(), reason, now()],
                )?;
                if changed == 1 {
                    record(conn, id, "dead", Some(&reason))?;
                }
                Ok(())
            })
            .await
    }

    /// Puts a dead event back in the queue.
    pub async fn replay(&self, tenant: TenantId, id: i64) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                operator_may(id, state_of(conn, &tenant, id)?.as_deref(), "replayed")?;
                // A thin webhook (no order in it yet) goes back to fetching its order.
                let state: String = conn.query_row(
                    "UPDATE events SET state = CASE WHEN json_type(payload, '$.order') = 'object'
                                                THEN 'pending' ELSE 'fetching' END,
                            next_attempt_at = NULL, updated_at = ?2
                     WHERE id = ?1 RETURNING state",
                    params![id, now()],
                    |r| r.get(0),
                )?;
                record(conn, id, &state, Some("replayed by an operator"))
            })
            .await
    }

    pub async fn event_payload(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<EventPayload>, StoreError> {
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
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                operator_may(id, state_of(conn, &tenant, id)?.as_deref(), "edited")?;
                conn.execute(
                    "UPDATE events SET original_payload = COALESCE(original_payload, payload),
                            payload = ?2, order_status = ?3, updated_at = ?4
                     WHERE id = ?1",
                    params![id, payload, order_status, now()],
                )?;
                record(conn, id, "edited", Some(&note))
            })
            .await
    }

    /// Claims the thin webhooks whose order is due to be fetched, oldest first: they are not
    /// handed out again for a minute (unless their fetch is recorded earlier).
    pub async fn due_fetches(&self, limit: usize) -> Result<Vec<FetchJob>, StoreError> {
        self.db
            .call(move |conn| {
                let at = chrono::Utc::now();
                let mut stmt = conn.prepare_cached(
                    "SELECT id, tenant_id, shop_id, order_id, payload FROM events
                     WHERE state = 'fetching'
                       AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
                     ORDER BY id LIMIT ?2",
                )?;
                let jobs = stmt
                    .query_map(params![timestamp(at), limit as i64], |r| {
                        Ok(FetchJob {
                            id: r.get(0)?,
                            tenant_id: r.get(1)?,
                            shop_id: r.get(2)?,
                            order_id: r.get(3)?,
                            payload: r.get(4)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let claimed_until = timestamp(at + chrono::Duration::seconds(60));
                let mut claim =
                    conn.prepare_cached("UPDATE events SET next_attempt_at = ?2 WHERE id = ?1")?;
                for job in &jobs {
                    claim.execute(params![job.id, claimed_until])?;
                }
                Ok(jobs)
            })
            .await
    }

    /// When the earliest waiting fetch is due, if any fetch waits.
    pub async fn next_fetch_at(&self) -> Result<Option<String>, StoreError> {
        self.db
            .call(move |conn| {
                let (count, at): (i64, Option<String>) = conn.query_row(
                    "SELECT COUNT(*), MIN(COALESCE(next_attempt_at, '')) FROM events
                     WHERE state = 'fetching'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok(if count == 0 { None } else { at })
            })
            .await
    }

    /// The order of a thin webhook was fetched: the event holds the full webhook now and
    /// joins the delivery queue.
    pub async fn enriched(
        &self,
        id: i64,
        payload: String,
        outcome: Enriched,
    ) -> Result<bool, StoreError> {
        let (state, detail, last_error) = outcome.outcome();
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE events SET state = ?4, payload = ?2, next_attempt_at = NULL,
                            last_error = ?5, updated_at = ?3
                     WHERE id = ?1 AND state = 'fetching'",
                    params![id, payload, now(), state, last_error],
                )?;
                if changed == 1 {
                    record(conn, id, state, Some(&detail))?;
                }
                Ok(changed == 1)
            })
            .await
    }

    /// Fetching the order failed; it is tried again at `retry_at`.
    pub async fn fetch_failed(
        &self,
        id: i64,
        reason: String,
        retry_at: Option<String>,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE events SET last_error = ?2, next_attempt_at = ?3, updated_at = ?4,
                            state = CASE WHEN ?3 IS NULL THEN 'dead' ELSE state END
                     WHERE id = ?1 AND state = 'fetching'",
                    params![id, reason, retry_at, now()],
                )?;
                if changed == 1 {
                    let state = if retry_at.is_some() { "retry" } else { "dead" };
                    record(conn, id, state, Some(&reason))?;
                }
                Ok(())
            })
            .await
    }

    /// Stores a push from an agent once per (tenant, push id) and, the first time, fans it
    /// out to the shops whose rules take it. Returns those shops.
    pub async fn insert_push(
        &self,
        tenant: TenantId,
        agent: AgentId,
        push_id: String,
        change: Change,
    ) -> Result<Vec<ShopId>, StoreError> {
        self.insert_pushes(tenant, agent, vec![(push_id, change)])
            .await
    }

    /// Stores pushes in one transaction, each once per (tenant, push id), and fans out the
    /// new ones; returns the shops that got work (each once).
    pub async fn insert_pushes(
        &self,
        tenant: TenantId,
        agent: AgentId,
        pushes: Vec<(String, Change)>,
    ) -> Result<Vec<ShopId>, StoreError> {
        let encoded = encode_pushes(pushes)?;
        self.db
            .call(move |conn| {
                let shops = super::tenants::read_shops(conn, Some(&tenant))?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO pushes (tenant_id, agent_id, push_id, kind, payload, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, push_id) DO NOTHING",
                )?;
                let at = now();
                let mut woken: Vec<ShopId> = Vec::new();
                for (push_id, change, payload) in &encoded {
                    let inserted = insert.execute(params![
                        tenant.as_str(),
                        agent.as_str(),
                        push_id,
                        change.kind(),
                        payload,
                        at
                    ])?;
                    if inserted == 0 {
                        continue;
                    }
                    for shop in
                        super::dispatch::fan_out(conn, &tenant, &shops, push_id, change, payload)?
                    {
                        if !woken.contains(&shop) {
                            woken.push(shop);
                        }
                    }
                }
                Ok(woken)
            })
            .await
    }

    /// A tenant's pushes, newest first.
    pub async fn list_pushes(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<PushSummary>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, agent_id, push_id, kind, payload, received_at FROM pushes
                     WHERE tenant_id = ?1 ORDER BY id DESC LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![tenant.as_str(), limit], |r| {
                    let payload: String = r.get(4)?;
                    Ok(PushSummary {
                        id: r.get(0)?,
                        agent_id: r.get(1)?,
                        push_id: r.get(2)?,
                        kind: r.get(3)?,
                        change: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                        received_at: r.get(5)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}
