//! Nordisk e-handel's API, as written down in `docs/shop-api.md`: the calls here, the reading
//! of their answers in `answer`.

mod answer;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shared::domain::{Order, Price, PriceListPrice, Product, StockLevel};
use shared::settings::Secret;

pub use self::answer::{Answer, Call};
use self::answer::{
    BatchAnswer, Refusal, batch_outcome, checked_order, decode_json, decode_page, decode_product,
    retry_after, sort_answer,
};
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
}

#[cfg(test)]
mod tests;
