//! Alerts with real processes: a relay (`relay serve`, evaluating alerts every second) and a
//! real agent that goes away and comes back give exactly one "agent offline" alert and one
//! "resolved" at a webhook sink (an axum server in the test); the admin API keeps the
//! tenant's settings, shows the webhook only by its host, and sends a test alert.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::wait::until;
use tests::{AgentOptions, RelayOptions, RelayProcess, TENANT, eventually, setup_with};

const WAIT: Duration = Duration::from_secs(60);

type Received = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver on a free port keeping every JSON body; its URL holds a "secret".
async fn sink() -> (String, Received) {
    let received: Received = Arc::default();
    let router = axum::Router::new()
        .route(
            "/services/T0/B0/secret-token",
            post(
                |State(all): State<Received>, Json(body): Json<Value>| async move {
                    if let Ok(mut all) = all.lock() {
                        all.push(body);
                    }
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the sink binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (
        format!("http://{addr}/services/T0/B0/secret-token"),
        received,
    )
}

/// (condition, state) of every body received.
fn seen(received: &Received) -> Vec<(String, String)> {
    received
        .lock()
        .map(|all| {
            all.iter()
                .map(|b| {
                    (
                        b["condition"].as_str().unwrap_or_default().to_owned(),
                        b["state"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The relay's agent sessions and alerts as stored, to explain a failure.
fn stored(relay: &RelayProcess) -> String {
    let Ok(db) = rusqlite::Connection::open(relay.db_path()) else {
        return "the relay's database does not open".into();
    };
    let rows = |sql: &str| -> Vec<String> {
        let Ok(mut statement) = db.prepare(sql) else {
            return vec![format!("{sql}: does not prepare")];
        };
        let n = statement.column_count();
        statement
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(i) {
                        Ok(rusqlite::types::ValueRef::Text(t)) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        Ok(v) => format!("{v:?}"),
                        Err(e) => e.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" | "))
            })
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    format!(
        "agent sessions: {:?}; alerts: {:?}; settings: {:?}",
        rows("SELECT * FROM agent_sessions"),
        rows("SELECT * FROM alerts"),
        rows("SELECT * FROM alert_settings")
    )
}

fn quick_alerts() -> RelayOptions {
    RelayOptions {
        env: vec![("RELAY_ALERTS_INTERVAL_SECS".into(), "1".into())],
        ..RelayOptions::default()
    }
}

#[tokio::test]
async fn an_agent_that_goes_away_and_comes_back_gives_one_alert_and_one_resolved() {
    let (url, received) = sink().await;
    let mut world = setup_with(quick_alerts(), AgentOptions::default()).await;
    let (status, body) = world
        .admin
        .call(
            Method::PUT,
            &format!("/tenants/{TENANT}/alerts"),
            Some(json!({ "webhook_url": url, "agent_offline_minutes": 0.05 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    eventually("the agent connected", WAIT, || async {
        world.agent.sessions() >= 1
    })
    .await;
    world.agent.kill().await;
    let raised = until(WAIT, || async { !seen(&received).is_empty() }).await;
    assert!(raised, "no agent offline alert; {}", stored(&world.relay));
    assert_eq!(
        seen(&received),
        [("agent_offline".to_string(), "alert".to_string())]
    );
    world.agent.restart().await;
    eventually("the resolved", WAIT, || async {
        seen(&received).len() >= 2
    })
    .await;
    assert_eq!(
        seen(&received),
        [
            ("agent_offline".to_string(), "alert".to_string()),
            ("agent_offline".to_string(), "resolved".to_string()),
        ],
        "one alert and one resolved, no storm"
    );
    let bodies = received.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(bodies[0]["tenant"], TENANT);
    assert!(
        bodies[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("offline"))
    );
    assert!(bodies[1]["at"].is_string());
}

#[tokio::test]
async fn alert_settings_are_checked_kept_and_tested_without_showing_the_webhook_token() {
    let (url, received) = sink().await;
    let world = setup_with(quick_alerts(), AgentOptions::default()).await;
    let path = format!("/tenants/{TENANT}/alerts");
    let (status, body) = world.admin.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["configured"], false);
    assert_eq!(body["agent_offline_minutes"], 10.0);

    for bad in [
        json!({ "emails": ["not an address"] }),
        json!({ "webhook_url": "http://hooks.example.com/secret" }),
        json!({ "queue_age_minutes": 0 }),
        json!({ "colour": "red" }),
    ] {
        let (status, answer) = world
            .admin
            .call(Method::PUT, &path, Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert!(!answer.to_string().contains("secret"), "{answer}");
    }

    let (status, body) = world
        .admin
        .call(
            Method::PUT,
            &path,
            Some(json!({ "webhook_url": url, "language": "sv", "emails": ["ops@acme.example"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = world.admin.call(Method::GET, &path, None).await;
    assert_eq!(body["configured"], true);
    assert_eq!(body["language"], "sv");
    assert_eq!(body["emails"], json!(["ops@acme.example"]));
    let webhook = body["webhook"].as_str().expect("the webhook's host");
    assert!(webhook.starts_with("http://127.0.0.1:"), "{webhook}");
    assert!(!body.to_string().contains("secret-token"), "{body}");

    let (status, outcome) = world
        .admin
        .call(Method::POST, &format!("{path}/test"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["webhook"]["status"], "sent", "{outcome}");
    assert_eq!(outcome["email"]["status"], "not_configured", "{outcome}");
    assert_eq!(seen(&received), [("test".to_string(), "test".to_string())]);
    let text = received
        .lock()
        .map(|b| b[0]["text"].clone())
        .unwrap_or_default();
    assert!(
        text.as_str().is_some_and(|t| t.contains("Testlarm")),
        "{text}"
    );

    let (status, _) = world
        .admin
        .call(Method::GET, "/tenants/nobody/alerts", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = world.relay.metrics().await;
    assert!(
        metrics.contains("relay_alerts_sent_total{channel=\"webhook\"} 1"),
        "{metrics}"
    );
}

// ---- e-mail through a real SMTP server ----

/// Python's SMTP server (`aiosmtpd`, from `target/pyenv`) printing every mail it receives.
struct SmtpServer {
    port: u16,
    output: Arc<Mutex<String>>,
    _child: tokio::process::Child,
}

impl SmtpServer {
    /// The server, or `None` without `aiosmtpd` (a note locally, a failure in CI).
    async fn start(test: &str) -> Option<Self> {
        let python =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
        let installed = tokio::process::Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        let missing = if installed { "" } else { "aiosmtpd" };
        if !tests::requirements_met(test, missing, "run scripts/test-deps.sh first") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = tokio::process::Command::new(&python)
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-c",
                "aiosmtpd.handlers.Debugging",
            ])
            .args(["-l", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("aiosmtpd starts");
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let output = output.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut all) = output.lock() {
                        all.push_str(&line);
                        all.push('\n');
                    }
                }
            });
        }
        eventually("aiosmtpd listens", WAIT, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Some(Self {
            port,
            output,
            _child: child,
        })
    }

    fn received(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

#[tokio::test]
async fn a_relay_configured_by_its_environment_mails_the_digest_and_a_test_alert() {
    let Some(server) = SmtpServer::start("alerts::smtp").await else {
        return;
    };
    let options = RelayOptions {
        env: vec![
            ("RELAY_ALERTS_INTERVAL_SECS".into(), "1".into()),
            ("RELAY_ALERTS_DIGEST_HOUR".into(), "0".into()),
            ("RELAY_SMTP_HOST".into(), "127.0.0.1".into()),
            ("RELAY_SMTP_PORT".into(), server.port.to_string()),
            ("RELAY_SMTP_STARTTLS".into(), "none".into()),
            (
                "RELAY_SMTP_FROM".into(),
                "Relay <alerts@relay.example>".into(),
            ),
        ],
        ..RelayOptions::default()
    };
    let world = setup_with(options, AgentOptions::default()).await;
    // An invalid order is held: a failure for the digest.
    let mut body: Value =
        serde_json::from_slice(&tests::shop::order_body(tests::SHOP, "bad-1", "confirmed"))
            .expect("JSON");
    body["order"]["currency"] = "SWEDISHKRONA".into();
    let (status, reply) = world
        .shop
        .send(tests::SHOP, &serde_json::to_vec(&body).expect("JSON"))
        .await;
    assert!(status.is_success(), "{reply}");
    assert_eq!(reply["status"], "held", "{reply}");

    let path = format!("/tenants/{TENANT}/alerts");
    let (status, body) = world
        .admin
        .call(
            Method::PUT,
            &path,
            Some(json!({ "emails": ["ops@acme.example"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["smtp_configured"], true);
    eventually("the digest", WAIT, || async {
        server.received().contains(&format!(
            "Subject: [{TENANT}] Failures in the last 24 hours"
        ))
    })
    .await;

    let (status, outcome) = world
        .admin
        .call(Method::POST, &format!("{path}/test"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["email"]["status"], "sent", "{outcome}");
    assert_eq!(outcome["webhook"]["status"], "not_configured", "{outcome}");
    let mails = server.received();
    assert!(
        mails.contains(&format!("Subject: [{TENANT}] Test alert")),
        "{mails}"
    );
    assert!(mails.contains("ops@acme.example"), "{mails}");
    assert_eq!(
        mails
            .matches(&format!(
                "Subject: [{TENANT}] Failures in the last 24 hours"
            ))
            .count(),
        1,
        "one digest a day: {mails}"
    );
}
