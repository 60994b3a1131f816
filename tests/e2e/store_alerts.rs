//! The store's side of alerts, against both backends: alert settings, alerts opened once per
//! condition until resolved (and resolved once), digests claimed once per tenant and day, and
//! the facts the conditions read (dead letters, the oldest pending event, agent sessions, a
//! shop refusing changes). PostgreSQL needs a server as in [`super::store`]; without one those
//! tests say so and skip (in CI they fail).

use chrono::{Duration, Utc};
use relay::shop::{ApiSettings, Flow, Platform, ShopSettings};
use relay::store::{
    AnyStore, DispatchFailure, EventState, NewEvent, ShopRecord, StoreError, StoreLocation,
};
use rust_decimal::Decimal;
use shared::domain::{Change, DocumentType, StockLevel};
use shared::settings::Secret;
use shared::signature::WebhookSecret;
use shared::{AgentId, ArticleNumber, ShopId, TenantId};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

fn shop_id(id: &str) -> ShopId {
    ShopId::new(id).expect("valid shop")
}

async fn acme(store: &AnyStore) {
    store
        .create_tenant(tenant("acme"), "Acme AB".into())
        .await
        .expect("tenant");
    store
        .create_tenant(tenant("other"), "Other AB".into())
        .await
        .expect("tenant");
    let settings = ShopSettings {
        flow: Flow::Erp,
        api: Some(ApiSettings {
            platform: Platform::Nordisk,
            url: "https://shop.example/v1".into(),
            requests_per_sec: 5,
        }),
        ..ShopSettings::default()
    };
    store
        .add_shop(ShopRecord {
            shop_id: shop_id("erp-se"),
            tenant_id: tenant("acme"),
            webhook_secrets: vec![WebhookSecret::from_bytes(vec![7; 32]).expect("key")],
            trigger_statuses: vec!["confirmed".into()],
            document_type: DocumentType::Order,
            settings,
            api_key: Some(Secret::new("api-key")),
        })
        .await
        .expect("shop");
}

fn event(webhook: &str) -> NewEvent {
    NewEvent {
        tenant_id: tenant("acme"),
        shop_id: shop_id("erp-se"),
        webhook_id: webhook.into(),
        order_id: format!("o-{webhook}"),
        order_status: "confirmed".into(),
        document_type: DocumentType::Order,
        payload: "{}".into(),
        state: EventState::Pending,
        hold_reason: None,
        received_headers: None,
    }
}

fn stock(quantity: i64) -> Change {
    Change::Stock(StockLevel {
        article_number: ArticleNumber::new("MUG").expect("valid article"),
        warehouse: None,
        quantity: Decimal::from(quantity),
    })
}

async fn settings_are_kept_per_tenant(store: &AnyStore) {
    acme(store).await;
    assert_eq!(
        store.alert_settings(tenant("acme")).await.expect("read"),
        None
    );
    store
        .put_alert_settings(tenant("acme"), r#"{"emails":["ops@acme.example"]}"#.into())
        .await
        .expect("stored");
    store
        .put_alert_settings(tenant("acme"), r#"{"digest":false}"#.into())
        .await
        .expect("replaced");
    assert_eq!(
        store
            .alert_settings(tenant("acme"))
            .await
            .expect("read")
            .as_deref(),
        Some(r#"{"digest":false}"#)
    );
    assert_eq!(
        store.alert_settings(tenant("other")).await.expect("read"),
        None
    );
    let all = store.all_alert_settings().await.expect("all");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, tenant("acme"));
    assert!(matches!(
        store
            .put_alert_settings(tenant("nobody"), "{}".into())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn an_alert_opens_once_and_resolves_once(store: &AnyStore) {
    acme(store).await;
    let opened = store
        .open_alert(tenant("acme"), "agent_offline".into(), "gone".into())
        .await
        .expect("open")
        .expect("the first open wins");
    assert_eq!(opened.condition, "agent_offline");
    assert_eq!(opened.resolved_at, None);
    assert_eq!(
        store
            .open_alert(tenant("acme"), "agent_offline".into(), "still gone".into())
            .await
            .expect("open"),
        None,
        "one open alert per condition"
    );
    store
        .open_alert(tenant("other"), "agent_offline".into(), "gone".into())
        .await
        .expect("open")
        .expect("another tenant's is its own");
    store
        .open_alert(tenant("acme"), "queue_age".into(), "late".into())
        .await
        .expect("open")
        .expect("another condition is its own");
    let open = store.alerts(tenant("acme"), true, 10).await.expect("list");
    assert_eq!(open.len(), 2);

    let resolved = store
        .resolve_alert(tenant("acme"), "agent_offline".into())
        .await
        .expect("resolve")
        .expect("the first resolve wins");
    assert_eq!(resolved.id, opened.id);
    assert!(resolved.resolved_at.is_some());
    assert_eq!(
        store
            .resolve_alert(tenant("acme"), "agent_offline".into())
            .await
            .expect("resolve"),
        None,
        "resolved once"
    );
    let again = store
        .open_alert(tenant("acme"), "agent_offline".into(), "gone again".into())
        .await
        .expect("open")
        .expect("a cleared condition may open again");
    assert_ne!(again.id, opened.id);
    assert_eq!(
        store
            .alerts(tenant("acme"), false, 10)
            .await
            .expect("all")
            .len(),
        3
    );
    assert_eq!(
        store
            .alerts(tenant("acme"), true, 10)
            .await
            .expect("open")
            .len(),
        2
    );
}

async fn a_digest_is_claimed_once_a_day(store: &AnyStore) {
    acme(store).await;
    let day = "2026-12-02".to_string();
    assert!(
        store
            .claim_digest(tenant("acme"), day.clone())
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim_digest(tenant("acme"), day.clone())
            .await
            .expect("claim")
    );
    assert!(
        store
            .claim_digest(tenant("other"), day.clone())
            .await
            .expect("claim")
    );
    assert!(
        store
            .claim_digest(tenant("acme"), "2026-12-03".into())
            .await
            .expect("claim")
    );
    store
        .release_digest(tenant("acme"), day.clone())
        .await
        .expect("release");
    assert!(
        store
            .claim_digest(tenant("acme"), day)
            .await
            .expect("claimed again")
    );
}

async fn facts_show_dead_letters_waiting_events_agents_and_refusing_shops(store: &AnyStore) {
    acme(store).await;
    let hour_ago = Utc::now() - Duration::hours(1);
    let facts = store
        .alert_facts(tenant("acme"), 1, hour_ago)
        .await
        .expect("facts");
    assert_eq!(facts, Default::default(), "nothing yet");

    let first = store.ingest(event("w-1")).await.expect("stored");
    store.ingest(event("w-2")).await.expect("stored");
    let facts = store
        .alert_facts(tenant("acme"), 1, hour_ago)
        .await
        .expect("facts");
    let oldest = facts.oldest_pending.expect("events wait");
    assert!(Utc::now() - oldest < Duration::minutes(1));
    store
        .dead_letter(tenant("acme"), first.event_id, "refused".into())
        .await
        .expect("dead");
    let facts = store
        .alert_facts(tenant("acme"), 1, hour_ago)
        .await
        .expect("facts");
    assert_eq!(facts.dead_letters, 1);
    let counts = store
        .digest_counts(tenant("acme"), hour_ago)
        .await
        .expect("counts");
    assert_eq!(counts.dead_letters, 1);
    assert!(!counts.is_empty());
    let other = store
        .digest_counts(tenant("other"), hour_ago)
        .await
        .expect("counts");
    assert!(other.is_empty(), "{other:?}");

    let agent = AgentId::new("agt-1").expect("id");
    let session = store
        .open_agent_session(
            agent.clone(),
            tenant("acme"),
            "i-1".into(),
            "1.0.0".into(),
            None,
        )
        .await
        .expect("session");
    let facts = store
        .alert_facts(tenant("acme"), 1, hour_ago)
        .await
        .expect("facts");
    assert!(facts.agents.ever_connected);
    assert!(facts.agents.open_last_seen.is_some());
    store.close_agent_session(session).await.expect("closed");
    let facts = store
        .alert_facts(tenant("acme"), 1, hour_ago)
        .await
        .expect("facts");
    assert_eq!(facts.agents.open_last_seen, None);
    assert!(facts.agents.last_ended.is_some());
    assert!(
        !store
            .alert_facts(tenant("other"), 1, hour_ago)
            .await
            .expect("facts")
            .agents
            .ever_connected
    );

    store
        .insert_push(tenant("acme"), agent.clone(), "p-1".into(), stock(1))
        .await
        .expect("push");
    let due = store
        .due_dispatch(shop_id("erp-se"), 10)
        .await
        .expect("due");
    let item = due.first().expect("a change for the shop");
    let later = Utc::now() + Duration::minutes(5);
    store
        .dispatch_failed(
            vec![(item.id, item.version)],
            DispatchFailure {
                reason: "503".into(),
                retry_at: Some(later),
            },
            20,
        )
        .await
        .expect("failed");
    let facts = store
        .alert_facts(tenant("acme"), 1, hour_ago)
        .await
        .expect("facts");
    assert_eq!(facts.refusing_shops.len(), 1, "{facts:?}");
    assert_eq!(facts.refusing_shops[0].shop_id, shop_id("erp-se"));
    assert_eq!(facts.refusing_shops[0].failures_in_a_row, 1);
    let facts = store
        .alert_facts(tenant("acme"), 2, hour_ago)
        .await
        .expect("facts");
    assert!(
        facts.refusing_shops.is_empty(),
        "one failure is not two in a row"
    );
    assert_eq!(
        store
            .digest_counts(tenant("acme"), hour_ago)
            .await
            .expect("counts")
            .dead_dispatch,
        0
    );
}

conformance!(
    settings_are_kept_per_tenant,
    an_alert_opens_once_and_resolves_once,
    a_digest_is_claimed_once_a_day,
    facts_show_dead_letters_waiting_events_agents_and_refusing_shops,
);
