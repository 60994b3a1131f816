//! What goes to the shops: a push is fanned out, in the transaction that stores it, into one
//! dispatch row per shop whose rules take it. While a row is pending, a newer value for the
//! same coalescing key (stock of one article in one warehouse, price of one article...)
//! replaces its payload and bumps its `version`, so N updates cost one call. A call's outcome
//! is recorded against the version that was sent: a row that changed meanwhile stays pending.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use shared::domain::Change;
use shared::{ShopId, TenantId};

use super::{SqliteStore, parsed, stored_id, time, time_opt};
use crate::store::queue::{self, FanOut};
use crate::store::types::{DispatchItem, DispatchSummary, Failure, stored_json};
use crate::store::{DispatchState, Result, now, timestamp};

/// Writes a freshly stored push's dispatch rows, one per shop in `fan_out`; returns those
/// shops.
pub(super) fn fan_out(
    conn: &Connection,
    tenant: &TenantId,
    fan_out: &FanOut<'_>,
    change: &Change,
    push_id: &str,
    payload: &str,
) -> Result<Vec<ShopId>> {
    let at = now();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO dispatch (tenant_id, shop_id, kind, key, payload, push_id, order_ref,
                               state, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, 'pending', ?7, ?7, ?7)
         ON CONFLICT (shop_id, key) WHERE state = 'pending'
         DO UPDATE SET payload = excluded.payload, push_id = excluded.push_id,
                       version = version + 1, updated_at = excluded.updated_at",
    )?;
    for shop in &fan_out.shops {
        stmt.execute(params![
            tenant.as_str(),
            shop.as_str(),
            change.kind(),
            fan_out.key,
            payload,
            push_id,
            at,
            fan_out.order_ref
        ])?;
    }
    Ok(fan_out.shops.iter().map(|&shop| shop.clone()).collect())
}

pub(super) const SUMMARY_COLUMNS: &str = "id, shop_id, kind, key, payload, push_id, state, attempts, \
                               last_error, next_attempt_at, created_at, updated_at";

pub(super) fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<DispatchSummary> {
    Ok(DispatchSummary {
        id: r.get(0)?,
        shop_id: parsed(r, 1, stored_id(ShopId::new, "shop id"))?,
        kind: r.get(2)?,
        key: r.get(3)?,
        change: parsed(r, 4, stored_json)?,
        push_id: r.get(5)?,
        state: parsed(r, 6, DispatchState::stored)?,
        attempts: r.get(7)?,
        last_error: r.get(8)?,
        next_attempt_at: time(r, 9)?,
        created_at: time(r, 10)?,
        updated_at: time(r, 11)?,
    })
}

impl SqliteStore {
    /// Pending rows of `shop` whose time has come, oldest first; an order's status change
    /// waits while an earlier one of the same order is pending.
    pub async fn due_dispatch(&self, shop: ShopId, limit: usize) -> Result<Vec<DispatchItem>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, payload, version, attempts FROM dispatch
                     WHERE shop_id = ?1 AND state = 'pending' AND next_attempt_at <= ?2
                       AND NOT EXISTS (SELECT 1 FROM dispatch earlier
                                       WHERE earlier.shop_id = dispatch.shop_id
                                         AND earlier.order_ref = dispatch.order_ref
                                         AND earlier.state = 'pending'
                                         AND earlier.id < dispatch.id)
                     ORDER BY id LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![shop.as_str(), now(), limit as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut items = Vec::with_capacity(rows.len());
                for (id, payload, version, attempts) in rows {
                    match queue::dispatch_item(id, &payload, version, attempts) {
                        Ok(item) => items.push(item),
                        Err(reason) => {
                            conn.execute(
                                "UPDATE dispatch SET state = 'dead', last_error = ?2,
                                        updated_at = ?3 WHERE id = ?1",
                                params![id, reason, now()],
                            )?;
                        }
                    }
                }
                Ok(items)
            })
            .await
    }

    /// When the earliest pending row of `shop` is due, if any.
    pub async fn next_dispatch_at(&self, shop: ShopId) -> Result<Option<DateTime<Utc>>> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT MIN(next_attempt_at) FROM dispatch
                         WHERE shop_id = ?1 AND state = 'pending'
                           AND NOT EXISTS (SELECT 1 FROM dispatch earlier
                                           WHERE earlier.shop_id = dispatch.shop_id
                                             AND earlier.order_ref = dispatch.order_ref
                                             AND earlier.state = 'pending'
                                             AND earlier.id < dispatch.id)",
                        [shop.as_str()],
                        |r| time_opt(r, 0),
                    )
                    .optional()?
                    .flatten())
            })
            .await
    }

    /// The shop applied these (id, version) rows. A row replaced meanwhile stays pending; an
    /// older dead row of the same key is superseded by this success.
    pub async fn dispatch_done(&self, sent: Vec<(i64, i64)>) -> Result<()> {
        self.db
            .call(move |conn| {
                let at = now();
                let mut done = conn.prepare_cached(
                    "UPDATE dispatch SET state = 'done', last_error = NULL, updated_at = ?3
                     WHERE id = ?1 AND version = ?2 AND state = 'pending'
                     RETURNING shop_id, key, id",
                )?;
                let mut supersede = conn.prepare_cached(
                    "UPDATE dispatch SET state = 'superseded', updated_at = ?3
                     WHERE shop_id = ?1 AND key = ?2 AND state = 'dead' AND id < ?4",
                )?;
                for (id, version) in sent {
                    let row: Option<(String, String, i64)> = done
                        .query_row(params![id, version, at], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()?;
                    if let Some((shop, key, id)) = row {
                        supersede.execute(params![shop, key, at, id])?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// Sending these (id, version) rows failed. A retryable failure counts an attempt and
    /// waits until `retry_at`, a permanent one (or the last allowed attempt) dead-letters the
    /// row. A row replaced meanwhile is due again at once: the newer value may fare better.
    pub async fn dispatch_failed(
        &self,
        sent: Vec<(i64, i64)>,
        failure: Failure,
        max_attempts: u32,
    ) -> Result<()> {
        self.db
            .call(move |conn| {
                let at = now();
                let mut stmt = conn.prepare_cached(
                    "UPDATE dispatch SET
                        attempts = attempts + 1,
                        last_error = ?3,
                        state = CASE WHEN ?4 IS NULL OR attempts + 1 >= ?5 THEN 'dead'
                                     ELSE 'pending' END,
                        next_attempt_at = COALESCE(?4, next_attempt_at),
                        updated_at = ?6
                     WHERE id = ?1 AND version = ?2 AND state = 'pending'",
                )?;
                let mut replaced = conn.prepare_cached(
                    "UPDATE dispatch SET last_error = ?2, updated_at = ?3
                     WHERE id = ?1 AND state = 'pending'",
                )?;
                for (id, version) in sent {
                    let changed = stmt.execute(params![
                        id,
                        version,
                        failure.reason,
                        failure.retry_at.map(timestamp),
                        i64::from(max_attempts),
                        at
                    ])?;
                    if changed == 0 {
                        replaced.execute(params![id, failure.reason, at])?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// A tenant's dispatch rows, newest first.
    pub async fn list_dispatch(
        &self,
        tenant: TenantId,
        state: Option<DispatchState>,
        limit: u32,
    ) -> Result<Vec<DispatchSummary>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT {SUMMARY_COLUMNS} FROM dispatch WHERE tenant_id = ?1
                     AND (?2 IS NULL OR state = ?2) ORDER BY id DESC LIMIT ?3"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(
                    params![tenant.as_str(), state.map(DispatchState::as_str), limit],
                    summary,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Puts a dead row back in line; returns its shop. Refused when a newer value for the same
    /// key is already pending (that one will be sent instead).
    pub async fn replay_dispatch(&self, tenant: TenantId, id: i64) -> Result<ShopId> {
        self.db
            .call(move |conn| {
                let row = conn
                    .query_row(
                        "SELECT state, shop_id, key, order_ref FROM dispatch
                         WHERE id = ?1 AND tenant_id = ?2",
                        params![id, tenant.as_str()],
                        |r| {
                            let shop = parsed(r, 1, stored_id(ShopId::new, "shop id"))?;
                            let row: (ShopId, String, Option<String>) =
                                (shop, r.get(2)?, r.get(3)?);
                            Ok((parsed(r, 0, DispatchState::stored)?, row))
                        },
                    )
                    .optional()?;
                let (shop, key, order) = queue::may_replay_dispatch(id, row)?;
                let newer: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM dispatch WHERE shop_id = ?1 AND id > ?3
                         AND state IN ('pending', 'done')
                         AND (key = ?2 OR (order_ref IS NOT NULL AND order_ref = ?4))
                         ORDER BY id LIMIT 1",
                        params![shop.as_str(), key, id, order],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(newer) = newer {
                    return Err(queue::newer_exists(newer));
                }
                conn.execute(
                    "UPDATE dispatch SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                            updated_at = ?2, last_error = 'replayed by an operator: ' || last_error
                     WHERE id = ?1",
                    params![id, now()],
                )?;
                Ok(shop)
            })
            .await
    }
}
