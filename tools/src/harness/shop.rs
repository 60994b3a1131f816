//! Webhooks as the shop sends them: Standard Webhooks headers, HMAC-SHA256 signatures.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use serde_json::Value;
use shared::signature::WebhookSecret;

/// The example order from the product's documentation.
pub const EXAMPLE: &str = include_str!("../../../shared/tests/fixtures/order-webhook-full.json");

pub struct Shop {
    client: reqwest::Client,
    base: String,
    pub secret: WebhookSecret,
    counter: AtomicU64,
    prefix: u32,
}

/// A webhook body for `shop_id` with the example order's content.
pub fn order_body(shop_id: &str, order_id: &str, status: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(EXAMPLE).expect("example parses");
    body["shop_id"] = shop_id.into();
    body["order"]["id"] = order_id.into();
    body["order"]["number"] = order_id.into();
    body["order"]["status"] = status.into();
    serde_json::to_vec(&body).expect("serializes")
}

impl Shop {
    pub fn new(client: reqwest::Client, base: String) -> Self {
        let secret =
            WebhookSecret::from_bytes(rand::random::<[u8; 32]>().to_vec()).expect("valid key");
        Self {
            client,
            base,
            secret,
            counter: AtomicU64::new(0),
            prefix: rand::random(),
        }
    }

    /// A shop that signs with a given secret (the one configured at the relay).
    pub fn with_secret(client: reqwest::Client, base: String, secret: WebhookSecret) -> Self {
        Self {
            client,
            base,
            secret,
            counter: AtomicU64::new(0),
            prefix: rand::random(),
        }
    }

    pub fn secret_text(&self) -> String {
        self.secret.expose()
    }

    pub fn next_id(&self) -> String {
        // Unique across signers too: several may send the same shop's webhooks.
        format!(
            "msg_{}_{:08x}_{}",
            std::process::id(),
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Signed headers for `body` with `id`, timestamped now.
    pub fn headers(&self, id: &str, body: &[u8]) -> Vec<(String, String)> {
        let ts = chrono::Utc::now().timestamp();
        vec![
            ("webhook-id".into(), id.into()),
            ("webhook-timestamp".into(), ts.to_string()),
            ("webhook-signature".into(), self.secret.sign(id, ts, body)),
        ]
    }

    /// Sends a correctly signed webhook with a fresh id.
    pub async fn send(&self, shop_id: &str, body: &[u8]) -> (StatusCode, Value) {
        let id = self.next_id();
        let headers = self.headers(&id, body);
        self.send_with(shop_id, body.to_vec(), &headers)
            .await
            .expect("relay answers")
    }

    /// Sends with exactly these headers; `Err` when the relay cannot be reached.
    pub async fn send_with(
        &self,
        shop_id: &str,
        body: Vec<u8>,
        headers: &[(String, String)],
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut request = self
            .client
            .post(format!("{}/webhooks/{shop_id}", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}
