//! Where the relay is: one `wss://` (or, for local development, `ws://`) address, parsed once
//! when the configuration is loaded.

use http::Uri;

/// One address of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub url: String,
}

impl Endpoint {
    /// `wss://host[:port]/path`; `ws://` only with `insecure_dev`. The error says what is wrong
    /// with `url`.
    pub fn parse(url: &str, insecure_dev: bool) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") if insecure_dev => false,
            Some("ws") => return Err(
                "plain ws:// is refused; use wss:// (or set insecure_dev for local development)"
                    .into(),
            ),
            _ => return Err(format!("{url:?} must start with wss://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{url:?} has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            tls,
            host,
            port,
            url: url.to_owned(),
        })
    }

    /// What the proxy lookup needs to know of this address.
    pub fn proxy_target(&self) -> crate::proxy::Target {
        crate::proxy::Target {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls,
        }
    }
}

/// The URL as configured.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoints_default_their_ports_and_refuse_plain_ws() {
        let e = Endpoint::parse("wss://relay.example.com/agent/v1/connect", false).expect("valid");
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "relay.example.com", 443)
        );
        assert!(Endpoint::parse("ws://relay/agent/v1/connect", false).is_err());
        let e =
            Endpoint::parse("ws://127.0.0.1:8080/agent/v1/connect", true).expect("valid in dev");
        assert_eq!((e.tls, e.port), (false, 8080));
        assert!(Endpoint::parse("https://relay/", false).is_err());
    }
}
