//! Failed events and dispatch rows on PostgreSQL, for grouping by reason.

use shared::{ShopId, TenantId};

use super::{PgStore, col, parsed, stored_id};
use crate::store::Result;
use crate::store::failures::FailedItem;

fn item(r: &tokio_postgres::Row) -> Result<FailedItem> {
    Ok(FailedItem {
        tenant_id: parsed(r, 0, stored_id(TenantId::new, "tenant id"))?,
        id: col(r, 1)?,
        shop_id: parsed(r, 2, stored_id(ShopId::new, "shop id"))?,
        subject: col(r, 3)?,
        state: col(r, 4)?,
        reason: col(r, 5)?,
        updated_at: col(r, 6)?,
    })
}

impl PgStore {
    pub async fn failed_events(
        &self,
        scope: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<FailedItem>> {
        let scope = scope.as_ref().map(|t| t.as_str());
        self.client()
            .await?
            .query(
                "SELECT tenant_id, id, shop_id, order_id, state, last_error, updated_at
                 FROM events
                 WHERE state IN ('dead', 'held') AND ($1::TEXT IS NULL OR tenant_id = $1)
                 ORDER BY id DESC LIMIT $2",
                &[&scope, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(item)
            .collect()
    }

    pub async fn failed_dispatch(
        &self,
        scope: Option<TenantId>,
        limit: u32,
    ) -> Result<Vec<FailedItem>> {
        let scope = scope.as_ref().map(|t| t.as_str());
        self.client()
            .await?
            .query(
                "SELECT tenant_id, id, shop_id, key, state, last_error, updated_at
                 FROM dispatch
                 WHERE state = 'dead' AND ($1::TEXT IS NULL OR tenant_id = $1)
                 ORDER BY id DESC LIMIT $2",
                &[&scope, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(item)
            .collect()
    }
}
