//! The T-SQL subset the agent writes, turned into SQLite. This is the one place that defines
//! the subset (see `deploy/mamut/README.md`); anything outside it is passed through and fails
//! in SQLite with an error, rather than being guessed at.

use std::sync::LazyLock;

use regex::Regex;

use super::types::{DECIMAL_DECL, ROWVERSION_DECL};

/// One statement of a batch, after translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Rollback,
    /// `SET NOCOUNT ON` and friends: accepted, no effect.
    Ignored,
    /// SQLite SQL, and for a `CREATE TABLE` with a rowversion column, the triggers that
    /// emulate it.
    Sql {
        sql: String,
        rowversion: Option<(String, String)>,
    },
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in pattern {pattern:?} is invalid: {e}"))
}

/// A string literal or a line comment, whichever starts first.
static LITERAL_OR_COMMENT: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)N?'(?:[^']|'')*'|--[^\n]*"));
static BEGIN: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^BEGIN\s+TRAN(SACTION)?$"));
static COMMIT: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^COMMIT(\s+TRAN(SACTION)?)?$"));
static ROLLBACK: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^ROLLBACK(\s+TRAN(SACTION)?)?$"));
static SET_OPTION: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^SET\s+\w+\s+(ON|OFF)$"));
static TOP: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^(\s*SELECT\s+(?:DISTINCT\s+)?)TOP\s*\(?\s*(\d+|@\w+)\s*\)?\s*"));
static HINT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\bWITH\s*\(\s*(?:UPDLOCK|HOLDLOCK|ROWLOCK|NOLOCK|READPAST|XLOCK)(?:\s*,\s*\w+)*\s*\)")
});
static SCOPE_IDENTITY: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bSCOPE_IDENTITY\s*\(\s*\)"));
static NOW: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:SYSUTCDATETIME|GETUTCDATE)\s*\(\s*\)"));
static ISNULL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bISNULL\s*\("));
static LEN: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bLEN\s*\("));
static DECIMAL_PS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)"));
static DECIMAL_P: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*\)"));
static DECIMAL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(?:DECIMAL|NUMERIC)\b"));
static MAX_LENGTH: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\(\s*MAX\s*\)"));
static ROWVERSION: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bROWVERSION\b"));
static CREATE_TABLE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\["]?(\w+)[\]"]?"#));
static ROWVERSION_COLUMN: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)[\["]?(\w+)[\]"]?\s+ROWVERSION\b"#));

/// Splits a batch into statements and translates each.
pub fn translate(batch: &str) -> Vec<Statement> {
    // Comments go; string literals are set aside so nothing below rewrites their content.
    let mut literals = Vec::new();
    let code = LITERAL_OR_COMMENT.replace_all(batch, |caps: &regex::Captures<'_>| {
        if caps[0].starts_with("--") {
            return String::new();
        }
        let literal = caps[0]
            .strip_prefix(['N', 'n'])
            .unwrap_or(&caps[0])
            .to_owned();
        literals.push(literal);
        format!("\u{0}{}\u{0}", literals.len() - 1)
    });
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|statement| {
            let translated = translate_one(statement);
            restore(translated, &literals)
        })
        .collect()
}

fn translate_one(statement: &str) -> Statement {
    if BEGIN.is_match(statement) {
        return Statement::Begin;
    }
    if COMMIT.is_match(statement) {
        return Statement::Commit;
    }
    if ROLLBACK.is_match(statement) {
        return Statement::Rollback;
    }
    if SET_OPTION.is_match(statement) {
        return Statement::Ignored;
    }
    let rowversion = match (
        CREATE_TABLE.captures(statement),
        ROWVERSION_COLUMN.captures(statement),
    ) {
        (Some(table), Some(column)) => Some((table[1].to_owned(), column[1].to_owned())),
        _ => None,
    };
    let mut sql = statement.to_owned();
    let mut limit = None;
    if let Some(caps) = TOP.captures(&sql) {
        limit = Some(caps[2].to_owned());
        sql = TOP.replace(&sql, "$1").into_owned();
    }
    sql = HINT.replace_all(&sql, "").into_owned();
    sql = SCOPE_IDENTITY
        .replace_all(&sql, "last_insert_rowid()")
        .into_owned();
    sql = NOW
        .replace_all(&sql, "strftime('%Y-%m-%d %H:%M:%f','now')")
        .into_owned();
    sql = ISNULL.replace_all(&sql, "IFNULL(").into_owned();
    sql = LEN.replace_all(&sql, "LENGTH(").into_owned();
    sql = DECIMAL_PS
        .replace_all(&sql, format!("{DECIMAL_DECL}($1,$2)").as_str())
        .into_owned();
    sql = DECIMAL_P
        .replace_all(&sql, format!("{DECIMAL_DECL}($1,0)").as_str())
        .into_owned();
    sql = DECIMAL
        .replace_all(&sql, format!("{DECIMAL_DECL}(18,0)").as_str())
        .into_owned();
    sql = ROWVERSION.replace_all(&sql, ROWVERSION_DECL).into_owned();
    sql = MAX_LENGTH.replace_all(&sql, "(2147483647)").into_owned();
    if let Some(limit) = limit {
        sql = format!("{sql} LIMIT {limit}");
    }
    Statement::Sql { sql, rowversion }
}

fn restore(statement: Statement, literals: &[String]) -> Statement {
    let Statement::Sql { sql, rowversion } = statement else {
        return statement;
    };
    let mut out = String::with_capacity(sql.len());
    let mut parts = sql.split('\u{0}');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    while let (Some(index), Some(rest)) = (parts.next(), parts.next()) {
        out.push_str(
            index
                .parse::<usize>()
                .ok()
                .and_then(|i| literals.get(i))
                .map_or("''", String::as_str),
        );
        out.push_str(rest);
    }
    Statement::Sql {
        sql: out,
        rowversion,
    }
}

/// The triggers that give `table.column` SQL Server rowversion behaviour: a database-wide
/// counter, advanced on every insert and update of a row.
pub fn rowversion_triggers(table: &str, column: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS __rowversion (next INTEGER NOT NULL);
INSERT INTO __rowversion (next) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM __rowversion);
CREATE TRIGGER IF NOT EXISTS "{table}__rv_insert" AFTER INSERT ON "{table}" BEGIN
  UPDATE __rowversion SET next = next + 1;
  UPDATE "{table}" SET "{column}" = (SELECT next FROM __rowversion) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER IF NOT EXISTS "{table}__rv_update" AFTER UPDATE ON "{table}" WHEN NEW."{column}" IS OLD."{column}" BEGIN
  UPDATE __rowversion SET next = next + 1;
  UPDATE "{table}" SET "{column}" = (SELECT next FROM __rowversion) WHERE rowid = NEW.rowid;
END;"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(batch: &str) -> String {
        match translate(batch).pop() {
            Some(Statement::Sql { sql, .. }) => sql,
            other => panic!("expected SQL, got {other:?}"),
        }
    }

    #[test]
    fn transactions_and_options_are_recognised() {
        assert_eq!(
            translate("BEGIN TRAN; SET NOCOUNT ON; COMMIT TRANSACTION; rollback"),
            vec![
                Statement::Begin,
                Statement::Ignored,
                Statement::Commit,
                Statement::Rollback
            ]
        );
    }

    #[test]
    fn t_sql_constructs_become_sqlite() {
        assert_eq!(
            sql("SELECT TOP (1) a FROM t WITH (UPDLOCK, HOLDLOCK) WHERE b = @P1"),
            "SELECT a FROM t  WHERE b = @P1 LIMIT 1"
        );
        assert_eq!(sql("SELECT SCOPE_IDENTITY()"), "SELECT last_insert_rowid()");
        assert_eq!(
            sql("SELECT ISNULL(LEN(a), 0) FROM t"),
            "SELECT IFNULL(LENGTH(a), 0) FROM t"
        );
        assert_eq!(
            sql("CREATE TABLE t (p DECIMAL(19, 4))"),
            "CREATE TABLE t (p DECIMAL_TEXT(19,4))"
        );
    }

    #[test]
    fn string_literals_are_left_alone_and_lose_their_n_prefix() {
        assert_eq!(
            sql("SELECT N'TOP 1; it''s', 'ISNULL(' FROM t"),
            "SELECT 'TOP 1; it''s', 'ISNULL(' FROM t"
        );
    }

    #[test]
    fn the_reference_mamut_schema_is_in_the_subset() {
        let schema = include_str!("../../../deploy/mamut/schema.sql");
        let statements = translate(schema);
        assert!(statements.len() >= 8, "{statements:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        super::super::run_batch(&dir.path().join("m.sqlite"), schema)
            .expect("the reference schema runs");
    }

    #[test]
    fn a_rowversion_column_is_found() {
        match translate("CREATE TABLE [stock] (a INT, rv ROWVERSION)").pop() {
            Some(Statement::Sql { sql, rowversion }) => {
                assert_eq!(sql, "CREATE TABLE [stock] (a INT, rv ROWVERSION_INT)");
                assert_eq!(rowversion, Some(("stock".into(), "rv".into())));
            }
            other => panic!("{other:?}"),
        }
    }
}
