//! Reading Nordisk's answers: success or refusal per the contract's error table (with the
//! shop's error code and `Retry-After`), bodies decoded into what each call returns, and the
//! API key kept out of every reason, even where a reason is cut short.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use shared::domain::{Order, Product};

use super::Client;
use crate::shop::{BatchOutcome, CallError};

impl Client {
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

#[derive(Deserialize)]
pub(super) struct ErrorBody {
    pub(super) error: ErrorDetail,
}

#[derive(Deserialize)]
pub(super) struct ErrorDetail {
    #[serde(default)]
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
}

#[derive(Deserialize)]
pub(super) struct BatchAnswer {
    #[serde(default)]
    pub(super) errors: Vec<ItemError>,
}

#[derive(Deserialize)]
pub(super) struct ItemError {
    pub(super) article_number: String,
    #[serde(default)]
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
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
pub(super) fn sort_answer(
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
pub(super) fn without_key(text: String, key: &str) -> String {
    if key.is_empty() {
        text
    } else {
        text.replace(key, "***")
    }
}

/// A shop's body that cannot be used: worth another try, the reason without the API key.
pub(super) fn unexpected(reason: String, key: &str) -> CallError {
    CallError::Retryable {
        reason: without_key(reason, key),
        retry_after: None,
    }
}

/// A successful answer's body as `T`; a body of another shape is worth another try.
pub(super) fn decode_json<T: DeserializeOwned>(
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
pub(super) fn checked_order(order_id: &str, order: Order, key: &str) -> Result<Order, CallError> {
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

pub(super) fn batch_outcome(answer: BatchAnswer, key: &str) -> BatchOutcome {
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

pub(super) fn decode_product(article: &str, bytes: &[u8], key: &str) -> Result<Product, CallError> {
    serde_json::from_slice(bytes).map_err(|e| {
        unexpected(
            format!("GET /products/{article}: unexpected body: {e}"),
            key,
        )
    })
}

/// A page of `GET /products`: its items and the article to continue after.
pub(super) fn decode_page(
    bytes: &[u8],
    key: &str,
) -> Result<(Vec<Product>, Option<String>), CallError> {
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
pub(super) struct Refusal {
    pub(super) error: CallError,
    pub(super) code: String,
    /// The HTTP status, when the shop answered at all.
    pub(super) status: Option<u16>,
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
    pub(super) fn retry(reason: String) -> Self {
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
pub(super) fn classify(
    status: StatusCode,
    reason: String,
    retry_after: Option<Duration>,
) -> CallError {
    match status.as_u16() {
        400 | 404 | 409 | 422 => CallError::Permanent(reason),
        _ => CallError::Retryable {
            reason,
            retry_after,
        },
    }
}

/// `Retry-After` as seconds or an HTTP date; bounded to an hour.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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

pub(super) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
