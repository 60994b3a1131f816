//! Signing in and out, and one's own language.
//!
//! - `GET /console/login`: the sign-in form, in the language the browser asks for
//!   (`Accept-Language`, Swedish or English) unless `?lang=` says otherwise.
//! - `POST /console/login`: checks the password (limited per account and per address, see
//!   [`crate::accounts::limiter`]); on success a new session cookie and a redirect to `next`
//!   (a console path only) or the overview. An unknown account and a wrong password get the
//!   same answer.
//! - `POST /console/logout`: ends the session (CSRF-checked) and clears the cookie.
//! - `POST /console/language`: sets the signed-in account's language (CSRF-checked).
//!
//! A sign-in sent from another site (`Sec-Fetch-Site`) is refused: it has no CSRF
//! token to check yet. Sign-ins, failed sign-ins and sign-outs are audited with the client's
//! address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{Markup, html};
use serde::Deserialize;

use super::PageError;
use super::i18n::{t, t_args};
use super::layout::{Section, page};
use crate::AppState;
use crate::accounts::session::{
    ConsoleUser, check_csrf, clear_cookie, cookie_value, hash_id, local_next, new_session,
    principal, set_cookie,
};
use crate::accounts::{Language, MAX_USERNAME_BYTES, check_username, password};
use crate::error::ApiError;
use crate::store::{NewAudit, UserRecord};

/// The largest sign-in, sign-out or language form.
const MAX_FORM_BYTES: usize = 8 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/language", post(language))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    lang: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    lang: Option<String>,
}

/// The language of a page shown before anyone signed in: `?lang=`, else the first of ours
/// in `Accept-Language` by preference, else English.
fn page_language(headers: &HeaderMap, chosen: Option<&str>) -> Language {
    if let Some(language) = chosen.and_then(Language::parse) {
        return language;
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut best: Option<(f32, Language)> = None;
    for item in accept.split(',').take(20) {
        let mut fields = item.trim().split(';');
        let tag = fields
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let quality = fields
            .find_map(|f| f.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or_default();
        if let Some(language) = Language::parse(primary)
            && best.is_none_or(|(q, _)| quality > q)
        {
            best = Some((quality, language));
        }
    }
    best.map(|(_, l)| l).unwrap_or_default()
}

fn login_form(language: Language, next: Option<&str>, problem: Option<&str>) -> Markup {
    let title = t(language, "login-title");
    let next = next.and_then(local_next);
    let body = html! {
        section.card.login {
            h1 { (title) }
            @if let Some(problem) = problem {
                p.notice.bad role="alert" { (problem) }
            }
            form method="post" action="/console/login" {
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                input type="hidden" name="lang" value=(language.as_str());
                p {
                    label {
                        (t(language, "login-username")) br;
                        input type="text" name="username" autocomplete="username" required
                            maxlength=(MAX_USERNAME_BYTES) autofocus;
                    }
                }
                p {
                    label {
                        (t(language, "login-password")) br;
                        input type="password" name="password" autocomplete="current-password"
                            required maxlength=(password::MAX_BYTES);
                    }
                }
                p { button type="submit" { (t(language, "login-submit")) } }
            }
            p.muted {
                @for other in Language::ALL {
                    @if other != language {
                        a href=(format!("/console/login?lang={}", other.as_str())) {
                            (t(other, "language-name"))
                        }
                    }
                }
            }
        }
    };
    page(language, None, Section::None, &title, body)
}

async fn login_page(
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Markup {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let language = page_language(&headers, query.lang.as_deref());
    login_form(language, query.next.as_deref(), None)
}

/// The sign-in form again, with `status` and the problem.
fn refused(language: Language, next: Option<&str>, status: StatusCode, problem: &str) -> Response {
    (status, login_form(language, next, Some(problem))).into_response()
}

async fn login(
    State(app): State<Arc<AppState>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let address = connect.map(|Extension(ConnectInfo(a))| a.ip());
    let Ok(Form(form)) = form else {
        let language = page_language(&headers, None);
        let problem = t(language, "login-bad-form");
        return refused(language, None, StatusCode::BAD_REQUEST, &problem);
    };
    let language = page_language(&headers, form.lang.as_deref());
    let next = form.next.as_deref();
    if cross_site(&headers) {
        let problem = t(language, "login-cross-site");
        return refused(language, next, StatusCode::FORBIDDEN, &problem);
    }
    // A name longer than any account's is counted under its first bytes, so it cannot make
    // the limiter keep long keys.
    let username = truncate(form.username.trim(), MAX_USERNAME_BYTES);
    if let Err(ApiError::TooManyRequests {
        retry_after,
        message,
    }) = app.logins.reserve(username, address)
    {
        tracing::info!(address = ?address, "sign-in refused: {message}");
        let problem = t_args(
            language,
            "login-throttled",
            &[("minutes", u64::from(retry_after.div_ceil(60)).into())],
        );
        let mut response = refused(language, next, StatusCode::TOO_MANY_REQUESTS, &problem);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return response;
    }
    match sign_in(&app, username, form.password, address, &headers).await {
        Ok(Some(cookie)) => {
            app.logins.succeeded(username, address);
            let to = next.and_then(local_next).unwrap_or("/console/");
            let mut response = Redirect::to(to).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Ok(None) => {
            let problem = t(language, "login-failed");
            refused(language, next, StatusCode::UNAUTHORIZED, &problem)
        }
        Err(e) => PageError(e).into_response(),
    }
}

/// Checks the password and starts a session: the `Set-Cookie` value, or `None` when the
/// account does not exist or the password is wrong (the same to the caller, and equally
/// slow).
async fn sign_in(
    app: &AppState,
    username: &str,
    given: String,
    address: Option<std::net::IpAddr>,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, ApiError> {
    // Only a well-formed name is looked up; an account whose stored name is not one (or is
    // the audit log's name for the admin token or the CLI), or whose role and tenant do not
    // agree, cannot sign in.
    let user = if check_username(username).is_err() {
        None
    } else {
        app.store
            .user(username.to_owned())
            .await?
            .filter(|u| check_username(&u.username).is_ok() && sound(u))
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matches = password::verify(given, stored).await;
    let address_text = address.map(|a| a.to_string());
    let user = match user {
        Some(user) if matches => user,
        user => {
            audit_failure(app, user.as_ref(), address_text).await;
            return Ok(None);
        }
    };
    // A cookie the browser brought is never adopted: its session, if it has one, ends.
    if let Some(old) = cookie_value(headers) {
        app.store.delete_session(hash_id(old)).await?;
    }
    let (value, session) = new_session(&user, address_text.clone());
    app.store.create_session(session).await?;
    audit(
        app,
        &user.username,
        user.tenant_id.clone(),
        "login",
        address_text,
    )
    .await;
    Ok(Some(set_cookie(app, &value)))
}

/// Whether an account's role and tenant agree; a corrupt row is logged.
fn sound(user: &UserRecord) -> bool {
    let sound = principal(user, None).is_consistent();
    if !sound {
        tracing::error!(
            account = %user.username,
            role = user.role.as_str(),
            has_tenant = user.tenant_id.is_some(),
            "a sign-in was refused: the account row is corrupt (an operator has no tenant, a \
             tenant account has one); set the account up again with `relay user`"
        );
    }
    sound
}

/// The audit log's actor of a failed sign-in: nobody proved who they are.
pub const FAILED_SIGN_IN_ACTOR: &str = "anonymous";

/// The audit log's target of a failed sign-in for a name no account has. The name typed is
/// not recorded: it may be a password typed into the wrong field.
pub const UNKNOWN_ACCOUNT: &str = "(unknown)";

/// Audits a failed sign-in: actor [`FAILED_SIGN_IN_ACTOR`], target the account's name when
/// one exists by the name typed, else [`UNKNOWN_ACCOUNT`].
async fn audit_failure(app: &AppState, user: Option<&UserRecord>, address: Option<String>) {
    let entry = NewAudit {
        actor: FAILED_SIGN_IN_ACTOR.to_owned(),
        tenant_id: None,
        action: "login_failed".to_owned(),
        target: user
            .map_or(UNKNOWN_ACCOUNT, |u| u.username.as_str())
            .to_owned(),
        detail: address.map(|a| format!("from {a}")),
    };
    if let Err(e) = app.store.append_audit(entry).await {
        tracing::error!(error = %e, "an audit entry of a failed sign-in was not written");
    }
}

async fn audit(
    app: &AppState,
    username: &str,
    tenant: Option<shared::TenantId>,
    action: &str,
    address: Option<String>,
) {
    let entry = NewAudit {
        actor: username.to_owned(),
        tenant_id: tenant,
        action: action.to_owned(),
        target: username.to_owned(),
        detail: address.map(|a| format!("from {a}")),
    };
    if let Err(e) = app.store.append_audit(entry).await {
        tracing::error!(error = %e, action, "an audit entry was not written");
    }
}

/// Whether the browser says the sign-in form was sent from another site
/// (`Sec-Fetch-Site`, which every current browser sends). A sign-in has no session and so no
/// CSRF token yet; this keeps another site from signing a browser into an account of its
/// choosing. (`Origin` is not compared with `Host`: a proxy in front may rewrite `Host`.)
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site" || site == "same-site")
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

async fn logout(
    State(app): State<Arc<AppState>>,
    ConsoleUser(user): ConsoleUser,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, PageError> {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    check_csrf(&user, csrf.as_deref())?;
    if let Some(value) = cookie_value(&headers) {
        app.store.delete_session(hash_id(value)).await?;
    }
    let address = connect.map(|Extension(ConnectInfo(a))| a.ip().to_string());
    audit(&app, &user.actor, user.tenant.clone(), "logout", address).await;
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&app));
    Ok(response)
}

#[derive(Deserialize)]
struct LanguageForm {
    csrf: Option<String>,
    language: Option<String>,
    next: Option<String>,
}

async fn language(
    State(app): State<Arc<AppState>>,
    ConsoleUser(user): ConsoleUser,
    form: Result<Form<LanguageForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(form)) = form else {
        return Err(ApiError::BadRequest("the language form could not be read".into()).into());
    };
    check_csrf(&user, form.csrf.as_deref())?;
    let wanted = form.language.unwrap_or_default();
    let Some(language) = Language::parse(&wanted) else {
        return Err(
            ApiError::BadRequest(format!("unknown language {wanted:?}: use en or sv")).into(),
        );
    };
    app.store.set_language(user.actor.clone(), language).await?;
    let to = form
        .next
        .as_deref()
        .and_then(local_next)
        .unwrap_or("/console/");
    Ok(Redirect::to(to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn the_sign_in_page_speaks_the_language_the_browser_prefers() {
        assert_eq!(
            page_language(&accept("sv-SE,sv;q=0.9,en;q=0.8"), None),
            Language::Sv
        );
        assert_eq!(
            page_language(&accept("de-DE,en;q=0.5,sv;q=0.4"), None),
            Language::En
        );
        assert_eq!(
            page_language(&accept("en;q=0.3, sv;q=0.7"), None),
            Language::Sv
        );
        assert_eq!(page_language(&accept("nb-NO"), None), Language::En);
        assert_eq!(page_language(&HeaderMap::new(), None), Language::En);
        assert_eq!(page_language(&accept("en"), Some("sv")), Language::Sv);
    }

    #[test]
    fn a_sign_in_sent_from_another_site_is_recognised() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            cross_site(&headers)
        };
        assert!(!with(&[]));
        assert!(!with(&[("sec-fetch-site", "same-origin")]));
        assert!(!with(&[("sec-fetch-site", "none")]));
        assert!(with(&[("sec-fetch-site", "cross-site")]));
        assert!(with(&[("sec-fetch-site", "same-site")]));
    }

    #[test]
    fn a_long_username_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("åååå", 3), "å");
        assert_eq!(truncate("anna", 64), "anna");
    }
}
