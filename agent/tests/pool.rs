//! The Mamut connection pool never hands out a connection with a transaction left open: a
//! write cancelled at any await point (its future dropped, as when a relay session ends and
//! its applies are aborted) closes its connection, and the next write through the same pool
//! starts clean. Driven against a fake connection that counts `@@TRANCOUNT` as SQL Server does
//! (`BEGIN TRAN` nests, `COMMIT` decrements, `ROLLBACK` ends them all).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use agent::mamut::sqlserver::pool::{
    BoxFuture, Connector, Pool, PoolError, Pooled, Session, in_transaction,
};

/// A connection whose every request takes one await point (it yields once before answering).
struct FakeConn {
    id: u32,
    trancount: Arc<AtomicI32>,
}

impl FakeConn {
    async fn statement(&mut self) -> Result<(), String> {
        tokio::task::yield_now().await;
        Ok(())
    }
}

impl Session for FakeConn {
    type Error = String;
    fn batch<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            match sql {
                "BEGIN TRAN" => {
                    self.trancount.fetch_add(1, Ordering::SeqCst);
                }
                "COMMIT" => {
                    self.trancount.fetch_sub(1, Ordering::SeqCst);
                }
                "ROLLBACK" => self.trancount.store(0, Ordering::SeqCst),
                other => return Err(format!("unexpected batch {other}")),
            }
            Ok(())
        })
    }
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU32,
    /// `@@TRANCOUNT` of every connection opened, by id.
    connections: Mutex<Vec<Arc<AtomicI32>>>,
}

/// The server the pool connects to; shared with the test to read every connection's state.
#[derive(Clone, Default)]
struct FakeServer(Arc<Inner>);

impl std::ops::Deref for FakeServer {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Connector for FakeServer {
    type Conn = FakeConn;
    fn connect(&self) -> BoxFuture<'_, Result<FakeConn, String>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let trancount = Arc::new(AtomicI32::new(0));
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            self.connections
                .lock()
                .map_err(|_| "poisoned".to_owned())?
                .push(trancount.clone());
            Ok(FakeConn { id, trancount })
        })
    }
}

/// The writer's shape: a transaction of three statements, as an order with a customer, a
/// head and a line.
async fn write(pool: &Pool<FakeServer>) -> Result<(u32, i32), String> {
    pool.run(
        Duration::from_secs(5),
        async |conn: &mut Pooled<'_, FakeServer>| {
            let inside = in_transaction(
                conn,
                async |c: &mut FakeConn| {
                    c.statement().await?;
                    c.statement().await?;
                    c.statement().await?;
                    Ok::<_, String>(c.trancount.load(Ordering::SeqCst))
                },
                |e| e,
            )
            .await?;
            Ok((conn.id, inside))
        },
        |e: PoolError| format!("{e:?}"),
    )
    .await
}

/// Polls `future` at most `budget` times, then drops it; whether it finished.
fn poll_at_most<F: Future>(future: F, budget: usize) -> bool {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    for _ in 0..budget {
        if future.as_mut().poll(&mut cx).is_ready() {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_write_cancelled_at_any_await_point_leaves_no_open_transaction_for_the_next() {
    let server = FakeServer::default();
    let pool = Pool::new(server.clone(), 2);
    let mut budget = 1;
    let mut cancelled_inside = 0;
    loop {
        assert!(budget < 100, "the write never finished");
        let finished = poll_at_most(write(&pool), budget);
        if finished {
            break;
        }
        if server
            .connections
            .lock()
            .expect("lock")
            .iter()
            .any(|t| t.load(Ordering::SeqCst) > 0)
        {
            cancelled_inside += 1;
        }
        // Whatever was cancelled, the next write through the same pool gets a connection
        // without a transaction: it sees exactly its own one.
        let (_, trancount) = write(&pool).await.expect("the next write succeeds");
        assert_eq!(
            trancount, 1,
            "cancelled after {budget} polls: the next write ran inside an orphaned transaction"
        );
        budget += 1;
    }
    assert!(
        cancelled_inside >= 4,
        "the write was cancelled inside its transaction only {cancelled_inside} times"
    );
    assert!(pool.discarded() >= cancelled_inside as u64);
}

#[tokio::test]
async fn a_finished_write_gives_its_connection_back() {
    let server = FakeServer::default();
    let pool = Pool::new(server.clone(), 2);
    let (first, _) = write(&pool).await.expect("written");
    let (second, _) = write(&pool).await.expect("written");
    assert_eq!(first, second, "the connection was reused");
    assert_eq!(pool.opened(), 1);
    assert_eq!(pool.discarded(), 0);
}

#[tokio::test]
async fn a_failed_transaction_is_rolled_back_and_its_connection_closed() {
    let server = FakeServer::default();
    let pool = Pool::new(server.clone(), 1);
    let result: Result<(), String> = pool
        .run(
            Duration::from_secs(5),
            async |conn: &mut Pooled<'_, FakeServer>| {
                in_transaction(
                    conn,
                    async |c: &mut FakeConn| {
                        c.statement().await?;
                        Err::<(), _>("refused".to_owned())
                    },
                    |e| e,
                )
                .await
            },
            |e| format!("{e:?}"),
        )
        .await;
    assert_eq!(result, Err("refused".into()));
    let connections = server.connections.lock().expect("lock").clone();
    assert_eq!(connections[0].load(Ordering::SeqCst), 0, "rolled back");
    assert_eq!(pool.discarded(), 1);
    let (id, trancount) = write(&pool).await.expect("the next write succeeds");
    assert_eq!((id, trancount), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn work_past_the_statement_timeout_is_a_timeout_and_closes_its_connection() {
    let server = FakeServer::default();
    let pool = Pool::new(server.clone(), 1);
    let result: Result<(), PoolError> = pool
        .run(
            Duration::from_millis(100),
            async |conn: &mut Pooled<'_, FakeServer>| {
                in_transaction(
                    conn,
                    async |_: &mut FakeConn| {
                        // A Mamut user holds the row: the statement never answers.
                        std::future::pending::<()>().await;
                        Ok(())
                    },
                    PoolError::Unreachable,
                )
                .await
            },
            |e| e,
        )
        .await;
    assert_eq!(result, Err(PoolError::TimedOut(Duration::from_millis(100))));
    assert_eq!(pool.discarded(), 1);
    let (_, trancount) = write(&pool).await.expect("the next write succeeds");
    assert_eq!(trancount, 1);
}
