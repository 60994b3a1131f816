//! The shops' side: each shop's rules (flow, status mapping, price lists, API access) and the
//! client for its platform's API.
//!
//! - [`nordisk`]: the Nordisk e-handel client, speaking the contract in `docs/shop-api.md`.
//!
//! Adding a platform is a new module and a new [`Platform`] variant; the dispatcher and the
//! enricher only see [`ShopClient`].

pub mod nordisk;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::domain::{Order, Price, PriceListPrice, Product, StockLevel};
use shared::settings::Secret;

/// Which way data flows between one shop and Mamut (REQUIREMENTS.md FL1–FL3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// The shop governs: orders go to Mamut, nothing comes back.
    Ecom,
    /// Mamut governs: status, products, prices, price lists and stock go to the shop.
    #[default]
    Erp,
    /// Products come from the shop; status, prices, price lists and stock from Mamut.
    Combo,
}

impl Flow {
    /// Whether a Mamut change of `kind` (a [`shared::domain::Change`] kind) goes to the shop.
    pub fn sends(self, kind: &str) -> bool {
        match self {
            Flow::Ecom => false,
            Flow::Erp => matches!(
                kind,
                "order_status" | "product" | "price" | "price_list" | "stock"
            ),
            Flow::Combo => matches!(kind, "order_status" | "price" | "price_list" | "stock"),
        }
    }
}

/// What a Mamut order status does to the shop order (R3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRule {
    /// The shop status to set.
    pub shop_status: String,
    /// Ask the shop to e-mail the customer.
    #[serde(default)]
    pub notify_customer: bool,
    /// Send the tracking number along, when Mamut has one.
    #[serde(default)]
    pub tracking: bool,
    /// Capture the reserved payment (typically on delivered).
    #[serde(default)]
    pub capture: bool,
}

/// The shop platforms the relay can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    #[default]
    Nordisk,
}

/// Where the shop's API is; its key is kept apart (see [`ShopClient::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    #[serde(default)]
    pub platform: Platform,
    /// Base URL, e.g. `https://api.nordisk-ehandel.example/v1`.
    pub url: String,
    /// Calls per second the relay makes to this shop at most.
    #[serde(default = "default_rate")]
    pub requests_per_sec: u32,
}

fn default_rate() -> u32 {
    5
}

/// A shop's rules beyond its webhook secrets and trigger statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShopSettings {
    #[serde(default)]
    pub flow: Flow,
    /// Mamut status name (e.g. `delivered`) → what happens in the shop.
    #[serde(default)]
    pub status_map: BTreeMap<String, StatusRule>,
    /// Mamut price list → shop customer group.
    #[serde(default)]
    pub price_lists: BTreeMap<String, String>,
    /// The shop's API; without it nothing can be sent to or fetched from the shop.
    #[serde(default)]
    pub api: Option<ApiSettings>,
}

impl ShopSettings {
    /// Checks what a client could get wrong; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (mamut, rule) in &self.status_map {
            if mamut.trim().is_empty() || rule.shop_status.trim().is_empty() {
                return Err("status_map: statuses must be non-empty names".into());
            }
        }
        for (list, group) in &self.price_lists {
            if list.trim().is_empty() || group.trim().is_empty() {
                return Err("price_lists: names must not be empty".into());
            }
            if group.contains('/') || group.contains('?') || group.contains('#') {
                return Err(format!(
                    "price_lists: customer group {group:?} must not contain '/', '?' or '#'"
                ));
            }
        }
        if let Some(api) = &self.api {
            let url = reqwest::Url::parse(&api.url)
                .map_err(|e| format!("api.url {:?} is not a URL: {e}", api.url))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err("api.url must be an http:// or https:// URL with a host".into());
            }
            if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
                return Err(
                    "api.url must not carry credentials or a query; the key goes in api_key".into(),
                );
            }
            if !(1..=1000).contains(&api.requests_per_sec) {
                return Err("api.requests_per_sec must be between 1 and 1000".into());
            }
        }
        Ok(())
    }
}

/// Why a call to the shop did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Worth trying again later; `retry_after` is the shop's own wish.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will fail the same way however often it is tried.
    #[error("{0}")]
    Permanent(String),
}

/// The items of a batch the shop refused; the rest were applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Article number and the shop's reason.
    pub refused: Vec<(String, String)>,
}

/// A client for one shop's API.
#[derive(Clone)]
pub enum ShopClient {
    Nordisk(nordisk::Client),
}

impl ShopClient {
    /// Most items one batch call carries.
    pub const MAX_BATCH: usize = nordisk::MAX_BATCH;

    pub fn new(http: reqwest::Client, api: &ApiSettings, key: Secret) -> Self {
        match api.platform {
            Platform::Nordisk => ShopClient::Nordisk(nordisk::Client::new(http, &api.url, key)),
        }
    }

    pub async fn fetch_order(&self, order_id: &str) -> Result<Order, CallError> {
        match self {
            ShopClient::Nordisk(c) => c.fetch_order(order_id).await,
        }
    }

    pub async fn set_order_state(
        &self,
        order_id: &str,
        status: &str,
        notify_customer: bool,
        tracking_number: Option<&str>,
    ) -> Result<(), CallError> {
        match self {
            ShopClient::Nordisk(c) => {
                c.set_order_state(order_id, status, notify_customer, tracking_number)
                    .await
            }
        }
    }

    pub async fn capture(&self, order_id: &str) -> Result<(), CallError> {
        match self {
            ShopClient::Nordisk(c) => c.capture(order_id).await,
        }
    }

    pub async fn put_stock(&self, items: &[StockLevel]) -> Result<BatchOutcome, CallError> {
        match self {
            ShopClient::Nordisk(c) => c.put_stock(items).await,
        }
    }

    pub async fn put_prices(&self, items: &[Price]) -> Result<BatchOutcome, CallError> {
        match self {
            ShopClient::Nordisk(c) => c.put_prices(items).await,
        }
    }

    pub async fn put_price_list(
        &self,
        customer_group: &str,
        items: &[PriceListPrice],
    ) -> Result<BatchOutcome, CallError> {
        match self {
            ShopClient::Nordisk(c) => c.put_price_list(customer_group, items).await,
        }
    }

    /// Creates or replaces a product; `true` when it was created.
    pub async fn put_product(&self, product: &Product) -> Result<bool, CallError> {
        match self {
            ShopClient::Nordisk(c) => c.put_product(product).await,
        }
    }

    /// One product, or `None` when the shop has none with that article number.
    pub async fn product(&self, article: &str) -> Result<Option<Product>, CallError> {
        match self {
            ShopClient::Nordisk(c) => c.product(article).await,
        }
    }

    /// A page of the shop's products after `after` (article-number order), and where the next
    /// page starts (`None` after the last).
    pub async fn products(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Product>, Option<String>), CallError> {
        match self {
            ShopClient::Nordisk(c) => c.products(after, limit).await,
        }
    }
}

/// The HTTP client every shop call goes through: rustls, bounded timeouts, no redirects.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("mamut-relay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flows_send_what_the_requirements_table_says() {
        for kind in ["order_status", "product", "price", "price_list", "stock"] {
            assert!(!Flow::Ecom.sends(kind), "ecom sends nothing back ({kind})");
            assert!(Flow::Erp.sends(kind), "erp sends {kind}");
        }
        assert!(!Flow::Combo.sends("product"));
        for kind in ["order_status", "price", "price_list", "stock"] {
            assert!(Flow::Combo.sends(kind), "combo sends {kind}");
        }
        assert!(!Flow::Erp.sends("something_else"));
    }

    #[test]
    fn settings_parse_with_defaults_and_refuse_unknown_fields() {
        let settings: ShopSettings = serde_json::from_str(
            r#"{"flow":"combo","status_map":{"delivered":{"shop_status":"shipped","capture":true}},
                "api":{"url":"https://shop.example/v1"}}"#,
        )
        .expect("parses");
        assert_eq!(settings.flow, Flow::Combo);
        let rule = &settings.status_map["delivered"];
        assert!(rule.capture && !rule.notify_customer && !rule.tracking);
        assert_eq!(settings.api.as_ref().map(|a| a.requests_per_sec), Some(5));
        assert!(settings.validate().is_ok());
        assert!(serde_json::from_str::<ShopSettings>(r#"{"flw":"erp"}"#).is_err());
    }

    #[test]
    fn invalid_settings_name_the_field() {
        let mut settings = ShopSettings {
            api: Some(ApiSettings {
                platform: Platform::Nordisk,
                url: "ftp://shop.example".into(),
                requests_per_sec: 5,
            }),
            ..ShopSettings::default()
        };
        assert!(settings.validate().unwrap_err().contains("api.url"));
        settings.api = None;
        settings.price_lists.insert("Reseller".into(), "a/b".into());
        assert!(settings.validate().unwrap_err().contains("price_lists"));
    }
}
