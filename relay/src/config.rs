//! Relay configuration: defaults, then an optional TOML file, then `RELAY_*` environment
//! variables. Validated before start-up; every error names the setting it is about as the user
//! wrote it: the environment variable (`RELAY_MAX_CONNECTIONS`) when the value came from the
//! environment, else the file's key (`max_connections`), and says what is allowed.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use shared::settings::{ConfigError, Secret};
use shared::settings::{parse, toml_error};

use crate::store::StoreLocation;

mod smtp;
pub use smtp::{SmtpConfig, StartTls};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`RELAY_LISTEN`).
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://user:password@host/db?sslmode=…` as libpq reads it
    /// (`RELAY_DATABASE_URL`; see `store::pg::tls`).
    pub database_url: String,
    /// Bearer token of the admin API (`RELAY_ADMIN_TOKEN`); without it the admin API refuses
    /// every request.
    pub admin_token: Option<Secret>,
    /// `iss` of agent tokens (`RELAY_ISSUER`).
    pub issuer: String,
    /// Largest webhook body accepted, in bytes (`RELAY_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Allowed clock difference for `webhook-timestamp`, in seconds.
    pub webhook_tolerance_secs: i64,
    /// An unacknowledged delivery is sent again after this long (`RELAY_ACK_TIMEOUT_SECS`).
    pub ack_timeout_secs: u64,
    /// Heartbeat interval announced to agents (`RELAY_HEARTBEAT_SECS`).
    pub heartbeat_secs: u32,
    /// Upper bound of an agent's credit window (`RELAY_MAX_CREDIT`).
    pub max_credit: u32,
    /// How long shutdown waits for in-flight work.
    pub shutdown_timeout_secs: u64,
    /// Serve HTTPS/WSS with this certificate chain and key (`RELAY_TLS_CERT`,
    /// `RELAY_TLS_KEY`); plain HTTP without it, e.g. behind a TLS-terminating proxy.
    pub tls: Option<TlsConfig>,
    /// Log JSON lines instead of text (`RELAY_LOG_JSON`).
    pub log_json: bool,
    /// How long the dispatcher lets changes for a shop gather before it sends them, in
    /// milliseconds (`RELAY_DISPATCH_FLUSH_MS`): more coalescing, fewer calls.
    pub dispatch_flush_ms: u64,
    /// Attempts before a change that the shop keeps refusing goes to the dead-letter list
    /// (`RELAY_DISPATCH_MAX_ATTEMPTS`).
    pub dispatch_max_attempts: u32,
    /// First retry delay towards a shop, in milliseconds; doubles per attempt, with full
    /// jitter (`RELAY_RETRY_BASE_MS`).
    pub retry_base_ms: u64,
    /// Longest retry delay towards a shop, in milliseconds (`RELAY_RETRY_CAP_MS`).
    pub retry_cap_ms: u64,
    /// How long a relay instance's claim on a tenant's delivery or a shop's dispatch lasts
    /// without renewal (`RELAY_LEASE_SECS`): after an instance dies, another takes over its
    /// work within this time.
    pub lease_secs: u64,
    /// Finished events, pushes and sent changes are deleted after this many days
    /// (`RELAY_RETENTION_DAYS`); 0 keeps everything.
    pub retention_days: u32,
    /// Open connections (HTTP and agent WebSockets together) beyond which a new one is closed
    /// at once (`RELAY_MAX_CONNECTIONS`), so file descriptors remain for the store and for
    /// the connections being served.
    pub max_connections: usize,
    /// A request's headers must arrive in full within this many seconds of the connection
    /// opening or of the previous response (`RELAY_HEADER_TIMEOUT_SECS`); this also closes
    /// idle keep-alive connections and slowloris requests.
    pub header_timeout_secs: u64,
    /// An HTTP connection on which nothing is received or sent for this many seconds is
    /// closed, e.g. a stalled request body (`RELAY_IDLE_TIMEOUT_SECS`). Agent WebSocket
    /// sessions are exempt: they have their own heartbeats.
    pub idle_timeout_secs: u64,
    /// Events a tenant may have waiting (for delivery, for their order to be fetched, or held)
    /// before its webhooks are answered 503 with `Retry-After`, so the shop sends them again
    /// later (`RELAY_MAX_QUEUED_PER_TENANT`): an agent offline for weeks does not fill the
    /// relay's disk for every tenant.
    pub max_queued_per_tenant: u64,
    /// The SMTP server alert e-mails go through (`[smtp]`, `RELAY_SMTP_*`); without it,
    /// alerts go only to webhooks.
    pub smtp: Option<SmtpConfig>,
    /// How often each tenant's alert conditions are evaluated, in seconds
    /// (`RELAY_ALERTS_INTERVAL_SECS`).
    pub alerts_interval_secs: u64,
    /// The hour (UTC, 0–23) from which each day's digest of failures is sent
    /// (`RELAY_ALERTS_DIGEST_HOUR`).
    pub alerts_digest_hour: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            database_url: "sqlite://relay-data/relay.sqlite".into(),
            admin_token: None,
            issuer: "relay".into(),
            max_body_bytes: 1024 * 1024,
            webhook_tolerance_secs: 300,
            ack_timeout_secs: 60,
            heartbeat_secs: 15,
            max_credit: 256,
            shutdown_timeout_secs: 10,
            tls: None,
            log_json: false,
            dispatch_flush_ms: 200,
            dispatch_max_attempts: 20,
            retry_base_ms: 1_000,
            retry_cap_ms: 600_000,
            lease_secs: 15,
            retention_days: 30,
            max_connections: 4096,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_queued_per_tenant: 100_000,
            smtp: None,
            alerts_interval_secs: 60,
            alerts_digest_hour: 6,
        }
    }
}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}

/// The environment variable of the file's key `key` (`max_connections`:
/// `RELAY_MAX_CONNECTIONS`).
fn env_var(key: &str) -> String {
    format!("RELAY_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Where each setting's value came from, so that an invalid one is named as the user set it.
#[derive(Debug, Default)]
struct Origins<'a> {
    /// The configuration file read, if any (its path).
    file: Option<&'a str>,
    /// The keys that file sets.
    in_file: Vec<String>,
    /// The settings (by file key) an environment variable set.
    from_env: Vec<&'static str>,
}

impl Origins<'_> {
    /// The setting `key` as the user set it: its environment variable or the file's key.
    fn name(&self, key: &str) -> String {
        if self.from_env.contains(&key) {
            env_var(key)
        } else {
            key.to_owned()
        }
    }

    /// An error about setting `key` (a file key), named as it was set, and where.
    fn error(&self, key: &str, message: impl Display) -> ConfigError {
        if self.from_env.contains(&key) {
            return error(
                &env_var(key),
                format!(
                    "{message} (from the environment, where it overrides {key} of the \
                     configuration file)"
                ),
            );
        }
        match self.file {
            Some(file) if self.in_file.iter().any(|k| k == key) => {
                error(key, format!("{message} (in {file})"))
            }
            _ => error(key, format!("{message} (the default)")),
        }
    }

    /// `value` of setting `key` lies in `allowed`; the error says the range and the value
    /// (only for numbers: never a secret).
    fn within<T: PartialOrd + Display>(
        &self,
        key: &str,
        value: T,
        allowed: RangeInclusive<T>,
    ) -> Result<(), ConfigError> {
        if allowed.contains(&value) {
            return Ok(());
        }
        Err(self.error(
            key,
            format!(
                "must be between {} and {}, not {value}",
                allowed.start(),
                allowed.end()
            ),
        ))
    }
}

impl Config {
    /// Loads the configuration. `env` looks up an environment variable (a function, so tests
    /// need not touch the process environment).
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        match file {
            Some(path) => {
                let key = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| error(&key, e.to_string()))?;
                Self::from_toml(&text, &key, env)
            }
            None => Self::finish(Config::default(), Origins::default(), env),
        }
    }

    /// The configuration from a file's text, then the environment; `origin` names the file in
    /// errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let config = toml::from_str(text)
            .map_err(|e: toml::de::Error| error(origin, toml_error(text, e.message(), e.span())))?;
        let origins = Origins {
            file: Some(origin),
            // It parsed as the configuration, so as a table too.
            in_file: toml::from_str::<toml::Table>(text)
                .map(|table| file_keys(&table))
                .unwrap_or_default(),
            from_env: Vec::new(),
        };
        Self::finish(config, origins, env)
    }

    fn finish(
        mut config: Config,
        mut origins: Origins<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        config.apply_env(env, &mut origins.from_env)?;
        config.validate(&origins)?;
        Ok(config)
    }

    /// Applies the `RELAY_*` variables set (and not empty); notes in `from_env` which
    /// settings they set.
    fn apply_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        from_env: &mut Vec<&'static str>,
    ) -> Result<(), ConfigError> {
        // The variable of the file's key `key`, and its value, when set.
        let mut get = |key: &'static str| {
            let var = env_var(key);
            let value = env(&var).filter(|v| !v.is_empty())?;
            from_env.push(key);
            Some((var, value))
        };
        if let Some((var, v)) = get("listen") {
            self.listen = parse(&var, &v)?;
        }
        if let Some((_, v)) = get("database_url") {
            self.database_url = v;
        }
        if let Some((_, v)) = get("admin_token") {
            self.admin_token = Some(Secret::new(v));
        }
        if let Some((_, v)) = get("issuer") {
            self.issuer = v;
        }
        if let Some((var, v)) = get("max_body_bytes") {
            self.max_body_bytes = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("webhook_tolerance_secs") {
            self.webhook_tolerance_secs = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("ack_timeout_secs") {
            self.ack_timeout_secs = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("heartbeat_secs") {
            self.heartbeat_secs = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("max_credit") {
            self.max_credit = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("log_json") {
            self.log_json = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("dispatch_flush_ms") {
            self.dispatch_flush_ms = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("dispatch_max_attempts") {
            self.dispatch_max_attempts = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("retry_base_ms") {
            self.retry_base_ms = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("retry_cap_ms") {
            self.retry_cap_ms = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("lease_secs") {
            self.lease_secs = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("retention_days") {
            self.retention_days = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("max_connections") {
            self.max_connections = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("header_timeout_secs") {
            self.header_timeout_secs = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("idle_timeout_secs") {
            self.idle_timeout_secs = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("max_queued_per_tenant") {
            self.max_queued_per_tenant = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("alerts_interval_secs") {
            self.alerts_interval_secs = parse(&var, &v)?;
        }
        if let Some((var, v)) = get("alerts_digest_hour") {
            self.alerts_digest_hour = parse(&var, &v)?;
        }
        smtp::apply_env(&mut self.smtp, &mut get)?;
        let get = |var: &str| env(var).filter(|v| !v.is_empty());
        match (get("RELAY_TLS_CERT"), get("RELAY_TLS_KEY")) {
            (Some(cert), Some(key)) => {
                self.tls = Some(TlsConfig {
                    cert: cert.into(),
                    key: key.into(),
                });
            }
            (None, None) => {}
            _ => {
                return Err(error(
                    "RELAY_TLS_CERT",
                    "RELAY_TLS_CERT and RELAY_TLS_KEY go together",
                ));
            }
        }
        Ok(())
    }

    /// Checks every setting; errors name the setting as `origins` says it was set. Values are
    /// quoted only for numbers: the database URL (a password) and the admin token never.
    fn validate(&self, origins: &Origins<'_>) -> Result<(), ConfigError> {
        StoreLocation::parse(&self.database_url).map_err(|e| origins.error("database_url", e))?;
        if self.issuer.trim().is_empty() {
            return Err(origins.error("issuer", "must not be empty"));
        }
        origins.within(
            "max_body_bytes",
            self.max_body_bytes,
            1024..=64 * 1024 * 1024,
        )?;
        origins.within(
            "webhook_tolerance_secs",
            self.webhook_tolerance_secs,
            1..=3600,
        )?;
        origins.within("ack_timeout_secs", self.ack_timeout_secs, 1..=86_400)?;
        origins.within("heartbeat_secs", self.heartbeat_secs, 1..=300)?;
        origins.within("max_credit", self.max_credit, 1..=4096)?;
        origins.within("dispatch_flush_ms", self.dispatch_flush_ms, 0..=60_000)?;
        origins.within(
            "dispatch_max_attempts",
            self.dispatch_max_attempts,
            1..=1000,
        )?;
        if self.retry_cap_ms > 86_400_000 {
            return Err(origins.error(
                "retry_cap_ms",
                format!(
                    "must be at most 86400000 (a day), not {}",
                    self.retry_cap_ms
                ),
            ));
        }
        if self.retry_base_ms == 0 || self.retry_base_ms > self.retry_cap_ms {
            return Err(origins.error(
                "retry_base_ms",
                format!(
                    "must be at least 1 and at most {} ({}), not {}",
                    origins.name("retry_cap_ms"),
                    self.retry_cap_ms,
                    self.retry_base_ms
                ),
            ));
        }
        origins.within("lease_secs", self.lease_secs, 1..=3600)?;
        if self.retention_days > 36_500 {
            return Err(origins.error(
                "retention_days",
                format!(
                    "must be at most 36500 (0 keeps everything), not {}",
                    self.retention_days
                ),
            ));
        }
        origins.within("max_connections", self.max_connections, 1..=1_000_000)?;
        origins.within("header_timeout_secs", self.header_timeout_secs, 1..=3600)?;
        origins.within("idle_timeout_secs", self.idle_timeout_secs, 1..=86_400)?;
        origins.within(
            "max_queued_per_tenant",
            self.max_queued_per_tenant,
            1..=100_000_000,
        )?;
        origins.within("alerts_interval_secs", self.alerts_interval_secs, 1..=3600)?;
        origins.within("alerts_digest_hour", self.alerts_digest_hour, 0..=23)?;
        if let Some(smtp) = &self.smtp {
            smtp.validate(origins)?;
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            return Err(origins.error("admin_token", "must be at least 16 characters"));
        }
        Ok(())
    }

    pub fn store_location(&self) -> Result<StoreLocation, ConfigError> {
        StoreLocation::parse(&self.database_url)
            .map_err(|e| error("database_url (RELAY_DATABASE_URL)", e))
    }
}

/// The keys a configuration file sets, a table's as `table.key` too (`smtp.host`).
fn file_keys(table: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    for (key, value) in table {
        keys.push(key.clone());
        if let toml::Value::Table(inner) = value {
            keys.extend(inner.keys().map(|k| format!("{key}.{k}")));
        }
    }
    keys
}

#[cfg(test)]
mod tests;
