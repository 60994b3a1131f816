//! How often a tenant may send a test alert: at most one a minute and [`PER_DAY`] a day, so
//! that a tenant admin cannot use the relay's SMTP account (and its reputation) to send mail
//! in bulk. Counted in this relay instance's memory: a restart, or another instance, starts
//! afresh, which is enough against a flood.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The least time between two test alerts of a tenant.
pub const MIN_GAP: Duration = Duration::from_secs(60);
/// The most test alerts of a tenant in [`DAY`].
pub const PER_DAY: usize = 10;
/// The window [`PER_DAY`] counts in.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The test alerts sent per (relay instance, tenant) in the last day, oldest first.
type Sent = HashMap<(String, String), VecDeque<Instant>>;

static SENT: LazyLock<Mutex<Sent>> = LazyLock::new(Default::default);

/// Counts a test alert of `tenant` on relay instance `instance` now, or says in how many
/// seconds one may be sent.
pub fn admit(instance: &str, tenant: &str) -> Result<(), u32> {
    let now = Instant::now();
    // A poisoned lock only means another request panicked mid-update: the counts stay usable.
    let mut sent = SENT.lock().unwrap_or_else(|e| e.into_inner());
    // Tenants with nothing in the last day are forgotten, so the map stays as small as the
    // tenants that test.
    sent.retain(|_, times| {
        prune(times, now);
        !times.is_empty()
    });
    let times = sent
        .entry((instance.to_owned(), tenant.to_owned()))
        .or_default();
    decide(times, now)
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= DAY)
    {
        times.pop_front();
    }
}

/// The rule itself: `times` are the sends of the last day, oldest first.
fn decide(times: &mut VecDeque<Instant>, now: Instant) -> Result<(), u32> {
    prune(times, now);
    let wait = |until: Instant| until.saturating_duration_since(now).as_secs_f64().ceil() as u32;
    if let Some(last) = times.back()
        && now.saturating_duration_since(*last) < MIN_GAP
    {
        return Err(wait(*last + MIN_GAP).max(1));
    }
    if times.len() >= PER_DAY
        && let Some(oldest) = times.front()
    {
        return Err(wait(*oldest + DAY).max(1));
    }
    times.push_back(now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_a_minute_and_ten_a_day() {
        let start = Instant::now();
        let mut times = VecDeque::new();
        assert_eq!(decide(&mut times, start), Ok(()));
        assert_eq!(decide(&mut times, start + Duration::from_secs(10)), Err(50));
        let mut at = start;
        for _ in 1..PER_DAY {
            at += MIN_GAP;
            assert_eq!(decide(&mut times, at), Ok(()));
        }
        at += MIN_GAP;
        let refused = decide(&mut times, at).expect_err("the eleventh of the day");
        assert_eq!(
            u64::from(refused),
            (DAY - MIN_GAP * PER_DAY as u32).as_secs()
        );
        // A day after the first, one more may go.
        assert_eq!(decide(&mut times, start + DAY), Ok(()));
    }

    #[test]
    fn tenants_and_instances_are_counted_apart() {
        let instance = uuid::Uuid::new_v4().to_string();
        assert_eq!(admit(&instance, "acme"), Ok(()));
        assert!(admit(&instance, "acme").is_err());
        assert_eq!(admit(&instance, "other"), Ok(()));
        assert_eq!(admit(&format!("{instance}-2"), "acme"), Ok(()));
    }
}
