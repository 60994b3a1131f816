//! Orders written into Mamut through the real tiberius code, against the TDS stand-in.

use std::time::Duration;

use tests::mamut_db::MamutDb;
use tests::shop::order_body;
use tests::{
    AgentOptions, RelayOptions, SHOP, SqlServerOptions, TENANT, World, eventually, setup_with,
};

const WAIT: Duration = Duration::from_secs(30);

/// A stored decimal, compared by value (the stand-in keeps the digits it was sent).
pub(crate) fn dec(text: &str) -> rust_decimal::Decimal {
    text.parse::<rust_decimal::Decimal>()
        .unwrap_or_else(|e| panic!("{text:?} is not a decimal: {e}"))
        .normalize()
}

async fn world_with(options: SqlServerOptions) -> World {
    let agent = AgentOptions {
        sqlserver: Some(options),
        ..AgentOptions::default()
    };
    setup_with(RelayOptions::default(), agent).await
}

async fn delivered(world: &World, event_id: i64) -> serde_json::Value {
    eventually("the event is delivered", WAIT, || async {
        world.admin.event(TENANT, event_id).await["event"]["state"] == "delivered"
    })
    .await;
    world.admin.event(TENANT, event_id).await
}

#[tokio::test]
async fn a_webhook_becomes_one_mamut_order_with_customer_lines_and_totals() {
    let mamut = MamutDb::start();
    let world = world_with(SqlServerOptions::new(mamut.port())).await;
    let (status, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, "100234", "confirmed"))
        .await;
    assert_eq!(status, 200, "{reply}");
    let event = delivered(&world, reply["event_id"].as_i64().expect("id")).await;

    let orders = mamut.orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    let order = &orders[0];
    assert_eq!(
        (
            order.external_no.as_str(),
            order.shop_id.as_deref(),
            order.doc_type.as_str()
        ),
        ("100234", Some(SHOP), "order")
    );
    assert_eq!(order.status, "unprocessed");
    assert_eq!(dec(&order.total), dec("516"));
    assert_eq!(order.payment_method.as_deref(), Some("klarna"));
    assert_eq!(event["event"]["mamut_ref"], order.order_no.to_string());

    let customers = mamut.customers();
    assert_eq!(
        customers,
        vec![(
            order.customer_no,
            "Anna Svensson".to_owned(),
            Some("anna.svensson@example.se".to_owned())
        )]
    );

    let lines = mamut.lines(order.order_no);
    let summary: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.article_no.as_deref(),
                dec(&l.quantity),
                dec(&l.unit_price),
                dec(&l.discount),
                dec(&l.vat_rate),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Some("TSHIRT-RED-M"),
                dec("2"),
                dec("199"),
                dec("0"),
                dec("25")
            ),
            (Some("MUG-01"), dec("1"), dec("79"), dec("10"), dec("25")),
            (Some("FRAKT"), dec("1"), dec("49"), dec("0"), dec("25")),
        ]
    );
    assert_eq!(lines[2].description, "PostNord Ombud");
}

#[tokio::test]
async fn an_existing_customer_is_matched_by_email_and_invoices_are_invoices() {
    let mamut = MamutDb::start();
    mamut.execute("INSERT INTO customers (customer_no, name, email) VALUES (500, N'Anna S', 'anna.svensson@example.se')");
    let world = world_with(SqlServerOptions::new(mamut.port())).await;
    world
        .admin
        .add_shop(
            TENANT,
            "demo-no",
            &world.shop.secret_text(),
            &["confirmed"],
            "invoice",
        )
        .await;
    let (_, reply) = world
        .shop
        .send("demo-no", &order_body("demo-no", "no-1", "confirmed"))
        .await;
    delivered(&world, reply["event_id"].as_i64().expect("id")).await;
    let orders = mamut.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (orders[0].customer_no, orders[0].doc_type.as_str()),
        (500, "invoice")
    );
    assert_eq!(orders[0].status, "invoice_not_delivered");
    assert_eq!(mamut.customers().len(), 1, "no customer was created");
}

#[tokio::test]
async fn an_unknown_article_is_dead_lettered_with_its_reason_or_written_as_free_text() {
    let mamut = MamutDb::start();
    let world = world_with(SqlServerOptions::new(mamut.port())).await;
    let mut body: serde_json::Value =
        serde_json::from_slice(&order_body(SHOP, "u-1", "confirmed")).expect("JSON");
    body["order"]["lines"][1]["article_number"] = "NO-SUCH-ARTICLE".into();
    let (_, reply) = world.shop.send(SHOP, body.to_string().as_bytes()).await;
    let id = reply["event_id"].as_i64().expect("id");
    eventually("the event is dead-lettered", WAIT, || async {
        world.admin.event(TENANT, id).await["event"]["state"] == "dead"
    })
    .await;
    let event = world.admin.event(TENANT, id).await;
    let reason = event["event"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("NO-SUCH-ARTICLE"), "{reason}");
    assert!(
        mamut.orders().is_empty(),
        "a refused order left a trace in Mamut"
    );

    let free_text = MamutDb::start();
    let world = world_with(SqlServerOptions {
        unknown_article: "free_text",
        ..SqlServerOptions::new(free_text.port())
    })
    .await;
    let (_, reply) = world.shop.send(SHOP, body.to_string().as_bytes()).await;
    delivered(&world, reply["event_id"].as_i64().expect("id")).await;
    let order_no = free_text.orders()[0].order_no;
    let line = &free_text.lines(order_no)[1];
    assert_eq!(line.article_no, None);
    assert!(line.description.starts_with("NO-SUCH-ARTICLE"), "{line:?}");
}

#[tokio::test]
async fn an_agent_killed_between_the_commit_and_the_ack_writes_the_order_once() {
    let mamut = MamutDb::start();
    let slow = SqlServerOptions {
        after_commit_delay_ms: 60_000,
        ..SqlServerOptions::new(mamut.port())
    };
    let mut world = world_with(slow).await;
    let (_, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, "k-1", "confirmed"))
        .await;
    let id = reply["event_id"].as_i64().expect("id");
    eventually("the order is committed in Mamut", WAIT, || async {
        mamut.orders().len() == 1
    })
    .await;
    assert_eq!(
        world.admin.event(TENANT, id).await["event"]["state"],
        "pending",
        "acked before the kill"
    );
    world.agent.kill().await;
    world.agent.configure(&AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        ..AgentOptions::default()
    });
    world.agent.restart().await;
    let event = delivered(&world, id).await;
    let orders = mamut.orders();
    assert_eq!(orders.len(), 1, "written twice: {orders:?}");
    assert_eq!(event["event"]["mamut_ref"], orders[0].order_no.to_string());
    let history = event["history"].to_string();
    assert!(history.contains("already in Mamut"), "{history}");
}

#[tokio::test]
async fn orders_wait_while_mamut_is_down_and_then_arrive_once() {
    let mut mamut = MamutDb::start();
    let world = world_with(SqlServerOptions::new(mamut.port())).await;
    world
        .shop
        .send(SHOP, &order_body(SHOP, "first", "confirmed"))
        .await;
    eventually("the first order arrives", WAIT, || async {
        mamut.orders().len() == 1
    })
    .await;
    mamut.stop();
    let mut ids = Vec::new();
    for n in 0..5 {
        let (_, reply) = world
            .shop
            .send(SHOP, &order_body(SHOP, &format!("down-{n}"), "confirmed"))
            .await;
        ids.push(reply["event_id"].as_i64().expect("id"));
    }
    eventually("the agent reports Mamut unreachable", WAIT, || async {
        world.admin.event(TENANT, ids[0]).await["event"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Mamut"))
    })
    .await;
    assert_eq!(mamut.orders().len(), 1);
    mamut.start_again();
    eventually("every order arrives", Duration::from_secs(120), || async {
        mamut.orders().len() == 6
    })
    .await;
    let mut external: Vec<String> = mamut.orders().into_iter().map(|o| o.external_no).collect();
    external.sort();
    external.dedup();
    assert_eq!(external.len(), 6, "an order was written twice");
}
