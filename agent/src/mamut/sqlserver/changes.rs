//! Reading changes from Mamut past rowversion cursors, for the watcher.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use shared::domain::{Change, OrderStatusChange, Price, PriceListPrice, StockLevel};
use shared::{ArticleNumber, ShopId};
use tiberius::Row;

use super::{Conn, SqlServer, classify};
use crate::watch::{ChangeRow, Cursors};

pub(super) fn text(row: &Row, index: usize) -> Result<Option<String>, String> {
    row.try_get::<&str, _>(index)
        .map(|v| v.map(str::to_owned))
        .map_err(|e| e.to_string())
}

pub(super) fn decimal(row: &Row, index: usize) -> Result<Decimal, String> {
    row.try_get::<Decimal, _>(index)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("column {index} is NULL"))
}

fn bigint(row: &Row, index: usize) -> Result<i64, String> {
    row.try_get::<i64, _>(index)
        .map_err(|e| e.to_string())?
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
        conn.query(sql, &[&cursor, &batch])
            .await
            .map_err(|e| classify(e).to_string())?
            .into_first_result()
            .await
            .map_err(|e| classify(e).to_string())
    }

    pub(super) async fn changes(
        &self,
        conn: &mut Conn,
        cursors: &Cursors,
        batch: u32,
    ) -> Result<Vec<ChangeRow>, String> {
        let mut out = Vec::new();
        self.stock(conn, cursors.get("stock"), batch, &mut out)
            .await?;
        self.prices(conn, cursors.get("price"), batch, &mut out)
            .await?;
        self.price_lists(conn, cursors.get("price_list"), batch, &mut out)
            .await?;
        self.products(conn, cursors.get("product"), batch, &mut out)
            .await?;
        self.order_statuses(conn, cursors.get("order_status"), batch, &mut out)
            .await?;
        Ok(out)
    }

    async fn stock(
        &self,
        conn: &mut Conn,
        cursor: i64,
        batch: u32,
        out: &mut Vec<ChangeRow>,
    ) -> Result<(), String> {
        let c = &self.mapping.columns.stock;
        let sql = format!(
            "SELECT TOP (@P2) {a}, {w}, {q}, CAST({rv} AS BIGINT) FROM {t} WHERE CAST({rv} AS BIGINT) > @P1 ORDER BY {rv}",
            a = c.article_no,
            w = c.warehouse,
            q = c.quantity,
            rv = c.rv,
            t = self.mapping.tables.stock
        );
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = bigint(&row, 3)?;
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
        let c = &self.mapping.columns.products;
        let sql = format!(
            "SELECT TOP (@P2) {a}, {p}, CAST({rv} AS BIGINT) FROM {t} WHERE CAST({rv} AS BIGINT) > @P1 ORDER BY {rv}",
            a = c.article_no,
            p = c.price,
            rv = c.rv,
            t = self.mapping.tables.products
        );
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = bigint(&row, 2)?;
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
        let c = &self.mapping.columns.price_list_prices;
        let sql = format!(
            "SELECT TOP (@P2) {l}, {a}, {cur}, {p}, CAST({rv} AS BIGINT) FROM {t} WHERE CAST({rv} AS BIGINT) > @P1 ORDER BY {rv}",
            l = c.price_list,
            a = c.article_no,
            cur = c.currency,
            p = c.price,
            rv = c.rv,
            t = self.mapping.tables.price_list_prices
        );
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = bigint(&row, 4)?;
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
        let (t, c) = (
            &self.mapping.tables.products,
            &self.mapping.columns.products,
        );
        let sql = format!(
            "SELECT TOP (@P2) {a}, {parent}, CAST({rv} AS BIGINT) FROM {t} WHERE CAST({rv} AS BIGINT) > @P1 ORDER BY {rv}",
            a = c.article_no,
            parent = c.parent_article_no,
            rv = c.rv
        );
        let mut touched: BTreeMap<String, i64> = BTreeMap::new();
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = bigint(&row, 2)?;
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
        let c = &self.mapping.columns.orders;
        let sql = format!(
            "SELECT TOP (@P2) CAST({no} AS BIGINT), {shop}, {ext}, {status}, {tracking}, CAST({rv} AS BIGINT) FROM {t} \
             WHERE CAST({rv} AS BIGINT) > @P1 ORDER BY {rv}",
            no = c.order_no,
            shop = c.shop_id,
            ext = c.external_no,
            status = c.status,
            tracking = c.tracking_no,
            rv = c.rv,
            t = self.mapping.tables.orders
        );
        for row in self.rows(conn, &sql, cursor, batch).await? {
            let rv = bigint(&row, 5)?;
            let order_no = bigint(&row, 0)?;
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
