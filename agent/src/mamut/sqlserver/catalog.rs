//! What Mamut's tables look like, read from `INFORMATION_SCHEMA.COLUMNS`: column types, text
//! lengths, decimal precision, NOT NULL and IDENTITY, cached per connection generation. The
//! writer checks every value against it before writing ([`checker`]), so an order Mamut would
//! refuse is refused with the field's name and limit (or its text truncated, as configured);
//! `agent check` reports mappings that cannot work.

mod checker;

use std::collections::HashMap;
use std::sync::Arc;

use tiberius::Row;

pub use self::checker::{Checker, Field};
use super::{CachedCatalog, Conn, SqlServer, sql, value};

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// As SQL Server spells it: `int`, `nvarchar`, `decimal`, `timestamp`...
    pub data_type: String,
    /// Characters for text columns (`-1` for MAX), `None` otherwise.
    pub max_length: Option<i64>,
    pub precision: Option<i64>,
    pub scale: Option<i64>,
    pub nullable: bool,
    pub has_default: bool,
    pub identity: bool,
}

impl ColumnInfo {
    /// Reads one row of [`super::sql::catalog_columns`].
    pub fn from_row(row: &Row) -> Result<Self, String> {
        let text = |i: usize| -> Result<Option<String>, String> {
            row.try_get::<&str, _>(i)
                .map(|v| v.map(str::to_owned))
                .map_err(|e| format!("catalog column {i}: {e}"))
        };
        Ok(Self {
            name: text(0)?.unwrap_or_default(),
            data_type: text(1)?.unwrap_or_default().to_ascii_lowercase(),
            max_length: value::int(row, 2)?,
            precision: value::int(row, 3)?,
            scale: value::int(row, 4)?,
            nullable: !text(5)?.is_some_and(|v| v.eq_ignore_ascii_case("NO")),
            has_default: text(6)?.is_some(),
            identity: value::int(row, 7)? == Some(1),
        })
    }

    pub fn is_text(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "nvarchar" | "varchar" | "nchar" | "char" | "ntext" | "text"
        )
    }

    pub fn is_integer(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "tinyint" | "smallint" | "int" | "bigint"
        ) || (self.is_decimal() && self.scale == Some(0))
    }

    pub fn is_decimal(&self) -> bool {
        matches!(
            self.data_type.as_str(),
            "decimal" | "numeric" | "money" | "smallmoney"
        )
    }

    pub fn is_rowversion(&self) -> bool {
        matches!(self.data_type.as_str(), "timestamp" | "rowversion")
    }

    /// A column SQL Server fills itself when an INSERT leaves it out.
    pub fn fills_itself(&self) -> bool {
        self.nullable || self.has_default || self.identity || self.is_rowversion()
    }

    /// The length of `text` as this column counts it: UTF-16 code units for `nvarchar` and
    /// `nchar`, characters otherwise.
    pub(super) fn length_of(&self, text: &str) -> usize {
        if self.data_type.starts_with('n') {
            text.encode_utf16().count()
        } else {
            text.chars().count()
        }
    }
}

/// The columns of one table, by lower-case name.
#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// The tables the writer checks values against, by lower-case table name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: HashMap<String, TableInfo>,
}

impl Catalog {
    pub(super) fn column(&self, table: &str, column: &str) -> Option<&ColumnInfo> {
        self.tables.get(&table.to_ascii_lowercase())?.column(column)
    }
}

/// What kind of value a reference field holds, for `agent check`'s type test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Decimal,
    Date,
    Bit,
    Rowversion,
}

impl Kind {
    /// The kind of a reference field (`table`, `field` in reference names).
    pub fn of(table: &str, field: &str) -> Kind {
        match (table, field) {
            (_, "rv") => Kind::Rowversion,
            ("customers", "customer_no")
            | ("orders", "order_no" | "customer_no")
            | ("order_lines", "order_no" | "line_no") => Kind::Integer,
            ("orders", "order_date") => Kind::Date,
            ("products", "active") => Kind::Bit,
            (_, "vat_rate" | "price" | "quantity" | "total" | "unit_price" | "discount") => {
                Kind::Decimal
            }
            _ => Kind::Text,
        }
    }

    pub fn fits(self, column: &ColumnInfo) -> bool {
        match self {
            Kind::Text => column.is_text(),
            Kind::Integer => column.is_integer(),
            Kind::Decimal => column.is_decimal() || column.is_integer(),
            Kind::Date => column.data_type.contains("date"),
            Kind::Bit => column.data_type == "bit" || column.is_integer(),
            Kind::Rowversion => column.is_rowversion(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Text => "text (nvarchar)",
            Kind::Integer => "an integer (int)",
            Kind::Decimal => "a decimal (decimal(p, s))",
            Kind::Date => "a date and time (datetime2)",
            Kind::Bit => "a flag (bit)",
            Kind::Rowversion => "a rowversion",
        }
    }
}

impl SqlServer {
    /// The columns of the tables the writer checks values against, read once per connection
    /// generation; `None` when the catalog cannot be read (SQL Server's errors then decide).
    pub(super) async fn catalog(&self, conn: &mut Conn) -> Option<Arc<Catalog>> {
        let mut cached = self.catalog.lock().await;
        let discarded = self.pool.discarded();
        if let Some(c) = cached.as_ref()
            && c.discarded == discarded
        {
            return c.catalog.clone();
        }
        let t = &self.mapping.tables;
        let mut catalog = Catalog::default();
        let mut failed = None;
        for table in [&t.customers, &t.orders, &t.order_lines, &t.products] {
            match read_table(conn, table).await {
                Ok(info) => {
                    catalog.tables.insert(table.to_ascii_lowercase(), info);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let catalog = match failed {
            None => Some(Arc::new(catalog)),
            Some(e) => {
                tracing::warn!(error = %e, "cannot read Mamut's column sizes; values are not checked before writing");
                None
            }
        };
        *cached = Some(CachedCatalog {
            catalog: catalog.clone(),
            discarded,
        });
        catalog
    }
}

/// The columns of one table from the catalog.
pub(super) async fn read_table(conn: &mut Conn, table: &str) -> Result<TableInfo, String> {
    let rows = conn
        .query(sql::catalog_columns(), &[&table])
        .await
        .map_err(|e| e.to_string())?
        .into_first_result()
        .await
        .map_err(|e| e.to_string())?;
    let columns = rows
        .iter()
        .map(ColumnInfo::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    if columns.is_empty() {
        return Err(format!("no columns found for table {table}"));
    }
    Ok(TableInfo { columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column as the catalog query reads it (also used by [`super::checker`]'s tests).
    pub(super) fn column(
        name: &str,
        data_type: &str,
        max_length: Option<i64>,
        nullable: bool,
    ) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            data_type: data_type.into(),
            max_length,
            precision: None,
            scale: None,
            nullable,
            has_default: false,
            identity: false,
        }
    }

    #[test]
    fn kinds_tell_fitting_types() {
        let int = column("article_no", "int", None, false);
        assert!(!Kind::of("products", "article_no").fits(&int));
        assert!(Kind::of("orders", "order_no").fits(&int));
        assert!(Kind::of("stock", "rv").fits(&column("rv", "timestamp", None, false)));
    }
}
