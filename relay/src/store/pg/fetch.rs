//! Thin webhooks on PostgreSQL: claiming those whose order is due to be fetched (`SKIP
//! LOCKED`, so instances share them), and recording what the fetch brought.

use chrono::{DateTime, Utc};

use super::events::{record, transition};
use super::{PgStore, col};
use crate::store::queue::{self, StoredFetch, Unreadable};
use crate::store::types::{Enriched, FetchJob};
use crate::store::{Due, Result};

/// How long a claimed fetch is left to the instance that claimed it.
const FETCH_CLAIM_SECS: f64 = 60.0;

impl PgStore {
    pub async fn due_fetches(&self, limit: usize) -> Result<Vec<FetchJob>> {
        let mut client = self.client().await?;
        let rows = client
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
        let rows = rows
            .iter()
            .map(|r| {
                Ok(StoredFetch {
                    id: col(r, 0)?,
                    tenant_id: col(r, 1)?,
                    shop_id: col(r, 2)?,
                    order_id: col(r, 3)?,
                    payload: col(r, 4)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (mut jobs, unreadable) = queue::fetch_jobs(rows);
        if !unreadable.is_empty() {
            let tx = client.transaction().await?;
            for Unreadable { id, change } in unreadable {
                transition(&tx, None, id, &change).await?;
            }
            tx.commit().await?;
        }
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    pub async fn next_fetch_at(&self) -> Result<Option<Due>> {
        let r = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*), bool_or(next_attempt_at IS NULL), MIN(next_attempt_at)
                 FROM events WHERE state = 'fetching'",
                &[],
            )
            .await?;
        if col::<i64>(&r, 0)? == 0 {
            return Ok(None);
        }
        if col::<Option<bool>>(&r, 1)? == Some(true) {
            return Ok(Some(Due::Now));
        }
        Ok(col::<Option<DateTime<Utc>>>(&r, 2)?.map(Due::At))
    }

    pub async fn enriched(&self, id: i64, payload: String, outcome: Enriched) -> Result<bool> {
        let change = queue::enrichment(&outcome);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The full webhook replaces the thin one only while the event still fetches;
        // the thin one stays as received, for the order's timeline.
        tx.execute(
            "UPDATE events SET received_payload = COALESCE(received_payload, payload),
                    payload = $2, next_attempt_at = NULL
             WHERE id = $1 AND state = 'fetching'",
            &[&id, &payload],
        )
        .await?;
        let changed = transition(&tx, None, id, &change).await?;
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn fetch_failed(
        &self,
        id: i64,
        reason: String,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (state, history) = queue::fetch_failure(retry_at);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE events SET last_error = $2, next_attempt_at = $3, updated_at = now(),
                        state = $4
                 WHERE id = $1 AND state = 'fetching'",
                &[&id, &reason, &retry_at, &state.as_str()],
            )
            .await?;
        if changed == 1 {
            record(&tx, id, history, &reason).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
