//! `POST /webhooks/{shop_id}`: verify, decide, commit, answer.
//!
//! A full order webhook joins the delivery queue; a thin one (order id and status only) is
//! stored as `fetching` and its order fetched from the shop first (see [`crate::enrich`]).
//! A full order that fails validation ([`crate::validate`]) is stored as `held` with its
//! problems and not delivered. The answer is 2xx only after the event is committed. Rejected requests (401 bad, missing or
//! stale signature, 404 unknown shop, 400 malformed body, 413 too large) store nothing.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use shared::ShopId;
use shared::domain::{OrderWebhook, ThinOrderWebhook};
use shared::signature::{SignedHeaders, verify};

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::Limit;
use crate::store::{EventState, NewEvent, Notice, StoreError};
use crate::validate;

#[derive(Debug, Serialize)]
pub struct IngestReply {
    /// `accepted`, `duplicate`, `ignored` or `held` (stored, but the order is invalid: it waits
    /// for an operator, see [`crate::validate`]).
    pub status: &'static str,
    pub event_id: i64,
}

#[tracing::instrument(skip_all, fields(shop_id = %shop_id, webhook_id = tracing::field::Empty))]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    Path(shop_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestReply>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            app.metrics.refused(Limit::BodyBytes);
            ApiError::PayloadTooLarge(app.config.max_body_bytes)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
        }
    })?;
    let shop_id = ShopId::new(shop_id).map_err(|_| ApiError::NotFound("unknown shop".into()))?;
    let shop = app
        .shops
        .get(&app.store, shop_id.clone())
        .await?
        .ok_or_else(|| ApiError::NotFound("unknown shop".into()))?;

    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = SignedHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let now = chrono::Utc::now().timestamp();
    let webhook_id = verify(
        &shop.webhook_secrets,
        signed,
        &body,
        now,
        app.config.webhook_tolerance_secs,
    )
    .map_err(|e| {
        app.metrics.rejected();
        ApiError::Unauthorized(format!("webhook signature refused: {e}"))
    })?
    .to_owned();
    if webhook_id.len() > 256 {
        app.metrics.refused(Limit::WebhookFields);
        return Err(ApiError::BadRequest(
            "webhook-id is longer than 256 characters".into(),
        ));
    }
    tracing::Span::current().record("webhook_id", webhook_id.as_str());

    // A full order webhook, or a thin one (order id and status) whose order is fetched later.
    // A full order's problems, if it has any (see `crate::validate`).
    let (body_shop, order_id, order_status, thin, problems) =
        match serde_json::from_slice::<OrderWebhook>(&body) {
            Ok(webhook) => {
                let problems = validate::problems(&webhook.order);
                (
                    webhook.shop_id,
                    webhook.order.id,
                    webhook.order.status,
                    false,
                    problems,
                )
            }
            Err(full_error) => match serde_json::from_slice::<ThinOrderWebhook>(&body) {
                Ok(thin) => (thin.shop_id, thin.order_id, thin.status, true, Vec::new()),
                Err(_) => {
                    app.metrics.rejected();
                    return Err(ApiError::BadRequest(format!(
                        "malformed order webhook: {full_error}"
                    )));
                }
            },
        };
    if body_shop != shop_id {
        return Err(ApiError::BadRequest(format!(
            "the body is for shop {body_shop} but was sent to shop {shop_id}"
        )));
    }
    if order_id.is_empty() || order_id.len() > 128 {
        app.metrics.refused(Limit::WebhookFields);
        return Err(ApiError::BadRequest(
            "the order id must be 1 to 128 characters".into(),
        ));
    }
    let (state, hold_reason) = if !shop.trigger_statuses.contains(&order_status) {
        (EventState::Ignored, None)
    } else if thin {
        (EventState::Fetching, None)
    } else if !problems.is_empty() {
        (EventState::Held, Some(validate::describe(&problems)))
    } else {
        (EventState::Pending, None)
    };
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?;
    let queued = matches!(
        state,
        EventState::Pending | EventState::Fetching | EventState::Held
    );
    if queued
        && let Err(refused) = app
            .queue_limit
            .admit(
                &app.store,
                &shop.tenant_id,
                app.config.max_queued_per_tenant,
            )
            .await
    {
        // A shop sending again a webhook it was answered for before (the answer got lost)
        // gets the same answer, full queue or not.
        if let Some(stored) = app
            .store
            .find_webhook(shop_id.clone(), webhook_id.clone())
            .await?
        {
            return Ok(Json(IngestReply {
                status: "duplicate",
                event_id: stored.event_id,
            }));
        }
        if matches!(refused, ApiError::Unavailable { .. }) {
            app.metrics.refused(Limit::QueuedPerTenant);
        }
        return Err(refused);
    }
    let ingested = app
        .store
        .ingest(NewEvent {
            tenant_id: shop.tenant_id.clone(),
            shop_id,
            webhook_id,
            order_id,
            order_status,
            document_type: shop.document_type,
            payload,
            state,
            hold_reason,
        })
        .await
        .inspect_err(|e| {
            if !matches!(e, StoreError::NotFound(_) | StoreError::Conflict(_)) {
                app.metrics.store_write_failed();
            }
        })?;
    app.metrics.store_write_succeeded();
    if queued && !ingested.duplicate {
        app.queue_limit.stored(&shop.tenant_id);
    }
    let status = if ingested.duplicate {
        "duplicate"
    } else if ingested.state == EventState::Ignored {
        app.metrics.stored();
        "ignored"
    } else if ingested.state == EventState::Held {
        app.metrics.stored();
        app.metrics.held();
        tracing::warn!(
            problems = problems.len(),
            "the order is invalid; held for an operator"
        );
        "held"
    } else if ingested.state == EventState::Fetching {
        app.metrics.stored();
        app.announce(Notice::Fetch).await;
        "accepted"
    } else {
        app.metrics.stored();
        app.announce(Notice::Event {
            tenant: shop.tenant_id.clone(),
        })
        .await;
        "accepted"
    };
    tracing::info!(event_id = ingested.event_id, status, "webhook stored");
    Ok(Json(IngestReply {
        status,
        event_id: ingested.event_id,
    }))
}
