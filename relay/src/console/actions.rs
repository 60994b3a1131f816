//! What the console's changing pages (failures, shops, agents) share: the checks in front of
//! every change (the account may change the tenant, the form carries the session's CSRF
//! token), the audit entry after it, the posted form's fields, and the answer page.

use maud::{Markup, html};
use shared::TenantId;

use super::PageError;
use super::i18n::t;
use super::layout::{Section, page};
use crate::AppState;
use crate::accounts::Principal;
use crate::accounts::session::{check_csrf, require_change};
use crate::admin::Admin;
use crate::error::ApiError;
use crate::store::NewAudit;

/// Most bytes of a posted form other than an edited order.
pub const SMALL_FORM_BYTES: usize = 64 * 1024;
/// Most fields of a posted form (a page's checkboxes included).
pub const MAX_FIELDS: usize = 1000;

/// A posted form's fields in order; a name may repeat (checkboxes).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new(fields: Vec<(String, String)>) -> Result<Self, ApiError> {
        if fields.len() > MAX_FIELDS {
            return Err(ApiError::BadRequest(format!(
                "the form has {} fields; at most {MAX_FIELDS} are taken",
                fields.len()
            )));
        }
        Ok(Self(fields))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the checkbox `name` is ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_empty())
    }

    /// The session's CSRF token as posted.
    pub fn csrf(&self) -> Option<&str> {
        self.get("csrf")
    }
}

/// Refuses the change unless `user` may change `tenant` and the form carries its CSRF token.
pub fn may_change(user: &Principal, tenant: &TenantId, fields: &Fields) -> Result<(), ApiError> {
    check_csrf(user, fields.csrf())?;
    require_change(user, tenant)
}

/// The tenant a user's pages are limited to (`None`: every tenant, an operator's). A tenant
/// account without its tenant sees nothing.
pub fn scope(user: &Principal) -> Result<Option<TenantId>, ApiError> {
    if user.is_operator() {
        return Ok(None);
    }
    match &user.tenant {
        Some(tenant) => Ok(Some(tenant.clone())),
        None => Err(ApiError::Forbidden(format!(
            "{} has no tenant: ask an operator to set the account up again",
            user.actor
        ))),
    }
}

/// Writes the audit entry of a change; a failure is logged (the change is made).
pub async fn audit(
    app: &AppState,
    user: &Principal,
    tenant: Option<&TenantId>,
    action: &str,
    target: String,
    detail: Option<String>,
) {
    let entry = NewAudit {
        actor: user.actor.clone(),
        tenant_id: tenant.cloned(),
        action: action.to_owned(),
        target,
        detail,
    };
    if let Err(e) = app.store.append_audit(entry).await {
        tracing::error!(error = %e, action, "a change was made but its audit entry was not written");
    }
}

/// The admin operations, as the API calls them, for `user`.
pub fn admin<'a>(app: &'a AppState, user: &Principal) -> Admin<'a> {
    Admin {
        store: &app.store,
        tokens: &app.tokens,
        operator: user.is_operator(),
    }
}

/// A tenant id from a form or a path.
pub fn tenant_id(value: &str) -> Result<TenantId, ApiError> {
    TenantId::new(value).map_err(|e| ApiError::BadRequest(format!("tenant {value:?}: {e}")))
}

/// The page answering a change, with a link back.
pub fn answer(
    user: &Principal,
    section: Section,
    title: &str,
    back: &str,
    body: Markup,
) -> Result<Markup, PageError> {
    let language = user.language;
    Ok(page(
        language,
        Some(user),
        section,
        title,
        html! {
            h1 { (title) }
            (body)
            p { a href=(back) { (t(language, "actions-back")) } }
        },
    ))
}

/// A point in time, to the second, in UTC.
pub fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
