//! The per-tenant queue limit (`max_queued_per_tenant`): a tenant whose agent has been away so
//! long that this many events wait gets its next webhooks answered 503 with `Retry-After`, so
//! the shop keeps them and sends them again later, instead of the relay's disk filling for
//! every tenant. Held orders count too (a shop sending invalid orders fills the queue the same
//! way). Nothing accepted is dropped: the limit only refuses new webhooks; one stored before
//! is still answered as a duplicate (`crate::ingest`).
//!
//! Counting a tenant's queue on every webhook would cost a query each, so the count is read
//! from the store at most once a [`REFRESH`] per tenant and instance, and counted up here for
//! each webhook stored meanwhile. Several instances may each let a few more through before
//! they read the count again; the limit is a bound, not an exact figure.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use shared::TenantId;

use crate::error::ApiError;
use crate::store::AnyStore;

/// How old a tenant's count may be.
pub const REFRESH: Duration = Duration::from_secs(1);

/// What a refused shop is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u32 = 60;

#[derive(Default)]
pub struct QueueLimit {
    /// Per tenant: when its count was read, and the count since.
    counts: DashMap<TenantId, (Instant, u64)>,
}

impl QueueLimit {
    /// Whether `tenant` may have one more webhook stored; `Unavailable` when it has `max`
    /// events waiting.
    pub async fn admit(
        &self,
        store: &AnyStore,
        tenant: &TenantId,
        max: u64,
    ) -> Result<(), ApiError> {
        let cached = self
            .counts
            .get(tenant)
            .filter(|entry| entry.0.elapsed() < REFRESH)
            .map(|entry| entry.1);
        let count = match cached {
            Some(count) => count,
            None => {
                let count = store.queued_count(tenant.clone()).await?;
                self.counts.insert(tenant.clone(), (Instant::now(), count));
                count
            }
        };
        if count >= max {
            return Err(ApiError::Unavailable {
                message: format!(
                    "tenant {tenant} has {count} events waiting for its agent (the limit is \
                     {max}, max_queued_per_tenant); send this webhook again later"
                ),
                retry_after: RETRY_AFTER_SECS,
            });
        }
        Ok(())
    }

    /// A webhook of `tenant` joined its queue.
    pub fn stored(&self, tenant: &TenantId) {
        if let Some(mut entry) = self.counts.get_mut(tenant) {
            entry.1 = entry.1.saturating_add(1);
        }
    }
}
