//! Domain types. Money and quantities that can be fractional are [`Decimal`], never floats,
//! and travel as strings (`"199.00"`) so their scale survives every hop.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{ArticleNumber, ShopId};

/// The body of an order webhook as the shop sends it (`order.status_changed` and friends).
///
/// Fields the shop adds later are tolerated (and kept in the relay's stored copy of the body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderWebhook {
    /// The shop's event name, e.g. `order.status_changed`.
    pub event: String,
    pub shop_id: ShopId,
    pub occurred_at: DateTime<Utc>,
    pub order: Order,
}

/// A thin webhook: only the order's id and status. The relay fetches the order from the
/// shop's API before delivering it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinOrderWebhook {
    pub event: String,
    pub shop_id: ShopId,
    pub occurred_at: Option<DateTime<Utc>>,
    pub order_id: String,
    pub status: String,
}

/// A shop order with its customer, as it is written to Mamut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The shop's order id: the idempotency key in Mamut (kept as the external reference).
    pub id: String,
    /// The order number shown to the customer.
    pub number: String,
    /// The shop's order status; decides whether the order is transferred (trigger statuses).
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// ISO 4217 currency code.
    pub currency: String,
    pub prices_include_vat: bool,
    pub customer: Customer,
    pub lines: Vec<OrderLine>,
    pub shipping: Option<Shipping>,
    pub payment: Option<Payment>,
    pub total: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerType {
    Private,
    Company,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// The shop's customer id, if the customer has an account.
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: CustomerType,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    /// Organisation number (companies); one of the keys Mamut customers are matched by.
    pub org_no: Option<String>,
    pub phone: Option<String>,
    /// The shop's customer group (price lists are mapped to these).
    pub customer_group: Option<String>,
    pub billing_address: Address,
    pub delivery_address: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub zip: String,
    pub city: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub article_number: ArticleNumber,
    pub name: String,
    pub quantity: u32,
    /// Price of one unit, including VAT when the order's `prices_include_vat` is set.
    pub unit_price: Decimal,
    /// VAT rate in percent, e.g. `25`.
    pub vat_rate: Decimal,
    /// Discount on the line as an amount in the order currency.
    pub discount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipping {
    pub method: String,
    pub name: String,
    pub price: Decimal,
    pub vat_rate: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub method: String,
    pub reference: Option<String>,
    pub status: String,
}

/// Whether Mamut should create an order or an invoice for a shop order (per shop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    #[default]
    Order,
    Invoice,
}

impl DocumentType {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentType::Order => "order",
            DocumentType::Invoice => "invoice",
        }
    }
}

impl std::str::FromStr for DocumentType {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "order" => Ok(DocumentType::Order),
            "invoice" => Ok(DocumentType::Invoice),
            other => Err(format!(
                "unknown document type {other:?}: expected \"order\" or \"invoice\""
            )),
        }
    }
}

/// Stock of one article (or variant) in one Mamut warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    pub article_number: ArticleNumber,
    /// Mamut warehouse; `None` means the sum over all warehouses.
    pub warehouse: Option<String>,
    pub quantity: Decimal,
}

/// The base sales price of one article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub article_number: ArticleNumber,
    pub currency: String,
    pub price: Decimal,
    pub includes_vat: bool,
}

/// One article's price in one Mamut price list (mapped to a shop customer group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceListPrice {
    pub price_list: String,
    pub article_number: ArticleNumber,
    pub currency: String,
    pub price: Decimal,
}

/// A product with its variants (Mamut's variant add-on has two dimensions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub article_number: ArticleNumber,
    pub name: String,
    pub description: Option<String>,
    pub vat_rate: Decimal,
    pub active: bool,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub article_number: ArticleNumber,
    /// First variant dimension, e.g. colour.
    pub dimension1: Option<String>,
    /// Second variant dimension, e.g. size.
    pub dimension2: Option<String>,
}

/// A Mamut order changed status (and possibly got a tracking number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChange {
    pub shop_id: ShopId,
    /// The shop's order id (Mamut's external reference).
    pub shop_order_id: String,
    /// Mamut's order or invoice number.
    pub mamut_ref: String,
    /// Mamut's status name, e.g. `delivered`.
    pub mamut_status: String,
    pub tracking_number: Option<String>,
}

/// A change in Mamut that the agent pushes to the relay for the shops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Stock(StockLevel),
    Price(Price),
    PriceList(PriceListPrice),
    Product(Product),
    OrderStatus(OrderStatusChange),
}

impl Change {
    /// What kind of change this is.
    pub fn change_kind(&self) -> ChangeKind {
        match self {
            Change::Stock(_) => ChangeKind::Stock,
            Change::Price(_) => ChangeKind::Price,
            Change::PriceList(_) => ChangeKind::PriceList,
            Change::Product(_) => ChangeKind::Product,
            Change::OrderStatus(_) => ChangeKind::OrderStatus,
        }
    }

    /// The change's `kind` on the wire (and in the relay's stored rows).
    pub fn kind(&self) -> &'static str {
        self.change_kind().as_str()
    }
}

/// The kinds of [`Change`]. [`ChangeKind::as_str`] is the one spelling of each: the `kind`
/// tag on the wire, the relay's stored rows and the agent's cursor file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Stock,
    Price,
    PriceList,
    Product,
    OrderStatus,
}

impl ChangeKind {
    /// Every kind, in the order the agent reads them from Mamut.
    pub const ALL: [ChangeKind; 5] = [
        ChangeKind::Stock,
        ChangeKind::Price,
        ChangeKind::PriceList,
        ChangeKind::Product,
        ChangeKind::OrderStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Stock => "stock",
            ChangeKind::Price => "price",
            ChangeKind::PriceList => "price_list",
            ChangeKind::Product => "product",
            ChangeKind::OrderStatus => "order_status",
        }
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        ChangeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown change kind {value:?}: expected stock, price, price_list, product or order_status"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_example_webhook_parses_into_the_domain_order_unchanged() {
        let text = include_str!("../tests/fixtures/order-webhook-full.json");
        let original: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
        let webhook: OrderWebhook = serde_json::from_str(text).expect("fixture parses");
        assert_eq!(webhook.order.lines.len(), 2);
        assert_eq!(webhook.order.total, Decimal::new(51600, 2));
        assert_eq!(webhook.order.lines[1].discount.to_string(), "10.00");
        let again = serde_json::to_value(&webhook).expect("serializes");
        assert_eq!(again, original);
    }

    #[test]
    fn money_is_never_a_float() {
        let text = include_str!("../tests/fixtures/order-webhook-full.json");
        let mut value: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
        value["order"]["total"] = serde_json::json!(516.0);
        // A float is accepted only as the exact decimal it spells; it is written back as a string.
        let webhook: OrderWebhook = serde_json::from_value(value).expect("parses");
        assert_eq!(
            serde_json::to_value(webhook.order.total).expect("serializes"),
            serde_json::json!("516")
        );
    }

    #[test]
    fn fields_the_shop_adds_later_do_not_reject_the_order() {
        let text = include_str!("../tests/fixtures/order-webhook-full.json");
        let mut value: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
        value["order"]["gift_wrap"] = serde_json::json!(true);
        let webhook: OrderWebhook = serde_json::from_value(value).expect("parses");
        assert_eq!(webhook.order.id, "100234");
    }

    #[test]
    fn a_change_kind_is_spelled_as_the_wire_tag_and_parses_back() {
        let article = ArticleNumber::new("MUG-1").expect("article");
        let changes = [
            Change::Stock(StockLevel {
                article_number: article.clone(),
                warehouse: None,
                quantity: Decimal::ONE,
            }),
            Change::Price(Price {
                article_number: article.clone(),
                currency: "SEK".into(),
                price: Decimal::ONE,
                includes_vat: false,
            }),
            Change::PriceList(PriceListPrice {
                price_list: "B2B".into(),
                article_number: article.clone(),
                currency: "SEK".into(),
                price: Decimal::ONE,
            }),
            Change::Product(Product {
                article_number: article,
                name: "Mug".into(),
                description: None,
                vat_rate: Decimal::ONE,
                active: true,
                variants: Vec::new(),
            }),
            Change::OrderStatus(OrderStatusChange {
                shop_id: ShopId::new("shop-1").expect("shop"),
                shop_order_id: "1".into(),
                mamut_ref: "2".into(),
                mamut_status: "delivered".into(),
                tracking_number: None,
            }),
        ];
        let kinds: Vec<ChangeKind> = changes.iter().map(Change::change_kind).collect();
        assert_eq!(kinds, ChangeKind::ALL, "one change of every kind");
        for change in &changes {
            let kind = change.change_kind();
            let wire = serde_json::to_value(change).expect("serializes");
            assert_eq!(wire["kind"], kind.as_str());
            assert_eq!(change.kind(), kind.as_str());
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                kind.as_str()
            );
            assert_eq!(kind.as_str().parse::<ChangeKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let e = "stocks".parse::<ChangeKind>().expect_err("unknown");
        assert!(e.contains("\"stocks\""), "{e}");
    }

    #[test]
    fn a_thin_webhook_is_not_a_full_order() {
        let text = include_str!("../tests/fixtures/order-webhook-thin.json");
        assert!(serde_json::from_str::<OrderWebhook>(text).is_err());
        let thin: ThinOrderWebhook = serde_json::from_str(text).expect("a thin webhook");
        assert_eq!(
            (thin.order_id.as_str(), thin.status.as_str()),
            ("100234", "confirmed")
        );
    }
}
