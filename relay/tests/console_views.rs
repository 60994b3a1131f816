//! The console's read views through the real router: the overview, the order search, an
//! order's timeline and the audit log show what they must, in the account's language, and a
//! tenant account's pages never show another tenant's data (its timeline URLs are refused).

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use relay::accounts::session::new_session;
use relay::accounts::{Language, Role};
use relay::config::Config;
use relay::store::{
    AnyStore, EventState, NewAudit, NewEvent, ShopRecord, StoreLocation, UserRecord,
};
use shared::domain::DocumentType;
use shared::{ShopId, TenantId};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

/// A relay with tenants `acme` (order `A-100`, delivered as Mamut `M-1`, its customer
/// `anna@example.se`) and `other` (order `B-200`, dead); a session cookie per account.
struct Views {
    router: axum::Router,
    store: AnyStore,
    acme_event: i64,
    other_event: i64,
    operator: String,
    viewer: String,
    swedish_admin: String,
    _dir: tempfile::TempDir,
}

async fn views() -> Views {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnyStore::open(&StoreLocation::Sqlite(dir.path().join("relay.sqlite")))
        .await
        .expect("store opens");
    let mut events = Vec::new();
    for (id, shop, order) in [("acme", "acme-se", "A-100"), ("other", "other-se", "B-200")] {
        store
            .create_tenant(tenant(id), format!("{id} AB"))
            .await
            .expect("tenant");
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
        let payload = serde_json::json!({
            "order": {"id": order, "note": "<script>alert(1)</script>",
                      "customer": {"email": format!("anna@{id}.example")}}
        });
        let stored = store
            .ingest(NewEvent {
                tenant_id: tenant(id),
                shop_id: ShopId::new(shop).expect("shop id"),
                webhook_id: format!("wh-{id}"),
                order_id: order.into(),
                order_status: "confirmed".into(),
                document_type: DocumentType::Order,
                payload: payload.to_string(),
                state: EventState::Pending,
                hold_reason: None,
                received_headers: None,
            })
            .await
            .expect("event");
        events.push(stored.event_id);
        store
            .append_audit(NewAudit {
                actor: "op".into(),
                tenant_id: Some(tenant(id)),
                action: "replay".into(),
                target: format!("audit-target-{id}"),
                detail: None,
            })
            .await
            .expect("audit");
    }
    store
        .next_deliveries(tenant("acme"), HashSet::new(), HashSet::new(), 10)
        .await
        .expect("deliveries");
    store
        .ack(tenant("acme"), events[0], Some("M-1".into()), false)
        .await
        .expect("ack");
    store
        .next_deliveries(tenant("other"), HashSet::new(), HashSet::new(), 10)
        .await
        .expect("deliveries");
    store
        .dead_letter(tenant("other"), events[1], "Mamut refused".into())
        .await
        .expect("dead");
    let mut cookies = Vec::new();
    for (name, role, tenant_id, language) in [
        ("op", Role::Operator, None, Language::En),
        (
            "acme-viewer",
            Role::TenantViewer,
            Some("acme"),
            Language::En,
        ),
        ("acme-admin", Role::TenantAdmin, Some("acme"), Language::Sv),
    ] {
        let now = chrono::Utc::now();
        let user = UserRecord {
            username: name.into(),
            role,
            tenant_id: tenant_id.map(tenant),
            // Never checked: the tests sign in by a session made here.
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            language,
            created_at: now,
            password_changed_at: now,
        };
        store.create_user(user.clone()).await.expect("account");
        let (cookie, session) = new_session(&user, None);
        store.create_session(session).await.expect("session");
        cookies.push(cookie);
    }
    let config = Config::default();
    let shutdown = CancellationToken::new();
    let (state, _) =
        relay::AppState::new(config, store, shutdown.clone()).expect("the relay's state");
    let app = Arc::new(state);
    Views {
        store: app.store.clone(),
        router: relay::router(app),
        acme_event: events[0],
        other_event: events[1],
        operator: cookies[0].clone(),
        viewer: cookies[1].clone(),
        swedish_admin: cookies[2].clone(),
        _dir: dir,
    }
}

impl Views {
    /// `GET uri` with `cookie`'s session: the status and the page.
    async fn get(&self, cookie: Option<&str>, uri: &str) -> (StatusCode, String) {
        let mut request = Request::builder().uri(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, format!("relay_session={cookie}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).expect("a request"))
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn page(&self, cookie: &str, uri: &str) -> String {
        let (status, page) = self.get(Some(cookie), uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {page}");
        page
    }
}

#[tokio::test]
async fn the_overview_shows_each_tenants_queue_shops_and_charts() {
    let v = views().await;
    let page = v.page(&v.operator, "/console/").await;
    for wanted in [
        "acme AB",
        "other AB",
        "acme-se",
        "other-se",
        "<svg",
        "Dead letters",
        "Orders per hour",
    ] {
        assert!(
            page.contains(wanted),
            "the overview lacks {wanted:?}: {page}"
        );
    }
    // acme's order was delivered: the shop's last delivery is shown, not "never".
    let acme = &page[page.find("data-tenant=\"acme\"").expect("acme's card")..];
    let acme = &acme[..acme.find("data-tenant=\"other\"").unwrap_or(acme.len())];
    assert!(
        acme.contains("<rect"),
        "an order bar in acme's chart: {acme}"
    );
    assert!(
        acme.contains("<circle"),
        "a latency point in acme's chart: {acme}"
    );
    let viewer = v.page(&v.viewer, "/console/").await;
    assert!(viewer.contains("acme AB") && viewer.contains("acme-se"));
    assert!(
        !viewer.contains("other AB") && !viewer.contains("other-se"),
        "a tenant viewer sees another tenant: {viewer}"
    );
}

#[tokio::test]
async fn the_search_finds_orders_only_within_the_callers_tenant() {
    let v = views().await;
    let page = v.page(&v.operator, "/console/orders?order=B-200").await;
    assert!(
        page.contains(&format!("/console/orders/other/{}", v.other_event)),
        "{page}"
    );
    let page = v.page(&v.viewer, "/console/orders?order=B-200").await;
    assert!(
        !page.contains("B-200</a>") && !page.contains("/console/orders/other/"),
        "{page}"
    );
    let page = v
        .page(
            &v.viewer,
            "/console/orders?email=ANNA%40acme.example&state=delivered",
        )
        .await;
    assert!(
        page.contains(&format!("/console/orders/acme/{}", v.acme_event)),
        "{page}"
    );
    let page = v.page(&v.viewer, "/console/orders?mamut=M-1").await;
    assert!(page.contains("A-100"), "{page}");
    // With no filter, a viewer's newest orders are its own only.
    let page = v.page(&v.viewer, "/console/orders").await;
    assert!(page.contains("A-100") && !page.contains("B-200"), "{page}");
}

#[tokio::test]
async fn bad_search_input_is_a_message_on_the_page() {
    let v = views().await;
    let page = v
        .page(&v.operator, "/console/orders?from=yesterday&state=lost")
        .await;
    assert!(
        page.contains("&quot;yesterday&quot; is not a date"),
        "{page}"
    );
    assert!(page.contains("no state called &quot;lost&quot;"), "{page}");
    let page = v.page(&v.operator, "/console/orders?order=%FF%FE").await;
    assert!(page.contains("<form"), "{page}");
    // A year chrono cannot add a day to is a bad date, not a failed page.
    let page = v
        .page(&v.operator, "/console/orders?to=%2B262142-12-31")
        .await;
    assert!(page.contains("is not a date"), "{page}");
    let page = v
        .page(&v.operator, "/console/orders?from=2020-01-01&to=2026-01-01")
        .await;
    assert!(page.contains("at most 366 days"), "{page}");
}

#[tokio::test]
async fn a_search_says_which_window_it_covered() {
    let v = views().await;
    let page = v
        .page(&v.viewer, "/console/orders?from=2026-01-01&to=2026-01-31")
        .await;
    assert!(
        page.contains("2026-01-01 00:00:00 UTC") && page.contains("2026-02-01 00:00:00 UTC"),
        "{page}"
    );
    let page = v.page(&v.viewer, "/console/orders").await;
    assert!(page.contains("Searched webhooks received from"), "{page}");
    assert!(page.contains("A-100"), "{page}");
}

#[tokio::test]
async fn the_overview_shows_every_agent_however_often_one_reconnects() {
    let v = views().await;
    let agent = |name: &'static str| {
        let store = v.store.clone();
        async move {
            store
                .create_agent(tenant("acme"), name.into())
                .await
                .expect("agent")
                .id
        }
    };
    let steady = agent("lagret").await;
    let flapping = agent("kassan").await;
    let open = |agent: &shared::AgentId, version: String| {
        v.store.open_agent_session(
            agent.clone(),
            tenant("acme"),
            "relay-1".into(),
            version,
            None,
        )
    };
    open(&steady, "9.9.9".into()).await.expect("session");
    for n in 0..60 {
        open(&flapping, format!("1.0.{n}")).await.expect("session");
    }
    let page = v.page(&v.viewer, "/console/").await;
    assert!(page.contains("lagret") && page.contains("kassan"), "{page}");
    assert!(page.contains("9.9.9"), "the steady agent's session: {page}");
    assert!(
        page.contains("1.0.59"),
        "the flapping agent's newest: {page}"
    );
}

#[tokio::test]
async fn a_tenant_account_sees_its_tenant_however_many_come_before_it() {
    let v = views().await;
    for n in 0..500 {
        v.store
            .create_tenant(tenant(&format!("aaa-{n:03}")), format!("early {n}"))
            .await
            .expect("tenant");
    }
    let page = v.page(&v.viewer, "/console/").await;
    assert!(
        page.contains("data-tenant=\"acme\"") && page.contains("acme-se"),
        "{page}"
    );
    assert!(!page.contains("early 0"), "{page}");
}

#[tokio::test]
async fn the_timeline_shows_the_order_both_ways_with_its_body_escaped() {
    let v = views().await;
    let uri = format!("/console/orders/acme/{}", v.acme_event);
    let page = v.page(&v.viewer, &uri).await;
    for wanted in [
        "Webhook received",
        "Delivered and written in Mamut",
        "Mamut number M-1",
        "Signature",
    ] {
        assert!(
            page.contains(wanted),
            "the timeline lacks {wanted:?}: {page}"
        );
    }
    assert!(
        !page.contains("<script>alert"),
        "the body is not escaped: {page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    let dead = v
        .page(
            &v.operator,
            &format!("/console/orders/other/{}", v.other_event),
        )
        .await;
    assert!(dead.contains("Mamut refused"), "{dead}");
}

#[tokio::test]
async fn a_tenant_account_cannot_open_another_tenants_timeline() {
    let v = views().await;
    let (status, _) = v
        .get(
            Some(&v.viewer),
            &format!("/console/orders/other/{}", v.other_event),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Its own tenant in the URL with another tenant's event: not found.
    let (status, page) = v
        .get(
            Some(&v.viewer),
            &format!("/console/orders/acme/{}", v.other_event),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("B-200"));
    let (status, _) = v
        .get(Some(&v.operator), "/console/orders/acme/not-a-number")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_audit_log_is_limited_to_the_callers_tenant() {
    let v = views().await;
    let page = v.page(&v.operator, "/console/audit").await;
    assert!(
        page.contains("audit-target-acme") && page.contains("audit-target-other"),
        "{page}"
    );
    let page = v.page(&v.viewer, "/console/audit").await;
    assert!(
        page.contains("audit-target-acme") && !page.contains("audit-target-other"),
        "{page}"
    );
}

#[tokio::test]
async fn pages_are_in_the_accounts_language_and_need_a_session() {
    let v = views().await;
    let page = v.page(&v.swedish_admin, "/console/").await;
    assert!(
        page.contains("Översikt") && page.contains("Ordrar per timme"),
        "{page}"
    );
    let page = v
        .page(&v.swedish_admin, "/console/orders?order=A-100")
        .await;
    assert!(
        page.contains("Mamutnummer") && page.contains("levererad"),
        "{page}"
    );
    for uri in ["/console/", "/console/orders", "/console/audit"] {
        let (status, _) = v.get(None, uri).await;
        assert!(status.is_redirection(), "{uri} without a session: {status}");
    }
}
