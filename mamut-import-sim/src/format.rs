//! The documented GBAOX10 field table (`deploy/mamut/import/gbaox10.toml`), read at run time
//! and compiled into what the stand-in checks: the element names of the nesting, and per
//! `<ORDER>` / `<ORDERLINE>` field its tag, type, decimals, maximum length, requiredness and use.
//!
//! Where the table is silent the stand-in decides (and says so here):
//! - a numeric field without `decimals` takes integers only (the undocumented ones are ids and
//!   register codes: ORDERID, EMPID, DATA4, VATCODE, ...);
//! - a row without `type` (FREIGHT, "not used") takes any text;
//! - rows without `tag` are documented fields whose tag is unknown: neither expected nor allowed;
//! - the meaning of a field (which one is the customer number, the product number, ...) is
//!   found by its GBAO10 column number, not by its tag, so a tag renamed in the table (read off a
//!   real export) is followed without a change here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the table is when `MAMUT_IMPORT_SIM_FORMAT` does not say.
pub const DEFAULT_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/mamut/import/gbaox10.toml"
);

/// The table's file, as the environment or the build says.
pub fn path_from_env() -> PathBuf {
    match std::env::var_os("MAMUT_IMPORT_SIM_FORMAT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

#[derive(Debug, Deserialize)]
struct Fixture {
    format: Section,
    #[serde(default)]
    order: Vec<Row>,
    #[serde(default)]
    line: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Section {
    root: String,
    order_path: String,
    line_path: String,
    encoding: String,
    address_line_break: String,
    #[serde(default)]
    decimal_separator: Option<String>,
    date_format: String,
}

/// One row of the table as written.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub tag: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub decimals: Option<u32>,
    pub max_len: Option<usize>,
    pub gbao10_column: Option<u32>,
    pub required: Option<String>,
    pub one_of: Option<String>,
    #[serde(rename = "use")]
    pub usage: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// At most this many decimals; 0 = an integer.
    Numeric(u32),
    /// YYYYMMDD.
    Date,
    /// No type documented (not used): any text.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    Yes,
    /// At least one field of the named group has a value.
    OneOf(String),
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Import,
    /// Must be present and empty on import.
    ExportOnly,
    /// Present; its value is ignored.
    NotUsed,
}

/// One field the stand-in expects in every `<ORDER>` or `<ORDERLINE>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub tag: String,
    pub kind: Kind,
    pub max_len: Option<usize>,
    pub required: Required,
    pub usage: Use,
    /// GBAO10's column number: what the field means.
    pub column: Option<u32>,
    /// Cannot be blank although not "required" (DATA15, department: "must be 1 if
    /// Department=(None). Cannot be blank").
    pub non_blank: bool,
}

/// The compiled table.
#[derive(Debug, Clone)]
pub struct Format {
    pub root: String,
    pub list: String,
    pub order: String,
    pub lines: String,
    pub line: String,
    pub encoding: String,
    pub address_line_break: char,
    pub order_fields: Vec<Field>,
    pub line_fields: Vec<Field>,
}

/// GBAO10 column numbers of the fields the import acts on.
pub mod column {
    pub const ORDER_ID: u32 = 1;
    pub const CUSTOMER_NO: u32 = 2;
    pub const CUSTOMER_NAME: u32 = 3;
    pub const INVOICE_ADDRESS: u32 = 4;
    pub const DEPARTMENT: u32 = 13;
    pub const PRODUCT_NO: u32 = 16;
    pub const DESCRIPTION: u32 = 17;
    pub const QUANTITY: u32 = 18;
    pub const PRICE: u32 = 19;
    pub const DISCOUNT: u32 = 20;
    pub const VAT_CODE: u32 = 21;
    pub const EXTERNAL_NO: u32 = 29;
}

impl Format {
    pub fn load(path: &Path) -> Result<Format, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the format table {}: {e}", path.display()))?;
        Format::parse(&text).map_err(|e| format!("format table {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Format, String> {
        let fixture: Fixture = toml::from_str(text).map_err(|e| e.to_string())?;
        let f = &fixture.format;
        let order_path: Vec<&str> = f.order_path.split('/').collect();
        let line_path: Vec<&str> = f.line_path.split('/').collect();
        let (root, list, order, lines, line) = match (order_path.as_slice(), line_path.as_slice()) {
            ([r, l, o], [r2, l2, ls, li]) if r == r2 && l == l2 && *r == f.root => {
                (*r, *l, *o, *ls, *li)
            }
            _ => {
                return Err(format!(
                    "order_path {:?} and line_path {:?} are not ROOT/LIST/ORDER and ROOT/LIST/LINES/LINE under root {:?}",
                    f.order_path, f.line_path, f.root
                ));
            }
        };
        if f.decimal_separator.as_deref().unwrap_or(".") != "." {
            return Err(format!(
                "decimal_separator {:?}: the stand-in reads only \".\"",
                f.decimal_separator
            ));
        }
        if f.date_format != "YYYYMMDD" {
            return Err(format!(
                "date_format {:?}: the stand-in reads only YYYYMMDD",
                f.date_format
            ));
        }
        let mut chars = f.address_line_break.chars();
        let address_line_break = match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => {
                return Err(format!(
                    "address_line_break {:?} is not one character",
                    f.address_line_break
                ));
            }
        };
        let compile = |rows: &[Row], what: &str| -> Result<Vec<Field>, String> {
            let mut out: Vec<Field> = Vec::new();
            for row in rows {
                let Some(tag) = row.tag.clone() else { continue };
                if out.iter().any(|f| f.tag == tag) {
                    return Err(format!("{what} tag {tag} is listed twice"));
                }
                let usage = match row.usage.as_deref().unwrap_or("import") {
                    "import" => Use::Import,
                    "export_only" => Use::ExportOnly,
                    "not_used" => Use::NotUsed,
                    other => return Err(format!("{what} {tag}: unknown use {other:?}")),
                };
                let kind = match row.kind.as_deref() {
                    Some("text") => Kind::Text,
                    Some("numeric") => Kind::Numeric(row.decimals.unwrap_or(0)),
                    Some("date") => Kind::Date,
                    None => Kind::Any,
                    Some(other) => return Err(format!("{what} {tag}: unknown type {other:?}")),
                };
                let required = match (row.required.as_deref().unwrap_or("no"), &row.one_of) {
                    ("yes", _) => Required::Yes,
                    ("one_of", Some(group)) => Required::OneOf(group.clone()),
                    ("one_of", None) => {
                        return Err(format!("{what} {tag}: required one_of without a group"));
                    }
                    ("no", _) => Required::No,
                    (other, _) => return Err(format!("{what} {tag}: unknown required {other:?}")),
                };
                out.push(Field {
                    non_blank: row.gbao10_column == Some(column::DEPARTMENT),
                    tag,
                    kind,
                    max_len: row.max_len,
                    required,
                    usage,
                    column: row.gbao10_column,
                });
            }
            Ok(out)
        };
        let format = Format {
            root: root.to_owned(),
            list: list.to_owned(),
            order: order.to_owned(),
            lines: lines.to_owned(),
            line: line.to_owned(),
            encoding: f.encoding.clone(),
            address_line_break,
            order_fields: compile(&fixture.order, "order")?,
            line_fields: compile(&fixture.line, "line")?,
        };
        for c in [
            column::ORDER_ID,
            column::CUSTOMER_NO,
            column::CUSTOMER_NAME,
            column::INVOICE_ADDRESS,
        ] {
            format.order_tag(c).ok_or(format!(
                "no <{}> field with gbao10_column {c}",
                format.order
            ))?;
        }
        for c in [
            column::PRODUCT_NO,
            column::DESCRIPTION,
            column::QUANTITY,
            column::PRICE,
            column::DISCOUNT,
            column::VAT_CODE,
        ] {
            format
                .line_tag(c)
                .ok_or(format!("no <{}> field with gbao10_column {c}", format.line))?;
        }
        Ok(format)
    }

    /// The tag of the `<ORDER>` field in GBAO10 column `c`.
    pub fn order_tag(&self, c: u32) -> Option<&str> {
        tag_of(&self.order_fields, c)
    }

    /// The tag of the `<ORDERLINE>` field in GBAO10 column `c`.
    pub fn line_tag(&self, c: u32) -> Option<&str> {
        tag_of(&self.line_fields, c)
    }
}

fn tag_of(fields: &[Field], c: u32) -> Option<&str> {
    fields
        .iter()
        .find(|f| f.column == Some(c))
        .map(|f| f.tag.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Format {
        Format::load(Path::new(DEFAULT_PATH)).expect("the documented table loads")
    }

    #[test]
    fn the_documented_table_compiles() {
        let f = fixture();
        assert_eq!(
            (
                f.root.as_str(),
                f.list.as_str(),
                f.order.as_str(),
                f.lines.as_str(),
                f.line.as_str()
            ),
            ("GBAOX10", "ORDERLIST", "ORDER", "ORDERLINES", "ORDERLINE")
        );
        assert_eq!(f.address_line_break, ':');
        assert_eq!(f.order_tag(column::ORDER_ID), Some("ORDERID"));
        assert_eq!(f.order_tag(column::EXTERNAL_NO), Some("EXTERNALID"));
        assert_eq!(f.line_tag(column::PRODUCT_NO), Some("PRODID"));
        let contid = f
            .order_fields
            .iter()
            .find(|x| x.tag == "CONTID")
            .expect("CONTID");
        assert_eq!(contid.kind, Kind::Numeric(0));
        assert_eq!(contid.required, Required::OneOf("customer".into()));
        let sum = f
            .order_fields
            .iter()
            .find(|x| x.tag == "SUMORDERTOTAL")
            .expect("SUMORDERTOTAL");
        assert_eq!(sum.usage, Use::ExportOnly);
        let freight = f
            .order_fields
            .iter()
            .find(|x| x.tag == "FREIGHT")
            .expect("FREIGHT");
        assert_eq!((freight.kind, freight.usage), (Kind::Any, Use::NotUsed));
        // Rows without a tag are not expected.
        assert_eq!(f.order_fields.len(), 21);
        assert_eq!(f.line_fields.len(), 8);
    }

    #[test]
    fn the_department_is_the_field_that_cannot_be_blank() {
        let text = std::fs::read_to_string(DEFAULT_PATH).expect("table");
        let fixture: Fixture = toml::from_str(&text).expect("toml");
        let department = fixture
            .order
            .iter()
            .find(|r| r.gbao10_column == Some(column::DEPARTMENT))
            .expect("department row");
        assert!(
            department
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("Cannot be blank"),
            "the table no longer says the department cannot be blank: {department:?}"
        );
        let f = fixture_format(&text);
        let blank: Vec<_> = f
            .order_fields
            .iter()
            .filter(|x| x.non_blank)
            .map(|x| x.tag.as_str())
            .collect();
        assert_eq!(blank, ["DATA15"]);
    }

    fn fixture_format(text: &str) -> Format {
        Format::parse(text).expect("format")
    }

    #[test]
    fn a_broken_table_is_an_error_not_a_panic() {
        assert!(Format::parse("not toml [").is_err());
        let text = std::fs::read_to_string(DEFAULT_PATH).expect("table");
        let bad = text.replace(
            "order_path = \"GBAOX10/ORDERLIST/ORDER\"",
            "order_path = \"X/ORDER\"",
        );
        assert!(Format::parse(&bad).unwrap_err().contains("order_path"));
        let bad = text.replace("decimal_separator = \".\"", "decimal_separator = \",\"");
        assert!(
            Format::parse(&bad)
                .unwrap_err()
                .contains("decimal_separator")
        );
    }
}
