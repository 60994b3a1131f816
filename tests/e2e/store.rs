//! The store conformance suite: the relay's `AnyStore`, one suite for both backends: every
//! test below runs against SQLite and against PostgreSQL. The PostgreSQL half needs a server
//! (`RELAY_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`); each test
//! gets a database of its own. Without a server those tests say so and skip (in CI they fail).

use std::collections::HashSet;
use std::time::Duration;

use relay::shop::{ApiSettings, Flow, Platform, ShopSettings, StatusRule};
use relay::store::pg::PgStore;
use relay::store::sqlite::SqliteStore;
use relay::store::{
    AnyStore, DispatchFailure, DispatchState, Due, Enriched, EventState, Lease, NewEvent,
    ShopRecord, StoreError, StoreLocation,
};
use rust_decimal::Decimal;
use shared::domain::{Change, DocumentType, OrderStatusChange, StockLevel};
use shared::settings::Secret;
use shared::signature::WebhookSecret;
use shared::{AgentId, ArticleNumber, ShopId, TenantId};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

fn shop_id(id: &str) -> ShopId {
    ShopId::new(id).expect("valid shop")
}

fn shop(id: &str, tenant_id: &str, flow: Flow, api: bool) -> ShopRecord {
    let mut settings = ShopSettings {
        flow,
        ..ShopSettings::default()
    };
    settings.status_map.insert(
        "delivered".into(),
        StatusRule {
            shop_status: "shipped".into(),
            notify_customer: true,
            tracking: true,
            capture: false,
        },
    );
    if api {
        settings.api = Some(ApiSettings {
            platform: Platform::Nordisk,
            url: "https://shop.example/v1".into(),
            requests_per_sec: 5,
        });
    }
    ShopRecord {
        shop_id: shop_id(id),
        tenant_id: tenant(tenant_id),
        webhook_secrets: vec![WebhookSecret::from_bytes(vec![7; 32]).expect("key")],
        trigger_statuses: vec!["confirmed".into()],
        document_type: DocumentType::Order,
        settings,
        api_key: api.then(|| Secret::new("api-key")),
    }
}

fn event(tenant_id: &str, shop: &str, webhook: &str, order: &str, state: EventState) -> NewEvent {
    NewEvent {
        tenant_id: tenant(tenant_id),
        shop_id: shop_id(shop),
        webhook_id: webhook.into(),
        order_id: order.into(),
        order_status: "confirmed".into(),
        document_type: DocumentType::Order,
        payload: format!("{{\"order\":\"{order}\"}}"),
        state,
        hold_reason: None,
        received_headers: None,
    }
}

fn stock(article: &str, quantity: i64) -> Change {
    Change::Stock(StockLevel {
        article_number: ArticleNumber::new(article).expect("valid article"),
        warehouse: None,
        quantity: Decimal::from(quantity),
    })
}

async fn tenant_with_shops(store: &AnyStore) {
    store
        .create_tenant(tenant("acme"), "Acme AB".into())
        .await
        .expect("tenant");
    for (id, flow, api) in [
        ("erp-se", Flow::Erp, true),
        ("combo-no", Flow::Combo, true),
        ("ecom-dk", Flow::Ecom, true),
        ("no-api", Flow::Erp, false),
    ] {
        store
            .add_shop(shop(id, "acme", flow, api))
            .await
            .expect("shop");
    }
}

// ---- the suite ----

async fn tenants_shops_agents_and_keys(store: &AnyStore) {
    tenant_with_shops(store).await;
    assert!(matches!(
        store.create_tenant(tenant("acme"), "again".into()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.tenant_exists(tenant("acme")).await.expect("query"));
    assert!(!store.tenant_exists(tenant("nobody")).await.expect("query"));
    assert!(matches!(
        store
            .add_shop(shop("erp-se", "acme", Flow::Erp, true))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.add_shop(shop("x", "nobody", Flow::Erp, true)).await,
        Err(StoreError::NotFound(_))
    ));

    let read = store
        .shop(shop_id("erp-se"))
        .await
        .expect("query")
        .expect("the shop");
    assert_eq!(
        read.settings,
        shop("erp-se", "acme", Flow::Erp, true).settings
    );
    assert_eq!(read.api_key.as_ref().map(Secret::expose), Some("api-key"));
    let mut changed = read.clone();
    changed.settings.flow = Flow::Combo;
    changed.trigger_statuses = vec!["paid".into()];
    store.update_shop(changed).await.expect("update");
    let read = store
        .shop(shop_id("erp-se"))
        .await
        .expect("query")
        .expect("the shop");
    assert_eq!(read.settings.flow, Flow::Combo);
    assert_eq!(read.trigger_statuses, ["paid"]);
    let ids: Vec<String> = store
        .shops(Some(tenant("acme")))
        .await
        .expect("shops")
        .iter()
        .map(|s| s.shop_id.to_string())
        .collect();
    assert_eq!(ids, ["combo-no", "ecom-dk", "erp-se", "no-api"]);

    let agent = store
        .create_agent(tenant("acme"), "mamut-1".into())
        .await
        .expect("agent");
    let read = store
        .agent(agent.id.clone())
        .await
        .expect("query")
        .expect("agent");
    assert_eq!(read.tenant_id, tenant("acme"));
    assert!(read.revoked_at.is_none());
    store.revoke_agent(agent.id.clone()).await.expect("revoke");
    assert!(
        store
            .agent(agent.id)
            .await
            .expect("query")
            .expect("agent")
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        store
            .revoke_agent(AgentId::new("agt-none").expect("id"))
            .await,
        Err(StoreError::NotFound(_))
    ));

    let key = store.current_signing_key().await.expect("key");
    assert_eq!(key.secret.len(), 32);
    let again = store.current_signing_key().await.expect("key");
    assert_eq!(again.kid, key.kid, "the key stays the same");
    let found = store.signing_key(key.kid.clone()).await.expect("query");
    assert_eq!(found.map(|k| k.secret), Some(key.secret));
}

async fn webhooks_are_stored_once_with_their_history(store: &AnyStore) {
    tenant_with_shops(store).await;
    let first = store
        .ingest(event("acme", "erp-se", "w-1", "o-1", EventState::Pending))
        .await
        .expect("ingest");
    assert!(!first.duplicate);
    let again = store
        .ingest(event("acme", "erp-se", "w-1", "o-1", EventState::Pending))
        .await
        .expect("ingest");
    assert!(again.duplicate);
    assert_eq!(again.event_id, first.event_id);
    store
        .ingest(event("acme", "erp-se", "w-2", "o-2", EventState::Ignored))
        .await
        .expect("ingest");
    let all = store
        .list_events(tenant("acme"), None, 100)
        .await
        .expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].webhook_id, "w-2", "newest first");
    let ignored = store
        .list_events(tenant("acme"), Some(EventState::Ignored), 100)
        .await
        .expect("list");
    assert_eq!(ignored.len(), 1);
    let (summary, history) = store
        .event(tenant("acme"), first.event_id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(summary.state, EventState::Pending);
    assert_eq!(history.len(), 1);
    assert!(
        store
            .event(tenant("other"), first.event_id)
            .await
            .expect("query")
            .is_none()
    );
}

async fn delivery_keeps_order_and_records_outcomes(store: &AnyStore) {
    tenant_with_shops(store).await;
    let mut ids = Vec::new();
    for (webhook, order) in [
        ("w-1", "o-1"),
        ("w-2", "o-1"),
        ("w-3", "o-2"),
        ("w-4", "o-3"),
    ] {
        let stored = store
            .ingest(event("acme", "erp-se", webhook, order, EventState::Pending))
            .await
            .expect("ingest");
        ids.push(stored.event_id);
    }
    // o-4's first event is a thin webhook still fetching: nothing of o-4 goes before it.
    store
        .ingest(event("acme", "erp-se", "w-0", "o-4", EventState::Fetching))
        .await
        .expect("ingest");
    store
        .ingest(event("acme", "erp-se", "w-5", "o-4", EventState::Pending))
        .await
        .expect("ingest");

    let batch = store
        .next_deliveries(tenant("acme"), HashSet::new(), HashSet::new(), 10)
        .await
        .expect("select");
    let orders: Vec<&str> = batch.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(
        orders,
        ["o-1", "o-2", "o-3"],
        "one per order, none behind a fetch"
    );
    assert!(batch.iter().all(|e| e.attempt == 1));

    assert!(
        store
            .ack(tenant("acme"), ids[0], Some("10000".into()), false)
            .await
            .expect("ack")
    );
    assert!(
        !store
            .ack(tenant("acme"), ids[0], Some("10000".into()), false)
            .await
            .expect("ack")
    );
    assert!(
        !store
            .ack(tenant("other"), ids[2], None, false)
            .await
            .expect("ack")
    );
    store
        .record_failure(tenant("acme"), ids[2], "deadlock".into())
        .await
        .expect("failure");
    store
        .dead_letter(tenant("acme"), ids[3], "unknown article".into())
        .await
        .expect("dead");

    let exclude: HashSet<i64> = [ids[2]].into_iter().collect();
    let next = store
        .next_deliveries(tenant("acme"), exclude, HashSet::new(), 10)
        .await
        .expect("select");
    let orders: Vec<&str> = next.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(
        orders,
        ["o-1"],
        "the second event of o-1, now that the first is acked"
    );

    let (dead, history) = store
        .event(tenant("acme"), ids[3])
        .await
        .expect("query")
        .expect("event");
    assert_eq!(dead.state, EventState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("unknown article"));
    assert_eq!(history.last().map(|h| h.state.as_str()), Some("dead"));
    store.replay(tenant("acme"), ids[3]).await.expect("replay");
    assert!(matches!(
        store.replay(tenant("acme"), ids[3]).await,
        Err(StoreError::Conflict(_))
    ));
    let (delivered, _) = store
        .event(tenant("acme"), ids[0])
        .await
        .expect("query")
        .expect("event");
    assert_eq!(delivered.mamut_ref.as_deref(), Some("10000"));
}

async fn thin_webhooks_are_claimed_retried_and_enriched(store: &AnyStore) {
    tenant_with_shops(store).await;
    let stored = store
        .ingest(event("acme", "erp-se", "w-1", "o-1", EventState::Fetching))
        .await
        .expect("ingest");
    assert_eq!(store.next_fetch_at().await.expect("query"), Some(Due::Now));
    let jobs = store.due_fetches(10).await.expect("claim");
    assert_eq!(jobs.len(), 1);
    assert!(
        store.due_fetches(10).await.expect("claim").is_empty(),
        "a claimed fetch is not handed out twice"
    );
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    store
        .fetch_failed(stored.event_id, "503".into(), Some(later))
        .await
        .expect("failed");
    assert!(store.due_fetches(10).await.expect("claim").is_empty());
    assert!(store.next_fetch_at().await.expect("query").is_some());
    assert!(
        store
            .enriched(stored.event_id, "{}".into(), Enriched::Deliver)
            .await
            .expect("enrich")
    );
    assert!(
        !store
            .enriched(stored.event_id, "{}".into(), Enriched::Deliver)
            .await
            .expect("enrich")
    );
    assert_eq!(store.next_fetch_at().await.expect("query"), None);
    let (summary, history) = store
        .event(tenant("acme"), stored.event_id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(summary.state, EventState::Pending);
    let states: Vec<&str> = history.iter().map(|h| h.state.as_str()).collect();
    assert_eq!(states, ["fetching", "retry", "pending"]);

    // An order the shop can never return is given up: dead, and a replay fetches it again.
    let lost = store
        .ingest(event("acme", "erp-se", "w-2", "o-2", EventState::Fetching))
        .await
        .expect("ingest");
    assert_eq!(store.due_fetches(10).await.expect("claim").len(), 1);
    store
        .fetch_failed(lost.event_id, "404 not_found".into(), None)
        .await
        .expect("given up");
    let (dead, _) = store
        .event(tenant("acme"), lost.event_id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(dead.state, EventState::Dead);
    assert_eq!(store.next_fetch_at().await.expect("query"), None);
    store
        .replay(tenant("acme"), lost.event_id)
        .await
        .expect("replay");
    let (again, _) = store
        .event(tenant("acme"), lost.event_id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(
        again.state,
        EventState::Fetching,
        "a thin webhook is fetched again"
    );
    assert_eq!(store.due_fetches(10).await.expect("claim").len(), 1);
}

/// An invalid order is stored held with its reason, is never handed out for delivery and holds
/// back nothing; an operator's edit keeps the body received; a replay queues it; a thin
/// webhook whose fetched order is invalid is held too.
async fn held_orders_wait_for_an_edit_and_a_replay(store: &AnyStore) {
    tenant_with_shops(store).await;
    let mut bad = event("acme", "erp-se", "w-held", "o-held", EventState::Held);
    bad.hold_reason = Some("held, the order is invalid: order.total: -1 is negative".into());
    let received = bad.payload.clone();
    let held = store.ingest(bad).await.expect("ingest");
    assert_eq!(held.state, EventState::Held);
    let later = store
        .ingest(event(
            "acme",
            "erp-se",
            "w-later",
            "o-held",
            EventState::Pending,
        ))
        .await
        .expect("ingest");
    let queued = store
        .next_deliveries(tenant("acme"), HashSet::new(), HashSet::new(), 10)
        .await
        .expect("deliveries");
    let ids: Vec<i64> = queued.iter().map(|e| e.id).collect();
    assert_eq!(ids, [later.event_id], "the held event is not delivered");
    let (summary, history) = store
        .event(tenant("acme"), held.event_id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(summary.state, EventState::Held);
    assert_eq!(
        summary.last_error.as_deref(),
        Some("held, the order is invalid: order.total: -1 is negative")
    );
    assert!(
        history[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("order.total: -1 is negative")),
        "{history:?}"
    );
    let listed = store
        .list_events(tenant("acme"), Some(EventState::Held), 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(
        matches!(
            store
                .edit_event(
                    tenant("acme"),
                    later.event_id,
                    "{}".into(),
                    "paid".into(),
                    "x".into()
                )
                .await,
            Err(StoreError::Conflict(_))
        ),
        "a pending event cannot be edited"
    );
    assert!(matches!(
        store
            .edit_event(
                tenant("other"),
                held.event_id,
                "{}".into(),
                "paid".into(),
                "x".into()
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    for body in [r#"{"order":{"total":"1"}}"#, r#"{"order":{"total":"2"}}"#] {
        store
            .edit_event(
                tenant("acme"),
                held.event_id,
                body.into(),
                "paid".into(),
                "edited".into(),
            )
            .await
            .expect("edit");
    }
    let stored = store
        .event_payload(tenant("acme"), held.event_id)
        .await
        .expect("query")
        .expect("payload");
    assert_eq!(stored.payload, r#"{"order":{"total":"2"}}"#);
    assert_eq!(
        stored.original.as_deref(),
        Some(received.as_str()),
        "the body received is kept"
    );
    assert!(
        store
            .event_payload(tenant("other"), held.event_id)
            .await
            .expect("query")
            .is_none()
    );
    store
        .replay(tenant("acme"), held.event_id)
        .await
        .expect("replay");
    let (summary, history) = store
        .event(tenant("acme"), held.event_id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(summary.state, EventState::Pending);
    assert_eq!(summary.order_status, "paid");
    let states: Vec<&str> = history.iter().map(|h| h.state.as_str()).collect();
    assert_eq!(states, ["held", "edited", "edited", "pending"]);

    let thin = store
        .ingest(event(
            "acme",
            "erp-se",
            "w-thin",
            "o-thin",
            EventState::Fetching,
        ))
        .await
        .expect("ingest");
    assert!(
        store
            .enriched(
                thin.event_id,
                "{}".into(),
                Enriched::Hold("held: no lines".into())
            )
            .await
            .expect("enrich")
    );
    let (summary, _) = store
        .event(tenant("acme"), thin.event_id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(
        (summary.state, summary.last_error.as_deref()),
        (EventState::Held, Some("held: no lines"))
    );
}

async fn pushes_fan_out_by_flow_and_coalesce(store: &AnyStore) {
    tenant_with_shops(store).await;
    let agent = AgentId::new("agt-1").expect("id");
    let shops = store
        .insert_push(tenant("acme"), agent.clone(), "p-1".into(), stock("MUG", 1))
        .await
        .expect("push");
    let names: Vec<String> = shops.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        ["combo-no", "erp-se"],
        "ecom and shops without an API get nothing"
    );
    assert!(
        store
            .insert_push(tenant("acme"), agent.clone(), "p-1".into(), stock("MUG", 1))
            .await
            .expect("push")
            .is_empty(),
        "a repeated push is stored once"
    );
    // An order status goes only to its own shop, and only when its status is mapped.
    let status = |shop: &str, status: &str| {
        Change::OrderStatus(OrderStatusChange {
            shop_id: shop_id(shop),
            shop_order_id: "o-1".into(),
            mamut_ref: "10000".into(),
            mamut_status: status.into(),
            tracking_number: None,
        })
    };
    let to = store
        .insert_push(
            tenant("acme"),
            agent.clone(),
            "p-2".into(),
            status("erp-se", "delivered"),
        )
        .await
        .expect("push");
    assert_eq!(to, [shop_id("erp-se")]);
    let to = store
        .insert_push(
            tenant("acme"),
            agent.clone(),
            "p-3".into(),
            status("erp-se", "quotation"),
        )
        .await
        .expect("push");
    assert!(to.is_empty());
    assert_eq!(
        store
            .list_pushes(tenant("acme"), 10)
            .await
            .expect("list")
            .len(),
        3
    );

    let due = store
        .due_dispatch(shop_id("erp-se"), 100)
        .await
        .expect("due");
    assert_eq!(due.len(), 2);
    let mug = due
        .iter()
        .find(|d| matches!(d.change, Change::Stock(_)))
        .expect("the stock row")
        .clone();
    // A newer value arrives while the old one is being sent: the old send does not finish it.
    store
        .insert_push(tenant("acme"), agent.clone(), "p-4".into(), stock("MUG", 5))
        .await
        .expect("push");
    store
        .dispatch_done(vec![(mug.id, mug.version)])
        .await
        .expect("done");
    let due = store
        .due_dispatch(shop_id("erp-se"), 100)
        .await
        .expect("due");
    let newer = due
        .iter()
        .find(|d| d.id == mug.id)
        .expect("still pending with the newer value");
    assert_eq!(newer.change, stock("MUG", 5));
    assert_eq!(newer.version, mug.version + 1);

    // Retry, then dead after the bound, then replay, then superseded by a later success.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let failure = |retry_at: Option<chrono::DateTime<chrono::Utc>>| DispatchFailure {
        reason: "503".into(),
        retry_at,
    };
    store
        .dispatch_failed(vec![(newer.id, newer.version)], failure(Some(later)), 2)
        .await
        .expect("failed");
    assert!(
        store
            .due_dispatch(shop_id("erp-se"), 100)
            .await
            .expect("due")
            .iter()
            .all(|d| d.id != newer.id),
        "not due before its retry time"
    );
    assert!(
        store
            .next_dispatch_at(shop_id("erp-se"))
            .await
            .expect("query")
            .is_some()
    );
    store
        .dispatch_failed(vec![(newer.id, newer.version)], failure(Some(later)), 2)
        .await
        .expect("failed");
    let dead = store
        .list_dispatch(tenant("acme"), Some(DispatchState::Dead), 10)
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    let shop = store
        .replay_dispatch(tenant("acme"), dead[0].id)
        .await
        .expect("replay");
    assert_eq!(shop, shop_id("erp-se"));
    assert!(matches!(
        store.replay_dispatch(tenant("acme"), dead[0].id).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .dispatch_failed(vec![(newer.id, newer.version)], failure(None), 20)
        .await
        .expect("permanent");
    store
        .insert_push(tenant("acme"), agent, "p-5".into(), stock("MUG", 9))
        .await
        .expect("push");
    let due = store
        .due_dispatch(shop_id("erp-se"), 100)
        .await
        .expect("due");
    let fresh = due
        .iter()
        .find(|d| d.change == stock("MUG", 9))
        .expect("a new row next to the dead one");
    store
        .dispatch_done(vec![(fresh.id, fresh.version)])
        .await
        .expect("done");
    let superseded = store
        .list_dispatch(tenant("acme"), Some(DispatchState::Superseded), 10)
        .await
        .expect("list");
    assert_eq!(
        superseded.len(),
        1,
        "the dead value is superseded by the newer success"
    );
    let shops = store.shops_with_pending_dispatch().await.expect("query");
    assert!(shops.contains(&shop_id("combo-no")));

    // An older dead status change of an order cannot be replayed over a newer one that was sent.
    let agent = AgentId::new("agt-1").expect("id");
    store
        .insert_push(
            tenant("acme"),
            agent.clone(),
            "p-6".into(),
            status("erp-se", "delivered"),
        )
        .await
        .expect("push");
    let old = store
        .due_dispatch(shop_id("erp-se"), 100)
        .await
        .expect("due");
    let old = old
        .iter()
        .find(|d| matches!(d.change, Change::OrderStatus(_)))
        .expect("a status row");
    // The first status row of o-1 (p-2) is still pending ahead of it; send both.
    let mut sent: Vec<(i64, i64)> = store
        .due_dispatch(shop_id("erp-se"), 100)
        .await
        .expect("due")
        .iter()
        .map(|d| (d.id, d.version))
        .collect();
    store
        .dispatch_failed(vec![(old.id, old.version)], failure(None), 20)
        .await
        .expect("dead");
    sent.retain(|(id, _)| *id != old.id);
    store.dispatch_done(sent).await.expect("done");
    let next = store
        .due_dispatch(shop_id("erp-se"), 100)
        .await
        .expect("due");
    let newer = next
        .iter()
        .find(|d| matches!(d.change, Change::OrderStatus(_)))
        .expect("the next status row");
    store
        .dispatch_done(vec![(newer.id, newer.version)])
        .await
        .expect("done");
    assert!(matches!(
        store.replay_dispatch(tenant("acme"), old.id).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn leases_are_exclusive_until_they_expire(store: &AnyStore) {
    let name = || Lease::Shop(shop_id("erp-se"));
    assert!(
        store
            .acquire_lease(name(), "a".into(), 60_000, false)
            .await
            .expect("lease")
    );
    assert!(
        store
            .acquire_lease(name(), "a".into(), 60_000, false)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .acquire_lease(name(), "b".into(), 60_000, false)
            .await
            .expect("lease")
    );
    assert!(
        store
            .acquire_lease(name(), "b".into(), 60_000, true)
            .await
            .expect("take over")
    );
    assert!(
        !store
            .acquire_lease(name(), "a".into(), 60_000, false)
            .await
            .expect("lease")
    );
    store
        .release_lease(name(), "b".into())
        .await
        .expect("release");
    assert!(
        store
            .acquire_lease(name(), "a".into(), 1, false)
            .await
            .expect("lease")
    );
    // The short lease runs out; then another holder gets it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store
            .acquire_lease(name(), "c".into(), 60_000, false)
            .await
            .expect("lease")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::task::yield_now().await;
    }
}

async fn retention_removes_only_finished_work(store: &AnyStore) {
    tenant_with_shops(store).await;
    let done = store
        .ingest(event("acme", "erp-se", "w-1", "o-1", EventState::Pending))
        .await
        .expect("ingest");
    store
        .ack(tenant("acme"), done.event_id, None, false)
        .await
        .expect("ack");
    store
        .ingest(event("acme", "erp-se", "w-2", "o-2", EventState::Ignored))
        .await
        .expect("ingest");
    let waiting = store
        .ingest(event("acme", "erp-se", "w-3", "o-3", EventState::Pending))
        .await
        .expect("ingest");
    let agent = AgentId::new("agt-1").expect("id");
    store
        .insert_push(tenant("acme"), agent, "p-1".into(), stock("MUG", 1))
        .await
        .expect("push");
    let nothing = store
        .purge(chrono::Utc::now() - chrono::Duration::days(30), 100)
        .await
        .expect("purge");
    assert_eq!(nothing.events, 0, "nothing is old enough yet");
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    let first = store.purge(later, 1).await.expect("purge");
    assert_eq!(first.events, 1, "at most the limit per call");
    let second = store.purge(later, 1).await.expect("purge");
    assert_eq!(first.events + second.events, 2);
    assert_eq!(first.pushes + second.pushes, 1);
    let left = store
        .list_events(tenant("acme"), None, 10)
        .await
        .expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, waiting.event_id);
    assert_eq!(
        store
            .list_dispatch(tenant("acme"), Some(DispatchState::Pending), 10)
            .await
            .expect("list")
            .len(),
        2,
        "unsent changes are kept"
    );
}

// ---- running it against both stores ----

conformance!(
    tenants_shops_agents_and_keys,
    webhooks_are_stored_once_with_their_history,
    delivery_keeps_order_and_records_outcomes,
    thin_webhooks_are_claimed_retried_and_enriched,
    held_orders_wait_for_an_edit_and_a_replay,
    pushes_fan_out_by_flow_and_coalesce,
    leases_are_exclusive_until_they_expire,
    retention_removes_only_finished_work,
);

// ---- SQLite: first opens at the same time ----

/// `relay serve` and a `relay` command started together on an empty data directory both
/// migrate the fresh database: every opener succeeds and the schema ends at the latest
/// version, each migration applied once. Eight openers at once, twenty times over, so that
/// reading the schema version outside the write lock would show.
#[test]
fn sqlite_concurrent_first_opens_all_succeed() {
    const OPENERS: usize = 8;
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("relay.sqlite");
        let start = std::sync::Arc::new(std::sync::Barrier::new(OPENERS));
        let openers: Vec<_> = (0..OPENERS)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    SqliteStore::open(&path).map(drop)
                })
            })
            .collect();
        for (i, opener) in openers.into_iter().enumerate() {
            if let Err(e) = opener.join().expect("opener thread") {
                panic!("round {round}: opener {i} failed: {e}");
            }
        }
        let conn = rusqlite::Connection::open(&path).expect("open the database");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version");
        assert_eq!(
            version,
            relay::store::sqlite::SCHEMA_VERSION,
            "round {round}: schema version"
        );
    }
}

// ---- corrupt rows are errors, and the store's work ends with it ----

/// A row holding text this relay never writes (a hand-edited database) is an error that says
/// what is wrong, not a guess: an unknown event state does not read as pending.
#[tokio::test]
async fn sqlite_a_corrupt_row_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.sqlite");
    let store = AnyStore::open(&StoreLocation::Sqlite(path.clone()))
        .await
        .expect("store opens");
    tenant_with_shops(&store).await;
    let stored = store
        .ingest(event("acme", "erp-se", "w-1", "o-1", EventState::Pending))
        .await
        .expect("ingest");
    let conn = rusqlite::Connection::open(&path).expect("open the database");
    conn.execute(
        "UPDATE events SET state = 'pendng' WHERE id = ?1",
        [stored.event_id],
    )
    .expect("corrupt the row");
    drop(conn);
    let error = store
        .list_events(tenant("acme"), None, 10)
        .await
        .expect_err("a corrupt state is an error");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        r#"stored event state is invalid: "pendng""#
    );
}

#[tokio::test]
async fn postgres_a_corrupt_row_is_an_error_not_a_default() {
    let Some(db) = tests::pg::TestDb::create().await else {
        return;
    };
    let location = StoreLocation::parse(&db.url).expect("a PostgreSQL URL");
    let store = AnyStore::open(&location).await.expect("store opens");
    tenant_with_shops(&store).await;
    let stored = store
        .ingest(event("acme", "erp-se", "w-1", "o-1", EventState::Pending))
        .await
        .expect("ingest");
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE events SET state = 'pendng' WHERE id = $1",
            &[&stored.event_id],
        )
        .await
        .expect("corrupt the row");
    let error = store
        .list_events(tenant("acme"), None, 10)
        .await
        .expect_err("a corrupt state is an error");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        r#"stored event state is invalid: "pendng""#
    );
    db.drop().await;
}

// ---- a row that does not read back stops no other work ----

/// Edits the store's database by hand, as an operator or a bug might, with foreign keys not
/// checked (so that an id can be one no shop has).
async fn hand_edit(location: &StoreLocation, sql: &str) {
    match location {
        StoreLocation::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).expect("open the database");
            conn.execute_batch(&format!("PRAGMA foreign_keys = OFF; {sql}"))
                .expect("edit the database");
        }
        StoreLocation::Postgres(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("SET session_replication_role = replica; {sql}"))
                .await
                .expect("edit the database");
        }
    }
}

/// An event that is dead, with the reason in its last error and its history.
async fn dead_because(store: &AnyStore, id: i64, why: &str) {
    let (dead, history) = store
        .event(tenant("acme"), id)
        .await
        .expect("query")
        .expect("event");
    assert_eq!(dead.state, EventState::Dead, "event {id}");
    let reason = dead.last_error.expect("a reason");
    assert!(reason.starts_with(why), "event {id}: {reason}");
    let last = history.last().expect("history");
    assert_eq!(
        (last.state.as_str(), last.detail.as_deref()),
        ("dead", Some(reason.as_str()))
    );
}

/// A pending event whose stored shop id or document type does not read back is dead-lettered
/// when its turn comes, saying why; the tenant's other events are delivered all the same.
async fn an_unreadable_event_is_dead_lettered_and_delivery_goes_on(
    store: &AnyStore,
    location: &StoreLocation,
) {
    tenant_with_shops(store).await;
    let mut ids = Vec::new();
    for (webhook, order) in [
        ("w-1", "o-1"),
        ("w-2", "o-2"),
        ("w-3", "o-3"),
        ("w-4", "o-4"),
    ] {
        let stored = store
            .ingest(event("acme", "erp-se", webhook, order, EventState::Pending))
            .await
            .expect("ingest");
        ids.push(stored.event_id);
    }
    let (bad_shop, bad_type) = (ids[1], ids[2]);
    hand_edit(
        location,
        &format!(
            "UPDATE events SET shop_id = 'Bad Shop' WHERE id = {bad_shop};
             UPDATE events SET document_type = 'invoce' WHERE id = {bad_type};"
        ),
    )
    .await;
    let batch = store
        .next_deliveries(tenant("acme"), HashSet::new(), HashSet::new(), 10)
        .await
        .expect("an unreadable event fails no delivery");
    let sent: Vec<i64> = batch.iter().map(|e| e.id).collect();
    assert_eq!(sent, [ids[0], ids[3]]);
    assert!(
        store
            .next_deliveries(
                tenant("acme"),
                sent.into_iter().collect(),
                HashSet::new(),
                10
            )
            .await
            .expect("select")
            .is_empty(),
        "the unreadable events are dead, not handed out again"
    );
    // Repaired by hand, they show why they are dead.
    hand_edit(
        location,
        &format!(
            "UPDATE events SET shop_id = 'erp-se' WHERE id = {bad_shop};
             UPDATE events SET document_type = 'order' WHERE id = {bad_type};"
        ),
    )
    .await;
    dead_because(store, bad_shop, "the stored shop id is invalid: ").await;
    dead_because(store, bad_type, "the stored document type is invalid: ").await;
}

/// A thin webhook whose stored shop id does not read back is dead-lettered, saying why; the
/// other thin webhooks are fetched all the same, and a replay fetches it once it is repaired.
async fn an_unreadable_thin_webhook_is_dead_lettered_and_fetching_goes_on(
    store: &AnyStore,
    location: &StoreLocation,
) {
    tenant_with_shops(store).await;
    let mut ids = Vec::new();
    for (webhook, order) in [("w-1", "o-1"), ("w-2", "o-2")] {
        let stored = store
            .ingest(event(
                "acme",
                "erp-se",
                webhook,
                order,
                EventState::Fetching,
            ))
            .await
            .expect("ingest");
        ids.push(stored.event_id);
    }
    let bad = ids[0];
    let edit = format!("UPDATE events SET shop_id = 'Bad Shop' WHERE id = {bad}");
    hand_edit(location, &edit).await;
    let jobs = store
        .due_fetches(10)
        .await
        .expect("an unreadable thin webhook fails no fetch");
    let claimed: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(claimed, [ids[1]]);
    let repair = format!("UPDATE events SET shop_id = 'erp-se' WHERE id = {bad}");
    hand_edit(location, &repair).await;
    dead_because(store, bad, "the stored shop id is invalid: ").await;
    store.replay(tenant("acme"), bad).await.expect("replay");
    let jobs = store.due_fetches(10).await.expect("claim");
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [bad]);
}

/// Pending dispatch rows whose stored shop id does not read back are skipped by the sweep;
/// the other shops with pending rows are still found.
async fn an_unreadable_shop_id_leaves_the_other_shops_dispatching(
    store: &AnyStore,
    location: &StoreLocation,
) {
    tenant_with_shops(store).await;
    let agent = AgentId::new("agt-1").expect("id");
    let shops = store
        .insert_push(tenant("acme"), agent, "p-1".into(), stock("MUG", 1))
        .await
        .expect("push");
    assert_eq!(shops, [shop_id("combo-no"), shop_id("erp-se")]);
    let edit = "UPDATE dispatch SET shop_id = 'Bad Shop' WHERE shop_id = 'combo-no'";
    hand_edit(location, edit).await;
    let pending = store
        .shops_with_pending_dispatch()
        .await
        .expect("an unreadable shop id fails no sweep");
    assert_eq!(pending, [shop_id("erp-se")]);
}

macro_rules! hand_edited {
    ($($test:ident),* $(,)?) => {
        mod sqlite_hand_edited {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let location = super::StoreLocation::Sqlite(dir.path().join("relay.sqlite"));
                    let store = super::AnyStore::open(&location).await.expect("store opens");
                    super::$test(&store, &location).await;
                }
            )*
        }

        mod postgres_hand_edited {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(db) = tests::pg::TestDb::create().await else { return };
                    let location = super::StoreLocation::parse(&db.url).expect("a PostgreSQL URL");
                    let store = super::AnyStore::open(&location).await.expect("store opens");
                    super::$test(&store, &location).await;
                    db.drop().await;
                }
            )*
        }
    };
}

hand_edited!(
    an_unreadable_event_is_dead_lettered_and_delivery_goes_on,
    an_unreadable_thin_webhook_is_dead_lettered_and_fetching_goes_on,
    an_unreadable_shop_id_leaves_the_other_shops_dispatching,
);

/// Dropping the last handle to a PostgreSQL store ends its background tasks: the `LISTEN`
/// connection and the pool's connections (held by the ingest task) close.
#[tokio::test]
async fn postgres_a_dropped_store_closes_its_connections() {
    let Some(db) = tests::pg::TestDb::create().await else {
        return;
    };
    let location = StoreLocation::parse(&db.url).expect("a PostgreSQL URL");
    let store = AnyStore::open(&location).await.expect("store opens");
    tenant_with_shops(&store).await;
    store
        .ingest(event("acme", "erp-se", "w-1", "o-1", EventState::Pending))
        .await
        .expect("ingest");
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let others = || async {
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("count connections");
        row.get::<_, i64>(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while others().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the store never connected its LISTEN connection"
        );
        tokio::task::yield_now().await;
    }
    drop(store);
    while others().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the store's connections stayed open after it was dropped"
        );
        tokio::task::yield_now().await;
    }
    db.drop().await;
}

// ---- PostgreSQL: URLs mean what libpq says ----

/// A URL `psql` takes works here too: no `sslmode` (libpq's `prefer`) and `sslmode=require`
/// encrypt without verifying the server's certificate, so they connect to a stock server with
/// its self-signed certificate; `verify-full` verifies, and without the certificate's CA in
/// `sslrootcert` it fails saying so, naming the setting and not the password. Against a server
/// without TLS, `prefer` connects in plain and `require` says TLS is not offered.
#[tokio::test]
async fn postgres_urls_mean_what_libpq_says() {
    let Some(db) = tests::pg::TestDb::create().await else {
        return;
    };
    let base = db
        .url
        .strip_suffix("?sslmode=disable")
        .expect("the test database's URL")
        .to_owned();
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect without TLS");
    tokio::spawn(connection);
    let ssl: String = client
        .query_one("SHOW ssl", &[])
        .await
        .expect("show ssl")
        .get(0);
    let cert_file: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .expect("show ssl_cert_file")
        .get(0);
    drop(client);
    let connect = |url: String| async move {
        PgStore::connect(&url)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };

    if let Err(e) = connect(base.clone()).await {
        panic!("a plain URL ({base}) does not connect: {e}");
    }
    let require = connect(format!("{base}?sslmode=require")).await;
    if ssl != "on" {
        println!("the server has TLS off: only prefer and require are tried");
        let error = require.expect_err("require without TLS on the server");
        assert!(
            error.contains("does not offer TLS") && error.contains("sslmode=require"),
            "{error}"
        );
        db.drop().await;
        return;
    }
    if let Err(e) = require {
        panic!("sslmode=require does not connect: {e}");
    }

    // The password is checked after TLS, and not at all by a trusting local server: it must
    // not appear in what is said about TLS.
    let with_password = base.replacen("://", "://postgres:hunter2@", 1).replacen(
        "postgres:hunter2@postgres@",
        "postgres:hunter2@",
        1,
    );
    // A CA of our own, not the one that signed the server's certificate.
    let pki = tests::pki::Pki::new();
    let other_ca = pki.ca_file();
    let error = connect(format!(
        "{with_password}?sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    ))
    .await
    .expect_err("verify-full without the server's CA");
    assert!(
        error.contains("not trusted") && error.contains("sslrootcert=/path/to/ca.pem"),
        "the error says the certificate is not trusted and how to trust it: {error}"
    );
    assert!(
        error.contains(&format!(
            "sslmode=verify-full, sslrootcert={}",
            other_ca.display()
        )),
        "the error names the URL's setting: {error}"
    );
    assert!(!error.contains("hunter2"), "no password in: {error}");

    // With the server's own (self-signed) certificate as the root: verify-ca checks only who
    // signed it, so it connects by IP address; verify-full also checks the name.
    if std::fs::read(&cert_file).is_ok() && base.contains("127.0.0.1") {
        let root = format!("sslrootcert={cert_file}");
        if let Err(e) = connect(format!("{base}?sslmode=verify-ca&{root}")).await {
            panic!("verify-ca with the server's certificate as the root: {e}");
        }
        let error = connect(format!("{base}?sslmode=verify-full&{root}"))
            .await
            .expect_err("verify-full by an IP address the certificate does not hold");
        assert!(error.contains("not valid for the host name"), "{error}");
    } else {
        println!("the server's certificate ({cert_file}) is not readable: verify-ca not tried");
    }
    db.drop().await;
}
