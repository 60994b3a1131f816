//! Running a request on PostgreSQL and writing the answer as TDS tokens: result sets typed as
//! SQL Server types them, row counts, errors with SQL Server's numbers, and transactions that
//! nest like SQL Server's (`@@TRANCOUNT`), with a failed statement rolled back alone (a
//! savepoint per statement) as SQL Server keeps the transaction open after most errors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use bytes::{BufMut, BytesMut};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

use super::SimConfig;
use super::catalog::{self, COLUMNS_SQL, ColumnMeta, ident};
use super::dialect::{self, Ddl, Kind, LockMode, SetOption, Statement, Translated, Translator};
use super::lexer::Tok;
use super::request::{Param, Request, Value};
use super::types::{PgValue, SqlType};
use super::wire::{self, DONE_COUNT, DONE_ERROR, DONE_INXACT, DONE_MORE};

const TOKEN_INFO: u8 = 0xAB;

/// A result column: name, PostgreSQL type and type modifier, and the table column it comes
/// from (table OID, column number).
type PgColumn = (String, Type, i32, Option<(u32, i16)>);
const TOKEN_DONE: u8 = 0xFD;

/// Session ids as SQL Server gives user sessions (51 and up).
static NEXT_SPID: AtomicI32 = AtomicI32::new(51);

/// An error as SQL Server would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub number: u32,
    pub class: u8,
    pub message: String,
}

impl SqlError {
    pub fn new(number: u32, class: u8, message: impl Into<String>) -> Self {
        Self {
            number,
            class,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error {} [{}]: {}",
            self.number, self.class, self.message
        )
    }
}

/// How a statement ended, when not normally.
enum Flow {
    Error(SqlError, Option<Kind>),
    /// The client's attention cancelled it.
    Cancelled,
}

impl From<SqlError> for Flow {
    fn from(e: SqlError) -> Self {
        Flow::Error(e, None)
    }
}

/// Errors after which SQL Server stops the batch (compile errors, conversion, deadlock).
fn aborts_batch(number: u32) -> bool {
    matches!(
        number,
        102 | 105 | 137 | 174 | 195 | 206 | 207 | 208 | 243 | 245 | 321 | 402 | 1205 | 50000
    )
}

/// Errors after which SQL Server adds 3621 "The statement has been terminated." to a DML
/// statement's answer.
fn terminates_statement(number: u32) -> bool {
    matches!(
        number,
        2627 | 2601 | 515 | 547 | 2628 | 8152 | 544 | 8102 | 272 | 273 | 220 | 8115 | 8134
    )
}

/// Cancels the PostgreSQL query a session is running (the client's attention).
#[derive(Clone)]
pub struct CancelHandle {
    token: postgres::CancelToken,
    requested: Arc<AtomicBool>,
}

impl CancelHandle {
    /// Cancels the request running now, or the next one to start if none runs yet (an
    /// attention can overtake its request on the way to the session thread). The request stays
    /// cancelled until it has noticed ([`Session::run`]) or [`CancelHandle::clear`] is called.
    /// PostgreSQL's cancel is sent again every 50 ms while the request is cancelled, since one
    /// that arrives just before PostgreSQL starts the query has no effect.
    pub fn cancel(&self) {
        if self.requested.swap(true, Ordering::SeqCst) {
            return;
        }
        let (token, requested) = (self.token.clone(), self.requested.clone());
        let repeat = move || {
            for _ in 0..200 {
                if !requested.load(Ordering::SeqCst) {
                    return;
                }
                let _ = token.cancel_query(NoTls);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        if std::thread::Builder::new()
            .name("mamut-sim-cancel".into())
            .spawn(repeat)
            .is_err()
        {
            off_runtime(|| {
                let _ = self.token.cancel_query(NoTls);
            });
        }
    }

    /// The attention was acknowledged: later requests run normally.
    pub fn clear(&self) {
        self.requested.store(false, Ordering::SeqCst);
    }
}

/// Runs blocking PostgreSQL work where the sync client may block: the sync `postgres` client
/// runs its own runtime, which cannot be entered from an async task (e.g. a `#[tokio::test]`).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// The sync client, dropped where dropping its runtime is allowed.
struct Pg(Option<Client>);

impl std::ops::Deref for Pg {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("the client lives until drop"))
    }
}

impl std::ops::DerefMut for Pg {
    fn deref_mut(&mut self) -> &mut Client {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("the client lives until drop"))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Closing the connection ends its transaction: PostgreSQL rolls it back.
        if let Some(client) = self.0.take() {
            off_runtime(move || drop(client));
        }
    }
}

/// Creates the stand-in's schema and helper objects in PostgreSQL, if missing.
pub fn prepare_schema(config: &SimConfig) -> Result<(), String> {
    off_runtime(|| prepare_schema_now(config))
}

fn prepare_schema_now(config: &SimConfig) -> Result<(), String> {
    let mut client = Client::connect(&config.postgres_url, NoTls).map_err(|e| {
        format!(
            "cannot connect to PostgreSQL at {} (set MAMUT_SIM_POSTGRES_URL): {e}",
            config.postgres_url
        )
    })?;
    let sql = format!(
        "BEGIN;\n{}\n{}\nCOMMIT;",
        catalog::global_sql(),
        catalog::setup_sql(&config.pg_schema, &config.database)
    );
    client.batch_execute(&sql).map_err(|e| {
        format!(
            "cannot set up the stand-in's schema {:?}: {}",
            config.pg_schema,
            pg_text(&e)
        )
    })
}

/// Drops a stand-in's schema and everything in it.
pub fn drop_schema(postgres_url: &str, schema: &str) -> Result<(), String> {
    off_runtime(|| drop_schema_now(postgres_url, schema))
}

fn drop_schema_now(postgres_url: &str, schema: &str) -> Result<(), String> {
    let mut client = Client::connect(postgres_url, NoTls).map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(schema)))
        .map_err(|e| pg_text(&e))
}

fn pg_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The tokens of one answer, with the DONE bookkeeping MS-TDS asks for: every DONE/DONEINPROC
/// followed by more tokens carries DONE_MORE.
struct Out {
    buf: BytesMut,
    rpc: bool,
    /// Where the last DONE's status is, to clear DONE_MORE when nothing follows.
    last_done: Option<usize>,
    failed: bool,
    /// The last result set's rows, for callers without a client (scripts, tests).
    rows: Vec<Vec<PgValue>>,
    first_error: Option<SqlError>,
}

impl Out {
    fn new(rpc: bool) -> Self {
        Self {
            buf: BytesMut::new(),
            rpc,
            last_done: None,
            failed: false,
            rows: Vec::new(),
            first_error: None,
        }
    }

    fn done(&mut self, status: u16, count: u64) {
        let token = if self.rpc {
            wire::TOKEN_DONEINPROC
        } else {
            TOKEN_DONE
        };
        self.last_done = Some(self.buf.len() + 1);
        wire::put_done(&mut self.buf, token, status | DONE_MORE, count);
    }

    fn error(&mut self, e: &SqlError) {
        self.failed = true;
        if self.first_error.is_none() {
            self.first_error = Some(e.clone());
        }
        wire::put_error(&mut self.buf, e.number, e.class, &e.message);
    }

    fn info(&mut self, number: u32, message: &str) {
        let mut body = BytesMut::new();
        body.put_u32_le(number);
        body.put_u8(1);
        body.put_u8(0);
        wire::put_us_varchar(&mut body, message);
        wire::put_b_varchar(&mut body, "mamut-sim");
        wire::put_b_varchar(&mut body, "");
        body.put_u32_le(1);
        self.buf.put_u8(TOKEN_INFO);
        self.buf.put_u16_le(body.len() as u16);
        self.buf.put_slice(&body);
    }

    fn finish(mut self, inxact: u16) -> Vec<u8> {
        if self.last_done.is_none() {
            self.done(0, 0);
        }
        if self.rpc {
            self.buf.put_u8(wire::TOKEN_RETURNSTATUS);
            self.buf.put_i32_le(i32::from(self.failed));
            let status = if self.failed { DONE_ERROR } else { 0 };
            wire::put_done(&mut self.buf, wire::TOKEN_DONEPROC, status | inxact, 0);
        } else if let Some(at) = self.last_done {
            let status = u16::from_le_bytes([self.buf[at], self.buf[at + 1]]) & !DONE_MORE;
            self.buf[at..at + 2].copy_from_slice(&status.to_le_bytes());
        }
        self.buf.to_vec()
    }
}

/// One client connection's database session: one PostgreSQL connection.
pub struct Session {
    client: Pg,
    database: String,
    /// `@@TRANCOUNT`.
    trancount: u32,
    descriptor: u64,
    next_descriptor: u64,
    /// A statement savepoint exists in the open transaction (released lazily).
    savepoint: bool,
    nocount: bool,
    xact_abort: bool,
    lock_timeout: i64,
    isolation: String,
    scope_identity: Option<i128>,
    rowcount: i64,
    last_error: u32,
    spid: i32,
    cancel: Arc<AtomicBool>,
    /// SQL Server types of table columns by (table OID, column number); OIDs never change.
    oid_types: HashMap<u32, HashMap<i16, (String, SqlType)>>,
}

impl Session {
    /// Opens a PostgreSQL connection on the stand-in's schema.
    pub fn connect(config: &SimConfig) -> Result<Self, String> {
        off_runtime(|| Self::connect_now(config))
    }

    fn connect_now(config: &SimConfig) -> Result<Self, String> {
        let mut client = Client::connect(&config.postgres_url, NoTls).map_err(|e| {
            format!(
                "cannot connect to PostgreSQL at {} (set MAMUT_SIM_POSTGRES_URL): {e}",
                config.postgres_url
            )
        })?;
        client
            .batch_execute(&format!(
                "SET search_path = {}, pg_catalog; SET application_name = 'mamut-sim'; SET TIME ZONE 'UTC'",
                ident(&config.pg_schema)
            ))
            .map_err(|e| pg_text(&e))?;
        // The schema before pg_catalog: its text comparison operators (SQL Server's default
        // collation, see `catalog::comparison_sql`) take precedence over PostgreSQL's.
        Ok(Self {
            client: Pg(Some(client)),
            database: config.database.clone(),
            trancount: 0,
            descriptor: 0,
            next_descriptor: 1,
            savepoint: false,
            nocount: false,
            xact_abort: false,
            lock_timeout: -1,
            isolation: "READ COMMITTED".into(),
            scope_identity: None,
            rowcount: 0,
            last_error: 0,
            spid: NEXT_SPID.fetch_add(1, Ordering::SeqCst),
            cancel: Arc::new(AtomicBool::new(false)),
            oid_types: HashMap::new(),
        })
    }

    /// A handle that cancels the request this session runs (from another thread).
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            token: self.client.cancel_token(),
            requested: self.cancel.clone(),
        }
    }

    /// `@@TRANCOUNT`.
    pub fn trancount(&self) -> u32 {
        self.trancount
    }

    /// The PostgreSQL backend serving this session (for tests that watch it wait).
    pub fn backend_pid(&mut self) -> Result<i32, String> {
        off_runtime(|| {
            self.client
                .query_one("SELECT pg_backend_pid()", &[])
                .and_then(|row| row.try_get::<_, i32>(0))
                .map_err(|e| pg_text(&e))
        })
    }

    /// Runs a request and returns the response tokens. A cancelled request returns what it
    /// had; the caller ends the answer with DONE + DONE_ATTN.
    pub fn run(&mut self, request: &Request) -> Vec<u8> {
        off_runtime(|| self.run_now(request))
    }

    fn run_now(&mut self, request: &Request) -> Vec<u8> {
        let mut out = Out::new(request.rpc);
        if self.batch(&request.sql, &request.params, &mut out) {
            // This request took the cancellation; the next one runs.
            self.cancel.store(false, Ordering::SeqCst);
            return out.buf.to_vec();
        }
        let inxact = self.inxact();
        out.finish(inxact)
    }

    /// Runs a T-SQL script directly (no client), e.g. the schema or test data; the first
    /// error ends it.
    pub fn execute(&mut self, sql: &str) -> Result<(), String> {
        self.script(sql).map(|_| ())
    }

    /// Runs a T-SQL script and returns the last result set's rows; the first error ends it.
    pub fn script(&mut self, sql: &str) -> Result<Vec<Vec<PgValue>>, String> {
        off_runtime(|| self.script_now(sql))
    }

    fn script_now(&mut self, sql: &str) -> Result<Vec<Vec<PgValue>>, String> {
        let mut out = Out::new(false);
        self.batch(sql, &[], &mut out);
        match out.first_error {
            Some(e) => Err(e.to_string()),
            None => Ok(out.rows),
        }
    }

    fn inxact(&self) -> u16 {
        if self.trancount > 0 { DONE_INXACT } else { 0 }
    }

    /// Runs a batch; `true` when it was cancelled.
    fn batch(&mut self, sql: &str, params: &[Param], out: &mut Out) -> bool {
        self.scope_identity = None;
        let statements = match dialect::parse_batch(sql).and_then(|s| {
            self.compile(&s, params)?;
            Ok(s)
        }) {
            Ok(statements) => statements,
            Err(e) => {
                self.last_error = e.number;
                out.error(&e);
                out.done(DONE_ERROR | self.inxact(), 0);
                return false;
            }
        };
        for statement in &statements {
            if self.cancel.load(Ordering::SeqCst) {
                return true;
            }
            match self.statement(statement, params, out) {
                Ok(count) => {
                    self.last_error = 0;
                    let status = match count {
                        Some(_) if !self.nocount => DONE_COUNT,
                        _ => 0,
                    };
                    out.done(status | self.inxact(), count.unwrap_or(0));
                }
                Err(Flow::Cancelled) => return true,
                Err(Flow::Error(e, kind)) => {
                    self.last_error = e.number;
                    out.error(&e);
                    if kind.is_some_and(|k| k != Kind::Select) && terminates_statement(e.number) {
                        out.info(3621, "The statement has been terminated.");
                    }
                    let rollback = e.number == 1205 || (self.xact_abort && self.trancount > 0);
                    if rollback && self.trancount > 0 {
                        let _ = self.client.batch_execute("ROLLBACK");
                        self.after_rollback();
                        wire::put_envchange_bytes(
                            &mut out.buf,
                            10,
                            &[],
                            &self.descriptor.to_le_bytes(),
                        );
                    }
                    out.done(DONE_ERROR | self.inxact(), 0);
                    if aborts_batch(e.number) || self.xact_abort {
                        break;
                    }
                }
            }
        }
        false
    }

    /// A batch is compiled before it runs: a statement outside the subset, or one PostgreSQL
    /// cannot parse, means no statement runs (SQL Server's compile errors).
    fn compile(&mut self, statements: &[Statement], params: &[Param]) -> Result<(), SqlError> {
        if statements.len() < 2 {
            return Ok(());
        }
        let empty = HashMap::new();
        let mut parsed = Vec::new();
        for statement in statements {
            let mut statement = statement;
            while let Statement::If { body, .. } = statement {
                statement = body;
            }
            let mut tr = self.translator(params, None, &empty);
            match statement {
                Statement::Query(toks) => parsed.push(tr.query(toks)?),
                Statement::Ddl(kind, toks) => {
                    ddl_sql(*kind, toks, &mut tr, "x", &self.database, &[])?;
                }
                _ => {}
            }
        }
        // PostgreSQL's parser reports syntax errors only (no names are resolved here).
        if self.trancount > 0 {
            self.client
                .batch_execute("SAVEPOINT tsql_compile")
                .map_err(|e| self.sql_error(&e))?;
        }
        let mut failure = None;
        for t in &parsed {
            let types = self.param_types(t, params);
            if let Err(e) = self.client.prepare_typed(&t.sql, &types)
                && e.code() == Some(&SqlState::SYNTAX_ERROR)
            {
                failure = Some(self.sql_error(&e));
                break;
            }
            if self.trancount > 0 {
                let _ = self
                    .client
                    .batch_execute("ROLLBACK TO SAVEPOINT tsql_compile");
            }
        }
        if self.trancount > 0 {
            let _ = self.client.batch_execute(
                "ROLLBACK TO SAVEPOINT tsql_compile; RELEASE SAVEPOINT tsql_compile",
            );
        }
        failure.map_or(Ok(()), Err)
    }

    fn translator<'a>(
        &'a self,
        params: &'a [Param],
        min_active: Option<[u8; 8]>,
        meta: &'a HashMap<String, Vec<ColumnMeta>>,
    ) -> Translator<'a> {
        Translator::new(
            params,
            self.scope_identity,
            self.trancount,
            self.spid,
            self.rowcount,
            self.last_error,
            &self.database,
            min_active,
            meta,
        )
    }

    fn after_rollback(&mut self) {
        self.trancount = 0;
        self.savepoint = false;
        // A rollback also undoes SET done inside the transaction; SQL Server's SET options
        // are not transactional.
        let _ = self.apply_settings();
    }

    fn apply_settings(&mut self) -> Result<(), postgres::Error> {
        let ms = match self.lock_timeout {
            n if n < 0 => 0,
            0 => 1,
            n => n,
        };
        self.client.batch_execute(&format!(
            "SET lock_timeout = {ms}; SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {}",
            self.isolation
        ))
    }

    fn statement(
        &mut self,
        statement: &Statement,
        params: &[Param],
        out: &mut Out,
    ) -> Result<Option<u64>, Flow> {
        match statement {
            Statement::Begin => {
                if self.trancount == 0 {
                    self.client
                        .batch_execute("BEGIN")
                        .map_err(|e| self.map_error(&e, None))?;
                    self.descriptor = self.next_descriptor;
                    self.next_descriptor += 1;
                    self.savepoint = false;
                    wire::put_envchange_bytes(&mut out.buf, 8, &self.descriptor.to_le_bytes(), &[]);
                }
                self.trancount += 1;
                Ok(None)
            }
            Statement::Commit => {
                match self.trancount {
                    0 => {
                        return Err(SqlError::new(
                            3902,
                            16,
                            "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
                        )
                        .into());
                    }
                    1 => {
                        let result = self.client.batch_execute("COMMIT");
                        self.trancount = 0;
                        self.savepoint = false;
                        wire::put_envchange_bytes(
                            &mut out.buf,
                            9,
                            &[],
                            &self.descriptor.to_le_bytes(),
                        );
                        result.map_err(|e| self.map_error(&e, None))?;
                    }
                    _ => self.trancount -= 1,
                }
                Ok(None)
            }
            Statement::Rollback => {
                if self.trancount == 0 {
                    return Err(SqlError::new(
                        3903,
                        16,
                        "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
                    )
                    .into());
                }
                let result = self.client.batch_execute("ROLLBACK");
                self.after_rollback();
                wire::put_envchange_bytes(&mut out.buf, 10, &[], &self.descriptor.to_le_bytes());
                result.map_err(|e| self.map_error(&e, None))?;
                Ok(None)
            }
            Statement::Set(option) => {
                match option {
                    SetOption::NoCount(on) => self.nocount = *on,
                    SetOption::XactAbort(on) => self.xact_abort = *on,
                    SetOption::LockTimeout(ms) => {
                        self.lock_timeout = *ms;
                        self.apply_settings()
                            .map_err(|e| self.map_error(&e, None))?;
                    }
                    SetOption::Isolation(level) => {
                        self.isolation = level.clone();
                        self.apply_settings()
                            .map_err(|e| self.map_error(&e, None))?;
                    }
                    SetOption::Accepted => {}
                }
                Ok(None)
            }
            Statement::Use(db) => {
                if !db.eq_ignore_ascii_case(&self.database) {
                    return Err(SqlError::new(
                        911,
                        16,
                        format!("Database '{db}' does not exist. Make sure that the name is entered correctly."),
                    )
                    .into());
                }
                let db = self.database.clone();
                wire::put_envchange_text(&mut out.buf, 1, &db, &db);
                out.info(5701, &format!("Changed database context to '{db}'."));
                Ok(None)
            }
            Statement::If { condition, body } => {
                let mut toks = vec![
                    Tok::Word("SELECT".into()),
                    Tok::Word("CASE".into()),
                    Tok::Word("WHEN".into()),
                ];
                toks.extend(condition.iter().cloned());
                toks.extend([
                    Tok::Word("THEN".into()),
                    Tok::Num("1".into()),
                    Tok::Word("ELSE".into()),
                    Tok::Num("0".into()),
                    Tok::Word("END".into()),
                ]);
                let mut scratch = Out::new(out.rpc);
                self.query(&toks, params, &mut scratch)?;
                if scratch.rows.first().and_then(|r| r.first()) == Some(&PgValue::Int(1)) {
                    self.statement(body, params, out)
                } else {
                    Ok(None)
                }
            }
            Statement::Ddl(kind, toks) => {
                let empty = HashMap::new();
                let schema = self.schema()?;
                let text_columns = match (kind, catalog::index_table(toks)) {
                    (Ddl::CreateIndex, Some(table)) => self
                        .load_meta(std::slice::from_ref(&table))?
                        .remove(&table)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| matches!(c.data_type.as_str(), "nvarchar" | "varchar"))
                        .map(|c| c.pg_name)
                        .collect(),
                    _ => Vec::new(),
                };
                let sql = {
                    let mut tr = self.translator(params, None, &empty);
                    ddl_sql(*kind, toks, &mut tr, &schema, &self.database, &text_columns)?
                };
                let own = self
                    .begin_statement(&[])
                    .map_err(|e| Flow::Error(e, None))?;
                let result = self.client.batch_execute(&sql);
                self.end_statement(result.is_ok(), own)?;
                result.map_err(|e| self.map_error(&e, None))?;
                Ok(None)
            }
            Statement::Query(toks) => self.query(toks, params, out),
        }
    }

    fn schema(&mut self) -> Result<String, SqlError> {
        let row = self
            .client
            .query_one("SELECT current_schema()::text", &[])
            .map_err(|e| self.sql_error(&e))?;
        row.try_get::<_, String>(0)
            .map_err(|e| SqlError::new(50000, 16, e.to_string()))
    }

    /// Opens what protects one statement: a savepoint inside a transaction, or a
    /// transaction of its own when it takes table locks. Returns whether it opened its own.
    fn begin_statement(&mut self, locks: &[(String, LockMode)]) -> Result<bool, SqlError> {
        let mut prefix = String::new();
        let own = self.trancount == 0 && !locks.is_empty();
        if self.trancount > 0 {
            if self.savepoint {
                prefix.push_str("RELEASE SAVEPOINT tsql_statement; ");
            }
            prefix.push_str("SAVEPOINT tsql_statement; ");
            self.savepoint = true;
        } else if own {
            prefix.push_str("BEGIN; ");
        }
        // UPDLOCK/HOLDLOCK: SQL Server locks the key range read until the transaction ends;
        // the stand-in locks the table against writers (and other UPDLOCK readers) instead.
        for (table, mode) in locks {
            prefix.push_str(&format!(
                "LOCK TABLE {} IN {} MODE; ",
                ident(table),
                match mode {
                    LockMode::Update => "SHARE ROW EXCLUSIVE",
                    LockMode::Hold => "SHARE",
                }
            ));
        }
        if prefix.is_empty() {
            return Ok(false);
        }
        if let Err(e) = self.client.batch_execute(&prefix) {
            let mapped = self.map_error(&e, None);
            let _ = self.end_statement(false, own);
            return Err(match mapped {
                Flow::Error(e, _) => e,
                Flow::Cancelled => SqlError::new(3617, 25, "cancelled"),
            });
        }
        Ok(own)
    }

    fn end_statement(&mut self, ok: bool, own: bool) -> Result<(), Flow> {
        let result = if self.trancount > 0 {
            if ok {
                return Ok(());
            }
            self.client
                .batch_execute("ROLLBACK TO SAVEPOINT tsql_statement")
        } else if own {
            self.client
                .batch_execute(if ok { "COMMIT" } else { "ROLLBACK" })
        } else {
            return Ok(());
        };
        result.map_err(|e| self.map_error(&e, None))
    }

    fn load_meta(
        &mut self,
        tables: &[String],
    ) -> Result<HashMap<String, Vec<ColumnMeta>>, SqlError> {
        let mut meta: HashMap<String, Vec<ColumnMeta>> = HashMap::new();
        if tables.is_empty() {
            return Ok(meta);
        }
        let names: Vec<String> = tables.to_vec();
        let rows = self.client.query(COLUMNS_SQL, &[&names]).map_err(|e| {
            match self.map_error(&e, None) {
                Flow::Error(e, _) => e,
                Flow::Cancelled => SqlError::new(3617, 25, "cancelled"),
            }
        })?;
        for row in rows {
            let get = |i: usize| row.try_get::<_, Option<i32>>(i).ok().flatten();
            let column = ColumnMeta {
                table: row.try_get(0).unwrap_or_default(),
                name: row.try_get(1).unwrap_or_default(),
                pg_name: row.try_get(2).unwrap_or_default(),
                data_type: row.try_get(3).unwrap_or_default(),
                max_length: get(4),
                precision: get(5),
                scale: get(6),
                nullable: row.try_get(7).unwrap_or(true),
                identity: row.try_get(8).unwrap_or(false),
            };
            meta.entry(column.table.clone()).or_default().push(column);
        }
        Ok(meta)
    }

    fn param_types(&self, t: &Translated, params: &[Param]) -> Vec<Type> {
        t.binds
            .iter()
            .map(|&i| match &params[i].value {
                Value::Int { width: 1 | 2, .. } | Value::Bit(_) => Type::INT2,
                Value::Int { width: 4, .. } => Type::INT4,
                Value::Int { .. } => Type::INT8,
                Value::Float(_) => Type::FLOAT8,
                Value::Blob(_) => Type::BYTEA,
                Value::DateTime(_) => Type::TIMESTAMP,
                Value::Date(_) => Type::DATE,
                Value::Null | Value::Decimal(_) | Value::Text(_) => Type::TEXT,
            })
            .collect()
    }

    fn query(
        &mut self,
        toks: &[Tok],
        params: &[Param],
        out: &mut Out,
    ) -> Result<Option<u64>, Flow> {
        let tables = dialect::referenced_tables(toks);
        let meta = self.load_meta(&tables)?;
        // Translate once to check it, before anything runs.
        let first = self.translator(params, None, &meta).query(toks)?;
        let kind = Some(first.kind);
        let own = self
            .begin_statement(&first.locks)
            .map_err(|e| Flow::Error(e, kind))?;
        // MIN_ACTIVE_ROWVERSION() is computed before the statement's snapshot is taken, so a
        // transaction that commits in between is either seen or still bounds the answer.
        let t = if toks.iter().any(|t| t.is_word("MIN_ACTIVE_ROWVERSION")) {
            match self.min_active_rowversion() {
                Ok(value) => self.translator(params, Some(value), &meta).query(toks)?,
                Err(e) => {
                    self.end_statement(false, own)?;
                    return Err(Flow::Error(e, kind));
                }
            }
        } else {
            first
        };
        let result = self.pg_query(&t, params);
        let ended = self.end_statement(result.is_ok(), own);
        let (columns, rows, count) = match result {
            Ok(r) => r,
            Err(e) => {
                return Err(match self.map_error(&e, Some(&t)) {
                    Flow::Error(e, _) => Flow::Error(e, kind),
                    Flow::Cancelled => Flow::Cancelled,
                });
            }
        };
        ended?;
        let mut rows = rows;
        let mut visible = columns.len();
        if t.hidden_identity {
            visible -= 1;
            if let Some(last) = rows.last().and_then(|r| r.last()) {
                self.scope_identity = match last {
                    PgValue::Int(i) => Some(i128::from(*i)),
                    PgValue::Numeric { mantissa, scale } => {
                        super::types::rescale(*mantissa, *scale, 0)
                    }
                    _ => None,
                };
            }
            for row in &mut rows {
                row.pop();
            }
        }
        self.rowcount = count as i64;
        if visible == 0 {
            return Ok(Some(count));
        }
        let types = self.result_types(&t, &columns[..visible], &rows)?;
        let mut block = BytesMut::new();
        block.put_u8(wire::TOKEN_COLMETADATA);
        block.put_u16_le(visible as u16);
        for ((name, _, _, _), ty) in columns.iter().zip(&types) {
            block.put_u32_le(if *ty == SqlType::RowVersion { 80 } else { 0 });
            block.put_u16_le(0x0001 | 0x0008);
            ty.put_type_info(&mut block);
            wire::put_b_varchar(&mut block, name);
        }
        for row in &rows {
            block.put_u8(wire::TOKEN_ROW);
            for (value, ty) in row.iter().zip(&types) {
                ty.put_value(&mut block, value)
                    .map_err(|m| Flow::Error(SqlError::new(8115, 16, m), kind))?;
            }
        }
        out.buf.put_slice(&block);
        out.rows = rows;
        Ok(Some(count))
    }

    /// Each result column's SQL Server type: what the translation knows, else the recorded
    /// type of the table column it comes from, else from the PostgreSQL type.
    fn result_types(
        &mut self,
        t: &Translated,
        columns: &[PgColumn],
        rows: &[Vec<PgValue>],
    ) -> Result<Vec<SqlType>, Flow> {
        let wanted: HashSet<u32> = columns
            .iter()
            .filter_map(|c| c.3.map(|(oid, _)| oid))
            .filter(|oid| !self.oid_types.contains_key(oid))
            .collect();
        if !wanted.is_empty() {
            let oids: Vec<u32> = wanted.iter().copied().collect();
            let found = self
                .client
                .query(
                    "SELECT a.attrelid, a.attnum, m.column_name, m.data_type, m.max_length, m.num_precision, m.num_scale \
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                     JOIN tsql_columns m ON m.table_name = c.relname AND m.pg_column = a.attname \
                     WHERE a.attrelid = ANY($1)",
                    &[&oids],
                )
                .map_err(|e| self.map_error(&e, None))?;
            for oid in &oids {
                self.oid_types.entry(*oid).or_default();
            }
            for row in found {
                let oid: u32 = row.try_get(0).unwrap_or_default();
                let attnum: i16 = row.try_get(1).unwrap_or_default();
                let name: String = row.try_get(2).unwrap_or_default();
                let data_type: String = row.try_get(3).unwrap_or_default();
                let get = |i: usize| row.try_get::<_, Option<i32>>(i).ok().flatten();
                let ty = SqlType::from_recorded(&data_type, get(4), get(5), get(6));
                self.oid_types
                    .entry(oid)
                    .or_default()
                    .insert(attnum, (name, ty));
            }
        }
        columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty, typmod, origin))| {
                if let Some(Some(known)) = t.types.get(i) {
                    return Ok(*known);
                }
                if let Some((oid, attnum)) = origin
                    && let Some((_, known)) = self.oid_types.get(oid).and_then(|m| m.get(attnum))
                {
                    return Ok(*known);
                }
                let values: Vec<&PgValue> = rows.iter().filter_map(|r| r.get(i)).collect();
                SqlType::from_pg(ty, *typmod, &values)
                    .map_err(|m| Flow::Error(SqlError::new(50000, 16, m), Some(t.kind)))
            })
            .collect()
    }

    /// Runs a translated query: (columns, rows, count).
    #[allow(clippy::type_complexity)]
    fn pg_query(
        &mut self,
        t: &Translated,
        params: &[Param],
    ) -> Result<(Vec<PgColumn>, Vec<Vec<PgValue>>, u64), postgres::Error> {
        let types = self.param_types(t, params);
        let values: Vec<Box<dyn ToSql + Sync>> = t
            .binds
            .iter()
            .map(|&i| -> Box<dyn ToSql + Sync> {
                match &params[i].value {
                    Value::Int {
                        value,
                        width: 1 | 2,
                    } => Box::new(*value as i16),
                    Value::Bit(b) => Box::new(i16::from(*b)),
                    Value::Int { value, width: 4 } => Box::new(*value as i32),
                    Value::Int { value, .. } => Box::new(*value),
                    Value::Float(f) => Box::new(*f),
                    Value::Decimal(d) | Value::Text(d) => Box::new(d.clone()),
                    Value::Blob(b) => Box::new(b.clone()),
                    Value::DateTime(at) => Box::new(*at),
                    Value::Date(d) => Box::new(*d),
                    Value::Null => Box::new(Option::<String>::None),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        let statement = self.client.prepare_typed(&t.sql, &types)?;
        let columns: Vec<PgColumn> = statement
            .columns()
            .iter()
            .map(|c| {
                let name = match c.name() {
                    "?column?" => String::new(),
                    n => n.to_owned(),
                };
                let origin = match (c.table_oid(), c.column_id()) {
                    (Some(oid), Some(n)) if oid != 0 => Some((oid, n)),
                    _ => None,
                };
                (name, c.type_().clone(), c.type_modifier(), origin)
            })
            .collect();
        if columns.is_empty() {
            let count = self.client.execute(&statement, &refs)?;
            return Ok((columns, Vec::new(), count));
        }
        let rows = self.client.query(&statement, &refs)?;
        let mut data = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                values.push(row.try_get::<_, PgValue>(i)?);
            }
            data.push(values);
        }
        let count = data.len() as u64;
        Ok((columns, data, count))
    }

    fn min_active_rowversion(&mut self) -> Result<[u8; 8], SqlError> {
        let row = self
            .client
            .query_one("SELECT tsql_min_active_rowversion()", &[])
            .map_err(|e| match self.map_error(&e, None) {
                Flow::Error(e, _) => e,
                Flow::Cancelled => SqlError::new(3617, 25, "cancelled"),
            })?;
        let bytes: Vec<u8> = row
            .try_get(0)
            .map_err(|e| SqlError::new(50000, 16, e.to_string()))?;
        bytes
            .try_into()
            .map_err(|_| SqlError::new(50000, 16, "MIN_ACTIVE_ROWVERSION() is not 8 bytes"))
    }

    fn sql_error(&self, e: &postgres::Error) -> SqlError {
        match self.map_error(e, None) {
            Flow::Error(e, _) => e,
            Flow::Cancelled => SqlError::new(3617, 25, "The query was cancelled."),
        }
    }

    /// A PostgreSQL error as SQL Server would number and word it.
    fn map_error(&self, e: &postgres::Error, t: Option<&Translated>) -> Flow {
        let Some(db) = e.as_db_error() else {
            return Flow::Error(
                SqlError::new(
                    50000,
                    20,
                    format!("The stand-in lost its PostgreSQL connection: {e}"),
                ),
                None,
            );
        };
        let database = &self.database;
        let code = db.code().code();
        let message = db.message();
        let detail = db.detail().unwrap_or_default();
        let table = db.table().unwrap_or_default().to_owned();
        let column = db.column().unwrap_or_default().to_owned();
        let constraint = db.constraint().unwrap_or_default().to_owned();
        let verb = t.map_or("INSERT", |t| t.kind.verb());
        let target = t.and_then(|t| t.target.clone()).unwrap_or(table.clone());
        let quoted = |m: &str| m.split('"').nth(1).unwrap_or(m).to_owned();
        // "Key (a, b)=(1, x) already exists." → "(1, x)"
        let key_value = detail
            .split_once(")=(")
            .map(|(_, rest)| format!("({}", rest.rsplit_once(')').map_or(rest, |(v, _)| v)) + ")")
            .unwrap_or_default();
        let e = match code {
            "57014" => return Flow::Cancelled,
            c if c.len() == 5
                && c.starts_with('Z')
                && c[1..].chars().all(|d| d.is_ascii_digit()) =>
            {
                SqlError::new(c[1..].parse().unwrap_or(50000), 16, message)
            }
            "23505" if constraint.contains('$') => SqlError::new(
                2601,
                14,
                format!(
                    "Cannot insert duplicate key row in object 'dbo.{table}' with unique index '{}'. The duplicate key value is {key_value}.",
                    constraint.split('$').nth(1).unwrap_or(&constraint)
                ),
            ),
            "23505" => SqlError::new(
                2627,
                14,
                format!(
                    "Violation of {} constraint '{constraint}'. Cannot insert duplicate key in object 'dbo.{table}'. The duplicate key value is {key_value}.",
                    if constraint.to_ascii_uppercase().starts_with("PK") {
                        "PRIMARY KEY"
                    } else {
                        "UNIQUE KEY"
                    }
                ),
            ),
            "23503" => {
                let key_column = detail
                    .split_once("Key (")
                    .and_then(|(_, r)| r.split_once(')'))
                    .map(|(c, _)| c.to_owned())
                    .unwrap_or_default();
                let other = detail.rsplit('"').nth(1).unwrap_or_default().to_owned();
                if detail.contains("still referenced") {
                    SqlError::new(
                        547,
                        16,
                        format!(
                            "The {verb} statement conflicted with the REFERENCE constraint \"{constraint}\". The conflict occurred in database \"{database}\", table \"dbo.{other}\", column '{key_column}'."
                        ),
                    )
                } else {
                    SqlError::new(
                        547,
                        16,
                        format!(
                            "The {verb} statement conflicted with the FOREIGN KEY constraint \"{constraint}\". The conflict occurred in database \"{database}\", table \"dbo.{other}\", column '{key_column}'."
                        ),
                    )
                }
            }
            "23514" => SqlError::new(
                547,
                16,
                format!(
                    "The {verb} statement conflicted with the CHECK constraint \"{constraint}\". The conflict occurred in database \"{database}\", table \"dbo.{table}\"."
                ),
            ),
            "23502" => SqlError::new(
                515,
                16,
                format!(
                    "Cannot insert the value NULL into column '{column}', table '{database}.dbo.{table}'; column does not allow nulls. {verb} fails."
                ),
            ),
            "428C9" if verb == "UPDATE" => SqlError::new(
                8102,
                16,
                format!("Cannot update identity column '{}'.", quoted(message)),
            ),
            "428C9" => SqlError::new(
                544,
                16,
                format!(
                    "Cannot insert explicit value for identity column in table '{target}' when IDENTITY_INSERT is set to OFF."
                ),
            ),
            "22003" if message.contains("numeric") => SqlError::new(
                8115,
                16,
                "Arithmetic overflow error converting numeric to data type numeric.",
            ),
            "22003" => SqlError::new(
                8115,
                16,
                format!(
                    "Arithmetic overflow error converting expression to data type {}.",
                    if message.starts_with("bigint") {
                        "bigint"
                    } else if message.starts_with("smallint") {
                        "smallint"
                    } else {
                        "int"
                    }
                ),
            ),
            "22001" => SqlError::new(
                2628,
                16,
                format!(
                    "String or binary data would be truncated in table '{database}.dbo.{target}', column '{column}'. Truncated value: ''."
                ),
            ),
            "22012" => SqlError::new(8134, 16, "Divide by zero error encountered."),
            "22P02" | "22007" | "22008" => {
                SqlError::new(245, 16, format!("Conversion failed: {message}."))
            }
            "55P03" => SqlError::new(1222, 16, "Lock request time out period exceeded."),
            "40P01" | "40001" => SqlError::new(
                1205,
                13,
                format!(
                    "Transaction (Process ID {}) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.",
                    self.spid
                ),
            ),
            "42P01" => SqlError::new(
                208,
                16,
                format!("Invalid object name '{}'.", quoted(message)),
            ),
            "42703" => {
                let name = quoted(message);
                let name = name.rsplit('.').next().unwrap_or(&name).to_owned();
                SqlError::new(207, 16, format!("Invalid column name '{name}'."))
            }
            "42P07" => SqlError::new(
                2714,
                16,
                format!(
                    "There is already an object named '{}' in the database.",
                    quoted(message)
                ),
            ),
            "42601" => SqlError::new(
                102,
                15,
                format!("Incorrect syntax near '{}'.", quoted(message)),
            ),
            "42883" | "42725" => SqlError::new(
                402,
                16,
                format!("The data types in this expression are incompatible ({message})."),
            ),
            "42804" => SqlError::new(206, 16, format!("Operand type clash: {message}.")),
            "42702" => SqlError::new(
                209,
                16,
                format!("Ambiguous column name '{}'.", quoted(message)),
            ),
            _ => SqlError::new(
                50000,
                16,
                format!("The stand-in cannot run this: PostgreSQL {code}: {message}"),
            ),
        };
        Flow::Error(e, t.map(|t| t.kind))
    }
}

fn ddl_sql(
    kind: Ddl,
    toks: &[Tok],
    tr: &mut Translator<'_>,
    schema: &str,
    database: &str,
    text_columns: &[String],
) -> Result<String, SqlError> {
    match kind {
        Ddl::CreateTable => catalog::create_table(toks, tr, schema, database),
        Ddl::CreateIndex => catalog::create_index(toks, text_columns),
        Ddl::DropTable => catalog::drop_table(toks),
        Ddl::Truncate => match toks {
            [Tok::Word(t) | Tok::Quoted(t)] => Ok(format!("TRUNCATE TABLE {}", ident(t))),
            _ => Err(super::lexer::syntax_error("TRUNCATE")),
        },
    }
}
