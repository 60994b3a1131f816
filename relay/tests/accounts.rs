//! Console accounts through the real router: signing in (cookie, limits, session fixation),
//! CSRF, what each role may see and change through the admin API, sessions that end, the
//! audit log, and `relay user …` on the command line.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use relay::AppState;
use relay::accounts::session::hash_id;
use relay::accounts::{Language, Role, password};
use relay::config::{Config, TlsConfig};
use relay::store::{AnyStore, EventState, NewEvent, ShopRecord, StoreLocation, UserRecord};
use shared::domain::DocumentType;
use shared::settings::Secret;
use shared::{ShopId, TenantId};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const PASSWORD: &str = "a long enough password";
const ADMIN_TOKEN: &str = "the-admin-token-of-the-tests";

/// One hash of [`PASSWORD`] for every account of the tests (hashing is slow on purpose).
async fn password_hash() -> String {
    static HASH: OnceCell<String> = OnceCell::const_new();
    HASH.get_or_init(|| async { password::hash(PASSWORD.into()).await.expect("hash") })
        .await
        .clone()
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

/// A relay with tenants `acme` and `other`, each with a shop, an agent and a held event;
/// accounts `op` (operator), `acme-admin`, `acme-viewer`.
struct Console {
    app: Arc<AppState>,
    router: axum::Router,
    other_agent: String,
    acme_agent: String,
    acme_event: i64,
    other_event: i64,
    _dir: tempfile::TempDir,
}

async fn console() -> Console {
    console_with(Config {
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        ..Config::default()
    })
    .await
}

async fn console_with(config: Config) -> Console {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnyStore::open(&StoreLocation::Sqlite(dir.path().join("relay.sqlite")))
        .await
        .expect("store opens");
    let mut agents = Vec::new();
    let mut events = Vec::new();
    for (id, shop) in [("acme", "acme-se"), ("other", "other-se")] {
        store
            .create_tenant(tenant(id), id.into())
            .await
            .expect("tenant");
        agents.push(
            store
                .create_agent(tenant(id), "mamut".into())
                .await
                .expect("agent")
                .id
                .to_string(),
        );
        store
            .add_shop(ShopRecord {
                shop_id: ShopId::new(shop).expect("shop id"),
                tenant_id: tenant(id),
                webhook_secrets: vec![
                    shared::signature::WebhookSecret::from_bytes(vec![1; 32]).expect("key"),
                ],
                trigger_statuses: vec!["confirmed".into()],
                document_type: DocumentType::Order,
                settings: Default::default(),
                api_key: None,
            })
            .await
            .expect("shop");
        let held = store
            .ingest(NewEvent {
                tenant_id: tenant(id),
                shop_id: ShopId::new(shop).expect("shop id"),
                webhook_id: format!("wh-{id}"),
                order_id: format!("o-{id}"),
                order_status: "confirmed".into(),
                document_type: DocumentType::Order,
                payload: r#"{"order":{"id":"o-1"}}"#.into(),
                state: EventState::Held,
                hold_reason: Some("no customer".into()),
                received_headers: None,
            })
            .await
            .expect("event");
        events.push(held.event_id);
    }
    let hash = password_hash().await;
    for (name, role, tenant_id) in [
        ("op", Role::Operator, None),
        ("acme-admin", Role::TenantAdmin, Some("acme")),
        ("acme-viewer", Role::TenantViewer, Some("acme")),
    ] {
        let now = chrono::Utc::now();
        store
            .create_user(UserRecord {
                username: name.into(),
                role,
                tenant_id: tenant_id.map(tenant),
                password_hash: hash.clone(),
                language: Language::En,
                created_at: now,
                password_changed_at: now,
            })
            .await
            .expect("account");
    }
    let shutdown = CancellationToken::new();
    let (state, _) =
        relay::AppState::new(config, store, shutdown.clone()).expect("the relay's state");
    let app = Arc::new(state);
    Console {
        router: relay::router(app.clone()),
        app,
        acme_agent: agents[0].clone(),
        other_agent: agents[1].clone(),
        acme_event: events[0],
        other_event: events[1],
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The session cookie this answer sets, if it does.
    fn cookie(&self) -> Option<String> {
        self.set_cookie()
            .and_then(|c| {
                c.strip_prefix("relay_session=")?
                    .split(';')
                    .next()
                    .map(str::to_owned)
            })
            .filter(|v| !v.is_empty())
    }

    fn set_cookie(&self) -> Option<&str> {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
    }

    fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// A request and what it may carry.
#[derive(Default)]
struct Call<'a> {
    cookie: Option<&'a str>,
    bearer: Option<&'a str>,
    csrf_header: Option<&'a str>,
    form: Option<String>,
    json: Option<&'a str>,
    from: Option<[u8; 4]>,
}

impl Console {
    async fn send(&self, method: &str, uri: &str, call: Call<'_>) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(cookie) = call.cookie {
            request = request.header(header::COOKIE, format!("relay_session={cookie}"));
        }
        if let Some(token) = call.bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(csrf) = call.csrf_header {
            request = request.header("x-csrf-token", csrf);
        }
        let body = if let Some(form) = call.form {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(form)
        } else if let Some(json) = call.json {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_owned())
        } else {
            Body::empty()
        };
        let mut request = request.body(body).expect("a request");
        if let Some(ip) = call.from {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn login_as(&self, username: &str, password: &str, cookie: Option<&str>) -> Answer {
        let form = format!(
            "username={}&password={}",
            username,
            password.replace(' ', "+")
        );
        self.send(
            "POST",
            "/console/login",
            Call {
                cookie,
                form: Some(form),
                from: Some([192, 0, 2, 10]),
                ..Call::default()
            },
        )
        .await
    }

    /// Signs `username` in: its cookie and its session's CSRF token.
    async fn signed_in(&self, username: &str) -> (String, String) {
        let answer = self.login_as(username, PASSWORD, None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cookie = answer.cookie().expect("a session cookie");
        let (session, _) = self
            .app
            .store
            .session(hash_id(&cookie))
            .await
            .expect("read")
            .expect("the session is stored");
        (cookie, session.csrf_token)
    }

    /// `method uri` with a session cookie and its CSRF token in the header.
    async fn api(&self, method: &str, uri: &str, cookie: &str, csrf: &str) -> StatusCode {
        let json = (method != "GET").then_some("{}");
        self.send(
            method,
            uri,
            Call {
                cookie: Some(cookie),
                csrf_header: Some(csrf),
                json,
                ..Call::default()
            },
        )
        .await
        .status
    }
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_failures_all_look_the_same() {
    let c = console().await;
    let ok = c.login_as("op", PASSWORD, None).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), Some("/console/"));
    let set = ok.set_cookie().expect("Set-Cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "no TLS, no Secure: {set}");
    let cookie = ok.cookie().expect("a value");
    // The store keeps only the hash of the cookie's value.
    assert!(
        c.app
            .store
            .session(cookie.clone())
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        c.app
            .store
            .session(hash_id(&cookie))
            .await
            .expect("read")
            .is_some()
    );

    let wrong = c.login_as("op", "not the password at all", None).await;
    let unknown = c.login_as("nobody", "not the password at all", None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body, "the same answer for both");
    assert!(wrong.body.contains("Wrong username or password"));
    assert!(wrong.cookie().is_none() && unknown.cookie().is_none());

    let page = c.send("GET", "/console/login", Call::default()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"password\""));
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_relay_serves_tls() {
    let c = console_with(Config {
        tls: Some(TlsConfig {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
        }),
        ..Config::default()
    })
    .await;
    let ok = c.login_as("op", PASSWORD, None).await;
    assert!(ok.set_cookie().expect("Set-Cookie").contains("; Secure"));
}

#[tokio::test]
async fn the_sixth_failure_for_one_account_is_refused_with_retry_after() {
    let c = console().await;
    for attempt in 1..=5 {
        let answer = c
            .login_as("acme-admin", "wrong password, again", None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // Even the right password is refused now: the account waits out the window.
    let refused = c.login_as("acme-admin", PASSWORD, None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    assert!(refused.cookie().is_none());
    // Another account is not held back by it.
    assert_eq!(
        c.login_as("op", PASSWORD, None).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_cookie_brought_to_the_sign_in_is_never_adopted() {
    let c = console().await;
    let made_up = "A".repeat(43);
    let ok = c.login_as("op", PASSWORD, Some(&made_up)).await;
    let cookie = ok.cookie().expect("a new cookie");
    assert_ne!(cookie, made_up);
    let with_made_up = c
        .send(
            "POST",
            "/console/logout",
            Call {
                cookie: Some(&made_up),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(with_made_up.status, StatusCode::SEE_OTHER);
    assert!(
        with_made_up
            .location()
            .unwrap_or_default()
            .starts_with("/console/login")
    );
    assert!(
        c.app
            .store
            .session(hash_id(&made_up))
            .await
            .expect("read")
            .is_none()
    );

    // Signing in again from a signed-in browser ends the old session.
    let again = c.login_as("op", PASSWORD, Some(&cookie)).await;
    let newer = again.cookie().expect("a new cookie");
    assert_ne!(newer, cookie);
    assert!(
        c.app
            .store
            .session(hash_id(&cookie))
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_sign_in_only_sends_the_browser_back_into_the_console() {
    let c = console().await;
    for (next, to) in [
        ("%2Fconsole%2Forders%3Fq%3D1", "/console/orders?q=1"),
        ("https%3A%2F%2Fevil.example%2F", "/console/"),
        ("%2F%2Fevil.example%2Fconsole%2F", "/console/"),
    ] {
        let answer = c
            .send(
                "POST",
                "/console/login",
                Call {
                    form: Some(format!(
                        "username=op&password={}&next={next}",
                        PASSWORD.replace(' ', "+")
                    )),
                    ..Call::default()
                },
            )
            .await;
        assert_eq!(answer.location(), Some(to), "next={next}");
    }
}

#[tokio::test]
async fn a_session_request_without_its_csrf_token_is_forbidden() {
    let c = console().await;
    let (cookie, csrf) = c.signed_in("acme-admin").await;
    let agents = "/admin/v1/tenants/acme/agents";
    assert_eq!(
        c.api("POST", agents, &cookie, "").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.api("POST", agents, &cookie, "not-the-token").await,
        StatusCode::FORBIDDEN
    );
    let without = c
        .send(
            "POST",
            agents,
            Call {
                cookie: Some(&cookie),
                json: Some("{}"),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.api("POST", agents, &cookie, &csrf).await,
        StatusCode::CREATED
    );

    // A console form: sign-out without the field, with a wrong one, then with it.
    for form in [String::new(), "csrf=wrong".to_owned()] {
        let answer = c
            .send(
                "POST",
                "/console/logout",
                Call {
                    cookie: Some(&cookie),
                    form: Some(form),
                    ..Call::default()
                },
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
    }
    let out = c
        .send(
            "POST",
            "/console/logout",
            Call {
                cookie: Some(&cookie),
                form: Some(format!("csrf={csrf}")),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_tenant_admin_sees_and_changes_only_its_own_tenant() {
    let c = console().await;
    let (cookie, csrf) = c.signed_in("acme-admin").await;
    for what in ["events", "shops", "dispatch", "pushes"] {
        let own = format!("/admin/v1/tenants/acme/{what}");
        let theirs = format!("/admin/v1/tenants/other/{what}");
        assert_eq!(
            c.api("GET", &own, &cookie, &csrf).await,
            StatusCode::OK,
            "{own}"
        );
        assert_eq!(
            c.api("GET", &theirs, &cookie, &csrf).await,
            StatusCode::FORBIDDEN,
            "{theirs}"
        );
    }
    let theirs = format!("/admin/v1/tenants/other/events/{}", c.other_event);
    assert_eq!(
        c.api("GET", &theirs, &cookie, &csrf).await,
        StatusCode::FORBIDDEN
    );
    let replay = format!("/admin/v1/tenants/other/events/{}/replay", c.other_event);
    assert_eq!(
        c.api("POST", &replay, &cookie, &csrf).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.api("POST", "/admin/v1/tenants/other/shops", &cookie, &csrf)
            .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.api(
            "POST",
            "/admin/v1/tenants/other/dispatch/1/replay",
            &cookie,
            &csrf
        )
        .await,
        StatusCode::FORBIDDEN
    );
    // Another tenant's agent is as unknown to it as one that does not exist.
    let revoke_theirs = format!("/admin/v1/agents/{}/revoke", c.other_agent);
    assert_eq!(
        c.api("POST", &revoke_theirs, &cookie, &csrf).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.api(
            "POST",
            "/admin/v1/agents/agt-nothing/revoke",
            &cookie,
            &csrf
        )
        .await,
        StatusCode::NOT_FOUND
    );
    let other_agent = c
        .app
        .store
        .agent(shared::AgentId::new(c.other_agent.clone()).expect("id"))
        .await
        .expect("read")
        .expect("agent");
    assert!(other_agent.revoked_at.is_none(), "not revoked");
    assert_eq!(
        c.api("POST", "/admin/v1/tenants", &cookie, &csrf).await,
        StatusCode::FORBIDDEN
    );

    // Its own tenant: a replay and its own agent.
    let own_replay = format!("/admin/v1/tenants/acme/events/{}/replay", c.acme_event);
    assert_eq!(
        c.api("POST", &own_replay, &cookie, &csrf).await,
        StatusCode::OK
    );
    let revoke_own = format!("/admin/v1/agents/{}/revoke", c.acme_agent);
    assert!(
        c.api("POST", &revoke_own, &cookie, &csrf)
            .await
            .is_success()
    );
}

#[tokio::test]
async fn a_tenant_viewer_cannot_replay_even_on_its_own_tenant() {
    let c = console().await;
    let (cookie, csrf) = c.signed_in("acme-viewer").await;
    assert_eq!(
        c.api("GET", "/admin/v1/tenants/acme/events", &cookie, &csrf)
            .await,
        StatusCode::OK
    );
    let replay = format!("/admin/v1/tenants/acme/events/{}/replay", c.acme_event);
    let answer = c
        .send(
            "POST",
            &replay,
            Call {
                cookie: Some(&cookie),
                csrf_header: Some(&csrf),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.body.contains("tenant_viewer") && answer.body.contains("acme"),
        "{}",
        answer.body
    );
    let revoke_own = format!("/admin/v1/agents/{}/revoke", c.acme_agent);
    assert_eq!(
        c.api("POST", &revoke_own, &cookie, &csrf).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn signing_out_a_new_password_and_removing_the_account_end_its_sessions() {
    let c = console().await;
    let events = "/admin/v1/tenants/acme/events";
    let still_in = |cookie: String| {
        let c = &c;
        async move {
            c.send(
                "GET",
                events,
                Call {
                    cookie: Some(&cookie),
                    ..Call::default()
                },
            )
            .await
            .status
        }
    };

    let (cookie, csrf) = c.signed_in("acme-admin").await;
    assert_eq!(still_in(cookie.clone()).await, StatusCode::OK);
    let out = c
        .send(
            "POST",
            "/console/logout",
            Call {
                cookie: Some(&cookie),
                form: Some(format!("csrf={csrf}")),
                ..Call::default()
            },
        )
        .await;
    assert!(out.set_cookie().expect("cleared").contains("Max-Age=0"));
    assert_eq!(still_in(cookie).await, StatusCode::UNAUTHORIZED);

    let (cookie, _) = c.signed_in("acme-admin").await;
    let hash = password::hash("another long password".into())
        .await
        .expect("hash");
    c.app
        .store
        .set_password("acme-admin".into(), hash)
        .await
        .expect("set");
    assert_eq!(still_in(cookie.clone()).await, StatusCode::UNAUTHORIZED);
    let page = c
        .send(
            "POST",
            "/console/logout",
            Call {
                cookie: Some(&cookie),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "the console sends it to sign in"
    );

    let (cookie, _) = c.signed_in("acme-viewer").await;
    c.app
        .store
        .remove_user("acme-viewer".into())
        .await
        .expect("removed");
    assert_eq!(still_in(cookie).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_ends_when_idle_too_long_or_past_its_lifetime() {
    let c = console().await;
    let events = "/admin/v1/tenants/acme/events";
    let status = |cookie: String| {
        let c = &c;
        async move {
            c.send(
                "GET",
                events,
                Call {
                    cookie: Some(&cookie),
                    ..Call::default()
                },
            )
            .await
            .status
        }
    };
    let now = chrono::Utc::now();
    let (idle, _) = c.signed_in("acme-admin").await;
    let (old, _) = c.signed_in("acme-viewer").await;
    assert_eq!(status(idle.clone()).await, StatusCode::OK);
    c.app
        .store
        .touch_session(
            hash_id(&idle),
            now - chrono::Duration::minutes(61),
            now + chrono::Duration::hours(11),
        )
        .await
        .expect("touch");
    assert_eq!(
        status(idle.clone()).await,
        StatusCode::UNAUTHORIZED,
        "idle for an hour"
    );
    c.app
        .store
        .touch_session(hash_id(&old), now, now - chrono::Duration::seconds(1))
        .await
        .expect("touch");
    assert_eq!(
        status(old.clone()).await,
        StatusCode::UNAUTHORIZED,
        "past its lifetime"
    );
    // Both are gone from the store, not merely refused.
    for cookie in [idle, old] {
        assert!(
            c.app
                .store
                .session(hash_id(&cookie))
                .await
                .expect("read")
                .is_none()
        );
    }
}

#[tokio::test]
async fn the_admin_token_works_everywhere_and_changes_and_sign_ins_are_audited() {
    let c = console().await;
    let bearer = Call {
        bearer: Some(ADMIN_TOKEN),
        ..Call::default()
    };
    let answer = c
        .send("GET", "/admin/v1/tenants/other/events", bearer)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let replay = format!("/admin/v1/tenants/other/events/{}/replay", c.other_event);
    let answer = c
        .send(
            "POST",
            &replay,
            Call {
                bearer: Some(ADMIN_TOKEN),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "no CSRF token needed: {}",
        answer.body
    );
    let wrong = c
        .send(
            "GET",
            "/admin/v1/tenants/other/events",
            Call {
                bearer: Some("wrong"),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let nobody = c
        .send("GET", "/admin/v1/tenants/other/events", Call::default())
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);

    c.signed_in("acme-admin").await;
    c.login_as("acme-admin", "wrong password here", None).await;

    let all = c.app.store.audit(None, 50).await.expect("audit");
    let replayed = all
        .iter()
        .find(|e| e.action == "POST /tenants/{tenant}/events/{id}/replay")
        .expect("the replay is audited");
    assert_eq!(replayed.actor, "admin-token");
    assert_eq!(
        replayed.target,
        format!("/tenants/other/events/{}/replay", c.other_event)
    );
    assert_eq!(replayed.tenant_id, Some(tenant("other")));
    let acme = c
        .app
        .store
        .audit(Some(tenant("acme")), 50)
        .await
        .expect("audit");
    let login = acme
        .iter()
        .find(|e| e.action == "login")
        .expect("the sign-in is audited");
    assert_eq!(login.actor, "acme-admin");
    assert_eq!(login.detail.as_deref(), Some("from 192.0.2.10"));
    assert!(
        all.iter().any(|e| e.action == "login_failed"
            && e.actor == "anonymous"
            && e.target == "acme-admin")
    );
    assert!(acme.iter().all(|e| e.tenant_id == Some(tenant("acme"))));
    // Reads are not audited.
    assert!(all.iter().all(|e| !e.action.starts_with("GET ")));
}

#[tokio::test]
async fn an_account_changes_its_own_language() {
    let c = console().await;
    let (cookie, csrf) = c.signed_in("acme-viewer").await;
    let answer = c
        .send(
            "POST",
            "/console/language",
            Call {
                cookie: Some(&cookie),
                form: Some(format!("csrf={csrf}&language=sv")),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let user = c
        .app
        .store
        .user("acme-viewer".into())
        .await
        .expect("read")
        .expect("user");
    assert_eq!(user.language, Language::Sv);
    let forged = c
        .send(
            "POST",
            "/console/language",
            Call {
                cookie: Some(&cookie),
                form: Some("language=en".into()),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[test]
fn an_operator_manages_accounts_from_the_shell() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("relay.sqlite").display());
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(args)
            .env("RELAY_DATABASE_URL", &url)
            .env_remove("RELAY_USER_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("relay runs");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().expect("relay ends");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert!(run(&["tenant", "create", "acme"], None).0);
    let (ok, stdout, stderr) = run(
        &[
            "user",
            "add",
            "anna",
            "--role",
            "tenant_admin",
            "--tenant",
            "acme",
            "--language",
            "sv",
            "--password-stdin",
        ],
        Some("a long enough password\n"),
    );
    assert!(ok, "{stderr}");
    let added: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(added["username"], "anna");
    assert_eq!(added["tenant_id"], "acme");
    assert_eq!(added["language"], "sv");
    assert!(!stdout.contains("argon2"), "never the hash: {stdout}");

    let (ok, _, stderr) = run(
        &[
            "user",
            "add",
            "bo",
            "--role",
            "operator",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!ok && stderr.contains("at least 12"), "{stderr}");
    let (ok, _, stderr) = run(
        &[
            "user",
            "add",
            "bo",
            "--role",
            "tenant_viewer",
            "--password-stdin",
        ],
        Some("a long enough password\n"),
    );
    assert!(!ok && stderr.contains("tenant"), "{stderr}");
    let (ok, _, stderr) = run(&["user", "add", "bo", "--role", "operator"], None);
    assert!(!ok && stderr.contains("--password-stdin"), "{stderr}");

    let (ok, stdout, _) = run(&["user", "list", "--tenant", "acme"], None);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(listed["users"][0]["username"], "anna");
    assert!(!stdout.contains("password_hash") && !stdout.contains("argon2"));

    let (ok, stdout, stderr) = run(&["user", "sign-out", "anna"], None);
    assert!(
        ok && stdout.contains("\"sessions_ended\": 0"),
        "{stdout} {stderr}"
    );
    let (ok, _, stderr) = run(
        &["user", "set-password", "anna", "--password-stdin"],
        Some("another long password\n"),
    );
    assert!(ok, "{stderr}");
    let (ok, _, _) = run(&["user", "remove", "anna"], None);
    assert!(ok);
    let (ok, _, stderr) = run(&["user", "remove", "anna"], None);
    assert!(!ok && stderr.contains("not found"), "{stderr}");
    let (_, stdout, _) = run(&["user", "list"], None);
    let listed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(listed["users"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn parallel_wrong_sign_ins_for_one_account_check_at_most_the_limit() {
    let c = console().await;
    let attempts = 3 * relay::accounts::limiter::ACCOUNT_FAILURES as usize;
    let answers = futures_util::future::join_all(
        (0..attempts).map(|_| c.login_as("acme-admin", "a wrong guess, in parallel", None)),
    )
    .await;
    let count = |status| answers.iter().filter(|a| a.status == status).count();
    assert_eq!(
        count(StatusCode::UNAUTHORIZED),
        relay::accounts::limiter::ACCOUNT_FAILURES as usize,
        "only the limit's worth of guesses is checked"
    );
    assert_eq!(
        count(StatusCode::TOO_MANY_REQUESTS),
        attempts - relay::accounts::limiter::ACCOUNT_FAILURES as usize
    );
    let failed = c.app.store.audit(None, 100).await.expect("audit");
    let checked = failed.iter().filter(|e| e.action == "login_failed").count();
    assert_eq!(checked, relay::accounts::limiter::ACCOUNT_FAILURES as usize);
}

#[tokio::test]
async fn a_failed_sign_in_records_only_the_name_of_an_account_that_exists() {
    let c = console().await;
    // A password typed into the username field, a name no account has, and the audit
    // log's own names.
    for typed in [
        "my+secret+passphrase",
        "hunter2-secret",
        "admin-token",
        "cli",
    ] {
        let answer = c.login_as(typed, "whatever it is", None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{typed}");
    }
    c.login_as("acme-admin", "not the password", None).await;
    let all = c.app.store.audit(None, 50).await.expect("audit");
    let failed: Vec<_> = all.iter().filter(|e| e.action == "login_failed").collect();
    assert_eq!(failed.len(), 5, "{all:?}");
    assert!(failed.iter().all(|e| e.actor == "anonymous"), "{failed:?}");
    let targets: Vec<&str> = failed.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(
        targets.iter().filter(|t| **t == "(unknown)").count(),
        4,
        "{targets:?}"
    );
    assert!(targets.contains(&"acme-admin"), "{targets:?}");
    for entry in &all {
        let text = format!("{entry:?}");
        assert!(!text.contains("secret"), "the typed name leaked: {text}");
        assert!(
            entry.actor != "admin-token" && entry.actor != "cli",
            "{text}"
        );
    }
}

/// Stores an account whose role and tenant do not agree, as a corrupt row would: the store
/// refuses to write one, so the row is changed behind its back.
async fn corrupt_account(c: &Console, name: &str, role: Role, tenant_id: Option<&str>) {
    let now = chrono::Utc::now();
    let sound_tenant = match role {
        Role::Operator => None,
        _ => Some(tenant("acme")),
    };
    c.app
        .store
        .create_user(UserRecord {
            username: name.into(),
            role,
            tenant_id: sound_tenant,
            password_hash: password_hash().await,
            language: Language::En,
            created_at: now,
            password_changed_at: now,
        })
        .await
        .expect("account");
    let db = rusqlite::Connection::open(c._dir.path().join("relay.sqlite")).expect("database");
    let changed = db
        .execute(
            "UPDATE users SET tenant_id = ?1 WHERE username = ?2",
            rusqlite::params![tenant_id, name],
        )
        .expect("corrupt the row");
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn an_account_whose_role_and_tenant_disagree_gets_no_session() {
    let c = console().await;
    corrupt_account(&c, "orphan", Role::TenantAdmin, None).await;
    corrupt_account(&c, "odd-op", Role::Operator, Some("acme")).await;
    for name in ["orphan", "odd-op"] {
        // Signing in is refused like a wrong password...
        let answer = c.login_as(name, PASSWORD, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(answer.cookie().is_none());
        // ... and a session it already has is not honoured.
        let user = c
            .app
            .store
            .user(name.into())
            .await
            .expect("read")
            .expect("stored");
        let (cookie, session) = relay::accounts::session::new_session(&user, None);
        c.app.store.create_session(session).await.expect("session");
        let page = c
            .send(
                "GET",
                "/console/",
                Call {
                    cookie: Some(&cookie),
                    ..Call::default()
                },
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{name}: {}", page.body);
        assert!(
            page.location()
                .is_some_and(|l| l.starts_with("/console/login")),
            "{name}"
        );
        let api = c
            .send(
                "GET",
                "/admin/v1/tenants/other/events",
                Call {
                    cookie: Some(&cookie),
                    ..Call::default()
                },
            )
            .await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            c.app
                .store
                .session(hash_id(&cookie))
                .await
                .expect("read")
                .is_none(),
            "{name}: the session is deleted"
        );
    }
}

#[tokio::test]
async fn console_pages_are_never_cached_framed_or_sniffed() {
    let c = console().await;
    let (cookie, _) = c.signed_in("op").await;
    let login = c.send("GET", "/console/login", Call::default()).await;
    let overview = c
        .send(
            "GET",
            "/console/",
            Call {
                cookie: Some(&cookie),
                ..Call::default()
            },
        )
        .await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    let failed = c.login_as("op", "not the password", None).await;
    for answer in [&login, &overview, &failed] {
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("cache-control"), "no-store");
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(policy.contains(directive), "{policy}");
        }
        assert!(
            !policy.contains("script-src"),
            "no script is allowed: {policy}"
        );
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("referrer-policy"), "same-origin");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    // No page uses a script or a <style> element the policy would block.
    for answer in [&login, &overview] {
        assert!(!answer.body.contains("<script"), "{}", answer.body);
        assert!(!answer.body.contains("<style"), "{}", answer.body);
    }
    let css = c
        .send("GET", "/console/assets/console.css", Call::default())
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(
        css.headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("public, max-age=3600")
    );
}

/// `method uri` with the admin token and a JSON body: status and body.
async fn as_operator(c: &Console, method: &str, uri: &str, json: &str) -> (StatusCode, String) {
    let answer = c
        .send(
            method,
            uri,
            Call {
                bearer: Some(ADMIN_TOKEN),
                json: Some(json),
                ..Call::default()
            },
        )
        .await;
    (answer.status, answer.body)
}

/// `method uri` with a session, its CSRF token and a JSON body: status and body.
async fn as_session(
    c: &Console,
    (cookie, csrf): &(String, String),
    method: &str,
    uri: &str,
    json: &str,
) -> (StatusCode, String) {
    let answer = c
        .send(
            method,
            uri,
            Call {
                cookie: Some(cookie),
                csrf_header: Some(csrf),
                json: Some(json),
                ..Call::default()
            },
        )
        .await;
    (answer.status, answer.body)
}

const SHOP: &str = "/admin/v1/tenants/acme/shops/acme-se";

#[tokio::test]
async fn a_shops_key_is_never_sent_to_a_new_api_url_it_was_not_given_for() {
    let c = console().await;
    let first =
        r#"{"api":{"url":"https://shop.example.com/v1","requests_per_sec":5},"api_key":"key-1"}"#;
    let (status, body) = as_operator(&c, "PATCH", SHOP, first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let same = r#"{"api":{"url":"https://shop.example.com/v1","requests_per_sec":9}}"#;
    let (status, body) = as_operator(&c, "PATCH", SHOP, same).await;
    assert_eq!(status, StatusCode::OK, "the same URL keeps its key: {body}");
    let moved = r#"{"api":{"url":"https://elsewhere.example/v1","requests_per_sec":5}}"#;
    let (status, body) = as_operator(&c, "PATCH", SHOP, moved).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("a new api.url needs its api_key again"),
        "{body}"
    );
    assert!(!body.contains("key-1"), "{body}");
    let stored = c
        .app
        .store
        .shop(ShopId::new("acme-se").expect("id"))
        .await
        .expect("read")
        .expect("shop");
    let url = stored.settings.api.map(|a| a.url);
    assert_eq!(url.as_deref(), Some("https://shop.example.com/v1"));
    let with_key =
        r#"{"api":{"url":"https://elsewhere.example/v1","requests_per_sec":5},"api_key":"key-2"}"#;
    let (status, body) = as_operator(&c, "PATCH", SHOP, with_key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn only_an_operator_points_a_shops_api_at_the_relays_own_network() {
    let c = console().await;
    let admin = c.signed_in("acme-admin").await;
    for host in [
        "127.0.0.1:8080",
        "localhost",
        "10.0.0.5",
        "192.168.1.1",
        "172.16.3.4",
        "169.254.169.254",
        "[::1]",
        "[fd00::5]",
        "[fe80::1]",
    ] {
        let body =
            format!(r#"{{"api":{{"url":"http://{host}/v1","requests_per_sec":5}},"api_key":"k"}}"#);
        let (status, answer) = as_session(&c, &admin, "PATCH", SHOP, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {answer}");
        assert!(answer.contains("only an operator"), "{answer}");
    }
    let public =
        r#"{"api":{"url":"https://shop.example.com/v1","requests_per_sec":5},"api_key":"k"}"#;
    let (status, answer) = as_session(&c, &admin, "PATCH", SHOP, public).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let local = r#"{"api":{"url":"http://127.0.0.1:8080/v1","requests_per_sec":5},"api_key":"k"}"#;
    let (status, answer) = as_operator(&c, "PATCH", SHOP, local).await;
    assert_eq!(status, StatusCode::OK, "an operator may: {answer}");
}

#[tokio::test]
async fn an_agent_needs_a_plain_name_and_a_tenant_holds_at_most_a_hundred() {
    let c = console().await;
    let agents = "/admin/v1/tenants/acme/agents";
    let long = format!(r#"{{"name":"{}"}}"#, "a".repeat(101));
    for bad in [
        r#"{"name":""}"#,
        r#"{"name":"   "}"#,
        r#"{"name":"bad\nname"}"#,
        &long,
    ] {
        let (status, body) = as_operator(&c, "POST", agents, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("1 to 100 printable characters"), "{body}");
    }
    let hundred = format!(r#"{{"name":"{}"}}"#, "a".repeat(100));
    let (status, body) = as_operator(&c, "POST", agents, &hundred).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // `acme` has its first agent and that one: fill it up to the limit.
    for i in 2..relay::admin::MAX_AGENTS_PER_TENANT {
        c.app
            .store
            .create_agent(tenant("acme"), format!("agent-{i}"))
            .await
            .expect("agent");
    }
    let (status, body) = as_operator(&c, "POST", agents, r#"{"name":"one more"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("at most 100"), "{body}");
    // A revoked agent frees its place.
    let path = format!("/admin/v1/agents/{}/revoke", c.acme_agent);
    let (status, body) = as_operator(&c, "POST", &path, "{}").await;
    assert!(status.is_success(), "{body}");
    let (status, body) = as_operator(&c, "POST", agents, r#"{"name":"one more"}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn only_an_operator_adds_a_shop() {
    let c = console().await;
    let admin = c.signed_in("acme-admin").await;
    let shops = "/admin/v1/tenants/acme/shops";
    let new = r#"{"shop_id":"acme-no","webhook_secrets":["whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="],"trigger_statuses":["confirmed"],"document_type":"order"}"#;
    let (status, body) = as_session(&c, &admin, "POST", shops, new).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Nor does it learn that another tenant's shop id is taken.
    let taken = new.replace("acme-no", "other-se");
    let (status, body) = as_session(&c, &admin, "POST", shops, &taken).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = as_session(&c, &admin, "GET", shops, "{}").await;
    assert_eq!(status, StatusCode::OK, "it still lists its shops: {body}");
    let (status, body) = as_operator(&c, "POST", shops, new).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
