//! What goes to each shop, coalesced, on PostgreSQL: the same rows and rules as the SQLite
//! store ([`crate::store::sqlite`] explains them; [`crate::store::queue`] holds the shared ones).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use shared::domain::Change;
use shared::{ShopId, TenantId};

use super::{PgStore, col, parsed, stored_id};
use crate::store::queue::{self, FanOut};
use crate::store::types::{DispatchItem, DispatchSummary, Failure, stored_json};
use crate::store::{DispatchState, Result, StoreError};

/// Writes a freshly stored push's dispatch rows, one per shop in `fan_out`, inside the
/// push's transaction; returns those shops.
pub(super) async fn fan_out(
    tx: &impl GenericClient,
    tenant: &TenantId,
    fan_out: &FanOut<'_>,
    change: &Change,
    push_id: &str,
    payload: &str,
) -> Result<Vec<ShopId>> {
    for shop in &fan_out.shops {
        tx.execute(
            "INSERT INTO dispatch (tenant_id, shop_id, kind, key, payload, push_id, order_ref,
                                   state, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', now(), now(), now())
             ON CONFLICT (shop_id, key) WHERE state = 'pending'
             DO UPDATE SET payload = excluded.payload, push_id = excluded.push_id,
                           version = dispatch.version + 1, updated_at = excluded.updated_at",
            &[
                &tenant.as_str(),
                &shop.as_str(),
                &change.kind(),
                &fan_out.key,
                &payload,
                &push_id,
                &fan_out.order_ref,
            ],
        )
        .await?;
    }
    Ok(fan_out.shops.iter().map(|&shop| shop.clone()).collect())
}

pub(super) const SUMMARY_COLUMNS: &str = "id, shop_id, kind, key, payload, push_id, state, attempts, \
                               last_error, next_attempt_at, created_at, updated_at";

pub(super) fn summary(r: &tokio_postgres::Row) -> Result<DispatchSummary> {
    Ok(DispatchSummary {
        id: col(r, 0)?,
        shop_id: parsed(r, 1, stored_id(ShopId::new, "shop id"))?,
        kind: col(r, 2)?,
        key: col(r, 3)?,
        change: parsed(r, 4, stored_json)?,
        push_id: col(r, 5)?,
        state: parsed(r, 6, DispatchState::stored)?,
        attempts: col(r, 7)?,
        last_error: col(r, 8)?,
        next_attempt_at: col(r, 9)?,
        created_at: col(r, 10)?,
        updated_at: col(r, 11)?,
    })
}

impl PgStore {
    pub async fn due_dispatch(&self, shop: ShopId, limit: usize) -> Result<Vec<DispatchItem>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, payload, version, attempts FROM dispatch
                 WHERE shop_id = $1 AND state = 'pending' AND next_attempt_at <= now()
                   AND NOT EXISTS (SELECT 1 FROM dispatch earlier
                                   WHERE earlier.shop_id = dispatch.shop_id
                                     AND earlier.order_ref = dispatch.order_ref
                                     AND earlier.state = 'pending'
                                     AND earlier.id < dispatch.id)
                 ORDER BY id LIMIT $2",
                &[&shop.as_str(), &(limit as i64)],
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = col(&r, 0)?;
            let (payload, version, attempts) = (col(&r, 1)?, col(&r, 2)?, col(&r, 3)?);
            match queue::dispatch_item(id, payload, version, attempts) {
                Ok(item) => items.push(item),
                Err(reason) => {
                    client
                        .execute(
                            "UPDATE dispatch SET state = 'dead', last_error = $2,
                                    updated_at = now() WHERE id = $1",
                            &[&id, &reason],
                        )
                        .await?;
                }
            }
        }
        Ok(items)
    }

    pub async fn next_dispatch_at(&self, shop: ShopId) -> Result<Option<DateTime<Utc>>> {
        let r = self
            .client()
            .await?
            .query_one(
                "SELECT MIN(next_attempt_at) FROM dispatch
                 WHERE shop_id = $1 AND state = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM dispatch earlier
                                   WHERE earlier.shop_id = dispatch.shop_id
                                     AND earlier.order_ref = dispatch.order_ref
                                     AND earlier.state = 'pending'
                                     AND earlier.id < dispatch.id)",
                &[&shop.as_str()],
            )
            .await?;
        col(&r, 0)
    }

    pub async fn dispatch_done(&self, sent: Vec<(i64, i64)>) -> Result<()> {
        if sent.is_empty() {
            return Ok(());
        }
        super::retrying(|| self.dispatch_done_once(&sent)).await
    }

    async fn dispatch_done_once(&self, sent: &[(i64, i64)]) -> Result<()> {
        let (ids, versions): (Vec<i64>, Vec<i64>) = sent.iter().copied().unzip();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "WITH sent AS (SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[]) AS s(id, version)),
                  done AS (
                    UPDATE dispatch d SET state = 'done', last_error = NULL, updated_at = now()
                    FROM sent WHERE d.id = sent.id AND d.version = sent.version
                      AND d.state = 'pending'
                    RETURNING d.shop_id, d.key, d.id)
             UPDATE dispatch SET state = 'superseded', updated_at = now()
             FROM done WHERE dispatch.shop_id = done.shop_id AND dispatch.key = done.key
               AND dispatch.state = 'dead' AND dispatch.id < done.id",
            &[&ids, &versions],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn dispatch_failed(
        &self,
        sent: Vec<(i64, i64)>,
        failure: Failure,
        max_attempts: u32,
    ) -> Result<()> {
        super::retrying(|| self.dispatch_failed_once(&sent, &failure, max_attempts)).await
    }

    async fn dispatch_failed_once(
        &self,
        sent: &[(i64, i64)],
        failure: &Failure,
        max_attempts: u32,
    ) -> Result<()> {
        let retry_at = failure.retry_at;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        for &(id, version) in sent {
            let changed = tx
                .execute(
                    "UPDATE dispatch SET
                        attempts = attempts + 1,
                        last_error = $3,
                        state = CASE WHEN $4::TIMESTAMPTZ IS NULL OR attempts + 1 >= $5
                                     THEN 'dead' ELSE 'pending' END,
                        next_attempt_at = COALESCE($4, next_attempt_at),
                        updated_at = now()
                     WHERE id = $1 AND version = $2 AND state = 'pending'",
                    &[
                        &id,
                        &version,
                        &failure.reason,
                        &retry_at,
                        &i64::from(max_attempts),
                    ],
                )
                .await?;
            if changed == 0 {
                tx.execute(
                    "UPDATE dispatch SET last_error = $2, updated_at = now()
                     WHERE id = $1 AND state = 'pending'",
                    &[&id, &failure.reason],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_dispatch(
        &self,
        tenant: TenantId,
        state: Option<DispatchState>,
        limit: u32,
    ) -> Result<Vec<DispatchSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM dispatch WHERE tenant_id = $1
             AND ($2::TEXT IS NULL OR state = $2) ORDER BY id DESC LIMIT $3"
        );
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &tenant.as_str(),
                    &state.map(DispatchState::as_str),
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter().map(summary).collect()
    }

    pub async fn replay_dispatch(&self, tenant: TenantId, id: i64) -> Result<ShopId> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT shop_id, key, state, order_ref FROM dispatch
                 WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
                &[&id, &tenant.as_str()],
            )
            .await?;
        let found = row
            .map(|r| Ok::<_, StoreError>((parsed(&r, 2, DispatchState::stored)?, r)))
            .transpose()?;
        let row = queue::may_replay_dispatch(id, found)?;
        let shop = parsed(&row, 0, stored_id(ShopId::new, "shop id"))?;
        let (key, order): (String, Option<String>) = (col(&row, 1)?, col(&row, 3)?);
        if let Some(newer) = tx
            .query_opt(
                "SELECT id FROM dispatch WHERE shop_id = $1 AND id > $3
                 AND state IN ('pending', 'done')
                 AND (key = $2 OR (order_ref IS NOT NULL AND order_ref = $4))
                 ORDER BY id LIMIT 1",
                &[&shop.as_str(), &key, &id, &order],
            )
            .await?
        {
            return Err(queue::newer_exists(col(&newer, 0)?));
        }
        tx.execute(
            "UPDATE dispatch SET state = 'pending', attempts = 0, next_attempt_at = now(),
                    updated_at = now(), last_error = 'replayed by an operator: ' || last_error
             WHERE id = $1",
            &[&id],
        )
        .await?;
        tx.commit().await?;
        Ok(shop)
    }
}
