//! The console's read views on PostgreSQL ([`crate::store::console`]).

use chrono::{DateTime, Utc};
use shared::{ShopId, TenantId};

use super::{PgStore, col, dispatch, events, parsed, stored_id};
use crate::store::console::{
    DeliveryTime, EventBody, HourCount, OrderHistoryEntry, OrderHit, OrderQuery, OrderRecord,
    QueueStats, ShopActivity, newest_first_kept,
};
use tokio_postgres::error::SqlState;

use crate::store::console::customer_email_is;
use crate::store::{HistoryEntry, HistoryState, Result, StoreError, TenantRecord};

/// Most bodies the e-mail search reads as text when one of them is not JSON.
const MAX_TEXT_CANDIDATES: u32 = 5000;

fn count(r: &tokio_postgres::Row, i: usize) -> Result<u64> {
    Ok(u64::try_from(col::<i64>(r, i)?).unwrap_or(0))
}

impl PgStore {
    /// The tenants by id (only `only` when given), at most `limit`.
    pub async fn tenants(&self, only: Option<TenantId>, limit: u32) -> Result<Vec<TenantRecord>> {
        let only = only.as_ref().map(TenantId::as_str);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, name, created_at FROM tenants WHERE ($2::TEXT IS NULL OR id = $2)
                 ORDER BY id LIMIT $1",
                &[&i64::from(limit), &only],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TenantRecord {
                    id: parsed(r, 0, stored_id(TenantId::new, "tenant id"))?,
                    name: col(r, 1)?,
                    created_at: col(r, 2)?,
                })
            })
            .collect()
    }

    pub async fn queue_stats(&self, tenant: TenantId) -> Result<QueueStats> {
        let client = self.client().await?;
        let mut stats = QueueStats::default();
        let rows = client
            .query(
                "SELECT state, COUNT(*) FROM events WHERE tenant_id = $1
                   AND state IN ('pending', 'fetching', 'dead', 'held') GROUP BY state",
                &[&tenant.as_str()],
            )
            .await?;
        for row in &rows {
            let n = count(row, 1)?;
            match col::<&str>(row, 0)? {
                "pending" => stats.pending = n,
                "fetching" => stats.fetching = n,
                "dead" => stats.dead = n,
                _ => stats.held = n,
            }
        }
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM dispatch WHERE tenant_id = $1 AND state = 'dead'",
                &[&tenant.as_str()],
            )
            .await?;
        stats.dispatch_dead = count(&row, 0)?;
        stats.oldest_pending_at = client
            .query_opt(
                "SELECT received_at FROM events WHERE tenant_id = $1 AND state = 'pending'
                 ORDER BY id LIMIT 1",
                &[&tenant.as_str()],
            )
            .await?
            .map(|r| col(&r, 0))
            .transpose()?;
        Ok(stats)
    }

    pub async fn shop_activity(&self, tenant: TenantId) -> Result<Vec<ShopActivity>> {
        // The newest row per shop, found through the (tenant, state, id) indexes.
        let rows = self
            .client()
            .await?
            .query(
                "SELECT shop_id, MAX(dispatch_at), MAX(delivered_at) FROM (
                     SELECT shop_id, updated_at AS dispatch_at, NULL::TIMESTAMPTZ AS delivered_at
                     FROM dispatch WHERE id IN (
                         SELECT MAX(id) FROM dispatch
                         WHERE tenant_id = $1 AND state = 'done' GROUP BY shop_id)
                     UNION ALL
                     SELECT shop_id, NULL::TIMESTAMPTZ, updated_at FROM events WHERE id IN (
                         SELECT MAX(id) FROM events
                         WHERE tenant_id = $1 AND state = 'delivered' GROUP BY shop_id)
                 ) AS newest
                 GROUP BY shop_id ORDER BY shop_id",
                &[&tenant.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ShopActivity {
                    shop_id: parsed(r, 0, stored_id(ShopId::new, "shop id"))?,
                    last_dispatch_at: col(r, 1)?,
                    last_delivered_at: col(r, 2)?,
                })
            })
            .collect()
    }

    pub async fn orders_per_hour(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<HourCount>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT date_trunc('hour', received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
                        COUNT(DISTINCT (shop_id, order_id))
                 FROM events WHERE tenant_id = $1 AND received_at >= $2
                 GROUP BY hour ORDER BY hour",
                &[&tenant.as_str(), &since],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HourCount {
                    hour: col(r, 0)?,
                    orders: count(r, 1)?,
                })
            })
            .collect()
    }

    pub async fn delivery_times(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DeliveryTime>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT received_at, updated_at FROM events
                 WHERE state IN ('delivered', 'ignored') AND state = 'delivered'
                   AND tenant_id = $1 AND updated_at >= $2
                 ORDER BY updated_at DESC LIMIT $3",
                &[&tenant.as_str(), &since, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryTime {
                    received_at: col(r, 0)?,
                    delivered_at: col(r, 1)?,
                })
            })
            .collect()
    }

    /// Events matching `query` with their tenant. The e-mail is compared with the
    /// customer's field of the bodies that contain it as text; should one of those not be
    /// JSON (the relay only stores JSON, so a damaged row), the search falls back to
    /// [`Self::search_orders_by_text`] instead of failing.
    pub async fn search_orders(&self, query: OrderQuery) -> Result<Vec<OrderHit>> {
        // The CASE casts only bodies that passed the text test.
        let email = "CASE WHEN strpos(lower(payload), lower(trim($3))) > 0
                       THEN lower(trim(payload::jsonb #>> '{order,customer,email}'))
                            = lower(trim($3))
                       ELSE false END";
        match self.search_rows(&query, email, query.limit).await {
            // Not JSON, or JSON that jsonb cannot hold (a `\u0000` in a string).
            Err(StoreError::Postgres(e))
                if e.code() == Some(&SqlState::INVALID_TEXT_REPRESENTATION)
                    || e.code() == Some(&SqlState::UNTRANSLATABLE_CHARACTER) =>
            {
                tracing::warn!(
                    tenant = ?query.tenant,
                    "a stored event body is not JSON; the e-mail search reads bodies as text"
                );
                self.search_orders_by_text(query).await
            }
            rows => Ok(rows?.into_iter().map(|(hit, _)| hit).collect()),
        }
    }

    /// The e-mail search without casting to JSON: the bodies containing the e-mail as text,
    /// at most [`MAX_TEXT_CANDIDATES`] of them, parsed here.
    async fn search_orders_by_text(&self, query: OrderQuery) -> Result<Vec<OrderHit>> {
        let email = query.email.clone().unwrap_or_default();
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let text = "strpos(lower(payload), lower(trim($3))) > 0";
        Ok(self
            .search_rows(&query, text, MAX_TEXT_CANDIDATES)
            .await?
            .into_iter()
            .filter(|(_, payload)| customer_email_is(payload, &email))
            .map(|(hit, _)| hit)
            .take(limit)
            .collect())
    }

    /// Events matching `query` whose body passes `email` (a condition on `$3`), newest
    /// first, at most `limit`, with their bodies.
    async fn search_rows(
        &self,
        query: &OrderQuery,
        email: &str,
        limit: u32,
    ) -> Result<Vec<(OrderHit, String)>> {
        let tenant_condition = if query.tenant.is_some() {
            "tenant_id = $1"
        } else {
            "$1::TEXT IS NULL"
        };
        // The window is always set ([`crate::store::AnyStore::search_orders`]).
        let sql = format!(
            "SELECT {columns}, tenant_id, payload
             FROM events
             WHERE {tenant_condition}
               AND received_at >= $7 AND received_at < $8
               AND ($2::TEXT IS NULL OR order_id = $2)
               AND ($3::TEXT IS NULL OR {email})
               AND ($4::TEXT IS NULL OR mamut_ref = $4)
               AND ($5::TEXT IS NULL OR state = $5)
               AND ($6::TEXT IS NULL OR shop_id = $6)
             ORDER BY id DESC LIMIT $9",
            columns = events::SUMMARY_COLUMNS
        );
        let tenant = query.tenant.as_ref().map(TenantId::as_str);
        let state = query.state.map(|s| s.as_str());
        let shop = query.shop.as_ref().map(ShopId::as_str);
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &tenant,
                    &query.shop_order_id,
                    &query.email,
                    &query.mamut_ref,
                    &state,
                    &shop,
                    &query.from,
                    &query.to,
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let tenant_id = parsed(r, 11, stored_id(TenantId::new, "tenant id"))?;
                let payload: String = col(r, 12)?;
                Ok((
                    OrderHit {
                        tenant_id,
                        event: events::summary(r)?,
                    },
                    payload,
                ))
            })
            .collect()
    }

    pub async fn order_record(
        &self,
        tenant: TenantId,
        event_id: i64,
        limit: u32,
    ) -> Result<Option<OrderRecord>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {columns}, payload, original_payload FROM events
             WHERE tenant_id = $1 AND id = $2",
            columns = events::SUMMARY_COLUMNS
        );
        let Some(row) = client
            .query_opt(&sql, &[&tenant.as_str(), &event_id])
            .await?
        else {
            return Ok(None);
        };
        let event = events::summary(&row)?;
        let body = EventBody {
            payload: col(&row, 11)?,
            original: col(&row, 12)?,
        };
        // One more than kept, to tell whether older rows were left out.
        let read = i64::from(limit) + 1;
        let order: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &tenant.as_str(),
            &event.shop_id.as_str(),
            &event.order_id,
            &read,
        ];
        let sql = format!(
            "SELECT {columns} FROM events
             WHERE tenant_id = $1 AND shop_id = $2 AND order_id = $3
             ORDER BY id DESC LIMIT $4",
            columns = events::SUMMARY_COLUMNS
        );
        let events = client
            .query(&sql, &order)
            .await?
            .iter()
            .map(events::summary)
            .collect::<Result<Vec<_>>>()?;
        let history = client
            .query(
                "SELECT h.event_id, h.at, h.state, h.detail
                 FROM event_history h JOIN events e ON e.id = h.event_id
                 WHERE e.tenant_id = $1 AND e.shop_id = $2 AND e.order_id = $3
                 ORDER BY h.at DESC, h.id DESC LIMIT $4",
                &order,
            )
            .await?
            .iter()
            .map(|r| {
                Ok(OrderHistoryEntry {
                    event_id: col(r, 0)?,
                    entry: HistoryEntry {
                        at: col(r, 1)?,
                        state: parsed(r, 2, HistoryState::stored)?,
                        detail: col(r, 3)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let sql = format!(
            "SELECT {columns} FROM dispatch
             WHERE tenant_id = $1 AND shop_id = $2 AND order_ref = $3
             ORDER BY id DESC LIMIT $4",
            columns = dispatch::SUMMARY_COLUMNS
        );
        let dispatch = client
            .query(&sql, &order)
            .await?
            .iter()
            .map(dispatch::summary)
            .collect::<Result<Vec<_>>>()?;
        let (events, history, dispatch, truncated) =
            newest_first_kept(events, history, dispatch, limit);
        Ok(Some(OrderRecord {
            event,
            body,
            events,
            history,
            dispatch,
            truncated,
        }))
    }
}
