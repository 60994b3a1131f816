//! The webhook as received, on PostgreSQL.

use shared::TenantId;

use super::{PgStore, col};
use crate::store::Result;
use crate::store::received::ReceivedWebhook;

impl PgStore {
    pub async fn received_webhook(
        &self,
        tenant: TenantId,
        event_id: i64,
    ) -> Result<Option<ReceivedWebhook>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT received_headers, COALESCE(received_payload, original_payload, payload), received_at
                 FROM events WHERE id = $1 AND tenant_id = $2",
                &[&event_id, &tenant.as_str()],
            )
            .await?;
        row.map(|row| {
            let headers: Option<String> = col(&row, 0)?;
            ReceivedWebhook::from_stored(headers.as_deref(), col(&row, 1)?, col(&row, 2)?)
        })
        .transpose()
    }
}
