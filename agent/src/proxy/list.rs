//! WinHTTP's proxy list and bypass list, as `WinHttpGetDefaultProxyConfiguration` (what
//! `netsh winhttp set proxy` wrote) and `WinHttpGetProxyForUrl` (WPAD, PAC) return them. Portable,
//! so Linux tests them; only the calls that fetch them are Windows-only.
//!
//! Proxy list: entries separated by `;` or white space, each `[<scheme>=][<scheme>://]host[:port]`
//! (`proxy:8080`, `http=a:1;https=b:2`, `https://b:2`). An entry with `https=` serves a `wss://`
//! relay, one with `http=` a `ws://` relay, one without `=` both; `socks=` and `ftp=` entries are
//! never used. The first entry for the relay's scheme wins, then the first for all schemes. The
//! port defaults to 80, as in WinHTTP. The agent always speaks plain HTTP (CONNECT) to the proxy.
//!
//! Bypass list: entries separated by `;`, `,` or white space; `<local>` is any host name without
//! a dot, `*` matches any run of characters (`*.corp.local`, `10.*`), an entry with a port
//! (`relay:443`) matches that port only, a leading dot (`.corp.local`) any name under it; case
//! does not matter.

use super::{Proxy, host_and_port};

/// The proxy the list names for a relay reached with (`tls`) or without TLS; `None` when the
/// list has no entry for that scheme (WinHTTP then connects directly).
pub fn pick(list: &str, tls: bool) -> Result<Option<Proxy>, String> {
    let wanted = if tls { "https" } else { "http" };
    let mut generic = None;
    for entry in entries(list) {
        if entry.eq_ignore_ascii_case("PROXY") || entry.eq_ignore_ascii_case("DIRECT") {
            // PAC syntax, should WinHTTP ever pass it through.
            continue;
        }
        match entry.split_once('=') {
            Some((scheme, server)) if scheme.eq_ignore_ascii_case(wanted) => {
                return server_of(server).map(Some);
            }
            Some(_) => {}
            None if generic.is_none() => generic = Some(entry),
            None => {}
        }
    }
    generic.map(server_of).transpose()
}

fn server_of(entry: &str) -> Result<Proxy, String> {
    let lower = entry.to_ascii_lowercase();
    let server = if lower.starts_with("http://") {
        &entry["http://".len()..]
    } else if lower.starts_with("https://") {
        &entry["https://".len()..]
    } else if lower.contains("://") {
        return Err(format!(
            "{entry:?} is not an HTTP proxy (the agent speaks HTTP CONNECT only)"
        ));
    } else {
        entry
    };
    let server = server.trim_end_matches('/');
    let (host, port) = host_and_port(server, 80)?;
    Ok(Proxy {
        host,
        port,
        credentials: None,
    })
}

fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(|c: char| c == ';' || c.is_whitespace())
        .filter(|e| !e.is_empty())
}

/// Whether the bypass list exempts `host` (reached on `port`).
pub fn bypassed(list: &str, host: &str, port: u16) -> bool {
    let host = host.to_ascii_lowercase();
    let with_port = super::authority(&host, port);
    list.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            let entry = entry.to_ascii_lowercase();
            if entry == "<local>" {
                return !host.contains('.') && !host.contains(':');
            }
            let entry = entry
                .strip_prefix("http://")
                .or_else(|| entry.strip_prefix("https://"))
                .unwrap_or(&entry);
            if let Some(suffix) = entry.strip_prefix('.') {
                return host.ends_with(&format!(".{suffix}"));
            }
            let has_port = entry
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
                || entry.starts_with('[') && entry.contains("]:");
            let subject = if has_port { &with_port } else { &host };
            glob(entry.trim_start_matches('[').trim_end_matches(']'), subject)
                || glob(entry, subject)
        })
}

/// `*` matches any run of characters (including none); everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picked(list: &str, tls: bool) -> Option<(String, u16)> {
        pick(list, tls)
            .expect("valid list")
            .map(|p| (p.host, p.port))
    }

    fn hp(host: &str, port: u16) -> Option<(String, u16)> {
        Some((host.to_owned(), port))
    }

    #[test]
    fn a_single_proxy_serves_every_scheme_and_defaults_to_port_80() {
        assert_eq!(picked("proxy:8080", true), hp("proxy", 8080));
        assert_eq!(picked("proxy:8080", false), hp("proxy", 8080));
        assert_eq!(picked("proxy.corp.local", true), hp("proxy.corp.local", 80));
        assert_eq!(picked("  http://proxy:3128/  ", true), hp("proxy", 3128));
        assert_eq!(picked("[fd00::1]:8080", true), hp("fd00::1", 8080));
        assert_eq!(picked("", true), None);
    }

    #[test]
    fn per_scheme_entries_pick_the_relays_scheme() {
        assert_eq!(picked("http=a:1;https=b:2", true), hp("b", 2));
        assert_eq!(picked("http=a:1;https=b:2", false), hp("a", 1));
        assert_eq!(picked("HTTPS=https://b:2", true), hp("b", 2));
        assert_eq!(picked("https://b:2", true), hp("b", 2));
        // Only HTTP and SOCKS named: WinHTTP goes direct for https, and so does the agent.
        assert_eq!(picked("http=a:1;socks=s:1080", true), None);
        // A specific entry beats a generic one wherever it stands.
        assert_eq!(picked("any:1 https=b:2", true), hp("b", 2));
    }

    #[test]
    fn lists_separated_by_semicolons_or_white_space_take_the_first() {
        assert_eq!(picked("p1:1;p2:2", true), hp("p1", 1));
        assert_eq!(picked("p1:1 p2:2", true), hp("p1", 1));
        assert_eq!(picked(";\tp1:1 ;; p2:2;", true), hp("p1", 1));
        assert_eq!(picked("PROXY p1:1; DIRECT", true), hp("p1", 1));
    }

    #[test]
    fn a_proxy_that_is_not_http_is_refused() {
        let error = pick("socks5://s:1080", true).expect_err("not HTTP");
        assert!(error.contains("HTTP CONNECT"), "{error}");
        assert!(pick("p:notaport", true).is_err());
    }

    #[test]
    fn the_bypass_list_knows_local_wildcards_and_ports() {
        let list = "<local>;*.corp.local;10.*";
        assert!(bypassed(list, "mamutserver", 443));
        assert!(bypassed(list, "relay.corp.local", 443));
        assert!(bypassed(list, "RELAY.Corp.Local", 443));
        assert!(bypassed(list, "10.1.2.3", 443));
        assert!(!bypassed(list, "corp.local", 443));
        assert!(!bypassed(list, "relay.example.com", 443));
        assert!(!bypassed(list, "110.1.2.3", 443));
        assert!(!bypassed(list, "::1", 443));

        assert!(bypassed("relay.example.com:443", "relay.example.com", 443));
        assert!(!bypassed(
            "relay.example.com:8443",
            "relay.example.com",
            443
        ));
        assert!(bypassed(".example.com", "relay.example.com", 443));
        assert!(bypassed("a.b, c.d e.f", "e.f", 443));
        assert!(bypassed(
            "https://relay.example.com",
            "relay.example.com",
            443
        ));
        assert!(bypassed("*", "anything", 1));
        assert!(bypassed("*relay*", "my-relay-1.example.com", 1));
        assert!(!bypassed("", "relay", 1));
    }
}
