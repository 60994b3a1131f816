//! Nordisk e-handel's API, as written down in `docs/shop-api.md`.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shared::domain::{Order, Price, PriceListPrice, Product, StockLevel};
use shared::settings::Secret;

use super::{BatchOutcome, CallError};

/// Most items one batch request may carry.
pub const MAX_BATCH: usize = 100;

/// Largest answer body read, in bytes.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Secret,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    errors: Vec<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    article_number: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Client {
    pub fn new(http: reqwest::Client, base: &str, key: Secret) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        }
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, CallError> {
        if let Some(bad) = segments
            .iter()
            .find(|s| s.is_empty() || **s == "." || **s == "..")
        {
            return Err(CallError::Permanent(format!(
                "{bad:?} cannot be used in the shop's API path"
            )));
        }
        let mut url = Url::parse(&self.base)
            .map_err(|e| CallError::Permanent(format!("the shop's API URL is invalid: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| CallError::Permanent("the shop's API URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends one request; on success returns the status and body.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<(StatusCode, Vec<u8>), CallError> {
        self.call_raw(method, segments, &[], body)
            .await
            .map_err(|refusal| refusal.error)
    }

    /// Sends one request and sorts the answer into success, retryable or permanent, keeping
    /// the shop's error code.
    async fn call_raw(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(StatusCode, Vec<u8>), Refusal> {
        let url = self.url(segments, query).map_err(Refusal::from)?;
        let path = url.path().to_owned();
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(self.key.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let mut response = request.send().await.map_err(|e| {
            // Without the URL: the path is in the reason already.
            Refusal::retry(format!("{method} {path}: {}", e.without_url()))
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(Refusal::retry(format!(
                            "{method} {path}: the answer is too large"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Refusal::retry(format!(
                        "{method} {path}: {}",
                        e.without_url()
                    )));
                }
            }
        }
        if status.is_success() {
            return Ok((status, bytes));
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (String::new(), String::new()),
        };
        let reason = format!(
            "{method} {path}: {status}{}{}",
            if code.is_empty() { "" } else { " " },
            code
        ) + &if message.is_empty() {
            String::new()
        } else {
            format!(": {}", truncate(&message, 300))
        };
        // A shop that echoes the request must not put its key into logs or the admin API.
        let reason = reason.replace(self.key.expose(), "***");
        Err(Refusal {
            error: classify(status, reason, retry_after),
            code: truncate(&code, 64).to_owned(),
            status: Some(status.as_u16()),
        })
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<T, CallError> {
        let (_, bytes) = self.call(method.clone(), segments, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Retryable {
            reason: format!(
                "{method} /{}: the shop answered with an unexpected body: {e}",
                segments.join("/")
            ),
            retry_after: None,
        })
    }

    pub async fn fetch_order(&self, order_id: &str) -> Result<Order, CallError> {
        let order: Order = self
            .call_json(Method::GET, &["orders", order_id], None)
            .await?;
        if order.id != order_id {
            return Err(CallError::Permanent(format!(
                "asked the shop for order {order_id} and got order {}",
                order.id
            )));
        }
        Ok(order)
    }

    pub async fn set_order_state(
        &self,
        order_id: &str,
        status: &str,
        notify_customer: bool,
        tracking_number: Option<&str>,
    ) -> Result<(), CallError> {
        let body = json!({
            "status": status,
            "notify_customer": notify_customer,
            "tracking_number": tracking_number,
        });
        self.call(Method::PUT, &["orders", order_id, "state"], Some(body))
            .await
            .map(drop)
    }

    pub async fn capture(&self, order_id: &str) -> Result<(), CallError> {
        match self
            .call_raw(
                Method::POST,
                &["orders", order_id, "capture"],
                &[],
                Some(json!({})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(refusal) if refusal.code == "already_captured" => Ok(()),
            Err(refusal) => Err(refusal.error),
        }
    }

    async fn batch(&self, segments: &[&str], items: Vec<Value>) -> Result<BatchOutcome, CallError> {
        let answer: BatchAnswer = self
            .call_json(Method::PUT, segments, Some(json!({ "items": items })))
            .await?;
        Ok(BatchOutcome {
            refused: answer
                .errors
                .into_iter()
                .map(|e| {
                    let reason = format!("{}: {}", e.code, truncate(&e.message, 300));
                    (e.article_number, reason)
                })
                .collect(),
        })
    }

    pub async fn put_stock(&self, items: &[StockLevel]) -> Result<BatchOutcome, CallError> {
        let items = items
            .iter()
            .map(|s| {
                json!({
                    "article_number": s.article_number,
                    "warehouse": s.warehouse,
                    "quantity": s.quantity,
                })
            })
            .collect();
        self.batch(&["stock"], items).await
    }

    pub async fn put_prices(&self, items: &[Price]) -> Result<BatchOutcome, CallError> {
        let items = items
            .iter()
            .map(|p| {
                json!({
                    "article_number": p.article_number,
                    "currency": p.currency,
                    "price": p.price,
                    "includes_vat": p.includes_vat,
                })
            })
            .collect();
        self.batch(&["prices"], items).await
    }

    pub async fn put_price_list(
        &self,
        customer_group: &str,
        items: &[PriceListPrice],
    ) -> Result<BatchOutcome, CallError> {
        let items = items
            .iter()
            .map(|p| {
                json!({
                    "article_number": p.article_number,
                    "currency": p.currency,
                    "price": p.price,
                })
            })
            .collect();
        self.batch(&["price-lists", customer_group, "prices"], items)
            .await
    }

    /// Creates or replaces a product; `true` when it was created.
    pub async fn put_product(&self, product: &Product) -> Result<bool, CallError> {
        let body = serde_json::to_value(product)
            .map_err(|e| CallError::Permanent(format!("cannot encode the product: {e}")))?;
        let (status, _) = self
            .call(
                Method::PUT,
                &["products", product.article_number.as_str()],
                Some(body),
            )
            .await?;
        Ok(status == StatusCode::CREATED)
    }

    /// One product, or `None` when the shop has none with that article number.
    pub async fn product(&self, article: &str) -> Result<Option<Product>, CallError> {
        match self
            .call_raw(Method::GET, &["products", article], &[], None)
            .await
        {
            Ok((_, bytes)) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| CallError::Retryable {
                        reason: format!("GET /products/{article}: unexpected body: {e}"),
                        retry_after: None,
                    })
            }
            Err(refusal) if refusal.status == Some(404) => Ok(None),
            Err(refusal) => Err(refusal.error),
        }
    }

    /// A page of products after `after`, and the article to continue after.
    pub async fn products(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Product>, Option<String>), CallError> {
        #[derive(Deserialize)]
        struct Page {
            items: Vec<Product>,
            next: Option<String>,
        }
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(after) = after {
            query.push(("after", after));
        }
        let (_, bytes) = self
            .call_raw(Method::GET, &["products"], &query, None)
            .await
            .map_err(|refusal| refusal.error)?;
        let page: Page = serde_json::from_slice(&bytes).map_err(|e| CallError::Retryable {
            reason: format!("GET /products: unexpected body: {e}"),
            retry_after: None,
        })?;
        Ok((page.items, page.next))
    }
}

/// A failed call with the shop's error code, if it gave one.
struct Refusal {
    error: CallError,
    code: String,
    /// The HTTP status, when the shop answered at all.
    status: Option<u16>,
}

impl From<CallError> for Refusal {
    fn from(error: CallError) -> Self {
        Self {
            error,
            code: String::new(),
            status: None,
        }
    }
}

impl Refusal {
    fn retry(reason: String) -> Self {
        Self {
            error: CallError::Retryable {
                reason,
                retry_after: None,
            },
            code: String::new(),
            status: None,
        }
    }
}

/// Sorts a failed answer per the contract's error table.
fn classify(status: StatusCode, reason: String, retry_after: Option<Duration>) -> CallError {
    match status.as_u16() {
        400 | 404 | 409 | 422 => CallError::Permanent(reason),
        _ => CallError::Retryable {
            reason,
            retry_after,
        },
    }
}

/// `Retry-After` as seconds or an HTTP date; bounded to an hour.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(Duration::from_secs(3600)))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3600)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&soon).expect("header value"),
        );
        let wait = retry_after(&headers).expect("a date");
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn failures_are_sorted_per_the_contract() {
        let permanent = |s: u16| {
            matches!(
                classify(
                    StatusCode::from_u16(s).expect("status"),
                    String::new(),
                    None
                ),
                CallError::Permanent(_)
            )
        };
        for s in [400, 404, 409, 422] {
            assert!(permanent(s), "{s} is permanent");
        }
        for s in [401, 403, 408, 429, 500, 502, 503] {
            assert!(!permanent(s), "{s} is retried");
        }
    }

    #[test]
    fn path_segments_are_escaped() {
        let client = Client::new(
            reqwest::Client::new(),
            "https://shop.example/v1/",
            Secret::new("k"),
        );
        let url = client
            .url(
                &["price-lists", "B2B Gold/x", "prices"],
                &[("after", "A&B")],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://shop.example/v1/price-lists/B2B%20Gold%2Fx/prices?after=A%26B"
        );
    }
}
