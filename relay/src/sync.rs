//! The relay's half of the initial product sync (`agent sync products`, R8). A sync session
//! asks, one request at a time: put this Mamut product into the shops ([`SyncPut`]), or give
//! me the next page of a shop's products ([`SyncFetch`]). The agent keeps the progress, so an
//! interrupted run continues where it stopped; each put reads the shop's product first, so a
//! second run writes nothing.

use shared::ShopId;
use shared::TenantId;
use shared::domain::Product;
use shared::protocol::{
    Message, ShopSyncOutcome, SyncError, SyncFetch, SyncOutcome, SyncPage, SyncPut, SyncPutResult,
};

use crate::AppState;
use crate::shop::{CallError, ShopClient};
use crate::store::{ShopRecord, StoreError};

/// Most products one page may carry.
pub const MAX_PAGE: u32 = 200;

/// The tenant's shops a request is for: the named one, or every shop with an API.
async fn targets(
    app: &AppState,
    tenant: &TenantId,
    shop: Option<&ShopId>,
) -> Result<Result<Vec<(ShopRecord, ShopClient)>, String>, StoreError> {
    let shops = app.store.shops(Some(tenant.clone())).await?;
    let named = |s: &ShopRecord| shop.is_none_or(|id| *id == s.shop_id);
    if let Some(id) = shop
        && !shops.iter().any(|s| s.shop_id == *id)
    {
        return Ok(Err(format!("tenant {tenant} has no shop {id}")));
    }
    let clients: Vec<(ShopRecord, ShopClient)> = shops
        .into_iter()
        .filter(named)
        .filter_map(|s| {
            let client = ShopClient::new(
                app.http.clone(),
                s.settings.api.as_ref()?,
                s.api_key.clone()?,
            );
            Some((s, client))
        })
        .collect();
    if clients.is_empty() {
        return Ok(Err(match shop {
            Some(id) => format!("shop {id} has no API configured"),
            None => format!("tenant {tenant} has no shop with an API configured"),
        }));
    }
    Ok(Ok(clients))
}

fn refused(request_id: u64, retryable: bool, reason: String) -> Message {
    Message::SyncError(SyncError {
        request_id,
        retryable,
        reason,
    })
}

/// Puts one product into each target shop, unless it is there unchanged.
pub async fn put(
    app: &AppState,
    tenant: &TenantId,
    request: SyncPut,
) -> Result<Message, StoreError> {
    let shops = match targets(app, tenant, request.shop_id.as_ref()).await? {
        Ok(shops) => shops,
        Err(reason) => return Ok(refused(request.request_id, false, reason)),
    };
    let mut results = Vec::with_capacity(shops.len());
    for (shop, client) in shops {
        let (outcome, reason) = match put_one(&client, &request.product).await {
            Ok(outcome) => (outcome, None),
            Err(e) => (SyncOutcome::Failed, Some(e.to_string())),
        };
        tracing::info!(shop_id = %shop.shop_id, article = %request.product.article_number, ?outcome, "initial sync: product to shop");
        results.push(ShopSyncOutcome {
            shop_id: shop.shop_id,
            outcome,
            reason,
        });
    }
    Ok(Message::SyncPutResult(SyncPutResult {
        request_id: request.request_id,
        results,
    }))
}

async fn put_one(client: &ShopClient, product: &Product) -> Result<SyncOutcome, CallError> {
    let current = client.product(product.article_number.as_str()).await?;
    if current.as_ref() == Some(product) {
        return Ok(SyncOutcome::Unchanged);
    }
    Ok(if client.put_product(product).await? {
        SyncOutcome::Created
    } else {
        SyncOutcome::Updated
    })
}

/// One page of a shop's products. Without a shop named, the tenant must have exactly one
/// shop with an API.
pub async fn fetch(
    app: &AppState,
    tenant: &TenantId,
    request: SyncFetch,
) -> Result<Message, StoreError> {
    let shops = match targets(app, tenant, request.shop_id.as_ref()).await? {
        Ok(shops) => shops,
        Err(reason) => return Ok(refused(request.request_id, false, reason)),
    };
    let several = shops.len() > 1;
    let Some((shop, client)) = shops.into_iter().next().filter(|_| !several) else {
        return Ok(refused(
            request.request_id,
            false,
            format!("tenant {tenant} has several shops with an API; name one with --shop"),
        ));
    };
    let limit = request.limit.clamp(1, MAX_PAGE);
    match client.products(request.after.as_deref(), limit).await {
        Ok((items, next)) => Ok(Message::SyncPage(SyncPage {
            request_id: request.request_id,
            shop_id: shop.shop_id,
            items,
            next,
        })),
        Err(CallError::Retryable { reason, .. }) => Ok(refused(request.request_id, true, reason)),
        Err(CallError::Permanent(reason)) => Ok(refused(request.request_id, false, reason)),
    }
}
