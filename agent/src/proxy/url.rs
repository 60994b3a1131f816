//! A proxy's URL, `http://[user[:password]@]host[:port]`, parsed as curl reads it, and shown
//! in logs and errors without its user name and password.

use std::fmt;

use base64::Engine;
use http::Uri;

/// The user name and password from a proxy URL, percent-decoded. `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The value of `Proxy-Authorization: Basic ...`.
    pub fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<hidden>)")
    }
}

/// An HTTP CONNECT proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// From the URL, sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<Credentials>,
}

impl Proxy {
    /// `http://[user[:password]@]host[:port][/]`, port 3128 by default; the user name and
    /// password are percent-decoded as curl does (`p%40ss` is `p@ss`). Everything up to the last
    /// `@` is the user name and password, so a raw `@`, `/`, `?` or `#` in the password works as
    /// in curl. Errors never repeat any part of the URL: a mistyped URL may hold a password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or(
            "must be an http:// URL (http://[user:password@]host:port), \"none\", \"auto\" or \
             \"pac:<url>\"",
        )?;
        let (userinfo, after) = split_userinfo(rest);
        let credentials = match userinfo {
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some(Credentials::new(
                    percent_decode(user).map_err(|e| format!("the user name {e}"))?,
                    percent_decode(password).map_err(|e| format!("the password {e}"))?,
                ))
            }
            None => None,
        };
        let host_port = after.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = parse_host_port(host_port, 3128).map_err(|e| {
            let part = if credentials.is_some() {
                "the host[:port] after '@'"
            } else {
                "the host[:port]"
            };
            format!("{part} {e} (expected http://[user:password@]host:port)")
        })?;
        Ok(Self {
            host,
            port,
            credentials,
        })
    }

    /// `host:port`, an IPv6 address in brackets; never the credentials.
    pub fn address(&self) -> String {
        authority(&self.host, self.port)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())
    }
}

/// A proxy setting fit for logs: the user name and password of a URL replaced. A URL that does
/// not parse is hidden whole after `http://`: what looks like `host:port` may be
/// `user:password` with the host forgotten.
pub fn redacted(setting: &str) -> String {
    let Some(rest) = setting.strip_prefix("http://") else {
        return setting.to_owned();
    };
    match split_userinfo(rest) {
        (Some(_), after) => format!("http://<hidden>@{after}"),
        (None, _) if Proxy::parse(setting).is_err() => "http://<hidden>".to_owned(),
        (None, _) => setting.to_owned(),
    }
}

/// Splits what follows `http://` at its last `@`: (user info, the rest), as curl does.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    match rest.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, rest),
    }
}

/// `host:port` as CONNECT and the errors write it.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `host[:port]` (IPv6 in brackets), `default_port` when there is none; errors repeat `text`
/// (a WinHTTP proxy list entry, which holds no credentials).
pub(crate) fn host_and_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    parse_host_port(text, default_port).map_err(|e| format!("{text:?} {e}"))
}

/// [`host_and_port`] with errors that do not repeat the text.
fn parse_host_port(text: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    let uri: Uri = format!("http://{text}/")
        .parse()
        .map_err(|_| "is not a valid host[:port]")?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let port = if authority.starts_with('[') {
        authority.rsplit_once("]:").map(|(_, port)| port)
    } else {
        authority.rsplit_once(':').map(|(_, port)| port)
    };
    let port = match port {
        Some(port) => port.parse().map_err(|_| "has an invalid port")?,
        None => default_port,
    };
    Ok((host.to_owned(), port))
}

/// Percent-decodes, refusing `%` not followed by two hex digits and bytes that are not UTF-8.
/// The error never contains the text.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('%') {
        let valid = bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        if !valid {
            return Err("has an invalid percent sequence (write % itself as %25)".into());
        }
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "is not UTF-8 once percent-decoded".into())
}
