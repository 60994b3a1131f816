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
        sort_answer(
            &method,
            &path,
            status,
            retry_after,
            bytes,
            self.key.expose(),
        )
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<T, CallError> {
        let (_, bytes) = self.call(method.clone(), segments, body).await?;
        decode_json(&method, segments, &bytes, self.key.expose())
    }

    pub async fn fetch_order(&self, order_id: &str) -> Result<Order, CallError> {
        let order: Order = self
            .call_json(Method::GET, &["orders", order_id], None)
            .await?;
        checked_order(order_id, order, self.key.expose())
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
        Ok(batch_outcome(answer, self.key.expose()))
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
            Ok((_, bytes)) => decode_product(article, &bytes, self.key.expose()).map(Some),
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
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(after) = after {
            query.push(("after", after));
        }
        let (_, bytes) = self
            .call_raw(Method::GET, &["products"], &query, None)
            .await
            .map_err(|refusal| refusal.error)?;
        decode_page(&bytes, self.key.expose())
    }

    /// What the client makes of an answer the shop gave to `call` (`id` being the order id
    /// or article number in its path), without the HTTP exchange: the same sorting of the
    /// status, the error body and `Retry-After`, and the same reading of the body, as the
    /// method that makes the call. For checking the client against recorded or generated
    /// answers.
    pub fn read_answer(
        &self,
        call: Call,
        id: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Answer, CallError> {
        let (method, segments) = match call {
            Call::FetchOrder => (Method::GET, vec!["orders", id]),
            Call::SetOrderState => (Method::PUT, vec!["orders", id, "state"]),
            Call::Capture => (Method::POST, vec!["orders", id, "capture"]),
            Call::Batch => (Method::PUT, vec!["stock"]),
            Call::PutProduct => (Method::PUT, vec!["products", id]),
            Call::Product => (Method::GET, vec!["products", id]),
            Call::Products => (Method::GET, vec!["products"]),
        };
        let path = format!("/{}", segments.join("/"));
        let key = self.key.expose();
        let sorted = sort_answer(
            &method,
            &path,
            status,
            retry_after(headers),
            body.to_vec(),
            key,
        );
        match call {
            Call::FetchOrder => {
                let (_, bytes) = sorted.map_err(|refusal| refusal.error)?;
                decode_json(&method, &segments, &bytes, key)
                    .and_then(|order| checked_order(id, order, key))
                    .map(|order| Answer::Order(Box::new(order)))
            }
            Call::SetOrderState => sorted.map(|_| Answer::Done).map_err(|r| r.error),
            Call::Capture => match sorted {
                Ok(_) => Ok(Answer::Done),
                Err(refusal) if refusal.code == "already_captured" => Ok(Answer::Done),
                Err(refusal) => Err(refusal.error),
            },
            Call::Batch => {
                let (_, bytes) = sorted.map_err(|refusal| refusal.error)?;
                decode_json(&method, &segments, &bytes, key)
                    .map(|answer| batch_outcome(answer, key))
                    .map(Answer::Batch)
            }
            Call::PutProduct => sorted
                .map(|(status, _)| Answer::Created(status == StatusCode::CREATED))
                .map_err(|refusal| refusal.error),
            Call::Product => match sorted {
                Ok((_, bytes)) => decode_product(id, &bytes, key).map(|p| Answer::Product(Some(p))),
                Err(refusal) if refusal.status == Some(404) => Ok(Answer::Product(None)),
                Err(refusal) => Err(refusal.error),
            },
            Call::Products => {
                let (_, bytes) = sorted.map_err(|refusal| refusal.error)?;
                decode_page(&bytes, key).map(|(items, next)| Answer::Page(items, next))
            }
        }
    }
}

/// The calls whose answers [`Client::read_answer`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `GET /orders/{id}`.
    FetchOrder,
    /// `PUT /orders/{id}/state`.
    SetOrderState,
    /// `POST /orders/{id}/capture`.
    Capture,
    /// `PUT /stock`, `/prices` or `/price-lists/{group}/prices`.
    Batch,
    /// `PUT /products/{id}`.
    PutProduct,
    /// `GET /products/{id}`.
    Product,
    /// `GET /products?limit=N&after=ARTICLE`.
    Products,
}

/// What a call's answer gave, as its method returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The call succeeded and returns nothing.
    Done,
    Order(Box<Order>),
    Batch(BatchOutcome),
    /// Whether the product was created (`201`) rather than replaced.
    Created(bool),
    Product(Option<Product>),
    /// A page of products and the article to continue after.
    Page(Vec<Product>, Option<String>),
}

/// Sorts a received answer into success (its status and body) or a refusal with the shop's
/// error code, keeping the API key out of the reason.
fn sort_answer(
    method: &Method,
    path: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: Vec<u8>,
    key: &str,
) -> Result<(StatusCode, Vec<u8>), Refusal> {
    if status.is_success() {
        return Ok((status, bytes));
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        // The key goes before anything is cut short, so no part of it is left at the cut.
        Ok(body) => (
            without_key(body.error.code, key),
            without_key(body.error.message, key),
        ),
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
    Err(Refusal {
        error: classify(status, without_key(reason, key), retry_after),
        code: truncate(&code, 64).to_owned(),
        status: Some(status.as_u16()),
    })
}

/// `text` without the API key: a shop that echoes the request (in an error message, in a body
/// that does not parse) must not put its key into logs, dead letters or the admin API.
fn without_key(text: String, key: &str) -> String {
    if key.is_empty() {
        text
    } else {
        text.replace(key, "***")
    }
}

/// A shop's body that cannot be used: worth another try, the reason without the API key.
fn unexpected(reason: String, key: &str) -> CallError {
    CallError::Retryable {
        reason: without_key(reason, key),
        retry_after: None,
    }
}

/// A successful answer's body as `T`; a body of another shape is worth another try.
fn decode_json<T: DeserializeOwned>(
    method: &Method,
    segments: &[&str],
    bytes: &[u8],
    key: &str,
) -> Result<T, CallError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let path = segments.join("/");
        unexpected(
            format!("{method} /{path}: the shop answered with an unexpected body: {e}"),
            key,
        )
    })
}

/// The fetched order, if it is the one asked for.
fn checked_order(order_id: &str, order: Order, key: &str) -> Result<Order, CallError> {
    if order.id != order_id {
        return Err(CallError::Permanent(without_key(
            format!(
                "asked the shop for order {order_id} and got order {}",
                order.id
            ),
            key,
        )));
    }
    Ok(order)
}

fn batch_outcome(answer: BatchAnswer, key: &str) -> BatchOutcome {
    BatchOutcome {
        refused: answer
            .errors
            .into_iter()
            .map(|e| {
                let message = without_key(e.message, key);
                let reason = format!("{}: {}", e.code, truncate(&message, 300));
                (e.article_number, without_key(reason, key))
            })
            .collect(),
    }
}

fn decode_product(article: &str, bytes: &[u8], key: &str) -> Result<Product, CallError> {
    serde_json::from_slice(bytes).map_err(|e| {
        unexpected(
            format!("GET /products/{article}: unexpected body: {e}"),
            key,
        )
    })
}

/// A page of `GET /products`: its items and the article to continue after.
fn decode_page(bytes: &[u8], key: &str) -> Result<(Vec<Product>, Option<String>), CallError> {
    #[derive(Deserialize)]
    struct Page {
        items: Vec<Product>,
        next: Option<String>,
    }
    let page: Page = serde_json::from_slice(bytes)
        .map_err(|e| unexpected(format!("GET /products: unexpected body: {e}"), key))?;
    Ok((page.items, page.next))
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
    fn the_api_key_never_shows_in_a_reason_even_where_it_is_cut() {
        let key = "sk_live_4f1d8a0c2b7e9f36";
        let client = Client::new(
            reqwest::Client::new(),
            "https://shop.example/v1",
            Secret::new(key),
        );
        let message = format!("{}{key}", "x".repeat(290));
        let error = json!({ "error": { "code": key, "message": message } }).to_string();
        let batch =
            json!({ "errors": [{ "article_number": "A", "code": "c", "message": message }] });
        let wrong_type = json!({ "errors": key }).to_string();
        let read = |call, status, body: &str| {
            let status = StatusCode::from_u16(status).expect("status");
            client.read_answer(call, "1", status, &HeaderMap::new(), body.as_bytes())
        };
        let reasons = [
            read(Call::FetchOrder, 500, &error)
                .expect_err("refused")
                .to_string(),
            read(Call::Batch, 200, &wrong_type)
                .expect_err("refused")
                .to_string(),
            match read(Call::Batch, 200, &batch.to_string()) {
                Ok(Answer::Batch(outcome)) => outcome.refused[0].1.clone(),
                other => panic!("a batch outcome: {other:?}"),
            },
        ];
        for reason in reasons {
            assert!(!reason.contains("sk_live"), "{reason}");
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
