//! Webhooks stored in groups on PostgreSQL: what waits is committed together, like the SQLite
//! store's group commit.

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::PgStore;
use super::events::{FIND_WEBHOOK, ingested};
use crate::store::types::{Ingested, NewEvent};
use crate::store::{Result, StoreError};

/// The event and its first history entry in one statement, or nothing for a duplicate.
const INGEST: &str = "WITH new AS (
        INSERT INTO events (tenant_id, shop_id, webhook_id, order_id, order_status,
                            document_type, payload, state, received_at, updated_at, last_error,
                            received_headers)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now(), $10, $11)
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
    reply: oneshot::Sender<Result<Ingested>>,
}

/// Commits waiting webhooks together, like the SQLite store's group commit: everything that
/// waits (up to [`INGEST_BATCH`]) goes into one transaction, its statements pipelined on one
/// connection, so a burst costs one WAL flush instead of one per webhook. If the transaction
/// fails, each webhook is tried on its own (storing is idempotent), so one bad row cannot
/// fail the others.
/// Ends when every sender is gone, once the transactions in flight have answered.
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
    while running.join_next().await.is_some() {}
    tracing::debug!("ingest task stopped: the store was dropped");
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
                    &e.received_headers,
                ],
            )
            .await
        }
    });
    let rows = futures_util::future::try_join_all(queries).await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| r.as_ref().map(|r| r.try_get(0)).transpose())
        .collect::<Result<_, _>>()
        .map_err(|e| BatchError::Unavailable(e.into()))
}

/// One webhook on its own (a batch of one), after its batch failed.
async fn ingest_one(pool: &Pool, event: &NewEvent) -> Result<Ingested> {
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
async fn existing(pool: &Pool, event: &NewEvent) -> Result<Ingested> {
    let r = pool
        .get()
        .await?
        .query_one(FIND_WEBHOOK, &[&event.shop_id.as_str(), &event.webhook_id])
        .await?;
    ingested(&r)
}

impl PgStore {
    /// Stores a webhook; waiting webhooks are committed together (see [`ingest_batches`]).
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested> {
        let (reply, answer) = oneshot::channel();
        self.ingests
            .send(IngestJob { event, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}
