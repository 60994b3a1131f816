//! Which HTTP CONNECT proxy the agent goes through to reach the relay, and the tunnel through it.
//!
//! The order, first match wins:
//! 1. `relay.proxy` in the configuration: an `http://[user:password@]host[:port]` URL, `"none"`
//!    (or `"direct"`: no proxy at all, nothing else consulted), `"auto"` (Windows: WPAD
//!    auto-detection, DHCP then DNS) or `"pac:<url>"` (Windows: that PAC file).
//! 2. `HTTPS_PROXY`/`https_proxy`, minding `NO_PROXY`/`no_proxy`.
//! 3. On Windows, the machine's WinHTTP settings (what `netsh winhttp show proxy` shows), with
//!    their bypass list. Per-user Internet Options are not read: the service's account has none,
//!    and `agent check` run by an administrator would then report a proxy the service never
//!    uses; `netsh winhttp import proxy source=ie` copies them into WinHTTP.
//! 4. Direct.
//!
//! The environment is read once; the system's settings are read again at every connect attempt
//! (they are cheap to read and may change while the agent runs), before and outside the connect
//! timeout: a WPAD or PAC lookup gets 8 s of its own, then the WinHTTP settings apply.
//!
//! A proxy found by WPAD auto-detection gets no Negotiate/NTLM answer with the machine's
//! account (a spoofed WPAD answer could relay it); one named in relay.proxy, `HTTPS_PROXY`, the
//! WinHTTP settings or a `pac:` file does.
//!
//! - `url`: a proxy's `http://[user:password@]host[:port]` URL, and its redaction for logs.
//! - [`list`]: WinHTTP's proxy and bypass lists, parsed here so Linux tests them.
//! - [`tunnel`]: CONNECT, with Basic from the URL or Negotiate/NTLM through a
//!   [`tunnel::ProxyAuthenticator`] (SSPI on Windows).

pub mod list;
pub mod tunnel;
mod url;

use std::fmt;

pub(crate) use url::host_and_port;
pub use url::{Credentials, Proxy, authority, redacted};

pub use tunnel::{
    AuthProvider, NoAuth, NoLogonForWpad, ProxyAuthenticator, TunnelError, platform_auth, tunnel,
};

/// `relay.proxy` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Not set: `HTTPS_PROXY`, then (Windows) the WinHTTP settings, then direct.
    System,
    /// `"none"` or `"direct"`.
    Direct,
    Url(Proxy),
    /// `"auto"`: WPAD auto-detection (Windows).
    AutoDetect,
    /// `"pac:<url>"`: that PAC file (Windows).
    Pac(String),
}

impl Setting {
    pub fn parse(configured: Option<&str>) -> Result<Self, String> {
        let Some(text) = configured.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Self::System);
        };
        if text.eq_ignore_ascii_case("none") || text.eq_ignore_ascii_case("direct") {
            return Ok(Self::Direct);
        }
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::AutoDetect);
        }
        if let Some(url) = text.strip_prefix("pac:") {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                // Not repeated: it may be a mistyped URL with a password in it.
                return Err(
                    "pac: must be followed by the PAC file's http:// or https:// URL".to_owned(),
                );
            }
            return Ok(Self::Pac(url.to_owned()));
        }
        Proxy::parse(text).map(Self::Url)
    }

    /// Whether this platform can do what the setting asks.
    pub fn supported(&self) -> Result<(), String> {
        match self {
            Self::AutoDetect | Self::Pac(_) if !cfg!(windows) => Err(
                "\"auto\" and \"pac:<url>\" ask Windows' WinHTTP; on this system write the proxy \
                 as http://host:port or set HTTPS_PROXY"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The plan for reaching `target`: this setting, then the environment, then the system.
    pub fn plan(
        &self,
        target: &Target,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Plan, String> {
        self.supported().map_err(|e| format!("relay.proxy: {e}"))?;
        let system = |mode| Plan::System {
            mode,
            target: target.clone(),
        };
        match self {
            Setting::Url(proxy) => Ok(Plan::Fixed(Decision {
                proxy: Some(proxy.clone()),
                source: Source::Config,
            })),
            Setting::Direct => Ok(Plan::Fixed(Decision::direct(Source::Config))),
            Setting::AutoDetect => Ok(system(SystemMode::AutoDetect)),
            Setting::Pac(url) => Ok(system(SystemMode::Pac(url.clone()))),
            Setting::System => {
                let found = [("HTTPS_PROXY"), ("https_proxy")]
                    .into_iter()
                    .find_map(|name| env(name).filter(|v| !v.is_empty()).map(|v| (name, v)));
                let Some((name, url)) = found else {
                    // Only Windows has system settings, read at each attempt.
                    return Ok(if cfg!(windows) {
                        system(SystemMode::Default)
                    } else {
                        Plan::Fixed(Decision::direct(Source::Nothing))
                    });
                };
                let no_proxy = env("NO_PROXY")
                    .or_else(|| env("no_proxy"))
                    .unwrap_or_default();
                if exempt(&target.host, &no_proxy) {
                    return Ok(Plan::Fixed(Decision::direct(Source::NoProxy)));
                }
                let proxy = Proxy::parse(&url).map_err(|e| format!("{name}: {e}"))?;
                Ok(Plan::Fixed(Decision {
                    proxy: Some(proxy),
                    source: Source::Env(name),
                }))
            }
        }
    }

    /// The setting fit for logs, as [`redacted`] shows it written: a URL's user name and
    /// password hidden.
    pub fn redacted(&self) -> String {
        match self {
            Setting::System => "(not set)".to_owned(),
            Setting::Direct => "none".to_owned(),
            Setting::Url(proxy) if proxy.credentials.is_some() => {
                format!("http://<hidden>@{}", proxy.address())
            }
            Setting::Url(proxy) => format!("http://{}", proxy.address()),
            Setting::AutoDetect => "auto".to_owned(),
            Setting::Pac(url) => format!("pac:{url}"),
        }
    }
}

/// Where the decision came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `relay.proxy` (a URL, or `"none"`).
    Config,
    /// `HTTPS_PROXY` or `https_proxy` (the name as found).
    Env(&'static str),
    /// `HTTPS_PROXY` is set but `NO_PROXY` exempts the relay.
    NoProxy,
    /// The machine's WinHTTP settings (`netsh winhttp show proxy`).
    WinHttp,
    /// The WinHTTP settings' bypass list exempts the relay.
    WinHttpBypass,
    /// WPAD auto-detection.
    Wpad,
    /// The PAC file at this URL.
    Pac(String),
    /// Nothing configured anywhere.
    Nothing,
}

/// The proxy (or none) for one connect attempt, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub proxy: Option<Proxy>,
    pub source: Source,
}

impl Decision {
    fn direct(source: Source) -> Self {
        Self {
            proxy: None,
            source,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match &self.source {
            Source::Config if self.proxy.is_some() => "relay.proxy".to_owned(),
            Source::Config => "relay.proxy = \"none\"".to_owned(),
            Source::Env(name) => (*name).to_owned(),
            Source::NoProxy => "NO_PROXY exempts the relay from HTTPS_PROXY".to_owned(),
            Source::WinHttp => "WinHTTP settings, netsh winhttp show proxy".to_owned(),
            Source::WinHttpBypass => {
                "the bypass list of the WinHTTP settings exempts the relay".to_owned()
            }
            Source::Wpad => "WPAD auto-detection".to_owned(),
            Source::Pac(url) => format!("PAC file {url}"),
            Source::Nothing if cfg!(windows) => {
                "none configured: no relay.proxy, no HTTPS_PROXY, WinHTTP says direct".to_owned()
            }
            Source::Nothing => "none configured: no relay.proxy, no HTTPS_PROXY".to_owned(),
        };
        match &self.proxy {
            Some(proxy) => {
                let auth = if proxy.credentials.is_some() {
                    ", Basic credentials from the URL"
                } else {
                    ""
                };
                write!(f, "proxy {proxy} (from {from}{auth})")
            }
            None => write!(f, "no proxy ({from})"),
        }
    }
}

/// What the relay's address is, as the proxy lookup needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Target {
    /// The URL WinHTTP evaluates the PAC file or bypass list for.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/", authority(&self.host, self.port))
    }
}

/// What to do at each connect attempt: decided once (configuration, environment), or ask the
/// system each time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Fixed(Decision),
    System { mode: SystemMode, target: Target },
}

/// Which of the system's sources to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMode {
    /// The WinHTTP settings (`netsh winhttp`).
    Default,
    /// WPAD, then the WinHTTP settings.
    AutoDetect,
    /// The PAC file, then the WinHTTP settings.
    Pac(String),
}

/// The plan for reaching `target`: `relay.proxy` as written (parsed here), then the
/// environment, then the system. The agent parses the setting once, at configuration load, and
/// uses [`Setting::plan`].
pub fn plan(
    configured: Option<&str>,
    target: &Target,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, String> {
    Setting::parse(configured)
        .map_err(|e| format!("relay.proxy: {e}"))?
        .plan(target, env)
}

impl Plan {
    /// The decision for this connect attempt. A WPAD or PAC lookup is bounded (8 s), then the
    /// WinHTTP settings apply.
    pub async fn resolve(&self) -> Result<Decision, String> {
        match self {
            Self::Fixed(decision) => Ok(decision.clone()),
            Self::System { mode, target } => system(mode, target).await,
        }
    }
}

/// What the system said: a WinHTTP proxy list and bypass list, or direct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemAnswer {
    /// `None`: direct.
    pub proxies: Option<String>,
    pub bypass: Option<String>,
    pub source: Source,
}

/// Turns the system's answer into a decision for `target`.
pub fn decide(answer: SystemAnswer, target: &Target) -> Result<Decision, String> {
    let Some(proxies) = answer.proxies.filter(|p| !p.trim().is_empty()) else {
        return Ok(Decision::direct(answer.source));
    };
    if let Some(bypass) = &answer.bypass
        && list::bypassed(bypass, &target.host, target.port)
    {
        return Ok(Decision::direct(Source::WinHttpBypass));
    }
    let what = match &answer.source {
        Source::Wpad => "the proxy WPAD found",
        Source::Pac(_) => "the PAC file's proxy",
        _ => "the WinHTTP proxy setting",
    };
    let proxy = list::pick(&proxies, target.tls).map_err(|e| format!("{what}: {e}"))?;
    Ok(Decision {
        proxy,
        source: answer.source,
    })
}

/// Longest a WPAD or PAC lookup may take before the WinHTTP settings apply instead: it runs
/// before, not inside, the connect timeout, so that a slow one still leaves a working fallback.
#[cfg(windows)]
const SYSTEM_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

#[cfg(windows)]
async fn system(mode: &SystemMode, target: &Target) -> Result<Decision, String> {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::windows::proxy;

    static WARNED: AtomicBool = AtomicBool::new(false);
    let failed = |e: tokio::task::JoinError| format!("the system proxy lookup failed: {e}");
    let (asked, url) = (mode.clone(), target.url());
    let lookup = tokio::task::spawn_blocking(move || proxy::lookup(&asked, &url));
    let answer = match tokio::time::timeout(SYSTEM_LOOKUP_TIMEOUT, lookup).await {
        Ok(answer) => answer.map_err(failed)?,
        Err(_) => {
            // The lookup goes on in its thread, bounded by WinHTTP's own timeouts.
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    ?mode,
                    timeout = ?SYSTEM_LOOKUP_TIMEOUT,
                    "the proxy auto-configuration lookup is too slow; using the WinHTTP settings \
                     for this attempt (logged once)"
                );
            }
            tokio::task::spawn_blocking(proxy::default_settings)
                .await
                .map_err(failed)?
        }
    };
    decide(answer, target)
}

#[cfg(not(windows))]
async fn system(mode: &SystemMode, _target: &Target) -> Result<Decision, String> {
    match mode {
        SystemMode::Default => Ok(Decision::direct(Source::Nothing)),
        _ => Err(Setting::AutoDetect.supported().err().unwrap_or_default()),
    }
}

/// Whether `NO_PROXY` (comma-separated names, a leading dot optional, `*` for all) exempts
/// `host`.
fn exempt(host: &str, no_proxy: &str) -> bool {
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            let entry = entry.trim_start_matches('.');
            entry == "*"
                || host.eq_ignore_ascii_case(entry)
                || host
                    .to_ascii_lowercase()
                    .ends_with(&format!(".{}", entry.to_ascii_lowercase()))
        })
}

#[cfg(test)]
mod tests;
