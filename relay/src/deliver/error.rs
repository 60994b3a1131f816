//! Why a session ends, with the close code (RFC 6455, 7.4.1) and the limit it is counted under.

use shared::protocol::MAX_FRAME_BYTES;

use super::REVOKED_REASON;
use crate::metrics::Limit;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("the agent went away")]
    Gone,
    #[error("the agent closed the session (code {0:?})")]
    ClientClosed(Option<u16>),
    #[error("the agent was silent for too long")]
    Silent,
    #[error("protocol error: no hello within 10 s")]
    NoHello,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid message: {0}")]
    Malformed(String),
    #[error("binary frames are not part of the protocol")]
    Binary,
    #[error("message too large: the limit is {MAX_FRAME_BYTES} bytes ({0})")]
    TooLarge(String),
    #[error("{REVOKED_REASON}")]
    Revoked,
    #[error("the agent read nothing for {0} s: the connection is stalled")]
    Stalled(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// The close code (RFC 6455, 7.4.1) the relay ends the session with; `None` when the
    /// connection is gone or the agent closed it (its Close is answered instead).
    pub(super) fn close_code(&self) -> Option<u16> {
        match self {
            SessionError::Gone | SessionError::ClientClosed(_) => None,
            SessionError::NoHello | SessionError::Protocol(_) => Some(1002),
            SessionError::Binary => Some(1003),
            SessionError::Malformed(_) => Some(1007),
            SessionError::Revoked => Some(1008),
            SessionError::TooLarge(_) => Some(1009),
            SessionError::Silent | SessionError::Stalled(_) | SessionError::Store(_) => Some(1011),
        }
    }

    /// The limit that ended the session, for `/metrics`.
    pub(super) fn limit(&self) -> Option<Limit> {
        match self {
            SessionError::TooLarge(_) => Some(Limit::MessageBytes),
            SessionError::Silent => Some(Limit::AgentSilent),
            SessionError::Stalled(_) => Some(Limit::WriteStall),
            SessionError::NoHello => Some(Limit::HelloTimeout),
            _ => None,
        }
    }

    /// What a failed read means: a message over the size limit, or a connection gone.
    pub(super) fn from_read(error: &axum::Error) -> Self {
        let text = error.to_string();
        // tungstenite's capacity error ("Space limit exceeded: Message too long: n > max"),
        // for a frame or a message over the limit.
        if text.contains("Message too long") {
            SessionError::TooLarge(text)
        } else {
            SessionError::Gone
        }
    }

    /// Whether the connection ended (closed, gone, or a frame too large to read) rather than
    /// the agent sending something wrong: what was received before it is still stored.
    pub(super) fn is_end_of_input(&self) -> bool {
        matches!(
            self,
            SessionError::ClientClosed(_) | SessionError::Gone | SessionError::TooLarge(_)
        )
    }
}
