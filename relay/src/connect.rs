//! `GET /agent/v1/connect`: the agent's WebSocket, authenticated by its JWT before the
//! upgrade. The tenant is taken from the token.

use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use shared::protocol::MAX_FRAME_BYTES;
use tracing::Instrument;

use crate::AppState;
use crate::auth::{TokenError, bearer};
use crate::error::ApiError;

pub async fn upgrade(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = match bearer(&headers) {
        Some(token) => token,
        None => return ApiError::Unauthorized("missing bearer token".into()).into_response(),
    };
    let identity = match app.tokens.verify(token).await {
        Ok(identity) => identity,
        Err(TokenError::Store(e)) => return ApiError::Internal(e).into_response(),
        Err(e) => {
            tracing::info!(error = %e, "agent connection refused");
            return ApiError::Unauthorized(e.to_string()).into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if app.shutdown.is_cancelled() {
        // Not the agent's fault: it connects again, to another instance or to this one
        // restarted.
        return ApiError::Unavailable {
            message: "the relay is shutting down".into(),
            retry_after: 5,
        }
        .into_response();
    }
    let span =
        tracing::info_span!("agent", tenant = %identity.tenant_id, agent = %identity.agent_id);
    let sessions = app.sessions.clone();
    let address = peer.map(|Extension(ConnectInfo(address))| address);
    // Small buffers: tungstenite's defaults reserve 128 KiB per connection.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME_BYTES * 2)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| {
            sessions.track_future(
                async move {
                    app.metrics.session_started();
                    crate::deliver::run(app.clone(), identity, address, socket).await;
                    app.metrics.session_ended();
                }
                .instrument(span),
            )
        })
}
