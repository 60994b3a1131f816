//! Alerts per tenant by e-mail and by webhook (Slack, Teams or any JSON receiver), and a
//! daily digest of failures (`docs/alerts.md`).
//!
//! - [`settings`]: a tenant's alert settings (recipients, webhook, language, thresholds).
//! - [`conditions`]: the conditions and when each holds, pure functions of the store's facts.
//! - [`message`]: what an alert says, in the tenant's language.
//! - [`mail`]: e-mail through the relay-wide SMTP server; [`hook`]: the webhook.
//! - [`digest`]: the daily digest, once per tenant and day across instances.
//! - [`test_limit`]: how often a tenant may send a test alert.
//!
//! Here: [`run`], the task that evaluates every tenant's conditions each
//! `alerts_interval_secs`, and the sending with its retries.
//!
//! No storms: an alert is opened at most once per (tenant, condition) until the condition
//! clears (the store's unique open index; of several instances the one whose insert wins
//! sends), then one "resolved" is sent by the instance whose update resolved it. An alert is
//! stored first, then sent; a send that fails is kept in this instance's memory and tried
//! again at the next evaluations (up to [`MAX_ATTEMPTS`] times), without opening a second
//! alert. A relay that stops between storing and sending loses that one notification (the
//! alert stays open and is visible through the API; its "resolved" is still sent).

pub mod conditions;
pub mod digest;
pub mod hook;
pub mod mail;
pub mod message;
pub mod settings;
pub mod test_limit;

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use shared::TenantId;

pub use self::message::{Message, State};
pub use self::settings::AlertSettings;
use crate::AppState;

/// How many times one notification is tried (once per evaluation) before it is given up.
pub const MAX_ATTEMPTS: u32 = 10;

/// Most notifications waiting to be tried again; beyond, the oldest is given up.
const MAX_RETRIES: usize = 1000;

/// Most alerts of one tenant read per evaluation.
const MAX_OPEN: u32 = 500;

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Webhook,
}

/// Alerts sent and failed, for `/metrics`.
#[derive(Debug, Default)]
pub struct AlertMetrics {
    sent: [AtomicU64; 2],
    failed: [AtomicU64; 2],
}

impl AlertMetrics {
    fn count(&self, channel: Channel, ok: bool) {
        let i = channel as usize;
        let counters = if ok { &self.sent } else { &self.failed };
        counters[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `relay_alerts_sent_total` and `relay_alerts_failed_total` by channel.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, counters) in [
            (
                "relay_alerts_sent_total",
                "Alert notifications (alerts, resolved, digests, tests) sent.",
                &self.sent,
            ),
            (
                "relay_alerts_failed_total",
                "Alert notifications that could not be sent (tried again up to 10 times).",
                &self.failed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (channel, counter) in ["email", "webhook"].iter().zip(counters) {
                let _ = writeln!(
                    out,
                    "{name}{{channel=\"{channel}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
        out
    }
}

/// Sends `message` by `channel` as `settings` say; `None` when that channel is not set up
/// (no recipients or no SMTP server, no webhook).
pub async fn send_by(
    state: &AppState,
    settings: &AlertSettings,
    channel: Channel,
    message: &Message,
) -> Option<Result<(), String>> {
    let result = match channel {
        Channel::Email => {
            let smtp = state.config.smtp.as_ref()?;
            if settings.emails.is_empty() {
                return None;
            }
            mail::send(smtp, &settings.emails, message).await
        }
        Channel::Webhook => {
            let url = settings.webhook_url.as_deref()?;
            hook::send(&state.http, url, message).await
        }
    };
    state.metrics.alerts.count(channel, result.is_ok());
    Some(result)
}

/// A notification that failed, to be tried again.
struct Retry {
    message: Message,
    channel: Channel,
    attempts: u32,
}

/// One instance's evaluations: the notifications it still owes.
#[derive(Default)]
pub struct Alerts {
    retries: Vec<Retry>,
    /// The day (UTC) each tenant's digest was last settled, so it is not asked again that day.
    digested: HashMap<TenantId, NaiveDate>,
}

impl Alerts {
    /// Sends `message` by every channel set up; a channel that fails is tried again later.
    async fn notify(&mut self, state: &AppState, settings: &AlertSettings, message: Message) {
        for channel in [Channel::Email, Channel::Webhook] {
            if let Some(Err(e)) = send_by(state, settings, channel, &message).await {
                tracing::warn!(
                    tenant = %message.tenant, condition = %message.condition, ?channel,
                    error = %e, "an alert could not be sent; tried again at the next evaluation"
                );
                if self.retries.len() >= MAX_RETRIES {
                    self.retries.remove(0);
                }
                self.retries.push(Retry {
                    message: message.clone(),
                    channel,
                    attempts: 1,
                });
            }
        }
    }

    /// Tries the failed notifications again, with each tenant's settings as they are now.
    async fn retry(&mut self, state: &AppState, settings: &HashMap<TenantId, AlertSettings>) {
        let mut still = Vec::new();
        for mut retry in std::mem::take(&mut self.retries) {
            let Some(tenant_settings) = settings.get(&retry.message.tenant) else {
                continue;
            };
            // Sent, or the channel is no longer set up: nothing more to do.
            let Some(Err(e)) = send_by(state, tenant_settings, retry.channel, &retry.message).await
            else {
                continue;
            };
            retry.attempts += 1;
            if retry.attempts < MAX_ATTEMPTS {
                still.push(retry);
            } else {
                tracing::error!(
                    tenant = %retry.message.tenant, condition = %retry.message.condition,
                    channel = ?retry.channel, error = %e,
                    "an alert could not be sent {MAX_ATTEMPTS} times; given up"
                );
            }
        }
        self.retries = still;
    }

    /// Evaluates every tenant with alert settings once, sends what opened, resolved or is
    /// due, and tries failed notifications again.
    pub async fn evaluate(&mut self, state: &AppState) {
        let all = match state.store.all_alert_settings().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "alert settings could not be read; alerts wait");
                return;
            }
        };
        let mut settings = HashMap::new();
        for (tenant, json) in all {
            match AlertSettings::from_stored(&json) {
                Ok(s) => {
                    settings.insert(tenant, s);
                }
                Err(e) => tracing::warn!(%tenant, error = %e, "a tenant's alerts are off"),
            }
        }
        self.retry(state, &settings).await;
        for (tenant, tenant_settings) in &settings {
            if state.shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = self.evaluate_tenant(state, tenant, tenant_settings).await {
                tracing::warn!(%tenant, error = %e, "a tenant's alert conditions could not be evaluated");
            }
            let now = Utc::now();
            if self.digested.get(tenant) == Some(&now.date_naive()) {
                continue;
            }
            match digest::maybe_send(state, tenant, tenant_settings, now).await {
                Ok(true) => {
                    self.digested.insert(tenant.clone(), now.date_naive());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "a tenant's daily digest could not be sent");
                }
            }
        }
    }

    async fn evaluate_tenant(
        &mut self,
        state: &AppState,
        tenant: &TenantId,
        settings: &AlertSettings,
    ) -> Result<(), crate::store::StoreError> {
        let now = Utc::now();
        let since = now - conditions::REFUSING_WINDOW;
        let facts = state
            .store
            .alert_facts(tenant.clone(), settings.shop_refusing_failures, since)
            .await?;
        let firing = conditions::firing(&facts, settings, now);
        let open = state.store.alerts(tenant.clone(), true, MAX_OPEN).await?;
        for fire in &firing {
            let key = fire.condition.key();
            if open.iter().any(|a| a.condition == key) {
                continue;
            }
            let detail = message::detail(settings.language, &fire.seen);
            if let Some(alert) = state.store.open_alert(tenant.clone(), key, detail).await? {
                tracing::info!(%tenant, condition = %alert.condition, "alert raised");
                self.notify(state, settings, message::opened(settings.language, &alert))
                    .await;
            }
        }
        for alert in &open {
            if firing.iter().any(|f| f.condition.key() == alert.condition) {
                continue;
            }
            let resolved = state
                .store
                .resolve_alert(tenant.clone(), alert.condition.clone())
                .await?;
            if let Some(alert) = resolved {
                tracing::info!(%tenant, condition = %alert.condition, "alert resolved");
                self.notify(
                    state,
                    settings,
                    message::resolved(settings.language, &alert),
                )
                .await;
            }
        }
        Ok(())
    }
}

/// Runs until the relay shuts down: every `alerts_interval_secs`, the first time one
/// interval after the start.
pub async fn run(state: Arc<AppState>) {
    let every = Duration::from_secs(state.config.alerts_interval_secs.max(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut alerts = Alerts::default();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => alerts.evaluate(&state).await,
        }
    }
}
