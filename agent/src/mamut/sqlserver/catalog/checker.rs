//! Checking a value against its column before it is written: a text that is too long is
//! refused with the field's merchant name and limit (or truncated, as configured), a NULL
//! where Mamut needs a value and a decimal with too many digits are refused by name.

use rust_decimal::Decimal;

use super::{Catalog, ColumnInfo};
use crate::mamut::ApplyError;
use crate::mamut::settings::{SqlServerConfig, TooLong};

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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::TableInfo;
    use super::super::tests::column;
    use super::*;

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
}
