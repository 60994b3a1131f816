//! What the admin API takes and shows: request bodies and queries (unknown fields refused),
//! the shop as an operator sees it (never its secrets), and the checks of what a request
//! carries, each naming the field it is about.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::{DocumentType, OrderWebhook};
use shared::settings::{Secret, without_values};
use shared::signature::WebhookSecret;
use shared::{AgentId, ShopId, TenantId};

use crate::error::ApiError;
use crate::shop::{ApiSettings, Flow, StatusRule};
use crate::store::ShopRecord;
use crate::validate::{self, Problem};

/// `Json` whose rejections use our error body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|e: JsonRejection| ApiError::BadRequest(without_values(&e.body_text())))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShop {
    pub shop_id: String,
    /// One or two `whsec_` secrets (two while the shop rotates its secret).
    pub webhook_secrets: Vec<String>,
    pub trigger_statuses: Vec<String>,
    #[serde(default)]
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
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShopUpdate {
    pub webhook_secrets: Option<Vec<String>>,
    pub trigger_statuses: Option<Vec<String>>,
    pub document_type: Option<DocumentType>,
    pub flow: Option<Flow>,
    pub status_map: Option<BTreeMap<String, StatusRule>>,
    pub price_lists: Option<BTreeMap<String, String>>,
    pub api: Option<ApiSettings>,
    pub api_key: Option<String>,
}

/// A shop as the admin sees it: its rules, never its secrets.
#[derive(Debug, Serialize)]
pub struct ShopView {
    pub shop_id: ShopId,
    pub tenant_id: TenantId,
    pub trigger_statuses: Vec<String>,
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub name: Option<String>,
    pub ttl_days: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct IssuedAgent {
    pub agent_id: AgentId,
    pub tenant_id: TenantId,
    /// The agent's credential, shown once.
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, Default)]
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

#[derive(Debug, Deserialize)]
pub struct EventQuery {
    pub state: Option<String>,
    pub limit: Option<u32>,
}

pub(super) fn tenant_id(value: String) -> Result<TenantId, ApiError> {
    TenantId::new(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}
