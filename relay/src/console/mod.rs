//! The admin console under `/console`: pages rendered on the server from the relay binary
//! (maud templates, no script needed), in the account's language (`i18n`, Fluent catalogues
//! in `relay/locales/`).
//!
//! - `layout`: the page frame, navigation and stylesheet; `i18n`: the catalogues.
//! - `login`: signing in and out.
//! - `overview`, `orders` (search and each order's timeline), `audit`: what happened.
//! - `failures` (dead letters and failed dispatch, grouped; replay, edit and retry),
//!   `shops` (rules, secrets and keys), `agents` (tokens, sessions): what an admin changes.

pub mod i18n;
pub mod layout;

mod actions;
mod agents;
mod audit;
mod failures;
mod login;
mod orders;
mod overview;
mod shops;
mod views;

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};

use crate::AppState;
use crate::error::ApiError;

/// The overview, the console's home at `/console/`.
pub use overview::overview;

/// The console's routes, nested under `/console`, each answer with [`security_headers`].
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/assets/console.css", get(stylesheet))
        .merge(login::routes())
        .merge(overview::routes())
        .merge(orders::routes())
        .merge(audit::routes())
        .merge(failures::routes())
        .merge(shops::routes())
        .merge(agents::routes())
        .layer(middleware::map_response(security_headers))
}

/// The console's Content Security Policy: only our own stylesheet and forms, no script, no
/// framing. Inline `style` attributes are allowed: the charts colour their legends with them.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' \
     'unsafe-inline'; frame-ancestors 'none'; form-action 'self'";

/// Adds the console's security headers to an answer: not stored by any cache (pages show
/// one-time secrets; the stylesheet keeps its own public `Cache-Control`), the
/// [`CONTENT_SECURITY_POLICY`], never framed, no referrer to other sites, no content-type
/// sniffing.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        layout::STYLESHEET,
    )
        .into_response()
}

/// A console request that failed, shown as a page (the API's [`ApiError`] in HTML).
pub struct PageError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match &self.0 {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "console request failed");
                "internal error (see the relay's log)".to_owned()
            }
            other => other.to_string(),
        };
        (status, layout::error_page(status, &message)).into_response()
    }
}
