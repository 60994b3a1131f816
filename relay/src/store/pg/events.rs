//! The per-tenant event queue, its history, and pushes, on PostgreSQL.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use shared::domain::Change;
use shared::{AgentId, ShopId, TenantId};
use tokio::sync::{mpsc, oneshot};

use super::{PgStore, parse_time, text};
use crate::store::StoreError;
use crate::store::types::{
    Enriched, EventPayload, EventState, EventSummary, FetchJob, HistoryEntry, Ingested, NewEvent,
    PushSummary, QueuedEvent, encode_pushes, operator_may,
};

/// How long a claimed fetch is left to the instance that claimed it.
const FETCH_CLAIM_SECS: f64 = 60.0;

/// The event and its first history entry in one statement, or nothing for a duplicate.
const INGEST: &str = "WITH new AS (
        INSERT INTO events (tenant_id, shop_id, webhook_id, order_id, order_status,
                            document_type, payload, state, received_at, updated_at, last_error)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now(), $10)
        ON CONFLICT (shop_id, webhook_id) DO NOTHING RETURNING id)
     INSERT INTO event_history (event_id, at, state, detail)
     SELECT id, now(), $8, $9 FROM new RETURNING event_id";

/// Most webhooks committed in one transaction.
const INGEST_BATCH: usize = 256;

/// Transactions of webhooks in flight at once (each on its own connection).
const INGEST_PARALLEL: usize = 4;

/// A webhook waiting to be committed with others.
pub(super) struct IngestJob {
    event: NewEvent,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

/// Commits waiting webhooks together, like the SQLite store's group commit: everything that
/// waits (up to [`INGEST_BATCH`]) goes into one transaction, its statements pipelined on one
/// connection, so a burst costs one WAL flush instead of one per webhook. If the transaction
/// fails, each webhook is tried on its own (storing is idempotent), so one bad row cannot
/// fail the others.
pub(super) async fn ingest_batches(pool: Pool, mut jobs: mpsc::Receiver<IngestJob>) {
    let mut running = tokio::task::JoinSet::new();
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < INGEST_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        while running.len() >= INGEST_PARALLEL {
            let _ = running.join_next().await;
        }
        running.spawn(commit_batch(pool.clone(), batch));
    }
}

async fn commit_batch(pool: Pool, batch: Vec<IngestJob>) {
    let events: Vec<&NewEvent> = batch.iter().map(|job| &job.event).collect();
    let inserted = match insert_batch(&pool, &events).await {
        Ok(inserted) => inserted,
        // The database refused a statement: find the one, store the others.
        Err(BatchError::Refused(e)) => {
            tracing::warn!(error = %e, "a batch of webhooks failed; storing them one by one");
            for job in batch {
                let result = ingest_one(&pool, &job.event).await;
                let _ = job.reply.send(result);
            }
            return;
        }
        // No connection, or it broke: one by one would only wait longer.
        Err(BatchError::Unavailable(e)) => {
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    for (job, id) in batch.into_iter().zip(inserted) {
        let result = match id {
            Some(event_id) => Ok(Ingested {
                event_id,
                state: job.event.state,
                duplicate: false,
            }),
            None => existing(&pool, &job.event).await,
        };
        let _ = job.reply.send(result);
    }
}

/// Why a batch was not stored.
enum BatchError {
    /// The database refused a statement (a bad value in one webhook, say).
    Refused(StoreError),
    /// No connection could be had, or it broke.
    Unavailable(StoreError),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.as_db_error().is_some() {
            BatchError::Refused(e.into())
        } else {
            BatchError::Unavailable(e.into())
        }
    }
}

/// Inserts the batch in one transaction; the new event ids (`None` for duplicates).
async fn insert_batch(pool: &Pool, batch: &[&NewEvent]) -> Result<Vec<Option<i64>>, BatchError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| BatchError::Unavailable(e.into()))?;
    let tx = client.transaction().await?;
    let statement = tx.prepare_cached(INGEST).await?;
    let details: Vec<String> = batch.iter().map(|event| event.received_detail()).collect();
    let queries = batch.iter().zip(&details).map(|(e, detail)| {
        let statement = &statement;
        let tx = &tx;
        async move {
            tx.query_opt(
                statement,
                &[
                    &e.tenant_id.as_str(),
                    &e.shop_id.as_str(),
                    &e.webhook_id,
                    &e.order_id,
                    &e.order_status,
                    &e.document_type.as_str(),
                    &e.payload,
                    &e.state.as_str(),
                    detail,
                    &e.hold_reason,
                ],
            )
            .await
        }
    });
    let rows = futures_util::future::try_join_all(queries).await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| r.as_ref().map(|r| r.get(0))).collect())
}

/// One webhook on its own (a batch of one), after its batch failed.
async fn ingest_one(pool: &Pool, event: &NewEvent) -> Result<Ingested, StoreError> {
    let inserted = insert_batch(pool, &[event]).await.map_err(|e| match e {
        BatchError::Refused(e) | BatchError::Unavailable(e) => e,
    })?;
    match inserted.first().copied().flatten() {
        Some(event_id) => Ok(Ingested {
            event_id,
            state: event.state,
            duplicate: false,
        }),
        None => existing(pool, event).await,
    }
}

/// A webhook that was stored before: its event.
async fn existing(pool: &Pool, event: &NewEvent) -> Result<Ingested, StoreError> {
    let r = pool
        .get()
        .await?
        .query_one(
            "SELECT id, state FROM events WHERE shop_id = $1 AND webhook_id = $2",
            &[&event.shop_id.as_str(), &event.webhook_id],
        )
        .await?;
    let state: String = r.get(1);
    Ok(Ingested {
        event_id: r.get(0),
        state: EventState::parse(&state).unwrap_or(EventState::Pending),
        duplicate: true,
    })
}

const SUMMARY_COLUMNS: &str = "id, shop_id, webhook_id, order_id, order_status, state, attempts, \
                               mamut_ref, last_error, received_at, updated_at";

fn summary(r: &tokio_postgres::Row) -> EventSummary {
    let state: String = r.get(5);
    EventSummary {
        id: r.get(0),
        shop_id: r.get(1),
        webhook_id: r.get(2),
        order_id: r.get(3),
        order_status: r.get(4),
        state: EventState::parse(&state).unwrap_or(EventState::Pending),
        attempts: r.get(6),
        mamut_ref: r.get(7),
        last_error: r.get(8),
        received_at: text(r.get(9)),
        updated_at: text(r.get(10)),
    }
}

/// The state of a tenant's event, if it has one of that id, locked until the transaction ends.
async fn locked_state(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<String>, StoreError> {
    tx.query_opt(
        "SELECT state FROM events WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        &[&id, &tenant.as_str()],
    )
    .await?
    .map(|r| r.try_get(0))
    .transpose()
    .map_err(StoreError::from)
}

async fn record(
    client: &impl GenericClient,
    event_id: i64,
    state: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO event_history (event_id, at, state, detail) VALUES ($1, now(), $2, $3)",
            &[&event_id, &state, &detail],
        )
        .await?;
    Ok(())
}

impl PgStore {
    /// Stores a webhook; waiting webhooks are committed together (see [`ingest_batches`]).
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ingests
            .send(IngestJob { event, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn find_webhook(
        &self,
        shop: ShopId,
        webhook_id: String,
    ) -> Result<Option<Ingested>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, state FROM events WHERE shop_id = $1 AND webhook_id = $2",
                &[&shop.as_str(), &webhook_id],
            )
            .await?;
        row.map(|r| {
            let state: String = r.try_get(1)?;
            Ok(Ingested {
                event_id: r.try_get(0)?,
                state: EventState::parse(&state).unwrap_or(EventState::Pending),
                duplicate: true,
            })
        })
        .transpose()
    }

    pub async fn list_events(
        &self,
        tenant: TenantId,
        state: Option<EventState>,
        limit: u32,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM events WHERE tenant_id = $1
             AND ($2::TEXT IS NULL OR state = $2) ORDER BY id DESC LIMIT $3"
        );
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &tenant.as_str(),
                    &state.map(EventState::as_str),
                    &i64::from(limit),
                ],
            )
            .await?;
        Ok(rows.iter().map(summary).collect())
    }

    pub async fn event(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<(EventSummary, Vec<HistoryEntry>)>, StoreError> {
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
            .map(|r| HistoryEntry {
                at: text(r.get(0)),
                state: r.get(1),
                detail: r.get(2),
            })
            .collect();
        Ok(Some((summary(&row), history)))
    }

    pub async fn next_deliveries(
        &self,
        tenant: TenantId,
        exclude: HashSet<i64>,
        mut blocked_orders: HashSet<(String, String)>,
        want: usize,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        const PAGE: i64 = 500;
        const MAX_SCAN: usize = 20_000;
        let client = self.client().await?;
        let mut selected = Vec::new();
        let mut after = 0i64;
        let mut scanned = 0usize;
        'pages: while selected.len() < want && scanned < MAX_SCAN {
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
                    &[&tenant.as_str(), &after, &PAGE],
                )
                .await?;
            let full_page = page.len() as i64 == PAGE;
            for r in page {
                scanned += 1;
                let event = QueuedEvent {
                    id: r.get(0),
                    shop_id: r.get(1),
                    order_id: r.get(2),
                    document_type: r.get(3),
                    payload: r.get(4),
                    attempt: r.get::<_, i64>(5) + 1,
                };
                after = event.id;
                let key = (event.shop_id.clone(), event.order_id.clone());
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

    pub async fn ack(
        &self,
        tenant: TenantId,
        id: i64,
        mamut_ref: Option<String>,
        already_applied: bool,
    ) -> Result<bool, StoreError> {
        let detail = match (&mamut_ref, already_applied) {
            (Some(r), false) => format!("applied in Mamut as {r}"),
            (Some(r), true) => format!("already in Mamut as {r}"),
            (None, _) => "applied in Mamut".to_owned(),
        };
        self.transition(
            "UPDATE events SET state = 'delivered', mamut_ref = $3, last_error = NULL,
                    updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND state = 'pending'",
            tenant,
            id,
            mamut_ref,
            "delivered",
            detail,
        )
        .await
    }

    pub async fn record_failure(
        &self,
        tenant: TenantId,
        id: i64,
        reason: String,
    ) -> Result<(), StoreError> {
        self.transition(
            "UPDATE events SET last_error = $3, updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND state = 'pending'",
            tenant,
            id,
            Some(reason.clone()),
            "retry",
            reason,
        )
        .await
        .map(drop)
    }

    pub async fn dead_letter(
        &self,
        tenant: TenantId,
        id: i64,
        reason: String,
    ) -> Result<(), StoreError> {
        self.transition(
            "UPDATE events SET state = 'dead', last_error = $3, updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND state = 'pending'",
            tenant,
            id,
            Some(reason.clone()),
            "dead",
            reason,
        )
        .await
        .map(drop)
    }

    /// Runs one state change (`$1` id, `$2` tenant, `$3` value) and records it in the history
    /// when it changed a row, in one transaction.
    async fn transition(
        &self,
        sql: &str,
        tenant: TenantId,
        id: i64,
        value: Option<String>,
        state: &str,
        detail: String,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx.execute(sql, &[&id, &tenant.as_str(), &value]).await?;
        if changed == 1 {
            record(&tx, id, state, Some(&detail)).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    pub async fn replay(&self, tenant: TenantId, id: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        operator_may(
            id,
            locked_state(&tx, &tenant, id).await?.as_deref(),
            "replayed",
        )?;
        // A thin webhook (no order in it yet) goes back to fetching its order.
        let state: String = tx
            .query_one(
                "UPDATE events SET state = CASE WHEN json_typeof(payload::json -> 'order') = 'object'
                                                THEN 'pending' ELSE 'fetching' END,
                        next_attempt_at = NULL, updated_at = now()
                 WHERE id = $1 RETURNING state",
                &[&id],
            )
            .await?
            .try_get(0)?;
        record(&tx, id, &state, Some("replayed by an operator")).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn event_payload(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<EventPayload>, StoreError> {
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
                payload: r.try_get(0)?,
                original: r.try_get(1)?,
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
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        operator_may(
            id,
            locked_state(&tx, &tenant, id).await?.as_deref(),
            "edited",
        )?;
        tx.execute(
            "UPDATE events SET original_payload = COALESCE(original_payload, payload),
                    payload = $2, order_status = $3, updated_at = now()
             WHERE id = $1",
            &[&id, &payload, &order_status],
        )
        .await?;
        record(&tx, id, "edited", Some(&note)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn due_fetches(&self, limit: usize) -> Result<Vec<FetchJob>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE events SET next_attempt_at = now() + make_interval(secs => $2)
                 WHERE id IN (
                    SELECT id FROM events WHERE state = 'fetching'
                      AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, tenant_id, shop_id, order_id, payload",
                &[&(limit as i64), &FETCH_CLAIM_SECS],
            )
            .await?;
        let mut jobs: Vec<FetchJob> = rows
            .iter()
            .map(|r| FetchJob {
                id: r.get(0),
                tenant_id: r.get(1),
                shop_id: r.get(2),
                order_id: r.get(3),
                payload: r.get(4),
            })
            .collect();
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    pub async fn next_fetch_at(&self) -> Result<Option<String>, StoreError> {
        let r = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*), bool_or(next_attempt_at IS NULL), MIN(next_attempt_at)
                 FROM events WHERE state = 'fetching'",
                &[],
            )
            .await?;
        let count: i64 = r.get(0);
        if count == 0 {
            return Ok(None);
        }
        if r.get::<_, Option<bool>>(1) == Some(true) {
            return Ok(Some(String::new()));
        }
        Ok(r.get::<_, Option<DateTime<Utc>>>(2).map(text))
    }

    pub async fn enriched(
        &self,
        id: i64,
        payload: String,
        outcome: Enriched,
    ) -> Result<bool, StoreError> {
        let (state, detail, last_error) = outcome.outcome();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE events SET state = $3, payload = $2, next_attempt_at = NULL,
                        last_error = $4, updated_at = now()
                 WHERE id = $1 AND state = 'fetching'",
                &[&id, &payload, &state, &last_error],
            )
            .await?;
        if changed == 1 {
            record(&tx, id, state, Some(&detail)).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    pub async fn fetch_failed(
        &self,
        id: i64,
        reason: String,
        retry_at: Option<String>,
    ) -> Result<(), StoreError> {
        let retry_at = retry_at.as_deref().map(parse_time).transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE events SET last_error = $2, next_attempt_at = $3, updated_at = now(),
                        state = CASE WHEN $3::TIMESTAMPTZ IS NULL THEN 'dead' ELSE state END
                 WHERE id = $1 AND state = 'fetching'",
                &[&id, &reason, &retry_at],
            )
            .await?;
        if changed == 1 {
            let state = if retry_at.is_some() { "retry" } else { "dead" };
            record(&tx, id, state, Some(&reason)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

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

    pub async fn insert_pushes(
        &self,
        tenant: TenantId,
        agent: AgentId,
        pushes: Vec<(String, Change)>,
    ) -> Result<Vec<ShopId>, StoreError> {
        let encoded = encode_pushes(pushes)?;
        super::retrying(|| self.insert_encoded_pushes(&tenant, &agent, &encoded)).await
    }

    async fn insert_encoded_pushes(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        encoded: &[(String, Change, String)],
    ) -> Result<Vec<ShopId>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let shops = super::tenants::read_shops(&tx, Some(tenant)).await?;
        let insert = tx
            .prepare(
                "INSERT INTO pushes (tenant_id, agent_id, push_id, kind, payload, received_at)
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (tenant_id, push_id) DO NOTHING",
            )
            .await?;
        let mut woken: Vec<ShopId> = Vec::new();
        for (push_id, change, payload) in encoded {
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        &tenant.as_str(),
                        &agent.as_str(),
                        &push_id.as_str(),
                        &change.kind(),
                        &payload.as_str(),
                    ],
                )
                .await?;
            if inserted == 0 {
                continue;
            }
            for shop in
                super::dispatch::fan_out(&tx, tenant, &shops, push_id, change, payload).await?
            {
                if !woken.contains(&shop) {
                    woken.push(shop);
                }
            }
        }
        tx.commit().await?;
        Ok(woken)
    }

    pub async fn list_pushes(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<PushSummary>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, agent_id, push_id, kind, payload, received_at FROM pushes
                 WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
                &[&tenant.as_str(), &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PushSummary {
                id: r.get(0),
                agent_id: r.get(1),
                push_id: r.get(2),
                kind: r.get(3),
                change: serde_json::from_str(r.get::<_, &str>(4))
                    .unwrap_or(serde_json::Value::Null),
                received_at: text(r.get(5)),
            })
            .collect())
    }
}
