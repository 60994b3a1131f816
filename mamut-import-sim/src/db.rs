//! Writing a checked file's orders into the Mamut stand-in's tables, directly in PostgreSQL
//! (the schema mamut-sim serves; the agent reads them back over TDS). One transaction for the
//! whole file, under `LOCK TABLE orders, customers IN EXCLUSIVE MODE`; rows get their
//! rowversions from the stand-in's trigger (`tsql_next_rowversion()`), so the agent's watcher
//! sees them once the transaction commits, as on SQL Server.
//!
//! What the documentation says and this follows: every imported order gets a new order number;
//! the file's order number (or the external order number tag's value) is kept as the external
//! order number; the order goes to an existing customer found by customer number + name (or
//! number alone when the name is blank), then by name, then by ExtID, else to a new customer
//! that keeps the file's customer number as ExtID; an unknown or inactive product number
//! makes a free-text line with the file's description; VAT code 0 = the product's VAT, 1 = none.
//!
//! Where it is silent, the stand-in decides:
//! - new order number MAX(order_no)+1, 10000 in an empty table; the same for new customers;
//! - doc_type `order`, status `unprocessed`, shop_id NULL, order_date the time of the import
//!   (UTC), currency `MAMUT_IMPORT_SIM_CURRENCY`;
//! - CONTID 0 still goes through the name match (the matching list of the parameter page is
//!   applied before "0 creates a new customer"); several customers with the same name or ExtID:
//!   the lowest number; a matched customer is not changed (no ExtID written to it);
//! - a new customer's name is CONTNAME, or the invoice address's first line when CONTNAME is
//!   blank; its address from the invoice address split on `:` ([`split_address`]);
//! - a line: quantity blank = 1; price blank = the product's price (0 for free text); discount
//!   blank = 0; description blank = the product's name (the product number for free text);
//!   VAT code other than 0 and 1 = the product's VAT (0 for free text), as the stand-in has no
//!   VAT table; line amount = quantity × price × (1 − discount/100), total = their sum;
//! - the started hook is written once the table locks are held; the delay is taken once, after
//!   the first order's head.

use std::path::PathBuf;
use std::time::Duration;

use postgres::{Client, NoTls, Transaction};
use rust_decimal::Decimal;

use super::file::{Line, Order};

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct Target {
    pub postgres_url: String,
    pub schema: String,
    pub currency: String,
    /// How long to wait for the table locks (a Mamut user holding them).
    pub lock_timeout: Duration,
    /// Test hook: created once the transaction holds its locks.
    pub started: Option<PathBuf>,
    /// Test hook: how long to hold the transaction after the first order head.
    pub delay: Duration,
}

/// One imported order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub order_no: i64,
    pub external_no: String,
    pub customer_no: i64,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn db(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// Imports all orders in one transaction; nothing is written on an error.
pub fn import(target: &Target, orders: &[Order]) -> Result<Vec<Imported>, String> {
    let mut client = Client::connect(&target.postgres_url, NoTls).map_err(|e| {
        format!(
            "cannot connect to PostgreSQL at {}: {}",
            target.postgres_url,
            db(e)
        )
    })?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.orders', $1::text)) IS NOT NULL",
            &[&target.schema],
        )
        .map_err(db)?
        .get(0);
    if !exists {
        return Err(format!(
            "no Mamut tables in PostgreSQL schema {:?} (MAMUT_IMPORT_SIM_PG_SCHEMA)",
            target.schema
        ));
    }
    // The stand-in's schema first: its text comparisons (case-insensitive, trailing spaces
    // ignored, as SQL Server's default collation) are the ones `=` finds.
    client
        .batch_execute(&format!(
            "SET search_path = {}, pg_catalog; SET TIME ZONE 'UTC'; SET application_name = 'mamut-import-sim'; SET lock_timeout = {}",
            quote(&target.schema),
            target.lock_timeout.as_millis().max(1)
        ))
        .map_err(db)?;
    let mut tx = client.transaction().map_err(db)?;
    tx.batch_execute("LOCK TABLE orders, customers IN EXCLUSIVE MODE")
        .map_err(|e| format!("cannot lock orders and customers: {}", db(e)))?;
    if let Some(path) = &target.started {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the started file {}: {e}", path.display()))?;
    }
    let mut imported = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        let customer_no = customer(&mut tx, order)?;
        let mut lines = Vec::new();
        let mut total = Decimal::ZERO;
        for line in &order.lines {
            let resolved = resolve(&mut tx, line)?;
            total = resolved
                .amount()
                .and_then(|a| total.checked_add(a))
                .ok_or_else(|| format!("order {}: the total overflows", order.external()))?;
            lines.push(resolved);
        }
        let order_no: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(order_no) + 1, 10000)::int8 FROM orders",
                &[],
            )
            .map_err(db)?
            .get(0);
        tx.execute(
            "INSERT INTO orders (order_no, doc_type, customer_no, external_no, shop_id, status, order_date, currency, total) \
             VALUES ($1::int8, 'order', $2::int8, $3::text, NULL, 'unprocessed', localtimestamp(3), $4::text, $5::text::numeric)",
            &[
                &order_no,
                &customer_no,
                &order.external(),
                &target.currency,
                &total.to_string(),
            ],
        )
        .map_err(|e| format!("order {}: {}", order.external(), db(e)))?;
        if i == 0 && !target.delay.is_zero() {
            std::thread::sleep(target.delay);
        }
        for (n, line) in lines.iter().enumerate() {
            tx.execute(
                "INSERT INTO order_lines (order_no, line_no, article_no, description, quantity, unit_price, discount, vat_rate) \
                 VALUES ($1::int8, $2::int8, $3::text, $4::text, $5::text::numeric, $6::text::numeric, $7::text::numeric, $8::text::numeric)",
                &[
                    &order_no,
                    &(n as i64 + 1),
                    &line.article_no,
                    &line.description,
                    &line.quantity.to_string(),
                    &line.price.to_string(),
                    &line.discount.to_string(),
                    &line.vat_rate,
                ],
            )
            .map_err(|e| format!("order {} line {}: {}", order.external(), n + 1, db(e)))?;
        }
        imported.push(Imported {
            order_no,
            external_no: order.external().to_owned(),
            customer_no,
        });
    }
    tx.commit().map_err(db)?;
    Ok(imported)
}

/// A line as it is written.
struct Resolved {
    article_no: Option<String>,
    description: String,
    quantity: Decimal,
    price: Decimal,
    discount: Decimal,
    vat_rate: String,
}

impl Resolved {
    fn amount(&self) -> Option<Decimal> {
        let share = Decimal::ONE.checked_sub(self.discount.checked_div(Decimal::ONE_HUNDRED)?)?;
        self.quantity.checked_mul(self.price)?.checked_mul(share)
    }
}

fn resolve(tx: &mut Transaction, line: &Line) -> Result<Resolved, String> {
    let product = if line.product_no.trim().is_empty() {
        None
    } else {
        tx.query_opt(
            "SELECT article_no, name, vat_rate::text, price::text FROM products \
             WHERE article_no = $1::text AND active::int4 <> 0",
            &[&line.product_no],
        )
        .map_err(db)?
    };
    let description = |fallback: String| {
        if line.description.trim().is_empty() {
            fallback
        } else {
            line.description.clone()
        }
    };
    let quantity = line.quantity.unwrap_or(Decimal::ONE);
    let discount = line.discount.unwrap_or(Decimal::ZERO);
    Ok(match product {
        Some(row) => {
            let product_rate: String = row.get(2);
            let product_price: String = row.get(3);
            Resolved {
                article_no: Some(row.get(0)),
                description: description(row.get(1)),
                quantity,
                price: match line.price {
                    Some(p) => p,
                    None => product_price.parse().unwrap_or(Decimal::ZERO),
                },
                discount,
                vat_rate: if line.vat_code == 1 {
                    "0".into()
                } else {
                    product_rate
                },
            }
        }
        None => Resolved {
            article_no: None,
            description: description(line.product_no.clone()),
            quantity,
            price: line.price.unwrap_or(Decimal::ZERO),
            discount,
            vat_rate: "0".into(),
        },
    })
}

/// The customer the order goes to, found or created.
fn customer(tx: &mut Transaction, order: &Order) -> Result<i64, String> {
    let name = order.customer_name.as_str();
    let named = !name.trim().is_empty();
    let number = order.customer_no;
    let first = |rows: Vec<postgres::Row>| rows.first().map(|r| r.get::<_, i64>(0));
    if number != 0 {
        let rows = if named {
            tx.query(
                "SELECT customer_no::int8 FROM customers WHERE customer_no = $1::int8 AND name = $2::text",
                &[&number, &name],
            )
        } else {
            tx.query(
                "SELECT customer_no::int8 FROM customers WHERE customer_no = $1::int8",
                &[&number],
            )
        }
        .map_err(db)?;
        if let Some(found) = first(rows) {
            return Ok(found);
        }
    }
    if named {
        let rows = tx
            .query(
                "SELECT customer_no::int8 FROM customers WHERE name = $1::text ORDER BY customer_no LIMIT 1",
                &[&name],
            )
            .map_err(db)?;
        if let Some(found) = first(rows) {
            return Ok(found);
        }
    }
    let ext_id = (number != 0).then(|| number.to_string());
    if let Some(ext) = &ext_id {
        let rows = tx
            .query(
                "SELECT customer_no::int8 FROM customers WHERE ext_id = $1::text ORDER BY customer_no LIMIT 1",
                &[ext],
            )
            .map_err(db)?;
        if let Some(found) = first(rows) {
            return Ok(found);
        }
    }
    let address = split_address(&order.invoice_address, ':', name);
    let new_name = if named {
        name.to_owned()
    } else {
        order
            .invoice_address
            .split(':')
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned()
    };
    let customer_no: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(customer_no) + 1, 10000)::int8 FROM customers",
            &[],
        )
        .map_err(db)?
        .get(0);
    tx.execute(
        "INSERT INTO customers (customer_no, name, street, zip, city, country, ext_id) \
         VALUES ($1::int8, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text)",
        &[
            &customer_no,
            &cut(&new_name, 100),
            &address.street.map(|s| cut(&s, 100)),
            &address.zip.map(|s| cut(&s, 20)),
            &address.city.map(|s| cut(&s, 60)),
            &address.country,
            &ext_id,
        ],
    )
    .map_err(|e| format!("new customer {customer_no}: {}", db(e)))?;
    Ok(customer_no)
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A new customer's address, read off an address field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Address {
    pub street: Option<String>,
    pub zip: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

/// An address field split on its line break (the documentation: "colon represents a line
/// shift"); the rest is the stand-in's reading: empty lines dropped; a first line equal to the
/// customer's name dropped; a last line of two letters is the country code; then the last line
/// is "zip city" (the zip: its leading words that hold a digit, e.g. `123 45`, `SW1A 1AA`), and
/// the lines before it are the street, joined by ", ". A single line is the street.
pub fn split_address(text: &str, line_break: char, name: &str) -> Address {
    let mut lines: Vec<&str> = text
        .split(line_break)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !name.trim().is_empty()
        && lines
            .first()
            .is_some_and(|l| l.to_lowercase() == name.trim().to_lowercase())
    {
        lines.remove(0);
    }
    let mut address = Address::default();
    if lines.len() >= 2
        && lines
            .last()
            .is_some_and(|l| l.len() == 2 && l.chars().all(|c| c.is_ascii_alphabetic()))
    {
        address.country = lines.pop().map(str::to_ascii_uppercase);
    }
    match lines.as_slice() {
        [] => {}
        [only] => address.street = Some((*only).to_owned()),
        [street @ .., last] => {
            address.street = Some(street.join(", "));
            let words: Vec<&str> = last.split_whitespace().collect();
            let zip_words = words
                .iter()
                .take_while(|w| w.chars().any(|c| c.is_ascii_digit()))
                .count();
            let zip = words[..zip_words].join(" ");
            let city = words[zip_words..].join(" ");
            address.zip = (!zip.is_empty()).then_some(zip);
            address.city = (!city.is_empty()).then_some(city);
        }
    }
    address
}
