//! Edit and retry: a dead or held order's body in a text area (the body received beside it
//! when it was edited before), and the edited body saved through
//! [`crate::admin::Admin::edit_event`] (the body received is kept, the edit goes into the
//! event's history) and replayed at once. An order that is still invalid stays edited but
//! waiting, with its problems shown, unless the operator forces it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::routing::get;
use futures_util::StreamExt;
use maud::{Markup, html};
use serde_json::Value;
use shared::TenantId;

use super::super::PageError;
use super::super::actions::{Fields, MAX_FIELDS, admin, answer, audit, tenant_id};
use super::super::i18n::{t, t_args};
use super::super::layout::{Section, csrf_field, page};
use super::{editable, refusal};
use crate::AppState;
use crate::accounts::Principal;
use crate::accounts::session::{ConsoleUser, check_csrf, require_change, require_see};
use crate::admin::ReplayQuery;
use crate::error::ApiError;
use crate::store::Notice;

/// Bytes a posted edit may hold beside its body: the CSRF token, the checkbox, the names.
const EDIT_FORM_SLACK: usize = 64 * 1024;

/// Most bytes of a posted edit: the relay's largest webhook (`max_body_bytes`), form-encoded
/// (up to three bytes a character), and the fields around it.
pub(crate) fn edit_form_bytes(max_body_bytes: usize) -> usize {
    max_body_bytes
        .saturating_mul(3)
        .saturating_add(EDIT_FORM_SLACK)
}

/// The posted edit is read by the handler itself, not by an extractor: the account's role is
/// checked before a byte of it is read, the body is read up to [`edit_form_bytes`], and at
/// most [`MAX_FIELDS`] fields are decoded before the CSRF token among them is checked.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/failures/events/{tenant}/{id}", get(show).post(save))
}

async fn show(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, i64)>,
) -> Result<Markup, PageError> {
    let tenant = tenant_id(&tenant)?;
    require_see(&user, &tenant)?;
    let view = admin(&app, &user)
        .event_payload(tenant.to_string(), id)
        .await?;
    let text = pretty(&view.payload);
    let problems: Vec<String> = view.problems.iter().map(ToString::to_string).collect();
    form_page(
        &app,
        &user,
        &tenant,
        id,
        &text,
        view.original.as_ref(),
        &problems,
        None,
    )
    .await
}

/// The edit page: the stored body in a text area (or `text`, as last posted), the body
/// received, the order's problems, and an error to correct.
#[allow(clippy::too_many_arguments)]
async fn form_page(
    app: &AppState,
    user: &Principal,
    tenant: &TenantId,
    id: i64,
    text: &str,
    original: Option<&Value>,
    problems: &[String],
    error: Option<&str>,
) -> Result<Markup, PageError> {
    let (event, _) =
        app.store.event(tenant.clone(), id).await?.ok_or_else(|| {
            ApiError::NotFound(format!("event {id} of tenant {tenant} not found"))
        })?;
    let language = user.language;
    let title = t_args(
        language,
        "fix-title",
        &[("order", event.order_id.clone().into())],
    );
    let action = format!("/console/failures/events/{tenant}/{id}");
    let can_edit = editable(event.state) && user.may_change(tenant);
    let body = html! {
        h1 { (title) }
        p {
            (t_args(language, "fix-summary", &[
                ("id", id.into()),
                ("shop", event.shop_id.to_string().into()),
                ("state", event.state.as_str().into()),
            ]))
        }
        @if let (true, Some(reason)) = (problems.is_empty(), &event.last_error) { p.bad { (reason) } }
        @if let Some(error) = error { p.bad.notice { (error) } }
        @if !problems.is_empty() {
            h2 { (t(language, "fix-problems")) }
            ul { @for p in problems { li.bad { (p) } } }
        }
        @if !editable(event.state) {
            p.muted { (t(language, "fix-not-failed")) }
        }
        div.grid {
            section.card {
                h2 { (t(language, "fix-payload")) }
                @if can_edit {
                    form method="post" action=(action) {
                        (csrf_field(user))
                        textarea name="payload" spellcheck="false" { (text) }
                        p {
                            label { input type="checkbox" name="force" value="1"; " " (t(language, "failures-force")) }
                            " "
                            button type="submit" { (t(language, "fix-save-retry")) }
                        }
                    }
                } @else {
                    pre { (text) }
                }
            }
            @if let Some(original) = original {
                section.card {
                    h2 { (t(language, "fix-original")) }
                    pre { (pretty(original)) }
                }
            }
        }
        p { a href="/console/failures" { (t(language, "actions-back")) } }
    };
    Ok(page(language, Some(user), Section::Failures, &title, body))
}

async fn save(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Path((tenant, id)): Path<(String, i64)>,
    headers: HeaderMap,
    posted: Body,
) -> Result<Markup, PageError> {
    let tenant = tenant_id(&tenant)?;
    // Who may not change the tenant is refused before the form is read.
    require_change(&user, &tenant)?;
    let fields = read_form(&headers, posted, edit_form_bytes(app.config.max_body_bytes)).await?;
    check_csrf(&user, fields.csrf())?;
    let text = fields.get("payload").unwrap_or_default().to_owned();
    let force = fields.ticked("force");
    let target = format!("tenants/{tenant}/events/{id}");
    let body: Value = match serde_json::from_str(&text) {
        Ok(body) => body,
        Err(e) => {
            let error = t_args(
                user.language,
                "fix-not-json",
                &[("error", e.to_string().into())],
            );
            return form_page(&app, &user, &tenant, id, &text, None, &[], Some(&error)).await;
        }
    };
    // The body is stored as compact JSON: that, not the text area's indented text, is held
    // to the limit on a webhook's size.
    let compact = serde_json::to_vec(&body).map_or(usize::MAX, |b| b.len());
    if compact > app.config.max_body_bytes {
        let error = ApiError::PayloadTooLarge(app.config.max_body_bytes).to_string();
        return form_page(&app, &user, &tenant, id, &text, None, &[], Some(&error)).await;
    }
    let edited = match admin(&app, &user)
        .edit_event(tenant.to_string(), id, body)
        .await
    {
        Ok(edited) => edited,
        Err(ApiError::BadRequest(message)) => {
            return form_page(&app, &user, &tenant, id, &text, None, &[], Some(&message)).await;
        }
        Err(e) => return Err(e.into()),
    };
    audit(
        &app,
        &user,
        Some(&tenant),
        "console: edit event",
        target.clone(),
        None,
    )
    .await;
    let replayed = admin(&app, &user)
        .replay_event(tenant.to_string(), id, ReplayQuery { force })
        .await;
    let language = user.language;
    let message = match replayed {
        Ok(reply) => {
            let detail = reply
                .forced
                .then(|| "forced: replayed with its problems".to_owned());
            audit(
                &app,
                &user,
                Some(&tenant),
                "console: replay event",
                target,
                detail,
            )
            .await;
            app.announce(Notice::Event {
                tenant: tenant.clone(),
            })
            .await;
            html! { p.notice.good { (t_args(language, "fix-retried", &[("id", id.into())])) } }
        }
        Err(e) => {
            let reason = refusal(&e);
            audit(
                &app,
                &user,
                Some(&tenant),
                "console: replay event",
                target,
                Some(format!("refused: {reason}")),
            )
            .await;
            let problems: Vec<String> = edited.problems.iter().map(ToString::to_string).collect();
            html! {
                p.notice.bad { (t_args(language, "fix-saved-not-retried", &[("id", id.into())])) }
                p { (reason) }
                @if !problems.is_empty() { ul { @for p in &problems { li.bad { (p) } } } }
                p { a href=(format!("/console/failures/events/{tenant}/{id}")) { (t(language, "fix-again")) } }
            }
        }
    };
    let title = t(language, "fix-done-title");
    answer(
        &user,
        Section::Failures,
        &title,
        "/console/failures",
        message,
    )
}

/// The posted form's fields: its body read up to `limit` bytes (a larger one is refused with
/// a page saying so), and at most [`MAX_FIELDS`] fields decoded from it.
async fn read_form(headers: &HeaderMap, posted: Body, limit: usize) -> Result<Fields, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut bytes = Vec::new();
    let mut chunks = posted.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(format!("the posted edit could not be read in full: {e}"))
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&bytes)
        .take(MAX_FIELDS + 1)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    Fields::new(fields)
}

fn pretty(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}
