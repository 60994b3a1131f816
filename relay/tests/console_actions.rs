//! The console's actions through the real router: replaying failures (and delivery starting
//! at once), editing a failed order and retrying it, shop secrets and keys, agents; who may
//! do each (a viewer may not, a tenant admin only in its tenant, never without the CSRF
//! token); and the agent's session as recorded from its hello to its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::Message as WsMessage;
use axum::http::{Request, StatusCode, header};
use futures_util::{Sink, Stream};
use relay::AppState;
use relay::accounts::session::new_session;
use relay::accounts::{Language, Role};
use relay::auth::AgentIdentity;
use relay::config::Config;
use relay::store::{AnyStore, EventState, NewEvent, ShopRecord, StoreLocation, UserRecord};
use shared::domain::DocumentType;
use shared::protocol::{Envelope, Hello, Message, PROTOCOL_VERSION};
use shared::signature::WebhookSecret;
use shared::{AgentId, ShopId, TenantId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

/// A sound order of `order` for shop `shop` with the given total (447.00 is right).
fn order_body(shop: &str, order: &str, total: &str) -> String {
    format!(
        r#"{{"event":"order.paid","shop_id":"{shop}","occurred_at":"2026-01-01T10:00:00Z",
        "order":{{"id":"{order}","number":"1001","status":"confirmed",
        "created_at":"2026-01-01T10:00:00Z","currency":"SEK","prices_include_vat":true,
        "customer":{{"id":null,"type":"private","email":"anna@example.se","first_name":"Anna",
        "last_name":"Svensson","company_name":null,"org_no":null,"phone":null,
        "customer_group":null,"billing_address":{{"street":"Storgatan 1","zip":"111 22",
        "city":"Stockholm","country":"SE"}},"delivery_address":null}},
        "lines":[{{"article_number":"TSHIRT-RED-M","name":"T-shirt","quantity":2,
        "unit_price":"199.00","vat_rate":"25","discount":"0"}}],
        "shipping":{{"method":"postnord","name":"PostNord","price":"49.00","vat_rate":"25"}},
        "payment":null,"total":"{total}"}}}}"#
    )
}

/// Tenants `acme` and `other`, each with a shop, an agent, a dead event (`o-dead`) and a
/// held one whose total is wrong (`o-held`); accounts `op`, `acme-admin`, `acme-viewer`,
/// each signed in.
struct Console {
    app: Arc<AppState>,
    router: axum::Router,
    dead: [i64; 2],
    held: [i64; 2],
    agents: [AgentId; 2],
    _dir: tempfile::TempDir,
}

/// A signed-in account: its cookie and its session's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn console() -> Console {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnyStore::open(&StoreLocation::Sqlite(dir.path().join("relay.sqlite")))
        .await
        .expect("store opens");
    let (mut dead, mut held, mut agents) = (Vec::new(), Vec::new(), Vec::new());
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
                .id,
        );
        store
            .add_shop(ShopRecord {
                shop_id: ShopId::new(shop).expect("shop id"),
                tenant_id: tenant(id),
                webhook_secrets: vec![WebhookSecret::from_bytes(vec![1; 32]).expect("key")],
                trigger_statuses: vec!["confirmed".into()],
                document_type: DocumentType::Order,
                settings: Default::default(),
                api_key: None,
            })
            .await
            .expect("shop");
        for (order, state, total) in [
            ("o-dead", EventState::Pending, "447.00"),
            ("o-held", EventState::Held, "446.00"),
        ] {
            let stored = store
                .ingest(NewEvent {
                    tenant_id: tenant(id),
                    shop_id: ShopId::new(shop).expect("shop id"),
                    webhook_id: format!("wh-{order}"),
                    order_id: order.into(),
                    order_status: "confirmed".into(),
                    document_type: DocumentType::Order,
                    payload: order_body(shop, order, total),
                    state,
                    hold_reason: (state == EventState::Held)
                        .then(|| "held, the order is invalid: order.total".into()),
                    received_headers: None,
                })
                .await
                .expect("event");
            if state == EventState::Held {
                held.push(stored.event_id);
            } else {
                store
                    .dead_letter(
                        tenant(id),
                        stored.event_id,
                        "Mamut: customer 17 locked".into(),
                    )
                    .await
                    .expect("dead letter");
                dead.push(stored.event_id);
            }
        }
    }
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
    let ids = |v: Vec<i64>| [v[0], v[1]];
    Console {
        router: relay::router(app.clone()),
        app,
        dead: ids(dead),
        held: ids(held),
        agents: [agents[0].clone(), agents[1].clone()],
        _dir: dir,
    }
}

impl Console {
    async fn sign_in(&self, username: &str) -> Session {
        let user = self
            .app
            .store
            .user(username.into())
            .await
            .expect("read")
            .expect("the account");
        let (cookie, record) = new_session(&user, None);
        let csrf = record.csrf_token.clone();
        self.app
            .store
            .create_session(record)
            .await
            .expect("session");
        Session { cookie, csrf }
    }

    async fn get(&self, who: &Session, uri: &str) -> (StatusCode, String) {
        self.send("GET", uri, who, None).await
    }

    /// POSTs `form` (url-encoded pairs) with the session's CSRF token unless the form has one.
    async fn post(&self, who: &Session, uri: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        if !pairs.iter().any(|(n, _)| *n == "csrf") {
            pairs.push(("csrf", &who.csrf));
        }
        self.post_raw(who, uri, &pairs).await
    }

    async fn post_raw(
        &self,
        who: &Session,
        uri: &str,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let body = pairs
            .iter()
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send("POST", uri, who, Some(body)).await
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        who: &Session,
        form: Option<String>,
    ) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::COOKIE, format!("relay_session={}", who.cookie));
        if form.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request
            .body(form.map(Body::from).unwrap_or_else(Body::empty))
            .expect("a request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn state(&self, tenant_id: &str, id: i64) -> EventState {
        self.app
            .store
            .event(tenant(tenant_id), id)
            .await
            .expect("read")
            .expect("the event")
            .0
            .state
    }

    async fn audited(&self, tenant_id: &str) -> Vec<String> {
        self.app
            .store
            .audit(Some(tenant(tenant_id)), 100)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| format!("{} {} {}", e.action, e.target, e.detail.unwrap_or_default()))
            .collect()
    }
}

/// `application/x-www-form-urlencoded` text of `value`.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- an agent on channels ----

/// The relay's side of a socket whose other end is the test.
struct Duplex {
    incoming: mpsc::UnboundedReceiver<WsMessage>,
    outgoing: mpsc::UnboundedSender<WsMessage>,
}

impl Stream for Duplex {
    type Item = Result<WsMessage, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<WsMessage> for Duplex {
    type Error = axum::Error;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), Self::Error> {
        self.outgoing.send(item).map_err(axum::Error::new)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

struct Agent {
    to_relay: mpsc::UnboundedSender<WsMessage>,
    from_relay: mpsc::UnboundedReceiver<WsMessage>,
}

impl Agent {
    /// Connects as `acme`'s agent from 192.0.2.7 and says hello as version `version`.
    async fn connect(c: &Console, version: &str) -> Agent {
        let (to_relay, incoming) = mpsc::unbounded_channel();
        let (outgoing, from_relay) = mpsc::unbounded_channel();
        let identity = AgentIdentity {
            agent_id: c.agents[0].clone(),
            tenant_id: tenant("acme"),
        };
        let address = Some(std::net::SocketAddr::from(([192, 0, 2, 7], 50_000)));
        tokio::spawn(relay::deliver::run(
            c.app.clone(),
            identity,
            address,
            Duplex { incoming, outgoing },
        ));
        let mut agent = Agent {
            to_relay,
            from_relay,
        };
        agent.send(Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: version.into(),
            credit: 4,
            role: Default::default(),
        }));
        match agent.recv().await {
            Message::Welcome(_) => agent,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    fn send(&self, msg: Message) {
        let text = Envelope::new(msg).to_json();
        self.to_relay
            .send(WsMessage::Text(text.into()))
            .expect("session is running");
    }

    async fn recv(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.from_relay.recv())
                .await
                .expect("a frame within 10 s")
                .expect("session still open");
            if let WsMessage::Text(text) = frame {
                let msg = Envelope::from_json(text.as_str()).expect("valid frame").msg;
                if !matches!(msg, Message::Heartbeat(_)) {
                    return msg;
                }
            }
        }
    }
}

/// Waits (at most 10 s) until `check` holds.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    crate::wait::eventually(what, Duration::from_secs(10), check).await;
}

// ---- failures ----

#[tokio::test]
async fn a_dead_letter_replayed_from_the_console_is_delivered_at_once() {
    let c = console().await;
    let op = c.sign_in("op").await;
    let mut agent = Agent::connect(&c, "1.0.0").await;

    let (status, page) = c.get(&op, "/console/failures").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Mamut: customer # locked"),
        "grouped by reason: {page}"
    );
    let item = format!("acme/{}", c.dead[0]);
    assert!(page.contains(&item), "{page}");

    let (status, page) = c
        .post(
            &op,
            "/console/failures/replay",
            &[("kind", "event"), ("only", &item)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("1 replayed, 0 refused"), "{page}");
    match agent.recv().await {
        Message::Deliver(d) => {
            assert_eq!((d.seq, d.order.id.as_str()), (c.dead[0] as u64, "o-dead"))
        }
        other => panic!("expected the replayed order, got {other:?}"),
    }
    assert_eq!(c.state("acme", c.dead[0]).await, EventState::Pending);
    assert_eq!(
        c.state("other", c.dead[1]).await,
        EventState::Dead,
        "only the one chosen"
    );
    assert!(
        c.audited("acme")
            .await
            .iter()
            .any(|e| e.starts_with(&format!(
                "console: replay event tenants/acme/events/{}",
                c.dead[0]
            ))),
        "audited"
    );
}

#[tokio::test]
async fn a_selection_and_a_whole_group_replay_and_an_invalid_order_is_refused_unless_forced() {
    let c = console().await;
    let op = c.sign_in("op").await;
    let held = format!("acme/{}", c.held[0]);
    let dead = format!("acme/{}", c.dead[0]);
    let (status, page) = c
        .post(
            &op,
            "/console/failures/replay",
            &[("kind", "event"), ("item", &held), ("item", &dead)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("1 replayed, 1 refused"), "{page}");
    assert!(page.contains("order.total"), "the problem is shown: {page}");
    assert_eq!(c.state("acme", c.held[0]).await, EventState::Held);

    let (_, page) = c
        .post(
            &op,
            "/console/failures/replay",
            &[("kind", "event"), ("item", &held), ("force", "1")],
        )
        .await;
    assert!(page.contains("1 replayed, 0 refused"), "{page}");
    assert_eq!(c.state("acme", c.held[0]).await, EventState::Pending);

    // The other tenant's dead letter shares the reason's group; an operator replays both.
    let (_, page) = c
        .post(
            &op,
            "/console/failures/replay-group",
            &[("kind", "event"), ("key", "Mamut: customer # locked")],
        )
        .await;
    assert!(
        page.contains("1 replayed, 0 refused"),
        "acme's was replayed already: {page}"
    );
    assert_eq!(c.state("other", c.dead[1]).await, EventState::Pending);
}

#[tokio::test]
async fn a_viewer_sees_the_failures_but_may_not_replay_them() {
    let c = console().await;
    let viewer = c.sign_in("acme-viewer").await;
    let (status, page) = c.get(&viewer, "/console/failures").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("o-dead"), "{page}");
    assert!(!page.contains("other-se"), "only its tenant: {page}");
    assert!(
        !page.contains("name=\"item\""),
        "no replay controls: {page}"
    );
    let item = format!("acme/{}", c.dead[0]);
    let (status, _) = c
        .post(
            &viewer,
            "/console/failures/replay",
            &[("kind", "event"), ("only", &item)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .post(
            &viewer,
            "/console/failures/replay-group",
            &[("kind", "event"), ("key", "Mamut: customer # locked")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(c.state("acme", c.dead[0]).await, EventState::Dead);
}

#[tokio::test]
async fn a_change_without_the_sessions_csrf_token_is_refused() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let item = format!("acme/{}", c.dead[0]);
    let (status, _) = c
        .post_raw(
            &admin,
            "/console/failures/replay",
            &[("kind", "event"), ("only", &item)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token");
    let (status, _) = c
        .post(
            &admin,
            "/console/failures/replay",
            &[
                ("kind", "event"),
                ("only", &item),
                ("csrf", "not-the-token"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a wrong token");
    let (status, _) = c
        .post_raw(&admin, "/console/shops/acme-se/rotate-secret", &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .post_raw(
            &admin,
            "/console/agents/create",
            &[("tenant", "acme"), ("name", "x")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(c.state("acme", c.dead[0]).await, EventState::Dead);
}

#[tokio::test]
async fn a_tenant_admin_cannot_touch_another_tenants_event_by_its_id() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let theirs = format!("other/{}", c.dead[1]);
    let (status, _) = c
        .post(
            &admin,
            "/console/failures/replay",
            &[("kind", "event"), ("only", &theirs)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Its id under the admin's own tenant is no event of that tenant.
    let disguised = format!("acme/{}", c.dead[1]);
    let (status, page) = c
        .post(
            &admin,
            "/console/failures/replay",
            &[("kind", "event"), ("only", &disguised)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("0 replayed, 1 refused"), "{page}");
    let edit = format!("/console/failures/events/other/{}", c.held[1]);
    assert_eq!(c.get(&admin, &edit).await.0, StatusCode::FORBIDDEN);
    let body = order_body("other-se", "o-held", "447.00");
    let (status, _) = c.post(&admin, &edit, &[("payload", &body)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .post(&admin, "/console/shops/other-se/rotate-secret", &[])
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "as a shop that does not exist"
    );
    let revoke = format!("/console/agents/{}/revoke", c.agents[1]);
    assert_eq!(c.post(&admin, &revoke, &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(c.state("other", c.dead[1]).await, EventState::Dead);
    assert_eq!(c.state("other", c.held[1]).await, EventState::Held);
}

#[tokio::test]
async fn an_edit_form_is_bounded_and_judged_before_it_is_read() {
    let c = console().await;
    let viewer = c.sign_in("acme-viewer").await;
    let admin = c.sign_in("acme-admin").await;
    let uri = format!("/console/failures/events/acme/{}", c.held[0]);
    // Three bytes a character of the largest webhook, and 64 KiB for the other fields.
    let limit = 3 * c.app.config.max_body_bytes + 64 * 1024;
    // Larger than the limit: a viewer is refused for the role, before the body is read.
    let huge = "a".repeat(5 << 20);
    assert!(huge.len() > limit);
    let (status, page) = c.post(&viewer, &uri, &[("payload", &huge)]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{}",
        &page[..page.len().min(300)]
    );
    // An admin's oversize form is answered with a page saying the limit.
    let (status, page) = c.post(&admin, &uri, &[("payload", &huge)]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        page.contains("<html") && page.contains(&format!("larger than {limit} bytes")),
        "{}",
        &page[..page.len().min(300)]
    );
    // More fields than a form has are refused before the CSRF token after them is looked at.
    let many: Vec<(&str, &str)> = std::iter::repeat_n(("x", ""), 1001)
        .chain([("csrf", admin.csrf.as_str())])
        .collect();
    let (status, page) = c.post_raw(&admin, &uri, &many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("at most 1000"), "{page}");
    // The text area's indentation does not count: the compact body is held to the limit.
    let body = order_body("acme-se", "o-held", "447.00");
    let indented = format!("{}{body}", " ".repeat(c.app.config.max_body_bytes));
    let (status, page) = c.post(&admin, &uri, &[("payload", &indented)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("back in the queue"),
        "{}",
        &page[..page.len().min(500)]
    );
    assert_eq!(c.state("acme", c.held[0]).await, EventState::Pending);
}

#[tokio::test]
async fn an_edited_body_larger_than_a_webhook_comes_back_with_the_reason() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let uri = format!("/console/failures/events/acme/{}", c.held[0]);
    let max = c.app.config.max_body_bytes;
    let large = serde_json::json!({ "padding": "x".repeat(max) }).to_string();
    let (status, page) = c.post(&admin, &uri, &[("payload", &large)]).await;
    assert_eq!(status, StatusCode::OK, "the form comes back");
    assert!(
        page.contains("<textarea") && page.contains(&format!("larger than {max} bytes")),
        "{}",
        &page[..page.len().min(500)]
    );
    assert_eq!(c.state("acme", c.held[0]).await, EventState::Held);
}

#[tokio::test]
async fn an_edited_order_is_kept_beside_the_one_received_and_retried() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let uri = format!("/console/failures/events/acme/{}", c.held[0]);
    let (status, page) = c.get(&admin, &uri).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<textarea"), "{page}");
    assert!(
        page.contains("446.00") && page.contains("order.total"),
        "{page}"
    );

    let (status, page) = c.post(&admin, &uri, &[("payload", "{ not json")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("not JSON") && page.contains("{ not json"),
        "kept to correct: {page}"
    );

    let body = order_body("acme-se", "o-held", "447.00");
    let (status, page) = c.post(&admin, &uri, &[("payload", &body)]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("back in the queue"), "{page}");
    assert_eq!(c.state("acme", c.held[0]).await, EventState::Pending);
    let stored = c
        .app
        .store
        .event_payload(tenant("acme"), c.held[0])
        .await
        .expect("read")
        .expect("payload");
    assert!(stored.payload.contains("447.00"));
    assert!(
        stored.original.is_some_and(|o| o.contains("446.00")),
        "the one received is kept"
    );
    let audited = c.audited("acme").await;
    assert!(
        audited.iter().any(|e| e.starts_with("console: edit event")),
        "{audited:?}"
    );
    assert!(
        audited
            .iter()
            .any(|e| e.starts_with("console: replay event")),
        "{audited:?}"
    );
}

#[tokio::test]
async fn a_change_a_shop_refused_is_replayed_from_the_console() {
    let c = console().await;
    let store = &c.app.store;
    let shop_id = ShopId::new("acme-se").expect("id");
    let mut shop = store
        .shop(shop_id.clone())
        .await
        .expect("read")
        .expect("shop");
    // Nothing listens there: a send fails and is retried, never dead-lettered.
    shop.settings.api = Some(relay::shop::ApiSettings {
        platform: Default::default(),
        url: "http://127.0.0.1:9/v1".into(),
        requests_per_sec: 5,
    });
    shop.api_key = Some(shared::settings::Secret::new("key"));
    store.update_shop(shop).await.expect("update");
    let stock = shared::domain::Change::Stock(shared::domain::StockLevel {
        article_number: shared::ArticleNumber::new("MUG").expect("article"),
        warehouse: None,
        quantity: 3.into(),
    });
    store
        .insert_push(tenant("acme"), c.agents[0].clone(), "p-1".into(), stock)
        .await
        .expect("push");
    let due = store.due_dispatch(shop_id.clone(), 10).await.expect("due");
    assert_eq!(due.len(), 1);
    store
        .dispatch_failed(
            vec![(due[0].id, due[0].version)],
            relay::store::DispatchFailure {
                reason: "HTTP 422: article MUG unknown".into(),
                retry_at: None,
            },
            5,
        )
        .await
        .expect("dead");

    let admin = c.sign_in("acme-admin").await;
    let (_, page) = c.get(&admin, "/console/failures").await;
    assert!(page.contains("HTTP #: article MUG unknown"), "{page}");
    let item = format!("acme/{}", due[0].id);
    let (status, page) = c
        .post(
            &admin,
            "/console/failures/replay",
            &[("kind", "dispatch"), ("only", &item)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("1 replayed, 0 refused"), "{page}");
    let dead = store
        .list_dispatch(tenant("acme"), Some(relay::store::DispatchState::Dead), 10)
        .await
        .expect("list");
    assert!(dead.is_empty(), "back in the queue: {dead:?}");
    assert!(
        c.audited("acme")
            .await
            .iter()
            .any(|e| e.starts_with("console: replay dispatch"))
    );
}

// ---- shops ----

#[tokio::test]
async fn a_rotated_secret_is_shown_once_and_the_previous_one_still_verifies() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let old = WebhookSecret::from_bytes(vec![1; 32])
        .expect("key")
        .expose();
    let (status, page) = c.get(&admin, "/console/shops").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("whsec_"), "no secret on the list: {page}");
    assert!(!page.contains("other-se"), "{page}");

    let (status, page) = c
        .post(&admin, "/console/shops/acme-se/rotate-secret", &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let start = page.find("whsec_").expect("the new secret is shown");
    let shown: String = page[start..]
        .chars()
        .take_while(|ch| ch.is_ascii_alphanumeric() || "_+/=".contains(*ch))
        .collect();
    assert_ne!(shown, old);
    let shop = c
        .app
        .store
        .shop(ShopId::new("acme-se").expect("id"))
        .await
        .expect("read")
        .expect("shop");
    let stored: Vec<String> = shop
        .webhook_secrets
        .iter()
        .map(WebhookSecret::expose)
        .collect();
    assert_eq!(
        stored,
        [shown.clone(), old.clone()],
        "the new one first, the old one kept"
    );

    let (_, page) = c.get(&admin, "/console/shops").await;
    assert!(!page.contains(&shown), "never shown again");
    let audited = c.audited("acme").await;
    assert!(
        audited
            .iter()
            .any(|e| e.starts_with("console: rotate webhook secret"))
    );
    assert!(audited.iter().all(|e| !e.contains("whsec_")), "{audited:?}");
}

#[tokio::test]
async fn an_api_key_is_stored_but_never_rendered() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let key = "sk-live-very-secret-4711";
    let (status, page) = c
        .post(
            &admin,
            "/console/shops/acme-se/api-key",
            &[("api_key", key)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!page.contains(key));
    let (_, page) = c.get(&admin, "/console/shops").await;
    assert!(!page.contains(key), "{page}");
    assert!(page.contains("API key"), "{page}");
    let (_, page) = c.get(&admin, "/console/shops/acme-se/edit").await;
    assert!(!page.contains(key), "{page}");
    let shop = c
        .app
        .store
        .shop(ShopId::new("acme-se").expect("id"))
        .await
        .expect("read")
        .expect("shop");
    assert_eq!(shop.api_key.as_ref().map(|k| k.expose()), Some(key));
    assert!(c.audited("acme").await.iter().all(|e| !e.contains(key)));
}

#[tokio::test]
async fn shop_rules_are_edited_through_the_same_checks_as_the_api() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let uri = "/console/shops/acme-se/edit";
    let form = |map: &'static str| {
        vec![
            ("flow", "combo"),
            ("document_type", "invoice"),
            ("trigger_statuses", "confirmed, paid"),
            ("status_map", map),
            ("price_lists", r#"{"PL1": "wholesale"}"#),
            ("api", ""),
        ]
    };
    let (status, page) = c
        .post(&admin, uri, &form(r#"{"delivered": {"shop_status": ""}}"#))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("status_map"), "the relay's reason: {page}");
    let (status, page) = c
        .post(
            &admin,
            uri,
            &form(r#"{"delivered": {"shop_status": "shipped"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let shop = c
        .app
        .store
        .shop(ShopId::new("acme-se").expect("id"))
        .await
        .expect("read")
        .expect("shop");
    assert_eq!(shop.trigger_statuses, ["confirmed", "paid"]);
    assert_eq!(shop.document_type, DocumentType::Invoice);
    assert_eq!(shop.settings.status_map["delivered"].shop_status, "shipped");
    assert_eq!(shop.settings.price_lists["PL1"], "wholesale");
    let viewer = c.sign_in("acme-viewer").await;
    assert_eq!(c.get(&viewer, uri).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_moved_shop_api_takes_its_key_from_the_form() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let uri = "/console/shops/acme-se/edit";
    let form = |api: &'static str, key: &'static str| {
        vec![
            ("flow", "ecom"),
            ("document_type", "order"),
            ("trigger_statuses", "confirmed"),
            ("status_map", ""),
            ("price_lists", ""),
            ("api", api),
            ("api_key", key),
        ]
    };
    let first = r#"{"platform": "nordisk", "url": "https://shop.example/v1"}"#;
    let moved = r#"{"platform": "nordisk", "url": "https://elsewhere.example/v1"}"#;
    let (status, page) = c.post(&admin, uri, &form(first, "first-key")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("rules are saved"), "{page}");
    let key = |c: &Console| {
        let store = c.app.store.clone();
        async move {
            store
                .shop(ShopId::new("acme-se").expect("id"))
                .await
                .expect("read")
                .expect("shop")
                .api_key
                .map(|k| k.expose().to_owned())
        }
    };
    assert_eq!(key(&c).await.as_deref(), Some("first-key"));
    // A new host without a key: the form comes back saying why, the key never in it.
    let (status, page) = c.post(&admin, uri, &form(moved, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("needs its api_key again"), "{page}");
    assert!(!page.contains("first-key"), "{page}");
    // The same host with the key field empty keeps the key.
    let (status, page) = c.post(&admin, uri, &form(first, "")).await;
    assert!(
        status == StatusCode::OK && page.contains("rules are saved"),
        "{page}"
    );
    assert_eq!(key(&c).await.as_deref(), Some("first-key"));
    let (status, page) = c.post(&admin, uri, &form(moved, "second-key")).await;
    assert!(
        status == StatusCode::OK && page.contains("rules are saved"),
        "{page}"
    );
    assert_eq!(key(&c).await.as_deref(), Some("second-key"));
}

// ---- agents ----

#[tokio::test]
async fn an_agent_created_in_the_console_shows_its_token_once_and_can_be_revoked() {
    let c = console().await;
    let admin = c.sign_in("acme-admin").await;
    let (status, page) = c
        .post(
            &admin,
            "/console/agents/create",
            &[("tenant", "acme"), ("name", "office")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("class=\"secret\""), "{page}");
    let agents = c.app.store.agents(tenant("acme")).await.expect("agents");
    let office = agents.iter().find(|a| a.name == "office").expect("created");
    let (_, list) = c.get(&admin, "/console/agents").await;
    assert!(
        list.contains("office") && !list.contains("class=\"secret\""),
        "{list}"
    );
    assert!(!list.contains("tenant-other"), "{list}");

    let (status, page) = c
        .post(
            &admin,
            &format!("/console/agents/{}/revoke", office.id),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let revoked = c
        .app
        .store
        .agent(office.id.clone())
        .await
        .expect("read")
        .expect("agent");
    assert!(revoked.revoked_at.is_some());
    let audited = c.audited("acme").await;
    assert!(
        audited
            .iter()
            .any(|e| e.starts_with("console: create agent"))
    );
    assert!(
        audited
            .iter()
            .any(|e| e.starts_with("console: revoke agent"))
    );
    let (status, _) = c
        .post(
            &admin,
            "/console/agents/create",
            &[("tenant", "other"), ("name", "x")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_agents_session_is_recorded_from_its_hello_to_its_end() {
    let c = console().await;
    let agent = Agent::connect(&c, "2.5.1").await;
    let store = c.app.store.clone();
    eventually("the session is recorded", || async {
        store
            .agent_sessions(tenant("acme"), 10)
            .await
            .expect("read")
            .len()
            == 1
    })
    .await;
    let sessions = store
        .agent_sessions(tenant("acme"), 10)
        .await
        .expect("read");
    let session = &sessions[0];
    assert_eq!(session.agent_id, c.agents[0]);
    assert_eq!(session.agent_version, "2.5.1");
    assert_eq!(session.address.as_deref(), Some("192.0.2.7"));
    assert_eq!(session.instance, c.app.registry.instance());
    assert!(session.ended_at.is_none());

    let op = c.sign_in("op").await;
    let (_, page) = c.get(&op, "/console/agents").await;
    assert!(
        page.contains("2.5.1") && page.contains("connected"),
        "{page}"
    );

    drop(agent);
    eventually("the session's end is recorded", || async {
        store
            .agent_sessions(tenant("acme"), 10)
            .await
            .expect("read")[0]
            .ended_at
            .is_some()
    })
    .await;
    assert!(
        store
            .agent_sessions(tenant("other"), 10)
            .await
            .expect("read")
            .is_empty()
    );
}
