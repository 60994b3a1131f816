//! What Mamut's tables look like, read from `INFORMATION_SCHEMA.COLUMNS`: column types, text
//! lengths, decimal precision, NOT NULL and IDENTITY. The writer checks every value against
//! it before writing, so an order Mamut would refuse is refused with the field's name and
//! limit (or its text truncated, as configured); `agent check` reports mappings that cannot
//! work.

use std::collections::HashMap;

use rust_decimal::Decimal;
use tiberius::Row;

use super::value;
use crate::config::{SqlServerConfig, TooLong};
use crate::mamut::ApplyError;

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
    fn length_of(&self, text: &str) -> usize {
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
    fn column(&self, table: &str, column: &str) -> Option<&ColumnInfo> {
        self.tables.get(&table.to_ascii_lowercase())?.column(column)
    }
}

/// One value to be written: where it goes and how to name it to a merchant.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// Reference name, `table.field` (the key of `on_too_long_fields`).
    pub reference: &'a str,
    /// The Mamut table and column (mapped names).
    pub table: &'a str,
    pub column: &'a str,
    /// What the merchant calls it: "company name", "e-mail address".
    pub label: &'a str,
}

/// Checks values against the catalog before they are written. Without a catalog (it could not
/// be read) every value passes and SQL Server's own errors decide.
pub struct Checker<'a> {
    pub catalog: Option<&'a Catalog>,
    pub config: &'a SqlServerConfig,
}

impl Checker<'_> {
    /// A text that fits its column: as it is, truncated (when configured) or refused.
    pub fn text(
        &self,
        field: Field<'_>,
        value: Option<String>,
    ) -> Result<Option<String>, ApplyError> {
        let Some(column) = self
            .catalog
            .and_then(|c| c.column(field.table, field.column))
        else {
            return Ok(value);
        };
        let Some(text) = value else {
            return self.null(field, column).map(|()| None);
        };
        let limit = match column.max_length {
            Some(limit) if limit > 0 && column.is_text() => limit as usize,
            _ => return Ok(Some(text)),
        };
        let length = column.length_of(&text);
        if length <= limit {
            return Ok(Some(text));
        }
        match self.config.too_long(field.reference) {
            TooLong::Truncate => {
                let mut cut = String::new();
                for c in text.chars() {
                    if column.length_of(&cut) + c.len_utf16() > limit {
                        break;
                    }
                    cut.push(c);
                }
                tracing::info!(
                    field = field.reference,
                    length,
                    limit,
                    "text truncated to Mamut's column"
                );
                Ok(Some(cut))
            }
            TooLong::Refuse => Err(ApplyError::Permanent(format!(
                "{} is {length} characters, Mamut allows {limit} ({}); shorten it in the shop, or set \
                 on_too_long_fields.\"{}\" = \"truncate\", then replay the order",
                capitalized(field.label),
                field.reference,
                field.reference
            ))),
        }
    }

    /// A decimal whose integer digits fit the column's precision and scale.
    pub fn decimal(
        &self,
        field: Field<'_>,
        value: Option<Decimal>,
    ) -> Result<Option<Decimal>, ApplyError> {
        let Some(column) = self
            .catalog
            .and_then(|c| c.column(field.table, field.column))
        else {
            return Ok(value);
        };
        let Some(number) = value else {
            return self.null(field, column).map(|()| None);
        };
        if column.is_integer() && !number.fract().is_zero() {
            // SQL Server would cut the fraction off without a word.
            return Err(ApplyError::Permanent(format!(
                "{} {number} is not a whole number, and Mamut's column is an integer ({}); map \
                 the field onto a decimal column",
                capitalized(field.label),
                field.reference
            )));
        }
        let (Some(precision), Some(scale)) = (column.precision, column.scale) else {
            return Ok(Some(number));
        };
        if !column.is_decimal() {
            return Ok(Some(number));
        }
        let scale = u32::try_from(scale).unwrap_or(0);
        let rounded = number.round_dp(scale);
        let digits = rounded
            .trunc()
            .abs()
            .to_string()
            .trim_start_matches('0')
            .len() as i64;
        let allowed = precision - i64::from(scale);
        if digits > allowed {
            return Err(ApplyError::Permanent(format!(
                "{} {number} has {digits} digits before the decimal point, Mamut allows {allowed} ({})",
                capitalized(field.label),
                field.reference
            )));
        }
        Ok(Some(number))
    }

    fn null(&self, field: Field<'_>, column: &ColumnInfo) -> Result<(), ApplyError> {
        if column.nullable {
            Ok(())
        } else {
            Err(ApplyError::Permanent(format!(
                "the order has no {}, Mamut requires one ({})",
                field.label, field.reference
            )))
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: &str, max_length: Option<i64>, nullable: bool) -> ColumnInfo {
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

    fn catalog() -> Catalog {
        let mut total = column("total", "decimal", None, false);
        total.precision = Some(19);
        total.scale = Some(4);
        let mut tables = HashMap::new();
        tables.insert(
            "customers".into(),
            TableInfo {
                columns: vec![
                    column("name", "nvarchar", Some(100), false),
                    column("email", "nvarchar", Some(200), true),
                ],
            },
        );
        tables.insert(
            "orders".into(),
            TableInfo {
                columns: vec![total],
            },
        );
        Catalog { tables }
    }

    const NAME: Field<'static> = Field {
        reference: "customers.name",
        table: "customers",
        column: "NAME",
        label: "company name",
    };

    #[test]
    fn too_long_text_is_refused_with_the_field_its_length_and_the_limit() {
        let catalog = catalog();
        let config = SqlServerConfig::default();
        let checker = Checker {
            catalog: Some(&catalog),
            config: &config,
        };
        let error = checker
            .text(NAME, Some("x".repeat(143)))
            .expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("Company name is 143 characters, Mamut allows 100 (customers.name)"),
            "{error}"
        );
        assert!(matches!(error, ApplyError::Permanent(_)));
        assert_eq!(
            checker.text(NAME, Some("x".repeat(100))),
            Ok(Some("x".repeat(100)))
        );
    }

    #[test]
    fn a_field_configured_to_truncate_is_cut_to_the_column() {
        let catalog = catalog();
        let mut config = SqlServerConfig::default();
        config
            .on_too_long_fields
            .insert("customers.name".into(), TooLong::Truncate);
        let checker = Checker {
            catalog: Some(&catalog),
            config: &config,
        };
        let cut = checker
            .text(NAME, Some("å".repeat(150)))
            .expect("truncated")
            .expect("a value");
        assert_eq!(cut.chars().count(), 100);
    }

    #[test]
    fn nulls_and_oversized_decimals_are_refused_by_name() {
        let catalog = catalog();
        let config = SqlServerConfig::default();
        let checker = Checker {
            catalog: Some(&catalog),
            config: &config,
        };
        let error = checker.text(NAME, None).expect_err("NOT NULL");
        assert!(error.to_string().contains("no company name"), "{error}");
        let total = Field {
            reference: "orders.total",
            table: "orders",
            column: "total",
            label: "order total",
        };
        assert!(
            checker
                .decimal(total, Some(Decimal::new(123_456_789_012_345, 0)))
                .is_ok()
        );
        let error = checker
            .decimal(total, Some(Decimal::new(1_234_567_890_123_456, 0)))
            .expect_err("16 digits");
        assert!(error.to_string().contains("Mamut allows 15"), "{error}");
    }

    #[test]
    fn a_fraction_for_an_integer_column_is_refused_not_cut() {
        let mut catalog = catalog();
        catalog.tables.insert(
            "order_lines".into(),
            TableInfo {
                columns: vec![column("vat_rate", "int", None, false)],
            },
        );
        let config = SqlServerConfig::default();
        let checker = Checker {
            catalog: Some(&catalog),
            config: &config,
        };
        let vat = Field {
            reference: "order_lines.vat_rate",
            table: "order_lines",
            column: "vat_rate",
            label: "VAT rate",
        };
        assert_eq!(
            checker.decimal(vat, Some(Decimal::new(2500, 2))),
            Ok(Some(Decimal::new(2500, 2)))
        );
        let error = checker
            .decimal(vat, Some(Decimal::new(125, 1)))
            .expect_err("12.5 into an int column");
        assert!(error.to_string().contains("not a whole number"), "{error}");
    }

    #[test]
    fn without_a_catalog_everything_passes() {
        let config = SqlServerConfig::default();
        let checker = Checker {
            catalog: None,
            config: &config,
        };
        assert!(checker.text(NAME, Some("x".repeat(500))).is_ok());
    }

    #[test]
    fn kinds_tell_fitting_types() {
        let int = column("article_no", "int", None, false);
        assert!(!Kind::of("products", "article_no").fits(&int));
        assert!(Kind::of("orders", "order_no").fits(&int));
        assert!(Kind::of("stock", "rv").fits(&column("rv", "timestamp", None, false)));
    }
}
