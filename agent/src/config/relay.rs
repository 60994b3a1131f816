//! `[relay]`: where the relay is, the agent's token, trust, proxy, credit and heartbeat. Read
//! as written ([`RelaySection`]), then checked and parsed once into [`RelayConfig`]: the
//! addresses as [`Endpoint`]s and the proxy as a [`Setting`], which the transport takes.

use std::path::PathBuf;

use serde::Deserialize;
use shared::settings::{ConfigError, Secret};

use super::error;
use crate::proxy::Setting;
use crate::transport::Endpoint;

/// `[relay]` as the file and the environment give it. `Debug` by hand: the proxy URL's
/// password stays out of it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
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

impl std::fmt::Debug for RelaySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySection")
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

impl Default for RelaySection {
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

impl RelaySection {
    /// Checks the section and parses its addresses and proxy setting; each error names its key.
    pub(super) fn load(self) -> Result<RelayConfig, ConfigError> {
        if self.url.is_empty() {
            return Err(error(
                "relay.url",
                "is required (e.g. wss://relay.example.com/agent/v1/connect)",
            ));
        }
        let url =
            Endpoint::parse(&self.url, self.insecure_dev).map_err(|e| error("relay.url", e))?;
        let fallback_urls = self
            .fallback_urls
            .iter()
            .map(|url| {
                Endpoint::parse(url, self.insecure_dev).map_err(|e| error("relay.fallback_urls", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.token.expose().trim().is_empty() {
            return Err(error(
                "relay.token",
                "is required (issued by the relay: relay agent create)",
            ));
        }
        let proxy = match &self.proxy {
            Some(proxy) => Setting::parse(Some(proxy))
                .and_then(|setting| setting.supported().map(|()| setting))
                .map_err(|e| error("relay.proxy", e))?,
            None => Setting::System,
        };
        if !(1..=1024).contains(&self.credit) {
            return Err(error("relay.credit", "must be between 1 and 1024"));
        }
        if !(1..=300).contains(&self.heartbeat_secs) {
            return Err(error("relay.heartbeat_secs", "must be between 1 and 300"));
        }
        Ok(RelayConfig {
            url,
            fallback_urls,
            token: self.token,
            ca_file: self.ca_file,
            insecure_dev: self.insecure_dev,
            proxy,
            credit: self.credit,
            heartbeat_secs: self.heartbeat_secs,
        })
    }
}

/// The relay connection as loaded and checked. `Debug` by hand: the proxy URL's password
/// stays out of it.
#[derive(Clone)]
pub struct RelayConfig {
    /// The relay's address.
    pub url: Endpoint,
    /// Its other instances, tried in turn when one fails.
    pub fallback_urls: Vec<Endpoint>,
    pub token: Secret,
    /// Extra trusted root certificates, added to the system's.
    pub ca_file: Option<PathBuf>,
    /// Whether plain `ws://` was allowed (local development).
    pub insecure_dev: bool,
    /// `relay.proxy`; [`Setting::System`] when not set.
    pub proxy: Setting,
    pub credit: u32,
    pub heartbeat_secs: u32,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("url", &self.url.url)
            .field(
                "fallback_urls",
                &self
                    .fallback_urls
                    .iter()
                    .map(|e| &e.url)
                    .collect::<Vec<_>>(),
            )
            .field("token", &self.token)
            .field("ca_file", &self.ca_file)
            .field("insecure_dev", &self.insecure_dev)
            .field("proxy", &self.proxy.redacted())
            .field("credit", &self.credit)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .finish()
    }
}

impl RelayConfig {
    /// The relay's addresses: `url` first, then the fallbacks.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        std::iter::once(&self.url).chain(&self.fallback_urls)
    }

    /// The relay's addresses as written: `url` first, then the fallbacks.
    pub fn urls(&self) -> Vec<&str> {
        self.endpoints().map(|e| e.url.as_str()).collect()
    }
}
