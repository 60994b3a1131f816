//! The records the store keeps and hands out, shared by both implementations, and the rules
//! both apply the same way (coalescing keys, which shops take a change, shop columns).

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use shared::domain::{Change, DocumentType};
use shared::settings::Secret;
use shared::signature::WebhookSecret;
use shared::{AgentId, ShopId, TenantId};

use super::Result;
use super::error::{StoreError, corrupt};
pub use super::state::EventState;
use super::state::{DispatchState, HistoryState, timestamp};
use crate::shop::ShopSettings;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantRecord {
    #[schema(value_type = String)]
    pub id: TenantId,
    pub name: String,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
}

/// A shop as the relay keeps it. Its secrets never leave the relay: there is no `Serialize`.
#[derive(Debug, Clone)]
pub struct ShopRecord {
    pub shop_id: ShopId,
    pub tenant_id: TenantId,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub trigger_statuses: Vec<String>,
    pub document_type: DocumentType,
    pub settings: ShopSettings,
    /// The key for the shop's API.
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentRecord {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub name: String,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros_opt")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An HMAC key for agent tokens. Its `Debug` hides the secret.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A timestamp in JSON as the store's text (RFC 3339, UTC, microseconds).
fn micros<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&timestamp(*at))
}

fn micros_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => micros(at, s),
        None => s.serialize_none(),
    }
}

/// A stored JSON value (a push's or a dispatch row's change) for the admin's view.
pub(crate) fn stored_json(payload: &str) -> Result<serde_json::Value> {
    serde_json::from_str(payload).map_err(|e| corrupt("change", e))
}

/// A stored document type, as a [`super::sqlite`] or [`super::pg`] `parsed` argument.
pub(crate) fn document_type(text: &str) -> Result<DocumentType> {
    text.parse().map_err(|e| corrupt("document type", e))
}

/// A verified webhook, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    pub shop_id: ShopId,
    pub webhook_id: String,
    pub order_id: String,
    pub order_status: String,
    pub document_type: DocumentType,
    /// The request body exactly as received.
    pub payload: String,
    /// `Pending`, `Fetching` (a thin webhook), `Ignored` or `Held`.
    pub state: EventState,
    /// Why a `Held` event is held (its order's problems).
    pub hold_reason: Option<String>,
    /// The request's kept headers and signature verdict, as JSON (see
    /// [`super::received::ReceivedHeaders`]).
    pub received_headers: Option<String>,
}

impl NewEvent {
    /// Its first history entry.
    pub(crate) fn received_detail(&self) -> String {
        match &self.hold_reason {
            Some(reason) => format!("received, order status {}; {reason}", self.order_status),
            None => format!("received, order status {}", self.order_status),
        }
    }
}

/// What storing a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub event_id: i64,
    pub state: EventState,
    /// The webhook id was seen before; nothing new was stored.
    pub duplicate: bool,
}

/// An event as the admin sees it (no payload).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    pub id: i64,
    #[schema(value_type = String)]
    pub shop_id: ShopId,
    pub webhook_id: String,
    pub order_id: String,
    pub order_status: String,
    pub state: EventState,
    pub attempts: i64,
    pub mamut_ref: Option<String>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "micros")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    #[serde(serialize_with = "micros")]
    pub at: DateTime<Utc>,
    pub state: HistoryState,
    pub detail: Option<String>,
}

/// A push as the admin sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PushSummary {
    pub id: i64,
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    pub push_id: String,
    pub kind: String,
    pub change: serde_json::Value,
    #[serde(serialize_with = "micros")]
    pub received_at: DateTime<Utc>,
}

/// A thin webhook waiting for its order.
#[derive(Debug, Clone)]
pub struct FetchJob {
    pub id: i64,
    pub tenant_id: TenantId,
    pub shop_id: ShopId,
    pub order_id: String,
    /// The thin webhook as received.
    pub payload: String,
}

/// An event selected for delivery.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub id: i64,
    pub shop_id: ShopId,
    pub order_id: String,
    pub document_type: DocumentType,
    pub payload: String,
    /// Counting this delivery.
    pub attempt: i64,
}

/// A pending row picked for sending.
#[derive(Debug, Clone)]
pub struct DispatchItem {
    pub id: i64,
    pub change: Change,
    pub version: i64,
    pub attempts: i64,
}

/// A dispatch row as the admin sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DispatchSummary {
    pub id: i64,
    #[schema(value_type = String)]
    pub shop_id: ShopId,
    pub kind: String,
    pub key: String,
    pub change: serde_json::Value,
    pub push_id: String,
    pub state: DispatchState,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[serde(serialize_with = "micros")]
    pub next_attempt_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    pub updated_at: DateTime<Utc>,
}

/// How a failed send is recorded.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    /// `None`: permanent, straight to the dead-letter list.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Pushes with their stored JSON.
pub(crate) fn encode_pushes(
    pushes: Vec<(String, Change)>,
) -> Result<Vec<(String, Change, String)>> {
    pushes
        .into_iter()
        .map(|(id, change)| {
            let payload = serde_json::to_string(&change)
                .map_err(|e| StoreError::Database(format!("cannot encode the change: {e}")))?;
            Ok((id, change, payload))
        })
        .collect()
}

/// What became of a thin webhook whose order was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enriched {
    /// The order joins the delivery queue.
    Deliver,
    /// Its status by now is not a trigger status.
    Ignore,
    /// The order is invalid: held with this reason.
    Hold(String),
}

/// The stored body of an event, and the one received when an operator has edited it.
#[derive(Debug, Clone, Serialize)]
pub struct EventPayload {
    pub payload: String,
    pub original: Option<String>,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub events: u64,
    pub pushes: u64,
    pub dispatch: u64,
}

/// A message from one relay instance to the others (PostgreSQL `NOTIFY`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A tenant has new events to deliver.
    Event { tenant: TenantId },
    /// A shop has new changes to dispatch.
    Dispatch { shop: ShopId },
    /// A thin webhook waits for its order.
    Fetch,
    /// A new session of the tenant's agent started; older ones elsewhere must end.
    Session { tenant: TenantId, holder: String },
    /// An agent's token was revoked: its sessions end on every instance.
    Revoked { agent: AgentId },
}

/// Whether `shop` takes `change` at all: it has an API, its flow sends this kind, and for an
/// order status the order is the shop's and the status is mapped, for a price list the list
/// is mapped to a customer group.
pub(crate) fn takes(shop: &ShopRecord, change: &Change) -> bool {
    let settings = &shop.settings;
    if settings.api.is_none() || !settings.flow.sends(change.kind()) {
        return false;
    }
    match change {
        Change::OrderStatus(s) => {
            s.shop_id == shop.shop_id && settings.status_map.contains_key(&s.mamut_status)
        }
        Change::PriceList(p) => settings.price_lists.contains_key(&p.price_list),
        _ => true,
    }
}

/// The shop order an order status change is about (its changes are sent in order).
pub(crate) fn order_ref(change: &Change) -> Option<&str> {
    match change {
        Change::OrderStatus(s) => Some(s.shop_order_id.as_str()),
        _ => None,
    }
}

/// The key under which newer values replace older ones for one shop: the change's kind and
/// identity as a JSON array, so no article, warehouse or list name can run into another.
pub(crate) fn coalescing_key(change: &Change, push_id: &str) -> Result<String> {
    let parts: Vec<Option<&str>> = match change {
        Change::Stock(s) => vec![
            Some("stock"),
            Some(s.article_number.as_str()),
            s.warehouse.as_deref(),
        ],
        Change::Price(p) => vec![
            Some("price"),
            Some(p.article_number.as_str()),
            Some(p.currency.as_str()),
        ],
        Change::PriceList(p) => vec![
            Some("price_list"),
            Some(p.price_list.as_str()),
            Some(p.article_number.as_str()),
        ],
        Change::Product(p) => vec![Some("product"), Some(p.article_number.as_str())],
        // Every status change is sent, in order; none replaces another.
        Change::OrderStatus(_) => vec![Some("order_status"), Some(push_id)],
    };
    serde_json::to_string(&parts).map_err(|e| corrupt("coalescing key", e))
}

/// A shop row as stored, before its JSON columns are decoded.
pub(crate) struct RawShop {
    pub shop_id: String,
    pub tenant_id: String,
    pub secrets: String,
    pub statuses: String,
    pub document_type: String,
    pub settings: String,
    pub api_key: Option<String>,
}

impl RawShop {
    pub fn decode(self) -> Result<ShopRecord> {
        let secrets: Vec<String> =
            serde_json::from_str(&self.secrets).map_err(|e| corrupt("secrets", e))?;
        let webhook_secrets = secrets
            .iter()
            .map(|s| WebhookSecret::parse(s))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt("secret", e))?;
        Ok(ShopRecord {
            shop_id: ShopId::new(self.shop_id).map_err(|e| corrupt("shop id", e))?,
            tenant_id: TenantId::new(self.tenant_id).map_err(|e| corrupt("tenant id", e))?,
            webhook_secrets,
            trigger_statuses: serde_json::from_str(&self.statuses)
                .map_err(|e| corrupt("statuses", e))?,
            document_type: self
                .document_type
                .parse()
                .map_err(|e| corrupt("document type", e))?,
            settings: serde_json::from_str(&self.settings).map_err(|e| corrupt("settings", e))?,
            api_key: self.api_key.map(Secret::new),
        })
    }
}

/// A shop's columns as stored, bound as `$1`…`$7` in this order: shop id, tenant id,
/// secrets, statuses, document type, settings, API key.
pub(crate) struct ShopColumns {
    pub shop_id: String,
    pub tenant_id: String,
    pub document_type: &'static str,
    pub secrets: String,
    pub statuses: String,
    pub settings: String,
    pub api_key: Option<String>,
}

impl ShopColumns {
    pub fn of(shop: &ShopRecord) -> Result<Self> {
        let secrets: Vec<String> = shop
            .webhook_secrets
            .iter()
            .map(WebhookSecret::expose)
            .collect();
        Ok(Self {
            shop_id: shop.shop_id.as_str().to_owned(),
            tenant_id: shop.tenant_id.as_str().to_owned(),
            document_type: shop.document_type.as_str(),
            secrets: serde_json::to_string(&secrets).map_err(|e| corrupt("secrets", e))?,
            statuses: serde_json::to_string(&shop.trigger_statuses)
                .map_err(|e| corrupt("statuses", e))?,
            settings: serde_json::to_string(&shop.settings).map_err(|e| corrupt("settings", e))?,
            api_key: shop.api_key.as_ref().map(|k| k.expose().to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_coalesce_what_may_replace_each_other() {
        let stock = |article: &str, warehouse: Option<&str>, qty: i64| {
            Change::Stock(shared::domain::StockLevel {
                article_number: shared::ArticleNumber::new(article).expect("valid"),
                warehouse: warehouse.map(str::to_owned),
                quantity: rust_decimal::Decimal::from(qty),
            })
        };
        assert_eq!(
            coalescing_key(&stock("A", None, 1), "p1").ok(),
            coalescing_key(&stock("A", None, 9), "p2").ok()
        );
        assert_ne!(
            coalescing_key(&stock("A", None, 1), "p1").ok(),
            coalescing_key(&stock("A", Some("main"), 1), "p1").ok()
        );
        assert_ne!(
            coalescing_key(&stock("A", None, 1), "p1").ok(),
            coalescing_key(&stock("B", None, 1), "p1").ok()
        );
        let list = |name: &str, article: &str| {
            Change::PriceList(shared::domain::PriceListPrice {
                price_list: name.into(),
                article_number: shared::ArticleNumber::new(article).expect("valid"),
                currency: "SEK".into(),
                price: rust_decimal::Decimal::ONE,
            })
        };
        assert_ne!(
            coalescing_key(&list("A:B", "C"), "p1").ok(),
            coalescing_key(&list("A", "B-C"), "p1").ok(),
            "names with the separator do not collide"
        );
    }
}
