//! Alert settings, alerts, digests and the facts alert conditions read, on PostgreSQL.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use shared::{ShopId, TenantId};

use super::{PgStore, col, parsed, stored_id};
use crate::store::alerts::{AgentPresence, AlertFacts, AlertRecord, DigestCounts, ShopRefusal};
use crate::store::{Result, StoreError};

const ALERT_COLUMNS: &str = "id, tenant_id, condition, detail, opened_at, resolved_at";

fn alert(r: &tokio_postgres::Row) -> Result<AlertRecord> {
    Ok(AlertRecord {
        id: col(r, 0)?,
        tenant_id: parsed(r, 1, stored_id(TenantId::new, "tenant id"))?,
        condition: col(r, 2)?,
        detail: col(r, 3)?,
        opened_at: col(r, 4)?,
        resolved_at: col(r, 5)?,
    })
}

async fn count(
    client: &impl GenericClient,
    sql: &str,
    tenant: &TenantId,
    since: &DateTime<Utc>,
) -> Result<u64> {
    let row = client.query_one(sql, &[&tenant.as_str(), since]).await?;
    Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
}

async fn latest(
    client: &impl GenericClient,
    sql: &str,
    tenant: &TenantId,
) -> Result<Option<DateTime<Utc>>> {
    let row = client.query_one(sql, &[&tenant.as_str()]).await?;
    col(&row, 0)
}

impl PgStore {
    pub async fn alert_settings(&self, tenant: TenantId) -> Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT settings FROM alert_settings WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await?;
        row.map(|r| col(&r, 0)).transpose()
    }

    pub async fn put_alert_settings(&self, tenant: TenantId, settings: String) -> Result<()> {
        let client = self.client().await?;
        let known = client
            .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant.as_str()])
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("tenant {tenant} not found")));
        }
        client
            .execute(
                "INSERT INTO alert_settings (tenant_id, settings, updated_at)
                 VALUES ($1, $2, now())
                 ON CONFLICT (tenant_id) DO UPDATE
                 SET settings = excluded.settings, updated_at = excluded.updated_at",
                &[&tenant.as_str(), &settings],
            )
            .await?;
        Ok(())
    }

    pub async fn all_alert_settings(&self) -> Result<Vec<(TenantId, String)>> {
        self.client()
            .await?
            .query(
                "SELECT tenant_id, settings FROM alert_settings ORDER BY tenant_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok((
                    parsed(r, 0, stored_id(TenantId::new, "tenant id"))?,
                    col(r, 1)?,
                ))
            })
            .collect()
    }

    pub async fn open_alert(
        &self,
        tenant: TenantId,
        condition: String,
        detail: String,
    ) -> Result<Option<AlertRecord>> {
        let sql = format!(
            "INSERT INTO alerts (tenant_id, condition, detail, opened_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (tenant_id, condition) WHERE resolved_at IS NULL DO NOTHING
             RETURNING {ALERT_COLUMNS}"
        );
        let row = self
            .client()
            .await?
            .query_opt(&sql, &[&tenant.as_str(), &condition, &detail])
            .await?;
        row.as_ref().map(alert).transpose()
    }

    pub async fn resolve_alert(
        &self,
        tenant: TenantId,
        condition: String,
    ) -> Result<Option<AlertRecord>> {
        let sql = format!(
            "UPDATE alerts SET resolved_at = now()
             WHERE tenant_id = $1 AND condition = $2 AND resolved_at IS NULL
             RETURNING {ALERT_COLUMNS}"
        );
        let row = self
            .client()
            .await?
            .query_opt(&sql, &[&tenant.as_str(), &condition])
            .await?;
        row.as_ref().map(alert).transpose()
    }

    pub async fn alerts(
        &self,
        tenant: TenantId,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<AlertRecord>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE tenant_id = $1 AND (NOT $2 OR resolved_at IS NULL)
             ORDER BY id DESC LIMIT $3"
        );
        self.client()
            .await?
            .query(&sql, &[&tenant.as_str(), &open_only, &i64::from(limit)])
            .await?
            .iter()
            .map(alert)
            .collect()
    }

    pub async fn claim_digest(&self, tenant: TenantId, day: String) -> Result<bool> {
        let inserted = self
            .client()
            .await?
            .execute(
                "INSERT INTO alert_digests (tenant_id, day, sent_at) VALUES ($1, $2, now())
                 ON CONFLICT (tenant_id, day) DO NOTHING",
                &[&tenant.as_str(), &day],
            )
            .await?;
        Ok(inserted == 1)
    }

    pub async fn release_digest(&self, tenant: TenantId, day: String) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM alert_digests WHERE tenant_id = $1 AND day = $2",
                &[&tenant.as_str(), &day],
            )
            .await?;
        Ok(())
    }

    pub async fn alert_facts(
        &self,
        tenant: TenantId,
        failures: u32,
        since: DateTime<Utc>,
    ) -> Result<AlertFacts> {
        let client = self.client().await?;
        let t = tenant.as_str();
        let dead = client
            .query_one(
                "SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND state = 'dead'",
                &[&t],
            )
            .await?;
        let ever = client
            .query_opt(
                "SELECT 1 FROM agent_sessions WHERE tenant_id = $1 LIMIT 1",
                &[&t],
            )
            .await?;
        let agents = AgentPresence {
            ever_connected: ever.is_some(),
            open_last_seen: latest(
                &client,
                "SELECT MAX(last_seen_at) FROM agent_sessions
                 WHERE tenant_id = $1 AND ended_at IS NULL",
                &tenant,
            )
            .await?,
            last_ended: latest(
                &client,
                "SELECT MAX(ended_at) FROM agent_sessions WHERE tenant_id = $1",
                &tenant,
            )
            .await?,
        };
        let refusing_shops = client
            .query(
                "SELECT shop_id,
                        MAX(CASE WHEN state = 'pending' AND last_error IS NOT NULL
                                 THEN attempts ELSE 0 END)::BIGINT,
                        COUNT(*) FILTER (WHERE state = 'dead' AND updated_at >= $3)
                 FROM dispatch
                 WHERE tenant_id = $1
                   AND ((state = 'pending' AND attempts >= $2 AND last_error IS NOT NULL)
                        OR (state = 'dead' AND updated_at >= $3))
                 GROUP BY shop_id ORDER BY shop_id LIMIT 100",
                &[&t, &i64::from(failures), &since],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(ShopRefusal {
                    shop_id: parsed(r, 0, stored_id(ShopId::new, "shop id"))?,
                    failures_in_a_row: u32::try_from(col::<i64>(r, 1)?).unwrap_or(u32::MAX),
                    dead_recently: u64::try_from(col::<i64>(r, 2)?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AlertFacts {
            dead_letters: u64::try_from(col::<i64>(&dead, 0)?).unwrap_or(0),
            oldest_pending: latest(
                &client,
                "SELECT MIN(received_at) FROM events WHERE tenant_id = $1 AND state = 'pending'",
                &tenant,
            )
            .await?,
            agents,
            refusing_shops,
        })
    }

    pub async fn digest_counts(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<DigestCounts> {
        let client = self.client().await?;
        Ok(DigestCounts {
            dead_letters: count(
                &client,
                "SELECT COUNT(*) FROM events
                 WHERE tenant_id = $1 AND state = 'dead' AND updated_at >= $2",
                &tenant,
                &since,
            )
            .await?,
            held_orders: count(
                &client,
                "SELECT COUNT(*) FROM events
                 WHERE tenant_id = $1 AND state = 'held' AND updated_at >= $2",
                &tenant,
                &since,
            )
            .await?,
            dead_dispatch: count(
                &client,
                "SELECT COUNT(*) FROM dispatch
                 WHERE tenant_id = $1 AND state = 'dead' AND updated_at >= $2",
                &tenant,
                &since,
            )
            .await?,
            alerts_opened: count(
                &client,
                "SELECT COUNT(*) FROM alerts WHERE tenant_id = $1 AND opened_at >= $2",
                &tenant,
                &since,
            )
            .await?,
        })
    }
}
