//! `agent check`: what an installer runs first on a customer's server. It verifies the
//! configuration, the Mamut connection and mapping (every mapped table and column exists and
//! fits what the agent writes there; no unmapped NOT NULL column without a default in a table
//! the agent inserts into; numbering that fits IDENTITY columns; an index on each watched
//! table's rowversion), which proxy (or none) the relay connection uses and where that setting
//! came from, and that the relay accepts the agent's token, and prints one line per
//! finding, each failure with what to do. With the import writer: Mamut's import program, the
//! spool folder's permissions and the lookup by external order number. Notes (the database's `READ_COMMITTED_SNAPSHOT`
//! setting) advise without failing the check.

use shared::protocol::SessionRole;

use crate::config::{AgentConfig, MamutBackend, Writer};
use crate::mamut::import::config::ImportConfig;
use crate::mamut::import::spool::{ImportLock, Spool};
use crate::mamut::mapping::Mapping;
use crate::mamut::sqlserver::SqlServer;
use crate::proxy::Decision;
use crate::transport;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// False fails the check.
    pub ok: bool,
    /// Advice that does not fail the check (`ok` is true).
    pub note: bool,
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}",
            match (self.ok, self.note) {
                (true, true) => "note",
                (true, false) => " ok ",
                (false, _) => "FAIL",
            },
            self.text
        )
    }
}

fn ok(text: impl Into<String>) -> Finding {
    Finding {
        ok: true,
        note: false,
        text: text.into(),
    }
}

fn note(text: impl Into<String>) -> Finding {
    Finding {
        ok: true,
        note: true,
        text: text.into(),
    }
}

fn fail(text: impl Into<String>) -> Finding {
    Finding {
        ok: false,
        note: false,
        text: text.into(),
    }
}

/// Runs every check; the configuration itself was loaded (and so checked) by the caller.
pub async fn run(config: &AgentConfig, env: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    let mut findings = vec![ok("configuration is valid")];
    findings.extend(mamut(config).await);
    findings.extend(relay(config, env).await);
    findings
}

async fn mamut(config: &AgentConfig) -> Vec<Finding> {
    match config.mamut.backend {
        MamutBackend::Recorder => vec![ok(format!(
            "Mamut backend is the recorder stand-in ({}): test and development only, not Mamut",
            config.mamut.path.display()
        ))],
        MamutBackend::Sqlserver => {
            let sql = &config.mamut.sqlserver;
            let mapping = match &sql.mapping {
                Some(path) => match Mapping::load(path) {
                    Ok(mapping) => mapping,
                    Err(e) => return vec![fail(format!("mapping: {e}"))],
                },
                None => Mapping::default(),
            };
            let target = match sql.host_and_instance() {
                (host, Some(instance)) => {
                    format!("SQL Server {host}\\{instance} database {}", sql.database)
                }
                (host, None) => format!("SQL Server {host}:{} database {}", sql.port, sql.database),
            };
            let server = SqlServer::new(sql.clone(), mapping, config.watch.currency.clone());
            let mut findings = match server.check_mapping().await {
                Err(e) => {
                    // What does not need the database is still checked.
                    let mut findings = vec![fail(format!("cannot connect to {target}: {e}"))];
                    if config.mamut.writer == Writer::Import {
                        findings.extend(import_files(&config.mamut.import, &sql.database));
                    }
                    return findings;
                }
                Ok(problems) if problems.is_empty() => {
                    vec![
                        ok(format!("connected to {target}")),
                        ok(
                            "every mapped table and column exists and fits, the numbering fits, \
                            every watched table has a rowversion index",
                        ),
                    ]
                }
                Ok(problems) => std::iter::once(ok(format!("connected to {target}")))
                    .chain(problems.into_iter().map(|p| fail(format!("mapping: {p}"))))
                    .collect(),
            };
            findings.push(snapshot(
                &sql.database,
                server.read_committed_snapshot().await,
            ));
            if config.mamut.writer == Writer::Import {
                findings.extend(import_files(&config.mamut.import, &sql.database));
                findings.push(import_lookup(&server).await);
            }
            findings
        }
    }
}

/// Mamut's import program, the spool folder and the lookup the import writer relies on.
fn import_files(config: &ImportConfig, database: &str) -> Vec<Finding> {
    let program = &config.program;
    let mut findings = vec![match std::fs::metadata(program) {
        Ok(m) if m.is_file() => ok(format!("import program {} is there", program.display())),
        Ok(_) => fail(format!(
            "mamut.import.program {} is not a file: point it at Mamut ImportExport.exe",
            program.display()
        )),
        Err(e) => fail(format!(
            "mamut.import.program {}: {e}; install Mamut Import/Export or point the setting at \
             Mamut ImportExport.exe (usually in Mamut's program folder)",
            program.display()
        )),
    }];
    findings.push(note(format!(
        "the import runs as \"{}\" IO {} <file> {} {} .F. and writes into company database {}: \
         it must be the database the agent reads ([mamut.sqlserver] database = {database}), or \
         every order is refused as not found after its import; the agent cannot ask Mamut which \
         database a client number is",
        program.display(),
        config.client,
        config.compare_key,
        config.user_id,
        config.client
    )));
    findings.push(note(
        "a test import cannot be dry-run: Mamut's import program has no such mode (its six \
         parameters are all it takes) and a test order would be a real order; the first order \
         shows whether the import works (the agent's log, and the spool's failed folder)",
    ));
    match Spool::open(&config.spool_dir).and_then(|spool| spool.probe().map(|()| spool)) {
        Ok(spool) => {
            findings.push(ok(format!(
                "spool folder {} is writable by the agent's account (write, rename, remove)",
                spool.dir().display()
            )));
            let refused = std::fs::read_dir(spool.dir().join("failed"))
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "xml"))
                        .count()
                })
                .unwrap_or(0);
            if refused > 0 {
                findings.push(note(format!(
                    "{refused} file(s) the import refused are kept in {} with their reasons",
                    spool.dir().join("failed").display()
                )));
            }
            if let Ok(None) = ImportLock::try_take(&spool.lock_file()) {
                findings.push(note(format!(
                    "an import is running now ({} is held)",
                    spool.lock_file().display()
                )));
            }
        }
        Err(e) => findings.push(fail(e)),
    }
    findings
}

/// The lookup of imported orders by their external order number.
async fn import_lookup(server: &SqlServer) -> Finding {
    match server.find_imported("agent-check").await {
        Ok(_) => ok(
            "the lookup of imported orders by their external order number runs \
                     (orders.external_no; that Mamut's import fills that column shows with the \
                     first order: if it does not, the order is refused, never imported twice)",
        ),
        Err(e) => fail(format!(
            "cannot look up orders by external order number: {e}"
        )),
    }
}

/// The database's `READ_COMMITTED_SNAPSHOT` setting: off (SQL Server's default) is advice, not
/// a failure; the agent works either way.
fn snapshot(database: &str, setting: Result<bool, String>) -> Finding {
    match setting {
        Ok(true) => ok(
            "read committed snapshot is on: an open Mamut transaction holds back only its own rows",
        ),
        Ok(false) => note(format!(
            "read committed snapshot is off in database {database} (SQL Server's default): a row \
             an open Mamut transaction has written cannot be read until that transaction ends, so \
             while a Mamut user keeps one open, the pushes of each table it wrote wait (the other \
             tables' pushes go on). With it on, only that transaction's own rows wait. Turning it on is a DBA's \
             decision (it changes how every reader of the database sees rows being written): \
             ALTER DATABASE [{}] SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE, run when \
             no one is working in Mamut (it rolls back other connections' open transactions)",
            database.replace(']', "]]")
        )),
        Err(e) => note(format!(
            "could not read the read committed snapshot setting of database {database} from \
             sys.databases ({e}); if it is off, an open Mamut transaction holds back the pushes \
             of the tables it wrote until it ends"
        )),
    }
}

/// The proxy the connection uses and where that came from, then whether the relay accepts the
/// token.
async fn relay(config: &AgentConfig, env: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    let relay = &config.relay;
    let decision = match transport::decide_proxy(&relay.proxy, &relay.url, env).await {
        Ok(decision) => decision,
        Err(e) => {
            return vec![fail(format!(
                "relay {}: cannot decide on a proxy: {e:#}",
                relay.url
            ))];
        }
    };
    let used = ok(format!("relay connection uses {decision}"));
    let accepted = match hello(config, &decision).await {
        Ok(tenant) => ok(format!(
            "relay {} accepted the token (tenant {tenant})",
            config.relay.url
        )),
        Err(e) => fail(format!("relay {}: {e:#}", config.relay.url)),
    };
    vec![used, accepted]
}

/// Connects, says hello and waits for the welcome; returns the tenant.
async fn hello(config: &AgentConfig, proxy: &Decision) -> anyhow::Result<String> {
    let relay = &config.relay;
    let mut connection =
        transport::dial_via(&relay.url, &relay.token, relay.ca_file.as_deref(), proxy).await?;
    let welcome = connection.hello(SessionRole::Agent, 1).await?;
    connection.close().await;
    Ok(welcome.tenant_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_committed_snapshot_off_is_a_note_with_the_fix_not_a_failure() {
        let on = snapshot("Mamut", Ok(true));
        assert!(on.ok && !on.note, "{on}");
        assert!(
            on.to_string()
                .starts_with("[ ok ] read committed snapshot is on")
        );

        let off = snapshot("Mamut]x", Ok(false));
        assert!(
            off.ok && off.note,
            "an advisory does not fail the check: {off}"
        );
        let text = off.to_string();
        assert!(
            text.starts_with("[note] read committed snapshot is off"),
            "{text}"
        );
        assert!(
            text.contains("the pushes of each table it wrote wait"),
            "{text}"
        );
        assert!(
            text.contains(
                "ALTER DATABASE [Mamut]]x] SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE"
            ),
            "{text}"
        );

        let unread = snapshot("Mamut", Err("permission denied".into()));
        assert!(unread.ok && unread.note, "{unread}");
        assert!(unread.text.contains("could not read"), "{unread}");
        assert!(unread.text.contains("(permission denied)"), "{unread}");
    }
}
