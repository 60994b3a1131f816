//! Agent sessions and a tenant's agents on PostgreSQL.

use shared::{AgentId, TenantId};

use super::{PgStore, col, parsed, stored_id};
use crate::store::agent_sessions::AgentSessionRecord;
use crate::store::{AgentRecord, Result};

impl PgStore {
    pub async fn open_agent_session(
        &self,
        agent: AgentId,
        tenant: TenantId,
        instance: String,
        agent_version: String,
        address: Option<String>,
    ) -> Result<i64> {
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO agent_sessions (agent_id, tenant_id, instance, agent_version,
                                             address, connected_at, last_seen_at)
                 VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING id",
                &[
                    &agent.as_str(),
                    &tenant.as_str(),
                    &instance,
                    &agent_version,
                    &address,
                ],
            )
            .await?;
        col(&row, 0)
    }

    pub async fn touch_agent_session(&self, id: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE agent_sessions SET last_seen_at = now() WHERE id = $1 AND ended_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(())
    }

    pub async fn close_agent_session(&self, id: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE agent_sessions SET last_seen_at = now(), ended_at = now()
                 WHERE id = $1 AND ended_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(())
    }

    pub async fn agent_sessions(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<AgentSessionRecord>> {
        self.sessions_where(tenant, limit, "tenant_id = $1 ORDER BY id DESC LIMIT $2")
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
            "id IN (SELECT MAX(id) FROM agent_sessions WHERE tenant_id = $1 GROUP BY agent_id)
             ORDER BY id DESC LIMIT $2",
        )
        .await
    }

    /// A tenant's sessions chosen by `condition` (which binds the tenant as `$1` and the
    /// limit as `$2`).
    async fn sessions_where(
        &self,
        tenant: TenantId,
        limit: u32,
        condition: &'static str,
    ) -> Result<Vec<AgentSessionRecord>> {
        let sql = format!(
            "SELECT id, agent_id, instance, agent_version, address, connected_at,
                    last_seen_at, ended_at
             FROM agent_sessions WHERE {condition}"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&tenant.as_str(), &i64::from(limit)])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentSessionRecord {
                    id: col(r, 0)?,
                    agent_id: parsed(r, 1, stored_id(AgentId::new, "agent id"))?,
                    tenant_id: tenant.clone(),
                    instance: col(r, 2)?,
                    agent_version: col(r, 3)?,
                    address: col(r, 4)?,
                    connected_at: col(r, 5)?,
                    last_seen_at: col(r, 6)?,
                    ended_at: col(r, 7)?,
                })
            })
            .collect()
    }

    pub async fn agents(&self, tenant: TenantId, limit: u32) -> Result<Vec<AgentRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, name, created_at, revoked_at FROM agents
                 WHERE tenant_id = $1 ORDER BY revoked_at IS NOT NULL, created_at, id LIMIT $2",
                &[&tenant.as_str(), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentRecord {
                    id: parsed(r, 0, stored_id(AgentId::new, "agent id"))?,
                    tenant_id: tenant.clone(),
                    name: col(r, 1)?,
                    created_at: col(r, 2)?,
                    revoked_at: col(r, 3)?,
                })
            })
            .collect()
    }
}
