//! `GET /console/`: per tenant the caller may see, its agents (online or not, version,
//! connected since, last seen, address), its queue (depth, the oldest pending event's age,
//! dead letters, held orders), its shops' last successful calls, and two charts of the last
//! 24 hours: orders per hour, and webhook → Mamut latency (median and 95th percentile).

mod chart;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use shared::TenantId;

use super::PageError;
use super::i18n::{t, t_args};
use super::layout::{Section, page};
use super::views::{age, time_cell};
use crate::AppState;
use crate::accounts::session::ConsoleUser;
use crate::accounts::{Language, Principal};
use crate::store::{
    AgentRecord, AgentSessionRecord, AnyStore, QueueStats, ShopActivity, TenantRecord,
};

/// Most tenants one overview shows (an operator's); the others are named as left out.
const SHOWN_TENANTS: u32 = 100;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/", get(overview))
}

/// What the overview shows of one tenant.
struct TenantView {
    tenant: TenantRecord,
    agents: Vec<(AgentRecord, Option<AgentSessionRecord>)>,
    queue: QueueStats,
    shops: Vec<ShopActivity>,
    orders: [u64; chart::HOURS],
    latency: [Option<(f64, f64)>; chart::HOURS],
}

/// `GET /console/`: the overview of every tenant the caller may see.
pub async fn overview(
    State(state): State<Arc<AppState>>,
    ConsoleUser(user): ConsoleUser,
) -> Result<Markup, PageError> {
    let now = Utc::now();
    let tenants = visible_tenants(&state.store, &user).await?;
    let mut views = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        views.push(tenant_view(&state.store, tenant, now).await?);
    }
    let language = user.language;
    let title = t(language, "overview-title");
    let body = html! {
        h1 { (title) }
        @if views.is_empty() {
            p.notice { (t(language, "overview-no-tenants")) }
        }
        @if views.len() as u32 >= SHOWN_TENANTS {
            p.muted { (t_args(language, "overview-first-tenants", &[("n", u64::from(SHOWN_TENANTS).into())])) }
        }
        @for view in &views {
            (tenant_card(language, now, view))
        }
    };
    Ok(page(language, Some(&user), Section::Overview, &title, body))
}

/// The tenants `user` may see: every tenant (up to [`SHOWN_TENANTS`]) for an operator, its
/// own for a tenant account.
async fn visible_tenants(
    store: &AnyStore,
    user: &Principal,
) -> Result<Vec<TenantRecord>, PageError> {
    Ok(match user.scope()?.tenant() {
        None => store.tenants(SHOWN_TENANTS).await?,
        // Read directly: its place among all the tenants does not matter.
        Some(own) => store.tenant(own.clone()).await?.into_iter().collect(),
    })
}

async fn tenant_view(
    store: &AnyStore,
    tenant: TenantRecord,
    now: DateTime<Utc>,
) -> Result<TenantView, PageError> {
    let id: TenantId = tenant.id.clone();
    let sessions = store.latest_agent_sessions(id.clone()).await?;
    let agents = store
        .agents(id.clone())
        .await?
        .into_iter()
        .filter(|a| a.revoked_at.is_none())
        .map(|agent| {
            // One session per agent: its newest.
            let newest = sessions.iter().find(|s| s.agent_id == agent.id).cloned();
            (agent, newest)
        })
        .collect();
    let first = chart::first_hour(now);
    let counts = store.orders_per_hour(id.clone(), first).await?;
    let times = store
        .delivery_times(id.clone(), first, crate::store::MAX_LATENCY_SAMPLE)
        .await?;
    Ok(TenantView {
        queue: store.queue_stats(id.clone()).await?,
        shops: shop_rows(store, &id).await?,
        orders: chart::order_counts(first, &counts),
        latency: chart::latencies(first, &times),
        agents,
        tenant,
    })
}

/// Every shop of the tenant with its last successful calls (none yet: empty).
async fn shop_rows(store: &AnyStore, tenant: &TenantId) -> Result<Vec<ShopActivity>, PageError> {
    let activity = store.shop_activity(tenant.clone()).await?;
    let shops = store.shops(Some(tenant.clone())).await?;
    Ok(shops
        .into_iter()
        .map(|shop| {
            activity
                .iter()
                .find(|a| a.shop_id == shop.shop_id)
                .cloned()
                .unwrap_or(ShopActivity {
                    shop_id: shop.shop_id,
                    last_dispatch_at: None,
                    last_delivered_at: None,
                })
        })
        .collect())
}

fn tenant_card(language: Language, now: DateTime<Utc>, view: &TenantView) -> Markup {
    let tenant = &view.tenant;
    let queue = &view.queue;
    let first = chart::first_hour(now);
    let never = t(language, "view-never");
    let when = |at: Option<DateTime<Utc>>| match at {
        Some(at) => {
            html! { (time_cell(at)) br; span.muted { (t_args(language, "view-ago", &[("age", age(language, now, at).into())])) } }
        }
        None => html! { span.muted { (never) } },
    };
    html! {
        section.card.tenant data-tenant=(tenant.id.as_str()) {
            h2 { (tenant.name) " " span.muted { "(" (tenant.id.as_str()) ")" } }
            div.grid {
                div {
                    h3 { (t(language, "overview-queue")) }
                    table {
                        tr { th { (t(language, "overview-queue-depth")) } td.queue-depth { (queue.pending + queue.fetching) } }
                        tr { th { (t(language, "overview-oldest-pending")) }
                             td { @match queue.oldest_pending_at {
                                 Some(at) => span.warn { (age(language, now, at)) },
                                 None => span.muted { "–" },
                             } } }
                        tr { th { (t(language, "overview-dead")) } td class=[(queue.dead > 0).then_some("bad")] { (queue.dead) } }
                        tr { th { (t(language, "overview-held")) } td class=[(queue.held > 0).then_some("bad")] { (queue.held) } }
                        tr { th { (t(language, "overview-dispatch-dead")) } td class=[(queue.dispatch_dead > 0).then_some("bad")] { (queue.dispatch_dead) } }
                    }
                }
                div {
                    h3 { (t(language, "overview-agents")) }
                    @if view.agents.is_empty() {
                        p.muted { (t(language, "overview-no-agents")) }
                    }
                    @for (agent, session) in &view.agents {
                        (agent_block(language, now, agent, session.as_ref()))
                    }
                }
            }
            h3 { (t(language, "overview-shops")) }
            div.scroll {
                table {
                    thead { tr {
                        th { (t(language, "view-col-shop")) }
                        th { (t(language, "overview-last-dispatch")) }
                        th { (t(language, "overview-last-delivered")) }
                    } }
                    tbody {
                        @for shop in &view.shops {
                            tr {
                                td { a href=(format!("/console/orders?shop={}", shop.shop_id)) { (shop.shop_id.as_str()) } }
                                td { (when(shop.last_dispatch_at)) }
                                td { (when(shop.last_delivered_at)) }
                            }
                        }
                    }
                }
            }
            @if view.shops.is_empty() { p.muted { (t(language, "overview-no-shops")) } }
            div.grid {
                div {
                    h3 { (t(language, "overview-orders-chart")) }
                    (chart::bars(first, &view.orders, &t(language, "overview-orders-chart")))
                }
                div {
                    h3 { (t(language, "overview-latency-chart")) }
                    (chart::lines(first, &view.latency, &t(language, "overview-latency-chart"),
                        (&t(language, "overview-median"), &t(language, "overview-p95"))))
                }
            }
        }
    }
}

fn agent_block(
    language: Language,
    now: DateTime<Utc>,
    agent: &AgentRecord,
    session: Option<&AgentSessionRecord>,
) -> Markup {
    let online = session.is_some_and(|s| s.is_live(now));
    html! {
        div.agent {
            strong { (agent.name) } " "
            @if online {
                span.online { (t(language, "view-agent-online")) }
            } @else {
                span.offline { (t(language, "view-agent-offline")) }
            }
            @match session {
                Some(s) => table {
                    tr { th { (t(language, "view-agent-version")) } td { (s.agent_version) } }
                    tr { th { (t(language, "view-agent-connected-since")) } td { (time_cell(s.connected_at)) } }
                    tr { th { (t(language, "view-agent-last-seen")) } td {
                        (t_args(language, "view-ago", &[("age", age(language, now, s.last_seen_at).into())]))
                    } }
                    tr { th { (t(language, "view-agent-address")) } td { (s.address.as_deref().unwrap_or("–")) } }
                },
                None => p.muted { (t(language, "view-agent-never-connected")) },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn ago(now: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
        now - Duration::seconds(seconds)
    }

    #[test]
    fn an_agent_seen_lately_is_online_and_a_stale_one_offline() {
        let now = Utc::now();
        let agent = AgentRecord {
            id: shared::AgentId::new("ag_1".to_owned()).expect("agent id"),
            tenant_id: TenantId::new("acme".to_owned()).expect("tenant id"),
            name: "kassan".into(),
            created_at: ago(now, 3600),
            revoked_at: None,
        };
        let mut session = AgentSessionRecord {
            id: 1,
            agent_id: agent.id.clone(),
            tenant_id: agent.tenant_id.clone(),
            instance: "i".into(),
            agent_version: "1.2.3".into(),
            address: Some("192.0.2.7".into()),
            connected_at: ago(now, 600),
            last_seen_at: ago(now, 10),
            ended_at: None,
        };
        let html = agent_block(Language::En, now, &agent, Some(&session)).into_string();
        assert!(html.contains("online") && html.contains("1.2.3") && html.contains("192.0.2.7"));
        session.last_seen_at = ago(now, 600);
        let html = agent_block(Language::Sv, now, &agent, Some(&session)).into_string();
        assert!(html.contains("offline"), "{html}");
    }
}
