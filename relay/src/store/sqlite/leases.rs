//! Leases (so only one holder does a piece of work at a time) and retention, on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use shared::{ShopId, TenantId};

use super::{SqliteStore, parsed};
use crate::store::queue;
use crate::store::types::{Notice, Purged};
use crate::store::{Lease, Result, timestamp};

impl SqliteStore {
    pub async fn acquire_lease(
        &self,
        lease: Lease,
        holder: String,
        ttl_ms: u64,
        take_over: bool,
    ) -> Result<bool> {
        self.db
            .call(move |conn| {
                let at = Utc::now();
                let expires = timestamp(at + chrono::Duration::milliseconds(ttl_ms as i64));
                let changed = conn.execute(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                                                      expires_at = excluded.expires_at
                     WHERE ?4 OR leases.holder = excluded.holder OR leases.expires_at < ?5",
                    params![lease.to_string(), holder, expires, take_over, timestamp(at)],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    pub async fn release_lease(&self, lease: Lease, holder: String) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                    params![lease.to_string(), holder],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn renew_leases(&self, prefix: String, ttl_ms: u64) -> Result<Vec<(Lease, String)>> {
        self.db
            .call(move |conn| {
                let expires = timestamp(Utc::now() + chrono::Duration::milliseconds(ttl_ms as i64));
                let mut stmt = conn.prepare_cached(
                    "UPDATE leases SET expires_at = ?2 WHERE substr(holder, 1, length(?1)) = ?1
                     RETURNING name, holder",
                )?;
                let leases = stmt
                    .query_map(params![prefix, expires], |r| {
                        Ok((parsed(r, 0, str::parse)?, r.get(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(leases)
            })
            .await
    }

    pub async fn lease_holder(&self, lease: Lease) -> Result<Option<String>> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT holder FROM leases WHERE name = ?1 AND expires_at >= ?2",
                        params![lease.to_string(), timestamp(Utc::now())],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    pub async fn pending_tenants(&self, tenants: Vec<TenantId>) -> Result<Vec<TenantId>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT 1 FROM events WHERE tenant_id = ?1 AND state = 'pending' LIMIT 1",
                )?;
                let mut pending = Vec::new();
                for tenant in tenants {
                    if stmt.exists([tenant.as_str()])? {
                        pending.push(tenant);
                    }
                }
                Ok(pending)
            })
            .await
    }

    pub async fn queued_count(&self, tenant: TenantId) -> Result<u64> {
        self.db
            .call(move |conn| {
                let count: i64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM events
                     WHERE tenant_id = ?1 AND state IN ('pending', 'fetching', 'held')",
                    )?
                    .query_row([tenant.as_str()], |r| r.get(0))?;
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
    }

    pub async fn shops_with_pending_dispatch(&self) -> Result<Vec<ShopId>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT shop_id FROM dispatch WHERE state = 'pending' ORDER BY shop_id",
                )?;
                let ids = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(queue::readable_shops(ids))
            })
            .await
    }

    /// There are no other instances to tell.
    pub async fn notify(&self, _notice: Notice) -> Result<()> {
        Ok(())
    }

    pub async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged> {
        self.db
            .call(move |conn| {
                let before = timestamp(before);
                let limit = i64::from(limit);
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS purge_ids (id INTEGER PRIMARY KEY)",
                    [],
                )?;
                conn.execute("DELETE FROM purge_ids", [])?;
                conn.execute(
                    "INSERT INTO purge_ids (id) SELECT id FROM events
                     WHERE state IN ('delivered', 'ignored') AND updated_at < ?1 LIMIT ?2",
                    params![before, limit],
                )?;
                conn.execute(
                    "DELETE FROM event_history WHERE event_id IN (SELECT id FROM purge_ids)",
                    [],
                )?;
                let events = conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM purge_ids)",
                    [],
                )?;
                let pushes = conn.execute(
                    "DELETE FROM pushes WHERE id IN (
                        SELECT id FROM pushes WHERE received_at < ?1 LIMIT ?2)",
                    params![before, limit],
                )?;
                let dispatch = conn.execute(
                    "DELETE FROM dispatch WHERE id IN (
                        SELECT id FROM dispatch WHERE state IN ('done', 'superseded')
                        AND updated_at < ?1 LIMIT ?2)",
                    params![before, limit],
                )?;
                Ok(Purged {
                    events: events as u64,
                    pushes: pushes as u64,
                    dispatch: dispatch as u64,
                })
            })
            .await
    }
}
