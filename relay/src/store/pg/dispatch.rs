//! What goes to each shop, coalesced, on PostgreSQL (see the SQLite store for the rules).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use shared::domain::Change;
use shared::{ShopId, TenantId};

use super::{PgStore, parse_time, text};
use crate::store::StoreError;
use crate::store::types::{
    DispatchItem, DispatchSummary, Failure, ShopRecord, coalescing_key, newer_exists, order_ref,
    takes,
};

/// Fans a freshly stored push out to the tenant's shops, inside the push's transaction.
pub(super) async fn fan_out(
    tx: &impl GenericClient,
    tenant: &TenantId,
    shops: &[ShopRecord],
    push_id: &str,
    change: &Change,
    payload: &str,
) -> Result<Vec<ShopId>, StoreError> {
    let key = coalescing_key(change, push_id);
    let order = order_ref(change);
    let mut woken = Vec::new();
    for shop in shops {
        if !takes(shop, change) {
            continue;
        }
        tx.execute(
            "INSERT INTO dispatch (tenant_id, shop_id, kind, key, payload, push_id, order_ref,
                                   state, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', now(), now(), now())
             ON CONFLICT (shop_id, key) WHERE state = 'pending'
             DO UPDATE SET payload = excluded.payload, push_id = excluded.push_id,
                           version = dispatch.version + 1, updated_at = excluded.updated_at",
            &[
                &tenant.as_str(),
                &shop.shop_id.as_str(),
                &change.kind(),
                &key,
                &payload,
                &push_id,
                &order,
            ],
        )
        .await?;
        woken.push(shop.shop_id.clone());
    }
    Ok(woken)
}

const SUMMARY_COLUMNS: &str = "id, shop_id, kind, key, payload, push_id, state, attempts, \
                               last_error, next_attempt_at, created_at, updated_at";

fn summary(r: &tokio_postgres::Row) -> DispatchSummary {
    DispatchSummary {
        id: r.get(0),
        shop_id: r.get(1),
        kind: r.get(2),
        key: r.get(3),
        change: serde_json::from_str(r.get::<_, &str>(4)).unwrap_or(serde_json::Value::Null),
        push_id: r.get(5),
        state: r.get(6),
        attempts: r.get(7),
        last_error: r.get(8),
        next_attempt_at: text(r.get(9)),
        created_at: text(r.get(10)),
        updated_at: text(r.get(11)),
    }
}

impl PgStore {
    pub async fn due_dispatch(
        &self,
        shop: ShopId,
        limit: usize,
    ) -> Result<Vec<DispatchItem>, StoreError> {
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
            let id: i64 = r.get(0);
            match serde_json::from_str::<Change>(r.get::<_, &str>(1)) {
                Ok(change) => items.push(DispatchItem {
                    id,
                    change,
                    version: r.get(2),
                    attempts: r.get(3),
                }),
                Err(e) => {
                    let reason = format!("the stored change cannot be read: {e}");
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

    pub async fn next_dispatch_at(&self, shop: ShopId) -> Result<Option<String>, StoreError> {
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
        Ok(r.get::<_, Option<DateTime<Utc>>>(0).map(text))
    }

    pub async fn dispatch_done(&self, sent: Vec<(i64, i64)>) -> Result<(), StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        super::retrying(|| self.dispatch_done_once(&sent)).await
    }

    async fn dispatch_done_once(&self, sent: &[(i64, i64)]) -> Result<(), StoreError> {
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
    ) -> Result<(), StoreError> {
        super::retrying(|| self.dispatch_failed_once(&sent, &failure, max_attempts)).await
    }

    async fn dispatch_failed_once(
        &self,
        sent: &[(i64, i64)],
        failure: &Failure,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        let retry_at = failure.retry_at.as_deref().map(parse_time).transpose()?;
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
        state: Option<String>,
        limit: u32,
    ) -> Result<Vec<DispatchSummary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM dispatch WHERE tenant_id = $1
             AND ($2::TEXT IS NULL OR state = $2) ORDER BY id DESC LIMIT $3"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&tenant.as_str(), &state, &i64::from(limit)])
            .await?;
        Ok(rows.iter().map(summary).collect())
    }

    pub async fn replay_dispatch(&self, tenant: TenantId, id: i64) -> Result<ShopId, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT shop_id, key, state, order_ref FROM dispatch
                 WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
                &[&id, &tenant.as_str()],
            )
            .await?
        else {
            return Err(StoreError::NotFound(format!(
                "dispatch item {id} not found"
            )));
        };
        let (shop, key, state): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let order: Option<String> = row.get(3);
        if state != "dead" {
            return Err(StoreError::Conflict(format!(
                "dispatch item {id} is {state}; only dead items can be replayed"
            )));
        }
        if let Some(newer) = tx
            .query_opt(
                "SELECT id FROM dispatch WHERE shop_id = $1 AND id > $3
                 AND state IN ('pending', 'done')
                 AND (key = $2 OR (order_ref IS NOT NULL AND order_ref = $4))
                 ORDER BY id LIMIT 1",
                &[&shop, &key, &id, &order],
            )
            .await?
        {
            return Err(StoreError::Conflict(newer_exists(newer.get(0))));
        }
        tx.execute(
            "UPDATE dispatch SET state = 'pending', attempts = 0, next_attempt_at = now(),
                    updated_at = now(), last_error = 'replayed by an operator: ' || last_error
             WHERE id = $1",
            &[&id],
        )
        .await?;
        tx.commit().await?;
        ShopId::new(shop).map_err(|e| StoreError::Database(e.to_string()))
    }
}
