//! A short-lived cache of shop records for webhook ingest, so a burst of webhooks costs one
//! store round trip each instead of two. Entries live [`TTL`]; an admin change on this
//! instance drops the entry at once, one on another instance is seen within [`TTL`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use shared::ShopId;

use crate::store::{AnyStore, ShopRecord, StoreError};

/// How long a looked-up shop (or its absence) is reused.
pub const TTL: Duration = Duration::from_secs(2);

/// Most shops cached; beyond it, old entries are dropped.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct ShopCache {
    entries: DashMap<ShopId, (Instant, Option<Arc<ShopRecord>>)>,
}

impl ShopCache {
    pub async fn get(
        &self,
        store: &AnyStore,
        shop_id: ShopId,
    ) -> Result<Option<Arc<ShopRecord>>, StoreError> {
        if let Some(entry) = self.entries.get(&shop_id)
            && entry.0.elapsed() < TTL
        {
            return Ok(entry.1.clone());
        }
        let shop = store.shop(shop_id.clone()).await?.map(Arc::new);
        if self.entries.len() >= CAPACITY {
            self.entries.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        self.entries.insert(shop_id, (Instant::now(), shop.clone()));
        Ok(shop)
    }

    /// Forgets a shop (after an admin change).
    pub fn forget(&self, shop_id: &ShopId) {
        self.entries.remove(shop_id);
    }
}
