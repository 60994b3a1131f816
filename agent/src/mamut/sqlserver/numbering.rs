//! New numbers for the customers and orders the agent creates: SQL Server's IDENTITY, the
//! largest number plus one, or a number series table, as `[mamut.sqlserver]` says.

use tiberius::ToSql;

use super::errors::{At, classify_at};
use super::{Conn, SqlServer, first_int, sql, to_i32, unreadable, value};
use crate::mamut::ApplyError;
use crate::mamut::settings::{Numbering, SeriesHolds};

impl SqlServer {
    /// Runs an identity insert and reads the number the database assigned.
    pub(super) async fn identity(
        &self,
        conn: &mut Conn,
        insert: String,
        params: &[&dyn ToSql],
        at: At<'_>,
    ) -> Result<i32, ApplyError> {
        let row = conn
            .query(insert, params)
            .await
            .map_err(|e| classify_at(e, at))?
            .into_row()
            .await
            .map_err(|e| classify_at(e, at))?;
        let number = row
            .map(|r| value::int(&r, 0))
            .transpose()
            .map_err(unreadable)?
            .flatten()
            .ok_or_else(|| {
                ApplyError::Permanent(format!(
                    "SCOPE_IDENTITY() gave no number after inserting into {}: is the number column an \
                     IDENTITY column? Otherwise use numbering mode \"series\" or \"max_plus_one\"",
                    at.table.unwrap_or_default()
                ))
            })?;
        to_i32(number)
    }

    /// The number for a new row, or `None` when the database assigns it (identity).
    pub(super) async fn number(
        &self,
        conn: &mut Conn,
        numbering: &Numbering,
        table: &str,
        column: &str,
        start: i32,
    ) -> Result<Option<i32>, ApplyError> {
        let at = At::table(table);
        let next = match numbering {
            Numbering::Identity => return Ok(None),
            Numbering::MaxPlusOne => {
                first_int(conn, &sql::max_plus_one(table, column), &[&start], at)
                    .await?
                    .unwrap_or(i64::from(start))
            }
            Numbering::Series(series) => {
                let sql = sql::series_next(series);
                let advanced = first_int(
                    conn,
                    &sql,
                    &[&series.key.as_str()],
                    At::table(&series.table),
                )
                .await?
                .map(|value| match series.holds {
                    SeriesHolds::Last => value,
                    SeriesHolds::Next => value - 1,
                });
                advanced.ok_or_else(|| {
                    ApplyError::Permanent(format!(
                        "the number series {} has no row {} = {:?} for {table}: create it, or fix \
                             the numbering in [mamut.sqlserver]",
                        series.table, series.key_column, series.key
                    ))
                })?
            }
        };
        to_i32(next).map(Some)
    }

    /// The number this apply chose, when a duplicate of it can only mean that another writer
    /// took the same number at the same moment (max+1 read by a Mamut user without our lock),
    /// so a retry reads a new one. With a series or an IDENTITY column a duplicate means the
    /// series is behind the table's numbers, which a retry would hit again: not racy.
    pub(super) fn racy_number(&self, numbering: &Numbering, number: Option<i32>) -> String {
        match (numbering, number) {
            (Numbering::MaxPlusOne, Some(n)) => n.to_string(),
            _ => String::new(),
        }
    }
}
