//! The TDS stand-in, checked with the real tiberius client against what SQL Server does: result
//! types, rowversions under concurrent writers and MIN_ACTIVE_ROWVERSION(), lock waits and
//! timeouts, constraint errors with SQL Server's numbers, nested transactions, the default
//! case-insensitive collation, batches compiled before they run, and the RPC token stream.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tests::mamut_sim::exec::{Session, drop_schema};
use tests::mamut_sim::request::Request;
use tests::mamut_sim::types::PgValue;
use tests::mamut_sim::{MamutSim, SimConfig, default_postgres_url};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type Tds = Client<Compat<TcpStream>>;

struct Sim {
    sim: MamutSim,
    config: SimConfig,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.sim.stop();
        let _ = drop_schema(&self.config.postgres_url, &self.config.pg_schema);
    }
}

impl Sim {
    /// A raw session on the stand-in's engine (a second user, e.g. holding a lock).
    fn session(&self) -> Session {
        Session::connect(&self.config).expect("a stand-in session opens")
    }
}

fn start() -> Sim {
    let config = SimConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        postgres_url: default_postgres_url(),
        pg_schema: format!("sim_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        user: "mamut".into(),
        password: "s3cret-pass".into(),
        database: "mamut".into(),
    };
    let sim = MamutSim::start(config.clone()).expect("stand-in starts (is PostgreSQL running?)");
    Sim { sim, config }
}

async fn connect(sim: &Sim, password: &str) -> tiberius::Result<Tds> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(sim.sim.addr().port());
    config.authentication(AuthMethod::sql_server("mamut", password));
    config.database("mamut");
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(sim.sim.addr()).await.expect("tcp");
    tcp.set_nodelay(true).expect("nodelay");
    Client::connect(config, tcp.compat_write()).await
}

async fn client(sim: &Sim) -> Tds {
    connect(sim, "s3cret-pass").await.expect("login")
}

async fn run(c: &mut Tds, sql: &str) {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn rows(c: &mut Tds, sql: &str) -> Vec<tiberius::Row> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The SQL Server error number a batch fails with.
async fn error_of(c: &mut Tds, sql: &str) -> (u32, String) {
    let result = match c.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Err(tiberius::error::Error::Server(e)) => (e.code(), e.message().to_owned()),
        Err(other) => panic!("{sql}: expected a server error, got {other:?}"),
        Ok(()) => panic!("{sql}: succeeded, expected an error"),
    }
}

async fn count(c: &mut Tds, sql: &str) -> i32 {
    rows(c, sql).await[0]
        .get::<i32, _>(0)
        .expect("COUNT(*) arrives as int, as SQL Server sends it")
}

#[tokio::test]
async fn a_wrong_password_is_refused_like_sql_server_does() {
    let sim = start();
    match connect(&sim, "wrong").await {
        Err(tiberius::error::Error::Server(e)) => assert_eq!(e.code(), 18456),
        Err(other) => panic!("expected a login error, got {other:?}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
}

#[tokio::test]
async fn every_supported_type_round_trips_with_its_declared_type() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE t (i INT, b BIGINT, f BIT, d DECIMAL(19, 4), s NVARCHAR(200), \
         at DATETIME2(3), bin VARBINARY(MAX), long NVARCHAR(MAX), tiny TINYINT, small SMALLINT)",
    )
    .await;
    let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
        .and_then(|d| d.and_hms_milli_opt(10, 14, 12, 345))
        .expect("valid");
    let price = Decimal::new(1_990_050, 4); // 199.0050
    let long = "Åäö-".repeat(3000); // longer than 4000 characters: sent as NVARCHAR(MAX)
    let inserted = c
        .execute(
            "INSERT INTO t (i, b, f, d, s, at, bin, long, tiny, small) VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10)",
            &[&-42i32, &9_000_000_000i64, &true, &price, &"T-shirt röd, M", &at, &vec![0u8, 1, 255], &long.as_str(), &200u8, &-7i16],
        )
        .await
        .expect("insert");
    assert_eq!(inserted.total(), 1);
    c.execute("INSERT INTO t (i) VALUES (@P1)", &[&Option::<i32>::None])
        .await
        .expect("insert nulls");
    let found = c
        .query(
            "SELECT i, b, f, d, s, at, bin, long, tiny, small FROM t WHERE s = @P1",
            &[&"T-shirt röd, M"],
        )
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(found.len(), 1);
    let row = &found[0];
    assert_eq!(row.get::<i32, _>(0), Some(-42));
    assert_eq!(row.get::<i64, _>(1), Some(9_000_000_000));
    assert_eq!(row.get::<bool, _>(2), Some(true));
    assert_eq!(row.get::<Decimal, _>(3), Some(price));
    assert_eq!(row.get::<&str, _>(4), Some("T-shirt röd, M"));
    assert_eq!(row.get::<chrono::NaiveDateTime, _>(5), Some(at));
    assert_eq!(row.get::<&[u8], _>(6), Some(&[0u8, 1, 255][..]));
    assert_eq!(row.get::<&str, _>(7), Some(long.as_str()));
    assert_eq!(row.get::<u8, _>(8), Some(200), "tinyint arrives as tinyint");
    assert_eq!(
        row.get::<i16, _>(9),
        Some(-7),
        "smallint arrives as smallint"
    );
    let nulls = rows(&mut c, "SELECT i, d, s FROM t WHERE s IS NULL").await;
    assert_eq!(nulls.len(), 1);
    assert_eq!(nulls[0].get::<i32, _>(0), None);
    assert_eq!(nulls[0].get::<Decimal, _>(1), None);
    assert_eq!(nulls[0].get::<&str, _>(2), None);
}

#[tokio::test]
async fn expressions_have_sql_server_result_types() {
    let sim = start();
    let mut c = client(&sim).await;
    run(&mut c, "CREATE TABLE n (a INT, p DECIMAL(5, 2), s NVARCHAR(10)); INSERT INTO n (a, p, s) VALUES (2000000000, 1.5, N'x'); INSERT INTO n (a, p, s) VALUES (1, 2.25, N'y')").await;
    assert_eq!(count(&mut c, "SELECT COUNT(*) FROM n").await, 2);
    let r = &rows(
        &mut c,
        "SELECT COUNT_BIG(*), MAX(a), CAST(MAX(a) AS BIGINT), 1, SUM(p), MAX(s), 'a' + 'b', ISNULL(MAX(a), 0) + 1 FROM n",
    )
    .await[0];
    assert_eq!(r.get::<i64, _>(0), Some(2), "COUNT_BIG is bigint");
    assert_eq!(r.get::<i32, _>(1), Some(2_000_000_000), "MAX(int) is int");
    assert_eq!(
        r.get::<i64, _>(2),
        Some(2_000_000_000),
        "CAST gives the declared type"
    );
    assert_eq!(r.get::<i32, _>(3), Some(1), "an integer literal is int");
    assert_eq!(r.get::<Decimal, _>(4), Some(Decimal::new(375, 2)));
    assert_eq!(r.get::<&str, _>(5), Some("y"));
    assert_eq!(r.get::<&str, _>(6), Some("ab"), "'a' + 'b' concatenates");
    assert_eq!(r.get::<i32, _>(7), Some(2_000_000_001));
    // SUM of int is int: it overflows as SQL Server's does.
    run(&mut c, "INSERT INTO n (a) VALUES (2000000000)").await;
    let (number, message) = error_of(&mut c, "SELECT SUM(a) FROM n").await;
    assert_eq!(number, 8115, "{message}");
    let info = &rows(
        &mut c,
        "SELECT @@VERSION, DB_NAME(), SERVERPROPERTY('ProductVersion'), @@TRANCOUNT, @@SPID",
    )
    .await[0];
    assert!(
        info.get::<&str, _>(0)
            .is_some_and(|v| v.contains("SQL Server"))
    );
    assert_eq!(info.get::<&str, _>(1), Some("mamut"));
    assert!(info.get::<&str, _>(2).is_some_and(|v| v.starts_with("16.")));
    assert_eq!(info.get::<i32, _>(3), Some(0));
    assert!(info.get::<i32, _>(4).is_some_and(|spid| spid >= 51));
}

#[tokio::test]
async fn errors_surface_with_sql_server_numbers_and_the_connection_stays_usable() {
    let sim = start();
    let mut c = client(&sim).await;
    assert_eq!(error_of(&mut c, "SELECT x FROM no_such_table").await.0, 208);
    run(
        &mut c,
        "CREATE TABLE customers (customer_no INT NOT NULL PRIMARY KEY, name NVARCHAR(10) NOT NULL, price DECIMAL(5, 2) NULL);
         CREATE TABLE ids (id INT IDENTITY(100, 1) PRIMARY KEY, name NVARCHAR(10) NULL)",
    )
    .await;
    run(
        &mut c,
        "INSERT INTO customers (customer_no, name) VALUES (1, N'Anna')",
    )
    .await;
    let (number, message) = error_of(
        &mut c,
        "INSERT INTO customers (customer_no, name) VALUES (1, N'Bo')",
    )
    .await;
    assert_eq!(number, 2627, "{message}");
    let (number, message) = error_of(
        &mut c,
        "INSERT INTO customers (customer_no, name) VALUES (2, N'Aktiebolaget Långt Namn')",
    )
    .await;
    assert_eq!(number, 2628, "{message}");
    assert_eq!(
        message,
        "String or binary data would be truncated in table 'mamut.dbo.customers', column 'name'. Truncated value: 'Aktiebolag'."
    );
    let (number, message) = error_of(
        &mut c,
        "INSERT INTO customers (customer_no, name, price) VALUES (3, N'C', 1234.5)",
    )
    .await;
    assert_eq!(number, 8115, "{message}");
    assert_eq!(
        message,
        "Arithmetic overflow error converting numeric to data type numeric."
    );
    let (number, message) =
        error_of(&mut c, "INSERT INTO customers (customer_no) VALUES (4)").await;
    assert_eq!(number, 515, "{message}");
    assert!(
        message.contains("'name'") && message.contains("mamut.dbo.customers"),
        "{message}"
    );
    let (number, message) = error_of(&mut c, "INSERT INTO ids (id, name) VALUES (5, N'x')").await;
    assert_eq!(number, 544, "{message}");
    assert!(message.contains("'ids'"), "{message}");
    assert_eq!(count(&mut c, "SELECT COUNT(*) FROM customers").await, 1);
}

#[tokio::test]
async fn identity_output_inserted_and_scope_identity_number_rows() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE ids (id INT IDENTITY(100, 1) PRIMARY KEY, name NVARCHAR(10) NULL);
         CREATE TABLE series (series NVARCHAR(10) PRIMARY KEY, next_no INT NOT NULL);
         INSERT INTO series (series, next_no) VALUES (N'orders', 7)",
    )
    .await;
    let id = c
        .query(
            "INSERT INTO ids (name) VALUES (@P1); SELECT SCOPE_IDENTITY()",
            &[&"a"],
        )
        .await
        .expect("insert")
        .into_row()
        .await
        .expect("row");
    assert_eq!(
        id.and_then(|r| r.get::<Decimal, _>(0)),
        Some(Decimal::from(100))
    );
    let fresh = rows(&mut c, "SELECT SCOPE_IDENTITY()").await;
    assert_eq!(
        fresh[0].get::<Decimal, _>(0),
        None,
        "SCOPE_IDENTITY() is per request"
    );
    let out = c
        .query(
            "INSERT INTO ids (name) OUTPUT INSERTED.id VALUES (@P1)",
            &[&"b"],
        )
        .await
        .expect("insert")
        .into_row()
        .await
        .expect("row");
    assert_eq!(out.and_then(|r| r.get::<i32, _>(0)), Some(101));
    let next = c
        .query(
            "UPDATE series SET next_no = next_no + 1 OUTPUT INSERTED.next_no WHERE series = @P1",
            &[&"orders"],
        )
        .await
        .expect("update")
        .into_row()
        .await
        .expect("row");
    assert_eq!(next.and_then(|r| r.get::<i32, _>(0)), Some(8));
}

#[tokio::test]
async fn the_agents_catalog_queries_are_answered_with_sql_server_types() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE orders (order_no INT IDENTITY(1, 1) PRIMARY KEY, name NVARCHAR(100) NOT NULL, note NVARCHAR(MAX) NULL, total DECIMAL(19, 4) NOT NULL DEFAULT 0, rv ROWVERSION);
         CREATE INDEX orders_rv ON orders (rv)",
    )
    .await;
    let columns = c
        .query(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE, COLUMN_DEFAULT, COLUMNPROPERTY(OBJECT_ID(TABLE_SCHEMA + '.' + TABLE_NAME), COLUMN_NAME, 'IsIdentity') FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = @P1 ORDER BY ORDINAL_POSITION",
            &[&"ORDERS"],
        )
        .await
        .expect("columns")
        .into_first_result()
        .await
        .expect("rows");
    let summary: Vec<_> = columns
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).map(str::to_owned),
                r.get::<&str, _>(1).map(str::to_owned),
                r.get::<i32, _>(2),
                r.get::<u8, _>(3),
                r.get::<i32, _>(4),
                r.get::<&str, _>(5).map(str::to_owned),
                r.get::<&str, _>(6).map(str::to_owned),
                r.get::<i32, _>(7),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        summary,
        vec![
            (
                s("order_no"),
                s("int"),
                None,
                Some(10),
                Some(0),
                s("NO"),
                None,
                Some(1)
            ),
            (
                s("name"),
                s("nvarchar"),
                Some(100),
                None,
                None,
                s("NO"),
                None,
                Some(0)
            ),
            (
                s("note"),
                s("nvarchar"),
                Some(-1),
                None,
                None,
                s("YES"),
                None,
                Some(0)
            ),
            (
                s("total"),
                s("decimal"),
                None,
                Some(19),
                Some(4),
                s("NO"),
                s("((0))"),
                Some(0)
            ),
            (
                s("rv"),
                s("timestamp"),
                None,
                None,
                None,
                s("NO"),
                None,
                Some(0)
            ),
        ]
    );
    let index_sql = "SELECT COUNT(*) FROM sys.indexes i JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id WHERE i.object_id = OBJECT_ID(@P1) AND ic.key_ordinal = 1 AND c.name = @P2";
    for (column, expected) in [("rv", 1), ("order_no", 1), ("name", 0)] {
        let found = c
            .query(index_sql, &[&"dbo.orders", &column])
            .await
            .expect("index query")
            .into_row()
            .await
            .expect("row");
        assert_eq!(
            found.and_then(|r| r.get::<i32, _>(0)),
            Some(expected),
            "{column}"
        );
    }
}

#[tokio::test]
async fn rollback_rolls_back_and_commit_keeps_and_transactions_nest() {
    let sim = start();
    let mut c = client(&sim).await;
    run(&mut c, "CREATE TABLE o (id INT)").await;
    run(&mut c, "BEGIN TRAN").await;
    c.execute("INSERT INTO o (id) VALUES (@P1)", &[&1i32])
        .await
        .expect("insert");
    run(&mut c, "ROLLBACK").await;
    run(&mut c, "BEGIN TRAN").await;
    run(&mut c, "BEGIN TRAN").await;
    assert_eq!(count(&mut c, "SELECT @@TRANCOUNT").await, 2);
    c.execute("INSERT INTO o (id) VALUES (@P1)", &[&2i32])
        .await
        .expect("insert");
    run(&mut c, "COMMIT").await;
    assert_eq!(
        count(&mut c, "SELECT @@TRANCOUNT").await,
        1,
        "an inner COMMIT only decrements"
    );
    run(&mut c, "ROLLBACK").await;
    assert_eq!(count(&mut c, "SELECT @@TRANCOUNT").await, 0);
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM o").await,
        0,
        "ROLLBACK undoes the inner COMMIT too"
    );
    run(&mut c, "BEGIN TRAN; INSERT INTO o (id) VALUES (3); COMMIT").await;
    assert_eq!(error_of(&mut c, "COMMIT").await.0, 3902);
    assert_eq!(error_of(&mut c, "ROLLBACK").await.0, 3903);
    run(&mut c, "IF @@TRANCOUNT > 0 ROLLBACK").await;
    // A failed statement inside a transaction leaves the transaction usable, as on SQL Server.
    run(&mut c, "CREATE TABLE k (id INT PRIMARY KEY)").await;
    run(&mut c, "BEGIN TRAN; INSERT INTO k (id) VALUES (1)").await;
    assert_eq!(
        error_of(&mut c, "INSERT INTO k (id) VALUES (1)").await.0,
        2627
    );
    run(&mut c, "INSERT INTO k (id) VALUES (2); COMMIT").await;
    assert_eq!(count(&mut c, "SELECT COUNT(*) FROM k").await, 2);
    let ids: Vec<i32> = rows(&mut c, "SELECT id FROM o")
        .await
        .iter()
        .filter_map(|r| r.get::<i32, _>(0))
        .collect();
    assert_eq!(ids, [3]);
}

#[tokio::test]
async fn login_time_set_options_and_use_are_accepted() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "SET ANSI_NULLS ON; SET ANSI_WARNINGS ON; SET QUOTED_IDENTIFIER ON; SET TEXTSIZE 2147483647; \
         SET DATEFORMAT ymd; SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET NOCOUNT OFF; \
         SET ARITHABORT ON; SET CONCAT_NULL_YIELDS_NULL ON; USE [mamut]",
    )
    .await;
    assert_eq!(error_of(&mut c, "USE other").await.0, 911);
    assert_eq!(error_of(&mut c, "SET BOGUS_OPTION ON").await.0, 195);
}

#[tokio::test]
async fn comparisons_are_case_insensitive_like_the_default_collation() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE p (article_no NVARCHAR(20) PRIMARY KEY, name NVARCHAR(20)); INSERT INTO p (article_no, name) VALUES (N'MUG-01', N'Mugg')",
    )
    .await;
    let found = c
        .query("SELECT name FROM p WHERE article_no = @P1", &[&"mug-01"])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(found.len(), 1);
    assert_eq!(
        error_of(&mut c, "INSERT INTO p (article_no) VALUES (N'Mug-01')")
            .await
            .0,
        2627
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM p WHERE name LIKE 'mu%'").await,
        1
    );
}

#[tokio::test]
async fn a_batch_with_a_syntax_error_anywhere_runs_nothing() {
    let sim = start();
    let mut c = client(&sim).await;
    run(&mut c, "CREATE TABLE o (id INT)").await;
    assert_eq!(
        error_of(&mut c, "INSERT INTO o (id) VALUES (1); SELECT 1 +")
            .await
            .0,
        102
    );
    assert_eq!(
        error_of(&mut c, "INSERT INTO o (id) VALUES (1); SELECT FROM o")
            .await
            .0,
        102
    );
    assert_eq!(
        error_of(
            &mut c,
            "INSERT INTO o (id) VALUES (1); SELECT no_such_function(1)"
        )
        .await
        .0,
        195
    );
    assert_eq!(count(&mut c, "SELECT COUNT(*) FROM o").await, 0);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_transaction_leaves_nothing() {
    let sim = start();
    let mut c = client(&sim).await;
    run(&mut c, "CREATE TABLE o (id INT)").await;
    run(&mut c, "BEGIN TRAN").await;
    c.execute("INSERT INTO o (id) VALUES (@P1)", &[&1i32])
        .await
        .expect("insert");
    drop(c);
    let mut other = sim.session();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The open transaction ends with the connection; until then the row is uncommitted anyway.
    loop {
        let found = other.script("SELECT COUNT(*) FROM o").expect("count");
        if found == vec![vec![PgValue::Int(0)]] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the open transaction was not rolled back"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn rowversions_are_binary8_and_grow_with_every_write() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE s (a NVARCHAR(10), q INT, rv ROWVERSION)",
    )
    .await;
    c.execute("INSERT INTO s (a, q) VALUES (@P1, @P2)", &[&"x", &1i32])
        .await
        .expect("insert");
    let rv = |rows: Vec<tiberius::Row>| rows[0].get::<&[u8], _>(0).map(<[u8]>::to_vec);
    let first = rv(rows(&mut c, "SELECT rv FROM s").await);
    c.execute("UPDATE s SET q = @P1", &[&2i32])
        .await
        .expect("update");
    let second = rv(rows(&mut c, "SELECT rv FROM s").await);
    assert_eq!(first.as_ref().map(Vec::len), Some(8));
    assert!(second > first, "{first:?} then {second:?}");
    let since = c
        .query(
            "SELECT a FROM s WHERE rv > @P1 ORDER BY rv",
            &[&first.clone().unwrap_or_default()],
        )
        .await
        .expect("rv > binary(8) parameter")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(since.len(), 1);
    let dbts = rv(rows(&mut c, "SELECT @@DBTS").await);
    assert_eq!(dbts, second, "@@DBTS is the last rowversion");
}

#[tokio::test]
async fn out_of_order_commits_are_bounded_by_min_active_rowversion() {
    let sim = start();
    let mut setup = client(&sim).await;
    run(
        &mut setup,
        "CREATE TABLE stock (article_no NVARCHAR(20) PRIMARY KEY, quantity INT, rv ROWVERSION)",
    )
    .await;
    let mut early = client(&sim).await;
    let mut late = client(&sim).await;
    let mut watcher = client(&sim).await;
    // `early` writes first (lower rowversion) but commits last.
    run(
        &mut early,
        "BEGIN TRAN; INSERT INTO stock (article_no, quantity) VALUES (N'A', 1)",
    )
    .await;
    run(
        &mut late,
        "BEGIN TRAN; INSERT INTO stock (article_no, quantity) VALUES (N'B', 2); COMMIT",
    )
    .await;
    let zero = vec![0u8; 8];
    let naive = watcher
        .query(
            "SELECT article_no, rv FROM stock WHERE rv > @P1 ORDER BY rv",
            &[&zero],
        )
        .await
        .expect("naive poll")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(
        naive.len(),
        1,
        "only B is visible: a cursor moved to B's rowversion would skip A"
    );
    let bounded_sql = "SELECT article_no, rv FROM stock WHERE rv > @P1 AND rv < MIN_ACTIVE_ROWVERSION() ORDER BY rv";
    let bounded = watcher
        .query(bounded_sql, &[&zero])
        .await
        .expect("bounded poll")
        .into_first_result()
        .await
        .expect("rows");
    assert!(
        bounded.is_empty(),
        "A's open transaction bounds the poll below B"
    );
    run(&mut early, "COMMIT").await;
    let bounded = watcher
        .query(bounded_sql, &[&zero])
        .await
        .expect("bounded poll")
        .into_first_result()
        .await
        .expect("rows");
    let seen: Vec<&str> = bounded.iter().filter_map(|r| r.get::<&str, _>(0)).collect();
    assert_eq!(seen, ["A", "B"], "nothing is skipped once A commits");
    let min = rows(&mut watcher, "SELECT MIN_ACTIVE_ROWVERSION(), @@DBTS").await;
    let (min, dbts) = (
        min[0].get::<&[u8], _>(0).map(<[u8]>::to_vec),
        min[0].get::<&[u8], _>(1).map(<[u8]>::to_vec),
    );
    let as_int = |v: Option<Vec<u8>>| {
        v.and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    assert_eq!(
        as_int(min),
        as_int(dbts).map(|d| d + 1),
        "no open writer: @@DBTS + 1"
    );
}

#[tokio::test]
async fn a_held_lock_makes_updlock_wait_and_lock_timeout_fail_with_1222() {
    let sim = start();
    let mut c = client(&sim).await;
    run(&mut c, "CREATE TABLE orders (order_no INT PRIMARY KEY, shop NVARCHAR(10)); INSERT INTO orders (order_no, shop) VALUES (1, N'a')").await;
    // A Mamut user numbering orders holds the lock.
    let mut user = sim.session();
    user.execute("BEGIN TRAN; SELECT MAX(order_no) FROM orders WITH (UPDLOCK, HOLDLOCK)")
        .expect("the user's lookup");
    run(&mut c, "SET LOCK_TIMEOUT 200").await;
    run(&mut c, "BEGIN TRAN").await;
    let started = Instant::now();
    let (number, message) = error_of(
        &mut c,
        "SELECT ISNULL(MAX(order_no), 0) + 1 FROM orders WITH (UPDLOCK, HOLDLOCK)",
    )
    .await;
    assert_eq!(number, 1222, "{message}");
    assert_eq!(message, "Lock request time out period exceeded.");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it waited for the lock first"
    );
    assert_eq!(
        count(&mut c, "SELECT @@TRANCOUNT").await,
        1,
        "1222 leaves the transaction open"
    );
    // Readers are not blocked.
    assert_eq!(count(&mut c, "SELECT COUNT(*) FROM orders").await, 1);
    user.execute("COMMIT").expect("the user commits");
    assert_eq!(
        count(
            &mut c,
            "SELECT ISNULL(MAX(order_no), 0) + 1 FROM orders WITH (UPDLOCK, HOLDLOCK)"
        )
        .await,
        2
    );
    run(&mut c, "COMMIT").await;
}

#[tokio::test]
async fn min_active_rowversion_and_writes_take_no_lock_that_lock_timeout_could_refuse() {
    let sim = start();
    let mut setup = client(&sim).await;
    run(
        &mut setup,
        "CREATE TABLE stock (article_no NVARCHAR(20) PRIMARY KEY, quantity INT NOT NULL, rv ROWVERSION)",
    )
    .await;
    // Five readers as the agent's watcher polls (no lock wait at all) and writers beside them.
    let mut tasks = tokio::task::JoinSet::new();
    for reader in 0..5 {
        let mut c = client(&sim).await;
        tasks.spawn(async move {
            run(&mut c, "SET LOCK_TIMEOUT 0").await;
            for _ in 0..60 {
                let result = match c.simple_query("SELECT MIN_ACTIVE_ROWVERSION()").await {
                    Ok(stream) => stream.into_first_result().await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    return Err(format!("reader {reader}: {e}"));
                }
            }
            Ok(())
        });
    }
    for writer in 0..2 {
        let mut c = client(&sim).await;
        tasks.spawn(async move {
            run(&mut c, "SET LOCK_TIMEOUT 0").await;
            for i in 0..60 {
                let sql = format!(
                    "INSERT INTO stock (article_no, quantity) VALUES (N'W{writer}-{i}', {i})"
                );
                let result = match c.simple_query(sql).await {
                    Ok(stream) => stream.into_results().await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    return Err(format!("writer {writer}: {e}"));
                }
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.expect("task") {
            panic!("SQL Server takes no lock here, so no 1222 may come: {e}");
        }
    }
    assert_eq!(count(&mut setup, "SELECT COUNT(*) FROM stock").await, 120);
}

#[tokio::test]
async fn a_cancelled_request_stops_waiting() {
    let sim = start();
    let mut setup = sim.session();
    setup
        .execute("CREATE TABLE orders (order_no INT PRIMARY KEY)")
        .expect("create");
    let mut user = sim.session();
    user.execute("BEGIN TRAN; SELECT MAX(order_no) FROM orders WITH (UPDLOCK, HOLDLOCK)")
        .expect("the user's lookup");
    let mut waiter = sim.session();
    let handle = waiter.cancel_handle();
    let pid = waiter.backend_pid().expect("the waiter's backend");
    let (answered, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = answered.send(waiter.run(&Request {
            sql: "BEGIN TRAN; SELECT MAX(order_no) FROM orders WITH (UPDLOCK, HOLDLOCK)".into(),
            params: Vec::new(),
            rpc: false,
        }));
    });
    // Cancel once this waiter (not another test's) is waiting for the lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg_waiting(&sim.config, pid) == 0 {
        assert!(Instant::now() < deadline, "the waiter never waited");
        std::thread::yield_now();
    }
    handle.cancel();
    let answer = answer
        .recv_timeout(Duration::from_secs(30))
        .expect("the cancelled waiter returns while the lock is still held");
    assert!(
        !answer.contains(&0xD1),
        "no rows came back from the cancelled statement"
    );
}

/// Whether the PostgreSQL backend `pid` waits for a lock (1) or not (0).
fn pg_waiting(config: &SimConfig, pid: i32) -> i64 {
    tests::mamut_sim::exec::off_runtime(|| pg_waiting_now(config, pid))
}

fn pg_waiting_now(config: &SimConfig, pid: i32) -> i64 {
    let Ok(mut client) = postgres::Client::connect(&config.postgres_url, postgres::NoTls) else {
        return 0;
    };
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid = $1",
            &[&pid],
        )
        .ok()
        .and_then(|r| r.try_get::<_, i64>(0).ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_rpc_answer_marks_every_doneinproc_with_done_more() {
    let sim = start();
    let mut session = sim.session();
    let answer = session.run(&Request {
        sql: "SELECT 1".into(),
        params: Vec::new(),
        rpc: true,
    });
    // ... DONEINPROC (13 bytes), RETURNSTATUS (5), DONEPROC (13).
    let n = answer.len();
    assert!(n > 31, "{answer:?}");
    let doneinproc = &answer[n - 31..n - 18];
    assert_eq!(doneinproc[0], 0xFF, "{answer:?}");
    let status = u16::from_le_bytes([doneinproc[1], doneinproc[2]]);
    assert_eq!(
        status & 0x0001,
        0x0001,
        "DONEINPROC before RETURNSTATUS has DONE_MORE"
    );
    assert_eq!(answer[n - 18], 0x79, "RETURNSTATUS");
    assert_eq!(answer[n - 13], 0xFE, "DONEPROC ends the answer");
    let batch = session.run(&Request {
        sql: "SELECT 1; SELECT 2".into(),
        params: Vec::new(),
        rpc: false,
    });
    let last = &batch[batch.len() - 13..];
    assert_eq!(last[0], 0xFD);
    assert_eq!(
        u16::from_le_bytes([last[1], last[2]]) & 0x0001,
        0,
        "the last DONE has no DONE_MORE"
    );
}

/// The plan PostgreSQL makes for `sql` on the stand-in's schema with sequential scans
/// disabled: an `Index` scan in it means the query can use the index.
fn pg_plan(config: &SimConfig, sql: &str) -> String {
    tests::mamut_sim::exec::off_runtime(|| {
        let mut client = postgres::Client::connect(&config.postgres_url, postgres::NoTls)
            .expect("PostgreSQL for EXPLAIN");
        client
            .batch_execute(&format!(
                "SET search_path = \"{}\", pg_catalog; SET enable_seqscan = off",
                config.pg_schema
            ))
            .expect("search_path");
        client
            .query(&format!("EXPLAIN {sql}"), &[])
            .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[tokio::test]
async fn text_comparisons_ignore_case_and_trailing_spaces_like_the_default_collation() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE p (article_no NVARCHAR(20) PRIMARY KEY, name NVARCHAR(20), email NVARCHAR(50)); \
         CREATE INDEX p_email ON p (email); \
         INSERT INTO p (article_no, name, email) VALUES (N'MUG-01', N'Mugg', N'Kund@Example.se'); \
         INSERT INTO p (article_no, name, email) VALUES (N'CUP-02 ', N'Kopp', NULL)",
    )
    .await;
    // A parameter and a literal with other case and trailing spaces find the row.
    let found = c
        .query("SELECT name FROM p WHERE article_no = @P1", &[&"mug-01  "])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(found.len(), 1, "= @P1 ignores case and trailing spaces");
    let by_email = c
        .query(
            "SELECT COUNT(*) FROM p WHERE email = @P1",
            &[&"kund@example.SE "],
        )
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(by_email[0].get::<i32, _>(0), Some(1));
    for (sql, expected) in [
        ("SELECT COUNT(*) FROM p WHERE article_no = N'MUG-01 '", 1),
        ("SELECT COUNT(*) FROM p WHERE article_no = N'cup-02'", 1),
        ("SELECT COUNT(*) FROM p WHERE article_no <> N'mug-01   '", 1),
        ("SELECT COUNT(*) FROM p WHERE article_no < N'MUG-01 '", 1),
        ("SELECT COUNT(*) FROM p WHERE article_no >= N'cup-02  '", 2),
        (
            "SELECT COUNT(*) FROM p WHERE article_no IN (N'mug-01 ', N'x')",
            1,
        ),
        (
            "SELECT COUNT(*) FROM p a JOIN p b ON a.article_no = b.article_no",
            2,
        ),
    ] {
        assert_eq!(count(&mut c, sql).await, expected, "{sql}");
    }
    // Literal against literal compares as the default collation does too.
    let r = &rows(
        &mut c,
        "SELECT CASE WHEN 'a' = 'A ' THEN 1 ELSE 0 END, CASE WHEN N'x ' <> N'X' THEN 1 ELSE 0 END, \
         CASE WHEN 'a' < 'B' THEN 1 ELSE 0 END, CASE WHEN 'a b' = 'ab' THEN 1 ELSE 0 END",
    )
    .await[0];
    let flags: Vec<Option<i32>> = (0..4).map(|i| r.get::<i32, _>(i)).collect();
    assert_eq!(flags, vec![Some(1), Some(0), Some(1), Some(0)]);
    // Values are kept as written.
    let kept = &rows(
        &mut c,
        "SELECT article_no, DATALENGTH(article_no), LEN(article_no) FROM p WHERE name = N'KOPP'",
    )
    .await[0];
    assert_eq!(kept.get::<&str, _>(0), Some("CUP-02 "));
    assert_eq!(
        kept.get::<i32, _>(2),
        Some(6),
        "LEN ignores trailing spaces"
    );
    // `col = <text>` stays an index lookup, for the key and for a plain index.
    for sql in [
        "SELECT name FROM p WHERE article_no = 'mug-01 '::text",
        "SELECT name FROM p WHERE email = 'kund@example.se'::text",
    ] {
        let plan = pg_plan(&sim.config, sql);
        assert!(plan.contains("Index"), "{sql}: no index scan:\n{plan}");
    }
}

#[tokio::test]
async fn text_keys_treat_case_and_trailing_space_variants_as_duplicates() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE k (code NVARCHAR(10) PRIMARY KEY, n INT); \
         CREATE TABLE kk (a NVARCHAR(10), b INT NOT NULL, u NVARCHAR(5) UNIQUE, PRIMARY KEY (a, b)); \
         CREATE TABLE kr (id INT PRIMARY KEY, code NVARCHAR(10) REFERENCES k (code)); \
         CREATE TABLE ki (id INT PRIMARY KEY, tag NVARCHAR(10)); \
         CREATE UNIQUE INDEX ki_tag ON ki (tag); \
         INSERT INTO k (code, n) VALUES (N'a', 1); \
         INSERT INTO kk (a, b, u) VALUES (N'x', 1, N'u'); \
         INSERT INTO ki (id, tag) VALUES (1, N't')",
    )
    .await;
    for (sql, number) in [
        ("INSERT INTO k (code, n) VALUES (N'A', 2)", 2627),
        ("INSERT INTO k (code, n) VALUES (N'a ', 2)", 2627),
        ("INSERT INTO kk (a, b, u) VALUES (N'X  ', 1, N'v')", 2627),
        ("INSERT INTO kk (a, b, u) VALUES (N'x', 2, N'U ')", 2627),
        ("INSERT INTO ki (id, tag) VALUES (2, N'T ')", 2601),
        ("INSERT INTO kr (id, code) VALUES (1, N'b')", 547),
    ] {
        let (got, message) = error_of(&mut c, sql).await;
        assert_eq!(got, number, "{sql}: {message}");
    }
    let (_, message) = error_of(&mut c, "INSERT INTO k (code, n) VALUES (N'A', 2)").await;
    assert!(
        message.starts_with("Violation of PRIMARY KEY constraint 'PK__k'"),
        "{message}"
    );
    // Other keys are fine, and a foreign key matches as `=` does.
    run(
        &mut c,
        "INSERT INTO kk (a, b, u) VALUES (N'x', 2, N'w'); INSERT INTO kr (id, code) VALUES (1, N'A  ')",
    )
    .await;
    assert_eq!(
        error_of(&mut c, "INSERT INTO kk (a, b, u) VALUES (NULL, 3, N'z')")
            .await
            .0,
        515,
        "primary key columns are NOT NULL"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM sys.indexes WHERE is_primary_key = 1 AND name IN ('PK__k', 'PK__kk')"
        )
        .await,
        2,
        "text primary keys are primary keys in sys.indexes"
    );
    let nullable = &rows(
        &mut c,
        "SELECT IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'kk' AND COLUMN_NAME = 'a'",
    )
    .await[0];
    assert_eq!(nullable.get::<&str, _>(0), Some("NO"));
}

#[tokio::test]
async fn decimals_carry_their_type_scale_and_parameters_their_declared_type() {
    let sim = start();
    let mut c = client(&sim).await;
    run(
        &mut c,
        "CREATE TABLE d (p DECIMAL(5, 2), price DECIMAL(19, 4), data VARBINARY(50)); \
         INSERT INTO d (p, price, data) VALUES (1.5, 63.2, 0x00FF)",
    )
    .await;
    let text = |row: &tiberius::Row, i: usize| {
        row.get::<Decimal, _>(i)
            .map(|d| d.to_string())
            .unwrap_or_else(|| panic!("column {i} is not a decimal"))
    };
    // A column answers at its declared scale, CAST at the scale it names, a literal at the
    // digits written, arithmetic at SQL Server's result scale.
    let r = &rows(
        &mut c,
        "SELECT p, price, CAST(2.5 AS DECIMAL(9, 3)), 2.50, p * 2, p + 1.5, p / 3, 1.0 / 3, price * p FROM d",
    )
    .await[0];
    let got: Vec<String> = (0..9).map(|i| text(r, i)).collect();
    assert_eq!(
        got,
        [
            "1.50",
            "63.2000",
            "2.500",
            "2.50",
            "3.00",
            "3.00",
            "0.500000",
            "0.333333",
            "94.800000"
        ]
    );
    // A parameter is of the type it was declared with: varbinary stays binary, a decimal
    // keeps its scale.
    let bytes: Vec<u8> = vec![0, 1, 0xFE, 0xFF];
    let price = Decimal::new(123_450, 3); // 123.450
    let r = &c
        .query("SELECT @P1, @P2, @P3 + 1", &[&bytes, &price, &5i32])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows")[0];
    assert!(
        matches!(
            r.columns()[0].column_type(),
            tiberius::ColumnType::BigVarBin
        ),
        "a varbinary parameter answers as varbinary: {:?}",
        r.columns()[0].column_type()
    );
    assert_eq!(r.get::<&[u8], _>(0), Some(&bytes[..]));
    assert_eq!(text(r, 1), "123.450");
    assert_eq!(r.get::<i32, _>(2), Some(6), "int parameter + 1 is int");
    let stored = &c
        .query("SELECT data FROM d WHERE data = @P1", &[&vec![0u8, 0xFF]])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get::<&[u8], _>(0), Some(&[0u8, 0xFF][..]));
}
