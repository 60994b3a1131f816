//! The guard in front of every `/admin/v1` route: who is calling, whether they may, and the
//! audit entry of what they changed.
//!
//! - The caller is the bearer admin token (an operator) or a console session cookie
//!   ([`ApiCaller`]); a session's state-changing request (anything but `GET`/`HEAD`) must
//!   carry its CSRF token in `x-csrf-token`.
//! - Under `/tenants/{tenant}/…` a `GET` needs [`Principal::may_see`] and anything else
//!   [`Principal::may_change`] of that tenant.
//! - Adding a shop (`POST /tenants/{tenant}/shops`) is the operators': shop ids are one
//!   namespace for every tenant, so a tenant account could take ids other tenants will need
//!   and learn which ids they have from the 409.
//! - `/agents/{agent}/…` is judged by the agent's tenant. A tenant account asking about an
//!   agent of another tenant is answered 404, as for an agent that does not exist, so it
//!   cannot learn which agent ids other tenants have.
//! - Every other route (`POST /tenants`, anything not under one tenant) is the operators'.
//! - `GET /openapi.json` and `GET /docs…` are public: the document describes the API and
//!   holds no data.
//! - After a state-changing request that succeeded (2xx), an audit entry: the caller, the
//!   tenant, the method and route (`POST /tenants/{tenant}/events/{id}/replay`) and the
//!   concrete path. Never the body, which may hold secrets.
//!
//! The caller's [`Principal`] is put in the request's extensions for the handlers.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::{AgentId, TenantId};

use super::Principal;
use super::session::{
    ApiCaller, check_csrf, csrf_header, require_change, require_operator, require_see,
};
use crate::AppState;
use crate::error::ApiError;
use crate::store::NewAudit;

/// Where the admin API is nested.
const PREFIX: &str = "/admin/v1";

pub async fn guard(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let route = route_of(&parts);
    let reads = matches!(parts.method, Method::GET | Method::HEAD);
    if reads && is_public(&route) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let (caller, tenant) = match authorize(&app, &mut parts, &route, reads).await {
        Ok(allowed) => allowed,
        Err(e) => return e.into_response(),
    };
    let target = parts.uri.path().to_owned();
    let action = format!("{} {route}", parts.method);
    parts.extensions.insert(caller.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    if !reads && response.status().is_success() {
        let entry = NewAudit {
            actor: caller.actor,
            tenant_id: tenant,
            action,
            target,
            detail: None,
        };
        if let Err(e) = app.store.append_audit(entry).await {
            tracing::error!(error = %e, "a change was made but its audit entry was not written");
        }
    }
    response
}

/// The route's pattern below [`PREFIX`] (`/tenants/{tenant}/events`), or the path when the
/// request matched no route.
fn route_of(parts: &Parts) -> String {
    let matched = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    match matched.strip_prefix(PREFIX) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => matched,
    }
}

/// The routes under one tenant that only an operator may use.
fn is_operators(method: &Method, route: &str) -> bool {
    method == Method::POST && route == "/tenants/{tenant}/shops"
}

fn is_public(route: &str) -> bool {
    route == "/openapi.json" || route == "/docs" || route.starts_with("/docs/")
}

/// The caller, if it may make this request, and the tenant the request concerns.
async fn authorize(
    app: &Arc<AppState>,
    parts: &mut Parts,
    route: &str,
    reads: bool,
) -> Result<(Principal, Option<TenantId>), ApiError> {
    let ApiCaller(caller) = ApiCaller::from_request_parts(parts, app).await?;
    if !reads {
        check_csrf(&caller, csrf_header(&parts.headers))?;
    }
    let params = RawPathParams::from_request_parts(parts, app).await.ok();
    let param = |name: &str| {
        params.as_ref().and_then(|p| {
            p.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_owned())
        })
    };
    if let Some(tenant) = param("tenant") {
        let Ok(tenant) = TenantId::new(tenant.clone()) else {
            // The handler answers 400 for an id that is not one; only an operator gets there.
            require_operator(&caller)?;
            return Ok((caller, None));
        };
        if reads {
            require_see(&caller, &tenant)?;
        } else if is_operators(&parts.method, route) {
            require_operator(&caller)?;
        } else {
            require_change(&caller, &tenant)?;
        }
        return Ok((caller, Some(tenant)));
    }
    if let Some(agent) = param("agent") {
        let tenant = agent_tenant(app, &caller, agent, reads).await?;
        return Ok((caller, tenant));
    }
    require_operator(&caller)?;
    Ok((caller, None))
}

/// The tenant of an agent route's agent, checked for `caller`. An operator passes whether
/// or not the agent exists (the handler answers 404); a tenant account gets 404 for an agent
/// that is not its tenant's, exactly as for one that does not exist.
async fn agent_tenant(
    app: &AppState,
    caller: &Principal,
    agent: String,
    reads: bool,
) -> Result<Option<TenantId>, ApiError> {
    let not_found = || ApiError::NotFound(format!("agent {agent} not found"));
    let agent_id = AgentId::new(agent.clone()).ok();
    let record = match agent_id {
        Some(id) => app.store.agent(id).await?,
        None => None,
    };
    if caller.is_operator() {
        return Ok(record.map(|r| r.tenant_id));
    }
    let Some(record) = record.filter(|r| caller.may_see(&r.tenant_id)) else {
        return Err(not_found());
    };
    if !reads {
        require_change(caller, &record.tenant_id)?;
    }
    Ok(Some(record.tenant_id))
}
