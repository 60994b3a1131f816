//! Mamut over SQL Server with tiberius: each order is written in one transaction that first
//! looks for the shop's order id (Mamut's external number), so a redelivered order is answered
//! with its existing number and never written twice.
//!
//! - [`sql`]: the text of every statement (one source, printed by `agent sql`);
//! - [`pool`]: a small connection pool that never reuses a connection whose transaction state
//!   is in doubt;
//! - [`value`]: integers and rowversions read whatever width SQL Server answers with;
//! - [`errors`]: SQL Server error numbers → retryable or permanent, with a merchant's reason;
//! - [`catalog`]: column sizes, NOT NULL and IDENTITY, checked before writing.
//!
//! The SQL keeps to the subset written down in `deploy/mamut/README.md`, which SQL Server and
//! the test stand-in both run.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use shared::domain::{Customer, CustomerType, DocumentType, Order, Product};
use shared::protocol::{Deliver, SyncOutcome};
use tiberius::error::Error as TdsError;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use self::catalog::{Catalog, Checker, ColumnInfo, Field, Kind, TableInfo};
use self::errors::{At, classify, classify_at};
use self::pool::{BoxFuture, Connector, Pool, PoolError, Pooled, Session, in_transaction};
use super::mapping::Mapping;
use super::{Applied, ApplyError, ApplyFuture, ChangesFuture, Mamut, SyncFuture};
use crate::config::{
    Authentication, CustomerMatch, Encryption, Numbering, SeriesHolds, SqlServerConfig,
    UnknownArticle,
};
use crate::mamut::import::config::ExternalNo;
use crate::watch::Cursors;

pub(crate) type Conn = Client<Compat<TcpStream>>;

pub mod catalog;
mod changes;
pub mod errors;
mod imported;
pub mod pool;
mod products;
pub mod sql;
pub mod value;

pub use imported::Imported;

/// Opens tiberius connections with the session settings every connection needs.
pub struct TdsConnector {
    config: SqlServerConfig,
    /// `SET LOCK_TIMEOUT` of this pool's connections.
    lock_timeout_ms: u32,
}

impl Connector for TdsConnector {
    type Conn = Conn;
    fn connect(&self) -> BoxFuture<'_, Result<Conn, String>> {
        Box::pin(async move {
            let mut conn = SqlServer::connect(&self.config)
                .await
                .map_err(|e| format!("cannot reach Mamut: {e}"))?;
            batch(&mut conn, &sql::set_lock_timeout(self.lock_timeout_ms))
                .await
                .map_err(|e| format!("Mamut refused SET LOCK_TIMEOUT: {e}"))?;
            Ok(conn)
        })
    }
}

impl Session for Conn {
    type Error = TdsError;
    fn batch<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), TdsError>> {
        Box::pin(batch(self, sql))
    }
}

type Tds<'a> = Pooled<'a, TdsConnector>;

/// `(reference name, mapped name)` of a table's columns.
type Fields<'a> = Vec<(&'static str, &'a str)>;

/// The catalog as last read, and the pool's discard count then: a connection closed since
/// (an error, a reconnect) means it is read again, so a column widened in Mamut is seen.
struct CachedCatalog {
    catalog: Option<Arc<Catalog>>,
    discarded: u64,
}

pub struct SqlServer {
    config: SqlServerConfig,
    mapping: Mapping,
    /// Currency of Mamut's base prices, for price pushes.
    price_currency: String,
    pool: Pool<TdsConnector>,
    /// The watcher's own connections, one per kind of change, that do not wait for locks
    /// (`watch_lock_timeout_ms`): a change locked by an open transaction is read on a later
    /// poll, and orders never take the watcher's connections.
    watch_pool: Pool<TdsConnector>,
    catalog: tokio::sync::Mutex<Option<CachedCatalog>>,
    /// With Mamut's import writing the orders: how an external order number names its shop
    /// and shop order id (the import does not fill `orders.shop_id`).
    imported: Option<ExternalNo>,
}

/// Merchant names of the fields the writer checks.
fn field<'a>(reference: &'a str, table: &'a str, column: &'a str, label: &'a str) -> Field<'a> {
    Field {
        reference,
        table,
        column,
        label,
    }
}

impl SqlServer {
    pub fn new(config: SqlServerConfig, mapping: Mapping, price_currency: String) -> Self {
        let size = usize::try_from(config.pool_size).unwrap_or(1);
        Self {
            pool: Pool::new(
                TdsConnector {
                    config: config.clone(),
                    lock_timeout_ms: config.lock_timeout_ms,
                },
                size,
            ),
            watch_pool: Pool::new(
                TdsConnector {
                    config: config.clone(),
                    lock_timeout_ms: config.watch_lock_timeout_ms,
                },
                changes::KINDS.len(),
            ),
            config,
            mapping,
            price_currency,
            catalog: tokio::sync::Mutex::new(None),
            imported: None,
        }
    }

    /// Orders are written by Mamut's import with external order numbers made by `external`:
    /// an order status change with no shop is read back through it.
    pub fn with_imported(mut self, external: ExternalNo) -> Self {
        self.imported = Some(external);
        self
    }

    fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.config.statement_timeout_ms)
    }

    /// What a pool failure means: Mamut unreachable, or it did not answer in time.
    fn pool_failure(&self, what: &str, e: PoolError) -> String {
        match e {
            PoolError::Unreachable(e) => e,
            PoolError::TimedOut(after) => {
                let reason = format!(
                    "Mamut did not answer within {} s — a Mamut user may hold a lock on {what}; \
                     the connection was closed and the work is retried",
                    after.as_secs_f64()
                );
                tracing::warn!("{reason}");
                reason
            }
        }
    }

    pub async fn connect(config: &SqlServerConfig) -> Result<Conn, TdsError> {
        use tiberius::SqlBrowser;
        let (host, instance) = config.host_and_instance();
        let mut tds = Config::new();
        tds.host(host);
        tds.database(&config.database);
        tds.application_name("mamut-agent");
        match config.authentication {
            Authentication::SqlServer => tds.authentication(AuthMethod::sql_server(
                &config.user,
                config.password.expose(),
            )),
            #[cfg(windows)]
            Authentication::Windows => tds.authentication(AuthMethod::Integrated),
            #[cfg(not(windows))]
            Authentication::Windows => {
                return Err(TdsError::Conversion(
                    "integrated Windows authentication works only on Windows".into(),
                ));
            }
        }
        tds.encryption(match config.encryption {
            Encryption::Required => EncryptionLevel::Required,
            Encryption::Off => EncryptionLevel::Off,
            Encryption::NotSupported => EncryptionLevel::NotSupported,
        });
        if config.trust_server_certificate {
            tds.trust_cert();
        } else if let Some(ca) = &config.ca_file {
            tds.trust_cert_ca(ca.display());
        }
        let connect = async {
            match instance {
                Some(instance) => {
                    // The browser's UDP port; it answers with the instance's TCP port.
                    tds.instance_name(instance);
                    tds.port(config.browser_port.unwrap_or(1434));
                    TcpStream::connect_named(&tds).await
                }
                None => {
                    tds.port(config.port);
                    Ok(TcpStream::connect((host, config.port)).await?)
                }
            }
        };
        let tcp = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| TdsError::Io {
                kind: std::io::ErrorKind::TimedOut,
                message: "connect timed out".into(),
            })??;
        tcp.set_nodelay(true)?;
        Client::connect(tds, tcp.compat_write()).await
    }

    /// The columns of the tables the writer checks values against, read once per connection
    /// generation; `None` when the catalog cannot be read (SQL Server's errors then decide).
    async fn catalog(&self, conn: &mut Conn) -> Option<Arc<Catalog>> {
        let mut cached = self.catalog.lock().await;
        let discarded = self.pool.discarded();
        if let Some(c) = cached.as_ref()
            && c.discarded == discarded
        {
            return c.catalog.clone();
        }
        let t = &self.mapping.tables;
        let mut catalog = Catalog::default();
        let mut failed = None;
        for table in [&t.customers, &t.orders, &t.order_lines, &t.products] {
            match read_table(conn, table).await {
                Ok(info) => {
                    catalog.tables.insert(table.to_ascii_lowercase(), info);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let catalog = match failed {
            None => Some(Arc::new(catalog)),
            Some(e) => {
                tracing::warn!(error = %e, "cannot read Mamut's column sizes; values are not checked before writing");
                None
            }
        };
        *cached = Some(CachedCatalog {
            catalog: catalog.clone(),
            discarded,
        });
        catalog
    }

    /// Checks that every mapped table and column exists, fits the values the agent puts there,
    /// that the tables the agent inserts into need nothing the agent does not write, that the
    /// numbering fits the tables, and that every watched table has an index on its rowversion.
    /// `Err` when Mamut cannot be reached; otherwise the problems found, each with what to do
    /// (empty when all is well).
    pub async fn check_mapping(&self) -> Result<Vec<String>, String> {
        let mut conn = Self::connect(&self.config)
            .await
            .map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut missing = std::collections::HashSet::new();
        for (table, columns) in self.mapping.tables_and_columns() {
            match probe(&mut conn, &sql::probe(table, &columns)).await {
                Ok(()) => continue,
                Err(TdsError::Server(e)) if e.code() == 208 => {
                    problems.push(format!(
                        "table {table} does not exist: fix tables.{table} in the mapping"
                    ));
                    missing.insert(table.to_owned());
                    continue;
                }
                Err(_) => {}
            }
            for column in columns {
                if let Err(e) = probe(&mut conn, &sql::probe(table, &[column])).await {
                    let reason = match e {
                        TdsError::Server(e) if e.code() == 207 => "does not exist".to_owned(),
                        other => other.to_string(),
                    };
                    problems.push(format!("column {table}.{column} {reason}: fix the mapping"));
                }
            }
        }
        self.check_catalog(&mut conn, &missing, &mut problems).await;
        Ok(problems)
    }

    /// Whether the database has `READ_COMMITTED_SNAPSHOT` on (`sys.databases`), for `agent
    /// check`: without it a row an open Mamut transaction wrote cannot be read until that
    /// transaction ends. `Err` when it cannot be read.
    pub async fn read_committed_snapshot(&self) -> Result<bool, String> {
        let mut conn = Self::connect(&self.config)
            .await
            .map_err(|e| e.to_string())?;
        let row = conn
            .simple_query(sql::read_committed_snapshot())
            .await
            .map_err(|e| e.to_string())?
            .into_row()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("sys.databases has no row for this database")?;
        match row.try_get::<bool, _>(0) {
            Ok(Some(on)) => Ok(on),
            Ok(None) => Err("sys.databases answered NULL".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn check_catalog(
        &self,
        conn: &mut Conn,
        missing: &std::collections::HashSet<String>,
        problems: &mut Vec<String>,
    ) {
        let m = &self.mapping;
        let t = &m.tables;
        let c = &m.columns;
        let tables: [(&str, &str, Fields<'_>, bool); 6] = [
            ("customers", &t.customers, c.customers.entries(), true),
            ("products", &t.products, c.products.entries(), true),
            ("stock", &t.stock, c.stock.entries(), false),
            (
                "price_list_prices",
                &t.price_list_prices,
                c.price_list_prices.entries(),
                false,
            ),
            ("orders", &t.orders, c.orders.entries(), true),
            ("order_lines", &t.order_lines, c.order_lines.entries(), true),
        ];
        for (reference, table, fields, inserted) in tables {
            if missing.contains(table) {
                continue;
            }
            let info = match read_table(conn, table).await {
                Ok(info) => info,
                Err(e) => {
                    problems.push(format!(
                        "cannot read the columns of {table} from INFORMATION_SCHEMA.COLUMNS ({e}): \
                         grant the agent's login VIEW DEFINITION on the database"
                    ));
                    return;
                }
            };
            for (field, column) in &fields {
                let Some(col) = info.column(column) else {
                    continue;
                };
                let kind = Kind::of(reference, field);
                if !kind.fits(col) {
                    problems.push(format!(
                        "column {table}.{column} is {}, the agent puts {} there ({reference}.{field}): \
                         map a column of that type",
                        col.data_type,
                        kind.describe()
                    ));
                }
            }
            if inserted {
                for col in &info.columns {
                    let mapped = fields
                        .iter()
                        .any(|(_, n)| n.eq_ignore_ascii_case(&col.name));
                    if !mapped && !col.fills_itself() {
                        problems.push(format!(
                            "column {table}.{} is NOT NULL without a default and the agent does not write it, \
                             so every insert into {table} fails: give it a default \
                             (ALTER TABLE {table} ADD DEFAULT ... FOR {}) or allow NULL",
                            col.name, col.name
                        ));
                    }
                }
            }
            self.check_identity(reference, table, &fields, &info, problems);
        }
        for (table, rv) in [
            (&t.stock, &c.stock.rv),
            (&t.products, &c.products.rv),
            (&t.price_list_prices, &c.price_list_prices.rv),
            (&t.orders, &c.orders.rv),
        ] {
            if missing.contains(table) {
                continue;
            }
            match first_int(
                conn,
                sql::catalog_index(),
                &[&table.as_str(), &rv.as_str()],
                At::table(table),
            )
            .await
            {
                Ok(Some(n)) if n > 0 => {}
                Ok(_) => problems.push(format!(
                    "no index on {table}.{rv}: every watcher poll reads the whole table; \
                     create one: CREATE INDEX {table}_{rv} ON {table} ({rv})"
                )),
                Err(e) => problems.push(format!(
                    "cannot read the indexes of {table} from sys.indexes ({e}): grant the agent's \
                     login VIEW DEFINITION on the database"
                )),
            }
        }
        for (key, numbering) in [
            ("customer_numbering", &self.config.customer_numbering),
            ("order_numbering", &self.config.order_numbering),
        ] {
            if let Numbering::Series(s) = numbering {
                let probe_sql = sql::probe(&s.table, &[&s.key_column, &s.next_column]);
                if let Err(e) = probe(conn, &probe_sql).await {
                    problems.push(format!(
                        "{key}: number series {}.{} / {}: {e}; fix [mamut.sqlserver] {key}",
                        s.table, s.key_column, s.next_column
                    ));
                }
            }
        }
    }

    /// IDENTITY columns the agent would write explicitly, and identity numbering on a column
    /// that is not one.
    fn check_identity(
        &self,
        reference: &str,
        table: &str,
        fields: &[(&'static str, &str)],
        info: &TableInfo,
        problems: &mut Vec<String>,
    ) {
        let numbered = match reference {
            "customers" => Some((
                "customer_no",
                "customer_numbering",
                &self.config.customer_numbering,
            )),
            "orders" => Some(("order_no", "order_numbering", &self.config.order_numbering)),
            _ => None,
        };
        for (field, column) in fields {
            let Some(col) = info.column(column) else {
                continue;
            };
            match numbered {
                Some((number, key, numbering)) if *field == number => {
                    let identity_mode = matches!(numbering, Numbering::Identity);
                    if col.identity && !identity_mode {
                        problems.push(format!(
                            "column {table}.{column} is an IDENTITY column: Mamut numbers {table} \
                             itself; set {key} = {{ mode = \"identity\" }} in [mamut.sqlserver]"
                        ));
                    } else if !col.identity && identity_mode {
                        problems.push(format!(
                            "{key} is \"identity\" but {table}.{column} is not an IDENTITY column: \
                             use mode \"series\" or \"max_plus_one\""
                        ));
                    }
                }
                _ if col.identity
                    && !matches!(*field, "rv" | "tracking_no")
                    && matches!(
                        reference,
                        "customers" | "orders" | "order_lines" | "products"
                    ) =>
                {
                    problems.push(format!(
                        "column {table}.{column} is an IDENTITY column, and the agent writes \
                         {reference}.{field} itself: map a plain column"
                    ));
                }
                _ => {}
            }
        }
    }

    async fn apply(&self, conn: &mut Tds<'_>, delivery: &Deliver) -> Result<Applied, ApplyError> {
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

    /// Runs an identity insert and reads the number the database assigned.
    async fn identity(
        &self,
        conn: &mut Conn,
        insert: String,
        params: &[&dyn ToSql],
        at: At<'_>,
    ) -> Result<i32, ApplyError> {
        let row = conn
            .query(insert, params)
            .await
            .map_err(|e| classify_at(e, at))?
            .into_row()
            .await
            .map_err(|e| classify_at(e, at))?;
        let number = row
            .map(|r| value::int(&r, 0))
            .transpose()
            .map_err(unreadable)?
            .flatten()
            .ok_or_else(|| {
                ApplyError::Permanent(format!(
                    "SCOPE_IDENTITY() gave no number after inserting into {}: is the number column an \
                     IDENTITY column? Otherwise use numbering mode \"series\" or \"max_plus_one\"",
                    at.table.unwrap_or_default()
                ))
            })?;
        to_i32(number)
    }

    /// The number for a new row, or `None` when the database assigns it (identity).
    async fn number(
        &self,
        conn: &mut Conn,
        numbering: &Numbering,
        table: &str,
        column: &str,
        start: i32,
    ) -> Result<Option<i32>, ApplyError> {
        let at = At::table(table);
        let next = match numbering {
            Numbering::Identity => return Ok(None),
            Numbering::MaxPlusOne => {
                first_int(conn, &sql::max_plus_one(table, column), &[&start], at)
                    .await?
                    .unwrap_or(i64::from(start))
            }
            Numbering::Series(series) => {
                let sql = sql::series_next(series);
                let advanced = first_int(
                    conn,
                    &sql,
                    &[&series.key.as_str()],
                    At::table(&series.table),
                )
                .await?
                .map(|value| match series.holds {
                    SeriesHolds::Last => value,
                    SeriesHolds::Next => value - 1,
                });
                advanced.ok_or_else(|| {
                    ApplyError::Permanent(format!(
                        "the number series {} has no row {} = {:?} for {table}: create it, or fix \
                             the numbering in [mamut.sqlserver]",
                        series.table, series.key_column, series.key
                    ))
                })?
            }
        };
        to_i32(next).map(Some)
    }

    /// The number this apply chose, when a duplicate of it can only mean that another writer
    /// took the same number at the same moment (max+1 read by a Mamut user without our lock),
    /// so a retry reads a new one. With a series or an IDENTITY column a duplicate means the
    /// series is behind the table's numbers, which a retry would hit again: not racy.
    fn racy_number(&self, numbering: &Numbering, number: Option<i32>) -> String {
        match (numbering, number) {
            (Numbering::MaxPlusOne, Some(n)) => n.to_string(),
            _ => String::new(),
        }
    }

    /// Finds the customer by the configured keys, in order, or creates one.
    async fn customer(
        &self,
        conn: &mut Conn,
        customer: &Customer,
        check: &Checker<'_>,
    ) -> Result<i32, ApplyError> {
        let m = &self.mapping;
        let (table, c) = (&m.tables.customers, &m.columns.customers);
        for key in &self.config.customer_match {
            let number;
            let (column, value): (&String, &dyn ToSql) = match key {
                CustomerMatch::CustomerNo => match customer.id.as_deref().map(str::parse::<i32>) {
                    Some(Ok(n)) => {
                        number = n;
                        (&c.customer_no, &number)
                    }
                    _ => continue,
                },
                CustomerMatch::Email => match &customer.email {
                    Some(email) if !email.is_empty() => (&c.email, email),
                    _ => continue,
                },
                CustomerMatch::OrgNo => match &customer.org_no {
                    Some(org_no) if !org_no.is_empty() => (&c.org_no, org_no),
                    _ => continue,
                },
            };
            let sql = sql::find_customer(m, column);
            if let Some(found) = first_int(conn, &sql, &[value], At::table(table)).await? {
                return to_i32(found);
            }
        }
        let (name, name_label) = match (customer.kind, &customer.company_name) {
            (CustomerType::Company, Some(company)) => (company.clone(), "company name"),
            _ => (
                [
                    customer.first_name.as_deref(),
                    customer.last_name.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
                "customer name",
            ),
        };
        let billing = &customer.billing_address;
        let text = |reference, column, label, value: Option<&str>| {
            check.text(
                field(reference, table, column, label),
                value.map(str::to_owned),
            )
        };
        let name = text("customers.name", &c.name, name_label, Some(&name))?;
        let email = text(
            "customers.email",
            &c.email,
            "e-mail address",
            customer.email.as_deref(),
        )?;
        let org_no = text(
            "customers.org_no",
            &c.org_no,
            "organisation number",
            customer.org_no.as_deref(),
        )?;
        let phone = text(
            "customers.phone",
            &c.phone,
            "phone number",
            customer.phone.as_deref(),
        )?;
        let street = text(
            "customers.street",
            &c.street,
            "street address",
            Some(&billing.street),
        )?;
        let zip = text("customers.zip", &c.zip, "postcode", Some(&billing.zip))?;
        let city = text("customers.city", &c.city, "city", Some(&billing.city))?;
        let country = text(
            "customers.country",
            &c.country,
            "country code",
            Some(&billing.country),
        )?;
        let number = self
            .number(
                conn,
                &self.config.customer_numbering,
                table,
                &c.customer_no,
                self.config.customer_number_start,
            )
            .await?;
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(9);
        if let Some(n) = &number {
            params.push(n);
        }
        params.extend([
            &name as &dyn ToSql,
            &email,
            &org_no,
            &phone,
            &street,
            &zip,
            &city,
            &country,
        ]);
        let own_keys = [self.racy_number(&self.config.customer_numbering, number)];
        let at = At {
            table: Some(table),
            own_keys: &own_keys,
        };
        let insert = sql::insert(
            table,
            &sql::customer_columns(m, number.is_some()),
            number.is_none(),
        );
        match number {
            Some(n) => {
                conn.execute(insert, &params)
                    .await
                    .map_err(|e| classify_at(e, at))?;
                Ok(n)
            }
            None => self.identity(conn, insert, &params, at).await,
        }
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

    /// Runs `work` on one of the watcher's connections within the statement timeout.
    async fn with_watch_conn<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&mut Tds<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        self.watch_pool
            .run(self.statement_timeout(), work, |e| {
                self.pool_failure(what, e)
            })
            .await
    }

    /// Runs `work` on a pooled connection within the statement timeout.
    async fn with_conn<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&mut Tds<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        self.pool
            .run(self.statement_timeout(), work, |e| {
                self.pool_failure(what, e)
            })
            .await
    }
}

/// The columns of one table from the catalog.
async fn read_table(conn: &mut Conn, table: &str) -> Result<TableInfo, String> {
    let rows = conn
        .query(sql::catalog_columns(), &[&table])
        .await
        .map_err(|e| e.to_string())?
        .into_first_result()
        .await
        .map_err(|e| e.to_string())?;
    let columns = rows
        .iter()
        .map(ColumnInfo::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    if columns.is_empty() {
        return Err(format!("no columns found for table {table}"));
    }
    Ok(TableInfo { columns })
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

/// A number Mamut answered with that the agent cannot read: the mapping points at a column of
/// another type, which no retry changes.
fn unreadable(e: String) -> ApplyError {
    ApplyError::Permanent(format!(
        "Mamut answered with a value the agent cannot read as a number ({e}); check the mapping \
         with agent check"
    ))
}

fn to_i32(value: i64) -> Result<i32, ApplyError> {
    i32::try_from(value).map_err(|_| {
        ApplyError::Permanent(format!("number {value} does not fit Mamut's int column"))
    })
}

/// The integer in the first column of the first row, whatever its SQL Server width.
async fn first_int(
    conn: &mut Conn,
    sql: &str,
    params: &[&dyn ToSql],
    at: At<'_>,
) -> Result<Option<i64>, ApplyError> {
    let row = conn
        .query(sql, params)
        .await
        .map_err(|e| classify_at(e, at))?
        .into_row()
        .await
        .map_err(|e| classify_at(e, at))?;
    row.map(|r| value::int(&r, 0).map_err(unreadable))
        .transpose()
        .map(Option::flatten)
}

impl Mamut for SqlServer {
    fn apply_order<'a>(&'a self, delivery: &'a Deliver) -> ApplyFuture<'a> {
        let t = &self.mapping.tables;
        Box::pin(async move {
            let applied = self
                .pool
                .run(
                    self.statement_timeout(),
                    async |conn| self.apply(conn, delivery).await,
                    |e| {
                        ApplyError::Retryable(self.pool_failure(
                            &format!("{}, {} or {}", t.orders, t.customers, t.order_lines),
                            e,
                        ))
                    },
                )
                .await?;
            if !applied.already_applied && self.config.after_commit_delay_ms > 0 {
                // Test hook: the order is committed, the ack not yet sent.
                tokio::time::sleep(Duration::from_millis(self.config.after_commit_delay_ms)).await;
            }
            Ok(applied)
        })
    }

    fn poll_changes<'a>(&'a self, cursors: &'a Cursors, batch: u32) -> ChangesFuture<'a> {
        Box::pin(self.changes(cursors, batch))
    }

    fn list_products<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> SyncFuture<'a, (Vec<Product>, Option<String>)> {
        Box::pin(
            self.with_conn(&self.mapping.tables.products, async move |conn| {
                self.product_page(conn, after, limit).await
            }),
        )
    }

    fn count_products(&self) -> SyncFuture<'_, u64> {
        Box::pin(self.with_conn(&self.mapping.tables.products, async |conn| {
            self.product_count(conn).await
        }))
    }

    fn upsert_product<'a>(&'a self, product: &'a Product) -> SyncFuture<'a, SyncOutcome> {
        Box::pin(
            self.with_conn(&self.mapping.tables.products, async move |conn| {
                self.write_product(conn, product).await
            }),
        )
    }
}
