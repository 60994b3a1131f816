//! Products with their variants, read and written whole: for the watcher's product pushes and
//! for the initial product sync in both directions.

use rust_decimal::Decimal;
use shared::domain::{Product, Variant};
use shared::protocol::SyncOutcome;

use super::changes::{article, decimal, text};
use super::{Conn, SqlServer, classify, in_transaction};

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
        let (t, c) = (
            &self.mapping.tables.products,
            &self.mapping.columns.products,
        );
        let Some(article_number) = article(Some(main.to_owned())) else {
            return Ok(None);
        };
        let main_sql = format!(
            "SELECT {name}, {desc}, {vat}, {active} FROM {t} WHERE {a} = @P1",
            name = c.name,
            desc = c.description,
            vat = c.vat_rate,
            active = c.active,
            a = c.article_no
        );
        let variants_sql = format!(
            "SELECT {a}, {d1}, {d2} FROM {t} WHERE {parent} = @P1 ORDER BY {a}",
            a = c.article_no,
            d1 = c.dimension1,
            d2 = c.dimension2,
            parent = c.parent_article_no
        );
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
        let (t, c) = (
            &self.mapping.tables.products,
            &self.mapping.columns.products,
        );
        let sql = format!(
            "SELECT TOP (@P2) {a} FROM {t} WHERE {parent} IS NULL AND {a} > @P1 ORDER BY {a}",
            a = c.article_no,
            parent = c.parent_article_no
        );
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
        let (t, c) = (
            &self.mapping.tables.products,
            &self.mapping.columns.products,
        );
        let sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {t} WHERE {parent} IS NULL",
            parent = c.parent_article_no
        );
        let row = conn
            .simple_query(sql)
            .await
            .map_err(err)?
            .into_row()
            .await
            .map_err(err)?;
        let count = row
            .and_then(|r| r.try_get::<i64, _>(0).ok().flatten())
            .unwrap_or_default();
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Writes a shop product and its variants in one transaction: missing rows are created
    /// (base price 0: prices are Mamut's), differing rows updated, equal rows left alone.
    pub(super) async fn write_product(
        &self,
        conn: &mut Conn,
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
        let (t, c) = (
            &self.mapping.tables.products,
            &self.mapping.columns.products,
        );
        let read = format!(
            "SELECT {name}, {desc}, {vat}, {active}, {parent}, {d1}, {d2} FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE {a} = @P1",
            name = c.name,
            desc = c.description,
            vat = c.vat_rate,
            active = c.active,
            parent = c.parent_article_no,
            d1 = c.dimension1,
            d2 = c.dimension2,
            a = c.article_no
        );
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
                let insert = format!(
                    "INSERT INTO {t} ({a}, {name}, {desc}, {vat}, {active}, {parent}, {d1}, {d2}, {price}) \
                     VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, 0)",
                    a = c.article_no,
                    name = c.name,
                    desc = c.description,
                    vat = c.vat_rate,
                    active = c.active,
                    parent = c.parent_article_no,
                    d1 = c.dimension1,
                    d2 = c.dimension2,
                    price = c.price
                );
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
                let update = format!(
                    "UPDATE {t} SET {name} = @P2, {desc} = @P3, {vat} = @P4, {active} = @P5, \
                     {parent} = @P6, {d1} = @P7, {d2} = @P8 WHERE {a} = @P1",
                    a = c.article_no,
                    name = c.name,
                    desc = c.description,
                    vat = c.vat_rate,
                    active = c.active,
                    parent = c.parent_article_no,
                    d1 = c.dimension1,
                    d2 = c.dimension2
                );
                conn.execute(update, &params).await.map_err(err)?;
                Ok(Some(false))
            }
        }
    }
}
