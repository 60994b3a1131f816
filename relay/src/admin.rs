//! The admin API under `/admin/v1`, behind the admin bearer token. The same operations are
//! reachable from the `relay` CLI through [`Admin`], so both paths share one implementation.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use shared::domain::{DocumentType, OrderWebhook};
use shared::settings::{Secret, without_values};
use shared::signature::WebhookSecret;
use shared::{AgentId, ShopId, TenantId};

use crate::AppState;
use crate::auth::{Tokens, check_admin};
use crate::error::ApiError;
use crate::shop::{ApiSettings, Flow, ShopSettings, StatusRule};
use crate::store::{AnyStore, EventState, Notice, ShopRecord};
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

fn webhook_secrets(secrets: &[String]) -> Result<Vec<WebhookSecret>, ApiError> {
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

fn check_statuses(statuses: &[String]) -> Result<(), ApiError> {
    if statuses.iter().any(|s| s.trim().is_empty() || s.len() > 64) {
        return Err(ApiError::BadRequest(
            "trigger_statuses must be non-empty names".into(),
        ));
    }
    Ok(())
}

fn api_key(key: Option<String>) -> Result<Option<Secret>, ApiError> {
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
fn check_shop(shop: &ShopRecord) -> Result<(), ApiError> {
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
fn stored_problems(payload: &str) -> Vec<Problem> {
    serde_json::from_str::<OrderWebhook>(payload)
        .map(|webhook| validate::problems(&webhook.order))
        .unwrap_or_default()
}

/// A stored body as JSON (as text if it is not JSON).
fn as_json(payload: String) -> Value {
    serde_json::from_str(&payload).unwrap_or(Value::String(payload))
}

#[derive(Debug, Deserialize)]
pub struct EventQuery {
    pub state: Option<String>,
    pub limit: Option<u32>,
}

fn tenant_id(value: String) -> Result<TenantId, ApiError> {
    TenantId::new(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The admin operations, shared by the HTTP API and the CLI.
pub struct Admin<'a> {
    pub store: &'a AnyStore,
    pub tokens: &'a Tokens,
}

impl Admin<'_> {
    pub async fn create_tenant(&self, new: NewTenant) -> Result<Value, ApiError> {
        let id = tenant_id(new.id)?;
        let name = new.name.unwrap_or_else(|| id.to_string());
        let tenant = self.store.create_tenant(id, name).await?;
        Ok(json!(tenant))
    }

    pub async fn add_shop(&self, tenant: String, new: NewShop) -> Result<ShopView, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let shop_id = ShopId::new(new.shop_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        check_statuses(&new.trigger_statuses)?;
        let shop = ShopRecord {
            shop_id,
            tenant_id,
            webhook_secrets: webhook_secrets(&new.webhook_secrets)?,
            trigger_statuses: new.trigger_statuses,
            document_type: new.document_type,
            settings: ShopSettings {
                flow: new.flow,
                status_map: new.status_map,
                price_lists: new.price_lists,
                api: new.api,
            },
            api_key: api_key(new.api_key)?,
        };
        check_shop(&shop)?;
        self.store.add_shop(shop.clone()).await?;
        Ok(ShopView::from(&shop))
    }

    /// Changes the fields given and leaves the rest.
    pub async fn update_shop(
        &self,
        tenant: String,
        shop: String,
        update: ShopUpdate,
    ) -> Result<ShopView, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let shop_id = ShopId::new(shop).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let mut shop = self
            .store
            .shop(shop_id.clone())
            .await?
            .filter(|s| s.tenant_id == tenant_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!("shop {shop_id} of tenant {tenant_id} not found"))
            })?;
        if let Some(secrets) = update.webhook_secrets {
            shop.webhook_secrets = webhook_secrets(&secrets)?;
        }
        if let Some(statuses) = update.trigger_statuses {
            check_statuses(&statuses)?;
            shop.trigger_statuses = statuses;
        }
        if let Some(document_type) = update.document_type {
            shop.document_type = document_type;
        }
        if let Some(flow) = update.flow {
            shop.settings.flow = flow;
        }
        if let Some(map) = update.status_map {
            shop.settings.status_map = map;
        }
        if let Some(lists) = update.price_lists {
            shop.settings.price_lists = lists;
        }
        if let Some(api) = update.api {
            shop.settings.api = Some(api);
        }
        if let Some(key) = api_key(update.api_key)? {
            shop.api_key = Some(key);
        }
        check_shop(&shop)?;
        self.store.update_shop(shop.clone()).await?;
        Ok(ShopView::from(&shop))
    }

    pub async fn list_shops(&self, tenant: String) -> Result<Value, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        if !self.store.tenant_exists(tenant_id.clone()).await? {
            return Err(ApiError::NotFound(format!("tenant {tenant_id} not found")));
        }
        let shops = self.store.shops(Some(tenant_id)).await?;
        let views: Vec<ShopView> = shops.iter().map(ShopView::from).collect();
        Ok(json!({ "shops": views }))
    }

    pub async fn create_agent(
        &self,
        tenant: String,
        new: NewAgent,
    ) -> Result<IssuedAgent, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let ttl_days = new.ttl_days.unwrap_or(365);
        if !(1..=3650).contains(&ttl_days) {
            return Err(ApiError::BadRequest(
                "ttl_days must be between 1 and 3650".into(),
            ));
        }
        let name = new.name.unwrap_or_else(|| "agent".into());
        let agent = self.store.create_agent(tenant_id.clone(), name).await?;
        let (token, exp) = self
            .tokens
            .issue(&agent.id, &tenant_id, ttl_days)
            .await
            .map_err(|e| ApiError::Internal(crate::store::StoreError::Database(e.to_string())))?;
        let expires_at = chrono::DateTime::from_timestamp(exp, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        Ok(IssuedAgent {
            agent_id: agent.id,
            tenant_id,
            token,
            expires_at,
        })
    }

    pub async fn revoke_agent(&self, agent: String) -> Result<(), ApiError> {
        let id = AgentId::new(agent).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.store.revoke_agent(id.clone()).await?;
        // The other instances (PostgreSQL) end its sessions at once; should the notice be
        // lost, their sessions see the revocation in the store within seconds.
        if let Err(e) = self.store.notify(Notice::Revoked { agent: id }).await {
            tracing::warn!(error = %e, "the other relay instances could not be told of the revocation");
        }
        Ok(())
    }

    pub async fn list_events(&self, tenant: String, query: EventQuery) -> Result<Value, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let state = match query.state.as_deref() {
            None | Some("") => None,
            Some(s) => Some(EventState::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown state {s:?}: use fetching, pending, delivered, ignored, dead or held"
                ))
            })?),
        };
        if !self.store.tenant_exists(tenant_id.clone()).await? {
            return Err(ApiError::NotFound(format!("tenant {tenant_id} not found")));
        }
        let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
        let events = self.store.list_events(tenant_id, state, limit).await?;
        Ok(json!({ "events": events }))
    }

    /// An event's stored body (the one received too, when it was edited) and its order's
    /// problems.
    pub async fn event_payload(&self, tenant: String, id: i64) -> Result<Value, ApiError> {
        let stored = self
            .store
            .event_payload(tenant_id(tenant)?, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
        let problems = stored_problems(&stored.payload);
        Ok(json!({
            "id": id,
            "payload": as_json(stored.payload),
            "original": stored.original.map(as_json),
            "problems": problems,
        }))
    }

    /// Replaces the body of a dead or held event with an operator's correction: a full order
    /// webhook for the same shop and order. The body received is kept; the event stays where
    /// it is until it is replayed.
    pub async fn edit_event(
        &self,
        tenant: String,
        id: i64,
        body: Value,
    ) -> Result<Value, ApiError> {
        let tenant = tenant_id(tenant)?;
        let (event, _) = self
            .store
            .event(tenant.clone(), id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
        let webhook: OrderWebhook = serde_json::from_value(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is not an order webhook: {}",
                without_values(&e.to_string())
            ))
        })?;
        if webhook.shop_id.as_str() != event.shop_id {
            return Err(ApiError::BadRequest(format!(
                "shop_id must stay {}: the event came from that shop",
                event.shop_id
            )));
        }
        let triggers = match ShopId::new(event.shop_id.clone()) {
            Ok(id) => self.store.shop(id).await?.map(|shop| shop.trigger_statuses),
            Err(_) => None,
        };
        if let Some(triggers) = triggers
            && !triggers.contains(&webhook.order.status)
        {
            return Err(ApiError::BadRequest(format!(
                "order.status {:?} is not one of the shop's trigger statuses ({}): an order in \
                 it is not transferred",
                webhook.order.status,
                triggers.join(", ")
            )));
        }
        if webhook.order.id != event.order_id {
            return Err(ApiError::BadRequest(format!(
                "order.id must stay {:?}: it is the key the order is known by in Mamut",
                event.order_id
            )));
        }
        let problems = validate::problems(&webhook.order);
        let payload = serde_json::to_string(&webhook)
            .map_err(|e| ApiError::BadRequest(format!("cannot encode the order: {e}")))?;
        let note = if problems.is_empty() {
            "payload edited by an operator".to_owned()
        } else {
            format!(
                "payload edited by an operator; {}",
                validate::describe(&problems)
            )
        };
        self.store
            .edit_event(tenant, id, payload, webhook.order.status, note)
            .await?;
        Ok(json!({ "id": id, "state": event.state, "problems": problems }))
    }

    /// Puts a dead or held event back in the queue. Its order is checked again: one that is
    /// still invalid is refused with its problems unless `force` is set.
    pub async fn replay_event(
        &self,
        tenant: String,
        id: i64,
        query: ReplayQuery,
    ) -> Result<Value, ApiError> {
        let tenant = tenant_id(tenant)?;
        let stored = self
            .store
            .event_payload(tenant.clone(), id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
        let problems = stored_problems(&stored.payload);
        if !problems.is_empty() && !query.force {
            return Err(ApiError::InvalidOrder {
                message: format!(
                    "event {id} was not replayed: its order is still invalid; correct it with \
                     PUT /admin/v1/tenants/{tenant}/events/{id}/payload, or replay it with \
                     ?force=true if it is right as it is"
                ),
                problems,
            });
        }
        self.store.replay(tenant, id).await?;
        Ok(json!({ "id": id, "state": "pending", "forced": !problems.is_empty() }))
    }
}

/// The admin routes. A corrected order webhook (`PUT …/payload`) may be as large as a webhook
/// (`max_body_bytes`); other admin bodies are small.
pub fn router(max_body_bytes: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route("/tenants", post(create_tenant))
        .route("/tenants/{tenant}/shops", post(add_shop).get(list_shops))
        .route("/tenants/{tenant}/shops/{shop}", patch(update_shop))
        .route("/tenants/{tenant}/dispatch", get(list_dispatch))
        .route(
            "/tenants/{tenant}/dispatch/{id}/replay",
            post(replay_dispatch),
        )
        .route("/tenants/{tenant}/agents", post(create_agent))
        .route("/tenants/{tenant}/events", get(list_events))
        .route("/tenants/{tenant}/events/{id}", get(event))
        .route(
            "/tenants/{tenant}/events/{id}/payload",
            get(event_payload)
                .put(edit_event)
                .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes)),
        )
        .route("/tenants/{tenant}/events/{id}/replay", post(replay))
        .route("/tenants/{tenant}/pushes", get(list_pushes))
        .route("/agents/{agent}/revoke", post(revoke_agent))
}

/// Admin bearer check for every route under `/admin/v1`.
pub async fn require_admin(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    match check_admin(&headers, app.config.admin_token.as_ref()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn admin(app: &AppState) -> Admin<'_> {
    Admin {
        store: &app.store,
        tokens: &app.tokens,
    }
}

async fn create_tenant(
    State(app): State<Arc<AppState>>,
    ApiJson(new): ApiJson<NewTenant>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(admin(&app).create_tenant(new).await?),
    ))
}

async fn add_shop(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    ApiJson(new): ApiJson<NewShop>,
) -> Result<impl IntoResponse, ApiError> {
    let view = admin(&app).add_shop(tenant, new).await?;
    app.shops.forget(&view.shop_id);
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_shops(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(admin(&app).list_shops(tenant).await?))
}

async fn update_shop(
    State(app): State<Arc<AppState>>,
    Path((tenant, shop)): Path<(String, String)>,
    ApiJson(update): ApiJson<ShopUpdate>,
) -> Result<Json<ShopView>, ApiError> {
    let view = admin(&app).update_shop(tenant, shop, update).await?;
    app.shops.forget(&view.shop_id);
    // New rules or a new key may unblock waiting work.
    app.announce(Notice::Dispatch {
        shop: view.shop_id.clone(),
    })
    .await;
    app.announce(Notice::Fetch).await;
    Ok(Json(view))
}

async fn list_dispatch(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    Query(query): Query<EventQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_id(tenant)?;
    let state = match query.state.as_deref() {
        None | Some("") => None,
        Some(s @ ("pending" | "done" | "dead" | "superseded")) => Some(s.to_owned()),
        Some(s) => {
            return Err(ApiError::BadRequest(format!(
                "unknown state {s:?}: use pending, done, dead or superseded"
            )));
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let items = app.store.list_dispatch(tenant, state, limit).await?;
    Ok(Json(json!({ "dispatch": items })))
}

async fn replay_dispatch(
    State(app): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let shop = app.store.replay_dispatch(tenant_id(tenant)?, id).await?;
    app.announce(Notice::Dispatch { shop }).await;
    Ok(Json(json!({ "id": id, "state": "pending" })))
}

async fn create_agent(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    ApiJson(new): ApiJson<NewAgent>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(admin(&app).create_agent(tenant, new).await?),
    ))
}

async fn revoke_agent(
    State(app): State<Arc<AppState>>,
    Path(agent): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin(&app).revoke_agent(agent.clone()).await?;
    // The agent's live sessions here end now; the other instances are told (a `NOTIFY` on
    // PostgreSQL) and, should that be lost, see it on their next revocation check.
    if let Ok(id) = AgentId::new(agent) {
        let ended = app.registry.revoke(&id);
        tracing::info!(agent = %id, sessions = ended, "agent revoked");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list_events(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    Query(query): Query<EventQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(admin(&app).list_events(tenant, query).await?))
}

async fn event(
    State(app): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let (event, history) = app
        .store
        .event(tenant_id(tenant)?, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
    Ok(Json(json!({ "event": event, "history": history })))
}

async fn event_payload(
    State(app): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(admin(&app).event_payload(tenant, id).await?))
}

async fn edit_event(
    State(app): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, i64)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(admin(&app).edit_event(tenant, id, body).await?))
}

async fn replay(
    State(app): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, i64)>,
    Query(query): Query<ReplayQuery>,
) -> Result<Json<Value>, ApiError> {
    let reply = admin(&app).replay_event(tenant.clone(), id, query).await?;
    app.announce(Notice::Event {
        tenant: tenant_id(tenant)?,
    })
    .await;
    Ok(Json(reply))
}

async fn list_pushes(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    Query(query): Query<EventQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_id(tenant)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let pushes = app.store.list_pushes(tenant, limit).await?;
    Ok(Json(json!({ "pushes": pushes })))
}
