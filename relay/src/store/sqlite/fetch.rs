//! Thin webhooks on SQLite: claiming those whose order is due to be fetched, and recording
//! what the fetch brought (the full webhook, or a failure to try again or give up).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use super::events::{record, transition};
use crate::store::queue::{self, StoredFetch, Unreadable};
use crate::store::types::{Enriched, FetchJob};
use crate::store::{Due, Result, now, parse_time, timestamp};

impl SqliteStore {
    /// Claims the thin webhooks whose order is due to be fetched, oldest first: they are not
    /// handed out again for a minute (unless their fetch is recorded earlier).
    pub async fn due_fetches(&self, limit: usize) -> Result<Vec<FetchJob>> {
        self.db
            .call(move |conn| {
                let at = Utc::now();
                let mut stmt = conn.prepare_cached(
                    "SELECT id, tenant_id, shop_id, order_id, payload FROM events
                     WHERE state = 'fetching'
                       AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
                     ORDER BY id LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(params![timestamp(at), limit as i64], |r| {
                        Ok(StoredFetch {
                            id: r.get(0)?,
                            tenant_id: r.get(1)?,
                            shop_id: r.get(2)?,
                            order_id: r.get(3)?,
                            payload: r.get(4)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let (jobs, unreadable) = queue::fetch_jobs(rows);
                for Unreadable { id, change } in unreadable {
                    transition(conn, None, id, &change)?;
                }
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

    pub async fn next_fetch_at(&self) -> Result<Option<Due>> {
        self.db
            .call(move |conn| {
                let (count, at): (i64, Option<String>) = conn.query_row(
                    "SELECT COUNT(*), MIN(COALESCE(next_attempt_at, '')) FROM events
                     WHERE state = 'fetching'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                match at {
                    _ if count == 0 => Ok(None),
                    None => Ok(None),
                    Some(at) if at.is_empty() => Ok(Some(Due::Now)),
                    Some(at) => Ok(Some(Due::At(parse_time(&at)?))),
                }
            })
            .await
    }

    pub async fn enriched(&self, id: i64, payload: String, outcome: Enriched) -> Result<bool> {
        let change = queue::enrichment(&outcome);
        self.db
            .call(move |conn| {
                // The full webhook replaces the thin one only while the event still fetches;
                // the thin one stays as received, for the order's timeline.
                conn.execute(
                    "UPDATE events SET received_payload = COALESCE(received_payload, payload),
                            payload = ?2, next_attempt_at = NULL
                     WHERE id = ?1 AND state = 'fetching'",
                    params![id, payload],
                )?;
                transition(conn, None, id, &change)
            })
            .await
    }

    pub async fn fetch_failed(
        &self,
        id: i64,
        reason: String,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (state, history) = queue::fetch_failure(retry_at);
        self.db
            .call(move |conn| {
                let changed = conn.execute(
                    "UPDATE events SET last_error = ?2, next_attempt_at = ?3, updated_at = ?4,
                            state = ?5
                     WHERE id = ?1 AND state = 'fetching'",
                    params![id, reason, retry_at.map(timestamp), now(), state.as_str()],
                )?;
                if changed == 1 {
                    record(conn, id, history, &reason)?;
                }
                Ok(())
            })
            .await
    }
}
