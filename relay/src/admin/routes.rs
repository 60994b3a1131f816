//! The admin API's HTTP routes under `/admin/v1`, behind the admin bearer token: each handler
//! reads its request and calls the shared [`Admin`] operation.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use shared::AgentId;

use crate::AppState;
use crate::auth::check_admin;
use crate::error::ApiError;
use crate::store::{DispatchState, Notice};

use super::{
    Admin, ApiJson, EventQuery, NewAgent, NewShop, NewTenant, ReplayQuery, ShopUpdate, ShopView,
    tenant_id,
};

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
        Some(s) => Some(DispatchState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {s:?}: use pending, done, dead or superseded"
            ))
        })?),
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
