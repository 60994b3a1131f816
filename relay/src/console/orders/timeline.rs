//! One order's timeline, both directions in time order: the webhook as received (headers,
//! signature verdict, body), every history entry of the events of the same shop order
//! (fetched, queued, delivered and written in Mamut with its number, failures, edits), and
//! every status change sent back to the shop (capture, e-mail, tracking) with the shop's
//! answer.

use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use shared::TenantId;

use super::super::PageError;
use super::super::i18n::{t, t_args};
use super::super::layout::{Section, page};
use super::super::views::{body_block, state_badge, time_cell};
use crate::AppState;
use crate::accounts::Language;
use crate::accounts::session::{ConsoleUser, require_see};
use crate::error::ApiError;
use crate::shop::StatusRule;
use crate::store::{
    DispatchSummary, MAX_TIMELINE_ROWS, OrderHistoryEntry, OrderRecord, ReceivedWebhook, ShopRecord,
};

/// One entry of the timeline.
struct Entry {
    at: DateTime<Utc>,
    /// Entries at the same time keep the order they were made in.
    seq: usize,
    class: &'static str,
    markup: Markup,
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    ConsoleUser(user): ConsoleUser,
    Path((tenant, event_id)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    let not_found = || ApiError::NotFound(format!("no order event {event_id} of tenant {tenant}"));
    let tenant_id = TenantId::new(tenant.clone()).map_err(|_| not_found())?;
    let id: i64 = event_id.parse().map_err(|_| not_found())?;
    require_see(&user, &tenant_id)?;
    let record = state
        .store
        .order_record(tenant_id.clone(), id, MAX_TIMELINE_ROWS)
        .await?
        .ok_or_else(not_found)?;
    let received = state.store.received_webhook(tenant_id.clone(), id).await?;
    // The shop's rules say what each status change asked of it (capture, e-mail, tracking).
    let shop = state
        .store
        .shop(record.event.shop_id.clone())
        .await?
        .filter(|s| s.tenant_id == tenant_id);
    let language = user.language;
    let title = t_args(
        language,
        "timeline-title",
        &[("order", record.event.order_id.clone().into())],
    );
    let body = html! {
        h1 { (title) }
        (summary(language, &tenant_id, &record))
        h2 { (t(language, "timeline-heading")) }
        @if record.truncated {
            p.notice.truncated {
                (t_args(language, "timeline-truncated", &[("max", u64::from(MAX_TIMELINE_ROWS).into())]))
            }
        }
        ol.timeline {
            @for entry in entries(language, &tenant_id, &record, received.as_ref(), shop.as_ref()) {
                li class=(entry.class) { (entry.markup) }
            }
        }
    };
    Ok(page(language, Some(&user), Section::Orders, &title, body))
}

fn summary(language: Language, tenant: &TenantId, record: &OrderRecord) -> Markup {
    let e = &record.event;
    html! {
        section.card.order-summary {
            table {
                tr { th { (t(language, "view-col-tenant")) } td { (tenant.as_str()) } }
                tr { th { (t(language, "view-col-shop")) } td { (e.shop_id.as_str()) } }
                tr { th { (t(language, "view-col-order")) } td.order-id { (e.order_id) } }
                tr { th { (t(language, "view-col-state")) } td { (state_badge(language, e.state.as_str())) } }
                tr { th { (t(language, "view-col-mamut")) } td.mamut-ref { (e.mamut_ref.as_deref().unwrap_or("–")) } }
                tr { th { (t(language, "view-col-attempts")) } td { (e.attempts) } }
                @if let Some(error) = &e.last_error {
                    tr { th { (t(language, "view-col-last-error")) } td.bad { (error) } }
                }
            }
        }
    }
}

/// Every entry of the order, oldest first.
fn entries(
    language: Language,
    tenant: &TenantId,
    record: &OrderRecord,
    received: Option<&ReceivedWebhook>,
    shop: Option<&ShopRecord>,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut push = |at, class, markup| {
        let seq = entries.len();
        entries.push(Entry {
            at,
            seq,
            class,
            markup,
        });
    };
    for event in &record.events {
        let this = event.id == record.event.id;
        push(
            event.received_at,
            "received",
            html! {
                (time_cell(event.received_at)) " "
                strong { (t(language, "timeline-received")) }
                " " span.muted { (t_args(language, "timeline-webhook", &[("id", event.webhook_id.clone().into()), ("status", event.order_status.clone().into())])) }
                @if this {
                    (received_block(language, record, received))
                } @else {
                    " " a href=(format!("/console/orders/{tenant}/{}", event.id)) { (t(language, "timeline-open-event")) }
                }
            },
        );
    }
    for entry in &record.history {
        push(
            entry.entry.at,
            history_class(entry),
            history_markup(language, record, entry),
        );
    }
    for row in &record.dispatch {
        push(
            row.created_at,
            "dispatch",
            dispatch_markup(language, row, shop),
        );
    }
    entries.sort_by_key(|e| (e.at, e.seq));
    entries
}

/// What was received with the event asked for: its headers, the signature's verdict, its
/// body as received (and the edited one).
fn received_block(
    language: Language,
    record: &OrderRecord,
    webhook: Option<&ReceivedWebhook>,
) -> Markup {
    let received = record
        .body
        .original
        .as_deref()
        .unwrap_or(&record.body.payload);
    html! {
        @if let Some(webhook) = webhook {
            p.signature { (t(language, "timeline-signature")) ": " span.good { (webhook.signature) } }
            @if !webhook.headers.is_empty() {
                details {
                    summary { (t(language, "timeline-headers")) }
                    table.headers {
                        @for (name, value) in &webhook.headers {
                            tr { th { code { (name) } } td { code { (value) } } }
                        }
                    }
                }
            }
        }
        details open {
            summary { (t(language, "timeline-body")) }
            (body_block(language, received))
        }
        @if record.body.original.is_some() {
            details {
                summary { (t(language, "timeline-edited-body")) }
                (body_block(language, &record.body.payload))
            }
        }
    }
}

fn history_class(entry: &OrderHistoryEntry) -> &'static str {
    use crate::store::HistoryState::*;
    match entry.entry.state {
        Delivered => "delivered",
        Dead | Held => "failed",
        Retry => "retry",
        Edited => "edited",
        Fetching | Pending | Ignored => "history",
    }
}

fn history_markup(language: Language, record: &OrderRecord, entry: &OrderHistoryEntry) -> Markup {
    let state = entry.entry.state.as_str();
    let event = record.events.iter().find(|e| e.id == entry.event_id);
    let mamut_ref = event.and_then(|e| e.mamut_ref.as_deref());
    html! {
        (time_cell(entry.entry.at)) " "
        strong { (t(language, &format!("history-{state}"))) }
        @if entry.entry.state == crate::store::HistoryState::Delivered {
            @if let Some(number) = mamut_ref {
                " · " (t_args(language, "timeline-mamut-number", &[("number", number.into())]))
            }
        }
        @if let Some(detail) = &entry.entry.detail {
            br; span.detail { (detail) }
        }
        @if entry.event_id != record.event.id {
            " " span.muted { (t_args(language, "timeline-of-event", &[("id", entry.event_id.into())])) }
        }
    }
}

/// What a status change asked of the shop, from its rule for the Mamut status.
fn rule_for<'a>(row: &DispatchSummary, shop: Option<&'a ShopRecord>) -> Option<&'a StatusRule> {
    let status = row.change.get("mamut_status")?.as_str()?;
    shop?.settings.status_map.get(status)
}

fn dispatch_markup(language: Language, row: &DispatchSummary, shop: Option<&ShopRecord>) -> Markup {
    let change = &row.change;
    let text = |key: &str| change.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let rule = rule_for(row, shop);
    html! {
        (time_cell(row.created_at)) " "
        strong { (t(language, "timeline-sent-back")) }
        " " (state_badge(language, row.state.as_str()))
        ul {
            @if let Some(status) = text("mamut_status") {
                li { (t_args(language, "timeline-status-change", &[
                    ("mamut", status.into()),
                    ("shop", rule.map(|r| r.shop_status.clone()).unwrap_or_else(|| "–".into()).into()),
                ])) }
            }
            @if let Some(rule) = rule {
                @if rule.capture { li { (t(language, "timeline-capture")) } }
                @if rule.notify_customer { li { (t(language, "timeline-email")) } }
                @if rule.tracking {
                    li { (t_args(language, "timeline-tracking", &[("number", text("tracking_number").unwrap_or_else(|| "–".into()).into())])) }
                }
            }
            li { (t_args(language, "timeline-attempts", &[("n", row.attempts.into())])) " · "
                 (t(language, "timeline-updated")) " " (time_cell(row.updated_at)) }
            @if let Some(answer) = &row.last_error {
                li.bad { (t(language, "timeline-shop-answer")) ": " (answer) }
            }
        }
    }
}
