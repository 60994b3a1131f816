//! The per-tenant queue limit (`max_queued_per_tenant`): a tenant whose agent has been away so
//! long that this many events wait gets its next webhooks answered 503 with `Retry-After`, so
//! the shop keeps them and sends them again later, instead of the relay's disk filling for
//! every tenant. Held orders count too (a shop sending invalid orders fills the queue the same
//! way). Nothing accepted is dropped: the limit only refuses new webhooks; one stored before
//! is still answered as a duplicate (`crate::ingest`).
//!
//! Counting a tenant's queue on every webhook would cost a query each, so the count is read
//! from the store at most once a [`REFRESH`] per tenant and instance (by one webhook; the
//! others meanwhile go on with the count as it was), and counted up here for each webhook
//! stored meanwhile. Several instances may each let a few more through before they read the
//! count again; the limit is a bound, not an exact figure.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use shared::TenantId;

use crate::error::ApiError;
use crate::store::AnyStore;

/// How old a tenant's count may be.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How long one webhook's reading of the count keeps the others from reading it too.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// What a refused shop is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u32 = 60;

#[derive(Default)]
pub struct QueueLimit {
    /// Per tenant: its count as last read and counted up since.
    counts: DashMap<TenantId, Count>,
}

struct Count {
    read_at: Instant,
    count: u64,
    /// Since when a webhook is reading the count again; the others go on with this one
    /// meanwhile, so a burst costs one query per [`REFRESH`], not one per webhook in flight. A
    /// read that never finished (its request was dropped) is taken over after [`READ_LIMIT`].
    reading: Option<Instant>,
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
        let cached = match self.counts.entry(tenant.clone()) {
            Entry::Occupied(mut entry) => {
                let entry = entry.get_mut();
                let being_read = entry
                    .reading
                    .is_some_and(|since| since.elapsed() < READ_LIMIT);
                if entry.read_at.elapsed() < REFRESH || being_read {
                    Some(entry.count)
                } else {
                    entry.reading = Some(Instant::now());
                    None
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(Count {
                    read_at: Instant::now(),
                    count: 0,
                    reading: Some(Instant::now()),
                });
                None
            }
        };
        let count = match cached {
            Some(count) => count,
            None => match store.queued_count(tenant.clone()).await {
                Ok(count) => {
                    self.counts.insert(
                        tenant.clone(),
                        Count {
                            read_at: Instant::now(),
                            count,
                            reading: None,
                        },
                    );
                    count
                }
                Err(e) => {
                    if let Some(mut entry) = self.counts.get_mut(tenant) {
                        entry.reading = None;
                    }
                    return Err(e.into());
                }
            },
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
            entry.count = entry.count.saturating_add(1);
        }
    }
}
