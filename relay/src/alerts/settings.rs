//! A tenant's alert settings: where alerts go, in which language, and the thresholds of its
//! conditions. Stored as JSON in `alert_settings.settings`; checked before they are stored.

use serde::{Deserialize, Serialize};

use crate::accounts::Language;

/// Most e-mail recipients of one tenant's alerts.
pub const MAX_RECIPIENTS: usize = 20;

/// Longest webhook URL accepted.
const MAX_URL_LEN: usize = 2048;

/// A tenant's alert settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Who receives alert e-mails and the daily digest (at most 20 addresses).
    pub emails: Vec<String>,
    /// An incoming webhook (Slack, Teams, or any HTTPS endpoint) that receives alerts as
    /// JSON. It may hold a secret token, so the API shows only its host and it is never
    /// logged whole.
    pub webhook_url: Option<String>,
    /// The language of the alerts' texts.
    #[schema(value_type = String, example = "en")]
    pub language: Language,
    /// The agent offline this many minutes (fractions allowed) raises an alert.
    pub agent_offline_minutes: f64,
    /// The oldest event waiting for delivery older than this many minutes raises an alert.
    pub queue_age_minutes: f64,
    /// A shop "keeps refusing" when one change failed this many times in a row, or one went
    /// to the dead-letter list in the last hour.
    pub shop_refusing_failures: u32,
    /// Events in the dead-letter list raise an alert.
    pub dead_letters: bool,
    /// A daily digest of the last 24 hours' failures by e-mail.
    pub digest: bool,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            emails: Vec::new(),
            webhook_url: None,
            language: Language::En,
            agent_offline_minutes: 10.0,
            queue_age_minutes: 30.0,
            shop_refusing_failures: 5,
            dead_letters: true,
            digest: true,
        }
    }
}

impl AlertSettings {
    /// Reads stored settings (JSON).
    pub fn from_stored(json: &str) -> Result<Self, String> {
        let settings: Self = serde_json::from_str(json)
            .map_err(|e| format!("the stored alert settings do not read back: {e}"))?;
        settings.check()?;
        Ok(settings)
    }

    /// The JSON they are stored as.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Checks every field; the error names the field and says what is allowed.
    pub fn check(&self) -> Result<(), String> {
        if self.emails.len() > MAX_RECIPIENTS {
            return Err(format!(
                "emails: at most {MAX_RECIPIENTS} recipients, not {}",
                self.emails.len()
            ));
        }
        for address in &self.emails {
            if address.len() > 254 || address.parse::<lettre::Address>().is_err() {
                return Err(format!(
                    "emails: {:?} is not an e-mail address such as ops@example.com",
                    truncated(address)
                ));
            }
        }
        if let Some(url) = &self.webhook_url {
            check_webhook_url(url)?;
        }
        minutes("agent_offline_minutes", self.agent_offline_minutes)?;
        minutes("queue_age_minutes", self.queue_age_minutes)?;
        if !(1..=1000).contains(&self.shop_refusing_failures) {
            return Err(format!(
                "shop_refusing_failures: must be between 1 and 1000, not {}",
                self.shop_refusing_failures
            ));
        }
        Ok(())
    }

    /// Where the webhook goes, for logs and the API: its scheme and host, never its path
    /// (which may be a secret token).
    pub fn webhook_host(&self) -> Option<String> {
        self.webhook_url.as_deref().map(url_host)
    }
}

/// A threshold in minutes: from 3 seconds to a week.
fn minutes(field: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && (0.05..=10_080.0).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field}: must be between 0.05 and 10080 (a week), not {value}"
        ))
    }
}

/// An alert webhook must be `https://`, or `http://` to this machine (a local sink).
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "webhook_url: at most {MAX_URL_LEN} characters, not {}",
            url.len()
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("webhook_url: not a URL ({e}); expected https://host/path"))?;
    let host = parsed.host_str().unwrap_or_default();
    let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match parsed.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if local => Ok(()),
        _ => Err(format!(
            "webhook_url: must be https:// (http:// only to localhost or 127.0.0.1), not {}",
            url_host(url)
        )),
    }
}

/// An alert webhook a tenant account may set: `https://` to a host that is not this machine
/// or a private network given as an address (`localhost`, `127.0.0.1`, `10.…`, `192.168.…`,
/// `169.254.…`, `fc00::/7`, `fe80::/10`…). Only an operator may point alerts at a local sink.
pub fn check_tenant_webhook_url(url: &str) -> Result<(), String> {
    check_webhook_url(url)?;
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("webhook_url: not a URL ({e}); expected https://host/path"))?;
    let host = parsed.host_str().unwrap_or_default();
    if parsed.scheme() != "https" {
        return Err(format!(
            "webhook_url: must be https:// (only an operator may set http:// to localhost), not {}",
            url_host(url)
        ));
    }
    if crate::hosts::is_internal_host(host) {
        return Err(format!(
            "webhook_url: {} is this machine or a private network; an alert webhook must be \
             a public https:// address (only an operator may set a local one)",
            url_host(url)
        ));
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL, without its path, query or credentials.
pub fn url_host(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default()
            )
        }
        Err(_) => "(not a URL)".into(),
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_read_back() {
        let settings = AlertSettings::default();
        settings.check().expect("defaults are valid");
        let back = AlertSettings::from_stored(&settings.to_stored()).expect("reads back");
        assert_eq!(back, settings);
        let partial = AlertSettings::from_stored(r#"{"emails":["ops@example.com"]}"#)
            .expect("missing fields take their defaults");
        assert_eq!(partial.queue_age_minutes, 30.0);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |settings: AlertSettings, field: &str| {
            let e = settings.check().expect_err("invalid");
            assert!(e.starts_with(field), "{e}");
        };
        bad(
            AlertSettings {
                emails: vec!["not an address".into()],
                ..Default::default()
            },
            "emails",
        );
        bad(
            AlertSettings {
                emails: vec!["a@example.com".into(); 21],
                ..Default::default()
            },
            "emails",
        );
        bad(
            AlertSettings {
                agent_offline_minutes: 0.0,
                ..Default::default()
            },
            "agent_offline_minutes",
        );
        bad(
            AlertSettings {
                queue_age_minutes: f64::NAN,
                ..Default::default()
            },
            "queue_age_minutes",
        );
        bad(
            AlertSettings {
                shop_refusing_failures: 0,
                ..Default::default()
            },
            "shop_refusing_failures",
        );
        assert!(AlertSettings::from_stored(r#"{"colour":"red"}"#).is_err());
    }

    #[test]
    fn a_tenant_webhook_is_public_https() {
        check_tenant_webhook_url("https://hooks.slack.com/services/T0/B0/secret").expect("https");
        check_tenant_webhook_url("https://8.8.8.8/hook").expect("a public address");
        for url in [
            "http://localhost/hook",
            "http://127.0.0.1:9000/hook",
            "https://localhost/hook",
            "https://LocalHost./hook",
            "https://a.localhost/hook",
            "https://127.0.0.1/hook",
            "https://2130706433/hook",
            "https://10.1.2.3/hook",
            "https://172.16.0.1/hook",
            "https://192.168.1.1/hook",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
        ] {
            let e = check_tenant_webhook_url(url).expect_err(url);
            assert!(e.starts_with("webhook_url:"), "{url}: {e}");
            assert!(!e.contains("/hook"), "{url}: the path is not shown: {e}");
        }
    }

    #[test]
    fn webhooks_are_https_or_local_and_shown_without_their_path() {
        check_webhook_url("https://hooks.slack.com/services/T0/B0/secret").expect("https");
        check_webhook_url("http://127.0.0.1:9000/hook").expect("a local sink");
        check_webhook_url("http://localhost/hook").expect("a local sink");
        let e = check_webhook_url("http://hooks.example.com/T0/secret").expect_err("plain http");
        assert!(!e.contains("secret"), "{e}");
        assert!(check_webhook_url("ftp://example.com/x").is_err());
        assert_eq!(
            url_host("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            url_host("http://127.0.0.1:9000/hook"),
            "http://127.0.0.1:9000"
        );
    }
}
