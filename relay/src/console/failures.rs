//! `/console/failures`: what failed, grouped by reason (dead and held events; changes a shop
//! refused for good), and the operator's way out: replay one, a selection, or a whole group,
//! and edit a failed order and retry it. Replays go through [`crate::admin::Admin`] (an order
//! still invalid is refused with its problems unless forced) and then wake delivery, as the
//! admin API does. Every change is checked (the account may change the tenant, the form
//! carries the CSRF token) and audited.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use shared::TenantId;

use super::PageError;
use super::actions::{Fields, SMALL_FORM_BYTES, admin, answer, audit, may_change, scope, time};
use super::i18n::{t, t_args};
use super::layout::{Section, csrf_field, page};
use crate::AppState;
use crate::accounts::session::ConsoleUser;
use crate::accounts::{Language, Principal};
use crate::admin::ReplayQuery;
use crate::error::ApiError;
use crate::store::failures::{FailureGroup, FailureKind, MAX_GROUP_IDS};
use crate::store::{EventState, Notice};

mod edit;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/failures", get(list))
        .route(
            "/failures/replay",
            post(replay_selected).layer(DefaultBodyLimit::max(SMALL_FORM_BYTES)),
        )
        .route(
            "/failures/replay-group",
            post(replay_group).layer(DefaultBodyLimit::max(SMALL_FORM_BYTES)),
        )
        .merge(edit::routes())
}

async fn list(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
) -> Result<Markup, PageError> {
    let scope = scope(&user)?;
    let events = app
        .store
        .failure_groups(scope.clone(), FailureKind::Event)
        .await?;
    let dispatch = app
        .store
        .failure_groups(scope, FailureKind::Dispatch)
        .await?;
    let language = user.language;
    let title = t(language, "failures-title");
    let body = html! {
        h1 { (title) }
        p.muted { (t(language, "failures-intro")) }
        h2 { (t(language, "failures-events")) }
        (groups(&user, FailureKind::Event, &events))
        h2 { (t(language, "failures-dispatch")) }
        (groups(&user, FailureKind::Dispatch, &dispatch))
    };
    Ok(page(language, Some(&user), Section::Failures, &title, body))
}

fn groups(user: &Principal, kind: FailureKind, groups: &[FailureGroup]) -> Markup {
    let language = user.language;
    html! {
        @if groups.is_empty() {
            p.good { (t(language, "failures-none")) }
        }
        @for group in groups {
            section.card {
                h3 {
                    @if group.key.is_empty() { (t(language, "failures-no-reason")) }
                    @else { (group.key) }
                }
                p.muted {
                    (t_args(language, "failures-group-summary", &[
                        ("count", group.count.into()),
                        ("first", time(group.first_seen).into()),
                        ("last", time(group.last_seen).into()),
                    ]))
                }
                (group_form(user, kind, group))
            }
        }
    }
}

/// One group's rows with checkboxes, and the buttons to replay a selection, one row, or the
/// whole group (a viewer sees the rows only).
fn group_form(user: &Principal, kind: FailureKind, group: &FailureGroup) -> Markup {
    let language = user.language;
    let changes = group.items.iter().any(|i| user.may_change(&i.tenant_id));
    html! {
        form method="post" action="/console/failures/replay" {
            (csrf_field(user))
            input type="hidden" name="kind" value=(kind.as_str());
            div.scroll { table {
                thead { tr {
                    @if changes { th {} }
                    th { (t(language, "failures-col-id")) }
                    th { (t(language, "failures-col-tenant")) }
                    th { (t(language, "failures-col-shop")) }
                    th { (t(language, if kind == FailureKind::Event { "failures-col-order" } else { "failures-col-key" })) }
                    th { (t(language, "failures-col-state")) }
                    th { (t(language, "failures-col-reason")) }
                    th { (t(language, "failures-col-at")) }
                    @if changes { th {} }
                } }
                tbody {
                    @for item in &group.items {
                        @let value = format!("{}/{}", item.tenant_id, item.id);
                        tr {
                            @if changes {
                                td { input type="checkbox" name="item" value=(value) aria-label=(t(language, "failures-select")); }
                            }
                            td { (item.id) }
                            td { (item.tenant_id) }
                            td { (item.shop_id) }
                            td { (item.subject) }
                            td { span class=(format!("state-{}", item.state)) { (item.state) } }
                            td { (item.reason.as_deref().unwrap_or("")) }
                            td { (time(item.updated_at)) }
                            @if changes {
                                td {
                                    button.secondary type="submit" name="only" value=(value) { (t(language, "failures-replay-one")) }
                                    @if kind == FailureKind::Event {
                                        " "
                                        a href=(format!("/console/failures/events/{}/{}", item.tenant_id, item.id)) { (t(language, "failures-edit")) }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
            @if (group.count as usize) > group.items.len() {
                p.muted { (t_args(language, "failures-more", &[("shown", (group.items.len() as u64).into()), ("count", group.count.into())])) }
            }
            @if changes {
                p {
                    @if kind == FailureKind::Event {
                        label { input type="checkbox" name="force" value="1"; " " (t(language, "failures-force")) }
                        " "
                    }
                    button type="submit" { (t(language, "failures-replay-selected")) }
                }
            }
        }
        @if changes {
            form.inline method="post" action="/console/failures/replay-group" {
                (csrf_field(user))
                input type="hidden" name="kind" value=(kind.as_str());
                input type="hidden" name="key" value=(group.key);
                @if kind == FailureKind::Event {
                    label { input type="checkbox" name="force" value="1"; " " (t(language, "failures-force")) }
                    " "
                }
                button type="submit" { (t_args(language, "failures-replay-group", &[("count", group.count.min(MAX_GROUP_IDS as u64).into())])) }
            }
        }
    }
}

/// What became of a replay.
#[derive(Default)]
struct Outcome {
    replayed: Vec<(TenantId, i64)>,
    refused: Vec<(TenantId, i64, String)>,
}

fn kind_of(fields: &Fields) -> Result<FailureKind, ApiError> {
    let kind = fields.get("kind").unwrap_or_default();
    FailureKind::parse(kind)
        .ok_or_else(|| ApiError::BadRequest(format!("kind {kind:?}: use event or dispatch")))
}

/// `tenant/id`, as the checkboxes post them.
fn item(value: &str) -> Result<(TenantId, i64), ApiError> {
    let bad = || ApiError::BadRequest(format!("{value:?} is not a failed row (tenant/id)"));
    let (tenant, id) = value.split_once('/').ok_or_else(bad)?;
    let tenant = TenantId::new(tenant).map_err(|_| bad())?;
    let id = id.parse::<i64>().map_err(|_| bad())?;
    Ok((tenant, id))
}

async fn replay_selected(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, PageError> {
    let fields = Fields::new(fields)?;
    let kind = kind_of(&fields)?;
    let chosen: Vec<&str> = match fields.get("only") {
        Some(one) => vec![one],
        None => fields.all("item").collect(),
    };
    if chosen.is_empty() {
        return Err(
            ApiError::BadRequest("no row was selected: tick the rows to replay".into()).into(),
        );
    }
    if chosen.len() > MAX_GROUP_IDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_GROUP_IDS} rows are replayed at once"
        ))
        .into());
    }
    let items = chosen
        .into_iter()
        .map(item)
        .collect::<Result<Vec<_>, _>>()?;
    // Every row is checked before any is replayed.
    for (tenant, _) in &items {
        may_change(&user, tenant, &fields)?;
    }
    let outcome = replay(&app, &user, kind, items, fields.ticked("force")).await;
    outcome_page(&user, &outcome)
}

async fn replay_group(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, PageError> {
    let fields = Fields::new(fields)?;
    let kind = kind_of(&fields)?;
    let key = fields.get("key").unwrap_or_default().to_owned();
    let scope = scope(&user)?;
    if let Some(tenant) = &scope {
        may_change(&user, tenant, &fields)?;
    } else {
        crate::accounts::session::check_csrf(&user, fields.csrf())?;
    }
    let items = app.store.failure_group_ids(scope, kind, &key).await?;
    for (tenant, _) in &items {
        may_change(&user, tenant, &fields)?;
    }
    let outcome = replay(&app, &user, kind, items, fields.ticked("force")).await;
    outcome_page(&user, &outcome)
}

/// Replays each row (already checked), audits each, and wakes delivery once per tenant or
/// shop.
async fn replay(
    app: &AppState,
    user: &Principal,
    kind: FailureKind,
    items: Vec<(TenantId, i64)>,
    force: bool,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut woken = BTreeSet::new();
    let mut shops = BTreeSet::new();
    for (tenant, id) in items {
        let (target, result) = match kind {
            FailureKind::Event => {
                let query = ReplayQuery { force };
                let result = admin(app, user)
                    .replay_event(tenant.to_string(), id, query)
                    .await
                    .map(|r| r.forced);
                (format!("tenants/{tenant}/events/{id}"), result)
            }
            FailureKind::Dispatch => {
                let result = app.store.replay_dispatch(tenant.clone(), id).await;
                let result = result.map(|shop| {
                    shops.insert(shop.to_string());
                    false
                });
                (
                    format!("tenants/{tenant}/dispatch/{id}"),
                    result.map_err(ApiError::from),
                )
            }
        };
        let action = format!("console: replay {}", kind.as_str());
        match result {
            Ok(forced) => {
                let detail = forced.then(|| "forced: replayed with its problems".to_owned());
                audit(app, user, Some(&tenant), &action, target, detail).await;
                woken.insert(tenant.to_string());
                outcome.replayed.push((tenant, id));
            }
            Err(e) => {
                let reason = refusal(&e);
                audit(
                    app,
                    user,
                    Some(&tenant),
                    &action,
                    target,
                    Some(format!("refused: {reason}")),
                )
                .await;
                outcome.refused.push((tenant, id, reason));
            }
        }
    }
    if kind == FailureKind::Event {
        for tenant in woken {
            if let Ok(tenant) = TenantId::new(tenant) {
                app.announce(Notice::Event { tenant }).await;
            }
        }
    }
    for shop in shops {
        if let Ok(shop) = shared::ShopId::new(shop) {
            app.announce(Notice::Dispatch { shop }).await;
        }
    }
    outcome
}

/// Why a replay was refused, in words for the page (an internal failure is logged, not
/// shown).
fn refusal(e: &ApiError) -> String {
    match e {
        ApiError::InvalidOrder { problems, .. } => {
            let list: Vec<String> = problems.iter().take(10).map(ToString::to_string).collect();
            format!("the order is still invalid: {}", list.join("; "))
        }
        ApiError::Internal(cause) => {
            tracing::error!(error = %cause, "a console replay failed");
            "internal error (see the relay's log)".to_owned()
        }
        other => other.to_string(),
    }
}

fn outcome_page(user: &Principal, outcome: &Outcome) -> Result<Markup, PageError> {
    let language = user.language;
    let title = t(language, "failures-replayed-title");
    answer(
        user,
        Section::Failures,
        &title,
        "/console/failures",
        outcome_body(language, outcome),
    )
}

fn outcome_body(language: Language, outcome: &Outcome) -> Markup {
    html! {
        p.notice {
            (t_args(language, "failures-replayed", &[
                ("replayed", (outcome.replayed.len() as u64).into()),
                ("refused", (outcome.refused.len() as u64).into()),
            ]))
        }
        @if !outcome.replayed.is_empty() {
            p.good {
                @for (i, (tenant, id)) in outcome.replayed.iter().enumerate() {
                    @if i > 0 { ", " }
                    (tenant) "/" (id)
                }
            }
        }
        @if !outcome.refused.is_empty() {
            h2 { (t(language, "failures-refused")) }
            ul {
                @for (tenant, id, reason) in &outcome.refused {
                    li.bad { (tenant) "/" (id) ": " (reason) }
                }
            }
        }
    }
}

/// Whether an event in `state` can be edited and retried.
fn editable(state: EventState) -> bool {
    matches!(state, EventState::Dead | EventState::Held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posted_row_names_its_tenant_and_id() {
        let (tenant, id) = item("acme/42").expect("a row");
        assert_eq!((tenant.as_str(), id), ("acme", 42));
        for bad in ["acme", "acme/x", "/4", "Bad Tenant/4", "acme/4/5"] {
            assert!(item(bad).is_err(), "{bad}");
        }
    }
}
