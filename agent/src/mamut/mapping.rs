//! Where Mamut keeps what the agent touches: table and column names, and status values. Every
//! installation differs a little, so all of it is configuration; the defaults are the
//! reference names of `deploy/mamut/schema.sql` (and `deploy/mamut/mapping.toml` spells them out).

use std::path::Path;

use serde::Deserialize;

/// Declares a mapping struct whose every field defaults to its own name.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(pub $field: String,)*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: stringify!($field).to_owned(),)* }
            }
        }

        impl $name {
            /// `(reference name, configured name)` of every entry.
            pub fn entries(&self) -> Vec<(&'static str, &str)> {
                vec![$((stringify!($field), self.$field.as_str()),)*]
            }
        }
    };
}

names!(
    /// Table names.
    Tables { customers, products, stock, price_list_prices, orders, order_lines }
);
names!(CustomerColumns {
    customer_no,
    name,
    email,
    org_no,
    phone,
    street,
    zip,
    city,
    country,
    rv
});
names!(ProductColumns {
    article_no,
    name,
    description,
    vat_rate,
    price,
    active,
    parent_article_no,
    dimension1,
    dimension2,
    rv
});
names!(StockColumns {
    article_no,
    warehouse,
    quantity,
    rv
});
names!(PriceListColumns {
    price_list,
    article_no,
    currency,
    price,
    rv
});
names!(OrderColumns {
    order_no,
    doc_type,
    customer_no,
    external_no,
    shop_id,
    status,
    order_date,
    currency,
    payment_method,
    payment_ref,
    total,
    tracking_no,
    rv
});
names!(OrderLineColumns {
    order_no,
    line_no,
    article_no,
    description,
    quantity,
    unit_price,
    discount,
    vat_rate
});

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Columns {
    pub customers: CustomerColumns,
    pub products: ProductColumns,
    pub stock: StockColumns,
    pub price_list_prices: PriceListColumns,
    pub orders: OrderColumns,
    pub order_lines: OrderLineColumns,
}

/// The values Mamut's status column holds, by meaning.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Statuses {
    pub quotation: String,
    pub unprocessed_order: String,
    pub backorder: String,
    pub invoice_not_delivered: String,
    pub invoice: String,
    pub credit_note: String,
    pub cancelled: String,
    pub delivered: String,
}

impl Default for Statuses {
    fn default() -> Self {
        Self {
            quotation: "quotation".into(),
            unprocessed_order: "unprocessed".into(),
            backorder: "backorder".into(),
            invoice_not_delivered: "invoice_not_delivered".into(),
            invoice: "invoice".into(),
            credit_note: "credit_note".into(),
            cancelled: "cancelled".into(),
            delivered: "delivered".into(),
        }
    }
}

/// A plain SQL identifier: letters, digits and `_`, not starting with a digit, at most 128.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Mapping {
    pub tables: Tables,
    pub columns: Columns,
    pub statuses: Statuses,
}

impl Mapping {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mapping: Mapping =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        mapping.validate()?;
        Ok(mapping)
    }

    /// Names end up in SQL text, so only plain identifiers are allowed.
    pub fn validate(&self) -> Result<(), String> {
        for (table, name) in self.all_names() {
            if !is_identifier(name) {
                return Err(format!(
                    "mapping {table}: {name:?} is not a plain identifier (letters, digits, _)"
                ));
            }
        }
        Ok(())
    }

    /// Every mapped table with its mapped columns: `(table name, [column names])`.
    pub fn tables_and_columns(&self) -> Vec<(&str, Vec<&str>)> {
        let t = &self.tables;
        let c = &self.columns;
        vec![
            (
                t.customers.as_str(),
                c.customers.entries().into_iter().map(|(_, n)| n).collect(),
            ),
            (
                t.products.as_str(),
                c.products.entries().into_iter().map(|(_, n)| n).collect(),
            ),
            (
                t.stock.as_str(),
                c.stock.entries().into_iter().map(|(_, n)| n).collect(),
            ),
            (
                t.price_list_prices.as_str(),
                c.price_list_prices
                    .entries()
                    .into_iter()
                    .map(|(_, n)| n)
                    .collect(),
            ),
            (
                t.orders.as_str(),
                c.orders.entries().into_iter().map(|(_, n)| n).collect(),
            ),
            (
                t.order_lines.as_str(),
                c.order_lines
                    .entries()
                    .into_iter()
                    .map(|(_, n)| n)
                    .collect(),
            ),
        ]
    }

    fn all_names(&self) -> Vec<(String, &str)> {
        let mut all: Vec<(String, &str)> = self
            .tables
            .entries()
            .into_iter()
            .map(|(k, v)| (format!("tables.{k}"), v))
            .collect();
        for (table, columns) in [
            ("customers", self.columns.customers.entries()),
            ("products", self.columns.products.entries()),
            ("stock", self.columns.stock.entries()),
            (
                "price_list_prices",
                self.columns.price_list_prices.entries(),
            ),
            ("orders", self.columns.orders.entries()),
            ("order_lines", self.columns.order_lines.entries()),
        ] {
            all.extend(
                columns
                    .into_iter()
                    .map(|(k, v)| (format!("columns.{table}.{k}"), v)),
            );
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_mapping_file_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mamut/mapping.toml");
        assert_eq!(Mapping::load(&path).expect("loads"), Mapping::default());
    }

    #[test]
    fn names_must_be_plain_identifiers() {
        let mut mapping = Mapping::default();
        mapping.columns.orders.external_no = "x; DROP TABLE orders".into();
        let error = mapping.validate().expect_err("refused");
        assert!(error.contains("columns.orders.external_no"), "{error}");
    }
}
