//! The webhook as received, for an order's timeline: the kept headers (never a credential),
//! which secret verified the signature, and the body before any edit — read back from both
//! stores, and written by a live relay's ingest.

use std::sync::Arc;

use relay::store::{
    AnyStore, Enriched, EventState, NewEvent, ReceivedHeaders, ShopRecord, StoreLocation,
};
use shared::domain::DocumentType;
use shared::signature::WebhookSecret;
use shared::{ShopId, TenantId};
use tests::shop::order_body;
use tests::{Pki, RelayOptions, RelayProcess, SHOP, TENANT};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

async fn with_shop(store: &AnyStore, tenant_id: &str, shop: &str) {
    store
        .create_tenant(tenant(tenant_id), tenant_id.into())
        .await
        .expect("tenant");
    store
        .add_shop(ShopRecord {
            shop_id: ShopId::new(shop).expect("valid shop"),
            tenant_id: tenant(tenant_id),
            webhook_secrets: vec![WebhookSecret::from_bytes(vec![7; 32]).expect("key")],
            trigger_statuses: vec!["confirmed".into()],
            document_type: DocumentType::Order,
            settings: Default::default(),
            api_key: None,
        })
        .await
        .expect("shop");
}

fn event(tenant_id: &str, shop: &str, webhook: &str, headers: Option<String>) -> NewEvent {
    NewEvent {
        tenant_id: tenant(tenant_id),
        shop_id: ShopId::new(shop).expect("valid shop"),
        webhook_id: webhook.into(),
        order_id: format!("order-{webhook}"),
        order_status: "confirmed".into(),
        document_type: DocumentType::Order,
        payload: format!("{{\"webhook\":\"{webhook}\"}}"),
        state: EventState::Held,
        hold_reason: Some("held, the order is invalid".into()),
        received_headers: headers,
    }
}

async fn the_received_webhook_reads_back_for_its_tenant_only(store: &AnyStore) {
    with_shop(store, "acme", "acme-se").await;
    with_shop(store, "other", "other-se").await;
    let kept = ReceivedHeaders::new(
        [
            ("content-type", "application/json"),
            ("webhook-id", "msg_1"),
            ("authorization", "Bearer secret"),
        ],
        1,
        2,
    );
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let stored = store
        .ingest(event(
            "acme",
            "acme-se",
            "msg_1",
            Some(kept.encode().expect("encodes")),
        ))
        .await
        .expect("ingest");
    let received = store
        .received_webhook(tenant("acme"), stored.event_id)
        .await
        .expect("reads")
        .expect("the event is there");
    assert_eq!(received.signature, "verified with secret 2 of 2");
    assert_eq!(received.headers.len(), 2, "{:?}", received.headers);
    assert_eq!(received.headers["webhook-id"], "msg_1");
    assert!(!received.headers.contains_key("authorization"));
    assert_eq!(received.body, "{\"webhook\":\"msg_1\"}");
    assert!(received.received_at > before, "{}", received.received_at);
    // Another tenant's event, and an id that is none, read as nothing.
    assert_eq!(
        store
            .received_webhook(tenant("other"), stored.event_id)
            .await
            .expect("reads"),
        None
    );
    assert_eq!(
        store
            .received_webhook(tenant("acme"), stored.event_id + 1000)
            .await
            .expect("reads"),
        None
    );
}

async fn an_edited_event_shows_the_body_received_and_an_old_one_its_verdict(store: &AnyStore) {
    with_shop(store, "acme", "acme-se").await;
    let stored = store
        .ingest(event("acme", "acme-se", "msg_old", None))
        .await
        .expect("ingest");
    store
        .edit_event(
            tenant("acme"),
            stored.event_id,
            "{\"edited\":true}".into(),
            "confirmed".into(),
            "payload edited by an operator".into(),
        )
        .await
        .expect("edit");
    let received = store
        .received_webhook(tenant("acme"), stored.event_id)
        .await
        .expect("reads")
        .expect("the event is there");
    assert_eq!(
        received.body, "{\"webhook\":\"msg_old\"}",
        "the body as received"
    );
    assert!(received.headers.is_empty());
    assert_eq!(
        received.signature,
        relay::store::received::VERIFIED_UNRECORDED
    );
}

/// A thin webhook's body is what the shop sent, also after the order fetched for it replaced
/// the stored body and after an operator edited that.
async fn a_thin_webhook_shows_the_thin_body_after_enrichment_and_edit(store: &AnyStore) {
    with_shop(store, "acme", "acme-se").await;
    let stored = store
        .ingest(NewEvent {
            state: EventState::Fetching,
            hold_reason: None,
            ..event("acme", "acme-se", "msg_thin", None)
        })
        .await
        .expect("ingest");
    assert_eq!(store.due_fetches(10).await.expect("claim").len(), 1);
    assert!(
        store
            .enriched(
                stored.event_id,
                "{\"order\":\"fetched\"}".into(),
                Enriched::Hold("held, the order is invalid".into()),
            )
            .await
            .expect("enrich")
    );
    let received = |store: &AnyStore| {
        let store = store.clone();
        async move {
            store
                .received_webhook(tenant("acme"), stored.event_id)
                .await
                .expect("reads")
                .expect("the event is there")
                .body
        }
    };
    assert_eq!(received(store).await, "{\"webhook\":\"msg_thin\"}");
    store
        .edit_event(
            tenant("acme"),
            stored.event_id,
            "{\"edited\":true}".into(),
            "confirmed".into(),
            "payload edited by an operator".into(),
        )
        .await
        .expect("edit");
    assert_eq!(received(store).await, "{\"webhook\":\"msg_thin\"}");
}

conformance!(
    the_received_webhook_reads_back_for_its_tenant_only,
    an_edited_event_shows_the_body_received_and_an_old_one_its_verdict,
    a_thin_webhook_shows_the_thin_body_after_enrichment_and_edit,
);

/// A live relay keeps the allow-listed headers of a webhook and which secret verified it,
/// and drops the credentials a shop (or a proxy) sent along.
#[tokio::test]
async fn ingest_keeps_the_safe_headers_and_the_secret_that_verified_the_webhook() {
    let relay = RelayProcess::start(
        Arc::new(Pki::new()),
        RelayOptions {
            tls: false,
            ..RelayOptions::default()
        },
    )
    .await;
    let admin = relay.admin();
    admin.create_tenant(TENANT).await;
    let old = relay.shop();
    let new = relay.shop();
    let shop = admin
        .add_shop_with(
            TENANT,
            serde_json::json!({
                "shop_id": SHOP,
                "webhook_secrets": [old.secret_text(), new.secret_text()],
                "trigger_statuses": ["confirmed"],
            }),
        )
        .await;
    assert_eq!(shop["webhook_secret_count"], 2, "{shop}");
    let body = order_body(SHOP, "o-1", "confirmed");
    let id = new.next_id();
    let mut headers = new.headers(&id, &body);
    headers.extend([
        (
            "authorization".to_owned(),
            "Bearer shop-credential".to_owned(),
        ),
        ("cookie".to_owned(), "session=shop-cookie".to_owned()),
        ("x-api-key".to_owned(), "shop-api-key".to_owned()),
        (
            "user-agent".to_owned(),
            format!("shop/{}", "x".repeat(1000)),
        ),
    ]);
    let (status, reply) = new
        .send_with(SHOP, body.clone(), &headers)
        .await
        .expect("the relay answers");
    assert!(status.is_success(), "{status} {reply}");
    let event_id = reply["event_id"].as_i64().expect("an event id");
    let location = StoreLocation::parse(&relay.database_url()).expect("the relay's store");
    let store = AnyStore::open(&location).await.expect("store opens");
    let received = store
        .received_webhook(tenant(TENANT), event_id)
        .await
        .expect("reads")
        .expect("the event is there");
    assert_eq!(received.signature, "verified with secret 2 of 2");
    assert_eq!(received.headers["webhook-id"], id);
    assert_eq!(received.headers["content-type"], "application/json");
    assert!(received.headers.contains_key("webhook-timestamp"));
    assert!(
        received.headers["user-agent"].len() < 300,
        "values are bounded"
    );
    for secret in ["authorization", "cookie", "x-api-key", "webhook-signature"] {
        assert!(!received.headers.contains_key(secret), "{secret} is kept");
    }
    assert_eq!(received.body.as_bytes(), body.as_slice());
}
