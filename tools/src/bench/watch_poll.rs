//! B7: what an idle poll of the watcher costs the merchant's database, with the sizes of a real
//! company database loaded into the Mamut stand-in: the watcher's statements driven through
//! TDS, the same in their earlier form, and the real agent polling idle.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::pg_stats::{Stats, per_poll, stats_after, stats_since, table_stats};
use super::tds_polls::{PollForm, drive_polls, watch_statements};
use super::{Latency, Row, Scale, ms, plain_relay};
use crate::harness::mamut_db::MamutDb;
use crate::harness::wait::until;
use crate::harness::{AgentOptions, AgentProcess, SqlServerOptions, TENANT};

/// What B7 loads into the stand-in: the sizes of the issue, or a tiny quick run.
#[derive(Debug, Clone, Copy)]
struct B7Sizes {
    customers: i64,
    products: i64,
    stock: i64,
    price_lists: i64,
    orders: i64,
}

/// Loads the B7 data straight into the stand-in's PostgreSQL schema: every row still goes
/// through the table's trigger, which assigns its rowversion and checks it as SQL Server
/// would. Two connections load at once (customers and orders; products, stock, price lists),
/// then the tables are analysed as SQL Server's automatic statistics would be.
async fn load_b7(mamut: &MamutDb, sizes: B7Sizes) -> Duration {
    let started = Instant::now();
    let url = mamut.config().postgres_url.clone();
    let schema = mamut.config().pg_schema.clone();
    let B7Sizes {
        customers,
        products,
        stock,
        price_lists,
        orders,
    } = sizes;
    let first = vec![
        format!(
            "INSERT INTO customers (customer_no, name, email) \
             SELECT 100000 + i, 'Customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, {customers}) i"
        ),
        format!(
            "INSERT INTO orders (order_no, doc_type, customer_no, external_no, shop_id, status, order_date, currency, total) \
             SELECT 100000 + i, 'order', 100000 + 1 + i % {customers}, 'B7-' || i, 'demo-se', 'invoice', \
                    timestamp '2026-01-01' + i * interval '1 second', 'SEK', 100 + i % 900 \
               FROM generate_series(1, {orders}) i"
        ),
    ];
    let second = vec![
        format!(
            "INSERT INTO products (article_no, name, vat_rate, price, active) \
             SELECT 'B7-' || lpad(i::text, 7, '0'), 'Product ' || i, 25, 10 + i % 990, 1 \
               FROM generate_series(1, {products}) i"
        ),
        format!(
            "INSERT INTO stock (article_no, warehouse, quantity) \
             SELECT 'B7-' || lpad((1 + i % {products})::text, 7, '0'), 'W' || (i / {products}), i % 100 \
               FROM generate_series(0, {stock} - 1) i"
        ),
        format!(
            "INSERT INTO price_list_prices (price_list, article_no, currency, price) \
             SELECT 'RETAIL', 'B7-' || lpad(i::text, 7, '0'), 'SEK', 20 + i % 990 \
               FROM generate_series(1, {price_lists}) i"
        ),
    ];
    let run = |statements: Vec<String>| {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let pg = pg_connect(&url).await;
            pg.batch_execute(&format!("SET search_path = \"{schema}\""))
                .await
                .unwrap_or_else(|e| panic!("search_path {schema}: {e}"));
            for sql in statements {
                if let Err(e) = pg.batch_execute(&sql).await {
                    panic!("loading the B7 data fails: {e}\n{sql}");
                }
            }
        }
    };
    futures_util::future::join(run(first), run(second)).await;
    run(vec![
        "ANALYZE customers, products, stock, price_list_prices, orders".to_owned(),
    ])
    .await;
    started.elapsed()
}

/// A PostgreSQL connection of the benchmark's own (loading, reading statistics).
async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to PostgreSQL at {url} (set MAMUT_SIM_POSTGRES_URL): {e}")
        });
    tokio::spawn(connection);
    client
}

/// B7: what an idle poll of the watcher costs the merchant's database, with the sizes of a
/// real company database. The agent's own statements (`agent sql`) are driven through TDS as
/// the agent sends them, timed, and the rows PostgreSQL read for them taken from its
/// statistics; beside them the same statements in their earlier `CAST(rv AS BIGINT)` form,
/// which scan every watched table, in the same run. Then the real agent polls the stand-in
/// idle (its cursors at the newest rowversion) and the rows read per poll are counted again.
pub async fn b7(scale: Scale) -> Vec<Row> {
    let sizes = scale.pick(
        B7Sizes {
            customers: 100,
            products: 1_000,
            stock: 3_000,
            price_lists: 1_000,
            orders: 10_000,
        },
        B7Sizes {
            customers: 10_000,
            products: 100_000,
            stock: 300_000,
            price_lists: 100_000,
            orders: 1_000_000,
        },
    );
    let agent_polls = scale.pick(8, 80);
    let driven_polls = scale.pick(5, 50);
    let cast_polls = scale.pick(2, 5);
    let interval = Duration::from_millis(250);
    let (statements, preamble) = watch_statements().await;
    assert_eq!(
        statements.len(),
        5,
        "`agent sql` should print five watcher statements that read a table: {statements:?}"
    );
    let mut queries_per_poll = std::collections::BTreeMap::<String, i64>::new();
    for s in &statements {
        *queries_per_poll.entry(s.table.clone()).or_default() += 1;
    }
    let tables: Vec<String> = queries_per_poll.keys().cloned().collect();
    let expected = |polls: usize| {
        queries_per_poll
            .iter()
            .map(|(t, q)| (t.clone(), q * polls as i64))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mamut = MamutDb::start();
    let load_time = load_b7(&mamut, sizes).await;
    let schema = mamut.config().pg_schema.to_lowercase();
    let pg = pg_connect(&mamut.config().postgres_url).await;
    let newest: i64 = pg
        .query_one(
            &format!(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM \"{schema}\".tsql_rowversion"
            ),
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("cannot read the stand-in's rowversion sequence: {e}"));

    // The agent's statements driven through TDS, timed; then their earlier form. Each phase
    // waits until the statistics hold every scan it made (its sessions send them when they
    // close), so its counters are exact.
    let before = table_stats(&pg, &schema).await;
    let (times, returned) = drive_polls(
        mamut.port(),
        (&statements, &preamble),
        PollForm::Rowversion,
        newest,
        driven_polls,
    )
    .await;
    let driven = stats_after(&pg, &schema, &before, &expected(driven_polls)).await;
    let idle = Latency::of(times);
    let before = table_stats(&pg, &schema).await;
    let (cast_times, cast_returned) = drive_polls(
        mamut.port(),
        (&statements, &preamble),
        PollForm::Cast,
        newest,
        cast_polls,
    )
    .await;
    let cast = stats_after(&pg, &schema, &before, &expected(cast_polls)).await;
    let full = Latency::of(cast_times);
    // Scans per statement: PostgreSQL's planner also looks at the rowversion index's end when
    // the cursor lies past its statistics, so one statement may be more than one scan.
    let scans_per_statement = |t: &str| {
        driven.as_ref().and_then(|d| d.get(t)).map_or(1.0, |s| {
            s.scans as f64 / (queries_per_poll[t] as f64 * driven_polls as f64)
        })
    };

    // The real agent, idle: its cursors at the newest rowversion, polling every 250 ms.
    let (relay, _shop) = plain_relay(None).await;
    let (_, token) = relay.admin().create_agent(TENANT).await;
    let options = |port| AgentOptions {
        sqlserver: Some(SqlServerOptions::new(port)),
        watch_interval_ms: interval.as_millis() as u64,
        ..AgentOptions::default()
    };
    // First started towards a closed port, so that it reads nothing before its cursors are set.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(9, |a| a.port());
    let mut agent = AgentProcess::start(&relay, &token, options(closed)).await;
    agent.kill().await;
    agent.configure(&options(mamut.port()));
    let cursors: serde_json::Map<String, Value> =
        ["stock", "price", "price_list", "product", "order_status"]
            .iter()
            .map(|kind| ((*kind).to_owned(), json!(newest)))
            .collect();
    if let Err(e) = std::fs::write(agent.state_file(), Value::Object(cursors).to_string()) {
        panic!("cannot write the agent's state file: {e}");
    }
    agent.restart().await;
    let stock_scans_per_poll = scans_per_statement("stock") * queries_per_poll["stock"] as f64;
    let polls_of = |delta: &Stats| {
        delta.get("stock").map_or(0.0, |s| s.scans as f64) / stock_scans_per_poll.max(1.0)
    };
    let started = table_stats(&pg, &schema).await;
    // Past its start: a few polls seen.
    let polling = until(Duration::from_secs(60), || async {
        polls_of(&stats_since(&table_stats(&pg, &schema).await, &started)) >= 4.0
    })
    .await;
    let before = table_stats(&pg, &schema).await;
    let window = Instant::now();
    let counted = polling
        && until(Duration::from_secs(120), || async {
            polls_of(&stats_since(&table_stats(&pg, &schema).await, &before)) >= agent_polls as f64
        })
        .await;
    let window = window.elapsed();
    let agent_delta = stats_since(&table_stats(&pg, &schema).await, &before);
    agent.kill().await;
    drop(agent);
    drop(relay);
    drop(pg);
    drop(mamut);
    // A session sends a table's row and scan counters together, so rows per scan is exact for
    // the scans counted, whichever session's counters are still on their way.
    let agent_rows: f64 = tables
        .iter()
        .map(|t| {
            let s = agent_delta.get(t).copied().unwrap_or_default();
            s.rows as f64 / s.scans.max(1) as f64
                * scans_per_statement(t)
                * queries_per_poll[t] as f64
        })
        .sum();
    let agent_seen = polls_of(&agent_delta);
    let on_rv_index = |d: &Stats| {
        tables.iter().all(|t| {
            d.get(t)
                .is_some_and(|s| s.scans > 0 && s.rv_index_scans == s.scans)
        })
    };
    let agent_on_index = on_rv_index(&agent_delta);
    let (driven_rows, driven_entries, driven_buffers) =
        driven.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |d| {
            per_poll(d, &tables, driven_polls as f64)
        });
    // The stand-in's own record of SQL Server column types, read for every statement; SQL
    // Server keeps its metadata in memory, so this is not part of the poll's cost there.
    let catalog_rows = driven.as_ref().map_or(f64::NAN, |d| {
        per_poll(d, &["tsql_columns".to_owned()], driven_polls as f64).0
    });
    let (cast_rows, _, cast_buffers) = cast.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |d| {
        per_poll(d, &tables, cast_polls as f64)
    });
    let B7Sizes {
        products,
        stock,
        price_lists,
        orders,
        ..
    } = sizes;
    let complete = counted && driven.is_some() && cast.is_some();
    vec![Row {
        id: "B7",
        name: format!(
            "idle watcher poll ({} table reads{}), {products} products, {stock} stock rows, {price_lists} price-list rows, {orders} orders (loaded in {:.0} s)",
            statements.len(),
            preamble
                .iter()
                .map(|p| format!(", each after `{}`", p.sql))
                .collect::<String>(),
            load_time.as_secs_f64()
        ),
        figure: format!(
            "real agent: {agent_rows:.1} rows read per idle poll ({agent_seen:.0} polls in {:.1} s{}); \
             driven: {driven_rows:.1} rows, {driven_entries:.1} index entries, {driven_buffers:.0} buffers per poll, {returned} rows returned \
             (+ {catalog_rows:.0} rows of the stand-in's column-type table); \
             poll p50 {} p99 {}, {:.0}× faster than the cast form{}",
            window.as_secs_f64(),
            if agent_on_index && driven.as_ref().is_some_and(on_rv_index) {
                ", every scan on the rowversion index"
            } else {
                ", NOT every scan on the rowversion index"
            },
            ms(idle.p50),
            ms(idle.p99),
            full.p50.as_secs_f64() / idle.p50.as_secs_f64().max(1e-9),
            if complete {
                ""
            } else {
                "; INCOMPLETE (statistics did not arrive)"
            }
        ),
        baseline: format!(
            "`CAST(rv AS BIGINT) > @P1`: {cast_rows:.0} rows, {cast_buffers:.0} buffers per poll, poll p50 {} ({cast_polls} polls, {cast_returned} rows returned)",
            ms(full.p50)
        ),
        target: "≤ 100 rows per idle poll (index seeks only)".into(),
        met: complete && agent_rows <= 100.0 && driven_rows <= 100.0,
    }]
}
