//! `GET /console/orders`: the order search (shop order id, Mamut number, customer e-mail,
//! state, shop, received from/to), newest first and bounded, always within the caller's
//! tenant and a received-at window of at most a year (the last month when no date is
//! given), which the page names; and `GET /console/orders/{tenant}/{event_id}`, one order's timeline
//! ([`timeline`]).

mod timeline;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use chrono::{DateTime, Datelike, Days, Duration, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use shared::{ShopId, TenantId};

use super::PageError;
use super::i18n::{t, t_args};
use super::layout::{Section, page};
use super::views::{state_badge, time, time_cell};
use crate::AppState;
use crate::accounts::session::ConsoleUser;
use crate::accounts::{Language, Principal};
use crate::store::{EventState, OrderHit, OrderQuery};

/// Most results one search shows.
const RESULTS: u32 = 200;

/// Longest text accepted in one search field.
const MAX_FIELD: usize = 200;

/// The years a searched date may fall in; any other is refused as not a date.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=9999;

/// Days searched back from the end of the window when no "from" date is given.
const DEFAULT_WINDOW_DAYS: i64 = 31;

/// Longest window one search may cover, in days.
const MAX_WINDOW_DAYS: i64 = 366;

/// The states an event can be searched by, in the form's order.
const STATES: [EventState; 6] = [
    EventState::Pending,
    EventState::Fetching,
    EventState::Delivered,
    EventState::Dead,
    EventState::Held,
    EventState::Ignored,
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/orders", get(search))
        .route("/orders/{tenant}/{event_id}", get(timeline::show))
}

/// The search form as submitted: every field text, empty meaning "any".
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SearchForm {
    order: String,
    mamut: String,
    email: String,
    state: String,
    shop: String,
    from: String,
    to: String,
}

impl SearchForm {
    /// The store's query within `scope`, or the problems with the form, each in words.
    fn query(
        &self,
        language: Language,
        scope: Option<&TenantId>,
        now: DateTime<Utc>,
    ) -> Result<OrderQuery, Vec<String>> {
        let mut problems = Vec::new();
        let mut text = |value: &str, field: &str| -> Option<String> {
            let value = value.trim();
            if value.chars().count() > MAX_FIELD {
                problems.push(t_args(
                    language,
                    "search-too-long",
                    &[
                        ("field", t(language, field).into()),
                        ("max", (MAX_FIELD as u64).into()),
                    ],
                ));
                return None;
            }
            (!value.is_empty()).then(|| value.to_owned())
        };
        let shop_order_id = text(&self.order, "search-order");
        let mamut_ref = text(&self.mamut, "search-mamut");
        let email = text(&self.email, "search-email");
        let state_text = text(&self.state, "search-state");
        let shop_text = text(&self.shop, "view-col-shop");
        let from_text = text(&self.from, "search-from");
        let to_text = text(&self.to, "search-to");
        let state = match state_text {
            None => None,
            Some(s) => match EventState::parse(&s) {
                Some(state) => Some(state),
                None => {
                    problems.push(t_args(language, "search-bad-state", &[("value", s.into())]));
                    None
                }
            },
        };
        let shop = match shop_text {
            None => None,
            Some(s) => match ShopId::new(s.clone()) {
                Ok(shop) => Some(shop),
                Err(_) => {
                    problems.push(t_args(language, "search-bad-shop", &[("value", s.into())]));
                    None
                }
            },
        };
        let mut date = |value: Option<String>, field: &str| -> Option<NaiveDate> {
            let value = value?;
            match NaiveDate::parse_from_str(&value, "%Y-%m-%d") {
                Ok(day) if YEARS.contains(&day.year()) => Some(day),
                _ => {
                    problems.push(t_args(
                        language,
                        "search-bad-date",
                        &[
                            ("field", t(language, field).into()),
                            ("value", value.into()),
                        ],
                    ));
                    None
                }
            }
        };
        let from_day = date(from_text, "search-from");
        let to_day = date(to_text, "search-to");
        if !problems.is_empty() {
            return Err(problems);
        }
        let (from, to) = window(from_day, to_day, now).map_err(|days| {
            vec![t_args(
                language,
                "search-window-too-long",
                &[("days", days.into()), ("max", MAX_WINDOW_DAYS.into())],
            )]
        })?;
        Ok(OrderQuery {
            tenant: scope.cloned(),
            shop_order_id,
            mamut_ref,
            email,
            state,
            shop,
            from: Some(from),
            to: Some(to),
            limit: RESULTS,
        })
    }
}

/// The received-at window `[from, to)` a search covers: "to" is a day searched to its end
/// (now when not given), "from" a day's start ([`DEFAULT_WINDOW_DAYS`] before "to" when not
/// given). A window longer than [`MAX_WINDOW_DAYS`] is refused with its length in days.
fn window(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), i64> {
    let start_of = |day: NaiveDate| day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    // Days within `YEARS` and a day's length keep every step in chrono's range; an
    // overflow anyway is refused as a too long window, never a panic.
    let too_long = || MAX_WINDOW_DAYS + 1;
    let to = match to {
        Some(day) => day
            .checked_add_days(Days::new(1))
            .and_then(start_of)
            .ok_or_else(too_long)?,
        None => now,
    };
    let from = match from {
        Some(day) => start_of(day).ok_or_else(too_long)?,
        None => to
            .checked_sub_signed(Duration::days(DEFAULT_WINDOW_DAYS))
            .ok_or_else(too_long)?,
    };
    let days = (to - from).num_days();
    if days > MAX_WINDOW_DAYS {
        return Err(days);
    }
    Ok((from, to))
}

async fn search(
    State(state): State<Arc<AppState>>,
    ConsoleUser(user): ConsoleUser,
    form: Result<Query<SearchForm>, QueryRejection>,
) -> Result<Markup, PageError> {
    let language = user.language;
    // A query string that does not even decode is shown as a problem, like a bad field.
    let (form, decoded) = match form {
        Ok(Query(form)) => (form, true),
        Err(_) => (SearchForm::default(), false),
    };
    let (hits, searched, problems) = match form.query(language, user.scope()?.tenant(), Utc::now())
    {
        Ok(query) if decoded => {
            let searched = query.from.zip(query.to);
            (
                state.store.search_orders(query).await?,
                searched,
                Vec::new(),
            )
        }
        Ok(_) => (Vec::new(), None, vec![t(language, "search-unreadable")]),
        Err(problems) => (Vec::new(), None, problems),
    };
    let title = t(language, "orders-title");
    let body = html! {
        h1 { (title) }
        (search_form(language, &form))
        @for problem in &problems {
            p.notice.bad role="alert" { (problem) }
        }
        @if problems.is_empty() {
            @if let Some((from, to)) = searched {
                p.muted.window {
                    (t_args(language, "search-window", &[("from", time(from).into()), ("to", time(to).into())]))
                }
            }
            (results(language, &user, &hits))
        }
    };
    Ok(page(language, Some(&user), Section::Orders, &title, body))
}

fn search_form(language: Language, form: &SearchForm) -> Markup {
    let field = |name: &str, label: &str, value: &str, kind: &str| {
        html! {
            label { (t(language, label))
                input type=(kind) name=(name) value=(value) maxlength=(MAX_FIELD);
            }
        }
    };
    html! {
        form.filters method="get" action="/console/orders" {
            (field("order", "search-order", &form.order, "search"))
            (field("mamut", "search-mamut", &form.mamut, "search"))
            (field("email", "search-email", &form.email, "search"))
            label { (t(language, "search-state"))
                select name="state" {
                    option value="" { (t(language, "search-any-state")) }
                    @for s in STATES {
                        option value=(s.as_str()) selected[form.state == s.as_str()] {
                            (t(language, &format!("view-state-{}", s.as_str())))
                        }
                    }
                }
            }
            (field("shop", "view-col-shop", &form.shop, "search"))
            (field("from", "search-from", &form.from, "date"))
            (field("to", "search-to", &form.to, "date"))
            button type="submit" { (t(language, "search-submit")) }
        }
    }
}

fn results(language: Language, user: &Principal, hits: &[OrderHit]) -> Markup {
    let all_tenants = user.scope().is_ok_and(|s| s.is_all());
    html! {
        p.muted {
            (t_args(language, "search-count", &[("n", (hits.len() as u64).into()), ("max", u64::from(RESULTS).into())]))
        }
        @if !hits.is_empty() {
            div.scroll {
                table.orders {
                    thead { tr {
                        th { (t(language, "view-col-received")) }
                        @if all_tenants { th { (t(language, "view-col-tenant")) } }
                        th { (t(language, "view-col-shop")) }
                        th { (t(language, "view-col-order")) }
                        th { (t(language, "view-col-status")) }
                        th { (t(language, "view-col-state")) }
                        th { (t(language, "view-col-mamut")) }
                        th { (t(language, "view-col-attempts")) }
                        th { (t(language, "view-col-last-error")) }
                    } }
                    tbody {
                        @for hit in hits {
                            @let e = &hit.event;
                            tr {
                                td { (time_cell(e.received_at)) }
                                @if all_tenants { td { (hit.tenant_id.as_str()) } }
                                td { (e.shop_id.as_str()) }
                                td { a.order href=(format!("/console/orders/{}/{}", hit.tenant_id, e.id)) { (e.order_id) } }
                                td { (e.order_status) }
                                td { (state_badge(language, e.state.as_str())) }
                                td { (e.mamut_ref.as_deref().unwrap_or("–")) }
                                td { (e.attempts) }
                                td { (e.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(f: impl FnOnce(&mut SearchForm)) -> SearchForm {
        let mut form = SearchForm::default();
        f(&mut form);
        form
    }

    #[test]
    fn a_search_is_limited_to_the_callers_tenant_and_reads_its_fields() {
        let acme = TenantId::new("acme").expect("tenant id");
        let query = form(|f| {
            f.order = " 1001 ".into();
            f.state = "dead".into();
            f.from = "2026-12-01".into();
            f.to = "2026-12-01".into();
        })
        .query(Language::En, Some(&acme), Utc::now())
        .expect("a valid search");
        assert_eq!(query.tenant.as_ref(), Some(&acme));
        assert_eq!(query.shop_order_id.as_deref(), Some("1001"));
        assert_eq!(query.state, Some(EventState::Dead));
        assert_eq!(query.mamut_ref, None);
        let (from, to) = (query.from.expect("from"), query.to.expect("to"));
        assert_eq!(to - from, Duration::days(1));
    }

    #[test]
    fn bad_fields_are_named_not_searched() {
        let problems = form(|f| {
            f.state = "lost".into();
            f.from = "yesterday".into();
            f.mamut = "x".repeat(MAX_FIELD + 1);
        })
        .query(Language::En, None, Utc::now())
        .expect_err("refused");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("yesterday")));
        assert!(problems.iter().any(|p| p.contains("lost")));
    }

    #[test]
    fn a_date_out_of_range_is_a_bad_date_not_a_panic() {
        for to in ["+262142-12-31", "9999-12-31x", "1999-12-31", "-0001-01-01"] {
            let problems = form(|f| f.to = to.into())
                .query(Language::En, None, Utc::now())
                .expect_err("refused");
            assert_eq!(problems.len(), 1, "{to}: {problems:?}");
            assert!(problems[0].contains(to), "{to}: {problems:?}");
        }
        // The last day of the last year accepted is searched to its end.
        let query = form(|f| {
            f.from = "9999-12-31".into();
            f.to = "9999-12-31".into();
        })
        .query(Language::En, None, Utc::now())
        .expect("a valid search");
        let (from, to) = (query.from.expect("from"), query.to.expect("to"));
        assert_eq!(to - from, Duration::days(1));
    }

    #[test]
    fn a_search_without_dates_covers_the_last_31_days_and_at_most_366() {
        let now = Utc::now();
        let query = form(|_| {})
            .query(Language::En, None, now)
            .expect("a valid search");
        assert_eq!(query.to, Some(now));
        assert_eq!(query.from, Some(now - Duration::days(DEFAULT_WINDOW_DAYS)));
        let query = form(|f| f.to = "2026-03-01".into())
            .query(Language::En, None, now)
            .expect("a valid search");
        let (from, to) = (query.from.expect("from"), query.to.expect("to"));
        assert_eq!(to - from, Duration::days(DEFAULT_WINDOW_DAYS));
        let problems = form(|f| {
            f.from = "2024-01-01".into();
            f.to = "2025-12-31".into();
        })
        .query(Language::En, None, now)
        .expect_err("refused");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("731"), "{problems:?}");
        assert!(
            form(|f| {
                f.from = "2024-01-01".into();
                f.to = "2024-12-31".into();
            })
            .query(Language::En, None, now)
            .is_ok(),
            "a leap year's 366 days are one window"
        );
    }
}
