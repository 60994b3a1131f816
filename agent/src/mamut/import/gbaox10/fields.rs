//! The documented GBAOX10 fields: every tag of `<ORDER>` and `<ORDERLINE>` in the documented
//! order, with its type and maximum length, as `deploy/mamut/import/gbaox10.toml` lists them
//! (a test compares the two).

/// What a field holds, as the documentation types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A number with at most this many decimals.
    Numeric(u32),
    /// YYYYMMDD.
    Date,
    /// Present and empty: export only, or not used.
    Empty,
}

/// One documented field: its tag, its type and its maximum length in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub tag: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub max_len: Option<usize>,
    /// Found rows by: never cut (a cut key would not be found again).
    pub key: bool,
}

const fn spec(tag: &'static str, label: &'static str, kind: Kind, max_len: usize) -> Spec {
    Spec {
        tag,
        label,
        kind,
        max_len: Some(max_len),
        key: false,
    }
}

const fn empty(tag: &'static str, label: &'static str, max_len: Option<usize>) -> Spec {
    Spec {
        tag,
        label,
        kind: Kind::Empty,
        max_len,
        key: false,
    }
}

/// The `<ORDER>` tags, in the documented order.
pub const ORDER_FIELDS: &[Spec] = &[
    spec("ORDERID", "order number", Kind::Numeric(0), 9),
    spec("CONTID", "customer number", Kind::Numeric(0), 9),
    spec("CONTNAME", "customer name", Kind::Text, 50),
    spec("ADRINVO", "invoice address", Kind::Text, 150),
    spec("ADRDELIV", "delivery address", Kind::Text, 150),
    spec("REF", "reference", Kind::Text, 30),
    spec("YOURREF", "your reference", Kind::Text, 30),
    spec("EMPID", "our reference (employee)", Kind::Numeric(0), 3),
    spec("TEXT", "fixed text", Kind::Text, 200),
    spec("SHIPTEXT", "packing list text", Kind::Text, 200),
    spec("DATA4", "payment terms", Kind::Numeric(0), 3),
    spec("DATA9", "response type", Kind::Numeric(0), 3),
    spec("DATA15", "department", Kind::Numeric(0), 3),
    spec("DATA14", "project", Kind::Numeric(0), 6),
    spec("DATA2", "delivery type", Kind::Numeric(0), 3),
    empty("FREIGHT", "not used", None),
    empty("SUMORDER", "excise duty (export only)", Some(12)),
    empty("SUMORDERDISCOUNT", "order discount (export only)", Some(12)),
    empty("SUMORDERVAT", "order VAT amount (export only)", Some(12)),
    empty(
        "SUMORDERTOTAL",
        "total order amount (export only)",
        Some(12),
    ),
    Spec {
        key: true,
        ..spec("EXTERNALID", "external order number", Kind::Text, 30)
    },
];

/// The `<ORDERLINE>` tags, in the documented order.
pub const LINE_FIELDS: &[Spec] = &[
    Spec {
        key: true,
        ..spec("PRODID", "product number", Kind::Text, 50)
    },
    spec("DESCRIPTION", "description", Kind::Text, 60),
    spec("QUANTITY", "quantity", Kind::Numeric(2), 12),
    spec("PRICE", "price", Kind::Numeric(3), 15),
    spec("DISCOUNT", "discount (%)", Kind::Numeric(2), 6),
    spec("VATCODE", "VAT code", Kind::Numeric(0), 9),
    spec("STOREID", "warehouse", Kind::Numeric(0), 2),
    spec("DELIVERYDATE", "delivery date", Kind::Date, 8),
];

/// The text fields, as `ORDER.TAG` / `ORDERLINE.TAG` (the keys of `on_too_long_fields`).
pub const TEXT_TAGS: &[&str] = &[
    "ORDER.CONTNAME",
    "ORDER.ADRINVO",
    "ORDER.ADRDELIV",
    "ORDER.REF",
    "ORDER.YOURREF",
    "ORDER.TEXT",
    "ORDER.SHIPTEXT",
    "ORDERLINE.DESCRIPTION",
];

/// Every field, as `ORDER.TAG` / `ORDERLINE.TAG` (the keys of `tags`).
pub const ALL_TAGS: &[&str] = &[
    "ORDER.ORDERID",
    "ORDER.CONTID",
    "ORDER.CONTNAME",
    "ORDER.ADRINVO",
    "ORDER.ADRDELIV",
    "ORDER.REF",
    "ORDER.YOURREF",
    "ORDER.EMPID",
    "ORDER.TEXT",
    "ORDER.SHIPTEXT",
    "ORDER.DATA4",
    "ORDER.DATA9",
    "ORDER.DATA15",
    "ORDER.DATA14",
    "ORDER.DATA2",
    "ORDER.FREIGHT",
    "ORDER.SUMORDER",
    "ORDER.SUMORDERDISCOUNT",
    "ORDER.SUMORDERVAT",
    "ORDER.SUMORDERTOTAL",
    "ORDER.EXTERNALID",
    "ORDERLINE.PRODID",
    "ORDERLINE.DESCRIPTION",
    "ORDERLINE.QUANTITY",
    "ORDERLINE.PRICE",
    "ORDERLINE.DISCOUNT",
    "ORDERLINE.VATCODE",
    "ORDERLINE.STOREID",
    "ORDERLINE.DELIVERYDATE",
];

/// The documented field table (`deploy/mamut/import/gbaox10.toml`), for the tests.
#[cfg(test)]
pub(crate) mod documented {
    use serde::Deserialize;

    pub const FIXTURE: &str = include_str!("../../../../../deploy/mamut/import/gbaox10.toml");

    #[derive(Debug, Deserialize)]
    pub struct Table {
        pub format: Format,
        pub order: Vec<Row>,
        pub line: Vec<Row>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Format {
        pub declaration: String,
        pub root: String,
        pub order_path: String,
        pub line_path: String,
        pub decimal_separator: String,
        pub address_line_break: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct Row {
        pub tag: Option<String>,
        #[serde(rename = "type")]
        pub kind: Option<String>,
        pub decimals: Option<u32>,
        pub max_len: Option<usize>,
        pub required: String,
        #[serde(rename = "use")]
        pub usage: Option<String>,
    }

    pub fn table() -> Table {
        toml::from_str(FIXTURE).expect("the documented field table parses")
    }
}
