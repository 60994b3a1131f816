//! The admin API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and their types, and its two public routes: `GET /admin/v1/openapi.json` and
//! the reference rendered from it, `GET /admin/v1/docs` (see [`super::docs`]). Neither needs a
//! caller: the document holds no secrets.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, ToSchema};

use crate::AppState;
use crate::validate::Problem;

/// Where the admin API is mounted; the document's paths start with it.
pub const PREFIX: &str = "/admin/v1";

/// The document's own route and the reference's, under [`PREFIX`]; public.
pub const DOCUMENT_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// The names of the security schemes in the document.
const BEARER: &str = "admin_token";
const SESSION: &str = "console_session";
const CSRF: &str = "csrf_token";

/// The error body of every refusal.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and what to do about it.
    pub error: String,
}

/// The error body of an order that is still invalid (422).
#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidOrderBody {
    pub error: String,
    /// Each field that is wrong, and what is wrong with it.
    pub problems: Vec<Problem>,
}

/// Whether Mamut creates an order or an invoice for a shop order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DocumentType)]
pub enum DocumentTypeSchema {
    Order,
    Invoice,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Relay admin API",
        description = "Tenants, shops, agents, events and what goes to the shops. Every route \
            takes the admin bearer token, or a console session cookie (with its CSRF token in \
            `x-csrf-token` on every request that changes something); a tenant account reaches \
            its own tenant only and a viewer changes nothing. Errors are `{\"error\": \"…\"}`.",
    ),
    modifiers(&Security),
    tags(
        (name = "tenants", description = "Merchants"),
        (name = "shops", description = "A tenant's shops and their rules"),
        (name = "agents", description = "The agents next to a tenant's Mamut"),
        (name = "events", description = "Webhooks received: their state, history, body, replay"),
        (name = "dispatch", description = "Changes on their way from Mamut to the shops"),
        (name = "pushes", description = "What the agents pushed"),
        (name = "alerts", description = "A tenant's alerts: where they go, their thresholds"),
        (name = "reference", description = "This document and its rendered reference"),
    )
)]
struct AdminApi;

/// The security schemes, and the responses every guarded route may give.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The relay's admin token (`RELAY_ADMIN_TOKEN`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "relay_session",
                "A console session, from signing in at /console/login",
            ))),
        );
        components.add_security_scheme(
            CSRF,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-csrf-token",
                "The console session's CSRF token; required on every request that changes \
                 something",
            ))),
        );
    }
}

/// The whole document: the admin routes under [`PREFIX`], their security and common refusals,
/// and the two reference routes.
pub fn document() -> OpenApi {
    let (_, routes) = super::routes::api(0);
    let mut api = <AdminApi as utoipa::OpenApi>::openapi().nest(PREFIX, routes);
    guard_everything(&mut api);
    api.merge(reference_paths());
    api
}

/// The document as served, encoded once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!(r#"{{"error": "the document could not be encoded: {e}"}}"#))
});

/// The reference page, rendered once.
static DOCS: LazyLock<String> = LazyLock::new(|| super::docs::render(&document()).into_string());

/// `GET /openapi.json` and `GET /docs`, mounted under [`PREFIX`] beside the admin routes.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            DOCUMENT_PATH,
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    DOCUMENT.as_str(),
                )
                    .into_response()
            }),
        )
        .route(DOCS_PATH, get(|| async { Html(DOCS.as_str()) }))
}

/// Every admin operation takes the bearer token or a session (with its CSRF token), and may
/// be refused for the caller (401, 403) or because the relay is at its limit of requests in
/// flight (503).
fn guard_everything(api: &mut OpenApi) {
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{RefOr, Response, ResponseBuilder, content::ContentBuilder};

    let error = |description: &str| -> RefOr<Response> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .into()
    };
    let each = |operation: &mut Operation, changes: bool| {
        let session = if changes {
            SecurityRequirement::new::<_, _, &str>(SESSION, []).add::<_, _, &str>(CSRF, [])
        } else {
            SecurityRequirement::new::<_, _, &str>(SESSION, [])
        };
        operation.security = Some(vec![
            SecurityRequirement::new::<_, _, &str>(BEARER, []),
            session,
        ]);
        let responses = &mut operation.responses.responses;
        responses.insert(
            "401".into(),
            error("No admin token or console session, or a wrong one"),
        );
        responses.insert(
            "403".into(),
            error("The caller may not do this (another tenant, a viewer, no CSRF token)"),
        );
        responses.insert(
            "503".into(),
            error("The relay serves as many requests as it can; try again (Retry-After)"),
        );
    };
    for item in api.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.head].into_iter().flatten() {
            each(operation, false);
        }
        for operation in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            each(operation, true);
        }
    }
}

/// The two public reference routes, as the document describes them.
fn reference_paths() -> OpenApi {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, PathsBuilder, ResponseBuilder, Type};

    let ok = |media: &str, description: &str, schema: Type| {
        ResponseBuilder::new()
            .description(description)
            .content(
                media,
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(schema)))
                    .build(),
            )
            .build()
    };
    let operation = |id: &str, summary: &str, response| {
        OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .tag("reference")
            .security(utoipa::openapi::security::SecurityRequirement::default())
            .response("200", response)
            .build()
    };
    let paths = PathsBuilder::new()
        .path(
            format!("{PREFIX}{DOCUMENT_PATH}"),
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "openapi_document",
                    "This OpenAPI document (public)",
                    ok("application/json", "The document", Type::Object),
                ),
            ),
        )
        .path(
            format!("{PREFIX}{DOCS_PATH}"),
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "openapi_reference",
                    "The reference rendered from this document (public)",
                    ok("text/html", "An HTML page", Type::String),
                ),
            ),
        );
    utoipa::openapi::OpenApiBuilder::new().paths(paths).build()
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
