//! The webhook as received, on SQLite.

use rusqlite::{OptionalExtension, params};
use shared::TenantId;

use super::{SqliteStore, time};
use crate::store::Result;
use crate::store::received::ReceivedWebhook;

impl SqliteStore {
    pub async fn received_webhook(
        &self,
        tenant: TenantId,
        event_id: i64,
    ) -> Result<Option<ReceivedWebhook>> {
        self.db
            .call(move |conn| {
                let row = conn
                    .query_row(
                        "SELECT received_headers, COALESCE(received_payload, original_payload, payload), received_at
                         FROM events WHERE id = ?1 AND tenant_id = ?2",
                        params![event_id, tenant.as_str()],
                        |r| {
                            Ok((
                                r.get::<_, Option<String>>(0)?,
                                r.get::<_, String>(1)?,
                                time(r, 2)?,
                            ))
                        },
                    )
                    .optional()?;
                row.map(|(headers, body, at)| {
                    ReceivedWebhook::from_stored(headers.as_deref(), body, at)
                })
                .transpose()
            })
            .await
    }
}
