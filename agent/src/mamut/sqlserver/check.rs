//! `agent check`'s test of the mapping against the database: every mapped table and column
//! exists and has a type that fits, the tables the agent inserts into need nothing it does not
//! write, IDENTITY columns and the numbering agree, and every watched table has an index on
//! its rowversion.

use std::collections::HashSet;

use tiberius::error::Error as TdsError;

use super::catalog::{Kind, TableInfo, read_table};
use super::errors::At;
use super::{Conn, SqlServer, first_int, sql};
use crate::mamut::settings::Numbering;

/// `(reference name, mapped name)` of a table's columns.
type Fields<'a> = Vec<(&'static str, &'a str)>;

impl SqlServer {
    /// Checks that every mapped table and column exists, fits the values the agent puts there,
    /// that the tables the agent inserts into need nothing the agent does not write, that the
    /// numbering fits the tables, and that every watched table has an index on its rowversion.
    /// `Err` when Mamut cannot be reached; otherwise the problems found, each with what to do
    /// (empty when all is well).
    pub async fn check_mapping(&self) -> Result<Vec<String>, String> {
        let mut conn = Self::connect(&self.config)
            .await
            .map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut missing = HashSet::new();
        for (table, columns) in self.mapping.tables_and_columns() {
            match probe(&mut conn, &sql::probe(table, &columns)).await {
                Ok(()) => continue,
                Err(TdsError::Server(e)) if e.code() == 208 => {
                    problems.push(format!(
                        "table {table} does not exist: fix tables.{table} in the mapping"
                    ));
                    missing.insert(table.to_owned());
                    continue;
                }
                Err(_) => {}
            }
            for column in columns {
                if let Err(e) = probe(&mut conn, &sql::probe(table, &[column])).await {
                    let reason = match e {
                        TdsError::Server(e) if e.code() == 207 => "does not exist".to_owned(),
                        other => other.to_string(),
                    };
                    problems.push(format!("column {table}.{column} {reason}: fix the mapping"));
                }
            }
        }
        self.check_catalog(&mut conn, &missing, &mut problems).await;
        Ok(problems)
    }

    /// Whether the database has `READ_COMMITTED_SNAPSHOT` on (`sys.databases`), for `agent
    /// check`: without it a row an open Mamut transaction wrote cannot be read until that
    /// transaction ends. `Err` when it cannot be read.
    pub async fn read_committed_snapshot(&self) -> Result<bool, String> {
        let mut conn = Self::connect(&self.config)
            .await
            .map_err(|e| e.to_string())?;
        let row = conn
            .simple_query(sql::read_committed_snapshot())
            .await
            .map_err(|e| e.to_string())?
            .into_row()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("sys.databases has no row for this database")?;
        match row.try_get::<bool, _>(0) {
            Ok(Some(on)) => Ok(on),
            Ok(None) => Err("sys.databases answered NULL".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn check_catalog(
        &self,
        conn: &mut Conn,
        missing: &HashSet<String>,
        problems: &mut Vec<String>,
    ) {
        let m = &self.mapping;
        let t = &m.tables;
        let c = &m.columns;
        let tables: [(&str, &str, Fields<'_>, bool); 6] = [
            ("customers", &t.customers, c.customers.entries(), true),
            ("products", &t.products, c.products.entries(), true),
            ("stock", &t.stock, c.stock.entries(), false),
            (
                "price_list_prices",
                &t.price_list_prices,
                c.price_list_prices.entries(),
                false,
            ),
            ("orders", &t.orders, c.orders.entries(), true),
            ("order_lines", &t.order_lines, c.order_lines.entries(), true),
        ];
        for (reference, table, fields, inserted) in tables {
            if missing.contains(table) {
                continue;
            }
            let info = match read_table(conn, table).await {
                Ok(info) => info,
                Err(e) => {
                    problems.push(format!(
                        "cannot read the columns of {table} from INFORMATION_SCHEMA.COLUMNS ({e}): \
                         grant the agent's login VIEW DEFINITION on the database"
                    ));
                    return;
                }
            };
            for (field, column) in &fields {
                let Some(col) = info.column(column) else {
                    continue;
                };
                let kind = Kind::of(reference, field);
                if !kind.fits(col) {
                    problems.push(format!(
                        "column {table}.{column} is {}, the agent puts {} there ({reference}.{field}): \
                         map a column of that type",
                        col.data_type,
                        kind.describe()
                    ));
                }
            }
            if inserted {
                for col in &info.columns {
                    let mapped = fields
                        .iter()
                        .any(|(_, n)| n.eq_ignore_ascii_case(&col.name));
                    if !mapped && !col.fills_itself() {
                        problems.push(format!(
                            "column {table}.{} is NOT NULL without a default and the agent does not write it, \
                             so every insert into {table} fails: give it a default \
                             (ALTER TABLE {table} ADD DEFAULT ... FOR {}) or allow NULL",
                            col.name, col.name
                        ));
                    }
                }
            }
            self.check_identity(reference, table, &fields, &info, problems);
        }
        for (table, rv) in [
            (&t.stock, &c.stock.rv),
            (&t.products, &c.products.rv),
            (&t.price_list_prices, &c.price_list_prices.rv),
            (&t.orders, &c.orders.rv),
        ] {
            if missing.contains(table) {
                continue;
            }
            match first_int(
                conn,
                sql::catalog_index(),
                &[&table.as_str(), &rv.as_str()],
                At::table(table),
            )
            .await
            {
                Ok(Some(n)) if n > 0 => {}
                Ok(_) => problems.push(format!(
                    "no index on {table}.{rv}: every watcher poll reads the whole table; \
                     create one: CREATE INDEX {table}_{rv} ON {table} ({rv})"
                )),
                Err(e) => problems.push(format!(
                    "cannot read the indexes of {table} from sys.indexes ({e}): grant the agent's \
                     login VIEW DEFINITION on the database"
                )),
            }
        }
        for (key, numbering) in [
            ("customer_numbering", &self.config.customer_numbering),
            ("order_numbering", &self.config.order_numbering),
        ] {
            if let Numbering::Series(s) = numbering {
                let probe_sql = sql::probe(&s.table, &[&s.key_column, &s.next_column]);
                if let Err(e) = probe(conn, &probe_sql).await {
                    problems.push(format!(
                        "{key}: number series {}.{} / {}: {e}; fix [mamut.sqlserver] {key}",
                        s.table, s.key_column, s.next_column
                    ));
                }
            }
        }
    }

    /// IDENTITY columns the agent would write explicitly, and identity numbering on a column
    /// that is not one.
    fn check_identity(
        &self,
        reference: &str,
        table: &str,
        fields: &[(&'static str, &str)],
        info: &TableInfo,
        problems: &mut Vec<String>,
    ) {
        let numbered = match reference {
            "customers" => Some((
                "customer_no",
                "customer_numbering",
                &self.config.customer_numbering,
            )),
            "orders" => Some(("order_no", "order_numbering", &self.config.order_numbering)),
            _ => None,
        };
        for (field, column) in fields {
            let Some(col) = info.column(column) else {
                continue;
            };
            match numbered {
                Some((number, key, numbering)) if *field == number => {
                    let identity_mode = matches!(numbering, Numbering::Identity);
                    if col.identity && !identity_mode {
                        problems.push(format!(
                            "column {table}.{column} is an IDENTITY column: Mamut numbers {table} \
                             itself; set {key} = {{ mode = \"identity\" }} in [mamut.sqlserver]"
                        ));
                    } else if !col.identity && identity_mode {
                        problems.push(format!(
                            "{key} is \"identity\" but {table}.{column} is not an IDENTITY column: \
                             use mode \"series\" or \"max_plus_one\""
                        ));
                    }
                }
                _ if col.identity
                    && !matches!(*field, "rv" | "tracking_no")
                    && matches!(
                        reference,
                        "customers" | "orders" | "order_lines" | "products"
                    ) =>
                {
                    problems.push(format!(
                        "column {table}.{column} is an IDENTITY column, and the agent writes \
                         {reference}.{field} itself: map a plain column"
                    ));
                }
                _ => {}
            }
        }
    }
}

async fn probe(conn: &mut Conn, sql: &str) -> Result<(), TdsError> {
    conn.simple_query(sql)
        .await?
        .into_results()
        .await
        .map(|_| ())
}
