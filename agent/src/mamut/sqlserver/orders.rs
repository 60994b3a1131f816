//! Writing one shop order into Mamut, in one transaction: the order is looked up by its shop
//! and shop order id first (a redelivery is answered with the existing number), then its
//! customer is found or created, the order gets its number, and its lines are written, every
//! value checked against the catalog first.

use rust_decimal::Decimal;
use shared::domain::{DocumentType, Order};
use shared::protocol::Deliver;
use tiberius::ToSql;

use super::catalog::{Catalog, Checker};
use super::errors::{At, classify, classify_at};
use super::{Conn, SqlServer, Tds, field, first_int, in_transaction, sql};
use crate::mamut::settings::UnknownArticle;
use crate::mamut::{Applied, ApplyError};

impl SqlServer {
    pub(super) async fn apply(
        &self,
        conn: &mut Tds<'_>,
        delivery: &Deliver,
    ) -> Result<Applied, ApplyError> {
        let catalog = self.catalog(conn).await;
        in_transaction(
            conn,
            async |conn| self.write_order(conn, delivery, catalog.as_deref()).await,
            classify,
        )
        .await
    }

    async fn write_order(
        &self,
        conn: &mut Conn,
        delivery: &Deliver,
        catalog: Option<&Catalog>,
    ) -> Result<Applied, ApplyError> {
        let m = &self.mapping;
        let (t, c) = (&m.tables, &m.columns.orders);
        let order = &delivery.order;
        let check = Checker {
            catalog,
            config: &self.config,
        };
        let existing = first_int(
            conn,
            &sql::find_order(m),
            &[&delivery.shop_id.as_str(), &order.id.as_str()],
            At::table(&t.orders),
        )
        .await?;
        if let Some(number) = existing {
            return Ok(Applied {
                mamut_ref: number.to_string(),
                already_applied: true,
            });
        }
        let (doc_type, status) = match delivery.document_type {
            DocumentType::Order => ("order", &self.mapping.statuses.unprocessed_order),
            DocumentType::Invoice => ("invoice", &self.mapping.statuses.invoice_not_delivered),
        };
        let text = |reference, column, label, value: Option<&str>| {
            check.text(
                field(reference, &t.orders, column, label),
                value.map(str::to_owned),
            )
        };
        let doc_type = text(
            "orders.doc_type",
            &c.doc_type,
            "document type",
            Some(doc_type),
        )?;
        let external = text(
            "orders.external_no",
            &c.external_no,
            "shop order number",
            Some(&order.id),
        )?;
        let shop = text(
            "orders.shop_id",
            &c.shop_id,
            "shop id",
            Some(delivery.shop_id.as_str()),
        )?;
        let status = text("orders.status", &c.status, "order status", Some(status))?;
        let currency = text(
            "orders.currency",
            &c.currency,
            "currency",
            Some(&order.currency),
        )?;
        let payment_method = text(
            "orders.payment_method",
            &c.payment_method,
            "payment method",
            order.payment.as_ref().map(|p| p.method.as_str()),
        )?;
        let payment_ref = text(
            "orders.payment_ref",
            &c.payment_ref,
            "payment reference",
            order.payment.as_ref().and_then(|p| p.reference.as_deref()),
        )?;
        let total = check.decimal(
            field("orders.total", &t.orders, &c.total, "order total"),
            Some(order.total),
        )?;
        let customer_no = self.customer(conn, &order.customer, &check).await?;
        let number = self
            .number(
                conn,
                &self.config.order_numbering,
                &t.orders,
                &c.order_no,
                self.config.order_number_start,
            )
            .await?;
        let date = order.created_at.naive_utc();
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(11);
        if let Some(n) = &number {
            params.push(n);
        }
        params.extend([
            &doc_type as &dyn ToSql,
            &customer_no,
            &external,
            &shop,
            &status,
            &date,
            &currency,
            &payment_method,
            &payment_ref,
            &total,
        ]);
        let own_keys = [self.racy_number(&self.config.order_numbering, number)];
        let at = At {
            table: Some(&t.orders),
            own_keys: &own_keys,
        };
        let insert = sql::insert(
            &t.orders,
            &sql::order_columns(m, number.is_some()),
            number.is_none(),
        );
        let order_no = match number {
            Some(n) => {
                conn.execute(insert, &params)
                    .await
                    .map_err(|e| classify_at(e, at))?;
                n
            }
            None => self.identity(conn, insert, &params, at).await?,
        };
        self.lines(conn, order_no, order, &check).await?;
        Ok(Applied {
            mamut_ref: order_no.to_string(),
            already_applied: false,
        })
    }

    async fn lines(
        &self,
        conn: &mut Conn,
        order_no: i32,
        order: &Order,
        check: &Checker<'_>,
    ) -> Result<(), ApplyError> {
        let m = &self.mapping;
        let (t, c) = (&m.tables, &m.columns.order_lines);
        let insert = sql::insert(&t.order_lines, &sql::line_columns(m), false);
        let exists = sql::article_exists(m);
        // A duplicate line key is never another writer's race: the order's number is this
        // transaction's, so it is refused (permanently) like any other data error.
        let at = At::table(&t.order_lines);
        let table = t.order_lines.as_str();
        let decimal = |reference, column, label, value: Decimal| {
            check.decimal(field(reference, table, column, label), Some(value))
        };
        let mut line_no = 0i32;
        let mut write = async |conn: &mut Conn,
                               article: Option<&str>,
                               description: String,
                               quantity: Decimal,
                               price: Decimal,
                               discount: Decimal,
                               vat: Decimal|
               -> Result<(), ApplyError> {
            line_no += 1;
            let article = check.text(
                field(
                    "order_lines.article_no",
                    table,
                    &c.article_no,
                    "article number",
                ),
                article.map(str::to_owned),
            )?;
            let description = check.text(
                field(
                    "order_lines.description",
                    table,
                    &c.description,
                    "line text",
                ),
                Some(description),
            )?;
            let quantity = decimal("order_lines.quantity", &c.quantity, "quantity", quantity)?;
            let price = decimal("order_lines.unit_price", &c.unit_price, "unit price", price)?;
            let discount = decimal("order_lines.discount", &c.discount, "discount", discount)?;
            let vat = decimal("order_lines.vat_rate", &c.vat_rate, "VAT rate", vat)?;
            conn.execute(
                insert.as_str(),
                &[
                    &order_no,
                    &line_no,
                    &article,
                    &description,
                    &quantity,
                    &price,
                    &discount,
                    &vat,
                ],
            )
            .await
            .map_err(|e| classify_at(e, at))?;
            Ok(())
        };
        for line in &order.lines {
            let known = first_int(
                conn,
                &exists,
                &[&line.article_number.as_str()],
                At::table(&t.products),
            )
            .await?
            .unwrap_or(0)
                > 0;
            let (article, description) = if known {
                (Some(line.article_number.as_str()), line.name.clone())
            } else if self.config.unknown_article == UnknownArticle::FreeText {
                (None, format!("{} {}", line.article_number, line.name))
            } else {
                return Err(ApplyError::Permanent(format!(
                    "unknown article number {} on order {} (not in Mamut's {})",
                    line.article_number, order.id, t.products
                )));
            };
            write(
                conn,
                article,
                description,
                Decimal::from(line.quantity),
                line.unit_price,
                line.discount,
                line.vat_rate,
            )
            .await?;
        }
        if let Some(shipping) = &order.shipping {
            write(
                conn,
                self.config.shipping_article.as_deref(),
                shipping.name.clone(),
                Decimal::ONE,
                shipping.price,
                Decimal::ZERO,
                shipping.vat_rate,
            )
            .await?;
        }
        Ok(())
    }
}
