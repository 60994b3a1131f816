//! Failed sign-ins counted per account and per client address, in memory: beyond
//! [`ACCOUNT_FAILURES`] for one account or [`ADDRESS_FAILURES`] from one address within
//! [`WINDOW`], sign-in is refused (429 with `Retry-After`) until the window that began with
//! the first failure has passed.
//!
//! An attempt is counted *before* its password is checked ([`LoginLimiter::reserve`], one
//! atomic check-and-count per key), so a burst of parallel guesses cannot all pass the check
//! before any of them is counted. A successful sign-in then clears its account's count and
//! gives its address back the one attempt it reserved; a failed one keeps both.
//!
//! IPv6 clients are counted per /64 (a single host usually holds a whole /64), IPv4 clients
//! per address; an IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! Each map holds at most [`MAX_ENTRIES`]: when full, windows that have passed are dropped,
//! and if none has, the oldest one is, so a flood of made-up usernames cannot grow memory
//! without bound. The counts are per relay instance; with several instances behind a
//! balancer an attacker gets each instance's allowance.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::error::ApiError;

/// Failed sign-ins one account may have within [`WINDOW`].
pub const ACCOUNT_FAILURES: u32 = 5;
/// Failed sign-ins one client address may have within [`WINDOW`].
pub const ADDRESS_FAILURES: u32 = 20;
/// How long failures count.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most accounts (and most addresses) tracked at once.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failures per key, bounded.
#[derive(Debug)]
struct Counts<K: Eq + Hash> {
    map: DashMap<K, Window>,
    max: u32,
}

impl<K: Eq + Hash + Clone> Counts<K> {
    fn new(max: u32) -> Self {
        Self {
            map: DashMap::new(),
            max,
        }
    }

    /// Seconds until `key` may try again, if it may not now.
    fn refused(&self, key: &K, now: Instant) -> Option<u32> {
        let window = *self.map.get(key)?;
        let ends = window.started + WINDOW;
        if now >= ends {
            self.map.remove(key);
            return None;
        }
        (window.failures >= self.max).then(|| (ends - now).as_secs().max(1) as u32)
    }

    fn fail(&self, key: &K, now: Instant) {
        let _ = self.count(key, now, u32::MAX);
    }

    /// Counts one attempt for `key` unless it has used its `max`, in one step under the
    /// map's lock for `key`: `Err(seconds until it may try again)` when it has.
    fn count(&self, key: &K, now: Instant, max: u32) -> Result<(), u32> {
        if !self.map.contains_key(key) && self.map.len() >= MAX_ENTRIES {
            self.make_room(now);
        }
        let mut entry = self.map.entry(key.clone()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= entry.started + WINDOW {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        if entry.failures >= max {
            let ends = entry.started + WINDOW;
            return Err((ends - now).as_secs().max(1) as u32);
        }
        entry.failures = entry.failures.saturating_add(1);
        Ok(())
    }

    /// Takes back one attempt counted for `key`.
    fn uncount(&self, key: &K) {
        if let Some(mut entry) = self.map.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    fn make_room(&self, now: Instant) {
        self.map.retain(|_, w| now < w.started + WINDOW);
        if self.map.len() >= MAX_ENTRIES {
            let oldest = self
                .map
                .iter()
                .min_by_key(|e| e.value().started)
                .map(|e| e.key().clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
    }

    fn clear(&self, key: &K) {
        self.map.remove(key);
    }
}

/// The sign-in limits of one relay instance.
#[derive(Debug)]
pub struct LoginLimiter {
    accounts: Counts<String>,
    addresses: Counts<IpAddr>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            accounts: Counts::new(ACCOUNT_FAILURES),
            addresses: Counts::new(ADDRESS_FAILURES),
        }
    }
}

impl LoginLimiter {
    /// `TooManyRequests` when `username` or `address` has used its failures. Without an
    /// address (a router served without connection info) only the account's limit applies.
    pub fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.check_at(username, address, Instant::now())
    }

    fn check_at(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let by_account = self.accounts.refused(&username.to_owned(), now);
        let by_address = address.and_then(|a| self.addresses.refused(&address_key(a), now));
        match by_account.max(by_address) {
            None => Ok(()),
            Some(retry_after) => Err(throttled(retry_after)),
        }
    }

    /// Counts a sign-in attempt before its password is checked, or refuses it
    /// (`TooManyRequests`) when the account or the address has used its attempts. Checking
    /// and counting are one step per key, so parallel attempts cannot overrun the limit. After
    /// the check, call [`LoginLimiter::succeeded`] on success; a failure needs nothing more.
    pub fn reserve(&self, username: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.reserve_at(username, address, Instant::now())
    }

    fn reserve_at(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let account = username.to_owned();
        self.accounts
            .count(&account, now, self.accounts.max)
            .map_err(throttled)?;
        if let Some(address) = address.map(address_key)
            && let Err(retry_after) = self.addresses.count(&address, now, self.addresses.max)
        {
            self.accounts.uncount(&account);
            return Err(throttled(retry_after));
        }
        Ok(())
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, username: &str, address: Option<IpAddr>) {
        self.failed_at(username, address, Instant::now());
    }

    fn failed_at(&self, username: &str, address: Option<IpAddr>, now: Instant) {
        self.accounts.fail(&username.to_owned(), now);
        if let Some(address) = address {
            self.addresses.fail(&address_key(address), now);
        }
    }

    /// After a reserved attempt signed in: forgets the account's failures and gives the
    /// address back the attempt [`LoginLimiter::reserve`] counted.
    pub fn succeeded(&self, username: &str, address: Option<IpAddr>) {
        self.accounts.clear(&username.to_owned());
        if let Some(address) = address {
            self.addresses.uncount(&address_key(address));
        }
    }
}

fn throttled(retry_after: u32) -> ApiError {
    ApiError::TooManyRequests {
        message: format!(
            "too many failed sign-ins for this account or from this address: try again in {} \
             minutes",
            retry_after.div_ceil(60)
        ),
        retry_after,
    }
}

/// The key an address is counted under: an IPv4 address itself, an IPv6 address's /64.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(result: Result<(), ApiError>) -> Option<u32> {
        match result {
            Ok(()) => None,
            Err(ApiError::TooManyRequests { retry_after, .. }) => Some(retry_after),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_account_is_refused_after_its_failures_until_the_window_passes() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..ACCOUNT_FAILURES {
            assert_eq!(retry_after(limiter.check_at("anna", None, t0)), None);
            limiter.failed_at("anna", None, t0);
        }
        let wait = retry_after(limiter.check_at("anna", None, t0)).expect("refused");
        assert_eq!(u64::from(wait), WINDOW.as_secs());
        assert_eq!(
            retry_after(limiter.check_at("bo", None, t0)),
            None,
            "others not"
        );
        let later = t0 + WINDOW;
        assert_eq!(retry_after(limiter.check_at("anna", None, later)), None);
    }

    #[test]
    fn an_address_is_refused_after_its_failures_whatever_the_usernames() {
        let limiter = LoginLimiter::default();
        let address: IpAddr = [192, 0, 2, 7].into();
        let t0 = Instant::now();
        for i in 0..ADDRESS_FAILURES {
            limiter.failed_at(&format!("user-{i}"), Some(address), t0);
        }
        assert!(retry_after(limiter.check_at("fresh", Some(address), t0)).is_some());
        assert_eq!(retry_after(limiter.check_at("fresh", None, t0)), None);
        let other: IpAddr = [192, 0, 2, 8].into();
        assert_eq!(
            retry_after(limiter.check_at("fresh", Some(other), t0)),
            None
        );
    }

    #[test]
    fn a_success_clears_the_account_and_a_flood_of_names_stays_bounded() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..ACCOUNT_FAILURES {
            limiter.failed_at("anna", None, t0);
        }
        limiter.succeeded("anna", None);
        assert_eq!(retry_after(limiter.check_at("anna", None, t0)), None);
        for i in 0..MAX_ENTRIES + 500 {
            limiter.failed_at(&format!("made-up-{i}"), None, t0);
        }
        assert!(limiter.accounts.map.len() <= MAX_ENTRIES);
    }

    #[test]
    fn reserving_counts_each_attempt_so_no_more_than_the_limit_get_through() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        let passed = (0..ACCOUNT_FAILURES * 3)
            .filter(|_| limiter.reserve_at("anna", None, t0).is_ok())
            .count();
        assert_eq!(passed, ACCOUNT_FAILURES as usize);
        assert!(retry_after(limiter.check_at("anna", None, t0)).is_some());
        assert!(limiter.reserve_at("anna", None, t0 + WINDOW).is_ok());
    }

    #[test]
    fn a_refused_address_does_not_use_up_the_accounts_attempts() {
        let limiter = LoginLimiter::default();
        let address: IpAddr = [192, 0, 2, 7].into();
        let t0 = Instant::now();
        for i in 0..ADDRESS_FAILURES {
            assert!(
                limiter
                    .reserve_at(&format!("u{i}"), Some(address), t0)
                    .is_ok()
            );
        }
        for _ in 0..ACCOUNT_FAILURES * 2 {
            assert!(limiter.reserve_at("anna", Some(address), t0).is_err());
        }
        assert!(
            limiter.reserve_at("anna", None, t0).is_ok(),
            "anna's own count untouched"
        );
    }

    #[test]
    fn a_success_gives_the_address_its_attempt_back() {
        let limiter = LoginLimiter::default();
        let address: IpAddr = [192, 0, 2, 9].into();
        let t0 = Instant::now();
        for _ in 0..ADDRESS_FAILURES * 2 {
            assert!(limiter.reserve_at("anna", Some(address), t0).is_ok());
            limiter.succeeded("anna", Some(address));
        }
    }

    #[test]
    fn ipv6_clients_are_counted_per_slash_64() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..ADDRESS_FAILURES {
            let host: IpAddr = format!("2001:db8:1:2::{:x}", i + 1)
                .parse()
                .expect("address");
            limiter.failed_at(&format!("user-{i}"), Some(host), t0);
        }
        let same_net: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("address");
        assert!(retry_after(limiter.check_at("fresh", Some(same_net), t0)).is_some());
        assert!(limiter.reserve_at("fresh", Some(same_net), t0).is_err());
        let other_net: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(
            retry_after(limiter.check_at("fresh", Some(other_net), t0)),
            None
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("address");
        assert_eq!(address_key(mapped), IpAddr::from([192, 0, 2, 7]));
    }
}
