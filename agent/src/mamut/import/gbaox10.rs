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
//!
//! This file turns an order into the fields' values; `fields` holds the documented field
//! table, `encode` the ISO-8859-1 text and the XML.

mod encode;
mod fields;

use rust_decimal::{Decimal, RoundingStrategy};
use shared::domain::{Address, Customer, Order};

use self::encode::write;
pub use self::encode::{DECLARATION_ENCODING, latin1};
#[cfg(test)]
use self::fields::documented;
pub use self::fields::{ALL_TAGS, Kind, LINE_FIELDS, ORDER_FIELDS, Spec, TEXT_TAGS};
use super::config::ImportConfig;
use crate::mamut::settings::TooLong;

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

#[cfg(test)]
mod tests;
