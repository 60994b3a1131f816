//! Agent configuration: defaults, then `agent.toml`, then `AGENT_*` environment variables.
//! Validated before start-up; every error names the key it is about.

use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use shared::settings::{ConfigError, Secret};
use shared::settings::{parse, toml_error};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub relay: RelayConfig,
    pub backoff: BackoffConfig,
    pub mamut: MamutConfig,
    pub watch: WatchConfig,
}

/// Watching Mamut for stock, price, price list, product and order status changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    pub enabled: bool,
    /// How often Mamut is polled.
    pub interval_ms: u64,
    /// Where the change cursors are kept (`AGENT_WATCH_STATE_FILE`).
    pub state_file: PathBuf,
    /// Most rows read per kind and poll.
    pub batch: u32,
    /// Currency of Mamut's base prices.
    pub currency: String,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 250,
            state_file: "agent-state.json".into(),
            batch: 500,
            currency: "SEK".into(),
        }
    }
}

/// `Debug` by hand: the proxy URL's password stays out of it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// `wss://host[:port]/agent/v1/connect` (`AGENT_RELAY_URL`).
    pub url: String,
    /// Further addresses of the same relay (its other instances), tried in turn when one
    /// fails (`AGENT_RELAY_FALLBACK_URLS`, comma-separated).
    pub fallback_urls: Vec<String>,
    /// The agent's token, issued by the relay (`AGENT_RELAY_TOKEN`).
    pub token: Secret,
    /// Extra trusted root certificates (PEM), added to the system's (`AGENT_RELAY_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// Allows plain `ws://`; for local development only (`AGENT_RELAY_INSECURE_DEV`).
    pub insecure_dev: bool,
    /// HTTP CONNECT proxy (`AGENT_RELAY_PROXY`): `http://[user:password@]host:port` (user and
    /// password percent-encoded, sent as Basic), `"none"`/`"direct"` (no proxy, nothing else
    /// consulted), and on Windows `"auto"` (WPAD) or `"pac:<url>"`. Without it:
    /// `HTTPS_PROXY`/`https_proxy` minding `NO_PROXY`, then on Windows the WinHTTP settings
    /// (`netsh winhttp show proxy`); see [`crate::proxy`].
    pub proxy: Option<String>,
    /// Deliveries the agent accepts in flight at once.
    pub credit: u32,
    /// Send a heartbeat when idle this long; the connection counts as dead after three times
    /// this without a frame from the relay.
    pub heartbeat_secs: u32,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("url", &self.url)
            .field("fallback_urls", &self.fallback_urls)
            .field("token", &self.token)
            .field("ca_file", &self.ca_file)
            .field("insecure_dev", &self.insecure_dev)
            .field("proxy", &self.proxy.as_deref().map(crate::proxy::redacted))
            .field("credit", &self.credit)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .finish()
    }
}

impl RelayConfig {
    /// The relay's addresses: `url` first, then the fallbacks.
    pub fn urls(&self) -> Vec<&str> {
        std::iter::once(self.url.as_str())
            .chain(self.fallback_urls.iter().map(String::as_str))
            .collect()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            fallback_urls: Vec::new(),
            token: Secret::default(),
            ca_file: None,
            insecure_dev: false,
            proxy: None,
            credit: 16,
            heartbeat_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    pub initial_ms: u64,
    pub max_ms: u64,
    /// A session that lived this long resets the backoff.
    pub stable_after_secs: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_ms: 30_000,
            stable_after_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MamutBackend {
    /// Test and development stand-in: records applied orders in a SQLite file. Not Mamut.
    #[default]
    Recorder,
    /// Mamut One Enterprise's SQL Server, through tiberius.
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

    fn validate(&self) -> Result<(), ConfigError> {
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
                    if !crate::mamut::mapping::is_identifier(value) {
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
    pub import: crate::mamut::import::config::ImportConfig,
}

impl Default for MamutConfig {
    fn default() -> Self {
        Self {
            backend: MamutBackend::Recorder,
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

impl AgentConfig {
    /// Loads the configuration; `env` looks up an environment variable.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        match file {
            Some(path) => {
                let key = path.display().to_string();
                let bytes = std::fs::read(path).map_err(|e| error(&key, e.to_string()))?;
                Self::from_bytes(&bytes, &key, env)
            }
            None => Self::finish(AgentConfig::default(), env),
        }
    }

    /// The configuration from a file's bytes (UTF-8 or UTF-16 with its byte order mark, see
    /// [`AgentConfig::load`]), then the environment; `origin` names the file in errors.
    pub fn from_bytes(
        bytes: &[u8],
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = decode_text(bytes).map_err(|e| error(origin, e))?;
        let config = toml::from_str(&text).map_err(|e: toml::de::Error| {
            error(origin, toml_error(&text, e.message(), e.span()))
        })?;
        Self::finish(config, env)
    }

    fn finish(
        mut config: AgentConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |key: &str| env(key).filter(|v| !v.is_empty());
        if let Some(v) = get("AGENT_RELAY_URL") {
            self.relay.url = v;
        }
        if let Some(v) = get("AGENT_RELAY_FALLBACK_URLS") {
            self.relay.fallback_urls = v
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = get("AGENT_RELAY_TOKEN") {
            self.relay.token = Secret::new(v);
        }
        if let Some(v) = get("AGENT_RELAY_CA_FILE") {
            self.relay.ca_file = Some(v.into());
        }
        if let Some(v) = get("AGENT_RELAY_INSECURE_DEV") {
            self.relay.insecure_dev = parse("AGENT_RELAY_INSECURE_DEV", &v)?;
        }
        if let Some(v) = get("AGENT_RELAY_PROXY") {
            self.relay.proxy = Some(v);
        }
        if let Some(v) = get("AGENT_MAMUT_PATH") {
            self.mamut.path = v.into();
        }
        if let Some(v) = get("AGENT_WATCH_STATE_FILE") {
            self.watch.state_file = v.into();
        }
        if let Some(v) = get("AGENT_MAMUT_PASSWORD") {
            self.mamut.sqlserver.password = Secret::new(v);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.relay.url;
        if url.is_empty() {
            return Err(error(
                "relay.url",
                "is required (e.g. wss://relay.example.com/agent/v1/connect)",
            ));
        }
        crate::transport::Endpoint::parse(url, self.relay.insecure_dev)
            .map_err(|e| error("relay.url", e))?;
        for url in &self.relay.fallback_urls {
            crate::transport::Endpoint::parse(url, self.relay.insecure_dev)
                .map_err(|e| error("relay.fallback_urls", e))?;
        }
        if self.relay.token.expose().trim().is_empty() {
            return Err(error(
                "relay.token",
                "is required (issued by the relay: relay agent create)",
            ));
        }
        if let Some(proxy) = &self.relay.proxy {
            crate::proxy::Setting::parse(Some(proxy))
                .and_then(|setting| setting.supported())
                .map_err(|e| error("relay.proxy", e))?;
        }
        if !(1..=1024).contains(&self.relay.credit) {
            return Err(error("relay.credit", "must be between 1 and 1024"));
        }
        if !(1..=300).contains(&self.relay.heartbeat_secs) {
            return Err(error("relay.heartbeat_secs", "must be between 1 and 300"));
        }
        if self.backoff.initial_ms == 0 || self.backoff.max_ms < self.backoff.initial_ms {
            return Err(error(
                "backoff",
                "initial_ms must be positive and not above max_ms",
            ));
        }
        if !(100..=3_600_000).contains(&self.watch.interval_ms) {
            return Err(error(
                "watch.interval_ms",
                "must be between 100 and 3600000",
            ));
        }
        if !(1..=10_000).contains(&self.watch.batch) {
            return Err(error("watch.batch", "must be between 1 and 10000"));
        }
        match self.mamut.backend {
            MamutBackend::Recorder if self.mamut.path.as_os_str().is_empty() => {
                return Err(error("mamut.path", "must not be empty"));
            }
            MamutBackend::Sqlserver => self.mamut.sqlserver.validate()?,
            MamutBackend::Recorder => {}
        }
        if self.mamut.writer == Writer::Import {
            if self.mamut.backend != MamutBackend::Sqlserver {
                return Err(error(
                    "mamut.writer",
                    "\"import\" needs backend = \"sqlserver\": the agent finds imported orders \
                     over SQL Server",
                ));
            }
            self.mamut.import.validate()?;
        }
        Ok(())
    }
}

/// A configuration file's text: UTF-8 (a byte order mark is skipped by the TOML parser), or
/// UTF-16 with its byte order mark, as Windows PowerShell 5.1's `>` and `Out-File` and
/// Notepad's "Unicode" write it.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        if !rest.len().is_multiple_of(2) {
            return Err("the file is UTF-16 with an odd number of bytes (cut off?)".to_owned());
        }
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
        String::from_utf16(&units)
            .map_err(|_| "the file is UTF-16 but not valid UTF-16: save it as UTF-8".to_owned())
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => String::from_utf8(bytes.to_vec()).map_err(|e| {
            format!(
                "the file is not UTF-8 (invalid byte at offset {}): save it as UTF-8 \
                 (Notepad: Save as, Encoding UTF-8)",
                e.utf8_error().valid_up_to()
            )
        }),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_configuration_saved_as_utf16_or_with_a_bom_reads_as_utf8_would() {
        let text = "[relay]\nurl = \"wss://r\u{e9}lay.example\"\n";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode_text(&le).as_deref(), Ok(text));
        assert_eq!(decode_text(&be).as_deref(), Ok(text));
        assert_eq!(decode_text(text.as_bytes()).as_deref(), Ok(text));
        let with_bom = [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
        let parsed: toml::Table = toml::from_str(&decode_text(&with_bom).unwrap()).unwrap();
        assert_eq!(
            parsed["relay"]["url"].as_str(),
            Some("wss://r\u{e9}lay.example")
        );
        let latin1 = b"[relay]\nurl = \"wss://r\xE9lay\"\n";
        let e = decode_text(latin1).unwrap_err();
        assert!(e.contains("not UTF-8") && e.contains("offset 22"), "{e}");
        assert!(
            decode_text(&le[..le.len() - 1])
                .unwrap_err()
                .contains("odd number")
        );
    }
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn the_environment_overrides_the_file_and_the_token_stays_hidden() {
        let (_dir, path) = write(
            "[relay]\nurl = \"wss://relay.example.com/agent/v1/connect\"\ntoken = \"file\"\n",
        );
        let config = AgentConfig::load(Some(&path), &env_of(&[("AGENT_RELAY_TOKEN", "from-env")]))
            .expect("valid");
        assert_eq!(config.relay.token.expose(), "from-env");
        assert!(!format!("{config:?}").contains("from-env"));
        assert_eq!(config.relay.credit, 16);
    }

    #[test]
    fn a_proxy_url_is_checked_and_its_password_stays_hidden() {
        let (_dir, path) = write(
            "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
             proxy = \"http://alice:p%40ss@proxy:3128\"\n",
        );
        let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("valid");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("http://<hidden>@proxy:3128"), "{shown}");

        let bad = AgentConfig::load(
            Some(&path),
            &env_of(&[("AGENT_RELAY_PROXY", "http://alice:100%@proxy:3128")]),
        )
        .expect_err("invalid percent sequence");
        assert_eq!(bad.key, "relay.proxy");
        assert!(bad.message.contains("invalid percent sequence"), "{bad}");
        assert!(!bad.to_string().contains("100%"), "{bad}");

        for direct in ["none", "direct"] {
            let loaded = AgentConfig::load(Some(&path), &env_of(&[("AGENT_RELAY_PROXY", direct)]));
            assert!(loaded.is_ok(), "{direct}");
        }
        let auto = AgentConfig::load(Some(&path), &env_of(&[("AGENT_RELAY_PROXY", "auto")]));
        assert_eq!(auto.is_ok(), cfg!(windows), "WPAD is asked of Windows only");
    }

    #[test]
    fn plain_ws_needs_the_insecure_dev_flag() {
        let (_dir, path) =
            write("[relay]\nurl = \"ws://127.0.0.1:8080/agent/v1/connect\"\ntoken = \"t\"\n");
        let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("ws refused");
        assert_eq!(bad.key, "relay.url");
        let ok = AgentConfig::load(
            Some(&path),
            &env_of(&[("AGENT_RELAY_INSECURE_DEV", "true")]),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn unknown_keys_and_missing_tokens_are_named() {
        let (_dir, path) = write("[relay]\nurl = \"wss://r/agent/v1/connect\"\ntokn = \"t\"\n");
        let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("unknown key");
        assert!(bad.message.contains("tokn"), "{bad}");
        let (_dir, path) = write("[relay]\nurl = \"wss://r/agent/v1/connect\"\n");
        let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("no token");
        assert_eq!(bad.key, "relay.token");
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("the example loads");
        assert_eq!(config.mamut.backend, MamutBackend::Sqlserver);
        assert_eq!(config.mamut.sqlserver.customer_match.len(), 2);
        assert_eq!(config.watch.interval_ms, 250);
        let sql = &config.mamut.sqlserver;
        assert_eq!(sql.too_long("order_lines.description"), TooLong::Truncate);
        assert_eq!(sql.too_long("customers.name"), TooLong::Refuse);
        assert_eq!(sql.order_numbering, Numbering::MaxPlusOne);
    }

    #[test]
    fn the_example_import_section_is_valid_once_chosen_and_needs_the_sqlserver_backend() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let text = std::fs::read_to_string(path).expect("example");
        assert!(text.contains("writer = \"sql\"\n"));
        let (_dir, path) = write(&text.replace("writer = \"sql\"\n", "writer = \"import\"\n"));
        let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("the example loads");
        assert_eq!(config.mamut.writer, Writer::Import);
        let import = &config.mamut.import;
        assert_eq!(
            (
                import.client.as_str(),
                import.department,
                import.timeout_secs
            ),
            ("001", 1, 300)
        );
        assert_eq!(import.too_long("ORDERLINE.DESCRIPTION"), TooLong::Truncate);
        assert_eq!(import.too_long("ORDER.CONTNAME"), TooLong::Refuse);
        let external = import.external().expect("template");
        let shop = shared::ShopId::new("demo-se").expect("shop");
        assert_eq!(external.render(&shop, "100234").as_deref(), Ok("100234"));

        let (_dir, path) = write(
            "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
             [mamut]\nwriter = \"import\"\n",
        );
        let e = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("recorder");
        assert_eq!(e.key, "mamut.writer", "{e}");
        let (_dir, path) = write(&format!(
            "{SQLSERVER}[mamut.import]\nclient = \"1\"\nprogram = \"x.exe\"\nshop_id = \"s\"\n"
        ));
        let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("sql writer: unchecked");
        assert_eq!(config.mamut.writer, Writer::Sql);
        let import = SQLSERVER.replace(
            "backend = \"sqlserver\"\n",
            "backend = \"sqlserver\"\nwriter = \"import\"\n",
        );
        let (_dir, path) = write(&format!(
            "{import}[mamut.import]\nclient = \"1\"\nprogram = \"x.exe\"\nshop_id = \"s\"\n"
        ));
        let e = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("client");
        assert_eq!(e.key, "mamut.import.client", "{e}");
    }

    const SQLSERVER: &str = "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
                             [mamut]\nbackend = \"sqlserver\"\n[mamut.sqlserver]\nuser = \"u\"\n";

    #[test]
    fn numbering_series_and_named_instances_are_read() {
        let (_dir, path) = write(&format!(
            "{SQLSERVER}host = \"srv\\\\MAMUT\"\nbrowser_port = 1500\n\
             order_numbering = {{ mode = \"series\", table = \"nummer\", key_column = \"serie\", key = \"ordre\", next_column = \"neste\" }}\n\
             customer_numbering = {{ mode = \"identity\" }}\n"
        ));
        let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("valid");
        let sql = &config.mamut.sqlserver;
        assert_eq!(sql.host_and_instance(), ("srv", Some("MAMUT")));
        assert_eq!(sql.browser_port, Some(1500));
        assert_eq!(sql.customer_numbering, Numbering::Identity);
        let Numbering::Series(series) = &sql.order_numbering else {
            panic!("series expected: {:?}", sql.order_numbering);
        };
        assert_eq!(
            (series.table.as_str(), series.key.as_str()),
            ("nummer", "ordre")
        );
    }

    #[test]
    fn the_keys_rows_are_found_by_are_never_truncated() {
        let (_dir, path) = write(&format!("{SQLSERVER}on_too_long = \"truncate\"\n"));
        let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("loads");
        let sql = &config.mamut.sqlserver;
        for key in KEY_FIELDS {
            assert_eq!(sql.too_long(key), TooLong::Refuse, "{key}");
        }
        assert_eq!(sql.too_long("customers.name"), TooLong::Truncate);
    }

    #[test]
    fn bad_sqlserver_settings_are_named() {
        for (extra, key) in [
            (
                "trust_server_certificate = true\nca_file = \"ca.pem\"\n",
                "mamut.sqlserver.ca_file",
            ),
            ("pool_size = 0\n", "mamut.sqlserver.pool_size"),
            (
                "[mamut.sqlserver.on_too_long_fields]\n\"orders.nope\" = \"truncate\"\n",
                "mamut.sqlserver.on_too_long_fields",
            ),
            (
                "order_numbering = { mode = \"series\", table = \"x;y\", key_column = \"k\", key = \"o\", next_column = \"n\" }\n",
                "mamut.sqlserver.order_numbering",
            ),
            (
                "[mamut.sqlserver.on_too_long_fields]\n\"orders.external_no\" = \"truncate\"\n",
                "mamut.sqlserver.on_too_long_fields",
            ),
        ] {
            let (_dir, path) = write(&format!("{SQLSERVER}{extra}"));
            let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err(extra);
            assert_eq!(bad.key, key, "{bad}");
        }
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_authentication_is_refused_off_windows() {
        let (_dir, path) = write(&format!("{SQLSERVER}authentication = \"windows\"\n"));
        let bad = AgentConfig::load(Some(&path), &env_of(&[])).expect_err("not on Windows");
        assert_eq!(bad.key, "mamut.sqlserver.authentication");
        assert!(
            bad.message.contains("only when the agent runs on Windows"),
            "{bad}"
        );
    }

    /// The Windows build (scripts/windows-check.sh, run under wine) accepts integrated
    /// authentication, without a SQL login.
    #[cfg(windows)]
    #[test]
    fn windows_authentication_is_accepted_on_windows() {
        let config = "[relay]\nurl = \"wss://r/agent/v1/connect\"\ntoken = \"t\"\n\
                      [mamut]\nbackend = \"sqlserver\"\n[mamut.sqlserver]\nauthentication = \"windows\"\n";
        let (_dir, path) = write(config);
        let config = AgentConfig::load(Some(&path), &env_of(&[])).expect("valid on Windows");
        assert_eq!(
            config.mamut.sqlserver.authentication,
            Authentication::Windows
        );
    }
}
