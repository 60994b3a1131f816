//! Console sessions: the cookie, its lifetime, CSRF tokens, and the extractors that turn a
//! request into a [`Principal`].
//!
//! The cookie `relay_session` holds 32 random bytes (base64url); the store keeps only their
//! SHA-256, so a copy of the database signs nobody in. It is `HttpOnly; SameSite=Strict;
//! Path=/`, and `Secure` when the relay serves TLS. A session lasts [`LIFETIME`] at most and
//! ends after [`IDLE`] without a request; its last use is written at most every
//! [`TOUCH_EVERY`]. Every sign-in makes a new session: a cookie the browser brought is never
//! adopted (no session fixation).
//!
//! CSRF: each session has a random token ([`Principal::csrf`]) that a state-changing request
//! carries, in the form field `csrf` (console forms) or the header `x-csrf-token` (API calls
//! made with the cookie). The bearer admin token is not a cookie a browser sends by itself,
//! so CSRF does not apply to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use chrono::Utc;
use sha2::{Digest, Sha256};
use shared::TenantId;
use subtle::ConstantTimeEq;

use super::{ADMIN_TOKEN_ACTOR, Language, Principal, Role};
use crate::AppState;
use crate::error::ApiError;
use crate::store::{SessionRecord, UserRecord};

/// The session cookie's name.
pub const COOKIE: &str = "relay_session";
/// The header that carries the CSRF token of an API call made with the session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The longest a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(3600);
/// How often a session's last use is written, at most.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a cookie's value: its SHA-256 in hex.
pub fn hash_id(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A new session for `user`: the cookie's value (to send once) and its stored record.
pub fn new_session(user: &UserRecord, address: Option<String>) -> (String, SessionRecord) {
    let value = b64(&rand::random::<[u8; 32]>());
    let now = Utc::now();
    let record = SessionRecord {
        id_hash: hash_id(&value),
        username: user.username.clone(),
        csrf_token: b64(&rand::random::<[u8; 32]>()),
        address,
        created_at: now,
        last_seen_at: now,
        expires_at: now + chrono(LIFETIME),
    };
    (value, record)
}

/// The `Set-Cookie` value that gives the browser its session.
pub fn set_cookie(app: &AppState, value: &str) -> HeaderValue {
    cookie(app, value, LIFETIME.as_secs())
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear_cookie(app: &AppState) -> HeaderValue {
    cookie(app, "", 0)
}

fn cookie(app: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if app.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let text =
        format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    // The value is base64url and the rest fixed ASCII: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie's value in `headers`, if there is one of the right shape (43
/// base64url characters; anything else is not one of ours and is not looked up).
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The client's address, when the router is served with connection info.
pub fn client_address(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The signed-in account of a request's session cookie: `None` without a cookie, or when its
/// session is unknown, past its lifetime or idle too long, or its account's role and tenant
/// do not agree (a corrupt account row, logged; the session is deleted in these cases too).
/// Moves the idle timeout on.
pub async fn current(app: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let Some(value) = cookie_value(headers) else {
        return Ok(None);
    };
    let id_hash = hash_id(value);
    let Some((session, user)) = app.store.session(id_hash.clone()).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    if now >= session.expires_at || now - session.last_seen_at >= chrono(IDLE) {
        app.store.delete_session(id_hash).await?;
        return Ok(None);
    }
    let user = principal(&user, Some(session.csrf_token));
    if !user.is_consistent() {
        tracing::error!(
            account = %user.actor,
            role = user.role.as_str(),
            has_tenant = user.tenant.is_some(),
            "a session was refused: its account row is corrupt (an operator has no tenant, a \
             tenant account has one); set the account up again with `relay user`"
        );
        app.store.delete_session(id_hash).await?;
        return Ok(None);
    }
    if now - session.last_seen_at >= chrono(TOUCH_EVERY) {
        app.store
            .touch_session(id_hash, now, session.expires_at)
            .await?;
    }
    Ok(Some(user))
}

/// The caller an account is.
pub fn principal(user: &UserRecord, csrf: Option<String>) -> Principal {
    Principal {
        actor: user.username.clone(),
        role: user.role,
        tenant: user.tenant_id.clone(),
        language: user.language,
        csrf,
    }
}

/// The bearer admin token's caller: an operator, without CSRF token (it needs none).
pub fn admin_token_principal() -> Principal {
    Principal {
        actor: ADMIN_TOKEN_ACTOR.to_owned(),
        role: Role::Operator,
        tenant: None,
        language: Language::En,
        csrf: None,
    }
}

/// A signed-in console account (session cookie only). Without one, the browser is sent to
/// the sign-in page, which brings it back here afterwards.
pub struct ConsoleUser(pub Principal);

impl FromRequestParts<Arc<AppState>> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<Principal>()
            && user.csrf.is_some()
        {
            return Ok(ConsoleUser(user.clone()));
        }
        match current(app, &parts.headers).await {
            Ok(Some(user)) => {
                parts.extensions.insert(user.clone());
                Ok(ConsoleUser(user))
            }
            Ok(None) => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/console/");
                Err(Redirect::to(&login_url(here)).into_response())
            }
            Err(e) => Err(crate::console::PageError(e).into_response()),
        }
    }
}

/// `/console/login?next=<here>` with `here` percent-encoded (and only when it is a console
/// path, see [`local_next`]).
pub fn login_url(here: &str) -> String {
    match local_next(here) {
        Some(next) if next != "/console/" => format!("/console/login?next={}", encode(next)),
        _ => "/console/login".to_owned(),
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `next` if it is a path of the console (so a sign-in never sends the browser to another
/// site: no `//host`, no scheme, no backslash, no control characters), else `None`.
pub fn local_next(next: &str) -> Option<&str> {
    let console =
        next == "/console" || next.starts_with("/console/") || next.starts_with("/console?");
    let clean = next.len() <= 2048
        && !next.contains('\\')
        && !next.contains("//")
        && !next.bytes().any(|b| b.is_ascii_control());
    (console && clean).then_some(next)
}

/// A caller of the admin API: the bearer admin token (an operator named
/// [`ADMIN_TOKEN_ACTOR`]), else a console session cookie; else 401.
pub struct ApiCaller(pub Principal);

impl FromRequestParts<Arc<AppState>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<Principal>() {
            return Ok(ApiCaller(user.clone()));
        }
        let bearer = crate::auth::bearer(&parts.headers).is_some();
        if !bearer && let Some(user) = current(app, &parts.headers).await? {
            return Ok(ApiCaller(user));
        }
        crate::auth::check_admin(&parts.headers, app.config.admin_token.as_ref())?;
        Ok(ApiCaller(admin_token_principal()))
    }
}

/// Refuses a state-changing request of a session that does not carry its CSRF token
/// (`given`, from the form field `csrf` or the header `x-csrf-token`). Compared in constant
/// time. The bearer admin token's caller (no session, `csrf` is `None`) passes: a browser
/// never sends that token on its own, so a forged request cannot carry it.
pub fn check_csrf(user: &Principal, given: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = user.csrf.as_deref() else {
        return Ok(());
    };
    let given = given.unwrap_or_default();
    if !given.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "missing or wrong CSRF token: reload the page and try again".into(),
        ))
    }
}

/// The CSRF token in a request's `x-csrf-token` header.
pub fn csrf_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())
}

/// Refuses `user` unless it may change `tenant`'s data.
pub fn require_change(user: &Principal, tenant: &TenantId) -> Result<(), ApiError> {
    if user.may_change(tenant) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{} ({}) may not change tenant {tenant}",
        user.actor,
        user.role.as_str()
    )))
}

/// Refuses `user` unless it may see `tenant`'s data.
pub fn require_see(user: &Principal, tenant: &TenantId) -> Result<(), ApiError> {
    if user.may_see(tenant) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{} ({}) may not see tenant {tenant}",
        user.actor,
        user.role.as_str()
    )))
}

/// Refuses `user` unless it is an operator.
pub fn require_operator(user: &Principal) -> Result<(), ApiError> {
    if user.is_operator() {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{} ({}) may not do this: only an operator may",
        user.actor,
        user.role.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_places_to_go_back_to() {
        assert_eq!(
            local_next("/console/orders?q=1"),
            Some("/console/orders?q=1")
        );
        assert_eq!(local_next("/console"), Some("/console"));
        for bad in [
            "https://evil.example/console/",
            "//evil.example/console/",
            "/console//evil.example",
            "/console/\\evil",
            "/consolex",
            "/admin/v1/tenants",
            "/console/\r\nSet-Cookie: x",
        ] {
            assert_eq!(local_next(bad), None, "{bad:?}");
        }
        assert_eq!(
            login_url("/console/orders?q=a b"),
            "/console/login?next=/console/orders%3Fq%3Da%20b"
        );
        assert_eq!(login_url("https://evil.example/"), "/console/login");
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let value = b64(&[7; 32]);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={value}")).expect("header"),
        );
        assert_eq!(cookie_value(&headers), Some(value.as_str()));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("relay_session=short"),
        );
        assert_eq!(cookie_value(&headers), None);
        assert_eq!(hash_id("x").len(), 64);
    }

    #[test]
    fn csrf_is_required_of_a_session_and_not_of_the_admin_token() {
        let mut user = admin_token_principal();
        assert!(check_csrf(&user, None).is_ok());
        user.csrf = Some("token-of-the-session".into());
        assert!(check_csrf(&user, None).is_err());
        assert!(check_csrf(&user, Some("")).is_err());
        assert!(check_csrf(&user, Some("token-of-another")).is_err());
        assert!(check_csrf(&user, Some("token-of-the-session")).is_ok());
    }
}
