//! Reading changes from Mamut past rowversion cursors, for the watcher: per kind, the safe
//! mark (`MIN_ACTIVE_ROWVERSION()`) first, then every visible row past the kind's position.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use shared::domain::{Change, ChangeKind, OrderStatusChange, Price, PriceListPrice, StockLevel};
use shared::{ArticleNumber, ShopId};
use tiberius::Row;

use super::{Conn, SqlServer, classify, errors, sql, value};
use crate::mamut::changes::{ChangeRow, Cursors, KindPoll};

/// The kinds of change the watcher reads, each on its own connection so a lock on one table
/// (a Mamut user editing an order) does not hold back the others (stock).
pub(super) const KINDS: [ChangeKind; 5] = ChangeKind::ALL;

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

/// The changes of `rows`, oldest first. A row that cannot be read (a NULL where a value must
/// be, a value of another type) is skipped with a warning naming its kind and position; its
/// rowversion still moves the cursor, so one bad row never stops a kind.
fn each(
    kind: ChangeKind,
    rows: &[Row],
    change: impl Fn(&Row) -> Result<Option<ChangeRow>, String>,
) -> Vec<ChangeRow> {
    rows.iter()
        .enumerate()
        .filter_map(|(index, row)| match change(row) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), row = index, error = %e, "a changed Mamut row cannot be read; skipped");
                None
            }
        })
        .collect()
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
        from: i64,
        batch: u32,
    ) -> Result<Vec<Row>, String> {
        let batch = i64::from(batch);
        let from = value::rowversion_param(from);
        conn.query(sql, &[&from.as_slice(), &batch])
            .await
            .map_err(|e| classify(e).to_string())?
            .into_first_result()
            .await
            .map_err(|e| classify(e).to_string())
    }

    /// `MIN_ACTIVE_ROWVERSION()`: every rowversion below it belongs to a transaction that has
    /// ended. Read in a statement of its own before the rows, so the row query sees all of them.
    async fn safe_mark(&self, conn: &mut Conn) -> Result<i64, String> {
        let row = conn
            .query(sql::min_active_rowversion(), &[])
            .await
            .map_err(|e| classify(e).to_string())?
            .into_row()
            .await
            .map_err(|e| classify(e).to_string())?
            .ok_or("MIN_ACTIVE_ROWVERSION() returned no row")?;
        value::rowversion(&row, 0).map_err(|e| format!("MIN_ACTIVE_ROWVERSION(): {e}"))
    }

    /// Changes of every kind past its position in `from`. A kind that cannot be read (a lock
    /// timeout, a statement timeout) is skipped with a warning and read again next poll; the
    /// others are returned. `Err` only when no kind could be read.
    pub(super) async fn changes(
        &self,
        from: &Cursors,
        batch: u32,
    ) -> Result<Vec<KindPoll>, String> {
        let results = futures_util::future::join_all(
            KINDS.map(|kind| self.changes_of(kind, from.get(kind), batch)),
        )
        .await;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for (kind, result) in KINDS.iter().zip(results) {
            match result {
                Ok(poll) => out.push(poll),
                Err(e) if e.contains(errors::LOCK_WAIT) => {
                    // A row locked by an open Mamut transaction (a database without
                    // READ_COMMITTED_SNAPSHOT): it is read once that transaction ends.
                    tracing::debug!(kind = kind.as_str(), error = %e, "a changed row is locked; read again next poll");
                    failures.push(format!("{kind}: {e}"));
                }
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %e, "cannot read changes of this kind from Mamut; read again next poll");
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
        kind: ChangeKind,
        from: i64,
        batch: u32,
    ) -> Result<KindPoll, String> {
        let m = &self.mapping;
        let (table, sql) = match kind {
            ChangeKind::Stock => (&m.tables.stock, sql::changed_stock(m)),
            ChangeKind::Price => (&m.tables.products, sql::changed_prices(m)),
            ChangeKind::PriceList => (&m.tables.price_list_prices, sql::changed_price_lists(m)),
            ChangeKind::Product => (&m.tables.products, sql::changed_products(m)),
            ChangeKind::OrderStatus => (&m.tables.orders, sql::changed_orders(m)),
        };
        self.with_watch_conn(table, async move |conn| {
            let safe = self.safe_mark(conn).await?;
            let rows = self.rows(conn, &sql, from, batch).await?;
            let mut last_read = None;
            for row in &rows {
                // The rowversion is the last column of every watcher statement.
                let rv = value::rowversion(row, row.len().saturating_sub(1))?;
                last_read = last_read.max(Some(rv));
            }
            let full = batch > 0 && rows.len() >= batch as usize;
            let rows = match kind {
                ChangeKind::Stock => self.stock(&rows),
                ChangeKind::Price => self.prices(&rows),
                ChangeKind::PriceList => self.price_lists(&rows),
                ChangeKind::Product => self.products(conn, &rows, safe).await?,
                ChangeKind::OrderStatus => self.order_statuses(&rows),
            };
            Ok(KindPoll {
                kind,
                from,
                safe,
                last_read,
                full,
                rows,
            })
        })
        .await
    }

    fn stock(&self, rows: &[Row]) -> Vec<ChangeRow> {
        each(ChangeKind::Stock, rows, |row| {
            let rv = value::rowversion(row, 3)?;
            let Some(article_number) = article(text(row, 0)?) else {
                return Ok(None);
            };
            let warehouse = text(row, 1)?;
            let key = format!(
                "{article_number}@{}",
                warehouse.as_deref().unwrap_or_default()
            );
            let change = Change::Stock(StockLevel {
                article_number,
                warehouse,
                quantity: decimal(row, 2)?,
            });
            Ok(Some(ChangeRow {
                kind: ChangeKind::Stock,
                rv,
                key,
                change,
            }))
        })
    }

    fn prices(&self, rows: &[Row]) -> Vec<ChangeRow> {
        each(ChangeKind::Price, rows, |row| {
            let rv = value::rowversion(row, 2)?;
            let Some(article_number) = article(text(row, 0)?) else {
                return Ok(None);
            };
            let key = article_number.to_string();
            let change = Change::Price(Price {
                article_number,
                currency: self.price_currency.clone(),
                price: decimal(row, 1)?,
                includes_vat: false,
            });
            Ok(Some(ChangeRow {
                kind: ChangeKind::Price,
                rv,
                key,
                change,
            }))
        })
    }

    fn price_lists(&self, rows: &[Row]) -> Vec<ChangeRow> {
        each(ChangeKind::PriceList, rows, |row| {
            let rv = value::rowversion(row, 4)?;
            let Some(article_number) = article(text(row, 1)?) else {
                return Ok(None);
            };
            let price_list = text(row, 0)?.unwrap_or_default();
            let key = format!("{price_list}@{article_number}");
            let change = Change::PriceList(PriceListPrice {
                price_list,
                article_number,
                currency: text(row, 2)?.unwrap_or_else(|| self.price_currency.clone()),
                price: decimal(row, 3)?,
            });
            Ok(Some(ChangeRow {
                kind: ChangeKind::PriceList,
                rv,
                key,
                change,
            }))
        })
    }

    /// A changed product or variant pushes its main product with all its variants, as it is
    /// now, under the largest rowversion read for it.
    ///
    /// Only rows below the safe mark count. The push stands for several rows, so one above the
    /// mark could share its id with the push that a variant committed later, with a lower
    /// rowversion, would need: that change would be dropped as a repeat. Below the mark no row
    /// can appear under one already read, so each push's rowversion is new.
    async fn products(
        &self,
        conn: &mut Conn,
        rows: &[Row],
        safe: i64,
    ) -> Result<Vec<ChangeRow>, String> {
        let mut touched: BTreeMap<String, i64> = BTreeMap::new();
        for row in rows {
            let rv = value::rowversion(row, 2)?;
            if rv >= safe {
                continue;
            }
            let Some(main) = text(row, 1)?.or(text(row, 0)?) else {
                continue;
            };
            let entry = touched.entry(main).or_insert(rv);
            *entry = (*entry).max(rv);
        }
        let mut out = Vec::new();
        for (main, rv) in touched {
            let Some(product) = self.read_product(conn, &main).await? else {
                continue;
            };
            out.push(ChangeRow {
                kind: ChangeKind::Product,
                rv,
                key: main,
                change: Change::Product(product),
            });
        }
        // Oldest first, as every kind's rows.
        out.sort_by_key(|row| row.rv);
        Ok(out)
    }

    fn order_statuses(&self, rows: &[Row]) -> Vec<ChangeRow> {
        each(ChangeKind::OrderStatus, rows, |row| {
            let rv = value::rowversion(row, 5)?;
            let order_no = value::required_int(row, 0)?;
            let Some(external) = text(row, 2)? else {
                return Ok(None);
            };
            let (shop_id, shop_order_id) = match (text(row, 1)?, &self.imported) {
                (Some(shop), _) => match ShopId::new(shop) {
                    Ok(shop) => (shop, external),
                    Err(_) => return Ok(None),
                },
                // Written by Mamut's import: the shop is in the external order number.
                (None, Some(template)) => match template.shop_order(&external) {
                    Some(pair) => pair,
                    None => return Ok(None),
                },
                (None, None) => return Ok(None),
            };
            let change = Change::OrderStatus(OrderStatusChange {
                shop_id,
                shop_order_id,
                mamut_ref: order_no.to_string(),
                mamut_status: text(row, 3)?.unwrap_or_default(),
                tracking_number: text(row, 4)?,
            });
            Ok(Some(ChangeRow {
                kind: ChangeKind::OrderStatus,
                rv,
                key: order_no.to_string(),
                change,
            }))
        })
    }
}
