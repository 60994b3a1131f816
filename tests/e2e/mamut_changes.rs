//! Changes in Mamut reach the relay as pushes, once, across an agent restart.

use std::time::Duration;

use serde_json::Value;
use tests::mamut_db::MamutDb;
use tests::shop::order_body;
use tests::{AgentOptions, RelayOptions, SHOP, SqlServerOptions, TENANT, eventually, setup_with};

const WAIT: Duration = Duration::from_secs(30);

fn dec(value: &Value) -> rust_decimal::Decimal {
    value
        .as_str()
        .and_then(|s| s.parse::<rust_decimal::Decimal>().ok())
        .map(|d| d.normalize())
        .unwrap_or_default()
}

/// Pushes of `kind` whose change satisfies `matches`.
fn count(pushes: &[Value], kind: &str, matches: impl Fn(&Value) -> bool) -> usize {
    pushes
        .iter()
        .filter(|p| p["kind"] == kind && matches(&p["change"]))
        .count()
}

#[tokio::test]
async fn stock_price_price_list_product_and_status_changes_are_pushed_once() {
    let mamut = MamutDb::start();
    let agent = AgentOptions {
        sqlserver: Some(SqlServerOptions::new(mamut.port())),
        ..AgentOptions::default()
    };
    let mut world = setup_with(RelayOptions::default(), agent).await;
    let (_, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, "s-1", "confirmed"))
        .await;
    let event_id = reply["event_id"].as_i64().expect("id");
    eventually("the order is in Mamut", WAIT, || async {
        mamut.orders().len() == 1
    })
    .await;

    mamut.execute(
        "INSERT INTO stock (article_no, warehouse, quantity) VALUES ('MUG-01', 'MAIN', 17);
         UPDATE products SET price = 69.5 WHERE article_no = 'MUG-01';
         INSERT INTO price_list_prices (price_list, article_no, currency, price) VALUES ('RESELLER', 'MUG-01', 'SEK', 55);
         INSERT INTO products (article_no, name, vat_rate, price, active) VALUES ('TSHIRT', N'T-shirt', 25, 159.2, 1);
         INSERT INTO products (article_no, name, vat_rate, price, active, parent_article_no, dimension1, dimension2)
             VALUES ('TSHIRT-BLUE-L', N'T-shirt blå, L', 25, 159.2, 1, 'TSHIRT', N'Blå', 'L');
         UPDATE orders SET status = 'delivered', tracking_no = '00370712345678901234' WHERE external_no = 's-1'",
    );
    let mug_stock = |c: &Value| {
        c["article_number"] == "MUG-01" && dec(&c["quantity"]) == rust_decimal::Decimal::from(17)
    };
    let mug_price = |c: &Value| {
        c["article_number"] == "MUG-01" && dec(&c["price"]) == "69.5".parse().unwrap_or_default()
    };
    let reseller = |c: &Value| {
        c["price_list"] == "RESELLER" && dec(&c["price"]) == rust_decimal::Decimal::from(55)
    };
    let tshirt = |c: &Value| {
        c["article_number"] == "TSHIRT" && c["variants"][0]["article_number"] == "TSHIRT-BLUE-L"
    };
    let delivered = |c: &Value| {
        c["shop_order_id"] == "s-1"
            && c["mamut_status"] == "delivered"
            && c["tracking_number"] == "00370712345678901234"
    };
    eventually("every kind of change is pushed", WAIT, || async {
        let p = world.admin.pushes(TENANT).await;
        count(&p, "stock", mug_stock) == 1
            && count(&p, "price", mug_price) == 1
            && count(&p, "price_list", reseller) == 1
            && count(&p, "product", tshirt) >= 1
            && count(&p, "order_status", delivered) == 1
    })
    .await;
    let mamut_ref = world.admin.event(TENANT, event_id).await["event"]["mamut_ref"].clone();
    let pushes = world.admin.pushes(TENANT).await;
    let status = pushes
        .iter()
        .find(|p| p["kind"] == "order_status" && delivered(&p["change"]))
        .expect("status push");
    assert_eq!(status["change"]["mamut_ref"], mamut_ref);
    eventually("the cursors are saved", WAIT, || async {
        std::fs::read_to_string(world.agent.state_file()).is_ok_and(|s| s.contains("stock"))
    })
    .await;

    // An agent restart in between: old changes are not pushed again, new ones are.
    world.agent.kill().await;
    mamut.execute("UPDATE stock SET quantity = 3 WHERE article_no = 'MUG-01'");
    world.agent.restart().await;
    let mug_three = |c: &Value| {
        c["article_number"] == "MUG-01" && dec(&c["quantity"]) == rust_decimal::Decimal::from(3)
    };
    eventually(
        "the change made while the agent was down is pushed",
        WAIT,
        || async { count(&world.admin.pushes(TENANT).await, "stock", mug_three) == 1 },
    )
    .await;
    let after = world.admin.pushes(TENANT).await;
    assert_eq!(count(&after, "stock", mug_stock), 1);
    assert_eq!(count(&after, "order_status", delivered), 1);
    let ids: std::collections::BTreeSet<&str> =
        after.iter().filter_map(|p| p["push_id"].as_str()).collect();
    assert_eq!(ids.len(), after.len(), "a push was stored twice");
}
