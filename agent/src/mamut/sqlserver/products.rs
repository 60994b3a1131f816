//! Products with their variants, read and written whole: for the watcher's product pushes and
//! for the initial product sync in both directions.

use rust_decimal::Decimal;
use shared::domain::{Product, Variant};
use shared::protocol::SyncOutcome;

use super::changes::{article, decimal, text};
use super::{Conn, SqlServer, Tds, classify, in_transaction, sql, value};

/// One product row as Mamut keeps it (a main product or a variant).
#[derive(Debug, Clone, PartialEq)]
struct ProductRow {
    name: String,
    description: Option<String>,
    vat_rate: Decimal,
    active: bool,
    parent: Option<String>,
    dimension1: Option<String>,
    dimension2: Option<String>,
}

fn err(e: tiberius::error::Error) -> String {
    classify(e).to_string()
}

/// The first row of a query, if any.
async fn query_row(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
) -> Result<Option<tiberius::Row>, String> {
    conn.query(sql, params)
        .await
        .map_err(err)?
        .into_row()
        .await
        .map_err(err)
}

/// Every row of a query's first result.
async fn query_rows(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
) -> Result<Vec<tiberius::Row>, String> {
    conn.query(sql, params)
        .await
        .map_err(err)?
        .into_first_result()
        .await
        .map_err(err)
}

impl SqlServer {
    /// A main product with its variants; `None` when there is no such article (or its number
    /// cannot travel in the protocol).
    pub(super) async fn read_product(
        &self,
        conn: &mut Conn,
        main: &str,
    ) -> Result<Option<Product>, String> {
        let Some(article_number) = article(Some(main.to_owned())) else {
            return Ok(None);
        };
        let main_sql = sql::product_main(&self.mapping);
        let variants_sql = sql::product_variants(&self.mapping);
        let row = query_row(conn, &main_sql, &[&main]).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let variants = query_rows(conn, &variants_sql, &[&main])
            .await?
            .iter()
            .filter_map(|v| {
                let article_number = article(text(v, 0).ok()?)?;
                Some(Variant {
                    article_number,
                    dimension1: text(v, 1).ok()?,
                    dimension2: text(v, 2).ok()?,
                })
            })
            .collect();
        Ok(Some(Product {
            article_number,
            name: text(&row, 0)?.unwrap_or_default(),
            description: text(&row, 1)?,
            vat_rate: decimal(&row, 2)?,
            active: row
                .try_get::<bool, _>(3)
                .map_err(|e| e.to_string())?
                .unwrap_or(true),
            variants,
        }))
    }

    /// Main products (not variants) in article-number order after `after`, and the last
    /// article number read.
    pub(super) async fn product_page(
        &self,
        conn: &mut Conn,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Product>, Option<String>), String> {
        let sql = sql::product_page(&self.mapping);
        let limit = i64::from(limit);
        let after = after.unwrap_or("");
        let rows = query_rows(conn, &sql, &[&after, &limit]).await?;
        let mut products = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in rows {
            let Some(main) = text(&row, 0)? else {
                continue;
            };
            if let Some(product) = self.read_product(conn, &main).await? {
                products.push(product);
            }
            last = Some(main);
        }
        Ok((products, last))
    }

    /// How many main products there are.
    pub(super) async fn product_count(&self, conn: &mut Conn) -> Result<u64, String> {
        let row = conn
            .simple_query(sql::product_count(&self.mapping))
            .await
            .map_err(err)?
            .into_row()
            .await
            .map_err(err)?;
        let count = match row {
            Some(row) => value::int(&row, 0)?.unwrap_or_default(),
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Writes a shop product and its variants in one transaction: missing rows are created
    /// (base price 0: prices are Mamut's), differing rows updated, equal rows left alone.
    pub(super) async fn write_product(
        &self,
        conn: &mut Tds<'_>,
        product: &Product,
    ) -> Result<SyncOutcome, String> {
        in_transaction(
            conn,
            async |conn| self.write_product_rows(conn, product).await,
            err,
        )
        .await
    }

    async fn write_product_rows(
        &self,
        conn: &mut Conn,
        product: &Product,
    ) -> Result<SyncOutcome, String> {
        let main = ProductRow {
            name: product.name.clone(),
            description: product.description.clone(),
            vat_rate: product.vat_rate,
            active: product.active,
            parent: None,
            dimension1: None,
            dimension2: None,
        };
        let mut seen = std::collections::HashSet::from([product.article_number.as_str()]);
        if let Some(v) = product
            .variants
            .iter()
            .find(|v| !seen.insert(v.article_number.as_str()))
        {
            return Err(format!(
                "variant {} repeats an article number of the product",
                v.article_number
            ));
        }
        let created = self
            .write_row(conn, product.article_number.as_str(), &main)
            .await?;
        let mut changed = created.is_some();
        for variant in &product.variants {
            let dimensions: Vec<&str> = [&variant.dimension1, &variant.dimension2]
                .into_iter()
                .filter_map(|d| d.as_deref())
                .collect();
            let name = if dimensions.is_empty() {
                product.name.clone()
            } else {
                format!("{}, {}", product.name, dimensions.join(" "))
            };
            let row = ProductRow {
                name,
                description: None,
                vat_rate: product.vat_rate,
                active: product.active,
                parent: Some(product.article_number.as_str().to_owned()),
                dimension1: variant.dimension1.clone(),
                dimension2: variant.dimension2.clone(),
            };
            changed |= self
                .write_row(conn, variant.article_number.as_str(), &row)
                .await?
                .is_some();
        }
        Ok(match (created, changed) {
            (Some(true), _) => SyncOutcome::Created,
            (_, true) => SyncOutcome::Updated,
            _ => SyncOutcome::Unchanged,
        })
    }

    /// `None` when the row was already as wanted, `Some(true)` when inserted, `Some(false)`
    /// when updated.
    async fn write_row(
        &self,
        conn: &mut Conn,
        article_no: &str,
        want: &ProductRow,
    ) -> Result<Option<bool>, String> {
        let read = sql::product_for_write(&self.mapping);
        let row = query_row(conn, &read, &[&article_no]).await?;
        let params: [&dyn tiberius::ToSql; 8] = [
            &article_no,
            &want.name.as_str(),
            &want.description.as_deref(),
            &want.vat_rate,
            &want.active,
            &want.parent.as_deref(),
            &want.dimension1.as_deref(),
            &want.dimension2.as_deref(),
        ];
        match row {
            None => {
                let insert = sql::product_insert(&self.mapping);
                conn.execute(insert, &params).await.map_err(err)?;
                Ok(Some(true))
            }
            Some(row) => {
                let have = ProductRow {
                    name: text(&row, 0)?.unwrap_or_default(),
                    description: text(&row, 1)?,
                    vat_rate: decimal(&row, 2)?,
                    active: row
                        .try_get::<bool, _>(3)
                        .map_err(|e| e.to_string())?
                        .unwrap_or(true),
                    parent: text(&row, 4)?,
                    dimension1: text(&row, 5)?,
                    dimension2: text(&row, 6)?,
                };
                if have == *want {
                    return Ok(None);
                }
                let update = sql::product_update(&self.mapping);
                conn.execute(update, &params).await.map_err(err)?;
                Ok(Some(false))
            }
        }
    }
}
