//! The relay-wide SMTP server alert e-mails go through (`[smtp]`, `RELAY_SMTP_*`).

use serde::Deserialize;

use shared::settings::parse;

use super::{ConfigError, Origins, Secret};

/// Whether the connection to the SMTP server is upgraded with `STARTTLS` (as libcurl and
/// lettre name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    /// `STARTTLS` or no mail: a server that does not offer it is an error.
    #[default]
    Required,
    /// `STARTTLS` when the server offers it, else plain text.
    Opportunistic,
    /// Plain text only (a relay on the same host or a test server).
    None,
}

impl std::str::FromStr for StartTls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "required" => Ok(StartTls::Required),
            "opportunistic" => Ok(StartTls::Opportunistic),
            "none" => Ok(StartTls::None),
            _ => Err(format!(
                "expected required, opportunistic or none, not {s:?}"
            )),
        }
    }
}

/// The relay-wide SMTP server for alert e-mails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name of the server (also the name its TLS certificate must carry).
    #[serde(default)]
    pub host: String,
    #[serde(default = "SmtpConfig::default_port")]
    pub port: u16,
    #[serde(default)]
    pub starttls: StartTls,
    pub username: Option<String>,
    /// Never logged: `Debug` masks it.
    pub password: Option<Secret>,
    /// The `From` address of alert e-mails, e.g. `Relay alerts <alerts@example.com>`.
    #[serde(default)]
    pub from: String,
    /// Connecting and each SMTP command must finish within this many seconds.
    #[serde(default = "SmtpConfig::default_timeout")]
    pub timeout_secs: u64,
    /// One e-mail, from connecting to the server's answer, within this many seconds.
    #[serde(default = "SmtpConfig::default_send_timeout")]
    pub send_timeout_secs: u64,
}

impl SmtpConfig {
    fn default_port() -> u16 {
        587
    }

    fn default_timeout() -> u64 {
        10
    }

    fn default_send_timeout() -> u64 {
        60
    }

    pub(super) fn empty() -> Self {
        Self {
            host: String::new(),
            port: Self::default_port(),
            starttls: StartTls::default(),
            username: None,
            password: None,
            from: String::new(),
            timeout_secs: Self::default_timeout(),
            send_timeout_secs: Self::default_send_timeout(),
        }
    }

    /// Checks the server's settings; errors name the key as `origins` says it was set.
    pub(super) fn validate(&self, origins: &Origins<'_>) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() || self.host.len() > 253 {
            return Err(origins.error(
                "smtp.host",
                "must name the SMTP server (a host name of at most 253 characters)",
            ));
        }
        if self.port == 0 {
            return Err(origins.error("smtp.port", "must be between 1 and 65535, not 0"));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(origins.error(
                "smtp.from",
                "must be an e-mail address such as alerts@example.com or \
                 \"Relay <alerts@example.com>\"",
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(origins.error("smtp.username", "must be set when smtp.password is"));
        }
        if self.password.is_some() && self.starttls == StartTls::None {
            return Err(origins.error(
                "smtp.starttls",
                "must not be none when a password is set: the password would cross the \
                 network in plain text",
            ));
        }
        origins.within("smtp.timeout_secs", self.timeout_secs, 1..=600)?;
        origins.within("smtp.send_timeout_secs", self.send_timeout_secs, 1..=3600)
    }
}

/// Applies the `RELAY_SMTP_*` variables set; any of them makes an `[smtp]` server.
pub(super) fn apply_env(
    config: &mut Option<SmtpConfig>,
    get: &mut dyn FnMut(&'static str) -> Option<(String, String)>,
) -> Result<(), ConfigError> {
    let mut smtp = config.take().unwrap_or_else(SmtpConfig::empty);
    let mut any = false;
    if let Some((_, v)) = get("smtp.host") {
        smtp.host = v;
        any = true;
    }
    if let Some((var, v)) = get("smtp.port") {
        smtp.port = parse(&var, &v)?;
        any = true;
    }
    if let Some((var, v)) = get("smtp.starttls") {
        smtp.starttls = parse(&var, &v)?;
        any = true;
    }
    if let Some((_, v)) = get("smtp.username") {
        smtp.username = Some(v);
        any = true;
    }
    if let Some((_, v)) = get("smtp.password") {
        smtp.password = Some(Secret::new(v));
        any = true;
    }
    if let Some((_, v)) = get("smtp.from") {
        smtp.from = v;
        any = true;
    }
    if let Some((var, v)) = get("smtp.timeout_secs") {
        smtp.timeout_secs = parse(&var, &v)?;
        any = true;
    }
    if let Some((var, v)) = get("smtp.send_timeout_secs") {
        smtp.send_timeout_secs = parse(&var, &v)?;
        any = true;
    }
    if any || !smtp.host.is_empty() || !smtp.from.is_empty() {
        *config = Some(smtp);
    }
    Ok(())
}
