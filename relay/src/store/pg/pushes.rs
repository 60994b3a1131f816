//! The pushes agents send, on PostgreSQL: each stored once per (tenant, push id) and, the
//! first time, fanned out to the shops whose rules take it (see [`super::dispatch`]).

use shared::domain::Change;
use shared::{AgentId, ShopId, TenantId};

use super::{PgStore, col, parsed, stored_id};
use crate::store::Result;
use crate::store::queue;
use crate::store::types::{PushSummary, encode_pushes, stored_json};

impl PgStore {
    pub async fn insert_pushes(
        &self,
        tenant: TenantId,
        agent: AgentId,
        pushes: Vec<(String, Change)>,
    ) -> Result<Vec<ShopId>> {
        let encoded = encode_pushes(pushes)?;
        super::retrying(|| self.insert_encoded_pushes(&tenant, &agent, &encoded)).await
    }

    async fn insert_encoded_pushes(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        encoded: &[(String, Change, String)],
    ) -> Result<Vec<ShopId>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let shops = super::tenants::read_shops(&tx, Some(tenant)).await?;
        let insert = tx
            .prepare(
                "INSERT INTO pushes (tenant_id, agent_id, push_id, kind, payload, received_at)
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (tenant_id, push_id) DO NOTHING",
            )
            .await?;
        let mut woken: Vec<ShopId> = Vec::new();
        for (push_id, change, payload) in encoded {
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        &tenant.as_str(),
                        &agent.as_str(),
                        &push_id.as_str(),
                        &change.kind(),
                        &payload.as_str(),
                    ],
                )
                .await?;
            if inserted == 1 {
                let fan_out = queue::fan_out(&shops, change, push_id)?;
                let shops =
                    super::dispatch::fan_out(&tx, tenant, &fan_out, change, push_id, payload)
                        .await?;
                queue::wake(&mut woken, shops);
            }
        }
        tx.commit().await?;
        Ok(woken)
    }

    pub async fn list_pushes(&self, tenant: TenantId, limit: u32) -> Result<Vec<PushSummary>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, agent_id, push_id, kind, payload, received_at FROM pushes
                 WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
                &[&tenant.as_str(), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PushSummary {
                    id: col(r, 0)?,
                    agent_id: parsed(r, 1, stored_id(AgentId::new, "agent id"))?,
                    push_id: col(r, 2)?,
                    kind: col(r, 3)?,
                    change: parsed(r, 4, stored_json)?,
                    received_at: col(r, 5)?,
                })
            })
            .collect()
    }
}
