//! The console's actions: the store operations they read (agent sessions, a tenant's agents,
//! failures grouped by reason), on both backends; and the browser scenario of an operator
//! replaying a dead letter and retrying an edited order (`tests/browser/actions.mjs`, skipped
//! without Chromium, node or `tests/browser/node_modules`, failing in CI).

use relay::shop::{ApiSettings, Flow, Platform, ShopSettings};
use relay::store::failures::{FailureKind, MAX_GROUP_IDS};
use relay::store::{AnyStore, DispatchFailure, EventState, NewEvent, ShopRecord, StoreLocation};
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

async fn tenant_with_shop(store: &AnyStore, tenant_id: &str, shop: &str) {
    store
        .create_tenant(tenant(tenant_id), format!("{tenant_id} AB"))
        .await
        .expect("tenant");
    store
        .add_shop(ShopRecord {
            shop_id: shop_id(shop),
            tenant_id: tenant(tenant_id),
            webhook_secrets: vec![WebhookSecret::from_bytes(vec![7; 32]).expect("key")],
            trigger_statuses: vec!["confirmed".into()],
            document_type: DocumentType::Order,
            settings: ShopSettings {
                flow: Flow::Erp,
                api: Some(ApiSettings {
                    platform: Platform::Nordisk,
                    url: "https://shop.example/v1".into(),
                    requests_per_sec: 5,
                }),
                ..ShopSettings::default()
            },
            api_key: Some(Secret::new("api-key")),
        })
        .await
        .expect("shop");
}

fn event(tenant_id: &str, shop: &str, order: &str, state: EventState) -> NewEvent {
    NewEvent {
        tenant_id: tenant(tenant_id),
        shop_id: shop_id(shop),
        webhook_id: format!("w-{order}"),
        order_id: order.into(),
        order_status: "confirmed".into(),
        document_type: DocumentType::Order,
        payload: format!("{{\"order\":\"{order}\"}}"),
        state,
        hold_reason: None,
        received_headers: None,
    }
}

/// Sessions are listed newest first per tenant, touched and closed once; a tenant's agents
/// are listed live ones first, then the revoked ones.
async fn agent_sessions_open_touch_close_and_list_newest_first(store: &AnyStore) {
    tenant_with_shop(store, "acme", "acme-se").await;
    tenant_with_shop(store, "other", "other-se").await;
    let agent = store
        .create_agent(tenant("acme"), "office".into())
        .await
        .expect("agent");
    let spare = store
        .create_agent(tenant("acme"), "spare".into())
        .await
        .expect("agent");
    store.revoke_agent(spare.id.clone()).await.expect("revoke");
    // Made after a revoked one, listed before it: live agents come first.
    store
        .create_agent(tenant("acme"), "later".into())
        .await
        .expect("agent");
    let first = store
        .open_agent_session(
            agent.id.clone(),
            tenant("acme"),
            "relay-a".into(),
            "1.2.0".into(),
            Some("192.0.2.7".into()),
        )
        .await
        .expect("open");
    let second = store
        .open_agent_session(
            agent.id.clone(),
            tenant("acme"),
            "relay-b".into(),
            "1.3.0".into(),
            None,
        )
        .await
        .expect("open");
    assert_ne!(first, second);
    store.close_agent_session(first).await.expect("close");
    store.touch_agent_session(second).await.expect("touch");
    // Closing twice and touching an ended session change nothing.
    let sessions = store
        .agent_sessions(tenant("acme"), 10)
        .await
        .expect("list");
    let ended_at = sessions[1].ended_at.expect("ended");
    store.close_agent_session(first).await.expect("close again");
    store.touch_agent_session(first).await.expect("touch ended");

    let sessions = store
        .agent_sessions(tenant("acme"), 10)
        .await
        .expect("list");
    assert_eq!(
        sessions.iter().map(|s| s.id).collect::<Vec<_>>(),
        [second, first]
    );
    let (live, ended) = (&sessions[0], &sessions[1]);
    assert_eq!(live.agent_id, agent.id);
    assert_eq!(live.instance, "relay-b");
    assert_eq!(live.agent_version, "1.3.0");
    assert_eq!(live.address, None);
    assert!(live.ended_at.is_none());
    assert!(live.last_seen_at >= live.connected_at);
    assert!(live.is_live(chrono::Utc::now()));
    assert_eq!(ended.address.as_deref(), Some("192.0.2.7"));
    assert_eq!(ended.ended_at, Some(ended_at), "closed once");
    assert_eq!(ended.last_seen_at, ended_at);
    assert!(!ended.is_live(chrono::Utc::now()));
    assert_eq!(
        store
            .agent_sessions(tenant("acme"), 1)
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        store
            .agent_sessions(tenant("other"), 10)
            .await
            .expect("list")
            .is_empty()
    );

    let agents = store.agents(tenant("acme")).await.expect("agents");
    assert_eq!(
        agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["office", "later", "spare"]
    );
    assert!(agents[0].revoked_at.is_none() && agents[1].revoked_at.is_none());
    assert!(agents[2].revoked_at.is_some());
    assert!(
        store
            .agents(tenant("other"))
            .await
            .expect("agents")
            .is_empty()
    );
}

/// Dead and held events group by their reason with numbers collapsed, per tenant scope; a
/// group's ids are those of its rows; dead dispatch rows group the same way.
async fn failures_group_by_reason_within_the_tenant_scope(store: &AnyStore) {
    tenant_with_shop(store, "acme", "acme-se").await;
    tenant_with_shop(store, "other", "other-se").await;
    let mut ids = Vec::new();
    for (tenant_id, shop, order, reason) in [
        (
            "acme",
            "acme-se",
            "o-1",
            "order 1001 failed: customer 17 unknown",
        ),
        (
            "acme",
            "acme-se",
            "o-2",
            "order 1002 failed: customer 18 unknown",
        ),
        ("acme", "acme-se", "o-3", "article missing"),
        (
            "other",
            "other-se",
            "o-4",
            "order 1004 failed: customer 19 unknown",
        ),
    ] {
        let stored = store
            .ingest(event(tenant_id, shop, order, EventState::Pending))
            .await
            .expect("ingest");
        store
            .dead_letter(tenant(tenant_id), stored.event_id, reason.into())
            .await
            .expect("dead letter");
        ids.push(stored.event_id);
    }
    let mut held = event("acme", "acme-se", "o-5", EventState::Held);
    held.hold_reason = Some("article missing".into());
    let held = store.ingest(held).await.expect("ingest");
    store
        .ingest(event("acme", "acme-se", "o-6", EventState::Pending))
        .await
        .expect("a pending event is no failure");

    let groups = store
        .failure_groups(Some(tenant("acme")), FailureKind::Event)
        .await
        .expect("groups");
    assert_eq!(groups.len(), 2, "{groups:?}");
    let mut keys: Vec<&str> = groups.iter().map(|g| g.key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["article missing", "order # failed: customer # unknown"]
    );
    for g in &groups {
        assert_eq!(g.count, 2);
        assert!(g.first_seen <= g.last_seen);
    }
    let article = groups
        .iter()
        .find(|g| g.key == "article missing")
        .expect("group");
    assert_eq!(
        article.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        [held.event_id, ids[2]],
        "newest first"
    );
    assert_eq!(article.items[0].state, "held");
    assert_eq!(article.items[1].subject, "o-3");

    let all = store
        .failure_groups(None, FailureKind::Event)
        .await
        .expect("groups");
    let orders = all
        .iter()
        .find(|g| g.key.starts_with("order"))
        .expect("group");
    assert_eq!(orders.count, 3, "an operator's scope is every tenant");

    let group_ids = store
        .failure_group_ids(
            Some(tenant("acme")),
            FailureKind::Event,
            "order # failed: customer # unknown",
        )
        .await
        .expect("ids");
    assert_eq!(
        group_ids,
        [(tenant("acme"), ids[1]), (tenant("acme"), ids[0])]
    );
    assert!(group_ids.len() <= MAX_GROUP_IDS);
    assert!(
        store
            .failure_group_ids(Some(tenant("other")), FailureKind::Event, "article missing")
            .await
            .expect("ids")
            .is_empty()
    );

    // A change the shop refused for good.
    let agent = AgentId::new("agt-1").expect("id");
    let stock = Change::Stock(StockLevel {
        article_number: ArticleNumber::new("MUG").expect("valid article"),
        warehouse: None,
        quantity: Decimal::from(3),
    });
    store
        .insert_push(tenant("acme"), agent, "p-1".into(), stock)
        .await
        .expect("push");
    let due = store
        .due_dispatch(shop_id("acme-se"), 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    store
        .dispatch_failed(
            vec![(due[0].id, due[0].version)],
            DispatchFailure {
                reason: "HTTP 422: article MUG-1 unknown".into(),
                retry_at: None,
            },
            5,
        )
        .await
        .expect("failed");
    let dispatch = store
        .failure_groups(Some(tenant("acme")), FailureKind::Dispatch)
        .await
        .expect("groups");
    assert_eq!(dispatch.len(), 1);
    assert_eq!(dispatch[0].key, "HTTP #: article # unknown");
    assert_eq!(dispatch[0].items[0].id, due[0].id);
    assert_eq!(dispatch[0].items[0].shop_id, shop_id("acme-se"));
    assert!(
        store
            .failure_groups(Some(tenant("other")), FailureKind::Dispatch)
            .await
            .expect("groups")
            .is_empty()
    );
}

conformance!(
    agent_sessions_open_touch_close_and_list_newest_first,
    failures_group_by_reason_within_the_tenant_scope,
);

// ---- in a browser ----

const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";

/// `relay user add <name> --role operator --password-stdin` on the relay's database.
async fn add_operator(world: &tests::World, name: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(tests::process::bin_path("relay"))
        .args([
            "user",
            "add",
            name,
            "--role",
            "operator",
            "--password-stdin",
        ])
        .env("RELAY_DATABASE_URL", world.relay.database_url())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("relay user add starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .expect("the password is written");
    drop(stdin);
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("relay user add finishes")
        .expect("relay user add runs");
    assert!(
        output.status.success(),
        "relay user add {name} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn state(world: &tests::World, id: i64) -> String {
    world.admin.event(tests::TENANT, id).await["event"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An order refused by Mamut for an unknown article, and one held for a wrong total: the
/// operator replays the first once the article exists, and corrects and retries the second;
/// both end in Mamut.
#[tokio::test]
async fn an_operator_replays_a_dead_letter_and_retries_an_edited_order_in_a_browser() {
    use tests::shop::order_body;
    use tests::{AgentOptions, RelayOptions, SHOP, SqlServerOptions, eventually};
    use tools::harness::browser::{BrowserRun, run_script};

    let mamut = tests::mamut_db::MamutDb::start();
    let agent = AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        ..AgentOptions::default()
    };
    let world = tests::setup_with(RelayOptions::default(), agent).await;

    let mut dead: serde_json::Value =
        serde_json::from_slice(&order_body(SHOP, "dead-1", "confirmed")).expect("JSON");
    dead["order"]["lines"][1]["article_number"] = "ARRIVES-LATER".into();
    let (status, reply) = world.shop.send(SHOP, dead.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    let dead_id = reply["event_id"].as_i64().expect("event id");

    let mut held: serde_json::Value =
        serde_json::from_slice(&order_body(SHOP, "held-1", "confirmed")).expect("JSON");
    let right_total = held["order"]["total"].as_str().expect("a total").to_owned();
    held["order"]["total"] = "1.00".into();
    let (status, reply) = world.shop.send(SHOP, held.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    let held_id = reply["event_id"].as_i64().expect("event id");

    eventually("the unknown article is dead-lettered", WAIT, || async {
        state(&world, dead_id).await == "dead"
    })
    .await;
    assert_eq!(state(&world, held_id).await, "held");
    mamut.execute(
        "INSERT INTO products (article_no, name, vat_rate, price, active) \
         VALUES ('ARRIVES-LATER', N'Arrives later', 25, 100, 1)",
    );
    add_operator(&world, "op").await;

    let run = run_script(
        "actions.mjs",
        &world.relay.base_url(),
        &[
            ("USERNAME", "op"),
            ("PASSWORD", PASSWORD),
            ("DEAD_ORDER", "dead-1"),
            ("HELD_ORDER", "held-1"),
            ("RIGHT_TOTAL", &right_total),
        ],
    )
    .await;
    match run {
        BrowserRun::Ran { output } => {
            assert!(output.contains("scenario passed"), "{output}");
            for id in [dead_id, held_id] {
                assert_eq!(state(&world, id).await, "delivered", "event {id}");
            }
            assert_eq!(mamut.count_external("dead-1"), 1);
            assert_eq!(mamut.count_external("held-1"), 1);
        }
        BrowserRun::Skipped(_) => {}
    }
}
