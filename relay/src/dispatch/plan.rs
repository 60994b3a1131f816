//! The pure part of dispatching: which calls a round's rows make under the shop's rules.
//! Status changes go one call each (oldest first), then products one each, then stock, prices
//! and price-list prices in batches; a row the shop's current rules no longer allow is refused
//! (dead-lettered) instead of sent.

use std::collections::BTreeMap;

use shared::domain::{Change, OrderStatusChange, Price, PriceListPrice, StockLevel};

use crate::shop::{ShopClient, ShopSettings, StatusRule};
use crate::store::DispatchItem;

/// A row as sent: its id, the version sent, and its article (for batch refusals).
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) id: i64,
    pub(super) version: i64,
    pub(super) article: String,
}

impl Sent {
    pub(super) fn of(item: &DispatchItem, article: &str) -> Self {
        Self {
            id: item.id,
            version: item.version,
            article: article.to_owned(),
        }
    }

    pub(super) fn key(&self) -> (i64, i64) {
        (self.id, self.version)
    }
}

/// One call to the shop.
pub(super) enum Call {
    Stock(Vec<(Sent, StockLevel)>),
    Prices(Vec<(Sent, Price)>),
    PriceList(String, Vec<(Sent, PriceListPrice)>),
    Product(Sent, Box<shared::domain::Product>),
    Status(Sent, OrderStatusChange, StatusRule),
    /// Not sendable under the shop's current rules.
    Refuse(Sent, String),
}

/// Turns a round's rows into calls: status changes first (oldest first), then products, then
/// batches of stock, prices and price-list prices.
pub(super) fn plan(settings: &ShopSettings, items: Vec<DispatchItem>) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut stock = Vec::new();
    let mut prices = Vec::new();
    let mut lists: BTreeMap<String, Vec<(Sent, PriceListPrice)>> = BTreeMap::new();
    let mut products = Vec::new();
    for item in items {
        let kind = item.change.kind();
        if !settings.flow.sends(kind) {
            let sent = Sent::of(&item, "");
            let reason = format!(
                "the shop's flow {:?} no longer takes {kind} changes",
                settings.flow
            );
            calls.push(Call::Refuse(sent, reason));
            continue;
        }
        match &item.change {
            Change::OrderStatus(change) => {
                let sent = Sent::of(&item, "");
                match settings.status_map.get(&change.mamut_status) {
                    Some(rule) => calls.push(Call::Status(sent, change.clone(), rule.clone())),
                    None => calls.push(Call::Refuse(
                        sent,
                        format!(
                            "Mamut status {:?} is no longer mapped to a shop status",
                            change.mamut_status
                        ),
                    )),
                }
            }
            Change::Product(product) => {
                let sent = Sent::of(&item, product.article_number.as_str());
                products.push(Call::Product(sent, Box::new(product.clone())));
            }
            Change::Stock(level) => {
                stock.push((
                    Sent::of(&item, level.article_number.as_str()),
                    level.clone(),
                ));
            }
            Change::Price(price) => {
                prices.push((
                    Sent::of(&item, price.article_number.as_str()),
                    price.clone(),
                ));
            }
            Change::PriceList(price) => {
                let sent = Sent::of(&item, price.article_number.as_str());
                match settings.price_lists.get(&price.price_list) {
                    Some(group) => lists
                        .entry(group.clone())
                        .or_default()
                        .push((sent, price.clone())),
                    None => calls.push(Call::Refuse(
                        sent,
                        format!(
                            "price list {:?} is no longer mapped to a customer group",
                            price.price_list
                        ),
                    )),
                }
            }
        }
    }
    calls.extend(products);
    let batch = ShopClient::MAX_BATCH;
    calls.extend(batches(stock, batch).into_iter().map(Call::Stock));
    calls.extend(batches(prices, batch).into_iter().map(Call::Prices));
    for (group, items) in lists {
        calls.extend(
            batches(items, batch)
                .into_iter()
                .map(|chunk| Call::PriceList(group.clone(), chunk)),
        );
    }
    calls
}

/// Splits rows into batches of at most `size`, never two rows of one article in a batch (the
/// shop reports refusals by article number, so each must name exactly one row).
fn batches<T>(items: Vec<(Sent, T)>, size: usize) -> Vec<Vec<(Sent, T)>> {
    let mut out: Vec<Vec<(Sent, T)>> = Vec::new();
    for item in items {
        let home = out.iter().position(|batch| {
            batch.len() < size && batch.iter().all(|(sent, _)| sent.article != item.0.article)
        });
        match home {
            Some(index) => out[index].push(item),
            None => out.push(vec![item]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(id: i64, article: &str) -> (Sent, ()) {
        let sent = Sent {
            id,
            version: 1,
            article: article.into(),
        };
        (sent, ())
    }

    #[test]
    fn batches_hold_at_most_the_limit_and_one_row_per_article() {
        let items: Vec<(Sent, ())> = (0..250).map(|i| sent(i, &format!("A-{i}"))).collect();
        let sizes: Vec<usize> = batches(items, 100).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert!(batches(Vec::<(Sent, ())>::new(), 100).is_empty());
        // Two warehouses of one article go in different calls.
        let items = vec![sent(1, "A"), sent(2, "B"), sent(3, "A")];
        let split = batches(items, 100);
        assert_eq!(split.len(), 2);
        assert!(split.iter().all(|b| {
            let articles: std::collections::HashSet<&str> =
                b.iter().map(|(s, _)| s.article.as_str()).collect();
            articles.len() == b.len()
        }));
    }

    /// A pushed change as the agent sends it (its wire form).
    fn item(id: i64, change: serde_json::Value) -> DispatchItem {
        DispatchItem {
            id,
            change: serde_json::from_value(change).expect("a test change in its wire form"),
            version: 1,
            attempts: 0,
        }
    }

    fn stock(id: i64, article: &str, warehouse: &str) -> DispatchItem {
        item(
            id,
            serde_json::json!({"kind": "stock", "article_number": article, "warehouse": warehouse, "quantity": "5"}),
        )
    }

    fn price(id: i64, article: &str) -> DispatchItem {
        item(
            id,
            serde_json::json!({"kind": "price", "article_number": article, "currency": "SEK", "price": "10", "includes_vat": true}),
        )
    }

    fn list_price(id: i64, list: &str, article: &str) -> DispatchItem {
        item(
            id,
            serde_json::json!({"kind": "price_list", "price_list": list, "article_number": article, "currency": "SEK", "price": "9"}),
        )
    }

    fn product(id: i64, article: &str) -> DispatchItem {
        item(
            id,
            serde_json::json!({"kind": "product", "article_number": article, "name": "Chair", "description": null, "vat_rate": "25", "active": true, "variants": []}),
        )
    }

    fn status(id: i64, mamut_status: &str) -> DispatchItem {
        item(
            id,
            serde_json::json!({"kind": "order_status", "shop_id": "shop-1", "shop_order_id": format!("O-{id}"), "mamut_ref": "1001", "mamut_status": mamut_status, "tracking_number": null}),
        )
    }

    /// An ERP shop that maps `delivered` and the price list `retail`.
    fn settings() -> ShopSettings {
        let mut settings = ShopSettings::default();
        settings.status_map.insert(
            "delivered".into(),
            StatusRule {
                shop_status: "shipped".into(),
                notify_customer: true,
                tracking: false,
                capture: false,
            },
        );
        settings
            .price_lists
            .insert("retail".into(), "group-retail".into());
        settings
    }

    /// Each call as `kind:row ids`, in order.
    fn shape(calls: &[Call]) -> Vec<String> {
        let ids = |rows: Vec<i64>| {
            rows.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        calls
            .iter()
            .map(|call| match call {
                Call::Stock(rows) => {
                    format!("stock:{}", ids(rows.iter().map(|(s, _)| s.id).collect()))
                }
                Call::Prices(rows) => {
                    format!("prices:{}", ids(rows.iter().map(|(s, _)| s.id).collect()))
                }
                Call::PriceList(group, rows) => {
                    format!(
                        "list {group}:{}",
                        ids(rows.iter().map(|(s, _)| s.id).collect())
                    )
                }
                Call::Product(sent, _) => format!("product:{}", sent.id),
                Call::Status(sent, _, rule) => format!("status {}:{}", rule.shop_status, sent.id),
                Call::Refuse(sent, _) => format!("refuse:{}", sent.id),
            })
            .collect()
    }

    #[test]
    fn statuses_go_first_then_products_then_batches_of_stock_prices_and_price_lists() {
        let items = vec![
            stock(1, "A", "main"),
            price(2, "A"),
            status(3, "delivered"),
            product(4, "A"),
            list_price(5, "retail", "A"),
            stock(6, "B", "main"),
            status(7, "delivered"),
        ];
        let calls = plan(&settings(), items);
        assert_eq!(
            shape(&calls),
            vec![
                "status shipped:3",
                "status shipped:7",
                "product:4",
                "stock:1,6",
                "prices:2",
                "list group-retail:5",
            ]
        );
    }

    #[test]
    fn a_row_the_rules_no_longer_allow_is_refused_with_the_reason() {
        let items = vec![
            status(1, "cancelled"),
            list_price(2, "wholesale", "A"),
            stock(3, "A", "main"),
        ];
        let calls = plan(&settings(), items);
        assert_eq!(shape(&calls), vec!["refuse:1", "refuse:2", "stock:3"]);
        let reasons: Vec<&str> = calls
            .iter()
            .filter_map(|call| match call {
                Call::Refuse(_, reason) => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            reasons[0].contains("\"cancelled\" is no longer mapped"),
            "{}",
            reasons[0]
        );
        assert!(
            reasons[1].contains("\"wholesale\" is no longer mapped"),
            "{}",
            reasons[1]
        );
    }

    #[test]
    fn the_shops_flow_decides_which_kinds_are_sent() {
        let mut combo = settings();
        combo.flow = crate::shop::Flow::Combo;
        let calls = plan(&combo, vec![product(1, "A"), stock(2, "A", "main")]);
        assert_eq!(shape(&calls), vec!["refuse:1", "stock:2"]);

        let mut ecom = settings();
        ecom.flow = crate::shop::Flow::Ecom;
        let calls = plan(&ecom, vec![status(1, "delivered"), price(2, "A")]);
        assert_eq!(shape(&calls), vec!["refuse:1", "refuse:2"]);
        assert!(
            matches!(&calls[0], Call::Refuse(_, reason) if reason.contains("no longer takes order_status changes"))
        );
    }

    #[test]
    fn one_articles_warehouses_go_in_separate_batches_and_batches_respect_the_limit() {
        let mut items = vec![stock(1, "A", "main"), stock(2, "A", "north")];
        items.extend((0..ShopClient::MAX_BATCH as i64).map(|i| price(10 + i, &format!("P-{i}"))));
        items.push(price(1000, "P-extra"));
        let calls = plan(&settings(), items);
        let sizes: Vec<(String, usize)> = calls
            .iter()
            .map(|call| match call {
                Call::Stock(rows) => ("stock".to_owned(), rows.len()),
                Call::Prices(rows) => ("prices".to_owned(), rows.len()),
                _ => ("other".to_owned(), 1),
            })
            .collect();
        assert_eq!(
            sizes,
            vec![
                ("stock".to_owned(), 1),
                ("stock".to_owned(), 1),
                ("prices".to_owned(), ShopClient::MAX_BATCH),
                ("prices".to_owned(), 1),
            ]
        );
    }
}
