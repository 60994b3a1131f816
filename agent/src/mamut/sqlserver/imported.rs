//! The reads of the import writer ([`crate::mamut::import`]): which order Mamut's import made
//! for an external order number, and how many lines it has. Plain reads, no transaction: Mamut's
//! import program writes the order, the agent only finds it.

use super::errors::{At, classify_at};
use super::{SqlServer, first_int, sql, value};
use crate::mamut::ApplyError;

/// An order Mamut has for an external order number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub order_no: i64,
    pub lines: i64,
    /// How many orders have that external number (more than one: imported twice by hand).
    pub orders: usize,
}

impl SqlServer {
    /// The oldest order with `external` as its external order number, with its line count.
    pub async fn find_imported(&self, external: &str) -> Result<Option<Imported>, ApplyError> {
        let t = &self.mapping.tables;
        let what = format!("{} and {}", t.orders, t.order_lines);
        self.pool
            .run(
                self.statement_timeout(),
                async |conn| {
                    let at = At::table(&t.orders);
                    let rows = conn
                        .query(sql::find_imported(&self.mapping), &[&external])
                        .await
                        .map_err(|e| classify_at(e, at))?
                        .into_first_result()
                        .await
                        .map_err(|e| classify_at(e, at))?;
                    // SQL Server compares with the column's collation, by default without
                    // case and trailing spaces: only the same text is the same order.
                    let exact: Vec<_> = rows
                        .iter()
                        .filter(
                            |row| matches!(row.try_get::<&str, _>(1), Ok(Some(e)) if e == external),
                        )
                        .collect();
                    let Some(first) = exact.first() else {
                        return Ok(None);
                    };
                    let order_no = value::required_int(first, 0).map_err(super::unreadable)?;
                    let lines = first_int(
                        conn,
                        &sql::count_lines(&self.mapping),
                        &[&order_no],
                        At::table(&t.order_lines),
                    )
                    .await?
                    .unwrap_or(0);
                    Ok(Some(Imported {
                        order_no,
                        lines,
                        orders: exact.len(),
                    }))
                },
                |e| ApplyError::Retryable(self.pool_failure(&what, e)),
            )
            .await
    }
}
