//! The daily digest: once a day per tenant, from `alerts_digest_hour` (UTC), the last 24
//! hours' failures (dead letters, held orders, changes the shops refused, alerts raised) by
//! e-mail. Claimed in `alert_digests` first, so one instance sends it; a digest that could
//! not be sent is given back and tried at the next evaluation. A day without failures sends
//! nothing.

use chrono::{DateTime, Duration, Timelike, Utc};
use shared::TenantId;

use super::settings::AlertSettings;
use super::{Channel, message, send_by};
use crate::AppState;

/// Sends the digest of `tenant` if it is due at `now` and not sent yet today. `Ok(true)`
/// when today's digest is settled (sent, empty, or claimed by another instance), so the
/// caller need not ask again until tomorrow.
pub async fn maybe_send(
    state: &AppState,
    tenant: &TenantId,
    settings: &AlertSettings,
    now: DateTime<Utc>,
) -> Result<bool, String> {
    if !settings.digest || settings.emails.is_empty() || state.config.smtp.is_none() {
        return Ok(false);
    }
    if now.hour() < state.config.alerts_digest_hour {
        return Ok(false);
    }
    let day = now.date_naive().to_string();
    let store = &state.store;
    let claimed = store
        .claim_digest(tenant.clone(), day.clone())
        .await
        .map_err(|e| e.to_string())?;
    if !claimed {
        return Ok(true);
    }
    let counts = match store
        .digest_counts(tenant.clone(), now - Duration::hours(24))
        .await
    {
        Ok(counts) => counts,
        Err(e) => {
            let _ = store.release_digest(tenant.clone(), day).await;
            return Err(e.to_string());
        }
    };
    if counts.is_empty() {
        tracing::debug!(%tenant, "no failures in the last 24 hours: no digest");
        return Ok(true);
    }
    let digest = message::digest(settings.language, tenant, &counts, now);
    match send_by(state, settings, Channel::Email, &digest).await {
        Some(Err(e)) => {
            let _ = store.release_digest(tenant.clone(), day).await;
            Err(e)
        }
        _ => {
            tracing::info!(%tenant, ?counts, "daily digest sent");
            Ok(true)
        }
    }
}
