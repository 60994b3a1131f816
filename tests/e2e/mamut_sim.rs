//! The TDS stand-in, checked with the real tiberius client: types round-trip, parameters bind,
//! errors surface, transactions commit and roll back.

use rust_decimal::Decimal;
use tests::mamut_sim::{MamutSim, SimConfig};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

struct Sim {
    sim: MamutSim,
    dir: tempfile::TempDir,
}

fn start() -> Sim {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = MamutSim::start(SimConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        db_path: dir.path().join("mamut.sqlite"),
        user: "mamut".into(),
        password: "s3cret-pass".into(),
        database: "mamut".into(),
    })
    .expect("stand-in starts");
    Sim { sim, dir }
}

async fn connect(sim: &Sim, password: &str) -> tiberius::Result<Client<Compat<TcpStream>>> {
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

async fn client(sim: &Sim) -> Client<Compat<TcpStream>> {
    connect(sim, "s3cret-pass").await.expect("login")
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
async fn every_supported_type_round_trips_through_parameters() {
    let sim = start();
    let mut c = client(&sim).await;
    c.simple_query(
        "CREATE TABLE t (i INT, b BIGINT, f BIT, d DECIMAL(19, 4), s NVARCHAR(200), \
         at DATETIME2(3), bin VARBINARY(MAX), long NVARCHAR(MAX))",
    )
    .await
    .expect("create")
    .into_results()
    .await
    .expect("results");
    let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
        .and_then(|d| d.and_hms_milli_opt(10, 14, 12, 345))
        .expect("valid");
    let price = Decimal::new(1_990_050, 4); // 199.0050
    let long = "Åäö-".repeat(3000); // longer than 4000 characters: sent as NVARCHAR(MAX)
    let inserted = c
        .execute(
            "INSERT INTO t (i, b, f, d, s, at, bin, long) VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8)",
            &[&-42i32, &9_000_000_000i64, &true, &price, &"T-shirt röd, M", &at, &vec![0u8, 1, 255], &long.as_str()],
        )
        .await
        .expect("insert");
    assert_eq!(inserted.total(), 1);
    c.execute("INSERT INTO t (i) VALUES (@P1)", &[&Option::<i32>::None])
        .await
        .expect("insert nulls");

    let rows = c
        .query(
            "SELECT i, b, f, d, s, at, bin, long FROM t WHERE s = @P1",
            &[&"T-shirt röd, M"],
        )
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<i32, _>(0), Some(-42));
    assert_eq!(row.get::<i64, _>(1), Some(9_000_000_000));
    assert_eq!(row.get::<bool, _>(2), Some(true));
    assert_eq!(row.get::<Decimal, _>(3), Some(price));
    assert_eq!(row.get::<&str, _>(4), Some("T-shirt röd, M"));
    assert_eq!(row.get::<chrono::NaiveDateTime, _>(5), Some(at));
    assert_eq!(row.get::<&[u8], _>(6), Some(&[0u8, 1, 255][..]));
    assert_eq!(row.get::<&str, _>(7), Some(long.as_str()));

    let nulls = c
        .query("SELECT i, d, s FROM t WHERE s IS NULL", &[])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(nulls.len(), 1);
    assert_eq!(nulls[0].get::<i32, _>(0), None);
    assert_eq!(nulls[0].get::<Decimal, _>(1), None);
    assert_eq!(nulls[0].get::<&str, _>(2), None);
}

#[tokio::test]
async fn errors_surface_as_server_errors_and_the_connection_stays_usable() {
    let sim = start();
    let mut c = client(&sim).await;
    match c.query("SELECT x FROM no_such_table", &[]).await {
        Err(tiberius::error::Error::Server(e)) => assert_eq!(e.code(), 208, "{e}"),
        Err(other) => panic!("expected a server error, got {other:?}"),
        Ok(_) => panic!("a query on a missing table succeeded"),
    }
    c.simple_query("CREATE TABLE k (id INT PRIMARY KEY)")
        .await
        .expect("create")
        .into_results()
        .await
        .expect("ok");
    c.execute("INSERT INTO k (id) VALUES (@P1)", &[&1i32])
        .await
        .expect("first insert");
    match c.execute("INSERT INTO k (id) VALUES (@P1)", &[&1i32]).await {
        Err(tiberius::error::Error::Server(e)) => assert_eq!(e.code(), 2627, "{e}"),
        other => panic!("expected a duplicate key error, got {other:?}"),
    }
    let count = c
        .query("SELECT COUNT(*) FROM k", &[])
        .await
        .expect("query")
        .into_row()
        .await
        .expect("row");
    assert_eq!(count.and_then(|r| r.get::<i64, _>(0)), Some(1));
}

#[tokio::test]
async fn rollback_rolls_back_and_commit_keeps() {
    let sim = start();
    let mut c = client(&sim).await;
    c.simple_query("CREATE TABLE o (id INT)")
        .await
        .expect("create")
        .into_results()
        .await
        .expect("ok");
    c.simple_query("BEGIN TRAN")
        .await
        .expect("begin")
        .into_results()
        .await
        .expect("ok");
    c.execute("INSERT INTO o (id) VALUES (@P1)", &[&1i32])
        .await
        .expect("insert");
    c.simple_query("ROLLBACK")
        .await
        .expect("rollback")
        .into_results()
        .await
        .expect("ok");
    c.simple_query("BEGIN TRAN")
        .await
        .expect("begin")
        .into_results()
        .await
        .expect("ok");
    c.execute("INSERT INTO o (id) VALUES (@P1)", &[&2i32])
        .await
        .expect("insert");
    c.simple_query("COMMIT")
        .await
        .expect("commit")
        .into_results()
        .await
        .expect("ok");
    let ids: Vec<i32> = c
        .query("SELECT id FROM o", &[])
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows")
        .iter()
        .filter_map(|r| r.get::<i32, _>(0))
        .collect();
    assert_eq!(ids, [2]);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_transaction_leaves_nothing() {
    let sim = start();
    let mut c = client(&sim).await;
    c.simple_query("CREATE TABLE o (id INT)")
        .await
        .expect("create")
        .into_results()
        .await
        .expect("ok");
    c.simple_query("BEGIN TRAN")
        .await
        .expect("begin")
        .into_results()
        .await
        .expect("ok");
    c.execute("INSERT INTO o (id) VALUES (@P1)", &[&1i32])
        .await
        .expect("insert");
    drop(c);
    let db = tests::mamut_sim::open_db(&sim.dir.path().join("mamut.sqlite")).expect("open");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The stand-in's session rolls back when it notices the disconnect.
    loop {
        let count: Option<i64> = db
            .query_row("SELECT COUNT(*) FROM o", [], |r| r.get(0))
            .ok();
        if count == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the open transaction was not rolled back"
        );
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn rowversions_grow_with_every_insert_and_update() {
    let sim = start();
    let mut c = client(&sim).await;
    c.simple_query("CREATE TABLE s (a NVARCHAR(10), q INT, rv ROWVERSION)")
        .await
        .expect("create")
        .into_results()
        .await
        .expect("ok");
    c.execute("INSERT INTO s (a, q) VALUES (@P1, @P2)", &[&"x", &1i32])
        .await
        .expect("insert");
    let rv = |rows: Vec<tiberius::Row>| rows[0].get::<&[u8], _>(0).map(<[u8]>::to_vec);
    let first = rv(c
        .query("SELECT rv FROM s", &[])
        .await
        .expect("q")
        .into_first_result()
        .await
        .expect("rows"));
    c.execute("UPDATE s SET q = @P1", &[&2i32])
        .await
        .expect("update");
    let second = rv(c
        .query("SELECT rv FROM s", &[])
        .await
        .expect("q")
        .into_first_result()
        .await
        .expect("rows"));
    assert_eq!(first.as_ref().map(Vec::len), Some(8));
    assert!(second > first, "{first:?} then {second:?}");
    let by_cast = c
        .query("SELECT CAST(rv AS BIGINT) FROM s", &[])
        .await
        .expect("q")
        .into_row()
        .await
        .expect("row");
    assert!(by_cast.and_then(|r| r.get::<i64, _>(0)).is_some());
}
