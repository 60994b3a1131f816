//! Order validation: what an order must look like before it is written to Mamut.
//!
//! A webhook that parses can still carry an order no bookkeeping should take: a total that
//! does not match its lines, a negative total, a VAT rate of 1000 %, a twelve-letter currency,
//! a 10 KB e-mail address. Such an order is stored and held with its problems (state `held`,
//! see `relay/src/ingest.rs` and `relay/src/enrich.rs`), not delivered; an operator sees the
//! problems in the admin API, edits the payload and replays it.
//!
//! The rules, each reported with the field it concerns:
//!
//! - currency: three capital letters (ISO 4217 form); countries: two (ISO 3166-1 alpha-2);
//! - 1 to [`MAX_LINES`] lines; quantity 1 to [`MAX_QUANTITY`]; amounts within
//!   ±[`MAX_AMOUNT`]; a discount from 0 up to the line's amount; shipping not negative;
//! - VAT rates from 0 to [`MAX_VAT_RATE`] %;
//! - the total not negative, and equal to the lines and shipping (with VAT added when prices
//!   exclude it) within [`TOLERANCE_BASE`] plus [`TOLERANCE_PER_LINE`] per line, which allows
//!   per-line VAT rounding and rounding to whole units of the currency;
//! - the customer has a name (a person's or a company's); an e-mail address, when given, has
//!   one `@` with text on both sides, no spaces and at most [`MAX_EMAIL`] characters (RFC 5321);
//! - text fields at most [`MAX_TEXT`] characters and without control characters (a street may
//!   have line breaks).

use rust_decimal::Decimal;
use serde::Serialize;
use shared::domain::{Address, Order};

/// Most lines in one order.
pub const MAX_LINES: usize = 1_000;
/// Most units on one line.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// Largest amount (price, discount, total) in the order's currency, either sign.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Highest VAT rate in percent (the Nordic rates are 0 to 25.5).
pub const MAX_VAT_RATE: Decimal = Decimal::from_parts(50, 0, 0, false, 0);
/// How far the total may be from the lines and shipping: 0.50, plus 0.01 per line.
pub const TOLERANCE_BASE: Decimal = Decimal::from_parts(50, 0, 0, false, 2);
pub const TOLERANCE_PER_LINE: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
/// Longest e-mail address (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest text field (names, street, city, methods, references).
pub const MAX_TEXT: usize = 500;

/// One thing wrong with an order: which field, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Where in the webhook body, e.g. `order.lines[2].vat_rate`.
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Most problems named in an event's reason; the payload view lists them all.
pub const DESCRIBED: usize = 20;

/// The problems, as one line for an event's `last_error` and history (the first
/// [`DESCRIBED`] of them).
pub fn describe(problems: &[Problem]) -> String {
    let list: Vec<String> = problems
        .iter()
        .take(DESCRIBED)
        .map(Problem::to_string)
        .collect();
    let more = match problems.len().saturating_sub(DESCRIBED) {
        0 => String::new(),
        n => format!("; and {n} more (the event's payload view lists them all)"),
    };
    format!("held, the order is invalid: {}{more}", list.join("; "))
}

/// Everything wrong with `order`; empty when it can be written to Mamut.
pub fn problems(order: &Order) -> Vec<Problem> {
    let mut found = Found::default();
    text(&mut found, "order.number", &order.number, false);
    text(&mut found, "order.status", &order.status, false);
    let currency = &order.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        found.add(
            "order.currency",
            format!(
                "{} is not a currency code (three capital letters, ISO 4217, e.g. SEK)",
                quoted(currency)
            ),
        );
    }
    customer(&mut found, order);
    lines(&mut found, order);
    if let Some(shipping) = &order.shipping {
        text(&mut found, "order.shipping.method", &shipping.method, false);
        text(&mut found, "order.shipping.name", &shipping.name, false);
        amount(&mut found, "order.shipping.price", shipping.price, false);
        vat_rate(&mut found, "order.shipping.vat_rate", shipping.vat_rate);
    }
    if let Some(payment) = &order.payment {
        text(&mut found, "order.payment.method", &payment.method, false);
        text(&mut found, "order.payment.status", &payment.status, false);
        if let Some(reference) = &payment.reference {
            text(&mut found, "order.payment.reference", reference, false);
        }
    }
    amount(&mut found, "order.total", order.total, false);
    // The sum is only worth comparing when the amounts that go into it are sound.
    if !found.amounts_unsound {
        total(&mut found, order);
    }
    found.problems
}

#[derive(Default)]
struct Found {
    problems: Vec<Problem>,
    /// An amount, quantity or VAT rate is wrong (or there are no lines).
    amounts_unsound: bool,
}

impl Found {
    fn add(&mut self, field: impl Into<String>, problem: String) {
        self.problems.push(Problem {
            field: field.into(),
            problem,
        });
    }

    fn add_amount(&mut self, field: impl Into<String>, problem: String) {
        self.amounts_unsound = true;
        self.add(field, problem);
    }
}

/// A value for a message: at most 40 characters of it, quoted.
fn quoted(value: &str) -> String {
    let mut short: String = value.chars().take(40).collect();
    if short.len() < value.len() {
        short.push('…');
    }
    format!("{short:?}")
}

fn text(found: &mut Found, field: &str, value: &str, line_breaks: bool) {
    let length = value.chars().count();
    if length > MAX_TEXT {
        found.add(
            field,
            format!("is {length} characters long; at most {MAX_TEXT} are taken"),
        );
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(line_breaks && (c == '\n' || c == '\r')))
    {
        found.add(field, "contains control characters".into());
    }
}

fn amount(found: &mut Found, field: &str, value: Decimal, negative_allowed: bool) {
    if value.abs() > MAX_AMOUNT {
        found.add_amount(
            field,
            format!("{value} is larger than {MAX_AMOUNT}, the largest amount taken"),
        );
    } else if value.is_sign_negative() && !value.is_zero() && !negative_allowed {
        found.add_amount(field, format!("{value} is negative"));
    }
}

fn vat_rate(found: &mut Found, field: &str, rate: Decimal) {
    if rate.is_sign_negative() && !rate.is_zero() || rate > MAX_VAT_RATE {
        found.add_amount(
            field,
            format!("{rate} % is not a VAT rate (0 to {MAX_VAT_RATE} % are taken)"),
        );
    }
}

fn customer(found: &mut Found, order: &Order) {
    let customer = &order.customer;
    let optional = [
        ("order.customer.id", &customer.id),
        ("order.customer.first_name", &customer.first_name),
        ("order.customer.last_name", &customer.last_name),
        ("order.customer.company_name", &customer.company_name),
        ("order.customer.org_no", &customer.org_no),
        ("order.customer.phone", &customer.phone),
        ("order.customer.customer_group", &customer.customer_group),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            text(found, field, value, false);
        }
    }
    let named = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
    if !named(&customer.first_name) && !named(&customer.last_name) && !named(&customer.company_name)
    {
        found.add(
            "order.customer",
            "has no name: give first_name, last_name or company_name".into(),
        );
    }
    if let Some(email) = &customer.email {
        let length = email.chars().count();
        let well_formed = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if length > MAX_EMAIL {
            found.add(
                "order.customer.email",
                format!("is {length} characters long; an e-mail address has at most {MAX_EMAIL}"),
            );
        } else if !well_formed {
            found.add(
                "order.customer.email",
                format!("{} is not an e-mail address", quoted(email)),
            );
        }
    }
    address(
        found,
        "order.customer.billing_address",
        &customer.billing_address,
    );
    if let Some(delivery) = &customer.delivery_address {
        address(found, "order.customer.delivery_address", delivery);
    }
}

fn address(found: &mut Found, field: &str, address: &Address) {
    text(found, &format!("{field}.street"), &address.street, true);
    text(found, &format!("{field}.zip"), &address.zip, false);
    text(found, &format!("{field}.city"), &address.city, false);
    let country = &address.country;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        found.add(
            format!("{field}.country"),
            format!(
                "{} is not a country code (two capital letters, ISO 3166-1, e.g. SE)",
                quoted(country)
            ),
        );
    }
}

fn lines(found: &mut Found, order: &Order) {
    if order.lines.is_empty() {
        found.add_amount("order.lines", "the order has no lines".into());
    }
    if order.lines.len() > MAX_LINES {
        found.add_amount(
            "order.lines",
            format!(
                "the order has {} lines; at most {MAX_LINES} are taken",
                order.lines.len()
            ),
        );
        return;
    }
    for (i, line) in order.lines.iter().enumerate() {
        let field = |name: &str| format!("order.lines[{i}].{name}");
        text(found, &field("name"), &line.name, false);
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            found.add_amount(
                field("quantity"),
                format!(
                    "{} is not a quantity (1 to {MAX_QUANTITY} are taken)",
                    line.quantity
                ),
            );
        }
        // A negative unit price is a credit line (a gift card, a return).
        amount(found, &field("unit_price"), line.unit_price, true);
        amount(found, &field("discount"), line.discount, false);
        vat_rate(found, &field("vat_rate"), line.vat_rate);
        let gross = Decimal::from(line.quantity).checked_mul(line.unit_price.abs());
        if gross.is_some_and(|gross| line.discount > gross) {
            found.add_amount(
                field("discount"),
                format!(
                    "{} is more than the line's amount ({} × {})",
                    line.discount, line.quantity, line.unit_price
                ),
            );
        }
    }
}

/// Compares the total with the lines and shipping.
fn total(found: &mut Found, order: &Order) {
    let Some(expected) = expected_total(order) else {
        found.add(
            "order.total",
            "the lines' amounts are too large to add up".into(),
        );
        return;
    };
    let allowed = Decimal::from(order.lines.len())
        .checked_mul(TOLERANCE_PER_LINE)
        .and_then(|per_line| per_line.checked_add(TOLERANCE_BASE))
        .unwrap_or(TOLERANCE_BASE);
    let difference = (order.total - expected).abs();
    if difference > allowed {
        let vat = if order.prices_include_vat {
            ""
        } else {
            ", VAT added"
        };
        found.add(
            "order.total",
            format!(
                "{} does not match the lines and shipping ({}{vat}; {} apart, at most {} allowed)",
                order.total,
                expected.round_dp(2),
                difference.round_dp(2),
                allowed
            ),
        );
    }
}

/// The lines and shipping added up, VAT included; `None` when it overflows.
fn expected_total(order: &Order) -> Option<Decimal> {
    let hundred = Decimal::ONE_HUNDRED;
    let with_vat = |net: Decimal, rate: Decimal| -> Option<Decimal> {
        if order.prices_include_vat {
            Some(net)
        } else {
            let vat = net.checked_mul(rate)?.checked_div(hundred)?.round_dp(2);
            net.checked_add(vat)
        }
    };
    let mut sum = Decimal::ZERO;
    for line in &order.lines {
        let net = Decimal::from(line.quantity)
            .checked_mul(line.unit_price)?
            .checked_sub(line.discount)?;
        sum = sum.checked_add(with_vat(net, line.vat_rate)?)?;
    }
    if let Some(shipping) = &order.shipping {
        sum = sum.checked_add(with_vat(shipping.price, shipping.vat_rate)?)?;
    }
    Some(sum)
}

#[cfg(test)]
mod tests;
