//! `POST /webhooks/{shop_id}`: verify, decide, commit, answer.
//!
//! A full order webhook joins the delivery queue; a thin one (order id and status only) is
//! stored as `fetching` and its order fetched from the shop first (see [`crate::enrich`]).
//! A full order that fails validation ([`crate::validate`]) is stored as `held` with its
//! problems and not delivered. The answer is 2xx only after the event is committed. Rejected
//! requests (401 bad, missing or stale signature, 404 unknown shop, 400 malformed body, 413 too
//! large) store nothing.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use shared::ShopId;
use shared::domain::{OrderWebhook, ThinOrderWebhook};
use shared::signature::{SignedHeaders, verify_which};

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::Limit;
use crate::store::{
    EventState, Ingested, NewEvent, Notice, ReceivedHeaders, ShopRecord, StoreError,
};
use crate::validate;

#[derive(Debug, Serialize)]
pub struct IngestReply {
    /// `accepted`, `duplicate`, `ignored` or `held` (stored, but the order is invalid: it waits
    /// for an operator, see [`crate::validate`]).
    pub status: &'static str,
    pub event_id: i64,
}

/// `POST /webhooks/{shop_id}`, step by step: read, find the shop, verify, parse, decide the
/// event's state, admit it under the queue limit, store it, answer.
#[tracing::instrument(skip_all, fields(shop_id = %shop_id, webhook_id = tracing::field::Empty))]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    Path(shop_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestReply>, ApiError> {
    let body = read_body(&app, body)?;
    let shop_id = ShopId::new(shop_id).map_err(|_| ApiError::NotFound("unknown shop".into()))?;
    let shop = app
        .shops
        .get(&app.store, shop_id.clone())
        .await?
        .ok_or_else(|| ApiError::NotFound("unknown shop".into()))?;
    let (webhook_id, secret) = verify_signature(&app, &shop, &headers, &body)?;
    tracing::Span::current().record("webhook_id", webhook_id.as_str());
    let order = parse(&app, &body, &shop_id)?;
    let (state, hold_reason) = decide(&shop, &order);
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?;
    let queued = matches!(
        state,
        EventState::Pending | EventState::Fetching | EventState::Held
    );
    if queued && let Some(duplicate) = admit(&app, &shop, &shop_id, &webhook_id).await? {
        return Ok(Json(duplicate));
    }
    let problems = order.problems.len();
    let received_headers = received(&headers, secret, shop.webhook_secrets.len());
    let ingested = store(
        &app,
        NewEvent {
            tenant_id: shop.tenant_id.clone(),
            shop_id,
            webhook_id,
            order_id: order.order_id,
            order_status: order.status,
            document_type: shop.document_type,
            payload,
            state,
            hold_reason,
            received_headers,
        },
    )
    .await?;
    if queued && !ingested.duplicate {
        app.queue_limit.stored(&shop.tenant_id);
    }
    let status = announce(&app, &shop, &ingested, problems).await;
    tracing::info!(event_id = ingested.event_id, status, "webhook stored");
    Ok(Json(IngestReply {
        status,
        event_id: ingested.event_id,
    }))
}

/// The body, or 413 (counted) when it is over `max_body_bytes`.
fn read_body(app: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            app.metrics.refused(Limit::BodyBytes);
            ApiError::PayloadTooLarge(app.config.max_body_bytes)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// Checks the Standard Webhooks signature against the shop's secrets; returns the webhook id
/// and which secret (its index) verified it.
fn verify_signature(
    app: &AppState,
    shop: &ShopRecord,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, usize), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = SignedHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let now = chrono::Utc::now().timestamp();
    let (webhook_id, secret) = verify_which(
        &shop.webhook_secrets,
        signed,
        body,
        now,
        app.config.webhook_tolerance_secs,
    )
    .map_err(|e| {
        app.metrics.rejected();
        ApiError::Unauthorized(format!("webhook signature refused: {e}"))
    })?;
    let webhook_id = webhook_id.to_owned();
    if webhook_id.len() > 256 {
        app.metrics.refused(Limit::WebhookFields);
        return Err(ApiError::BadRequest(
            "webhook-id is longer than 256 characters".into(),
        ));
    }
    Ok((webhook_id, secret))
}

/// The request's headers worth showing on the order's timeline and the signature's verdict,
/// as stored (see [`ReceivedHeaders`]); `None`, and a warning, should they not encode.
fn received(headers: &HeaderMap, secret: usize, secrets: usize) -> Option<String> {
    let text = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    ReceivedHeaders::new(text, secret, secrets)
        .encode()
        .inspect_err(|e| tracing::warn!(error = %e, "the received headers are not kept"))
        .ok()
}

/// What ingest needs to know of a webhook's body.
struct Parsed {
    order_id: String,
    status: String,
    /// A thin webhook (order id and status): its order is fetched later.
    thin: bool,
    /// A full order's problems, if it has any (see [`crate::validate`]).
    problems: Vec<validate::Problem>,
}

/// Parses a full order webhook, or a thin one, for the shop it was sent to.
fn parse(app: &AppState, body: &[u8], shop_id: &ShopId) -> Result<Parsed, ApiError> {
    let (body_shop, parsed) = match serde_json::from_slice::<OrderWebhook>(body) {
        Ok(webhook) => {
            let problems = validate::problems(&webhook.order);
            let parsed = Parsed {
                order_id: webhook.order.id,
                status: webhook.order.status,
                thin: false,
                problems,
            };
            (webhook.shop_id, parsed)
        }
        Err(full_error) => match serde_json::from_slice::<ThinOrderWebhook>(body) {
            Ok(thin) => {
                let parsed = Parsed {
                    order_id: thin.order_id,
                    status: thin.status,
                    thin: true,
                    problems: Vec::new(),
                };
                (thin.shop_id, parsed)
            }
            Err(_) => {
                app.metrics.rejected();
                return Err(ApiError::BadRequest(format!(
                    "malformed order webhook: {full_error}"
                )));
            }
        },
    };
    if body_shop != *shop_id {
        return Err(ApiError::BadRequest(format!(
            "the body is for shop {body_shop} but was sent to shop {shop_id}"
        )));
    }
    if parsed.order_id.is_empty() || parsed.order_id.len() > 128 {
        app.metrics.refused(Limit::WebhookFields);
        return Err(ApiError::BadRequest(
            "the order id must be 1 to 128 characters".into(),
        ));
    }
    Ok(parsed)
}

/// The state the event is stored in, and the reason it is held if it is.
fn decide(shop: &ShopRecord, order: &Parsed) -> (EventState, Option<String>) {
    if !shop.trigger_statuses.contains(&order.status) {
        (EventState::Ignored, None)
    } else if order.thin {
        (EventState::Fetching, None)
    } else if !order.problems.is_empty() {
        (EventState::Held, Some(validate::describe(&order.problems)))
    } else {
        (EventState::Pending, None)
    }
}

/// Admits a queued event under the tenant's queue limit. When the queue is full, a webhook
/// stored before gets its answer again (`Some`), any other the refusal.
async fn admit(
    app: &AppState,
    shop: &ShopRecord,
    shop_id: &ShopId,
    webhook_id: &str,
) -> Result<Option<IngestReply>, ApiError> {
    let Err(refused) = app
        .queue_limit
        .admit(
            &app.store,
            &shop.tenant_id,
            app.config.max_queued_per_tenant,
        )
        .await
    else {
        return Ok(None);
    };
    // A shop sending again a webhook it was answered for before (the answer got lost) gets
    // the same answer, full queue or not.
    if let Some(stored) = app
        .store
        .find_webhook(shop_id.clone(), webhook_id.to_owned())
        .await?
    {
        return Ok(Some(IngestReply {
            status: "duplicate",
            event_id: stored.event_id,
        }));
    }
    if matches!(refused, ApiError::Unavailable { .. }) {
        app.metrics.refused(Limit::QueuedPerTenant);
    }
    Err(refused)
}

/// Commits the event; a write that fails for the store's own reasons marks the instance
/// unready (see [`crate::metrics::UNREADY_AFTER_WRITE_FAILURE`]). A resent webhook whose stored
/// event does not read back (`Corrupt`) is that row's fault, not the database's.
async fn store(app: &AppState, event: NewEvent) -> Result<Ingested, ApiError> {
    let ingested = app.store.ingest(event).await.inspect_err(|e| {
        if !matches!(
            e,
            StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::Corrupt { .. }
        ) {
            app.metrics.store_write_failed();
        }
    })?;
    app.metrics.store_write_succeeded();
    Ok(ingested)
}

/// Counts the stored event, wakes what must act on it, and names the answer's status.
async fn announce(
    app: &AppState,
    shop: &ShopRecord,
    ingested: &Ingested,
    problems: usize,
) -> &'static str {
    if ingested.duplicate {
        return "duplicate";
    }
    app.metrics.stored();
    match ingested.state {
        EventState::Ignored => "ignored",
        EventState::Held => {
            app.metrics.held();
            tracing::warn!(problems, "the order is invalid; held for an operator");
            "held"
        }
        EventState::Fetching => {
            app.announce(Notice::Fetch).await;
            "accepted"
        }
        _ => {
            app.announce(Notice::Event {
                tenant: shop.tenant_id.clone(),
            })
            .await;
            "accepted"
        }
    }
}
