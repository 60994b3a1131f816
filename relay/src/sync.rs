//! The relay's half of the initial product sync (`agent sync products`, R8). A sync session
//! asks, one request at a time: put this Mamut product into the shops ([`SyncPut`]), or give
//! me the next page of a shop's products ([`SyncFetch`]). The agent keeps the progress, so an
//! interrupted run continues where it stopped; each put reads the shop's product first, so a
//! second run writes nothing.

use shared::ShopId;
use shared::TenantId;
use shared::domain::Product;
use shared::protocol::{
    Envelope, MAX_FRAME_BYTES, Message, ShopSyncOutcome, SyncError, SyncFetch, SyncOutcome,
    SyncPage, SyncPut, SyncPutResult,
};

use crate::AppState;
use crate::shop::{CallError, Flow, ShopClient};
use crate::store::{ShopRecord, StoreError};

/// Most products one page may carry.
pub const MAX_PAGE: u32 = 200;

/// Which way a sync request moves products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Mamut → shop: for shops whose flow takes products from Mamut.
    ToShop,
    /// Shop → Mamut: for shops whose flow gives products to Mamut.
    ToMamut,
}

impl Direction {
    fn fits(self, flow: Flow) -> bool {
        match self {
            Direction::ToShop => flow.sends("product"),
            Direction::ToMamut => matches!(flow, Flow::Ecom | Flow::Combo),
        }
    }
}

/// The tenant's shops a request is for: the named one, or every shop with an API whose flow
/// moves products this way.
async fn targets(
    app: &AppState,
    tenant: &TenantId,
    shop: Option<&ShopId>,
    direction: Direction,
) -> Result<Result<Vec<(ShopRecord, ShopClient)>, String>, StoreError> {
    let shops = app.store.shops(Some(tenant.clone())).await?;
    if let Some(id) = shop {
        let Some(named) = shops.iter().find(|s| s.shop_id == *id) else {
            return Ok(Err(format!("tenant {tenant} has no shop {id}")));
        };
        if !direction.fits(named.settings.flow) {
            return Ok(Err(format!(
                "shop {id} has flow {:?}, in which products do not go {}",
                named.settings.flow,
                match direction {
                    Direction::ToShop => "from Mamut to the shop",
                    Direction::ToMamut => "from the shop to Mamut",
                }
            )));
        }
    }
    let named = |s: &ShopRecord| shop.is_none_or(|id| *id == s.shop_id);
    let clients: Vec<(ShopRecord, ShopClient)> = shops
        .into_iter()
        .filter(|s| named(s) && direction.fits(s.settings.flow))
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
            None => format!(
                "tenant {tenant} has no shop with an API whose flow moves products {}",
                match direction {
                    Direction::ToShop => "from Mamut (flow erp)",
                    Direction::ToMamut => "to Mamut (flow ecom or combo)",
                }
            ),
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
    let shops = match targets(app, tenant, request.shop_id.as_ref(), Direction::ToShop).await? {
        Ok(shops) => shops,
        Err(reason) => return Ok(refused(request.request_id, false, reason)),
    };
    let mut results = Vec::with_capacity(shops.len());
    for (shop, client) in shops {
        let (outcome, reason, retryable) = match put_one(&client, &request.product).await {
            Ok(outcome) => (outcome, None, false),
            Err(e @ CallError::Retryable { .. }) => {
                (SyncOutcome::Failed, Some(e.to_string()), true)
            }
            Err(e) => (SyncOutcome::Failed, Some(e.to_string()), false),
        };
        tracing::info!(shop_id = %shop.shop_id, article = %request.product.article_number, ?outcome, "initial sync: product to shop");
        results.push(ShopSyncOutcome {
            shop_id: shop.shop_id,
            outcome,
            reason,
            retryable,
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
    let shops = match targets(app, tenant, request.shop_id.as_ref(), Direction::ToMamut).await? {
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
        Ok((items, next)) => Ok(fit_page(SyncPage {
            request_id: request.request_id,
            shop_id: shop.shop_id,
            items,
            next,
        })),
        Err(CallError::Retryable { reason, .. }) => Ok(refused(request.request_id, true, reason)),
        Err(CallError::Permanent(reason)) => Ok(refused(request.request_id, false, reason)),
    }
}

/// A page cut short so its frame fits the protocol's limit; `next` then points after the last
/// product that fits. A single product too large for a frame cannot be synced at all.
fn fit_page(mut page: SyncPage) -> Message {
    let limit = MAX_FRAME_BYTES - 1024;
    let size = |page: &SyncPage| {
        Envelope::new(Message::SyncPage(page.clone()))
            .to_json()
            .len()
    };
    while page.items.len() > 1 && size(&page) > limit {
        page.items.pop();
        page.next = page
            .items
            .last()
            .map(|p| p.article_number.as_str().to_owned());
    }
    if size(&page) > limit {
        let article = page
            .items
            .first()
            .map(|p| p.article_number.to_string())
            .unwrap_or_default();
        return refused(
            page.request_id,
            false,
            format!("product {article} is larger than a protocol frame ({MAX_FRAME_BYTES} bytes)"),
        );
    }
    Message::SyncPage(page)
}
