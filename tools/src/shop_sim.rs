//! The shop stand-in: a small HTTP server implementing the contract in `docs/shop-api.md`
//! (Nordisk e-handel, v1) for tests and demos. It is TEST code and NOT the real shop platform:
//! it implements exactly the paths and bodies that document describes, keeps everything in
//! memory, and can be told to fail ([`ShopSim::fail_next`]) so the relay's retries, backoff and
//! dead-lettering can be exercised.
//!
//! The API is mounted under `/v1` ([`ShopSim::url`]). Every request is recorded as a [`Call`]
//! (in arrival order, failed ones included); the effects are readable through the accessors
//! ([`ShopSim::order_state`], [`ShopSim::stock`], [`ShopSim::price`], ...).
//!
//! Strictness, so that the relay's client is held to the contract: money and quantities in
//! batch items must be decimal strings (`"12.5"`, not `12.5`), batches hold at most 100 items,
//! `GET /products` takes a `limit` of 1..=200, and malformed JSON is answered with `400`. Every
//! non-2xx answer carries `{"error": {"code": ..., "message": ...}}`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use shared::domain::{Order, Product};
use shared::ids::ArticleNumber;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The most items a batch (`PUT /stock`, `/prices`, `/price-lists/{group}/prices`) may hold.
pub const MAX_BATCH: usize = 100;
/// The largest `limit` of `GET /products`.
pub const MAX_PAGE: usize = 200;
/// The `limit` of `GET /products` when none is given.
pub const DEFAULT_PAGE: usize = 100;
/// The largest request body the stand-in reads.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How the next requests fail ([`ShopSim::fail_next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this status and an error body (`injected_failure`).
    Status(u16),
    /// Answer `429` with `Retry-After: <retry_after_secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Close the connection without an answer.
    Drop,
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `PUT`, `POST`...
    pub method: String,
    /// The path relative to the base URL (without `/v1` and without the query), as sent
    /// (percent-encoded), e.g. `/stock` or `/orders/100234/state`.
    pub path: String,
    /// The article numbers in a batch body (`items[].article_number`) or in a
    /// `/products/{article_number}` path, in order; empty otherwise.
    pub articles: Vec<String>,
    /// The status answered; `0` while the request is still being answered, or when the
    /// connection was dropped ([`Failure::Drop`]).
    pub status: u16,
    /// When the request arrived (for latency measurements).
    pub received: std::time::Instant,
}

/// What the shop did to one order.
#[derive(Debug, Clone, Default)]
pub struct OrderState {
    /// The order's current status.
    pub status: String,
    /// E-mails sent to the customer (`notify_customer` on a real status change).
    pub notifications: u32,
    /// The last tracking number set.
    pub tracking_number: Option<String>,
    pub captured: bool,
    /// Every capture request for the order, the refused repeats included.
    pub capture_calls: u32,
}

/// The stand-in's data, behind one mutex (never held across an await).
#[derive(Default)]
struct Data {
    orders: HashMap<String, (Order, OrderState)>,
    known_articles: HashSet<String>,
    products: BTreeMap<String, Product>,
    stock: HashMap<(String, Option<String>), Decimal>,
    prices: HashMap<String, (String, Decimal, bool)>,
    price_lists: HashMap<(String, String), (String, Decimal)>,
    calls: Vec<Call>,
    applied_stock: Vec<(String, Option<String>, Decimal)>,
    failures: VecDeque<Failure>,
}

impl Data {
    fn add_product(&mut self, product: Product) -> bool {
        let article = product.article_number.as_str().to_owned();
        self.known_articles.insert(article.clone());
        for variant in &product.variants {
            self.known_articles
                .insert(variant.article_number.as_str().to_owned());
        }
        self.products.insert(article, product).is_none()
    }
}

struct Shared {
    api_key: String,
    data: Mutex<Data>,
}

impl Shared {
    fn data(&self) -> MutexGuard<'_, Data> {
        // A panicking test thread must not hide the data from the others.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running stand-in. Dropping it aborts the server; [`ShopSim::stop`] shuts it down.
pub struct ShopSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ShopSim {
    /// Starts on a random loopback port; panics when it cannot bind (test setup).
    pub async fn start(api_key: &str) -> ShopSim {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        ShopSim::start_on(addr, api_key)
            .await
            .unwrap_or_else(|e| panic!("shop-sim cannot bind {addr}: {e}"))
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr, api_key: &str) -> std::io::Result<ShopSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            data: Mutex::new(Data::default()),
        });
        let app = router(shared.clone());
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown_rx.await;
        });
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                eprintln!("shop-sim: server error: {e}");
            }
        });
        Ok(ShopSim {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The socket address the stand-in listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Sends the webhook the shop sends when `order_id` changes status, signed by `shop`:
    /// the full order, or (`thin`) only its id and status. `None` when the stand-in has no
    /// such order; otherwise the relay's status and answer.
    pub async fn send_order_webhook(
        &self,
        shop: &crate::harness::shop::Shop,
        shop_id: &str,
        order_id: &str,
        thin: bool,
    ) -> Option<(reqwest::StatusCode, serde_json::Value)> {
        let (order, state) = self.shared.data().orders.get(order_id).cloned()?;
        let mut order = order;
        order.status = state.status;
        let body = if thin {
            json!({
                "event": "order.status_changed",
                "shop_id": shop_id,
                "occurred_at": chrono::Utc::now(),
                "order_id": order.id,
                "status": order.status,
            })
        } else {
            json!({
                "event": "order.status_changed",
                "shop_id": shop_id,
                "occurred_at": chrono::Utc::now(),
                "order": order,
            })
        };
        let body = serde_json::to_vec(&body).ok()?;
        Some(shop.send(shop_id, &body).await)
    }

    /// Adds (or replaces) an order; its state starts at `order.status`.
    pub fn add_order(&self, order: Order) {
        let state = OrderState {
            status: order.status.clone(),
            ..OrderState::default()
        };
        self.shared
            .data()
            .orders
            .insert(order.id.clone(), (order, state));
    }

    /// Makes article numbers known, so stock and prices for them are accepted.
    pub fn add_articles<I: IntoIterator<Item = S>, S: Into<String>>(&self, articles: I) {
        let mut data = self.shared.data();
        data.known_articles
            .extend(articles.into_iter().map(Into::into));
    }

    /// Adds (or replaces) a product; its article number and its variants' become known.
    pub fn add_product(&self, product: Product) {
        self.shared.data().add_product(product);
    }

    pub fn product(&self, article: &str) -> Option<Product> {
        self.shared.data().products.get(article).cloned()
    }

    /// All products, in article-number order.
    pub fn products(&self) -> Vec<Product> {
        self.shared.data().products.values().cloned().collect()
    }

    /// The stock of `article` in `warehouse` (`None`: the default stock), if any was set.
    pub fn stock(&self, article: &str, warehouse: Option<&str>) -> Option<Decimal> {
        let key = (article.to_owned(), warehouse.map(str::to_owned));
        self.shared.data().stock.get(&key).copied()
    }

    /// The base price of `article`: currency, price and whether it includes VAT.
    pub fn price(&self, article: &str) -> Option<(String, Decimal, bool)> {
        self.shared.data().prices.get(article).cloned()
    }

    /// The price of `article` for `customer_group`: currency and price.
    pub fn price_list_price(
        &self,
        customer_group: &str,
        article: &str,
    ) -> Option<(String, Decimal)> {
        let key = (customer_group.to_owned(), article.to_owned());
        self.shared.data().price_lists.get(&key).cloned()
    }

    pub fn order_state(&self, order_id: &str) -> Option<OrderState> {
        self.shared
            .data()
            .orders
            .get(order_id)
            .map(|(_, state)| state.clone())
    }

    /// Every request received, in arrival order, the failed ones included.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.data().calls.clone()
    }

    /// Every stock item applied (article, warehouse, quantity), in order.
    pub fn applied_stock(&self) -> Vec<(String, Option<String>, Decimal)> {
        self.shared.data().applied_stock.clone()
    }

    /// The next `n` requests (any path) fail this way; queued after failures already pending.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        let mut data = self.shared.data();
        data.failures.extend(std::iter::repeat_n(failure, n));
    }

    /// Forgets the pending failures.
    pub fn clear_failures(&self) {
        self.shared.data().failures.clear();
    }

    /// Stops accepting, lets answers in progress finish (at most 5 s) and stops.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for ShopSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/orders/{order_id}", get(get_order))
        .route("/orders/{order_id}/state", put(put_order_state))
        .route("/orders/{order_id}/capture", post(capture_order))
        .route("/stock", put(put_stock))
        .route("/prices", put(put_prices))
        .route(
            "/price-lists/{customer_group}/prices",
            put(put_price_list_prices),
        )
        .route("/products", get(list_products))
        .route(
            "/products/{article_number}",
            get(get_product).put(put_product),
        );
    Router::new()
        .nest("/v1", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// The error body every non-2xx answer carries.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into() } });
    (status, axum::Json(body)).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

/// A response whose body fails before its first byte: hyper then closes the connection
/// without writing anything.
fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("shop-sim: connection dropped"))
    });
    Response::new(Body::from_stream(stream))
}

/// Records the call, applies an injected failure, checks the API key, runs the handler and
/// gives any non-2xx answer the error body.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path();
    let path = match raw_path.strip_prefix("/v1") {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => raw_path.to_owned(),
    };
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let articles = match &body {
        Ok(bytes) => articles_of(&path, bytes),
        Err(_) => Vec::new(),
    };
    let (index, failure) = {
        let mut data = shared.data();
        data.calls.push(Call {
            method: parts.method.to_string(),
            path,
            articles,
            status: 0,
            received: std::time::Instant::now(),
        });
        (data.calls.len() - 1, data.failures.pop_front())
    };
    let response = match failure {
        Some(Failure::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(error(
                status,
                "injected_failure",
                "failure injected by the test",
            ))
        }
        Some(Failure::TooManyRequests { retry_after_secs }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Some(response)
        }
        Some(Failure::Drop) => return dropped_connection(),
        Some(Failure::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            None
        }
        None => None,
    };
    let response = match (response, body) {
        (Some(response), _) => response,
        (None, Err(e)) => bad_request(format!("the body cannot be read: {e}")),
        (None, Ok(_)) if !authorized(&parts.headers, &shared.api_key) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key",
        ),
        (None, Ok(bytes)) => {
            with_error_body(
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await,
            )
            .await
        }
    };
    if let Some(call) = shared.data().calls.get_mut(index) {
        call.status = response.status().as_u16();
    }
    response
}

fn authorized(headers: &HeaderMap, api_key: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|key| key == api_key)
}

/// Gives a non-2xx answer without a JSON body (axum's own rejections, e.g. `405`) the error
/// body of the contract.
async fn with_error_body(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if status.is_success() || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), MAX_BODY)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_client_error() => "bad_request",
        _ => "internal_error",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    error(status, code, message)
}

/// The article numbers a request names: `items[].article_number` of a JSON body and the
/// article of a `/products/{article_number}` path.
fn articles_of(path: &str, body: &[u8]) -> Vec<String> {
    let mut articles = Vec::new();
    if let Some(article) = path.strip_prefix("/products/")
        && !article.is_empty()
        && !article.contains('/')
    {
        articles.push(percent_decode(article));
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(items) = value.get("items").and_then(Value::as_array)
    {
        articles.extend(
            items
                .iter()
                .filter_map(|item| item.get("article_number").and_then(Value::as_str))
                .map(str::to_owned),
        );
    }
    articles
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a JSON body; a `400` with the error body when it is malformed.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("malformed JSON body: {e}"))))
}

/// A decimal that must travel as a string (`"12.5"`), as the contract says.
fn decimal_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map_err(|e| D::Error::custom(format!("{text:?} is not a decimal: {e}")))
}

// ---- orders ----

async fn get_order(State(shared): State<Arc<Shared>>, Path(order_id): Path<String>) -> Response {
    let data = shared.data();
    match data.orders.get(&order_id) {
        Some((order, state)) => {
            let mut order = order.clone();
            order.status = state.status.clone();
            axum::Json(order).into_response()
        }
        None => unknown_order(&order_id),
    }
}

fn unknown_order(order_id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no order {order_id:?}"),
    )
}

#[derive(Deserialize)]
struct StateBody {
    status: String,
    notify_customer: bool,
    #[serde(default)]
    tracking_number: Option<String>,
}

async fn put_order_state(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let body: StateBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if body.status.trim().is_empty() || body.status.chars().any(char::is_control) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_status",
            format!("the shop has no status {:?}", body.status),
        );
    }
    let mut data = shared.data();
    let Some((_, state)) = data.orders.get_mut(&order_id) else {
        return unknown_order(&order_id);
    };
    if state.status != body.status {
        state.status = body.status;
        if body.notify_customer {
            state.notifications += 1;
        }
    }
    if let Some(tracking_number) = body.tracking_number {
        state.tracking_number = Some(tracking_number);
    }
    axum::Json(json!({ "order_id": order_id, "status": state.status })).into_response()
}

async fn capture_order(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    if !body.iter().all(u8::is_ascii_whitespace)
        && let Err(response) = parse::<serde_json::Map<String, Value>>(&body)
    {
        return *response;
    }
    let mut data = shared.data();
    let Some((_, state)) = data.orders.get_mut(&order_id) else {
        return unknown_order(&order_id);
    };
    state.capture_calls += 1;
    if state.captured {
        return error(
            StatusCode::CONFLICT,
            "already_captured",
            format!("order {order_id:?} was captured before"),
        );
    }
    state.captured = true;
    axum::Json(json!({ "order_id": order_id, "captured": true })).into_response()
}

// ---- batches ----

#[derive(Deserialize)]
struct Batch<T> {
    items: Vec<T>,
}

trait Item {
    fn article(&self) -> &ArticleNumber;
}

#[derive(Deserialize)]
struct StockItem {
    article_number: ArticleNumber,
    warehouse: Option<String>,
    #[serde(deserialize_with = "decimal_string")]
    quantity: Decimal,
}

#[derive(Deserialize)]
struct PriceItem {
    article_number: ArticleNumber,
    currency: String,
    #[serde(deserialize_with = "decimal_string")]
    price: Decimal,
    includes_vat: bool,
}

#[derive(Deserialize)]
struct PriceListItem {
    article_number: ArticleNumber,
    currency: String,
    #[serde(deserialize_with = "decimal_string")]
    price: Decimal,
}

impl Item for StockItem {
    fn article(&self) -> &ArticleNumber {
        &self.article_number
    }
}

impl Item for PriceItem {
    fn article(&self) -> &ArticleNumber {
        &self.article_number
    }
}

impl Item for PriceListItem {
    fn article(&self) -> &ArticleNumber {
        &self.article_number
    }
}

/// Parses a batch, applies the items whose article is known and names the others.
fn apply_batch<T: DeserializeOwned + Item>(
    shared: &Shared,
    body: &[u8],
    mut apply: impl FnMut(&mut Data, T),
) -> Response {
    let batch: Batch<T> = match parse(body) {
        Ok(batch) => batch,
        Err(response) => return *response,
    };
    if batch.items.len() > MAX_BATCH {
        return error(
            StatusCode::BAD_REQUEST,
            "too_many_items",
            format!(
                "{} items; a batch holds at most {MAX_BATCH}",
                batch.items.len()
            ),
        );
    }
    let mut data = shared.data();
    let mut updated = 0u32;
    let mut errors = Vec::new();
    for item in batch.items {
        let article = item.article().as_str();
        if data.known_articles.contains(article) {
            apply(&mut data, item);
            updated += 1;
        } else {
            errors.push(json!({
                "article_number": article,
                "code": "unknown_article",
                "message": format!("the shop has no article {article:?}"),
            }));
        }
    }
    axum::Json(json!({ "updated": updated, "errors": errors })).into_response()
}

async fn put_stock(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    apply_batch(&shared, &body, |data, item: StockItem| {
        let article = String::from(item.article_number);
        data.stock
            .insert((article.clone(), item.warehouse.clone()), item.quantity);
        data.applied_stock
            .push((article, item.warehouse, item.quantity));
    })
}

async fn put_prices(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    apply_batch(&shared, &body, |data, item: PriceItem| {
        data.prices.insert(
            item.article_number.into(),
            (item.currency, item.price, item.includes_vat),
        );
    })
}

async fn put_price_list_prices(
    State(shared): State<Arc<Shared>>,
    Path(customer_group): Path<String>,
    body: Bytes,
) -> Response {
    apply_batch(&shared, &body, |data, item: PriceListItem| {
        data.price_lists.insert(
            (customer_group.clone(), item.article_number.into()),
            (item.currency, item.price),
        );
    })
}

// ---- products ----

async fn get_product(State(shared): State<Arc<Shared>>, Path(article): Path<String>) -> Response {
    match shared.data().products.get(&article) {
        Some(product) => axum::Json(product.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the shop has no product {article:?}"),
        ),
    }
}

async fn put_product(
    State(shared): State<Arc<Shared>>,
    Path(article): Path<String>,
    body: Bytes,
) -> Response {
    let product: Product = match parse(&body) {
        Ok(product) => product,
        Err(response) => return *response,
    };
    if product.article_number.as_str() != article {
        return error(
            StatusCode::BAD_REQUEST,
            "article_mismatch",
            format!(
                "the path names {article:?} but the body {:?}",
                product.article_number.as_str()
            ),
        );
    }
    let created = shared.data().add_product(product.clone());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(product)).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

async fn list_products(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(e) => return bad_request(format!("bad query: {e}")),
    };
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_PAGE,
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_limit",
                format!("limit must be 1..={MAX_PAGE}"),
            );
        }
    };
    let data = shared.data();
    let mut rest = data
        .products
        .iter()
        .filter(|(article, _)| {
            query
                .after
                .as_deref()
                .is_none_or(|after| article.as_str() > after)
        })
        .map(|(_, product)| product);
    let items: Vec<Product> = rest.by_ref().take(limit).cloned().collect();
    let next = match (rest.next(), items.last()) {
        (Some(_), Some(last)) => Some(last.article_number.as_str().to_owned()),
        _ => None,
    };
    axum::Json(json!({ "items": items, "next": next })).into_response()
}

impl std::fmt::Debug for ShopSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopSim").field("addr", &self.addr).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::{OrderWebhook, Variant};

    const KEY: &str = "test-key";

    fn order() -> Order {
        let text = include_str!("../../shared/tests/fixtures/order-webhook-full.json");
        let webhook: OrderWebhook = serde_json::from_str(text).expect("fixture parses");
        webhook.order
    }

    fn product(article: &str, variants: &[&str]) -> Product {
        Product {
            article_number: ArticleNumber::new(article).expect("valid article"),
            name: format!("Product {article}"),
            description: None,
            vat_rate: Decimal::new(25, 0),
            active: true,
            variants: variants
                .iter()
                .map(|v| Variant {
                    article_number: ArticleNumber::new(*v).expect("valid article"),
                    dimension1: Some("Red".into()),
                    dimension2: None,
                })
                .collect(),
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn put(sim: &ShopSim, path: &str, body: Value) -> (u16, Value) {
        let response = client()
            .put(format!("{}{path}", sim.url()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    async fn get_json(sim: &ShopSim, path: &str) -> (u16, Value) {
        let response = client()
            .get(format!("{}{path}", sim.url()))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    async fn capture(sim: &ShopSim, order_id: &str) -> (u16, Value) {
        let response = client()
            .post(format!("{}/orders/{order_id}/capture", sim.url()))
            .bearer_auth(KEY)
            .json(&json!({}))
            .send()
            .await
            .expect("request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    #[tokio::test]
    async fn a_missing_or_wrong_api_key_is_refused_with_the_error_body() {
        let sim = ShopSim::start(KEY).await;
        sim.add_order(order());
        let url = format!("{}/orders/100234", sim.url());

        let missing = client().get(&url).send().await.expect("answered");
        assert_eq!(missing.status().as_u16(), 401);
        let body: Value = missing.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "unauthorized");

        let wrong = client()
            .get(&url)
            .bearer_auth("not-the-key")
            .send()
            .await
            .expect("answered");
        assert_eq!(wrong.status().as_u16(), 401);

        let (status, body) = get_json(&sim, "/orders/100234").await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], "100234");
        assert_eq!(body["status"], "confirmed");
        assert_eq!(body["total"], "516.00");

        let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
        assert_eq!(statuses, [401, 401, 200]);
        assert_eq!(sim.calls()[0].path, "/orders/100234");
        assert_eq!(sim.calls()[0].method, "GET");
        sim.stop().await;
    }

    #[tokio::test]
    async fn a_stock_batch_applies_the_known_articles_and_names_the_unknown() {
        let sim = ShopSim::start(KEY).await;
        sim.add_articles(["A-1", "B-2"]);
        let (status, body) = put(
            &sim,
            "/stock",
            json!({ "items": [
                { "article_number": "A-1", "warehouse": null, "quantity": "12.5" },
                { "article_number": "X-9", "warehouse": null, "quantity": "1" },
                { "article_number": "B-2", "warehouse": "lager2", "quantity": "3" },
            ]}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["updated"], 2);
        let errors = body["errors"].as_array().expect("errors list");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["article_number"], "X-9");
        assert_eq!(errors[0]["code"], "unknown_article");

        assert_eq!(sim.stock("A-1", None), Some(Decimal::new(125, 1)));
        assert_eq!(sim.stock("B-2", Some("lager2")), Some(Decimal::new(3, 0)));
        assert_eq!(sim.stock("B-2", None), None);
        assert_eq!(sim.stock("X-9", None), None);
        assert_eq!(
            sim.applied_stock(),
            [
                ("A-1".to_owned(), None, Decimal::new(125, 1)),
                (
                    "B-2".to_owned(),
                    Some("lager2".to_owned()),
                    Decimal::new(3, 0)
                ),
            ]
        );
        let calls = sim.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].path, "/stock");
        assert_eq!(calls[0].articles, ["A-1", "X-9", "B-2"]);
        sim.stop().await;
    }

    #[tokio::test]
    async fn batches_are_bounded_and_decimals_must_be_strings() {
        let sim = ShopSim::start(KEY).await;
        sim.add_articles(["A-1"]);
        let items: Vec<Value> = (0..101)
            .map(|_| json!({ "article_number": "A-1", "currency": "SEK", "price": "1", "includes_vat": true }))
            .collect();
        let (status, body) = put(&sim, "/prices", json!({ "items": items })).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "too_many_items");

        let (status, body) = put(
            &sim,
            "/prices",
            json!({ "items": [{ "article_number": "A-1", "currency": "SEK", "price": 199.0, "includes_vat": true }] }),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "bad_request");
        assert_eq!(sim.price("A-1"), None);

        let (status, _) = put(
            &sim,
            "/prices",
            json!({ "items": [{ "article_number": "A-1", "currency": "SEK", "price": "199.00", "includes_vat": true }] }),
        )
        .await;
        assert_eq!(status, 200);
        let (currency, price, includes_vat) = sim.price("A-1").expect("price applied");
        assert_eq!(
            (currency.as_str(), price.to_string().as_str(), includes_vat),
            ("SEK", "199.00", true)
        );

        let (status, body) = put(
            &sim,
            "/price-lists/retailers/prices",
            json!({ "items": [{ "article_number": "A-1", "currency": "SEK", "price": "149.00" }] }),
        )
        .await;
        assert_eq!((status, body["updated"].as_u64()), (200, Some(1)));
        assert_eq!(
            sim.price_list_price("retailers", "A-1"),
            Some(("SEK".to_owned(), Decimal::new(14900, 2)))
        );
        assert_eq!(sim.price_list_price("others", "A-1"), None);

        let malformed = client()
            .put(format!("{}/stock", sim.url()))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body("{\"items\": [")
            .send()
            .await
            .expect("answered");
        assert_eq!(malformed.status().as_u16(), 400);
        let body: Value = malformed.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "bad_request");
        sim.stop().await;
    }

    #[tokio::test]
    async fn too_many_requests_carries_retry_after_and_then_the_call_succeeds() {
        let sim = ShopSim::start(KEY).await;
        sim.add_order(order());
        sim.fail_next(
            1,
            Failure::TooManyRequests {
                retry_after_secs: 7,
            },
        );
        let url = format!("{}/orders/100234", sim.url());

        let limited = client()
            .get(&url)
            .bearer_auth(KEY)
            .send()
            .await
            .expect("answered");
        assert_eq!(limited.status().as_u16(), 429);
        assert_eq!(
            limited
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
        let body: Value = limited.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "rate_limited");

        let (status, body) = get_json(&sim, "/orders/100234").await;
        assert_eq!(status, 200);
        assert_eq!(body["number"], "100234");
        let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
        assert_eq!(statuses, [429, 200]);
        sim.stop().await;
    }

    #[tokio::test]
    async fn injected_statuses_and_dropped_connections() {
        let sim = ShopSim::start(KEY).await;
        sim.add_order(order());
        sim.fail_next(2, Failure::Status(503));
        sim.fail_next(1, Failure::Drop);
        for _ in 0..2 {
            let (status, body) = get_json(&sim, "/orders/100234").await;
            assert_eq!(status, 503);
            assert_eq!(body["error"]["code"], "injected_failure");
        }
        let dropped = client()
            .get(format!("{}/orders/100234", sim.url()))
            .bearer_auth(KEY)
            .send()
            .await;
        assert!(dropped.is_err(), "no answer expected, got {dropped:?}");

        sim.fail_next(3, Failure::Status(500));
        sim.clear_failures();
        let (status, _) = get_json(&sim, "/orders/100234").await;
        assert_eq!(status, 200);
        let (status, body) = get_json(&sim, "/orders/nope").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "not_found");

        let statuses: Vec<u16> = sim.calls().iter().map(|c| c.status).collect();
        assert_eq!(statuses, [503, 503, 0, 200, 404]);
        sim.stop().await;
    }

    #[tokio::test]
    async fn setting_the_same_status_again_sends_no_second_email() {
        let sim = ShopSim::start(KEY).await;
        sim.add_order(order());
        let body = json!({ "status": "delivered", "notify_customer": true, "tracking_number": "00370712345" });
        for _ in 0..2 {
            let (status, answer) = put(&sim, "/orders/100234/state", body.clone()).await;
            assert_eq!(status, 200);
            assert_eq!(
                answer,
                json!({ "order_id": "100234", "status": "delivered" })
            );
        }
        let state = sim.order_state("100234").expect("known order");
        assert_eq!(state.status, "delivered");
        assert_eq!(state.notifications, 1);
        assert_eq!(state.tracking_number.as_deref(), Some("00370712345"));

        let (_, order) = get_json(&sim, "/orders/100234").await;
        assert_eq!(order["status"], "delivered");

        let (status, _) = put(
            &sim,
            "/orders/missing/state",
            json!({ "status": "delivered", "notify_customer": false, "tracking_number": null }),
        )
        .await;
        assert_eq!(status, 404);
        let (status, answer) = put(
            &sim,
            "/orders/100234/state",
            json!({ "status": " ", "notify_customer": false, "tracking_number": null }),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("unknown_status"))
        );
        sim.stop().await;
    }

    #[tokio::test]
    async fn a_second_capture_is_refused_as_already_captured() {
        let sim = ShopSim::start(KEY).await;
        sim.add_order(order());
        let (status, body) = capture(&sim, "100234").await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({ "order_id": "100234", "captured": true }));
        let (status, body) = capture(&sim, "100234").await;
        assert_eq!(status, 409);
        assert_eq!(body["error"]["code"], "already_captured");
        let state = sim.order_state("100234").expect("known order");
        assert!(state.captured);
        assert_eq!(state.capture_calls, 2);
        let (status, _) = capture(&sim, "missing").await;
        assert_eq!(status, 404);
        sim.stop().await;
    }

    #[tokio::test]
    async fn products_are_created_replaced_and_paged_in_article_order() {
        let sim = ShopSim::start(KEY).await;
        sim.add_product(product("C", &[]));
        sim.add_product(product("A", &["A-RED"]));

        let body = serde_json::to_value(product("B", &["B-RED", "B-BLUE"])).expect("serializes");
        let (status, _) = put(&sim, "/products/B", body.clone()).await;
        assert_eq!(status, 201);
        let (status, _) = put(&sim, "/products/B", body.clone()).await;
        assert_eq!(status, 200);
        let (status, answer) = put(&sim, "/products/OTHER", body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("article_mismatch"))
        );
        assert_eq!(sim.product("B").map(|p| p.variants.len()), Some(2));
        assert_eq!(sim.calls()[0].articles, ["B"]);

        // The variants became known articles.
        let (_, answer) = put(
            &sim,
            "/stock",
            json!({ "items": [{ "article_number": "B-BLUE", "warehouse": null, "quantity": "4" }] }),
        )
        .await;
        assert_eq!(answer, json!({ "updated": 1, "errors": [] }));

        let (status, page) = get_json(&sim, "/products?limit=2").await;
        assert_eq!(status, 200);
        let articles: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|p| p["article_number"].as_str())
            .collect();
        assert_eq!(articles, ["A", "B"]);
        assert_eq!(page["next"], "B");
        assert_eq!(page["items"][0]["vat_rate"], "25");

        let (status, page) = get_json(&sim, "/products?limit=2&after=B").await;
        assert_eq!(status, 200);
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(page["items"][0]["article_number"], "C");
        assert_eq!(page["next"], Value::Null);

        let (status, answer) = get_json(&sim, "/products?limit=201").await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_limit"))
        );
        assert_eq!(
            sim.products()
                .iter()
                .map(|p| p.article_number.as_str().to_owned())
                .collect::<Vec<_>>(),
            ["A", "B", "C"]
        );
        sim.stop().await;
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_carry_the_error_body() {
        let sim = ShopSim::start(KEY).await;
        let (status, body) = get_json(&sim, "/nothing-here").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found"))
        );
        let response = client()
            .delete(format!("{}/stock", sim.url()))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 405);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert_eq!(sim.calls().len(), 2);
        sim.stop().await;
    }
}
