//! The admin API's HTTP routes under `/admin/v1`, behind the admin bearer token: each handler
//! reads its request and calls the shared [`Admin`] operation. Each handler's
//! `#[utoipa::path]` describes it in the OpenAPI document ([`super::openapi`]); the router and
//! the document are built from the same list in [`api`], so neither has a route the other
//! lacks.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use shared::AgentId;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::openapi::{ErrorBody, InvalidOrderBody};
use super::{
    Admin, ApiJson, ApiPath, ApiQuery, BodyLimit, DispatchList, EditedEvent, EventDetail,
    EventList, EventPayloadView, EventQuery, IssuedAgent, NewAgent, NewShop, NewTenant, PushList,
    ReplayQuery, ReplayedDispatch, ReplayedEvent, ShopList, ShopUpdate, ShopView, tenant_id,
};
use crate::AppState;
use crate::accounts::Principal;
use crate::auth::check_admin;
use crate::error::ApiError;
use crate::store::{DispatchState, Notice, TenantRecord};

/// The most an admin body other than a corrected order webhook may hold.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// The admin routes, and the document describing them ([`super::openapi::document`] adds the
/// prefix, the security schemes and the reference routes). A corrected order webhook
/// (`PUT …/payload`) may be as large as a webhook (`max_body_bytes`); other admin bodies are
/// small.
pub(super) fn api(max_body_bytes: usize) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let small = (
        DefaultBodyLimit::max(SMALL_BODY_BYTES),
        Extension(BodyLimit(SMALL_BODY_BYTES)),
    );
    let large = (
        DefaultBodyLimit::max(max_body_bytes),
        Extension(BodyLimit(max_body_bytes)),
    );
    OpenApiRouter::new()
        .routes(routes!(create_tenant).layer(small))
        .routes(routes!(add_shop, list_shops).layer(small))
        .routes(routes!(update_shop).layer(small))
        .routes(routes!(list_dispatch))
        .routes(routes!(replay_dispatch))
        .routes(routes!(create_agent).layer(small))
        .routes(routes!(list_events))
        .routes(routes!(event))
        .routes(routes!(event_payload, edit_event).layer(large))
        .routes(routes!(replay))
        .routes(routes!(list_pushes))
        .routes(routes!(revoke_agent).layer(small))
        .merge(super::alerts::routes())
        .split_for_parts()
}

/// The admin routes, the OpenAPI document and its rendered reference among them.
pub fn router(max_body_bytes: usize) -> Router<Arc<AppState>> {
    let (routes, _) = api(max_body_bytes);
    routes.merge(super::openapi::routes())
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

/// The admin operations for a caller that is not known to be an operator.
fn admin(app: &AppState) -> Admin<'_> {
    Admin {
        store: &app.store,
        tokens: &app.tokens,
        operator: false,
    }
}

/// The admin operations for the caller the guard put in the request's extensions.
fn admin_for<'a>(app: &'a AppState, caller: Option<&Principal>) -> Admin<'a> {
    Admin {
        operator: caller.is_some_and(Principal::is_operator),
        ..admin(app)
    }
}

/// Creates a tenant.
#[utoipa::path(
    post, path = "/tenants", tag = "tenants",
    request_body = NewTenant,
    responses(
        (status = 201, description = "The tenant, created", body = TenantRecord),
        (status = 400, description = "A field is missing or invalid", body = ErrorBody),
        (status = 409, description = "A tenant of that id exists", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn create_tenant(
    State(app): State<Arc<AppState>>,
    ApiJson(new): ApiJson<NewTenant>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(admin(&app).new_tenant(new).await?),
    ))
}

/// Adds a shop to a tenant. Operators only: shop ids are one namespace for every tenant.
#[utoipa::path(
    post, path = "/tenants/{tenant}/shops", tag = "shops",
    params(("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme")),
    request_body = NewShop,
    responses(
        (status = 201, description = "The shop, added", body = ShopView),
        (status = 400, description = "A field is missing or invalid", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "A shop of that id exists", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn add_shop(
    State(app): State<Arc<AppState>>,
    caller: Option<Extension<Principal>>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(new): ApiJson<NewShop>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller.map(|Extension(c)| c);
    let view = admin_for(&app, caller.as_ref())
        .add_shop(tenant, new)
        .await?;
    app.shops.forget(&view.shop_id);
    Ok((StatusCode::CREATED, Json(view)))
}

/// A tenant's shops.
#[utoipa::path(
    get, path = "/tenants/{tenant}/shops", tag = "shops",
    params(("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme")),
    responses(
        (status = 200, description = "The tenant's shops", body = ShopList),
        (status = 400, description = "The tenant id is invalid", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    )
)]
async fn list_shops(
    State(app): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<ShopList>, ApiError> {
    Ok(Json(admin(&app).shops(tenant).await?))
}

/// Changes the fields given of a shop and leaves the rest.
#[utoipa::path(
    patch, path = "/tenants/{tenant}/shops/{shop}", tag = "shops",
    params(
        ("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"),
        ("shop" = String, Path, description = "The shop's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "demo-se"),
    ),
    request_body = ShopUpdate,
    responses(
        (status = 200, description = "The shop, changed", body = ShopView),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such shop of the tenant", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn update_shop(
    State(app): State<Arc<AppState>>,
    caller: Option<Extension<Principal>>,
    ApiPath((tenant, shop)): ApiPath<(String, String)>,
    ApiJson(update): ApiJson<ShopUpdate>,
) -> Result<Json<ShopView>, ApiError> {
    let caller = caller.map(|Extension(c)| c);
    let view = admin_for(&app, caller.as_ref())
        .update_shop(tenant, shop, update)
        .await?;
    app.shops.forget(&view.shop_id);
    // New rules or a new key may unblock waiting work.
    app.announce(Notice::Dispatch {
        shop: view.shop_id.clone(),
    })
    .await;
    app.announce(Notice::Fetch).await;
    Ok(Json(view))
}

/// A tenant's changes on their way to its shops, newest first.
#[utoipa::path(
    get, path = "/tenants/{tenant}/dispatch", tag = "dispatch",
    params(("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"), EventQuery),
    responses(
        (status = 200, description = "The dispatch rows", body = DispatchList),
        (status = 400, description = "The tenant id or a query value is invalid", body = ErrorBody),
    )
)]
async fn list_dispatch(
    State(app): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<DispatchList>, ApiError> {
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
    let dispatch = app.store.list_dispatch(tenant, state, limit).await?;
    Ok(Json(DispatchList { dispatch }))
}

/// Puts a dead dispatch row back in the queue.
#[utoipa::path(
    post, path = "/tenants/{tenant}/dispatch/{id}/replay", tag = "dispatch",
    params(
        ("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"),
        ("id" = i64, Path, description = "The dispatch row's id", example = 1),
    ),
    responses(
        (status = 200, description = "Back in the queue", body = ReplayedDispatch),
        (status = 400, description = "The tenant id or row id is invalid", body = ErrorBody),
        (status = 404, description = "No such row of the tenant", body = ErrorBody),
        (status = 409, description = "The row is not dead", body = ErrorBody),
    )
)]
async fn replay_dispatch(
    State(app): State<Arc<AppState>>,
    ApiPath((tenant, id)): ApiPath<(String, i64)>,
) -> Result<Json<ReplayedDispatch>, ApiError> {
    let shop = app.store.replay_dispatch(tenant_id(tenant)?, id).await?;
    app.announce(Notice::Dispatch { shop }).await;
    Ok(Json(ReplayedDispatch {
        id,
        state: DispatchState::Pending,
    }))
}

/// Creates an agent for a tenant and issues its token (shown once).
#[utoipa::path(
    post, path = "/tenants/{tenant}/agents", tag = "agents",
    params(("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme")),
    request_body = NewAgent,
    responses(
        (status = 201, description = "The agent and its token", body = IssuedAgent),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn create_agent(
    State(app): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(new): ApiJson<NewAgent>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(admin(&app).create_agent(tenant, new).await?),
    ))
}

/// Revokes an agent: its token stops working and its sessions end.
#[utoipa::path(
    post, path = "/agents/{agent}/revoke", tag = "agents",
    params(("agent" = String, Path, description = "The agent's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The agent id is invalid", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
async fn revoke_agent(
    State(app): State<Arc<AppState>>,
    ApiPath(agent): ApiPath<String>,
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

/// A tenant's events, newest first.
#[utoipa::path(
    get, path = "/tenants/{tenant}/events", tag = "events",
    params(("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"), EventQuery),
    responses(
        (status = 200, description = "The events", body = EventList),
        (status = 400, description = "The tenant id or a query value is invalid", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    )
)]
async fn list_events(
    State(app): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<EventList>, ApiError> {
    Ok(Json(admin(&app).events(tenant, query).await?))
}

/// An event and its history.
#[utoipa::path(
    get, path = "/tenants/{tenant}/events/{id}", tag = "events",
    params(
        ("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"),
        ("id" = i64, Path, description = "The event's id", example = 1),
    ),
    responses(
        (status = 200, description = "The event", body = EventDetail),
        (status = 400, description = "The tenant id or event id is invalid", body = ErrorBody),
        (status = 404, description = "No such event of the tenant", body = ErrorBody),
    )
)]
async fn event(
    State(app): State<Arc<AppState>>,
    ApiPath((tenant, id)): ApiPath<(String, i64)>,
) -> Result<Json<EventDetail>, ApiError> {
    let (event, history) = app
        .store
        .event(tenant_id(tenant)?, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
    Ok(Json(EventDetail { event, history }))
}

/// An event's stored body (and the one received, when it was edited) and its order's problems.
#[utoipa::path(
    get, path = "/tenants/{tenant}/events/{id}/payload", tag = "events",
    params(
        ("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"),
        ("id" = i64, Path, description = "The event's id", example = 1),
    ),
    responses(
        (status = 200, description = "The event's body", body = EventPayloadView),
        (status = 400, description = "The tenant id or event id is invalid", body = ErrorBody),
        (status = 404, description = "No such event of the tenant", body = ErrorBody),
    )
)]
async fn event_payload(
    State(app): State<Arc<AppState>>,
    ApiPath((tenant, id)): ApiPath<(String, i64)>,
) -> Result<Json<EventPayloadView>, ApiError> {
    Ok(Json(admin(&app).event_payload(tenant, id).await?))
}

/// Replaces the body of a dead or held event with a corrected order webhook for the same shop
/// and order; the body received is kept. The event stays where it is until it is replayed.
#[utoipa::path(
    put, path = "/tenants/{tenant}/events/{id}/payload", tag = "events",
    params(
        ("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"),
        ("id" = i64, Path, description = "The event's id", example = 1),
    ),
    request_body(
        content = Object,
        description = "A full order webhook (as a shop sends it) for the event's shop and order"
    ),
    responses(
        (status = 200, description = "The body, replaced", body = EditedEvent),
        (status = 400, description = "The body is not an order webhook for the event's shop and order", body = ErrorBody),
        (status = 404, description = "No such event of the tenant", body = ErrorBody),
        (status = 409, description = "The event is neither dead nor held", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn edit_event(
    State(app): State<Arc<AppState>>,
    ApiPath((tenant, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<EditedEvent>, ApiError> {
    Ok(Json(admin(&app).edit_event(tenant, id, body).await?))
}

/// Puts a dead or held event back in the queue; an order still invalid is refused unless
/// `force` is set.
#[utoipa::path(
    post, path = "/tenants/{tenant}/events/{id}/replay", tag = "events",
    params(
        ("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"),
        ("id" = i64, Path, description = "The event's id", example = 1),
        ReplayQuery,
    ),
    responses(
        (status = 200, description = "Back in the queue", body = ReplayedEvent),
        (status = 400, description = "The tenant id, event id or a query value is invalid", body = ErrorBody),
        (status = 404, description = "No such event of the tenant", body = ErrorBody),
        (status = 409, description = "The event is neither dead nor held", body = ErrorBody),
        (status = 422, description = "The order is still invalid: its problems", body = InvalidOrderBody),
    )
)]
async fn replay(
    State(app): State<Arc<AppState>>,
    ApiPath((tenant, id)): ApiPath<(String, i64)>,
    ApiQuery(query): ApiQuery<ReplayQuery>,
) -> Result<Json<ReplayedEvent>, ApiError> {
    let reply = admin(&app).replay_event(tenant.clone(), id, query).await?;
    app.announce(Notice::Event {
        tenant: tenant_id(tenant)?,
    })
    .await;
    Ok(Json(reply))
}

/// What a tenant's agents pushed, newest first.
#[utoipa::path(
    get, path = "/tenants/{tenant}/pushes", tag = "pushes",
    params(("tenant" = String, Path, description = "The tenant's id", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme"), EventQuery),
    responses(
        (status = 200, description = "The pushes", body = PushList),
        (status = 400, description = "The tenant id or a query value is invalid", body = ErrorBody),
    )
)]
async fn list_pushes(
    State(app): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<PushList>, ApiError> {
    let tenant = tenant_id(tenant)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let pushes = app.store.list_pushes(tenant, limit).await?;
    Ok(Json(PushList { pushes }))
}
