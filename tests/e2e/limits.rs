//! Connection limits: a relay flooded with idle and slowloris connections, under a low file
//! limit, closes them itself (connection cap at once, header timeout within seconds), never
//! runs out of file descriptors, keeps its agent's WebSocket, and answers webhooks again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use tests::process::metric_in;
use tests::shop::order_body;
use tests::{RelayOptions, SHOP, eventually, requirements_met, setup_with};

const CAP: usize = 100;
const HEADER_TIMEOUT_SECS: u64 = 2;
/// The relay's own file limit in this test: well above the cap, well below the flood.
const FILE_LIMIT: u64 = 256;
const SLOWLORIS: usize = 30;
const TLS_IDLE: usize = 30;
const RAW_IDLE: usize = 200;
/// A connection the relay keeps must be closed within this long of being opened.
const CLOSED_WITHIN: Duration = Duration::from_secs(HEADER_TIMEOUT_SECS + 6);
/// A connection refused by the cap is closed sooner than the header timeout could close it.
const REFUSED_WITHIN: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(30);

fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA parses")).expect("CA is added");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(connector: &TlsConnector, addr: SocketAddr) -> Option<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await.ok()
}

/// Waits until the relay closes `stream` (end of file or an error); how long that took from
/// `opened`, or `None` if it stayed open for the whole wait.
async fn closed_after<S: AsyncRead + Unpin>(mut stream: S, opened: Instant) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, read_to_end)
        .await
        .ok()
        .map(|()| opened.elapsed())
}

/// A slowloris request: headers that keep coming, a line every 300 ms, and never end.
async fn slowloris(stream: TlsStream<TcpStream>, opened: Instant) -> Option<Duration> {
    let (reader, mut writer) = tokio::io::split(stream);
    let trickle = async move {
        // The pace of a slowloris client: one header line per tick.
        let mut pace = tokio::time::interval(Duration::from_millis(300));
        let mut n = 0u64;
        loop {
            pace.tick().await;
            let line = format!("x-slow-{n}: 1\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            n += 1;
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        closed = closed_after(reader, opened) => closed,
        () = trickle => unreachable!(),
    }
}

#[tokio::test]
async fn a_flood_of_idle_and_slowloris_connections_is_closed_and_webhooks_are_answered() {
    let prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !requirements_met(
        "limits",
        if prlimit { "" } else { "prlimit" },
        "install util-linux",
    ) {
        return;
    }
    // The flood's sockets on this side.
    rlimit::increase_nofile_limit(4096).expect("raise the test's file limit");

    let options = RelayOptions {
        // Heartbeats far apart: the agent's WebSocket stays silent longer than the idle
        // timeout, which must not cut it.
        heartbeat_secs: Some(10),
        env: vec![
            ("RELAY_MAX_CONNECTIONS".into(), CAP.to_string()),
            (
                "RELAY_HEADER_TIMEOUT_SECS".into(),
                HEADER_TIMEOUT_SECS.to_string(),
            ),
            ("RELAY_IDLE_TIMEOUT_SECS".into(), "2".into()),
        ],
        ..RelayOptions::default()
    };
    let world = setup_with(options, Default::default()).await;
    let pid = world.relay.pid().expect("relay runs");
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={FILE_LIMIT}:{FILE_LIMIT}"))
        .status()
        .expect("prlimit runs");
    assert!(limited.success(), "prlimit --pid {pid} failed");
    let port: u16 = world
        .relay
        .base_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let connector = connector(&world.pki.ca_pem);

    // Slowloris requests and idle connections through the TLS handshake, within the cap...
    let mut waiters = Vec::new();
    for _ in 0..SLOWLORIS {
        let mut stream = tls_connect(&connector, addr).await.expect("TLS connection");
        stream
            .write_all(b"POST /webhooks/demo-se HTTP/1.1\r\nhost: localhost\r\n")
            .await
            .expect("the start of a request");
        let opened = Instant::now();
        waiters.push(("slowloris", tokio::spawn(slowloris(stream, opened))));
    }
    for _ in 0..TLS_IDLE {
        let stream = tls_connect(&connector, addr).await.expect("TLS connection");
        let opened = Instant::now();
        waiters.push(("idle TLS", tokio::spawn(closed_after(stream, opened))));
    }
    // ...then bare TCP connections that send nothing, beyond the cap and the file limit.
    for _ in 0..RAW_IDLE {
        let stream = TcpStream::connect(addr).await.expect("TCP connection");
        let opened = Instant::now();
        waiters.push(("idle TCP", tokio::spawn(closed_after(stream, opened))));
    }

    let mut refused = 0;
    let mut open = Vec::new();
    for (kind, waiter) in waiters {
        match waiter.await.expect("waiter") {
            Some(after) if after <= REFUSED_WITHIN => refused += 1,
            Some(after) if after <= CLOSED_WITHIN => {}
            after => open.push(format!("{kind} connection: closed after {after:?}")),
        }
    }
    assert!(
        open.is_empty(),
        "{} connections were not closed by the relay within {CLOSED_WITHIN:?}: {:?}",
        open.len(),
        &open[..open.len().min(5)]
    );
    let flood = SLOWLORIS + TLS_IDLE + RAW_IDLE;
    assert!(
        refused >= flood - CAP,
        "only {refused} of {flood} connections were closed at once by the cap of {CAP}"
    );

    // The relay answers again at once, and its agent's WebSocket was not cut.
    let client = world.pki.client();
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        client
            .get(format!("{}/healthz", world.relay.base_url()))
            .send(),
    )
    .await
    .expect("/healthz answers promptly")
    .expect("/healthz answers");
    assert_eq!(health.status(), 200);
    let (status, reply) = tokio::time::timeout(
        Duration::from_secs(5),
        world
            .shop
            .send(SHOP, &order_body(SHOP, "after-flood", "confirmed")),
    )
    .await
    .expect("the webhook is answered promptly");
    assert_eq!(status, 200, "{reply}");
    eventually("the order is applied", WAIT, || async {
        !world.agent.applied().is_empty()
    })
    .await;
    assert_eq!(
        world.agent.sessions(),
        1,
        "the agent's WebSocket was cut and reconnected; agent log:\n{}",
        world.agent.logs()
    );

    let metrics = world.relay.metrics().await;
    assert!(
        metric_in(&metrics, "relay_connections_refused_total") >= (flood - CAP) as u64,
        "{metrics}"
    );
    assert!(
        metric_in(&metrics, "relay_connections_timed_out_total") >= SLOWLORIS as u64,
        "{metrics}"
    );

    let logs = world.relay.logs();
    assert!(
        !logs.contains("Too many open files"),
        "the relay ran out of file descriptors:\n{logs}"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the relay died"
    );
}

/// A tenant whose agent is away: once `max_queued_per_tenant` events wait, its next webhook is
/// answered 503 with `Retry-After` (the shop keeps it and sends it again), counted in
/// `/metrics`; what was accepted is delivered when the agent is back, and webhooks are taken
/// again.
#[tokio::test]
async fn a_full_tenant_queue_answers_503_with_retry_after_until_the_agent_drains_it() {
    const MAX: usize = 3;
    let options = RelayOptions {
        env: vec![("RELAY_MAX_QUEUED_PER_TENANT".into(), MAX.to_string())],
        ..RelayOptions::default()
    };
    let mut world = setup_with(options, Default::default()).await;
    world.agent.kill().await;
    let first = order_body(SHOP, "queued-0", "confirmed");
    let first_id = world.shop.next_id();
    let (status, reply) = world
        .shop
        .send_with(SHOP, first.clone(), &world.shop.headers(&first_id, &first))
        .await
        .expect("relay answers");
    assert_eq!(status.as_u16(), 200, "{reply}");
    for i in 1..MAX {
        let body = order_body(SHOP, &format!("queued-{i}"), "confirmed");
        let (status, reply) = world.shop.send(SHOP, &body).await;
        assert_eq!(status.as_u16(), 200, "{reply}");
    }
    let body = order_body(SHOP, "one-too-many", "confirmed");
    let id = world.shop.next_id();
    let client = world.pki.client();
    let mut request = client
        .post(format!("{}/webhooks/{SHOP}", world.relay.base_url()))
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in world.shop.headers(&id, &body) {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("relay answers");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("60")
    );
    let text = response.text().await.expect("body");
    assert!(text.contains("max_queued_per_tenant"), "{text}");
    // The shop sending again a webhook that was accepted (its answer got lost) gets the same
    // answer, full queue or not.
    let (status, reply) = world
        .shop
        .send_with(SHOP, first.clone(), &world.shop.headers(&first_id, &first))
        .await
        .expect("relay answers");
    assert_eq!(
        (status.as_u16(), reply["status"].as_str()),
        (200, Some("duplicate")),
        "{reply}"
    );
    // A webhook whose status is not a trigger joins no queue: still taken.
    let (status, reply) = world
        .shop
        .send(SHOP, &order_body(SHOP, "queued-0", "cancelled"))
        .await;
    assert_eq!(
        (status.as_u16(), reply["status"].as_str()),
        (200, Some("ignored"))
    );
    let metrics = world.relay.metrics().await;
    assert_eq!(
        metric_in(
            &metrics,
            "relay_refused_total{limit=\"max_queued_per_tenant\"}"
        ),
        1,
        "{metrics}"
    );

    world.agent.restart().await;
    eventually(
        "the queued orders are delivered",
        Duration::from_secs(30),
        || async { world.agent.applied().len() == MAX },
    )
    .await;
    eventually(
        "the refused webhook is taken when sent again",
        Duration::from_secs(30),
        || async {
            let (status, _) = world.shop.send(SHOP, &body).await;
            status.as_u16() == 200
        },
    )
    .await;
}
