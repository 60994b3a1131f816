//! What the stand-in keeps in its PostgreSQL schema besides the tables: the SQL Server type of
//! every column (recorded at `CREATE TABLE`), the rowversion sequence and its advisory locks,
//! helper functions and aggregates, and the catalog views the agent queries
//! (`INFORMATION_SCHEMA.COLUMNS`, `sys.indexes`, `sys.index_columns`, `sys.columns`,
//! `sys.databases`).
//! `CREATE TABLE` and `CREATE INDEX` of the T-SQL subset are translated here.

use super::dialect::{self, Translator};
use super::exec::SqlError;
use super::lexer::{Tok, syntax_error};

/// A PostgreSQL identifier: T-SQL names are case-insensitive, so they are folded to lower case.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.to_lowercase().replace('"', "\"\""))
}

/// A PostgreSQL string literal.
pub fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A key that tells this schema's advisory locks from other stand-ins' in the same database.
pub fn schema_key(schema: &str) -> i32 {
    let mut hash: u32 = 2_166_136_261;
    for b in schema.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    (hash & 0x7FFF_FFFF) as i32
}

/// Objects shared by every stand-in schema of the database (casts are database-wide).
pub fn global_sql() -> String {
    r#"
SELECT pg_advisory_xact_lock(1297435988);
CREATE OR REPLACE FUNCTION public.tsql_binary_to_bigint(bytea) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT
  AS $f$ SELECT ('x' || right(lpad(encode($1, 'hex'), 16, '0'), 16))::bit(64)::bigint $f$;
DO $d$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_cast WHERE castsource = 'bytea'::regtype AND casttarget = 'int8'::regtype) THEN
    CREATE CAST (bytea AS bigint) WITH FUNCTION public.tsql_binary_to_bigint(bytea);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_cast WHERE castsource = 'int8'::regtype AND casttarget = 'bytea'::regtype) THEN
    CREATE CAST (bigint AS bytea) WITH FUNCTION int8send(bigint);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_cast WHERE castsource = 'int4'::regtype AND casttarget = 'bytea'::regtype) THEN
    CREATE CAST (integer AS bytea) WITH FUNCTION int4send(integer);
  END IF;
END $d$;
"#
    .to_owned()
}

/// A catalog view and its columns: name, SQL Server type, length.
type CatalogView = (
    &'static str,
    &'static [(&'static str, &'static str, Option<i32>)],
);

/// The schema's helper objects; idempotent.
pub fn setup_sql(schema: &str, database: &str) -> String {
    let s = ident(schema);
    let key = schema_key(schema);
    let db = lit(database);
    let nsp = lit(&schema.to_lowercase());
    let mut sql = format!(
        r#"
CREATE SCHEMA IF NOT EXISTS {s};
SET LOCAL search_path = {s};
CREATE COLLATION IF NOT EXISTS tsql_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE SEQUENCE IF NOT EXISTS tsql_rowversion START 1;
CREATE TABLE IF NOT EXISTS tsql_columns (
    table_name text NOT NULL,
    table_declared text NOT NULL,
    pg_column text NOT NULL,
    column_name text NOT NULL,
    ordinal int NOT NULL,
    data_type text NOT NULL,
    max_length int,
    num_precision int,
    num_scale int,
    nullable boolean NOT NULL,
    is_identity boolean NOT NULL,
    column_default text,
    catalog_view boolean NOT NULL DEFAULT false,
    PRIMARY KEY (table_name, pg_column)
);
CREATE OR REPLACE FUNCTION tsql_schema_key() RETURNS int LANGUAGE sql IMMUTABLE AS $f$ SELECT {key} $f$;
-- A rowversion is assigned at write time. A transaction's first one is also the key of a
-- transaction-level advisory lock, so MIN_ACTIVE_ROWVERSION() can see which transactions
-- that wrote have not committed yet. Assigning + locking (shared) and computing the minimum
-- (exclusive) are serialised by a short session-level advisory lock on key 0. SQL Server takes
-- no lock for either, so neither obeys the session's SET LOCK_TIMEOUT (`SET lock_timeout = 0`
-- for the function's duration: these waits are microseconds, never a 1222).
CREATE OR REPLACE FUNCTION tsql_next_rowversion() RETURNS bytea LANGUAGE plpgsql SET lock_timeout = 0 AS $f$
DECLARE v bigint;
BEGIN
  IF coalesce(current_setting('tsql.first_rowversion', true), '') = '' THEN
    PERFORM pg_advisory_lock_shared({key}, 0);
    v := nextval('{schema_raw}.tsql_rowversion');
    PERFORM pg_advisory_xact_lock({key}, v::int);
    PERFORM set_config('tsql.first_rowversion', v::text, true);
    PERFORM pg_advisory_unlock_shared({key}, 0);
  ELSE
    v := nextval('{schema_raw}.tsql_rowversion');
  END IF;
  RETURN int8send(v);
END $f$;
CREATE OR REPLACE FUNCTION tsql_min_active_rowversion() RETURNS bytea LANGUAGE plpgsql SET lock_timeout = 0 AS $f$
DECLARE m bigint; last bigint; called boolean;
BEGIN
  PERFORM pg_advisory_lock({key}, 0);
  SELECT min(objid::bigint) INTO m FROM pg_locks
   WHERE locktype = 'advisory' AND classid = {key}::oid AND objsubid = 2 AND objid::bigint > 0 AND granted;
  SELECT last_value, is_called INTO last, called FROM {s}.tsql_rowversion;
  PERFORM pg_advisory_unlock({key}, 0);
  IF m IS NULL THEN m := CASE WHEN called THEN last + 1 ELSE 1 END; END IF;
  RETURN int8send(m);
END $f$;
CREATE OR REPLACE FUNCTION tsql_dbts() RETURNS bytea LANGUAGE sql AS
  $f$ SELECT int8send(CASE WHEN is_called THEN last_value ELSE 0 END) FROM {s}.tsql_rowversion $f$;
CREATE OR REPLACE FUNCTION tsql_concat(text, text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $f$ SELECT $1 || $2 $f$;
CREATE OR REPLACE FUNCTION tsql_like(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE STRICT
  AS $f$ SELECT lower($1) COLLATE "C" LIKE lower($2) COLLATE "C" $f$;
CREATE OR REPLACE FUNCTION tsql_not_like(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE STRICT
  AS $f$ SELECT NOT (lower($1) COLLATE "C" LIKE lower($2) COLLATE "C") $f$;
DO $d$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_operator WHERE oprname = '+' AND oprnamespace = {nsp}::regnamespace) THEN
    CREATE OPERATOR {s}.+ (LEFTARG = text, RIGHTARG = text, FUNCTION = {s}.tsql_concat);
    CREATE OPERATOR {s}.~~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = {s}.tsql_like);
    CREATE OPERATOR {s}.!~~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = {s}.tsql_not_like);
  END IF;
END $d$;
{comparisons}
CREATE OR REPLACE FUNCTION tsql_sum_small(int4, int2) RETURNS int4 LANGUAGE sql IMMUTABLE
  AS $f$ SELECT CASE WHEN $2 IS NULL THEN $1 WHEN $1 IS NULL THEN $2::int4 ELSE $1 + $2 END $f$;
CREATE OR REPLACE AGGREGATE tsql_sum(int2) (sfunc = tsql_sum_small, stype = int4);
CREATE OR REPLACE AGGREGATE tsql_sum(int4) (sfunc = int4pl, stype = int4);
CREATE OR REPLACE AGGREGATE tsql_sum(int8) (sfunc = int8pl, stype = int8);
CREATE OR REPLACE AGGREGATE tsql_sum(numeric) (sfunc = numeric_add, stype = numeric);
CREATE OR REPLACE AGGREGATE tsql_sum(float8) (sfunc = float8pl, stype = float8);
CREATE OR REPLACE FUNCTION tsql_object_id(text) RETURNS int LANGUAGE plpgsql STABLE AS $f$
DECLARE parts text[]; n int;
BEGIN
  parts := string_to_array(replace(replace($1 COLLATE "C", '[', ''), ']', ''), '.');
  n := array_length(parts, 1);
  IF n IS NULL OR n > 3 OR (n >= 2 AND lower(parts[n - 1]) NOT IN ('dbo', '')) THEN RETURN NULL; END IF;
  IF n = 3 AND lower(parts[1]) <> lower({db}) THEN RETURN NULL; END IF;
  RETURN (SELECT c.oid::int FROM pg_class c WHERE c.relnamespace = {nsp}::regnamespace
           AND c.relname::text = lower(parts[n]) COLLATE "C" AND c.relkind IN ('r', 'v'));
END $f$;
CREATE OR REPLACE FUNCTION tsql_columnproperty(int, text, text) RETURNS int LANGUAGE sql STABLE AS $f$
  SELECT CASE lower($3) WHEN 'isidentity' THEN m.is_identity::int WHEN 'allowsnull' THEN m.nullable::int END
    FROM {s}.tsql_columns m JOIN pg_class c ON c.relname = m.table_name AND c.relnamespace = {nsp}::regnamespace
   WHERE c.oid = $1::oid AND lower(m.column_name) = lower($2) COLLATE "C" $f$;
CREATE OR REPLACE VIEW tsql_information_schema_columns AS SELECT
    {db}::text COLLATE tsql_ci AS table_catalog,
    'dbo'::text COLLATE tsql_ci AS table_schema,
    m.table_declared COLLATE tsql_ci AS table_name,
    m.column_name COLLATE tsql_ci AS column_name,
    m.ordinal AS ordinal_position,
    m.column_default AS column_default,
    (CASE WHEN m.nullable THEN 'YES' ELSE 'NO' END)::text AS is_nullable,
    m.data_type COLLATE tsql_ci AS data_type,
    CASE WHEN m.data_type IN ('nvarchar', 'varchar', 'varbinary', 'binary') THEN m.max_length END AS character_maximum_length,
    (CASE WHEN m.data_type IN ('tinyint', 'smallint', 'int', 'bigint', 'decimal', 'numeric', 'float', 'real', 'money') THEN m.num_precision END)::int2 AS numeric_precision,
    CASE WHEN m.data_type IN ('tinyint', 'smallint', 'int', 'bigint', 'decimal', 'numeric', 'money') THEN m.num_scale END AS numeric_scale,
    (CASE WHEN m.data_type IN ('datetime2', 'datetime', 'date') THEN m.num_scale END)::int2 AS datetime_precision
  FROM tsql_columns m WHERE NOT m.catalog_view;
CREATE OR REPLACE VIEW tsql_sys_tables AS SELECT c.oid::int AS object_id, c.relname::text COLLATE tsql_ci AS name
  FROM pg_class c WHERE c.relnamespace = {nsp}::regnamespace AND c.relkind = 'r' AND c.relname <> 'tsql_columns';
CREATE OR REPLACE VIEW tsql_sys_columns AS SELECT a.attrelid::int AS object_id, a.attnum::int AS column_id,
    coalesce(m.column_name, a.attname::text) COLLATE tsql_ci AS name
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN tsql_columns m ON m.table_name = c.relname AND m.pg_column = a.attname
  WHERE c.relnamespace = {nsp}::regnamespace AND a.attnum > 0 AND NOT a.attisdropped;
CREATE OR REPLACE VIEW tsql_sys_indexes AS SELECT i.indrelid::int AS object_id, i.indexrelid::int AS index_id,
    regexp_replace(c.relname::text, '^.*\$', '') COLLATE tsql_ci AS name,
    i.indisunique::int::int2 AS is_unique,
    (i.indisprimary OR coalesce(obj_description(i.indexrelid, 'pg_class'), '') = '{PRIMARY_KEY_INDEX}')::int::int2 AS is_primary_key
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  WHERE c.relnamespace = {nsp}::regnamespace AND i.indrelid <> '{s}.tsql_columns'::regclass;
CREATE OR REPLACE VIEW tsql_sys_index_columns AS SELECT i.indrelid::int AS object_id, i.indexrelid::int AS index_id,
    k.ord::int2 AS key_ordinal, k.attnum::int AS column_id, k.ord::int AS index_column_id
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
  WHERE c.relnamespace = {nsp}::regnamespace AND k.ord <= i.indnkeyatts;
-- The system databases and the stand-in's one. Its readers never wait for writers, as under
-- READ_COMMITTED_SNAPSHOT ON, so that is what it reports.
CREATE OR REPLACE VIEW tsql_sys_databases AS SELECT d.name COLLATE tsql_ci AS name, d.database_id,
    d.is_read_committed_snapshot_on
  FROM (VALUES ('master'::text, 1, 0::int2), ('tempdb', 2, 0::int2), ('model', 3, 0::int2),
               ('msdb', 4, 0::int2), ({db}, 5, 1::int2)) AS d(name, database_id, is_read_committed_snapshot_on);
"#,
        schema_raw = schema.to_lowercase().replace('\'', "''"),
        comparisons = comparison_sql(&s, &nsp),
        PRIMARY_KEY_INDEX = PRIMARY_KEY_INDEX,
    );
    // The catalog views' columns, typed as SQL Server types them.
    let views: [CatalogView; 6] = [
        (
            "tsql_information_schema_columns",
            &[
                ("TABLE_CATALOG", "nvarchar", Some(128)),
                ("TABLE_SCHEMA", "nvarchar", Some(128)),
                ("TABLE_NAME", "nvarchar", Some(128)),
                ("COLUMN_NAME", "nvarchar", Some(128)),
                ("ORDINAL_POSITION", "int", None),
                ("COLUMN_DEFAULT", "nvarchar", Some(4000)),
                ("IS_NULLABLE", "varchar", Some(3)),
                ("DATA_TYPE", "nvarchar", Some(128)),
                ("CHARACTER_MAXIMUM_LENGTH", "int", None),
                ("NUMERIC_PRECISION", "tinyint", None),
                ("NUMERIC_SCALE", "int", None),
                ("DATETIME_PRECISION", "smallint", None),
            ],
        ),
        (
            "tsql_sys_tables",
            &[("object_id", "int", None), ("name", "nvarchar", Some(128))],
        ),
        (
            "tsql_sys_columns",
            &[
                ("object_id", "int", None),
                ("column_id", "int", None),
                ("name", "nvarchar", Some(128)),
            ],
        ),
        (
            "tsql_sys_indexes",
            &[
                ("object_id", "int", None),
                ("index_id", "int", None),
                ("name", "nvarchar", Some(128)),
                ("is_unique", "bit", None),
                ("is_primary_key", "bit", None),
            ],
        ),
        (
            "tsql_sys_index_columns",
            &[
                ("object_id", "int", None),
                ("index_id", "int", None),
                ("key_ordinal", "tinyint", None),
                ("column_id", "int", None),
                ("index_column_id", "int", None),
            ],
        ),
        (
            "tsql_sys_databases",
            &[
                ("name", "nvarchar", Some(128)),
                ("database_id", "int", None),
                ("is_read_committed_snapshot_on", "bit", None),
            ],
        ),
    ];
    for (view, columns) in views {
        for (i, (name, ty, len)) in columns.iter().enumerate() {
            sql.push_str(&format!(
                "INSERT INTO tsql_columns (table_name, table_declared, pg_column, column_name, ordinal, data_type, max_length, nullable, is_identity, catalog_view) \
                 VALUES ({v}, {v}, {pc}, {n}, {o}, {t}, {l}, true, false, true) ON CONFLICT DO NOTHING;\n",
                v = lit(view),
                pc = lit(&name.to_lowercase()),
                n = lit(name),
                o = i + 1,
                t = lit(ty),
                l = len.map_or("NULL".to_owned(), |l| l.to_string()),
            ));
        }
    }
    sql
}

/// The comment on a unique index that stands for a PRIMARY KEY on text columns (PostgreSQL
/// primary keys take the default operator class only).
pub const PRIMARY_KEY_INDEX: &str = "tsql primary key";

/// The operator class text keys are indexed with: SQL Server's default collation, case-
/// insensitive and blind to trailing spaces.
pub const TEXT_OPS: &str = "tsql_text_ops";

/// Text comparisons as SQL Server's default collation makes them: case-insensitive and, as
/// ANSI/ISO SQL-92 pads the shorter string with spaces, blind to trailing spaces (`'a' = 'A '`).
/// The stand-in's schema comes before `pg_catalog` in every session's `search_path`, so these
/// `=`, `<>`, `<`, `<=`, `>`, `>=` on text win over PostgreSQL's wherever a translated query
/// compares text (columns, parameters, literals, `IN`, `CASE`, joins). Values are stored as
/// written. The btree operator class `tsql_text_ops` orders by the same rules; text key
/// columns of primary keys, unique constraints and indexes use it, so `'a'`, `'A'` and
/// `'a '` are duplicates and `col = @P1` is an index lookup. The functions are PL/pgSQL so the
/// planner cannot inline them away from the operator the index matches. (Creating an
/// operator class takes a PostgreSQL superuser, as the stand-in's role is here and in CI.)
fn comparison_sql(s: &str, nsp: &str) -> String {
    let fold = |arg: &str| format!("pg_catalog.rtrim({arg}) COLLATE {s}.tsql_ci");
    let mut sql = format!(
        "CREATE OR REPLACE FUNCTION tsql_text_cmp(a text, b text) RETURNS int LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE\n  \
         AS $f$ BEGIN RETURN pg_catalog.bttextcmp({}, {}); END $f$;\n",
        fold("a"),
        fold("b")
    );
    let ops = [
        ("eq", "=", "=", "<>", "eqsel", "eqjoinsel"),
        ("ne", "<>", "<>", "=", "neqsel", "neqjoinsel"),
        ("lt", "<", ">", ">=", "scalarltsel", "scalarltjoinsel"),
        ("le", "<=", ">=", ">", "scalarlesel", "scalarlejoinsel"),
        ("gt", ">", "<", "<=", "scalargtsel", "scalargtjoinsel"),
        ("ge", ">=", "<=", "<", "scalargesel", "scalargejoinsel"),
    ];
    let mut operators = String::new();
    for (name, op, commutator, negator, restrict, join) in ops {
        let body = match name {
            "eq" => format!("pg_catalog.texteq({}, {})", fold("a"), fold("b")),
            "ne" => format!("NOT pg_catalog.texteq({}, {})", fold("a"), fold("b")),
            _ => format!("{s}.tsql_text_cmp(a, b) OPERATOR(pg_catalog.{op}) 0"),
        };
        sql.push_str(&format!(
            "CREATE OR REPLACE FUNCTION tsql_text_{name}(a text, b text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE\n  \
             AS $f$ BEGIN RETURN {body}; END $f$;\n"
        ));
        operators.push_str(&format!(
            "    CREATE OPERATOR {s}.{op} (LEFTARG = text, RIGHTARG = text, FUNCTION = {s}.tsql_text_{name}, \
             COMMUTATOR = OPERATOR({s}.{commutator}), NEGATOR = OPERATOR({s}.{negator}), RESTRICT = {restrict}, JOIN = {join});\n"
        ));
    }
    sql.push_str(&format!(
        "DO $d$ BEGIN\n  \
         IF NOT EXISTS (SELECT 1 FROM pg_opclass WHERE opcname = '{TEXT_OPS}' AND opcnamespace = {nsp}::regnamespace) THEN\n\
         {operators}    \
         CREATE OPERATOR CLASS {s}.{TEXT_OPS} FOR TYPE text USING btree AS OPERATOR 1 {s}.<, OPERATOR 2 {s}.<=, \
         OPERATOR 3 {s}.=, OPERATOR 4 {s}.>=, OPERATOR 5 {s}.>, FUNCTION 1 {s}.tsql_text_cmp(text, text);\n  \
         END IF;\nEND $d$;"
    ));
    sql
}

/// One column of a table, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    pub table: String,
    pub name: String,
    pub pg_name: String,
    pub data_type: String,
    pub max_length: Option<i32>,
    pub precision: Option<i32>,
    pub scale: Option<i32>,
    pub nullable: bool,
    pub identity: bool,
}

impl ColumnMeta {
    pub fn sql_type(&self) -> super::types::SqlType {
        super::types::SqlType::from_recorded(
            &self.data_type,
            self.max_length,
            self.precision,
            self.scale,
        )
    }
}

/// The SELECT that reads recorded columns, `WHERE table_name = ANY($1)`.
pub const COLUMNS_SQL: &str = "SELECT table_name, column_name, pg_column, data_type, max_length, num_precision, num_scale, nullable, is_identity \
     FROM tsql_columns WHERE table_name OPERATOR(pg_catalog.=) ANY($1) ORDER BY table_name, ordinal";

/// A declared column type: the SQL Server spelling, length/precision/scale, the PostgreSQL
/// type, and what the table's trigger must check.
struct ColumnType {
    data_type: &'static str,
    max_length: Option<i32>,
    precision: Option<i32>,
    scale: Option<i32>,
    pg: String,
}

fn number(tok: Option<&Tok>) -> Result<i32, SqlError> {
    match tok {
        Some(Tok::Num(n)) => n.parse().map_err(|_| syntax_error(n)),
        Some(other) => Err(syntax_error(&other.text())),
        None => Err(syntax_error("")),
    }
}

/// Reads `TYPE [(n | MAX | p, s)]` at `toks[*i]`.
fn column_type(toks: &[Tok], i: &mut usize, schema: &str) -> Result<ColumnType, SqlError> {
    let name = toks
        .get(*i)
        .and_then(Tok::word)
        .ok_or_else(|| syntax_error(&toks.get(*i).map(Tok::text).unwrap_or_default()))?;
    *i += 1;
    let mut args: Vec<Option<i32>> = Vec::new(); // None = MAX
    if toks.get(*i).is_some_and(|t| t.is_op("(")) {
        *i += 1;
        loop {
            if toks.get(*i).is_some_and(|t| t.is_word("MAX")) {
                args.push(None);
            } else {
                args.push(Some(number(toks.get(*i))?));
            }
            *i += 1;
            match toks.get(*i) {
                Some(t) if t.is_op(",") => *i += 1,
                Some(t) if t.is_op(")") => {
                    *i += 1;
                    break;
                }
                other => return Err(syntax_error(&other.map(Tok::text).unwrap_or_default())),
            }
        }
    }
    let collate = format!(" COLLATE {}.tsql_ci", ident(schema));
    let int = |data_type, precision, pg: &str| ColumnType {
        data_type,
        max_length: None,
        precision: Some(precision),
        scale: Some(0),
        pg: pg.to_owned(),
    };
    let length = |default: i32| match args.first() {
        None => Some(default),
        Some(None) => Some(-1),
        Some(Some(n)) => Some(*n),
    };
    Ok(match name.as_str() {
        "TINYINT" => int("tinyint", 3, "int2"),
        "SMALLINT" => int("smallint", 5, "int2"),
        "INT" | "INTEGER" => int("int", 10, "int4"),
        "BIGINT" => int("bigint", 19, "int8"),
        "BIT" => ColumnType {
            data_type: "bit",
            max_length: None,
            precision: None,
            scale: None,
            pg: "int2".into(),
        },
        "DECIMAL" | "NUMERIC" | "DEC" => {
            let p = args.first().copied().flatten().unwrap_or(18);
            let s = args.get(1).copied().flatten().unwrap_or(0);
            if !(1..=38).contains(&p) || s < 0 || s > p {
                return Err(SqlError::new(
                    2750,
                    16,
                    format!(
                        "Column or parameter #1: Specified column precision {p} is greater than the maximum precision of 38."
                    ),
                ));
            }
            ColumnType {
                data_type: if name == "NUMERIC" {
                    "numeric"
                } else {
                    "decimal"
                },
                max_length: None,
                precision: Some(p),
                scale: Some(s),
                pg: format!("numeric({p},{s})"),
            }
        }
        "MONEY" => ColumnType {
            data_type: "money",
            max_length: None,
            precision: Some(19),
            scale: Some(4),
            pg: "numeric(19,4)".into(),
        },
        "FLOAT" => {
            let n = args.first().copied().flatten().unwrap_or(53);
            if n <= 24 {
                int("real", 24, "float4")
            } else {
                int("float", 53, "float8")
            }
        }
        "REAL" => int("real", 24, "float4"),
        "NVARCHAR" | "VARCHAR" => ColumnType {
            data_type: if name == "NVARCHAR" {
                "nvarchar"
            } else {
                "varchar"
            },
            max_length: length(1),
            precision: None,
            scale: None,
            pg: format!("text{collate}"),
        },
        "VARBINARY" | "BINARY" => ColumnType {
            data_type: if name == "BINARY" {
                "binary"
            } else {
                "varbinary"
            },
            max_length: length(1),
            precision: None,
            scale: None,
            pg: "bytea".into(),
        },
        "DATETIME2" => {
            let s = args.first().copied().flatten().unwrap_or(7);
            ColumnType {
                data_type: "datetime2",
                max_length: None,
                precision: None,
                scale: Some(s),
                pg: format!("timestamp({})", s.min(6)),
            }
        }
        "DATETIME" => ColumnType {
            data_type: "datetime",
            max_length: None,
            precision: None,
            scale: Some(3),
            pg: "timestamp(3)".into(),
        },
        "DATE" => ColumnType {
            data_type: "date",
            max_length: None,
            precision: None,
            scale: Some(0),
            pg: "date".into(),
        },
        "ROWVERSION" | "TIMESTAMP" => ColumnType {
            data_type: "timestamp",
            max_length: None,
            precision: None,
            scale: None,
            pg: "bytea".into(),
        },
        other => {
            return Err(SqlError::new(
                2715,
                16,
                format!(
                    "Column, parameter, or variable #1: Cannot find data type {other}. \
                     (The stand-in's T-SQL subset has tinyint, smallint, int, bigint, bit, decimal, numeric, money, float, real, nvarchar, varchar, varbinary, binary, datetime2, datetime, date, rowversion.)"
                ),
            ));
        }
    })
}

fn name_at(toks: &[Tok], i: &mut usize) -> Result<String, SqlError> {
    let mut parts = dialect::dotted_name(toks, i)?;
    let name = parts.pop().unwrap_or_default();
    if parts.len() > 2 || parts.last().is_some_and(|p| !p.eq_ignore_ascii_case("dbo")) {
        return Err(SqlError::new(
            2760,
            16,
            format!(
                "The specified schema name \"{}\" either does not exist or you do not have permission to use it.",
                parts.last().cloned().unwrap_or_default()
            ),
        ));
    }
    Ok(name)
}

/// `( a [ASC|DESC], b ... )`: the column names.
fn name_list(toks: &[Tok], i: &mut usize) -> Result<Vec<String>, SqlError> {
    if !toks.get(*i).is_some_and(|t| t.is_op("(")) {
        return Err(syntax_error(
            &toks.get(*i).map(Tok::text).unwrap_or_default(),
        ));
    }
    *i += 1;
    let mut names = Vec::new();
    loop {
        names.push(name_at(toks, i)?);
        while toks
            .get(*i)
            .is_some_and(|t| t.is_word("ASC") || t.is_word("DESC"))
        {
            *i += 1;
        }
        match toks.get(*i) {
            Some(t) if t.is_op(",") => *i += 1,
            Some(t) if t.is_op(")") => {
                *i += 1;
                return Ok(names);
            }
            other => return Err(syntax_error(&other.map(Tok::text).unwrap_or_default())),
        }
    }
}

/// The tokens of a parenthesised group starting at `toks[*i]` (without the parentheses).
fn group<'t>(toks: &'t [Tok], i: &mut usize) -> Result<&'t [Tok], SqlError> {
    let end = dialect::matching(toks, *i)
        .ok_or_else(|| syntax_error(&toks.get(*i).map(Tok::text).unwrap_or_default()))?;
    let inner = &toks[*i + 1..end];
    *i = end + 1;
    Ok(inner)
}

fn references(toks: &[Tok], i: &mut usize) -> Result<String, SqlError> {
    let table = name_at(toks, i)?;
    let mut sql = format!(" REFERENCES {}", ident(&table));
    if toks.get(*i).is_some_and(|t| t.is_op("(")) {
        let cols = name_list(toks, i)?;
        sql.push_str(&format!(
            " ({})",
            cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        ));
    }
    while toks.get(*i).is_some_and(|t| t.is_word("ON")) {
        let action: Vec<String> = toks[*i..].iter().take(4).filter_map(Tok::word).collect();
        let (len, text) = match action.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["ON", kind @ ("DELETE" | "UPDATE"), "CASCADE", ..] => {
                (3, format!(" ON {kind} CASCADE"))
            }
            ["ON", kind @ ("DELETE" | "UPDATE"), "NO", "ACTION"] => {
                (4, format!(" ON {kind} NO ACTION"))
            }
            ["ON", kind @ ("DELETE" | "UPDATE"), "SET", "NULL"] => {
                (4, format!(" ON {kind} SET NULL"))
            }
            ["ON", kind @ ("DELETE" | "UPDATE"), "SET", "DEFAULT"] => {
                (4, format!(" ON {kind} SET DEFAULT"))
            }
            _ => return Err(syntax_error("ON")),
        };
        *i += len;
        sql.push_str(&text);
    }
    Ok(sql)
}

/// `CREATE TABLE` (tokens after `CREATE TABLE`): the PostgreSQL statements that create the
/// table, its checking trigger and its recorded column types.
pub fn create_table(
    toks: &[Tok],
    tr: &mut Translator<'_>,
    schema: &str,
    database: &str,
) -> Result<String, SqlError> {
    let mut i = 0;
    let table = name_at(toks, &mut i)?;
    let t = table.to_lowercase();
    let body = group(toks, &mut i)?;
    if let Some(extra) = toks.get(i) {
        return Err(syntax_error(&extra.text()));
    }
    let mut defs = Vec::new();
    let mut meta = Vec::new();
    let mut checks = Vec::new();
    let mut table_checks = 0;
    // PRIMARY KEY and UNIQUE: (constraint name, primary, columns).
    let mut keys: Vec<(String, bool, Vec<String>)> = Vec::new();
    let mut text_columns = Vec::new();
    let full_name = format!("{database}.dbo.{table}");
    for (ordinal, item) in dialect::split_commas(body).into_iter().enumerate() {
        let mut j = 0;
        let mut constraint_name: Option<String> = None;
        let first = item.first().and_then(Tok::word).unwrap_or_default();
        if matches!(
            first.as_str(),
            "CONSTRAINT" | "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK"
        ) {
            if first == "CONSTRAINT" {
                j = 1;
                constraint_name = Some(name_at(item, &mut j)?);
            }
            let kind = item.get(j).and_then(Tok::word).unwrap_or_default();
            j += 1;
            let named = |default: String| ident_keep(&constraint_name.clone().unwrap_or(default));
            let def = match kind.as_str() {
                "PRIMARY" | "UNIQUE" => {
                    if kind == "PRIMARY" {
                        expect_word(item, &mut j, "KEY")?;
                    }
                    while item
                        .get(j)
                        .is_some_and(|t| t.is_word("CLUSTERED") || t.is_word("NONCLUSTERED"))
                    {
                        j += 1;
                    }
                    let cols = name_list(item, &mut j)?;
                    let name = if kind == "PRIMARY" {
                        named(format!("PK__{t}"))
                    } else {
                        named(format!("UQ__{t}__{}", cols.join("_")))
                    };
                    if let Some(extra) = item.get(j) {
                        return Err(syntax_error(&extra.text()));
                    }
                    keys.push((name, kind == "PRIMARY", cols));
                    continue;
                }
                "FOREIGN" => {
                    expect_word(item, &mut j, "KEY")?;
                    let cols = name_list(item, &mut j)?;
                    expect_word(item, &mut j, "REFERENCES")?;
                    let refs = references(item, &mut j)?;
                    format!(
                        "CONSTRAINT {} FOREIGN KEY ({}){refs}",
                        named(format!("FK__{t}__{}", cols.join("_"))),
                        cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
                    )
                }
                "CHECK" => {
                    table_checks += 1;
                    let inner = group(item, &mut j)?;
                    format!(
                        "CONSTRAINT {} CHECK ({})",
                        named(format!("CK__{t}__{table_checks}")),
                        tr.expr(inner)?
                    )
                }
                _ => return Err(syntax_error(&kind)),
            };
            if let Some(extra) = item.get(j) {
                return Err(syntax_error(&extra.text()));
            }
            defs.push(def);
            continue;
        }
        let column = name_at(item, &mut j)?;
        let c = ident(&column);
        let ty = column_type(item, &mut j, schema)?;
        if matches!(ty.data_type, "nvarchar" | "varchar") {
            text_columns.push(column.to_lowercase());
        }
        let rowversion = ty.data_type == "timestamp";
        let mut nullable = !rowversion;
        let mut identity = None;
        let mut default = None;
        let mut constraints = Vec::new();
        while j < item.len() {
            let word = item[j].word().unwrap_or_default();
            j += 1;
            match word.as_str() {
                "NULL" => nullable = true,
                "NOT" => {
                    expect_word(item, &mut j, "NULL")?;
                    nullable = false;
                }
                "CONSTRAINT" => constraint_name = Some(name_at(item, &mut j)?),
                "PRIMARY" | "UNIQUE" => {
                    if word == "PRIMARY" {
                        expect_word(item, &mut j, "KEY")?;
                        nullable = false;
                    }
                    while item.get(j).is_some_and(|t| {
                        t.is_word("CLUSTERED")
                            || t.is_word("NONCLUSTERED")
                            || t.is_word("ASC")
                            || t.is_word("DESC")
                    }) {
                        j += 1;
                    }
                    let default_name = if word == "PRIMARY" {
                        format!("PK__{t}")
                    } else {
                        format!("UQ__{t}__{}", column.to_lowercase())
                    };
                    let name = ident_keep(&constraint_name.take().unwrap_or(default_name));
                    keys.push((name, word == "PRIMARY", vec![column.clone()]));
                }
                "IDENTITY" => {
                    let (mut seed, mut step) = (1, 1);
                    if item.get(j).is_some_and(|t| t.is_op("(")) {
                        let inner = group(item, &mut j)?;
                        let parts = dialect::split_commas(inner);
                        let signed = |p: &[Tok]| -> Result<i64, SqlError> {
                            let text: String = p.iter().map(Tok::text).collect();
                            text.parse().map_err(|_| syntax_error(&text))
                        };
                        match parts.as_slice() {
                            [a, b] => {
                                seed = signed(a)?;
                                step = signed(b)?;
                            }
                            _ => return Err(syntax_error("IDENTITY")),
                        }
                    }
                    if !matches!(
                        ty.data_type,
                        "tinyint" | "smallint" | "int" | "bigint" | "decimal" | "numeric"
                    ) {
                        return Err(SqlError::new(
                            2749,
                            16,
                            format!(
                                "Identity column '{column}' must be of data type int, bigint, smallint, tinyint, or decimal or numeric with a scale of 0, and constrained to be nonnullable."
                            ),
                        ));
                    }
                    identity = Some((seed, step));
                    nullable = false;
                }
                "DEFAULT" => {
                    let start = j;
                    let mut depth = 0;
                    while j < item.len() {
                        if item[j].is_op("(") {
                            depth += 1;
                        } else if item[j].is_op(")") {
                            depth -= 1;
                        } else if depth == 0
                            && item[j].word().is_some_and(|w| {
                                matches!(
                                    w.as_str(),
                                    "NOT"
                                        | "NULL"
                                        | "PRIMARY"
                                        | "UNIQUE"
                                        | "CONSTRAINT"
                                        | "REFERENCES"
                                        | "CHECK"
                                        | "IDENTITY"
                                )
                            })
                        {
                            break;
                        }
                        j += 1;
                    }
                    let expr = &item[start..j];
                    if expr.is_empty() {
                        return Err(syntax_error("DEFAULT"));
                    }
                    let text: String = expr.iter().map(default_text).collect::<Vec<_>>().join("");
                    let shown = if matches!(expr, [Tok::Num(_)]) {
                        format!("(({text}))")
                    } else {
                        format!("({text})")
                    };
                    default = Some((tr.expr(expr)?, shown));
                }
                "REFERENCES" => {
                    let name = ident_keep(
                        &constraint_name
                            .take()
                            .unwrap_or(format!("FK__{t}__{}", column.to_lowercase())),
                    );
                    constraints.push(format!(" CONSTRAINT {name}{}", references(item, &mut j)?));
                }
                "CHECK" => {
                    let inner = group(item, &mut j)?;
                    let name = ident_keep(
                        &constraint_name
                            .take()
                            .unwrap_or(format!("CK__{t}__{}", column.to_lowercase())),
                    );
                    constraints.push(format!(" CONSTRAINT {name} CHECK ({})", tr.expr(inner)?));
                }
                _ => return Err(syntax_error(&item[j - 1].text())),
            }
        }
        let mut def = format!("{c} {}", ty.pg);
        if let Some((seed, step)) = identity {
            def.push_str(&format!(
                " GENERATED ALWAYS AS IDENTITY (START WITH {seed} INCREMENT BY {step})"
            ));
        }
        if !nullable {
            def.push_str(" NOT NULL");
        }
        if let Some((expr, _)) = &default {
            def.push_str(&format!(" DEFAULT {expr}"));
        }
        for constraint in &constraints {
            def.push_str(constraint);
        }
        defs.push(def);
        // What the trigger checks, as SQL Server refuses it.
        let message_table = full_name.replace('\'', "''");
        let message_column = column.replace('\'', "''");
        match (ty.data_type, ty.max_length) {
            ("nvarchar" | "varchar", Some(n)) if n > 0 => checks.push(format!(
                "IF char_length(NEW.{c}) > {n} THEN RAISE EXCEPTION USING ERRCODE = 'Z2628', MESSAGE = \
                 format('String or binary data would be truncated in table ''{message_table}'', column ''{message_column}''. Truncated value: ''%s''.', left(NEW.{c}, {n})); END IF;"
            )),
            ("varbinary" | "binary", Some(n)) if n > 0 => checks.push(format!(
                "IF octet_length(NEW.{c}) > {n} THEN RAISE EXCEPTION USING ERRCODE = 'Z2628', MESSAGE = \
                 'String or binary data would be truncated in table ''{message_table}'', column ''{message_column}''. Truncated value: ''''.'; END IF;"
            )),
            ("tinyint", _) => checks.push(format!(
                "IF NEW.{c} < 0 OR NEW.{c} > 255 THEN RAISE EXCEPTION USING ERRCODE = 'Z0220', MESSAGE = \
                 format('Arithmetic overflow error for data type tinyint, value = %s.', NEW.{c}); END IF;"
            )),
            ("bit", _) => checks.push(format!(
                "IF NEW.{c} IS NOT NULL AND NEW.{c} <> 0 THEN NEW.{c} := 1; END IF;"
            )),
            ("timestamp", _) => checks.push(format!(
                "IF TG_OP = 'INSERT' AND NEW.{c} IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = 'Z0273', MESSAGE = \
                 'Cannot insert an explicit value into a timestamp column. Use INSERT with a column list to exclude the timestamp column, or insert a DEFAULT into the timestamp column.'; END IF; \
                 IF TG_OP = 'UPDATE' AND NEW.{c} IS DISTINCT FROM OLD.{c} THEN RAISE EXCEPTION USING ERRCODE = 'Z0272', MESSAGE = 'Cannot update a timestamp column.'; END IF; \
                 NEW.{c} := {}.tsql_next_rowversion();",
                ident(schema)
            )),
            _ => {}
        }
        meta.push(format!(
            "INSERT INTO tsql_columns (table_name, table_declared, pg_column, column_name, ordinal, data_type, max_length, num_precision, num_scale, nullable, is_identity, column_default) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {});",
            lit(&t),
            lit(&table),
            lit(&column.to_lowercase()),
            lit(&column),
            ordinal + 1,
            lit(ty.data_type),
            opt(ty.max_length),
            opt(ty.precision),
            opt(ty.scale),
            nullable,
            identity.is_some(),
            default.map_or("NULL".to_owned(), |(_, shown)| lit(&shown)),
        ));
    }
    // A key on text columns is a unique index with the collation's operator class, which a
    // PostgreSQL constraint cannot have; its columns are NOT NULL as a primary key's are.
    let mut indexes = Vec::new();
    let mut key_columns = Vec::new();
    for (name, primary, cols) in keys {
        if primary {
            key_columns.extend(cols.iter().map(|c| lit(&c.to_lowercase())));
        }
        let is_text = |c: &String| text_columns.contains(&c.to_lowercase());
        let list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        if !cols.iter().any(is_text) {
            defs.push(format!(
                "CONSTRAINT {name} {} ({list})",
                if primary { "PRIMARY KEY" } else { "UNIQUE" }
            ));
            continue;
        }
        let keyed = cols
            .iter()
            .map(|c| key_column(c, is_text(c)))
            .collect::<Vec<_>>()
            .join(", ");
        indexes.push(format!(
            "CREATE UNIQUE INDEX {name} ON {} ({keyed});",
            ident(&table)
        ));
        if primary {
            for c in &cols {
                indexes.push(format!(
                    "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL;",
                    ident(&table),
                    ident(c)
                ));
            }
            indexes.push(format!(
                "COMMENT ON INDEX {name} IS {};",
                lit(PRIMARY_KEY_INDEX)
            ));
        }
    }
    let mut sql = format!("CREATE TABLE {} ({});\n", ident(&table), defs.join(", "));
    for index in &indexes {
        sql.push_str(index);
        sql.push('\n');
    }
    if !checks.is_empty() {
        let function = ident(&format!("tsql_check_{t}"));
        sql.push_str(&format!(
            "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN {} RETURN NEW; END $f$;\n\
             CREATE TRIGGER tsql_check BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {function}();\n",
            checks.join(" "),
            ident(&table)
        ));
    }
    sql.push_str(&meta.join("\n"));
    if !key_columns.is_empty() {
        // SQL Server makes primary key columns NOT NULL whatever they declare.
        sql.push_str(&format!(
            "\nUPDATE tsql_columns SET nullable = false WHERE table_name = {} AND pg_column IN ({});",
            lit(&t),
            key_columns.join(", ")
        ));
    }
    Ok(sql)
}

/// A key column of an index: text columns with the default collation's operator class.
fn key_column(column: &str, text: bool) -> String {
    if text {
        format!("{} {TEXT_OPS}", ident(column))
    } else {
        ident(column)
    }
}

fn default_text(tok: &Tok) -> String {
    match tok {
        Tok::Str { text, national } => format!(
            "{}'{}'",
            if *national { "N" } else { "" },
            text.replace('\'', "''")
        ),
        Tok::Word(w) => w.to_lowercase(),
        other => other.text(),
    }
}

fn opt(v: Option<i32>) -> String {
    v.map_or("NULL".to_owned(), |v| v.to_string())
}

/// A constraint or index name, case kept (it is only shown, never looked up by a client).
fn ident_keep(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn expect_word(toks: &[Tok], i: &mut usize, word: &str) -> Result<(), SqlError> {
    if toks.get(*i).is_some_and(|t| t.is_word(word)) {
        *i += 1;
        Ok(())
    } else {
        Err(syntax_error(
            &toks.get(*i).map(Tok::text).unwrap_or_default(),
        ))
    }
}

/// `CREATE [UNIQUE] [CLUSTERED|NONCLUSTERED] INDEX name ON t (cols) [INCLUDE (cols)]`
/// (tokens after `CREATE`). Index names are per table in SQL Server and per schema in
/// PostgreSQL, so the PostgreSQL name is `table$name`.
pub fn create_index(toks: &[Tok], text_columns: &[String]) -> Result<String, SqlError> {
    let mut i = 0;
    let unique = toks.first().is_some_and(|t| t.is_word("UNIQUE"));
    if unique {
        i += 1;
    }
    while toks
        .get(i)
        .is_some_and(|t| t.is_word("CLUSTERED") || t.is_word("NONCLUSTERED"))
    {
        i += 1;
    }
    expect_word(toks, &mut i, "INDEX")?;
    let name = name_at(toks, &mut i)?;
    expect_word(toks, &mut i, "ON")?;
    let table = name_at(toks, &mut i)?;
    let cols = name_list(toks, &mut i)?;
    let mut sql = format!(
        "CREATE {}INDEX {} ON {} ({})",
        if unique { "UNIQUE " } else { "" },
        ident_keep(&format!("{}${name}", table.to_lowercase())),
        ident(&table),
        cols.iter()
            .map(|c| key_column(c, text_columns.contains(&c.to_lowercase())))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if toks.get(i).is_some_and(|t| t.is_word("INCLUDE")) {
        i += 1;
        let include = name_list(toks, &mut i)?;
        sql.push_str(&format!(
            " INCLUDE ({})",
            include
                .iter()
                .map(|c| ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(extra) = toks.get(i) {
        return Err(syntax_error(&extra.text()));
    }
    Ok(sql)
}

/// The table a `CREATE INDEX` (tokens after `CREATE`) is on, lower case.
pub fn index_table(toks: &[Tok]) -> Option<String> {
    let on = toks.iter().position(|t| t.is_word("ON"))?;
    let mut i = on + 1;
    name_at(toks, &mut i).ok().map(|n| n.to_lowercase())
}

/// `DROP TABLE [IF EXISTS] t` (tokens after `DROP TABLE`).
pub fn drop_table(toks: &[Tok]) -> Result<String, SqlError> {
    let mut i = 0;
    let if_exists = toks.first().is_some_and(|t| t.is_word("IF"));
    if if_exists {
        i = 1;
        expect_word(toks, &mut i, "EXISTS")?;
    }
    let table = name_at(toks, &mut i)?;
    if let Some(extra) = toks.get(i) {
        return Err(syntax_error(&extra.text()));
    }
    let t = table.to_lowercase();
    Ok(format!(
        "DROP TABLE {}{};\nDROP FUNCTION IF EXISTS {}();\nDELETE FROM tsql_columns WHERE table_name = {};",
        if if_exists { "IF EXISTS " } else { "" },
        ident(&table),
        ident(&format!("tsql_check_{t}")),
        lit(&t)
    ))
}
