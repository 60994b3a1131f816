//! Protocol v1 between agent and relay, spoken as JSON text frames over the WebSocket.
//!
//! Every frame is an [`Envelope`]: `{"v":1,"msg":{"type":"deliver",...}}`. The version is
//! checked on every frame; `hello`/`welcome` also carry it so a mismatch is reported clearly.
//!
//! Delivery: the relay sends [`Deliver`] with a `seq` (the event's id in the relay's store, the
//! same on every redelivery); the agent applies it and answers [`Ack`] or [`Nack`]. The relay
//! never has more unacknowledged deliveries in flight than the credit window agreed in
//! `hello`/`welcome`. Pushes go the other way: [`Push`] with an agent-chosen `push_id`, answered
//! by [`PushAck`] once the relay has committed it.

use serde::{Deserialize, Serialize};

use crate::domain::{Change, DocumentType, Order, Product};
use crate::ids::{ShopId, TenantId};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    pub msg: Message,
}

impl Envelope {
    pub fn new(msg: Message) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            msg,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no custom
        // serializers that error.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Parses a frame and checks its version.
    pub fn from_json(text: &str) -> Result<Self, ProtocolError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            v: u16,
        }
        let version: VersionOnly =
            serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        if version.v != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version.v));
        }
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
}

/// Every message of protocol v1.
// A message lives only while it is (de)serialized, one at a time; boxing the order would cost
// an allocation per delivery for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Deliver(Deliver),
    Ack(Ack),
    Nack(Nack),
    Push(Push),
    PushAck(PushAck),
    Heartbeat(Heartbeat),
    SyncPut(SyncPut),
    SyncPutResult(SyncPutResult),
    SyncFetch(SyncFetch),
    SyncPage(SyncPage),
    SyncError(SyncError),
}

impl Message {
    /// The message's `type` on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::Deliver(_) => "deliver",
            Message::Ack(_) => "ack",
            Message::Nack(_) => "nack",
            Message::Push(_) => "push",
            Message::PushAck(_) => "push_ack",
            Message::Heartbeat(_) => "heartbeat",
            Message::SyncPut(_) => "sync_put",
            Message::SyncPutResult(_) => "sync_put_result",
            Message::SyncFetch(_) => "sync_fetch",
            Message::SyncPage(_) => "sync_page",
            Message::SyncError(_) => "sync_error",
        }
    }
}

/// Agent → relay, first frame of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u16,
    pub agent_version: String,
    /// How many deliveries the agent is willing to have in flight at once.
    pub credit: u32,
    /// What the session is for; a `sync` session takes no deliveries and does not replace
    /// the agent's running session.
    #[serde(default, skip_serializing_if = "SessionRole::is_agent")]
    pub role: SessionRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionRole {
    /// The agent's one long-lived session: deliveries and pushes.
    #[default]
    Agent,
    /// A one-off initial product sync (`agent sync products`).
    Sync,
}

impl SessionRole {
    pub fn is_agent(&self) -> bool {
        *self == SessionRole::Agent
    }
}

/// Relay → agent, answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u16,
    pub relay_version: String,
    /// The tenant the agent's token belongs to.
    pub tenant_id: TenantId,
    /// The credit window in force: the smaller of the agent's wish and the relay's limit.
    pub credit: u32,
    /// The relay sends a heartbeat at least this often; the agent should too.
    pub heartbeat_secs: u32,
}

/// Relay → agent: apply this event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deliver {
    /// The event's id at the relay; the same on every redelivery.
    pub seq: u64,
    /// 1 on the first delivery, counting up on each redelivery.
    pub attempt: u32,
    pub shop_id: ShopId,
    /// Create an order or an invoice in Mamut.
    pub document_type: DocumentType,
    pub order: Order,
}

/// Agent → relay: the delivery is applied (or was already applied earlier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
    /// The Mamut order or invoice number the shop order has.
    pub mamut_ref: Option<String>,
    /// True when the order was already in Mamut and nothing was written.
    #[serde(default)]
    pub already_applied: bool,
}

/// Agent → relay: the delivery could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    pub seq: u64,
    /// True: try again later (database down, deadlock). False: it will never work as it is
    /// (unknown article number...), so the relay moves it to the dead-letter list.
    pub retryable: bool,
    pub reason: String,
}

/// Agent → relay: a change in Mamut for the shops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// Chosen by the agent, unique per agent; repeated pushes with one id are stored once.
    pub push_id: String,
    pub change: Change,
}

/// Relay → agent: the push with this id is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAck {
    pub push_id: String,
}

/// Agent → relay, in a sync session: put this Mamut product into the shops (all of the
/// tenant's shops with an API, or only `shop_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPut {
    pub request_id: u64,
    pub shop_id: Option<ShopId>,
    pub product: Product,
}

/// What syncing one product did in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOutcome {
    Created,
    Updated,
    Unchanged,
    Failed,
}

/// The outcome of a [`SyncPut`] in one shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopSyncOutcome {
    pub shop_id: ShopId,
    pub outcome: SyncOutcome,
    pub reason: Option<String>,
    /// A failure that may pass (the shop is down or busy): the sync stops there and a later
    /// run continues with this product.
    #[serde(default)]
    pub retryable: bool,
}

/// Relay → agent: the answer to a [`SyncPut`], one outcome per shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPutResult {
    pub request_id: u64,
    pub results: Vec<ShopSyncOutcome>,
}

/// Agent → relay, in a sync session: the next page of the shop's products, in article-number
/// order after `after`. `shop_id` may be left out when the tenant has one shop with an API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFetch {
    pub request_id: u64,
    pub shop_id: Option<ShopId>,
    pub after: Option<String>,
    pub limit: u32,
}

/// Relay → agent: a page of the shop's products; `next` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPage {
    pub request_id: u64,
    pub shop_id: ShopId,
    pub items: Vec<Product>,
    pub next: Option<String>,
}

/// Relay → agent: a sync request could not be served (no such shop, the shop is down...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncError {
    pub request_id: u64,
    /// Whether trying the same request again later may work.
    pub retryable: bool,
    pub reason: String,
}

/// Either way, when a side has had nothing else to say for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Milliseconds since the Unix epoch at the sender.
    pub sent_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_of_another_version_is_refused_with_its_version() {
        let text = r#"{"v":2,"msg":{"type":"heartbeat","sent_at_ms":1}}"#;
        assert_eq!(
            Envelope::from_json(text),
            Err(ProtocolError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for text in [
            "",
            "{",
            "[]",
            r#"{"v":1}"#,
            r#"{"v":1,"msg":{"type":"nope"}}"#,
        ] {
            assert!(matches!(
                Envelope::from_json(text),
                Err(ProtocolError::Malformed(_))
            ));
        }
    }
}
