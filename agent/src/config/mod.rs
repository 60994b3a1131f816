//! Agent configuration: defaults, then `agent.toml`, then `AGENT_*` environment variables.
//! Validated before start-up; every error names the key it is about. The file is read as an
//! [`AgentFile`] (what is written), then checked into an [`AgentConfig`], whose relay
//! addresses and proxy setting are parsed once, here.
//!
//! - [`relay`]: `[relay]`, the connection to the relay.
//! - `[mamut]` and `[mamut.sqlserver]`: [`crate::mamut::settings`], re-exported here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use shared::settings::{ConfigError, Secret};
use shared::settings::{parse, toml_error};

pub mod relay;

pub use crate::mamut::settings::{
    Authentication, CustomerMatch, Encryption, KEY_FIELDS, MamutBackend, MamutConfig, Numbering,
    Series, SeriesHolds, SqlServerConfig, TEXT_FIELDS, TooLong, UnknownArticle, Writer,
};
pub use relay::{RelayConfig, RelaySection};

/// The configuration as written: the file's sections over the defaults, then the environment;
/// not yet checked.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AgentFile {
    pub relay: RelaySection,
    pub backoff: BackoffConfig,
    pub mamut: MamutConfig,
    pub watch: WatchConfig,
}

/// The configuration the agent runs with, checked ([`AgentConfig::load`]).
#[derive(Debug, Clone)]
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
            None => AgentFile::default().finish(env),
        }
    }

    /// The configuration from a file's bytes (UTF-8 or UTF-16 with its byte order mark, see
    /// [`AgentConfig::load`]), then the environment; `origin` names the file in errors.
    pub fn from_bytes(
        bytes: &[u8],
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = crate::text::decode_text(bytes).map_err(|e| error(origin, e))?;
        let file: AgentFile = toml::from_str(&text).map_err(|e: toml::de::Error| {
            error(origin, toml_error(&text, e.message(), e.span()))
        })?;
        file.finish(env)
    }
}

impl AgentFile {
    /// The environment over the file, then the checks.
    fn finish(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<AgentConfig, ConfigError> {
        self.apply_env(env)?;
        self.validate()
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

    fn validate(self) -> Result<AgentConfig, ConfigError> {
        let relay = self.relay.load()?;
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
        Ok(AgentConfig {
            relay,
            backoff: self.backoff,
            mamut: self.mamut,
            watch: self.watch,
        })
    }
}

#[cfg(test)]
mod tests;
