//! Alert webhooks: a `POST` of JSON whose `text` Slack's and Teams' incoming webhooks show,
//! with the alert's fields beside it for any other receiver. The URL may hold a secret token:
//! errors and logs name only its host.

use std::time::Duration;

use serde_json::json;

use super::message::Message;
use super::settings::url_host;

/// A webhook call's time limit.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON body sent.
pub fn body(message: &Message) -> serde_json::Value {
    json!({
        "text": message.text(),
        "tenant": message.tenant,
        "condition": message.condition,
        "state": message.state,
        "detail": message.detail,
        "at": message.at,
    })
}

/// Posts `message` to `url`; a 2xx answer is success.
pub async fn send(http: &reqwest::Client, url: &str, message: &Message) -> Result<(), String> {
    let host = url_host(url);
    let answer = http
        .post(url)
        .timeout(TIMEOUT)
        .json(&body(message))
        .send()
        .await
        .map_err(|e| format!("the alert webhook at {host} failed: {}", e.without_url()))?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the alert webhook at {host} answered {status}"))
    }
}
