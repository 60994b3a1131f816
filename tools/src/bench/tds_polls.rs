//! B7's load: the watcher's statements as the real agent prints them (`agent sql`), sent
//! through TDS to the Mamut stand-in as the agent sends them, in the agent's form or in the
//! earlier `CAST(rv AS BIGINT)` form.

use std::time::{Duration, Instant};

use serde_json::Value;

/// One statement the watcher sends, as `agent sql` prints it, and the table it reads.
#[derive(Debug, Clone)]
pub(super) struct WatchStatement {
    pub(super) name: String,
    pub(super) sql: String,
    pub(super) table: String,
}

/// The watcher's statements, from the real agent binary (`agent sql`, reference mapping): the
/// ones that read a watched table, one per kind, and the ones that read none (the safe mark,
/// `SELECT MIN_ACTIVE_ROWVERSION()`), which the agent sends on each kind's connection before
/// that kind's statement.
pub(super) async fn watch_statements() -> (Vec<WatchStatement>, Vec<WatchStatement>) {
    let output = tokio::process::Command::new(crate::harness::process::bin_path("agent"))
        .arg("sql")
        .output()
        .await
        .unwrap_or_else(|e| panic!("`agent sql` does not run: {e}"));
    assert!(
        output.status.success(),
        "`agent sql` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let from = regex::Regex::new(r"(?i)\bFROM\s+([A-Za-z0-9_\[\]\.]+)").expect("regex");
    let (kinds, preamble): (Vec<_>, Vec<_>) = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| {
            let name = v["name"].as_str()?.to_owned();
            let sql = v["sql"].as_str()?.to_owned();
            if !name.starts_with("watch.") {
                return None;
            }
            let table = from
                .captures(&sql)
                .and_then(|c| c.get(1))
                .map(|t| t.as_str().trim_matches(['[', ']']).to_lowercase())
                .unwrap_or_default();
            Some(WatchStatement { name, sql, table })
        })
        .partition(|s| !s.table.is_empty());
    (kinds, preamble)
}

/// The same statement in the watcher's earlier form, which compared a cast of the rowversion
/// with a `bigint` cursor (and had no safe mark).
fn cast_form(sql: &str) -> String {
    let re = regex::Regex::new(r"WHERE (\w+) > @P1( AND \w+ < MIN_ACTIVE_ROWVERSION\(\))?")
        .expect("regex");
    re.replace(sql, "WHERE CAST($1 AS BIGINT) > @P1")
        .into_owned()
}

type Tds = tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

async fn tds_client(port: u16) -> Tds {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let mut config = tiberius::Config::new();
    config.host("127.0.0.1");
    config.port(port);
    config.authentication(tiberius::AuthMethod::sql_server("mamut", "s3cret-pass"));
    config.database("mamut");
    config.encryption(tiberius::EncryptionLevel::NotSupported);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the Mamut stand-in on port {port}: {e}"));
    let _ = tcp.set_nodelay(true);
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap_or_else(|e| panic!("cannot log in to the Mamut stand-in on port {port}: {e}"))
}

/// Which form of the watcher's statements a driven poll sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PollForm {
    /// `rv > @P1 AND rv < MIN_ACTIVE_ROWVERSION()`, `@P1` binary(8): the agent's statements.
    Rowversion,
    /// `CAST(rv AS BIGINT) > @P1`, `@P1` bigint: the earlier form.
    Cast,
}

/// Sends `polls` polls through TDS as the agent does (each kind on its own connection, the
/// five at once; on each, the statements without a table first, then the kind's with `@P1`
/// the cursor and `@P2` the batch of 500), and returns each poll's time and how many rows of
/// the watched tables came back in all.
pub(super) async fn drive_polls(
    port: u16,
    (statements, preamble): (&[WatchStatement], &[WatchStatement]),
    form: PollForm,
    cursor: i64,
    polls: usize,
) -> (Vec<Duration>, usize) {
    let mut clients = Vec::new();
    for _ in statements {
        clients.push(tds_client(port).await);
    }
    let sqls: Vec<String> = statements
        .iter()
        .map(|s| match form {
            PollForm::Rowversion => s.sql.clone(),
            PollForm::Cast => cast_form(&s.sql),
        })
        .collect();
    let preamble: Vec<&str> = match form {
        PollForm::Rowversion => preamble.iter().map(|s| s.sql.as_str()).collect(),
        PollForm::Cast => Vec::new(),
    };
    let preamble = &preamble;
    let mut times = Vec::with_capacity(polls);
    let mut returned = 0;
    for _ in 0..polls {
        let started = Instant::now();
        let results = futures_util::future::join_all(clients.iter_mut().zip(&sqls).map(
            |(client, sql)| async move {
                for first in preamble {
                    let answer = match client.query(*first, &[]).await {
                        Ok(stream) => stream.into_results().await,
                        Err(e) => Err(e),
                    };
                    answer.map_err(|e| format!("{first}: {e}"))?;
                }
                let batch = 500i64;
                let bytes = cursor.to_be_bytes();
                let stream = match form {
                    PollForm::Rowversion => client.query(sql, &[&bytes.as_slice(), &batch]).await,
                    PollForm::Cast => client.query(sql, &[&cursor, &batch]).await,
                };
                match stream {
                    Ok(stream) => stream
                        .into_first_result()
                        .await
                        .map(|rows| rows.len())
                        .map_err(|e| format!("{sql}: {e}")),
                    Err(e) => Err(format!("{sql}: {e}")),
                }
            },
        ))
        .await;
        times.push(started.elapsed());
        for (result, statement) in results.into_iter().zip(statements) {
            match result {
                Ok(n) => returned += n,
                Err(e) => panic!(
                    "the watcher statement {} fails on the stand-in: {e}",
                    statement.name
                ),
            }
        }
    }
    for client in clients {
        let _ = client.close().await;
    }
    (times, returned)
}
