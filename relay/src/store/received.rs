//! The webhook as it was received, for an order's timeline: the request headers worth showing
//! (an allow-list, never a credential), which of the shop's secrets verified its signature,
//! and the body before any operator's edit. Ingest stores the first two as JSON in
//! `events.received_headers` ([`ReceivedHeaders`]); the body is the event's received payload.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::TenantId;

use super::any::each;
use super::error::corrupt;
use super::{AnyStore, Result};

/// The request headers kept with an event, lower case. Nothing that can be a credential
/// (`authorization`, `cookie`, API keys) is among them; the signature itself is left out too
/// (its verdict is kept instead). The Nordisk platform sends no topic or event header of its
/// own (the event is in the body); a platform that does adds its header here.
pub const KEPT_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    // The shop's, or the one the relay gave the request: the request's log lines carry it.
    "x-request-id",
];

/// The longest header value kept, in bytes; a longer one is cut (at a character boundary)
/// and marked with `…`.
pub const MAX_HEADER_VALUE: usize = 256;

/// What `events.received_headers` holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReceivedHeaders {
    /// Only [`KEPT_HEADERS`], each at most [`MAX_HEADER_VALUE`] bytes.
    pub headers: BTreeMap<String, String>,
    /// The signature's verdict, e.g. `verified with secret 1 of 2`.
    pub signature: String,
}

impl ReceivedHeaders {
    /// The kept headers among `headers` (name, value as received; values that are not text
    /// are left out), with the verdict that secret `secret` (0-based) of `secrets` verified the
    /// request.
    pub fn new<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        secret: usize,
        secrets: usize,
    ) -> Self {
        let headers = headers
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.to_ascii_lowercase();
                KEPT_HEADERS
                    .contains(&name.as_str())
                    .then(|| (name, bounded(value)))
            })
            .collect();
        Self {
            headers,
            signature: format!("verified with secret {} of {secrets}", secret + 1),
        }
    }

    /// As stored.
    pub fn encode(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| corrupt("received headers", e))
    }
}

/// `value`, cut to [`MAX_HEADER_VALUE`] bytes.
fn bounded(value: &str) -> String {
    if value.len() <= MAX_HEADER_VALUE {
        return value.to_owned();
    }
    let mut end = MAX_HEADER_VALUE;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// A webhook as received, for the order's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedWebhook {
    /// The kept request headers (see [`KEPT_HEADERS`]); empty for an event stored before the
    /// relay kept them.
    pub headers: BTreeMap<String, String>,
    /// The signature's verdict. Every stored event was verified: a request whose signature
    /// fails is refused and not stored.
    pub signature: String,
    /// The body as received: before any operator's edit, and for a thin webhook the thin
    /// body, not the order fetched for it.
    pub body: String,
    pub received_at: DateTime<Utc>,
}

/// The verdict of an event stored before the relay kept which secret verified it.
pub const VERIFIED_UNRECORDED: &str = "verified (which secret was not recorded)";

impl ReceivedWebhook {
    /// From the stored columns: `received_headers` (JSON or NULL), the received body.
    pub(crate) fn from_stored(
        stored: Option<&str>,
        body: String,
        received_at: DateTime<Utc>,
    ) -> Result<Self> {
        let kept = match stored {
            Some(text) => serde_json::from_str::<ReceivedHeaders>(text)
                .map_err(|e| corrupt("received headers", e))?,
            None => ReceivedHeaders {
                headers: BTreeMap::new(),
                signature: VERIFIED_UNRECORDED.to_owned(),
            },
        };
        Ok(Self {
            headers: kept.headers,
            signature: kept.signature,
            body,
            received_at,
        })
    }
}

impl AnyStore {
    /// The webhook a tenant's event was received as; `None` when the tenant has no event of
    /// that id.
    pub async fn received_webhook(
        &self,
        tenant: TenantId,
        event_id: i64,
    ) -> Result<Option<ReceivedWebhook>> {
        each!(self, s => s.received_webhook(tenant, event_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kept_headers_are_kept_and_long_values_are_cut() {
        let long = "é".repeat(300);
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer secret"),
            ("Cookie", "relay_session=abc"),
            ("webhook-signature", "v1,abc"),
            ("X-Api-Key", "k"),
            ("user-agent", long.as_str()),
        ];
        let kept = ReceivedHeaders::new(headers, 1, 2);
        assert_eq!(kept.signature, "verified with secret 2 of 2");
        let names: Vec<&str> = kept.headers.keys().map(String::as_str).collect();
        assert_eq!(names, ["content-type", "user-agent"]);
        let agent = &kept.headers["user-agent"];
        assert!(
            agent.len() <= MAX_HEADER_VALUE + '…'.len_utf8(),
            "{}",
            agent.len()
        );
        assert!(agent.ends_with('…'));
    }

    #[test]
    fn an_event_without_stored_headers_reads_as_verified_and_bad_json_is_corrupt() {
        let at = Utc::now();
        let old = ReceivedWebhook::from_stored(None, "{}".into(), at).expect("reads");
        assert!(old.headers.is_empty());
        assert_eq!(old.signature, VERIFIED_UNRECORDED);
        assert!(ReceivedWebhook::from_stored(Some("{"), "{}".into(), at).is_err());
        let kept = ReceivedHeaders::new([("webhook-id", "msg_1")], 0, 1);
        let stored = kept.encode().expect("encodes");
        let read = ReceivedWebhook::from_stored(Some(&stored), "{}".into(), at).expect("reads");
        assert_eq!(read.headers, kept.headers);
        assert_eq!(read.signature, "verified with secret 1 of 1");
    }
}
