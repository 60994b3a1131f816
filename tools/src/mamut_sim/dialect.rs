//! The T-SQL subset the stand-in runs, translated to PostgreSQL. This is the one place that
//! defines the subset (see `deploy/mamut/README.md`). A batch is split into statements and
//! each is checked before any runs; anything outside the subset is refused with a SQL Server
//! error (102 "Incorrect syntax", 195 unknown function or SET option, 137 undeclared variable),
//! never guessed at.

use std::collections::HashMap;

use super::catalog::{ColumnMeta, ident, lit};
use super::exec::SqlError;
use super::lexer::{Tok, syntax_error, tokens};
use super::request::{Param, Value};
use super::types::SqlType;

/// A translated DML statement: its SQL, kind, target table, result column types, and whether
/// the identity column was appended to `RETURNING` (hidden from the client) for
/// SCOPE_IDENTITY().
type Dml = (String, Kind, Option<String>, Vec<Option<SqlType>>, bool);

/// A `RETURNING` clause, its column types, and whether the identity column was appended to it
/// (hidden from the client) for SCOPE_IDENTITY().
type Returning = (String, Vec<Option<SqlType>>, bool);

/// One statement of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Begin,
    Commit,
    Rollback,
    Set(SetOption),
    Use(String),
    /// `IF <condition> <statement>`.
    If {
        condition: Vec<Tok>,
        body: Box<Statement>,
    },
    /// `CREATE TABLE` / `CREATE INDEX` / `DROP TABLE` / `TRUNCATE TABLE`, tokens after the verb.
    Ddl(Ddl, Vec<Tok>),
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`.
    Query(Vec<Tok>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ddl {
    CreateTable,
    CreateIndex,
    DropTable,
    Truncate,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetOption {
    NoCount(bool),
    XactAbort(bool),
    /// Milliseconds; -1 waits for ever.
    LockTimeout(i64),
    Isolation(String),
    /// Accepted with no effect on the stand-in (documented in `deploy/mamut/README.md`).
    Accepted,
}

/// Index of the `)` matching the `(` at `open`.
pub fn matching(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Splits at top-level commas.
pub fn split_commas(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        } else if depth == 0 && t.is_op(",") {
            out.push(&toks[start..i]);
            start = i + 1;
        }
    }
    if start < toks.len() || !out.is_empty() {
        out.push(&toks[start..]);
    }
    out
}

const STATEMENT_START: [&str; 21] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK", "SET", "USE", "CREATE",
    "DROP", "IF", "DECLARE", "EXEC", "EXECUTE", "PRINT", "TRUNCATE", "ALTER", "WHILE", "RETURN",
    "MERGE",
];

/// Does `tok` start a new statement after the statement so far (`cur`, non-empty)? T-SQL needs
/// no semicolons between statements.
fn starts_statement(cur: &[Tok], tok: &Tok) -> bool {
    let Some(word) = tok.word() else { return false };
    if !STATEMENT_START.contains(&word.as_str()) {
        return false;
    }
    // `IF cond <statement>`: the first statement keyword after IF is its body.
    let mut body = cur;
    if cur.first().is_some_and(|t| t.is_word("IF")) {
        match top_level_start(&cur[1..]) {
            None => return false,
            Some(at) => body = &cur[1 + at..],
        }
    }
    let first = body.first().and_then(Tok::word).unwrap_or_default();
    let prev = body.last().and_then(Tok::word).unwrap_or_default();
    let seen = |w: &str| body.iter().any(|t| t.is_word(w));
    match word.as_str() {
        "SELECT" => {
            (seen("VALUES") || seen("SELECT") || first != "INSERT")
                && !matches!(prev.as_str(), "UNION" | "ALL" | "EXCEPT" | "INTERSECT")
        }
        "SET" => {
            !(first == "UPDATE" && !seen("SET") || matches!(prev.as_str(), "DELETE" | "UPDATE"))
        }
        "DELETE" | "UPDATE" => prev != "ON",
        "BEGIN" | "COMMIT" | "ROLLBACK" => {
            !matches!(first.as_str(), "BEGIN" | "COMMIT" | "ROLLBACK")
                || body.len() > 1 && !matches!(prev.as_str(), "BEGIN")
        }
        _ => true,
    }
}

/// Position of the first top-level statement keyword.
fn top_level_start(toks: &[Tok]) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        } else if depth == 0
            && t.word()
                .is_some_and(|w| STATEMENT_START.contains(&w.as_str()))
        {
            return Some(i);
        }
    }
    None
}

/// The deepest parenthesis nesting and the most tokens one statement may have. The translator
/// recurses over both, so a statement beyond them is refused (SQL Server's error 191) instead of
/// overflowing the session thread's stack; the agent's statements are far smaller.
const MAX_NESTING: i32 = 64;
const MAX_STATEMENT_TOKENS: usize = 4_000;

fn nested_too_deeply() -> SqlError {
    SqlError::new(
        191,
        15,
        "Some part of your SQL statement is nested too deeply. Rewrite the query or break it up \
         into smaller queries.",
    )
}

/// The parts of a dotted name (`dbo.orders`, `[sys].[tables]`) from `*i`, which moves past it.
pub(crate) fn dotted_name(toks: &[Tok], i: &mut usize) -> Result<Vec<String>, SqlError> {
    let mut parts = Vec::new();
    loop {
        match toks.get(*i) {
            Some(Tok::Word(w) | Tok::Quoted(w)) => parts.push(w.clone()),
            other => return Err(syntax_error(&other.map(Tok::text).unwrap_or_default())),
        }
        *i += 1;
        if toks.get(*i).is_some_and(|t| t.is_op(".")) {
            *i += 1;
        } else {
            break;
        }
    }
    Ok(parts)
}

/// Splits a batch into statements and parses each; any error means nothing runs.
pub fn parse_batch(batch: &str) -> Result<Vec<Statement>, SqlError> {
    let toks = tokens(batch)?;
    let mut groups: Vec<Vec<Tok>> = Vec::new();
    let mut cur: Vec<Tok> = Vec::new();
    let mut depth = 0i32;
    for tok in toks {
        if depth == 0 && tok.is_op(";") {
            if !cur.is_empty() {
                groups.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if depth == 0 && !cur.is_empty() && starts_statement(&cur, &tok) {
            groups.push(std::mem::take(&mut cur));
        }
        if tok.is_op("(") {
            depth += 1;
            if depth > MAX_NESTING {
                return Err(nested_too_deeply());
            }
        } else if tok.is_op(")") {
            depth -= 1;
            if depth < 0 {
                return Err(syntax_error(")"));
            }
        }
        cur.push(tok);
        if cur.len() > MAX_STATEMENT_TOKENS {
            return Err(nested_too_deeply());
        }
    }
    if depth != 0 {
        return Err(syntax_error(&cur.last().map(Tok::text).unwrap_or_default()));
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups.iter().map(|g| statement(g)).collect()
}

fn words(toks: &[Tok]) -> Vec<String> {
    toks.iter()
        .map(|t| t.word().unwrap_or_else(|| t.text()))
        .collect()
}

fn not_supported(what: &str) -> SqlError {
    SqlError::new(
        102,
        15,
        format!(
            "Incorrect syntax near '{what}'. (Outside the stand-in's T-SQL subset; see deploy/mamut/README.md.)"
        ),
    )
}

fn statement(toks: &[Tok]) -> Result<Statement, SqlError> {
    let w = words(toks);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let tran = |rest: &[&str]| match rest {
        [] => true,
        ["TRAN" | "TRANSACTION" | "WORK"] => true,
        ["TRAN" | "TRANSACTION", name] => !name.is_empty(),
        _ => false,
    };
    match w.first().copied().unwrap_or_default() {
        "BEGIN" if w.len() >= 2 && matches!(w[1], "TRAN" | "TRANSACTION") && w.len() <= 3 => {
            Ok(Statement::Begin)
        }
        "BEGIN" => Err(not_supported(w.get(1).copied().unwrap_or("BEGIN"))),
        "COMMIT" if tran(&w[1..]) => Ok(Statement::Commit),
        "ROLLBACK" if tran(&w[1..]) => Ok(Statement::Rollback),
        "COMMIT" | "ROLLBACK" => Err(syntax_error(w.get(1).copied().unwrap_or_default())),
        "SET" => set_option(&toks[1..]).map(Statement::Set),
        "USE" => match &toks[1..] {
            [Tok::Word(db) | Tok::Quoted(db)] => Ok(Statement::Use(db.clone())),
            _ => Err(syntax_error(w.get(1).copied().unwrap_or("USE"))),
        },
        "IF" => {
            let at = top_level_start(&toks[1..]).ok_or_else(|| syntax_error("IF"))?;
            if at == 0 {
                return Err(syntax_error(w.get(1).copied().unwrap_or("IF")));
            }
            let body = statement(&toks[1 + at..])?;
            if toks.iter().any(|t| t.is_word("ELSE")) {
                return Err(not_supported("ELSE"));
            }
            Ok(Statement::If {
                condition: toks[1..1 + at].to_vec(),
                body: Box::new(body),
            })
        }
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" => {
            if toks.len() < 2 {
                return Err(syntax_error(w[0]));
            }
            Ok(Statement::Query(toks.to_vec()))
        }
        "CREATE" => match w.get(1).copied() {
            Some("TABLE") => Ok(Statement::Ddl(Ddl::CreateTable, toks[2..].to_vec())),
            Some("INDEX" | "UNIQUE" | "CLUSTERED" | "NONCLUSTERED") => {
                Ok(Statement::Ddl(Ddl::CreateIndex, toks[1..].to_vec()))
            }
            other => Err(not_supported(other.unwrap_or("CREATE"))),
        },
        "DROP" if w.get(1) == Some(&"TABLE") => {
            Ok(Statement::Ddl(Ddl::DropTable, toks[2..].to_vec()))
        }
        "TRUNCATE" if w.get(1) == Some(&"TABLE") => {
            Ok(Statement::Ddl(Ddl::Truncate, toks[2..].to_vec()))
        }
        other => Err(not_supported(other)),
    }
}

/// SET options accepted at login by FreeTDS, pymssql, python-tds and tiberius clients.
const ON_OFF_OPTIONS: [&str; 22] = [
    "ANSI_NULLS",
    "ANSI_PADDING",
    "ANSI_WARNINGS",
    "ANSI_NULL_DFLT_ON",
    "ANSI_NULL_DFLT_OFF",
    "ANSI_DEFAULTS",
    "ARITHABORT",
    "ARITHIGNORE",
    "CONCAT_NULL_YIELDS_NULL",
    "CURSOR_CLOSE_ON_COMMIT",
    "QUOTED_IDENTIFIER",
    "NUMERIC_ROUNDABORT",
    "NOCOUNT",
    "XACT_ABORT",
    "IMPLICIT_TRANSACTIONS",
    "NO_BROWSETABLE",
    "FORCEPLAN",
    "STATISTICS",
    "FMTONLY",
    "NOEXEC",
    "PARSEONLY",
    "SHOWPLAN_ALL",
];

fn set_option(toks: &[Tok]) -> Result<SetOption, SqlError> {
    let w = words(toks);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let unknown =
        |name: &str| SqlError::new(195, 15, format!("'{name}' is not a recognized SET option."));
    match w.as_slice() {
        ["LOCK_TIMEOUT", n] => n
            .parse()
            .map(SetOption::LockTimeout)
            .map_err(|_| syntax_error(n)),
        ["LOCK_TIMEOUT", "-", n] => n
            .parse::<i64>()
            .map(|n| SetOption::LockTimeout(-n))
            .map_err(|_| syntax_error(n)),
        ["TRANSACTION", "ISOLATION", "LEVEL", level @ ..] => {
            let level = level.join(" ");
            match level.as_str() {
                "READ UNCOMMITTED" | "READ COMMITTED" => {
                    Ok(SetOption::Isolation("READ COMMITTED".into()))
                }
                "REPEATABLE READ" | "SNAPSHOT" => {
                    Ok(SetOption::Isolation("REPEATABLE READ".into()))
                }
                "SERIALIZABLE" => Ok(SetOption::Isolation("SERIALIZABLE".into())),
                _ => Err(syntax_error(&level)),
            }
        }
        [
            "TEXTSIZE" | "DATEFIRST" | "ROWCOUNT" | "QUERY_GOVERNOR_COST_LIMIT",
            n,
        ] => {
            if w[0] == "ROWCOUNT" && *n != "0" {
                return Err(not_supported("SET ROWCOUNT"));
            }
            n.parse::<i64>()
                .map(|_| SetOption::Accepted)
                .map_err(|_| syntax_error(n))
        }
        ["TEXTSIZE", "-", _] => Ok(SetOption::Accepted),
        ["DATEFORMAT", f]
            if matches!(
                f.to_ascii_lowercase().as_str(),
                "mdy" | "dmy" | "ymd" | "ydm" | "myd" | "dym"
            ) =>
        {
            Ok(SetOption::Accepted)
        }
        ["LANGUAGE", _] | ["DEADLOCK_PRIORITY", _] => Ok(SetOption::Accepted),
        [.., on_off @ ("ON" | "OFF")] if w.len() >= 2 => {
            let on = *on_off == "ON";
            let names: Vec<&str> = w[..w.len() - 1]
                .iter()
                .copied()
                .filter(|n| *n != ",")
                .collect();
            let mut result = SetOption::Accepted;
            for name in &names {
                let name = if *name == "STATISTICS" {
                    "STATISTICS"
                } else {
                    name
                };
                if !ON_OFF_OPTIONS.contains(&name)
                    && !matches!(name, "IO" | "TIME" | "XML" | "PROFILE")
                {
                    return Err(unknown(name));
                }
                match name {
                    "NOCOUNT" => result = SetOption::NoCount(on),
                    "XACT_ABORT" => result = SetOption::XactAbort(on),
                    "IMPLICIT_TRANSACTIONS"
                    | "FMTONLY"
                    | "NOEXEC"
                    | "PARSEONLY"
                    | "SHOWPLAN_ALL"
                        if on =>
                    {
                        return Err(not_supported(&format!("SET {name} ON")));
                    }
                    _ => {}
                }
            }
            if names.len() > 1 && !matches!(result, SetOption::Accepted) {
                return Err(not_supported("SET NOCOUNT/XACT_ABORT in a list"));
            }
            Ok(result)
        }
        [name, ..] => Err(unknown(name)),
        [] => Err(syntax_error("SET")),
    }
}

/// Tables a query names (lower case), for loading their recorded column types.
pub fn referenced_tables(toks: &[Tok]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let Some(w) = t.word() else { continue };
        if matches!(w.as_str(), "FROM" | "JOIN" | "INTO" | "UPDATE" | "DELETE") {
            let mut j = i + 1;
            let mut last = None;
            while let Some(Tok::Word(n) | Tok::Quoted(n)) = toks.get(j) {
                last = Some(n.to_lowercase());
                if toks.get(j + 1).is_some_and(|t| t.is_op(".")) {
                    j += 2;
                } else {
                    break;
                }
            }
            if let Some(name) = last {
                if name == "columns" {
                    out.push("tsql_sys_columns".to_owned());
                }
                out.push(match name.as_str() {
                    "columns" => "tsql_information_schema_columns".to_owned(),
                    "indexes" | "index_columns" | "tables" | "databases" => {
                        format!("tsql_sys_{name}")
                    }
                    _ => name,
                });
            }
        }
    }
    // Tables after a comma in a FROM list.
    let mut in_from = false;
    for (i, t) in toks.iter().enumerate() {
        if t.is_word("FROM") {
            in_from = true;
        } else if t
            .word()
            .is_some_and(|w| matches!(w.as_str(), "WHERE" | "GROUP" | "ORDER" | "HAVING"))
        {
            in_from = false;
        } else if in_from
            && t.is_op(",")
            && let Some(Tok::Word(n) | Tok::Quoted(n)) = toks.get(i + 1)
        {
            out.push(n.to_lowercase());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// UPDLOCK/XLOCK (with or without HOLDLOCK): `SHARE ROW EXCLUSIVE`, which conflicts with
    /// itself and with writers, not with readers.
    Update,
    /// HOLDLOCK/SERIALIZABLE alone: `SHARE`, which conflicts with writers.
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Select,
    Insert,
    Update,
    Delete,
}

impl Kind {
    pub fn verb(self) -> &'static str {
        match self {
            Kind::Select => "SELECT",
            Kind::Insert => "INSERT",
            Kind::Update => "UPDATE",
            Kind::Delete => "DELETE",
        }
    }
}

/// A query translated for PostgreSQL.
#[derive(Debug, Clone)]
pub struct Translated {
    pub sql: String,
    /// Indexes into the request's parameters, in `$1, $2…` order.
    pub binds: Vec<usize>,
    pub kind: Kind,
    /// The table an INSERT/UPDATE/DELETE writes (lower case).
    pub target: Option<String>,
    pub locks: Vec<(String, LockMode)>,
    /// The SQL Server type of each result column, where the translation knows it.
    pub types: Vec<Option<SqlType>>,
    /// The last result column is the IDENTITY value, for `SCOPE_IDENTITY()`, not for the client.
    pub hidden_identity: bool,
}

/// What a translation may use of the session's state.
pub struct Translator<'a> {
    pub params: &'a [Param],
    pub scope_identity: Option<i128>,
    pub trancount: u32,
    pub spid: i32,
    pub rowcount: i64,
    pub error: u32,
    pub database: &'a str,
    pub min_active: Option<[u8; 8]>,
    pub meta: &'a HashMap<String, Vec<ColumnMeta>>,
    // Collected while translating.
    binds: Vec<usize>,
    locks: Vec<(String, LockMode)>,
    tables: Vec<(String, Option<String>)>,
}

pub const VERSION: &str = "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) (mamut-sim: a test stand-in on PostgreSQL, not SQL Server)";
pub const PRODUCT_VERSION: &str = "16.0.1000.6";

const KEYWORDS: [&str; 58] = [
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "IN",
    "BETWEEN",
    "EXISTS",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "GROUP",
    "HAVING",
    "AS",
    "ON",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "OUTER",
    "FULL",
    "CROSS",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "UNION",
    "ALL",
    "EXCEPT",
    "INTERSECT",
    "DEFAULT",
    "OFFSET",
    "FETCH",
    "NEXT",
    "ROWS",
    "ROW",
    "ONLY",
    "ANY",
    "SOME",
    "FIRST",
    "LIKE",
    "ESCAPE",
    "TOP",
    "WITH",
    "OUTPUT",
    "OPTION",
];

fn is_keyword(w: &str) -> bool {
    KEYWORDS.contains(&w)
}

const HINTS: [&str; 16] = [
    "UPDLOCK",
    "HOLDLOCK",
    "SERIALIZABLE",
    "XLOCK",
    "ROWLOCK",
    "PAGLOCK",
    "TABLOCK",
    "TABLOCKX",
    "NOLOCK",
    "READUNCOMMITTED",
    "READCOMMITTED",
    "READCOMMITTEDLOCK",
    "REPEATABLEREAD",
    "READPAST",
    "NOWAIT",
    "INDEX",
];

impl<'a> Translator<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        params: &'a [Param],
        scope_identity: Option<i128>,
        trancount: u32,
        spid: i32,
        rowcount: i64,
        error: u32,
        database: &'a str,
        min_active: Option<[u8; 8]>,
        meta: &'a HashMap<String, Vec<ColumnMeta>>,
    ) -> Self {
        Self {
            params,
            scope_identity,
            trancount,
            spid,
            rowcount,
            error,
            database,
            min_active,
            meta,
            binds: Vec::new(),
            locks: Vec::new(),
            tables: Vec::new(),
        }
    }

    /// Translates a SELECT/INSERT/UPDATE/DELETE.
    pub fn query(&mut self, toks: &[Tok]) -> Result<Translated, SqlError> {
        self.binds.clear();
        self.locks.clear();
        self.tables.clear();
        let verb = toks.first().and_then(Tok::word).unwrap_or_default();
        let (sql, kind, target, types, hidden_identity) = match verb.as_str() {
            "SELECT" => {
                let (sql, types) = self.select(toks)?;
                (sql, Kind::Select, None, types, false)
            }
            "INSERT" => self.insert(toks)?,
            "UPDATE" => self.update(toks)?,
            "DELETE" => self.delete(toks)?,
            other => return Err(not_supported(other)),
        };
        Ok(Translated {
            sql,
            binds: std::mem::take(&mut self.binds),
            kind,
            target,
            locks: std::mem::take(&mut self.locks),
            types,
            hidden_identity,
        })
    }

    /// `SELECT [DISTINCT] [TOP (n)] list [FROM …]`; TOP becomes LIMIT.
    fn select(&mut self, toks: &[Tok]) -> Result<(String, Vec<Option<SqlType>>), SqlError> {
        let mut i = 1;
        let mut head = String::from("SELECT ");
        if toks.get(i).is_some_and(|t| t.is_word("DISTINCT")) {
            head.push_str("DISTINCT ");
            i += 1;
        }
        let mut limit = None;
        if toks.get(i).is_some_and(|t| t.is_word("TOP")) {
            i += 1;
            let value = if toks.get(i).is_some_and(|t| t.is_op("(")) {
                let end = matching(toks, i).ok_or_else(|| syntax_error("TOP"))?;
                let inner = &toks[i + 1..end];
                i = end + 1;
                self.expr(inner)?
            } else {
                let v = toks.get(i).ok_or_else(|| syntax_error("TOP"))?;
                i += 1;
                self.expr(std::slice::from_ref(v))?
            };
            if toks
                .get(i)
                .is_some_and(|t| t.is_word("PERCENT") || t.is_word("WITH"))
            {
                return Err(not_supported("TOP … PERCENT/WITH TIES"));
            }
            limit = Some(value);
        }
        // The select list ends at the top-level FROM.
        let mut depth = 0;
        let mut end = toks.len();
        for (j, t) in toks.iter().enumerate().skip(i) {
            if t.is_op("(") {
                depth += 1;
            } else if t.is_op(")") {
                depth -= 1;
            } else if depth == 0
                && t.word().is_some_and(|w| {
                    matches!(
                        w.as_str(),
                        "FROM"
                            | "WHERE"
                            | "ORDER"
                            | "GROUP"
                            | "UNION"
                            | "EXCEPT"
                            | "INTERSECT"
                            | "INTO"
                    )
                })
            {
                end = j;
                break;
            }
        }
        if toks.get(end).is_some_and(|t| t.is_word("INTO")) {
            return Err(not_supported("SELECT … INTO"));
        }
        // Tables first, so the select list's columns can be typed.
        let rest = self.expr(&toks[end..])?;
        let list = &toks[i..end];
        if list.is_empty() {
            return Err(syntax_error(
                &toks.get(end).map(Tok::text).unwrap_or_default(),
            ));
        }
        let items = split_commas(list);
        let star = |it: &[Tok]| match it {
            [t] => t.is_op("*"),
            [_, dot, t] => dot.is_op(".") && t.is_op("*"),
            _ => false,
        };
        let types = if items.iter().any(|it| star(it)) {
            Vec::new()
        } else {
            items.iter().map(|it| self.item_type(it, None)).collect()
        };
        let list_sql = self.expr(list)?;
        let mut sql = format!("{head}{list_sql} {rest}").trim_end().to_owned();
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        Ok((sql, types))
    }

    fn table_name(&mut self, toks: &[Tok], i: &mut usize) -> Result<String, SqlError> {
        let mut parts = dotted_name(toks, i)?;
        let name = parts.pop().unwrap_or_default().to_lowercase();
        let schema = parts.pop().map(|s| s.to_lowercase());
        let db = parts.pop();
        if let Some(db) = db
            && !db.eq_ignore_ascii_case(self.database)
        {
            return Err(SqlError::new(
                208,
                16,
                format!(
                    "Invalid object name '{db}.{}.{name}'.",
                    schema.clone().unwrap_or_default()
                ),
            ));
        }
        let pg = match schema.as_deref() {
            None | Some("dbo") | Some("") => name.clone(),
            Some("information_schema") if name == "columns" => {
                "tsql_information_schema_columns".into()
            }
            Some("sys")
                if matches!(
                    name.as_str(),
                    "indexes" | "index_columns" | "columns" | "tables" | "databases"
                ) =>
            {
                format!("tsql_sys_{name}")
            }
            Some(other) => {
                return Err(SqlError::new(
                    208,
                    16,
                    format!("Invalid object name '{other}.{name}'."),
                ));
            }
        };
        Ok(pg)
    }

    /// A table reference at `toks[*i]` (after FROM/JOIN/INTO/UPDATE/a FROM-list comma): its
    /// name, optional alias and table hints (recorded as locks).
    fn table_ref(&mut self, toks: &[Tok], i: &mut usize, out: &mut String) -> Result<(), SqlError> {
        let name = self.table_name(toks, i)?;
        out.push_str(&ident(&name));
        let mut alias = None;
        if toks.get(*i).is_some_and(|t| t.is_word("AS")) {
            *i += 1;
        }
        if let Some(Tok::Word(a) | Tok::Quoted(a)) = toks.get(*i)
            && (matches!(toks[*i], Tok::Quoted(_)) || !is_keyword(&a.to_ascii_uppercase()))
            && !matches!(
                a.to_ascii_uppercase().as_str(),
                "SET"
                    | "WHERE"
                    | "OUTPUT"
                    | "VALUES"
                    | "INNER"
                    | "LEFT"
                    | "RIGHT"
                    | "JOIN"
                    | "ON"
                    | "CROSS"
                    | "FULL"
                    | "GROUP"
                    | "ORDER"
            )
        {
            alias = Some(a.to_lowercase());
            out.push(' ');
            out.push_str(&ident(a));
            *i += 1;
        }
        // Table hints: WITH (UPDLOCK, HOLDLOCK, …), or the old form without WITH.
        let with = toks.get(*i).is_some_and(|t| t.is_word("WITH"));
        let open = if with { *i + 1 } else { *i };
        let hinted = toks.get(open).is_some_and(|t| t.is_op("("))
            && toks
                .get(open + 1)
                .and_then(Tok::word)
                .is_some_and(|w| HINTS.contains(&w.as_str()));
        if hinted {
            let end = matching(toks, open).ok_or_else(|| syntax_error("WITH"))?;
            let hints: Vec<String> = toks[open + 1..end].iter().filter_map(Tok::word).collect();
            for h in &hints {
                if !HINTS.contains(&h.as_str()) {
                    return Err(SqlError::new(
                        321,
                        15,
                        format!("\"{h}\" is not a recognized table hints option."),
                    ));
                }
            }
            let has = |h: &str| hints.iter().any(|x| x == h);
            if has("NOWAIT") || has("READPAST") || has("INDEX") || has("TABLOCKX") {
                return Err(not_supported("NOWAIT/READPAST/INDEX/TABLOCKX hints"));
            }
            if has("UPDLOCK") || has("XLOCK") {
                self.locks.push((name.clone(), LockMode::Update));
            } else if has("HOLDLOCK") || has("SERIALIZABLE") {
                self.locks.push((name.clone(), LockMode::Hold));
            }
            *i = end + 1;
        }
        self.tables.push((name, alias));
        Ok(())
    }

    /// INSERT [INTO] t [(cols)] [OUTPUT INSERTED.x, …] VALUES … | SELECT … | DEFAULT VALUES
    fn insert(&mut self, toks: &[Tok]) -> Result<Dml, SqlError> {
        let mut i = 1;
        if toks.get(i).is_some_and(|t| t.is_word("INTO")) {
            i += 1;
        }
        let mut sql = String::from("INSERT INTO ");
        self.table_ref(toks, &mut i, &mut sql)?;
        let target = self
            .tables
            .last()
            .map(|(t, _)| t.clone())
            .unwrap_or_default();
        if toks.get(i).is_some_and(|t| t.is_op("(")) {
            let end = matching(toks, i).ok_or_else(|| syntax_error("("))?;
            sql.push_str(&format!(" ({})", self.expr(&toks[i + 1..end])?));
            i = end + 1;
        }
        let mut output = None;
        if toks.get(i).is_some_and(|t| t.is_word("OUTPUT")) {
            let start = i + 1;
            let end =
                top_level_word(toks, start, &["VALUES", "SELECT", "DEFAULT"]).unwrap_or(toks.len());
            output = Some(&toks[start..end]);
            i = end;
        }
        let rest = &toks[i..];
        if rest.first().is_some_and(|t| t.is_word("SELECT")) {
            let (select, _) = self.select(rest)?;
            sql.push(' ');
            sql.push_str(&select);
        } else if rest
            .first()
            .is_some_and(|t| t.is_word("VALUES") || t.is_word("DEFAULT"))
        {
            sql.push(' ');
            sql.push_str(&self.expr(rest)?);
        } else {
            return Err(syntax_error(
                &rest.first().map(Tok::text).unwrap_or_default(),
            ));
        }
        let (returning, types, hidden) = self.returning(output, &target, Kind::Insert)?;
        sql.push_str(&returning);
        Ok((sql, Kind::Insert, Some(target), types, hidden))
    }

    /// UPDATE t [WITH (…)] SET … [OUTPUT INSERTED.x, …] [FROM …] [WHERE …]
    fn update(&mut self, toks: &[Tok]) -> Result<Dml, SqlError> {
        if toks.get(1).is_some_and(|t| t.is_word("TOP")) {
            return Err(not_supported("UPDATE TOP"));
        }
        let mut i = 1;
        let mut sql = String::from("UPDATE ");
        self.table_ref(toks, &mut i, &mut sql)?;
        let target = self
            .tables
            .last()
            .map(|(t, _)| t.clone())
            .unwrap_or_default();
        if !toks.get(i).is_some_and(|t| t.is_word("SET")) {
            return Err(syntax_error(
                &toks.get(i).map(Tok::text).unwrap_or_default(),
            ));
        }
        let set_end = top_level_word(toks, i + 1, &["OUTPUT", "FROM", "WHERE", "OPTION"])
            .unwrap_or(toks.len());
        // SET a = x: the assigned column is bare in PostgreSQL (no table qualifier).
        let mut set_sql = Vec::new();
        for assignment in split_commas(&toks[i + 1..set_end]) {
            let eq = assignment
                .iter()
                .position(|t| t.is_op("="))
                .ok_or_else(|| syntax_error("SET"))?;
            let column = match &assignment[..eq] {
                [Tok::Word(c) | Tok::Quoted(c)] => c.clone(),
                [_, dot, Tok::Word(c) | Tok::Quoted(c)] if dot.is_op(".") => c.clone(),
                _ => return Err(syntax_error("=")),
            };
            set_sql.push(format!(
                "{} = {}",
                ident(&column),
                self.expr(&assignment[eq + 1..])?
            ));
        }
        sql.push_str(&format!(" SET {}", set_sql.join(", ")));
        i = set_end;
        let mut output = None;
        if toks.get(i).is_some_and(|t| t.is_word("OUTPUT")) {
            let end =
                top_level_word(toks, i + 1, &["FROM", "WHERE", "OPTION"]).unwrap_or(toks.len());
            output = Some(&toks[i + 1..end]);
            i = end;
        }
        sql.push(' ');
        sql.push_str(&self.expr(&toks[i..])?);
        let (returning, types, hidden) = self.returning(output, &target, Kind::Update)?;
        sql.push_str(&returning);
        Ok((sql, Kind::Update, Some(target), types, hidden))
    }

    /// DELETE [FROM] t [OUTPUT DELETED.x, …] [WHERE …]
    fn delete(&mut self, toks: &[Tok]) -> Result<Dml, SqlError> {
        let mut i = 1;
        if toks.get(i).is_some_and(|t| t.is_word("TOP")) {
            return Err(not_supported("DELETE TOP"));
        }
        if toks.get(i).is_some_and(|t| t.is_word("FROM")) {
            i += 1;
        }
        let mut sql = String::from("DELETE FROM ");
        self.table_ref(toks, &mut i, &mut sql)?;
        let target = self
            .tables
            .last()
            .map(|(t, _)| t.clone())
            .unwrap_or_default();
        let mut output = None;
        if toks.get(i).is_some_and(|t| t.is_word("OUTPUT")) {
            let end = top_level_word(toks, i + 1, &["WHERE", "OPTION"]).unwrap_or(toks.len());
            output = Some(&toks[i + 1..end]);
            i = end;
        }
        if toks.get(i).is_some_and(|t| t.is_word("FROM")) {
            return Err(not_supported("DELETE … FROM … JOIN"));
        }
        sql.push(' ');
        sql.push_str(&self.expr(&toks[i..])?);
        let (returning, types, hidden) = self.returning(output, &target, Kind::Delete)?;
        sql.push_str(&returning);
        Ok((sql, Kind::Delete, Some(target), types, hidden))
    }

    /// The RETURNING clause for an OUTPUT list (`INSERTED.x` on INSERT/UPDATE, `DELETED.x` on
    /// DELETE), plus the IDENTITY column of an INSERT for SCOPE_IDENTITY().
    fn returning(
        &mut self,
        output: Option<&[Tok]>,
        target: &str,
        kind: Kind,
    ) -> Result<Returning, SqlError> {
        let insert = kind == Kind::Insert;
        let mut items = Vec::new();
        let mut types = Vec::new();
        if let Some(list) = output {
            if top_level_word(list, 0, &["INTO"]).is_some() {
                return Err(not_supported("OUTPUT … INTO"));
            }
            for item in split_commas(list) {
                let allowed = if kind == Kind::Delete {
                    "DELETED"
                } else {
                    "INSERTED"
                };
                let stripped: Vec<Tok> = match item {
                    [Tok::Word(p), dot, rest @ ..]
                        if dot.is_op(".") && p.eq_ignore_ascii_case(allowed) =>
                    {
                        rest.to_vec()
                    }
                    [Tok::Word(p), dot, ..] if dot.is_op(".") => {
                        return Err(not_supported(&format!("OUTPUT {p}.")));
                    }
                    _ => return Err(not_supported("OUTPUT without INSERTED./DELETED.")),
                };
                if stripped.iter().any(|t| t.is_op("*")) {
                    return Err(not_supported("OUTPUT INSERTED.*"));
                }
                types.push(self.item_type(&stripped, Some(target)));
                items.push(self.expr(&stripped)?);
            }
        }
        let identity = if insert {
            self.meta
                .get(target)
                .and_then(|cols| cols.iter().find(|c| c.identity))
                .map(|c| ident(&c.pg_name))
        } else {
            None
        };
        let hidden = identity.is_some();
        if let Some(identity) = identity {
            items.push(identity);
        }
        if items.is_empty() {
            return Ok((String::new(), types, false));
        }
        Ok((format!(" RETURNING {}", items.join(", ")), types, hidden))
    }

    fn param(&mut self, name: &str) -> Result<String, SqlError> {
        let index = self
            .params
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                SqlError::new(
                    137,
                    15,
                    format!("Must declare the scalar variable \"{name}\"."),
                )
            })?;
        let cast = match &self.params[index].value {
            Value::Null => return Ok("NULL".into()),
            Value::Int { width: 1 | 2, .. } | Value::Bit(_) => "int2",
            Value::Int { width: 4, .. } => "int4",
            Value::Int { .. } => "int8",
            Value::Float(_) => "float8",
            Value::Decimal(_) => "text",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytea",
            Value::DateTime(_) => "timestamp",
            Value::Date(_) => "date",
        };
        let n = match self.binds.iter().position(|&b| b == index) {
            Some(p) => p + 1,
            None => {
                self.binds.push(index);
                self.binds.len()
            }
        };
        Ok(if matches!(self.params[index].value, Value::Decimal(_)) {
            format!("(${n}::text)::numeric")
        } else {
            format!("${n}::{cast}")
        })
    }

    fn global(&self, name: &str) -> Result<String, SqlError> {
        Ok(match name {
            "TRANCOUNT" => self.trancount.to_string(),
            "SPID" => self.spid.to_string(),
            "ROWCOUNT" => format!("CAST({} AS int4)", self.rowcount),
            "ERROR" => self.error.to_string(),
            "VERSION" => lit(VERSION),
            "SERVERNAME" | "SERVICENAME" => lit("mamut-sim"),
            "LANGUAGE" => lit("us_english"),
            "MAX_PRECISION" => "CAST(38 AS int2)".into(),
            "TEXTSIZE" => "2147483647".into(),
            "DBTS" => "tsql_dbts()".into(),
            "IDENTITY" => self.scope_identity_sql(),
            other => {
                return Err(SqlError::new(
                    137,
                    15,
                    format!("Must declare the scalar variable \"@@{other}\"."),
                ));
            }
        })
    }

    fn scope_identity_sql(&self) -> String {
        match self.scope_identity {
            Some(v) => format!("CAST({v} AS numeric(38,0))"),
            None => "CAST(NULL AS numeric(38,0))".into(),
        }
    }

    /// Translates an expression or clause, token by token.
    pub fn expr(&mut self, toks: &[Tok]) -> Result<String, SqlError> {
        let mut out = String::new();
        let mut i = 0;
        let mut in_from = false;
        while i < toks.len() {
            let tok = &toks[i];
            let next_is_paren = toks.get(i + 1).is_some_and(|t| t.is_op("("));
            let piece = match tok {
                Tok::Word(w) => {
                    let upper = w.to_ascii_uppercase();
                    match upper.as_str() {
                        "FROM" | "JOIN" => {
                            in_from = upper == "FROM";
                            space(&mut out);
                            out.push_str(&upper);
                            out.push(' ');
                            i += 1;
                            if toks.get(i).is_some_and(|t| t.is_op("(")) {
                                continue;
                            }
                            self.table_ref(toks, &mut i, &mut out)?;
                            out.push(' ');
                            continue;
                        }
                        "WHERE" | "GROUP" | "ORDER" | "HAVING" | "UNION" | "EXCEPT"
                        | "INTERSECT" => {
                            in_from = false;
                            upper
                        }
                        "NOT" if toks.get(i + 1).is_some_and(|t| t.is_word("LIKE")) => {
                            i += 1;
                            "!~~~".into()
                        }
                        "LIKE" => "~~~".into(),
                        "ESCAPE" | "TOP" | "OPTION" | "COLLATE" | "OVER" | "PIVOT" | "UNPIVOT"
                        | "CONTAINS" | "FREETEXT" => {
                            return Err(not_supported(&upper));
                        }
                        "WITH" => return Err(not_supported("WITH")),
                        "SELECT" => {
                            // A UNION's next SELECT.
                            let end = toks.len();
                            let (sql, _) = self.select(&toks[i..end])?;
                            space(&mut out);
                            out.push_str(&sql);
                            return Ok(out);
                        }
                        _ if next_is_paren
                            && (!is_keyword(&upper)
                                || matches!(upper.as_str(), "LEFT" | "RIGHT")) =>
                        {
                            let end = matching(toks, i + 1).ok_or_else(|| syntax_error(w))?;
                            let args = &toks[i + 2..end];
                            let sql = self.function(&upper, args)?;
                            i = end + 1;
                            space(&mut out);
                            out.push_str(&sql);
                            out.push(' ');
                            continue;
                        }
                        _ if is_keyword(&upper) => upper,
                        _ => ident(w),
                    }
                }
                Tok::Quoted(q) => ident(q),
                Tok::Str { text, .. } => lit(text),
                Tok::Num(n) => n.clone(),
                Tok::Hex(b) => format!(
                    "'\\x{}'::bytea",
                    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                ),
                Tok::Var(v) => self.param(v)?,
                Tok::Global(g) => self.global(g)?,
                Tok::Op("(") => {
                    let end = matching(toks, i).ok_or_else(|| syntax_error("("))?;
                    let inner = &toks[i + 1..end];
                    let sql = if inner.first().is_some_and(|t| t.is_word("SELECT")) {
                        self.select(inner)?.0
                    } else {
                        self.expr(inner)?
                    };
                    i = end + 1;
                    if !out.ends_with('.') {
                        space(&mut out);
                    }
                    out.push('(');
                    out.push_str(&sql);
                    out.push_str(") ");
                    continue;
                }
                Tok::Op(",") if in_from => {
                    out.push_str(", ");
                    i += 1;
                    self.table_ref(toks, &mut i, &mut out)?;
                    out.push(' ');
                    continue;
                }
                Tok::Op("!<") => ">=".into(),
                Tok::Op("!>") => "<=".into(),
                Tok::Op(";") => return Err(syntax_error(";")),
                Tok::Op(o) => (*o).to_owned(),
            };
            // Qualified names stay together: a.b
            if out.ends_with('.') || piece == "." {
                out.push_str(&piece);
            } else {
                if !out.is_empty() && !out.ends_with(' ') && !out.ends_with('(') {
                    out.push(' ');
                }
                out.push_str(&piece);
            }
            i += 1;
        }
        Ok(out.trim_end().to_owned())
    }

    fn args(&mut self, args: &[Tok]) -> Result<Vec<String>, SqlError> {
        if args.is_empty() {
            return Ok(Vec::new());
        }
        split_commas(args)
            .into_iter()
            .map(|a| self.expr(a))
            .collect()
    }

    fn function(&mut self, name: &str, args: &[Tok]) -> Result<String, SqlError> {
        let argc = if args.is_empty() {
            0
        } else {
            split_commas(args).len()
        };
        let wrong = |n: &str| {
            SqlError::new(
                174,
                15,
                format!(
                    "The {} function requires {n} argument(s).",
                    name.to_lowercase()
                ),
            )
        };
        let simple = |pg: &str, this: &mut Self, counts: &[usize]| -> Result<String, SqlError> {
            if !counts.contains(&argc) {
                return Err(wrong(
                    &counts
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(" or "),
                ));
            }
            Ok(format!("{pg}({})", this.args(args)?.join(", ")))
        };
        match name {
            "COUNT" => Ok(format!("CAST(count({}) AS int4)", self.expr(args)?)),
            "COUNT_BIG" => Ok(format!("count({})", self.expr(args)?)),
            "SUM" => Ok(format!("tsql_sum({})", self.expr(args)?)),
            "MAX" | "MIN" | "AVG" => Ok(format!("{}({})", name.to_lowercase(), self.expr(args)?)),
            "ISNULL" => simple("coalesce", self, &[2]),
            "COALESCE" => Ok(format!("coalesce({})", self.args(args)?.join(", "))),
            "NULLIF" => simple("nullif", self, &[2]),
            "LEN" => {
                if argc != 1 {
                    return Err(wrong("1"));
                }
                Ok(format!(
                    "CAST(char_length(rtrim({})) AS int4)",
                    self.expr(args)?
                ))
            }
            // nvarchar is UTF-16 in SQL Server: two bytes a character (the stand-in counts a
            // character outside the BMP as one, SQL Server as two).
            "DATALENGTH" => match self.expr_type(args, None) {
                Some(SqlType::NVarChar(_)) => Ok(format!(
                    "CAST(char_length({}) * 2 AS int4)",
                    self.expr(args)?
                )),
                _ => Ok(format!("CAST(octet_length({}) AS int4)", self.expr(args)?)),
            },
            "UPPER" | "LOWER" | "LTRIM" | "RTRIM" | "ABS" | "FLOOR" | "LEFT" | "RIGHT" => {
                simple(&name.to_lowercase(), self, &[1, 2, 3])
            }
            "CEILING" => simple("ceiling", self, &[1]),
            // PostgreSQL cannot search substrings under the case-insensitive collation.
            "REPLACE" => {
                let a = self.args(args)?;
                match a.as_slice() {
                    [text, from, to] => {
                        Ok(format!("replace(({text}) COLLATE \"C\", {from}, {to})"))
                    }
                    _ => Err(wrong("3")),
                }
            }
            "ROUND" => simple("round", self, &[2]),
            "SUBSTRING" => simple("substr", self, &[3]),
            "CHARINDEX" => {
                let a = self.args(args)?;
                match a.as_slice() {
                    [needle, hay] => Ok(format!(
                        "CAST(strpos(lower({hay}) COLLATE \"C\", lower({needle}) COLLATE \"C\") AS int4)"
                    )),
                    _ => Err(wrong("2")),
                }
            }
            "GETDATE" | "SYSDATETIME" | "CURRENT_TIMESTAMP" => Ok("localtimestamp".into()),
            "GETUTCDATE" | "SYSUTCDATETIME" => Ok("(now() AT TIME ZONE 'UTC')".into()),
            "SCOPE_IDENTITY" => Ok(self.scope_identity_sql()),
            "MIN_ACTIVE_ROWVERSION" => match self.min_active {
                Some(b) => Ok(format!(
                    "'\\x{}'::bytea",
                    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                )),
                None => Ok("tsql_min_active_rowversion()".into()),
            },
            "DB_NAME" => Ok(lit(self.database)),
            "OBJECT_ID" => simple("tsql_object_id", self, &[1]),
            "COLUMNPROPERTY" => simple("tsql_columnproperty", self, &[3]),
            "SERVERPROPERTY" => {
                let arg = match args {
                    [Tok::Str { text, .. }] => text.to_ascii_lowercase(),
                    _ => return Err(wrong("1")),
                };
                Ok(match arg.as_str() {
                    "productversion" => lit(PRODUCT_VERSION),
                    "productlevel" => lit("RTM"),
                    "edition" => lit("Developer Edition (64-bit)"),
                    "engineedition" => "3".into(),
                    "servername" | "machinename" => lit("mamut-sim"),
                    "collation" => lit("Latin1_General_CI_AS"),
                    "instancename" => "NULL".into(),
                    _ => "NULL".into(),
                })
            }
            "CAST" => {
                let as_at = top_level_word(args, 0, &["AS"]).ok_or_else(|| syntax_error("CAST"))?;
                let value = self.expr(&args[..as_at])?;
                cast(&value, &args[as_at + 1..])
            }
            "CONVERT" => {
                let parts = split_commas(args);
                if parts.len() != 2 {
                    return Err(not_supported("CONVERT with a style"));
                }
                let value = self.expr(parts[1])?;
                cast(&value, parts[0])
            }
            "EXISTS" => Ok(format!("EXISTS ({})", self.select(args)?.0)),
            other => Err(SqlError::new(
                195,
                15,
                format!("'{other}' is not a recognized built-in function name."),
            )),
        }
    }

    /// The SQL Server type of one select-list or OUTPUT item, where it can be told from the
    /// text: a column, CAST/CONVERT, COUNT, MAX/MIN/SUM of a column, literals, functions.
    fn item_type(&self, item: &[Tok], target: Option<&str>) -> Option<SqlType> {
        let mut item = item;
        // Strip an alias: `expr AS name` or `expr name`.
        if item.len() >= 3 && item[item.len() - 2].is_word("AS") {
            item = &item[..item.len() - 2];
        } else if item.len() >= 2 {
            let last = &item[item.len() - 1];
            let prev = &item[item.len() - 2];
            let operand = |t: &Tok| {
                matches!(
                    t,
                    Tok::Word(_) | Tok::Quoted(_) | Tok::Num(_) | Tok::Str { .. } | Tok::Global(_)
                ) || t.is_op(")")
            };
            if matches!(last, Tok::Word(_) | Tok::Quoted(_)) && operand(prev) && !prev.is_op(".") {
                item = &item[..item.len() - 1];
            }
        }
        self.expr_type(item, target)
    }

    /// The SQL Server type of an expression, where it can be told from the text: what
    /// [`Self::operand_type`] knows, and `+ - * / %` over those with SQL Server's result types
    /// (data type precedence; decimal precision and scale as
    /// <https://learn.microsoft.com/en-us/sql/t-sql/data-types/precision-scale-and-length-transact-sql>
    /// gives them).
    fn expr_type(&self, item: &[Tok], target: Option<&str>) -> Option<SqlType> {
        if item.is_empty() {
            return None;
        }
        // Anything but arithmetic (CASE, comparisons, subqueries...) is left to PostgreSQL.
        let mut depth = 0;
        for t in item {
            if t.is_op("(") {
                depth += 1;
            } else if t.is_op(")") {
                depth -= 1;
            } else if depth == 0
                && (t.word().is_some_and(|w| is_keyword(&w))
                    || matches!(t, Tok::Op(o) if !matches!(*o, "+" | "-" | "*" | "/" | "%" | ".")))
            {
                return None;
            }
        }
        for ops in [&["+", "-"][..], &["*", "/", "%"][..]] {
            if let Some(at) = last_binary(item, ops) {
                let left = self.expr_type(&item[..at], target)?;
                let right = self.expr_type(&item[at + 1..], target)?;
                let op = match &item[at] {
                    Tok::Op(o) => *o,
                    _ => return None,
                };
                let literal = |side: &[Tok]| match side {
                    [Tok::Num(n)] => Some(n.trim_start_matches('0').len().max(1) as u8),
                    _ => None,
                };
                return arithmetic_type(
                    op,
                    (left, literal(&item[..at])),
                    (right, literal(&item[at + 1..])),
                );
            }
        }
        match item {
            [sign, rest @ ..] if sign.is_op("-") || sign.is_op("+") => self.expr_type(rest, target),
            [open, inner @ .., close]
                if open.is_op("(")
                    && close.is_op(")")
                    && matching(item, 0) == Some(item.len() - 1)
                    && !inner.first().is_some_and(|t| t.is_word("SELECT")) =>
            {
                self.expr_type(inner, target)
            }
            _ => self.operand_type(item, target),
        }
    }

    /// The SQL Server type of one operand: a column, a parameter (its declared type), a
    /// literal, CAST/CONVERT, COUNT, MAX/MIN/SUM of a typed expression, some functions.
    fn operand_type(&self, item: &[Tok], target: Option<&str>) -> Option<SqlType> {
        let call = |item: &[Tok]| -> Option<(String, std::ops::Range<usize>)> {
            let name = item.first()?.word()?;
            if item.get(1)?.is_op("(") && matching(item, 1) == Some(item.len() - 1) {
                Some((name, 2..item.len() - 1))
            } else {
                None
            }
        };
        if let Some((name, range)) = call(item) {
            let args = &item[range];
            return match name.as_str() {
                "CAST" => {
                    let at = top_level_word(args, 0, &["AS"])?;
                    cast_type(&args[at + 1..]).ok()
                }
                "CONVERT" => cast_type(split_commas(args).first()?).ok(),
                "COUNT" | "LEN" | "DATALENGTH" | "CHARINDEX" | "OBJECT_ID" | "COLUMNPROPERTY" => {
                    Some(SqlType::Int)
                }
                "COUNT_BIG" => Some(SqlType::BigInt),
                "MAX" | "MIN" => self.expr_type(args, target),
                "SUM" => match self.expr_type(args, target)? {
                    SqlType::TinyInt | SqlType::SmallInt | SqlType::Int => Some(SqlType::Int),
                    SqlType::BigInt => Some(SqlType::BigInt),
                    SqlType::Decimal { scale, .. } => Some(SqlType::Decimal {
                        precision: 38,
                        scale,
                    }),
                    other => Some(other),
                },
                "ISNULL" => self.expr_type(split_commas(args).first()?, target),
                "SCOPE_IDENTITY" => Some(SqlType::Decimal {
                    precision: 38,
                    scale: 0,
                }),
                "MIN_ACTIVE_ROWVERSION" => Some(SqlType::RowVersion),
                "DB_NAME" => Some(SqlType::NVarChar(Some(128))),
                "SERVERPROPERTY" => Some(SqlType::NVarChar(Some(128))),
                _ => None,
            };
        }
        match item {
            [Tok::Global(g)] => match g.as_str() {
                "DBTS" => Some(SqlType::RowVersion),
                "IDENTITY" => Some(SqlType::Decimal {
                    precision: 38,
                    scale: 0,
                }),
                "VERSION" => Some(SqlType::NVarChar(Some(300))),
                "SERVERNAME" | "SERVICENAME" | "LANGUAGE" => Some(SqlType::NVarChar(Some(128))),
                "MAX_PRECISION" => Some(SqlType::TinyInt),
                _ => Some(SqlType::Int),
            },
            [Tok::Num(n)] if !n.contains(['.', 'e', 'E']) => match n.parse::<i64>() {
                Ok(v) if i32::try_from(v).is_ok() => Some(SqlType::Int),
                // A larger integer constant is decimal(p, 0) in SQL Server.
                _ => Some(SqlType::Decimal {
                    precision: n.trim_start_matches('0').len().clamp(1, 38) as u8,
                    scale: 0,
                }),
            },
            // 2.50 is decimal(3, 2): every digit written counts, leading zeros do not.
            [Tok::Num(n)] if !n.contains(['e', 'E']) => {
                let (int, frac) = n.split_once('.').unwrap_or((n, ""));
                let int = int.trim_start_matches('0').len();
                let scale = frac.len().min(38);
                Some(SqlType::Decimal {
                    precision: (int + scale).clamp(1, 38).max(scale) as u8,
                    scale: scale as u8,
                })
            }
            [Tok::Num(_)] => Some(SqlType::Float),
            [Tok::Var(v)] => self
                .params
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(v))
                .and_then(|p| p.declared),
            [Tok::Str { text, national }] => {
                let n = text.chars().count().max(1) as u16;
                Some(if *national {
                    SqlType::NVarChar(Some(n.min(4000)))
                } else {
                    SqlType::VarChar(Some(n.min(8000)))
                })
            }
            [Tok::Word(c) | Tok::Quoted(c)] => self.column_type(None, c, target),
            [
                Tok::Word(q) | Tok::Quoted(q),
                dot,
                Tok::Word(c) | Tok::Quoted(c),
            ] if dot.is_op(".") => self.column_type(Some(q), c, target),
            _ => None,
        }
    }

    fn column_type(
        &self,
        qualifier: Option<&str>,
        column: &str,
        target: Option<&str>,
    ) -> Option<SqlType> {
        let column = column.to_lowercase();
        let tables: Vec<String> = match (target, qualifier) {
            (Some(t), _) => vec![t.to_owned()],
            (None, Some(q)) => {
                let q = q.to_lowercase();
                self.tables
                    .iter()
                    .filter(|(t, a)| *t == q || a.as_deref() == Some(q.as_str()))
                    .map(|(t, _)| t.clone())
                    .collect()
            }
            (None, None) => self.tables.iter().map(|(t, _)| t.clone()).collect(),
        };
        tables.iter().find_map(|t| {
            self.meta
                .get(t)?
                .iter()
                .find(|c| c.pg_name == column)
                .map(ColumnMeta::sql_type)
        })
    }
}

/// Position of the last top-level binary operator among `ops` (a `-` or `+` after an operator
/// or at the start is a sign).
fn last_binary(toks: &[Tok], ops: &[&str]) -> Option<usize> {
    let mut depth = 0;
    let mut found = None;
    for (i, t) in toks.iter().enumerate() {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        } else if depth == 0 && i > 0 && ops.iter().any(|o| t.is_op(o)) {
            let prev = &toks[i - 1];
            let operand_end = prev.is_op(")") || !matches!(prev, Tok::Op(_));
            if operand_end {
                found = Some(i);
            }
        }
    }
    found
}

/// A numeric type as decimal (precision, scale), as SQL Server converts it for decimal
/// arithmetic; an integer constant of n digits is decimal(n, 0).
fn as_decimal(ty: SqlType, literal_digits: Option<u8>) -> Option<(u32, u32)> {
    Some(match (ty, literal_digits) {
        (SqlType::Decimal { precision, scale }, _) => (u32::from(precision), u32::from(scale)),
        (SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt, Some(n)) => {
            (u32::from(n), 0)
        }
        (SqlType::TinyInt, None) => (3, 0),
        (SqlType::SmallInt, None) => (5, 0),
        (SqlType::Int, None) => (10, 0),
        (SqlType::BigInt, None) => (19, 0),
        (SqlType::Bit, _) => (1, 0),
        _ => return None,
    })
}

/// The result type of `left op right` in SQL Server; each side with its digit count when it
/// is an integer constant.
fn arithmetic_type(
    op: &str,
    (left, left_literal): (SqlType, Option<u8>),
    (right, right_literal): (SqlType, Option<u8>),
) -> Option<SqlType> {
    use SqlType::*;
    let text = |t: SqlType| match t {
        NVarChar(n) => Some((true, n)),
        VarChar(n) => Some((false, n)),
        _ => None,
    };
    if let (Some((wide_l, len_l)), Some((wide_r, len_r))) = (text(left), text(right)) {
        if op != "+" {
            return None;
        }
        let wide = wide_l || wide_r;
        let limit = if wide { 4000 } else { 8000 };
        let len = match (len_l, len_r) {
            (Some(a), Some(b)) if u32::from(a) + u32::from(b) <= limit => Some(a + b),
            _ => None,
        };
        return Some(if wide { NVarChar(len) } else { VarChar(len) });
    }
    let rank = |t: SqlType| match t {
        Bit => Some(0),
        TinyInt => Some(1),
        SmallInt => Some(2),
        Int => Some(3),
        BigInt => Some(4),
        Decimal { .. } => Some(5),
        Real => Some(6),
        Float => Some(7),
        _ => None,
    };
    let (l, r) = (rank(left)?, rank(right)?);
    let top = l.max(r);
    if top >= 6 {
        return Some(if top == 7 { Float } else { Real });
    }
    if top < 5 {
        // Integer arithmetic keeps the wider type; bit behaves as int.
        return Some(match if l >= r { left } else { right } {
            Bit => Int,
            t => t,
        });
    }
    let (p1, s1) = as_decimal(left, left_literal)?;
    let (p2, s2) = as_decimal(right, right_literal)?;
    let (precision, scale) = match op {
        "+" | "-" => {
            let scale = s1.max(s2);
            let integral = (p1 - s1).max(p2 - s2);
            let precision = scale + integral + 1;
            if precision > 38 {
                (38, scale.min(38u32.saturating_sub(integral + 1)))
            } else {
                (precision, scale)
            }
        }
        "*" | "/" => {
            let (precision, scale) = if op == "*" {
                (p1 + p2 + 1, s1 + s2)
            } else {
                let scale = 6.max(s1 + p2 + 1);
                (p1 - s1 + s2 + scale, scale)
            };
            if precision > 38 {
                let integral = precision - scale;
                let scale = if integral < 32 {
                    scale.min(38 - integral)
                } else if scale < 6 {
                    scale
                } else {
                    6
                };
                (38, scale)
            } else {
                (precision, scale)
            }
        }
        "%" => {
            let scale = s1.max(s2);
            ((p1 - s1).min(p2 - s2) + scale, scale)
        }
        _ => return None,
    };
    Some(Decimal {
        precision: precision.clamp(1, 38) as u8,
        scale: scale.min(precision.clamp(1, 38)) as u8,
    })
}

fn space(out: &mut String) {
    if !out.is_empty() && !out.ends_with(' ') && !out.ends_with('(') {
        out.push(' ');
    }
}

/// Position of the first top-level word among `words`, from `start`.
pub fn top_level_word(toks: &[Tok], start: usize, words: &[&str]) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(start) {
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        } else if depth == 0 && t.word().is_some_and(|w| words.contains(&w.as_str())) {
            return Some(i);
        }
    }
    None
}

/// The PostgreSQL type and SQL Server type of a CAST/CONVERT target.
fn cast_parts(ty: &[Tok]) -> Result<(String, SqlType), SqlError> {
    let name = ty
        .first()
        .and_then(Tok::word)
        .ok_or_else(|| syntax_error("AS"))?;
    let args: Vec<Option<i64>> = if ty.get(1).is_some_and(|t| t.is_op("(")) {
        let end = matching(ty, 1).ok_or_else(|| syntax_error("("))?;
        if end + 1 != ty.len() {
            return Err(syntax_error(&ty[end + 1].text()));
        }
        split_commas(&ty[2..end])
            .iter()
            .map(|a| match a {
                [Tok::Num(n)] => n.parse().map(Some).map_err(|_| syntax_error(n)),
                [t] if t.is_word("MAX") => Ok(None),
                _ => Err(syntax_error("(")),
            })
            .collect::<Result<_, _>>()?
    } else {
        if ty.len() > 1 {
            return Err(syntax_error(&ty[1].text()));
        }
        Vec::new()
    };
    let len = |default: i64, limit: i64| match args.first() {
        None => Ok(Some(default)),
        Some(None) => Ok(None),
        Some(Some(n)) if *n >= 1 && *n <= limit => Ok(Some(*n)),
        Some(Some(n)) => Err(SqlError::new(
            131,
            15,
            format!(
                "The size ({n}) given to the type '{}' exceeds the maximum allowed for any data type ({limit}).",
                name.to_lowercase()
            ),
        )),
    };
    Ok(match name.as_str() {
        "INT" | "INTEGER" => ("int4".into(), SqlType::Int),
        "BIGINT" => ("int8".into(), SqlType::BigInt),
        "SMALLINT" => ("int2".into(), SqlType::SmallInt),
        "TINYINT" => ("int2".into(), SqlType::TinyInt),
        "BIT" => ("bit".into(), SqlType::Bit),
        "DECIMAL" | "NUMERIC" => {
            let p = args.first().copied().flatten().unwrap_or(18).clamp(1, 38);
            let s = args.get(1).copied().flatten().unwrap_or(0).clamp(0, p);
            (
                format!("numeric({p},{s})"),
                SqlType::Decimal {
                    precision: p as u8,
                    scale: s as u8,
                },
            )
        }
        "MONEY" => (
            "numeric(19,4)".into(),
            SqlType::Decimal {
                precision: 19,
                scale: 4,
            },
        ),
        "FLOAT" => ("float8".into(), SqlType::Float),
        "REAL" => ("float4".into(), SqlType::Real),
        "NVARCHAR" | "NCHAR" => match len(30, 4000)? {
            Some(n) => (format!("varchar({n})"), SqlType::NVarChar(Some(n as u16))),
            None => ("text".into(), SqlType::NVarChar(None)),
        },
        "VARCHAR" | "CHAR" => match len(30, 8000)? {
            Some(n) => (format!("varchar({n})"), SqlType::VarChar(Some(n as u16))),
            None => ("text".into(), SqlType::VarChar(None)),
        },
        "VARBINARY" => match len(30, 8000)? {
            Some(n) => ("bytea".into(), SqlType::VarBinary(Some(n as u16))),
            None => ("bytea".into(), SqlType::VarBinary(None)),
        },
        "BINARY" => (
            "bytea".into(),
            SqlType::Binary(len(30, 8000)?.unwrap_or(30) as u16),
        ),
        "ROWVERSION" | "TIMESTAMP" => ("bytea".into(), SqlType::RowVersion),
        "DATETIME2" => {
            let s = args.first().copied().flatten().unwrap_or(7).clamp(0, 7);
            (
                format!("timestamp({})", s.min(6)),
                SqlType::DateTime2(s as u8),
            )
        }
        "DATETIME" => ("timestamp(3)".into(), SqlType::DateTime2(3)),
        "DATE" => ("date".into(), SqlType::Date),
        other => {
            return Err(SqlError::new(
                243,
                16,
                format!("Type {other} is not a defined system type."),
            ));
        }
    })
}

fn cast_type(ty: &[Tok]) -> Result<SqlType, SqlError> {
    cast_parts(ty).map(|(_, t)| t)
}

fn cast(value: &str, ty: &[Tok]) -> Result<String, SqlError> {
    let (pg, sql_type) = cast_parts(ty)?;
    Ok(match sql_type {
        SqlType::Bit => format!(
            "CAST(CASE WHEN ({value}) IS NULL THEN NULL WHEN ({value}) <> 0 THEN 1 ELSE 0 END AS int2)"
        ),
        SqlType::Binary(n) | SqlType::VarBinary(Some(n)) if n == 8 => {
            format!("CAST({value} AS bytea)")
        }
        _ => format!("CAST({value} AS {pg})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_or_huge_statements_are_refused_not_recursed_into() {
        let nested = format!("SELECT {}1{}", "(".repeat(800), ")".repeat(800));
        let long = format!("SELECT 1{}", "+1".repeat(5_000));
        for sql in [nested, long] {
            match parse_batch(&sql) {
                Err(e) => assert_eq!(e.number, 191, "{}", e.message),
                Ok(_) => panic!("a statement of {} bytes was accepted", sql.len()),
            }
        }
        assert!(parse_batch(&format!("SELECT {}1{}", "(".repeat(60), ")".repeat(60))).is_ok());
    }

    fn translate(sql: &str, params: &[Param]) -> Translated {
        let meta = HashMap::new();
        let mut t = Translator::new(params, None, 0, 51, 0, 0, "mamut", None, &meta);
        match parse_batch(sql).expect("parses").pop() {
            Some(Statement::Query(toks)) => t.query(&toks).expect("translates"),
            other => panic!("expected a query, got {other:?}"),
        }
    }

    #[test]
    fn statements_are_split_without_semicolons() {
        let statements = parse_batch(
            "SET NOCOUNT ON SELECT 1 BEGIN TRAN INSERT INTO t (a) SELECT b FROM u UPDATE t SET a = 1 COMMIT",
        )
        .expect("parses");
        assert_eq!(statements.len(), 6, "{statements:?}");
        assert_eq!(statements[0], Statement::Set(SetOption::NoCount(true)));
        assert_eq!(statements[2], Statement::Begin);
        assert_eq!(statements[5], Statement::Commit);
        match &statements[3] {
            Statement::Query(t) => assert!(t.iter().any(|t| t.is_word("SELECT"))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn if_trancount_rollback_is_one_statement() {
        let statements = parse_batch("IF @@TRANCOUNT > 0 ROLLBACK").expect("parses");
        assert!(
            matches!(&statements[..], [Statement::If { body, .. }] if **body == Statement::Rollback)
        );
    }

    #[test]
    fn t_sql_constructs_become_postgresql() {
        let params = vec![Param::new("@P1", Value::Int { value: 5, width: 4 })];
        let t = translate(
            "SELECT TOP (1) a FROM dbo.t WITH (UPDLOCK, HOLDLOCK) WHERE b = @P1 ORDER BY a",
            &params,
        );
        assert_eq!(
            t.sql,
            "SELECT \"a\" FROM \"t\" WHERE \"b\" = $1::int4 ORDER BY \"a\" LIMIT 1"
        );
        assert_eq!(t.locks, vec![("t".to_owned(), LockMode::Update)]);
        let t = translate("SELECT COUNT(*), ISNULL(MAX(x), 0) + 1 FROM t", &[]);
        assert!(
            t.sql.starts_with("SELECT CAST(count(*) AS int4)"),
            "{}",
            t.sql
        );
        assert_eq!(t.types[0], Some(SqlType::Int));
        let t = translate("SELECT N'it''s' + 'x' AS s", &[]);
        assert_eq!(t.sql, "SELECT 'it''s' + 'x' AS \"s\"");
    }

    #[test]
    fn arithmetic_has_sql_server_result_types() {
        let dec = |precision, scale| Some(SqlType::Decimal { precision, scale });
        let t = translate(
            "SELECT 2147483647 / 2, 2147483649 / 2, 1.0 / 3, 2.50, 1 + 1, 'a' + 'bc', N'x' + 'y', 1e3 * 2",
            &[],
        );
        assert_eq!(
            t.types,
            vec![
                Some(SqlType::Int),
                // The example of SQL Server's int documentation: 1073741824.500000.
                dec(16, 6),
                dec(7, 6),
                dec(3, 2),
                Some(SqlType::Int),
                Some(SqlType::VarChar(Some(3))),
                Some(SqlType::NVarChar(Some(2))),
                Some(SqlType::Float),
            ]
        );
        let params = vec![Param {
            name: "@P1".into(),
            value: Value::Decimal("1.50".into()),
            declared: dec(5, 2),
        }];
        let t = translate("SELECT @P1, @P1 * @P1, -@P1 + 1", &params);
        assert_eq!(t.types, vec![dec(5, 2), dec(11, 4), dec(6, 2)]);
    }

    #[test]
    fn output_inserted_becomes_returning() {
        let params = vec![Param::new("@P1", Value::Text("A".into()))];
        let t = translate(
            "UPDATE s SET next_no = next_no + 1 OUTPUT INSERTED.next_no WHERE series = @P1",
            &params,
        );
        assert_eq!(
            t.sql,
            "UPDATE \"s\" SET \"next_no\" = \"next_no\" + 1 WHERE \"series\" = $1::text RETURNING \"next_no\""
        );
    }

    #[test]
    fn anything_outside_the_subset_is_refused() {
        for sql in [
            "DECLARE @x INT",
            "SELECT foo(1)",
            "MERGE t USING u ON 1 = 1",
            "SELECT @x",
        ] {
            let meta = HashMap::new();
            let result = parse_batch(sql).and_then(|mut s| match s.pop() {
                Some(Statement::Query(toks)) => {
                    Translator::new(&[], None, 0, 51, 0, 0, "mamut", None, &meta)
                        .query(&toks)
                        .map(|_| ())
                }
                _ => Ok(()),
            });
            assert!(result.is_err(), "{sql} was accepted");
        }
    }
}
