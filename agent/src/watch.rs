//! Watching Mamut for changes: poll each kind (stock, price, price list, product, order
//! status) past its rowversion cursor, push what changed to the relay, and save the cursor
//! only after the relay acknowledged every push. Cursors survive restarts in a small state file
//! written atomically. A push repeated after a crash carries the same id, and the relay stores
//! it once.
//!
//! SQL Server gives a row its rowversion when the row is written, not when its transaction
//! commits, so a row can become visible below rows already read. Each poll therefore reads
//! `MIN_ACTIVE_ROWVERSION()` first (the *safe mark*: every rowversion below it belongs to a
//! transaction that has ended) and then every visible row past the cursor. Everything read is
//! pushed at once — an open Mamut transaction holds back only its own rows — but the durable
//! cursor never moves to or past the safe mark ([`next_cursor`]). Rows pushed above the cursor
//! are remembered in memory ([`KindState`]) so they are not pushed again every poll.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::domain::Change;
use shared::protocol::Push;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::mamut::Mamut;

/// How long a batch may wait for the relay's acknowledgements before it is polled again.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// Most pushes remembered above the cursor per kind. When a kind has this many (a Mamut
/// transaction open for very long while many later changes commit), rows above its safe mark
/// wait until the cursor reaches them, as if every open transaction held them back.
pub const REMEMBERED: usize = 100_000;

/// One change found in Mamut, with the cursor value that covers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    /// `stock`, `price`, `price_list`, `product` or `order_status`.
    pub kind: &'static str,
    /// The rowversion of the change.
    pub rv: i64,
    /// Distinguishes pushes with one rowversion (e.g. a product and its variant).
    pub key: String,
    pub change: Change,
}

impl ChangeRow {
    pub fn push_id(&self) -> String {
        format!("{}-{}-{}", self.kind, self.rv, self.key)
    }
}

/// What one poll of one kind read.
#[derive(Debug, Clone, PartialEq)]
pub struct KindPoll {
    pub kind: &'static str,
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

/// The durable cursor after a poll from `cursor` read up to `last_read` with safe mark
/// `safe`: every row at or below it has been read, so it can be saved once the relay has
/// acknowledged the pushes.
///
/// Below the safe mark nothing can still appear, so a batch that was not full covers
/// everything up to `safe - 1`, whatever it read (gaps are rolled-back rowversions). A full
/// batch covers only up to its last row. Above the safe mark an open transaction may still
/// commit a lower rowversion than rows already read, so the cursor never reaches the mark. It
/// never moves back.
pub fn next_cursor(cursor: i64, safe: i64, last_read: Option<i64>, full: bool) -> i64 {
    let below_safe = safe.saturating_sub(1);
    let covered = match (full, last_read) {
        (true, Some(last)) => last.min(below_safe),
        (true, None) => cursor,
        (false, _) => below_safe,
    };
    covered.max(cursor)
}

/// A kind's watching state: its durable cursor, where the next poll starts, and the pushes
/// the relay acknowledged above the cursor (lost on restart; then they are pushed again with
/// the same ids, which the relay stores once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindState {
    pub cursor: i64,
    /// Most pushes remembered above the cursor; rows beyond that wait until the cursor
    /// reaches them.
    limit: usize,
    /// Where the next poll starts when it is not the cursor: a full batch above the safe mark
    /// was all pushed, so the next one is read after it rather than the same again.
    resume: Option<i64>,
    /// `(rv, key)` of acknowledged pushes with `rv > cursor`.
    pushed: BTreeSet<(i64, String)>,
    /// The warning that `pushed` is full has been logged.
    warned_full: bool,
}

/// What a poll of one kind changes once its pushes are acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: &'static str,
    pub cursor: i64,
    resume: Option<i64>,
    /// Pushed rows above the new cursor, to remember.
    remember: Vec<(i64, String)>,
    /// Rows above the safe mark not pushed because `pushed` is full.
    held: usize,
}

impl KindState {
    pub fn new(cursor: i64, limit: usize) -> Self {
        Self {
            cursor,
            limit,
            resume: None,
            pushed: BTreeSet::new(),
            warned_full: false,
        }
    }

    /// Where the next poll of this kind reads from.
    pub fn from(&self) -> i64 {
        self.resume.unwrap_or(self.cursor)
    }

    /// How many pushes above the cursor are remembered.
    pub fn remembered(&self) -> usize {
        self.pushed.len()
    }

    /// The rows of `poll` to push (those not pushed and acknowledged already), and what to
    /// change once they are acknowledged.
    pub fn plan(&self, poll: KindPoll) -> (Vec<ChangeRow>, Outcome) {
        let from_cursor = poll.from == self.cursor;
        let cursor = if from_cursor {
            next_cursor(self.cursor, poll.safe, poll.last_read, poll.full)
        } else {
            // Rows between the cursor and `from` were not read this time.
            self.cursor
        };
        let passed = self.pushed.range(..above(cursor)).count();
        let kept = self.pushed.len() - passed;
        let mut pushes = Vec::new();
        let mut remember = Vec::new();
        let mut held = 0;
        for row in poll.rows {
            let id = (row.rv, row.key.clone());
            if self.pushed.contains(&id) {
                continue;
            }
            if row.rv > cursor {
                if kept + remember.len() >= self.limit {
                    held += 1;
                    continue;
                }
                remember.push(id);
            }
            pushes.push(row);
        }
        let resume = match poll.last_read {
            // A full batch that the cursor could not follow to its end: read on after it
            // next time. Any other batch: back to the cursor, where rows that committed
            // meanwhile below what was read are found.
            Some(last) if poll.full && last > cursor => Some(last),
            _ => None,
        };
        let outcome = Outcome {
            kind: poll.kind,
            cursor,
            resume,
            remember,
            held,
        };
        (pushes, outcome)
    }

    /// Applies an acknowledged poll; true when the durable cursor moved.
    pub fn apply(&mut self, outcome: Outcome) -> bool {
        let moved = outcome.cursor != self.cursor;
        self.cursor = outcome.cursor;
        self.resume = outcome.resume.filter(|&resume| resume > self.cursor);
        self.pushed.extend(outcome.remember);
        self.pushed = self.pushed.split_off(&above(self.cursor));
        if outcome.held > 0 && !self.warned_full {
            tracing::warn!(
                kind = outcome.kind,
                remembered = self.pushed.len(),
                held = outcome.held,
                "too many changes pushed above a long-open Mamut transaction; further changes \
                 of this kind wait until it ends"
            );
            self.warned_full = true;
        } else if self.pushed.len() < self.limit {
            self.warned_full = false;
        }
        moved
    }
}

/// The smallest remembered push above `cursor`.
fn above(cursor: i64) -> (i64, String) {
    (cursor.saturating_add(1), String::new())
}

/// The last acknowledged rowversion per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors(pub BTreeMap<String, i64>);

impl Cursors {
    pub fn get(&self, kind: &str) -> i64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// Reads the state file; a missing file means nothing was pushed yet.
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the state file atomically: a temporary file, flushed, then renamed over it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Pushes for the session to send, and where to say that the relay acknowledged them all.
pub struct PushBatch {
    pub pushes: Vec<Push>,
    pub acknowledged: oneshot::Sender<()>,
}

#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub interval: Duration,
    pub state_file: PathBuf,
    /// Most rows read per kind and poll.
    pub batch: u32,
}

/// Every kind's state, starting from the saved cursors.
struct Watch {
    saved: Cursors,
    kinds: BTreeMap<&'static str, KindState>,
}

impl Watch {
    /// Where each kind's next poll reads from.
    fn positions(&self) -> Cursors {
        let mut from = self.saved.clone();
        for (kind, state) in &self.kinds {
            from.0.insert((*kind).to_owned(), state.from());
        }
        from
    }

    fn plan(&mut self, polls: Vec<KindPoll>) -> (Vec<Push>, Vec<Outcome>) {
        let mut pushes = Vec::new();
        let mut outcomes = Vec::new();
        for poll in polls {
            let saved = self.saved.get(poll.kind);
            let state = self
                .kinds
                .entry(poll.kind)
                .or_insert_with(|| KindState::new(saved, REMEMBERED));
            let (rows, outcome) = state.plan(poll);
            pushes.extend(rows.into_iter().map(|row| Push {
                push_id: row.push_id(),
                change: row.change,
            }));
            outcomes.push(outcome);
        }
        (pushes, outcomes)
    }

    /// Applies acknowledged outcomes; true when a durable cursor moved.
    fn apply(&mut self, outcomes: Vec<Outcome>) -> bool {
        let mut moved = false;
        for outcome in outcomes {
            let kind = outcome.kind;
            let saved = self.saved.get(kind);
            let state = self
                .kinds
                .entry(kind)
                .or_insert_with(|| KindState::new(saved, REMEMBERED));
            if state.apply(outcome) {
                self.saved.0.insert(kind.to_owned(), state.cursor);
                moved = true;
            }
        }
        moved
    }
}

/// Polls until cancelled.
pub async fn run(
    mamut: Arc<dyn Mamut>,
    settings: WatchSettings,
    batches: mpsc::Sender<PushBatch>,
    cancel: CancellationToken,
) {
    let saved = Cursors::load(&settings.state_file).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "change cursors unreadable; starting over (the relay drops repeats)");
        Cursors::default()
    });
    let mut watch = Watch {
        saved,
        kinds: BTreeMap::new(),
    };
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let polls = match mamut.poll_changes(&watch.positions(), settings.batch).await {
            Ok(polls) => polls,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read changes from Mamut");
                continue;
            }
        };
        let (pushes, outcomes) = watch.plan(polls);
        let count = pushes.len();
        if count > 0 {
            match push(&batches, pushes, &cancel).await {
                None => return,
                Some(false) => {
                    tracing::warn!(
                        count,
                        "pushes not acknowledged yet; they will be sent again"
                    );
                    continue;
                }
                Some(true) => tracing::info!(count, "changes pushed and acknowledged"),
            }
        }
        // Saved even when nothing new was pushed: a transaction that ended lets the cursor
        // pass rows pushed while it was open.
        if watch.apply(outcomes)
            && let Err(e) = watch.saved.save(&settings.state_file)
        {
            tracing::error!(error = %e, "cannot save change cursors; changes may be pushed again");
        }
    }
}

/// Hands `pushes` to the session and waits for the relay's acknowledgement: `Some(true)` when
/// it came, `Some(false)` when it did not in time, `None` when the watcher should stop.
async fn push(
    batches: &mpsc::Sender<PushBatch>,
    pushes: Vec<Push>,
    cancel: &CancellationToken,
) -> Option<bool> {
    let (acknowledged, ack) = oneshot::channel();
    batches
        .send(PushBatch {
            pushes,
            acknowledged,
        })
        .await
        .ok()?;
    tokio::select! {
        _ = cancel.cancelled() => None,
        result = tokio::time::timeout(ACK_WAIT, ack) => Some(matches!(result, Ok(Ok(())))),
    }
}

#[cfg(test)]
mod tests {
    use shared::ArticleNumber;
    use shared::domain::StockLevel;

    use super::*;

    #[test]
    fn cursors_survive_a_save_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        assert_eq!(
            Cursors::load(&path).expect("missing is empty"),
            Cursors::default()
        );
        let mut cursors = Cursors::default();
        cursors.0.insert("stock".into(), 42);
        cursors.save(&path).expect("saved");
        let loaded = Cursors::load(&path).expect("loads");
        assert_eq!(loaded.get("stock"), 42);
        assert_eq!(loaded.get("price"), 0);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn with_no_open_transaction_the_cursor_reaches_everything_read() {
        // Rows 11..=15 read, nothing open: the safe mark is @@DBTS + 1.
        assert_eq!(next_cursor(10, 16, Some(15), false), 15);
        // Other tables were written since: the safe mark is further on, and nothing of this
        // kind can appear below it any more.
        assert_eq!(next_cursor(10, 40, Some(15), false), 39);
    }

    #[test]
    fn an_open_transaction_keeps_the_cursor_below_its_rowversion() {
        // A holds 11 and is open; 12..=15 committed after it was written.
        assert_eq!(next_cursor(10, 11, Some(15), false), 10);
        // A holds 13, among the rows read (11, 12, 14, 15).
        assert_eq!(next_cursor(10, 13, Some(15), false), 12);
    }

    #[test]
    fn a_full_batch_covers_only_up_to_its_last_row() {
        assert_eq!(next_cursor(10, 100, Some(15), true), 15);
        // Its last row is above an open transaction: still not past the safe mark.
        assert_eq!(next_cursor(10, 13, Some(15), true), 12);
        assert_eq!(next_cursor(10, 100, None, true), 10);
    }

    #[test]
    fn nothing_read_moves_the_cursor_to_below_the_safe_mark_and_never_back() {
        assert_eq!(next_cursor(10, 30, None, false), 29);
        assert_eq!(next_cursor(10, 11, None, false), 10);
        assert_eq!(next_cursor(10, 5, None, false), 10, "never backwards");
    }

    #[test]
    fn rolled_back_rowversions_leave_gaps_the_cursor_passes() {
        // 12..=14 were rolled back: 11 and 15 are all there is.
        assert_eq!(next_cursor(10, 20, Some(15), false), 19);
        assert_eq!(next_cursor(10, 20, Some(15), true), 15);
        assert_eq!(next_cursor(10, 14, Some(11), false), 13);
    }

    fn row(rv: i64, key: &str) -> ChangeRow {
        ChangeRow {
            kind: "stock",
            rv,
            key: key.to_owned(),
            change: Change::Stock(StockLevel {
                article_number: ArticleNumber::new(key).expect("article"),
                warehouse: None,
                quantity: 1.into(),
            }),
        }
    }

    fn poll(state: &KindState, safe: i64, full: bool, rows: &[(i64, &str)]) -> KindPoll {
        KindPoll {
            kind: "stock",
            from: state.from(),
            safe,
            last_read: rows.iter().map(|r| r.0).max(),
            full,
            rows: rows.iter().map(|&(rv, key)| row(rv, key)).collect(),
        }
    }

    fn ids(rows: &[ChangeRow]) -> Vec<String> {
        rows.iter().map(ChangeRow::push_id).collect()
    }

    /// Plans a poll and applies it as if the relay acknowledged it; the push ids.
    fn acked(state: &mut KindState, poll: KindPoll) -> Vec<String> {
        let (rows, outcome) = state.plan(poll);
        state.apply(outcome);
        ids(&rows)
    }

    #[test]
    fn rows_above_an_open_transaction_are_pushed_once_and_the_cursor_waits_for_it() {
        let mut state = KindState::new(10, REMEMBERED);
        // A (MUG, 11) is open; B (CUP, 12) committed.
        let p = poll(&state, 11, false, &[(12, "CUP")]);
        assert_eq!(acked(&mut state, p), ["stock-12-CUP"]);
        assert_eq!(state.cursor, 10, "A may still commit 11");
        assert_eq!(state.remembered(), 1);
        let p = poll(&state, 11, false, &[(12, "CUP")]);
        assert!(acked(&mut state, p).is_empty(), "B pushed again");

        // A commits: only A is new, and the cursor passes both.
        let p = poll(&state, 13, false, &[(11, "MUG"), (12, "CUP")]);
        assert_eq!(acked(&mut state, p), ["stock-11-MUG"]);
        assert_eq!(state.cursor, 12);
        assert_eq!(state.remembered(), 0, "passed pushes are forgotten");
    }

    #[test]
    fn the_cursor_moves_when_nothing_new_is_pushed() {
        let mut state = KindState::new(10, REMEMBERED);
        let p = poll(&state, 11, false, &[(12, "CUP")]);
        acked(&mut state, p);
        // A rolled back; nothing below 12 appeared and CUP was pushed already.
        let p = poll(&state, 13, false, &[(12, "CUP")]);
        let (rows, outcome) = state.plan(p);
        assert!(rows.is_empty());
        assert!(state.apply(outcome), "the cursor moved without a push");
        assert_eq!(state.cursor, 12);
    }

    #[test]
    fn an_unacknowledged_poll_is_pushed_again_with_the_same_ids() {
        let state = KindState::new(10, REMEMBERED);
        let p = poll(&state, 11, false, &[(12, "CUP")]);
        let (first, _) = state.plan(p.clone());
        let (again, _) = state.plan(p);
        assert_eq!(ids(&first), ids(&again));
    }

    #[test]
    fn after_a_restart_rows_above_the_cursor_are_pushed_again_with_the_same_ids() {
        let mut state = KindState::new(10, REMEMBERED);
        let p = poll(&state, 11, false, &[(12, "CUP")]);
        let before = acked(&mut state, p);
        let mut restarted = KindState::new(state.cursor, REMEMBERED);
        let p = poll(&restarted, 11, false, &[(12, "CUP")]);
        assert_eq!(acked(&mut restarted, p), before);
    }

    #[test]
    fn when_too_many_pushes_are_remembered_rows_above_the_safe_mark_wait() {
        let mut state = KindState::new(10, 2);
        let rows = [(11, "A1"), (13, "B1"), (14, "B2"), (15, "B3")];
        // 12 is open: 11 is below the safe mark, 13..=15 above, room for two of them.
        let p = poll(&state, 12, false, &rows);
        assert_eq!(
            acked(&mut state, p),
            ["stock-11-A1", "stock-13-B1", "stock-14-B2"]
        );
        assert_eq!(state.cursor, 11);
        assert_eq!(state.remembered(), 2);
        let p = poll(&state, 12, false, &rows[1..]);
        assert!(acked(&mut state, p).is_empty(), "B3 waits for the cursor");
        // 12 commits: the cursor passes everything and B3 is pushed.
        let p = poll(
            &state,
            16,
            false,
            &[(12, "A2"), (13, "B1"), (14, "B2"), (15, "B3")],
        );
        assert_eq!(acked(&mut state, p), ["stock-12-A2", "stock-15-B3"]);
        assert_eq!(state.cursor, 15);
        assert_eq!(state.remembered(), 0);
    }

    #[test]
    fn a_full_batch_above_an_open_transaction_is_read_past_then_read_again_from_the_cursor() {
        let mut state = KindState::new(10, REMEMBERED);
        // 11 is open; a batch of two reads 12 and 13, all above it.
        let p = poll(&state, 11, true, &[(12, "B1"), (13, "B2")]);
        assert_eq!(acked(&mut state, p), ["stock-12-B1", "stock-13-B2"]);
        assert_eq!((state.cursor, state.from()), (10, 13));
        // The next poll reads after them, where a new change waits.
        let p = poll(&state, 11, false, &[(14, "MUG")]);
        assert_eq!(p.from, 13);
        assert_eq!(acked(&mut state, p), ["stock-14-MUG"]);
        assert_eq!(
            state.cursor, 10,
            "rows between the cursor and 13 were not read"
        );
        // Caught up: back to the cursor, where 11 is found once it commits.
        assert_eq!(state.from(), 10);
        let p = poll(&state, 15, true, &[(11, "A"), (12, "B1")]);
        assert_eq!(acked(&mut state, p), ["stock-11-A"]);
        assert_eq!((state.cursor, state.from()), (12, 12));
        let p = poll(&state, 15, false, &[(13, "B2"), (14, "MUG")]);
        assert!(acked(&mut state, p).is_empty());
        assert_eq!((state.cursor, state.remembered()), (14, 0));
    }
}
