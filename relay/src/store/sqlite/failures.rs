//! Failed events and dispatch rows on SQLite, for grouping by reason.

use rusqlite::params;
use shared::{ShopId, TenantId};

use super::{SqliteStore, parsed, stored_id, time};
use crate::store::Result;
use crate::store::failures::FailedItem;

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<FailedItem> {
    Ok(FailedItem {
        tenant_id: parsed(r, 0, stored_id(TenantId::new, "tenant id"))?,
        id: r.get(1)?,
        shop_id: parsed(r, 2, stored_id(ShopId::new, "shop id"))?,
        subject: r.get(3)?,
        state: r.get(4)?,
        reason: r.get(5)?,
        updated_at: time(r, 6)?,
    })
}

impl SqliteStore {
    pub async fn failed_events(
        &self,
        scope: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<FailedItem>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT tenant_id, id, shop_id, order_id, state, last_error, updated_at
                     FROM events
                     WHERE state IN ('dead', 'held') AND (?1 IS NULL OR tenant_id = ?1)
                     ORDER BY id DESC LIMIT ?2",
                )?;
                let scope = scope.as_ref().map(|t| t.as_str());
                let rows = stmt.query_map(params![scope, limit], item)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    pub async fn failed_dispatch(
        &self,
        scope: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<FailedItem>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT tenant_id, id, shop_id, key, state, last_error, updated_at
                     FROM dispatch
                     WHERE state = 'dead' AND (?1 IS NULL OR tenant_id = ?1)
                     ORDER BY id DESC LIMIT ?2",
                )?;
                let scope = scope.as_ref().map(|t| t.as_str());
                let rows = stmt.query_map(params![scope, limit], item)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }
}
