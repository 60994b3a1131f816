//! Running a request on SQLite and writing the answer as TDS tokens: result sets, row counts,
//! errors (as SQL Server numbers them), and transaction state changes.

use bytes::{BufMut, BytesMut};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode};

use super::dialect::{Statement, rowversion_triggers, translate};
use super::request::Request;
use super::types::SqlType;
use super::wire::{self, DONE_COUNT, DONE_ERROR, DONE_INXACT, DONE_MORE};

/// One client connection's database session.
pub struct Session {
    conn: Connection,
    /// The current transaction's descriptor, when one is open.
    transaction: Option<u64>,
    next_descriptor: u64,
}

/// An error as SQL Server would report it.
struct SqlError {
    number: u32,
    class: u8,
    message: String,
}

impl SqlError {
    fn new(number: u32, class: u8, message: impl Into<String>) -> Self {
        Self {
            number,
            class,
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        let message = e.to_string();
        match e.sqlite_error_code() {
            // Busy or locked: reported like a deadlock, which clients retry.
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => SqlError::new(
                1205,
                13,
                format!("Transaction was deadlocked on lock resources: {message}"),
            ),
            Some(ErrorCode::ConstraintViolation) if message.contains("FOREIGN KEY") => {
                SqlError::new(547, 16, message)
            }
            Some(ErrorCode::ConstraintViolation) => SqlError::new(2627, 14, message),
            _ if message.contains("no such table") => {
                SqlError::new(208, 16, format!("Invalid object name: {message}"))
            }
            _ if message.contains("no such column") => {
                SqlError::new(207, 16, format!("Invalid column name: {message}"))
            }
            _ => SqlError::new(102, 15, message),
        }
    }
}

impl Session {
    pub fn new(conn: Connection) -> Self {
        Self {
            conn,
            transaction: None,
            next_descriptor: 1,
        }
    }

    /// Runs a request and returns the response tokens.
    pub fn run(&mut self, request: &Request) -> Vec<u8> {
        let statements = translate(&request.sql);
        let mut out = BytesMut::new();
        let done_token = if request.rpc {
            wire::TOKEN_DONEINPROC
        } else {
            0xFD
        };
        let mut failed = false;
        let count = statements.len();
        for (index, statement) in statements.iter().enumerate() {
            let more = if index + 1 < count { DONE_MORE } else { 0 };
            match self.statement(statement, &request.params, &mut out) {
                Ok(rows) => {
                    let status = more | rows.map_or(0, |_| DONE_COUNT) | self.in_transaction();
                    wire::put_done(&mut out, done_token, status, rows.unwrap_or(0));
                }
                Err(e) => {
                    wire::put_error(&mut out, e.number, e.class, &e.message);
                    wire::put_done(&mut out, done_token, DONE_ERROR | self.in_transaction(), 0);
                    failed = true;
                    break;
                }
            }
        }
        if count == 0 {
            wire::put_done(&mut out, done_token, 0, 0);
        }
        if request.rpc {
            out.put_u8(wire::TOKEN_RETURNSTATUS);
            out.put_i32_le(i32::from(failed));
            let status = if failed { DONE_ERROR } else { 0 };
            wire::put_done(
                &mut out,
                wire::TOKEN_DONEPROC,
                status | self.in_transaction(),
                0,
            );
        }
        out.to_vec()
    }

    /// Runs a script of the subset directly (no client), e.g. to create the schema.
    pub fn execute(&mut self, sql: &str) -> Result<(), String> {
        let mut scratch = BytesMut::new();
        for statement in translate(sql) {
            self.statement(&statement, &[], &mut scratch)
                .map_err(|e| e.message)?;
        }
        Ok(())
    }

    fn in_transaction(&self) -> u16 {
        if self.transaction.is_some() {
            DONE_INXACT
        } else {
            0
        }
    }

    /// Runs one statement; returns the row count to report, if any.
    fn statement(
        &mut self,
        statement: &Statement,
        params: &[(String, Value)],
        out: &mut BytesMut,
    ) -> Result<Option<u64>, SqlError> {
        match statement {
            Statement::Ignored => Ok(None),
            Statement::Begin => {
                if self.transaction.is_some() {
                    return Err(SqlError::new(
                        3902,
                        16,
                        "nested transactions are not supported by the stand-in",
                    ));
                }
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let descriptor = self.next_descriptor;
                self.next_descriptor += 1;
                self.transaction = Some(descriptor);
                wire::put_envchange_bytes(out, 8, &descriptor.to_le_bytes(), &[]);
                Ok(None)
            }
            Statement::Commit | Statement::Rollback => {
                let Some(descriptor) = self.transaction.take() else {
                    return Err(SqlError::new(
                        3902,
                        16,
                        "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
                    ));
                };
                let (sql, kind) = if *statement == Statement::Commit {
                    ("COMMIT", 9)
                } else {
                    ("ROLLBACK", 10)
                };
                self.conn.execute_batch(sql)?;
                wire::put_envchange_bytes(out, kind, &[], &descriptor.to_le_bytes());
                Ok(None)
            }
            Statement::Sql { sql, rowversion } => {
                let rows = self.query(sql, params, out)?;
                if let Some((table, column)) = rowversion {
                    self.conn
                        .execute_batch(&rowversion_triggers(table, column))?;
                }
                Ok(Some(rows))
            }
        }
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[(String, Value)],
        out: &mut BytesMut,
    ) -> Result<u64, SqlError> {
        let mut stmt = self.conn.prepare(sql)?;
        for index in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(index).unwrap_or_default().to_owned();
            let value = params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    SqlError::new(
                        137,
                        15,
                        format!("Must declare the scalar variable \"{name}\"."),
                    )
                })?;
            stmt.raw_bind_parameter(index, value)?;
        }
        let columns = stmt.column_count();
        if columns == 0 {
            stmt.raw_execute()?;
            return Ok(self.conn.changes());
        }
        let decls: Vec<(String, Option<String>)> = stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.decl_type().map(str::to_owned)))
            .collect();
        let mut rows = stmt.raw_query();
        let mut table: Vec<Vec<Value>> = Vec::new();
        while let Some(row) = rows.next()? {
            table.push(
                (0..columns)
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<Result<_, _>>()?,
            );
        }
        let types: Vec<SqlType> = decls
            .iter()
            .enumerate()
            .map(|(i, (_, decl))| {
                let sample = table
                    .iter()
                    .map(|r| ValueRef::from(&r[i]))
                    .find(|v| !matches!(v, ValueRef::Null));
                SqlType::from_decl(decl.as_deref(), sample)
            })
            .collect();
        out.put_u8(wire::TOKEN_COLMETADATA);
        out.put_u16_le(columns as u16);
        for ((name, _), ty) in decls.iter().zip(&types) {
            out.put_u32_le(0); // user type
            out.put_u16_le(0x0001 | 0x0008); // nullable, updateable unknown
            ty.put_type_info(out);
            wire::put_b_varchar(out, name);
        }
        for row in &table {
            out.put_u8(wire::TOKEN_ROW);
            for (value, ty) in row.iter().zip(&types) {
                ty.put_value(out, ValueRef::from(value))
                    .map_err(|e| SqlError::new(8114, 16, e))?;
            }
        }
        Ok(table.len() as u64)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A client that disconnects mid-transaction loses it, as with SQL Server.
        if self.transaction.is_some() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
