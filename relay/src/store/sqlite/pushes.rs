//! The pushes agents send, on SQLite: each stored once per (tenant, push id) and, the first
//! time, fanned out to the shops whose rules take it (see [`super::dispatch`]).

use rusqlite::params;
use shared::domain::Change;
use shared::{AgentId, ShopId, TenantId};

use super::{SqliteStore, parsed, stored_id, time};
use crate::store::queue;
use crate::store::types::{PushSummary, encode_pushes, stored_json};
use crate::store::{Result, now};

impl SqliteStore {
    /// Stores pushes in one transaction and fans out the new ones; returns the shops that got
    /// work (each once).
    pub async fn insert_pushes(
        &self,
        tenant: TenantId,
        agent: AgentId,
        pushes: Vec<(String, Change)>,
    ) -> Result<Vec<ShopId>> {
        let encoded = encode_pushes(pushes)?;
        self.db
            .call(move |conn| {
                let shops = super::tenants::read_shops(conn, Some(&tenant))?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO pushes (tenant_id, agent_id, push_id, kind, payload, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, push_id) DO NOTHING",
                )?;
                let at = now();
                let mut woken: Vec<ShopId> = Vec::new();
                for (push_id, change, payload) in &encoded {
                    let inserted = insert.execute(params![
                        tenant.as_str(),
                        agent.as_str(),
                        push_id,
                        change.kind(),
                        payload,
                        at
                    ])?;
                    if inserted == 1 {
                        let fan_out = queue::fan_out(&shops, change, push_id)?;
                        let shops = super::dispatch::fan_out(
                            conn, &tenant, &fan_out, change, push_id, payload,
                        )?;
                        queue::wake(&mut woken, shops);
                    }
                }
                Ok(woken)
            })
            .await
    }

    /// A tenant's pushes, newest first.
    pub async fn list_pushes(&self, tenant: TenantId, limit: u32) -> Result<Vec<PushSummary>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, agent_id, push_id, kind, payload, received_at FROM pushes
                     WHERE tenant_id = ?1 ORDER BY id DESC LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![tenant.as_str(), limit], |r| {
                    Ok(PushSummary {
                        id: r.get(0)?,
                        agent_id: parsed(r, 1, stored_id(AgentId::new, "agent id"))?,
                        push_id: r.get(2)?,
                        kind: r.get(3)?,
                        change: parsed(r, 4, stored_json)?,
                        received_at: time(r, 5)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}
