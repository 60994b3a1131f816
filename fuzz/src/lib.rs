//! The fuzz targets' checks, one function per target: each feeds one input through the code
//! the relay or the agent runs on data from outside (webhooks, WebSocket frames, configuration
//! files, the shop's answers) and asserts that nothing panics and that what must hold holds.
//!
//! The libFuzzer binaries in `fuzz_targets/` call these functions; the stable-toolchain test
//! `tests/e2e/fuzz_inputs.rs` calls them on every committed input (`fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/`), so a saved input that fails again fails
//! `cargo test --workspace`. See `docs/fuzzing.md` for each target's input format.

use std::sync::OnceLock;

use agent::config::AgentConfig;
use relay::config::Config as RelayConfig;
use relay::shop::CallError;
use relay::shop::nordisk::{Answer, Call, Client};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use shared::ShopId;
use shared::domain::{DocumentType, OrderWebhook, ThinOrderWebhook};
use shared::protocol::{Deliver, Envelope, Message};
use shared::settings::Secret;
use shared::signature::{SignedHeaders, WebhookSecret, verify};

/// A target's check: panics when the input shows a bug.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz_targets/<name>.rs` and the input directories call it.
pub const TARGETS: &[(&str, Check)] = &[
    ("webhook", webhook),
    ("signature", signature),
    ("protocol", protocol),
    ("agent_config", agent_config),
    ("relay_config", relay_config),
    ("shop_answer", shop_answer),
];

/// A webhook body as `POST /webhooks/{shop_id}` reads it: a full order webhook, else a thin
/// one. What parses must survive the trips the relay makes with it: stored and read back
/// (the enricher writes a fetched order out again), and sent to the agent in a `deliver`.
pub fn webhook(data: &[u8]) {
    match serde_json::from_slice::<OrderWebhook>(data) {
        Ok(webhook) => {
            let text = serde_json::to_string(&webhook).expect("a parsed webhook serializes");
            let again: OrderWebhook =
                serde_json::from_str(&text).expect("a serialized webhook parses again");
            assert_eq!(
                again, webhook,
                "the webhook changed on a round trip: {text}"
            );
            assert_eq!(delivered(&webhook), webhook.order);
            // The order validator runs on every order that parses: it must not panic (no
            // overflow on absurd amounts), names fields of the order, and its description
            // stays short whatever the order holds.
            let problems = relay::validate::problems(&webhook.order);
            for problem in &problems {
                assert!(problem.field.starts_with("order"), "{problem}");
            }
            let description = relay::validate::describe(&problems);
            assert!(
                description.len() <= 200 + problems.len().min(relay::validate::DESCRIBED) * 400,
                "a held order's reason quotes too much: {} bytes",
                description.len()
            );
        }
        Err(_) => {
            if let Ok(thin) = serde_json::from_slice::<ThinOrderWebhook>(data) {
                let text = serde_json::to_string(&thin).expect("a parsed webhook serializes");
                let again: ThinOrderWebhook =
                    serde_json::from_str(&text).expect("a serialized thin webhook parses again");
                assert_eq!(
                    again, thin,
                    "the thin webhook changed on a round trip: {text}"
                );
            }
        }
    }
}

/// The order as the agent reads it from the relay's `deliver` frame.
fn delivered(webhook: &OrderWebhook) -> shared::domain::Order {
    let frame = Envelope::new(Message::Deliver(Deliver {
        seq: 1,
        attempt: 1,
        shop_id: webhook.shop_id.clone(),
        document_type: DocumentType::Order,
        order: webhook.order.clone(),
    }))
    .to_json();
    match Envelope::from_json(&frame) {
        Ok(Envelope {
            msg: Message::Deliver(deliver),
            ..
        }) => deliver.order,
        other => panic!("the agent cannot read the deliver frame {frame}: {other:?}"),
    }
}

/// The Standard Webhooks check with every part chosen by the input. Lines: the secrets
/// (space-separated `whsec_...`), the verifier's clock (seconds), `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`, then the body (the rest, any bytes). A line the
/// input does not reach is a missing header; one that is not UTF-8 is one the relay could
/// not read.
pub fn signature(data: &[u8]) {
    let mut parts = data.splitn(6, |b| *b == b'\n');
    let mut line = || parts.next().map(std::str::from_utf8);
    let secrets: Vec<WebhookSecret> = match line() {
        Some(Ok(text)) => text
            .split_whitespace()
            .filter_map(|s| WebhookSecret::parse(s).ok())
            .collect(),
        _ => Vec::new(),
    };
    let now = match line() {
        Some(Ok(text)) => text.trim().parse().unwrap_or(1_767_225_600),
        _ => 1_767_225_600,
    };
    let id = line().and_then(Result::ok);
    let timestamp = line().and_then(Result::ok);
    let header = line().and_then(Result::ok);
    let body = parts.next().unwrap_or_default();
    let headers = SignedHeaders {
        id,
        timestamp,
        signature: header,
    };
    if let Ok(verified) = verify(&secrets, headers, body, now, 300) {
        assert_eq!(Some(verified), id);
    }
    // What a secret signs, it verifies; a secret survives being shown and read back.
    for secret in &secrets {
        assert_eq!(WebhookSecret::parse(&secret.expose()).as_ref(), Ok(secret));
        let id = id.filter(|id| !id.is_empty()).unwrap_or("msg_1");
        let signed = secret.sign(id, now, body);
        let now_text = now.to_string();
        let headers = SignedHeaders {
            id: Some(id),
            timestamp: Some(&now_text),
            signature: Some(&signed),
        };
        assert_eq!(
            verify(std::slice::from_ref(secret), headers, body, now, 300),
            Ok(id)
        );
    }
}

/// A text frame as the relay reads it from an agent and the agent from the relay (the input
/// is the frame's text; WebSocket text frames are UTF-8). A frame that decodes is the same
/// message after it is written out and read again, and both sides agree on what decodes.
pub fn protocol(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let envelope = Envelope::from_json(text);
    if let Ok(envelope) = &envelope {
        let json = envelope.to_json();
        assert_eq!(
            Envelope::from_json(&json).as_ref(),
            Ok(envelope),
            "the frame changed on a round trip: {json}"
        );
    }
    match relay::deliver::decode_frame(text) {
        Ok(Some(msg)) => assert_eq!(Some(&msg), envelope.as_ref().ok().map(|e| &e.msg)),
        Ok(None) => assert!(envelope.is_err(), "a known message was ignored"),
        Err((code, reason)) => {
            assert!(envelope.is_err(), "a valid frame was refused: {reason}");
            assert!(
                matches!(code, 1002 | 1007),
                "close code {code} for {reason}"
            );
        }
    }
    let agent = agent::session::read_text_frame(text);
    if let Ok(envelope) = &envelope {
        let goes_on = matches!(
            envelope.msg,
            Message::Deliver(_) | Message::Heartbeat(_) | Message::PushAck(_)
        );
        assert_eq!(
            agent.is_ok(),
            goes_on,
            "{:?}: {agent:?}",
            envelope.msg.kind()
        );
    } else {
        assert!(agent.is_err());
    }
}

/// The line that separates a configuration input's file from its environment variables.
const ENV_SEPARATOR: &[u8] = b"\n--- env ---\n";

/// Splits a configuration input into the file's bytes and `NAME=value` environment lines.
fn file_and_env(data: &[u8]) -> (&[u8], Vec<(String, String)>) {
    let at = data
        .windows(ENV_SEPARATOR.len())
        .position(|w| w == ENV_SEPARATOR);
    let Some(at) = at else {
        return (data, Vec::new());
    };
    let env = String::from_utf8_lossy(&data[at + ENV_SEPARATOR.len()..])
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    (&data[..at], env)
}

fn lookup(env: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    |name| {
        env.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// `agent.toml` (any bytes: UTF-8, or UTF-16 with its byte order mark), then `AGENT_*`
/// variables after a `--- env ---` line. A configuration that loads shows none of its
/// secrets in its `Debug` form.
pub fn agent_config(data: &[u8]) {
    let (file, env) = file_and_env(data);
    let Ok(config) = AgentConfig::from_bytes(file, "agent.toml", &lookup(&env)) else {
        return;
    };
    let shown = format!("{config:?}");
    let mut other = config.clone();
    other.relay.token = Secret::new(format!("{}-other", config.relay.token.expose()));
    other.mamut.sqlserver.password = Secret::new(format!(
        "{}-other",
        config.mamut.sqlserver.password.expose()
    ));
    assert_eq!(
        format!("{other:?}"),
        shown,
        "a secret shows in the Debug form"
    );
    for url in config.relay.urls() {
        assert!(agent::transport::Endpoint::parse(url, config.relay.insecure_dev).is_ok());
    }
}

/// `relay.toml` (UTF-8 text), then `RELAY_*` variables after a `--- env ---` line. A
/// configuration that loads has a store location and does not show its admin token in its
/// `Debug` form.
pub fn relay_config(data: &[u8]) {
    let (file, env) = file_and_env(data);
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let Ok(config) = RelayConfig::from_toml(text, "relay.toml", &lookup(&env)) else {
        return;
    };
    assert!(config.store_location().is_ok());
    let shown = format!("{config:?}");
    let mut other = config.clone();
    other.admin_token = config
        .admin_token
        .as_ref()
        .map(|t| Secret::new(format!("{}-other", t.expose())));
    assert_eq!(
        format!("{other:?}"),
        shown,
        "the admin token shows in Debug"
    );
}

/// The API key of the shop client the answers are read with.
const SHOP_KEY: &str = "sk_live_4f1d8a0c2b7e9f36";

fn shop_client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let http = relay::shop::http_client().expect("the HTTP client builds");
        Client::new(http, "https://shop.example/v1", Secret::new(SHOP_KEY))
    })
}

/// An answer of the shop's API as the relay's client reads it. First line: the call
/// (`order`, `state`, `capture`, `batch`, `put_product`, `product`, `products`), the HTTP
/// status and the id in the call's path, space-separated; second line: the `Retry-After`
/// header (empty: none); then the body. The API key never shows in what the client makes
/// of an answer, and a fetched order survives the enricher writing it out.
pub fn shop_answer(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let Some(Ok(head)) = parts.next().map(std::str::from_utf8) else {
        return;
    };
    let retry_after = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let mut words = head.split(' ');
    let call = match words.next() {
        Some("order") => Call::FetchOrder,
        Some("state") => Call::SetOrderState,
        Some("capture") => Call::Capture,
        Some("batch") => Call::Batch,
        Some("put_product") => Call::PutProduct,
        Some("product") => Call::Product,
        Some("products") => Call::Products,
        _ => return,
    };
    let Some(Ok(status)) = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .map(StatusCode::from_u16)
    else {
        return;
    };
    let id = words.next().unwrap_or("100234");
    let mut headers = HeaderMap::new();
    if !retry_after.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(retry_after)
    {
        headers.insert(RETRY_AFTER, value);
    }
    let answer = shop_client().read_answer(call, id, status, &headers, body);
    match &answer {
        Err(CallError::Permanent(reason) | CallError::Retryable { reason, .. }) => {
            assert!(!reason.contains(SHOP_KEY), "the key shows in {reason:?}");
        }
        Ok(Answer::Batch(outcome)) => {
            for (_, reason) in &outcome.refused {
                assert!(!reason.contains(SHOP_KEY), "the key shows in {reason:?}");
            }
        }
        Ok(Answer::Order(order)) => {
            assert_eq!(order.id, id);
            let webhook = OrderWebhook {
                event: "order.created".into(),
                shop_id: ShopId::new("demo-se").expect("a valid shop id"),
                occurred_at: order.created_at,
                order: order.as_ref().clone(),
            };
            let text = serde_json::to_string(&webhook).expect("an order serializes");
            let again: OrderWebhook =
                serde_json::from_str(&text).expect("an enriched webhook parses again");
            assert_eq!(again, webhook, "the order changed on a round trip: {text}");
        }
        Ok(_) => {}
    }
    if let Err(CallError::Retryable {
        retry_after: Some(wait),
        ..
    }) = &answer
    {
        assert!(wait.as_secs() <= 3600, "Retry-After is bounded to an hour");
    }
}
