//! The agent against Mamut's SQL Server as it really behaves (the PostgreSQL-backed stand-in),
//! with the real relay and agent: data Mamut refuses is dead-lettered with a merchant's reason
//! and replayable after a fix; a Mamut user's lock or open write delays an order without
//! holding back stock changes; out-of-order commits lose no change and do not wait for each
//! other; a cancelled apply leaves no transaction open;
//! TLS with a CA or without checks; named instances through SQL Browser; `agent check` on a
//! database that does not fit; and the numbering modes.

use std::time::Duration;

use serde_json::Value;
use tests::mamut_db::{MamutDb, MamutSession};
use tests::mamut_sim::WireConfig;
use tests::mamut_sim::tls::server_config_from_files;
use tests::mamut_sim::types::PgValue;
use tests::shop::order_body;
use tests::wait::until;
use tests::{
    AgentOptions, Pki, RelayOptions, SHOP, SqlServerOptions, TENANT, World, eventually, setup_with,
};

pub(crate) const WAIT: Duration = Duration::from_secs(20);

async fn world_with(options: SqlServerOptions) -> World {
    let agent = AgentOptions {
        sqlserver: Some(options),
        ..AgentOptions::default()
    };
    setup_with(RelayOptions::default(), agent).await
}

/// Sends the example order with shop order id `id`; returns the relay's event id.
pub(crate) async fn send_order(world: &World, id: &str) -> i64 {
    send_body(world, &order_body(SHOP, id, "confirmed")).await
}

pub(crate) async fn send_body(world: &World, body: &[u8]) -> i64 {
    let (status, reply) = world.shop.send(SHOP, body).await;
    assert_eq!(status, 200, "the relay refused the webhook: {reply}");
    reply["event_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no event_id in the relay's reply: {reply}"))
}

/// The event's summary (`state`, `attempts`, `last_error`, `mamut_ref`...).
pub(crate) async fn event(world: &World, id: i64) -> Value {
    world.admin.event(TENANT, id).await["event"].clone()
}

pub(crate) async fn delivered(world: &World, id: i64) -> Value {
    eventually(&format!("event {id} is delivered"), WAIT, || async {
        event(world, id).await["state"] == "delivered"
    })
    .await;
    event(world, id).await
}

fn dec(value: &Value) -> Option<rust_decimal::Decimal> {
    value
        .as_str()
        .and_then(|s| s.parse::<rust_decimal::Decimal>().ok())
        .map(|d| d.normalize())
}

/// How many stock pushes say `article` has `quantity`.
pub(crate) fn stock_pushes(pushes: &[Value], article: &str, quantity: i64) -> usize {
    pushes
        .iter()
        .filter(|p| {
            p["kind"] == "stock"
                && p["change"]["article_number"] == article
                && dec(&p["change"]["quantity"]) == Some(rust_decimal::Decimal::from(quantity))
        })
        .count()
}

/// How many orders in Mamut carry shop order id `external`.
pub(crate) fn written(mamut: &MamutDb, external: &str) -> usize {
    mamut
        .orders()
        .iter()
        .filter(|o| o.external_no == external)
        .count()
}

fn batch(session: &mut MamutSession, sql: &str) -> Vec<Vec<PgValue>> {
    session
        .batch(sql)
        .unwrap_or_else(|e| panic!("a Mamut user's T-SQL fails on the stand-in: {e}\n{sql}"))
}

/// A Mamut user holding an update lock on the whole orders table in an open transaction, as
/// a user editing orders does: it blocks the agent's `WITH (UPDLOCK, HOLDLOCK)` lookup of the
/// shop's order id.
fn lock_orders(mamut: &MamutDb) -> MamutSession {
    let mut user = mamut.session();
    batch(
        &mut user,
        "BEGIN TRAN; SELECT COUNT(*) FROM orders WITH (UPDLOCK, HOLDLOCK)",
    );
    assert_eq!(user.trancount(), 1, "the user's transaction is open");
    user
}

/// The rowversion (`binary(8)`, big-endian) that `sql` selects, as a number.
fn rowversion(session: &mut MamutSession, sql: &str) -> i64 {
    let rows = batch(session, sql);
    match rows.first().and_then(|r| r.first()) {
        Some(PgValue::Bytes(bytes)) => i64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .unwrap_or_else(|_| panic!("a rowversion has 8 bytes: {bytes:?}")),
        ),
        other => panic!("not a rowversion from {sql}: {other:?}"),
    }
}

/// The agent's saved cursor of `kind`, if it saved one.
fn saved_cursor(world: &World, kind: &str) -> Option<i64> {
    let text = std::fs::read_to_string(world.agent.state_file()).ok()?;
    serde_json::from_str::<Value>(&text).ok()?[kind].as_i64()
}

/// The log of the agent's current run.
fn current_log(world: &World) -> String {
    let logs = world.agent.logs();
    logs.rsplit("--- restart ---")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A direct PostgreSQL connection to the stand-in's engine, for what only the engine can
/// tell: who waits for a lock, how often a table was read.
async fn engine(mamut: &MamutDb) -> tokio_postgres::Client {
    let url = &mamut.config().postgres_url;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the stand-in's PostgreSQL {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Lock requests waiting on `table` of the stand-in's schema.
async fn lock_waiters(mamut: &MamutDb, table: &str) -> i64 {
    let client = engine(mamut).await;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND NOT l.granted",
            &[&mamut.config().pg_schema, &table],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_locks: {e}"));
    row.get(0)
}

/// Scans of `table` of the stand-in's schema so far, as PostgreSQL's statistics report them
/// (flushed by each backend about once a second).
async fn scans(mamut: &MamutDb, table: &str) -> i64 {
    let client = engine(mamut).await;
    let row = client
        .query_one(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables \
             WHERE schemaname = $1 AND relname = $2",
            &[&mamut.config().pg_schema, &table],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_stat_user_tables: {e}"));
    row.get(0)
}

/// A TCP port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The report's failure lines.
fn failures(report: &str) -> Vec<&str> {
    report.lines().filter(|l| l.starts_with("[FAIL]")).collect()
}

#[tokio::test]
async fn a_company_name_too_long_for_mamut_is_dead_lettered_by_name_and_replayed_after_the_fix() {
    let mamut = MamutDb::start();
    let mut world = world_with(SqlServerOptions::new(mamut.port())).await;
    let company = format!("Aktiebolaget {}", "Långnamn ".repeat(15));
    let company = company.trim_end().to_owned();
    assert_eq!(company.chars().count(), 147);
    let mut body: Value =
        serde_json::from_slice(&order_body(SHOP, "long-1", "confirmed")).expect("example JSON");
    body["order"]["customer"]["type"] = "company".into();
    body["order"]["customer"]["company_name"] = company.clone().into();
    let id = send_body(&world, body.to_string().as_bytes()).await;

    eventually("the order is dead-lettered", WAIT, || async {
        event(&world, id).await["state"] == "dead"
    })
    .await;
    let reason = event(&world, id).await["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("Company name is 147 characters, Mamut allows 100 (customers.name)"),
        "the reason does not name the field and both lengths: {reason}"
    );
    assert!(mamut.orders().is_empty(), "a refused order was written");
    assert!(
        mamut.customers().is_empty(),
        "a refused order left a customer"
    );

    // The fix: this field is truncated from now on; the operator replays the order.
    world.agent.configure(&AgentOptions {
        sqlserver: Some(SqlServerOptions {
            extra: "[mamut.sqlserver.on_too_long_fields]\n\"customers.name\" = \"truncate\"\n"
                .into(),
            ..SqlServerOptions::new(mamut.port())
        }),
        ..AgentOptions::default()
    });
    world.agent.restart().await;
    world.admin.replay_event(TENANT, id).await;
    let summary = delivered(&world, id).await;
    let orders = mamut.orders();
    assert_eq!(orders.len(), 1, "written once: {orders:?}");
    assert_eq!(summary["mamut_ref"], orders[0].order_no.to_string());
    let customers = mamut.customers();
    assert_eq!(customers.len(), 1, "{customers:?}");
    let expected: String = company.chars().take(100).collect();
    assert_eq!(customers[0].1, expected, "the name is cut to Mamut's 100");
    assert_eq!(orders[0].customer_no, customers[0].0);
}

#[tokio::test]
async fn a_mamut_user_holding_the_orders_table_delays_the_order_but_not_stock_changes() {
    let mamut = MamutDb::start();
    // An order a Mamut user entered by hand (no shop): the user is editing it.
    mamut.execute(
        "INSERT INTO customers (customer_no, name) VALUES (900, N'Butikskund');
         INSERT INTO orders (order_no, doc_type, customer_no, external_no, shop_id, status, order_date, currency, total)
             VALUES (900, 'order', 900, 'M-900', '', 'open', '2024-05-02', 'SEK', 0)",
    );
    let world = world_with(SqlServerOptions {
        extra: "lock_timeout_ms = 500\n".into(),
        ..SqlServerOptions::new(mamut.port())
    })
    .await;
    let mut user = lock_orders(&mamut);
    // The user's transaction has written, so it holds a rowversion, and MIN_ACTIVE_ROWVERSION()
    // stays at it until the user commits.
    batch(
        &mut user,
        "UPDATE orders SET status = status WHERE order_no = 900",
    );
    let id = send_order(&world, "locked-1").await;
    mamut.execute(
        "INSERT INTO stock (article_no, warehouse, quantity) VALUES ('MUG-01', 'MAIN', 4)",
    );
    let user_rv = rowversion(&mut user, "SELECT rv FROM orders WHERE order_no = 900");
    let mut other = mamut.session();
    let stock_rv = rowversion(
        &mut other,
        "SELECT rv FROM stock WHERE article_no = 'MUG-01'",
    );
    let min_active = rowversion(&mut other, "SELECT MIN_ACTIVE_ROWVERSION()");
    // So a watcher that reads only below MIN_ACTIVE_ROWVERSION() would hold the stock change
    // back for as long as the user's transaction is open.
    assert!(
        min_active <= user_rv && user_rv < stock_rv,
        "the user's open write must be below the stock change: MIN_ACTIVE_ROWVERSION() \
         {min_active}, user {user_rv}, stock {stock_rv}"
    );

    eventually(
        "the stock change is pushed while the user holds the lock",
        WAIT,
        || async { stock_pushes(&world.admin.pushes(TENANT).await, "MUG-01", 4) == 1 },
    )
    .await;
    // Several lock timeouts in a row: each a retryable failure, never a dead letter.
    eventually(
        "the order has failed on the lock several times",
        Duration::from_secs(25),
        || async {
            let e = event(&world, id).await;
            assert_ne!(
                e["state"], "dead",
                "a lock wait dead-lettered the order: {e}"
            );
            e["attempts"].as_i64().unwrap_or(0) >= 4
        },
    )
    .await;
    let waiting = event(&world, id).await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    let reason = waiting["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("past the lock timeout"),
        "the reason does not name the lock: {reason}"
    );
    assert!(
        written(&mamut, "locked-1") == 0,
        "written through the user's lock"
    );
    assert_eq!(user.trancount(), 1, "the user's lock was held all along");

    batch(&mut user, "COMMIT");
    let summary = delivered(&world, id).await;
    let orders: Vec<_> = mamut
        .orders()
        .into_iter()
        .filter(|o| o.external_no == "locked-1")
        .collect();
    assert_eq!(orders.len(), 1, "written once: {orders:?}");
    assert_eq!(summary["mamut_ref"], orders[0].order_no.to_string());
    assert_eq!(
        stock_pushes(&world.admin.pushes(TENANT).await, "MUG-01", 4),
        1
    );
}

#[tokio::test]
async fn a_change_committed_after_a_later_one_is_pushed_and_the_later_one_does_not_wait_for_it() {
    let mamut = MamutDb::start();
    mamut.execute(
        "INSERT INTO stock (article_no, warehouse, quantity) VALUES ('MUG-01', 'MAIN', 10);
         INSERT INTO stock (article_no, warehouse, quantity) VALUES ('TSHIRT-RED-M', 'MAIN', 10)",
    );
    let mut world = world_with(SqlServerOptions::new(mamut.port())).await;
    eventually("the first stock levels are pushed", WAIT, || async {
        let pushes = world.admin.pushes(TENANT).await;
        stock_pushes(&pushes, "MUG-01", 10) == 1 && stock_pushes(&pushes, "TSHIRT-RED-M", 10) == 1
    })
    .await;

    // A writes first (the lower rowversion) and stays open; B writes and commits after it.
    let mut a = mamut.session();
    batch(
        &mut a,
        "BEGIN TRAN; UPDATE stock SET quantity = 1 WHERE article_no = 'MUG-01'",
    );
    let a_rv = rowversion(&mut a, "SELECT rv FROM stock WHERE article_no = 'MUG-01'");
    let mut b = mamut.session();
    batch(
        &mut b,
        "UPDATE stock SET quantity = 2 WHERE article_no = 'TSHIRT-RED-M'",
    );
    let b_rv = rowversion(
        &mut b,
        "SELECT rv FROM stock WHERE article_no = 'TSHIRT-RED-M'",
    );
    assert!(
        a_rv < b_rv,
        "A must hold the lower rowversion: A {a_rv}, B {b_rv}"
    );

    // B is pushed while A is open: an open transaction holds back only its own change. (A
    // watcher that reads only below MIN_ACTIVE_ROWVERSION() pushes nothing until A ends.)
    eventually("B's change is pushed while A is open", WAIT, || async {
        stock_pushes(&world.admin.pushes(TENANT).await, "TSHIRT-RED-M", 2) == 1
    })
    .await;
    let before = scans(&mamut, "stock").await;
    let polled = until(Duration::from_secs(15), || async {
        scans(&mamut, "stock").await >= before + 10
    })
    .await;
    assert!(polled, "the watcher stopped polling stock while A was open");
    assert_eq!(a.trancount(), 1, "A is still open");
    let pushes = world.admin.pushes(TENANT).await;
    assert_eq!(
        stock_pushes(&pushes, "MUG-01", 1),
        0,
        "A's uncommitted change was pushed"
    );
    // The saved cursor stays below A's rowversion. A watcher that moved it to the largest
    // rowversion it read (B's) would never read A's row again once A commits.
    let cursor = saved_cursor(&world, "stock");
    assert!(
        cursor.is_some_and(|c| c < a_rv),
        "the saved stock cursor {cursor:?} passed A's open rowversion {a_rv}"
    );

    // A restart while A is open: nothing above the cursor is remembered, so B is pushed
    // again, under the same push id, which the relay stores once.
    world.agent.restart().await;
    eventually("the restarted agent pushes B again", WAIT, || async {
        current_log(&world).contains("changes pushed and acknowledged")
    })
    .await;
    let again = world.admin.pushes(TENANT).await;
    assert_eq!(
        again.len(),
        pushes.len(),
        "the restarted agent stored a push again under a new id: {again:?}"
    );
    assert_eq!(stock_pushes(&again, "TSHIRT-RED-M", 2), 1);

    batch(&mut a, "COMMIT");
    eventually(
        "A's change is pushed once A commits (lost: a cursor that passed A's rowversion)",
        WAIT,
        || async { stock_pushes(&world.admin.pushes(TENANT).await, "MUG-01", 1) == 1 },
    )
    .await;
    eventually("the cursor passes both once A committed", WAIT, || async {
        saved_cursor(&world, "stock").is_some_and(|c| c >= b_rv)
    })
    .await;
    let after = world.admin.pushes(TENANT).await;
    assert_eq!(stock_pushes(&after, "TSHIRT-RED-M", 2), 1);
    assert_eq!(
        after.len(),
        pushes.len() + 1,
        "only A's change is new: {after:?}"
    );
    let ids: std::collections::BTreeSet<&str> =
        after.iter().filter_map(|p| p["push_id"].as_str()).collect();
    assert_eq!(ids.len(), after.len(), "a push was stored twice");
}

#[tokio::test]
async fn an_apply_cancelled_inside_its_transaction_leaves_no_transaction_behind() {
    let mamut = MamutDb::start();
    let mut world = world_with(SqlServerOptions {
        extra: "lock_timeout_ms = 60000\nstatement_timeout_ms = 120000\n".into(),
        ..SqlServerOptions::new(mamut.port())
    })
    .await;
    let mut user = lock_orders(&mamut);
    let first = send_order(&world, "cancel-1").await;
    eventually(
        "the agent's apply waits for the user's lock inside its transaction",
        WAIT,
        || async { lock_waiters(&mamut, "orders").await >= 1 },
    )
    .await;

    // The relay dies: the agent's session ends and the waiting apply is cancelled.
    let ended = |logs: &str| {
        logs.matches("session failed; reconnecting").count()
            + logs.matches("session ended; reconnecting").count()
    };
    let sessions_ended = ended(&world.agent.logs());
    world.relay.kill().await;
    eventually("the agent notices the relay is gone", WAIT, || async {
        ended(&world.agent.logs()) > sessions_ended
    })
    .await;
    batch(&mut user, "COMMIT");
    world.relay.restart().await;

    delivered(&world, first).await;
    let history = world.admin.event(TENANT, first).await["history"].to_string();
    assert!(
        !history.contains("already in Mamut"),
        "the cancelled apply committed after all: {history}"
    );
    let second = send_order(&world, "cancel-2").await;
    delivered(&world, second).await;
    // Read by other sessions, so only committed rows count: an order written inside an
    // orphaned transaction would not be seen here.
    for order in ["cancel-1", "cancel-2"] {
        assert_eq!(
            written(&mamut, order),
            1,
            "{order} was acknowledged but is not committed in Mamut once (an orphaned \
             transaction on a reused connection?): {:?}",
            mamut.orders()
        );
    }
    let mut other = mamut.session();
    let count = batch(
        &mut other,
        "SELECT COUNT(*) FROM orders WHERE external_no IN ('cancel-1', 'cancel-2')",
    );
    assert!(
        matches!(count.first().and_then(|r| r.first()), Some(PgValue::Int(2))),
        "another Mamut session sees {count:?}"
    );
    assert_eq!(other.trancount(), 0);

    // Were they really committed? The agent dies with its connections; whatever they had
    // open would be rolled back now.
    world.agent.kill().await;
    let orders = mamut.orders();
    assert_eq!(
        orders.len(),
        2,
        "orders vanished when the agent's connections closed: {orders:?}"
    );
}

#[tokio::test]
async fn the_agent_talks_tls_to_mamut_and_checks_its_certificate() {
    let server_pki = Pki::new();
    let tls = server_config_from_files(&server_pki.cert_file(), &server_pki.key_file())
        .unwrap_or_else(|e| panic!("the stand-in's certificate: {e}"));
    let mamut = MamutDb::start_with(WireConfig {
        tls: Some(tls),
        ..WireConfig::default()
    });
    let tls_with = |extra: String| SqlServerOptions {
        encryption: "required",
        extra,
        ..SqlServerOptions::new(mamut.port())
    };
    let with_ca = tls_with(format!(
        "ca_file = {:?}\n",
        server_pki.ca_file().display().to_string()
    ));
    let mut world = world_with(with_ca).await;
    let id = send_order(&world, "tls-1").await;
    delivered(&world, id).await;
    assert_eq!(written(&mamut, "tls-1"), 1);
    let (ok, report) = world.agent.check().await;
    assert!(ok, "agent check with the server's CA: {report}");

    let other_ca = Pki::new();
    for (what, extra) in [
        (
            "another CA",
            format!(
                "ca_file = {:?}\ntrust_server_certificate = false\n",
                other_ca.ca_file().display().to_string()
            ),
        ),
        (
            "the system's roots only",
            "trust_server_certificate = false\n".to_owned(),
        ),
    ] {
        world.agent.configure(&AgentOptions {
            sqlserver: Some(tls_with(extra)),
            ..AgentOptions::default()
        });
        let (ok, report) = world.agent.check().await;
        assert!(!ok, "agent check with {what} passed: {report}");
        let mamut_line = report
            .lines()
            .find(|l| l.contains("cannot connect to SQL Server"))
            .unwrap_or_else(|| panic!("no Mamut connection failure with {what}: {report}"));
        assert!(
            mamut_line.to_ascii_lowercase().contains("certificate"),
            "the failure with {what} does not say it is the certificate: {mamut_line}"
        );
    }

    world.agent.configure(&AgentOptions {
        sqlserver: Some(tls_with("trust_server_certificate = true\n".into())),
        ..AgentOptions::default()
    });
    let (ok, report) = world.agent.check().await;
    assert!(
        ok,
        "agent check trusting the server's certificate: {report}"
    );
    world.agent.restart().await;
    let id = send_order(&world, "tls-2").await;
    delivered(&world, id).await;
    assert_eq!(written(&mamut, "tls-2"), 1);
}

#[tokio::test]
async fn a_named_instance_is_found_through_sql_browser() {
    let mamut = MamutDb::start_with(WireConfig {
        instance: Some("MAMUT".into()),
        browser: Some("127.0.0.1:0".parse().expect("address")),
        ..WireConfig::default()
    });
    let browser = mamut
        .browser_addr()
        .unwrap_or_else(|| panic!("the stand-in's SQL Browser does not run"));
    // `port` points nowhere: only SQL Browser can tell the instance's port.
    let named = SqlServerOptions {
        host: "127.0.0.1\\MAMUT".into(),
        extra: format!("browser_port = {}\n", browser.port()),
        ..SqlServerOptions::new(closed_port())
    };
    let mut world = world_with(named).await;
    let (ok, report) = world.agent.check().await;
    assert!(ok, "{report}");
    assert!(
        report.contains("connected to SQL Server 127.0.0.1\\MAMUT database mamut"),
        "{report}"
    );
    let id = send_order(&world, "named-1").await;
    delivered(&world, id).await;
    assert_eq!(written(&mamut, "named-1"), 1);

    // The same with the instance given on its own.
    world.agent.configure(&AgentOptions {
        sqlserver: Some(SqlServerOptions {
            extra: format!("instance = \"MAMUT\"\nbrowser_port = {}\n", browser.port()),
            ..SqlServerOptions::new(closed_port())
        }),
        ..AgentOptions::default()
    });
    let (ok, report) = world.agent.check().await;
    assert!(ok, "{report}");

    // A wrong instance name is reported, not silently connected to the default port.
    world.agent.configure(&AgentOptions {
        sqlserver: Some(SqlServerOptions {
            extra: format!("instance = \"NOSUCH\"\nbrowser_port = {}\n", browser.port()),
            ..SqlServerOptions::new(mamut.port())
        }),
        ..AgentOptions::default()
    });
    let (ok, report) = world.agent.check().await;
    assert!(!ok, "{report}");
}

/// The reference tables, changed where a customer's database may differ: an IDENTITY order
/// number, an extra NOT NULL customer column, an order column of the wrong type and no
/// rowversion index on stock.
const MISFIT: &str = "
DROP TABLE order_lines;
DROP TABLE orders;
DROP TABLE customers;
DROP TABLE stock;
CREATE TABLE customers (
    customer_no INT NOT NULL PRIMARY KEY, name NVARCHAR(100) NOT NULL, email NVARCHAR(200) NULL,
    org_no NVARCHAR(20) NULL, phone NVARCHAR(40) NULL, street NVARCHAR(100) NULL,
    zip NVARCHAR(20) NULL, city NVARCHAR(60) NULL, country NVARCHAR(2) NULL,
    region NVARCHAR(10) NOT NULL, rv ROWVERSION
);
CREATE TABLE orders (
    order_no INT IDENTITY(10000, 1) NOT NULL PRIMARY KEY, doc_type NVARCHAR(10) NOT NULL,
    customer_no INT NOT NULL REFERENCES customers (customer_no), external_no INT NOT NULL,
    shop_id NVARCHAR(64) NOT NULL, status NVARCHAR(30) NOT NULL, order_date DATETIME2(3) NOT NULL,
    currency NVARCHAR(3) NOT NULL, payment_method NVARCHAR(50) NULL, payment_ref NVARCHAR(100) NULL,
    total DECIMAL(19, 4) NOT NULL, tracking_no NVARCHAR(100) NULL, rv ROWVERSION
);
CREATE INDEX orders_rv ON orders (rv);
CREATE TABLE order_lines (
    order_no INT NOT NULL REFERENCES orders (order_no), line_no INT NOT NULL,
    article_no NVARCHAR(100) NULL, description NVARCHAR(200) NOT NULL,
    quantity DECIMAL(19, 4) NOT NULL, unit_price DECIMAL(19, 4) NOT NULL,
    discount DECIMAL(19, 4) NOT NULL, vat_rate DECIMAL(5, 2) NOT NULL,
    PRIMARY KEY (order_no, line_no)
);
CREATE TABLE stock (
    article_no NVARCHAR(100) NOT NULL, warehouse NVARCHAR(50) NOT NULL,
    quantity DECIMAL(19, 4) NOT NULL, rv ROWVERSION, PRIMARY KEY (article_no, warehouse)
);
";

#[tokio::test]
async fn agent_check_reports_each_way_the_database_does_not_fit() {
    let mamut = MamutDb::start();
    mamut.execute(MISFIT);
    let world = world_with(SqlServerOptions::new(mamut.port())).await;
    let (ok, report) = world.agent.check().await;
    assert!(!ok, "{report}");
    let fails = failures(&report);
    let expected = [
        "column orders.order_no is an IDENTITY column",
        "column customers.region is NOT NULL without a default and the agent does not write it",
        "column orders.external_no is int, the agent puts text (nvarchar) there",
        "no index on stock.rv",
    ];
    for finding in expected {
        let lines: Vec<_> = fails.iter().filter(|l| l.contains(finding)).collect();
        assert_eq!(
            lines.len(),
            1,
            "{finding:?} is not on a line of its own:\n{report}"
        );
    }
    assert_eq!(
        fails.len(),
        expected.len(),
        "findings beyond the four problems:\n{report}"
    );
}

/// The reference orders and order lines, with an IDENTITY order number (seed, step).
fn identity_orders(seed: i64, step: i64) -> String {
    format!(
        "DROP TABLE order_lines;
DROP TABLE orders;
CREATE TABLE orders (
    order_no INT IDENTITY({seed}, {step}) NOT NULL PRIMARY KEY, doc_type NVARCHAR(10) NOT NULL,
    customer_no INT NOT NULL REFERENCES customers (customer_no), external_no NVARCHAR(50) NOT NULL,
    shop_id NVARCHAR(64) NOT NULL, status NVARCHAR(30) NOT NULL, order_date DATETIME2(3) NOT NULL,
    currency NVARCHAR(3) NOT NULL, payment_method NVARCHAR(50) NULL, payment_ref NVARCHAR(100) NULL,
    total DECIMAL(19, 4) NOT NULL, tracking_no NVARCHAR(100) NULL, rv ROWVERSION
);
CREATE INDEX orders_external ON orders (shop_id, external_no);
CREATE INDEX orders_rv ON orders (rv);
CREATE TABLE order_lines (
    order_no INT NOT NULL REFERENCES orders (order_no), line_no INT NOT NULL,
    article_no NVARCHAR(100) NULL, description NVARCHAR(200) NOT NULL,
    quantity DECIMAL(19, 4) NOT NULL, unit_price DECIMAL(19, 4) NOT NULL,
    discount DECIMAL(19, 4) NOT NULL, vat_rate DECIMAL(5, 2) NOT NULL,
    PRIMARY KEY (order_no, line_no)
);"
    )
}

/// Sends two orders and waits until both are delivered; their Mamut references in order.
async fn two_orders(world: &World, prefix: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for n in 1..=2 {
        let id = send_order(world, &format!("{prefix}-{n}")).await;
        let summary = delivered(world, id).await;
        refs.push(summary["mamut_ref"].as_str().unwrap_or_default().to_owned());
    }
    refs
}

#[tokio::test]
async fn orders_are_numbered_by_identity_or_by_a_number_series() {
    // IDENTITY with a step that max+1 would never give.
    let identity = MamutDb::start();
    identity.execute(&identity_orders(50000, 10));
    let world = world_with(SqlServerOptions {
        extra: "order_numbering = { mode = \"identity\" }\n".into(),
        ..SqlServerOptions::new(identity.port())
    })
    .await;
    let (ok, report) = world.agent.check().await;
    assert!(ok, "identity numbering on an IDENTITY column: {report}");
    let refs = two_orders(&world, "ident").await;
    assert_eq!(refs, ["50000", "50010"], "{:?}", identity.orders());
    let numbers: Vec<i64> = identity.orders().iter().map(|o| o.order_no).collect();
    assert_eq!(numbers, [50000, 50010]);
    for number in numbers {
        assert_eq!(
            identity.lines(number).len(),
            3,
            "the lines follow the number"
        );
    }
    drop(world);

    // Number series rows, incremented and read back in the order's transaction: the orders'
    // row holds the last number used (the incremented value is the number), the customers'
    // row the next number to hand out (the value before the increment is the number).
    let series = MamutDb::start();
    series.execute(
        "CREATE TABLE number_series (series NVARCHAR(20) NOT NULL PRIMARY KEY, next_no INT NOT NULL);
         INSERT INTO number_series (series, next_no) VALUES ('orders', 30000);
         INSERT INTO number_series (series, next_no) VALUES ('customers', 700)",
    );
    let series_of = |key: &str, holds: &str| {
        format!(
            "{{ mode = \"series\", table = \"number_series\", key_column = \"series\", \
             key = \"{key}\", next_column = \"next_no\", holds = \"{holds}\" }}"
        )
    };
    let world = world_with(SqlServerOptions {
        extra: format!(
            "order_numbering = {}\ncustomer_numbering = {}\n",
            series_of("orders", "last"),
            series_of("customers", "next")
        ),
        ..SqlServerOptions::new(series.port())
    })
    .await;
    let (ok, report) = world.agent.check().await;
    assert!(ok, "series numbering: {report}");
    let refs = two_orders(&world, "series").await;
    assert_eq!(refs, ["30001", "30002"], "{:?}", series.orders());
    let numbers: Vec<i64> = series.orders().iter().map(|o| o.order_no).collect();
    assert_eq!(numbers, [30001, 30002]);
    let customers: Vec<i64> = series.customers().iter().map(|c| c.0).collect();
    assert_eq!(
        customers,
        [700],
        "one customer, numbered by its series' next number"
    );
    let mut session = series.session();
    for (key, after) in [("orders", 30002), ("customers", 701)] {
        let next = batch(
            &mut session,
            &format!("SELECT next_no FROM number_series WHERE series = '{key}'"),
        );
        assert!(
            matches!(
                next.first().and_then(|r| r.first()),
                Some(PgValue::Int(n)) if *n == after
            ),
            "the {key} series row afterwards: {next:?}"
        );
    }
}
