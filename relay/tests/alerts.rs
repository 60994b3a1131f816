//! Alerts in process: a relay started with [`relay::App`] evaluates its tenants' conditions
//! every second and sends to a webhook sink (an axum server in the test) and to a real SMTP
//! server (Python's `aiosmtpd`, from `target/pyenv`, installed by `scripts/test-deps.sh`;
//! without it the mail tests say "skipped", and fail in CI).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use relay::App;
use relay::accounts::Language;
use relay::alerts::{AlertSettings, message};
use relay::config::{Config, SmtpConfig, StartTls};
use relay::store::{AnyStore, EventState, NewEvent, ShopRecord, StoreLocation};
use serde_json::Value;
use shared::domain::DocumentType;
use shared::{ShopId, TenantId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `condition` holds; panics naming `what` after [`DEADLINE`].
async fn eventually<F: FnMut() -> bool>(what: &str, mut condition: F) {
    crate::wait::eventually(what, DEADLINE, || std::future::ready(condition())).await;
}

/// A webhook receiver that keeps every JSON body posted to it.
struct Sink {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Sink {
    async fn start() -> Self {
        Self::failing_first(0).await
    }

    /// A sink that answers 503 to its first `failures` requests (keeping them too).
    async fn failing_first(failures: usize) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route(
                "/hook/secret-token",
                post(
                    move |State(received): State<Arc<Mutex<Vec<Value>>>>,
                          Json(body): Json<Value>| async move {
                        let Ok(mut all) = received.lock() else {
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        };
                        all.push(body);
                        if all.len() <= failures {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        }
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the sink binds");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url: format!("http://{addr}/hook/secret-token"),
            received,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default()
    }

    /// The (condition, state) of every body received, in order.
    fn seen(&self) -> Vec<(String, String)> {
        self.bodies()
            .iter()
            .map(|b| {
                (
                    b["condition"].as_str().unwrap_or_default().to_owned(),
                    b["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// A relay running in this process on a SQLite file of its own, and a second handle on that
/// store for the test.
struct Relay {
    store: AnyStore,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Relay {
    async fn start(smtp: Option<SmtpConfig>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.sqlite");
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: format!("sqlite://{}", path.display()),
            alerts_interval_secs: 1,
            alerts_digest_hour: 0,
            smtp,
            ..Config::default()
        };
        let store = AnyStore::open(&StoreLocation::Sqlite(path))
            .await
            .expect("store opens");
        store
            .create_tenant(tenant(), "Acme".into())
            .await
            .expect("tenant");
        store
            .add_shop(ShopRecord {
                shop_id: ShopId::new("demo-se").expect("valid"),
                tenant_id: tenant(),
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
        let stop = CancellationToken::new();
        let app = App::build(config, stop.clone())
            .await
            .expect("relay builds");
        tokio::spawn(app.run());
        Self {
            store,
            stop,
            _dir: dir,
        }
    }

    async fn settings(&self, settings: &AlertSettings) {
        settings.check().expect("valid settings");
        self.store
            .put_alert_settings(tenant(), settings.to_stored())
            .await
            .expect("settings stored");
    }

    /// Stores a webhook and moves it to the dead-letter list; returns its id.
    async fn dead_letter(&self, webhook: &str) -> i64 {
        let stored = self
            .store
            .ingest(NewEvent {
                tenant_id: tenant(),
                shop_id: ShopId::new("demo-se").expect("valid"),
                webhook_id: webhook.into(),
                order_id: format!("o-{webhook}"),
                order_status: "confirmed".into(),
                document_type: DocumentType::Order,
                payload: "{}".into(),
                state: EventState::Pending,
                hold_reason: None,
                received_headers: None,
            })
            .await
            .expect("stored");
        self.store
            .dead_letter(tenant(), stored.event_id, "Mamut refused it".into())
            .await
            .expect("dead");
        stored.event_id
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("valid")
}

#[tokio::test]
async fn a_dead_letter_gives_one_webhook_alert_and_one_resolved_after_its_replay() {
    let sink = Sink::start().await;
    let relay = Relay::start(None).await;
    relay
        .settings(&AlertSettings {
            webhook_url: Some(sink.url.clone()),
            ..AlertSettings::default()
        })
        .await;
    let id = relay.dead_letter("w-1").await;
    eventually("the dead-letter alert", || !sink.seen().is_empty()).await;
    let body = &sink.bodies()[0];
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["state"], "alert");
    assert_eq!(body["condition"], "dead_letters");
    let text = body["text"].as_str().expect("a text for Slack and Teams");
    assert!(text.contains("Dead letters"), "{text}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains('1')),
        "{body}"
    );

    // A second dead letter while the alert is open raises nothing more.
    let second = relay.dead_letter("w-2").await;
    relay.store.replay(tenant(), id).await.expect("replayed");
    relay
        .store
        .replay(tenant(), second)
        .await
        .expect("replayed");
    eventually("the resolved", || sink.seen().len() >= 2).await;
    assert_eq!(
        sink.seen(),
        [
            ("dead_letters".to_string(), "alert".to_string()),
            ("dead_letters".to_string(), "resolved".to_string())
        ],
        "one alert, one resolved"
    );
    let open = relay
        .store
        .alerts(tenant(), true, 10)
        .await
        .expect("alerts");
    assert!(open.is_empty(), "{open:?}");
}

/// A webhook that fails is tried again at the next evaluation, without a second alert.
#[tokio::test]
async fn a_failed_send_is_tried_again_without_opening_a_second_alert() {
    let sink = Sink::failing_first(1).await;
    let relay = Relay::start(None).await;
    relay
        .settings(&AlertSettings {
            webhook_url: Some(sink.url.clone()),
            ..AlertSettings::default()
        })
        .await;
    relay.dead_letter("w-1").await;
    eventually("the alert sent again", || sink.seen().len() >= 2).await;
    let alert = ("dead_letters".to_string(), "alert".to_string());
    assert_eq!(sink.seen()[..2], [alert.clone(), alert]);
    let all = relay
        .store
        .alerts(tenant(), false, 10)
        .await
        .expect("alerts");
    assert_eq!(all.len(), 1, "one alert stored: {all:?}");
}

#[tokio::test]
async fn alerts_speak_the_tenants_language() {
    let sink = Sink::start().await;
    let relay = Relay::start(None).await;
    relay
        .settings(&AlertSettings {
            webhook_url: Some(sink.url.clone()),
            language: Language::Sv,
            ..AlertSettings::default()
        })
        .await;
    relay.dead_letter("w-1").await;
    eventually("the alert", || !sink.seen().is_empty()).await;
    let text = sink.bodies()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("Döda meddelanden"), "{text}");
}

// ---- e-mail through a real SMTP server ----

/// Python's SMTP server printing every mail it receives, on a free port.
struct SmtpServer {
    port: u16,
    output: Arc<Mutex<String>>,
    _child: Child,
}

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python")
}

impl SmtpServer {
    /// The server, or `None` (a note locally, a failure in CI) without `aiosmtpd`.
    async fn start() -> Option<Self> {
        let installed = Command::new(python())
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "aiosmtpd is missing in CI: run scripts/test-deps.sh"
            );
            eprintln!("skipped: aiosmtpd is missing (run scripts/test-deps.sh)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(python())
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-c",
                "aiosmtpd.handlers.Debugging",
            ])
            .args(["-l", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("aiosmtpd starts");
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut all) = output.lock() {
                        all.push_str(&line);
                        all.push('\n');
                    }
                }
            });
        }
        crate::wait::eventually("aiosmtpd to listen", DEADLINE, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Some(Self {
            port,
            output,
            _child: child,
        })
    }

    fn config(&self, starttls: StartTls) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            starttls,
            username: None,
            password: None,
            from: "Relay alerts <alerts@relay.example>".into(),
            timeout_secs: 5,
            send_timeout_secs: 10,
        }
    }

    fn received(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

#[tokio::test]
async fn the_dead_letter_mail_and_the_digest_reach_a_real_smtp_server() {
    let Some(server) = SmtpServer::start().await else {
        return;
    };
    let relay = Relay::start(Some(server.config(StartTls::None))).await;
    relay.dead_letter("w-1").await;
    relay
        .settings(&AlertSettings {
            emails: vec!["ops@acme.example".into()],
            ..AlertSettings::default()
        })
        .await;
    eventually("the alert mail and the digest", || {
        let mails = server.received();
        mails.contains("Subject: [acme] Dead letters are waiting")
            && mails.contains("Subject: [acme] Failures in the last 24 hours")
    })
    .await;
    let mails = server.received();
    assert!(mails.contains("ops@acme.example"), "{mails}");
    assert!(mails.contains("alerts@relay.example"), "{mails}");
    assert_eq!(
        mails
            .matches("Subject: [acme] Failures in the last 24 hours")
            .count(),
        1,
        "one digest a day"
    );
}

#[tokio::test]
async fn starttls_required_against_a_server_without_it_fails_saying_so() {
    let Some(server) = SmtpServer::start().await else {
        return;
    };
    let test = message::test(Language::En, &tenant());
    let e = relay::alerts::mail::send(
        &server.config(StartTls::Required),
        &["ops@acme.example".into()],
        &test,
    )
    .await
    .expect_err("no STARTTLS, no mail");
    assert!(e.contains("STARTTLS"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{}", server.port)), "{e}");
    relay::alerts::mail::send(
        &server.config(StartTls::Opportunistic),
        &["ops@acme.example".into()],
        &test,
    )
    .await
    .expect("opportunistic sends in plain text to a server without STARTTLS");
    assert!(server.received().contains("Test alert"));
}

/// The admin API of alerts through the real router, as an operator and as a tenant admin
/// (each with a console session: cookie and CSRF header).
struct Api {
    router: axum::Router,
    app: Arc<relay::AppState>,
    _dir: tempfile::TempDir,
}

/// A signed-in account: its session cookie and CSRF token.
struct Caller {
    cookie: String,
    csrf: String,
}

impl Api {
    async fn start() -> Self {
        use relay::accounts::Role;
        use relay::store::UserRecord;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AnyStore::open(&StoreLocation::Sqlite(dir.path().join("relay.sqlite")))
            .await
            .expect("store opens");
        store
            .create_tenant(tenant(), "Acme".into())
            .await
            .expect("tenant");
        for (name, role, tenant_id) in [
            ("op", Role::Operator, None),
            ("acme-admin", Role::TenantAdmin, Some(tenant())),
        ] {
            let now = chrono::Utc::now();
            store
                .create_user(UserRecord {
                    username: name.into(),
                    role,
                    tenant_id,
                    password_hash: "not used: sessions are made directly".into(),
                    language: Language::En,
                    created_at: now,
                    password_changed_at: now,
                })
                .await
                .expect("account");
        }
        let config = Config::default();
        let shutdown = CancellationToken::new();
        let (state, _) =
            relay::AppState::new(config, store, shutdown.clone()).expect("the relay's state");
        let app = Arc::new(state);
        Self {
            router: relay::router(app.clone()),
            app,
            _dir: dir,
        }
    }

    async fn sign_in(&self, username: &str) -> Caller {
        let user = self
            .app
            .store
            .user(username.into())
            .await
            .expect("read")
            .expect("the account");
        let (cookie, record) = relay::accounts::session::new_session(&user, None);
        let csrf = record.csrf_token.clone();
        self.app
            .store
            .create_session(record)
            .await
            .expect("session");
        Caller { cookie, csrf }
    }

    /// Sends `method path` with a JSON `body`; the status, the `Retry-After` and the body.
    async fn send(
        &self,
        who: &Caller,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, Value) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(format!("/admin/v1{path}"))
            .header("cookie", format!("relay_session={}", who.cookie))
            .header("x-csrf-token", &who.csrf);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(match body {
                Some(body) => axum::body::Body::from(body.to_string()),
                None => axum::body::Body::empty(),
            })
            .expect("a request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, retry_after, json)
    }

    async fn set_webhook(&self, who: &Caller, url: &str) -> (StatusCode, Value) {
        let body = serde_json::json!({ "webhook_url": url });
        let (status, _, reply) = self
            .send(who, "PUT", "/tenants/acme/alerts", Some(body))
            .await;
        (status, reply)
    }
}

#[tokio::test]
async fn a_tenant_admins_alert_webhook_is_public_https_and_an_operators_may_be_local() {
    let api = Api::start().await;
    let admin = api.sign_in("acme-admin").await;
    let op = api.sign_in("op").await;
    for url in [
        "http://localhost:9000/hook",
        "http://127.0.0.1:9000/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.8/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
    ] {
        let (status, reply) = api.set_webhook(&admin, url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {reply}");
        assert!(reply.to_string().contains("webhook_url"), "{url}: {reply}");
    }
    let (status, reply) = api
        .set_webhook(&admin, "https://hooks.example.com/services/secret")
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["webhook"], "https://hooks.example.com");
    let (status, reply) = api.set_webhook(&op, "http://127.0.0.1:9000/hook").await;
    assert_eq!(status, StatusCode::OK, "an operator's local sink: {reply}");
    assert_eq!(reply["webhook"], "http://127.0.0.1:9000");
    // Settings an operator made stay when a tenant admin changes another field.
    let (status, _, reply) = api
        .send(
            &admin,
            "PUT",
            "/tenants/acme/alerts",
            Some(serde_json::json!({ "digest": false })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

#[tokio::test]
async fn test_alerts_are_limited_per_tenant() {
    let sink = Sink::start().await;
    let api = Api::start().await;
    let admin = api.sign_in("acme-admin").await;
    let op = api.sign_in("op").await;
    let (status, reply) = api.set_webhook(&op, &sink.url).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, _, reply) = api
        .send(&admin, "POST", "/tenants/acme/alerts/test", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["webhook"]["status"], "sent", "{reply}");
    for who in [&admin, &op] {
        let (status, retry_after, reply) = api
            .send(who, "POST", "/tenants/acme/alerts/test", None)
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
        let seconds: u32 = retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=60).contains(&seconds), "{seconds}");
        assert!(reply.to_string().contains("one a minute"), "{reply}");
    }
    assert_eq!(sink.bodies().len(), 1, "one test alert went");
}
