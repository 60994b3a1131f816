//! Reading and checking a GBAOX10 file, whole, before anything is written: ISO-8859-1 bytes
//! (each byte one character), parsed by a real XML parser (roxmltree), then every element and
//! value held against the documented table ([`Format`]). The first fault refuses the file,
//! named by tag and position (`ORDER 2, ORDERLINE 3: <QUANTITY> ...`, with the file line).
//!
//! What the documentation says and this follows: the declaration names iso-8859-1; the root is
//! `<GBAOX10>`; `<ORDERLIST>` holds `<ORDER>` and `<ORDERLINES>`, `<ORDERLINES>` holds
//! `<ORDERLINE>`; all tag names are present and upper case; required fields (one of customer
//! number / name, one of product number / description, the VAT code) have values; DATA15 is not
//! blank; maximum lengths; numbers with a full stop and at most the documented decimals; dates
//! YYYYMMDD; export-only fields empty.
//!
//! Where it is silent, the stand-in decides:
//! - the declaration is required (without one, XML means UTF-8); a byte-order mark is refused;
//! - several orders: several `<ORDERLIST>`s, or several `<ORDER>`/`<ORDERLINES>` pairs in one,
//!   each `<ORDERLINES>` belonging to the `<ORDER>` just before it; an `<ORDERLINES>` without an
//!   `<ORDER>` before it, a second `<ORDERLINES>` for one order, an order without lines and a
//!   file without orders are refused;
//! - a tag given twice in one `<ORDER>`/`<ORDERLINE>`, attributes, namespaces, elements inside
//!   a field and text between elements are refused;
//! - values are taken as written (no trimming); a value of only spaces counts as blank; a
//!   number or date with spaces around it is not a number or date;
//! - a number may have a leading minus; its length (sign and full stop included) is held to
//!   max_len as every value is, in characters;
//! - CONTID 0 does not count as a customer number for "customer name or number must be
//!   completed" (0 means "create a new customer", which needs a name);
//! - a `<ORDER>` whose ORDERID, customer number and customer name equal an earlier one's is
//!   the same order (GBAO10: ORDERID "used to separate orders"): its lines are added to the
//!   earlier order's, its other fields are not used;
//! - limits of the stand-in (not Mamut's): at most [`MAX_FILE_BYTES`], [`MAX_ORDERS`] orders and
//!   [`MAX_LINES`] lines in a file.

use std::collections::BTreeMap;

use roxmltree::{Document, Node, NodeType};
use rust_decimal::Decimal;

use super::format::{Field, Format, Kind, Required, Use, column};

pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_ORDERS: usize = 10_000;
pub const MAX_LINES: usize = 100_000;

/// One order of a checked file, with the values the import acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// 1-based position of its (first) `<ORDER>` in the file.
    pub position: usize,
    pub order_id: i64,
    /// ORDERID as written.
    pub order_id_text: String,
    /// 0: none given.
    pub customer_no: i64,
    pub customer_name: String,
    pub invoice_address: String,
    /// The external order number tag's value ("" when empty or not in the table).
    pub external_no: String,
    pub lines: Vec<Line>,
}

impl Order {
    /// What Mamut keeps as the external order number: the external order number tag's value,
    /// or ORDERID's when that is empty.
    pub fn external(&self) -> &str {
        if self.external_no.trim().is_empty() {
            &self.order_id_text
        } else {
            &self.external_no
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_no: String,
    pub description: String,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    pub discount: Option<Decimal>,
    pub vat_code: i64,
}

/// Why a file is refused: one line, naming the tag and the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// ISO-8859-1: every byte is the character with that code.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Checks a whole file and returns its orders, or the first reason to refuse it.
pub fn read(bytes: &[u8], format: &Format) -> Result<Vec<Order>, Refused> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Refused(format!(
            "the file has {} bytes; the stand-in reads at most {MAX_FILE_BYTES}",
            bytes.len()
        )));
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF])
        || bytes.starts_with(&[0xFF, 0xFE])
        || bytes.starts_with(&[0xFE, 0xFF])
    {
        return Err(Refused(format!(
            "the file starts with a byte-order mark (UTF-8 or UTF-16); GBAOX10 is {}",
            format.encoding
        )));
    }
    let text = latin1(bytes);
    declaration(&text, format)?;
    let doc = Document::parse(&text).map_err(|e| Refused(format!("not well-formed XML: {e}")))?;
    let mut reader = Reader {
        doc: &doc,
        format,
        orders: Vec::new(),
        count: 0,
        lines: 0,
    };
    reader.document()?;
    Ok(reader.orders)
}

/// The XML declaration must be there and name the table's encoding.
fn declaration(text: &str, format: &Format) -> Result<(), Refused> {
    let wanted = &format.encoding;
    if !text.starts_with("<?xml") {
        return Err(Refused(format!(
            "no XML declaration at the start of the file (without one XML means UTF-8); GBAOX10 needs encoding=\"{wanted}\""
        )));
    }
    let end = text
        .find("?>")
        .ok_or_else(|| Refused("the XML declaration is not closed with ?>".into()))?;
    let decl = &text[..end];
    let encoding = pseudo_attribute(decl, "encoding").ok_or_else(|| {
        Refused(format!(
            "the XML declaration names no encoding (XML then means UTF-8); GBAOX10 needs encoding=\"{wanted}\""
        ))
    })?;
    if !encoding.eq_ignore_ascii_case(wanted) {
        return Err(Refused(format!(
            "the XML declaration says encoding=\"{encoding}\"; GBAOX10 is {wanted}"
        )));
    }
    Ok(())
}

fn pseudo_attribute<'a>(decl: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = decl;
    while let Some(at) = rest.find(name) {
        let after = rest[at + name.len()..].trim_start();
        let preceded = rest[..at].ends_with(|c: char| c.is_whitespace());
        rest = &rest[at + name.len()..];
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        if !preceded {
            continue;
        }
        let value = value.trim_start();
        let quote = value.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let inner = &value[1..];
        return inner.find(quote).map(|end| &inner[..end]);
    }
    None
}

struct Reader<'d, 'i> {
    doc: &'d Document<'i>,
    format: &'d Format,
    orders: Vec<Order>,
    /// `<ORDER>` elements read so far.
    count: usize,
    /// `<ORDERLINE>` elements read so far.
    lines: usize,
}

/// Where in the file: `ORDER 2, ORDERLINE 3`.
#[derive(Clone, Copy)]
struct At {
    order: Option<usize>,
    line: Option<usize>,
}

impl<'d, 'i> Reader<'d, 'i> {
    /// An order `n` whose lines element is missing.
    fn without_lines(&self, n: usize, node: Node) -> Refused {
        let f = self.format;
        self.refuse(
            At {
                order: Some(n),
                line: None,
            },
            node,
            format!("<{}> without <{}>", f.order, f.lines),
        )
    }

    fn refuse(&self, at: At, node: Node, what: String) -> Refused {
        let pos = self.doc.text_pos_at(node.range().start);
        let f = self.format;
        let place = match (at.order, at.line) {
            (Some(o), Some(l)) => format!("{} {o}, {} {l}: ", f.order, f.line),
            (Some(o), None) => format!("{} {o}: ", f.order),
            _ => String::new(),
        };
        Refused(format!("{place}{what} (file line {})", pos.row))
    }

    /// Element checks every element gets: upper case, no namespace, no attributes.
    fn element(&self, at: At, node: Node) -> Result<String, Refused> {
        let name = node.tag_name().name();
        if name.chars().any(|c| c.is_lowercase()) {
            return Err(self.refuse(
                at,
                node,
                format!("tag <{name}> is not in upper case (all tag names must be in UPPER CASE)"),
            ));
        }
        if node.tag_name().namespace().is_some() {
            return Err(self.refuse(at, node, format!("tag <{name}> has a namespace")));
        }
        if let Some(a) = node.attributes().next() {
            return Err(self.refuse(
                at,
                node,
                format!(
                    "tag <{name}> has an attribute {:?}; GBAOX10 has none",
                    a.name()
                ),
            ));
        }
        Ok(name.to_owned())
    }

    /// The element children of `node`; refuses text other than white space between them.
    fn children(&self, at: At, node: Node<'d, 'i>) -> Result<Vec<Node<'d, 'i>>, Refused> {
        let mut out = Vec::new();
        for child in node.children() {
            match child.node_type() {
                NodeType::Element => out.push(child),
                NodeType::Text if !child.text().unwrap_or_default().trim().is_empty() => {
                    return Err(self.refuse(
                        at,
                        child,
                        format!(
                            "text {:?} directly inside <{}>",
                            short(child.text().unwrap_or_default()),
                            node.tag_name().name()
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn document(&mut self) -> Result<(), Refused> {
        let f = self.format;
        let top = At {
            order: None,
            line: None,
        };
        let root = self.doc.root_element();
        let name = self.element(top, root)?;
        if name != f.root {
            return Err(self.refuse(
                top,
                root,
                format!("the root is <{name}>; a GBAOX10 file is <{}>", f.root),
            ));
        }
        for list in self.children(top, root)? {
            let name = self.element(top, list)?;
            if name != f.list {
                return Err(self.refuse(
                    top,
                    list,
                    format!("unknown tag <{name}> in <{}> (only <{}>)", f.root, f.list),
                ));
            }
            self.list(list)?;
        }
        if self.orders.is_empty() {
            return Err(Refused(format!("the file has no <{}>", f.order)));
        }
        Ok(())
    }

    fn list(&mut self, list: Node<'d, 'i>) -> Result<(), Refused> {
        let f = self.format;
        // The ORDER read last, waiting for its ORDERLINES.
        let mut pending: Option<(usize, Node, BTreeMap<String, String>)> = None;
        for child in self.children(
            At {
                order: None,
                line: None,
            },
            list,
        )? {
            let at = At {
                order: pending.as_ref().map(|p| p.0),
                line: None,
            };
            let name = self.element(at, child)?;
            if name == f.order {
                if let Some((n, node, _)) = pending.take() {
                    return Err(self.without_lines(n, node));
                }
                self.count += 1;
                let count = self.count;
                if count > MAX_ORDERS {
                    return Err(self.refuse(
                        at,
                        child,
                        format!("more than {MAX_ORDERS} orders in one file (the stand-in's limit)"),
                    ));
                }
                let here = At {
                    order: Some(count),
                    line: None,
                };
                let fields = self.fields(here, child, &f.order_fields)?;
                pending = Some((count, child, fields));
            } else if name == f.lines {
                let Some((n, node, head)) = pending.take() else {
                    return Err(self.refuse(
                        at,
                        child,
                        format!(
                            "<{}> without an <{}> before it (or a second one for the same order)",
                            f.lines, f.order
                        ),
                    ));
                };
                let here = At {
                    order: Some(n),
                    line: None,
                };
                let mut lines = Vec::new();
                for (i, line) in self.children(here, child)?.into_iter().enumerate() {
                    let at_line = At {
                        order: Some(n),
                        line: Some(i + 1),
                    };
                    let name = self.element(at_line, line)?;
                    if name != f.line {
                        return Err(self.refuse(
                            at_line,
                            line,
                            format!("unknown tag <{name}> in <{}> (only <{}>)", f.lines, f.line),
                        ));
                    }
                    self.lines += 1;
                    if self.lines > MAX_LINES {
                        return Err(self.refuse(
                            at_line,
                            line,
                            format!(
                                "more than {MAX_LINES} lines in one file (the stand-in's limit)"
                            ),
                        ));
                    }
                    let fields = self.fields(at_line, line, &f.line_fields)?;
                    lines.push(self.line(at_line, line, &fields)?);
                }
                if lines.is_empty() {
                    return Err(self.refuse(
                        here,
                        child,
                        format!("<{}> holds no <{}>", f.lines, f.line),
                    ));
                }
                self.order(here, node, &head, lines)?;
            } else {
                return Err(self.refuse(
                    at,
                    child,
                    format!(
                        "unknown tag <{name}> in <{}> (only <{}> and <{}>)",
                        f.list, f.order, f.lines
                    ),
                ));
            }
        }
        if let Some((n, node, _)) = pending {
            return Err(self.without_lines(n, node));
        }
        Ok(())
    }

    /// The fields of one `<ORDER>` or `<ORDERLINE>`: every tag of the table exactly once, each
    /// value checked.
    fn fields(
        &self,
        at: At,
        node: Node,
        table: &[Field],
    ) -> Result<BTreeMap<String, String>, Refused> {
        let container = node.tag_name().name();
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        let mut nodes = Vec::new();
        for child in self.children(at, node)? {
            let name = self.element(at, child)?;
            if !table.iter().any(|f| f.tag == name) {
                return Err(self.refuse(
                    at,
                    child,
                    format!("unknown tag <{name}> in <{container}>"),
                ));
            }
            let mut value = String::new();
            for part in child.children() {
                match part.node_type() {
                    NodeType::Text => value.push_str(part.text().unwrap_or_default()),
                    NodeType::Element => {
                        return Err(self.refuse(
                            at,
                            part,
                            format!(
                                "<{name}> holds an element <{}>; a field holds text only",
                                part.tag_name().name()
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            if values.insert(name.clone(), value).is_some() {
                return Err(self.refuse(
                    at,
                    child,
                    format!("<{name}> is given twice in <{container}>"),
                ));
            }
            nodes.push((name, child));
        }
        for field in table {
            if !values.contains_key(&field.tag) {
                return Err(self.refuse(
                    at,
                    node,
                    format!(
                        "<{}> is missing from <{container}> (all tag names must be included, empty where there is no value)",
                        field.tag
                    ),
                ));
            }
        }
        for (name, child) in &nodes {
            let Some(field) = table.iter().find(|f| &f.tag == name) else {
                continue;
            };
            let value = values.get(name).map(String::as_str).unwrap_or_default();
            check_value(field, value).map_err(|why| self.refuse(at, *child, why))?;
        }
        // Groups: at least one with a value (CONTID 0 is no customer number).
        let mut groups: BTreeMap<&str, (Vec<&str>, bool)> = BTreeMap::new();
        for field in table {
            if let Required::OneOf(group) = &field.required {
                let value = values
                    .get(&field.tag)
                    .map(String::as_str)
                    .unwrap_or_default();
                let zero_number = field.column == Some(column::CUSTOMER_NO) && is_zero(value);
                let given = !blank(value) && !zero_number;
                let entry = groups.entry(group.as_str()).or_default();
                entry.0.push(&field.tag);
                entry.1 |= given;
            }
        }
        for (group, (tags, given)) in groups {
            if !given {
                let list = tags
                    .iter()
                    .map(|t| format!("<{t}>"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let zero = if group == "customer" {
                    " (a customer number of 0 is none)"
                } else {
                    ""
                };
                return Err(self.refuse(
                    at,
                    node,
                    format!("{list} must be completed ({group}){zero}"),
                ));
            }
        }
        Ok(values)
    }

    fn line(&self, at: At, node: Node, fields: &BTreeMap<String, String>) -> Result<Line, Refused> {
        let f = self.format;
        let get = |c: u32| -> &str {
            f.line_tag(c)
                .and_then(|t| fields.get(t))
                .map(String::as_str)
                .unwrap_or_default()
        };
        let decimal = |c: u32| -> Result<Option<Decimal>, Refused> {
            let v = get(c);
            if blank(v) {
                return Ok(None);
            }
            v.parse::<Decimal>().map(Some).map_err(|e| {
                self.refuse(
                    at,
                    node,
                    format!("<{}> {v:?}: {e}", f.line_tag(c).unwrap_or_default()),
                )
            })
        };
        Ok(Line {
            product_no: get(column::PRODUCT_NO).to_owned(),
            description: get(column::DESCRIPTION).to_owned(),
            quantity: decimal(column::QUANTITY)?,
            price: decimal(column::PRICE)?,
            discount: decimal(column::DISCOUNT)?,
            vat_code: integer(get(column::VAT_CODE)).unwrap_or(0),
        })
    }

    fn order(
        &mut self,
        at: At,
        node: Node,
        head: &BTreeMap<String, String>,
        lines: Vec<Line>,
    ) -> Result<(), Refused> {
        let f = self.format;
        let get = |c: u32| -> &str {
            f.order_tag(c)
                .and_then(|t| head.get(t))
                .map(String::as_str)
                .unwrap_or_default()
        };
        let order_id_text = get(column::ORDER_ID).to_owned();
        let order_id = integer(&order_id_text).ok_or_else(|| {
            self.refuse(
                at,
                node,
                format!(
                    "<{}> {order_id_text:?} is not an order number",
                    f.order_tag(column::ORDER_ID).unwrap_or_default()
                ),
            )
        })?;
        let customer_no = integer(get(column::CUSTOMER_NO)).unwrap_or(0);
        let customer_name = get(column::CUSTOMER_NAME).to_owned();
        let position = at.order.unwrap_or(0);
        if let Some(earlier) = self.orders.iter_mut().find(|o| {
            o.order_id == order_id
                && o.customer_no == customer_no
                && o.customer_name == customer_name
        }) {
            earlier.lines.extend(lines);
            return Ok(());
        }
        self.orders.push(Order {
            position,
            order_id,
            order_id_text,
            customer_no,
            customer_name,
            invoice_address: get(column::INVOICE_ADDRESS).to_owned(),
            external_no: get(column::EXTERNAL_NO).to_owned(),
            lines,
        });
        Ok(())
    }
}

fn blank(v: &str) -> bool {
    v.trim().is_empty()
}

fn is_zero(v: &str) -> bool {
    integer(v) == Some(0)
}

fn integer(v: &str) -> Option<i64> {
    if v.is_empty()
        || !v
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    v.parse().ok()
}

fn short(v: &str) -> String {
    let s: String = v.trim().chars().take(40).collect();
    if v.trim().chars().count() > 40 {
        format!("{s}...")
    } else {
        s
    }
}

/// One value against its field's row of the table.
pub fn check_value(field: &Field, value: &str) -> Result<(), String> {
    let tag = &field.tag;
    if field.usage == Use::ExportOnly {
        if !value.is_empty() {
            return Err(format!(
                "<{tag}> is export only and must be empty on import, not {:?}",
                short(value)
            ));
        }
        return Ok(());
    }
    if blank(value) {
        if field.required == Required::Yes {
            return Err(format!("<{tag}> is required and empty"));
        }
        if field.non_blank {
            return Err(format!(
                "<{tag}> cannot be blank (the documentation: 1 for none)"
            ));
        }
        return Ok(());
    }
    let length = value.chars().count();
    if let Some(max) = field.max_len
        && length > max
    {
        return Err(format!(
            "<{tag}> has {length} characters, more than its maximum of {max}: {:?}",
            short(value)
        ));
    }
    match field.kind {
        Kind::Text | Kind::Any => Ok(()),
        Kind::Numeric(decimals) => number(value, decimals).map_err(|why| {
            let wanted = match decimals {
                0 => "an integer (no decimals)".to_owned(),
                n => format!("a number with at most {n} decimals and a full stop"),
            };
            format!("<{tag}> {value:?} is not {wanted}: {why}")
        }),
        Kind::Date => {
            date(value).map_err(|why| format!("<{tag}> {value:?} is not a date YYYYMMDD: {why}"))
        }
    }
}

fn number(value: &str, decimals: u32) -> Result<(), String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err("digits expected before the decimals".into());
    }
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err("digits expected after the full stop".into());
        }
        if fraction.len() > decimals as usize {
            return Err(format!("{} decimals", fraction.len()));
        }
    }
    Ok(())
}

fn date(value: &str) -> Result<(), String> {
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("8 digits expected".into());
    }
    let part = |r: std::ops::Range<usize>| value[r].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (part(0..4) as i32, part(4..6), part(6..8));
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .map(|_| ())
        .ok_or_else(|| "no such day".into())
}
