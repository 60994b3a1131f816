//! `/console/shops`: each shop's rules (flow, trigger statuses, document type, status map,
//! price lists, its API) and what is set of its secrets (how many webhook secrets; whether
//! an API key is set, never the key). An admin edits the rules (through
//! [`crate::admin::Admin::update_shop`], which checks them), rotates the webhook secret (the
//! new one first, the newest old one kept second so webhooks signed with it still verify;
//! the new one is shown once, on the answer page) and sets a new API key (entered, never
//! shown back). Every change is audited, never with a secret.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use shared::ShopId;
use shared::signature::WebhookSecret;

use super::PageError;
use super::actions::{Fields, SMALL_FORM_BYTES, admin, answer, audit, may_change, scope};
use super::i18n::t;
use super::layout::{Section, csrf_field, page};
use crate::AppState;
use crate::accounts::Principal;
use crate::accounts::session::{ConsoleUser, require_see};
use crate::admin::ShopUpdate;
use crate::error::ApiError;
use crate::store::{Notice, ShopRecord};

mod edit;

pub fn routes() -> Router<Arc<AppState>> {
    let small = DefaultBodyLimit::max(SMALL_FORM_BYTES);
    Router::new()
        .route("/shops", get(list))
        .route(
            "/shops/{shop}/edit",
            get(edit::show).post(edit::save).layer(small),
        )
        .route(
            "/shops/{shop}/rotate-secret",
            post(rotate_secret).layer(small),
        )
        .route("/shops/{shop}/api-key", post(set_api_key).layer(small))
}

async fn list(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
) -> Result<Markup, PageError> {
    let shops = app.store.shops(scope(&user)?).await?;
    let language = user.language;
    let title = t(language, "shops-title");
    let body = html! {
        h1 { (title) }
        @if shops.is_empty() { p.muted { (t(language, "shops-none")) } }
        @for shop in &shops { (card(&user, shop)) }
    };
    Ok(page(language, Some(&user), Section::Shops, &title, body))
}

fn card(user: &Principal, shop: &ShopRecord) -> Markup {
    let language = user.language;
    let settings = &shop.settings;
    let yes_no = |b: bool| t(language, if b { "shops-yes" } else { "shops-no" });
    html! {
        section.card id=(format!("shop-{}", shop.shop_id)) {
            h2 { (shop.shop_id) " " span.muted { "(" (shop.tenant_id) ")" } }
            table {
                tr { th { (t(language, "shops-flow")) } td { (t(language, &format!("shops-flow-{}", flow_name(settings.flow)))) } }
                tr { th { (t(language, "shops-document-type")) } td { (shop.document_type.as_str()) } }
                tr { th { (t(language, "shops-triggers")) } td { (shop.trigger_statuses.join(", ")) } }
                tr { th { (t(language, "shops-secrets")) } td { (shop.webhook_secrets.len()) } }
                tr {
                    th { (t(language, "shops-api")) }
                    td {
                        @match &settings.api {
                            Some(api) => { (api.url) " · " (api.requests_per_sec) " /s" }
                            None => span.muted { (t(language, "shops-no-api")) }
                        }
                    }
                }
                tr {
                    th { (t(language, "shops-api-key")) }
                    td { (t(language, if shop.api_key.is_some() { "shops-set" } else { "shops-not-set" })) }
                }
            }
            h3 { (t(language, "shops-status-map")) }
            @if settings.status_map.is_empty() { p.muted { "—" } }
            @else {
                div.scroll { table {
                    thead { tr {
                        th { (t(language, "shops-mamut-status")) } th { (t(language, "shops-shop-status")) }
                        th { (t(language, "shops-notify")) } th { (t(language, "shops-tracking")) } th { (t(language, "shops-capture")) }
                    } }
                    tbody { @for (mamut, rule) in &settings.status_map { tr {
                        td { (mamut) } td { (rule.shop_status) }
                        td { (yes_no(rule.notify_customer)) } td { (yes_no(rule.tracking)) } td { (yes_no(rule.capture)) }
                    } } }
                } }
            }
            h3 { (t(language, "shops-price-lists")) }
            @if settings.price_lists.is_empty() { p.muted { "—" } }
            @else {
                table {
                    thead { tr { th { (t(language, "shops-price-list")) } th { (t(language, "shops-customer-group")) } } }
                    tbody { @for (list, group) in &settings.price_lists { tr { td { (list) } td { (group) } } } }
                }
            }
            @if user.may_change(&shop.tenant_id) {
                p {
                    a href=(format!("/console/shops/{}/edit", shop.shop_id)) { (t(language, "shops-edit")) }
                }
                form method="post" action=(format!("/console/shops/{}/rotate-secret", shop.shop_id)) {
                    (csrf_field(user))
                    button.secondary type="submit" { (t(language, "shops-rotate")) }
                    " " span.muted { (t(language, "shops-rotate-help")) }
                }
                form method="post" action=(format!("/console/shops/{}/api-key", shop.shop_id)) {
                    (csrf_field(user))
                    label { (t(language, "shops-new-api-key")) " "
                        input type="password" name="api_key" autocomplete="off" maxlength="4096" required;
                    }
                    " " button.secondary type="submit" { (t(language, "shops-set-api-key")) }
                }
            }
        }
    }
}

/// The flow's stored name (its catalogue message is `shops-flow-<name>`).
fn flow_name(flow: crate::shop::Flow) -> &'static str {
    match flow {
        crate::shop::Flow::Ecom => "ecom",
        crate::shop::Flow::Erp => "erp",
        crate::shop::Flow::Combo => "combo",
    }
}

/// The shop `shop` if `user` may see it; 404 otherwise, as for a shop that does not exist,
/// so a tenant account cannot learn other tenants' shop ids.
pub(super) async fn visible_shop(
    app: &AppState,
    user: &Principal,
    shop: &str,
) -> Result<ShopRecord, ApiError> {
    let not_found = || ApiError::NotFound(format!("shop {shop:?} not found"));
    let id = ShopId::new(shop).map_err(|_| not_found())?;
    let record = app.store.shop(id).await?.ok_or_else(not_found)?;
    require_see(user, &record.tenant_id).map_err(|_| not_found())?;
    Ok(record)
}

/// Changes a shop as the admin API does: the ingest cache forgets it, and waiting work is
/// woken (new rules or a new key may unblock it); the change goes into the audit log as
/// `action` (never the values: they may hold secrets).
pub(super) async fn update_shop(
    app: &AppState,
    user: &Principal,
    record: &ShopRecord,
    update: ShopUpdate,
    action: &str,
) -> Result<(), ApiError> {
    let view = admin(app, user)
        .update_shop(
            record.tenant_id.to_string(),
            record.shop_id.to_string(),
            update,
        )
        .await?;
    app.shops.forget(&view.shop_id);
    app.announce(Notice::Dispatch {
        shop: view.shop_id.clone(),
    })
    .await;
    app.announce(Notice::Fetch).await;
    let target = format!("tenants/{}/shops/{}", record.tenant_id, record.shop_id);
    audit(app, user, Some(&record.tenant_id), action, target, None).await;
    Ok(())
}

async fn rotate_secret(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Path(shop): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, PageError> {
    let fields = Fields::new(fields)?;
    let record = visible_shop(&app, &user, &shop).await?;
    may_change(&user, &record.tenant_id, &fields)?;
    let new = WebhookSecret::from_bytes(rand::random::<[u8; 32]>().to_vec())
        .map_err(|e| ApiError::BadRequest(format!("cannot make a webhook secret: {e}")))?;
    let mut secrets = vec![new.expose()];
    secrets.extend(record.webhook_secrets.first().map(WebhookSecret::expose));
    let update = ShopUpdate {
        webhook_secrets: Some(secrets),
        ..ShopUpdate::default()
    };
    update_shop(
        &app,
        &user,
        &record,
        update,
        "console: rotate webhook secret",
    )
    .await?;
    let language = user.language;
    let title = t(language, "shops-rotated-title");
    answer(
        &user,
        Section::Shops,
        &title,
        "/console/shops",
        html! {
            p { (t(language, "shops-rotated")) }
            p.secret { (new.expose()) }
            p.muted { (t(language, "shops-shown-once")) }
        },
    )
}

async fn set_api_key(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Path(shop): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, PageError> {
    let fields = Fields::new(fields)?;
    let record = visible_shop(&app, &user, &shop).await?;
    may_change(&user, &record.tenant_id, &fields)?;
    let key = fields.get("api_key").unwrap_or_default().trim().to_owned();
    let update = ShopUpdate {
        api_key: Some(key),
        ..ShopUpdate::default()
    };
    update_shop(&app, &user, &record, update, "console: set API key").await?;
    let language = user.language;
    let title = t(language, "shops-api-key-set-title");
    answer(
        &user,
        Section::Shops,
        &title,
        "/console/shops",
        html! { p.good { (t(language, "shops-api-key-set")) } },
    )
}
