//! The admin API of a tenant's alerts: `GET`/`PUT /tenants/{tenant}/alerts` (its alert
//! settings, with the alerts open now) and `POST /tenants/{tenant}/alerts/test` (sends a test
//! alert by every channel set up). The webhook URL may hold a secret token, so it is shown
//! only as its host; a `PUT` without `webhook_url` keeps it, with `""` removes it.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::requests::{ApiJson, ApiPath, BodyLimit, tenant_id};
use crate::AppState;
use crate::accounts::{Language, Principal};
use crate::alerts::settings::check_tenant_webhook_url;
use crate::alerts::{AlertSettings, Channel, message, send_by, test_limit};
use crate::error::ApiError;
use crate::store::AnyStore;

/// The most an alert settings body may hold.
const BODY_BYTES: usize = 16 * 1024;

/// The routes with their OpenAPI descriptions, merged into the admin router and its document.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    let small = (
        DefaultBodyLimit::max(BODY_BYTES),
        Extension(BodyLimit(BODY_BYTES)),
    );
    OpenApiRouter::new()
        .routes(routes!(get_alerts, put_alerts).layer(small))
        .routes(routes!(test_alert).layer(small))
}

/// A tenant's alert settings as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertSettingsView {
    /// Whether the tenant has alert settings (else these are the defaults, and no alerts go).
    pub configured: bool,
    /// Whether the relay has an SMTP server (`[smtp]`): without one no e-mail goes.
    pub smtp_configured: bool,
    pub emails: Vec<String>,
    /// The webhook's scheme and host (its path may be a secret), if one is set.
    pub webhook: Option<String>,
    #[schema(value_type = String, example = "en")]
    pub language: Language,
    pub agent_offline_minutes: f64,
    pub queue_age_minutes: f64,
    pub shop_refusing_failures: u32,
    pub dead_letters: bool,
    pub digest: bool,
    /// The tenant's alerts open now.
    pub open: Vec<OpenAlert>,
}

/// An alert not resolved yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAlert {
    /// `dead_letters`, `agent_offline`, `queue_age` or `shop_refusing:<shop>`.
    pub condition: String,
    pub detail: String,
    pub opened_at: DateTime<Utc>,
}

/// Changes to a tenant's alert settings: the fields given replace the current ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSettingsUpdate {
    /// Who receives alert e-mails and the digest (at most 20).
    #[schema(max_items = 20, example = json!(["ops@example.com"]))]
    pub emails: Option<Vec<String>>,
    /// An `https://` incoming webhook; `""` removes it. A tenant account's must be a public
    /// host (not this machine or a private network); an operator may also set `http://` to
    /// localhost.
    pub webhook_url: Option<String>,
    /// `en` or `sv`.
    #[schema(value_type = Option<String>, example = "sv")]
    pub language: Option<Language>,
    /// Minutes without an online agent before the alert (0.05 to 10080).
    #[schema(minimum = 0.05, maximum = 10080.0)]
    pub agent_offline_minutes: Option<f64>,
    /// Minutes the oldest waiting event may wait before the alert (0.05 to 10080).
    #[schema(minimum = 0.05, maximum = 10080.0)]
    pub queue_age_minutes: Option<f64>,
    /// Failures in a row of one change before a shop counts as refusing (1 to 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub shop_refusing_failures: Option<u32>,
    pub dead_letters: Option<bool>,
    pub digest: Option<bool>,
}

/// What a test alert did on each channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestOutcome {
    pub email: ChannelOutcome,
    pub webhook: ChannelOutcome,
}

/// One channel's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelOutcome {
    /// `sent`, `failed` or `not_configured`.
    pub status: String,
    /// Why it failed (never a password or the webhook's path).
    pub error: Option<String>,
}

impl From<Option<Result<(), String>>> for ChannelOutcome {
    fn from(result: Option<Result<(), String>>) -> Self {
        let (status, error) = match result {
            None => ("not_configured", None),
            Some(Ok(())) => ("sent", None),
            Some(Err(e)) => ("failed", Some(e)),
        };
        Self {
            status: status.into(),
            error,
        }
    }
}

/// The tenant's settings, and whether it has any; `NotFound` without the tenant.
async fn current(
    store: &AnyStore,
    tenant: &shared::TenantId,
) -> Result<(AlertSettings, bool), ApiError> {
    match store.alert_settings(tenant.clone()).await? {
        Some(json) => {
            let settings = AlertSettings::from_stored(&json)
                .map_err(|e| ApiError::Internal(crate::store::StoreError::Database(e)))?;
            Ok((settings, true))
        }
        None if store.tenant_exists(tenant.clone()).await? => Ok((AlertSettings::default(), false)),
        None => Err(ApiError::NotFound(format!("tenant {tenant} not found"))),
    }
}

async fn view(
    app: &AppState,
    tenant: &shared::TenantId,
    settings: AlertSettings,
    configured: bool,
) -> Result<AlertSettingsView, ApiError> {
    let open = app
        .store
        .alerts(tenant.clone(), true, 100)
        .await?
        .into_iter()
        .map(|a| OpenAlert {
            condition: a.condition,
            detail: a.detail,
            opened_at: a.opened_at,
        })
        .collect();
    Ok(AlertSettingsView {
        configured,
        smtp_configured: app.config.smtp.is_some(),
        webhook: settings.webhook_host(),
        emails: settings.emails,
        language: settings.language,
        agent_offline_minutes: settings.agent_offline_minutes,
        queue_age_minutes: settings.queue_age_minutes,
        shop_refusing_failures: settings.shop_refusing_failures,
        dead_letters: settings.dead_letters,
        digest: settings.digest,
        open,
    })
}

/// A tenant's alert settings and its open alerts.
#[utoipa::path(
    get, path = "/tenants/{tenant}/alerts", tag = "alerts",
    params(("tenant" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant's alert settings", body = AlertSettingsView),
        (status = 400, description = "The tenant id is invalid", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    )
)]
async fn get_alerts(
    State(app): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<AlertSettingsView>, ApiError> {
    let tenant = tenant_id(tenant)?;
    let (settings, configured) = current(&app.store, &tenant).await?;
    Ok(Json(view(&app, &tenant, settings, configured).await?))
}

/// Changes a tenant's alert settings (the fields given); alerts start with the next
/// evaluation.
#[utoipa::path(
    put, path = "/tenants/{tenant}/alerts", tag = "alerts",
    params(("tenant" = String, Path, description = "The tenant's id")),
    request_body = AlertSettingsUpdate,
    responses(
        (status = 200, description = "The tenant's alert settings now", body = AlertSettingsView),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn put_alerts(
    State(app): State<Arc<AppState>>,
    caller: Option<Extension<Principal>>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(update): ApiJson<AlertSettingsUpdate>,
) -> Result<Json<AlertSettingsView>, ApiError> {
    let tenant = tenant_id(tenant)?;
    let (mut settings, _) = current(&app.store, &tenant).await?;
    // A local sink is the operators' (they run the machine); a tenant account's webhook is
    // a public https:// address, so the relay cannot be made to post to its own network.
    let operator = caller.is_some_and(|Extension(c)| c.is_operator());
    if let Some(url) = update.webhook_url.as_deref().filter(|u| !u.is_empty())
        && !operator
    {
        check_tenant_webhook_url(url).map_err(ApiError::BadRequest)?;
    }
    apply(&mut settings, update);
    settings.check().map_err(ApiError::BadRequest)?;
    app.store
        .put_alert_settings(tenant.clone(), settings.to_stored())
        .await?;
    tracing::info!(%tenant, webhook = ?settings.webhook_host(), recipients = settings.emails.len(), "alert settings changed");
    Ok(Json(view(&app, &tenant, settings, true).await?))
}

fn apply(settings: &mut AlertSettings, update: AlertSettingsUpdate) {
    if let Some(emails) = update.emails {
        settings.emails = emails;
    }
    if let Some(url) = update.webhook_url {
        settings.webhook_url = Some(url).filter(|u| !u.is_empty());
    }
    if let Some(language) = update.language {
        settings.language = language;
    }
    if let Some(v) = update.agent_offline_minutes {
        settings.agent_offline_minutes = v;
    }
    if let Some(v) = update.queue_age_minutes {
        settings.queue_age_minutes = v;
    }
    if let Some(v) = update.shop_refusing_failures {
        settings.shop_refusing_failures = v;
    }
    if let Some(v) = update.dead_letters {
        settings.dead_letters = v;
    }
    if let Some(v) = update.digest {
        settings.digest = v;
    }
}

/// Sends a test alert to the tenant's recipients and webhook now, and says how each went.
/// At most one a minute and ten a day per tenant.
#[utoipa::path(
    post, path = "/tenants/{tenant}/alerts/test", tag = "alerts",
    params(("tenant" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "What the test did on each channel", body = TestOutcome),
        (status = 400, description = "The tenant id is invalid", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 429, description = "A test alert was sent less than a minute ago, or ten today; `Retry-After` says when another may go", body = ErrorBody),
    )
)]
async fn test_alert(
    State(app): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TestOutcome>, ApiError> {
    let tenant = tenant_id(tenant)?;
    let (settings, _) = current(&app.store, &tenant).await?;
    test_limit::admit(app.registry.instance(), tenant.as_str()).map_err(|retry_after| {
        ApiError::TooManyRequests {
            message: format!(
                "tenant {tenant} sent a test alert recently: at most one a minute and {} a day; \
                 try again in {retry_after} s",
                test_limit::PER_DAY
            ),
            retry_after,
        }
    })?;
    let test = message::test(settings.language, &tenant);
    let email = send_by(&app, &settings, Channel::Email, &test).await;
    let webhook = send_by(&app, &settings, Channel::Webhook, &test).await;
    Ok(Json(TestOutcome {
        email: email.into(),
        webhook: webhook.into(),
    }))
}
