//! The rules of one kind's cursor: how far a poll lets the durable cursor move
//! ([`next_cursor`]), which rows it pushes, and what is remembered above the cursor until an
//! open Mamut transaction ends ([`KindState`]). Pure: no I/O, no clock.

use std::collections::BTreeSet;

use shared::domain::ChangeKind;

use crate::mamut::changes::{ChangeRow, KindPoll};

/// Most pushes remembered above the cursor per kind. When a kind has this many (a Mamut
/// transaction open for very long while many later changes commit), rows above its safe mark
/// wait until the cursor reaches them, as if every open transaction held them back.
pub const REMEMBERED: usize = 100_000;

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
    pub kind: ChangeKind,
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
                kind = outcome.kind.as_str(),
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

#[cfg(test)]
mod tests {
    use shared::ArticleNumber;
    use shared::domain::{Change, StockLevel};

    use super::*;

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
            kind: ChangeKind::Stock,
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
            kind: ChangeKind::Stock,
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
