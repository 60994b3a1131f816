//! Agent sessions and a tenant's agents on SQLite.

use rusqlite::{OptionalExtension, params};
use shared::{AgentId, TenantId};

use super::{SqliteStore, parsed, stored_id, time, time_opt};
use crate::store::agent_sessions::AgentSessionRecord;
use crate::store::{AgentRecord, Result, StoreError, now};

impl SqliteStore {
    pub async fn open_agent_session(
        &self,
        agent: AgentId,
        tenant: TenantId,
        instance: String,
        agent_version: String,
        address: Option<String>,
    ) -> Result<i64> {
        self.db
            .call(move |conn| {
                let at = now();
                let id = conn
                    .query_row(
                        "INSERT INTO agent_sessions (agent_id, tenant_id, instance, agent_version,
                                                     address, connected_at, last_seen_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id",
                        params![
                            agent.as_str(),
                            tenant.as_str(),
                            instance,
                            agent_version,
                            address,
                            at
                        ],
                        |r| r.get(0),
                    )
                    .optional()?;
                id.ok_or_else(|| {
                    StoreError::Database(format!("agent session of {agent} was not stored"))
                })
            })
            .await
    }

    pub async fn touch_agent_session(&self, id: i64) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE agent_sessions SET last_seen_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
                    params![id, now()],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn close_agent_session(&self, id: i64) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE agent_sessions SET last_seen_at = ?2, ended_at = ?2
                     WHERE id = ?1 AND ended_at IS NULL",
                    params![id, now()],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn agent_sessions(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<AgentSessionRecord>> {
        self.sessions_where(tenant, limit, "tenant_id = ?1 ORDER BY id DESC LIMIT ?2")
            .await
    }

    pub async fn latest_agent_sessions(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<AgentSessionRecord>> {
        self.sessions_where(
            tenant,
            limit,
            "id IN (SELECT MAX(id) FROM agent_sessions WHERE tenant_id = ?1 GROUP BY agent_id)
             ORDER BY id DESC LIMIT ?2",
        )
        .await
    }

    /// A tenant's sessions chosen by `condition` (which binds the tenant as `?1` and the
    /// limit as `?2`).
    async fn sessions_where(
        &self,
        tenant: TenantId,
        limit: u32,
        condition: &'static str,
    ) -> Result<Vec<AgentSessionRecord>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT id, agent_id, instance, agent_version, address, connected_at,
                            last_seen_at, ended_at
                     FROM agent_sessions WHERE {condition}"
                ))?;
                let rows = stmt.query_map(params![tenant.as_str(), limit], |r| {
                    Ok(AgentSessionRecord {
                        id: r.get(0)?,
                        agent_id: parsed(r, 1, stored_id(AgentId::new, "agent id"))?,
                        tenant_id: tenant.clone(),
                        instance: r.get(2)?,
                        agent_version: r.get(3)?,
                        address: r.get(4)?,
                        connected_at: time(r, 5)?,
                        last_seen_at: time(r, 6)?,
                        ended_at: time_opt(r, 7)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    pub async fn agents(&self, tenant: TenantId, limit: u32) -> Result<Vec<AgentRecord>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, name, created_at, revoked_at FROM agents
                     WHERE tenant_id = ?1 ORDER BY revoked_at IS NOT NULL, created_at, id LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![tenant.as_str(), limit], |r| {
                    Ok(AgentRecord {
                        id: parsed(r, 0, stored_id(AgentId::new, "agent id"))?,
                        tenant_id: tenant.clone(),
                        name: r.get(1)?,
                        created_at: time(r, 2)?,
                        revoked_at: time_opt(r, 3)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }
}
