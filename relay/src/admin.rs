//! The admin API under `/admin/v1`, behind the admin bearer token. The same operations are
//! reachable from the `relay` CLI through [`Admin`], so both paths share one implementation.
//!
//! - `requests`: the bodies, queries and views of the API, and their checks.
//! - `routes`: the HTTP routes and the bearer check.
//! - `openapi`: the API's OpenAPI 3.1 document, served at `/admin/v1/openapi.json`.
//! - `docs`: the reference rendered from that document, at `/admin/v1/docs`.

mod alerts;
mod docs;
pub mod openapi;
mod requests;
mod routes;

use serde_json::{Value, json};
use shared::domain::OrderWebhook;
use shared::settings::without_values;
use shared::{AgentId, ShopId};

use crate::auth::Tokens;
use crate::error::ApiError;
use crate::shop::ShopSettings;
use crate::store::{AnyStore, EventState, Notice, ShopRecord, TenantRecord};
use crate::validate;

pub use self::requests::{
    ApiJson, ApiPath, ApiQuery, BodyLimit, DispatchList, EditedEvent, EventDetail, EventList,
    EventPayloadView, EventQuery, IssuedAgent, NewAgent, NewShop, NewTenant, PushList, ReplayQuery,
    ReplayedDispatch, ReplayedEvent, ShopList, ShopUpdate, ShopView,
};
use self::requests::{
    api_key, as_json, check_shop, check_statuses, stored_problems, tenant_id, webhook_secrets,
};
pub use self::routes::{require_admin, router};

/// The most agents a tenant may have that are not revoked.
pub const MAX_AGENTS_PER_TENANT: usize = 100;

/// The longest agent name, in characters.
pub const MAX_AGENT_NAME_CHARS: usize = 100;

/// The admin operations, shared by the HTTP API, the console and the CLI.
pub struct Admin<'a> {
    pub store: &'a AnyStore,
    pub tokens: &'a Tokens,
    /// Whether the caller is an operator (the CLI, the admin token, an operator's account).
    /// Only an operator may point a shop's API at a loopback, private or link-local host
    /// (see [`crate::hosts`]); when unsure, `false`.
    pub operator: bool,
}

impl Admin<'_> {
    /// Refuses an API host on the relay's own network unless the caller is an operator.
    fn check_api_host(&self, url: &str) -> Result<(), ApiError> {
        if self.operator {
            return Ok(());
        }
        crate::hosts::check_public(url)
    }

    pub async fn create_tenant(&self, new: NewTenant) -> Result<Value, ApiError> {
        Ok(json!(self.new_tenant(new).await?))
    }

    /// [`Admin::create_tenant`], typed.
    pub async fn new_tenant(&self, new: NewTenant) -> Result<TenantRecord, ApiError> {
        let id = tenant_id(new.id)?;
        let name = new.name.unwrap_or_else(|| id.to_string());
        Ok(self.store.create_tenant(id, name).await?)
    }

    pub async fn add_shop(&self, tenant: String, new: NewShop) -> Result<ShopView, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let shop_id = ShopId::new(new.shop_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        check_statuses(&new.trigger_statuses)?;
        let shop = ShopRecord {
            shop_id,
            tenant_id,
            webhook_secrets: webhook_secrets(&new.webhook_secrets)?,
            trigger_statuses: new.trigger_statuses,
            document_type: new.document_type,
            settings: ShopSettings {
                flow: new.flow,
                status_map: new.status_map,
                price_lists: new.price_lists,
                api: new.api,
            },
            api_key: api_key(new.api_key)?,
        };
        check_shop(&shop)?;
        if let Some(api) = &shop.settings.api {
            self.check_api_host(&api.url)?;
        }
        self.store.add_shop(shop.clone()).await?;
        Ok(ShopView::from(&shop))
    }

    /// Changes the fields given and leaves the rest.
    pub async fn update_shop(
        &self,
        tenant: String,
        shop: String,
        update: ShopUpdate,
    ) -> Result<ShopView, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let shop_id = ShopId::new(shop).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let mut shop = self
            .store
            .shop(shop_id.clone())
            .await?
            .filter(|s| s.tenant_id == tenant_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!("shop {shop_id} of tenant {tenant_id} not found"))
            })?;
        if let Some(secrets) = update.webhook_secrets {
            shop.webhook_secrets = webhook_secrets(&secrets)?;
        }
        if let Some(statuses) = update.trigger_statuses {
            check_statuses(&statuses)?;
            shop.trigger_statuses = statuses;
        }
        if let Some(document_type) = update.document_type {
            shop.document_type = document_type;
        }
        if let Some(flow) = update.flow {
            shop.settings.flow = flow;
        }
        if let Some(map) = update.status_map {
            shop.settings.status_map = map;
        }
        if let Some(lists) = update.price_lists {
            shop.settings.price_lists = lists;
        }
        if let Some(api) = update.api {
            let moved = shop.settings.api.as_ref().map(|a| &a.url) != Some(&api.url);
            if moved {
                // The stored key is only ever sent to the host it was given for.
                if update.api_key.is_none() && shop.api_key.is_some() {
                    return Err(ApiError::BadRequest(
                        "a new api.url needs its api_key again: the stored key is sent only to \
                         the host it was given for"
                            .into(),
                    ));
                }
                self.check_api_host(&api.url)?;
            }
            shop.settings.api = Some(api);
        }
        if let Some(key) = api_key(update.api_key)? {
            shop.api_key = Some(key);
        }
        check_shop(&shop)?;
        self.store.update_shop(shop.clone()).await?;
        Ok(ShopView::from(&shop))
    }

    pub async fn list_shops(&self, tenant: String) -> Result<Value, ApiError> {
        Ok(json!(self.shops(tenant).await?))
    }

    /// [`Admin::list_shops`], typed.
    pub async fn shops(&self, tenant: String) -> Result<ShopList, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        if !self.store.tenant_exists(tenant_id.clone()).await? {
            return Err(ApiError::NotFound(format!("tenant {tenant_id} not found")));
        }
        let shops = self.store.shops(Some(tenant_id)).await?;
        Ok(ShopList {
            shops: shops.iter().map(ShopView::from).collect(),
        })
    }

    pub async fn create_agent(
        &self,
        tenant: String,
        new: NewAgent,
    ) -> Result<IssuedAgent, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let ttl_days = new.ttl_days.unwrap_or(365);
        if !(1..=3650).contains(&ttl_days) {
            return Err(ApiError::BadRequest(
                "ttl_days must be between 1 and 3650".into(),
            ));
        }
        let name = new
            .name
            .map_or_else(|| "agent".to_owned(), |n| n.trim().to_owned());
        if name.is_empty()
            || name.chars().count() > MAX_AGENT_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::BadRequest(format!(
                "the agent's name must be 1 to {MAX_AGENT_NAME_CHARS} printable characters"
            )));
        }
        // Counted before creating: two requests at once may pass with one place left.
        let live = self
            .store
            .agents(tenant_id.clone())
            .await?
            .iter()
            .filter(|a| a.revoked_at.is_none())
            .count();
        if live >= MAX_AGENTS_PER_TENANT {
            return Err(ApiError::BadRequest(format!(
                "tenant {tenant_id} has {live} agents: at most {MAX_AGENTS_PER_TENANT}; revoke \
                 one it no longer uses first"
            )));
        }
        let agent = self.store.create_agent(tenant_id.clone(), name).await?;
        let (token, exp) = self
            .tokens
            .issue(&agent.id, &tenant_id, ttl_days)
            .await
            .map_err(|e| ApiError::Internal(crate::store::StoreError::Database(e.to_string())))?;
        let expires_at = chrono::DateTime::from_timestamp(exp, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        Ok(IssuedAgent {
            agent_id: agent.id,
            tenant_id,
            token,
            expires_at,
        })
    }

    pub async fn revoke_agent(&self, agent: String) -> Result<(), ApiError> {
        let id = AgentId::new(agent).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.store.revoke_agent(id.clone()).await?;
        // The other instances (PostgreSQL) end its sessions at once; should the notice be
        // lost, their sessions see the revocation in the store within seconds.
        if let Err(e) = self.store.notify(Notice::Revoked { agent: id }).await {
            tracing::warn!(error = %e, "the other relay instances could not be told of the revocation");
        }
        Ok(())
    }

    pub async fn list_events(&self, tenant: String, query: EventQuery) -> Result<Value, ApiError> {
        Ok(json!(self.events(tenant, query).await?))
    }

    /// [`Admin::list_events`], typed.
    pub async fn events(&self, tenant: String, query: EventQuery) -> Result<EventList, ApiError> {
        let tenant_id = tenant_id(tenant)?;
        let state = match query.state.as_deref() {
            None | Some("") => None,
            Some(s) => Some(EventState::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown state {s:?}: use fetching, pending, delivered, ignored, dead or held"
                ))
            })?),
        };
        if !self.store.tenant_exists(tenant_id.clone()).await? {
            return Err(ApiError::NotFound(format!("tenant {tenant_id} not found")));
        }
        let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
        let events = self.store.list_events(tenant_id, state, limit).await?;
        Ok(EventList { events })
    }

    /// An event's stored body (the one received too, when it was edited) and its order's
    /// problems.
    pub async fn event_payload(
        &self,
        tenant: String,
        id: i64,
    ) -> Result<EventPayloadView, ApiError> {
        let stored = self
            .store
            .event_payload(tenant_id(tenant)?, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
        let problems = stored_problems(&stored.payload);
        Ok(EventPayloadView {
            id,
            payload: as_json(stored.payload),
            original: stored.original.map(as_json),
            problems,
        })
    }

    /// Replaces the body of a dead or held event with an operator's correction: a full order
    /// webhook for the same shop and order. The body received is kept; the event stays where
    /// it is until it is replayed.
    pub async fn edit_event(
        &self,
        tenant: String,
        id: i64,
        body: Value,
    ) -> Result<EditedEvent, ApiError> {
        let tenant = tenant_id(tenant)?;
        let (event, _) = self
            .store
            .event(tenant.clone(), id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
        let webhook: OrderWebhook = serde_json::from_value(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is not an order webhook: {}",
                without_values(&e.to_string())
            ))
        })?;
        if webhook.shop_id.as_str() != event.shop_id.as_str() {
            return Err(ApiError::BadRequest(format!(
                "shop_id must stay {}: the event came from that shop",
                event.shop_id
            )));
        }
        let shop = self.store.shop(event.shop_id.clone()).await?;
        let triggers = shop.map(|shop| shop.trigger_statuses);
        if let Some(triggers) = triggers
            && !triggers.contains(&webhook.order.status)
        {
            return Err(ApiError::BadRequest(format!(
                "order.status {:?} is not one of the shop's trigger statuses ({}): an order in \
                 it is not transferred",
                webhook.order.status,
                triggers.join(", ")
            )));
        }
        if webhook.order.id != event.order_id {
            return Err(ApiError::BadRequest(format!(
                "order.id must stay {:?}: it is the key the order is known by in Mamut",
                event.order_id
            )));
        }
        let problems = validate::problems(&webhook.order);
        let payload = serde_json::to_string(&webhook)
            .map_err(|e| ApiError::BadRequest(format!("cannot encode the order: {e}")))?;
        let note = if problems.is_empty() {
            "payload edited by an operator".to_owned()
        } else {
            format!(
                "payload edited by an operator; {}",
                validate::describe(&problems)
            )
        };
        self.store
            .edit_event(tenant, id, payload, webhook.order.status, note)
            .await?;
        Ok(EditedEvent {
            id,
            state: event.state,
            problems,
        })
    }

    /// Puts a dead or held event back in the queue. Its order is checked again: one that is
    /// still invalid is refused with its problems unless `force` is set.
    pub async fn replay_event(
        &self,
        tenant: String,
        id: i64,
        query: ReplayQuery,
    ) -> Result<ReplayedEvent, ApiError> {
        let tenant = tenant_id(tenant)?;
        let stored = self
            .store
            .event_payload(tenant.clone(), id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
        let problems = stored_problems(&stored.payload);
        if !problems.is_empty() && !query.force {
            return Err(ApiError::InvalidOrder {
                message: format!(
                    "event {id} was not replayed: its order is still invalid; correct it with \
                     PUT /admin/v1/tenants/{tenant}/events/{id}/payload, or replay it with \
                     ?force=true if it is right as it is"
                ),
                problems,
            });
        }
        self.store.replay(tenant, id).await?;
        Ok(ReplayedEvent {
            id,
            state: EventState::Pending,
            forced: !problems.is_empty(),
        })
    }
}
