//! `GET /console/audit`: who changed which rule, replayed what, created which token, when;
//! newest first, the last [`ENTRIES`] within the caller's tenant (every tenant's, and the
//! relay's own, for an operator).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use super::PageError;
use super::i18n::{t, t_args};
use super::layout::{Section, page};
use super::views::time_cell;
use crate::AppState;
use crate::accounts::Principal;
use crate::accounts::session::ConsoleUser;
use crate::store::AuditEntry;

/// Entries one page shows.
const ENTRIES: u32 = 200;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/audit", get(audit))
}

async fn audit(
    State(state): State<Arc<AppState>>,
    ConsoleUser(user): ConsoleUser,
) -> Result<Markup, PageError> {
    let entries = state
        .store
        .audit(user.scope()?.tenant().cloned(), ENTRIES)
        .await?;
    let language = user.language;
    let title = t(language, "audit-title");
    let body = html! {
        h1 { (title) }
        p.muted { (t_args(language, "audit-newest", &[("n", u64::from(ENTRIES).into())])) }
        (table(&user, &entries))
    };
    Ok(page(language, Some(&user), Section::Audit, &title, body))
}

fn table(user: &Principal, entries: &[AuditEntry]) -> Markup {
    let language = user.language;
    html! {
        @if entries.is_empty() {
            p.notice { (t(language, "audit-empty")) }
        } @else {
            div.scroll {
                table.audit {
                    thead { tr {
                        th { (t(language, "view-col-when")) }
                        th { (t(language, "view-col-actor")) }
                        @if user.scope().is_ok_and(|s| s.is_all()) { th { (t(language, "view-col-tenant")) } }
                        th { (t(language, "view-col-action")) }
                        th { (t(language, "view-col-target")) }
                        th { (t(language, "view-col-detail")) }
                    } }
                    tbody {
                        @for entry in entries {
                            tr {
                                td { (time_cell(entry.at)) }
                                td { (entry.actor) }
                                @if user.scope().is_ok_and(|s| s.is_all()) {
                                    td { (entry.tenant_id.as_ref().map(|t| t.as_str()).unwrap_or("–")) }
                                }
                                td { code { (entry.action) } }
                                td { (entry.target) }
                                td { (entry.detail.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}
