//! `[mamut]` of agent.toml: which backend writes orders into Mamut and how, and
//! `[mamut.sqlserver]`, the connection to Mamut's SQL Server with its numbering and text-length
//! rules. Defined at the Mamut boundary, which they configure; [`crate::config`] reads them
//! into the agent's configuration.

use std::path::PathBuf;

use serde::Deserialize;
use shared::settings::{ConfigError, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MamutBackend {
    /// Test and development stand-in: records applied orders in a SQLite file. Not Mamut;
    /// chosen only by writing `backend = "recorder"`.
    Recorder,
    /// Mamut One Enterprise's SQL Server, through tiberius: what a real installation uses,
    /// and so the default.
    #[default]
    Sqlserver,
}

/// How orders are written into Mamut (with the `sqlserver` backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// INSERTs into the mapped tables, in one transaction per order.
    #[default]
    Sql,
    /// Mamut's own import program (Mamut Import/Export) on a GBAOX10 file per order.
    Import,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// TLS for the whole connection.
    Required,
    /// TLS for the login only.
    Off,
    /// No TLS at all (a server without encryption).
    NotSupported,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerMatch {
    CustomerNo,
    Email,
    OrgNo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownArticle {
    /// Refuse the order permanently (it goes to the relay's dead letters, with the reason).
    Reject,
    /// Write the line as free text (no article number).
    FreeText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Authentication {
    /// A SQL Server login (`user`, `password`).
    #[default]
    SqlServer,
    /// Integrated Windows authentication as the account the agent runs as (Windows only).
    Windows,
}

/// What happens to a text longer than its Mamut column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TooLong {
    /// The order is refused permanently with the field, its length and Mamut's limit.
    #[default]
    Refuse,
    /// The text is cut to the column's length.
    Truncate,
}

/// A number series row: `UPDATE table SET next_column = next_column + 1 WHERE key_column = key`,
/// then the column read back in the same transaction (the row stays locked until the commit).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub table: String,
    pub key_column: String,
    pub key: String,
    pub next_column: String,
    /// What the column holds: the last number used (the number is the value after the
    /// increment) or the next number to hand out (the value before it).
    #[serde(default)]
    pub holds: SeriesHolds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SeriesHolds {
    #[default]
    Last,
    Next,
}

/// How a new document (customer, order) gets its number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Numbering {
    /// One above the highest number in the table, read under an update lock.
    #[default]
    MaxPlusOne,
    /// The database assigns it (an IDENTITY column); the agent reads it back.
    Identity,
    /// From a number series row, incremented under its row lock.
    Series(Series),
}

/// The reference fields of an order whose text length the agent checks before writing, as
/// `table.field` (the keys of `on_too_long_fields`).
pub const TEXT_FIELDS: &[&str] = &[
    "customers.name",
    "customers.email",
    "customers.org_no",
    "customers.phone",
    "customers.street",
    "customers.zip",
    "customers.city",
    "customers.country",
    "orders.doc_type",
    "orders.external_no",
    "orders.shop_id",
    "orders.status",
    "orders.currency",
    "orders.payment_method",
    "orders.payment_ref",
    "order_lines.article_no",
    "order_lines.description",
    "products.name",
    "products.description",
    "products.article_no",
    "products.parent_article_no",
    "products.dimension1",
    "products.dimension2",
];

/// Text fields the agent finds rows by (the idempotency key, article and customer matching):
/// never truncated, since a cut value would not be found again (an order written twice, a
/// line on another article, a customer created on every order).
pub const KEY_FIELDS: &[&str] = &[
    "customers.email",
    "customers.org_no",
    "orders.external_no",
    "orders.shop_id",
    "order_lines.article_no",
    "products.article_no",
    "products.parent_article_no",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlServerConfig {
    /// The server; `SERVER\\INSTANCE` names a named instance (found through SQL Browser).
    pub host: String,
    /// The TCP port; not used with a named instance (SQL Browser tells the port).
    pub port: u16,
    /// A named instance, e.g. `MAMUT` (or give it in `host`).
    pub instance: Option<String>,
    /// The SQL Browser's UDP port for a named instance (1434 when absent).
    pub browser_port: Option<u16>,
    pub database: String,
    pub authentication: Authentication,
    pub user: String,
    /// `AGENT_MAMUT_PASSWORD`.
    pub password: Secret,
    pub encryption: Encryption,
    /// Accept the server's certificate without checking it (self-signed SQL Server certs).
    pub trust_server_certificate: bool,
    /// A CA certificate (PEM or DER) that signed the server's certificate, trusted besides the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// Connections to Mamut kept open at once for orders and the sync (the watcher has its own).
    pub pool_size: u32,
    /// `SET LOCK_TIMEOUT`: longest wait for a row another Mamut user holds (milliseconds).
    pub lock_timeout_ms: u32,
    /// `SET LOCK_TIMEOUT` of the watcher's own connections: 0, no wait; a changed row that an
    /// open transaction holds is read on a later poll.
    pub watch_lock_timeout_ms: u32,
    /// Longest one order's transaction or one watcher query may take (milliseconds); the
    /// connection is then closed (SQL Server rolls back) and the work retried.
    pub statement_timeout_ms: u64,
    /// Text longer than its Mamut column: refused or truncated.
    pub on_too_long: TooLong,
    /// Per field (`table.field`, reference names) exceptions to `on_too_long`.
    pub on_too_long_fields: std::collections::BTreeMap<String, TooLong>,
    /// How new customers and orders are numbered.
    pub customer_numbering: Numbering,
    pub order_numbering: Numbering,
    /// Table and column names; the reference names when absent.
    pub mapping: Option<PathBuf>,
    /// How an order's customer is found in Mamut, in order; not found → created.
    pub customer_match: Vec<CustomerMatch>,
    pub unknown_article: UnknownArticle,
    /// Article number for the shipping line; a free-text line when absent.
    pub shipping_article: Option<String>,
    /// First number of each series when the table is empty.
    pub order_number_start: i32,
    pub customer_number_start: i32,
    /// Test hook: wait this long after the commit before answering.
    pub after_commit_delay_ms: u64,
}

impl SqlServerConfig {
    /// The host without an instance, and the instance (from `instance` or `HOST\\INSTANCE`).
    pub fn host_and_instance(&self) -> (&str, Option<&str>) {
        match self.host.split_once('\\') {
            Some((host, instance)) => (host, Some(self.instance.as_deref().unwrap_or(instance))),
            None => (self.host.as_str(), self.instance.as_deref()),
        }
    }

    /// What to do with a too long text in `field` (`table.field`); a key field is always
    /// refused ([`KEY_FIELDS`]).
    pub fn too_long(&self, field: &str) -> TooLong {
        if KEY_FIELDS.contains(&field) {
            return TooLong::Refuse;
        }
        self.on_too_long_fields
            .get(field)
            .copied()
            .unwrap_or(self.on_too_long)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let (host, instance) = self.host_and_instance();
        if host.is_empty() {
            return Err(error("mamut.sqlserver.host", "is required"));
        }
        if instance.is_some_and(str::is_empty) {
            return Err(error(
                "mamut.sqlserver.instance",
                "is empty (write HOST\\INSTANCE or leave the instance out)",
            ));
        }
        match self.authentication {
            Authentication::SqlServer if self.user.is_empty() => {
                return Err(error(
                    "mamut.sqlserver.user",
                    "is required (a SQL login), or set authentication = \"windows\"",
                ));
            }
            Authentication::Windows if !cfg!(windows) => {
                return Err(error(
                    "mamut.sqlserver.authentication",
                    "\"windows\" (integrated Windows authentication) works only when the agent \
                     runs on Windows; use a SQL login (authentication = \"sql_server\", user, password)",
                ));
            }
            _ => {}
        }
        if self.trust_server_certificate && self.ca_file.is_some() {
            return Err(error(
                "mamut.sqlserver.ca_file",
                "cannot be combined with trust_server_certificate = true (which checks no \
                 certificate at all); keep one",
            ));
        }
        if !(1..=64).contains(&self.pool_size) {
            return Err(error(
                "mamut.sqlserver.pool_size",
                "must be between 1 and 64",
            ));
        }
        if self.watch_lock_timeout_ms > i32::MAX as u32 {
            return Err(error(
                "mamut.sqlserver.watch_lock_timeout_ms",
                "must be at most 2147483647",
            ));
        }
        if self.lock_timeout_ms > i32::MAX as u32 {
            return Err(error(
                "mamut.sqlserver.lock_timeout_ms",
                "must be at most 2147483647",
            ));
        }
        if !(100..=3_600_000).contains(&self.statement_timeout_ms) {
            return Err(error(
                "mamut.sqlserver.statement_timeout_ms",
                "must be between 100 and 3600000",
            ));
        }
        for (field, choice) in &self.on_too_long_fields {
            if *choice == TooLong::Truncate && KEY_FIELDS.contains(&field.as_str()) {
                return Err(error(
                    "mamut.sqlserver.on_too_long_fields",
                    format!(
                        "{field:?} cannot be truncated: the agent finds rows by it, and a cut \
                         value would not be found again; widen the column in Mamut or shorten \
                         the value in the shop"
                    ),
                ));
            }
            if !TEXT_FIELDS.contains(&field.as_str()) {
                return Err(error(
                    "mamut.sqlserver.on_too_long_fields",
                    format!(
                        "{field:?} is not a text field the agent writes; one of {}",
                        TEXT_FIELDS.join(", ")
                    ),
                ));
            }
        }
        for (key, numbering) in [
            (
                "mamut.sqlserver.customer_numbering",
                &self.customer_numbering,
            ),
            ("mamut.sqlserver.order_numbering", &self.order_numbering),
        ] {
            if let Numbering::Series(series) = numbering {
                for (name, value) in [
                    ("table", &series.table),
                    ("key_column", &series.key_column),
                    ("next_column", &series.next_column),
                ] {
                    if !super::mapping::is_identifier(value) {
                        return Err(error(
                            key,
                            format!(
                                "{name} {value:?} is not a plain identifier (letters, digits, _)"
                            ),
                        ));
                    }
                }
            }
        }
        if self.customer_match.is_empty() {
            return Err(error(
                "mamut.sqlserver.customer_match",
                "needs at least one key",
            ));
        }
        Ok(())
    }
}

impl Default for SqlServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1433,
            database: "mamut".into(),
            user: String::new(),
            password: Secret::default(),
            instance: None,
            browser_port: None,
            authentication: Authentication::SqlServer,
            encryption: Encryption::Required,
            trust_server_certificate: false,
            ca_file: None,
            pool_size: 8,
            lock_timeout_ms: 5_000,
            watch_lock_timeout_ms: 0,
            statement_timeout_ms: 30_000,
            on_too_long: TooLong::Refuse,
            on_too_long_fields: std::collections::BTreeMap::new(),
            customer_numbering: Numbering::MaxPlusOne,
            order_numbering: Numbering::MaxPlusOne,
            mapping: None,
            // Not the customer number: the shop's customer id is the shop's, and a numeric
            // one would attach the order to whichever Mamut customer has that number.
            customer_match: vec![CustomerMatch::Email, CustomerMatch::OrgNo],
            unknown_article: UnknownArticle::Reject,
            shipping_article: None,
            order_number_start: 10_000,
            customer_number_start: 10_000,
            after_commit_delay_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamutConfig {
    pub backend: MamutBackend,
    /// The recorder's database file (`AGENT_MAMUT_PATH`).
    pub path: PathBuf,
    /// Test hook: hold the write transaction open this long before committing.
    pub apply_delay_ms: u64,
    /// How orders are written (sqlserver backend): `sql` or Mamut's `import`.
    pub writer: Writer,
    pub sqlserver: SqlServerConfig,
    pub import: super::import::config::ImportConfig,
}

impl Default for MamutConfig {
    fn default() -> Self {
        Self {
            backend: MamutBackend::default(),
            path: "mamut-recorder.sqlite".into(),
            apply_delay_ms: 0,
            writer: Writer::Sql,
            sqlserver: SqlServerConfig::default(),
            import: Default::default(),
        }
    }
}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}
