//! The GBAOX10 file of one shop order, as Mamut's import documents the format
//! (`deploy/mamut/import/gbaox10.toml` holds the documented field table with its sources; a test
//! checks [`ORDER_FIELDS`] and [`LINE_FIELDS`] against it and every produced file with it).
//!
//! - ISO-8859-1 with the declaration the documentation gives; characters outside it are
//!   replaced (typographic quotes and dashes by their plain forms, anything else by `?`) and
//!   reported;
//! - every tag of the table in every `<ORDER>` and `<ORDERLINE>`, upper case, in the documented
//!   order ("All tag names must be included"), empty where there is no value;
//! - texts checked against the documented maximum lengths: refused or cut, per field, as
//!   `on_too_long` says; the keys (external order number, product number) are never cut;
//! - addresses with `:` as the line break (a `:` inside a value becomes a space), amounts with a
//!   full stop and the documented decimals, dates as YYYYMMDD.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use rust_decimal::{Decimal, RoundingStrategy};
use shared::domain::{Address, Customer, Order};

use super::config::ImportConfig;
use crate::config::TooLong;

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

/// The declaration the documentation gives (well-formed, as the customer format prints it).
pub const DECLARATION_ENCODING: &str = "iso-8859-1";

/// A file ready to be written, and what was changed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// ISO-8859-1 bytes.
    pub bytes: Vec<u8>,
    /// Changes a merchant should know of: replaced characters, cut texts.
    pub notes: Vec<String>,
    /// How many `<ORDERLINE>`s the file has.
    pub lines: usize,
}

/// Why an order cannot be written as GBAOX10 (permanent: the same order fails every time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

type Fields = Vec<(&'static Spec, String)>;

struct Build<'a> {
    config: &'a ImportConfig,
    notes: Vec<String>,
}

/// The GBAOX10 file of `order`, whose external order number is `external`.
pub fn document(order: &Order, external: &str, config: &ImportConfig) -> Result<Document, Refused> {
    let mut b = Build {
        config,
        notes: Vec::new(),
    };
    if order.currency != config.currency {
        return Err(Refused(format!(
            "the order is in {}, and this Mamut client takes {} (mamut.import.currency): Mamut's \
             order import has no currency field, so the amounts would be read as {}",
            order.currency, config.currency, config.currency
        )));
    }
    let head = b.head(order, external)?;
    let mut lines = Vec::with_capacity(order.lines.len() + 1);
    for (i, line) in order.lines.iter().enumerate() {
        let at = format!("line {}", i + 1);
        let too_large = || Refused(format!("{at}: the amounts are too large to compute"));
        let gross = line
            .unit_price
            .checked_mul(Decimal::from(line.quantity))
            .ok_or_else(too_large)?;
        let discount = if gross.is_zero() {
            Decimal::ZERO
        } else {
            (line.discount / gross)
                .checked_mul(Decimal::ONE_HUNDRED)
                .ok_or_else(too_large)?
        };
        // The format takes a percentage with 2 decimals: say so when Mamut's amount differs.
        let percent = discount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let mut mamut =
            (gross.checked_mul(percent).ok_or_else(too_large)? / Decimal::ONE_HUNDRED).round_dp(2);
        mamut.rescale(2);
        if mamut != line.discount.round_dp(2) {
            b.notes.push(format!(
                "{at}: the discount of {} is sent as {percent} % (the format's 2 decimals), \
                 which Mamut computes as {mamut}",
                line.discount
            ));
        }
        lines.push(b.line(
            &at,
            Some(line.article_number.as_str()),
            &line.name,
            Decimal::from(line.quantity),
            b.net(&at, order, line.unit_price, line.vat_rate)?,
            discount,
            line.vat_rate,
        )?);
    }
    if let Some(shipping) = &order.shipping {
        lines.push(b.line(
            "shipping",
            config.shipping_article.as_deref(),
            &shipping.name,
            Decimal::ONE,
            b.net("shipping", order, shipping.price, shipping.vat_rate)?,
            Decimal::ZERO,
            shipping.vat_rate,
        )?);
    }
    if lines.is_empty() {
        return Err(Refused("the order has no lines".to_owned()));
    }
    let count = lines.len();
    let bytes =
        write(config, &head, &lines).map_err(|e| Refused(format!("cannot write GBAOX10: {e}")))?;
    Ok(Document {
        bytes,
        notes: b.notes,
        lines: count,
    })
}

/// The documented field `tag` of `fields` (the writer names only fields of its own tables).
fn find(fields: &'static [Spec], tag: &str) -> Result<&'static Spec, Refused> {
    fields.iter().find(|s| s.tag == tag).ok_or_else(|| {
        Refused(format!(
            "the writer has no field {tag} (a bug in the agent)"
        ))
    })
}

impl Build<'_> {
    fn head(&mut self, order: &Order, external: &str) -> Result<Fields, Refused> {
        let c = self.config;
        let customer = &order.customer;
        // ORDERID separates orders in a file; Mamut keeps it as the external order number by
        // one reading of the documentation, so a numeric shop order id goes there as well.
        let order_id = digits(&order.id, 9).unwrap_or("1");
        let contid = customer
            .id
            .as_deref()
            .and_then(|id| digits(id, 9))
            .unwrap_or("0");
        let payment = order.payment.as_ref();
        let shipping = order.shipping.as_ref();
        let payment_text = payment.map(|p| match &p.reference {
            Some(r) => format!("{} {r}", p.method),
            None => p.method.clone(),
        });
        let values: [(&str, Option<String>); 21] = [
            ("ORDERID", Some(order_id.to_owned())),
            ("CONTID", Some(contid.to_owned())),
            ("CONTNAME", Some(customer_name(customer))),
            ("ADRINVO", Some(address(&customer.billing_address))),
            ("ADRDELIV", customer.delivery_address.as_ref().map(address)),
            ("REF", Some(order.number.clone())),
            ("YOURREF", person(customer)),
            ("EMPID", c.employee.map(|n| n.to_string())),
            ("TEXT", payment_text),
            ("SHIPTEXT", shipping.map(|s| s.name.clone())),
            (
                "DATA4",
                payment
                    .and_then(|p| c.payment_terms.get(&p.method))
                    .map(u32::to_string),
            ),
            ("DATA9", c.response_type.map(|n| n.to_string())),
            ("DATA15", Some(c.department.to_string())),
            ("DATA14", c.project.map(|n| n.to_string())),
            (
                "DATA2",
                shipping
                    .and_then(|s| c.delivery_types.get(&s.method))
                    .map(u32::to_string),
            ),
            ("FREIGHT", None),
            ("SUMORDER", None),
            ("SUMORDERDISCOUNT", None),
            ("SUMORDERVAT", None),
            ("SUMORDERTOTAL", None),
            ("EXTERNALID", Some(external.to_owned())),
        ];
        values
            .into_iter()
            .map(|(tag, value)| {
                let spec = find(ORDER_FIELDS, tag)?;
                Ok((spec, self.text("ORDER", "order", spec, value)?))
            })
            .collect()
    }

    /// A price excluding VAT (Mamut's order lines are priced without it).
    fn net(
        &self,
        at: &str,
        order: &Order,
        price: Decimal,
        vat_rate: Decimal,
    ) -> Result<Decimal, Refused> {
        if !(Decimal::ZERO..=Decimal::ONE_HUNDRED).contains(&vat_rate) {
            return Err(Refused(format!(
                "{at}: the VAT rate {vat_rate} % is not a VAT rate (0 to 100)"
            )));
        }
        Ok(if order.prices_include_vat {
            price / (Decimal::ONE + vat_rate / Decimal::ONE_HUNDRED)
        } else {
            price
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        at: &str,
        article: Option<&str>,
        description: &str,
        quantity: Decimal,
        price: Decimal,
        discount: Decimal,
        vat_rate: Decimal,
    ) -> Result<Fields, Refused> {
        let vat_code = self
            .config
            .vat_codes
            .iter()
            .find(|(rate, _)| rate.parse::<Decimal>().ok() == Some(vat_rate))
            .map_or(0, |(_, code)| *code);
        let values = [
            ("PRODID", article.map(str::to_owned)),
            ("DESCRIPTION", Some(description.to_owned())),
            ("QUANTITY", Some(self.number(at, "QUANTITY", quantity)?)),
            ("PRICE", Some(self.number(at, "PRICE", price)?)),
            ("DISCOUNT", Some(self.number(at, "DISCOUNT", discount)?)),
            ("VATCODE", Some(vat_code.to_string())),
            ("STOREID", self.config.warehouse.map(|n| n.to_string())),
            ("DELIVERYDATE", None),
        ];
        values
            .into_iter()
            .map(|(tag, value)| {
                let spec = find(LINE_FIELDS, tag)?;
                Ok((spec, self.text("ORDERLINE", at, spec, value)?))
            })
            .collect()
    }

    /// A decimal with exactly the documented decimals, a full stop as separator.
    fn number(&self, at: &str, tag: &str, value: Decimal) -> Result<String, Refused> {
        let spec = find(LINE_FIELDS, tag)?;
        let Kind::Numeric(decimals) = spec.kind else {
            return Ok(value.to_string());
        };
        if value.is_sign_negative() && !value.is_zero() {
            return Err(Refused(format!(
                "{at}: {} is negative ({value}); Mamut's order import takes no credit lines",
                spec.label
            )));
        }
        let mut rounded =
            value.round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero);
        rounded.rescale(decimals);
        Ok(rounded.to_string())
    }

    /// A value made fit for the field: Latin-1, no line breaks, within the length.
    fn text(
        &mut self,
        element: &str,
        at: &str,
        spec: &Spec,
        value: Option<String>,
    ) -> Result<String, Refused> {
        let Some(value) = value else {
            return Ok(String::new());
        };
        let name = format!("{element}.{}", spec.tag);
        let (latin1, replaced) = latin1(&value);
        if spec.key && latin1 != value {
            return Err(Refused(format!(
                "{at}: {} {value:?} has characters Mamut's import cannot carry ({}): it \
                 identifies the order or the product and must arrive as it is",
                spec.label,
                if replaced.is_empty() {
                    "line breaks".to_owned()
                } else {
                    replaced.join(" ")
                }
            )));
        }
        if !replaced.is_empty() {
            self.notes.push(format!(
                "{at}: {} ({name}): {} not in ISO-8859-1, replaced",
                spec.label,
                replaced.join(" ")
            ));
        }
        let Some(max) = spec.max_len else {
            return Ok(latin1);
        };
        let len = latin1.chars().count();
        if len <= max {
            return Ok(latin1);
        }
        let cut = spec.kind == Kind::Text
            && !spec.key
            && self.config.too_long(&name) == TooLong::Truncate;
        if !cut {
            return Err(Refused(format!(
                "{at}: {} is {len} characters, Mamut's import allows {max} ({name}){}",
                spec.label,
                if spec.key {
                    ": it identifies the order or the product and is never cut"
                } else {
                    "; fix the shop's data or set mamut.import.on_too_long_fields, then replay"
                }
            )));
        }
        self.notes.push(format!(
            "{at}: {} ({name}) was cut from {len} to {max} characters",
            spec.label
        ));
        Ok(latin1.chars().take(max).collect())
    }
}

/// The value when it is 1 to `max` ASCII digits and not zero.
fn digits(value: &str, max: usize) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.bytes().all(|b| b.is_ascii_digit())
        && value.bytes().any(|b| b != b'0');
    ok.then_some(value)
}

fn person(customer: &Customer) -> Option<String> {
    let name = [&customer.first_name, &customer.last_name]
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty()).then_some(name)
}

fn customer_name(customer: &Customer) -> String {
    customer
        .company_name
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| person(customer))
        .or_else(|| customer.email.clone())
        .unwrap_or_default()
}

/// Address lines joined by `:`, the format's line break; a `:` inside a line would break it.
fn address(a: &Address) -> String {
    let mut lines: Vec<String> = a
        .street
        .lines()
        .map(|l| l.replace(':', " ").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    lines.push(format!("{} {}", a.zip.trim(), a.city.trim()).replace(':', " "));
    lines.push(a.country.replace(':', " "));
    lines.retain(|l| !l.trim().is_empty());
    lines.join(":")
}

/// The text in ISO-8859-1, and the characters that had to be replaced.
pub fn latin1(value: &str) -> (String, Vec<String>) {
    let mut replaced = Vec::new();
    let out = value
        .chars()
        .map(|c| {
            let plain = match c {
                // A line break in a text is a space (in an address, `:` breaks lines).
                '\t' | '\n' | '\r' => return " ".to_owned(),
                c if c.is_control() => " ",
                c if (c as u32) <= 0xFF => return c.to_string(),
                '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => "'",
                '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' => "\"",
                '\u{2010}'..='\u{2015}' | '\u{2212}' => "-",
                '\u{2026}' => "...",
                '\u{20AC}' => "EUR",
                '\u{00A0}' | '\u{2000}'..='\u{200B}' | '\u{202F}' => " ",
                _ => "?",
            };
            replaced.push(format!("U+{:04X}", c as u32));
            plain.to_owned()
        })
        .collect();
    (out, replaced)
}

fn write(config: &ImportConfig, head: &Fields, lines: &[Fields]) -> std::io::Result<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new(
        "1.0",
        Some(DECLARATION_ENCODING),
        None,
    )))?;
    w.write_event(Event::Text(BytesText::from_escaped("\r\n")))?;
    let fields = |w: &mut Writer<Vec<u8>>,
                  element: &str,
                  fields: &Fields,
                  extra: &[String]|
     -> std::io::Result<()> {
        for (spec, value) in fields {
            w.create_element(config.tag(element, spec.tag))
                .write_text_content(BytesText::new(value))?;
        }
        for tag in extra {
            w.create_element(tag.as_str())
                .write_text_content(BytesText::new(""))?;
        }
        Ok(())
    };
    w.create_element("GBAOX10").write_inner_content(|w| {
        w.create_element("ORDERLIST").write_inner_content(|w| {
            w.create_element("ORDER")
                .write_inner_content(|w| fields(w, "ORDER", head, &config.extra_order_tags))?;
            w.create_element("ORDERLINES").write_inner_content(|w| {
                for line in lines {
                    w.create_element("ORDERLINE").write_inner_content(|w| {
                        fields(w, "ORDERLINE", line, &config.extra_line_tags)
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })?;
    let text = String::from_utf8(w.into_inner()).map_err(std::io::Error::other)?;
    // Every character is ISO-8859-1 by now (`latin1`), one byte each.
    text.chars()
        .map(|c| u8::try_from(c as u32).map_err(std::io::Error::other))
        .collect()
}

/// The documented field table (`deploy/mamut/import/gbaox10.toml`), for the tests.
#[cfg(test)]
pub(crate) mod documented {
    use serde::Deserialize;

    pub const FIXTURE: &str = include_str!("../../../../deploy/mamut/import/gbaox10.toml");

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

#[cfg(test)]
mod tests;
