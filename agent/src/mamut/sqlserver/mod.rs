//! Mamut over SQL Server with tiberius: each order is written in one transaction that first
//! looks for the shop's order id (Mamut's external number), so a redelivered order is answered
//! with its existing number and never written twice.
//!
//! The SQL keeps to the subset written down in `deploy/mamut/README.md`, which SQL Server and
//! the test stand-in both run.

use std::time::Duration;

use rust_decimal::Decimal;
use shared::domain::{Customer, CustomerType, DocumentType, Order, Product};
use shared::protocol::{Deliver, SyncOutcome};
use tiberius::error::Error as TdsError;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, ToSql};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::mapping::Mapping;
use super::{Applied, ApplyError, ApplyFuture, ChangesFuture, Mamut, SyncFuture};
use crate::config::{CustomerMatch, Encryption, SqlServerConfig, UnknownArticle};
use crate::watch::Cursors;

pub(crate) type Conn = Client<Compat<TcpStream>>;

mod changes;
mod products;

pub struct SqlServer {
    config: SqlServerConfig,
    mapping: Mapping,
    /// Currency of Mamut's base prices, for price pushes.
    price_currency: String,
    /// One connection, opened on first use and dropped after any error.
    conn: Mutex<Option<Conn>>,
}

/// SQL Server error numbers that mean the SQL itself is wrong for this database (a mapping
/// that names a missing table or column): retrying will not help.
const MAPPING_ERRORS: [u32; 5] = [102, 137, 207, 208, 245];

fn classify(e: TdsError) -> ApplyError {
    match &e {
        TdsError::Server(t) if MAPPING_ERRORS.contains(&t.code()) => {
            ApplyError::Permanent(format!(
                "Mamut rejected the SQL (check the mapping): {}",
                t.message()
            ))
        }
        _ => ApplyError::Retryable(format!("Mamut database: {e}")),
    }
}

impl SqlServer {
    pub fn new(config: SqlServerConfig, mapping: Mapping, price_currency: String) -> Self {
        Self {
            config,
            mapping,
            price_currency,
            conn: Mutex::new(None),
        }
    }

    /// Runs `f` on the connection, opening it first if needed, and dropping it after an error.
    async fn with_conn<T, E>(
        &self,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, E>,
        unreachable: impl FnOnce(String) -> E,
    ) -> Result<T, E> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            match Self::connect(&self.config).await {
                Ok(conn) => *guard = Some(conn),
                Err(e) => return Err(unreachable(format!("cannot reach Mamut: {e}"))),
            }
        }
        let Some(conn) = guard.as_mut() else {
            return Err(unreachable("no Mamut connection".into()));
        };
        let result = f(conn).await;
        if result.is_err() {
            // The connection's state is unknown after an error; start afresh next time.
            *guard = None;
        }
        result
    }

    pub async fn connect(config: &SqlServerConfig) -> Result<Conn, TdsError> {
        let mut tds = Config::new();
        tds.host(&config.host);
        tds.port(config.port);
        tds.database(&config.database);
        tds.application_name("mamut-agent");
        tds.authentication(AuthMethod::sql_server(
            &config.user,
            config.password.expose(),
        ));
        tds.encryption(match config.encryption {
            Encryption::Required => EncryptionLevel::Required,
            Encryption::Off => EncryptionLevel::Off,
            Encryption::NotSupported => EncryptionLevel::NotSupported,
        });
        if config.trust_server_certificate {
            tds.trust_cert();
        }
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        .map_err(|_| TdsError::Io {
            kind: std::io::ErrorKind::TimedOut,
            message: "connect timed out".into(),
        })??;
        tcp.set_nodelay(true)?;
        Client::connect(tds, tcp.compat_write()).await
    }

    /// Checks that every mapped table and column exists. `Err` when Mamut cannot be reached;
    /// otherwise the problems found (empty when the mapping fits).
    pub async fn check_mapping(&self) -> Result<Vec<String>, String> {
        let mut conn = Self::connect(&self.config)
            .await
            .map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        for (table, columns) in self.mapping.tables_and_columns() {
            let all = format!("SELECT TOP (0) {} FROM {table}", columns.join(", "));
            match probe(&mut conn, &all).await {
                Ok(()) => continue,
                Err(TdsError::Server(e)) if e.code() == 208 => {
                    problems.push(format!("table {table} does not exist"));
                    continue;
                }
                Err(_) => {}
            }
            for column in columns {
                if let Err(e) =
                    probe(&mut conn, &format!("SELECT TOP (0) {column} FROM {table}")).await
                {
                    let reason = match e {
                        TdsError::Server(e) if e.code() == 207 => "does not exist".to_owned(),
                        other => other.to_string(),
                    };
                    problems.push(format!("column {table}.{column} {reason}"));
                }
            }
        }
        Ok(problems)
    }

    async fn apply(&self, conn: &mut Conn, delivery: &Deliver) -> Result<Applied, ApplyError> {
        let applied = in_transaction(
            conn,
            async |conn| self.write_order(conn, delivery).await,
            classify,
        )
        .await?;
        if !applied.already_applied && self.config.after_commit_delay_ms > 0 {
            // Test hook: the order is committed, the ack not yet sent.
            tokio::time::sleep(Duration::from_millis(self.config.after_commit_delay_ms)).await;
        }
        Ok(applied)
    }

    async fn write_order(
        &self,
        conn: &mut Conn,
        delivery: &Deliver,
    ) -> Result<Applied, ApplyError> {
        let (t, c) = (&self.mapping.tables, &self.mapping.columns.orders);
        let order = &delivery.order;
        let existing = first_i64(
            conn,
            &format!(
                "SELECT CAST({no} AS BIGINT) FROM {orders} WITH (UPDLOCK, HOLDLOCK) WHERE {shop} = @P1 AND {ext} = @P2",
                no = c.order_no,
                orders = t.orders,
                shop = c.shop_id,
                ext = c.external_no
            ),
            &[&delivery.shop_id.as_str(), &order.id.as_str()],
        )
        .await?;
        if let Some(number) = existing {
            return Ok(Applied {
                mamut_ref: number.to_string(),
                already_applied: true,
            });
        }
        let customer_no = self.customer(conn, &order.customer).await?;
        let order_no = self
            .next_number(conn, &t.orders, &c.order_no, self.config.order_number_start)
            .await?;
        let (doc_type, status) = match delivery.document_type {
            DocumentType::Order => ("order", &self.mapping.statuses.unprocessed_order),
            DocumentType::Invoice => ("invoice", &self.mapping.statuses.invoice_not_delivered),
        };
        let sql = format!(
            "INSERT INTO {orders} ({no}, {doc}, {cust}, {ext}, {shop}, {status}, {date}, {currency}, {pm}, {pref}, {total}) \
             VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10, @P11)",
            orders = t.orders,
            no = c.order_no,
            doc = c.doc_type,
            cust = c.customer_no,
            ext = c.external_no,
            shop = c.shop_id,
            status = c.status,
            date = c.order_date,
            currency = c.currency,
            pm = c.payment_method,
            pref = c.payment_ref,
            total = c.total
        );
        let payment_method = order.payment.as_ref().map(|p| p.method.as_str());
        let payment_ref = order.payment.as_ref().and_then(|p| p.reference.as_deref());
        conn.execute(
            sql,
            &[
                &order_no,
                &doc_type,
                &customer_no,
                &order.id.as_str(),
                &delivery.shop_id.as_str(),
                &status.as_str(),
                &order.created_at.naive_utc(),
                &order.currency.as_str(),
                &payment_method,
                &payment_ref,
                &order.total,
            ],
        )
        .await
        .map_err(classify)?;
        self.lines(conn, order_no, order).await?;
        Ok(Applied {
            mamut_ref: order_no.to_string(),
            already_applied: false,
        })
    }

    /// Finds the customer by the configured keys, in order, or creates one.
    async fn customer(&self, conn: &mut Conn, customer: &Customer) -> Result<i32, ApplyError> {
        let (table, c) = (
            &self.mapping.tables.customers,
            &self.mapping.columns.customers,
        );
        for key in &self.config.customer_match {
            let (column, value) = match key {
                CustomerMatch::CustomerNo => match customer.id.as_deref().map(str::parse::<i32>) {
                    Some(Ok(number)) => (&c.customer_no, number.to_string()),
                    _ => continue,
                },
                CustomerMatch::Email => match &customer.email {
                    Some(email) if !email.is_empty() => (&c.email, email.clone()),
                    _ => continue,
                },
                CustomerMatch::OrgNo => match &customer.org_no {
                    Some(org_no) if !org_no.is_empty() => (&c.org_no, org_no.clone()),
                    _ => continue,
                },
            };
            let sql = format!(
                "SELECT TOP (1) CAST({no} AS BIGINT) FROM {table} WHERE CAST({column} AS NVARCHAR(200)) = @P1 ORDER BY {no}",
                no = c.customer_no
            );
            if let Some(found) = first_i64(conn, &sql, &[&value.as_str()]).await? {
                return to_i32(found);
            }
        }
        let number = self
            .next_number(
                conn,
                table,
                &c.customer_no,
                self.config.customer_number_start,
            )
            .await?;
        let name = match (customer.kind, &customer.company_name) {
            (CustomerType::Company, Some(company)) => company.clone(),
            _ => [
                customer.first_name.as_deref(),
                customer.last_name.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        };
        let billing = &customer.billing_address;
        let sql = format!(
            "INSERT INTO {table} ({no}, {name}, {email}, {org}, {phone}, {street}, {zip}, {city}, {country}) \
             VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9)",
            no = c.customer_no,
            name = c.name,
            email = c.email,
            org = c.org_no,
            phone = c.phone,
            street = c.street,
            zip = c.zip,
            city = c.city,
            country = c.country
        );
        conn.execute(
            sql,
            &[
                &number,
                &name.as_str(),
                &customer.email.as_deref(),
                &customer.org_no.as_deref(),
                &customer.phone.as_deref(),
                &billing.street.as_str(),
                &billing.zip.as_str(),
                &billing.city.as_str(),
                &billing.country.as_str(),
            ],
        )
        .await
        .map_err(classify)?;
        Ok(number)
    }

    async fn lines(&self, conn: &mut Conn, order_no: i32, order: &Order) -> Result<(), ApplyError> {
        let (t, c, p) = (
            &self.mapping.tables,
            &self.mapping.columns.order_lines,
            &self.mapping.columns.products,
        );
        let insert = format!(
            "INSERT INTO {lines} ({no}, {line}, {article}, {desc}, {qty}, {price}, {discount}, {vat}) \
             VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8)",
            lines = t.order_lines,
            no = c.order_no,
            line = c.line_no,
            article = c.article_no,
            desc = c.description,
            qty = c.quantity,
            price = c.unit_price,
            discount = c.discount,
            vat = c.vat_rate
        );
        let exists = format!(
            "SELECT COUNT(*) FROM {products} WHERE {article} = @P1",
            products = t.products,
            article = p.article_no
        );
        let mut line_no = 0i32;
        for line in &order.lines {
            line_no += 1;
            let known = first_i64(conn, &exists, &[&line.article_number.as_str()])
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
            let quantity = Decimal::from(line.quantity);
            conn.execute(
                insert.as_str(),
                &[
                    &order_no,
                    &line_no,
                    &article,
                    &description.as_str(),
                    &quantity,
                    &line.unit_price,
                    &line.discount,
                    &line.vat_rate,
                ],
            )
            .await
            .map_err(classify)?;
        }
        if let Some(shipping) = &order.shipping {
            line_no += 1;
            let article = self.config.shipping_article.as_deref();
            conn.execute(
                insert.as_str(),
                &[
                    &order_no,
                    &line_no,
                    &article,
                    &shipping.name.as_str(),
                    &Decimal::ONE,
                    &shipping.price,
                    &Decimal::ZERO,
                    &shipping.vat_rate,
                ],
            )
            .await
            .map_err(classify)?;
        }
        Ok(())
    }

    /// The next number of a series: one above the highest, or `start` for the first.
    async fn next_number(
        &self,
        conn: &mut Conn,
        table: &str,
        column: &str,
        start: i32,
    ) -> Result<i32, ApplyError> {
        let sql = format!(
            "SELECT CAST(ISNULL(MAX({column}), @P1 - 1) + 1 AS BIGINT) FROM {table} WITH (UPDLOCK, HOLDLOCK)"
        );
        let next = first_i64(conn, &sql, &[&start])
            .await?
            .unwrap_or(i64::from(start));
        to_i32(next)
    }
}

/// Runs `f` between `BEGIN TRAN` and `COMMIT`, or `ROLLBACK` when it fails.
pub(crate) async fn in_transaction<T, E>(
    conn: &mut Conn,
    f: impl AsyncFnOnce(&mut Conn) -> Result<T, E>,
    error: impl Fn(TdsError) -> E,
) -> Result<T, E> {
    batch(conn, "BEGIN TRAN").await.map_err(&error)?;
    match f(conn).await {
        Ok(value) => {
            batch(conn, "COMMIT").await.map_err(&error)?;
            Ok(value)
        }
        Err(e) => {
            // SQL Server may have rolled back already (a deadlock victim); the first error is
            // the one that explains what happened. The caller drops the connection anyway.
            if let Err(rollback) = batch(conn, "ROLLBACK").await {
                tracing::debug!(error = %rollback, "rollback after a failed transaction");
            }
            Err(e)
        }
    }
}

async fn batch(conn: &mut Conn, sql: &str) -> Result<(), TdsError> {
    conn.simple_query(sql).await?.into_results().await.map(drop)
}

async fn probe(conn: &mut Conn, sql: &str) -> Result<(), TdsError> {
    conn.simple_query(sql)
        .await?
        .into_results()
        .await
        .map(|_| ())
}

fn to_i32(value: i64) -> Result<i32, ApplyError> {
    i32::try_from(value).map_err(|_| {
        ApplyError::Permanent(format!("number {value} does not fit Mamut's int column"))
    })
}

async fn first_i64(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<Option<i64>, ApplyError> {
    let row = conn
        .query(sql, params)
        .await
        .map_err(classify)?
        .into_row()
        .await
        .map_err(classify)?;
    row.map(|r| r.try_get::<i64, _>(0).map_err(classify))
        .transpose()
        .map(Option::flatten)
}

impl Mamut for SqlServer {
    fn apply_order<'a>(&'a self, delivery: &'a Deliver) -> ApplyFuture<'a> {
        Box::pin(self.with_conn(
            async |conn| self.apply(conn, delivery).await,
            ApplyError::Retryable,
        ))
    }

    fn poll_changes<'a>(&'a self, cursors: &'a Cursors, batch: u32) -> ChangesFuture<'a> {
        Box::pin(self.with_conn(
            async move |conn| self.changes(conn, cursors, batch).await,
            |e| e,
        ))
    }

    fn list_products<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> SyncFuture<'a, (Vec<Product>, Option<String>)> {
        Box::pin(self.with_conn(
            async move |conn| self.product_page(conn, after, limit).await,
            |e| e,
        ))
    }

    fn count_products(&self) -> SyncFuture<'_, u64> {
        Box::pin(self.with_conn(async |conn| self.product_count(conn).await, |e| e))
    }

    fn upsert_product<'a>(&'a self, product: &'a Product) -> SyncFuture<'a, SyncOutcome> {
        Box::pin(self.with_conn(
            async move |conn| self.write_product(conn, product).await,
            |e| e,
        ))
    }
}
