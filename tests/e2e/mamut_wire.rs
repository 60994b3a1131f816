//! The stand-in's TDS wire as SQL Server speaks it, checked with the real tiberius client and
//! with hand-made packets: TLS inside PRELOGIN (whole connection, login only, none; trusted by
//! a CA, refused with a wrong one), attention, transaction-manager requests, SQL Browser for
//! a named instance, the negotiated packet size, and input no client should send.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tests::Pki;
use tests::mamut_sim::{MamutSim, SimConfig, WireConfig, default_postgres_url, exec, tls, wire};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, SqlBrowser};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

const USER: &str = "mamut";
const PASSWORD: &str = "s3cret-pass";

struct Sim {
    sim: MamutSim,
    config: SimConfig,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.sim.stop();
        let _ = exec::drop_schema(&self.config.postgres_url, &self.config.pg_schema);
    }
}

fn start(wire: WireConfig) -> Sim {
    let config = SimConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        postgres_url: default_postgres_url(),
        pg_schema: format!("mamut_wire_{}", uuid::Uuid::new_v4().simple()),
        user: USER.into(),
        password: PASSWORD.into(),
        database: "mamut".into(),
    };
    let sim = MamutSim::start_with(config.clone(), wire).expect("stand-in starts");
    Sim { sim, config }
}

/// A stand-in with the test CA's certificate for `localhost` / 127.0.0.1.
fn start_tls(pki: &Pki, force_encryption: bool) -> Sim {
    let config = tls::server_config_from_files(&pki.cert_file(), &pki.key_file())
        .expect("the test certificate loads");
    start(WireConfig {
        tls: Some(config),
        force_encryption,
        ..WireConfig::default()
    })
}

fn client_config(addr: SocketAddr, encryption: EncryptionLevel) -> Config {
    let mut config = Config::new();
    config.host("localhost");
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server(USER, PASSWORD));
    config.database("mamut");
    config.encryption(encryption);
    config
}

async fn connect(addr: SocketAddr, config: Config) -> tiberius::Result<Client<Compat<TcpStream>>> {
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    tcp.set_nodelay(true).expect("nodelay");
    Client::connect(config, tcp.compat_write()).await
}

/// `SELECT 'ok'` answers `ok`: the connection carries requests and answers.
async fn assert_usable(client: &mut Client<Compat<TcpStream>>) {
    let row = client
        .simple_query("SELECT 'ok'")
        .await
        .expect("query runs")
        .into_row()
        .await
        .expect("answer read")
        .expect("one row");
    assert_eq!(row.get::<&str, _>(0), Some("ok"));
}

#[tokio::test]
async fn required_encryption_with_trust_cert_connects_and_queries() {
    let pki = Pki::new();
    let sim = start_tls(&pki, false);
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::Required);
    config.trust_cert();
    let mut client = connect(sim.sim.addr(), config)
        .await
        .expect("TLS login with trust_cert");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn large_requests_and_answers_cross_tls_whole() {
    let pki = Pki::new();
    let sim = start_tls(&pki, false);
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::Required);
    config.trust_cert();
    let mut client = connect(sim.sim.addr(), config).await.expect("TLS login");
    let text = "ø".repeat(300_000);
    let row = client
        .query("SELECT @P1", &[&text.as_str()])
        .await
        .expect("query")
        .into_row()
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.get::<&str, _>(0), Some(text.as_str()));
}

#[tokio::test]
async fn required_encryption_with_the_test_ca_connects_and_queries() {
    let pki = Pki::new();
    let sim = start_tls(&pki, false);
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::Required);
    config.trust_cert_ca(pki.ca_file().display());
    let mut client = connect(sim.sim.addr(), config)
        .await
        .expect("TLS login trusting the test CA");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_with_a_certificate_error() {
    let (pki, other) = (Pki::new(), Pki::new());
    let sim = start_tls(&pki, false);
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::Required);
    config.trust_cert_ca(other.ca_file().display());
    match connect(sim.sim.addr(), config).await {
        Err(tiberius::error::Error::Tls(message)) => {
            assert!(message.contains("certificate"), "{message}");
        }
        Err(other) => panic!("expected a certificate error, got {other:?}"),
        Ok(_) => panic!("a certificate from an untrusted CA was accepted"),
    }
}

#[tokio::test]
async fn encryption_off_encrypts_the_login_only_and_the_connection_goes_on_in_plain_text() {
    // tiberius drops TLS after sending LOGIN7 when `Off` was negotiated, so any TLS record
    // from the stand-in after the login would break the next answer.
    let pki = Pki::new();
    let sim = start_tls(&pki, false);
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::Off);
    config.trust_cert();
    let mut client = connect(sim.sim.addr(), config)
        .await
        .expect("login-only TLS");
    assert_usable(&mut client).await;
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn a_client_without_encryption_connects_to_a_server_with_a_certificate() {
    let pki = Pki::new();
    let sim = start_tls(&pki, false);
    let config = client_config(sim.sim.addr(), EncryptionLevel::NotSupported);
    let mut client = connect(sim.sim.addr(), config).await.expect("plain login");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn force_encryption_encrypts_a_client_that_asked_for_login_only() {
    let pki = Pki::new();
    let sim = start_tls(&pki, true);
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::Off);
    config.trust_cert();
    let mut client = connect(sim.sim.addr(), config)
        .await
        .expect("encrypted login");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn requiring_encryption_from_a_server_without_a_certificate_is_refused() {
    let sim = start(WireConfig::default());
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::Required);
    config.trust_cert();
    match connect(sim.sim.addr(), config).await {
        Err(tiberius::error::Error::Protocol(message)) => {
            assert!(message.contains("encryption"), "{message}");
        }
        Err(other) => panic!("expected the encryption level refused, got {other:?}"),
        Ok(_) => panic!("a client requiring encryption logged in without it"),
    }
    // A client without encryption still gets in.
    let config = client_config(sim.sim.addr(), EncryptionLevel::NotSupported);
    let mut client = connect(sim.sim.addr(), config).await.expect("plain login");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn a_statement_waiting_on_a_lock_is_cancelled_by_attention_over_tls() {
    let pki = Pki::new();
    let sim = start_tls(&pki, false);
    let mut tls_config = client_config(sim.sim.addr(), EncryptionLevel::Required);
    tls_config.trust_cert();
    let mut holder = connect(sim.sim.addr(), tls_config.clone())
        .await
        .expect("first session");
    holder
        .simple_query("CREATE TABLE wire_locked (id INT PRIMARY KEY, v INT)")
        .await
        .expect("create")
        .into_results()
        .await
        .expect("created");
    holder
        .execute("INSERT INTO wire_locked (id, v) VALUES (1, 1)", &[])
        .await
        .expect("insert");
    holder
        .simple_query("BEGIN TRAN")
        .await
        .expect("begin")
        .into_results()
        .await
        .expect("begun");
    holder
        .execute("UPDATE wire_locked SET v = 2 WHERE id = 1", &[])
        .await
        .expect("the first session takes the row lock");

    let mut waiter = connect(sim.sim.addr(), tls_config)
        .await
        .expect("second session");
    // The update cannot finish while the first session holds the lock: giving up on it after
    // a moment leaves it running on the server.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        waiter.execute("UPDATE wire_locked SET v = 3 WHERE id = 1", &[]),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the update finished although the row was locked: {gave_up:?}"
    );
    // Attention: the server stops the statement and acknowledges while the lock is still held.
    tokio::time::timeout(Duration::from_secs(10), waiter.cancel_query())
        .await
        .expect("the attention is acknowledged while the lock is still held")
        .expect("attention acknowledged");
    assert_usable(&mut waiter).await;

    holder
        .simple_query("COMMIT")
        .await
        .expect("commit")
        .into_results()
        .await
        .expect("committed");
    let row = waiter
        .query("SELECT v FROM wire_locked WHERE id = @P1", &[&1i32])
        .await
        .expect("select")
        .into_row()
        .await
        .expect("read")
        .expect("the row");
    let v = row
        .try_get::<i32, _>(0)
        .ok()
        .flatten()
        .map(i64::from)
        .or_else(|| row.try_get::<i64, _>(0).ok().flatten());
    assert_eq!(v, Some(2), "the cancelled update must not have run");
}

#[tokio::test]
async fn an_attention_after_the_answer_is_acknowledged_and_the_connection_goes_on() {
    let sim = start(WireConfig::default());
    let config = client_config(sim.sim.addr(), EncryptionLevel::NotSupported);
    let mut client = connect(sim.sim.addr(), config).await.expect("login");
    assert_usable(&mut client).await;
    tokio::time::timeout(Duration::from_secs(10), client.cancel_query())
        .await
        .expect("acknowledged in time")
        .expect("attention acknowledged");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn transaction_manager_requests_begin_commit_and_roll_back() {
    let sim = start(WireConfig::default());
    let config = client_config(sim.sim.addr(), EncryptionLevel::NotSupported);
    let mut client = connect(sim.sim.addr(), config).await.expect("login");
    client
        .simple_query("CREATE TABLE wire_tm (id INT PRIMARY KEY)")
        .await
        .expect("create")
        .into_results()
        .await
        .expect("created");

    client.begin_transaction().await.expect("TM_BEGIN_XACT");
    client
        .execute("INSERT INTO wire_tm (id) VALUES (1)", &[])
        .await
        .expect("insert");
    client
        .rollback_transaction()
        .await
        .expect("TM_ROLLBACK_XACT");

    client.begin_transaction().await.expect("TM_BEGIN_XACT");
    client
        .execute("INSERT INTO wire_tm (id) VALUES (2)", &[])
        .await
        .expect("insert");
    client.commit_transaction().await.expect("TM_COMMIT_XACT");

    let rows = client
        .simple_query("SELECT id FROM wire_tm ORDER BY id")
        .await
        .expect("select")
        .into_first_result()
        .await
        .expect("rows");
    let ids: Vec<Option<i32>> = rows.iter().map(|r| r.get::<i32, _>(0)).collect();
    assert_eq!(
        ids,
        vec![Some(2)],
        "the rolled-back row is gone, the committed one stays"
    );
    // Committing without a transaction is SQL Server's error 3902, through the same path.
    match client.commit_transaction().await {
        Err(tiberius::error::Error::Server(e)) => assert_eq!(e.code(), 3902),
        other => panic!("expected error 3902, got {other:?}"),
    }
}

#[tokio::test]
async fn a_named_instance_is_found_through_sql_browser() {
    let sim = start(WireConfig {
        instance: Some("MAMUT".into()),
        browser: Some("127.0.0.1:0".parse().expect("address")),
        ..WireConfig::default()
    });
    let browser = sim.sim.browser_addr().expect("the browser runs");
    let mut config = client_config(browser, EncryptionLevel::NotSupported);
    config.host("127.0.0.1");
    config.instance_name("MAMUT");
    // With an instance name, tiberius asks SQL Browser at the configured port (1434 unless
    // set) and connects to the TCP port it answers.
    let tcp = TcpStream::connect_named(&config)
        .await
        .expect("SQL Browser resolves MAMUT");
    assert_eq!(tcp.peer_addr().expect("peer").port(), sim.sim.addr().port());
    let mut client = Client::connect(config, tcp.compat_write())
        .await
        .expect("login to the named instance");
    assert_usable(&mut client).await;
}

#[tokio::test]
async fn an_instance_the_server_is_not_is_refused_at_prelogin() {
    let sim = start(WireConfig {
        instance: Some("MAMUT".into()),
        ..WireConfig::default()
    });
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::NotSupported);
    config.instance_name("OTHER");
    match connect(sim.sim.addr(), config).await {
        Err(tiberius::error::Error::Protocol(message)) => {
            assert!(message.contains("instance"), "{message}");
        }
        Err(other) => panic!("expected the instance refused, got {other:?}"),
        Ok(_) => panic!("a login to another instance was accepted"),
    }
}

#[tokio::test]
async fn a_small_negotiated_packet_size_carries_large_requests_and_answers() {
    let sim = start(WireConfig::default());
    let mut config = client_config(sim.sim.addr(), EncryptionLevel::NotSupported);
    config.packet_size(512);
    let mut client = connect(sim.sim.addr(), config).await.expect("login");
    let text = "å".repeat(20_000);
    let row = client
        .query("SELECT @P1", &[&text.as_str()])
        .await
        .expect("query")
        .into_row()
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.get::<&str, _>(0), Some(text.as_str()));
}

/// A raw TDS client for what tiberius never sends.
struct Raw {
    socket: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Self {
        let socket = std::net::TcpStream::connect(addr).expect("tcp");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self {
            socket,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, kind: u8, payload: &[u8]) {
        let framed = wire::frame(kind, payload, wire::PACKET_SIZE);
        self.socket.write_all(&framed).expect("send");
    }

    /// One whole answer: its packets' lengths and the joined payload; `None` when closed.
    fn answer(&mut self) -> Option<(Vec<usize>, Vec<u8>)> {
        let (mut lengths, mut payload) = (Vec::new(), Vec::new());
        loop {
            while let Some(packet) = wire::take_packet(&mut self.buf).expect("framing") {
                lengths.push(packet.payload.len() + 8);
                payload.extend_from_slice(&packet.payload);
                if packet.status & 0x01 != 0 {
                    return Some((lengths, payload));
                }
            }
            let mut chunk = [0u8; 65536];
            match self.socket.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("no answer within the read timeout: {e}"),
            }
        }
    }

    /// Whether the server closed the connection (reads end without an answer).
    fn closed(&mut self) -> bool {
        self.answer().is_none()
    }

    fn login(addr: SocketAddr, packet_size: u32) -> (Self, Vec<u8>) {
        let mut raw = Self::connect(addr);
        let prelogin = tds_protocol::PreLogin::new()
            .with_encryption(tds_protocol::EncryptionLevel::NotSupported)
            .encode();
        raw.send(wire::PACKET_PRELOGIN, &prelogin);
        raw.answer().expect("prelogin answer");
        let login = tds_protocol::Login7::new()
            .with_sql_auth(USER, PASSWORD)
            .with_database("mamut")
            .with_packet_size(packet_size)
            .encode();
        raw.send(wire::PACKET_LOGIN7, &login);
        let (_, answer) = raw.answer().expect("login answer");
        (raw, answer)
    }

    fn batch(&mut self, sql: &str) -> (Vec<usize>, Vec<u8>) {
        let mut payload = vec![
            22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        payload.extend(wire::ucs2(sql));
        self.send(wire::PACKET_SQL_BATCH, &payload);
        self.answer().expect("batch answer")
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_packet_size_a_client_asks_is_granted_and_written_with() {
    let sim = start(WireConfig::default());
    let (mut raw, answer) = Raw::login(sim.sim.addr(), 8192);
    // ENVCHANGE type 4 (packet size), new value "8192", old "4096".
    let mut envchange = vec![4u8, 4];
    envchange.extend(wire::ucs2("8192"));
    envchange.push(4);
    envchange.extend(wire::ucs2("4096"));
    assert!(
        contains(&answer, &envchange),
        "no PACKETSIZE 8192 ENVCHANGE"
    );
    let (lengths, _) = raw.batch(&format!("SELECT N'{}'", "x".repeat(10_000)));
    assert!(lengths.len() > 1, "{lengths:?}");
    assert_eq!(lengths[0], 8192, "{lengths:?}");
    assert!(lengths.iter().all(|&l| l <= 8192), "{lengths:?}");
}

#[test]
fn an_unknown_packet_type_is_answered_with_an_error_and_the_connection_goes_on() {
    let sim = start(WireConfig::default());
    let (mut raw, _) = Raw::login(sim.sim.addr(), 4096);
    for kind in [0x07u8, 0x11, 0x42, 0xFF] {
        raw.send(kind, b"whatever");
        let (_, answer) = raw.answer().expect("an answer, not a closed connection");
        assert_eq!(
            answer.first(),
            Some(&0xAA),
            "an ERROR token for type {kind:#04x}"
        );
    }
    let (_, answer) = raw.batch("SELECT N'still here'");
    assert!(contains(&answer, &wire::ucs2("still here")));
}

#[test]
fn malformed_input_closes_the_connection_and_the_server_serves_on() {
    let sim = start(WireConfig::default());
    let addr = sim.sim.addr();
    let cases: Vec<Vec<u8>> = vec![
        // A header whose length is shorter than the header.
        vec![0x12, 0x01, 0x00, 0x04, 0, 0, 1, 0],
        // A PRELOGIN that is garbage.
        wire::frame(wire::PACKET_PRELOGIN, &[0x01, 0xFF, 0xFF, 0x00, 0x09], 4096),
        // A LOGIN7 before any PRELOGIN.
        wire::frame(wire::PACKET_LOGIN7, &[0u8; 10], 4096),
        // A request before the login.
        wire::frame(wire::PACKET_SQL_BATCH, &wire::ucs2("SELECT 1"), 4096),
    ];
    for bytes in cases {
        let mut raw = Raw::connect(addr);
        raw.socket.write_all(&bytes).expect("send");
        assert!(raw.closed(), "the connection stays open after {bytes:02X?}");
    }
    // A LOGIN7 record that is too short, after a valid prelogin.
    let mut raw = Raw::connect(addr);
    let prelogin = tds_protocol::PreLogin::new()
        .with_encryption(tds_protocol::EncryptionLevel::NotSupported)
        .encode();
    raw.send(wire::PACKET_PRELOGIN, &prelogin);
    raw.answer().expect("prelogin answer");
    raw.send(wire::PACKET_LOGIN7, &[1, 2, 3]);
    assert!(raw.closed());
    // A request that is garbage after a good login is an error answer, not a closed socket.
    let (mut raw, _) = Raw::login(addr, 4096);
    raw.send(wire::PACKET_RPC, &[0xFF; 40]);
    let (_, answer) = raw.answer().expect("an error answer");
    assert_eq!(answer.first(), Some(&0xAA));
    let (_, answer) = raw.batch("SELECT N'fine'");
    assert!(contains(&answer, &wire::ucs2("fine")));
}
