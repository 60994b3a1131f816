//! Relay configuration: defaults, then an optional TOML file, then `RELAY_*` environment
//! variables. Validated before start-up; every error names the key it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared::settings::parse;
pub use shared::settings::{ConfigError, Secret};

use crate::store::StoreLocation;

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
        }
    }
}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(key, message)
}

impl Config {
    /// Loads the configuration. `env` looks up an environment variable (a function, so tests
    /// need not touch the process environment).
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let key = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| error(&key, e.to_string()))?;
                toml::from_str(&text).map_err(|e| error(&key, e.to_string()))?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |key: &str| env(key).filter(|v| !v.is_empty());
        if let Some(v) = get("RELAY_LISTEN") {
            self.listen = parse("RELAY_LISTEN", &v)?;
        }
        if let Some(v) = get("RELAY_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("RELAY_ADMIN_TOKEN") {
            self.admin_token = Some(Secret::new(v));
        }
        if let Some(v) = get("RELAY_ISSUER") {
            self.issuer = v;
        }
        if let Some(v) = get("RELAY_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("RELAY_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("RELAY_WEBHOOK_TOLERANCE_SECS") {
            self.webhook_tolerance_secs = parse("RELAY_WEBHOOK_TOLERANCE_SECS", &v)?;
        }
        if let Some(v) = get("RELAY_ACK_TIMEOUT_SECS") {
            self.ack_timeout_secs = parse("RELAY_ACK_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("RELAY_HEARTBEAT_SECS") {
            self.heartbeat_secs = parse("RELAY_HEARTBEAT_SECS", &v)?;
        }
        if let Some(v) = get("RELAY_MAX_CREDIT") {
            self.max_credit = parse("RELAY_MAX_CREDIT", &v)?;
        }
        if let Some(v) = get("RELAY_LOG_JSON") {
            self.log_json = parse("RELAY_LOG_JSON", &v)?;
        }
        if let Some(v) = get("RELAY_DISPATCH_FLUSH_MS") {
            self.dispatch_flush_ms = parse("RELAY_DISPATCH_FLUSH_MS", &v)?;
        }
        if let Some(v) = get("RELAY_DISPATCH_MAX_ATTEMPTS") {
            self.dispatch_max_attempts = parse("RELAY_DISPATCH_MAX_ATTEMPTS", &v)?;
        }
        if let Some(v) = get("RELAY_RETRY_BASE_MS") {
            self.retry_base_ms = parse("RELAY_RETRY_BASE_MS", &v)?;
        }
        if let Some(v) = get("RELAY_RETRY_CAP_MS") {
            self.retry_cap_ms = parse("RELAY_RETRY_CAP_MS", &v)?;
        }
        if let Some(v) = get("RELAY_LEASE_SECS") {
            self.lease_secs = parse("RELAY_LEASE_SECS", &v)?;
        }
        if let Some(v) = get("RELAY_RETENTION_DAYS") {
            self.retention_days = parse("RELAY_RETENTION_DAYS", &v)?;
        }
        if let Some(v) = get("RELAY_MAX_CONNECTIONS") {
            self.max_connections = parse("RELAY_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = get("RELAY_HEADER_TIMEOUT_SECS") {
            self.header_timeout_secs = parse("RELAY_HEADER_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = get("RELAY_IDLE_TIMEOUT_SECS") {
            self.idle_timeout_secs = parse("RELAY_IDLE_TIMEOUT_SECS", &v)?;
        }
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

    fn validate(&self) -> Result<(), ConfigError> {
        StoreLocation::parse(&self.database_url).map_err(|e| error("database_url", e))?;
        if self.issuer.trim().is_empty() {
            return Err(error("issuer", "must not be empty"));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(error("max_body_bytes", "must be between 1024 and 67108864"));
        }
        if !(1..=3600).contains(&self.webhook_tolerance_secs) {
            return Err(error(
                "webhook_tolerance_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=86_400).contains(&self.ack_timeout_secs) {
            return Err(error("ack_timeout_secs", "must be between 1 and 86400"));
        }
        if !(1..=300).contains(&self.heartbeat_secs) {
            return Err(error("heartbeat_secs", "must be between 1 and 300"));
        }
        if !(1..=4096).contains(&self.max_credit) {
            return Err(error("max_credit", "must be between 1 and 4096"));
        }
        if self.dispatch_flush_ms > 60_000 {
            return Err(error("dispatch_flush_ms", "must be at most 60000"));
        }
        if !(1..=1000).contains(&self.dispatch_max_attempts) {
            return Err(error("dispatch_max_attempts", "must be between 1 and 1000"));
        }
        if self.retry_base_ms == 0 || self.retry_base_ms > self.retry_cap_ms {
            return Err(error(
                "retry_base_ms",
                "must be at least 1 and at most retry_cap_ms",
            ));
        }
        if !(1..=3600).contains(&self.lease_secs) {
            return Err(error("lease_secs", "must be between 1 and 3600"));
        }
        if self.retention_days > 36_500 {
            return Err(error("retention_days", "must be at most 36500"));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(error("max_connections", "must be between 1 and 1000000"));
        }
        if !(1..=3600).contains(&self.header_timeout_secs) {
            return Err(error("header_timeout_secs", "must be between 1 and 3600"));
        }
        if !(1..=86_400).contains(&self.idle_timeout_secs) {
            return Err(error("idle_timeout_secs", "must be between 1 and 86400"));
        }
        if self.retry_cap_ms > 86_400_000 {
            return Err(error("retry_cap_ms", "must be at most 86400000 (a day)"));
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            return Err(error("admin_token", "must be at least 16 characters"));
        }
        Ok(())
    }

    pub fn store_location(&self) -> Result<StoreLocation, ConfigError> {
        StoreLocation::parse(&self.database_url).map_err(|e| error("database_url", e))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = Config::load(None, &env_of(&[])).expect("defaults are valid");
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert!(config.admin_token.is_none());
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n",
        )
        .expect("write");
        let env = env_of(&[
            ("RELAY_LISTEN", "127.0.0.1:9100"),
            ("RELAY_ADMIN_TOKEN", "0123456789abcdef"),
        ]);
        let config = Config::load(Some(&path), &env).expect("valid");
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.max_body_bytes, 4096);
        assert_eq!(format!("{:?}", config.admin_token), "Some(Secret(***))");
    }

    #[test]
    fn errors_name_the_key() {
        let bad = Config::load(None, &env_of(&[("RELAY_LISTEN", "nowhere")])).expect_err("invalid");
        assert_eq!(bad.key, "RELAY_LISTEN");
        let bad = Config::load(None, &env_of(&[("RELAY_DATABASE_URL", "mysql://x")]))
            .expect_err("invalid");
        assert_eq!(bad.key, "database_url");
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n").expect("write");
        let bad = Config::load(Some(&path), &env_of(&[])).expect_err("unknown key");
        assert!(bad.message.contains("listne"), "{bad}");
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/relay.example.toml");
        let config = Config::load(Some(&path), &env_of(&[])).expect("the example loads");
        assert_eq!(config.listen, Config::default().listen);
    }
}
