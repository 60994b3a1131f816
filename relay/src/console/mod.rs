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

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::error::ApiError;

/// The overview, the console's home at `/console/`.
pub use overview::overview;

/// The console's routes, nested under `/console`.
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
