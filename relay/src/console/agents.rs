//! `/console/agents`: per tenant its agents (name, created, revoked) and their sessions (the
//! agent's version and address, the relay instance, connected, last seen, ended; one not
//! seen for two minutes counts as offline, see [`crate::store::AgentSessionRecord::is_live`]).
//! An admin creates an agent (its token is shown once, on the answer page, through
//! [`crate::admin::Admin::create_agent`]) and revokes one (through
//! [`crate::admin::Admin::revoke_agent`], ending its sessions here at once). Audited.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use shared::{AgentId, TenantId};

use super::PageError;
use super::actions::{
    Fields, SMALL_FORM_BYTES, admin, answer, audit, may_change, scope, tenant_id, time,
};
use super::i18n::{t, t_args};
use super::layout::{Section, csrf_field, page};
use crate::AppState;
use crate::accounts::Principal;
use crate::accounts::session::ConsoleUser;
use crate::admin::NewAgent;
use crate::error::ApiError;
use crate::store::{AgentRecord, AgentSessionRecord};

/// Most tenants one page shows (an operator picks one with `?tenant=`).
const MAX_TENANTS: u32 = 100;
/// Most sessions shown per tenant.
const SESSIONS: u32 = 50;

pub fn routes() -> Router<Arc<AppState>> {
    let small = DefaultBodyLimit::max(SMALL_FORM_BYTES);
    Router::new()
        .route("/agents", get(list))
        .route("/agents/create", post(create).layer(small))
        .route("/agents/{agent}/revoke", post(revoke).layer(small))
}

#[derive(Deserialize)]
struct Filter {
    tenant: Option<String>,
}

async fn list(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Query(filter): Query<Filter>,
) -> Result<Markup, PageError> {
    let tenants: Vec<TenantId> = match (scope(&user)?, filter.tenant.as_deref()) {
        (Some(own), _) => vec![own],
        (None, Some(chosen)) if !chosen.is_empty() => vec![tenant_id(chosen)?],
        (None, _) => app
            .store
            .tenants(MAX_TENANTS)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect(),
    };
    let language = user.language;
    let title = t(language, "agents-title");
    let mut sections = Vec::new();
    for tenant in tenants {
        let agents = app.store.agents(tenant.clone()).await?;
        let mut sessions = app.store.agent_sessions(tenant.clone(), SESSIONS).await?;
        // Every agent's newest session too, however often another one reconnected.
        for latest in app.store.latest_agent_sessions(tenant.clone()).await? {
            if !sessions.iter().any(|s| s.id == latest.id) {
                sessions.push(latest);
            }
        }
        sessions.sort_by_key(|s| std::cmp::Reverse(s.id));
        sections.push(tenant_section(&user, &tenant, &agents, &sessions));
    }
    let body = html! {
        h1 { (title) }
        p.muted { (t(language, "agents-intro")) }
        @if sections.is_empty() { p.muted { (t(language, "agents-no-tenants")) } }
        @for section in sections { (section) }
    };
    Ok(page(language, Some(&user), Section::Agents, &title, body))
}

fn tenant_section(
    user: &Principal,
    tenant: &TenantId,
    agents: &[AgentRecord],
    sessions: &[AgentSessionRecord],
) -> Markup {
    let language = user.language;
    let changes = user.may_change(tenant);
    let now = Utc::now();
    let name_of = |id: &AgentId| {
        agents
            .iter()
            .find(|a| &a.id == id)
            .map(|a| a.name.clone())
            .unwrap_or_default()
    };
    html! {
        section.card id=(format!("tenant-{tenant}")) {
            h2 { (tenant) }
            h3 { (t(language, "agents-agents")) }
            @if agents.is_empty() { p.muted { (t(language, "agents-none")) } }
            @else { div.scroll { table {
                thead { tr {
                    th { (t(language, "agents-col-name")) } th { (t(language, "agents-col-id")) }
                    th { (t(language, "agents-col-created")) } th { (t(language, "agents-col-revoked")) }
                    @if changes { th {} }
                } }
                tbody { @for agent in agents { tr {
                    td { (agent.name) } td { code { (agent.id) } }
                    td { (time(agent.created_at)) }
                    td { @if let Some(at) = agent.revoked_at { span.bad { (time(at)) } } @else { "—" } }
                    @if changes { td { @if agent.revoked_at.is_none() {
                        form.inline method="post" action=(format!("/console/agents/{}/revoke", agent.id)) {
                            (csrf_field(user))
                            button.secondary type="submit" { (t(language, "agents-revoke")) }
                        }
                    } } }
                } } }
            } } }
            h3 { (t(language, "agents-sessions")) }
            @if sessions.is_empty() { p.muted { (t(language, "agents-no-sessions")) } }
            @else { div.scroll { table {
                thead { tr {
                    th { (t(language, "agents-col-agent")) } th { (t(language, "agents-col-version")) }
                    th { (t(language, "agents-col-address")) } th { (t(language, "agents-col-instance")) }
                    th { (t(language, "agents-col-connected")) } th { (t(language, "agents-col-last-seen")) }
                    th { (t(language, "agents-col-ended")) }
                } }
                tbody { @for s in sessions { tr {
                    td { (name_of(&s.agent_id)) " " code.muted { (s.agent_id) } }
                    td { (s.agent_version) }
                    td { (s.address.as_deref().unwrap_or("—")) }
                    td { (s.instance) }
                    td { (time(s.connected_at)) }
                    td { (time(s.last_seen_at)) }
                    td {
                        @if let Some(at) = s.ended_at { (time(at)) }
                        @else if s.is_live(now) { span.online { (t(language, "agents-online")) } }
                        @else { span.offline { (t(language, "agents-not-seen")) } }
                    }
                } } }
            } } }
            @if changes {
                h3 { (t(language, "agents-create")) }
                form method="post" action="/console/agents/create" {
                    (csrf_field(user))
                    input type="hidden" name="tenant" value=(tenant);
                    label { (t(language, "agents-col-name")) " "
                        input type="text" name="name" maxlength="100" required;
                    }
                    " "
                    label { (t(language, "agents-ttl-days")) " "
                        input type="number" name="ttl_days" min="1" max="3650" value="365";
                    }
                    " " button type="submit" { (t(language, "agents-create-button")) }
                }
            }
        }
    }
}

async fn create(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, PageError> {
    let fields = Fields::new(fields)?;
    let tenant = tenant_id(fields.get("tenant").unwrap_or_default())?;
    may_change(&user, &tenant, &fields)?;
    let name = fields.get("name").unwrap_or_default().trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "the agent's name must be 1 to 100 printable characters".into(),
        )
        .into());
    }
    let ttl_days = match fields.get("ttl_days").map(str::trim) {
        None | Some("") => None,
        Some(days) => Some(days.parse::<u32>().map_err(|_| {
            ApiError::BadRequest(format!(
                "ttl_days {days:?}: a whole number of days, 1 to 3650"
            ))
        })?),
    };
    let issued = admin(&app, &user)
        .create_agent(
            tenant.to_string(),
            NewAgent {
                name: Some(name.clone()),
                ttl_days,
            },
        )
        .await?;
    let target = format!("tenants/{tenant}/agents/{}", issued.agent_id);
    audit(
        &app,
        &user,
        Some(&tenant),
        "console: create agent",
        target,
        Some(format!("name {name:?}")),
    )
    .await;
    let language = user.language;
    let title = t(language, "agents-created-title");
    answer(
        &user,
        Section::Agents,
        &title,
        "/console/agents",
        html! {
            p { (t_args(language, "agents-created", &[
                ("agent", issued.agent_id.to_string().into()),
                ("expires", issued.expires_at.clone().into()),
            ])) }
            p.secret { (issued.token) }
            p.muted { (t(language, "agents-token-once")) }
        },
    )
}

async fn revoke(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Path(agent): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, PageError> {
    let fields = Fields::new(fields)?;
    // Another tenant's agent is answered as one that does not exist.
    let not_found = || ApiError::NotFound(format!("agent {agent:?} not found"));
    let id = AgentId::new(agent.as_str()).map_err(|_| not_found())?;
    let record = app.store.agent(id.clone()).await?.ok_or_else(not_found)?;
    if !user.may_see(&record.tenant_id) {
        return Err(not_found().into());
    }
    may_change(&user, &record.tenant_id, &fields)?;
    admin(&app, &user).revoke_agent(id.to_string()).await?;
    let ended = app.registry.revoke(&id);
    tracing::info!(agent = %id, sessions = ended, "agent revoked from the console");
    let target = format!("tenants/{}/agents/{id}", record.tenant_id);
    audit(
        &app,
        &user,
        Some(&record.tenant_id),
        "console: revoke agent",
        target,
        None,
    )
    .await;
    let language = user.language;
    let title = t(language, "agents-revoked-title");
    answer(
        &user,
        Section::Agents,
        &title,
        "/console/agents",
        html! { p.good { (t_args(language, "agents-revoked", &[("agent", record.name.clone().into())])) } },
    )
}
