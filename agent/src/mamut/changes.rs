//! What a poll of Mamut for changes gives the watcher: per kind, the rows past a rowversion
//! position ([`KindPoll`] of [`ChangeRow`]s), read from the positions in [`Cursors`]. These
//! are the boundary's types: every [`super::Mamut`] backend produces them, and `watch`
//! consumes them.

use std::collections::BTreeMap;

use shared::domain::{Change, ChangeKind};

/// One change found in Mamut, with the cursor value that covers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub kind: ChangeKind,
    /// The rowversion of the change.
    pub rv: i64,
    /// Distinguishes pushes with one rowversion (e.g. a product and its variant).
    pub key: String,
    pub change: Change,
}

impl ChangeRow {
    /// The push's id: the same row always gets the same id, so the relay stores a repeat once.
    pub fn push_id(&self) -> String {
        format!("{}-{}-{}", self.kind, self.rv, self.key)
    }
}

/// What one poll of one kind read.
#[derive(Debug, Clone, PartialEq)]
pub struct KindPoll {
    pub kind: ChangeKind,
    /// The rows are those with a rowversion above this (the cursor, or where the last full
    /// batch above the safe mark ended).
    pub from: i64,
    /// `MIN_ACTIVE_ROWVERSION()` read before the rows: every rowversion below it belongs to a
    /// transaction that committed or rolled back, so the row query saw all of them.
    pub safe: i64,
    /// The largest rowversion the query returned, including rows skipped as unusable.
    pub last_read: Option<i64>,
    /// The query returned as many rows as it was allowed: more may follow `last_read`.
    pub full: bool,
    pub rows: Vec<ChangeRow>,
}

/// A rowversion per kind: where each kind's poll reads from, or the last one the relay
/// acknowledged. A kind without one starts at 0 (everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursors(BTreeMap<ChangeKind, i64>);

impl Cursors {
    pub fn get(&self, kind: ChangeKind) -> i64 {
        self.0.get(&kind).copied().unwrap_or(0)
    }

    pub fn set(&mut self, kind: ChangeKind, rv: i64) {
        self.0.insert(kind, rv);
    }

    /// The kinds that have a rowversion, with it.
    pub fn iter(&self) -> impl Iterator<Item = (ChangeKind, i64)> + '_ {
        self.0.iter().map(|(&kind, &rv)| (kind, rv))
    }
}

impl FromIterator<(ChangeKind, i64)> for Cursors {
    fn from_iter<I: IntoIterator<Item = (ChangeKind, i64)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}
