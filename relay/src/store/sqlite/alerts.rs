//! Alert settings, alerts, digests and the facts alert conditions read, on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use shared::{ShopId, TenantId};

use super::{SqliteStore, parsed, stored_id, time, time_opt};
use crate::store::alerts::{AgentPresence, AlertFacts, AlertRecord, DigestCounts, ShopRefusal};
use crate::store::{Result, StoreError, now, parse_time, timestamp};

const ALERT_COLUMNS: &str = "id, tenant_id, condition, detail, opened_at, resolved_at";

fn alert(r: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    Ok(AlertRecord {
        id: r.get(0)?,
        tenant_id: parsed(r, 1, stored_id(TenantId::new, "tenant id"))?,
        condition: r.get(2)?,
        detail: r.get(3)?,
        opened_at: time(r, 4)?,
        resolved_at: time_opt(r, 5)?,
    })
}

fn count(conn: &Connection, sql: &str, tenant: &TenantId, since: &str) -> Result<u64> {
    let n: i64 = conn.query_row(sql, params![tenant.as_str(), since], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The latest of a column's stored timestamps, if any.
fn latest(conn: &Connection, sql: &str, tenant: &TenantId) -> Result<Option<DateTime<Utc>>> {
    let text: Option<String> = conn.query_row(sql, [tenant.as_str()], |r| r.get(0))?;
    text.as_deref().map(parse_time).transpose()
}

impl SqliteStore {
    pub async fn alert_settings(&self, tenant: TenantId) -> Result<Option<String>> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT settings FROM alert_settings WHERE tenant_id = ?1",
                        [tenant.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    pub async fn put_alert_settings(&self, tenant: TenantId, settings: String) -> Result<()> {
        self.db
            .call(move |conn| {
                let known: Option<i64> = conn
                    .query_row(
                        "SELECT 1 FROM tenants WHERE id = ?1",
                        [tenant.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if known.is_none() {
                    return Err(StoreError::NotFound(format!("tenant {tenant} not found")));
                }
                conn.execute(
                    "INSERT INTO alert_settings (tenant_id, settings, updated_at)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant_id) DO UPDATE
                     SET settings = excluded.settings, updated_at = excluded.updated_at",
                    params![tenant.as_str(), settings, now()],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn all_alert_settings(&self) -> Result<Vec<(TenantId, String)>> {
        self.db
            .call(|conn| {
                let mut statement = conn
                    .prepare("SELECT tenant_id, settings FROM alert_settings ORDER BY tenant_id")?;
                let rows = statement
                    .query_map([], |r| {
                        Ok((
                            parsed(r, 0, stored_id(TenantId::new, "tenant id"))?,
                            r.get(1)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }

    pub async fn open_alert(
        &self,
        tenant: TenantId,
        condition: String,
        detail: String,
    ) -> Result<Option<AlertRecord>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "INSERT INTO alerts (tenant_id, condition, detail, opened_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant_id, condition) WHERE resolved_at IS NULL DO NOTHING
                     RETURNING {ALERT_COLUMNS}"
                );
                Ok(conn
                    .query_row(
                        &sql,
                        params![tenant.as_str(), condition, detail, now()],
                        alert,
                    )
                    .optional()?)
            })
            .await
    }

    pub async fn resolve_alert(
        &self,
        tenant: TenantId,
        condition: String,
    ) -> Result<Option<AlertRecord>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "UPDATE alerts SET resolved_at = ?3
                     WHERE tenant_id = ?1 AND condition = ?2 AND resolved_at IS NULL
                     RETURNING {ALERT_COLUMNS}"
                );
                Ok(conn
                    .query_row(&sql, params![tenant.as_str(), condition, now()], alert)
                    .optional()?)
            })
            .await
    }

    pub async fn alerts(
        &self,
        tenant: TenantId,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<AlertRecord>> {
        self.db
            .call(move |conn| {
                let sql = format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts
                     WHERE tenant_id = ?1 AND (?2 = 0 OR resolved_at IS NULL)
                     ORDER BY id DESC LIMIT ?3"
                );
                let mut statement = conn.prepare(&sql)?;
                let rows = statement
                    .query_map(params![tenant.as_str(), open_only, limit], alert)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }

    pub async fn claim_digest(&self, tenant: TenantId, day: String) -> Result<bool> {
        self.db
            .call(move |conn| {
                let inserted = conn.execute(
                    "INSERT INTO alert_digests (tenant_id, day, sent_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant_id, day) DO NOTHING",
                    params![tenant.as_str(), day, now()],
                )?;
                Ok(inserted == 1)
            })
            .await
    }

    pub async fn release_digest(&self, tenant: TenantId, day: String) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM alert_digests WHERE tenant_id = ?1 AND day = ?2",
                    params![tenant.as_str(), day],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn alert_facts(
        &self,
        tenant: TenantId,
        failures: u32,
        since: DateTime<Utc>,
    ) -> Result<AlertFacts> {
        self.db
            .call(move |conn| {
                let t = tenant.as_str();
                let dead_letters: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM events WHERE tenant_id = ?1 AND state = 'dead'",
                    [t],
                    |r| r.get(0),
                )?;
                let oldest_pending = latest(
                    conn,
                    "SELECT MIN(received_at) FROM events WHERE tenant_id = ?1 AND state = 'pending'",
                    &tenant,
                )?;
                let sessions: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM agent_sessions WHERE tenant_id = ?1 LIMIT 1)",
                    [t],
                    |r| r.get(0),
                )?;
                let agents = AgentPresence {
                    ever_connected: sessions > 0,
                    open_last_seen: latest(
                        conn,
                        "SELECT MAX(last_seen_at) FROM agent_sessions
                         WHERE tenant_id = ?1 AND ended_at IS NULL",
                        &tenant,
                    )?,
                    last_ended: latest(
                        conn,
                        "SELECT MAX(ended_at) FROM agent_sessions WHERE tenant_id = ?1",
                        &tenant,
                    )?,
                };
                let mut statement = conn.prepare(
                    "SELECT shop_id,
                            MAX(CASE WHEN state = 'pending' AND last_error IS NOT NULL
                                     THEN attempts ELSE 0 END),
                            SUM(CASE WHEN state = 'dead' AND updated_at >= ?3 THEN 1 ELSE 0 END)
                     FROM dispatch
                     WHERE tenant_id = ?1
                       AND ((state = 'pending' AND attempts >= ?2 AND last_error IS NOT NULL)
                            OR (state = 'dead' AND updated_at >= ?3))
                     GROUP BY shop_id ORDER BY shop_id LIMIT 100",
                )?;
                let refusing_shops = statement
                    .query_map(params![t, failures, timestamp(since)], |r| {
                        let in_a_row: i64 = r.get(1)?;
                        let dead: i64 = r.get(2)?;
                        Ok(ShopRefusal {
                            shop_id: parsed(r, 0, stored_id(ShopId::new, "shop id"))?,
                            failures_in_a_row: u32::try_from(in_a_row).unwrap_or(u32::MAX),
                            dead_recently: u64::try_from(dead).unwrap_or(0),
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(AlertFacts {
                    dead_letters: u64::try_from(dead_letters).unwrap_or(0),
                    oldest_pending,
                    agents,
                    refusing_shops,
                })
            })
            .await
    }

    pub async fn digest_counts(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<DigestCounts> {
        self.db
            .call(move |conn| {
                let since = timestamp(since);
                Ok(DigestCounts {
                    dead_letters: count(
                        conn,
                        "SELECT COUNT(*) FROM events
                         WHERE tenant_id = ?1 AND state = 'dead' AND updated_at >= ?2",
                        &tenant,
                        &since,
                    )?,
                    held_orders: count(
                        conn,
                        "SELECT COUNT(*) FROM events
                         WHERE tenant_id = ?1 AND state = 'held' AND updated_at >= ?2",
                        &tenant,
                        &since,
                    )?,
                    dead_dispatch: count(
                        conn,
                        "SELECT COUNT(*) FROM dispatch
                         WHERE tenant_id = ?1 AND state = 'dead' AND updated_at >= ?2",
                        &tenant,
                        &since,
                    )?,
                    alerts_opened: count(
                        conn,
                        "SELECT COUNT(*) FROM alerts WHERE tenant_id = ?1 AND opened_at >= ?2",
                        &tenant,
                        &since,
                    )?,
                })
            })
            .await
    }
}
