//! Reading changes from Mamut past rowversion cursors, for the watcher.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use shared::domain::{Change, OrderStatusChange, Price, PriceListPrice, StockLevel};
use shared::{ArticleNumber, ShopId};
use tiberius::Row;

use super::{Conn, SqlServer, classify, sql, value};
use crate::watch::{ChangeRow, Cursors};

/// The kinds of change the watcher reads, each on its own connection so a lock on one table
/// (a Mamut user editing an order) does not hold back the others (stock).
const KINDS: [&str; 5] = ["stock", "price", "price_list", "product", "order_status"];

pub(super) fn text(row: &Row, index: usize) -> Result<Option<String>, String> {
    row.try_get::<&str, _>(index)
        .map(|v| v.map(str::to_owned))
        .map_err(|e| e.to_string())
}

pub(super) fn decimal(row: &Row, index: usize) -> Result<Decimal, String> {
    let data = row
        .get_column_data(index)
        .map_err(|e| format!("column {index}: {e}"))?;
    value::decimal_of(data)
        .map_err(|e| format!("column {index}: {e}"))?
        .ok_or_else(|| format!("column {index} is NULL"))
}

/// An article number from Mamut; one the protocol cannot carry is skipped with a warning.
pub(super) fn article(value: Option<String>) -> Option<ArticleNumber> {
    let value = value?;
    match ArticleNumber::new(value.clone()) {
        Ok(article) => Some(article),
        Err(e) => {
            tracing::warn!(article = %value, error = %e, "Mamut article number skipped");
            None
        }
    }
}

impl SqlServer {
    async fn rows(
        &self,
        conn: &mut Conn,
        sql: &str,
        cursor: i64,
        batch: u32,
    ) -> Result<Vec<Row>, String> {
        let batch = i64::from(batch);
        let cursor = value::rowversion_param(cursor);
        conn.query(sql, &[&cursor.as_slice(), &batch])
            .await
            .map_err(|e| classify(e).to_string())?
            .into_first_result()
            .await
            .map_err(|e| classify(e).to_string())
    }

    /// Changes of every kind past its cursor. A kind that cannot be read (a lock timeout, a
    /// statement timeout) is skipped with a warning and read again next poll; the others are
    /// returned. `Err` only when no kind could be read.
    pub(super) async fn changes(
        &self,
        cursors: &Cursors,
        batch: u32,
    ) -> Result<Vec<ChangeRow>, String> {
        let results = futures_util::future::join_all(
            KINDS.map(|kind| self.changes_of(kind, cursors.get(kind), batch)),
        )
        .await;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for (kind, result) in KINDS.iter().zip(results) {
            match result {
                Ok(rows) => out.extend(rows),
                Err(e) => {
                    tracing::warn!(kind, error = %e, "cannot read changes of this kind from Mamut; read again next poll");
                    failures.push(format!("{kind}: {e}"));
                }
            }
        }
        if failures.len() == KINDS.len() {
            return Err(failures.join("; "));
        }
        Ok(out)
    }

    async fn changes_of(
        &self,
        kind: &'static str,
        cursor: i64,
        batch: u32,
    ) -> Result<Vec<ChangeRow>, String> {
        let t = &self.mapping.tables;
        let table = match kind {
            "stock" => &t.stock,
            "price_list" => &t.price_list_prices,
            "order_status" => &t.orders,
            _ => &t.products,
        };
        self.with_conn(table, async move |conn| {
            let mut out = Vec::new();
            match kind {
                "stock" => self.stock(conn, cursor, batch, &mut out).await?,
                "price" => self.prices(conn, cursor, batch, &mut out).await?,
                "price_list" => self.price_lists(conn, cursor, batch, &mut out).await?,
                "product" => self.products(conn, cursor, batch, &mut out).await?,
                _ => self.order_statuses(conn, cursor, batch, &mut out).await?,
            }
            Ok(out)
        })
        .await
    }

    async fn stock(
        &self,
        conn: &mut Conn,
        cursor: i64,
        batch: u32,
        out: &mut Vec<ChangeRow>,
    ) -> Result<(), String> {
        let sql = sql::changed_stock(&self.mapping);
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = value::rowversion(&row, 3)?;
            let Some(article_number) = article(text(&row, 0)?) else {
                continue;
            };
            let warehouse = text(&row, 1)?;
            let key = format!(
                "{article_number}@{}",
                warehouse.as_deref().unwrap_or_default()
            );
            let change = Change::Stock(StockLevel {
                article_number,
                warehouse,
                quantity: decimal(&row, 2)?,
            });
            out.push(ChangeRow {
                kind: "stock",
                rv,
                key,
                change,
            });
        }
        Ok(())
    }

    async fn prices(
        &self,
        conn: &mut Conn,
        cursor: i64,
        batch: u32,
        out: &mut Vec<ChangeRow>,
    ) -> Result<(), String> {
        let sql = sql::changed_prices(&self.mapping);
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = value::rowversion(&row, 2)?;
            let Some(article_number) = article(text(&row, 0)?) else {
                continue;
            };
            let key = article_number.to_string();
            let change = Change::Price(Price {
                article_number,
                currency: self.price_currency.clone(),
                price: decimal(&row, 1)?,
                includes_vat: false,
            });
            out.push(ChangeRow {
                kind: "price",
                rv,
                key,
                change,
            });
        }
        Ok(())
    }

    async fn price_lists(
        &self,
        conn: &mut Conn,
        cursor: i64,
        batch: u32,
        out: &mut Vec<ChangeRow>,
    ) -> Result<(), String> {
        let sql = sql::changed_price_lists(&self.mapping);
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = value::rowversion(&row, 4)?;
            let Some(article_number) = article(text(&row, 1)?) else {
                continue;
            };
            let price_list = text(&row, 0)?.unwrap_or_default();
            let key = format!("{price_list}@{article_number}");
            let change = Change::PriceList(PriceListPrice {
                price_list,
                article_number,
                currency: text(&row, 2)?.unwrap_or_else(|| self.price_currency.clone()),
                price: decimal(&row, 3)?,
            });
            out.push(ChangeRow {
                kind: "price_list",
                rv,
                key,
                change,
            });
        }
        Ok(())
    }

    /// A changed product or variant pushes its main product with all its variants.
    async fn products(
        &self,
        conn: &mut Conn,
        cursor: i64,
        batch: u32,
        out: &mut Vec<ChangeRow>,
    ) -> Result<(), String> {
        let sql = sql::changed_products(&self.mapping);
        let mut touched: BTreeMap<String, i64> = BTreeMap::new();
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = value::rowversion(&row, 2)?;
            let Some(main) = text(&row, 1)?.or(text(&row, 0)?) else {
                continue;
            };
            let entry = touched.entry(main).or_insert(rv);
            *entry = (*entry).max(rv);
        }
        for (main, rv) in touched {
            let Some(product) = self.read_product(conn, &main).await? else {
                continue;
            };
            let change = Change::Product(product);
            out.push(ChangeRow {
                kind: "product",
                rv,
                key: main,
                change,
            });
        }
        Ok(())
    }

    async fn order_statuses(
        &self,
        conn: &mut Conn,
        cursor: i64,
        batch: u32,
        out: &mut Vec<ChangeRow>,
    ) -> Result<(), String> {
        let sql = sql::changed_orders(&self.mapping);
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = value::rowversion(&row, 5)?;
            let order_no = value::required_int(&row, 0)?;
            let Some(Ok(shop_id)) = text(&row, 1)?.map(ShopId::new) else {
                continue;
            };
            let Some(shop_order_id) = text(&row, 2)? else {
                continue;
            };
            let change = Change::OrderStatus(OrderStatusChange {
                shop_id,
                shop_order_id,
                mamut_ref: order_no.to_string(),
                mamut_status: text(&row, 3)?.unwrap_or_default(),
                tracking_number: text(&row, 4)?,
            });
            out.push(ChangeRow {
                kind: "order_status",
                rv,
                key: order_no.to_string(),
                change,
            });
        }
        Ok(())
    }
}
