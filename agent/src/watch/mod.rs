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
//!
//! - [`cursor`]: one kind's cursor rules, pure;
//! - [`state`]: the state file;
//! - this file: the polling loop and the hand-over of pushes to the session ([`Watcher`]).

mod cursor;
mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shared::domain::ChangeKind;
use shared::protocol::Push;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use self::cursor::{KindState, Outcome, REMEMBERED, next_cursor};
pub use self::state::SavedCursors;
use crate::mamut::Mamut;
use crate::mamut::changes::{Cursors, KindPoll};

/// How long a batch may wait for the relay's acknowledgements before it is polled again.
const ACK_WAIT: Duration = Duration::from_secs(60);

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
    saved: SavedCursors,
    kinds: BTreeMap<ChangeKind, KindState>,
}

impl Watch {
    /// Where each kind's next poll reads from.
    fn positions(&self) -> Cursors {
        let mut from = self.saved.cursors.clone();
        for (&kind, state) in &self.kinds {
            from.set(kind, state.from());
        }
        from
    }

    fn plan(&mut self, polls: Vec<KindPoll>) -> (Vec<Push>, Vec<Outcome>) {
        let mut pushes = Vec::new();
        let mut outcomes = Vec::new();
        for poll in polls {
            let saved = self.saved.cursors.get(poll.kind);
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
            let saved = self.saved.cursors.get(kind);
            let state = self
                .kinds
                .entry(kind)
                .or_insert_with(|| KindState::new(saved, REMEMBERED));
            if state.apply(outcome) {
                self.saved.cursors.set(kind, state.cursor);
                moved = true;
            }
        }
        moved
    }
}

/// The watcher's task, owned by whoever runs the agent: [`Watcher::stopped`] waits for it to
/// end after cancellation, and dropping the handle aborts it, so it never outlives the
/// session loop that takes its pushes.
pub struct Watcher {
    task: AbortOnDropHandle<()>,
}

impl Watcher {
    /// Starts [`run`] on its own task.
    pub fn spawn(
        mamut: Arc<dyn Mamut>,
        settings: WatchSettings,
        batches: mpsc::Sender<PushBatch>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            task: AbortOnDropHandle::new(tokio::spawn(run(mamut, settings, batches, cancel))),
        }
    }

    /// Waits until the watcher has ended: it does as soon as its cancellation token fires,
    /// leaving a poll in progress unfinished, but never in the middle of saving its cursors.
    /// A panic in it is logged here.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "the change watcher panicked");
        }
    }
}

/// Polls until cancelled.
async fn run(
    mamut: Arc<dyn Mamut>,
    settings: WatchSettings,
    batches: mpsc::Sender<PushBatch>,
    cancel: CancellationToken,
) {
    let saved = SavedCursors::load(&settings.state_file).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "change cursors unreadable; starting over (the relay drops repeats)");
        SavedCursors::default()
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
        // A poll only reads, so a stop does not wait for one (a slow SQL Server could hold it
        // for a statement timeout, longer than a Windows service may take to stop).
        let positions = watch.positions();
        let polled = tokio::select! {
            _ = cancel.cancelled() => return,
            polled = mamut.poll_changes(&positions, settings.batch) => polled,
        };
        let polls = match polled {
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
    let batch = PushBatch {
        pushes,
        acknowledged,
    };
    // The session may not take it (none connected, or one still busy with the last batch):
    // cancellation must end the wait here too.
    tokio::select! {
        _ = cancel.cancelled() => return None,
        sent = batches.send(batch) => sent.ok()?,
    }
    tokio::select! {
        _ = cancel.cancelled() => None,
        result = tokio::time::timeout(ACK_WAIT, ack) => Some(matches!(result, Ok(Ok(())))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use shared::ArticleNumber;
    use shared::domain::{Change, StockLevel};
    use shared::protocol::Deliver;

    use super::*;
    use crate::mamut::changes::ChangeRow;
    use crate::mamut::{ApplyError, ApplyFuture, ChangesFuture};

    /// How long a test waits for what it expects.
    const DEADLINE: Duration = Duration::from_secs(5);

    /// A Mamut where one stock level changes at every poll; each poll is reported on `polls`.
    struct Changing {
        count: AtomicUsize,
        polls: mpsc::UnboundedSender<usize>,
    }

    impl Mamut for Changing {
        fn apply_order<'a>(&'a self, _: &'a Deliver) -> ApplyFuture<'a> {
            Box::pin(async { Err(ApplyError::Permanent("not in this test".into())) })
        }

        fn poll_changes<'a>(&'a self, from: &'a Cursors, _batch: u32) -> ChangesFuture<'a> {
            let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = self.polls.send(n);
            let from = from.get(ChangeKind::Stock);
            let rv = from + 1;
            Box::pin(async move {
                let article = ArticleNumber::new("MUG").map_err(|e| e.to_string())?;
                Ok(vec![KindPoll {
                    kind: ChangeKind::Stock,
                    from,
                    safe: rv + 1,
                    last_read: Some(rv),
                    full: false,
                    rows: vec![ChangeRow {
                        kind: ChangeKind::Stock,
                        rv,
                        key: "MUG@".into(),
                        change: Change::Stock(StockLevel {
                            article_number: article,
                            warehouse: None,
                            quantity: n.into(),
                        }),
                    }],
                }])
            })
        }
    }

    fn start(
        dir: &tempfile::TempDir,
        cancel: &CancellationToken,
    ) -> (
        Watcher,
        mpsc::Receiver<PushBatch>,
        mpsc::UnboundedReceiver<usize>,
    ) {
        let (polls, polled) = mpsc::unbounded_channel();
        let mamut = Arc::new(Changing {
            count: AtomicUsize::new(0),
            polls,
        });
        let (watcher, taken) = watch(mamut, dir, cancel);
        (watcher, taken, polled)
    }

    /// A watcher of `mamut` polling every 10 ms, and where its batches arrive.
    fn watch(
        mamut: Arc<dyn Mamut>,
        dir: &tempfile::TempDir,
        cancel: &CancellationToken,
    ) -> (Watcher, mpsc::Receiver<PushBatch>) {
        let settings = WatchSettings {
            interval: Duration::from_millis(10),
            state_file: dir.path().join("state.json"),
            batch: 100,
        };
        let (batches, taken) = mpsc::channel(1);
        let watcher = Watcher::spawn(mamut, settings, batches, cancel.clone());
        (watcher, taken)
    }

    /// Cancels the watcher and tells whether it ended within [`DEADLINE`].
    async fn stops_when_cancelled(watcher: Watcher, cancel: &CancellationToken) -> bool {
        cancel.cancel();
        tokio::time::timeout(DEADLINE, watcher.stopped())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_watcher_ends_even_when_no_session_takes_its_pushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let (watcher, _taken, mut polled) = start(&dir, &cancel);
        // The first batch waits in the channel unacknowledged until its wait ends; the second
        // poll's batch finds the channel full.
        for wanted in 1..=2 {
            let n = tokio::time::timeout(DEADLINE + ACK_WAIT, polled.recv()).await;
            assert_eq!(n.ok().flatten(), Some(wanted), "poll {wanted}");
        }
        assert!(
            stops_when_cancelled(watcher, &cancel).await,
            "the watcher did not end after cancellation"
        );
    }

    #[tokio::test]
    async fn a_cancelled_watcher_waiting_for_an_acknowledgement_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let (watcher, mut taken, _polled) = start(&dir, &cancel);
        let batch = tokio::time::timeout(DEADLINE, taken.recv()).await;
        let batch = batch.ok().flatten().expect("a batch of pushes");
        assert_eq!(batch.pushes.len(), 1);
        assert!(
            stops_when_cancelled(watcher, &cancel).await,
            "the watcher did not end after cancellation"
        );
    }

    /// A Mamut whose poll never answers (a SQL Server that hangs); each poll is reported.
    struct Stuck {
        polls: mpsc::UnboundedSender<()>,
    }

    impl Mamut for Stuck {
        fn apply_order<'a>(&'a self, _: &'a Deliver) -> ApplyFuture<'a> {
            Box::pin(async { Err(ApplyError::Permanent("not in this test".into())) })
        }

        fn poll_changes<'a>(&'a self, _: &'a Cursors, _batch: u32) -> ChangesFuture<'a> {
            let _ = self.polls.send(());
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_cancelled_watcher_does_not_wait_for_a_poll_that_hangs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let (polls, mut polled) = mpsc::unbounded_channel();
        let (watcher, _taken) = watch(Arc::new(Stuck { polls }), &dir, &cancel);
        let started = tokio::time::timeout(DEADLINE, polled.recv()).await;
        assert!(started.ok().flatten().is_some(), "the watcher polls");
        assert!(
            stops_when_cancelled(watcher, &cancel).await,
            "the watcher waited for a poll that never ends"
        );
    }

    #[tokio::test]
    async fn dropping_the_watcher_stops_its_task() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let (watcher, mut taken, _polled) = start(&dir, &cancel);
        let first = tokio::time::timeout(DEADLINE, taken.recv()).await;
        assert!(first.ok().flatten().is_some(), "the watcher runs");
        drop(watcher);
        // The aborted task drops its sender: the channel ends.
        let ended =
            tokio::time::timeout(DEADLINE, async { while taken.recv().await.is_some() {} }).await;
        assert!(
            ended.is_ok(),
            "the watcher still runs after its handle was dropped"
        );
    }
}
