//! What failed, grouped by reason, for the console's failures page: dead and held events, and
//! dispatch rows that are dead.
//!
//! Grouping rule ([`reason_key`]): the stored reason with every word that holds a digit (an
//! order number, an id, a status code, a count) replaced by `#`, runs of blanks made one space,
//! cut to [`KEY_CHARS`] characters. "order 123 failed" and "order 456 failed" share the key
//! "order # failed". A missing reason has the empty key.
//!
//! The backends return the newest [`MAX_SCANNED`] failed rows of a scope; grouping happens here,
//! the same for both. A group's count is of those rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shared::{ShopId, TenantId};

use super::any::each;
use super::{AnyStore, Result};

/// Most failed rows of each kind one read looks at, newest first.
pub const MAX_SCANNED: u32 = 5000;
/// Most rows shown with each group.
pub const SAMPLES: usize = 20;
/// Most ids a whole group is replayed with at once.
pub const MAX_GROUP_IDS: usize = 500;
/// Longest group key, in characters.
pub const KEY_CHARS: usize = 200;

/// What failed: an event on its way to the agent, or a change on its way to a shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Event,
    Dispatch,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Event => "event",
            FailureKind::Dispatch => "dispatch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "event" => Some(FailureKind::Event),
            "dispatch" => Some(FailureKind::Dispatch),
            _ => None,
        }
    }
}

/// One failed row.
#[derive(Debug, Clone)]
pub struct FailedItem {
    pub tenant_id: TenantId,
    pub id: i64,
    pub shop_id: ShopId,
    /// The order id of an event, the key of a dispatch row.
    pub subject: String,
    /// `dead` or `held`.
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Failed rows that share a [`reason_key`].
#[derive(Debug, Clone)]
pub struct FailureGroup {
    pub key: String,
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The newest [`SAMPLES`] rows of the group.
    pub items: Vec<FailedItem>,
}

/// The group key of a reason (see the module's documentation).
pub fn reason_key(reason: Option<&str>) -> String {
    let Some(reason) = reason else {
        return String::new();
    };
    let mut words = Vec::new();
    for word in reason.split_whitespace() {
        words.push(collapse(word));
    }
    words.join(" ").chars().take(KEY_CHARS).collect()
}

/// A word with each run of id characters that holds a digit replaced by `#`.
fn collapse(word: &str) -> String {
    let is_id = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let trimmed = run.trim_end_matches('.');
        if trimmed.chars().any(|c| c.is_ascii_digit()) {
            out.push('#');
            out.push_str(&run[trimmed.len()..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in word.chars() {
        if is_id(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Groups rows (newest first) by reason, the largest group first.
pub fn group(items: Vec<FailedItem>) -> Vec<FailureGroup> {
    let mut groups: Vec<FailureGroup> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let key = reason_key(item.reason.as_deref());
        let at = item.updated_at;
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push(FailureGroup {
                key,
                count: 0,
                first_seen: at,
                last_seen: at,
                items: Vec::new(),
            });
            groups.len() - 1
        });
        let g = &mut groups[i];
        g.count += 1;
        g.first_seen = g.first_seen.min(at);
        g.last_seen = g.last_seen.max(at);
        if g.items.len() < SAMPLES {
            g.items.push(item);
        }
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen)));
    groups
}

impl AnyStore {
    /// The failed rows of `kind` of one tenant (or of all), newest first, at most
    /// [`MAX_SCANNED`].
    pub async fn failed_items(
        &self,
        scope: Option<TenantId>,
        kind: FailureKind,
    ) -> Result<Vec<FailedItem>> {
        match kind {
            FailureKind::Event => each!(self, s => s.failed_events(scope, MAX_SCANNED)),
            FailureKind::Dispatch => each!(self, s => s.failed_dispatch(scope, MAX_SCANNED)),
        }
    }

    /// The failed rows of `kind`, grouped by reason, the largest group first.
    pub async fn failure_groups(
        &self,
        scope: Option<TenantId>,
        kind: FailureKind,
    ) -> Result<Vec<FailureGroup>> {
        Ok(group(self.failed_items(scope, kind).await?))
    }

    /// The rows of the group `key` (tenant and id), newest first, at most [`MAX_GROUP_IDS`].
    pub async fn failure_group_ids(
        &self,
        scope: Option<TenantId>,
        kind: FailureKind,
        key: &str,
    ) -> Result<Vec<(TenantId, i64)>> {
        let items = self.failed_items(scope, kind).await?;
        Ok(items
            .into_iter()
            .filter(|item| reason_key(item.reason.as_deref()) == key)
            .take(MAX_GROUP_IDS)
            .map(|item| (item.tenant_id, item.id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ids_collapse_so_alike_reasons_share_a_key() {
        assert_eq!(reason_key(Some("order 123 failed")), "order # failed");
        assert_eq!(
            reason_key(Some("order 123 failed")),
            reason_key(Some("order 456 failed"))
        );
        assert_eq!(
            reason_key(Some("HTTP 503: agent agt-9f3a2 busy.")),
            "HTTP #: agent # busy."
        );
        assert_eq!(
            reason_key(Some("  customer   missing ")),
            "customer missing"
        );
        assert_eq!(
            reason_key(Some("article (A12) unknown")),
            "article (#) unknown"
        );
        assert_ne!(
            reason_key(Some("customer missing")),
            reason_key(Some("price missing"))
        );
        assert_eq!(reason_key(None), "");
        assert_eq!(reason_key(Some(&"x".repeat(500))).len(), KEY_CHARS);
    }

    fn item(id: i64, reason: &str, secs: i64) -> FailedItem {
        FailedItem {
            tenant_id: TenantId::new("acme").expect("valid id"),
            id,
            shop_id: ShopId::new("shop-1").expect("valid id"),
            subject: format!("order-{id}"),
            state: "dead".into(),
            reason: Some(reason.into()),
            updated_at: DateTime::from_timestamp(secs, 0).expect("valid time"),
        }
    }

    #[test]
    fn groups_count_and_date_their_rows_largest_first() {
        let groups = group(vec![
            item(3, "timeout", 30),
            item(2, "order 2 failed", 20),
            item(1, "order 1 failed", 10),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].key, "order # failed");
        assert_eq!(groups[0].count, 2);
        assert_eq!(groups[0].first_seen.timestamp(), 10);
        assert_eq!(groups[0].last_seen.timestamp(), 20);
        let ids: Vec<i64> = groups[0].items.iter().map(|i| i.id).collect();
        assert_eq!(ids, [2, 1]);
        assert_eq!(groups[1].key, "timeout");
    }
}
