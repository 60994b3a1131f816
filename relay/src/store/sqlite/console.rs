//! The console's read views on SQLite ([`crate::store::console`]). Timestamps are stored as
//! RFC 3339 text in UTC with microseconds, so text order is time order and an hour is the
//! text's first 13 characters.

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{OptionalExtension, params};
use shared::{ShopId, TenantId};

use super::{SqliteStore, dispatch, events, parsed, stored_id, time, time_opt};
use crate::store::console::{
    DeliveryTime, EventBody, HourCount, OrderHistoryEntry, OrderHit, OrderQuery, OrderRecord,
    QueueStats, ShopActivity, newest_first_kept,
};
use crate::store::error::corrupt;
use crate::store::{HistoryEntry, HistoryState, Result, TenantRecord, timestamp};

/// `2026-01-02T03` read back as the hour's start.
pub(crate) fn hour_start(text: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(&format!("{text}:00:00"), "%Y-%m-%dT%H:%M:%S")
        .map(|t| t.and_utc())
        .map_err(|e| corrupt("timestamp", format!("{text:?}: {e}")))
}

/// The search's tenant condition on `?1`: a plain equality when there is a tenant, so the
/// planner can use the (tenant_id, received_at) index.
fn tenant_condition(scoped: bool) -> &'static str {
    if scoped {
        "tenant_id = ?1"
    } else {
        "?1 IS NULL"
    }
}

impl SqliteStore {
    /// The tenants by id (only `only` when given), at most `limit`.
    pub async fn tenants(&self, only: Option<TenantId>, limit: u32) -> Result<Vec<TenantRecord>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, name, created_at FROM tenants WHERE (?2 IS NULL OR id = ?2)
                     ORDER BY id LIMIT ?1",
                )?;
                let only = only.as_ref().map(TenantId::as_str);
                let rows = stmt.query_map(params![limit, only], |r| {
                    Ok(TenantRecord {
                        id: parsed(r, 0, stored_id(TenantId::new, "tenant id"))?,
                        name: r.get(1)?,
                        created_at: time(r, 2)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn queue_stats(&self, tenant: TenantId) -> Result<QueueStats> {
        self.db
            .call(move |conn| {
                let mut stats = QueueStats::default();
                let mut stmt = conn.prepare_cached(
                    "SELECT state, COUNT(*) FROM events WHERE tenant_id = ?1
                       AND state IN ('pending', 'fetching', 'dead', 'held') GROUP BY state",
                )?;
                let rows = stmt.query_map([tenant.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (state, count) = row?;
                    let count = u64::try_from(count).unwrap_or(0);
                    match state.as_str() {
                        "pending" => stats.pending = count,
                        "fetching" => stats.fetching = count,
                        "dead" => stats.dead = count,
                        _ => stats.held = count,
                    }
                }
                let dead: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM dispatch WHERE tenant_id = ?1 AND state = 'dead'",
                    [tenant.as_str()],
                    |r| r.get(0),
                )?;
                stats.dispatch_dead = u64::try_from(dead).unwrap_or(0);
                stats.oldest_pending_at = conn
                    .query_row(
                        "SELECT received_at FROM events WHERE tenant_id = ?1 AND state = 'pending'
                         ORDER BY id LIMIT 1",
                        [tenant.as_str()],
                        |r| time(r, 0),
                    )
                    .optional()?;
                Ok(stats)
            })
            .await
    }

    pub async fn shop_activity(&self, tenant: TenantId) -> Result<Vec<ShopActivity>> {
        self.db
            .call(move |conn| {
                // The newest row per shop, found through the (tenant, state, id) indexes.
                let mut stmt = conn.prepare_cached(
                    "SELECT shop_id, MAX(dispatch_at), MAX(delivered_at) FROM (
                         SELECT shop_id, updated_at AS dispatch_at, NULL AS delivered_at
                         FROM dispatch WHERE id IN (
                             SELECT MAX(id) FROM dispatch
                             WHERE tenant_id = ?1 AND state = 'done' GROUP BY shop_id)
                         UNION ALL
                         SELECT shop_id, NULL, updated_at FROM events WHERE id IN (
                             SELECT MAX(id) FROM events
                             WHERE tenant_id = ?1 AND state = 'delivered' GROUP BY shop_id))
                     GROUP BY shop_id ORDER BY shop_id",
                )?;
                let rows = stmt.query_map([tenant.as_str()], |r| {
                    Ok(ShopActivity {
                        shop_id: parsed(r, 0, stored_id(ShopId::new, "shop id"))?,
                        last_dispatch_at: time_opt(r, 1)?,
                        last_delivered_at: time_opt(r, 2)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn orders_per_hour(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<HourCount>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT substr(received_at, 1, 13) AS hour,
                            COUNT(DISTINCT shop_id || char(10) || order_id)
                     FROM events WHERE tenant_id = ?1 AND received_at >= ?2
                     GROUP BY hour ORDER BY hour",
                )?;
                let rows = stmt.query_map(params![tenant.as_str(), timestamp(since)], |r| {
                    Ok(HourCount {
                        hour: parsed(r, 0, hour_start)?,
                        orders: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn delivery_times(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DeliveryTime>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    // Without statistics SQLite would pick the (tenant, state) index and
                    // read every delivery the tenant ever had; the window is what bounds.
                    "SELECT received_at, updated_at FROM events INDEXED BY events_finished
                     WHERE state IN ('delivered', 'ignored') AND state = 'delivered'
                       AND tenant_id = ?1 AND updated_at >= ?2
                     ORDER BY updated_at DESC LIMIT ?3",
                )?;
                let rows =
                    stmt.query_map(params![tenant.as_str(), timestamp(since), limit], |r| {
                        Ok(DeliveryTime {
                            received_at: time(r, 0)?,
                            delivered_at: time(r, 1)?,
                        })
                    })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Events matching `query` with their tenant. The e-mail is compared with the
    /// customer's field of bodies that are JSON (any other body names nobody).
    pub async fn search_orders(&self, query: OrderQuery) -> Result<Vec<OrderHit>> {
        self.db
            .call(move |conn| {
                // The window is always set ([`crate::store::AnyStore::search_orders`]); CASE
                // keeps json_extract off bodies that are not JSON.
                let sql = format!(
                    "SELECT {columns}, tenant_id
                     FROM events
                     WHERE {tenant}
                       AND received_at >= ?7 AND received_at < ?8
                       AND (?2 IS NULL OR order_id = ?2)
                       AND (?3 IS NULL OR CASE WHEN json_valid(payload)
                             THEN lower(trim(json_extract(payload, '$.order.customer.email')))
                                  = lower(trim(?3))
                             ELSE 0 END)
                       AND (?4 IS NULL OR mamut_ref = ?4)
                       AND (?5 IS NULL OR state = ?5)
                       AND (?6 IS NULL OR shop_id = ?6)
                     ORDER BY id DESC LIMIT ?9",
                    columns = events::SUMMARY_COLUMNS,
                    tenant = tenant_condition(query.tenant.is_some()),
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(
                    params![
                        query.tenant.as_ref().map(TenantId::as_str),
                        query.shop_order_id,
                        query.email,
                        query.mamut_ref,
                        query.state.map(|s| s.as_str()),
                        query.shop.as_ref().map(ShopId::as_str),
                        query.from.map(timestamp),
                        query.to.map(timestamp),
                        query.limit,
                    ],
                    |r| {
                        let tenant_id = parsed(r, 11, stored_id(TenantId::new, "tenant id"))?;
                        let event = events::summary(r)?;
                        Ok(OrderHit { tenant_id, event })
                    },
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn order_record(
        &self,
        tenant: TenantId,
        event_id: i64,
        limit: u32,
    ) -> Result<Option<OrderRecord>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT {columns}, payload, original_payload FROM events
                     WHERE tenant_id = ?1 AND id = ?2",
                    columns = events::SUMMARY_COLUMNS
                );
                let found = conn
                    .query_row(&sql, params![tenant.as_str(), event_id], |r| {
                        let body = EventBody {
                            payload: r.get(11)?,
                            original: r.get(12)?,
                        };
                        Ok((events::summary(r)?, body))
                    })
                    .optional()?;
                let Some((event, body)) = found else {
                    return Ok(None);
                };
                // One more than kept, to tell whether older rows were left out.
                let order = params![
                    tenant.as_str(),
                    event.shop_id.as_str(),
                    event.order_id,
                    limit.saturating_add(1)
                ];
                let sql = format!(
                    "SELECT {columns} FROM events
                     WHERE tenant_id = ?1 AND shop_id = ?2 AND order_id = ?3
                     ORDER BY id DESC LIMIT ?4",
                    columns = events::SUMMARY_COLUMNS
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let events = stmt
                    .query_map(order, events::summary)?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut stmt = conn.prepare_cached(
                    "SELECT h.event_id, h.at, h.state, h.detail
                     FROM event_history h JOIN events e ON e.id = h.event_id
                     WHERE e.tenant_id = ?1 AND e.shop_id = ?2 AND e.order_id = ?3
                     ORDER BY h.at DESC, h.id DESC LIMIT ?4",
                )?;
                let history = stmt
                    .query_map(order, |r| {
                        Ok(OrderHistoryEntry {
                            event_id: r.get(0)?,
                            entry: HistoryEntry {
                                at: time(r, 1)?,
                                state: parsed(r, 2, HistoryState::stored)?,
                                detail: r.get(3)?,
                            },
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let sql = format!(
                    "SELECT {columns} FROM dispatch
                     WHERE tenant_id = ?1 AND shop_id = ?2 AND order_ref = ?3
                     ORDER BY id DESC LIMIT ?4",
                    columns = dispatch::SUMMARY_COLUMNS
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let dispatch = stmt
                    .query_map(order, dispatch::summary)?
                    .collect::<Result<Vec<_>, _>>()?;
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
            })
            .await
    }
}
