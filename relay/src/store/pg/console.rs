//! The console's read views on PostgreSQL ([`crate::store::console`]).

use chrono::{DateTime, Utc};
use shared::{ShopId, TenantId};

use super::{PgStore, col, dispatch, events, parsed, stored_id};
use crate::store::console::{
    DeliveryTime, EventBody, HourCount, OrderHistoryEntry, OrderHit, OrderQuery, OrderRecord,
    QueueStats, ShopActivity,
};
use crate::store::{HistoryEntry, HistoryState, Result, TenantRecord};

fn count(r: &tokio_postgres::Row, i: usize) -> Result<u64> {
    Ok(u64::try_from(col::<i64>(r, i)?).unwrap_or(0))
}

impl PgStore {
    pub async fn tenants(&self, limit: u32) -> Result<Vec<TenantRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, name, created_at FROM tenants ORDER BY id LIMIT $1",
                &[&i64::from(limit)],
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
                 WHERE tenant_id = $1 AND state = 'delivered' AND updated_at >= $2
                 ORDER BY id DESC LIMIT $3",
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

    /// Events matching `query` with their tenant, and their body when the query has an
    /// e-mail (for [`crate::store::console::customer_email_is`]). The body is searched as
    /// text, not cast to JSON: a stored body that is not JSON cannot fail the search.
    pub async fn search_orders(
        &self,
        query: OrderQuery,
    ) -> Result<Vec<(OrderHit, Option<String>)>> {
        let sql = format!(
            "SELECT {columns}, tenant_id, CASE WHEN $3::TEXT IS NULL THEN NULL ELSE payload END
             FROM events
             WHERE ($1::TEXT IS NULL OR tenant_id = $1)
               AND ($2::TEXT IS NULL OR order_id = $2)
               AND ($3::TEXT IS NULL OR strpos(lower(payload), lower($3)) > 0)
               AND ($4::TEXT IS NULL OR mamut_ref = $4)
               AND ($5::TEXT IS NULL OR state = $5)
               AND ($6::TEXT IS NULL OR shop_id = $6)
               AND ($7::TIMESTAMPTZ IS NULL OR received_at >= $7)
               AND ($8::TIMESTAMPTZ IS NULL OR received_at < $8)
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
                    &i64::from(query.limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let tenant_id = parsed(r, 11, stored_id(TenantId::new, "tenant id"))?;
                let payload: Option<String> = col(r, 12)?;
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
        let limit = i64::from(limit);
        let order: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &tenant.as_str(),
            &event.shop_id.as_str(),
            &event.order_id,
            &limit,
        ];
        let sql = format!(
            "SELECT {columns} FROM events
             WHERE tenant_id = $1 AND shop_id = $2 AND order_id = $3
             ORDER BY id LIMIT $4",
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
                 ORDER BY h.at, h.id LIMIT $4",
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
             ORDER BY id LIMIT $4",
            columns = dispatch::SUMMARY_COLUMNS
        );
        let dispatch = client
            .query(&sql, &order)
            .await?
            .iter()
            .map(dispatch::summary)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(OrderRecord {
            event,
            body,
            events,
            history,
            dispatch,
        }))
    }
}
