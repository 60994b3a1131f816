//! Which hosts a tenant account may make the relay call (a shop's API, an alert webhook): not
//! the relay's own machine or network (loopback, private, link-local, shared, unspecified and
//! broadcast addresses, and `localhost`), so a tenant account cannot make the relay send
//! requests, and a shop's key, into the network it runs in. Operators may set any host.
//!
//! Only the URL as written is checked. A public name that resolves to a private address is
//! not caught here: the address is not resolved again when the relay connects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

use crate::error::ApiError;

/// Refuses `url` when its host is on the relay's own machine or network (see the module).
pub fn check_public(url: &str) -> Result<(), ApiError> {
    let parsed = Url::parse(url)
        .map_err(|e| ApiError::BadRequest(format!("api.url {url:?} is not a URL: {e}")))?;
    let host = parsed.host_str().unwrap_or_default();
    if is_internal_host(host) {
        return Err(ApiError::BadRequest(format!(
            "api.url host {host:?} is a loopback, private or link-local address: only an \
             operator may point a shop's API there"
        )));
    }
    Ok(())
}

/// Whether `host` (as a URL holds it: an IPv6 address in brackets) names this machine, a
/// private, shared or link-local network, or no address at all.
pub fn is_internal_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    match bare.parse::<IpAddr>() {
        Ok(address) => is_internal(address),
        Err(_) => name.is_empty() || name == "localhost" || name.ends_with(".localhost"),
    }
}

fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (b & 0xc0) == 64)
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    v6.is_loopback()
        || v6.is_unspecified()
        || first & 0xfe00 == 0xfc00 // fc00::/7, unique local
        || first & 0xffc0 == 0xfe80 // fe80::/10, link-local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_the_relays_own_network_are_refused_and_public_ones_pass() {
        for bad in [
            "http://127.0.0.1:8080/v1",
            "http://127.1/",
            "http://2130706433/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fc12::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:3000/",
            "http://LocalHost./",
            "http://api.localhost/",
            "not a url",
        ] {
            assert!(check_public(bad).is_err(), "{bad}");
        }
        for good in [
            "https://shop.example.com/api",
            "https://93.184.216.34/",
            "https://[2001:db8::1]/",
            "https://172.32.0.1/",
        ] {
            assert!(check_public(good).is_ok(), "{good}");
        }
    }
}
