//! What the admin API takes and shows: request bodies and queries (unknown fields refused),
//! the shop as an operator sees it (never its secrets), and the checks of what a request
//! carries, each naming the field it is about.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::{DocumentType, OrderWebhook};
use shared::settings::{Secret, without_values};
use shared::signature::WebhookSecret;
use shared::{AgentId, ShopId, TenantId};
use utoipa::{IntoParams, ToSchema};

use super::openapi::DocumentTypeSchema;
use crate::error::ApiError;
use crate::shop::{ApiSettings, Flow, StatusRule};
use crate::store::{
    DispatchSummary, EventState, EventSummary, HistoryEntry, PushSummary, ShopRecord,
};
use crate::validate::{self, Problem};

/// The most a route's body may hold, set beside its `DefaultBodyLimit` so that [`ApiJson`]
/// can name it when a body is over it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// `Json` whose rejections use our error body: 413 for a body over the route's limit, 400 for
/// anything else.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|e: JsonRejection| match limit {
                Some(BodyLimit(limit)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge(limit)
                }
                _ => ApiError::BadRequest(without_values(&e.body_text())),
            })
    }
}

/// `Path` whose rejections (an id that is not a number) use our error body.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|e| ApiError::BadRequest(without_values(&e.body_text())))
    }
}

/// `Query` whose rejections (a limit that is not a number) use our error body.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| ApiError::BadRequest(without_values(&e.body_text())))
    }
}

/// A new tenant (a merchant).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Lower-case letters, digits, `-` and `_`, starting with a letter or digit.
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme")]
    pub id: String,
    /// Shown in the console; the id when left out.
    pub name: Option<String>,
}

/// A new shop of a tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShop {
    /// Lower-case letters, digits, `-` and `_`; appears in the shop's webhook URL.
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "demo-se")]
    pub shop_id: String,
    /// One or two `whsec_` secrets (two while the shop rotates its secret).
    #[schema(example = json!(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]))]
    pub webhook_secrets: Vec<String>,
    /// The order statuses whose webhooks are transferred to Mamut.
    #[schema(example = json!(["confirmed", "paid"]))]
    pub trigger_statuses: Vec<String>,
    #[serde(default)]
    #[schema(value_type = DocumentTypeSchema)]
    pub document_type: DocumentType,
    #[serde(default)]
    pub flow: Flow,
    #[serde(default)]
    pub status_map: BTreeMap<String, StatusRule>,
    #[serde(default)]
    pub price_lists: BTreeMap<String, String>,
    pub api: Option<ApiSettings>,
    /// The key for the shop's API; kept by the relay, never shown again.
    pub api_key: Option<String>,
}

/// A change to a shop: every field left out stays as it is.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShopUpdate {
    pub webhook_secrets: Option<Vec<String>>,
    pub trigger_statuses: Option<Vec<String>>,
    #[schema(value_type = Option<DocumentTypeSchema>)]
    pub document_type: Option<DocumentType>,
    pub flow: Option<Flow>,
    pub status_map: Option<BTreeMap<String, StatusRule>>,
    pub price_lists: Option<BTreeMap<String, String>>,
    pub api: Option<ApiSettings>,
    pub api_key: Option<String>,
}

/// A shop as the admin sees it: its rules, never its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShopView {
    #[schema(value_type = String)]
    pub shop_id: ShopId,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    pub trigger_statuses: Vec<String>,
    #[schema(value_type = DocumentTypeSchema)]
    pub document_type: DocumentType,
    pub webhook_secret_count: usize,
    pub flow: Flow,
    pub status_map: BTreeMap<String, StatusRule>,
    pub price_lists: BTreeMap<String, String>,
    pub api: Option<ApiSettings>,
    /// Whether an API key is stored (the key itself is never shown).
    pub api_key_set: bool,
}

impl From<&ShopRecord> for ShopView {
    fn from(shop: &ShopRecord) -> Self {
        Self {
            shop_id: shop.shop_id.clone(),
            tenant_id: shop.tenant_id.clone(),
            trigger_statuses: shop.trigger_statuses.clone(),
            document_type: shop.document_type,
            webhook_secret_count: shop.webhook_secrets.len(),
            flow: shop.settings.flow,
            status_map: shop.settings.status_map.clone(),
            price_lists: shop.settings.price_lists.clone(),
            api: shop.settings.api.clone(),
            api_key_set: shop.api_key.is_some(),
        }
    }
}

pub(super) fn webhook_secrets(secrets: &[String]) -> Result<Vec<WebhookSecret>, ApiError> {
    if secrets.is_empty() || secrets.len() > 2 {
        return Err(ApiError::BadRequest(
            "webhook_secrets must hold one or two secrets".into(),
        ));
    }
    secrets
        .iter()
        .map(|s| WebhookSecret::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::BadRequest(format!("webhook_secrets: {e}")))
}

pub(super) fn check_statuses(statuses: &[String]) -> Result<(), ApiError> {
    if statuses.iter().any(|s| s.trim().is_empty() || s.len() > 64) {
        return Err(ApiError::BadRequest(
            "trigger_statuses must be non-empty names".into(),
        ));
    }
    Ok(())
}

pub(super) fn api_key(key: Option<String>) -> Result<Option<Secret>, ApiError> {
    match key {
        None => Ok(None),
        Some(key) if key.is_empty() || key.len() > 4096 || key.chars().any(char::is_control) => {
            Err(ApiError::BadRequest(
                "api_key must be 1 to 4096 printable characters".into(),
            ))
        }
        Some(key) => Ok(Some(Secret::new(key))),
    }
}

/// Checks a shop's rules and that a configured API has a key.
pub(super) fn check_shop(shop: &ShopRecord) -> Result<(), ApiError> {
    shop.settings.validate().map_err(ApiError::BadRequest)?;
    if shop.settings.api.is_some() && shop.api_key.is_none() {
        return Err(ApiError::BadRequest(
            "api_key is required when api is set".into(),
        ));
    }
    Ok(())
}

/// A new agent of a tenant.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// `agent` when left out.
    pub name: Option<String>,
    /// How long its token is valid: 1 to 3650 days, 365 when left out.
    pub ttl_days: Option<u32>,
}

/// A created agent and its token.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedAgent {
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    /// The agent's credential, shown once.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// Replay an order that is still invalid (the operator has checked it).
    #[serde(default)]
    pub force: bool,
}

/// The order's problems when `payload` is a full order webhook (a thin one has no order yet).
pub(super) fn stored_problems(payload: &str) -> Vec<Problem> {
    serde_json::from_str::<OrderWebhook>(payload)
        .map(|webhook| validate::problems(&webhook.order))
        .unwrap_or_default()
}

/// A stored body as JSON (as text if it is not JSON).
pub(super) fn as_json(payload: String) -> Value {
    serde_json::from_str(&payload).unwrap_or(Value::String(payload))
}

/// Which rows a list shows.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only rows in this state (events: fetching, pending, delivered, ignored, dead, held;
    /// dispatch: pending, done, dead, superseded; ignored for pushes).
    pub state: Option<String>,
    /// Most rows shown: 1 to 10000 (larger values count as 10000), 100 when left out.
    pub limit: Option<u32>,
}

/// A tenant's shops.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShopList {
    pub shops: Vec<ShopView>,
}

/// A tenant's events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventSummary>,
}

/// An event and its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    pub event: EventSummary,
    pub history: Vec<HistoryEntry>,
}

/// An event's stored body, the body received when it was edited, and its order's problems.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPayloadView {
    pub id: i64,
    /// The stored body (JSON, or a string when it is not JSON).
    pub payload: Value,
    /// The body as received, when an operator has edited it.
    pub original: Option<Value>,
    pub problems: Vec<Problem>,
}

/// An edited event: where it is, and its order's problems left.
#[derive(Debug, Serialize, ToSchema)]
pub struct EditedEvent {
    pub id: i64,
    pub state: EventState,
    pub problems: Vec<Problem>,
}

/// A replayed event, back in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayedEvent {
    pub id: i64,
    /// Always `pending`.
    pub state: EventState,
    /// Whether it was replayed with problems (`force`).
    pub forced: bool,
}

/// A dispatch row put back in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayedDispatch {
    pub id: i64,
    /// Always `pending`.
    pub state: crate::store::DispatchState,
}

/// A tenant's changes on their way to its shops, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DispatchList {
    pub dispatch: Vec<DispatchSummary>,
}

/// What a tenant's agents pushed, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushList {
    pub pushes: Vec<PushSummary>,
}

pub(super) fn tenant_id(value: String) -> Result<TenantId, ApiError> {
    TenantId::new(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}
