//! Leases (so only one instance does a piece of work at a time), the sweeps' questions
//! (which tenants and shops have work) and retention, on PostgreSQL.

use chrono::{DateTime, Utc};
use shared::{ShopId, TenantId};

use super::{PgStore, col, parsed, stored_id};
use crate::store::queue;
use crate::store::types::Purged;
use crate::store::{Lease, Result};

impl PgStore {
    pub async fn acquire_lease(
        &self,
        lease: Lease,
        holder: String,
        ttl_ms: u64,
        take_over: bool,
    ) -> Result<bool> {
        let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX) as f64 / 1000.0;
        let changed = self
            .client()
            .await?
            .execute(
                "INSERT INTO leases (name, holder, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                                                  expires_at = excluded.expires_at
                 WHERE $4 OR leases.holder = excluded.holder OR leases.expires_at < now()",
                &[&lease.to_string(), &holder, &ttl, &take_over],
            )
            .await?;
        Ok(changed == 1)
    }

    pub async fn release_lease(&self, lease: Lease, holder: String) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&lease.to_string(), &holder],
            )
            .await?;
        Ok(())
    }

    pub async fn renew_leases(&self, prefix: String, ttl_ms: u64) -> Result<Vec<(Lease, String)>> {
        let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX) as f64 / 1000.0;
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE starts_with(holder, $1) RETURNING name, holder",
                &[&prefix, &ttl],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((parsed(r, 0, str::parse)?, col(r, 1)?)))
            .collect()
    }

    pub async fn lease_holder(&self, lease: Lease) -> Result<Option<String>> {
        self.client()
            .await?
            .query_opt(
                "SELECT holder FROM leases WHERE name = $1 AND expires_at >= now()",
                &[&lease.to_string()],
            )
            .await?
            .map(|r| col(&r, 0))
            .transpose()
    }

    pub async fn pending_tenants(&self, tenants: Vec<TenantId>) -> Result<Vec<TenantId>> {
        let names: Vec<&str> = tenants.iter().map(TenantId::as_str).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT tenant_id FROM events
                 WHERE tenant_id = ANY($1) AND state = 'pending'",
                &[&names],
            )
            .await?;
        rows.iter()
            .map(|r| parsed(r, 0, stored_id(TenantId::new, "tenant id")))
            .collect()
    }

    pub async fn queued_count(&self, tenant: TenantId) -> Result<u64> {
        let count: i64 = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*) FROM events
                 WHERE tenant_id = $1 AND state IN ('pending', 'fetching', 'held')",
                &[&tenant.as_str()],
            )
            .await?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    pub async fn shops_with_pending_dispatch(&self) -> Result<Vec<ShopId>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT shop_id FROM dispatch WHERE state = 'pending' ORDER BY shop_id",
                &[],
            )
            .await?;
        let ids = rows.iter().map(|r| col(r, 0)).collect::<Result<_>>()?;
        Ok(queue::readable_shops(ids))
    }

    pub async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged> {
        let limit = i64::from(limit);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let ids = tx
            .query(
                "SELECT id FROM events WHERE state IN ('delivered', 'ignored') AND updated_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&before, &limit],
            )
            .await?
            .iter()
            .map(|r| col(r, 0))
            .collect::<Result<Vec<i64>, _>>()?;
        tx.execute(
            "DELETE FROM event_history WHERE event_id = ANY($1)",
            &[&ids],
        )
        .await?;
        let events = tx
            .execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])
            .await?;
        let pushes = tx
            .execute(
                "DELETE FROM pushes WHERE id IN (
                    SELECT id FROM pushes WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[&before, &limit],
            )
            .await?;
        let dispatch = tx
            .execute(
                "DELETE FROM dispatch WHERE id IN (
                    SELECT id FROM dispatch WHERE state IN ('done', 'superseded')
                    AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[&before, &limit],
            )
            .await?;
        tx.commit().await?;
        Ok(Purged {
            events,
            pushes,
            dispatch,
        })
    }
}
