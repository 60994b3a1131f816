//! What an alert says, in the tenant's language (the `alerts.ftl` catalogues): one
//! [`Message`] that both the e-mail and the webhook are made from.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use shared::TenantId;

use super::conditions::{Condition, Seen};
use crate::accounts::Language;
use crate::console::i18n::{ArgValue, t, t_args};
use crate::store::{AlertRecord, DigestCounts};

/// Whether a message raises an alert, says it cleared, tests the settings, or is the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Alert,
    Resolved,
    Test,
    Digest,
}

/// One notification, ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub tenant: TenantId,
    /// The condition's key (`dead_letters`, `shop_refusing:erp-se`, `digest`…).
    pub condition: String,
    pub state: State,
    pub subject: String,
    /// What was seen, in one line.
    pub detail: String,
    /// The body's further lines (after the detail).
    pub lines: Vec<String>,
    pub at: DateTime<Utc>,
}

impl Message {
    /// The text of the whole message: subject, detail and lines.
    pub fn text(&self) -> String {
        let mut text = format!("{}\n{}", self.subject, self.detail);
        for line in &self.lines {
            text.push('\n');
            text.push_str(line);
        }
        text
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The condition's title, e.g. "Agent offline".
fn title(language: Language, condition: &str) -> String {
    match Condition::parse(condition) {
        Some(Condition::DeadLetters) => t(language, "alert-title-dead-letters"),
        Some(Condition::AgentOffline) => t(language, "alert-title-agent-offline"),
        Some(Condition::QueueAge) => t(language, "alert-title-queue-age"),
        Some(Condition::ShopRefusing(shop)) => t_args(
            language,
            "alert-title-shop-refusing",
            &[("shop", shop.as_str().into())],
        ),
        Some(Condition::Test) => t(language, "alert-title-test"),
        None => condition.to_owned(),
    }
}

/// What was seen, in one line: stored as the alert's detail.
pub fn detail(language: Language, seen: &Seen) -> String {
    match seen {
        Seen::DeadLetters { count } => t_args(
            language,
            "alert-detail-dead-letters",
            &[("count", (*count).into())],
        ),
        Seen::AgentOffline { since, minutes } => t_args(
            language,
            "alert-detail-agent-offline",
            &[
                ("since", time(*since).into()),
                ("minutes", (*minutes).into()),
            ],
        ),
        Seen::QueueAge { since, minutes } => t_args(
            language,
            "alert-detail-queue-age",
            &[
                ("since", time(*since).into()),
                ("minutes", (*minutes).into()),
            ],
        ),
        Seen::ShopRefusing { failures, dead } => t_args(
            language,
            "alert-detail-shop-refusing",
            &[
                ("failures", ArgValue::from(u64::from(*failures))),
                ("dead", (*dead).into()),
            ],
        ),
    }
}

fn footer(language: Language, tenant: &TenantId) -> String {
    t_args(
        language,
        "alert-footer",
        &[("tenant", tenant.as_str().into())],
    )
}

/// The message of an alert just opened.
pub fn opened(language: Language, alert: &AlertRecord) -> Message {
    Message {
        tenant: alert.tenant_id.clone(),
        condition: alert.condition.clone(),
        state: State::Alert,
        subject: t_args(
            language,
            "alert-subject",
            &[
                ("tenant", alert.tenant_id.as_str().into()),
                ("title", title(language, &alert.condition).into()),
            ],
        ),
        detail: alert.detail.clone(),
        lines: vec![
            t_args(
                language,
                "alert-opened-at",
                &[("at", time(alert.opened_at).into())],
            ),
            t(language, "alert-once"),
            footer(language, &alert.tenant_id),
        ],
        at: alert.opened_at,
    }
}

/// The "resolved" of a stored alert.
pub fn resolved(language: Language, alert: &AlertRecord) -> Message {
    let at = alert.resolved_at.unwrap_or_else(Utc::now);
    Message {
        tenant: alert.tenant_id.clone(),
        condition: alert.condition.clone(),
        state: State::Resolved,
        subject: t_args(
            language,
            "alert-resolved-subject",
            &[
                ("tenant", alert.tenant_id.as_str().into()),
                ("title", title(language, &alert.condition).into()),
            ],
        ),
        detail: t_args(
            language,
            "alert-resolved-detail",
            &[
                ("opened", time(alert.opened_at).into()),
                ("at", time(at).into()),
            ],
        ),
        lines: vec![
            t_args(
                language,
                "alert-was",
                &[("detail", alert.detail.clone().into())],
            ),
            footer(language, &alert.tenant_id),
        ],
        at,
    }
}

/// A test of the tenant's settings.
pub fn test(language: Language, tenant: &TenantId) -> Message {
    Message {
        tenant: tenant.clone(),
        condition: Condition::Test.key(),
        state: State::Test,
        subject: t_args(
            language,
            "alert-subject",
            &[
                ("tenant", tenant.as_str().into()),
                ("title", t(language, "alert-title-test").into()),
            ],
        ),
        detail: t(language, "alert-test-detail"),
        lines: vec![footer(language, tenant)],
        at: Utc::now(),
    }
}

/// The daily digest of `counts`, the failures of the 24 hours before `at`.
pub fn digest(
    language: Language,
    tenant: &TenantId,
    counts: &DigestCounts,
    at: DateTime<Utc>,
) -> Message {
    let line = |id: &str, n: u64| t_args(language, id, &[("count", n.into())]);
    Message {
        tenant: tenant.clone(),
        condition: "digest".into(),
        state: State::Digest,
        subject: t_args(
            language,
            "digest-subject",
            &[("tenant", tenant.as_str().into())],
        ),
        detail: t_args(language, "digest-intro", &[("at", time(at).into())]),
        lines: vec![
            line("digest-dead-letters", counts.dead_letters),
            line("digest-held-orders", counts.held_orders),
            line("digest-dead-dispatch", counts.dead_dispatch),
            line("digest-alerts-opened", counts.alerts_opened),
            footer(language, tenant),
        ],
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> AlertRecord {
        AlertRecord {
            id: 1,
            tenant_id: TenantId::new("acme").expect("valid"),
            condition: "agent_offline".into(),
            detail: "seen".into(),
            opened_at: Utc::now(),
            resolved_at: Some(Utc::now()),
        }
    }

    #[test]
    fn messages_are_in_the_tenants_language() {
        let en = opened(Language::En, &alert());
        assert!(en.subject.contains("acme"), "{}", en.subject);
        assert!(
            en.subject.contains("The agent is offline"),
            "{}",
            en.subject
        );
        let sv = resolved(Language::Sv, &alert());
        assert!(
            sv.subject.contains("Åtgärdat: Agenten är frånkopplad"),
            "{}",
            sv.subject
        );
        assert!(sv.text().contains("seen"), "{}", sv.text());
        let seen = Seen::DeadLetters { count: 3 };
        assert!(detail(Language::En, &seen).contains('3'));
        assert_ne!(detail(Language::En, &seen), detail(Language::Sv, &seen));
    }
}
