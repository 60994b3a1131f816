//! The guard in front of `/admin/v1`. (Being built: bearer or session, tenant scope, audit;
//! until then, the bearer admin token only.)

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

pub async fn guard(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    crate::admin::require_admin(state, headers, request, next).await
}
