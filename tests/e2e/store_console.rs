//! The console's read queries on both stores: the overview's counts and charts' data, the
//! order search (every field, always within the tenant asked for) and one order's timeline
//! (both directions, never another tenant's event). Like [`super::store`], each test runs
//! against SQLite and PostgreSQL (skipped without a server, failing in CI).

use std::collections::HashSet;

use chrono::{Duration, Utc};
use relay::shop::{ApiSettings, Flow, Platform, ShopSettings, StatusRule};
use relay::store::{
    AnyStore, DispatchState, EventState, HistoryState, NewEvent, OrderQuery, ShopRecord,
    StoreLocation,
};
use shared::domain::{Change, DocumentType, OrderStatusChange};
use shared::settings::Secret;
use shared::signature::WebhookSecret;
use shared::{ShopId, TenantId};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

fn shop_id(id: &str) -> ShopId {
    ShopId::new(id).expect("valid shop")
}

fn shop(id: &str, tenant_id: &str) -> ShopRecord {
    let mut settings = ShopSettings {
        flow: Flow::Erp,
        ..ShopSettings::default()
    };
    settings.status_map.insert(
        "delivered".into(),
        StatusRule {
            shop_status: "shipped".into(),
            notify_customer: true,
            tracking: true,
            capture: true,
        },
    );
    settings.api = Some(ApiSettings {
        platform: Platform::Nordisk,
        url: "https://shop.example/v1".into(),
        requests_per_sec: 5,
    });
    ShopRecord {
        shop_id: shop_id(id),
        tenant_id: tenant(tenant_id),
        webhook_secrets: vec![WebhookSecret::from_bytes(vec![7; 32]).expect("key")],
        trigger_statuses: vec!["confirmed".into()],
        document_type: DocumentType::Order,
        settings,
        api_key: Some(Secret::new("api-key")),
    }
}

/// A webhook of `order` whose customer is `email`.
fn webhook(tenant_id: &str, shop: &str, webhook: &str, order: &str, email: &str) -> NewEvent {
    NewEvent {
        tenant_id: tenant(tenant_id),
        shop_id: shop_id(shop),
        webhook_id: webhook.into(),
        order_id: order.into(),
        order_status: "confirmed".into(),
        document_type: DocumentType::Order,
        payload: serde_json::json!({
            "order": { "id": order, "customer": { "email": email } }
        })
        .to_string(),
        state: EventState::Pending,
        hold_reason: None,
        received_headers: None,
    }
}

/// Tenants `acme` (shop `acme-se`) and `other` (shop `other-se`), each with an order `1001`
/// of its own; acme's delivered as Mamut order `M-77`, then a second webhook of the same
/// order, and a third order with a body that is not JSON. Returns acme's first event's id.
async fn two_tenants(store: &AnyStore) -> i64 {
    for (t, s) in [("acme", "acme-se"), ("other", "other-se")] {
        store
            .create_tenant(tenant(t), format!("{t} AB"))
            .await
            .expect("tenant");
        store.add_shop(shop(s, t)).await.expect("shop");
    }
    let first = store
        .ingest(webhook("acme", "acme-se", "w-1", "1001", "Anna@Example.se"))
        .await
        .expect("ingest")
        .event_id;
    store
        .ingest(webhook(
            "other",
            "other-se",
            "w-1",
            "1001",
            "anna@example.se",
        ))
        .await
        .expect("ingest");
    let picked = store
        .next_deliveries(tenant("acme"), HashSet::new(), HashSet::new(), 10)
        .await
        .expect("deliveries");
    assert_eq!(picked.len(), 1);
    assert!(
        store
            .ack(tenant("acme"), first, Some("M-77".into()), false)
            .await
            .expect("ack")
    );
    store
        .ingest(webhook("acme", "acme-se", "w-2", "1001", "anna@example.se"))
        .await
        .expect("ingest");
    let mut not_json = webhook("acme", "acme-se", "w-3", "1002", "x");
    not_json.payload = "anna@example.se is not JSON".into();
    store.ingest(not_json).await.expect("ingest");
    first
}

async fn search(store: &AnyStore, f: impl FnOnce(&mut OrderQuery)) -> Vec<(String, String, i64)> {
    let mut query = OrderQuery {
        limit: 100,
        ..OrderQuery::default()
    };
    f(&mut query);
    store
        .search_orders(query)
        .await
        .expect("search")
        .into_iter()
        .map(|hit| (hit.tenant_id.to_string(), hit.event.order_id, hit.event.id))
        .collect()
}

async fn the_order_search_finds_by_every_field_within_its_tenant(store: &AnyStore) {
    let first = two_tenants(store).await;
    let acme = Some(tenant("acme"));
    // By shop order id: a tenant's search never finds the other tenant's order of that id.
    let found = search(store, |q| {
        q.tenant = acme.clone();
        q.shop_order_id = Some("1001".into());
    })
    .await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|(t, o, _)| t == "acme" && o == "1001"));
    assert!(found[0].2 > found[1].2, "newest first: {found:?}");
    let everyone = search(store, |q| q.shop_order_id = Some("1001".into())).await;
    assert_eq!(everyone.len(), 3, "an operator's search spans the tenants");
    // By Mamut number, state and shop.
    let by_ref = search(store, |q| {
        q.tenant = acme.clone();
        q.mamut_ref = Some("M-77".into());
    })
    .await;
    assert_eq!(by_ref, vec![("acme".into(), "1001".into(), first)]);
    let delivered = search(store, |q| {
        q.tenant = Some(tenant("other"));
        q.state = Some(EventState::Delivered);
    })
    .await;
    assert!(delivered.is_empty(), "{delivered:?}");
    let by_shop = search(store, |q| {
        q.tenant = acme.clone();
        q.shop = Some(shop_id("other-se"));
    })
    .await;
    assert!(by_shop.is_empty(), "a shop of another tenant finds nothing");
    // By the customer's e-mail, any case; a body that is not JSON has no customer.
    let by_email = search(store, |q| {
        q.tenant = acme.clone();
        q.email = Some("ANNA@example.se".into());
    })
    .await;
    assert_eq!(by_email.len(), 2, "{by_email:?}");
    assert!(by_email.iter().all(|(t, o, _)| t == "acme" && o == "1001"));
    // The match is made before the limit: the newest body containing the e-mail (not
    // JSON) does not use up a search of one.
    let newest_match = search(store, |q| {
        q.tenant = acme.clone();
        q.email = Some("anna@example.se".into());
        q.limit = 1;
    })
    .await;
    assert_eq!(newest_match.len(), 1, "{newest_match:?}");
    assert_eq!(newest_match[0].1, "1001");
    // Where no body fails to be JSON, the same exact match (the other tenant's one).
    let other_email = search(store, |q| {
        q.tenant = Some(tenant("other"));
        q.email = Some("ANNA@EXAMPLE.SE".into());
    })
    .await;
    assert_eq!(other_email.len(), 1, "{other_email:?}");
    assert_eq!(other_email[0].0, "other");
    // JSON that PostgreSQL's jsonb cannot hold (a `\u0000` in a string) is still searched.
    let mut nul = webhook("other", "other-se", "w-nul", "2001", "anna@example.se");
    nul.payload = nul.payload.replacen('{', r#"{"note":"a\u0000b","#, 1);
    assert!(serde_json::from_str::<serde_json::Value>(&nul.payload).is_ok());
    store.ingest(nul).await.expect("ingest");
    let with_nul = search(store, |q| {
        q.tenant = Some(tenant("other"));
        q.email = Some("anna@example.se".into());
    })
    .await;
    assert_eq!(with_nul.len(), 2, "{with_nul:?}");
    assert_eq!(with_nul[0].1, "2001");
    // A customer named elsewhere in the body is not the customer.
    let elsewhere = search(store, |q| {
        q.tenant = acme.clone();
        q.email = Some("example.se".into());
    })
    .await;
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    // The search covers a bounded window: one ended before the events found nothing.
    let old_window = search(store, |q| {
        q.tenant = acme.clone();
        q.email = Some("anna@example.se".into());
        q.from = Some(Utc::now() - Duration::days(800));
        q.to = Some(Utc::now() - Duration::hours(1));
    })
    .await;
    assert!(old_window.is_empty(), "{old_window:?}");
    // By date: today's, and none tomorrow.
    let today = search(store, |q| {
        q.tenant = acme.clone();
        q.from = Some(Utc::now() - Duration::hours(1));
    })
    .await;
    assert_eq!(today.len(), 3);
    let tomorrow = search(store, |q| {
        q.tenant = acme.clone();
        q.from = Some(Utc::now() + Duration::days(1));
    })
    .await;
    assert!(tomorrow.is_empty());
    let before = search(store, |q| {
        q.tenant = acme.clone();
        q.to = Some(Utc::now() - Duration::days(1));
    })
    .await;
    assert!(before.is_empty());
    // The limit holds.
    let one = search(store, |q| {
        q.tenant = acme.clone();
        q.limit = 1;
    })
    .await;
    assert_eq!(one.len(), 1);
}

async fn an_orders_record_joins_its_webhooks_history_and_status_changes(store: &AnyStore) {
    let first = two_tenants(store).await;
    let agent = store
        .create_agent(tenant("acme"), "mamut".into())
        .await
        .expect("agent")
        .id;
    let change = Change::OrderStatus(OrderStatusChange {
        shop_id: shop_id("acme-se"),
        shop_order_id: "1001".into(),
        mamut_ref: "M-77".into(),
        mamut_status: "delivered".into(),
        tracking_number: Some("TRACK-1".into()),
    });
    store
        .insert_push(tenant("acme"), agent, "p-1".into(), change)
        .await
        .expect("push");
    let record = store
        .order_record(tenant("acme"), first, 500)
        .await
        .expect("read")
        .expect("acme's event");
    assert!(!record.truncated);
    assert_eq!(record.event.id, first);
    assert_eq!(record.event.mamut_ref.as_deref(), Some("M-77"));
    assert!(record.body.payload.contains("Anna@Example.se"));
    assert_eq!(record.events.len(), 2, "both webhooks of the order");
    let states: Vec<HistoryState> = record.history.iter().map(|h| h.entry.state).collect();
    assert_eq!(
        states,
        vec![
            HistoryState::Pending,
            HistoryState::Delivered,
            HistoryState::Pending
        ],
        "in time order"
    );
    assert!(
        record
            .history
            .windows(2)
            .all(|w| w[0].entry.at <= w[1].entry.at)
    );
    assert_eq!(record.dispatch.len(), 1);
    assert_eq!(record.dispatch[0].state, DispatchState::Pending);
    assert_eq!(record.dispatch[0].change["tracking_number"], "TRACK-1");
    // Another tenant's event is not found by its id.
    assert!(
        store
            .order_record(tenant("other"), first, 500)
            .await
            .expect("read")
            .is_none()
    );
}

async fn a_long_timeline_keeps_its_newest_entries_and_says_so(store: &AnyStore) {
    let first = two_tenants(store).await;
    let record = store
        .order_record(tenant("acme"), first, 1)
        .await
        .expect("read")
        .expect("acme's event");
    assert!(record.truncated);
    assert_eq!(record.events.len(), 1);
    assert!(record.events[0].id > first, "the newest webhook is kept");
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].event_id, record.events[0].id);
    let record = store
        .order_record(tenant("acme"), first, 2)
        .await
        .expect("read")
        .expect("acme's event");
    assert_eq!(
        record.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![first, record.events[1].id],
        "oldest first"
    );
    let states: Vec<HistoryState> = record.history.iter().map(|h| h.entry.state).collect();
    assert_eq!(
        states,
        vec![HistoryState::Delivered, HistoryState::Pending],
        "the newest two, oldest first"
    );
    assert!(record.truncated);
}

async fn each_agents_newest_session_is_found_however_often_another_reconnected(store: &AnyStore) {
    two_tenants(store).await;
    let flapping = store
        .create_agent(tenant("acme"), "kassan".into())
        .await
        .expect("agent")
        .id;
    let steady = store
        .create_agent(tenant("acme"), "lagret".into())
        .await
        .expect("agent")
        .id;
    let session = |agent: &shared::AgentId, version: &str| {
        store.open_agent_session(
            agent.clone(),
            tenant("acme"),
            "relay-1".into(),
            version.into(),
            None,
        )
    };
    let steady_session = session(&steady, "2.0.0").await.expect("session");
    let mut newest = 0;
    for n in 0..60 {
        newest = session(&flapping, &format!("1.0.{n}"))
            .await
            .expect("session");
    }
    let latest = store
        .latest_agent_sessions(tenant("acme"))
        .await
        .expect("latest");
    let ids: Vec<i64> = latest.iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        vec![newest, steady_session],
        "one per agent, newest first"
    );
    assert_eq!(latest[0].agent_version, "1.0.59");
    assert!(
        store
            .latest_agent_sessions(tenant("other"))
            .await
            .expect("latest")
            .is_empty()
    );
    assert_eq!(store.agents(tenant("acme")).await.expect("agents").len(), 2);
}

async fn a_tenant_is_read_by_its_id(store: &AnyStore) {
    two_tenants(store).await;
    let other = store
        .tenant(tenant("other"))
        .await
        .expect("read")
        .expect("tenant other");
    assert_eq!(other.name, "other AB");
    assert!(
        store
            .tenant(tenant("nobody"))
            .await
            .expect("read")
            .is_none()
    );
}

async fn the_overview_counts_and_samples_each_tenant_apart(store: &AnyStore) {
    two_tenants(store).await;
    let tenants: Vec<String> = store
        .tenants(10)
        .await
        .expect("tenants")
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(tenants, vec!["acme", "other"]);
    let acme = store.queue_stats(tenant("acme")).await.expect("stats");
    assert_eq!(
        (acme.pending, acme.fetching, acme.dead, acme.held),
        (2, 0, 0, 0)
    );
    assert!(acme.oldest_pending_at.is_some());
    let other = store.queue_stats(tenant("other")).await.expect("stats");
    assert_eq!(other.pending, 1);
    let since = Utc::now() - Duration::hours(24);
    let hours = store
        .orders_per_hour(tenant("acme"), since)
        .await
        .expect("hours");
    assert_eq!(
        hours.iter().map(|h| h.orders).sum::<u64>(),
        2,
        "two orders: {hours:?}"
    );
    let times = store
        .delivery_times(tenant("acme"), since, 100)
        .await
        .expect("times");
    assert_eq!(times.len(), 1);
    assert!(times[0].delivered_at >= times[0].received_at);
    assert!(
        store
            .delivery_times(tenant("other"), since, 100)
            .await
            .expect("times")
            .is_empty()
    );
    let shops = store.shop_activity(tenant("acme")).await.expect("shops");
    assert_eq!(shops.len(), 1);
    assert_eq!(shops[0].shop_id, shop_id("acme-se"));
    assert!(shops[0].last_delivered_at.is_some() && shops[0].last_dispatch_at.is_none());
    assert!(
        store
            .shop_activity(tenant("other"))
            .await
            .expect("shops")
            .is_empty()
    );
}

conformance!(
    the_order_search_finds_by_every_field_within_its_tenant,
    an_orders_record_joins_its_webhooks_history_and_status_changes,
    the_overview_counts_and_samples_each_tenant_apart,
    a_long_timeline_keeps_its_newest_entries_and_says_so,
    each_agents_newest_session_is_found_however_often_another_reconnected,
    a_tenant_is_read_by_its_id,
);
