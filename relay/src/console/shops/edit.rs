//! Editing a shop's rules: flow, document type and trigger statuses as fields, the status
//! map, the price lists and the API settings as JSON (the shapes the admin API takes). A
//! rule the relay refuses brings the form back with the reason and what was entered.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use maud::{Markup, html};
use serde::de::DeserializeOwned;
use shared::domain::DocumentType;

use super::super::PageError;
use super::super::actions::{Fields, answer, may_change};
use super::super::i18n::t;
use super::super::layout::{Section, csrf_field, page};
use super::{flow_name, update_shop, visible_shop};
use crate::AppState;
use crate::accounts::Principal;
use crate::accounts::session::{ConsoleUser, require_change};
use crate::admin::ShopUpdate;
use crate::error::ApiError;
use crate::shop::{ApiSettings, Flow};
use crate::store::ShopRecord;

/// What the form holds, as entered.
struct Entered {
    flow: String,
    document_type: String,
    triggers: String,
    status_map: String,
    price_lists: String,
    api: String,
    /// A new API key for the shop's API; empty keeps the stored one. Never shown back.
    api_key: String,
}

impl Entered {
    fn of(shop: &ShopRecord) -> Self {
        let json = |v: serde_json::Result<String>| v.unwrap_or_default();
        Self {
            flow: flow_name(shop.settings.flow).to_owned(),
            document_type: shop.document_type.as_str().to_owned(),
            triggers: shop.trigger_statuses.join(", "),
            status_map: json(serde_json::to_string_pretty(&shop.settings.status_map)),
            price_lists: json(serde_json::to_string_pretty(&shop.settings.price_lists)),
            api: match &shop.settings.api {
                Some(api) => json(serde_json::to_string_pretty(api)),
                None => String::new(),
            },
            api_key: String::new(),
        }
    }

    fn posted(fields: &Fields) -> Self {
        let get = |name: &str| fields.get(name).unwrap_or_default().to_owned();
        Self {
            flow: get("flow"),
            document_type: get("document_type"),
            triggers: get("trigger_statuses"),
            status_map: get("status_map"),
            price_lists: get("price_lists"),
            api: get("api"),
            api_key: get("api_key"),
        }
    }

    /// The change it asks for; the message names the field that is wrong.
    fn update(&self) -> Result<ShopUpdate, String> {
        let flow: Flow = named("flow", &self.flow)?;
        let document_type: DocumentType = named("document_type", &self.document_type)?;
        let triggers: Vec<String> = self
            .triggers
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if triggers.is_empty() {
            return Err("trigger statuses: name at least one".into());
        }
        let status_map: BTreeMap<String, crate::shop::StatusRule> =
            json("status map", or_empty_object(&self.status_map))?;
        let price_lists: BTreeMap<String, String> =
            json("price lists", or_empty_object(&self.price_lists))?;
        let api: Option<ApiSettings> = match self.api.trim() {
            "" => None,
            text => Some(json("API", text)?),
        };
        Ok(ShopUpdate {
            trigger_statuses: Some(triggers),
            document_type: Some(document_type),
            flow: Some(flow),
            status_map: Some(status_map),
            price_lists: Some(price_lists),
            api,
            // Sent along, so that a changed API URL can come with the key it needs.
            api_key: Some(self.api_key.trim())
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            ..ShopUpdate::default()
        })
    }
}

fn or_empty_object(text: &str) -> &str {
    if text.trim().is_empty() { "{}" } else { text }
}

/// A value of an enum by its stored name.
fn named<T: DeserializeOwned>(field: &str, value: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| format!("{field}: {value:?} is not one of the choices"))
}

fn json<T: DeserializeOwned>(field: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("{field}: {e}"))
}

pub(super) async fn show(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Path(shop): Path<String>,
) -> Result<Markup, PageError> {
    let record = visible_shop(&app, &user, &shop).await?;
    require_change(&user, &record.tenant_id)?;
    Ok(form(&user, &record, &Entered::of(&record), None))
}

pub(super) async fn save(
    ConsoleUser(user): ConsoleUser,
    State(app): State<Arc<AppState>>,
    Path(shop): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Markup, PageError> {
    let fields = Fields::new(fields)?;
    let record = visible_shop(&app, &user, &shop).await?;
    may_change(&user, &record.tenant_id, &fields)?;
    let entered = Entered::posted(&fields);
    let update = match entered.update() {
        Ok(update) => update,
        Err(message) => return Ok(form(&user, &record, &entered, Some(&message))),
    };
    match update_shop(&app, &user, &record, update, "console: edit shop rules").await {
        Ok(()) => {}
        Err(ApiError::BadRequest(message)) => {
            return Ok(form(&user, &record, &entered, Some(&message)));
        }
        Err(e) => return Err(e.into()),
    }
    let language = user.language;
    let title = t(language, "shops-saved-title");
    answer(
        &user,
        Section::Shops,
        &title,
        "/console/shops",
        html! { p.good { (t(language, "shops-saved")) } },
    )
}

fn form(user: &Principal, shop: &ShopRecord, entered: &Entered, error: Option<&str>) -> Markup {
    let language = user.language;
    let title = format!("{} · {}", t(language, "shops-edit"), shop.shop_id);
    let body = html! {
        h1 { (title) }
        @if let Some(error) = error { p.notice.bad { (error) } }
        form method="post" action=(format!("/console/shops/{}/edit", shop.shop_id)) {
            (csrf_field(user))
            p { label { (t(language, "shops-flow")) " "
                select name="flow" {
                    @for flow in ["ecom", "erp", "combo"] {
                        option value=(flow) selected[entered.flow == flow] { (t(language, &format!("shops-flow-{flow}"))) }
                    }
                }
            } }
            p { label { (t(language, "shops-document-type")) " "
                select name="document_type" {
                    @for kind in ["order", "invoice"] {
                        option value=(kind) selected[entered.document_type == kind] { (kind) }
                    }
                }
            } }
            p { label { (t(language, "shops-triggers")) " "
                input type="text" name="trigger_statuses" value=(entered.triggers) size="40" maxlength="2000";
            } }
            p { label { (t(language, "shops-status-map")) " (JSON)" br;
                textarea name="status_map" spellcheck="false" { (entered.status_map) }
            } }
            p { label { (t(language, "shops-price-lists")) " (JSON)" br;
                textarea name="price_lists" spellcheck="false" { (entered.price_lists) }
            } }
            p { label { (t(language, "shops-api")) " (JSON)" br;
                textarea name="api" spellcheck="false" { (entered.api) }
            } }
            // The key is never put back into the page, also not when the form comes back.
            p { label { (t(language, "shops-new-api-key")) " "
                input type="password" name="api_key" value="" autocomplete="new-password" size="40" maxlength="4096";
            } }
            p.muted { (t(language, "shops-api-help")) }
            button type="submit" { (t(language, "shops-save")) }
        }
        p { a href="/console/shops" { (t(language, "actions-back")) } }
    };
    page(language, Some(user), Section::Shops, &title, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entered() -> Entered {
        Entered {
            flow: "combo".into(),
            document_type: "invoice".into(),
            triggers: " paid, confirmed ,".into(),
            status_map: r#"{"delivered": {"shop_status": "shipped", "capture": true}}"#.into(),
            price_lists: "".into(),
            api: "".into(),
            api_key: " ".into(),
        }
    }

    #[test]
    fn the_form_reads_into_a_shop_change_and_names_a_wrong_field() {
        let update = entered().update().expect("a change");
        assert_eq!(update.flow, Some(Flow::Combo));
        assert_eq!(update.document_type, Some(DocumentType::Invoice));
        assert_eq!(
            update.trigger_statuses,
            Some(vec!["paid".into(), "confirmed".into()])
        );
        let map = update.status_map.expect("a map");
        assert!(map["delivered"].capture && !map["delivered"].tracking);
        assert_eq!(update.price_lists, Some(BTreeMap::new()));
        assert!(
            update.api.is_none() && update.api_key.is_none() && update.webhook_secrets.is_none()
        );

        let mut keyed = entered();
        keyed.api_key = " new-key ".into();
        assert_eq!(
            keyed.update().expect("a change").api_key.as_deref(),
            Some("new-key")
        );

        let mut wrong = entered();
        wrong.flow = "sideways".into();
        assert!(wrong.update().err().is_some_and(|e| e.starts_with("flow")));
        let mut wrong = entered();
        wrong.status_map = "{".into();
        assert!(
            wrong
                .update()
                .err()
                .is_some_and(|e| e.starts_with("status map"))
        );
        let mut wrong = entered();
        wrong.triggers = " , ".into();
        assert!(wrong.update().is_err());
    }
}
