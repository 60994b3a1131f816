//! The frame of every console page: head, navigation for the signed-in account, the
//! stylesheet (our own, served at `/console/assets/console.css`), and the error page. Pages
//! work without script: links and forms, each form that changes something carrying the
//! session's CSRF token ([`csrf_field`]).

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::i18n::{t, t_args};
use crate::accounts::{Language, Principal};

/// The console's sections, for the navigation's highlight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Orders,
    Failures,
    Shops,
    Agents,
    Audit,
    /// A page outside the navigation (sign-in).
    None,
}

const NAV: [(Section, &str, &str); 6] = [
    (Section::Overview, "/console/", "nav-overview"),
    (Section::Orders, "/console/orders", "nav-orders"),
    (Section::Failures, "/console/failures", "nav-failures"),
    (Section::Shops, "/console/shops", "nav-shops"),
    (Section::Agents, "/console/agents", "nav-agents"),
    (Section::Audit, "/console/audit", "nav-audit"),
];

/// A full page for `user` (or for nobody, on the sign-in page) in `language`.
pub fn page(
    language: Language,
    user: Option<&Principal>,
    section: Section,
    title: &str,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(language.as_str()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (t(language, "app-name")) }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header.top {
                    a.brand href="/console/" { (t(language, "app-name")) }
                    @if let Some(user) = user {
                        nav {
                            @for (s, href, label) in NAV {
                                a href=(href) class=[(s == section).then_some("active")] {
                                    (t(language, label))
                                }
                            }
                        }
                        div.who {
                            span {
                                (t_args(language, "signed-in-as", &[
                                    ("user", user.actor.as_str().into()),
                                    ("role", t(language, &format!("role-{}", user.role.as_str())).into()),
                                ]))
                            }
                            form.inline method="post" action="/console/language" {
                                (csrf_field(user))
                                select name="language" aria-label=(t(language, "nav-language")) {
                                    @for choice in Language::ALL {
                                        option value=(choice.as_str()) selected[choice == language] {
                                            (native_name(choice))
                                        }
                                    }
                                }
                                button.secondary type="submit" { (t(language, "nav-language")) }
                            }
                            form method="post" action="/console/logout" {
                                (csrf_field(user))
                                button type="submit" { (t(language, "nav-logout")) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A language's name in itself, as a language menu shows it.
fn native_name(language: Language) -> &'static str {
    match language {
        Language::En => "English",
        Language::Sv => "Svenska",
    }
}

/// The hidden field that carries the session's CSRF token in a form that changes something.
pub fn csrf_field(user: &Principal) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(user.csrf.as_deref().unwrap_or_default());
    }
}

/// The page shown for a failed console request, in English and Swedish (the failure may
/// come before the account, and so its language, is known).
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (status.as_u16()) " " (title) }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                main.error {
                    h1 { (t(Language::En, "error-title")) " / " (t(Language::Sv, "error-title")) }
                    p.message { (status.as_u16()) " " (title) ": " (message) }
                    p { a href="/console/" { (t(Language::En, "error-back")) } }
                }
            }
        }
    }
}

/// The stylesheet: readable on a laptop and a tablet, tables that scroll sideways on a
/// narrow screen.
pub const STYLESHEET: &str = r#"
:root { --fg: #1d2330; --muted: #5b6474; --line: #d9dde5; --bg: #f6f7f9; --accent: #1f5fbf;
        --bad: #b42318; --good: #1a7f37; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
header.top { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center;
             padding: .6rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
header.top .brand { font-weight: 600; color: var(--fg); text-decoration: none; }
header.top nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; }
header.top nav a { color: var(--muted); text-decoration: none; padding: .2rem 0; }
header.top nav a.active { color: var(--accent); border-bottom: 2px solid var(--accent); }
header.top .who { margin-left: auto; display: flex; gap: .75rem; align-items: center;
                  color: var(--muted); font-size: .9rem; }
main { padding: 1rem; max-width: 80rem; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
section.card { background: #fff; border: 1px solid var(--line); border-radius: 6px;
               padding: .75rem 1rem; margin-bottom: 1rem; }
.grid { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .85rem; }
pre { white-space: pre-wrap; word-break: break-word; background: var(--bg); padding: .5rem;
      border-radius: 4px; font-size: .85rem; max-height: 28rem; overflow: auto; }
textarea { width: 100%; min-height: 18rem; font: .85rem/1.4 ui-monospace, monospace; }
input, select, button, textarea { font: inherit; }
input, select { padding: .3rem .4rem; border: 1px solid var(--line); border-radius: 4px; }
button { padding: .35rem .8rem; border: 1px solid var(--accent); border-radius: 4px;
         background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
form.inline { display: inline; }
form.filters { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin-bottom: 1rem; }
form.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
.state-delivered, .state-done, .online, .good { color: var(--good); }
.state-dead, .state-held, .offline, .bad { color: var(--bad); }
.state-pending, .state-fetching, .warn { color: var(--warn); }
.notice { padding: .6rem .8rem; border-radius: 4px; background: #eef4ff; border: 1px solid #c9dafc; }
.secret { font-family: ui-monospace, monospace; word-break: break-all; background: #fff8e1;
          border: 1px solid #f0d58c; padding: .5rem; border-radius: 4px; }
.muted { color: var(--muted); }
ol.timeline { list-style: none; padding: 0; margin: 0; border-left: 2px solid var(--line); }
ol.timeline > li { margin: 0 0 1rem 1rem; position: relative; }
ol.timeline > li::before { content: ""; position: absolute; left: -1.45rem; top: .45rem;
                           width: .7rem; height: .7rem; border-radius: 50%; background: var(--accent); }
svg.chart { width: 100%; height: auto; background: #fff; }
main.error { max-width: 40rem; }
@media (max-width: 40rem) { header.top .who { margin-left: 0; } th, td { padding: .3rem; } }
"#;

#[cfg(test)]
mod tests {
    use maud::html;

    use super::*;
    use crate::accounts::Role;

    #[test]
    fn a_signed_in_page_offers_the_languages_with_the_sessions_csrf_token() {
        let user = Principal {
            actor: "anna".into(),
            role: Role::TenantViewer,
            tenant: None,
            language: Language::Sv,
            csrf: Some("token-123".into()),
        };
        let page = page(
            Language::Sv,
            Some(&user),
            Section::Orders,
            "Ordrar",
            html! { p { "x" } },
        )
        .into_string();
        assert!(page.contains(r#"action="/console/language""#), "{page}");
        assert!(
            page.contains(r#"<option value="sv" selected>Svenska</option>"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<option value="en">English</option>"#),
            "{page}"
        );
        assert_eq!(page.matches(r#"value="token-123""#).count(), 2, "{page}");
        assert!(page.contains("Inloggad som anna (kundläsare)"), "{page}");
        assert!(
            page.contains(r#"<a href="/console/orders" class="active">Ordrar</a>"#),
            "{page}"
        );
        let signed_out = super::page(Language::En, None, Section::None, "Sign in", html! {});
        assert!(!signed_out.into_string().contains("/console/language"));
    }
}
