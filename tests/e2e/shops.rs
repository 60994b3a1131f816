//! The shop side: Mamut changes reach the shops whose flow takes them, status rules and price
//! lists apply, the dispatcher coalesces, survives a failing shop and replays dead letters,
//! and thin webhooks are enriched from the shop's API.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::ArticleNumber;
use shared::domain::{Change, Order, OrderWebhook, StockLevel};
use tests::agent_ws::RawAgent;
use tests::mamut_db::MamutDb;
use tests::shop::{EXAMPLE, order_body};
use tests::shop_sim::{Failure, ShopSim};
use tests::{
    AgentOptions, RelayOptions, RelayProcess, SHOP, SqlServerOptions, TENANT, eventually, setup,
    setup_with,
};

const WAIT: Duration = Duration::from_secs(30);
const KEY: &str = "shop-api-key-0123456789";

fn api(sim: &ShopSim) -> Value {
    json!({ "url": sim.url(), "requests_per_sec": 1000 })
}

fn example_order(id: &str) -> Order {
    let webhook: OrderWebhook = serde_json::from_str(EXAMPLE).expect("example parses");
    let mut order = webhook.order;
    order.id = id.into();
    order.number = id.into();
    order
}

fn stock(article: &str, quantity: i64) -> Change {
    Change::Stock(StockLevel {
        article_number: ArticleNumber::new(article).expect("valid article"),
        warehouse: None,
        quantity: Decimal::from(quantity),
    })
}

/// Rounds the relay's dispatcher has flushed with something to send, from `/metrics`.
async fn dispatch_rounds(relay: &RelayProcess) -> u64 {
    relay.metric("relay_dispatch_rounds_total").await
}

#[tokio::test]
async fn mamut_changes_reach_the_shops_whose_flow_takes_them() {
    let mamut = MamutDb::start();
    let agent = AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        ..AgentOptions::default()
    };
    let world = setup_with(RelayOptions::default(), agent).await;
    let erp = ShopSim::start(KEY).await;
    let combo = ShopSim::start(KEY).await;
    let ecom = ShopSim::start(KEY).await;
    // The articles the Mamut stand-in starts with.
    for sim in [&erp, &combo, &ecom] {
        sim.add_articles(["MUG-01", "FRAKT", "TSHIRT-RED-M"]);
    }
    erp.add_order(example_order("s-1"));
    let view = world
        .admin
        .update_shop(
            TENANT,
            SHOP,
            json!({
                "flow": "erp",
                "api": api(&erp),
                "api_key": KEY,
                "status_map": {
                    "delivered": { "shop_status": "shipped", "notify_customer": true,
                                   "tracking": true, "capture": true }
                },
                "price_lists": { "RESELLER": "b2b" }
            }),
        )
        .await;
    assert_eq!(view["api_key_set"], true);
    assert!(
        !view.to_string().contains(KEY),
        "the API key is never shown"
    );
    for (shop, flow, sim) in [("combo-no", "combo", &combo), ("ecom-dk", "ecom", &ecom)] {
        world
            .admin
            .add_shop_with(
                TENANT,
                json!({
                    "shop_id": shop,
                    "webhook_secrets": [world.shop.secret_text()],
                    "trigger_statuses": ["confirmed"],
                    "flow": flow,
                    "api": api(sim),
                    "api_key": KEY,
                    "price_lists": { "RESELLER": "b2b" }
                }),
            )
            .await;
    }

    world
        .shop
        .send(SHOP, &order_body(SHOP, "s-1", "confirmed"))
        .await;
    eventually("the order is in Mamut", WAIT, || async {
        mamut.orders().len() == 1
    })
    .await;
    mamut.execute(
        "INSERT INTO stock (article_no, warehouse, quantity) VALUES ('MUG-01', 'MAIN', 17);
         INSERT INTO price_list_prices (price_list, article_no, currency, price) VALUES ('RESELLER', 'MUG-01', 'SEK', 55);
         UPDATE orders SET status = 'delivered', tracking_no = '00370712345678901234' WHERE external_no = 's-1'",
    );
    let seventeen = Some(Decimal::from(17));
    eventually(
        "stock, price list and status reach the shops",
        WAIT,
        || async {
            let shipped = erp.order_state("s-1").is_some_and(|s| s.captured);
            erp.stock("MUG-01", Some("MAIN")) == seventeen
                && combo.stock("MUG-01", Some("MAIN")) == seventeen
                && erp.price_list_price("b2b", "MUG-01").map(|p| p.1) == Some(Decimal::from(55))
                && combo.price_list_price("b2b", "MUG-01").is_some()
                && shipped
        },
    )
    .await;
    let state = erp.order_state("s-1").expect("order state");
    assert_eq!(state.status, "shipped");
    assert_eq!(state.notifications, 1, "the customer is e-mailed once");
    assert_eq!(
        state.tracking_number.as_deref(),
        Some("00370712345678901234")
    );
    assert_eq!(state.capture_calls, 1);
    // The status change belongs to demo-se only; the ecom shop gets nothing at all. Fan-out
    // happens in the transaction that stores a push, so this is final once the others arrived.
    assert!(combo.order_state("s-1").is_none());
    assert!(ecom.calls().is_empty(), "ecom got {:?}", ecom.calls());
    let dispatch = world.admin.dispatch(TENANT, None).await;
    assert!(dispatch.iter().all(|d| d["shop_id"] != "ecom-dk"));
    assert!(
        dispatch.iter().all(|d| d["state"] == "done"),
        "{dispatch:?}"
    );
}

/// A relay without TLS, tenant and shop `demo-se` with its API at `sim`, and a bare agent.
async fn bare_agent_world(sim: &ShopSim) -> (RelayProcess, tests::Admin, RawAgent) {
    let pki = std::sync::Arc::new(tests::Pki::new());
    let relay = RelayProcess::start(
        pki,
        RelayOptions {
            tls: false,
            ..RelayOptions::default()
        },
    )
    .await;
    let admin = relay.admin();
    admin.create_tenant(TENANT).await;
    let secret = relay.shop().secret_text();
    admin
        .add_shop_with(
            TENANT,
            json!({
                "shop_id": SHOP,
                "webhook_secrets": [secret],
                "trigger_statuses": ["confirmed"],
                "flow": "erp",
                "api": api(sim),
                "api_key": KEY,
            }),
        )
        .await;
    let (_, token) = admin.create_agent(TENANT).await;
    let agent = RawAgent::connect(&relay, &token).await;
    (relay, admin, agent)
}

/// Each article's applied quantities, in the order the shop applied them.
fn applied_per_article(sim: &ShopSim) -> BTreeMap<String, Vec<Decimal>> {
    let mut map: BTreeMap<String, Vec<Decimal>> = BTreeMap::new();
    for (article, _, quantity) in sim.applied_stock() {
        map.entry(article).or_default().push(quantity);
    }
    map
}

#[tokio::test]
async fn ten_thousand_stock_updates_of_a_hundred_articles_are_coalesced() {
    let sim = ShopSim::start(KEY).await;
    let articles: Vec<String> = (0..100).map(|i| format!("ART-{i:03}")).collect();
    sim.add_articles(articles.clone());
    let (relay, _admin, mut agent) = bare_agent_world(&sim).await;
    // Round r sets every article to r: the last value of each is 99.
    let changes: Vec<Change> = (0..100)
        .flat_map(|round| articles.iter().map(move |a| stock(a, round)))
        .collect();
    agent.push_all("burst", changes, 256).await;
    eventually("every article ends at its last value", WAIT, || async {
        articles
            .iter()
            .all(|a| sim.stock(a, None) == Some(Decimal::from(99)))
    })
    .await;

    let rounds = dispatch_rounds(&relay).await;
    let calls = sim.calls();
    let mut per_article: BTreeMap<&str, u64> = BTreeMap::new();
    for call in &calls {
        assert_eq!(call.path, "/stock");
        let mut seen = std::collections::BTreeSet::new();
        for article in &call.articles {
            assert!(seen.insert(article), "{article} twice in one call");
            *per_article.entry(article).or_default() += 1;
        }
    }
    let most = per_article.values().copied().max().unwrap_or_default();
    assert!(
        most <= rounds,
        "an article was sent {most} times in {rounds} flushes"
    );
    let items: usize = calls.iter().map(|c| c.articles.len()).sum();
    assert!(
        items < 10_000,
        "{items} items sent for 10,000 updates: nothing was coalesced"
    );
    // Never an older value after a newer one, never one value twice.
    for (article, applied) in applied_per_article(&sim) {
        assert!(
            applied.windows(2).all(|w| w[0] < w[1]),
            "{article} applied out of order or twice: {applied:?}"
        );
    }
    println!(
        "10,000 updates of 100 articles: {} calls, {items} items, {rounds} flushes",
        calls.len()
    );
}

#[tokio::test]
async fn a_shop_that_fails_for_a_while_still_gets_every_change_once() {
    let sim = ShopSim::start(KEY).await;
    let articles: Vec<String> = (0..20).map(|i| format!("ART-{i:03}")).collect();
    sim.add_articles(articles.clone());
    let (_relay, admin, mut agent) = bare_agent_world(&sim).await;
    sim.fail_next(2, Failure::Status(503));
    agent
        .push_all("a", articles.iter().map(|a| stock(a, 1)).collect(), 64)
        .await;
    eventually("the first values arrive despite the 503s", WAIT, || async {
        articles
            .iter()
            .all(|a| sim.stock(a, None) == Some(Decimal::from(1)))
    })
    .await;
    sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    sim.fail_next(1, Failure::Drop);
    agent
        .push_all("b", articles.iter().map(|a| stock(a, 2)).collect(), 64)
        .await;
    eventually(
        "the second values arrive after 429 and a dropped connection",
        WAIT,
        || async {
            articles
                .iter()
                .all(|a| sim.stock(a, None) == Some(Decimal::from(2)))
        },
    )
    .await;
    let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
    assert!(
        statuses.contains(&503) && statuses.contains(&429),
        "{statuses:?}"
    );
    for (article, applied) in applied_per_article(&sim) {
        assert_eq!(
            applied,
            vec![Decimal::from(1), Decimal::from(2)],
            "{article} was applied as {applied:?}"
        );
    }
    let dispatch = admin.dispatch(TENANT, None).await;
    assert!(
        dispatch.iter().all(|d| d["state"] == "done"),
        "{dispatch:?}"
    );
    assert!(
        dispatch.iter().any(|d| d["attempts"].as_i64() > Some(0)),
        "the failures were recorded"
    );
}

#[tokio::test]
async fn a_dead_lettered_change_replays() {
    let sim = ShopSim::start(KEY).await;
    sim.add_articles(["KNOWN"]);
    let (_relay, admin, mut agent) = bare_agent_world(&sim).await;
    agent
        .push_all("d", vec![stock("KNOWN", 5), stock("NEW-1", 7)], 8)
        .await;
    eventually("the unknown article is dead-lettered", WAIT, || async {
        admin.dispatch(TENANT, Some("dead")).await.len() == 1
    })
    .await;
    let dead = admin.dispatch(TENANT, Some("dead")).await.remove(0);
    assert_eq!(dead["change"]["article_number"], "NEW-1");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown_article")),
        "{dead}"
    );
    assert_eq!(sim.stock("KNOWN", None), Some(Decimal::from(5)));
    assert_eq!(sim.stock("NEW-1", None), None);

    // The merchant creates the article in the shop; the operator replays.
    sim.add_articles(["NEW-1"]);
    let id = dead["id"].as_i64().expect("id");
    admin.replay_dispatch(TENANT, id).await;
    eventually("the replayed change is applied", WAIT, || async {
        sim.stock("NEW-1", None) == Some(Decimal::from(7))
    })
    .await;
    eventually("the item is done", WAIT, || async {
        admin.dispatch(TENANT, Some("dead")).await.is_empty()
    })
    .await;
    let (status, _) = admin
        .call(
            reqwest::Method::POST,
            &format!("/tenants/{TENANT}/dispatch/{id}/replay"),
            None,
        )
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::CONFLICT,
        "only dead items replay"
    );
}

#[tokio::test]
async fn a_thin_webhook_is_enriched_from_the_shop_and_retried_until_it_is() {
    let world = setup().await;
    let sim = ShopSim::start(KEY).await;
    sim.add_order(example_order("thin-1"));
    world
        .admin
        .update_shop(TENANT, SHOP, json!({ "api": api(&sim), "api_key": KEY }))
        .await;
    sim.fail_next(3, Failure::Status(502));
    let (status, reply) = sim
        .send_order_webhook(&world.shop, SHOP, "thin-1", true)
        .await
        .expect("the stand-in has the order");
    assert_eq!(status, reqwest::StatusCode::OK, "{reply}");
    let event_id = reply["event_id"].as_i64().expect("event id");
    eventually("the enriched order is applied", WAIT, || async {
        world
            .agent
            .applied()
            .iter()
            .any(|row| row.shop_order_id == "thin-1")
    })
    .await;
    let applied = world.agent.applied();
    let row = applied
        .iter()
        .find(|row| row.shop_order_id == "thin-1")
        .expect("applied");
    let order: Order = serde_json::from_str(&row.order_json).expect("an order");
    assert_eq!(order, example_order("thin-1"));
    let history = world.admin.event(TENANT, event_id).await["history"].clone();
    let states: Vec<&str> = history
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"fetching"));
    assert!(
        states.contains(&"retry"),
        "the failed fetches are recorded: {states:?}"
    );
    assert_eq!(states.last(), Some(&"delivered"));

    // A thin webhook whose status is not a trigger is ignored without any fetch.
    let fetches = sim.calls().len();
    let mut cancelled = example_order("thin-2");
    cancelled.status = "cancelled".into();
    sim.add_order(cancelled);
    let (_, reply) = sim
        .send_order_webhook(&world.shop, SHOP, "thin-2", true)
        .await
        .expect("the stand-in has the order");
    assert_eq!(reply["status"], "ignored");
    assert_eq!(sim.calls().len(), fetches);

    // A thin webhook whose fetched order is invalid is held with its problems, not delivered.
    let mut invalid = example_order("thin-3");
    invalid.total = "-1.00".parse().expect("decimal");
    sim.add_order(invalid);
    let (_, reply) = sim
        .send_order_webhook(&world.shop, SHOP, "thin-3", true)
        .await
        .expect("the stand-in has the order");
    let held_id = reply["event_id"].as_i64().expect("event id");
    eventually("the fetched invalid order is held", WAIT, || async {
        world.admin.event(TENANT, held_id).await["event"]["state"] == "held"
    })
    .await;
    let event = world.admin.event(TENANT, held_id).await;
    let reason = event["event"]["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("order.total: -1.00 is negative"), "{event}");
    assert!(
        !world
            .agent
            .applied()
            .iter()
            .any(|row| row.shop_order_id == "thin-3"),
        "the held order was not written"
    );
}
